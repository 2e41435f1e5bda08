//! The consensus containers, field for field as the specs define them (phase0 through Electra;
//! Fulu changes no block container), with `hash_tree_root` from `tree_hash` and serde in the
//! Beacon API's JSON shapes.
//!
//! JSON conventions (the Beacon API's): integers are decimal strings (`quoted_u64`; a bare
//! number is accepted too), byte vectors and lists are `0x` hex, bitlists and bitvectors are the
//! `0x` hex of their SSZ bytes, unknown fields are ignored. Every list checks its limit while
//! parsing, so an oversize list is a parse error.
//!
//! A container that appears in several forks with different fields has one type per shape: the
//! oldest shape keeps the spec's name (`Attestation`), a later one carries its fork's name
//! (`AttestationElectra`). Sizes come from the [`Preset`] type parameter.

use crate::preset::{DepositProofLength, Preset};
use alloy_primitives::{Address, B256, FixedBytes, U256};
use serde::{Deserialize, Serialize};
use ssz_types::{BitList, BitVector, FixedVector, VariableList};
use tree_hash::TreeHash;
use tree_hash_derive::TreeHash;

/// `Root`, `Bytes32`, `Hash32`.
pub type Root = B256;
/// `BLSSignature` (compressed G2).
pub type BlsSignature = FixedBytes<96>;
/// `BLSPubkey` (compressed G1).
pub type BlsPublicKey = FixedBytes<48>;
/// `KZGCommitment`.
pub type KzgCommitment = FixedBytes<48>;
/// `ExecutionAddress`.
pub type ExecutionAddress = Address;
/// `Transaction`: an opaque byte list.
pub type Transaction<P> = VariableList<u8, <P as Preset>::MaxBytesPerTransaction>;

/// `hash_tree_root` as plain bytes, for any container.
pub fn hash_tree_root<T: TreeHash>(value: &T) -> [u8; 32] {
    value.tree_hash_root().0
}

