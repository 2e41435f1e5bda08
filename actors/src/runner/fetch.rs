//! Fetching a duty's value from the beacon node: a committee's attestation data at its start, a
//! proposer's block once its RANDAO reveal is reconstructed, an aggregator's aggregate and a
//! sync committee aggregator's contributions at two thirds of its slot. Each call is bounded
//! by the fetch timeout and comes back as [`Work::Value`], which [`agree`](super::agree) hands
//! to the committee. An aggregation the beacon node cannot serve yet is asked again with a
//! backoff until its role's deadline ([`aggregation_deadline`]).

use super::{
    actor::{Actor, Work},
    duty::{Aggregation, Phase, span},
};
use cohort_ingress::{
    AttestationData, DecidedValue, DutyId, DutySink, DutySource, Role, Root, SlotClock,
    SourceError, committee::MAX_BLOCK_AGE_SLOTS, keys::Signature,
};
use commonware_cryptography::PublicKey;
use commonware_macros::select;
use commonware_runtime::{Clock, Metrics, Spawner, Storage};
use futures::future::BoxFuture;
use std::time::{Duration, SystemTime};
use tracing::debug;

impl<E, S, K, P> Actor<E, S, K, P>
where
    E: Clock + Spawner + Metrics + Storage,
    S: DutySource,
    K: DutySink,
    P: PublicKey,
{
    /// `call`, failing as unavailable once the fetch timeout (counted from now) passes.
    fn bounded<T: Send + 'static>(
        &self,
        call: impl std::future::Future<Output = Result<T, SourceError>> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, SourceError>> {
        let timeout = self.context.sleep(self.fetch_timeout);
        Box::pin(async move {
            select! {
                result = call => result,
                _ = timeout => Err(SourceError::Unavailable("timed out".into())),
            }
        })
    }

    pub(super) fn fetch_attestation(&mut self, id: DutyId) {
        let source = self.source.clone();
        let slot = id.slot;
        let call = self.bounded(async move {
            let data = source.attestation_data(slot).await?;
            if data.slot != slot {
                return Err(SourceError::Unavailable(format!(
                    "attestation data for slot {} instead of {slot}",
                    data.slot
                )));
            }
            let finalized = source.finalized_checkpoint().await?;
            Ok((DecidedValue::Attestation(data), finalized))
        });
        self.calls
            .push(Box::pin(async move { Work::Value(id, call.await) }));
    }

    pub(super) fn fetch_block(&mut self, id: DutyId, validator: u64, randao: Signature) {
        let source = self.source.clone();
        let slot = id.slot;
        let call = self.bounded(async move {
            let proposal = source.block_proposal(slot, validator, randao).await?;
            let header = proposal.header;
            if header.slot != slot || header.proposer_index != validator {
                return Err(SourceError::Unavailable(
                    "beacon node built a block for another slot or proposer".into(),
                ));
            }
            // Our own node's block passes the check every follower makes, or it is not offered.
            source.check_proposal(&proposal).map_err(|err| {
                SourceError::Unavailable(format!("beacon node built an inconsistent block: {err}"))
            })?;
            let finalized = source.finalized_checkpoint().await?;
            Ok((DecidedValue::Block(Box::new(proposal)), finalized))
        });
        self.calls
            .push(Box::pin(async move { Work::Value(id, call.await) }));
    }

    fn fetch_aggregate(&mut self, id: DutyId, data: AttestationData, committee_index: u64) {
        let source = self.source.clone();
        let call = self.bounded(async move {
            let aggregate = source.aggregate_attestation(data, committee_index).await?;
            if aggregate.data != data {
                return Err(SourceError::Unavailable(
                    "beacon node aggregated other attestation data".into(),
                ));
            }
            let finalized = source.finalized_checkpoint().await?;
            Ok((DecidedValue::Aggregate(Box::new(aggregate)), finalized))
        });
        self.calls
            .push(Box::pin(async move { Work::Value(id, call.await) }));
    }

    /// The contributions of the `subcommittees` this validator aggregates, for the block root
    /// the cluster decided. A subcommittee the beacon node has nothing usable for (no messages
    /// seen yet, or an answer that does not fit) is left out; the duty fails to fetch only if
    /// none is left.
    fn fetch_contributions(&mut self, id: DutyId, subcommittees: Vec<u64>, root: Root) {
        let source = self.source.clone();
        let slot = id.slot;
        let bits = self.clock.sync_committee.subcommittee_size() as usize;
        let call = self.bounded(async move {
            let mut contributions = Vec::new();
            let mut problems = Vec::new();
            for subcommittee in subcommittees {
                let contribution = match source
                    .sync_committee_contribution(slot, subcommittee, root)
                    .await
                {
                    Ok(contribution) => contribution,
                    Err(err) => {
                        problems.push(format!("subcommittee {subcommittee}: {err}"));
                        continue;
                    }
                };
                let fits = contribution.slot == slot
                    && contribution.subcommittee_index == subcommittee
                    && contribution.beacon_block_root == root
                    && contribution.aggregation_bits.len() == bits;
                if !fits {
                    problems.push(format!(
                        "subcommittee {subcommittee}: contribution for another slot, \
                         subcommittee, block root or bit count"
                    ));
                    continue;
                }
                if !contribution.aggregation_bits.iter().any(|bit| *bit) {
                    problems.push(format!("subcommittee {subcommittee}: no participant"));
                    continue;
                }
                contributions.push(contribution);
            }
            if contributions.is_empty() {
                return Err(SourceError::Unavailable(format!(
                    "no usable contribution ({})",
                    problems.join("; ")
                )));
            }
            let finalized = source.finalized_checkpoint().await?;
            Ok((DecidedValue::Contributions(contributions), finalized))
        });
        self.calls
            .push(Box::pin(async move { Work::Value(id, call.await) }));
    }

    /// A selected aggregator waits for two thirds of its slot, when the beacon node has seen
    /// the slot's attestations (or sync committee messages).
    pub(super) fn wait_for_aggregate(&mut self, id: DutyId) {
        let at = self.clock.interval_start(id.slot, 2);
        let sleep = self.context.sleep_until(at);
        self.calls.push(Box::pin(async move {
            sleep.await;
            Work::AggregateDue(id)
        }));
    }

    pub(super) fn on_aggregate_due(&mut self, id: &DutyId) {
        if let Some(running) = self.running.get_mut(id)
            && let Phase::Agreement { aggregate, .. } = &mut running.phase
            && *aggregate == Aggregation::NotDue
        {
            *aggregate = Aggregation::Due;
        }
        self.request_aggregate(id);
    }

    /// An aggregator asks for its aggregate (a sync committee aggregator for its
    /// contributions) once two thirds of the slot passed and the cluster decided the slot's
    /// attestation data (unless it already decided the value).
    pub(super) fn request_aggregate(&mut self, id: &DutyId) {
        self.ask_for_aggregate(id, Aggregation::Due, 0);
    }

    /// Asks the beacon node for the aggregate (or contributions) of an aggregation in phase
    /// `from`, as attempt `attempt`.
    fn ask_for_aggregate(&mut self, id: &DutyId, from: Aggregation, attempt: u32) {
        let Some(vote) = self.decided_data.get(&id.slot).copied() else {
            return;
        };
        let Some(running) = self.running.get_mut(id) else {
            return;
        };
        // The aggregate is of the data the aggregator's committee signed.
        let committee_index = running
            .duty
            .attesters
            .first()
            .map(|attester| attester.committee_index)
            .unwrap_or(0);
        let data = self.fork.attester_data(&vote, committee_index, id.epoch);
        let Phase::Agreement { aggregate, .. } = &mut running.phase else {
            return;
        };
        if *aggregate != from {
            return;
        }
        *aggregate = Aggregation::Requested { attempt };
        if id.role == Role::SyncCommitteeContribution {
            let selected = running.selected(&self.clock.sync_committee);
            self.fetch_contributions(id.clone(), selected, data.beacon_block_root);
        } else {
            self.fetch_aggregate(id.clone(), data, committee_index);
        }
    }

    /// The beacon node had no usable aggregate (or contribution) for a requested aggregation:
    /// its attestations may reach the node moments after the cluster decided the slot's data,
    /// so it is asked again after a backoff, as long as another attempt can start before the
    /// role's deadline. Returns whether a retry is scheduled.
    pub(super) fn retry_aggregation(&mut self, id: &DutyId) -> bool {
        let Some(Phase::Agreement {
            aggregate: Aggregation::Requested { attempt },
            ..
        }) = self.running.get(id).map(|running| &running.phase)
        else {
            return false;
        };
        let delay = aggregation_backoff(&self.clock, *attempt);
        let at = self.context.current() + delay;
        if at >= aggregation_deadline(&self.clock, id) {
            return false;
        }
        self.metrics.aggregation_retries.inc();
        let sleep = self.context.sleep_until(at);
        let id = id.clone();
        self.calls.push(Box::pin(async move {
            sleep.await;
            Work::AggregateRetry(id)
        }));
        true
    }

    pub(super) fn on_aggregate_retry(&mut self, id: &DutyId) {
        let Some(Phase::Agreement {
            aggregate: Aggregation::Requested { attempt },
            ..
        }) = self.running.get(id).map(|running| &running.phase)
        else {
            return; // Decided or ended meanwhile.
        };
        let attempt = *attempt;
        debug!(parent: &span(id), attempt = attempt + 1, "asking the beacon node again");
        self.ask_for_aggregate(id, Aggregation::Requested { attempt }, attempt + 1);
    }
}

