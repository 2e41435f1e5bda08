//! Ethereum consensus signing roots: what a validator's BLS signature is over, so that the
//! cluster's reconstructed signatures are ones a real beacon node accepts.
//!
//! Each function mirrors the consensus spec's: `hash_tree_root` of the container signed, then
//! `compute_signing_root(object_root, compute_domain(domain_type, fork_version,
//! genesis_validators_root))`. Containers are SSZ-merkleized with `tree_hash`; a nested
//! container enters its parent as its own root, which is how SSZ merkleization composes.

use crate::{AttestationData, BlockHeader, Root, SyncCommitteeContribution, SyncCommitteeSpec};
use commonware_cryptography::{Hasher, Sha256};
use tree_hash::{Hash256, TreeHash};
use tree_hash_derive::TreeHash;

pub type Domain = [u8; 32];
pub type DomainType = [u8; 4];

pub const DOMAIN_BEACON_PROPOSER: DomainType = [0, 0, 0, 0];
pub const DOMAIN_BEACON_ATTESTER: DomainType = [1, 0, 0, 0];
pub const DOMAIN_RANDAO: DomainType = [2, 0, 0, 0];
pub const DOMAIN_DEPOSIT: DomainType = [3, 0, 0, 0];
pub const DOMAIN_VOLUNTARY_EXIT: DomainType = [4, 0, 0, 0];
pub const DOMAIN_SELECTION_PROOF: DomainType = [5, 0, 0, 0];
pub const DOMAIN_AGGREGATE_AND_PROOF: DomainType = [6, 0, 0, 0];
pub const DOMAIN_SYNC_COMMITTEE: DomainType = [7, 0, 0, 0];
pub const DOMAIN_SYNC_COMMITTEE_SELECTION_PROOF: DomainType = [8, 0, 0, 0];
pub const DOMAIN_CONTRIBUTION_AND_PROOF: DomainType = [9, 0, 0, 0];

pub const TARGET_AGGREGATORS_PER_COMMITTEE: u64 = 16;
pub const MAX_VALIDATORS_PER_COMMITTEE: usize = 2048;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigningError {
    #[error("aggregation bits: {length} bits is outside 1..={max}")]
    AggregationBits { length: usize, max: usize },
    #[error("contribution bits: {length} bits where the subcommittee has {expected} members")]
    ContributionBits { length: usize, expected: usize },
}

/// The fork a cluster signs for. Signatures from another fork (or chain) never verify here,
/// which is what keeps a devnet key from signing anything valid on mainnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForkInfo {
    pub fork_version: [u8; 4],
    pub genesis_validators_root: [u8; 32],
    /// The first Electra epoch, if scheduled. Before it an attestation's data names the
    /// attester's committee; from it on the index is 0 and the committee travels beside it.
    pub electra_epoch: Option<u64>,
}

impl ForkInfo {
    pub fn domain(&self, domain_type: DomainType) -> Domain {
        compute_domain(domain_type, self.fork_version, self.genesis_validators_root)
    }

    /// The data an attester in committee `committee_index` signs, from the cluster's decided
    /// vote (whose index is 0): before Electra the index is the attester's committee.
    pub fn attester_data(
        &self,
        data: &AttestationData,
        committee_index: u64,
        epoch: u64,
    ) -> AttestationData {
        let electra = self.electra_epoch.is_some_and(|first| epoch >= first);
        AttestationData {
            index: if electra { 0 } else { committee_index },
            ..*data
        }
    }

    /// What every attester of `data` signs on this fork.
    pub fn attestation_signing_root(&self, data: &AttestationData) -> [u8; 32] {
        compute_signing_root(
            attestation_data_root(data),
            self.domain(DOMAIN_BEACON_ATTESTER),
        )
    }

    /// What the proposer of `header` signs on this fork.
    pub fn block_signing_root(&self, header: &BlockHeader) -> [u8; 32] {
        compute_signing_root(
            block_header_root(
                header.slot,
                header.proposer_index,
                header.parent_root.0,
                header.state_root.0,
                header.body_root.0,
            ),
            self.domain(DOMAIN_BEACON_PROPOSER),
        )
    }

    /// What a sync committee member signs in a slot: the head block root, under the sync
    /// committee domain of this fork (the slot's epoch's fork: one fork per cluster here).
    pub fn sync_committee_message_signing_root(&self, beacon_block_root: &Root) -> [u8; 32] {
        compute_signing_root(beacon_block_root.0, self.domain(DOMAIN_SYNC_COMMITTEE))
    }

