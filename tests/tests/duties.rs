//! End-to-end checks of the distributed-validator duties: what the devnet beacon chain accepts
//! (it verifies every signature with its own BLS), under crashes and a lying operator.

use cohort_simulation::{Crash, CryptoCost, Fault, Kind, Offline, Report, SimConfig, run};
use cohort_tests::assert_clean;
use std::time::Duration;

fn config(seed: u64, slots: u64) -> SimConfig {
    SimConfig {
        seed,
        slots,
        ..SimConfig::default()
    }
}

fn count(map: &std::collections::BTreeMap<Kind, u64>, kind: Kind) -> u64 {
    map.get(&kind).copied().unwrap_or(0)
}

/// Every attestation, proposal and aggregate the run's slots owe was accepted, and the chain
/// refused nothing.
fn assert_all_accepted(report: &Report) {
    for kind in Kind::ALL {
        let expected = count(&report.expected, kind);
        assert!(expected > 0, "no {kind} scheduled: {report:?}");
        assert_eq!(
            count(&report.accepted, kind),
            expected,
            "{kind}s accepted vs expected; rejections: {:?}; replay: {}",
            report.rejections,
            report.replay
        );
        assert_eq!(
            count(&report.rejected, kind),
            0,
            "{kind}: {:?}",
            report.rejections
        );
    }
}

#[test]
fn every_attestation_proposal_and_aggregate_is_accepted() {
    let report = run(&config(7, 64));
    assert_clean(&report);
    assert_all_accepted(&report);
    assert!(report.share_signatures > 0);
    // Each object leaves within one third of a slot of its due time: proposals from slot
    // start, attestations from one third, aggregates from two thirds.
    for (role, due_ms) in [
        (Kind::Proposal, 0),
        (Kind::Attestation, 4_000),
        (Kind::Aggregate, 8_000),
    ] {
        let latency = &report.submit_latency_ms_by_role[&role];
        assert!(
            latency.max < due_ms + 4_000,
            "{role} submitted too late after slot start: {latency:?}"
        );
    }
    // The real CPU of the shares' cryptography is measured, and signing is part of it.
    let cpu = &report.crypto_cpu_ms_per_operator_slot;
    assert!(cpu.sign > 0.0 && cpu.recover_and_verify > 0.0, "{cpu:?}");
    assert!(report.invalid_partials_by_operator.is_empty());
}

/// Seed 7, 8 slots, every beacon node seeing the head 1 s into the slot, at this executor cycle
/// and link jitter.
fn head_at_one_second(cycle: Duration, jitter: Duration) -> SimConfig {
    SimConfig {
        head_at: Some(Duration::from_secs(1)),
        cycle,
        jitter,
        ..config(7, 8)
    }
}

/// With every beacon node seeing the head block 1 s into the slot, the committee duty starts
/// on the head event and attestations leave after the four link delays the path needs (the
/// leader's block, two consensus votes, the post-consensus partials) plus the simulation's
/// processing, not at one third of the slot; every operator decides within one link delay of
/// the others. `extra_ms` is what the path may add to the four delays: jitter and one executor
/// cycle per hop between tasks (about 40 hops), and any cryptography `cfg` charges.
fn attestations_leave_after_the_head_event(cfg: SimConfig, extra_ms: u64) {
    let report = run(&cfg);
    assert_clean(&report);
    assert_all_accepted(&report);
    let link_ms = cfg.latency.as_millis() as u64;
    for role in [Kind::Attestation, Kind::SyncMessage] {
        let from_head = &report.head_to_submit_ms_by_role[&role];
        let from_start = &report.submit_latency_ms_by_role[&role];
        assert_eq!(from_head.max + 1_000, from_start.max, "{role}");
        assert!(
            from_head.p99 <= 4 * link_ms + extra_ms,
            "{role} left {from_head:?} after the head event; replay: {}",
            report.replay
        );
    }
    let decide = &report.decide_latency_ms;
    assert!(
        decide.p99 <= decide.p50 + link_ms,
        "decide latency spread: {decide:?}"
    );
}

/// At the runtime's default 1 ms cycle the forty hops alone cost about 40 ms.
#[test]
fn attestations_leave_four_link_delays_after_the_head_event() {
    let cfg = head_at_one_second(Duration::from_millis(1), Duration::from_millis(5));
    attestations_leave_after_the_head_event(cfg, 60);
}

/// Issue 17's aim, 4 link delays + 20 ms, with hops charged 100 us (`cohort bench-hops`
/// measures a few microseconds on the node's runtime) and no jitter, so the 20 ms are all
/// processing: a wait or a round trip added to the path fails it (204 ms when written).
#[test]
fn attestations_leave_within_four_link_delays_and_20_ms_at_realistic_hop_cost() {
    let cfg = head_at_one_second(Duration::from_micros(100), Duration::ZERO);
    attestations_leave_after_the_head_event(cfg, 20);
}

