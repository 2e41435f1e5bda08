//! What a run is: the cluster's shape, its network, its faults, and what the faults excuse.
//!
//! The checker and the liveness bound both ask the configuration what a fault excuses, so the
//! excuses live here, next to the faults they come from.

use crate::{
    engine_fault::{EngineFault, EngineFaultKind},
    faults::{ClockSkew, Crash, Fault, Loss, Offline, Partition, PowerCut},
    source_fault::SourceFault,
};
use cohort_ingress::DutyId;
use serde::Serialize;
use std::{collections::BTreeSet, time::Duration};

/// Slots the cluster may take to recover after its last fault heals: a restarted operator
/// catches up through marshal, and each view led by a still-silent leader costs one leader
/// timeout (a slot and two seconds) until simplex skips it.
pub const LIVENESS_SLOTS: u64 = 4;

/// Transfers per slot of a run's transaction load unless told otherwise.
pub const DEFAULT_TRANSACTIONS_PER_SLOT: u32 = 4;

/// The slots a duty may still change after its own: the block-age window and post-consensus.
const DUTY_WINDOW: u64 = 1
    + cohort_ingress::committee::MAX_BLOCK_AGE_SLOTS
    + cohort_actors::runner::POST_CONSENSUS_SLOTS;

/// One simulation run's inputs.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub operators: usize,
    pub validators: u64,
    pub slots: u64,
    /// Mean one-way link latency.
    pub latency: Duration,
    pub jitter: Duration,
    /// Probability that a message is delivered.
    pub delivery: f64,
    pub slot_duration: Duration,
    /// Everything the run does to the cluster besides its network.
    pub faults: Vec<Fault>,
    /// A deliberately injected bug, to prove campaigns find what they should.
    pub injected_bug: Option<InjectedBug>,
    /// A lone crash keeps a seed-drawn prefix of each blob's unsynced writes, the last one
    /// possibly torn (`simulation/src/disk.rs`); off (`--no-crash-cut`), it keeps none of them,
    /// as the runtime alone does.
    pub crash_cut: bool,
    /// A cluster-run AVS and its task load (`None`: the cluster runs no AVS).
    pub avs: Option<crate::avs::AvsLoad>,
    /// Every operator's beacon node sees each slot's head block this long into the slot
    /// (`None`: a seed-drawn time per operator and slot, 0 to 6 s, some one head behind).
    pub head_at: Option<Duration>,
    /// Transfers the simulated wallet signs and offers each slot (`--transactions-per-slot`).
    pub transactions_per_slot: u32,
    /// Simulated time the deterministic executor advances after each round in which it polled
    /// ready tasks (`--cycle-us`). A task woken by another runs in the next round, so every
    /// hop along a chain of tasks costs one cycle: at the default 1 ms, a path through a few
    /// dozen tasks spends tens of milliseconds of simulated time on hops that take
    /// microseconds on a real runtime. Shorter cycles model them more closely and run more
    /// rounds. Work inside a task costs no simulated time at any cycle; `crypto_cost` charges
    /// the runners' cryptography.
    pub cycle: Duration,
    /// What each item of the runners' cryptography costs in simulated time
    /// (`--crypto-cost-us`): a runner sleeps for it before the signatures or submissions the
    /// work produced leave, as one busy core would hold them (`None`: it costs no simulated
    /// time, only the real CPU the report measures).
    pub crypto_cost: Option<cohort_actors::runner::cpu::CryptoCost>,
}

/// The deterministic executor's default round (`commonware_runtime::deterministic::Config`).
pub const DEFAULT_CYCLE: Duration = Duration::from_millis(1);

/// The longest round a run may take: beyond it, link delays and timers of a few milliseconds
/// would be rounded to whole rounds.
pub const MAX_CYCLE: Duration = Duration::from_millis(10);