    /// What a sync committee member's selection proof for `subcommittee_index` signs.
    pub fn sync_selection_proof_signing_root(
        &self,
        slot: u64,
        subcommittee_index: u64,
    ) -> [u8; 32] {
        compute_signing_root(
            sync_aggregator_selection_data_root(slot, subcommittee_index),
            self.domain(DOMAIN_SYNC_COMMITTEE_SELECTION_PROOF),
        )
    }

    /// What a contribution's aggregator signs: its `ContributionAndProof`.
    pub fn contribution_and_proof_signing_root(
        &self,
        aggregator_index: u64,
        contribution: &SyncCommitteeContribution,
        selection_proof: &[u8; 96],
        spec: &SyncCommitteeSpec,
    ) -> Result<[u8; 32], SigningError> {
        Ok(compute_signing_root(
            contribution_and_proof_root(aggregator_index, contribution, selection_proof, spec)?,
            self.domain(DOMAIN_CONTRIBUTION_AND_PROOF),
        ))
    }

    /// The devnet's fork (Electra's attestation shape from genesis): version `0x10000038` and
    /// genesis validators root
    /// `sha256("cohort devnet")`, distinct from every public network's.
    pub fn devnet() -> Self {
        let digest = Sha256::hash(&[b"cohort devnet"]);
        Self {
            fork_version: [0x10, 0, 0, 0x38],
            genesis_validators_root: digest.0,
            // The devnet's attestations have always carried index 0, as Electra's do.
            electra_epoch: Some(0),
        }
    }
}

#[derive(TreeHash)]
struct ForkData {
    current_version: [u8; 4],
    genesis_validators_root: Hash256,
}

#[derive(TreeHash)]
struct SigningData {
    object_root: Hash256,
    domain: Hash256,
}

#[derive(TreeHash)]
struct Checkpoint {
    epoch: u64,
    root: Hash256,
}

#[derive(TreeHash)]
struct SszAttestationData {
    slot: u64,
    index: u64,
    beacon_block_root: Hash256,
    source: Checkpoint,
    target: Checkpoint,
}

#[derive(TreeHash)]
struct BeaconBlockHeader {
    slot: u64,
    proposer_index: u64,
    parent_root: Hash256,
    state_root: Hash256,
    body_root: Hash256,
}

/// `Attestation` (phase0 through Deneb shape), with its bitlist entering as its root.
#[derive(TreeHash)]
struct Attestation {
    aggregation_bits: Hash256,
    data: Hash256,
    signature: [u8; 96],
}

#[derive(TreeHash)]
struct AggregateAndProof {
    aggregator_index: u64,
    aggregate: Hash256,
    selection_proof: [u8; 96],
}

#[derive(TreeHash)]
struct SyncAggregatorSelectionData {
    slot: u64,
    subcommittee_index: u64,
}

/// `SyncCommitteeContribution`, with its bitvector entering as its root.
#[derive(TreeHash)]
struct Contribution {
    slot: u64,
    beacon_block_root: Hash256,
    subcommittee_index: u64,
    aggregation_bits: Hash256,
    signature: [u8; 96],
}

#[derive(TreeHash)]
struct ContributionAndProof {
    aggregator_index: u64,
    contribution: Hash256,
    selection_proof: [u8; 96],
}

fn hash(bytes: [u8; 32]) -> Hash256 {
    Hash256::from(bytes)
}

/// `compute_fork_data_root`.
pub fn compute_fork_data_root(
    fork_version: [u8; 4],
    genesis_validators_root: [u8; 32],
) -> [u8; 32] {
    ForkData {
        current_version: fork_version,
        genesis_validators_root: hash(genesis_validators_root),
    }
    .tree_hash_root()
    .0
}

/// `compute_domain`: the domain type, then the first 28 bytes of the fork data root.
pub fn compute_domain(
    domain_type: DomainType,
    fork_version: [u8; 4],
    genesis_validators_root: [u8; 32],
) -> Domain {
    let fork_data_root = compute_fork_data_root(fork_version, genesis_validators_root);
    let mut domain = [0u8; 32];
    domain[..4].copy_from_slice(&domain_type);
    domain[4..].copy_from_slice(&fork_data_root[..28]);
    domain
}

