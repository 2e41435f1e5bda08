//! A lone crash is tested at any point (issue 19, item 9): each crash cuts its operator's
//! unsynced writes, keeping a seed-drawn prefix of each blob's with the last one possibly torn
//! (`simulation/src/disk.rs`), and the slashing-protection record the operator restarts with
//! must cover every partial signature its share let out before the crash
//! (`signed_with_durable_record`). An operator whose record is not durable when its partials
//! leave (`--inject-bug unsynced-slashing`) is caught at its restart.

use cohort_simulation::{
    Crash, Fault, InjectedBug, SimConfig,
    campaign::{Plan, campaign},
    run,
};

const INVARIANT: &str = "signed_with_durable_record";

/// Operator 2 crashes during slot 4 and restarts at slot 6.
fn lone_crash(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        slots: 10,
        faults: vec![Fault::Crash(Crash {
            operator: 2,
            slot: 4,
            restart_slot: Some(6),
        })],
        ..SimConfig::default()
    }
}

#[test]
fn a_slashing_record_not_durable_when_partials_leave_is_caught_at_a_lone_restart() {
    let buggy = SimConfig {
        injected_bug: Some(InjectedBug::UnsyncedSlashing),
        ..lone_crash(7)
    };
    let report = run(&buggy);
    let violation = report
        .violations
        .iter()
        .find(|v| v.invariant == INVARIANT)
        .unwrap_or_else(|| panic!("the lone crash missed the bug: {:?}", report.violations));
    assert!(
        violation.detail.contains("operator 2 restarts"),
        "{violation:?}"
    );
    assert_eq!(violation.slot, 4, "caught at the crash: {violation:?}");

    // The crash had the record's unsynced writes to cut, and the cut replays bit for bit.
    assert!(report.crash_cuts.blobs > 0, "{:?}", report.crash_cuts);
    let again = run(&buggy);
    assert_eq!(again.outcome_digest, report.outcome_digest);
    assert_eq!(again.runtime_audit, report.runtime_audit);
    assert_eq!(again.crash_cuts, report.crash_cuts);
    assert_eq!(again.violations, report.violations);

    // Without the cut the runtime alone loses every unsynced write of the crashed operator, so
    // the bug is caught there too; the cut kept a part of them, and the runs differ.
    let uncut = run(&SimConfig {
        crash_cut: false,
        ..buggy.clone()
    });
    assert!(
        uncut.violations.iter().any(|v| v.invariant == INVARIANT),
        "{:?}",
        uncut.violations
    );
    assert_eq!(uncut.crash_cuts.blobs, 0);
    assert_ne!(uncut.runtime_audit, report.runtime_audit);

    // The honest operator's record covers everything it signed.
    let honest = run(&lone_crash(7));
    assert!(honest.violations.is_empty(), "{:?}", honest.violations);
}

#[test]
fn a_crash_campaign_finds_the_unsynced_slashing_bug_and_passes_without_it() {
    let base = SimConfig {
        slots: 16,
        injected_bug: Some(InjectedBug::UnsyncedSlashing),
        ..SimConfig::default()
    };
    let seeds: Vec<u64> = (1..=3).collect();
    let report = campaign(&[Plan::Crash], &seeds, &base, 2, |_| {});
    let failure = report
        .failures
        .iter()
        .find(|f| f.invariants_violated.iter().any(|i| i == INVARIANT))
        .unwrap_or_else(|| panic!("the crash campaign missed the injected bug: {report:?}"));
    assert!(
        failure.replay.contains("--inject-bug unsynced-slashing"),
        "{}",
        failure.replay
    );

    let honest = campaign(
        &[Plan::Crash],
        &seeds,
        &SimConfig {
            injected_bug: None,
            ..base
        },
        2,
        |_| {},
    );
    assert!(honest.failures.is_empty(), "{:?}", honest.failures);
}
