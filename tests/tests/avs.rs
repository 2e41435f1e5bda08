//! A whole simulated cluster run as one AVS operator: tasks submitted to rotating operators are
//! ordered through the cluster chain, run on every operator's performer, agreed and signed by
//! the cluster's threshold BN254 key. The checker verifies every signed result against the
//! cluster key as an aggregator would, that no two outputs are signed for one task, that the
//! task log is the same on every operator and that every task ends for its caller.

use cohort_simulation::{
    Crash, Fault, SimConfig,
    avs::{AvsLoad, PerformerFault},
    run,
};
use std::collections::BTreeMap;

fn config(seed: u64, faults: BTreeMap<usize, PerformerFault>) -> SimConfig {
    SimConfig {
        seed,
        slots: 10,
        avs: Some(AvsLoad {
            tasks_per_slot: 4,
            performer_faults: faults,
        }),
        ..SimConfig::default()
    }
}

/// Tasks whose deadline falls before the run's end: each must be signed.
fn due(report: &cohort_simulation::Report) -> u64 {
    let avs = report.avs.as_ref().expect("the run has an AVS");
    avs.submitted - avs.signed - avs.failed
}

#[test]
fn a_lying_performer_is_outvoted_and_every_task_is_signed() {
    let report = run(&config(7, BTreeMap::from([(1, PerformerFault::Lie)])));
    assert!(report.violations.is_empty(), "{report}");
    let avs = report.avs.clone().expect("the run has an AVS");
    assert_eq!(avs.failed, 0, "{report}");
    // Only tasks still within their deadline at the end may be unanswered.
    assert!(due(&report) <= 3, "{report}");
    assert!(avs.signed >= avs.submitted - 3, "{report}");
    // The liar's outputs were seen and never signed (the checker's `avs_honest_output`).
    assert!(
        avs.disagreements_by_operator.get(&1).copied().unwrap_or(0) > 0,
        "{report}"
    );
    assert_eq!(
        avs.disagreements_by_operator.keys().collect::<Vec<_>>(),
        vec![&1]
    );
}

#[test]
fn slow_hanging_and_crashed_performers_do_not_stop_the_cluster() {
    for fault in [
        PerformerFault::Slow,
        PerformerFault::Hang,
        PerformerFault::Crash,
    ] {
        let report = run(&config(11, BTreeMap::from([(2, fault)])));
        assert!(report.violations.is_empty(), "{fault:?}: {report}");
        let avs = report.avs.clone().expect("the run has an AVS");
        assert_eq!(avs.failed, 0, "{fault:?}: {report}");
        assert!(avs.signed >= avs.submitted - 3, "{fault:?}: {report}");
    }
}

#[test]
fn a_crashed_operator_s_callers_get_the_result_from_another() {
    // Operator 1 crashes in slot 3 and comes back in slot 6: tasks it received are answered
    // by the next operator its client asks, with the same signed result.
    let mut config = config(5, BTreeMap::new());
    config.faults.push(Fault::Crash(Crash {
        operator: 1,
        slot: 3,
        restart_slot: Some(6),
    }));
    let report = run(&config);
    assert!(report.violations.is_empty(), "{report}");
    let avs = report.avs.clone().expect("the run has an AVS");
    assert_eq!(avs.failed, 0, "{report}");
    assert!(avs.signed >= avs.submitted - 3, "{report}");
}

#[test]
fn a_run_with_tasks_replays_bit_for_bit() {
    let config = config(3, BTreeMap::from([(0, PerformerFault::Lie)]));
    let first = run(&config);
    let again = run(&config);
    assert_eq!(first.outcome_digest, again.outcome_digest);
    assert_eq!(first.avs, again.avs);
}
