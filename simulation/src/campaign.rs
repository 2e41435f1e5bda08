//! Fault campaigns: many seeds of one fault plan, each seed drawing its own faults, so that a
//! failure is one `(plan, seed)` pair away from a bit-for-bit replay, and a failing run can be
//! shrunk to the smallest set of faults that still breaks it.

use crate::{
    ClockSkew, Crash, EngineFault, EngineFaultKind, FaultArgs, Partition, PowerCut, Report,
    SimConfig, SourceFault, SourceFaultKind, Violation, run,
};
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    fmt,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// What a campaign throws at the cluster. Every fault a plan draws is explicit in the
/// [`SimConfig`] it returns, so a run replays from `(plan, seed)` or from its flags alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    /// No faults: the baseline every other plan is compared to.
    Calm,
    /// Link latency, jitter and message loss.
    Network,
    /// Up to `f` operators crash at a seed-drawn point and restart with their storage, or not;
    /// one run in three the whole cluster also loses power, unsynced writes cut mid-way.
    Crash,
    /// A group of operators (possibly more than `f`) is cut off for a few slots, then healed.
    Partition,
    /// Up to `f` byzantine operators, each sending well-formed but wrong partial signatures,
    /// flooding every channel with junk and replays, or equivocating in consensus.
    Byzantine,
    /// Operators' clocks reading up to a twelfth of a slot ahead or behind.
    Clock,
    /// Up to `f` execution engines answering SYNCING, hanging or calling payloads INVALID.
    Engine,
    /// Up to `f` beacon nodes answering late or not at all for a few slots.
    Source,
    /// Network faults plus up to `f` faulty operators, each drawn from every kind above, skewed
    /// clocks one run in two, a partition one run in three and a power cut one run in five.
    Mixed,
}

