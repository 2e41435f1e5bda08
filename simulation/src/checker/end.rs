//! The invariants checked once the run ended, against the agreed chain, what the devnet
//! scheduled, what the beacon chain took and where the engines stopped. One function per
//! invariant, named after it; [`crate::report`] calls them in a fixed order.

use super::Observed;
use crate::{LIVENESS_SLOTS, SimConfig, cluster::operator::Engines, load::TxLoad, traced::Traced};
use cohort_devnet::{ChainReport, DevnetBeacon, Kind};
use cohort_engine::B256;
use cohort_engine::embedded::EmbeddedEngine;
use cohort_ingress::{
    CommitteeId, DecidedValue, DutyId, DutyTarget, Role, SlotClock, SyncDuty, signing::ForkInfo,
};
use cohort_marshal::Block;
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

/// What the devnet scheduled: attesters and sync committee members per slot of the run and
/// its one extra observed slot.
pub(crate) struct Schedule {
    pub beacon: DevnetBeacon,
    pub clock: SlotClock,
    /// The run's last epoch, counting the extra slot.
    pub epochs: u64,
    pub attesters_by_slot: BTreeMap<u64, u64>,
    /// The sync committee members who sign in each slot, with their duties.
    pub sync_by_slot: BTreeMap<u64, Vec<SyncDuty>>,
}

impl Schedule {
    pub fn new(config: &SimConfig, clock: SlotClock) -> Self {
        let beacon = crate::cluster::setup::devnet_beacon(config, 0, clock);
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
        let mut sync_by_epoch: BTreeMap<u64, Vec<SyncDuty>> = BTreeMap::new();
        let sync_by_slot = (0..=config.slots)
            .map(|slot| {
                let epoch = clock.sync_committee_epoch(slot);
                let duties = sync_by_epoch
                    .entry(epoch)
                    .or_insert_with(|| beacon.sync_duties(epoch))
                    .clone();
                (slot, duties)
            })
            .collect();
        Self {
            beacon,
            clock,
            epochs,
            attesters_by_slot,
            sync_by_slot,
        }
    }

    fn is_sync_member(&self, slot: u64, validator: u64) -> bool {
        self.sync_by_slot
            .get(&slot)
            .is_some_and(|duties| duties.iter().any(|d| d.validator_index == validator))
    }

    /// Attesters per slot of the run proper (the extra slot left out).
    pub fn attesters_in_run(&self, config: &SimConfig) -> BTreeMap<u64, u64> {
        let mut attesters = self.attesters_by_slot.clone();
        attesters.retain(|slot, _| *slot < config.slots);
        attesters
    }

    fn scheduled(&self, config: &SimConfig, committee: &CommitteeId, duty: &DutyId) -> bool {
        let slot = duty.slot;
        match (&duty.role, &duty.target) {
            (Role::Committee, DutyTarget::Committee(c)) => {
                c == committee
                    && (self.attesters_by_slot.contains_key(&slot)
                        || self.sync_by_slot.get(&slot).is_some_and(|d| !d.is_empty()))
            }
            (Role::Proposer, DutyTarget::Validator(v)) => self.beacon.proposer(slot) == *v,
            (Role::Aggregator, DutyTarget::Validator(v)) => {
                *v < config.validators
                    && self.beacon.attester_slot(self.clock.epoch_of(slot), *v) == slot
            }
            (Role::SyncCommitteeContribution, DutyTarget::Validator(v)) => {
                self.is_sync_member(slot, *v)
            }
            _ => false,
        }
    }
}

/// Every duty a runner started in the run's slots ended decided or reported missed.
pub(crate) fn duty_outcome_reported(observed: &mut Observed, config: &SimConfig) {
    let open: Vec<String> = observed
        .started
        .keys()
        .filter(|(operator, duty)| !config.engine_excused(*operator, duty))
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
}

