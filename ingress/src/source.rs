//! Where duties and the data to carry them out come from, and where signed objects go.
//!
//! The devnet beacon (`cohort-devnet`) implements both traits; a Beacon-API client comes later.
//! Every call can fail or be slow: callers bound them with the runtime's timeout and treat a
//! failure as "try again later", never as "no duties".

use crate::{
    Aggregate, AttestationData, AttesterDuty, BlockProposal, Checkpoint, ProposerDuty, Root,
    SignedContributionAndProof, SignedSyncCommitteeMessage, SyncCommitteeContribution, SyncDuty,
    keys::Signature,
};
use std::future::Future;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("duty source unavailable: {0}")]
    Unavailable(String),
    #[error("duty source does not know {what} yet")]
    NotYet { what: &'static str },
}

/// A beacon node as the duty flow needs it.
pub trait DutySource: Clone + Send + Sync + 'static {
    /// The attester duties of the cluster's validators in `epoch`.
    fn attester_duties(
        &self,
        epoch: u64,
    ) -> impl Future<Output = Result<Vec<AttesterDuty>, SourceError>> + Send;

    /// The block proposals of the cluster's validators in `epoch`.
    fn proposer_duties(
        &self,
        epoch: u64,
    ) -> impl Future<Output = Result<Vec<ProposerDuty>, SourceError>> + Send;

    /// The attestation data this beacon node would have validators sign in `slot`.
    fn attestation_data(
        &self,
        slot: u64,
    ) -> impl Future<Output = Result<AttestationData, SourceError>> + Send;

    /// The finalized checkpoint this beacon node knows.
    fn finalized_checkpoint(&self) -> impl Future<Output = Result<Checkpoint, SourceError>> + Send;

    /// A block for `proposer_index` in `slot`, built with the (reconstructed) RANDAO reveal.
    fn block_proposal(
        &self,
        slot: u64,
        proposer_index: u64,
        randao_reveal: Signature,
    ) -> impl Future<Output = Result<BlockProposal, SourceError>> + Send;

    /// Whether `proposal`'s header commits to its contents, as this source's chain shapes them
    /// (the fork's SSZ body root). A follower votes for another operator's block only if so:
    /// signing a header whose body is not the one published would waste the slot.
    fn check_proposal(&self, proposal: &BlockProposal) -> Result<(), String>;

    /// The best aggregate this beacon node has for `data` from the members of beacon committee
    /// `committee_index` (its bits are over that committee). Before Electra the data's own
    /// index names the committee too; from Electra on the index is 0 and only this says which
    /// of a slot's committees is meant.
    fn aggregate_attestation(
        &self,
        data: AttestationData,
        committee_index: u64,
    ) -> impl Future<Output = Result<Aggregate, SourceError>> + Send;

    /// The sync committee duties of the cluster's validators in the sync committee period
    /// that contains `epoch` (the Beacon API's `POST /eth/v1/validator/duties/sync/{epoch}`):
    /// only validators in that period's committee appear. The scheduler asks for every epoch
    /// it schedules, so a period boundary needs nothing special from the source.
    fn sync_duties(
        &self,
        epoch: u64,
    ) -> impl Future<Output = Result<Vec<SyncDuty>, SourceError>> + Send;

    /// This beacon node's aggregate of the sync committee messages it has seen for
    /// `beacon_block_root` in `slot` from subcommittee `subcommittee_index` (the Beacon API's
    /// `GET /eth/v1/validator/sync_committee_contribution`).
    fn sync_committee_contribution(
        &self,
        slot: u64,
        subcommittee_index: u64,
        beacon_block_root: Root,
    ) -> impl Future<Output = Result<SyncCommitteeContribution, SourceError>> + Send;

    /// Which of `validators` this beacon node saw live (attesting, proposing) in `epoch` (the
    /// Beacon API's `POST /eth/v1/validator/liveness/{epoch}`): what doppelganger protection
    /// asks before a validator's first signature. A source that cannot tell says so.
    fn liveness(
        &self,
        epoch: u64,
        validators: Vec<u64>,
    ) -> impl Future<Output = Result<Vec<u64>, SourceError>> + Send {
        let _ = (epoch, validators);
        async {
            Err(SourceError::Unavailable(
                "this beacon node does not report validator liveness".into(),
            ))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    #[error("duty sink unavailable: {0}")]
    Unavailable(String),
    #[error("duty sink refused the submission: {0}")]
    Refused(String),
}

/// One validator's attestation, signed with the validator's (reconstructed) key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedAttestation {
    pub duty: AttesterDuty,
    pub data: AttestationData,
    pub signature: Signature,
}

/// A signed block: the proposal the cluster agreed on and the proposer's signature over its
/// header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedBlock {
    pub proposal: BlockProposal,
    pub signature: Signature,
}

/// A signed `AggregateAndProof`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedAggregate {
    pub aggregator_index: u64,
    pub aggregate: Aggregate,
    pub selection_proof: Signature,
    pub signature: Signature,
}

/// A beacon node as the submission side of the duty flow needs it.
pub trait DutySink: Clone + Send + Sync + 'static {
    fn submit_attestations(
        &self,
        attestations: Vec<SignedAttestation>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    fn submit_block(
        &self,
        block: SignedBlock,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    fn submit_aggregate(
        &self,
        aggregate: SignedAggregate,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// A slot's sync committee messages (`POST /eth/v1/beacon/pool/sync_committees`).
    fn submit_sync_committee_messages(
        &self,
        messages: Vec<SignedSyncCommitteeMessage>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Signed contributions (`POST /eth/v1/validator/contribution_and_proofs`).
    fn submit_contributions(
        &self,
        contributions: Vec<SignedContributionAndProof>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// A signed voluntary exit (`POST /eth/v1/beacon/pool/voluntary_exits`). A sink that has no
    /// exits says so.
    fn submit_voluntary_exit(
        &self,
        exit: crate::exits::SignedVoluntaryExit,
    ) -> impl Future<Output = Result<(), SinkError>> + Send {
        let _ = exit;
        async {
            Err(SinkError::Refused(
                "this beacon node takes no voluntary exits".into(),
            ))
        }
    }
}
