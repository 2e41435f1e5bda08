//! Where a duty is submitted: the objects whose validator signature was reconstructed in a
//! step go to the duty sink (beacon node) together, a duty's attestations, sync committee
//! messages and contributions each in one call, bounded by the fetch timeout; a duty succeeds
//! once every object it owes was taken.

use super::{
    actor::{Actor, Work, emit},
    duty::{Phase, span},
    metrics::KindLabel,
};
use cohort_ingress::{
    Aggregate, AttestationData, AttesterDuty, BlockProposal, DutyId, DutySink, DutySource, Role,
    Root, SignedAggregate, SignedAttestation, SignedBlock, SignedContributionAndProof,
    SignedSyncCommitteeMessage, SinkError, SyncCommitteeContribution,
    keys::Signature,
    runner::{DutyEvent, Outcome},
};
use commonware_cryptography::PublicKey;
use commonware_macros::select;
use commonware_runtime::{Clock, Metrics, Spawner, Storage};
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use tracing::{info, warn};

/// A signed object waiting for its validator's signature to be reconstructed.
#[derive(Clone, Debug)]
pub(super) enum Submission {
    Attestation(AttesterDuty, AttestationData),
    /// A sync committee member's message over the slot's decided head block root.
    SyncMessage {
        validator_index: u64,
        beacon_block_root: Root,
    },
    Block(Box<BlockProposal>),
    /// The aggregate, the aggregator's index and its selection proof (boxed: a few per slot,
    /// next to hundreds of attestations).
    Aggregate(Box<(Aggregate, u64, Signature)>),
    /// The contribution, the aggregator's index and its selection proof for the contribution's
    /// subcommittee (boxed, as an aggregate).
    Contribution(Box<(SyncCommitteeContribution, u64, Signature)>),
}

/// The kinds of signed objects the duty sink takes, named as the devnet chain and the
/// `objects_submitted{kind}` metric name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Object {
    Attestation,
    SyncMessage,
    Proposal,
    Aggregate,
    Contribution,
}

impl Object {
    pub(super) const fn as_str(&self) -> &'static str {
        match self {
            Self::Attestation => "attestation",
            Self::SyncMessage => "sync_message",
            Self::Proposal => "proposal",
            Self::Aggregate => "aggregate",
            Self::Contribution => "contribution",
        }
    }

    /// What a log line says was submitted.
    const fn described(&self) -> &'static str {
        match self {
            Self::Attestation => "successfully submitted attestations",
            Self::SyncMessage => "successfully submitted sync committee messages",
            Self::Proposal => "successfully submitted block proposal",
            Self::Aggregate => "successfully submitted aggregate and proof",
            Self::Contribution => "successfully submitted contributions and proofs",
        }
    }
}

/// One call to the duty sink, bounded by the caller.
type SinkCall = BoxFuture<'static, Result<(), SinkError>>;

/// Objects reconstructed in one step, by duty.
pub(super) type Reconstructed = BTreeMap<DutyId, Vec<(Submission, Signature)>>;

/// One duty's reconstructed objects grouped the way the duty sink takes them: a slot's
/// attestations, sync committee messages and contributions each in one call, a block or an
/// aggregate alone.
#[derive(Default)]
struct Batches {
    attestations: Vec<SignedAttestation>,
    sync_messages: Vec<SignedSyncCommitteeMessage>,
    contributions: Vec<SignedContributionAndProof>,
    blocks: Vec<SignedBlock>,
    aggregates: Vec<SignedAggregate>,
}

impl Batches {
    fn of(slot: u64, objects: Vec<(Submission, Signature)>) -> Self {
        let mut batches = Self::default();
        for (submission, signature) in objects {
            match submission {
                Submission::Attestation(duty, data) => {
                    batches.attestations.push(SignedAttestation {
                        duty,
                        data,
                        signature,
                    })
                }
                Submission::SyncMessage {
                    validator_index,
                    beacon_block_root,
                } => batches.sync_messages.push(SignedSyncCommitteeMessage {
                    slot,
                    beacon_block_root,
                    validator_index,
                    signature,
                }),
                Submission::Block(proposal) => batches.blocks.push(SignedBlock {
                    proposal: *proposal,
                    signature,
                }),
                Submission::Aggregate(boxed) => {
                    let (aggregate, aggregator_index, selection_proof) = *boxed;
                    batches.aggregates.push(SignedAggregate {
                        aggregator_index,
                        aggregate,
                        selection_proof,
                        signature,
                    });
                }
                Submission::Contribution(boxed) => {
                    let (contribution, aggregator_index, selection_proof) = *boxed;
                    batches.contributions.push(SignedContributionAndProof {
                        aggregator_index,
                        contribution,
                        selection_proof,
                        signature,
                    });
                }
            }
        }
        batches
    }
}

