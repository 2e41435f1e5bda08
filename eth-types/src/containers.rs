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

/// What a deposit's signature is over (the deposit contract's data without the signature),
/// signed under `DOMAIN_DEPOSIT` with the genesis fork version and a zero
/// `genesis_validators_root`, so that one deposit is valid on its chain before genesis too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
pub struct DepositMessage {
    pub pubkey: BlsPublicKey,
    pub withdrawal_credentials: Root,
    #[serde(with = "serde_utils::quoted_u64")]
    pub amount: u64,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preset::{Mainnet, Minimal};
    use serde_json::json;

    fn data() -> AttestationData {
        AttestationData {
            slot: 18446744073709551615,
            index: 0,
            beacon_block_root: B256::from([0x11; 32]),
            source: Checkpoint {
                epoch: 1,
                root: B256::from([0x22; 32]),
            },
            target: Checkpoint {
                epoch: 2,
                root: B256::from([0x33; 32]),
            },
        }
    }

    fn hex_of(byte: &str, count: usize) -> String {
        format!("0x{}", byte.repeat(count))
    }

    /// What the client posts, in the exact shape of the Beacon API: decimal strings (even past
    /// 2^53), lowercase 0x hex, bitfields as their SSZ bytes.
    #[test]
    fn submissions_serialize_in_the_api_shape() {
        let single = SingleAttestation {
            committee_index: 3,
            attester_index: 12,
            data: data(),
            signature: [0xab; 96].into(),
        };
        let data_json = json!({
            "slot": "18446744073709551615",
            "index": "0",
            "beacon_block_root": hex_of("11", 32),
            "source": {"epoch": "1", "root": hex_of("22", 32)},
            "target": {"epoch": "2", "root": hex_of("33", 32)},
        });
        assert_eq!(
            serde_json::to_value(&single).expect("serializes"),
            json!({
                "committee_index": "3",
                "attester_index": "12",
                "data": data_json,
                "signature": hex_of("ab", 96),
            })
        );

        // Electra aggregate: 9 bits (the ninth is 1), committee 2 of 64.
        let mut bits = ssz_types::BitList::with_capacity(9).expect("within limit");
        bits.set(8, true).expect("in range");
        let mut committees = ssz_types::BitVector::new();
        committees.set(2, true).expect("in range");
        let aggregate = AttestationElectra::<Mainnet> {
            aggregation_bits: bits,
            data: data(),
            signature: [0xcd; 96].into(),
            committee_bits: committees,
        };
        let value = serde_json::to_value(&aggregate).expect("serializes");
        // Bit 8 set, then the length bit at 9: 0x00, 0b11.
        assert_eq!(value["aggregation_bits"], "0x0003");
        assert_eq!(value["committee_bits"], "0x0400000000000000");

        let mut sub_bits = ssz_types::BitVector::new();
        sub_bits.set(0, true).expect("in range");
        sub_bits.set(7, true).expect("in range");
        let signed = SignedContributionAndProof::<Minimal> {
            message: ContributionAndProof {
                aggregator_index: 5,
                contribution: SyncCommitteeContribution {
                    slot: 9,
                    beacon_block_root: B256::from([0x44; 32]),
                    subcommittee_index: 1,
                    aggregation_bits: sub_bits,
                    signature: [0x01; 96].into(),
                },
                selection_proof: [0x02; 96].into(),
            },
            signature: [0x03; 96].into(),
        };
        assert_eq!(
            serde_json::to_value(&signed).expect("serializes"),
            json!({
                "message": {
                    "aggregator_index": "5",
                    "contribution": {
                        "slot": "9",
                        "beacon_block_root": hex_of("44", 32),
                        "subcommittee_index": "1",
                        "aggregation_bits": "0x81",
                        "signature": hex_of("01", 96),
                    },
                    "selection_proof": hex_of("02", 96),
                },
                "signature": hex_of("03", 96),
            })
        );
    }

    /// Reading is lenient where nodes differ (bare numbers, unknown fields, upper-case hex) and
    /// strict where the root depends on it (lengths, limits, bitfield padding).
    #[test]
    fn parsing_is_lenient_on_form_and_strict_on_content() {
        let parsed: Checkpoint = serde_json::from_value(json!({
            "epoch": 7,
            "root": hex_of("AB", 32),
            "extra": "ignored",
        }))
        .expect("parses");
        assert_eq!(parsed.epoch, 7);
        assert_eq!(parsed.root, B256::from([0xab; 32]));
        for bad in [
            json!({"epoch": "7", "root": hex_of("ab", 31)}),
            json!({"epoch": "-7", "root": hex_of("ab", 32)}),
            json!({"epoch": "7.5", "root": hex_of("ab", 32)}),
            json!({"epoch": null, "root": hex_of("ab", 32)}),
            json!({"root": hex_of("ab", 32)}),
        ] {
            assert!(serde_json::from_value::<Checkpoint>(bad).is_err());
        }
        // A minimal sync subcommittee has 8 bits: one byte, and nothing else.
        let contribution = |bits: &str| {
            json!({
                "slot": "1", "beacon_block_root": hex_of("00", 32), "subcommittee_index": "0",
                "aggregation_bits": bits, "signature": hex_of("00", 96),
            })
        };
        assert!(
            serde_json::from_value::<SyncCommitteeContribution<Minimal>>(contribution("0xff"))
                .is_ok()
        );
        for bad in ["0xff00", "0x", "ff"] {
            assert!(
                serde_json::from_value::<SyncCommitteeContribution<Minimal>>(contribution(bad))
                    .is_err(),
                "{bad}"
            );
        }
        // Electra's committee bits: 4 on minimal, so a set fifth bit is invalid.
        let attestation = |committee_bits: &str| {
            json!({
                "aggregation_bits": "0x01", "data": serde_json::to_value(data()).expect("json"),
                "signature": hex_of("00", 96), "committee_bits": committee_bits,
            })
        };
        assert!(serde_json::from_value::<AttestationElectra<Minimal>>(attestation("0x0f")).is_ok());
        assert!(
            serde_json::from_value::<AttestationElectra<Minimal>>(attestation("0x1f")).is_err()
        );
        // Electra's indexed attestation limit is per slot: 8192 on minimal.
        let indexed = |count: usize| {
            json!({
                "attesting_indices": vec!["1"; count],
                "data": serde_json::to_value(data()).expect("json"),
                "signature": hex_of("00", 96),
            })
        };
        assert!(
            serde_json::from_value::<IndexedAttestationElectra<Minimal>>(indexed(8192)).is_ok()
        );
        assert!(
            serde_json::from_value::<IndexedAttestationElectra<Minimal>>(indexed(8193)).is_err()
        );
        assert!(serde_json::from_value::<IndexedAttestation<Minimal>>(indexed(2049)).is_err());
    }
}
