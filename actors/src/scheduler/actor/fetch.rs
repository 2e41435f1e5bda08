//! Asking the duty source for each epoch's duties, and keeping its answers.

use super::{Actor, EpochDuties, FETCH_RETRY, FetchResult};
use cohort_ingress::{DutyId, DutySource, Role, SlotClock, SourceError, Stopped, SyncDuty};
use commonware_macros::select;
use commonware_runtime::{Clock, Metrics, Spawner};
use futures::{future::BoxFuture, stream::FuturesUnordered};
use std::{
    collections::{BTreeMap, BTreeSet},
    time::SystemTime,
};
use tracing::{info, warn};

impl<E: Clock + Spawner + Metrics, S: DutySource> Actor<E, S> {
    /// Fetch this epoch's and the next epoch's duties when missing.
    pub(super) fn request_duties(
        &mut self,
        now: SystemTime,
        fetches: &mut FuturesUnordered<BoxFuture<'static, FetchResult>>,
    ) {
        let epoch = self.clock.epoch_of(self.clock.current_slot(now));
        let current = epoch;
        for epoch in [epoch, epoch + 1] {
            let pending_now = epoch == current
                && self
                    .duties
                    .get(&epoch)
                    .is_some_and(|duties| duties.proposers_pending);
            if (self.duties.contains_key(&epoch) && !pending_now) || self.fetching.contains(&epoch)
            {
                continue;
            }
            if self.retry_at.get(&epoch).is_some_and(|at| *at > now) {
                continue;
            }
            self.fetching.insert(epoch);
            let source = self.source.clone();
            let timeout = self.context.sleep(self.fetch_timeout);
            fetches.push(Box::pin(async move {
                let fetch = async {
                    let attesters = source.attester_duties(epoch).await?;
                    let (proposers, proposers_pending) = match source.proposer_duties(epoch).await {
                        Ok(proposers) => (proposers, false),
                        Err(SourceError::NotYet { .. }) => (Vec::new(), true),
                        Err(err) => return Err(err),
                    };
                    let sync = source.sync_duties(epoch).await?;
                    Ok(EpochDuties {
                        attesters,
                        proposers,
                        proposers_pending,
                        sync,
                    })
                };
                select! {
                    result = fetch => (epoch, result),
                    _ = timeout => (epoch, Err(SourceError::Unavailable("timed out".into()))),
                }
            }));
        }
    }

    pub(super) async fn on_fetched(
        &mut self,
        epoch: u64,
        result: Result<EpochDuties, SourceError>,
    ) -> Result<(), Stopped> {
        self.fetching.remove(&epoch);
        match result {
            Ok(mut duties) => {
                duties.attesters.sort();
                duties.proposers.sort();
                // A beacon node answers for the epoch asked; anything else is not scheduled.
                duties
                    .attesters
                    .retain(|d| self.clock.epoch_of(d.slot) == epoch);
                duties
                    .proposers
                    .retain(|d| self.clock.epoch_of(d.slot) == epoch);
                duties.sync = sanitize_sync_duties(duties.sync, &self.clock);
                info!(
                    epoch,
                    attester_duties = duties.attesters.len(),
                    proposer_duties = duties.proposers.len(),
                    sync_committee_members = duties.sync.len(),
                    "fetched duties"
                );
                self.retry_at.remove(&epoch);
                let now = self.context.current();
                if duties.proposers_pending
                    && epoch <= self.clock.epoch_of(self.clock.current_slot(now))
                {
                    // The epoch has started, yet the source still cannot name its proposers.
                    self.retry_at.insert(epoch, now + FETCH_RETRY);
                }
                let mut slots: Vec<u64> = duties.attesters.iter().map(|d| d.slot).collect();
                slots.dedup();
                let mut expected: Vec<DutyId> = slots
                    .into_iter()
                    .map(|slot| DutyId::committee(self.committee.clone(), epoch, slot))
                    .collect();
                expected.extend(
                    duties.proposers.iter().map(|d| {
                        DutyId::validator(Role::Proposer, epoch, d.slot, d.validator_index)
                    }),
                );
                expected.extend(duties.attesters.iter().map(|d| {
                    DutyId::validator(Role::Aggregator, epoch, d.slot, d.validator_index)
                }));
                // The slots this epoch's sync committee signs in: a committee duty each (its
                // sync committee messages ride on it) and a contribution duty per member.
                if !duties.sync.is_empty() {
                    for slot in self.sync_slots(epoch) {
                        let slot_epoch = self.clock.epoch_of(slot);
                        expected.push(DutyId::committee(self.committee.clone(), slot_epoch, slot));
                        expected.extend(duties.sync.iter().map(|d| {
                            DutyId::validator(
                                Role::SyncCommitteeContribution,
                                slot_epoch,
                                slot,
                                d.validator_index,
                            )
                        }));
                    }
                }
                // Complete only if the source named the epoch's proposers: a proposer duty
                // still to come must not be refused as non-existent meanwhile.
                if duties.proposers_pending {
                    self.committee_mailbox.expect(expected).await?;
                } else {
                    self.committee_mailbox.expect_epoch(epoch, expected).await?;
                }
                self.duties.insert(epoch, duties);
            }
            Err(err) => {
                self.fetch_failures.inc();
                warn!(epoch, %err, "could not fetch duties; retrying in 1s");
                self.retry_at
                    .insert(epoch, self.context.current() + FETCH_RETRY);
            }
        }
        Ok(())
    }

    /// The slots in which `epoch`'s sync committee signs: from the one before the epoch to the
    /// epoch's second-to-last.
    pub(super) fn sync_slots(&self, epoch: u64) -> impl Iterator<Item = u64> + use<E, S> {
        let clock = self.clock;
        let first = clock.first_slot(epoch);
        let end = first + clock.slots_per_epoch;
        (first.saturating_sub(1)..end)
            .filter(move |slot| clock.sync_committee_epoch(*slot) == epoch)
    }
}

/// A beacon node's sync duties as the scheduler keeps them: one per validator (positions of
/// repeated entries merged), only positions inside the committee, sorted, and validators with
/// no position left dropped. The answer is trusted no further than that.
fn sanitize_sync_duties(duties: Vec<SyncDuty>, clock: &SlotClock) -> Vec<SyncDuty> {
    let size = clock.sync_committee.size;
    let mut merged: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for duty in duties {
        merged.entry(duty.validator_index).or_default().extend(
            duty.validator_sync_committee_indices
                .into_iter()
                .filter(|index| *index < size),
        );
    }
    merged
        .into_iter()
        .filter(|(_, indices)| !indices.is_empty())
        .map(|(validator_index, indices)| SyncDuty {
            validator_index,
            validator_sync_committee_indices: indices.into_iter().collect(),
        })
        .collect()
}
