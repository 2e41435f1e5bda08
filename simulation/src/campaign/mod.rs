//! Fault campaigns: many seeds of one fault plan, each seed drawing its own faults, so that a
//! failure is one `(plan, seed)` pair away from a bit-for-bit replay, and a failing run can be
//! shrunk to the smallest set of faults that still breaks it.
//!
//! [`Plan`]s draw the faults (`plan`), [`campaign`] runs seeds on threads, [`minimize`]
//! shrinks a failure, and the `corpus` keeps failures replaying forever.

mod corpus;
mod minimize;
mod plan;

pub use corpus::{CorpusEntry, parse_corpus};
pub use minimize::{Minimized, minimize};
pub use plan::Plan;

use crate::{Report, SimConfig, Violation, run};
use cohort_devnet::Kind;
use serde::Serialize;
use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

/// One seed's result, as a campaign keeps it.
#[derive(Clone, Debug, Serialize)]
pub struct SeedOutcome {
    pub plan: Plan,
    pub seed: u64,
    pub violations: usize,
    pub first_violation: Option<Violation>,
    pub invariants_violated: Vec<String>,
    pub attestations_expected: u64,
    pub attestations_accepted: u64,
    pub proposals_accepted: u64,
    /// AVS tasks submitted and answered with a signed result (0 in a run without AVS load).
    pub tasks_submitted: u64,
    pub tasks_signed: u64,
    pub outcome_digest: String,
    pub wall_ms: u64,
    /// `cohort replay` for this seed.
    pub replay: String,
    /// The same run spelled out as `cohort simulate` flags.
    pub replay_flags: String,
}

impl SeedOutcome {
    pub fn failed(&self) -> bool {
        self.violations > 0
    }

    fn new(plan: Plan, base: &SimConfig, config: &SimConfig, report: &Report) -> Self {
        let mut invariants: Vec<String> = report
            .violations
            .iter()
            .map(|v| v.invariant.clone())
            .collect();
        invariants.sort();
        invariants.dedup();
        let get = |map: &BTreeMap<Kind, u64>, kind: Kind| map.get(&kind).copied().unwrap_or(0);
        Self {
            plan,
            seed: config.seed,
            violations: report.violations.len(),
            first_violation: report.violations.first().cloned(),
            invariants_violated: invariants,
            attestations_expected: get(&report.expected, Kind::Attestation),
            attestations_accepted: get(&report.accepted, Kind::Attestation),
            proposals_accepted: get(&report.accepted, Kind::Proposal),
            tasks_submitted: report.avs.as_ref().map_or(0, |avs| avs.submitted),
            tasks_signed: report.avs.as_ref().map_or(0, |avs| avs.signed),
            outcome_digest: report.outcome_digest.clone(),
            wall_ms: report.wall_ms,
            replay: replay_command(plan, config.seed, base),
            replay_flags: config.replay_command(),
        }
    }
}

/// The command that replays `(plan, seed)` on `base`'s cluster shape.
pub fn replay_command(plan: Plan, seed: u64, base: &SimConfig) -> String {
    let mut cmd = format!(
        "cargo run --release -p cohort-node -- replay --plan {plan} --seed {seed} --operators {} --validators {} --slots {}",
        base.operators, base.validators, base.slots
    );
    if let Some(bug) = base.injected_bug {
        // Injected bugs exist only in builds with the test hooks.
        cmd = cmd.replacen("-p cohort-node", "-p cohort-node --features test-hooks", 1);
        cmd.push_str(&format!(" --inject-bug {}", bug.name()));
    }
    cmd
}

/// One plan's line of the campaign table.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PlanSummary {
    pub seeds_run: u64,
    pub seeds_failed: u64,
    pub violations_by_invariant: BTreeMap<String, u64>,
    pub attestations_expected: u64,
    pub attestations_accepted: u64,
    pub tasks_submitted: u64,
    pub tasks_signed: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CampaignReport {
    pub operators: usize,
    pub validators: u64,
    pub slots: u64,
    pub plans: BTreeMap<Plan, PlanSummary>,
    /// Every failing seed, with the command that replays it.
    pub failures: Vec<SeedOutcome>,
    pub wall_ms: u64,
    pub seeds_per_minute: f64,
}

