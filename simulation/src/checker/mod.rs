//! The invariants, checked while the run goes ([`Observed`], fed every slot from what the
//! operators report) and once it ended ([`end`]: one function per invariant).
//!
//! A violation names its invariant; the names are what campaigns count and the corpus keeps.

pub(crate) mod end;

use crate::{Violation, bounds, cluster::operator::Observation};
use cohort_actors::{
    executor::{BuildOutcome, Finalized},
    runner::slashing::Watermarks,
};
use cohort_ingress::{
    DutyId, OperatorId, Role,
    runner::{DutyEvent, SignRequest},
};
use commonware_cryptography::{Digestible, sha256::Digest};
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::SystemTime,
};

use crate::report::PrebuildCounts;

/// An attestation a share signed: (source epoch, target epoch, signing root).
type SignedVote = (u64, u64, [u8; 32]);

/// What the checker keeps while the run goes.
#[derive(Default)]
pub(crate) struct Observed {
    /// Per operator: height -> digest, in the order seen.
    pub(crate) chains: BTreeMap<usize, BTreeMap<u64, Digest>>,
    /// The agreed chain, by height.
    pub(crate) canonical: BTreeMap<u64, Arc<cohort_marshal::Block>>,
    pub(crate) latencies: Vec<u64>,
    /// Duties started and not yet ended, with their start time.
    pub(crate) started: BTreeMap<(usize, DutyId), SystemTime>,
    /// Duties runners reported missed (and did not correct since).
    pub(crate) missed: BTreeSet<(usize, DutyId)>,
    /// Duties runners reported missed, then decided after all when the block reached them.
    pub(crate) decided_after_missed: BTreeSet<(usize, DutyId)>,
    /// Decided duties: (operator, duty) -> start time.
    pub(crate) decided: BTreeMap<(usize, DutyId), SystemTime>,
    /// When each block was built by its leader.
    pub(crate) proposed: BTreeMap<Digest, SystemTime>,
    /// When each operator processed each height.
    pub(crate) processed_at: BTreeMap<(usize, u64), SystemTime>,
    /// Per (operator, validator): attestations signed as (source, target, root), blocks by slot.
    pub(crate) signed_attestations: BTreeMap<(usize, u64), Vec<SignedVote>>,
    pub(crate) signed_blocks: BTreeMap<(usize, u64, u64), [u8; 32]>,
    /// Per (operator, slot): the payload it handed to consensus.
    pub(crate) built: BTreeMap<(usize, u64), cohort_engine::B256>,
    pub(crate) prebuild: PrebuildCounts,
    pub(crate) share_signatures: u64,
    /// Invalid partial signatures the runners caught, by sender (share index + 1).
    pub(crate) invalid_partials: BTreeMap<OperatorId, u64>,
    /// The most any operator held at once, by `*_held` gauge.
    pub(crate) max_held: BTreeMap<String, u64>,
    /// What lone crashes kept of their operators' unsynced writes.
    pub(crate) crash_cuts: crate::report::CrashCuts,
    /// `(operator, gauge)` pairs already reported over their bound, so a leak is one violation.
    pub(crate) over_bound: BTreeSet<(usize, String)>,
    /// `(by, peer)`: operator `by`'s consensus caught `peer` sending conflicting or invalid
    /// votes.
    pub(crate) caught: BTreeSet<(usize, cohort_marshal::PublicKey)>,
    pub(crate) violations: Vec<Violation>,
    /// The cluster-run AVS's tasks, when the run has one.
    pub(crate) avs: crate::avs::AvsObserved,
}

impl Observed {
    /// Takes in one thing `operator` reported, during `slot`.
    pub(crate) fn observe(&mut self, operator: usize, observation: Observation, slot: u64) {
        match observation {
            Observation::Finalized(block) => self.on_block(operator, block, slot),
            Observation::Duty(event) => self.on_duty(operator, event, slot),
            Observation::Proposed(digest, at) => {
                self.proposed.entry(digest).or_insert(at);
            }
            Observation::Task(event) => {
                for (invariant, detail) in self.avs.on_event(operator, event) {
                    self.violation(invariant, slot, detail);
                }
            }
            Observation::Caught(peer) => {
                self.caught.insert((operator, peer));
            }
            Observation::Built {
                slot: built_slot,
                payload_hash,
                outcome,
            } => self.on_built(operator, built_slot, payload_hash, outcome),
        }
    }

    pub(crate) fn violation(&mut self, invariant: &str, slot: u64, detail: String) {
        self.violations.push(Violation {
            invariant: invariant.into(),
            slot,
            detail,
        });
    }