/// The first wait before an aggregation is asked again: about how long an attestation takes
/// from its submission to a beacon node's aggregation pool.
const AGGREGATION_FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The wait before attempt `attempt + 1`: doubling from [`AGGREGATION_FIRST_BACKOFF`], capped
/// at a quarter of a slot interval (1 s with 12 s slots), so a late pool is seen soon and a
/// silent node is not asked more than a few times a second.
pub(super) fn aggregation_backoff(clock: &SlotClock, attempt: u32) -> Duration {
    let cap = clock.interval_duration() / 4;
    AGGREGATION_FIRST_BACKOFF
        .saturating_mul(1u32 << attempt.min(16))
        .min(cap.max(AGGREGATION_FIRST_BACKOFF))
}

/// The last moment an aggregation may ask the beacon node again. A contribution is published
/// only in its own slot, so not past its end. An aggregate stays valid on the network for an
/// epoch, and its value can be decided as long as a block of its slot can still be finalized:
/// a cluster that fell behind (a lost view, a start) decides a slot's attestation data late, the
/// attestations reach the beacon node only then, and the aggregate a moment after. So it is
/// asked for until the duty itself ends undecided.
pub(super) fn aggregation_deadline(clock: &SlotClock, id: &DutyId) -> SystemTime {
    if id.role == Role::SyncCommitteeContribution {
        clock.slot_start(id.slot + 1)
    } else {
        clock.slot_start(id.slot + 1 + MAX_BLOCK_AGE_SLOTS)
    }
}
