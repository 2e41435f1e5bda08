//! The deterministic cluster harness: `n` operators, a simulated network, devnet beacons, and
//! invariants checked while the run goes. A run is a function of its [`SimConfig`] (seed
//! included): the same config gives the same `outcome_digest` and runtime audit, bit for bit.

mod counting;
pub mod devnet;
mod operator;

use cohort_actors::executor::Finalized;
use cohort_ingress::{CommitteeId, DutyTarget, SlotClock, runner::DutyEvent};
use cohort_marshal::{BlockCfg, PublicKey, Scheme};
use commonware_cryptography::{Digestible, Hasher, Sha256, Signer as _, ed25519::PrivateKey};
use commonware_p2p::simulated::{self, Link, Network};
use commonware_runtime::{Clock, Runner as _, Spawner as _, Supervisor as _, deterministic};
use commonware_utils::{NZUsize, channel::mpsc, ordered::Set, probability::Probability};
use serde::Serialize;
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, atomic::AtomicU64},
    time::{Duration, Instant},
};

pub use devnet::{DevnetBeacon, DevnetSource};

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
        }
    }
}

impl SimConfig {
    /// Rejects configs the cluster cannot run with a message naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if ![4, 7, 10, 13].contains(&self.operators) && self.operators < 4 {
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
        Ok(())
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        let mut cmd = format!(
            "cargo run --release -p cohort-node -- simulate --operators {} --validators {} --slots {} --seed {} --latency-ms {} --jitter-ms {} --delivery {}",
            self.operators,
            self.validators,
            self.slots,
            self.seed,
            self.latency.as_millis(),
            self.jitter.as_millis(),
            self.delivery
        );
        for (index, until) in &self.offline {
            match until {
                Some(slot) => cmd.push_str(&format!(" --offline {index}@{slot}")),
                None => cmd.push_str(&format!(" --offline {index}")),
            }
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
    /// Simulated time from one third of the slot (the planned committee start) to finalization.
    pub messages_per_operator_per_slot: f64,
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
    }
}

/// What the checker keeps while the run goes.
#[derive(Default)]
struct Observed {
    /// Per operator: height -> digest, in the order seen.
    chains: BTreeMap<usize, BTreeMap<u64, commonware_cryptography::sha256::Digest>>,
    /// The agreed chain, by height.
    canonical: BTreeMap<u64, Arc<cohort_marshal::Block>>,
    latencies: Vec<u64>,
    started: BTreeMap<(usize, cohort_ingress::DutyId), ()>,
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

