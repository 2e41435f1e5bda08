//! Block bodies per fork, the block around them, and the function every follower runs on the
//! proposer's block: its header, with the body root computed here rather than trusted.

use crate::Error;
use crate::containers::*;
use crate::fork::Fork;
use crate::preset::{Mainnet, Minimal, Preset, PresetKind};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use ssz_types::VariableList;
use tree_hash::TreeHash;
use tree_hash_derive::TreeHash;

/// `BeaconBlock` around any fork's body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound(serialize = "B: Serialize", deserialize = "B: DeserializeOwned"))]
pub struct BeaconBlock<B: TreeHash> {
    #[serde(with = "serde_utils::quoted_u64")]
    pub slot: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub proposer_index: u64,
    pub parent_root: Root,
    pub state_root: Root,
    pub body: B,
}

impl<B: TreeHash> BeaconBlock<B> {
    /// The block's header: its root equals the block's root.
    pub fn header(&self) -> BeaconBlockHeader {
        BeaconBlockHeader {
            slot: self.slot,
            proposer_index: self.proposer_index,
            parent_root: self.parent_root,
            state_root: self.state_root,
            body_root: self.body.tree_hash_root(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct BeaconBlockBodyPhase0<P: Preset> {
    pub randao_reveal: BlsSignature,
    pub eth1_data: Eth1Data,
    pub graffiti: Root,
    pub proposer_slashings: VariableList<ProposerSlashing, P::MaxProposerSlashings>,
    pub attester_slashings: VariableList<AttesterSlashing<P>, P::MaxAttesterSlashings>,
    pub attestations: VariableList<Attestation<P>, P::MaxAttestations>,
    pub deposits: VariableList<Deposit, P::MaxDeposits>,
    pub voluntary_exits: VariableList<SignedVoluntaryExit, P::MaxVoluntaryExits>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct BeaconBlockBodyAltair<P: Preset> {
    pub randao_reveal: BlsSignature,
    pub eth1_data: Eth1Data,
    pub graffiti: Root,
    pub proposer_slashings: VariableList<ProposerSlashing, P::MaxProposerSlashings>,
    pub attester_slashings: VariableList<AttesterSlashing<P>, P::MaxAttesterSlashings>,
    pub attestations: VariableList<Attestation<P>, P::MaxAttestations>,
    pub deposits: VariableList<Deposit, P::MaxDeposits>,
    pub voluntary_exits: VariableList<SignedVoluntaryExit, P::MaxVoluntaryExits>,
    pub sync_aggregate: SyncAggregate<P>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct BeaconBlockBodyBellatrix<P: Preset> {
    pub randao_reveal: BlsSignature,
    pub eth1_data: Eth1Data,
    pub graffiti: Root,
    pub proposer_slashings: VariableList<ProposerSlashing, P::MaxProposerSlashings>,
    pub attester_slashings: VariableList<AttesterSlashing<P>, P::MaxAttesterSlashings>,
    pub attestations: VariableList<Attestation<P>, P::MaxAttestations>,
    pub deposits: VariableList<Deposit, P::MaxDeposits>,
    pub voluntary_exits: VariableList<SignedVoluntaryExit, P::MaxVoluntaryExits>,
    pub sync_aggregate: SyncAggregate<P>,
    pub execution_payload: ExecutionPayloadBellatrix<P>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct BeaconBlockBodyCapella<P: Preset> {
    pub randao_reveal: BlsSignature,
    pub eth1_data: Eth1Data,
    pub graffiti: Root,
    pub proposer_slashings: VariableList<ProposerSlashing, P::MaxProposerSlashings>,
    pub attester_slashings: VariableList<AttesterSlashing<P>, P::MaxAttesterSlashings>,
    pub attestations: VariableList<Attestation<P>, P::MaxAttestations>,
    pub deposits: VariableList<Deposit, P::MaxDeposits>,
    pub voluntary_exits: VariableList<SignedVoluntaryExit, P::MaxVoluntaryExits>,
    pub sync_aggregate: SyncAggregate<P>,
    pub execution_payload: ExecutionPayloadCapella<P>,
    pub bls_to_execution_changes:
        VariableList<SignedBlsToExecutionChange, P::MaxBlsToExecutionChanges>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct BeaconBlockBodyDeneb<P: Preset> {
    pub randao_reveal: BlsSignature,
    pub eth1_data: Eth1Data,
    pub graffiti: Root,
    pub proposer_slashings: VariableList<ProposerSlashing, P::MaxProposerSlashings>,
    pub attester_slashings: VariableList<AttesterSlashing<P>, P::MaxAttesterSlashings>,
    pub attestations: VariableList<Attestation<P>, P::MaxAttestations>,
    pub deposits: VariableList<Deposit, P::MaxDeposits>,
    pub voluntary_exits: VariableList<SignedVoluntaryExit, P::MaxVoluntaryExits>,
    pub sync_aggregate: SyncAggregate<P>,
    pub execution_payload: ExecutionPayloadDeneb<P>,
    pub bls_to_execution_changes:
        VariableList<SignedBlsToExecutionChange, P::MaxBlsToExecutionChanges>,
    pub blob_kzg_commitments: VariableList<KzgCommitment, P::MaxBlobCommitmentsPerBlock>,
}

/// Electra's body; Fulu's is the same container ([`BeaconBlockBodyFulu`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct BeaconBlockBodyElectra<P: Preset> {
    pub randao_reveal: BlsSignature,
    pub eth1_data: Eth1Data,
    pub graffiti: Root,
    pub proposer_slashings: VariableList<ProposerSlashing, P::MaxProposerSlashings>,
    pub attester_slashings:
        VariableList<AttesterSlashingElectra<P>, P::MaxAttesterSlashingsElectra>,
    pub attestations: VariableList<AttestationElectra<P>, P::MaxAttestationsElectra>,
    pub deposits: VariableList<Deposit, P::MaxDeposits>,
    pub voluntary_exits: VariableList<SignedVoluntaryExit, P::MaxVoluntaryExits>,
    pub sync_aggregate: SyncAggregate<P>,
    pub execution_payload: ExecutionPayloadDeneb<P>,
    pub bls_to_execution_changes:
        VariableList<SignedBlsToExecutionChange, P::MaxBlsToExecutionChanges>,
    pub blob_kzg_commitments: VariableList<KzgCommitment, P::MaxBlobCommitmentsPerBlock>,
    pub execution_requests: ExecutionRequests<P>,
}

// Blinded bodies (`execution_payload_header` instead of `execution_payload`), as the produce
// endpoints return when a builder's payload wins (`execution_payload_blinded: true`). Their
// root equals the full body's.

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct BlindedBeaconBlockBodyBellatrix<P: Preset> {
    pub randao_reveal: BlsSignature,
    pub eth1_data: Eth1Data,
    pub graffiti: Root,
    pub proposer_slashings: VariableList<ProposerSlashing, P::MaxProposerSlashings>,
    pub attester_slashings: VariableList<AttesterSlashing<P>, P::MaxAttesterSlashings>,
    pub attestations: VariableList<Attestation<P>, P::MaxAttestations>,
    pub deposits: VariableList<Deposit, P::MaxDeposits>,
    pub voluntary_exits: VariableList<SignedVoluntaryExit, P::MaxVoluntaryExits>,
    pub sync_aggregate: SyncAggregate<P>,
    pub execution_payload_header: ExecutionPayloadHeaderBellatrix<P>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct BlindedBeaconBlockBodyCapella<P: Preset> {
    pub randao_reveal: BlsSignature,
    pub eth1_data: Eth1Data,
    pub graffiti: Root,
    pub proposer_slashings: VariableList<ProposerSlashing, P::MaxProposerSlashings>,
    pub attester_slashings: VariableList<AttesterSlashing<P>, P::MaxAttesterSlashings>,
    pub attestations: VariableList<Attestation<P>, P::MaxAttestations>,
    pub deposits: VariableList<Deposit, P::MaxDeposits>,
    pub voluntary_exits: VariableList<SignedVoluntaryExit, P::MaxVoluntaryExits>,
    pub sync_aggregate: SyncAggregate<P>,
    pub execution_payload_header: ExecutionPayloadHeaderCapella<P>,
    pub bls_to_execution_changes:
        VariableList<SignedBlsToExecutionChange, P::MaxBlsToExecutionChanges>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct BlindedBeaconBlockBodyDeneb<P: Preset> {
    pub randao_reveal: BlsSignature,
    pub eth1_data: Eth1Data,
    pub graffiti: Root,
    pub proposer_slashings: VariableList<ProposerSlashing, P::MaxProposerSlashings>,
    pub attester_slashings: VariableList<AttesterSlashing<P>, P::MaxAttesterSlashings>,
    pub attestations: VariableList<Attestation<P>, P::MaxAttestations>,
    pub deposits: VariableList<Deposit, P::MaxDeposits>,
    pub voluntary_exits: VariableList<SignedVoluntaryExit, P::MaxVoluntaryExits>,
    pub sync_aggregate: SyncAggregate<P>,
    pub execution_payload_header: ExecutionPayloadHeaderDeneb<P>,
    pub bls_to_execution_changes:
        VariableList<SignedBlsToExecutionChange, P::MaxBlsToExecutionChanges>,
    pub blob_kzg_commitments: VariableList<KzgCommitment, P::MaxBlobCommitmentsPerBlock>,
}

/// Electra's (and Fulu's) blinded body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct BlindedBeaconBlockBodyElectra<P: Preset> {
    pub randao_reveal: BlsSignature,
    pub eth1_data: Eth1Data,
    pub graffiti: Root,
    pub proposer_slashings: VariableList<ProposerSlashing, P::MaxProposerSlashings>,
    pub attester_slashings:
        VariableList<AttesterSlashingElectra<P>, P::MaxAttesterSlashingsElectra>,
    pub attestations: VariableList<AttestationElectra<P>, P::MaxAttestationsElectra>,
    pub deposits: VariableList<Deposit, P::MaxDeposits>,
    pub voluntary_exits: VariableList<SignedVoluntaryExit, P::MaxVoluntaryExits>,
    pub sync_aggregate: SyncAggregate<P>,
    pub execution_payload_header: ExecutionPayloadHeaderDeneb<P>,
    pub bls_to_execution_changes:
        VariableList<SignedBlsToExecutionChange, P::MaxBlsToExecutionChanges>,
    pub blob_kzg_commitments: VariableList<KzgCommitment, P::MaxBlobCommitmentsPerBlock>,
    pub execution_requests: ExecutionRequests<P>,
}

/// Fulu modifies only the state, not the block body.
pub type BeaconBlockBodyFulu<P> = BeaconBlockBodyElectra<P>;
/// Fulu's blinded body is Electra's.
pub type BlindedBeaconBlockBodyFulu<P> = BlindedBeaconBlockBodyElectra<P>;

/// The block JSON as the produce-block endpoints return it, reduced to the `BeaconBlock`
/// object: the response's `data` when given the whole response, and, from Deneb on, the
/// `block` inside `BlockContents` (`{block, kzg_proofs, blobs}`).
fn block_object(value: &Value) -> &Value {
    let mut value = value;
    if value.get("body").is_none()
        && let Some(data) = value.get("data")
    {
        value = data;
    }
    if value.get("body").is_none()
        && let Some(block) = value.get("block")
    {
        value = block;
    }
    value
}

fn parse_header<B: DeserializeOwned + TreeHash>(block: &Value) -> Result<BeaconBlockHeader, Error> {
    let block = BeaconBlock::<B>::deserialize(block_object(block))
        .map_err(|e| Error::Json(e.to_string()))?;
    Ok(block.header())
}

/// A blinded body: `execution_payload_header` where a full body has `execution_payload`.
fn is_blinded(block: &Value) -> bool {
    block_object(block).get("body").is_some_and(|body| {
        body.get("execution_payload").is_none() && body.get("execution_payload_header").is_some()
    })
}

fn header_for<P: Preset>(fork: Fork, block: &Value) -> Result<BeaconBlockHeader, Error> {
    match (fork, is_blinded(block)) {
        (Fork::Phase0, _) => parse_header::<BeaconBlockBodyPhase0<P>>(block),
        (Fork::Altair, _) => parse_header::<BeaconBlockBodyAltair<P>>(block),
        (Fork::Bellatrix, false) => parse_header::<BeaconBlockBodyBellatrix<P>>(block),
        (Fork::Bellatrix, true) => parse_header::<BlindedBeaconBlockBodyBellatrix<P>>(block),
        (Fork::Capella, false) => parse_header::<BeaconBlockBodyCapella<P>>(block),
        (Fork::Capella, true) => parse_header::<BlindedBeaconBlockBodyCapella<P>>(block),
        (Fork::Deneb, false) => parse_header::<BeaconBlockBodyDeneb<P>>(block),
        (Fork::Deneb, true) => parse_header::<BlindedBeaconBlockBodyDeneb<P>>(block),
        (Fork::Electra | Fork::Fulu, false) => parse_header::<BeaconBlockBodyElectra<P>>(block),
        (Fork::Electra | Fork::Fulu, true) => {
            parse_header::<BlindedBeaconBlockBodyElectra<P>>(block)
        }
    }
}

/// The header of a block in the Beacon API's JSON (`data` of `GET /eth/v2/validator/blocks` or
/// `/eth/v3/validator/blocks`, `message` of a signed block), with `body_root` computed as the
/// body's `hash_tree_root` for `fork` and `preset`. Also accepts the whole response (with
/// `data`) and Deneb's `BlockContents` (with `block`).
///
/// A blinded block (`execution_payload_header` in place of `execution_payload`, as v3 returns
/// with `execution_payload_blinded: true`) is read as the fork's blinded body, whose root equals
/// the full body's. Every field of the fork's body must be present with its exact length and
/// within its list limits; anything else is an error.
pub fn block_header(
    fork: Fork,
    preset: PresetKind,
    block: &Value,
) -> Result<BeaconBlockHeader, Error> {
    match preset {
        PresetKind::Mainnet => header_for::<Mainnet>(fork, block),
        PresetKind::Minimal => header_for::<Minimal>(fork, block),
    }
}

/// [`block_header`] from the raw JSON bytes.
pub fn block_header_from_slice(
    fork: Fork,
    preset: PresetKind,
    json: &[u8],
) -> Result<BeaconBlockHeader, Error> {
    let value: Value = serde_json::from_slice(json).map_err(|e| Error::Json(e.to_string()))?;
    block_header(fork, preset, &value)
}

/// The `hash_tree_root` of the block's body: what the block header commits to.
pub fn body_root(fork: Fork, preset: PresetKind, block: &Value) -> Result<[u8; 32], Error> {
    Ok(block_header(fork, preset, block)?.body_root.0)
}

/// [`body_root`] from the raw JSON bytes.
pub fn body_root_from_slice(
    fork: Fork,
    preset: PresetKind,
    json: &[u8],
) -> Result<[u8; 32], Error> {
    Ok(block_header_from_slice(fork, preset, json)?.body_root.0)
}

/// The block's root (`hash_tree_root(BeaconBlock)`, equal to its header's root).
pub fn block_root(fork: Fork, preset: PresetKind, block: &Value) -> Result<[u8; 32], Error> {
    Ok(block_header(fork, preset, block)?.tree_hash_root().0)
}
