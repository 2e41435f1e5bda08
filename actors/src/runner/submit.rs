//! Where a duty is submitted: the objects whose validator signature was reconstructed in a
//! step go to the duty sink (beacon node) together, a duty's attestations in one call, bounded
//! by the fetch timeout; a duty succeeds once every object it owes was taken.

use super::{
    actor::{Actor, Work, emit},
    duty::{Phase, span},
};
use cohort_ingress::{
    Aggregate, AttestationData, AttesterDuty, BlockProposal, DutyId, DutySink, DutySource, Role,
    SignedAggregate, SignedAttestation, SignedBlock, SinkError,
    keys::Signature,
    runner::{DutyEvent, Outcome},
};
use commonware_cryptography::PublicKey;
use commonware_macros::select;
use commonware_runtime::{Clock, Metrics, Spawner, Storage};
use std::collections::BTreeMap;
use tracing::{info, warn};

/// A signed object waiting for its validator's signature to be reconstructed.
#[derive(Clone, Debug)]
pub(super) enum Submission {
    Attestation(AttesterDuty, AttestationData),
    Block(Box<BlockProposal>),
    /// The aggregate, the aggregator's index and its selection proof (boxed: a few per slot,
    /// next to hundreds of attestations).
    Aggregate(Box<(Aggregate, u64, Signature)>),
}

/// Objects reconstructed in one step, by duty.
pub(super) type Reconstructed = BTreeMap<DutyId, Vec<(Submission, Signature)>>;

impl<E, S, K, P> Actor<E, S, K, P>
where
    E: Clock + Spawner + Metrics + Storage,
    S: DutySource,
    K: DutySink,
    P: PublicKey,
{
    /// Hands each running duty's reconstructed objects to the duty sink in one call.
    pub(super) fn submit(&mut self, reconstructed: Reconstructed) {
        for (id, objects) in reconstructed {
            if !self.running.contains_key(&id) {
                continue;
            }
            if id.role == Role::Committee {
                info!(parent: &span(&id), validators = objects.len(), "got post-consensus quorum");
            } else {
                info!(parent: &span(&id), "got post-consensus quorum");
            }
            let count = objects.len();
            let sink = self.sink.clone();
            let timeout = self.context.sleep(self.fetch_timeout);
            let call = async move {
                let mut attestations = Vec::new();
                for (submission, signature) in objects {
                    match submission {
                        Submission::Attestation(duty, data) => {
                            attestations.push(SignedAttestation {
                                duty,
                                data,
                                signature,
                            })
                        }
                        Submission::Block(proposal) => {
                            sink.submit_block(SignedBlock {
                                proposal: *proposal,
                                signature,
                            })
                            .await?
                        }
                        Submission::Aggregate(boxed) => {
                            let (aggregate, aggregator_index, selection_proof) = *boxed;
                            sink.submit_aggregate(SignedAggregate {
                                aggregator_index,
                                aggregate,
                                selection_proof,
                                signature,
                            })
                            .await?
                        }
                    }
                }
                if !attestations.is_empty() {
                    sink.submit_attestations(attestations).await?;
                }
                Ok(())
            };
            self.calls.push(Box::pin(async move {
                let result = select! {
                    result = call => result,
                    _ = timeout => Err(SinkError::Unavailable("timed out".into())),
                };
                Work::Submitted(id, count, result)
            }));
        }
    }

    /// The duty sink answered for `count` objects of duty `id`.
    pub(super) fn on_submitted(&mut self, id: DutyId, count: usize, result: Result<(), SinkError>) {
        let now = self.context.current();
        let Some(running) = self.running.get_mut(&id) else {
            return;
        };
        let span = span(&id);
        match result {
            Ok(()) => {
                let done = match &mut running.phase {
                    Phase::PostConsensus {
                        expected,
                        submitted,
                        ..
                    } => {
                        *submitted += count;
                        *submitted >= *expected
                    }
                    // Objects are reconstructed only after the duty's post-consensus signing;
                    // nothing else is owed.
                    _ => true,
                };
                let delay = now
                    .duration_since(self.clock.slot_start(id.slot))
                    .unwrap_or_default();
                self.metrics.submission_delay.observe(delay.as_secs_f64());
                let what = match id.role {
                    Role::Committee => "successfully submitted attestations",
                    Role::Proposer => "successfully submitted block proposal",
                    Role::Aggregator => "successfully submitted aggregate and proof",
                    Role::SyncCommitteeContribution => "successfully submitted contribution",
                };
                info!(parent: &span, count, delay_ms = delay.as_millis() as u64, "{what}");
                emit(
                    &self.events,
                    DutyEvent::Submitted {
                        duty: id.clone(),
                        objects: count,
                        at: now,
                    },
                );
                if done {
                    self.finish(&id, Outcome::Success);
                }
            }
            Err(err) => {
                warn!(parent: &span, count, %err, "submission to the beacon node failed; those objects are lost for this slot");
            }
        }
    }
}