    fn on_block(&mut self, operator: usize, finalized: Finalized, slot_now: u64) {
        let block = finalized.block;
        let height = block.height;
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

    fn on_duty(&mut self, operator: usize, event: DutyEvent) {
        match event {
            DutyEvent::Started { duty, .. } => {
                self.started.insert((operator, duty), ());
            }
            DutyEvent::Decided { duty, latency } => {
                self.started.remove(&(operator, duty));
                self.latencies.push(latency.as_millis() as u64);
            }
            DutyEvent::Missed { duty } => {
                self.started.remove(&(operator, duty));
            }
        }
    }
}

/// Runs one simulation to completion and reports what happened.
pub fn run(config: &SimConfig) -> Report {
    let wall = Instant::now();
    let runtime = deterministic::Runner::new(
        deterministic::Config::new()
            .with_seed(config.seed)
            .with_timeout(None),
    );
    let config = config.clone();
    let mut report = runtime.start(|context| async move { simulate(context, config).await });
    report.wall_ms = wall.elapsed().as_millis() as u64;
    report
}

async fn simulate(context: deterministic::Context, config: SimConfig) -> Report {
    let n = config.operators;
    let keys: Vec<PrivateKey> = (0..n).map(|i| PrivateKey::from_seed(i as u64)).collect();
    let participants: Set<PublicKey> = Set::from_iter_dedup(keys.iter().map(|k| k.public_key()));
    let committee = CommitteeId::new((1..=n as u64).collect()).expect("3f+1 operators fit");
    let genesis = context.current() + Duration::from_secs(1);
    let clock = SlotClock {
        genesis,
        slot_duration: config.slot_duration,
        intervals_per_slot: 3,
        slots_per_epoch: 32,
    };

    let block_cfg = BlockCfg::default();
    let max_size = cohort_marshal::max_message_size(n as u32, &block_cfg).max(
        commonware_consensus::simplex::max_payload_size::<Scheme, cohort_marshal::Digest>(n as u32),
    );
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

    let (finalized_sender, mut finalized_receiver) = mpsc::unbounded_channel();
    let (duty_sender, mut duty_receiver) = mpsc::unbounded_channel();
    let received = Arc::new(AtomicU64::new(0));
    // Leaders wait up to one slot for work; views time out two seconds after that.
    let heartbeat = config.slot_duration;
    let leader_timeout = config.slot_duration + Duration::from_secs(2);

    let offline: BTreeMap<usize, Option<u64>> = config.offline.iter().cloned().collect();
    for (index, key) in keys.iter().enumerate() {
        let setup = operator::OperatorSetup {
            index,
            key: key.clone(),
            participants: participants.clone(),
            committee: committee.clone(),
            clock,
            seed: config.seed,
            validators: config.validators,
            heartbeat,
            leader_timeout,
            finalized: finalized_sender.clone(),
            duty_events: duty_sender.clone(),
            received: received.clone(),
        };
        let operator_context = context.child("operator").with_attribute("index", index);
        match offline.get(&index) {
            None => {
                operator::start(operator_context, &oracle, setup).await;
            }
            Some(None) => {}
            Some(Some(slot)) => {
                let oracle = oracle.clone();
                let at = clock.slot_start(*slot);
                context
                    .child("late_start")
                    .spawn(move |context| async move {
                        context.sleep_until(at).await;
                        operator::start(operator_context, &oracle, setup).await;
                        futures::future::pending::<()>().await;
                    });
            }
        }
    }

    // Check invariants slot by slot while the cluster runs; one extra slot lets the last
    // slot's decisions finalize.
    let mut observed = Observed::default();
    for slot in 0..=config.slots {
        context.sleep_until(clock.slot_start(slot + 1)).await;
        while let Ok((operator, block)) = finalized_receiver.try_recv() {
            observed.on_block(operator, block, slot);
        }
        while let Ok((operator, event)) = duty_receiver.try_recv() {
            observed.on_duty(operator, event);
        }
    }

    // Every duty a runner started in the run's slots ended decided or reported missed.
    let open: Vec<String> = observed
        .started
        .keys()
        .filter(|(_, duty)| duty.slot + 1 < config.slots)
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
            let slot = decision.duty.slot;
            let scheduled = matches!(&decision.duty.target, DutyTarget::Committee(c) if *c == committee)
                && attesters_by_slot.contains_key(&slot);
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
            if !decided_slots.insert(slot) {
                observed.violation(
                    "duty_decided_once",
                    block.slot,
                    format!(
                        "{} decided a second time at height {}",
                        decision.duty, block.height
                    ),
                );
            }
        }
    }
    attesters_by_slot.retain(|slot, _| *slot < config.slots);
    let scheduled: u64 = attesters_by_slot.values().sum();
    let decided: u64 = attesters_by_slot
        .iter()
        .filter(|(slot, _)| decided_slots.contains(slot))
        .map(|(_, count)| count)
        .sum();

    let mut hasher_input = Vec::new();
    for (height, block) in &observed.canonical {
        hasher_input.extend_from_slice(&height.to_be_bytes());
        hasher_input.extend_from_slice(block.digest().as_ref());
    }
    let outcome_digest = Sha256::hash(&[&hasher_input]);
    let live = n - offline.values().filter(|o| o.is_none()).count();

    Report {
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
        messages_per_operator_per_slot: received.load(std::sync::atomic::Ordering::Relaxed) as f64
            / (live.max(1) as f64 * config.slots as f64),
        outcome_digest: outcome_digest.to_string(),
        runtime_audit: context.auditor().state(),
        violations: observed.violations,
        replay: config.replay_command(),
        wall_ms: 0,
    }
}