/// `compute_signing_root`: `hash_tree_root(SigningData(object_root, domain))`.
pub fn compute_signing_root(object_root: [u8; 32], domain: Domain) -> [u8; 32] {
    SigningData {
        object_root: hash(object_root),
        domain: hash(domain),
    }
    .tree_hash_root()
    .0
}

pub fn attestation_data_root(data: &AttestationData) -> [u8; 32] {
    SszAttestationData {
        slot: data.slot,
        index: data.index,
        beacon_block_root: hash(data.beacon_block_root.0),
        source: Checkpoint {
            epoch: data.source.epoch,
            root: hash(data.source.root.0),
        },
        target: Checkpoint {
            epoch: data.target.epoch,
            root: hash(data.target.root.0),
        },
    }
    .tree_hash_root()
    .0
}

/// The RANDAO reveal signs the epoch (`hash_tree_root(uint64)`).
pub fn epoch_root(epoch: u64) -> [u8; 32] {
    epoch.tree_hash_root().0
}

/// A selection proof signs the slot (`hash_tree_root(uint64)`).
pub fn slot_root(slot: u64) -> [u8; 32] {
    slot.tree_hash_root().0
}

/// `hash_tree_root(BeaconBlockHeader)`, which equals the block's root when `body_root` is the
/// body's root.
pub fn block_header_root(
    slot: u64,
    proposer_index: u64,
    parent_root: [u8; 32],
    state_root: [u8; 32],
    body_root: [u8; 32],
) -> [u8; 32] {
    BeaconBlockHeader {
        slot,
        proposer_index,
        parent_root: hash(parent_root),
        state_root: hash(state_root),
        body_root: hash(body_root),
    }
    .tree_hash_root()
    .0
}

/// `hash_tree_root(Bitlist[max])`: the packed bits (no delimiter) merkleized over the limit's
/// chunk count, with the length mixed in.
fn bitlist_root(bits: &[bool], max: usize) -> Result<Hash256, SigningError> {
    if bits.is_empty() || bits.len() > max {
        return Err(SigningError::AggregationBits {
            length: bits.len(),
            max,
        });
    }
    let mut packed = vec![0u8; bits.len().div_ceil(8)];
    for (i, bit) in bits.iter().enumerate() {
        if *bit {
            packed[i / 8] |= 1 << (i % 8);
        }
    }
    let chunks = max.div_ceil(256);
    let root = tree_hash::merkle_root(&packed, chunks);
    Ok(tree_hash::mix_in_length(&root, bits.len()))
}

/// `hash_tree_root(AggregateAndProof)` of an aggregate the cluster agreed on.
pub fn aggregate_and_proof_root(
    aggregator_index: u64,
    aggregation_bits: &[bool],
    data: &AttestationData,
    signature: &[u8; 96],
    selection_proof: &[u8; 96],
) -> Result<[u8; 32], SigningError> {
    let aggregate = Attestation {
        aggregation_bits: bitlist_root(aggregation_bits, MAX_VALIDATORS_PER_COMMITTEE)?,
        data: hash(attestation_data_root(data)),
        signature: *signature,
    }
    .tree_hash_root();
    Ok(AggregateAndProof {
        aggregator_index,
        aggregate,
        selection_proof: *selection_proof,
    }
    .tree_hash_root()
    .0)
}

/// `hash_tree_root(Bitvector[N])` with `N` the bits' length: the packed bits merkleized over
/// `N`'s chunk count, no length mixed in (a vector's length is part of its type).
fn bitvector_root(bits: &[bool]) -> Hash256 {
    let mut packed = vec![0u8; bits.len().div_ceil(8)];
    for (i, bit) in bits.iter().enumerate() {
        if *bit {
            packed[i / 8] |= 1 << (i % 8);
        }
    }
    tree_hash::merkle_root(&packed, bits.len().div_ceil(256))
}

/// `hash_tree_root(SyncAggregatorSelectionData(slot, subcommittee_index))`.
pub fn sync_aggregator_selection_data_root(slot: u64, subcommittee_index: u64) -> [u8; 32] {
    SyncAggregatorSelectionData {
        slot,
        subcommittee_index,
    }
    .tree_hash_root()
    .0
}

