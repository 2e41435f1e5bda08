//! The cluster's duty source and sink on the standard Beacon node API.
//!
//! Reads (duties, attestation data, blocks, aggregates) go to the healthiest node and fall
//! through; submissions and subscriptions go to every node. The fork at the duty's slot picks
//! the shapes: before Electra attestations are `Attestation`s with one committee's bits, from
//! Electra on they are `SingleAttestation`s to the v2 pool with the `Eth-Consensus-Version`
//! header.

mod sink;

use crate::{
    api::{self, Data, Dependent},
    blocks,
    chain::Chain,
    metrics::Metrics,
    node::CallError,
    nodes::Nodes,
};
use cohort_ingress::{
    Aggregate, AttestationData, AttesterDuty, BlockProposal, Checkpoint, DutySink, DutySource,
    ProposerDuty, SignedAggregate, SignedAttestation, SignedBlock, SignedContributionAndProof,
    SignedSyncCommitteeMessage, SinkError, SlotClock, SourceError, SyncCommitteeContribution,
    SyncDuty,
    keys::{self, Signature},
    signing,
};
use commonware_runtime::Clock;
use reqwest::header::{HeaderMap, HeaderValue};
use std::sync::{Arc, Mutex};
use tracing::{debug, info, warn};

/// What every operator of the cluster sets alike, from its config.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The cluster's validators, by beacon-chain index.
    pub validators: Vec<u64>,
    /// Where each proposer's execution rewards go (`0x` + 40 hex), sent to the nodes each epoch.
    pub fee_recipient: String,
    /// Validators whose rewards go elsewhere than `fee_recipient`.
    pub fee_recipients: std::collections::BTreeMap<u64, String>,
    /// Written into every block the cluster proposes.
    pub graffiti: [u8; 32],
}

pub struct ApiSource<E> {
    context: Arc<E>,
    nodes: Nodes<E>,
    chain: Arc<Chain>,
    clock: SlotClock,
    settings: Arc<Settings>,
    metrics: Metrics,
    /// The dependent root each fetched epoch's attester duties were computed from.
    dependent_roots: Arc<Mutex<std::collections::BTreeMap<u64, cohort_ingress::Root>>>,
    /// The attester duties last fetched per epoch, for the effectiveness check.
    attester_duties: Arc<Mutex<std::collections::BTreeMap<u64, Vec<AttesterDuty>>>>,
}

impl<E> Clone for ApiSource<E> {
    fn clone(&self) -> Self {
        Self {
            context: self.context.clone(),
            nodes: self.nodes.clone(),
            chain: self.chain.clone(),
            clock: self.clock,
            settings: self.settings.clone(),
            metrics: self.metrics.clone(),
            dependent_roots: self.dependent_roots.clone(),
            attester_duties: self.attester_duties.clone(),
        }
    }
}