/// Why a run cannot be run, naming the field or flag at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("operators: need at least 4 (3f+1), got {0}")]
    TooFewOperators(usize),
    #[error("operators: at most {max} supported, got {got}")]
    TooManyOperators { max: usize, got: usize },
    #[error("validators: need at least 1")]
    NoValidators,
    #[error("slots: need at least 1")]
    NoSlots,
    #[error("delivery: must be within 0..=1, got {0}")]
    Delivery(f64),
    #[error("slot_duration: must be at least 1s")]
    SlotTooShort,
    #[error("cycle-us: must be within 1..={max_us} microseconds, got {got_us}")]
    Cycle { got_us: u128, max_us: u128 },
    #[error("head-at-ms: {at_ms} ms is not within the slot ({slot_ms} ms)")]
    HeadAfterSlot { at_ms: u64, slot_ms: u64 },
    #[error("{flag}: operator {operator} does not exist")]
    NoSuchOperator { flag: &'static str, operator: usize },
    #[error("{flag}: {reason}")]
    InvalidFault { flag: &'static str, reason: String },
    #[error("crash: operator {0} is already offline; give it one fault")]
    CrashOfOffline(usize),
    #[error("crash: at most one crash per operator")]
    TwoCrashes,
    #[error("partition: partitions must not overlap in time")]
    OverlappingPartitions,
    #[error("power-cut: at most one power cut per run")]
    TwoPowerCuts,
    #[error("loss: loss windows must not overlap in time")]
    OverlappingLoss,
}

/// Bugs a run can inject on purpose: each must be caught by an invariant within a bounded
/// campaign, which a test checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InjectedBug {
    /// Followers hand every block they vote for to their runner as if it were finalized, so
    /// shares sign values the cluster may later replace.
    DecideOnVerify,
    /// Every operator's slashing-protection record acknowledges its syncs without making its
    /// writes durable (as a store opened with syncing off), so partial signatures leave with
    /// records a crash can lose.
    UnsyncedSlashing,
}

impl InjectedBug {
    /// Parses a bug's name; a build without the `test-hooks` feature (every release build of
    /// the node) has none to inject and says how to get them.
    pub fn parse(text: &str) -> Result<Self, String> {
        if !Self::AVAILABLE {
            return Err(format!(
                "inject-bug `{text}`: this build has no test hooks; build with `--features \
                 test-hooks` (e.g. `cargo run -p cohort-node --features test-hooks -- ...`)"
            ));
        }
        match text {
            "decide-on-verify" => Ok(Self::DecideOnVerify),
            "unsynced-slashing" => Ok(Self::UnsyncedSlashing),
            _ => Err(format!(
                "inject-bug: unknown `{text}`; one of decide-on-verify, unsynced-slashing"
            )),
        }
    }

    /// Whether this build can inject bugs at all.
    pub const AVAILABLE: bool = cfg!(feature = "test-hooks");

    pub fn name(&self) -> &'static str {
        match self {
            Self::DecideOnVerify => "decide-on-verify",
            Self::UnsyncedSlashing => "unsynced-slashing",
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 7,
            operators: 4,
            validators: 64,
            slots: 64,
            latency: Duration::from_millis(50),
            jitter: Duration::from_millis(5),
            delivery: 1.0,
            slot_duration: Duration::from_secs(12),
            faults: Vec::new(),
            injected_bug: None,
            crash_cut: true,
            avs: None,
            head_at: None,
            transactions_per_slot: DEFAULT_TRANSACTIONS_PER_SLOT,
            cycle: DEFAULT_CYCLE,
            crypto_cost: None,
        }
    }
}