/// `hash_tree_root(SyncCommitteeContribution)`. Its bits are a `Bitvector` of the
/// subcommittee's size, so a contribution with another length has no root on this chain.
pub fn contribution_root(
    contribution: &SyncCommitteeContribution,
    spec: &SyncCommitteeSpec,
) -> Result<[u8; 32], SigningError> {
    let expected = spec.subcommittee_size() as usize;
    if contribution.aggregation_bits.len() != expected {
        return Err(SigningError::ContributionBits {
            length: contribution.aggregation_bits.len(),
            expected,
        });
    }
    Ok(Contribution {
        slot: contribution.slot,
        beacon_block_root: hash(contribution.beacon_block_root.0),
        subcommittee_index: contribution.subcommittee_index,
        aggregation_bits: bitvector_root(&contribution.aggregation_bits),
        signature: contribution.signature,
    }
    .tree_hash_root()
    .0)
}

/// `hash_tree_root(ContributionAndProof)` of a contribution the cluster agreed on.
pub fn contribution_and_proof_root(
    aggregator_index: u64,
    contribution: &SyncCommitteeContribution,
    selection_proof: &[u8; 96],
    spec: &SyncCommitteeSpec,
) -> Result<[u8; 32], SigningError> {
    Ok(ContributionAndProof {
        aggregator_index,
        contribution: hash(contribution_root(contribution, spec)?),
        selection_proof: *selection_proof,
    }
    .tree_hash_root()
    .0)
}

/// `is_sync_committee_aggregator`: about `TARGET_AGGREGATORS_PER_SYNC_SUBCOMMITTEE` members
/// of each subcommittee are selected by their selection proof (all of them when subcommittees
/// are small, as in the minimal preset).
pub fn is_sync_committee_aggregator(spec: &SyncCommitteeSpec, selection_proof: &[u8; 96]) -> bool {
    let digest = Sha256::hash(&[selection_proof]);
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest.0[..8]);
    u64::from_le_bytes(bytes).is_multiple_of(spec.aggregator_modulo())
}

/// `is_aggregator`: about `TARGET_AGGREGATORS_PER_COMMITTEE` members of a committee are
/// selected by their selection proof.
pub fn is_aggregator(committee_length: u64, selection_proof: &[u8; 96]) -> bool {
    let modulo = (committee_length / TARGET_AGGREGATORS_PER_COMMITTEE).max(1);
    let digest = Sha256::hash(&[selection_proof]);
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest.0[..8]);
    u64::from_le_bytes(bytes).is_multiple_of(modulo)
}

