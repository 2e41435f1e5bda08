//! A misbehaving beacon node, for runs that check what the scheduler and runner do about one.
//!
//! [`FaultySource`] wraps an operator's devnet beacon node and, during a window of slots,
//! answers every request late or not at all. Outside its window it is the node it wraps.

use cohort_devnet::DevnetSource;
use cohort_ingress::{
    Aggregate, AttestationData, AttesterDuty, BlockProposal, Checkpoint, DutySink, DutySource,
    ProposerDuty, Root, SignedAggregate, SignedAttestation, SignedBlock,
    SignedContributionAndProof, SignedSyncCommitteeMessage, SinkError, SlotClock, SourceError,
    SyncCommitteeContribution, SyncDuty, keys::Signature,
};
use commonware_runtime::{Clock as _, deterministic};
use serde::Serialize;
use std::{sync::Arc, time::Duration};

/// What a faulty duty source (the operator's beacon node) does during its window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SourceFaultKind {
    /// Answers every request this many milliseconds late.
    Late(u64),
    /// Answers no request at all: every call fails as unavailable.
    Absent,
}

/// One operator's beacon node answering late or not at all from `from_slot` until `to_slot`
/// (exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SourceFault {
    pub operator: usize,
    pub kind: SourceFaultKind,
    pub from_slot: u64,
    pub to_slot: u64,
}

impl SourceFault {
    /// Parses `I:late=MS@S-E` or `I:absent@S-E`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let usage = || format!("source-fault `{text}`: expected I:late=MS@S-E or I:absent@S-E");
        let (operator, kind, from_slot, to_slot) =
            crate::faults::parse_operator_window("source-fault", text, usage)?;
        let kind = match kind.split_once('=') {
            Some(("late", millis)) => SourceFaultKind::Late(millis.parse().map_err(|_| usage())?),
            None if kind == "absent" => SourceFaultKind::Absent,
            _ => return Err(usage()),
        };
        Ok(Self {
            operator,
            kind,
            from_slot,
            to_slot,
        })
    }

    pub fn flag(&self) -> String {
        let kind = match self.kind {
            SourceFaultKind::Late(millis) => format!("late={millis}"),
            SourceFaultKind::Absent => "absent".into(),
        };
        format!(
            "{}:{kind}@{}-{}",
            self.operator, self.from_slot, self.to_slot
        )
    }

    /// Whether the fault is in force during `slot`.
    pub fn covers(&self, slot: u64) -> bool {
        (self.from_slot..self.to_slot).contains(&slot)
    }
}

/// An operator's beacon node with its faults.
#[derive(Clone)]
pub struct FaultySource {
    inner: DevnetSource,
    /// The beacon node's own clock, which says which window is in force.
    clock: SlotClock,
    /// Windows in which this beacon node answers late or not at all, with the runtime that
    /// tells the time and sleeps; `None` when it has none.
    faults: Option<(Arc<deterministic::Context>, Vec<SourceFault>)>,
}

impl std::fmt::Debug for FaultySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultySource")
            .field("inner", &self.inner)
            .field("faults", &self.faults.as_ref().map(|(_, faults)| faults))
            .finish()
    }
}

impl FaultySource {
    pub fn new(
        inner: DevnetSource,
        clock: SlotClock,
        context: deterministic::Context,
        faults: Vec<SourceFault>,
    ) -> Self {
        Self {
            inner,
            clock,
            faults: (!faults.is_empty()).then(|| (Arc::new(context), faults)),
        }
    }

    /// Waits out a late answer, or fails while the beacon node is down.
    async fn answer(&self) -> Result<(), String> {
        let Some((context, faults)) = &self.faults else {
            return Ok(());
        };
        let slot = self.clock.current_slot(context.current());
        match faults.iter().find(|fault| fault.covers(slot)) {
            None => Ok(()),
            Some(SourceFault {
                kind: SourceFaultKind::Late(millis),
                ..
            }) => {
                context.sleep(Duration::from_millis(*millis)).await;
                Ok(())
            }
            Some(SourceFault {
                kind: SourceFaultKind::Absent,
                to_slot,
                ..
            }) => Err(format!(
                "devnet beacon node is down until slot {to_slot} (injected fault)"
            )),
        }
    }

