//! The deterministic cluster harness: `n` operators, a simulated network, devnet beacons, and
//! invariants checked while the run goes. A run is a function of its [`SimConfig`] (seed
//! included): the same config gives the same `outcome_digest` and runtime audit, bit for bit.

pub mod beacon;
mod bounds;
mod byzantine;
pub mod campaign;
mod counting;
pub mod devnet;
pub mod engine_fault;
pub mod faults;
mod operator;

use beacon::{DevnetChain, Kind};
use cohort_actors::executor::Finalized;
use cohort_actors::runner::cpu::{CpuMeter, CryptoWork};
use cohort_ingress::{
    CommitteeId, DutyTarget, Role, SlotClock,
    keys::{self, ValidatorShare},
    runner::{DutyEvent, SignRequest},
    signing::{self, ForkInfo},
};
use cohort_marshal::PublicKey;
use commonware_cryptography::{Digestible, Hasher, Sha256, Signer as _, ed25519::PrivateKey};
use commonware_p2p::simulated::{self, Link, Network};
use commonware_runtime::{Clock, Runner as _, Spawner as _, Supervisor as _, deterministic};
use commonware_utils::{NZUsize, channel::mpsc, ordered::Set, probability::Probability};
use operator::Observation;
use serde::Serialize;
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, atomic::AtomicU64},
    time::{Duration, Instant, SystemTime},
};

pub use devnet::{DevnetBeacon, DevnetSource};
pub use engine_fault::{EngineFault, EngineFaultKind};
pub use faults::{ClockSkew, FaultArgs, PowerCut, SourceFault, SourceFaultKind};

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
    /// Operators that start late: `(index, Some(slot))` starts at that slot; `None` never starts.
    pub offline: Vec<(usize, Option<u64>)>,
    /// Operators that crash during a slot (at a point drawn from the seed) and restart with
    /// their storage at the start of another slot, or never (`None`).
    pub crashes: Vec<Crash>,
    /// Byzantine operators that send well-formed but wrong partial signatures.
    pub byzantine: Vec<usize>,
    /// Network partitions that cut a group of operators off from the rest, then heal.
    pub partitions: Vec<Partition>,
    /// A deliberately injected bug, to prove campaigns find what they should.
    pub injected_bug: Option<InjectedBug>,
    /// Execution engines that answer SYNCING, hang or call payloads INVALID for a while.
    pub engine_faults: Vec<EngineFault>,
    /// Byzantine operators that flood every channel with malformed, oversized, mutated and
    /// replayed messages besides their honest work.
    pub noisy: Vec<usize>,
    /// Byzantine operators that send a second, conflicting consensus vote for each view.
    pub equivocators: Vec<usize>,
    /// Operators whose clock reads ahead of or behind the cluster's.
    pub skews: Vec<ClockSkew>,
    /// Operators whose beacon node answers late or not at all for a while.
    pub source_faults: Vec<SourceFault>,
    /// Every operator losing power at once, with unsynced writes cut mid-way.
    pub power_cut: Option<PowerCut>,
}

/// Bugs a run can inject on purpose: each must be caught by an invariant within a bounded
/// campaign, which a test checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InjectedBug {
    /// Followers hand every block they vote for to their runner as if it were finalized, so
    /// shares sign values the cluster may later replace.
    DecideOnVerify,
}

impl InjectedBug {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "decide-on-verify" => Ok(Self::DecideOnVerify),
            _ => Err(format!(
                "inject-bug: unknown `{text}`; the only one is decide-on-verify"
            )),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::DecideOnVerify => "decide-on-verify",
        }
    }
}

/// The links between `operators` and everyone else are down from the start of `from_slot` to
/// the start of `heal_slot`; messages sent meanwhile are lost, as on a real partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    pub operators: Vec<usize>,
    pub from_slot: u64,
    pub heal_slot: u64,
}

impl Partition {
    /// Parses `I,J@S-H` (the command-line form).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("partition: expected `I,J@FROM-HEAL` (e.g. `0,1@5-9`), got `{text}`");
        let (group, window) = text.split_once('@').ok_or_else(bad)?;
        let (from, heal) = window.split_once('-').ok_or_else(bad)?;
        let operators = group
            .split(',')
            .map(|i| i.trim().parse::<usize>().map_err(|_| bad()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            operators,
            from_slot: from.trim().parse().map_err(|_| bad())?,
            heal_slot: heal.trim().parse().map_err(|_| bad())?,
        })
    }

    fn flag(&self) -> String {
        let group: Vec<String> = self.operators.iter().map(|i| i.to_string()).collect();
        format!("{}@{}-{}", group.join(","), self.from_slot, self.heal_slot)
    }
}

/// Slots the cluster may take to recover after its last fault heals: a restarted operator
/// catches up through marshal, and each view led by a still-silent leader costs one leader
/// timeout (a slot and two seconds) until simplex skips it.
pub const LIVENESS_SLOTS: u64 = 4;

/// One crash of one operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crash {
    pub operator: usize,
    pub slot: u64,
    pub restart_slot: Option<u64>,
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
            offline: Vec::new(),
            crashes: Vec::new(),
            byzantine: Vec::new(),
            partitions: Vec::new(),
            injected_bug: None,
            engine_faults: Vec::new(),
            noisy: Vec::new(),
            equivocators: Vec::new(),
            skews: Vec::new(),
            source_faults: Vec::new(),
            power_cut: None,
        }
    }
}

