//! End-to-end checks of the executor: every operator's engine follows the finalized cluster
//! chain to the same block and state root, through crashes, and leaders use the payload they
//! pre-built one interval early.

use cohort_simulation::{Crash, EngineFault, Fault, Kind, Report, SimConfig, run};
use cohort_tests::assert_clean;
use std::time::Duration;

/// Share of leaders' payloads that were the pre-built one.
fn hit_rate(report: &Report) -> f64 {
    let p = &report.prebuild;
    p.hits as f64 / (p.hits + p.fallbacks + p.misses).max(1) as f64
}

#[test]
fn every_engine_ends_on_the_same_finalized_block_and_state_root_over_200_slots() {
    let report = run(&SimConfig {
        seed: 3,
        slots: 200,
        ..SimConfig::default()
    });
    assert_clean(&report);
    // One execution block per slot (slot 0 .. the extra observed slot), every one finalized
    // by every engine up to the end (`engine_converged` compares hashes and state roots).
    assert!(report.execution_blocks >= 200, "{report:?}");
    assert!(report.engine_finalized_height >= 199, "{report:?}");
    assert_ne!(
        report.engine_state_root,
        cohort_engine::embedded::devnet_genesis_state_root().to_string(),
        "the chain's blocks changed the execution state"
    );
    assert!(hit_rate(&report) >= 0.99, "prebuild {:?}", report.prebuild);
    // The wallet's transfers went through one operator's relay each and every one owed is in
    // the finalized chain.
    let transactions = &report.transactions;
    assert!(transactions.owed >= 4 * 190, "{transactions:?}");
    assert!(
        transactions.finalized >= transactions.owed,
        "{transactions:?}"
    );
    assert_eq!(transactions.refused, 0, "{transactions:?}");
    // One in four of the senders' transactions calls the load's contract once its deployment
    // is finalized; the contract's counter, read with eth_call from the engines, is exactly
    // the calls in the finalized chain (each wrote two slots and logged, none failed).
    assert!(
        transactions.contract_calls_finalized >= 180,
        "{transactions:?}"
    );
    assert_eq!(
        transactions.contract_counter,
        Some(transactions.contract_calls_finalized),
        "{transactions:?}"
    );
}

#[test]
fn an_operator_down_for_20_slots_backfills_and_converges() {
    let report = run(&SimConfig {
        seed: 5,
        slots: 64,
        faults: vec![Fault::Crash(Crash {
            operator: 2,
            slot: 20,
            restart_slot: Some(40),
        })],
        ..SimConfig::default()
    });
    assert_clean(&report);
    assert_eq!(report.restarts, 1);
    assert!(report.engine_finalized_height >= 63, "{report:?}");
}

#[test]
fn with_50ms_links_leaders_use_the_pre_built_payload() {
    let report = run(&SimConfig {
        seed: 11,
        slots: 100,
        latency: Duration::from_millis(50),
        jitter: Duration::from_millis(10),
        ..SimConfig::default()
    });
    assert_clean(&report);
    assert!(hit_rate(&report) >= 0.99, "prebuild {:?}", report.prebuild);
    assert!(report.execution_blocks >= 100, "{report:?}");
}

#[test]
fn an_engine_that_syncs_or_hangs_for_a_while_slows_its_operator_only() {
    let report = run(&SimConfig {
        seed: 13,
        slots: 48,
        faults: vec![
            Fault::Engine(EngineFault::parse("1:syncing@8-14").unwrap()),
            Fault::Engine(EngineFault::parse("1:hang@20-24").unwrap()),
        ],
        ..SimConfig::default()
    });
    // Liveness is owed from 4 slots after the last fault, and every engine, operator 1's
    // included, ends on the cluster's finalized block with the same state root.
    assert_clean(&report);
    assert_eq!(report.liveness_from, Some(28));
    assert!(report.engine_finalized_height >= 47, "{report:?}");
}

#[test]
fn an_engine_that_calls_a_finalized_payload_invalid_stops_only_that_executor() {
    let report = run(&SimConfig {
        seed: 17,
        slots: 32,
        faults: vec![Fault::Engine(
            EngineFault::parse("2:invalid@10-11").unwrap(),
        )],
        ..SimConfig::default()
    });
    // The other three keep deciding and signing every duty; operator 2's executor stopped
    // rather than go on past a payload its engine refused.
    assert_clean(&report);
    let attestations = report
        .accepted
        .get(&Kind::Attestation)
        .copied()
        .unwrap_or(0);
    assert_eq!(
        Some(attestations),
        report.expected.get(&Kind::Attestation).copied()
    );
    let by_operator = &report.engine_finalized_by_operator;
    assert!(
        by_operator[&2] < 11,
        "operator 2 executed past its fault: {by_operator:?}"
    );
    for operator in [0, 1, 3] {
        assert!(by_operator[&operator] >= 31, "{by_operator:?}");
    }
}