impl Plan {
    pub const ALL: [Plan; 9] = [
        Plan::Calm,
        Plan::Network,
        Plan::Crash,
        Plan::Partition,
        Plan::Byzantine,
        Plan::Clock,
        Plan::Engine,
        Plan::Source,
        Plan::Mixed,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Plan::Calm => "calm",
            Plan::Network => "network",
            Plan::Crash => "crash",
            Plan::Partition => "partition",
            Plan::Byzantine => "byzantine",
            Plan::Clock => "clock",
            Plan::Engine => "engine",
            Plan::Source => "source",
            Plan::Mixed => "mixed",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        Plan::ALL
            .into_iter()
            .find(|plan| plan.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Plan::ALL.iter().map(|p| p.name()).collect();
                format!("plan: unknown `{text}`; one of {}", names.join(", "))
            })
    }

    /// The run this plan draws for `seed`: `base`'s cluster size, validators, slots and slot
    /// length, with faults drawn from the seed (and nothing else).
    pub fn config(&self, seed: u64, base: &SimConfig) -> SimConfig {
        // The shape comes from `base`; every fault from the seed alone.
        let mut config = SimConfig {
            seed,
            operators: base.operators,
            validators: base.validators,
            slots: base.slots,
            slot_duration: base.slot_duration,
            injected_bug: base.injected_bug,
            ..SimConfig::default()
        };
        let mut draw = Draw::new(*self, seed);
        let n = config.operators;
        let f = (n - 1) / 3;
        let slots = config.slots.max(2);
        match self {
            Plan::Calm => {}
            Plan::Network => network(&mut draw, &mut config, true),
            Plan::Crash => {
                for operator in draw.some_operators(n, f) {
                    config.crashes.push(crash(&mut draw, operator, slots));
                }
                if draw.below(3) == 0 {
                    config.power_cut = power_cut(&mut draw, slots);
                }
            }
            Plan::Partition => config.partitions.push(partition(&mut draw, n, slots)),
            Plan::Byzantine => {
                for operator in draw.some_operators(n, f) {
                    byzantine(&mut draw, &mut config, operator);
                }
            }
            Plan::Clock => skews(&mut draw, &mut config),
            Plan::Engine => {
                for operator in draw.some_operators(n, f) {
                    config
                        .engine_faults
                        .push(engine_fault(&mut draw, operator, slots));
                }
            }
            Plan::Source => {
                for operator in draw.some_operators(n, f) {
                    config
                        .source_faults
                        .push(source_fault(&mut draw, operator, slots));
                }
            }
            Plan::Mixed => {
                network(&mut draw, &mut config, false);
                let faulty = draw.below(f as u64 + 1) as usize;
                for operator in draw.operators(n, faulty) {
                    match draw.below(7) {
                        0 | 1 => config.crashes.push(crash(&mut draw, operator, slots)),
                        2 => config
                            .offline
                            .push((operator, Some(1 + draw.below(slots / 2)))),
                        3 | 4 => byzantine(&mut draw, &mut config, operator),
                        5 => config
                            .engine_faults
                            .push(engine_fault(&mut draw, operator, slots)),
                        _ => config
                            .source_faults
                            .push(source_fault(&mut draw, operator, slots)),
                    }
                }
                if draw.below(3) == 0 {
                    config.partitions.push(partition(&mut draw, n, slots));
                }
                if draw.below(2) == 0 {
                    skews(&mut draw, &mut config);
                }
                if draw.below(5) == 0 {
                    config.power_cut = power_cut(&mut draw, slots);
                }
            }
        }
        config.byzantine.sort_unstable();
        config
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Latency 10..150 ms with up to a quarter of it as jitter; loss always (`lossy`) or in one
/// run of four.
fn network(draw: &mut Draw, config: &mut SimConfig, lossy: bool) {
    let latency = 10 + draw.below(141);
    config.latency = Duration::from_millis(latency);
    config.jitter = Duration::from_millis(draw.below(latency / 4 + 1));
    if lossy || draw.below(4) == 0 {
        // 1% to 10% of messages lost, in whole percent so the replay flag is exact.
        config.delivery = (90 + draw.below(10)) as f64 / 100.0;
    }
}

/// A crash in the first two thirds of the run, restarting 1..=10 slots later (within the
/// run), or, one time in four, never.
fn crash(draw: &mut Draw, operator: usize, slots: u64) -> Crash {
    let slot = 1 + draw.below((slots * 2 / 3).max(1));
    let restart = slot + 1 + draw.below(10);
    let restart_slot = (draw.below(4) != 0 && restart < slots).then_some(restart);
    Crash {
        operator,
        slot,
        restart_slot,
    }
}

/// The whole cluster losing power in the first two thirds of the run and coming back 1..=4
/// slots later (within the run), or no cut when the run is too short for one.
fn power_cut(draw: &mut Draw, slots: u64) -> Option<PowerCut> {
    let slot = 1 + draw.below((slots * 2 / 3).max(1));
    let restart_slot = slot + 1 + draw.below(4);
    (restart_slot < slots).then_some(PowerCut { slot, restart_slot })
}

/// One byzantine operator of a kind drawn from the seed.
fn byzantine(draw: &mut Draw, config: &mut SimConfig, operator: usize) {
    match draw.below(3) {
        0 => config.byzantine.push(operator),
        1 => config.noisy.push(operator),
        _ => config.equivocators.push(operator),
    }
}

/// Each operator's clock, one in two, up to a twelfth of a slot (1 s of 12) ahead or behind.
fn skews(draw: &mut Draw, config: &mut SimConfig) {
    let bound = (config.slot_duration.as_millis() / 12) as u64;
    for operator in 0..config.operators {
        if draw.below(2) == 0 {
            let millis = draw.below(2 * bound + 1) as i64 - bound as i64;
            config.skews.push(ClockSkew { operator, millis });
        }
    }
}

/// An engine that syncs or hangs for 1..=6 slots, or (one time in four) calls a payload
/// INVALID, which stops that operator's executor for good.
fn engine_fault(draw: &mut Draw, operator: usize, slots: u64) -> EngineFault {
    let kind = match draw.below(4) {
        0 => EngineFaultKind::Invalid,
        1 => EngineFaultKind::Hang,
        _ => EngineFaultKind::Syncing,
    };
    let (from_slot, to_slot) = window(draw, slots);
    EngineFault {
        operator,
        kind,
        from_slot,
        to_slot,
    }
}

/// A window of 1..=6 slots starting in the first two thirds of the run.
fn window(draw: &mut Draw, slots: u64) -> (u64, u64) {
    let from_slot = 1 + draw.below((slots * 2 / 3).max(1));
    (from_slot, from_slot + 1 + draw.below(6))
}

/// A beacon node answering 0.5..3 s late, or not at all, for 1..=6 slots.
fn source_fault(draw: &mut Draw, operator: usize, slots: u64) -> SourceFault {
    let kind = match draw.below(2) {
        0 => SourceFaultKind::Late(500 + 100 * draw.below(26)),
        _ => SourceFaultKind::Absent,
    };
    let (from_slot, to_slot) = window(draw, slots);
    SourceFault {
        operator,
        kind,
        from_slot,
        to_slot,
    }
}

/// Up to half the cluster cut off, from a slot in the first half of the run, for 1..=8 slots.
fn partition(draw: &mut Draw, n: usize, slots: u64) -> Partition {
    let size = 1 + draw.below((n / 2) as u64) as usize;
    let from_slot = 1 + draw.below((slots / 2).max(1));
    Partition {
        operators: draw.operators(n, size),
        from_slot,
        heal_slot: from_slot + 1 + draw.below(8),
    }
}

/// A stream of numbers drawn from `(plan, seed)` alone (splitmix64), independent of any
/// library's generator so a plan's draws never change under a dependency update.
struct Draw(u64);

impl Draw {
    fn new(plan: Plan, seed: u64) -> Self {
        let salt = plan.name().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        Self(seed ^ salt)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (0 when `bound` is 0).
    fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 { 0 } else { self.next() % bound }
    }

    /// 1..=`f` distinct operators out of `n` (how many drawn first), in ascending order.
    fn some_operators(&mut self, n: usize, f: usize) -> Vec<usize> {
        let count = 1 + self.below(f as u64) as usize;
        self.operators(n, count)
    }

    /// `count` distinct operators out of `n`, in ascending order.
    fn operators(&mut self, n: usize, count: usize) -> Vec<usize> {
        let mut pool: Vec<usize> = (0..n).collect();
        let mut chosen = Vec::new();
        for _ in 0..count.min(n) {
            let at = self.below(pool.len() as u64) as usize;
            chosen.push(pool.swap_remove(at));
        }
        chosen.sort_unstable();
        chosen
    }
}

/// One run that once violated an invariant: kept forever and replayed by CI, so the bug it
/// found stays fixed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CorpusEntry {
    pub plan: Plan,
    pub seed: u64,
    pub operators: usize,
    pub validators: u64,
    pub slots: u64,
    /// The invariant it violated when it was found.
    pub invariant: String,
    /// When and how it was found.
    pub found: String,
    /// The bug it found, in one line.
    pub note: String,
    /// The network and faults the plan drew for the seed when the entry was found, as
    /// `simulate` flags: plans gain new faults over time, and the entry must keep replaying
    /// the run that failed, not whatever the plan draws for its seed today.
    pub faults: String,
}