impl SimConfig {
    /// Rejects configs the cluster cannot run with a message naming the field.
    pub fn validate(&self) -> Result<(), String> {
        // Any n >= 4 tolerates f = (n - 1) / 3 faults; 4, 7, 10 and 13 waste no operator.
        if self.operators < 4 {
            return Err(format!(
                "operators: need at least 4 (3f+1), got {}",
                self.operators
            ));
        }
        if self.operators > cohort_ingress::MAX_OPERATORS {
            return Err(format!(
                "operators: at most {} supported, got {}",
                cohort_ingress::MAX_OPERATORS,
                self.operators
            ));
        }
        if self.validators == 0 {
            return Err("validators: need at least 1".into());
        }
        if self.slots == 0 {
            return Err("slots: need at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.delivery) {
            return Err(format!(
                "delivery: must be within 0..=1, got {}",
                self.delivery
            ));
        }
        if self.slot_duration < Duration::from_secs(1) {
            return Err("slot_duration: must be at least 1s".into());
        }
        for (index, _) in &self.offline {
            if *index >= self.operators {
                return Err(format!("offline: operator {index} does not exist"));
            }
        }
        for crash in &self.crashes {
            if crash.operator >= self.operators {
                return Err(format!("crash: operator {} does not exist", crash.operator));
            }
            if crash.restart_slot.is_some_and(|r| r <= crash.slot) {
                return Err(format!(
                    "crash: operator {} must restart after the slot it crashes in ({})",
                    crash.operator, crash.slot
                ));
            }
            if self.offline.iter().any(|(i, _)| *i == crash.operator) {
                return Err(format!(
                    "crash: operator {} is already offline; give it one fault",
                    crash.operator
                ));
            }
        }
        for (flag, operators) in [
            ("byzantine", &self.byzantine),
            ("noise", &self.noisy),
            ("equivocate", &self.equivocators),
        ] {
            if let Some(index) = operators.iter().find(|i| **i >= self.operators) {
                return Err(format!("{flag}: operator {index} does not exist"));
            }
        }
        for skew in &self.skews {
            if skew.operator >= self.operators {
                return Err(format!(
                    "clock-skew: operator {} does not exist",
                    skew.operator
                ));
            }
            // Beyond a third of a slot an operator's view of "now" no longer shares an
            // interval with the cluster's; that is a broken node, not a skewed clock.
            if skew.millis.unsigned_abs() as u128 > self.slot_duration.as_millis() / 3 {
                return Err(format!(
                    "clock-skew: {} ms is more than a third of a slot",
                    skew.millis
                ));
            }
        }
        for fault in &self.source_faults {
            if fault.operator >= self.operators {
                return Err(format!(
                    "source-fault: operator {} does not exist",
                    fault.operator
                ));
            }
        }
        for partition in &self.partitions {
            if partition.operators.is_empty() || partition.operators.len() >= self.operators {
                return Err(format!(
                    "partition: `{}` must cut off at least one operator and leave at least one",
                    partition.flag()
                ));
            }
            if let Some(index) = partition.operators.iter().find(|i| **i >= self.operators) {
                return Err(format!("partition: operator {index} does not exist"));
            }
            if partition.heal_slot <= partition.from_slot {
                return Err(format!(
                    "partition: `{}` must heal after it starts",
                    partition.flag()
                ));
            }
        }
        let mut windows: Vec<(u64, u64)> = self
            .partitions
            .iter()
            .map(|p| (p.from_slot, p.heal_slot))
            .collect();
        windows.sort_unstable();
        if windows.windows(2).any(|w| w[1].0 < w[0].1) {
            return Err("partition: partitions must not overlap in time".into());
        }
        for fault in &self.engine_faults {
            if fault.operator >= self.operators {
                return Err(format!(
                    "engine-fault: operator {} does not exist",
                    fault.operator
                ));
            }
        }
        if let Some(cut) = &self.power_cut
            && (cut.restart_slot <= cut.slot || cut.restart_slot >= self.slots)
        {
            return Err(format!(
                "power-cut: `{}` must restart after its slot and before the run ends ({} slots)",
                cut.flag(),
                self.slots
            ));
        }
        let mut crashed: Vec<usize> = self.crashes.iter().map(|c| c.operator).collect();
        crashed.sort_unstable();
        if crashed.windows(2).any(|w| w[0] == w[1]) {
            return Err("crash: at most one crash per operator".into());
        }
        Ok(())
    }

    /// The first slot from which every attestation and proposal is owed: slot 0 when no
    /// operator crashes, starts late or is partitioned (byzantine ones within `f` included),
    /// else [`LIVENESS_SLOTS`] after the last of those faults healed. `None` when the faults that never heal (byzantine, offline
    /// for good, crashed for good) exceed `f`, or when messages are lost all run long.
    pub fn liveness_from(&self) -> Option<u64> {
        if self.delivery < 1.0 {
            return None;
        }
        let f = (self.operators - 1) / 3;
        // Byzantine operators of every kind never heal. A skewed clock is not a fault the
        // cluster is excused for: within a third of a slot it must not cost a duty.
        let mut permanent: BTreeSet<usize> = self
            .byzantine
            .iter()
            .chain(&self.noisy)
            .chain(&self.equivocators)
            .copied()
            .collect();
        // The last slot a fault began or ended in; none means every slot is owed, from 0.
        let mut healed: Option<u64> = None;
        let mut heal = |slot: u64| healed = Some(healed.map_or(slot, |h: u64| h.max(slot)));
        for (index, until) in &self.offline {
            match until {
                Some(slot) => heal(*slot),
                None => {
                    permanent.insert(*index);
                }
            }
        }
        for crash in &self.crashes {
            match crash.restart_slot {
                Some(restart) => heal(restart),
                None => {
                    permanent.insert(crash.operator);
                    heal(crash.slot + 1);
                }
            }
        }
        for partition in &self.partitions {
            heal(partition.heal_slot);
        }
        for fault in &self.engine_faults {
            match fault.kind {
                // An executor that met INVALID for a finalized payload stays stopped.
                EngineFaultKind::Invalid => {
                    permanent.insert(fault.operator);
                    heal(fault.from_slot + 1);
                }
                EngineFaultKind::Syncing | EngineFaultKind::Hang => heal(fault.to_slot),
            }
        }
        for fault in &self.source_faults {
            heal(fault.to_slot);
        }
        if let Some(cut) = &self.power_cut {
            heal(cut.restart_slot);
        }
        // Peers block a noisy or equivocating operator once they see what it sends; until
        // simplex skips a silent leader, each view it leads then costs a leader timeout, as a
        // crash at slot 0 would.
        if !self.noisy.is_empty() || !self.equivocators.is_empty() {
            heal(0);
        }
        if permanent.len() > f {
            return None;
        }
        Some(healed.map_or(0, |slot| slot + LIVENESS_SLOTS))
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
            cmd.push_str(&format!(" --inject-bug {}", bug.name()));
        }
        cmd
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Violation {
    pub invariant: String,
    pub slot: u64,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize, Default, PartialEq)]
pub struct Percentiles {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

/// How leaders got their slots' payloads (see [`Report::prebuild`]).
#[derive(Clone, Debug, Serialize, Default, PartialEq)]
pub struct PrebuildCounts {
    /// The payload pre-built at the previous slot's last interval was still on the head.
    pub hits: u64,
    /// A pre-build existed but the head had moved: rebuilt on the new head.
    pub fallbacks: u64,
    /// No pre-build for the slot (a late start or a restart): built at the slot.
    pub misses: u64,
}

/// See [`Report::crypto_cpu_ms_per_operator_slot`].
#[derive(Clone, Debug, Serialize, Default, PartialEq)]
pub struct CryptoCpu {
    /// Signing with the operator's shares.
    pub sign: f64,
    /// Decoding the peers' partial-signature messages.
    pub decode: f64,
    /// Recovering each validator's signature and verifying it against the validator's key.
    pub recover_and_verify: f64,
    pub total: f64,
}

#[derive(Clone, Debug, Serialize, Default, PartialEq)]
pub struct DutyCounts {
    /// Validator attestation duties scheduled in the run's slots.
    pub scheduled: u64,
    /// Of those, decided in a finalized block of their own slot.
    pub decided: u64,
    pub missed: u64,
    /// Committee duties (one per slot with attesters), the unit of agreement.
    pub committee_scheduled: u64,
    pub committee_decided: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Report {
    pub seed: u64,
    pub operators: usize,
    pub validators: u64,
    pub slots: u64,
    pub finalized_height: u64,
    /// Blocks finalized with no decisions (pacing: about one per idle heartbeat at most).
    pub empty_blocks: u64,
    /// Slots (of the run) with at least one finalized block.
    pub slots_with_block: u64,
    pub duties: DutyCounts,
    /// Simulated time from duty start (runner) to finalization, over every operator.
    pub decide_latency_ms: Percentiles,
    /// Of the decide latency: duty start until the leader built the block deciding it.
    pub block_wait_ms: Percentiles,
    /// Of the decide latency: block built until this operator processed its finalization
    /// (consensus hops, block dissemination, marshal).
    pub consensus_ms: Percentiles,
    /// Signed objects the devnet beacon chain received, per role: distinct objects
    /// submitted, accepted (valid signature), rejected, duplicates; and what the run's slots
    /// scheduled (`expected`).
    pub submitted: BTreeMap<String, u64>,
    pub accepted: BTreeMap<String, u64>,
    pub rejected: BTreeMap<String, u64>,
    pub expected: BTreeMap<String, u64>,
    /// Simulated time from slot start to the beacon chain accepting each object.
    pub submit_latency_ms: Percentiles,
    /// The same by role: attestations are due at one third of the slot and aggregates at two
    /// thirds, so each role is judged against its own deadline.
    pub submit_latency_ms_by_role: BTreeMap<String, Percentiles>,
    /// Signatures each share made after slashing protection allowed them.
    pub share_signatures: u64,
    /// The first rejections the chain logged, if any.
    pub rejections: Vec<String>,
    /// Partial signatures the honest operators found invalid and dropped, by the simulation
    /// index of the operator that sent them (from the runners' `partials_invalid` metric).
    pub invalid_partials_by_operator: BTreeMap<usize, u64>,
    /// The first slot the liveness invariant covered (`None`: the faults did not owe it).
    pub liveness_from: Option<u64>,
    /// Restarts of crashed operators during the run.
    pub restarts: u64,
    /// `(by, peer)`: operator `by` blocked `peer` for a message it sent.
    pub blocked: Vec<(usize, usize)>,
    /// The most any operator held at once in each in-memory collection (`*_held` gauges).
    pub max_held: BTreeMap<String, u64>,
    /// Finalized cluster blocks that carried an execution payload.
    pub execution_blocks: u64,
    /// The lowest finalized execution height among the live operators' engines at the end.
    pub engine_finalized_height: u64,
    /// Each operator's engine's finalized execution height at the end (an operator whose
    /// executor stopped shows where it stopped).
    pub engine_finalized_by_operator: BTreeMap<usize, u64>,
    /// The state root the engines hold at that height (they agree, or `engine_converged` fails).
    pub engine_state_root: String,
    /// Payloads leaders handed to consensus, by how they were built.
    pub prebuild: PrebuildCounts,
    /// Network messages received per live operator per slot, over every channel.
    pub messages_per_operator_per_slot: f64,
    /// Real CPU one live operator's runner spent per slot on its share's cryptography, in
    /// milliseconds of thread CPU time (meaningful in a release build).
    pub crypto_cpu_ms_per_operator_slot: CryptoCpu,
    pub outcome_digest: String,
    /// The deterministic runtime's audit of every event, for bit-for-bit replay checks.
    pub runtime_audit: String,
    pub violations: Vec<Violation>,
    pub replay: String,
    pub wall_ms: u64,
}

fn percentiles(mut values: Vec<u64>) -> Percentiles {
    if values.is_empty() {
        return Percentiles::default();
    }
    values.sort_unstable();
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
        max: at(1.0),
    }
}

/// An attestation a share signed: (source epoch, target epoch, signing root).
type SignedVote = (u64, u64, [u8; 32]);

/// What the checker keeps while the run goes.
#[derive(Default)]
struct Observed {
    /// Per operator: height -> digest, in the order seen.
    chains: BTreeMap<usize, BTreeMap<u64, commonware_cryptography::sha256::Digest>>,
    /// The agreed chain, by height.
    canonical: BTreeMap<u64, Arc<cohort_marshal::Block>>,
    latencies: Vec<u64>,
    /// Duties started and not yet ended, with their start time.
    started: BTreeMap<(usize, cohort_ingress::DutyId), SystemTime>,
    /// Duties runners reported missed.
    missed: BTreeSet<(usize, cohort_ingress::DutyId)>,
    /// Decided duties: (operator, duty) -> start time.
    decided: BTreeMap<(usize, cohort_ingress::DutyId), SystemTime>,
    /// When each block was built by its leader.
    proposed: BTreeMap<commonware_cryptography::sha256::Digest, SystemTime>,
    /// When each operator processed each height.
    processed_at: BTreeMap<(usize, u64), SystemTime>,
    /// Per (operator, validator): attestations signed as (source, target, root), blocks by slot.
    signed_attestations: BTreeMap<(usize, u64), Vec<SignedVote>>,
    signed_blocks: BTreeMap<(usize, u64, u64), [u8; 32]>,
    /// Per (operator, slot): the payload it handed to consensus.
    built: BTreeMap<(usize, u64), cohort_engine::B256>,
    prebuild: PrebuildCounts,
    share_signatures: u64,
    /// The most any operator held at once, by `*_held` gauge.
    max_held: BTreeMap<String, u64>,
    /// `(operator, gauge)` pairs already reported over their bound, so a leak is one violation.
    over_bound: BTreeSet<(usize, String)>,
    violations: Vec<Violation>,
}

impl Observed {
    fn violation(&mut self, invariant: &str, slot: u64, detail: String) {
        self.violations.push(Violation {
            invariant: invariant.into(),
            slot,
            detail,
        });
    }

