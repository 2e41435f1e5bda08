//! Where a duty's value is agreed: this operator hands the value it fetched to the committee
//! ([`Actor::on_value`]), and takes back what the cluster finalized ([`Actor::on_finalized`]),
//! which may be another operator's value. Only a finalized value is ever signed.

use super::{
    actor::{Actor, Step, emit},
    duty::{Phase, span},
};
use cohort_ingress::{
    Checkpoint, DecidedValue, Decision, DutyId, DutySink, DutySource, Role, SourceError, Stopped,
    runner::DutyEvent,
};
use commonware_cryptography::PublicKey;
use commonware_runtime::{Clock, Metrics, Spawner, Storage};
use std::sync::Arc;
use tracing::{debug, info, warn};

impl<E, S, K, P> Actor<E, S, K, P>
where
    E: Clock + Spawner + Metrics + Storage,
    S: DutySource,
    K: DutySink,
    P: PublicKey,
{
    /// The beacon node answered with the duty's value: it goes to the committee for agreement,
    /// unless the cluster already finalized one.
    pub(super) async fn on_value(
        &mut self,
        id: DutyId,
        result: Result<(DecidedValue, Checkpoint), SourceError>,
    ) -> Result<(), Stopped> {
        let Some(running) = self.running.get(&id) else {
            return Ok(()); // Ended meanwhile.
        };
        if running.phase.is_decided() {
            return Ok(()); // Another operator's value won already.
        }
        match result {
            Ok((value, finalized)) => {
                debug!(parent: &span(&id), "submitting the duty's value for agreement");
                self.committee.submit(id, value, finalized).await?;
            }
            Err(err) => {
                if self.retry_aggregation(&id) {
                    info!(
                        parent: &span(&id),
                        %err,
                        "beacon node has no usable value for the aggregation yet; asking again"
                    );
                } else {
                    warn!(
                        parent: &span(&id),
                        %err,
                        "could not fetch the duty's value; the duty waits for another operator's \
                         value"
                    );
                }
            }
        }
        Ok(())
    }

    /// A cluster block was finalized: its decisions are final and may be signed. A decision
    /// for a duty not started yet is kept until it starts.
    pub(super) fn on_finalized(
        &mut self,
        height: u64,
        block_slot: u64,
        decisions: &Arc<Vec<Decision>>,
        step: &mut Step,
    ) {
        let now = self.context.current();
        self.forget_old(self.clock.current_slot(now));
        let mut aggregators = Vec::new();
        for decision in decisions.iter() {
            if decision.duty.slot != block_slot {
                continue; // Cannot happen in a verified block; never sign it.
            }
            if let DecidedValue::Attestation(data) = &decision.value {
                self.decided_data.insert(decision.duty.slot, *data);
                aggregators.extend(
                    self.running
                        .range(
                            DutyId::first_of_slot(block_slot)
                                ..DutyId::first_of_slot(block_slot + 1),
                        )
                        .filter(|(id, _)| {
                            matches!(id.role, Role::Aggregator | Role::SyncCommitteeContribution)
                        })
                        .map(|(id, _)| id.clone()),
                );
            }
            let Some(running) = self.running.get_mut(&decision.duty) else {
                if self.missed.remove(&decision.duty) {
                    // Reported missed: its window closed before this block reached this
                    // operator. The final word is the cluster's.
                    self.metrics.decided_after_missed.inc();
                    info!(
                        parent: &span(&decision.duty),
                        height,
                        "duty reported missed was decided by the cluster after all; this \
                         operator did not sign it, the others did"
                    );
                    emit(
                        &self.events,
                        DutyEvent::DecidedAfterMissed {
                            duty: decision.duty.clone(),
                            height,
                        },
                    );
                    continue;
                }
                if decision.duty.slot < self.started_slot {
                    // Decided while this operator was away: a previous run may have reported
                    // it missed and could not correct that after the restart.
                    debug!(
                        parent: &span(&decision.duty),
                        height,
                        "duty of a slot before this run started was decided by the cluster; \
                         this operator did not sign it"
                    );
                    emit(
                        &self.events,
                        DutyEvent::DecidedWhileAway {
                            duty: decision.duty.clone(),
                            height,
                        },
                    );
                }
                if decision.duty.role == Role::Committee
                    && decision.duty.slot == self.clock.current_slot(now)
                    && let Some(scheduler) = &mut self.scheduler
                {
                    // The cluster agreed on the slot's head before this operator's beacon node
                    // reported one: the duty need not wait for it.
                    let asked = scheduler.decided(decision.duty.slot);
                    debug!(
                        parent: &span(&decision.duty),
                        height,
                        asked,
                        "committee duty decided before it started here; asking the scheduler \
                         to start it now"
                    );
                }
                self.finalized_early
                    .insert(decision.duty.clone(), decision.value.clone());
                continue;
            };
            let value = decision.value.clone();
            // A proposer or aggregator signs the decided value once its pre-consensus
            // signature is in: at once if it reached agreement, else when its quorum forms.
            let post_consensus_due = match &mut running.phase {
                Phase::PreConsensus { decided, .. } if decided.is_none() => {
                    *decided = Some(value);
                    false
                }
                Phase::Agreement { pre, .. } => {
                    let pre = *pre;
                    running.phase = Phase::Decided { value, pre };
                    true
                }
                _ => continue, // Decided already.
            };
            let latency = now.duration_since(running.started).unwrap_or_default();
            self.metrics.decided.inc();
            self.metrics.decide_latency.observe(latency.as_secs_f64());
            info!(
                parent: &span(&decision.duty),
                height,
                latency_ms = latency.as_millis() as u64,
                "duty decided and finalized"
            );
            emit(
                &self.events,
                DutyEvent::Decided {
                    duty: decision.duty.clone(),
                    latency,
                },
            );
            if post_consensus_due {
                step.post_consensus.insert(decision.duty.clone());
            }
        }
        for id in aggregators {
            self.request_aggregate(&id);
        }
    }
}