impl CorpusEntry {
    /// The cluster shape the entry's plan runs on.
    fn base(&self) -> SimConfig {
        SimConfig {
            operators: self.operators,
            validators: self.validators,
            slots: self.slots,
            ..SimConfig::default()
        }
    }

    /// The run this entry replays.
    pub fn config(&self) -> Result<SimConfig, String> {
        let faults = FaultArgs::parse(&self.faults)?;
        Ok(faults.apply(SimConfig {
            seed: self.seed,
            ..self.base()
        }))
    }

    /// The command that replays this entry.
    pub fn replay(&self) -> Result<String, String> {
        self.config().map(|config| config.replay_command())
    }
}

/// Parses a corpus file (a JSON array of [`CorpusEntry`]), refusing entries that could not run.
pub fn parse_corpus(text: &str) -> Result<Vec<CorpusEntry>, String> {
    let entries: Vec<CorpusEntry> =
        serde_json::from_str(text).map_err(|err| format!("corpus: not valid: {err}"))?;
    for entry in &entries {
        entry
            .config()
            .and_then(|config| config.validate())
            .map_err(|err| format!("corpus: {} seed {}: {err}", entry.plan, entry.seed))?;
        if entry.note.trim().is_empty() {
            return Err(format!(
                "corpus: {} seed {} has no note of the bug it found",
                entry.plan, entry.seed
            ));
        }
    }
    Ok(entries)
}

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
        let get = |map: &BTreeMap<String, u64>, key: &str| map.get(key).copied().unwrap_or(0);
        Self {
            plan,
            seed: config.seed,
            violations: report.violations.len(),
            first_violation: report.violations.first().cloned(),
            invariants_violated: invariants,
            attestations_expected: get(&report.expected, "attestation"),
            attestations_accepted: get(&report.accepted, "attestation"),
            proposals_accepted: get(&report.accepted, "proposal"),
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

/// What shrinking a failing run found.
#[derive(Clone, Debug, Serialize)]
pub struct Minimized {
    /// The smallest run found that still violates `invariant`.
    #[serde(skip)]
    pub config: SimConfig,
    /// The same, as `cohort simulate` flags.
    pub config_flags: String,
    pub invariant: String,
    pub first_violation: Violation,
    /// Runs tried while shrinking.
    pub attempts: u64,
}

/// Shrinks a failing run: drops faults one at a time, calms the network and shortens the run
/// while it still violates the same invariant as `config`'s first violation. Returns `None`
/// if `config` does not fail.
pub fn minimize(
    config: &SimConfig,
    mut progress: impl FnMut(&SimConfig, bool),
) -> Option<Minimized> {
    let mut attempts = 1;
    let first = run(config).violations.into_iter().next()?;
    let invariant = first.invariant.clone();
    let mut best = config.clone();
    let mut best_violation = first;
    let mut still_fails = |candidate: &SimConfig, attempts: &mut u64| -> Option<Violation> {
        if candidate.validate().is_err() {
            return None;
        }
        *attempts += 1;
        let found = run(candidate)
            .violations
            .into_iter()
            .find(|v| v.invariant == invariant);
        progress(candidate, found.is_some());
        found
    };
    loop {
        let mut shrunk = false;
        for candidate in smaller(&best) {
            if let Some(violation) = still_fails(&candidate, &mut attempts) {
                best = candidate;
                best_violation = violation;
                shrunk = true;
                break;
            }
        }
        if !shrunk {
            break;
        }
    }
    Some(Minimized {
        config_flags: best.replay_command(),
        config: best,
        invariant: best_violation.invariant.clone(),
        first_violation: best_violation,
        attempts,
    })
}

/// Every run one step smaller than `config`, most promising first: one fault fewer, a calmer
/// network, fewer slots (cut to just past the violation, then halved).
fn smaller(config: &SimConfig) -> Vec<SimConfig> {
    let mut out = Vec::new();
    out.extend(each_without(&config.crashes).map(|crashes| SimConfig {
        crashes,
        ..config.clone()
    }));
    out.extend(each_without(&config.offline).map(|offline| SimConfig {
        offline,
        ..config.clone()
    }));
    out.extend(each_without(&config.byzantine).map(|byzantine| SimConfig {
        byzantine,
        ..config.clone()
    }));
    out.extend(each_without(&config.noisy).map(|noisy| SimConfig {
        noisy,
        ..config.clone()
    }));
    out.extend(
        each_without(&config.equivocators).map(|equivocators| SimConfig {
            equivocators,
            ..config.clone()
        }),
    );
    out.extend(
        each_without(&config.partitions).map(|partitions| SimConfig {
            partitions,
            ..config.clone()
        }),
    );
    out.extend(
        each_without(&config.engine_faults).map(|engine_faults| SimConfig {
            engine_faults,
            ..config.clone()
        }),
    );
    out.extend(
        each_without(&config.source_faults).map(|source_faults| SimConfig {
            source_faults,
            ..config.clone()
        }),
    );
    out.extend(each_without(&config.skews).map(|skews| SimConfig {
        skews,
        ..config.clone()
    }));
    if config.power_cut.is_some() {
        out.push(SimConfig {
            power_cut: None,
            ..config.clone()
        });
    }
    if config.delivery < 1.0 {
        out.push(SimConfig {
            delivery: 1.0,
            ..config.clone()
        });
    }
    if !config.jitter.is_zero() {
        out.push(SimConfig {
            jitter: Duration::ZERO,
            ..config.clone()
        });
    }
    if config.latency != SimConfig::default().latency {
        out.push(SimConfig {
            latency: SimConfig::default().latency,
            ..config.clone()
        });
    }
    // Fewer slots, keeping every fault inside the run.
    let last_fault = config
        .crashes
        .iter()
        .map(|c| c.restart_slot.unwrap_or(c.slot) + 1)
        .chain(config.offline.iter().filter_map(|(_, s)| s.map(|s| s + 1)))
        .chain(config.partitions.iter().map(|p| p.heal_slot + 1))
        .chain(config.engine_faults.iter().map(|f| f.to_slot + 1))
        .chain(config.source_faults.iter().map(|f| f.to_slot + 1))
        .chain(config.power_cut.iter().map(|c| c.restart_slot + 1))
        .max()
        .unwrap_or(1);
    for slots in [config.slots / 2, config.slots * 3 / 4, config.slots - 1] {
        if slots >= last_fault.max(2) && slots < config.slots {
            out.push(SimConfig {
                slots,
                ..config.clone()
            });
        }
    }
    out
}

/// `items` with one element left out, for each element in turn.
fn each_without<T: Clone>(items: &[T]) -> impl Iterator<Item = Vec<T>> + '_ {
    (0..items.len()).map(move |i| {
        let mut fewer = items.to_vec();
        fewer.remove(i);
        fewer
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_draws_the_same_faults_from_the_same_seed_and_valid_ones_always() {
        let base = SimConfig::default();
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
                assert!(
                    config.byzantine.len() + config.crashes.len() + config.offline.len() <= f
                        || plan == Plan::Partition
                );
            }
        }
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

    #[test]
    fn shrinking_steps_are_each_one_fault_or_setting_smaller() {
        let config = SimConfig {
            crashes: vec![Crash {
                operator: 1,
                slot: 3,
                restart_slot: Some(6),
            }],
            byzantine: vec![2],
            delivery: 0.95,
            slots: 40,
            ..SimConfig::default()
        };
        let steps = smaller(&config);
        assert!(
            steps
                .iter()
                .any(|c| c.crashes.is_empty() && c.byzantine == vec![2])
        );
        assert!(
            steps
                .iter()
                .any(|c| c.byzantine.is_empty() && c.crashes.len() == 1)
        );
        assert!(steps.iter().any(|c| c.delivery == 1.0));
        assert!(steps.iter().any(|c| c.slots == 20));
        // Never so short that a fault falls outside the run.
        assert!(steps.iter().all(|c| c.slots >= 7));
    }
}
