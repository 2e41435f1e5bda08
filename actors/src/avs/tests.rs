//! The rules that decide what an operator proposes and vouches for, on one task.

use super::task::{Tracked, digest};
use bytes::Bytes;
use cohort_ingress::avs::ClusterTask;
use std::time::{Duration, SystemTime};

const THRESHOLD: usize = 3;
const WINDOW: Duration = Duration::from_secs(4);

fn ordered() -> Tracked {
    let mut tracked = Tracked::new(ClusterTask {
        task_id: [1; 32],
        avs: [2; 20],
        aggregator: [3; 20],
        operator_set_id: 0,
        reference_timestamp: 0,
        task_block_number: 0,
        deadline_ms: 60_000,
        payload: Bytes::from_static(b"task"),
        aggregator_signature: Bytes::new(),
    });
    tracked.ordered_at = Some(5);
    tracked
}

fn report(tracked: &mut Tracked, operator: u32, output: &[u8]) {
    tracked
        .reports
        .insert(operator, digest(&tracked.task.task_id, output));
}

#[test]
fn a_follower_vouches_only_for_its_own_performer_s_output() {
    let mut tracked = ordered();
    assert_eq!(
        tracked.vouch(b"right", THRESHOLD),
        None,
        "no output yet: wait"
    );
    tracked.own = Some(Ok(Bytes::from_static(b"right")));
    assert_eq!(tracked.vouch(b"right", THRESHOLD), Some(true));
    assert_eq!(tracked.vouch(b"wrong", THRESHOLD), Some(false));
    // Even threshold-many reports do not override what its own performer gave.
    for operator in 0..3 {
        report(&mut tracked, operator, b"wrong");
    }
    assert_eq!(tracked.vouch(b"wrong", THRESHOLD), Some(false));
}

#[test]
fn a_slow_follower_vouches_for_an_output_threshold_many_reported() {
    let mut tracked = ordered();
    report(&mut tracked, 0, b"out");
    report(&mut tracked, 1, b"out");
    report(&mut tracked, 2, b"other");
    assert_eq!(
        tracked.vouch(b"out", THRESHOLD),
        None,
        "two reports are not enough"
    );
    report(&mut tracked, 3, b"out");
    assert_eq!(tracked.vouch(b"out", THRESHOLD), Some(true));
    // A task whose order this operator has not finalized yet: the reports are enough (its
    // honest reporters ran it only after the order was finalized).
    tracked.ordered_at = None;
    assert_eq!(tracked.vouch(b"out", THRESHOLD), Some(true));
    tracked.reports.remove(&3);
    assert_eq!(tracked.vouch(b"out", THRESHOLD), None);
}

#[test]
fn a_leader_proposes_its_output_once_threshold_many_agree() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
    let mut tracked = ordered();
    tracked.own = Some(Ok(Bytes::from_static(b"out")));
    report(&mut tracked, 0, b"out");
    report(&mut tracked, 1, b"out");
    report(&mut tracked, 2, b"lie");
    assert_eq!(tracked.proposable_output(THRESHOLD, now, WINDOW), None);
    report(&mut tracked, 3, b"out");
    assert_eq!(
        tracked.proposable_output(THRESHOLD, now, WINDOW),
        Some(Bytes::from_static(b"out"))
    );
    // Not again while a block proposing it may still be finalized; not at all once decided.
    tracked.output_proposed = Some(now);
    assert_eq!(
        tracked.proposable_output(THRESHOLD, now + Duration::from_secs(1), WINDOW),
        None
    );
    assert!(
        tracked
            .proposable_output(THRESHOLD, now + WINDOW, WINDOW)
            .is_some()
    );
    tracked.decided = Some(Bytes::from_static(b"out"));
    assert_eq!(
        tracked.proposable_output(THRESHOLD, now + WINDOW, WINDOW),
        None
    );
    assert_eq!(
        tracked.vouch(b"out", THRESHOLD),
        Some(true),
        "a repeat is harmless"
    );
    assert_eq!(tracked.vouch(b"lie", THRESHOLD), Some(false));
}

#[test]
fn a_task_close_to_its_deadline_is_not_ordered() {
    let tracked = Tracked::new(ordered().task);
    let deadline = SystemTime::UNIX_EPOCH + Duration::from_secs(60);
    let margin = Duration::from_secs(1);
    assert!(tracked.orderable(deadline - Duration::from_secs(2), WINDOW, margin));
    assert!(!tracked.orderable(deadline - Duration::from_millis(500), WINDOW, margin));
}

/// A second operator's bad partial is reported alone: the first one's, found earlier, is not
/// reported (and counted) again.
#[test]
fn each_bad_operator_is_reported_once() {
    use super::actor::newly_bad;
    use cohort_avs_crypto::cluster_result::Round;
    use std::collections::{BTreeMap, BTreeSet};
    let mut bad = BTreeMap::from([(2u32, Round::Result)]);
    assert_eq!(newly_bad(&BTreeSet::new(), &bad), vec![(2, Round::Result)]);
    let before: BTreeSet<u32> = bad.keys().copied().collect();
    bad.insert(0, Round::Auth);
    assert_eq!(newly_bad(&before, &bad), vec![(0, Round::Auth)]);
    let before: BTreeSet<u32> = bad.keys().copied().collect();
    assert!(newly_bad(&before, &bad).is_empty());
}