/// Runs every `(plan, seed)` on `jobs` threads (each run is its own deterministic runtime, so
/// runs do not share anything but the table). `progress` sees each outcome as it lands.
pub fn campaign(
    plans: &[Plan],
    seeds: &[u64],
    base: &SimConfig,
    jobs: usize,
    progress: impl Fn(&SeedOutcome) + Sync,
) -> CampaignReport {
    let wall = Instant::now();
    let work: Vec<(Plan, u64)> = plans
        .iter()
        .flat_map(|plan| seeds.iter().map(move |seed| (*plan, *seed)))
        .collect();
    let next = AtomicU64::new(0);
    let outcomes = Mutex::new(Vec::with_capacity(work.len()));
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1).min(work.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let at = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some((plan, seed)) = work.get(at).copied() else {
                        break;
                    };
                    let config = plan.config(seed, base);
                    let report = run(&config);
                    let outcome = SeedOutcome::new(plan, base, &config, &report);
                    progress(&outcome);
                    outcomes
                        .lock()
                        .expect("a campaign worker panicked")
                        .push(outcome);
                }
            });
        }
    });
    let mut outcomes = outcomes.into_inner().expect("a campaign worker panicked");
    outcomes.sort_by_key(|o| (o.plan, o.seed));

    let mut plans_summary: BTreeMap<Plan, PlanSummary> = BTreeMap::new();
    for plan in plans {
        plans_summary.entry(*plan).or_default();
    }
    for outcome in &outcomes {
        let summary = plans_summary.entry(outcome.plan).or_default();
        summary.seeds_run += 1;
        summary.attestations_expected += outcome.attestations_expected;
        summary.attestations_accepted += outcome.attestations_accepted;
        summary.tasks_submitted += outcome.tasks_submitted;
        summary.tasks_signed += outcome.tasks_signed;
        if outcome.failed() {
            summary.seeds_failed += 1;
            for invariant in &outcome.invariants_violated {
                *summary
                    .violations_by_invariant
                    .entry(invariant.clone())
                    .or_default() += 1;
            }
        }
    }
    let wall_ms = wall.elapsed().as_millis() as u64;
    CampaignReport {
        operators: base.operators,
        validators: base.validators,
        slots: base.slots,
        plans: plans_summary,
        seeds_per_minute: outcomes.len() as f64 * 60_000.0 / wall_ms.max(1) as f64,
        failures: outcomes.into_iter().filter(SeedOutcome::failed).collect(),
        wall_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Fault;
    use std::collections::BTreeSet;

    #[test]
    fn a_plan_draws_the_same_faults_from_the_same_seed_and_valid_ones_always() {
        let base = SimConfig::default();
        let mut loaded = (0, 0);
        let mut kinds = BTreeSet::new();
        for plan in Plan::ALL {
            for seed in 0..200 {
                let config = plan.config(seed, &base);
                assert_eq!(
                    config.replay_command(),
                    plan.config(seed, &base).replay_command()
                );
                config
                    .validate()
                    .unwrap_or_else(|e| panic!("{plan} seed {seed}: {e}"));
                let f = (config.operators - 1) / 3;
                let operators_lost = config
                    .faults
                    .iter()
                    .filter(|fault| {
                        matches!(
                            fault,
                            Fault::Byzantine(_) | Fault::Crash(_) | Fault::Offline(_)
                        )
                    })
                    .count();
                assert!(operators_lost <= f || plan == Plan::Partition);
                // A faulty performer makes its operator faulty: with the other faulty
                // operators, still at most `f`.
                let performers: BTreeSet<usize> = config
                    .avs
                    .iter()
                    .flat_map(|avs| avs.performer_faults.keys().copied())
                    .collect();
                let faulty: BTreeSet<usize> = config
                    .faults
                    .iter()
                    // A skew within a twelfth of a slot is weather, not a faulty operator.
                    .filter(|fault| !matches!(fault, Fault::ClockSkew(_)))
                    .filter_map(Fault::operator)
                    .chain(performers.iter().copied())
                    .collect();
                assert!(
                    faulty.len() <= f || plan == Plan::Partition,
                    "{plan} seed {seed}"
                );
                match plan {
                    Plan::Avs => {
                        assert!(config.avs.is_some());
                        loaded.0 += 1;
                    }
                    Plan::Mixed => loaded.1 += u32::from(config.avs.is_some()),
                    _ => assert!(config.avs.is_none(), "{plan} seed {seed}"),
                }
                for fault in config
                    .avs
                    .iter()
                    .flat_map(|avs| avs.performer_faults.values())
                {
                    kinds.insert(fault.name());
                }
            }
        }
        // The AVS plan always carries tasks, the mixed one about one run in two; every kind
        // of performer fault is drawn.
        assert_eq!(loaded.0, 200);
        assert!(
            (60..140).contains(&loaded.1),
            "{} of 200 mixed runs",
            loaded.1
        );
        assert_eq!(kinds.len(), 4, "{kinds:?}");
        // Seeds differ: a mixed campaign is not 200 copies of one run.
        let distinct: std::collections::BTreeSet<String> = (0..200)
            .map(|seed| {
                Plan::Mixed
                    .config(seed, &base)
                    .replay_command()
                    .replace(&format!("--seed {seed}"), "")
            })
            .collect();
        assert!(
            distinct.len() > 100,
            "{} distinct mixed runs",
            distinct.len()
        );
    }

    #[test]
    fn plan_names_round_trip_and_unknown_ones_are_refused() {
        for plan in Plan::ALL {
            assert_eq!(Plan::parse(plan.name()), Ok(plan));
        }
        let err = Plan::parse("chaos").unwrap_err();
        assert!(err.contains("mixed"), "{err}");
    }
}