    fn on_built(
        &mut self,
        operator: usize,
        slot: u64,
        payload_hash: cohort_engine::B256,
        outcome: cohort_actors::executor::BuildOutcome,
    ) {
        use cohort_actors::executor::BuildOutcome;
        match outcome {
            BuildOutcome::Hit => self.prebuild.hits += 1,
            BuildOutcome::Fallback => self.prebuild.fallbacks += 1,
            BuildOutcome::Miss => self.prebuild.misses += 1,
            BuildOutcome::Repeat => {}
        }
        match self.built.insert((operator, slot), payload_hash) {
            Some(earlier) if earlier != payload_hash => self.violation(
                "one_payload_per_slot",
                slot,
                format!(
                    "operator {operator} handed out payloads {earlier} and {payload_hash} for slot {slot}"
                ),
            ),
            _ => {}
        }
    }

    /// No in-memory collection grows without bound: every `*_held` gauge stays within a bound
    /// set by the cluster's shape alone.
    fn on_held(&mut self, encoded: &str, validators: u64, operators: u64, slot_now: u64) {
        for (operator, name, value) in bounds::held(encoded) {
            let max = self.max_held.entry(name.clone()).or_default();
            *max = (*max).max(value);
            let bound = bounds::bound(&name, validators, operators);
            if bound.is_some_and(|bound| value <= bound)
                || !self.over_bound.insert((operator, name.clone()))
            {
                continue;
            }
            let detail = match bound {
                Some(bound) => {
                    format!("operator {operator}'s {name} is {value}, over its bound {bound}")
                }
                None => {
                    format!("operator {operator}'s {name} has no bound in simulation/src/bounds.rs")
                }
            };
            self.violation("bounded_in_memory_state", slot_now, detail);
        }
    }

    /// A crashed operator's running duties end with it; they are not owed an outcome.
    fn on_crash(&mut self, operator: usize) {
        self.started.retain(|(o, _), _| *o != operator);
    }

    fn on_block(&mut self, operator: usize, finalized: Finalized, slot_now: u64) {
        let block = finalized.block;
        let height = block.height;
        self.processed_at
            .entry((operator, height))
            .or_insert(finalized.at);
        let digest = block.digest();
        let chain = self.chains.entry(operator).or_default();
        let previous = chain.get(&height).copied();
        let last = chain.last_key_value().map(|(h, _)| *h);
        chain.insert(height, previous.unwrap_or(digest));
        if let Some(previous) = previous {
            if previous != digest {
                self.violation(
                    "no_two_finalized_blocks_at_one_height",
                    slot_now,
                    format!("operator {operator} finalized two blocks at height {height}"),
                );
            }
            return;
        }
        if let Some(last) = last
            && height != last + 1
        {
            self.violation(
                "finalized_in_order",
                slot_now,
                format!("operator {operator} finalized height {height} after {last}"),
            );
        }
        match self.canonical.get(&height) {
            Some(existing) if existing.digest() != digest => self.violation(
                "same_finalized_chain",
                slot_now,
                format!("operator {operator} finalized another block at height {height}"),
            ),
            Some(_) => {}
            None => {
                self.canonical.insert(height, block);
            }
        }
    }