    pub(crate) fn on_built(
        &mut self,
        operator: usize,
        slot: u64,
        payload_hash: cohort_engine::B256,
        outcome: BuildOutcome,
    ) {
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
    pub(crate) fn on_held(
        &mut self,
        encoded: &str,
        validators: u64,
        operators: u64,
        slot_now: u64,
    ) {
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
    pub(crate) fn on_crash(&mut self, operator: usize) {
        self.started.retain(|(o, _), _| *o != operator);
    }

    /// Every signature a share let out is covered by the slashing-protection record its
    /// operator restarts with (`signed_with_durable_record`): a crash after a partial left
    /// must not take its record with it, or the next life could sign a conflicting message.
    /// Covered means the record refuses whatever would conflict with what was signed: its
    /// attestation target and source at least the highest signed (and, at the same target,
    /// the same root), its block slot at least the highest signed (at the same slot, the same
    /// root).
    pub(crate) fn on_restart_record(
        &mut self,
        operator: usize,
        record: &Result<BTreeMap<u64, Watermarks>, String>,
        slot_now: u64,
    ) {
        let record = match record {
            Ok(record) => record,
            Err(err) => {
                // A record that cannot be opened signs nothing: not a conflict, but the
                // operator is lost until someone repairs it.
                self.violation(
                    "signed_with_durable_record",
                    slot_now,
                    format!("operator {operator} restarts with an unreadable slashing-protection record: {err}"),
                );
                return;
            }
        };
        let mut gaps = Vec::new();
        for ((_, validator), history) in self
            .signed_attestations
            .range((operator, 0)..=(operator, u64::MAX))
        {
            let Some((source, target, root)) = history.iter().max_by_key(|(_, t, _)| *t) else {
                continue;
            };
            let highest_source = history.iter().map(|(s, _, _)| *s).max().unwrap_or(0);
            let mark = record.get(validator).and_then(|w| w.attestation);
            let covered = mark.is_some_and(|mark| {
                mark.source_epoch >= highest_source
                    && (mark.target_epoch > *target
                        || (mark.target_epoch == *target && mark.signing_root == Some(*root)))
            });
            if !covered {
                gaps.push(format!(
                    "validator {validator}: signed attestation ({source}, {target}), record {}",
                    mark.map_or("none".into(), |m| format!(
                        "({}, {})",
                        m.source_epoch, m.target_epoch
                    ))
                ));
            }
        }
        let mut highest_blocks: BTreeMap<u64, (u64, [u8; 32])> = BTreeMap::new();
        for ((_, validator, slot), root) in self
            .signed_blocks
            .range((operator, 0, 0)..=(operator, u64::MAX, u64::MAX))
        {
            let entry = highest_blocks.entry(*validator).or_insert((*slot, *root));
            if *slot > entry.0 {
                *entry = (*slot, *root);
            }
        }
        for (validator, (slot, root)) in highest_blocks {
            let mark = record.get(&validator).and_then(|w| w.block);
            let covered = mark.is_some_and(|mark| {
                mark.slot > slot || (mark.slot == slot && mark.signing_root == Some(root))
            });
            if !covered {
                gaps.push(format!(
                    "validator {validator}: signed block at slot {slot}, record {}",
                    mark.map_or("none".into(), |m| format!("slot {}", m.slot))
                ));
            }
        }
        if let Some(first) = gaps.first() {
            let detail = format!(
                "operator {operator} restarts with a slashing-protection record that misses {} signature(s) its share let out before the crash; first: {first}",
                gaps.len()
            );
            self.violation("signed_with_durable_record", slot_now, detail);
        }
    }

    pub(crate) fn on_block(&mut self, operator: usize, finalized: Finalized, slot_now: u64) {
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

    pub(crate) fn on_duty(&mut self, operator: usize, event: DutyEvent, slot_now: u64) {
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
            DutyEvent::InvalidPartial { sender, .. } => {
                *self.invalid_partials.entry(sender).or_default() += 1;
            }
            DutyEvent::Signed { requests } => self.on_signed(operator, requests, slot_now),
            DutyEvent::Missed { duty } => {
                self.started.remove(&(operator, duty.clone()));
                self.missed.insert((operator, duty));
            }
            DutyEvent::DecidedAfterMissed { duty, .. } => {
                // The runner's final word: the cluster decided it after all.
                self.missed.remove(&(operator, duty.clone()));
                self.decided_after_missed.insert((operator, duty));
            }
            DutyEvent::DecidedWhileAway { duty, .. } => {
                // The correction a restarted runner gives for a previous run's "missed".
                if self.missed.remove(&(operator, duty.clone())) {
                    self.decided_after_missed.insert((operator, duty));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_actors::runner::slashing::{AttestationWatermark, BlockWatermark};

    fn signed(observed: &mut Observed) {
        observed.on_duty(
            1,
            DutyEvent::Signed {
                requests: vec![
                    SignRequest::Attestation {
                        validator_index: 5,
                        source_epoch: 2,
                        target_epoch: 3,
                        signing_root: [1; 32],
                    },
                    SignRequest::Block {
                        validator_index: 5,
                        slot: 100,
                        signing_root: [2; 32],
                    },
                ],
            },
            3,
        );
    }

    fn record(target: u64, root: [u8; 32], slot: u64) -> Result<BTreeMap<u64, Watermarks>, String> {
        Ok(BTreeMap::from([(
            5,
            Watermarks {
                attestation: Some(AttestationWatermark {
                    source_epoch: 2,
                    target_epoch: target,
                    signing_root: Some(root),
                }),
                block: Some(BlockWatermark {
                    slot,
                    signing_root: Some([2; 32]),
                }),
            },
        )]))
    }

    fn violations(record: Result<BTreeMap<u64, Watermarks>, String>) -> Vec<Violation> {
        let mut observed = Observed::default();
        signed(&mut observed);
        observed.on_restart_record(1, &record, 4);
        // Another operator's record says nothing about operator 1's signatures.
        observed.on_restart_record(2, &Ok(BTreeMap::new()), 4);
        observed.violations
    }

    #[test]
    fn a_record_covering_every_signature_passes() {
        assert!(violations(record(3, [1; 32], 100)).is_empty());
        // A later target or slot refuses everything conflicting too.
        assert!(violations(record(4, [9; 32], 101)).is_empty());
    }

    #[test]
    fn a_record_that_lost_a_signature_is_a_violation() {
        for lost in [
            record(2, [1; 32], 100),
            record(3, [9; 32], 100),
            record(3, [1; 32], 99),
            Ok(BTreeMap::new()),
            Err("both metadata copies failed validation".into()),
        ] {
            let found = violations(lost.clone());
            assert_eq!(found.len(), 1, "{lost:?}: {found:?}");
            assert_eq!(found[0].invariant, "signed_with_durable_record");
            assert!(found[0].detail.contains("operator 1"), "{found:?}");
        }
    }
}
