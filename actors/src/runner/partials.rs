//! Peers' partial signatures and the reconstruction they complete: a message is checked (a
//! cluster member, well-formed, a slot in the window), its partials go to the [`Quorum`], and
//! a key this operator waits for is recovered at threshold. A reconstructed pre-consensus
//! signature moves its duty on (a block to fetch, an aggregate to wait for, a decided value to
//! sign); a post-consensus one is queued for [`submit`](super::submit).
//!
//! [`Quorum`]: super::quorum::Quorum

use super::{
    POST_CONSENSUS_SLOTS,
    actor::{Actor, Step},
    cpu::{self, CryptoWork},
    duty::{Aggregation, Phase, span},
    metrics::{SenderLabel, operator_id},
    quorum::{Key, Recovery},
    submit::Submission,
};
use cohort_ingress::{
    DutyId, DutySink, DutySource, Role,
    committee::MAX_BLOCK_AGE_SLOTS,
    keys::{self, Signature},
    partial::UncheckedPartials,
    runner::{DutyEvent, Outcome},
    signing,
};
use commonware_cryptography::PublicKey;
use commonware_runtime::{Clock, Metrics, Spawner, Storage};
use tracing::{debug, info, warn};

impl<E, S, K, P> Actor<E, S, K, P>
where
    E: Clock + Spawner + Metrics + Storage,
    S: DutySource,
    K: DutySink,
    P: PublicKey,
{
    pub(super) fn on_partials(
        &mut self,
        peer: P,
        bytes: impl commonware_codec::Buf,
        step: &mut Step,
    ) {
        let Some(operator) = self.operators.position(&peer) else {
            self.metrics.messages_invalid.inc();
            warn!(%peer, "partial signatures from outside the cluster; dropped");
            return;
        };
        let operator = operator as u32;
        let label = SenderLabel::of(operator);
        // The header and length only: no point is decoded before the runner knows it needs it.
        let message = match cpu::measure(&self.cpu, CryptoWork::Decode, || {
            UncheckedPartials::read(bytes, self.max_partials)
        }) {
            Ok(message) => message,
            Err(err) => {
                self.metrics.messages_invalid.inc();
                warn!(operator = operator + 1, %err, "malformed partial-signature message; dropped");
                return;
            }
        };
        let current = self.clock.current_slot(self.context.current());
        let oldest = current.saturating_sub(MAX_BLOCK_AGE_SLOTS + POST_CONSENSUS_SLOTS + 1);
        if message.slot < oldest || message.slot > current + 1 {
            debug!(
                operator = operator + 1,
                slot = message.slot,
                "partial signatures for a slot outside the window; dropped"
            );
            return;
        }
        // What one sender may make this runner look at per slot: what an honest operator signs
        // in a slot (with room for one restart). Past it, its messages for the slot are
        // dropped whole, so a peer's flood costs a bounded amount of work and memory per slot.
        let used = self
            .partial_budget
            .entry((message.slot, operator))
            .or_default();
        if *used + message.len() > self.max_partials_per_slot {
            self.metrics.messages_invalid.inc();
            if *used <= self.max_partials_per_slot {
                warn!(
                    operator = operator + 1,
                    slot = message.slot,
                    budget = self.max_partials_per_slot,
                    "peer sent more partial signatures for one slot than an honest operator \
                     signs; dropping the rest of its slot"
                );
                *used = self.max_partials_per_slot + 1;
            }
            return;
        }
        *used += message.len();
        let mut added = Vec::new();
        for partial in message.iter() {
            if !self.shares.contains_key(&partial.validator_index) {
                self.count_invalid(operator, message.slot, partial.validator_index);
                continue;
            }
            let key = Key {
                slot: message.slot,
                validator_index: partial.validator_index,
                signing_root: partial.signing_root,
            };
            if self.quorum.add_compressed(key, operator, partial.signature) {
                self.metrics.partials_received.get_or_create(&label).inc();
                if self.waiting.contains_key(&key) {
                    added.push(key);
                }
            }
        }
        self.try_recover(added, step);
    }

    /// Counts an invalid partial from `operator` (share index) and tells the observers.
    fn count_invalid(&mut self, operator: u32, slot: u64, validator_index: u64) {
        self.metrics
            .partials_invalid
            .get_or_create(&SenderLabel::of(operator))
            .inc();
        self.emit(DutyEvent::InvalidPartial {
            sender: operator_id(operator),
            slot,
            validator_index,
        });
    }

    /// Recovers those of `keys` this operator expects that have a threshold of partials in,
    /// all in one batch (see [`Quorum::try_recover_many`](super::quorum::Quorum::try_recover_many)).
    pub(super) fn try_recover(&mut self, keys: Vec<Key>, step: &mut Step) {
        let shares = self.shares.clone();
        let mut seen = std::collections::BTreeSet::new();
        let asked: Vec<(Key, _)> = keys
            .into_iter()
            .filter(|key| seen.insert(*key) && self.waiting.contains_key(key))
            .filter_map(|key| {
                let share = shares.get(&key.validator_index)?;
                Some((key, &share.sharing))
            })
            .collect();
        if asked.is_empty() {
            return;
        }
        let recoveries = self.quorum.try_recover_many(&asked, &self.cpu);
        for ((key, _), recovery) in asked.iter().zip(recoveries) {
            let Some((id, _)) = self.waiting.get(key) else {
                continue;
            };
            let id = id.clone();
            match recovery {
                Recovery::Waiting | Recovery::Done => {}
                Recovery::Invalid { invalid } => self.report_invalid(&id, key, &invalid),
                Recovery::Recovered { signature, invalid } => {
                    self.report_invalid(&id, key, &invalid);
                    // Threshold-many shares signed for the validator: its liveness is this
                    // cluster's own, which clears it for doppelganger protection.
                    if let Some(change) = self.guard.cluster_signed(key.validator_index, key.slot) {
                        info!(
                            parent: &span(&id),
                            validator = key.validator_index,
                            ?change,
                            "doppelganger protection: this operator's cluster signs for the validator; signing for it from now on"
                        );
                    }
                    let Some((id, submission)) = self.waiting.remove(key) else {
                        continue;
                    };
                    self.on_recovered(id, *key, submission, signature, step);
                }
            }
        }
    }

    fn report_invalid(&mut self, id: &DutyId, key: &Key, operators: &[u32]) {
        for operator in operators {
            self.count_invalid(*operator, key.slot, key.validator_index);
            warn!(
                parent: &span(id),
                validator = key.validator_index,
                operator = operator + 1,
                "invalid partial signature dropped; reconstructing from the valid ones"
            );
        }
    }

    fn on_recovered(
        &mut self,
        id: DutyId,
        key: Key,
        submission: Option<Submission>,
        signature: Signature,
        step: &mut Step,
    ) {
        let now = self.context.current();
        let fork = self.fork;
        let spec = self.clock.sync_committee;
        let Some(running) = self.running.get_mut(&id) else {
            return;
        };
        let span = span(&id);
        let Some(submission) = submission else {
            // Pre-consensus: a RANDAO reveal or a selection proof.
            debug!(parent: &span, validator = key.validator_index, "reconstructed partial signature");
            if !matches!(running.phase, Phase::PreConsensus { .. }) {
                return; // Recovered once per key, and only pre-consensus keys have no submission.
            }
            if id.role == Role::SyncCommitteeContribution {
                // One selection proof per subcommittee: the duty moves on once all are in.
                let subcommittees = running.subcommittees(&spec);
                let Some(subcommittee) = subcommittees.iter().copied().find(|subcommittee| {
                    fork.sync_selection_proof_signing_root(id.slot, *subcommittee)
                        == key.signing_root.0
                }) else {
                    return;
                };
                running.selection.insert(subcommittee, signature);
                if running.selection.len() < subcommittees.len() {
                    debug!(
                        parent: &span,
                        subcommittee,
                        "selection proof reconstructed; waiting for the other subcommittees'"
                    );
                    return;
                }
            }
            info!(parent: &span, "got pre-consensus quorum");
            // An aggregator signs only if its own selection proof selects it, whichever came
            // first: the proof, or a decided aggregate (a leader may decide one for any
            // aggregator duty it knows of).
            if id.role == Role::Aggregator {
                let committee_length = running
                    .duty
                    .attesters
                    .first()
                    .map_or(0, |a| a.committee_length);
                if !signing::is_aggregator(committee_length, &keys::signature_bytes(&signature)) {
                    info!(parent: &span, "selection proof does not select this validator; nothing to aggregate");
                    self.finish(&id, Outcome::NotSelected);
                    return;
                }
            }
            let Phase::PreConsensus { decided, .. } = &mut running.phase else {
                return;
            };
            if let Some(value) = decided.take() {
                running.phase = Phase::Decided {
                    value,
                    pre: Some(signature),
                };
                step.post_consensus.insert(id);
                return;
            }
            running.phase = Phase::Agreement {
                pre: Some(signature),
                aggregate: Aggregation::NotDue,
            };
            match id.role {
                Role::Proposer => step.blocks.push((id, key.validator_index, signature)),
                // Selected: checked above.
                Role::Aggregator => step.aggregators.push(id),
                Role::SyncCommitteeContribution => {
                    let selected = running.selected(&spec);
                    if selected.is_empty() {
                        info!(parent: &span, "no selection proof selects this validator; no contribution to aggregate");
                        self.finish(&id, Outcome::NotSelected);
                        return;
                    }
                    debug!(parent: &span, ?selected, "selected to aggregate sync subcommittees; waiting for two thirds of the slot");
                    step.aggregators.push(id);
                }
                Role::Committee => {}
            }
            return;
        };
        if let Phase::PostConsensus { signed_at, .. } = running.phase {
            self.metrics.reconstruction_time.observe(
                now.duration_since(signed_at)
                    .unwrap_or_default()
                    .as_secs_f64(),
            );
        }
        debug!(parent: &span, validator = key.validator_index, "reconstructed partial signature");
        step.reconstructed
            .entry(id)
            .or_default()
            .push((submission, signature));
    }
}