impl<E, S, K, P> Actor<E, S, K, P>
where
    E: Clock + Spawner + Metrics + Storage,
    S: DutySource,
    K: DutySink,
    P: PublicKey,
{
    /// Hands each running duty's reconstructed objects to the duty sink: one call per kind,
    /// each bounded by the fetch timeout, so a refused kind does not take the others with it.
    pub(super) fn submit(&mut self, reconstructed: Reconstructed) {
        for (id, objects) in reconstructed {
            if !self.running.contains_key(&id) {
                continue;
            }
            let batches = Batches::of(id.slot, objects);
            if id.role == Role::Committee {
                info!(
                    parent: &span(&id),
                    validators = batches.attestations.len(),
                    sync_committee_members = batches.sync_messages.len(),
                    "got post-consensus quorum"
                );
            } else {
                info!(parent: &span(&id), "got post-consensus quorum");
            }
            let sink = &self.sink;
            let mut calls: Vec<(Object, usize, SinkCall)> = Vec::new();
            if !batches.attestations.is_empty() {
                let (sink, batch) = (sink.clone(), batches.attestations);
                calls.push((
                    Object::Attestation,
                    batch.len(),
                    Box::pin(async move { sink.submit_attestations(batch).await }),
                ));
            }
            if !batches.sync_messages.is_empty() {
                let (sink, batch) = (sink.clone(), batches.sync_messages);
                calls.push((
                    Object::SyncMessage,
                    batch.len(),
                    Box::pin(async move { sink.submit_sync_committee_messages(batch).await }),
                ));
            }
            if !batches.contributions.is_empty() {
                let (sink, batch) = (sink.clone(), batches.contributions);
                calls.push((
                    Object::Contribution,
                    batch.len(),
                    Box::pin(async move { sink.submit_contributions(batch).await }),
                ));
            }
            for block in batches.blocks {
                let sink = sink.clone();
                calls.push((
                    Object::Proposal,
                    1,
                    Box::pin(async move { sink.submit_block(block).await }),
                ));
            }
            for aggregate in batches.aggregates {
                let sink = sink.clone();
                calls.push((
                    Object::Aggregate,
                    1,
                    Box::pin(async move { sink.submit_aggregate(aggregate).await }),
                ));
            }
            for (object, count, call) in calls {
                let timeout = self.context.sleep(self.fetch_timeout);
                let id = id.clone();
                self.calls.push(Box::pin(async move {
                    let result = select! {
                        result = call => result,
                        _ = timeout => Err(SinkError::Unavailable("timed out".into())),
                    };
                    Work::Submitted(id, object, count, result)
                }));
            }
        }
    }

    /// The duty sink answered for `count` objects of duty `id`.
    pub(super) fn on_submitted(
        &mut self,
        id: DutyId,
        object: Object,
        count: usize,
        result: Result<(), SinkError>,
    ) {
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
                let after_start = now.duration_since(running.started).unwrap_or_default();
                {
                    let by_kind = self
                        .metrics
                        .submitted_after_start
                        .get_or_create(&KindLabel::of(object));
                    for _ in 0..count {
                        by_kind.observe(after_start.as_secs_f64());
                    }
                }
                self.metrics
                    .submitted
                    .get_or_create(&KindLabel::of(object))
                    .inc_by(count as u64);
                info!(
                    parent: &span,
                    count,
                    delay_ms = delay.as_millis() as u64,
                    "{}",
                    object.described()
                );
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
                self.metrics
                    .submissions_failed
                    .get_or_create(&KindLabel::of(object))
                    .inc_by(count as u64);
                warn!(parent: &span, kind = object.as_str(), count, %err, "submission to the beacon node failed; those objects are lost for this slot");
            }
        }
    }
}