/// The agreed chain decides only duties the devnet scheduled, each in a block of its slot.
pub(crate) fn only_scheduled_duties_decided(
    observed: &mut Observed,
    config: &SimConfig,
    committee: &CommitteeId,
    schedule: &Schedule,
    canonical: &[Arc<Block>],
) {
    for block in canonical.iter().filter(|block| block.height > 0) {
        for decision in &block.decisions {
            let duty = &decision.duty;
            if !schedule.scheduled(config, committee, duty) || duty.slot != block.slot {
                observed.violation(
                    "only_scheduled_duties_decided",
                    block.slot,
                    format!(
                        "height {} decides {} which was not scheduled for its slot",
                        block.height, decision.duty
                    ),
                );
            }
        }
    }
}

/// No duty of the run's slots is decided twice on the agreed chain. Returns the decided ones.
pub(crate) fn duty_decided_once(
    observed: &mut Observed,
    config: &SimConfig,
    canonical: &[Arc<Block>],
) -> BTreeSet<DutyId> {
    let mut decided: BTreeSet<DutyId> = BTreeSet::new();
    for block in canonical.iter().filter(|block| block.height > 0) {
        for decision in &block.decisions {
            if decision.duty.slot >= config.slots {
                continue;
            }
            if !decided.insert(decision.duty.clone()) {
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
    decided
}

/// A runner that ran since genesis reports what the cluster did: never "missed" for a duty the
/// agreed chain decided, unless a fault kept the truth from it. A runner that reported a duty
/// missed and later received the block that decided it (after a partition) reports that too,
/// which clears the "missed": only a partition healing too late to catch up is an excuse.
pub(crate) fn runner_outcome_matches_chain(
    observed: &mut Observed,
    config: &SimConfig,
    decided: &BTreeSet<DutyId>,
) {
    let wrong: Vec<String> = observed
        .missed
        .iter()
        .filter(|(operator, duty)| {
            config.owes_true_outcomes(*operator)
                && !config.cut_off_to_the_end(*operator, duty)
                && !config.engine_excused(*operator, duty)
                && decided.contains(duty)
        })
        .map(|(operator, duty)| format!("operator {operator} reported {duty} missed"))
        .collect();
    for detail in wrong {
        observed.violation("runner_outcome_matches_chain", config.slots, detail);
    }
}

/// No share signs two conflicting things, as the beacon chain saw them arrive (the checker sees
/// what each share signed while the run goes).
pub(crate) fn no_conflicting_signatures(
    observed: &mut Observed,
    config: &SimConfig,
    chain: &ChainReport,
) {
    for conflict in &chain.conflicts {
        observed.violation("no_conflicting_signatures", config.slots, conflict.clone());
    }
}

/// Shares sign only what the cluster finalized: every attestation and block a share signed is
/// the value of a decision on the agreed chain (signing on anything less, a notarized block
/// say, could sign a value the cluster later replaces).
pub(crate) fn signed_only_finalized(
    observed: &mut Observed,
    config: &SimConfig,
    fork: &ForkInfo,
    canonical: &[Arc<Block>],
) {
    let mut attestation_roots: BTreeSet<[u8; 32]> = BTreeSet::new();
    let mut block_roots: BTreeMap<u64, [u8; 32]> = BTreeMap::new();
    for block in canonical {
        for decision in &block.decisions {
            match &decision.value {
                DecidedValue::Attestation(data) => {
                    attestation_roots.insert(fork.attestation_signing_root(data));
                }
                DecidedValue::Block(proposal) => {
                    let header = &proposal.header;
                    block_roots.insert(header.slot, fork.block_signing_root(header));
                }
                DecidedValue::Aggregate(_) | DecidedValue::Contributions(_) => {}
            }
        }
    }
    let mut unfinalized = Vec::new();
    for ((operator, validator), history) in &observed.signed_attestations {
        for (source, target, root) in history {
            if !attestation_roots.contains(root) {
                unfinalized.push(format!(
                    "operator {operator}'s share of validator {validator} signed an attestation \
                     ({source}, {target}) whose data no finalized block decided"
                ));
            }
        }
    }
    for ((operator, validator, slot), root) in &observed.signed_blocks {
        if block_roots.get(slot) != Some(root) {
            unfinalized.push(format!(
                "operator {operator}'s share of validator {validator} signed a block for slot \
                 {slot} that no finalized block decided"
            ));
        }
    }
    for detail in unfinalized {
        observed.violation("signed_only_finalized", config.slots, detail);
    }
}

/// Once every fault healed (and at most f never heal), every attestation and proposal of a slot
/// is accepted again within a bounded number of slots ([`SimConfig::liveness_from`]).
pub(crate) fn liveness_after_heal(
    observed: &mut Observed,
    config: &SimConfig,
    chain: &ChainReport,
    attesters_by_slot: &BTreeMap<u64, u64>,
) {
    let Some(from) = config.liveness_from() else {
        return;
    };
    let mut attested: BTreeMap<u64, u64> = BTreeMap::new();
    let mut proposed: BTreeSet<u64> = BTreeSet::new();
    for (kind, slot, _) in &chain.accepted {
        match kind {
            Kind::Attestation => *attested.entry(*slot).or_default() += 1,
            Kind::Proposal => {
                proposed.insert(*slot);
            }
            // Liveness is owed for attestations and proposals; the rest follow them.
            Kind::Aggregate | Kind::SyncMessage | Kind::Contribution => {}
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

/// The finalized chain's execution payloads by block number: (hash, state root, cluster slot).
pub(crate) type Payloads = BTreeMap<u64, (B256, B256, u64)>;

/// The finalized chain carries at most one execution payload per slot. Returns its payloads.
pub(crate) fn one_payload_per_slot(observed: &mut Observed, canonical: &[Arc<Block>]) -> Payloads {
    let mut payloads = Payloads::new();
    let mut payload_slots = BTreeSet::new();
    for block in canonical {
        if let Some(payload) = &block.payload {
            let inner = &payload.payload_inner.payload_inner;
            payloads.insert(
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
    payloads
}

/// Where the engines stood when the run ended.
pub(crate) struct EnginesAtEnd {
    /// The lowest finalized execution height among the live operators' engines.
    pub finalized_height: u64,
    pub finalized_by_operator: BTreeMap<usize, u64>,
    /// The state root of the finalized chain's payload at `finalized_height`.
    pub state_root: B256,
}

/// Every live engine's finalized block is on the finalized chain with the state root its
/// payload claims, and (when liveness is owed at all) caught up with what was finalized a slot
/// before the end.
pub(crate) async fn engine_converged(
    observed: &mut Observed,
    config: &SimConfig,
    engines: &Engines,
    payloads: &Payloads,
) -> EnginesAtEnd {
    let genesis_root = cohort_engine::embedded::devnet_genesis_state_root();
    let settled = payloads
        .iter()
        .rev()
        .find(|(_, (_, _, slot))| *slot + 1 < config.slots)
        .map(|(number, _)| *number)
        .unwrap_or(0);
    let owed = config.liveness_from().is_some();
    let handles = engine_handles(engines);
    let mut lowest = u64::MAX;
    let mut finalized_by_operator = BTreeMap::new();
    for (operator, engine) in handles {
        let (tip, root) = engine.finalized().await;
        finalized_by_operator.insert(operator, tip.number);
        if !config.live_at_end(operator) || config.engine_stopped(operator) {
            continue;
        }
        lowest = lowest.min(tip.number);
        let expected = if tip.number == 0 {
            Some((cohort_operator::execution_genesis().hash, genesis_root))
        } else {
            payloads
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
        if owed && !config.is_byzantine(operator) && tip.number < settled {
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
    let finalized_height = if lowest == u64::MAX { 0 } else { lowest };
    EnginesAtEnd {
        finalized_height,
        finalized_by_operator,
        state_root: payloads
            .get(&finalized_height)
            .map(|(_, root, _)| *root)
            .unwrap_or(genesis_root),
    }
}

/// The slot by whose start every transaction the load signed is owed finalized at the end: the
/// cluster has had [`LIVENESS_SLOTS`] to include it, once liveness is owed at all.
pub(crate) fn transactions_owed_by(config: &SimConfig) -> Option<u64> {
    let by = config.slots.checked_sub(LIVENESS_SLOTS)?;
    config
        .liveness_from()
        .filter(|from| *from <= by)
        .map(|_| by)
}

/// The finalized chain executed the load's transactions once each (it cannot hold more than
/// the wallet signed: a nonce executes once), and, when liveness is owed, every one signed in
/// time.
pub(crate) fn transactions_finalized(
    observed: &mut Observed,
    config: &SimConfig,
    transactions: &crate::TxReport,
) {
    if transactions.finalized > transactions.submitted {
        observed.violation(
            "transactions_finalized",
            config.slots,
            format!(
                "the finalized payloads hold {} transactions, the wallet signed {}",
                transactions.finalized, transactions.submitted
            ),
        );
    }
    if transactions.finalized < transactions.owed {
        observed.violation(
            "transactions_finalized",
            config.slots,
            format!(
                "{} transactions signed by slot {:?} owed finalized, {} are (first refusal: {:?})",
                transactions.owed,
                transactions_owed_by(config),
                transactions.finalized,
                transactions.first_refusal
            ),
        );
    }
}

/// Each operator's engine of its current life, taken out of the shared map so none is held
/// across an await.
fn engine_handles(engines: &Engines) -> Vec<(usize, EmbeddedEngine<Traced>)> {
    engines
        .lock()
        .map(|engines| engines.clone().into_iter().collect())
        .unwrap_or_default()
}

/// The load's contract counted exactly the calls the finalized chain holds, read with
/// `eth_call` on every live engine that finalized the chain's last payload: a call skipped,
/// reverted or run out of gas on every engine alike leaves their state roots equal, and only
/// shows here. Returns the counter the engines agree on.
pub(crate) async fn contract_counted(
    observed: &mut Observed,
    config: &SimConfig,
    engines: &Engines,
    payloads: &Payloads,
    load: &TxLoad,
    transactions: &crate::TxReport,
) -> Option<u64> {
    let last = payloads.keys().next_back().copied().unwrap_or(0);
    let handles = engine_handles(engines);
    let mut agreed = None;
    for (operator, engine) in handles {
        if !config.live_at_end(operator) || config.engine_stopped(operator) {
            continue;
        }
        if engine.finalized().await.0.number != last {
            continue;
        }
        let counter = load.counter(&engine).await;
        // The operators still run while the report is built: an engine that finalized past
        // the chain this report saw has nothing to be compared with.
        if engine.finalized().await.0.number != last {
            continue;
        }
        let counter = match counter {
            Ok(counter) => counter,
            Err(reason) => {
                observed.violation(
                    "contract_counted",
                    config.slots,
                    format!("operator {operator}'s engine: {reason}"),
                );
                continue;
            }
        };
        let counted = counter.map_or(0, |counter| counter.saturating_to::<u64>());
        if counted != transactions.contract_calls_finalized {
            observed.violation(
                "contract_counted",
                config.slots,
                format!(
                    "operator {operator}'s engine counted {counted} contract calls at number \
                     {last}, the finalized chain holds {}",
                    transactions.contract_calls_finalized
                ),
            );
        }
        if counter.is_some() {
            agreed = Some(counted);
        }
    }
    agreed
}

/// Only byzantine operators may ever be blocked for what they sent: `(by, peer)` pairs.
pub(crate) fn honest_operators_never_blocked(
    observed: &mut Observed,
    config: &SimConfig,
    blocked: &[(usize, usize)],
    how: &str,
) {
    for (by, peer) in blocked {
        if !config.is_byzantine(*peer) {
            observed.violation(
                "honest_operators_never_blocked",
                config.slots,
                format!("operator {by} {how} honest operator {peer}"),
            );
        }
    }
}