    async fn source(&self) -> Result<(), SourceError> {
        self.answer().await.map_err(SourceError::Unavailable)
    }

    async fn sink(&self) -> Result<(), SinkError> {
        self.answer().await.map_err(SinkError::Unavailable)
    }
}

impl DutySink for FaultySource {
    async fn submit_attestations(
        &self,
        attestations: Vec<SignedAttestation>,
    ) -> Result<(), SinkError> {
        self.sink().await?;
        self.inner.submit_attestations(attestations).await
    }

    async fn submit_block(&self, block: SignedBlock) -> Result<(), SinkError> {
        self.sink().await?;
        self.inner.submit_block(block).await
    }

    async fn submit_aggregate(&self, aggregate: SignedAggregate) -> Result<(), SinkError> {
        self.sink().await?;
        self.inner.submit_aggregate(aggregate).await
    }

    async fn submit_sync_committee_messages(
        &self,
        messages: Vec<SignedSyncCommitteeMessage>,
    ) -> Result<(), SinkError> {
        self.sink().await?;
        self.inner.submit_sync_committee_messages(messages).await
    }

    async fn submit_contributions(
        &self,
        contributions: Vec<SignedContributionAndProof>,
    ) -> Result<(), SinkError> {
        self.sink().await?;
        self.inner.submit_contributions(contributions).await
    }

    async fn submit_voluntary_exit(
        &self,
        exit: cohort_ingress::exits::SignedVoluntaryExit,
    ) -> Result<(), SinkError> {
        self.sink().await?;
        self.inner.submit_voluntary_exit(exit).await
    }
}

impl DutySource for FaultySource {
    async fn attester_duties(&self, epoch: u64) -> Result<Vec<AttesterDuty>, SourceError> {
        self.source().await?;
        self.inner.attester_duties(epoch).await
    }

    async fn attestation_data(&self, slot: u64) -> Result<AttestationData, SourceError> {
        self.source().await?;
        self.inner.attestation_data(slot).await
    }

    async fn finalized_checkpoint(&self) -> Result<Checkpoint, SourceError> {
        self.source().await?;
        self.inner.finalized_checkpoint().await
    }

    async fn proposer_duties(&self, epoch: u64) -> Result<Vec<ProposerDuty>, SourceError> {
        self.source().await?;
        self.inner.proposer_duties(epoch).await
    }

    async fn block_proposal(
        &self,
        slot: u64,
        proposer_index: u64,
        randao_reveal: Signature,
    ) -> Result<BlockProposal, SourceError> {
        self.source().await?;
        self.inner
            .block_proposal(slot, proposer_index, randao_reveal)
            .await
    }

    fn check_proposal(&self, proposal: &BlockProposal) -> Result<(), String> {
        self.inner.check_proposal(proposal)
    }

    async fn aggregate_attestation(
        &self,
        data: AttestationData,
        committee_index: u64,
    ) -> Result<Aggregate, SourceError> {
        self.source().await?;
        self.inner
            .aggregate_attestation(data, committee_index)
            .await
    }

    async fn sync_duties(&self, epoch: u64) -> Result<Vec<SyncDuty>, SourceError> {
        self.source().await?;
        self.inner.sync_duties(epoch).await
    }

    async fn sync_committee_contribution(
        &self,
        slot: u64,
        subcommittee_index: u64,
        beacon_block_root: Root,
    ) -> Result<SyncCommitteeContribution, SourceError> {
        self.source().await?;
        self.inner
            .sync_committee_contribution(slot, subcommittee_index, beacon_block_root)
            .await
    }

    async fn liveness(&self, epoch: u64, validators: Vec<u64>) -> Result<Vec<u64>, SourceError> {
        self.source().await?;
        self.inner.liveness(epoch, validators).await
    }
}
