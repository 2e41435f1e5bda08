//! One operator's devnet beacon node behind the traits the scheduler and runner speak.

use crate::{DevnetBeacon, DevnetChain};
use cohort_ingress::{
    Aggregate, AttestationData, AttesterDuty, BlockProposal, Checkpoint, DutySink, DutySource,
    ProposerDuty, Root, SignedAggregate, SignedAttestation, SignedBlock,
    SignedContributionAndProof, SignedSyncCommitteeMessage, SinkError, SourceError,
    SyncCommitteeContribution, SyncDuty, keys::Signature,
};
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

/// The fork name devnet proposals carry.
pub const DEVNET_FORK: &str = "devnet";

/// One operator's devnet beacon node as a duty source and sink. The finalized checkpoint is
/// that of the latest slot the node has been asked about, which is what a node following the
/// chain would report. Blocks, aggregates and submissions go to the shared chain.
#[derive(Clone, Debug)]
pub struct DevnetSource {
    beacon: DevnetBeacon,
    chain: DevnetChain,
    latest_slot: Arc<AtomicU64>,
}

impl DevnetSource {
    pub fn new(beacon: DevnetBeacon, chain: DevnetChain) -> Self {
        Self {
            beacon,
            chain,
            latest_slot: Default::default(),
        }
    }
}

impl DutySink for DevnetSource {
    async fn submit_attestations(
        &self,
        attestations: Vec<SignedAttestation>,
    ) -> Result<(), SinkError> {
        self.chain.submit_attestations(attestations)
    }

    async fn submit_block(&self, block: SignedBlock) -> Result<(), SinkError> {
        self.chain.submit_block(block)
    }

    async fn submit_aggregate(&self, aggregate: SignedAggregate) -> Result<(), SinkError> {
        self.chain.submit_aggregate(aggregate)
    }

    async fn submit_sync_committee_messages(
        &self,
        messages: Vec<SignedSyncCommitteeMessage>,
    ) -> Result<(), SinkError> {
        self.chain.submit_sync_committee_messages(messages)
    }

    async fn submit_contributions(
        &self,
        contributions: Vec<SignedContributionAndProof>,
    ) -> Result<(), SinkError> {
        self.chain.submit_contributions(contributions)
    }

    async fn submit_voluntary_exit(
        &self,
        exit: cohort_ingress::exits::SignedVoluntaryExit,
    ) -> Result<(), SinkError> {
        self.chain.submit_voluntary_exit(exit)
    }
}

impl DutySource for DevnetSource {
    async fn attester_duties(&self, epoch: u64) -> Result<Vec<AttesterDuty>, SourceError> {
        Ok(self.beacon.duties(epoch))
    }

    async fn attestation_data(&self, slot: u64) -> Result<AttestationData, SourceError> {
        self.latest_slot.fetch_max(slot, Ordering::Relaxed);
        Ok(self.beacon.attestation_data_for(slot))
    }

    async fn finalized_checkpoint(&self) -> Result<Checkpoint, SourceError> {
        let slot = self.latest_slot.load(Ordering::Relaxed);
        Ok(self.beacon.finalized_for(slot))
    }

    async fn proposer_duties(&self, epoch: u64) -> Result<Vec<ProposerDuty>, SourceError> {
        Ok(self.beacon.proposer_duties(epoch))
    }

    async fn block_proposal(
        &self,
        slot: u64,
        proposer_index: u64,
        randao_reveal: Signature,
    ) -> Result<BlockProposal, SourceError> {
        let header = self
            .chain
            .build_block(slot, proposer_index, &randao_reveal)?;
        Ok(BlockProposal::header_only(header, DEVNET_FORK))
    }

    fn check_proposal(&self, proposal: &BlockProposal) -> Result<(), String> {
        // The devnet chain keeps the bodies it builds; a proposal carries only the header, and
        // the chain itself refuses a header it did not build (or could not have).
        if proposal.fork != DEVNET_FORK || !proposal.contents.is_empty() {
            return Err(format!(
                "a devnet block is a `{DEVNET_FORK}` header with no contents, not a `{}` block \
                 of {} bytes",
                proposal.fork,
                proposal.contents.len()
            ));
        }
        Ok(())
    }

    async fn aggregate_attestation(
        &self,
        data: AttestationData,
        committee_index: u64,
    ) -> Result<Aggregate, SourceError> {
        self.chain.aggregate(&data, committee_index)
    }

    async fn sync_duties(&self, epoch: u64) -> Result<Vec<SyncDuty>, SourceError> {
        Ok(self.beacon.sync_duties(epoch))
    }

    async fn sync_committee_contribution(
        &self,
        slot: u64,
        subcommittee_index: u64,
        beacon_block_root: Root,
    ) -> Result<SyncCommitteeContribution, SourceError> {
        self.chain
            .contribution(slot, subcommittee_index, beacon_block_root)
    }

    async fn liveness(&self, epoch: u64, validators: Vec<u64>) -> Result<Vec<u64>, SourceError> {
        Ok(self.chain.live(epoch, &validators))
    }
}
