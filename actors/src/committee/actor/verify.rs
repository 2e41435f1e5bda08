//! The follower's side: whether this operator can vote for a proposed block's values.

use super::{Actor, Verdict};
use cohort_ingress::{
    AttestationData, DecidedValue, Decision, DutyTarget, Role, committee::MAX_BLOCK_AGE_SLOTS,
};
use commonware_cryptography::PublicKey;
use commonware_runtime::{Clock, Metrics, Spawner};
use std::time::SystemTime;
use tracing::warn;

impl<E: Clock + Spawner + Metrics, P: PublicKey> Actor<E, P> {
    pub(super) fn answer_verifications(&mut self, now: SystemTime) {
        if self.verifications.is_empty() {
            return;
        }
        let current = self.clock.current_slot(now);
        let mut waiting = Vec::new();
        for pending in std::mem::take(&mut self.verifications) {
            if pending.response.is_closed() {
                continue;
            }
            let verdict = self.check_block(current, pending.slot, &pending.decisions);
            let verdict = match verdict {
                Verdict::Unknown if now >= pending.give_up_at => {
                    Verdict::Invalid("cannot check its values: duty unknown to this operator")
                }
                other => other,
            };
            match verdict {
                Verdict::Valid => {
                    let _ = pending.response.send(true);
                }
                Verdict::Invalid(reason) => {
                    self.values_rejected.inc();
                    warn!(
                        slot = pending.slot,
                        reason,
                        "not voting for the proposed block; consensus moves to the next view"
                    );
                    let _ = pending.response.send(false);
                }
                Verdict::Unknown => waiting.push(pending),
            }
        }
        self.verifications = waiting;
    }

    pub(super) fn check_block(&self, current: u64, slot: u64, decisions: &[Decision]) -> Verdict {
        // A block for a slot that has not started here is refused. Finalized early, it would
        // leave every duty of this slot still undecided nothing but to expire (later blocks may
        // not go back a slot); waited for, it would hold the view until the slot starts, past
        // the duties it holds up. Refused, the view is nullified at once and the next leader
        // proposes; an honest leader whose clock runs ahead only loses that view, and only in
        // the moments before a slot starts (it proposes a third into its slot).
        if slot > current {
            return Verdict::Invalid("block for a slot that has not started");
        }
        if slot + MAX_BLOCK_AGE_SLOTS < current {
            return Verdict::Invalid("block slot is too old");
        }
        if decisions.is_empty() {
            return Verdict::Valid;
        }
        let mut verdict = Verdict::Valid;
        for decision in decisions {
            match self.check_decision(slot, decision) {
                Verdict::Valid => {}
                Verdict::Unknown => verdict = Verdict::Unknown,
                invalid => return invalid,
            }
        }
        verdict
    }