    /// No share signs two conflicting things: a double vote, a surround vote, two blocks in
    /// one slot.
    fn on_signed(&mut self, operator: usize, requests: Vec<SignRequest>, slot_now: u64) {
        for request in requests {
            self.share_signatures += 1;
            match request {
                SignRequest::Attestation {
                    validator_index,
                    source_epoch,
                    target_epoch,
                    signing_root,
                } => {
                    let history = self
                        .signed_attestations
                        .entry((operator, validator_index))
                        .or_default();
                    for (source, target, root) in history.iter() {
                        let double = *target == target_epoch && *root != signing_root;
                        let surround = (source_epoch < *source && target_epoch > *target)
                            || (source_epoch > *source && target_epoch < *target);
                        if double || surround {
                            let what = if double {
                                "double vote"
                            } else {
                                "surround vote"
                            };
                            let detail = format!(
                                "operator {operator}'s share of validator {validator_index} signed a {what}: ({source_epoch}, {target_epoch}) after ({source}, {target})"
                            );
                            self.violations.push(Violation {
                                invariant: "no_conflicting_signatures".into(),
                                slot: slot_now,
                                detail,
                            });
                        }
                    }
                    if !history
                        .iter()
                        .any(|(s, t, r)| (*s, *t, *r) == (source_epoch, target_epoch, signing_root))
                    {
                        history.push((source_epoch, target_epoch, signing_root));
                    }
                }
                SignRequest::Block {
                    validator_index,
                    slot,
                    signing_root,
                } => {
                    let previous = self
                        .signed_blocks
                        .insert((operator, validator_index, slot), signing_root);
                    if previous.is_some_and(|root| root != signing_root) {
                        self.violation(
                            "no_conflicting_signatures",
                            slot_now,
                            format!(
                                "operator {operator}'s share of validator {validator_index} signed two blocks for slot {slot}"
                            ),
                        );
                    }
                }
            }
        }
    }

