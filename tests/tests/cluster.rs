//! End-to-end checks of the cluster core, as a user of `cohort simulate` would make them.

use cohort_simulation::{Crash, Fault, Offline, SimConfig, run};
use cohort_tests::assert_clean;

fn config(seed: u64, slots: u64) -> SimConfig {
    SimConfig {
        seed,
        slots,
        ..SimConfig::default()
    }
}

#[test]
fn same_seed_and_config_replay_bit_for_bit() {
    let a = run(&config(11, 24));
    let b = run(&config(11, 24));
    assert_clean(&a);
    assert!(a.finalized_height > 0);
    assert_eq!(a.outcome_digest, b.outcome_digest);
    assert_eq!(
        a.runtime_audit, b.runtime_audit,
        "runtime audit differs between replays"
    );
    assert_eq!(a.decide_latency_ms, b.decide_latency_ms);
    let c = run(&config(12, 24));
    assert_ne!(
        a.runtime_audit, c.runtime_audit,
        "another seed must give another run"
    );
}

#[test]
fn healthy_cluster_decides_every_duty_in_its_slot() {
    let report = run(&config(7, 32));
    assert_clean(&report);
    assert!(report.duties.scheduled > 0);
    assert_eq!(report.duties.decided, report.duties.scheduled);
    assert_eq!(report.duties.missed, 0);
    // Paced to the work: a slot has up to four decision blocks (proposal, attestations with
    // the sync committee messages, aggregates, contributions: the last two are due together but
    // reach the leader separately) and at most about one heartbeat block.
    assert!(
        report.finalized_height <= 6 * report.slots,
        "block flood: {report:?}"
    );
}

#[test]
fn one_crashed_operator_does_not_stop_the_cluster() {
    for crashed in [0, 3] {
        let mut cfg = config(7, 32);
        cfg.faults = vec![Fault::Offline(Offline {
            operator: crashed,
            start_slot: None,
        })];
        let report = run(&cfg);
        assert_clean(&report);
        assert_eq!(
            report.duties.missed, 0,
            "operator {crashed} crashed: {report:?}"
        );
        assert_eq!(
            report.duties.committee_decided,
            report.duties.committee_scheduled
        );
    }
}

#[test]
fn two_crashed_operators_finalize_nothing_and_recover_without_conflict() {
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
    let stuck = run(&cfg);
    assert_clean(&stuck);
    assert_eq!(stuck.finalized_height, 0);
    assert_eq!(stuck.duties.decided, 0);

    cfg.faults = vec![
        Fault::Offline(Offline {
            operator: 2,
            start_slot: Some(8),
        }),
        Fault::Offline(Offline {
            operator: 3,
            start_slot: Some(8),
        }),
    ];
    let recovered = run(&cfg);
    // Invariants include: same finalized chain on every operator, one block per height.
    assert_clean(&recovered);
    assert!(recovered.finalized_height > 0);
    assert!(recovered.duties.decided > 0 && recovered.duties.missed > 0);
}

#[test]
fn larger_clusters_work() {
    for operators in [7, 10, 13] {
        let mut cfg = config(3, 12);
        cfg.operators = operators;
        let report = run(&cfg);
        assert_clean(&report);
        assert_eq!(report.duties.missed, 0, "{operators} operators: {report:?}");
    }
}

#[test]
fn messages_per_slot_do_not_grow_with_validators() {
    let small = run(&config(5, 16));
    let mut big_cfg = config(5, 16);
    big_cfg.validators = 4096;
    let big = run(&big_cfg);
    assert_clean(&small);
    assert_clean(&big);
    assert_eq!(big.duties.missed, 0);
    // One committee duty per slot whatever the validator count; allow pacing noise.
    assert!(
        big.messages_per_operator_per_slot <= small.messages_per_operator_per_slot * 1.5,
        "64 validators: {} msgs, 4096 validators: {} msgs",
        small.messages_per_operator_per_slot,
        big.messages_per_operator_per_slot
    );
}

#[test]
fn bad_config_is_rejected_with_the_field_named() {
    let mut cfg = config(1, 4);
    cfg.operators = 3;
    assert!(
        cfg.validate()
            .unwrap_err()
            .to_string()
            .contains("operators")
    );
    cfg.operators = 4;
    cfg.delivery = 1.5;
    assert!(cfg.validate().unwrap_err().to_string().contains("delivery"));
    cfg.delivery = 1.0;
    cfg.faults = vec![Fault::Offline(Offline {
        operator: 9,
        start_slot: None,
    })];
    assert!(cfg.validate().unwrap_err().to_string().contains("offline"));
    cfg.faults = vec![Fault::Crash(Crash {
        operator: 0,
        slot: 5,
        restart_slot: Some(5),
    })];
    assert!(cfg.validate().unwrap_err().to_string().contains("crash"));
}

#[test]
fn crashed_operator_restarts_from_storage_without_losing_or_reordering_blocks() {
    let mut cfg = config(21, 32);
    cfg.faults = vec![Fault::Crash(Crash {
        operator: 1,
        slot: 8,
        restart_slot: Some(14),
    })];
    let report = run(&cfg);
    // `finalized_in_order` and `no_two_finalized_blocks_at_one_height` cover the restarted
    // operator's redelivered blocks; `same_finalized_chain` its agreement with the others.
    assert_clean(&report);
    assert_eq!(report.restarts, 1);
    // Until consensus notices the crashed leader is silent (skip policy), each of its views
    // costs one leader timeout: at most a slot's duty or two, never more.
    assert!(
        report.duties.committee_scheduled - report.duties.committee_decided <= 2,
        "{report:?}"
    );
}

#[test]
fn consensus_takes_about_three_one_way_delays() {
    let mut cfg = config(4, 24);
    cfg.jitter = std::time::Duration::ZERO;
    let report = run(&cfg);
    assert_clean(&report);
    // 3 hops of 50 ms plus processing; the median block is not one a follower had to wait on.
    assert!(report.consensus_ms.p50 >= 150, "{report:?}");
    assert!(report.consensus_ms.p50 < 250, "{report:?}");
}