impl SimConfig {
    /// Rejects configs the cluster cannot run with a message naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // Any n >= 4 tolerates f = (n - 1) / 3 faults; 4, 7, 10 and 13 waste no operator.
        if self.operators < 4 {
            return Err(ConfigError::TooFewOperators(self.operators));
        }
        if self.operators > cohort_ingress::MAX_OPERATORS {
            return Err(ConfigError::TooManyOperators {
                max: cohort_ingress::MAX_OPERATORS,
                got: self.operators,
            });
        }
        if self.validators == 0 {
            return Err(ConfigError::NoValidators);
        }
        if self.slots == 0 {
            return Err(ConfigError::NoSlots);
        }
        if !(0.0..=1.0).contains(&self.delivery) {
            return Err(ConfigError::Delivery(self.delivery));
        }
        if self.slot_duration < Duration::from_secs(1) {
            return Err(ConfigError::SlotTooShort);
        }
        if self.cycle < Duration::from_micros(1) || self.cycle > MAX_CYCLE {
            return Err(ConfigError::Cycle {
                got_us: self.cycle.as_micros(),
                max_us: MAX_CYCLE.as_micros(),
            });
        }
        if let Some(at) = self.head_at
            && at >= self.slot_duration
        {
            return Err(ConfigError::HeadAfterSlot {
                at_ms: at.as_millis() as u64,
                slot_ms: self.slot_duration.as_millis() as u64,
            });
        }
        let mut faults: Vec<&Fault> = self.faults.iter().collect();
        faults.sort_by_key(|fault| fault.flag_order());
        for fault in faults {
            fault.validate(self)?;
        }
        for crash in self.crashes() {
            if self.offline().any(|o| o.operator == crash.operator) {
                return Err(ConfigError::CrashOfOffline(crash.operator));
            }
        }
        let mut windows: Vec<(u64, u64)> = self
            .partitions()
            .map(|p| (p.from_slot, p.heal_slot))
            .collect();
        windows.sort_unstable();
        if windows.windows(2).any(|w| w[1].0 < w[0].1) {
            return Err(ConfigError::OverlappingPartitions);
        }
        let mut crashed: Vec<usize> = self.crashes().map(|c| c.operator).collect();
        crashed.sort_unstable();
        if crashed.windows(2).any(|w| w[0] == w[1]) {
            return Err(ConfigError::TwoCrashes);
        }
        if let Some(avs) = &self.avs {
            if avs.tasks_per_slot == 0 {
                return Err(ConfigError::InvalidFault {
                    flag: "avs-performer-fault",
                    reason: "needs --avs-tasks-per-slot (the run has no AVS)".into(),
                });
            }
            for operator in avs.performer_faults.keys() {
                if *operator >= self.operators {
                    return Err(ConfigError::NoSuchOperator {
                        flag: "avs-performer-fault",
                        operator: *operator,
                    });
                }
            }
            if avs.performer_faults.len() > self.tolerated_faults() {
                return Err(ConfigError::InvalidFault {
                    flag: "avs-performer-fault",
                    reason: format!(
                        "{} faulty performers, but {} operators tolerate at most {}",
                        avs.performer_faults.len(),
                        self.operators,
                        self.tolerated_faults()
                    ),
                });
            }
        }
        if self.power_cuts().nth(1).is_some() {
            return Err(ConfigError::TwoPowerCuts);
        }
        let mut windows: Vec<(u64, u64)> =
            self.losses().map(|l| (l.from_slot, l.heal_slot)).collect();
        windows.sort_unstable();
        if windows.windows(2).any(|w| w[1].0 < w[0].1) {
            return Err(ConfigError::OverlappingLoss);
        }
        Ok(())
    }

    /// The largest number of operators the cluster tolerates losing.
    pub fn tolerated_faults(&self) -> usize {
        (self.operators - 1) / 3
    }

    /// The first slot from which every attestation and proposal is owed: slot 0 when no
    /// operator crashes, starts late or is partitioned (byzantine ones within `f` included),
    /// else [`LIVENESS_SLOTS`] after the last of those faults healed. `None` when the faults
    /// that never heal (byzantine, offline for good, crashed for good, an executor stopped on
    /// INVALID) exceed `f`, or when messages are lost all run long (`delivery` below 1; a loss
    /// window heals like any other fault).
    pub fn liveness_from(&self) -> Option<u64> {
        if self.delivery < 1.0 {
            return None;
        }
        let healings: Vec<_> = self.faults.iter().map(Fault::healing).collect();
        let lost: BTreeSet<usize> = healings.iter().filter_map(|h| h.lost).collect();
        if lost.len() > self.tolerated_faults() {
            return None;
        }
        // The last slot a fault began or ended in; none means every slot is owed, from 0.
        let settled = healings.iter().filter_map(|h| h.settled).max();
        Some(settled.map_or(0, |slot| slot + LIVENESS_SLOTS))
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        let mut cmd = format!(
            "cargo run --release -p cohort-node -- simulate --operators {} --validators {} --slots {} --seed {} {}",
            self.operators,
            self.validators,
            self.slots,
            self.seed,
            self.fault_flags()
        );
        if let Some(bug) = self.injected_bug {
            // Injected bugs exist only in builds with the test hooks.
            cmd = cmd.replacen("-p cohort-node", "-p cohort-node --features test-hooks", 1);
            cmd.push_str(&format!(" --inject-bug {}", bug.name()));
        }
        cmd
    }
}

