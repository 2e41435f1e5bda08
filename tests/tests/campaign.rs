//! Campaigns find bugs: a deliberately injected one (followers sign on their vote rather than
//! on finalization) is caught by a short mixed campaign, replays bit for bit from its seed,
//! and shrinks to a smaller run that still shows it.

use cohort_simulation::{
    InjectedBug, SimConfig,
    campaign::{Plan, campaign, minimize},
    run,
};

#[test]
fn an_injected_signing_bug_is_found_replayed_and_minimized() {
    let base = SimConfig {
        slots: 24,
        injected_bug: Some(InjectedBug::DecideOnVerify),
        ..SimConfig::default()
    };
    // Of mixed seeds 1..=16 at 24 slots, 6 and 15 catch this bug (since cluster blocks carry
    // AVS task decisions, whose extra byte changed every run's trajectory; before, 6, 10, 12
    // and 15 did). 5..=8 holds one of them.
    let seeds: Vec<u64> = (5..=8).collect();
    let report = campaign(&[Plan::Mixed], &seeds, &base, 2, |_| {});
    let failure = report
        .failures
        .first()
        .unwrap_or_else(|| panic!("the campaign missed the injected bug: {report:?}"));
    assert!(
        failure
            .invariants_violated
            .contains(&"signed_only_finalized".to_string()),
        "{failure:?}"
    );
    assert!(failure.replay.contains("--inject-bug decide-on-verify"));

    // The seed replays the same run: same chain, same first violation.
    let config = failure.plan.config(failure.seed, &base);
    let replayed = run(&config);
    assert_eq!(replayed.outcome_digest, failure.outcome_digest);
    assert_eq!(
        replayed.violations.first(),
        failure.first_violation.as_ref()
    );

    // Shrinking keeps the violation with fewer faults or slots.
    let minimized = minimize(&config, |_, _| {}).expect("the failing run fails");
    assert_eq!(minimized.invariant, "signed_only_finalized");
    assert!(minimized.attempts > 1);
    let faults = |c: &SimConfig| {
        c.faults.len() + usize::from(c.delivery < 1.0) + usize::from(!c.jitter.is_zero())
    };
    let smaller = &minimized.config;
    assert!(
        faults(smaller) <= faults(&config)
            && smaller.slots <= config.slots
            && (faults(smaller) < faults(&config) || smaller.slots < config.slots),
        "{} is not smaller than {}",
        minimized.config_flags,
        config.replay_command()
    );
    assert!(!run(smaller).violations.is_empty());

    // Without the bug the same seed holds every invariant.
    let honest = run(&SimConfig {
        injected_bug: None,
        ..config
    });
    assert!(honest.violations.is_empty(), "{:?}", honest.violations);
}