    pub(super) fn check_decision(&self, slot: u64, decision: &Decision) -> Verdict {
        let duty = &decision.duty;
        if duty.slot != slot {
            return Verdict::Invalid("decision for another slot than the block's");
        }
        if duty.epoch != self.clock.epoch_of(slot) {
            return Verdict::Invalid("duty epoch does not match its slot");
        }
        match (&duty.role, &duty.target) {
            (Role::Committee, DutyTarget::Committee(c)) if *c == self.committee => {}
            // Whether the validator is the cluster's is what `known` (its schedule) answers.
            (
                Role::Proposer | Role::Aggregator | Role::SyncCommitteeContribution,
                DutyTarget::Validator(_),
            ) => {}
            _ => {
                return Verdict::Invalid(
                    "duty is neither this cluster's committee duty nor a validator duty",
                );
            }
        }
        if self.decided.contains(duty) {
            return Verdict::Invalid("duty already decided");
        }
        if !self.known.contains(duty) {
            if self.scheduled.contains(&duty.epoch) {
                return Verdict::Invalid("duty not in this operator's schedule for its epoch");
            }
            return Verdict::Unknown;
        }
        let Some(finalized) = self.finalized else {
            return Verdict::Unknown;
        };
        // Each role signs one kind of value (see `DecidedValue::fits_role`).
        if !decision.value.fits_role(duty.role) {
            return Verdict::Invalid("value kind does not fit the duty's role");
        }
        match &decision.value {
            DecidedValue::Attestation(data) => {
                if data.slot != slot || data.index != 0 {
                    return Verdict::Invalid("attestation data slot or index wrong");
                }
                if data.target.epoch != self.clock.epoch_of(slot) {
                    return Verdict::Invalid("target epoch is not the slot's epoch");
                }
                // Source before target, except at genesis: a vote from a source that is not yet
                // justified (source == target, say) makes every later honest vote of the
                // cluster's validators a surround vote, silencing them until justification
                // reaches it.
                if data.source.epoch >= data.target.epoch && data.target.epoch != 0 {
                    return Verdict::Invalid("source is not older than target");
                }
                if data.source.epoch > data.target.epoch {
                    return Verdict::Invalid("source is newer than target");
                }
                if data.source.epoch < finalized.epoch {
                    return Verdict::Invalid("source is older than the finalized checkpoint");
                }
                if data.source.epoch == finalized.epoch && data.source.root != finalized.root {
                    return Verdict::Invalid("source conflicts with the finalized checkpoint");
                }
                // No newer than what this operator's own beacon node justified: until it has
                // answered (or while it lags behind the leader's), wait; past the grace the
                // block is refused.
                match self.justified {
                    Some(justified) if data.source.epoch < justified.epoch => Verdict::Valid,
                    Some(justified) if data.source == justified => Verdict::Valid,
                    Some(justified) if data.source.epoch == justified.epoch => {
                        Verdict::Invalid("source conflicts with the justified checkpoint")
                    }
                    // Newer than this operator's node justified, though it already answered for
                    // this slot: refused, not waited for.
                    Some(_) if self.justified_slot >= slot => {
                        Verdict::Invalid("source newer than this operator's justified checkpoint")
                    }
                    // Its node has not answered for this slot yet, but f+1 operators' nodes
                    // answered with this source: at least one honest node justified it, which
                    // is all this operator's own answer would have shown. (Without this, a
                    // newly justified checkpoint holds the block until this node answers.)
                    _ if self.offered_by_enough(slot, |offered| offered.source == data.source) => {
                        Verdict::Valid
                    }
                    _ => Verdict::Unknown,
                }
            }
            DecidedValue::Block(proposal) => {
                let header = &proposal.header;
                if header.slot != slot
                    || !matches!(duty.target, DutyTarget::Validator(v) if v == header.proposer_index)
                {
                    return Verdict::Invalid("block is for another slot or proposer");
                }
                if let Err(err) = (self.check_proposal)(proposal) {
                    warn!(slot, %err, "refusing a block proposal whose header does not commit to its contents");
                    return Verdict::Invalid(
                        "block header does not commit to the block's contents",
                    );
                }
                Verdict::Valid
            }
            DecidedValue::Aggregate(aggregate) => {
                if !aggregate.aggregation_bits.iter().any(|bit| *bit) {
                    return Verdict::Invalid("aggregate covers no attester");
                }
                // An aggregate must aggregate what the cluster attested to in its slot; until
                // that is finalized here, wait.
                // Before Electra the aggregate's data names its committee where the cluster's
                // vote has 0; the vote itself must be the same.
                let vote = AttestationData {
                    index: 0,
                    ..aggregate.data
                };
                match self.decided_data.get(&slot) {
                    Some(data) if *data == vote => Verdict::Valid,
                    Some(_) => {
                        Verdict::Invalid("aggregate of other data than the cluster attested")
                    }
                    None => Verdict::Unknown,
                }
            }
            DecidedValue::Contributions(contributions) => {
                let spec = &self.clock.sync_committee;
                let bits = spec.subcommittee_size() as usize;
                for contribution in contributions {
                    if contribution.slot != slot {
                        return Verdict::Invalid("contribution for another slot");
                    }
                    if contribution.subcommittee_index >= spec.subnet_count {
                        return Verdict::Invalid(
                            "contribution for a subcommittee index out of range",
                        );
                    }
                    if contribution.aggregation_bits.len() != bits {
                        return Verdict::Invalid("contribution bits do not fit the subcommittee");
                    }
                    if !contribution.aggregation_bits.iter().any(|bit| *bit) {
                        return Verdict::Invalid("contribution covers no sync committee member");
                    }
                }
                // Contributions aggregate messages over the head the cluster decided for the
                // slot; until that is finalized here, wait. Whether a subcommittee is the
                // validator's own is each runner's to check: it signs only those its
                // reconstructed selection proofs select it for.
                match self.decided_data.get(&slot) {
                    Some(data)
                        if contributions
                            .iter()
                            .all(|c| c.beacon_block_root == data.beacon_block_root) =>
                    {
                        Verdict::Valid
                    }
                    Some(_) => Verdict::Invalid("contribution for another head than the cluster's"),
                    None => Verdict::Unknown,
                }
            }
        }
    }
}