/// What two cores carry within the aim once the cryptography takes its time: each slot's
/// post-consensus work (a share signed, two partials decoded, a key recovered per attestation)
/// is charged at `cohort bench-signing`'s release costs over two cores. When written, 1,200
/// validators left 215 ms after the head (226 ms with the same work on one core), 1,500 left
/// 219 ms and 10,000 left 276 ms (README).
#[test]
fn two_cores_carry_1200_validators_within_four_link_delays_and_20_ms() {
    let mut cfg = head_at_one_second(Duration::from_micros(100), Duration::ZERO);
    cfg.validators = 1_200;
    cfg.crypto_cost = Some(CryptoCost {
        sign: Duration::from_micros(161),
        decode: Duration::from_micros(78),
        recover: Duration::from_micros(115),
        cores: std::num::NonZeroUsize::new(2).expect("two"),
    });
    attestations_leave_after_the_head_event(cfg, 20);
}

/// A simulation may charge the cryptography in simulated time (`--crypto-cost-us`): each
/// runner then holds the partials and submissions its work produced for what that work costs,
/// so attestations leave later by at least one share signed and one key recovered, and a run
/// without the charge replays exactly as before (the charge reads no clock).
#[test]
fn charged_cryptography_delays_what_it_produces_and_nothing_else() {
    let mut cfg = head_at_one_second(Duration::from_micros(100), Duration::ZERO);
    let free = run(&cfg);
    assert_eq!(run(&cfg).outcome_digest, free.outcome_digest, "replays");
    let cost = CryptoCost {
        sign: Duration::from_millis(2),
        decode: Duration::from_millis(1),
        recover: Duration::from_millis(3),
        cores: std::num::NonZeroUsize::MIN,
    };
    cfg.crypto_cost = Some(cost);
    let charged = run(&cfg);
    assert_clean(&charged);
    assert_all_accepted(&charged);
    let free_ms = free.head_to_submit_ms_by_role[&Kind::Attestation].p50;
    let charged_ms = charged.head_to_submit_ms_by_role[&Kind::Attestation].p50;
    let least = (cost.sign + cost.recover).as_millis() as u64;
    assert!(
        charged_ms >= free_ms + least,
        "charged {charged_ms} ms, free {free_ms} ms: the charge must add at least {least} ms"
    );
    assert_eq!(
        charged.decide_latency_ms, free.decide_latency_ms,
        "agreement does no share cryptography"
    );
}

/// Issue 17, item 3, with heads drawn per operator and slot (the default: 0 to 6 s, now and then
/// the previous head): a leader whose node is late proposes what f+1 operators' nodes offered,
/// and an operator whose node is late signs once the cluster decided, so half the attestations
/// leave before one third of the slot. Before both, every slot's attestations waited for the
/// leader's own node or one third, and for a threshold of operators to start: p50 4,001 ms.
#[test]
fn half_the_attestations_leave_before_one_third_when_heads_come_at_different_times() {
    let report = run(&config(7, 32));
    assert_clean(&report);
    assert_all_accepted(&report);
    for role in [Kind::Attestation, Kind::SyncMessage] {
        let from_start = &report.submit_latency_ms_by_role[&role];
        assert!(
            from_start.p50 < 3_500,
            "{role} submission from slot start {from_start:?}; replay: {}",
            report.replay
        );
    }
}

#[test]
fn one_operator_down_still_gets_every_duty_accepted() {
    for down in [0, 3] {
        let mut cfg = config(7, 64);
        cfg.faults = vec![Fault::Offline(Offline {
            operator: down,
            start_slot: None,
        })];
        let report = run(&cfg);
        assert_clean(&report);
        assert_all_accepted(&report);
    }
}

#[test]
fn wrong_partial_signatures_are_dropped_reported_and_duties_still_succeed() {
    let mut cfg = config(7, 64);
    cfg.faults = vec![Fault::Byzantine(2)];
    let report = run(&cfg);
    assert_clean(&report);
    assert_all_accepted(&report);
    // The liar, and only the liar, is reported by the honest operators.
    let reported: Vec<usize> = report
        .invalid_partials_by_operator
        .keys()
        .copied()
        .collect();
    assert_eq!(
        reported,
        vec![2],
        "{:?}",
        report.invalid_partials_by_operator
    );
    assert!(report.invalid_partials_by_operator[&2] > 0);
}

#[test]
fn two_operators_down_miss_duties_and_sign_nothing_conflicting() {
    let mut cfg = config(7, 24);
    cfg.faults = vec![
        Fault::Offline(Offline {
            operator: 2,
            start_slot: None,
        }),
        Fault::Offline(Offline {
            operator: 3,
            start_slot: None,
        }),
    ];
    let report = run(&cfg);
    // `no_conflicting_signatures` is among the invariants checked.
    assert_clean(&report);
    for kind in Kind::ALL {
        assert_eq!(count(&report.accepted, kind), 0, "{kind} without a quorum");
    }
}

#[test]
fn crashed_operator_restarts_with_its_slashing_record_and_signs_nothing_twice() {
    let mut cfg = config(9, 40);
    cfg.faults = vec![Fault::Crash(Crash {
        operator: 1,
        slot: 10,
        restart_slot: Some(14),
    })];
    let report = run(&cfg);
    assert_clean(&report);
    assert_eq!(report.restarts, 1);
    // The cluster keeps going while it is down: nearly everything is accepted (a dead leader
    // can cost one slot's duties until the skip policy takes over).
    let expected = count(&report.expected, Kind::Attestation);
    let accepted = count(&report.accepted, Kind::Attestation);
    assert!(
        accepted * 100 >= expected * 90,
        "{accepted} of {expected} attestations accepted"
    );
}
