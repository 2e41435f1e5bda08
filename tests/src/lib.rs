//! End-to-end tests live in `tests/`; this holds what they share.

use cohort_simulation::Report;

/// Fails with every violation and the command that replays the run.
#[track_caller]
pub fn assert_clean(report: &Report) {
    assert!(
        report.violations.is_empty(),
        "violations: {:?}\nreplay: {}",
        report.violations,
        report.replay
    );
}