impl<E: Clock + Send + Sync + 'static> ApiSource<E> {
    pub fn new(
        context: Arc<E>,
        nodes: Nodes<E>,
        chain: Chain,
        clock: SlotClock,
        settings: Settings,
        metrics: Metrics,
    ) -> Self {
        Self {
            context,
            nodes,
            chain: Arc::new(chain),
            clock,
            settings: Arc::new(settings),
            metrics,
            dependent_roots: Default::default(),
            attester_duties: Default::default(),
        }
    }

    pub fn nodes(&self) -> &Nodes<E> {
        &self.nodes
    }

    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The attester duties fetched for `epoch` (the last fetch, if fetched again after a reorg).
    pub fn attester_duties_of(&self, epoch: u64) -> Option<Vec<AttesterDuty>> {
        self.attester_duties
            .lock()
            .ok()
            .and_then(|duties| duties.get(&epoch).cloned())
    }

    /// The fork's name at `slot` for the `Eth-Consensus-Version` header.
    fn fork_name(&self, slot: u64) -> &'static str {
        blocks::fork_name(&self.chain, self.clock.epoch_of(slot))
    }

    fn is_electra(&self, slot: u64) -> bool {
        self.chain
            .electra_fork_epoch
            .is_some_and(|epoch| self.clock.epoch_of(slot) >= epoch)
    }

    fn version_header(&self, slot: u64) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            "Eth-Consensus-Version",
            HeaderValue::from_static(self.fork_name(slot)),
        );
        headers
    }

    fn indices_body(&self) -> Vec<String> {
        self.settings
            .validators
            .iter()
            .map(|index| index.to_string())
            .collect()
    }

    /// The dependent root the duties of `epoch` were fetched under, if fetched.
    pub fn dependent_root(&self, epoch: u64) -> Option<cohort_ingress::Root> {
        self.dependent_roots
            .lock()
            .ok()
            .and_then(|roots| roots.get(&epoch).copied())
    }

    /// Tells the nodes which fee recipient each validator's blocks pay: every epoch, and again
    /// for a node that comes back (a restarted node forgets).
    pub async fn prepare_proposers(&self) {
        let preparations: Vec<api::ProposerPreparation> = self
            .settings
            .validators
            .iter()
            .map(|index| api::ProposerPreparation {
                validator_index: *index,
                fee_recipient: self
                    .settings
                    .fee_recipients
                    .get(index)
                    .unwrap_or(&self.settings.fee_recipient)
                    .clone(),
            })
            .collect();
        if let Err(err) = self
            .publish_json(
                "the proposer preparations",
                "validator/prepare_beacon_proposer",
                "/eth/v1/validator/prepare_beacon_proposer",
                &preparations,
                HeaderMap::new(),
            )
            .await
        {
            warn!(%err, "no beacon node took the proposer preparations; retried next epoch");
        }
    }

    async fn subscribe_committees(&self, duties: &[api::AttesterDutyJson]) {
        if duties.is_empty() {
            return;
        }
        let subscriptions: Vec<api::BeaconCommitteeSubscription> = duties
            .iter()
            .map(|duty| api::BeaconCommitteeSubscription {
                validator_index: duty.validator_index,
                committee_index: duty.committee_index,
                committees_at_slot: duty.committees_at_slot.unwrap_or(1),
                slot: duty.slot,
                // Whether a validator aggregates is known only after its selection proof is
                // reconstructed; a node subscribed as non-aggregator still gossips the subnet.
                is_aggregator: false,
            })
            .collect();
        if let Err(err) = self
            .publish_json(
                "the committee subscriptions",
                "validator/beacon_committee_subscriptions",
                "/eth/v1/validator/beacon_committee_subscriptions",
                &subscriptions,
                HeaderMap::new(),
            )
            .await
        {
            warn!(%err, "no beacon node took the committee subscriptions");
        }
    }

    /// Sends `body` as JSON to `path` on every node ([`Nodes::publish`]): accepted if one
    /// node accepts it.
    async fn publish_json<B: serde::Serialize + Sync + ?Sized>(
        &self,
        what: &str,
        endpoint: &'static str,
        path: &str,
        body: &B,
        headers: HeaderMap,
    ) -> Result<usize, String> {
        self.nodes
            .publish(what, |node| {
                let headers = headers.clone();
                async move { node.submit(endpoint, path, body, headers).await }
            })
            .await
    }

    fn unavailable(err: String) -> SourceError {
        SourceError::Unavailable(err)
    }

    fn counted(&self, role: &str) {
        self.metrics
            .submissions
            .get_or_create(&crate::metrics::RoleLabels {
                role: role.to_string(),
            })
            .inc();
    }
}

