//! Attestation offers: peers' data for a slot, and what a leader or follower makes of f+1 alike.

use super::{Actor, Verdict};
use cohort_ingress::{AttestationData, DecidedValue, Decision, DutyId};
use commonware_codec::DecodeExt as _;
use commonware_cryptography::PublicKey;
use commonware_runtime::{Clock, Metrics, Spawner};
use std::collections::BTreeSet;
use tracing::{debug, warn};

impl<E: Clock + Spawner + Metrics, P: PublicKey> Actor<E, P> {
    /// Keeps a peer's attestation data for its slot, if it is one a block could still carry.
    /// Nothing here is trusted: an offer counts only alongside f+1 alike, and even then is
    /// proposed only if it passes the checks a follower makes.
    pub(super) fn on_offer(&mut self, peer: P, bytes: impl commonware_codec::Buf) {
        let Some(operator) = self.participants.position(&peer) else {
            self.offers_refused.inc();
            warn!(%peer, "attestation offer from outside the cluster; dropped");
            return;
        };
        let operator = operator as u32;
        let data = match AttestationData::decode(bytes) {
            Ok(data) => data,
            Err(err) => {
                self.offers_refused.inc();
                warn!(operator = operator + 1, %err, "malformed attestation offer; dropped");
                return;
            }
        };
        let current = self.clock.current_slot(self.context.current());
        // The previous slot's may still be decided; a peer whose clock runs a little ahead
        // offers the next one's before this operator's slot turns.
        if data.slot + 1 < current || data.slot > current + 1 || data.index != 0 {
            self.offers_refused.inc();
            debug!(
                operator = operator + 1,
                slot = data.slot,
                current,
                "attestation offer for a slot no block here may carry; dropped"
            );
            return;
        }
        let by_operator = self.offers.entry(data.slot).or_default();
        if by_operator.contains_key(&operator) {
            self.offers_refused.inc();
            debug!(
                operator = operator + 1,
                slot = data.slot,
                "second attestation offer from an operator for one slot; the first counts"
            );
            return;
        }
        by_operator.insert(operator, data);
    }

    /// Whether f+1 operators offered attestation data for `slot` that `alike` accepts.
    pub(super) fn offered_by_enough(
        &self,
        slot: u64,
        alike: impl Fn(&AttestationData) -> bool,
    ) -> bool {
        let needed = crate::committee::f_plus_one(self.participants.len());
        self.offers
            .get(&slot)
            .is_some_and(|offers| offers.values().filter(|data| alike(data)).count() >= needed)
    }

    /// The committee duty of `slot` as f+1 operators' offers agree on it, if this operator
    /// holds no value of its own for it and a follower would vote for it.
    pub(super) fn offered_decision(
        &self,
        slot: u64,
        included: &BTreeSet<DutyId>,
    ) -> Option<Decision> {
        let duty = DutyId::committee(self.committee.clone(), self.clock.epoch_of(slot), slot);
        if self.pool.contains_key(&duty) || self.decided.contains(&duty) || included.contains(&duty)
        {
            return None;
        }
        let offers = self.offers.get(&slot)?;
        let data = offers
            .values()
            .find(|data| self.offered_by_enough(slot, |other| other == *data))?;
        let decision = Decision {
            duty,
            value: DecidedValue::Attestation(*data),
        };
        (self.check_decision(slot, &decision) == Verdict::Valid).then_some(decision)
    }
}