    fn on_duty(&mut self, operator: usize, event: DutyEvent, slot_now: u64) {
        match event {
            DutyEvent::Started { duty, at } => {
                self.started.insert((operator, duty), at);
            }
            DutyEvent::Decided { duty, latency } => {
                // Latency of agreement is the committee duty's: proposer and aggregator values
                // wait on purpose (pre-consensus, two thirds of the slot).
                if duty.role == Role::Committee {
                    self.latencies.push(latency.as_millis() as u64);
                }
                if let Some(at) = self.started.get(&(operator, duty.clone())) {
                    self.decided.insert((operator, duty), *at);
                }
            }
            DutyEvent::Finished { duty, .. } => {
                self.started.remove(&(operator, duty));
            }
            DutyEvent::Submitted { .. } => {}
            DutyEvent::Signed { requests } => self.on_signed(operator, requests, slot_now),
            DutyEvent::Missed { duty } => {
                self.started.remove(&(operator, duty.clone()));
                self.missed.insert((operator, duty));
            }
        }
    }
}

/// Where in its slot an operator crashes: drawn from the seed, anywhere in the slot.
fn crash_offset(seed: u64, operator: usize, slot: u64, slot_duration: Duration) -> Duration {
    let digest = Sha256::hash(&[
        b"crash",
        &seed.to_le_bytes(),
        &(operator as u64).to_le_bytes(),
        &slot.to_le_bytes(),
    ]);
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest.as_ref()[..8]);
    let millis = slot_duration.as_millis().max(1) as u64;
    Duration::from_millis(u64::from_le_bytes(bytes) % millis)
}

/// Runs one simulation to completion and reports what happened.
pub fn run(config: &SimConfig) -> Report {
    let wall = Instant::now();
    let runtime = deterministic::Config::new()
        .with_seed(config.seed)
        .with_timeout(None);
    let outcome = match config.power_cut {
        None => {
            let config = config.clone();
            deterministic::Runner::new(runtime)
                .start(|context| async move { simulate(context, config, Stage::Whole).await })
        }
        Some(_) => {
            // Unsynced writes keep a seed-drawn half of their bytes when the power goes.
            let storage = deterministic::FaultConfig::default().write(deterministic::WriteConfig {
                failure_rate: Probability::from_f64(0.0).expect("0 is a probability"),
                retention_rate: Probability::from_f64(0.5).expect("0.5 is a probability"),
                mode: deterministic::PartialWriteMode::Subset,
            });
            let before = config.clone();
            let (outcome, checkpoint) =
                deterministic::Runner::new(runtime.with_storage_fault_config(storage))
                    .start_and_recover(|context| async move {
                        simulate(context, before, Stage::UntilCut).await
                    });
            let carried = match outcome {
                Outcome::Cut(carried) => carried,
                done @ Outcome::Done(_) => return finish(done, wall),
            };
            let after = config.clone();
            deterministic::Runner::from(checkpoint).start(|context| async move {
                simulate(context, after, Stage::AfterCut(carried)).await
            })
        }
    };
    finish(outcome, wall)
}

fn finish(outcome: Outcome, wall: Instant) -> Report {
    let mut report = match outcome {
        Outcome::Done(report) => *report,
        // Only the stage before a power cut stops at it, and `run` restarts after that one.
        Outcome::Cut(_) => unreachable!("a run stopped at its power cut after restarting"),
    };
    report.wall_ms = wall.elapsed().as_millis() as u64;
    report
}

/// Which part of a run one runtime plays: all of it, or the part before or after a power cut
/// (two runtimes, the second recovered from the first's storage).
enum Stage {
    Whole,
    UntilCut,
    AfterCut(Box<Carried>),
}

/// What outlives a power cut: the checker's record and the world outside the cluster. Nothing
/// here may hold a runtime context, or the first runtime refuses to stop.
struct Carried {
    genesis: SystemTime,
    observed: Observed,
    chain: DevnetChain,
    received: Arc<AtomicU64>,
    cpu: CpuMeter,
    restarts: u64,
}

enum Outcome {
    Cut(Box<Carried>),
    Done(Box<Report>),
}

async fn simulate(context: deterministic::Context, config: SimConfig, stage: Stage) -> Outcome {
    let n = config.operators;
    let keys: Vec<PrivateKey> = (0..n).map(|i| PrivateKey::from_seed(i as u64)).collect();
    let participants: Set<PublicKey> = Set::from_iter_dedup(keys.iter().map(|k| k.public_key()));
    let committee = CommitteeId::new((1..=n as u64).collect()).expect("3f+1 operators fit");
    // Operators boot one slot before genesis, as a real cluster starts before its chain does:
    // the first views (and any dead first leader's timeout) pass before slot 0's duties.
    let (carried, until_cut) = match stage {
        Stage::Whole => (None, false),
        Stage::UntilCut => (None, true),
        Stage::AfterCut(carried) => (Some(*carried), false),
    };
    let genesis = carried
        .as_ref()
        .map_or(context.current() + config.slot_duration, |c| c.genesis);
    let clock = SlotClock {
        genesis,
        slot_duration: config.slot_duration,
        intervals_per_slot: 3,
        slots_per_epoch: 32,
        skew_ms: 0,
    };

    let max_size = cohort_operator::max_message_size(n as u32, config.validators as usize);

    // Every validator's interop key split t-of-n; operator i holds the share at its position
    // in the participant set (the order consensus and the runner use).
    let mut rng = commonware_utils::TestRng::new(config.seed);
    let mut per_operator: Vec<BTreeMap<u64, ValidatorShare>> = vec![BTreeMap::new(); n];
    for validator in 0..config.validators {
        let split = keys::split_interop(&mut rng, validator, n as u32)
            .expect("interop keys are non-zero and 1 <= t <= n");
        for (position, shares) in per_operator.iter_mut().enumerate() {
            if let Some(share) = split.for_operator(position) {
                shares.insert(validator, share);
            }
        }
    }
    let per_operator: Vec<Arc<BTreeMap<u64, ValidatorShare>>> =
        per_operator.into_iter().map(Arc::new).collect();
    let fork = ForkInfo::devnet();
    let chain_clock = Arc::new(context.child("chain"));
    let chain_now = Arc::new(move || chain_clock.current());
    let chain = match &carried {
        Some(carried) => {
            carried.chain.set_clock(chain_now);
            carried.chain.clone()
        }
        None => DevnetChain::new(
            DevnetBeacon::new(config.seed, 0, config.validators, clock),
            fork,
            chain_now,
        ),
    };
    let (network, oracle) = Network::new_with_peers(
        context.child("network"),
        simulated::Config {
            max_size: max_size as u32,
            max_peers_per_set: NZUsize!(n),
            disconnect_on_block: true,
            tracked_peer_sets: NZUsize!(1),
        },
        participants.iter().cloned(),
    )
    .await;
    network.start();
    let link = Link {
        latency: config.latency,
        jitter: config.jitter,
        success_rate: Probability::from_f64(config.delivery)
            .unwrap_or(Probability::from_f64(1.0).expect("1.0 is a probability")),
    };
    for a in participants.iter() {
        for b in participants.iter() {
            if a != b {
                oracle
                    .add_link(a.clone(), b.clone(), link.clone())
                    .await
                    .expect("links between distinct peers are accepted");
            }
        }
    }

    // Partitions: cut the group's links both ways at the start of a slot, restore them later.
    for partition in config.partitions.clone() {
        let group: Vec<PublicKey> = partition
            .operators
            .iter()
            .map(|i| keys[*i].public_key())
            .collect();
        let rest: Vec<PublicKey> = participants
            .iter()
            .filter(|p| !group.contains(p))
            .cloned()
            .collect();
        let oracle = oracle.clone();
        let link = link.clone();
        context.child("partition").spawn(move |context| async move {
            context
                .sleep_until(clock.slot_start(partition.from_slot))
                .await;
            for a in &group {
                for b in &rest {
                    // A link that is already down stays down; nothing to undo.
                    let _ = oracle.remove_link(a.clone(), b.clone()).await;
                    let _ = oracle.remove_link(b.clone(), a.clone()).await;
                }
            }
            context
                .sleep_until(clock.slot_start(partition.heal_slot))
                .await;
            for a in &group {
                for b in &rest {
                    let _ = oracle.add_link(a.clone(), b.clone(), link.clone()).await;
                    let _ = oracle.add_link(b.clone(), a.clone(), link.clone()).await;
                }
            }
        });
    }

    let (observations, mut observed_receiver) = mpsc::unbounded_channel();
    let received = carried
        .as_ref()
        .map_or_else(|| Arc::new(AtomicU64::new(0)), |c| c.received.clone());
    let cpu = carried.as_ref().map_or_else(
        || CpuMeter::new(Arc::new(thread_cpu_time)),
        |c| c.cpu.clone(),
    );
    let heartbeat = cohort_operator::Pacing::of(&clock).heartbeat;
    let leader_timeout = cohort_operator::Pacing::of(&clock).leader_timeout;
    // The checker learns of crashes in band, so it never waits on a crashed runner's duties.
    let (crash_sender, mut crash_receiver) = mpsc::unbounded_channel::<usize>();

    let offline: BTreeMap<usize, Option<u64>> = config.offline.iter().cloned().collect();
    let crashes: BTreeMap<usize, Crash> = config.crashes.iter().map(|c| (c.operator, *c)).collect();
    let restarts = Arc::new(AtomicU64::new(carried.as_ref().map_or(0, |c| c.restarts)));
    // After a power cut every life starts from storage, and none before power is back.
    let back = carried
        .as_ref()
        .and(config.power_cut)
        .map(|cut| clock.slot_start(cut.restart_slot));
    let engines: operator::Engines = Default::default();
    let taps = byzantine::Taps::new(config.noisy.iter().map(|i| keys[*i].public_key()));
    for (index, key) in keys.iter().enumerate() {
        let skew_ms = config
            .skews
            .iter()
            .filter(|s| s.operator == index)
            .map(|s| s.millis)
            .sum();
        let setup = operator::OperatorSetup {
            index,
            key: key.clone(),
            participants: participants.clone(),
            committee: committee.clone(),
            clock: SlotClock { skew_ms, ..clock },
            seed: config.seed,
            validators: config.validators,
            heartbeat,
            leader_timeout,
            observations: observations.clone(),
            received: received.clone(),
            shares: per_operator[participants
                .position(&key.public_key())
                .expect("every operator is a participant")]
            .clone(),
            chain: chain.clone(),
            fork,
            fault: config
                .byzantine
                .contains(&index)
                .then_some(cohort_actors::runner::Fault::WrongPartials),
            cpu: cpu.clone(),
            injected_bug: config.injected_bug,
            engines: engines.clone(),
            engine_faults: config
                .engine_faults
                .iter()
                .filter(|f| f.operator == index)
                .copied()
                .collect(),
            source_faults: config
                .source_faults
                .iter()
                .filter(|f| f.operator == index)
                .copied()
                .collect(),
            noisy: config.noisy.contains(&index),
            equivocates: config.equivocators.contains(&index),
            taps: taps.clone(),
            max_message_size: max_size,
        };
        // Each life of an operator: (start, crash) times. Storage outlives every life.
        let mut lives: Vec<(SystemTime, Option<SystemTime>)> = Vec::new();
        match (offline.get(&index), crashes.get(&index)) {
            (Some(None), _) => continue,
            (Some(Some(slot)), _) => lives.push((clock.slot_start(*slot), None)),
            (None, Some(crash)) => {
                let offset = crash_offset(config.seed, index, crash.slot, config.slot_duration);
                lives.push((genesis, Some(clock.slot_start(crash.slot) + offset)));
                if let Some(restart) = crash.restart_slot {
                    lives.push((clock.slot_start(restart), None));
                }
            }
            (None, None) => lives.push((genesis, None)),
        }
        if let Some(back) = back {
            lives.retain(|(_, crash_at)| crash_at.is_none_or(|at| at > back));
            for (start, _) in lives.iter_mut() {
                *start = (*start).max(back);
            }
        }
        let oracle = oracle.clone();
        let crash_sender = crash_sender.clone();
        let restarts = restarts.clone();
        let engines = engines.clone();
        context
            .child("lifecycle")
            .with_attribute("operator", index)
            .spawn(move |context| async move {
                for (life, (start, crash_at)) in lives.into_iter().enumerate() {
                    context.sleep_until(start).await;
                    if life > 0 || back.is_some() {
                        restarts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    let setup = setup.clone();
                    let oracle = oracle.clone();
                    let operator = context.child("operator").spawn(move |context| async move {
                        let _handles = operator::start(context, &oracle, setup).await;
                        futures::future::pending::<()>().await;
                    });
                    match crash_at {
                        Some(at) => {
                            context.sleep_until(at).await;
                            // Aborting the operator's task aborts every task it spawned.
                            operator.abort();
                            let _ = operator.await;
                            // The engine's storage must be closed before the next life opens it.
                            if let Ok(mut engines) = engines.lock() {
                                engines.remove(&index);
                            }
                            let _ = crash_sender.send(index);
                        }
                        None => {
                            let _ = operator.await;
                        }
                    }
                }
            });
    }
    drop(observations);

    // Check invariants slot by slot while the cluster runs; one extra slot lets the last
    // slot's decisions finalize.
    let (mut observed, first_slot) = match carried {
        Some(carried) => {
            let mut observed = carried.observed;
            // Whatever ran when the power went ended with it; nothing of it is owed.
            for operator in 0..n {
                observed.on_crash(operator);
            }
            let cut = config.power_cut.map_or(0, |cut| cut.slot);
            (observed, cut)
        }
        None => (Observed::default(), 0),
    };
    let cut_at = config.power_cut.filter(|_| until_cut).map(|cut| {
        let offset = crash_offset(config.seed, usize::MAX, cut.slot, config.slot_duration);
        (cut.slot, clock.slot_start(cut.slot) + offset)
    });
    for slot in first_slot..=config.slots {
        match cut_at {
            Some((cut_slot, at)) if slot == cut_slot => context.sleep_until(at).await,
            _ => context.sleep_until(clock.slot_start(slot + 1)).await,
        }
        while let Ok((operator, observation)) = observed_receiver.try_recv() {
            match observation {
                Observation::Finalized(block) => observed.on_block(operator, block, slot),
                Observation::Duty(event) => observed.on_duty(operator, event, slot),
                Observation::Proposed(digest, at) => {
                    observed.proposed.entry(digest).or_insert(at);
                }
                Observation::Built {
                    slot: built_slot,
                    payload_hash,
                    outcome,
                } => observed.on_built(operator, built_slot, payload_hash, outcome),
            }
        }
        while let Ok(operator) = crash_receiver.try_recv() {
            observed.on_crash(operator);
        }
        observed.on_held(
            &commonware_runtime::Metrics::encode(&context),
            config.validators,
            n as u64,
            slot,
        );
        if cut_at.is_some_and(|(cut_slot, _)| slot == cut_slot) {
            // The power goes: hand the record on, holding nothing of this runtime.
            if let Ok(mut engines) = engines.lock() {
                engines.clear();
            }
            chain.set_clock(Arc::new(|| SystemTime::UNIX_EPOCH));
            return Outcome::Cut(Box::new(Carried {
                genesis,
                observed,
                chain,
                received,
                cpu,
                restarts: restarts.load(std::sync::atomic::Ordering::Relaxed),
            }));
        }
    }

    // An operator whose engine misbehaved learns decisions late (syncing, hanging) or never
    // (its executor stopped on INVALID): its own view of duties in that window is excused.
    let duty_window = 1
        + cohort_ingress::committee::MAX_BLOCK_AGE_SLOTS
        + cohort_actors::runner::POST_CONSENSUS_SLOTS;
    let engine_excused = |operator: &usize, duty: &cohort_ingress::DutyId| {
        config.engine_faults.iter().any(|f| {
            f.operator == *operator
                && duty.slot + duty_window >= f.from_slot
                && (f.kind == EngineFaultKind::Invalid || duty.slot <= f.to_slot + 1)
        })
    };
    // Every duty a runner started in the run's slots ended decided or reported missed.
    let open: Vec<String> = observed
        .started
        .keys()
        .filter(|(operator, duty)| !engine_excused(operator, duty))
        .filter(|(_, duty)| {
            // A decided duty may wait for post-consensus partials this long after its
            // slot's blocks stop; only duties whose every deadline passed owe an outcome.
            duty.slot
                + 1
                + cohort_ingress::committee::MAX_BLOCK_AGE_SLOTS
                + cohort_actors::runner::POST_CONSENSUS_SLOTS
                < config.slots
        })
        .map(|(operator, duty)| format!("operator {operator}: {duty}"))
        .collect();
    for duty in open {
        observed.violation(
            "duty_outcome_reported",
            config.slots,
            format!("{duty} has no outcome"),
        );
    }

    // Duties: what the devnet scheduled versus what the agreed chain decided in its slot.
    let beacon = DevnetBeacon::new(config.seed, 0, config.validators, clock);
    // The run observes one extra slot, whose duties may be decided but are not counted.
    let epochs = clock.epoch_of(config.slots);
    let mut attesters_by_slot: BTreeMap<u64, u64> = BTreeMap::new();
    for epoch in 0..=epochs {
        for duty in beacon.duties(epoch) {
            if duty.slot <= config.slots {
                *attesters_by_slot.entry(duty.slot).or_default() += 1;
            }
        }
    }
    let mut decided_slots: BTreeSet<u64> = BTreeSet::new();
    let mut decided_duties: BTreeSet<cohort_ingress::DutyId> = BTreeSet::new();
    let mut empty_blocks = 0;
    let mut slots_with_block = BTreeSet::new();
    let canonical: Vec<_> = observed.canonical.values().cloned().collect();
    for block in &canonical {
        if block.height == 0 {
            continue;
        }
        slots_with_block.insert(block.slot);
        if block.decisions.is_empty() {
            empty_blocks += 1;
        }
        for decision in &block.decisions {
            let duty = &decision.duty;
            let slot = duty.slot;
            let epoch = clock.epoch_of(slot);
            let scheduled = match (&duty.role, &duty.target) {
                (Role::Committee, DutyTarget::Committee(c)) => {
                    *c == committee && attesters_by_slot.contains_key(&slot)
                }
                (Role::Proposer, DutyTarget::Validator(v)) => beacon.proposer(slot) == *v,
                (Role::Aggregator, DutyTarget::Validator(v)) => {
                    *v < config.validators && beacon.attester_slot(epoch, *v) == slot
                }
                _ => false,
            };
            if !scheduled || slot != block.slot {
                observed.violation(
                    "only_scheduled_duties_decided",
                    block.slot,
                    format!(
                        "height {} decides {} which was not scheduled for its slot",
                        block.height, decision.duty
                    ),
                );
            }
            if slot >= config.slots {
                continue;
            }
            if !decided_duties.insert(duty.clone()) {
                observed.violation(
                    "duty_decided_once",
                    block.slot,
                    format!(
                        "{} decided a second time at height {}",
                        decision.duty, block.height
                    ),
                );
            }
            if duty.role == Role::Committee {
                decided_slots.insert(slot);
            }
        }
    }
    attesters_by_slot.retain(|slot, _| *slot < config.slots);
    // A runner that ran since genesis reports what the cluster did: never "missed" for a duty
    // the agreed chain decided.
    // A partitioned operator cannot learn in time what the others decided: for a duty whose
    // window a partition overlapped, it is excused if it was cut off or left without a quorum.
    let threshold = n - (n - 1) / 3;
    let cut_off = |operator: &usize, duty: &cohort_ingress::DutyId| {
        config.partitions.iter().any(|p| {
            let overlaps = p.from_slot
                <= duty.slot + 1 + cohort_ingress::committee::MAX_BLOCK_AGE_SLOTS
                && p.heal_slot > duty.slot;
            let no_quorum = n - p.operators.len() < threshold;
            overlaps && (p.operators.contains(operator) || no_quorum)
        })
    };
    let engine_stopped = |operator: &usize| {
        config
            .engine_faults
            .iter()
            .any(|f| f.operator == *operator && f.kind == EngineFaultKind::Invalid)
    };
    // A byzantine operator's own actors are honest code, but its peers may block it for what
    // it sends: what it learns of the cluster's duties and chain is not owed to anyone.
    let byzantine = |operator: &usize| {
        config.byzantine.contains(operator)
            || config.noisy.contains(operator)
            || config.equivocators.contains(operator)
    };
    let always_up = |operator: &usize| {
        !byzantine(operator)
            && !offline.contains_key(operator)
            && !crashes.contains_key(operator)
            && !engine_stopped(operator)
    };
    // A power cut restarts every runner: one whose clock is behind starts, after the restart,
    // duties of the slot before it that the cluster already finalized, and never sees their
    // decision again. Like a crashed operator's, its word on duties around the cut is excused.
    let around_power_cut = |duty: &cohort_ingress::DutyId| {
        config
            .power_cut
            .is_some_and(|cut| duty.slot + duty_window >= cut.slot && duty.slot <= cut.restart_slot)
    };
    let wrong: Vec<String> = observed
        .missed
        .iter()
        .filter(|(operator, duty)| {
            always_up(operator)
                && !around_power_cut(duty)
                && !cut_off(operator, duty)
                && !engine_excused(operator, duty)
                && decided_duties.contains(duty)
        })
        .map(|(operator, duty)| format!("operator {operator} reported {duty} missed"))
        .collect();
    for detail in wrong {
        observed.violation("runner_outcome_matches_chain", config.slots, detail);
    }

    // What the beacon chain saw, against what the run's slots scheduled.
    let chain_report = chain.report();
    for conflict in &chain_report.conflicts {
        observed.violation("no_conflicting_signatures", config.slots, conflict.clone());
    }
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    expected.insert(
        Kind::Attestation.as_str().into(),
        attesters_by_slot.values().sum(),
    );
    expected.insert(Kind::Proposal.as_str().into(), config.slots);
    let mut aggregators = 0;
    for epoch in 0..=epochs {
        for duty in beacon.duties(epoch) {
            if duty.slot >= config.slots {
                continue;
            }
            let proof = keys::sign(
                &keys::interop_secret(duty.validator_index),
                &signing::compute_signing_root(
                    signing::slot_root(duty.slot),
                    fork.domain(signing::DOMAIN_SELECTION_PROOF),
                ),
            );
            let mut bytes = [0u8; 96];
            bytes.copy_from_slice(&commonware_codec::Encode::encode(&proof)[..96]);
            if signing::is_aggregator(duty.committee_length, &bytes) {
                aggregators += 1;
            }
        }
    }
    expected.insert(Kind::Aggregate.as_str().into(), aggregators);
    let in_run = |objects: &[(Kind, u64, u64)], kind: Kind| {
        objects
            .iter()
            .filter(|(k, slot, _)| *k == kind && *slot < config.slots)
            .count() as u64
    };
    let mut submitted = BTreeMap::new();
    let mut accepted = BTreeMap::new();
    let mut rejected = BTreeMap::new();
    for kind in [Kind::Attestation, Kind::Proposal, Kind::Aggregate] {
        let stats = chain_report.stats.get(&kind).cloned().unwrap_or_default();
        submitted.insert(
            kind.as_str().to_string(),
            in_run(&chain_report.submitted, kind),
        );
        accepted.insert(
            kind.as_str().to_string(),
            in_run(&chain_report.accepted, kind),
        );
        rejected.insert(kind.as_str().to_string(), stats.rejected);
    }
    // Shares sign only what the cluster finalized: every attestation and block a share signed
    // is the value of a decision on the agreed chain (signing on anything less, a notarized
    // block say, could sign a value the cluster later replaces).
    let mut finalized_attestation_roots: BTreeSet<[u8; 32]> = BTreeSet::new();
    let mut finalized_block_roots: BTreeMap<u64, [u8; 32]> = BTreeMap::new();
    for block in &canonical {
        for decision in &block.decisions {
            match &decision.value {
                cohort_ingress::DecidedValue::Attestation(data) => {
                    finalized_attestation_roots.insert(fork.attestation_signing_root(data));
                }
                cohort_ingress::DecidedValue::Block(header) => {
                    finalized_block_roots.insert(header.slot, fork.block_signing_root(header));
                }
                cohort_ingress::DecidedValue::Aggregate(_) => {}
            }
        }
    }
    let mut unfinalized = Vec::new();
    for ((operator, validator), history) in &observed.signed_attestations {
        for (source, target, root) in history {
            if !finalized_attestation_roots.contains(root) {
                unfinalized.push(format!(
                    "operator {operator}'s share of validator {validator} signed an attestation \
                     ({source}, {target}) whose data no finalized block decided"
                ));
            }
        }
    }
    for ((operator, validator, slot), root) in &observed.signed_blocks {
        if finalized_block_roots.get(slot) != Some(root) {
            unfinalized.push(format!(
                "operator {operator}'s share of validator {validator} signed a block for slot \
                 {slot} that no finalized block decided"
            ));
        }
    }
    for detail in unfinalized {
        observed.violation("signed_only_finalized", config.slots, detail);
    }

    // Liveness: once every fault healed (and at most f never heal), every attestation and
    // proposal of a slot is accepted again within a bounded number of slots.
    let liveness_from = config.liveness_from();
    if let Some(from) = liveness_from {
        let mut attested: BTreeMap<u64, u64> = BTreeMap::new();
        let mut proposed: BTreeSet<u64> = BTreeSet::new();
        for (kind, slot, _) in &chain_report.accepted {
            match kind {
                Kind::Attestation => *attested.entry(*slot).or_default() += 1,
                Kind::Proposal => {
                    proposed.insert(*slot);
                }
                Kind::Aggregate => {}
            }
        }
        for slot in from..config.slots {
            let owed = attesters_by_slot.get(&slot).copied().unwrap_or(0);
            let got = attested.get(&slot).copied().unwrap_or(0);
            if got < owed || !proposed.contains(&slot) {
                observed.violation(
                    "liveness_after_heal",
                    slot,
                    format!(
                        "slot {slot}: {got} of {owed} attestations and {} of 1 proposal accepted, \
                         though liveness is owed from slot {from}",
                        u64::from(proposed.contains(&slot)),
                    ),
                );
            }
        }
    }
    let scheduled: u64 = attesters_by_slot.values().sum();
    let decided: u64 = attesters_by_slot
        .iter()
        .filter(|(slot, _)| decided_slots.contains(slot))
        .map(|(_, count)| count)
        .sum();

    // Execution: the finalized chain carries at most one payload per slot, and every live
    // engine's finalized block is on it with the state root the payload claims.
    let mut payload_at: BTreeMap<u64, (cohort_engine::B256, cohort_engine::B256, u64)> =
        BTreeMap::new();
    let mut payload_slots = BTreeSet::new();
    for block in &canonical {
        if let Some(payload) = &block.payload {
            let inner = &payload.payload_inner.payload_inner;
            payload_at.insert(
                inner.block_number,
                (inner.block_hash, inner.state_root, block.slot),
            );
            if !payload_slots.insert(block.slot) {
                observed.violation(
                    "one_payload_per_slot",
                    block.slot,
                    format!(
                        "the finalized chain has two payloads for slot {}",
                        block.slot
                    ),
                );
            }
        }
    }
    let genesis_root = cohort_engine::ops::State::default().root();
    // Engines must have caught up with what was finalized a slot before the end when
    // liveness is owed at all.
    let settled = payload_at
        .iter()
        .rev()
        .find(|(_, (_, _, slot))| *slot + 1 < config.slots)
        .map(|(number, _)| *number)
        .unwrap_or(0);
    let live_at_end = |operator: &usize| {
        !matches!(offline.get(operator), Some(None))
            && crashes
                .get(operator)
                .is_none_or(|crash| crash.restart_slot.is_some_and(|r| r < config.slots))
    };
    let engine_handles: Vec<_> = engines
        .lock()
        .map(|engines| engines.clone().into_iter().collect())
        .unwrap_or_default();
    let mut engine_finalized_height = u64::MAX;
    let mut engine_finalized_by_operator = BTreeMap::new();
    for (operator, engine) in engine_handles {
        let (tip, root) = engine.finalized().await;
        engine_finalized_by_operator.insert(operator, tip.number);
        if !live_at_end(&operator) || engine_stopped(&operator) {
            continue;
        }
        engine_finalized_height = engine_finalized_height.min(tip.number);
        let expected = if tip.number == 0 {
            Some((operator::execution_genesis().hash, genesis_root))
        } else {
            payload_at
                .get(&tip.number)
                .map(|(hash, root, _)| (*hash, *root))
        };
        if expected != Some((tip.hash, root)) {
            observed.violation(
                "engine_converged",
                config.slots,
                format!(
                    "operator {operator}'s engine finalized {} at number {} with state root {root}, \
                     the finalized chain has {expected:?}",
                    tip.hash, tip.number
                ),
            );
        }
        if liveness_from.is_some() && !byzantine(&operator) && tip.number < settled {
            observed.violation(
                "engine_converged",
                config.slots,
                format!(
                    "operator {operator}'s engine finalized number {} at the end, behind {settled}",
                    tip.number
                ),
            );
        }
    }
    if engine_finalized_height == u64::MAX {
        engine_finalized_height = 0;
    }
    let engine_state_root = payload_at
        .get(&engine_finalized_height)
        .map(|(_, root, _)| *root)
        .unwrap_or(genesis_root);

    let mut hasher_input = Vec::new();
    for (height, block) in &observed.canonical {
        hasher_input.extend_from_slice(&height.to_be_bytes());
        hasher_input.extend_from_slice(block.digest().as_ref());
    }
    let outcome_digest = Sha256::hash(&[&hasher_input]);

    // Split each decided duty's latency into waiting for a block and consensus.
    let mut block_of: BTreeMap<cohort_ingress::DutyId, &cohort_marshal::Block> = BTreeMap::new();
    for block in &canonical {
        for decision in &block.decisions {
            block_of.insert(decision.duty.clone(), block);
        }
    }
    let mut waits = Vec::new();
    let mut consensus = Vec::new();
    for ((operator, duty), started) in &observed.decided {
        if duty.role != Role::Committee {
            continue;
        }
        let Some(block) = block_of.get(duty) else {
            continue;
        };
        let (Some(proposed), Some(processed)) = (
            observed.proposed.get(&block.digest()),
            observed.processed_at.get(&(*operator, block.height)),
        ) else {
            continue;
        };
        let ms = |later: &SystemTime, earlier: &SystemTime| {
            later
                .duration_since(*earlier)
                .unwrap_or_default()
                .as_millis() as u64
        };
        waits.push(ms(proposed, started));
        consensus.push(ms(processed, proposed));
    }
    let live = n - offline.values().filter(|o| o.is_none()).count();

    // The runners' own count of invalid partials, by sender (share index + 1 in the label).
    let mut by_position: BTreeMap<usize, usize> = BTreeMap::new();
    for (index, key) in keys.iter().enumerate() {
        if let Some(position) = participants.position(&key.public_key()) {
            by_position.insert(position, index);
        }
    }
    // Who blocked whom for what it sent: only byzantine operators may ever be blocked.
    let index_of = |key: &PublicKey| keys.iter().position(|k| k.public_key() == *key);
    let mut blocked: Vec<(usize, usize)> = oracle
        .blocked()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|(by, peer)| Some((index_of(by)?, index_of(peer)?)))
        .collect();
    blocked.sort_unstable();
    for (by, peer) in &blocked {
        if !byzantine(peer) {
            observed.violation(
                "honest_operators_never_blocked",
                config.slots,
                format!("operator {by} blocked honest operator {peer}"),
            );
        }
    }
    let mut invalid_partials_by_operator: BTreeMap<usize, u64> = BTreeMap::new();
    for line in commonware_runtime::Metrics::encode(&context).lines() {
        if line.starts_with('#') || !line.contains("partials_invalid_total{") {
            continue;
        }
        let operator = line
            .split("sender=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|id| id.parse::<usize>().ok());
        let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let (Some(operator), Some(value)) = (operator, value)
            && let Some(index) = operator.checked_sub(1).and_then(|p| by_position.get(&p))
        {
            *invalid_partials_by_operator.entry(*index).or_default() += value as u64;
        }
    }

    Outcome::Done(Box::new(Report {
        seed: config.seed,
        operators: n,
        validators: config.validators,
        slots: config.slots,
        finalized_height: observed.canonical.keys().last().copied().unwrap_or(0),
        empty_blocks,
        slots_with_block: slots_with_block
            .iter()
            .filter(|s| **s < config.slots)
            .count() as u64,
        duties: DutyCounts {
            scheduled,
            decided,
            missed: scheduled - decided,
            committee_scheduled: attesters_by_slot.len() as u64,
            committee_decided: decided_slots.len() as u64,
        },
        decide_latency_ms: percentiles(observed.latencies),
        block_wait_ms: percentiles(waits),
        consensus_ms: percentiles(consensus),
        submitted,
        accepted,
        rejected,
        expected,
        submit_latency_ms: percentiles(
            chain_report
                .submit_latencies_ms
                .values()
                .flatten()
                .copied()
                .collect(),
        ),
        submit_latency_ms_by_role: chain_report
            .submit_latencies_ms
            .iter()
            .map(|(kind, latencies)| (kind.as_str().to_string(), percentiles(latencies.clone())))
            .collect(),
        share_signatures: observed.share_signatures,
        rejections: chain_report.rejections.clone(),
        invalid_partials_by_operator,
        liveness_from,
        restarts: restarts.load(std::sync::atomic::Ordering::Relaxed),
        blocked,
        max_held: observed.max_held,
        execution_blocks: payload_at.len() as u64,
        engine_finalized_height,
        engine_finalized_by_operator,
        engine_state_root: engine_state_root.to_string(),
        prebuild: observed.prebuild.clone(),
        messages_per_operator_per_slot: received.load(std::sync::atomic::Ordering::Relaxed) as f64
            / (live.max(1) as f64 * config.slots as f64),
        crypto_cpu_ms_per_operator_slot: {
            let per = |spent: Duration| {
                spent.as_secs_f64() * 1000.0 / (live.max(1) as f64 * config.slots.max(1) as f64)
            };
            CryptoCpu {
                sign: per(cpu.spent(CryptoWork::Sign)),
                decode: per(cpu.spent(CryptoWork::Decode)),
                recover_and_verify: per(cpu.spent(CryptoWork::Recover)),
                total: per(cpu.total()),
            }
        },
        outcome_digest: outcome_digest.to_string(),
        runtime_audit: context.auditor().state(),
        violations: observed.violations,
        replay: config.replay_command(),
        wall_ms: 0,
    }))
}

/// CPU time of the calling thread: the deterministic runtime runs every actor on it, so this is
/// what the cryptography costs, whatever else the machine is doing.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; the call only writes into it.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if result != 0 {
        return Duration::ZERO;
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}