impl<E: Clock + Send + Sync + 'static> DutySource for ApiSource<E> {
    async fn attester_duties(&self, epoch: u64) -> Result<Vec<AttesterDuty>, SourceError> {
        if self.settings.validators.is_empty() {
            return Ok(Vec::new());
        }
        let body = self.indices_body();
        let path = format!("/eth/v1/validator/duties/attester/{epoch}");
        let answer: Dependent<Vec<api::AttesterDutyJson>> = self
            .nodes
            .read("attester duties", |node| {
                let (path, body) = (&path, &body);
                async move { node.post("validator/duties/attester", path, body).await }
            })
            .await
            .map_err(Self::unavailable)?;
        if let (Some(root), Ok(mut roots)) = (answer.dependent_root, self.dependent_roots.lock()) {
            roots.insert(epoch, root);
            // Only the current and next epochs' roots matter.
            let keep = epoch.saturating_sub(2);
            *roots = roots.split_off(&keep);
        }
        let wanted: std::collections::BTreeSet<u64> =
            self.settings.validators.iter().copied().collect();
        let duties: Vec<api::AttesterDutyJson> = answer
            .data
            .into_iter()
            .filter(|duty| wanted.contains(&duty.validator_index))
            .collect();
        self.subscribe_committees(&duties).await;
        let duties: Vec<AttesterDuty> = duties
            .into_iter()
            .map(api::AttesterDutyJson::into_duty)
            .collect();
        if let Ok(mut kept) = self.attester_duties.lock() {
            kept.insert(epoch, duties.clone());
            // Kept until their effectiveness is checked, two epochs later.
            *kept = kept.split_off(&epoch.saturating_sub(4));
        }
        Ok(duties)
    }

    async fn proposer_duties(&self, epoch: u64) -> Result<Vec<ProposerDuty>, SourceError> {
        // A node knows the proposers of an epoch for sure only once the epoch has started (its
        // RANDAO mix is fixed at the end of the one before); some nodes answer a future epoch
        // with another epoch's slots. Ask again when it starts.
        let current = self
            .clock
            .slot_at(self.context.current())
            .map(|slot| self.clock.epoch_of(slot))
            .unwrap_or(0);
        if epoch > current {
            return Err(SourceError::NotYet {
                what: "proposers of an epoch that has not started",
            });
        }
        let path = format!("/eth/v1/validator/duties/proposer/{epoch}");
        let answer: Dependent<Vec<api::ProposerDutyJson>> = self
            .nodes
            .read("proposer duties", |node| {
                let path = &path;
                async move { node.get("validator/duties/proposer", path).await }
            })
            .await
            .map_err(Self::unavailable)?;
        let wanted: std::collections::BTreeSet<u64> =
            self.settings.validators.iter().copied().collect();
        Ok(answer
            .data
            .into_iter()
            .filter(|duty| wanted.contains(&duty.validator_index))
            .map(api::ProposerDutyJson::into_duty)
            .collect())
    }

    async fn attestation_data(&self, slot: u64) -> Result<AttestationData, SourceError> {
        // The committee duty decides one vote for every committee of the slot (index 0); each
        // attester's own committee index is set when it signs, where the fork needs it.
        let path = format!("/eth/v1/validator/attestation_data?slot={slot}&committee_index=0");
        let answer: Data<api::AttestationDataJson> = self
            .nodes
            .read("attestation data", |node| {
                let path = &path;
                async move { node.get("validator/attestation_data", path).await }
            })
            .await
            .map_err(Self::unavailable)?;
        Ok(answer.data.into())
    }

    async fn finalized_checkpoint(&self) -> Result<Checkpoint, SourceError> {
        let answer: Data<api::FinalityCheckpoints> = self
            .nodes
            .read("the finalized checkpoint", |node| async move {
                node.get(
                    "beacon/states/finality_checkpoints",
                    "/eth/v1/beacon/states/head/finality_checkpoints",
                )
                .await
            })
            .await
            .map_err(Self::unavailable)?;
        Ok(answer.data.finalized.into())
    }

    async fn block_proposal(
        &self,
        slot: u64,
        proposer_index: u64,
        randao_reveal: Signature,
    ) -> Result<BlockProposal, SourceError> {
        let randao = api::hex(&keys::signature_bytes(&randao_reveal));
        let graffiti = api::hex(&self.settings.graffiti);
        let v3 = format!(
            "/eth/v3/validator/blocks/{slot}?randao_reveal={randao}&graffiti={graffiti}&builder_boost_factor=0"
        );
        let v2 =
            format!("/eth/v2/validator/blocks/{slot}?randao_reveal={randao}&graffiti={graffiti}");
        let produced: api::ProducedBlock = self
            .nodes
            .read("a block", |node| {
                let (v3, v2) = (&v3, &v2);
                async move {
                    match node.get("validator/blocks_v3", v3).await {
                        Err(err) if err.is_missing_endpoint() => {
                            node.get("validator/blocks_v2", v2).await
                        }
                        other => other,
                    }
                }
            })
            .await
            .map_err(Self::unavailable)?;
        if produced.execution_payload_blinded == Some(true) {
            return Err(SourceError::Unavailable(
                "the node built a blinded block; this cluster publishes full blocks only".into(),
            ));
        }
        let proposal = blocks::proposal(&self.chain, produced)
            .map_err(|err| SourceError::Unavailable(format!("the node's block: {err}")))?;
        let header = proposal.header;
        if header.slot != slot || header.proposer_index != proposer_index {
            return Err(SourceError::Unavailable(format!(
                "the node built a block for slot {} proposer {} instead of slot {slot} proposer \
                 {proposer_index}",
                header.slot, header.proposer_index
            )));
        }
        Ok(proposal)
    }

    fn check_proposal(&self, proposal: &BlockProposal) -> Result<(), String> {
        blocks::check(&self.chain, proposal)
    }

    async fn sync_duties(&self, epoch: u64) -> Result<Vec<SyncDuty>, SourceError> {
        if self.settings.validators.is_empty() {
            return Ok(Vec::new());
        }
        let body = self.indices_body();
        let path = format!("/eth/v1/validator/duties/sync/{epoch}");
        let answer: Data<Vec<api::SyncDutyJson>> = self
            .nodes
            .read("sync committee duties", |node| {
                let (path, body) = (&path, &body);
                async move { node.post("validator/duties/sync", path, body).await }
            })
            .await
            .map_err(Self::unavailable)?;
        let wanted: std::collections::BTreeSet<u64> =
            self.settings.validators.iter().copied().collect();
        let duties: Vec<SyncDuty> = answer
            .data
            .into_iter()
            .filter(|duty| wanted.contains(&duty.validator_index))
            .map(|duty| SyncDuty {
                validator_index: duty.validator_index,
                validator_sync_committee_indices: duty.validator_sync_committee_indices,
            })
            .collect();
        // Members must be subscribed to their subnets for the period, or their messages travel
        // only through the node's own pool.
        let period = self.chain.epochs_per_sync_committee_period.max(1);
        let until_epoch = (epoch / period + 1) * period;
        let subscriptions: Vec<api::SyncCommitteeSubscription> = duties
            .iter()
            .map(|duty| api::SyncCommitteeSubscription {
                validator_index: duty.validator_index,
                sync_committee_indices: duty.validator_sync_committee_indices.clone(),
                until_epoch,
            })
            .collect();
        if !subscriptions.is_empty()
            && let Err(err) = self
                .publish_json(
                    "the sync committee subscriptions",
                    "validator/sync_committee_subscriptions",
                    "/eth/v1/validator/sync_committee_subscriptions",
                    &subscriptions,
                    HeaderMap::new(),
                )
                .await
        {
            warn!(%err, "no beacon node took the sync committee subscriptions");
        }
        Ok(duties)
    }

    async fn sync_committee_contribution(
        &self,
        slot: u64,
        subcommittee_index: u64,
        beacon_block_root: cohort_ingress::Root,
    ) -> Result<SyncCommitteeContribution, SourceError> {
        let path = format!(
            "/eth/v1/validator/sync_committee_contribution?slot={slot}&subcommittee_index={subcommittee_index}&beacon_block_root={}",
            api::hex(&beacon_block_root.0)
        );
        let answer: Data<api::ContributionJson> = self
            .nodes
            .read("a sync committee contribution", |node| {
                let path = &path;
                async move {
                    node.get("validator/sync_committee_contribution", path)
                        .await
                }
            })
            .await
            .map_err(Self::unavailable)?;
        let size = self.clock.sync_committee.subcommittee_size() as usize;
        let aggregation_bits = api::bitvector_from_bytes(&answer.data.aggregation_bits, size)
            .map_err(|err| SourceError::Unavailable(format!("the node's contribution: {err}")))?;
        let contribution = SyncCommitteeContribution {
            slot: answer.data.slot,
            beacon_block_root: answer.data.beacon_block_root,
            subcommittee_index: answer.data.subcommittee_index,
            aggregation_bits,
            signature: answer.data.signature,
        };
        if contribution.slot != slot
            || contribution.subcommittee_index != subcommittee_index
            || contribution.beacon_block_root != beacon_block_root
        {
            return Err(SourceError::Unavailable(
                "the node's contribution is for another slot, subcommittee or block".into(),
            ));
        }
        Ok(contribution)
    }

    async fn liveness(&self, epoch: u64, validators: Vec<u64>) -> Result<Vec<u64>, SourceError> {
        if validators.is_empty() {
            return Ok(Vec::new());
        }
        let asked: std::collections::BTreeSet<u64> = validators.iter().copied().collect();
        let body: Vec<String> = validators.iter().map(|index| index.to_string()).collect();
        let path = format!("/eth/v1/validator/liveness/{epoch}");
        // Nodes older than the standard endpoint (Lodestar before 1.8) serve the same answer
        // at `GET /eth/v1/validator/liveness?indices=..&indices=..&epoch=..` (one `indices` per
        // validator: those nodes do not split a comma-separated list).
        let legacy = format!(
            "/eth/v1/validator/liveness?{}&epoch={epoch}",
            body.iter()
                .map(|index| format!("indices={index}"))
                .collect::<Vec<_>>()
                .join("&")
        );
        let answer: Data<Vec<api::LivenessJson>> = self
            .nodes
            .read("validator liveness", |node| {
                let (path, body, legacy) = (&path, &body, &legacy);
                async move {
                    match node.post("validator/liveness", path, body).await {
                        Err(err) if err.is_missing_endpoint() => {
                            node.get("validator/liveness_legacy", legacy).await
                        }
                        other => other,
                    }
                }
            })
            .await
            .map_err(Self::unavailable)?;
        // An answer that leaves a validator out cannot clear it: only a full answer counts.
        let answered: std::collections::BTreeSet<u64> =
            answer.data.iter().map(|entry| entry.index).collect();
        if let Some(missing) = asked.difference(&answered).next() {
            return Err(SourceError::Unavailable(format!(
                "the node's liveness answer for epoch {epoch} leaves out validator {missing}"
            )));
        }
        Ok(answer
            .data
            .into_iter()
            .filter(|entry| entry.is_live && asked.contains(&entry.index))
            .map(|entry| entry.index)
            .collect())
    }

    async fn aggregate_attestation(
        &self,
        data: AttestationData,
        committee_index: u64,
    ) -> Result<Aggregate, SourceError> {
        let root = api::hex(&signing::attestation_data_root(&data));
        let slot = data.slot;
        let (endpoint, path) = if self.is_electra(slot) {
            (
                "validator/aggregate_attestation_v2",
                format!(
                    "/eth/v2/validator/aggregate_attestation?attestation_data_root={root}&slot={slot}&committee_index={committee_index}"
                ),
            )
        } else {
            (
                "validator/aggregate_attestation",
                format!(
                    "/eth/v1/validator/aggregate_attestation?attestation_data_root={root}&slot={slot}"
                ),
            )
        };
        let answer: Data<api::AttestationJson> = self
            .nodes
            .read("an aggregate", |node| {
                let path = &path;
                async move { node.get(endpoint, path).await }
            })
            .await
            .map_err(Self::unavailable)?;
        let aggregation_bits = api::bitlist_from_bytes(&answer.data.aggregation_bits)
            .map_err(|err| SourceError::Unavailable(format!("the node's aggregate: {err}")))?;
        let aggregate = Aggregate {
            aggregation_bits,
            data: answer.data.data.into(),
            signature: answer.data.signature,
        };
        if aggregate.data != data {
            return Err(SourceError::Unavailable(
                "the node's aggregate is of other attestation data than asked".into(),
            ));
        }
        Ok(aggregate)
    }
}

/// Turns a failed read into a duty-source error with every node's reason.
pub fn source_error(err: CallError) -> SourceError {
    SourceError::Unavailable(err.to_string())
}