/// Each kind of fault, as the cluster and the checker look them up.
impl SimConfig {
    pub fn offline(&self) -> impl Iterator<Item = &Offline> {
        self.faults.iter().filter_map(|fault| match fault {
            Fault::Offline(offline) => Some(offline),
            _ => None,
        })
    }

    pub fn crashes(&self) -> impl Iterator<Item = &Crash> {
        self.faults.iter().filter_map(|fault| match fault {
            Fault::Crash(crash) => Some(crash),
            _ => None,
        })
    }

    pub fn partitions(&self) -> impl Iterator<Item = &Partition> {
        self.faults.iter().filter_map(|fault| match fault {
            Fault::Partition(partition) => Some(partition),
            _ => None,
        })
    }

    pub fn losses(&self) -> impl Iterator<Item = &Loss> {
        self.faults.iter().filter_map(|fault| match fault {
            Fault::Loss(loss) => Some(loss),
            _ => None,
        })
    }

    pub fn engine_faults(&self) -> impl Iterator<Item = &EngineFault> {
        self.faults.iter().filter_map(|fault| match fault {
            Fault::Engine(engine) => Some(engine),
            _ => None,
        })
    }

    pub fn source_faults(&self) -> impl Iterator<Item = &SourceFault> {
        self.faults.iter().filter_map(|fault| match fault {
            Fault::Source(source) => Some(source),
            _ => None,
        })
    }

    pub fn skews(&self) -> impl Iterator<Item = &ClockSkew> {
        self.faults.iter().filter_map(|fault| match fault {
            Fault::ClockSkew(skew) => Some(skew),
            _ => None,
        })
    }

    fn power_cuts(&self) -> impl Iterator<Item = &PowerCut> {
        self.faults.iter().filter_map(|fault| match fault {
            Fault::PowerCut(cut) => Some(cut),
            _ => None,
        })
    }

    /// The power cut, if the run has one (it has at most one).
    pub fn power_cut(&self) -> Option<PowerCut> {
        self.power_cuts().next().copied()
    }

    /// Operators that send well-formed but wrong partial signatures.
    pub fn sends_wrong_partials(&self, operator: usize) -> bool {
        self.faults.contains(&Fault::Byzantine(operator))
    }

    /// Operators that flood every channel with junk besides their honest work.
    pub fn is_noisy(&self, operator: usize) -> bool {
        self.faults.contains(&Fault::Noise(operator))
    }

    /// Operators that send a conflicting twin of their consensus votes.
    pub fn equivocates(&self, operator: usize) -> bool {
        self.faults.contains(&Fault::Equivocate(operator))
    }

    /// Operators that propose harmful values whenever they lead.
    pub fn leads_harmfully(&self, operator: usize) -> bool {
        self.faults.contains(&Fault::ByzantineLeader(operator))
    }

    /// Operators that flood their peers with partial signatures built for decoding work.
    pub fn floods_partials(&self, operator: usize) -> bool {
        self.faults.contains(&Fault::ByzantineFlood(operator))
    }

    /// Operators that never start.
    pub fn never_starts(&self, operator: usize) -> bool {
        self.offline()
            .any(|o| o.operator == operator && o.start_slot.is_none())
    }
}