/// `compute_signing_root(VoluntaryExit(epoch, validator_index), domain)` with the Capella fork
/// version's domain, which every later fork keeps for exits (EIP-7044), so a signed exit stays
/// valid across forks.
pub fn voluntary_exit_signing_root(
    validator_index: u64,
    epoch: u64,
    capella_fork_version: [u8; 4],
    genesis_validators_root: [u8; 32],
) -> [u8; 32] {
    use commonware_cryptography::Hasher as _;
    // hash_tree_root of a container of two uint64s: the hash of their two 32-byte leaves.
    let mut leaves = [0u8; 64];
    leaves[..8].copy_from_slice(&epoch.to_le_bytes());
    leaves[32..40].copy_from_slice(&validator_index.to_le_bytes());
    let object_root: [u8; 32] = commonware_cryptography::Sha256::hash(&[&leaves[..]]).0;
    let domain = compute_domain(
        DOMAIN_VOLUNTARY_EXIT,
        capella_fork_version,
        genesis_validators_root,
    );
    compute_signing_root(object_root, domain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Checkpoint as Cp;
    use commonware_cryptography::sha256::Digest;

    fn sha(parts: &[&[u8]]) -> [u8; 32] {
        Sha256::hash(parts).0
    }

    fn chunk_u64(value: u64) -> [u8; 32] {
        let mut chunk = [0u8; 32];
        chunk[..8].copy_from_slice(&value.to_le_bytes());
        chunk
    }

    /// Merkleizes chunks by hand: pad to a power of two with zero chunks, hash pairwise.
    fn merkleize(mut chunks: Vec<[u8; 32]>) -> [u8; 32] {
        let size = chunks.len().next_power_of_two().max(1);
        chunks.resize(size, [0u8; 32]);
        while chunks.len() > 1 {
            chunks = chunks
                .chunks(2)
                .map(|pair| sha(&[&pair[0], &pair[1]]))
                .collect();
        }
        chunks[0]
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn mainnet_deposit_domain_matches_the_spec_value() {
        assert_eq!(
            hex(&compute_domain(DOMAIN_DEPOSIT, [0; 4], [0; 32])),
            "03000000f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a9"
        );
        // By hand: the version padded to a chunk, next to the zero root.
        let mut version = [0u8; 32];
        version[..4].copy_from_slice(&[0; 4]);
        assert_eq!(
            compute_fork_data_root([0; 4], [0; 32]),
            sha(&[&version, &[0u8; 32]])
        );
        assert_eq!(
            hex(&compute_fork_data_root([0; 4], [0; 32])),
            "f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb4b"
        );
    }

    #[test]
    fn container_roots_match_hand_merkleization() {
        let data = AttestationData {
            slot: 321,
            index: 0,
            beacon_block_root: Digest([1; 32]),
            source: Cp {
                epoch: 8,
                root: Digest([2; 32]),
            },
            target: Cp {
                epoch: 10,
                root: Digest([3; 32]),
            },
        };
        let source = merkleize(vec![chunk_u64(8), [2; 32]]);
        let target = merkleize(vec![chunk_u64(10), [3; 32]]);
        let expected = merkleize(vec![chunk_u64(321), chunk_u64(0), [1; 32], source, target]);
        assert_eq!(attestation_data_root(&data), expected);

        let header = merkleize(vec![chunk_u64(5), chunk_u64(9), [4; 32], [5; 32], [6; 32]]);
        assert_eq!(block_header_root(5, 9, [4; 32], [5; 32], [6; 32]), header);

        assert_eq!(epoch_root(77), chunk_u64(77));
        assert_eq!(slot_root(78), chunk_u64(78));
        assert_eq!(
            compute_signing_root([7; 32], [8; 32]),
            sha(&[&[7u8; 32], &[8u8; 32]])
        );
    }

    #[test]
    fn aggregate_and_proof_root_matches_hand_merkleization() {
        let data = AttestationData {
            slot: 3,
            index: 0,
            beacon_block_root: Digest([1; 32]),
            source: Cp {
                epoch: 0,
                root: Digest([2; 32]),
            },
            target: Cp {
                epoch: 0,
                root: Digest([3; 32]),
            },
        };
        let bits = [true, false, true];
        let signature = [9u8; 96];
        let proof = [10u8; 96];
        // Bitlist[2048]: 8 chunks of packed bits, then the length mixed in.
        let mut first = [0u8; 32];
        first[0] = 0b101;
        let mut chunks = vec![first];
        chunks.resize(8, [0u8; 32]);
        let bits_root = sha(&[&merkleize(chunks), &chunk_u64(3)]);
        let vector96 = |bytes: &[u8; 96]| {
            let mut parts = Vec::new();
            for part in bytes.chunks(32) {
                let mut chunk = [0u8; 32];
                chunk.copy_from_slice(part);
                parts.push(chunk);
            }
            merkleize(parts)
        };
        let attestation = merkleize(vec![
            bits_root,
            attestation_data_root(&data),
            vector96(&signature),
        ]);
        let expected = merkleize(vec![chunk_u64(42), attestation, vector96(&proof)]);
        assert_eq!(
            aggregate_and_proof_root(42, &bits, &data, &signature, &proof),
            Ok(expected)
        );
        // The length is part of the root: one more (unset) bit changes it.
        assert_ne!(
            aggregate_and_proof_root(42, &[true, false, true, false], &data, &signature, &proof),
            Ok(expected)
        );
        assert!(aggregate_and_proof_root(42, &[], &data, &signature, &proof).is_err());
        assert!(aggregate_and_proof_root(42, &[true; 2049], &data, &signature, &proof).is_err());
    }

    fn vector96(bytes: &[u8; 96]) -> [u8; 32] {
        let mut parts = Vec::new();
        for part in bytes.chunks(32) {
            let mut chunk = [0u8; 32];
            chunk.copy_from_slice(part);
            parts.push(chunk);
        }
        merkleize(parts)
    }

    #[test]
    fn sync_committee_roots_match_hand_merkleization() {
        let fork = ForkInfo::devnet();
        // A sync committee message signs the block root itself (a Bytes32 is its own root).
        let block_root = Digest([4; 32]);
        assert_eq!(
            fork.sync_committee_message_signing_root(&block_root),
            sha(&[&[4u8; 32], &fork.domain(DOMAIN_SYNC_COMMITTEE)])
        );
        // SyncAggregatorSelectionData: two uint64 fields.
        let selection = merkleize(vec![chunk_u64(99), chunk_u64(3)]);
        assert_eq!(sync_aggregator_selection_data_root(99, 3), selection);
        assert_eq!(
            fork.sync_selection_proof_signing_root(99, 3),
            sha(&[
                &selection,
                &fork.domain(DOMAIN_SYNC_COMMITTEE_SELECTION_PROOF)
            ])
        );

        // Mainnet: Bitvector[128] fits one chunk, which is its root (no length mixed in).
        let mut bits = vec![false; 128];
        bits[0] = true;
        bits[9] = true;
        bits[127] = true;
        let contribution = SyncCommitteeContribution {
            slot: 99,
            beacon_block_root: block_root,
            subcommittee_index: 3,
            aggregation_bits: bits,
            signature: [5; 96],
        };
        let mut bits_chunk = [0u8; 32];
        bits_chunk[0] = 0b1;
        bits_chunk[1] = 0b10;
        bits_chunk[15] = 0b1000_0000;
        let contribution_expected = merkleize(vec![
            chunk_u64(99),
            [4; 32],
            chunk_u64(3),
            bits_chunk,
            vector96(&[5; 96]),
        ]);
        let mainnet = SyncCommitteeSpec::MAINNET;
        assert_eq!(
            contribution_root(&contribution, &mainnet),
            Ok(contribution_expected)
        );
        let proof = [6u8; 96];
        let and_proof = merkleize(vec![chunk_u64(12), contribution_expected, vector96(&proof)]);
        assert_eq!(
            contribution_and_proof_root(12, &contribution, &proof, &mainnet),
            Ok(and_proof)
        );
        assert_eq!(
            fork.contribution_and_proof_signing_root(12, &contribution, &proof, &mainnet),
            Ok(sha(&[
                &and_proof,
                &fork.domain(DOMAIN_CONTRIBUTION_AND_PROOF)
            ]))
        );
        // The minimal preset's subcommittee has 8 members: 128 bits have no root there.
        assert_eq!(
            contribution_root(&contribution, &SyncCommitteeSpec::MINIMAL),
            Err(SigningError::ContributionBits {
                length: 128,
                expected: 8
            })
        );
        let minimal = SyncCommitteeContribution {
            aggregation_bits: vec![false, true, false, false, false, false, false, true],
            ..contribution
        };
        let mut minimal_bits = [0u8; 32];
        minimal_bits[0] = 0b1000_0010;
        assert_eq!(
            contribution_root(&minimal, &SyncCommitteeSpec::MINIMAL),
            Ok(merkleize(vec![
                chunk_u64(99),
                [4; 32],
                chunk_u64(3),
                minimal_bits,
                vector96(&[5; 96]),
            ]))
        );
    }

    #[test]
    fn sync_aggregator_selection_follows_the_subcommittee_size() {
        // Minimal: 32 / 4 / 16 = 0, so the modulo is one and every member aggregates.
        assert!(
            (0..=255u8)
                .all(|b| is_sync_committee_aggregator(&SyncCommitteeSpec::MINIMAL, &[b; 96]))
        );
        // Mainnet: 512 / 4 / 16 = 8; check each proof by hand.
        let selected = (0..=255u8)
            .filter(|b| {
                let digest = sha(&[&[*b; 96]]);
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&digest[..8]);
                let expected = u64::from_le_bytes(bytes) % 8 == 0;
                assert_eq!(
                    is_sync_committee_aggregator(&SyncCommitteeSpec::MAINNET, &[*b; 96]),
                    expected
                );
                expected
            })
            .count();
        assert!(
            (8..64).contains(&selected),
            "about one in eight, got {selected}"
        );
    }

    #[test]
    fn aggregator_selection_follows_the_committee_size() {
        // Below 32 members the modulo is one: everyone aggregates.
        assert!(is_aggregator(31, &[0xab; 96]));
        // With 320 members the modulo is 20; count by hand over many proofs.
        let selected = (0..=255u8)
            .filter(|b| {
                let digest = sha(&[&[*b; 96]]);
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&digest[..8]);
                let expected = u64::from_le_bytes(bytes) % 20 == 0;
                assert_eq!(is_aggregator(320, &[*b; 96]), expected);
                expected
            })
            .count();
        assert!(
            selected < 64,
            "about one in twenty is selected, got {selected}"
        );
    }
}