// ---------------------------------------------------------------------------------------------
// phase0

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
pub struct Checkpoint {
    #[serde(with = "serde_utils::quoted_u64")]
    pub epoch: u64,
    pub root: Root,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
pub struct AttestationData {
    #[serde(with = "serde_utils::quoted_u64")]
    pub slot: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub index: u64,
    pub beacon_block_root: Root,
    pub source: Checkpoint,
    pub target: Checkpoint,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
pub struct BeaconBlockHeader {
    #[serde(with = "serde_utils::quoted_u64")]
    pub slot: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub proposer_index: u64,
    pub parent_root: Root,
    pub state_root: Root,
    pub body_root: Root,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
pub struct SignedBeaconBlockHeader {
    pub message: BeaconBlockHeader,
    pub signature: BlsSignature,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
pub struct Eth1Data {
    pub deposit_root: Root,
    #[serde(with = "serde_utils::quoted_u64")]
    pub deposit_count: u64,
    pub block_hash: Root,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
pub struct ProposerSlashing {
    pub signed_header_1: SignedBeaconBlockHeader,
    pub signed_header_2: SignedBeaconBlockHeader,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct IndexedAttestation<P: Preset> {
    #[serde(with = "ssz_types::serde_utils::quoted_u64_var_list")]
    pub attesting_indices: VariableList<u64, P::MaxValidatorsPerCommittee>,
    pub data: AttestationData,
    pub signature: BlsSignature,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct AttesterSlashing<P: Preset> {
    pub attestation_1: IndexedAttestation<P>,
    pub attestation_2: IndexedAttestation<P>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct Attestation<P: Preset> {
    pub aggregation_bits: BitList<P::MaxValidatorsPerCommittee>,
    pub data: AttestationData,
    pub signature: BlsSignature,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
pub struct DepositData {
    pub pubkey: BlsPublicKey,
    pub withdrawal_credentials: Root,
    #[serde(with = "serde_utils::quoted_u64")]
    pub amount: u64,
    pub signature: BlsSignature,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
pub struct Deposit {
    pub proof: FixedVector<Root, DepositProofLength>,
    pub data: DepositData,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
pub struct VoluntaryExit {
    #[serde(with = "serde_utils::quoted_u64")]
    pub epoch: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub validator_index: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
pub struct SignedVoluntaryExit {
    pub message: VoluntaryExit,
    pub signature: BlsSignature,
}

/// phase0 `AggregateAndProof` (through Deneb).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct AggregateAndProof<P: Preset> {
    #[serde(with = "serde_utils::quoted_u64")]
    pub aggregator_index: u64,
    pub aggregate: Attestation<P>,
    pub selection_proof: BlsSignature,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct SignedAggregateAndProof<P: Preset> {
    pub message: AggregateAndProof<P>,
    pub signature: BlsSignature,
}

// ---------------------------------------------------------------------------------------------
// altair

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct SyncAggregate<P: Preset> {
    pub sync_committee_bits: BitVector<P::SyncCommitteeSize>,
    pub sync_committee_signature: BlsSignature,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
pub struct SyncCommitteeMessage {
    #[serde(with = "serde_utils::quoted_u64")]
    pub slot: u64,
    pub beacon_block_root: Root,
    #[serde(with = "serde_utils::quoted_u64")]
    pub validator_index: u64,
    pub signature: BlsSignature,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct SyncCommitteeContribution<P: Preset> {
    #[serde(with = "serde_utils::quoted_u64")]
    pub slot: u64,
    pub beacon_block_root: Root,
    #[serde(with = "serde_utils::quoted_u64")]
    pub subcommittee_index: u64,
    pub aggregation_bits: BitVector<P::SyncSubcommitteeSize>,
    pub signature: BlsSignature,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct ContributionAndProof<P: Preset> {
    #[serde(with = "serde_utils::quoted_u64")]
    pub aggregator_index: u64,
    pub contribution: SyncCommitteeContribution<P>,
    pub selection_proof: BlsSignature,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct SignedContributionAndProof<P: Preset> {
    pub message: ContributionAndProof<P>,
    pub signature: BlsSignature,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
pub struct SyncAggregatorSelectionData {
    #[serde(with = "serde_utils::quoted_u64")]
    pub slot: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub subcommittee_index: u64,
}

// ---------------------------------------------------------------------------------------------
// bellatrix

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct ExecutionPayloadBellatrix<P: Preset> {
    pub parent_hash: Root,
    pub fee_recipient: ExecutionAddress,
    pub state_root: Root,
    pub receipts_root: Root,
    #[serde(with = "ssz_types::serde_utils::hex_fixed_vec")]
    pub logs_bloom: FixedVector<u8, P::BytesPerLogsBloom>,
    pub prev_randao: Root,
    #[serde(with = "serde_utils::quoted_u64")]
    pub block_number: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub gas_limit: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub gas_used: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub timestamp: u64,
    #[serde(with = "ssz_types::serde_utils::hex_var_list")]
    pub extra_data: VariableList<u8, P::MaxExtraDataBytes>,
    #[serde(with = "serde_utils::quoted_u256")]
    pub base_fee_per_gas: U256,
    pub block_hash: Root,
    #[serde(with = "ssz_types::serde_utils::list_of_hex_var_list")]
    pub transactions: VariableList<Transaction<P>, P::MaxTransactionsPerPayload>,
}

// ---------------------------------------------------------------------------------------------
// capella

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
pub struct Withdrawal {
    #[serde(with = "serde_utils::quoted_u64")]
    pub index: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub validator_index: u64,
    pub address: ExecutionAddress,
    #[serde(with = "serde_utils::quoted_u64")]
    pub amount: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
pub struct BlsToExecutionChange {
    #[serde(with = "serde_utils::quoted_u64")]
    pub validator_index: u64,
    pub from_bls_pubkey: BlsPublicKey,
    pub to_execution_address: ExecutionAddress,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
pub struct SignedBlsToExecutionChange {
    pub message: BlsToExecutionChange,
    pub signature: BlsSignature,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct ExecutionPayloadCapella<P: Preset> {
    pub parent_hash: Root,
    pub fee_recipient: ExecutionAddress,
    pub state_root: Root,
    pub receipts_root: Root,
    #[serde(with = "ssz_types::serde_utils::hex_fixed_vec")]
    pub logs_bloom: FixedVector<u8, P::BytesPerLogsBloom>,
    pub prev_randao: Root,
    #[serde(with = "serde_utils::quoted_u64")]
    pub block_number: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub gas_limit: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub gas_used: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub timestamp: u64,
    #[serde(with = "ssz_types::serde_utils::hex_var_list")]
    pub extra_data: VariableList<u8, P::MaxExtraDataBytes>,
    #[serde(with = "serde_utils::quoted_u256")]
    pub base_fee_per_gas: U256,
    pub block_hash: Root,
    #[serde(with = "ssz_types::serde_utils::list_of_hex_var_list")]
    pub transactions: VariableList<Transaction<P>, P::MaxTransactionsPerPayload>,
    pub withdrawals: VariableList<Withdrawal, P::MaxWithdrawalsPerPayload>,
}

// ---------------------------------------------------------------------------------------------
// deneb (Electra and Fulu keep this payload)

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct ExecutionPayloadDeneb<P: Preset> {
    pub parent_hash: Root,
    pub fee_recipient: ExecutionAddress,
    pub state_root: Root,
    pub receipts_root: Root,
    #[serde(with = "ssz_types::serde_utils::hex_fixed_vec")]
    pub logs_bloom: FixedVector<u8, P::BytesPerLogsBloom>,
    pub prev_randao: Root,
    #[serde(with = "serde_utils::quoted_u64")]
    pub block_number: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub gas_limit: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub gas_used: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub timestamp: u64,
    #[serde(with = "ssz_types::serde_utils::hex_var_list")]
    pub extra_data: VariableList<u8, P::MaxExtraDataBytes>,
    #[serde(with = "serde_utils::quoted_u256")]
    pub base_fee_per_gas: U256,
    pub block_hash: Root,
    #[serde(with = "ssz_types::serde_utils::list_of_hex_var_list")]
    pub transactions: VariableList<Transaction<P>, P::MaxTransactionsPerPayload>,
    pub withdrawals: VariableList<Withdrawal, P::MaxWithdrawalsPerPayload>,
    #[serde(with = "serde_utils::quoted_u64")]
    pub blob_gas_used: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub excess_blob_gas: u64,
}

// ---------------------------------------------------------------------------------------------
// Execution payload headers: what a blinded block body carries instead of the payload. A
// header's root equals its payload's root (the lists enter as their roots), so a blinded body
// has the same root as the full one.

/// Bellatrix `ExecutionPayloadHeader`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct ExecutionPayloadHeaderBellatrix<P: Preset> {
    pub parent_hash: Root,
    pub fee_recipient: ExecutionAddress,
    pub state_root: Root,
    pub receipts_root: Root,
    #[serde(with = "ssz_types::serde_utils::hex_fixed_vec")]
    pub logs_bloom: FixedVector<u8, P::BytesPerLogsBloom>,
    pub prev_randao: Root,
    #[serde(with = "serde_utils::quoted_u64")]
    pub block_number: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub gas_limit: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub gas_used: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub timestamp: u64,
    #[serde(with = "ssz_types::serde_utils::hex_var_list")]
    pub extra_data: VariableList<u8, P::MaxExtraDataBytes>,
    #[serde(with = "serde_utils::quoted_u256")]
    pub base_fee_per_gas: U256,
    pub block_hash: Root,
    pub transactions_root: Root,
}

/// Capella `ExecutionPayloadHeader`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct ExecutionPayloadHeaderCapella<P: Preset> {
    pub parent_hash: Root,
    pub fee_recipient: ExecutionAddress,
    pub state_root: Root,
    pub receipts_root: Root,
    #[serde(with = "ssz_types::serde_utils::hex_fixed_vec")]
    pub logs_bloom: FixedVector<u8, P::BytesPerLogsBloom>,
    pub prev_randao: Root,
    #[serde(with = "serde_utils::quoted_u64")]
    pub block_number: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub gas_limit: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub gas_used: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub timestamp: u64,
    #[serde(with = "ssz_types::serde_utils::hex_var_list")]
    pub extra_data: VariableList<u8, P::MaxExtraDataBytes>,
    #[serde(with = "serde_utils::quoted_u256")]
    pub base_fee_per_gas: U256,
    pub block_hash: Root,
    pub transactions_root: Root,
    pub withdrawals_root: Root,
}

/// Deneb `ExecutionPayloadHeader` (Electra and Fulu keep it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct ExecutionPayloadHeaderDeneb<P: Preset> {
    pub parent_hash: Root,
    pub fee_recipient: ExecutionAddress,
    pub state_root: Root,
    pub receipts_root: Root,
    #[serde(with = "ssz_types::serde_utils::hex_fixed_vec")]
    pub logs_bloom: FixedVector<u8, P::BytesPerLogsBloom>,
    pub prev_randao: Root,
    #[serde(with = "serde_utils::quoted_u64")]
    pub block_number: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub gas_limit: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub gas_used: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub timestamp: u64,
    #[serde(with = "ssz_types::serde_utils::hex_var_list")]
    pub extra_data: VariableList<u8, P::MaxExtraDataBytes>,
    #[serde(with = "serde_utils::quoted_u256")]
    pub base_fee_per_gas: U256,
    pub block_hash: Root,
    pub transactions_root: Root,
    pub withdrawals_root: Root,
    #[serde(with = "serde_utils::quoted_u64")]
    pub blob_gas_used: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub excess_blob_gas: u64,
}

// ---------------------------------------------------------------------------------------------
// electra

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct IndexedAttestationElectra<P: Preset> {
    #[serde(with = "ssz_types::serde_utils::quoted_u64_var_list")]
    pub attesting_indices: VariableList<u64, P::MaxValidatorsPerSlot>,
    pub data: AttestationData,
    pub signature: BlsSignature,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct AttesterSlashingElectra<P: Preset> {
    pub attestation_1: IndexedAttestationElectra<P>,
    pub attestation_2: IndexedAttestationElectra<P>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct AttestationElectra<P: Preset> {
    pub aggregation_bits: BitList<P::MaxValidatorsPerSlot>,
    pub data: AttestationData,
    pub signature: BlsSignature,
    pub committee_bits: BitVector<P::MaxCommitteesPerSlot>,
}

/// What an Electra attester publishes (`POST /eth/v2/beacon/pool/attestations`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
pub struct SingleAttestation {
    #[serde(with = "serde_utils::quoted_u64")]
    pub committee_index: u64,
    #[serde(with = "serde_utils::quoted_u64")]
    pub attester_index: u64,
    pub data: AttestationData,
    pub signature: BlsSignature,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct AggregateAndProofElectra<P: Preset> {
    #[serde(with = "serde_utils::quoted_u64")]
    pub aggregator_index: u64,
    pub aggregate: AttestationElectra<P>,
    pub selection_proof: BlsSignature,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct SignedAggregateAndProofElectra<P: Preset> {
    pub message: AggregateAndProofElectra<P>,
    pub signature: BlsSignature,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
pub struct DepositRequest {
    pub pubkey: BlsPublicKey,
    pub withdrawal_credentials: Root,
    #[serde(with = "serde_utils::quoted_u64")]
    pub amount: u64,
    pub signature: BlsSignature,
    #[serde(with = "serde_utils::quoted_u64")]
    pub index: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
pub struct WithdrawalRequest {
    pub source_address: ExecutionAddress,
    pub validator_pubkey: BlsPublicKey,
    #[serde(with = "serde_utils::quoted_u64")]
    pub amount: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
pub struct ConsolidationRequest {
    pub source_address: ExecutionAddress,
    pub source_pubkey: BlsPublicKey,
    pub target_pubkey: BlsPublicKey,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct ExecutionRequests<P: Preset> {
    pub deposits: VariableList<DepositRequest, P::MaxDepositRequestsPerPayload>,
    pub withdrawals: VariableList<WithdrawalRequest, P::MaxWithdrawalRequestsPerPayload>,
    pub consolidations: VariableList<ConsolidationRequest, P::MaxConsolidationRequestsPerPayload>,
}

// ---------------------------------------------------------------------------------------------
// Conversions from the types the actors already speak (ingress), so the client can build
// containers from decided values.

impl From<&cohort_ingress::Checkpoint> for Checkpoint {
    fn from(checkpoint: &cohort_ingress::Checkpoint) -> Self {
        Self {
            epoch: checkpoint.epoch,
            root: B256::from(checkpoint.root.0),
        }
    }
}

impl From<&cohort_ingress::AttestationData> for AttestationData {
    fn from(data: &cohort_ingress::AttestationData) -> Self {
        Self {
            slot: data.slot,
            index: data.index,
            beacon_block_root: B256::from(data.beacon_block_root.0),
            source: (&data.source).into(),
            target: (&data.target).into(),
        }
    }
}

impl From<&AttestationData> for cohort_ingress::AttestationData {
    fn from(data: &AttestationData) -> Self {
        let root = |r: &Root| commonware_cryptography::sha256::Digest(r.0);
        Self {
            slot: data.slot,
            index: data.index,
            beacon_block_root: root(&data.beacon_block_root),
            source: cohort_ingress::Checkpoint {
                epoch: data.source.epoch,
                root: root(&data.source.root),
            },
            target: cohort_ingress::Checkpoint {
                epoch: data.target.epoch,
                root: root(&data.target.root),
            },
        }
    }
}

impl From<&cohort_ingress::BlockHeader> for BeaconBlockHeader {
    fn from(header: &cohort_ingress::BlockHeader) -> Self {
        Self {
            slot: header.slot,
            proposer_index: header.proposer_index,
            parent_root: B256::from(header.parent_root.0),
            state_root: B256::from(header.state_root.0),
            body_root: B256::from(header.body_root.0),
        }
    }
}

impl From<&BeaconBlockHeader> for cohort_ingress::BlockHeader {
    fn from(header: &BeaconBlockHeader) -> Self {
        let root = |r: &Root| commonware_cryptography::sha256::Digest(r.0);
        Self {
            slot: header.slot,
            proposer_index: header.proposer_index,
            parent_root: root(&header.parent_root),
            state_root: root(&header.state_root),
            body_root: root(&header.body_root),
        }
    }
}