/// What the faults excuse: an operator's word on a duty it could not know the truth of is not
/// held against the cluster.
impl SimConfig {
    /// An operator whose engine misbehaved learns decisions late (syncing, hanging) or never
    /// (its executor stopped on INVALID): its own view of duties in that window is excused.
    pub fn engine_excused(&self, operator: usize, duty: &DutyId) -> bool {
        self.engine_faults().any(|f| {
            f.operator == operator
                && duty.slot + DUTY_WINDOW >= f.from_slot
                && (f.kind == EngineFaultKind::Invalid || duty.slot <= f.to_slot + 1)
        })
    }

    /// A partitioned operator cannot learn in time what the others decided: for a duty whose
    /// window a partition overlapped, it is excused if it was cut off or left without a quorum.
    pub fn cut_off(&self, operator: usize, duty: &DutyId) -> bool {
        self.cut_off_by(operator, duty).next().is_some()
    }

    /// The partitions that cut `operator` off from `duty` (see [`Self::cut_off`]).
    fn cut_off_by<'a>(
        &'a self,
        operator: usize,
        duty: &'a DutyId,
    ) -> impl Iterator<Item = &'a Partition> + 'a {
        let n = self.operators;
        let threshold = n - self.tolerated_faults();
        self.partitions().filter(move |p| {
            let overlaps = p.from_slot
                <= duty.slot + 1 + cohort_ingress::committee::MAX_BLOCK_AGE_SLOTS
                && p.heal_slot > duty.slot;
            let no_quorum = n - p.operators.len() < threshold;
            overlaps && (p.operators.contains(&operator) || no_quorum)
        })
    }

    /// A cut-off operator reports a duty missed, and hears the cluster's decision once the
    /// partition heals and marshal catches it up: only a partition that heals too late for
    /// that before the run ends excuses a "missed" the chain contradicts.
    pub fn cut_off_to_the_end(&self, operator: usize, duty: &DutyId) -> bool {
        self.cut_off_by(operator, duty)
            .any(|p| p.heal_slot + LIVENESS_SLOTS >= self.slots)
    }

    /// An operator whose executor met INVALID for a finalized payload and stopped for good.
    pub fn engine_stopped(&self, operator: usize) -> bool {
        self.engine_faults()
            .any(|f| f.operator == operator && f.kind == EngineFaultKind::Invalid)
    }

    /// A byzantine operator's own actors are honest code, but its peers may block it for what
    /// it sends: what it learns of the cluster's duties and chain is not owed to anyone.
    pub fn is_byzantine(&self, operator: usize) -> bool {
        self.faults
            .iter()
            .any(|f| f.is_byzantine() && f.operator() == Some(operator))
    }

    /// An operator that ran since genesis, honest and with its executor running: it must report
    /// what the cluster did. A crash or power cut is no excuse: a restarted runner learns from
    /// its executor what blocks processed before the restart decided, and from marshal what was
    /// decided while it was down.
    pub fn owes_true_outcomes(&self, operator: usize) -> bool {
        !self.is_byzantine(operator)
            && !self.offline().any(|o| o.operator == operator)
            && !self.engine_stopped(operator)
    }

    /// Whether the operator runs when the run ends: started at some point and not crashed for
    /// good (a crash restarting after the last slot counts as for good).
    pub fn live_at_end(&self, operator: usize) -> bool {
        !self.never_starts(operator)
            && self
                .crashes()
                .filter(|crash| crash.operator == operator)
                .all(|crash| crash.restart_slot.is_some_and(|r| r < self.slots))
    }
}

#[cfg(test)]
mod injected_bug_tests {
    /// Item 7 of issue 21: the "decide on verify" bug exists only in builds with the
    /// `test-hooks` feature (this crate's own tests build without it, as the node's release
    /// binary does); before, every build could switch it on.
    #[test]
    fn bugs_can_be_injected_only_in_builds_with_test_hooks() {
        assert_eq!(
            super::InjectedBug::parse("decide-on-verify").is_ok(),
            cfg!(feature = "test-hooks")
        );
    }
}
