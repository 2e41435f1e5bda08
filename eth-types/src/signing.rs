//! Signing roots for every object the Beacon API client signs, on top of ingress's
//! `compute_domain`/`compute_signing_root` (reused, not copied): the object's `hash_tree_root`
//! under the role's domain for the signing fork.
//!
//! The fork in [`ForkInfo`] must be the one at the signed object's epoch (from
//! `beacon/states/head/fork` or the fork schedule), never the genesis fork.

use crate::containers::*;
use crate::preset::{
    Preset, PresetKind, SYNC_COMMITTEE_SUBNET_COUNT, TARGET_AGGREGATORS_PER_SYNC_SUBCOMMITTEE,
};
use commonware_cryptography::{Hasher, Sha256};
use ssz_types::typenum::Unsigned;
use tree_hash::TreeHash;

pub use cohort_ingress::signing::{
    DOMAIN_AGGREGATE_AND_PROOF, DOMAIN_BEACON_ATTESTER, DOMAIN_BEACON_PROPOSER,
    DOMAIN_CONTRIBUTION_AND_PROOF, DOMAIN_RANDAO, DOMAIN_SELECTION_PROOF, DOMAIN_SYNC_COMMITTEE,
    DOMAIN_SYNC_COMMITTEE_SELECTION_PROOF, Domain, DomainType, ForkInfo, compute_domain,
    compute_signing_root,
};

/// `compute_signing_root(hash_tree_root(object), domain)` for any container or basic value.
pub fn signing_root<T: TreeHash>(fork: &ForkInfo, domain_type: DomainType, object: &T) -> [u8; 32] {
    compute_signing_root(object.tree_hash_root().0, fork.domain(domain_type))
}

/// An attestation (phase0 `Attestation`, Electra `SingleAttestation`): the attestation data
/// under `DOMAIN_BEACON_ATTESTER`. From Electra on `data.index` is 0.
pub fn attestation_signing_root(fork: &ForkInfo, data: &AttestationData) -> [u8; 32] {
    signing_root(fork, DOMAIN_BEACON_ATTESTER, data)
}

/// A block: its header's root (equal to the block's root) under `DOMAIN_BEACON_PROPOSER`.
pub fn block_signing_root(fork: &ForkInfo, header: &BeaconBlockHeader) -> [u8; 32] {
    signing_root(fork, DOMAIN_BEACON_PROPOSER, header)
}

/// The RANDAO reveal: the epoch (`uint64`) under `DOMAIN_RANDAO`.
pub fn randao_signing_root(fork: &ForkInfo, epoch: u64) -> [u8; 32] {
    signing_root(fork, DOMAIN_RANDAO, &epoch)
}

/// An attestation aggregator's selection proof: the slot under `DOMAIN_SELECTION_PROOF`.
pub fn selection_proof_signing_root(fork: &ForkInfo, slot: u64) -> [u8; 32] {
    signing_root(fork, DOMAIN_SELECTION_PROOF, &slot)
}

/// phase0 (through Deneb) `AggregateAndProof` under `DOMAIN_AGGREGATE_AND_PROOF`.
pub fn aggregate_and_proof_signing_root<P: Preset>(
    fork: &ForkInfo,
    message: &AggregateAndProof<P>,
) -> [u8; 32] {
    signing_root(fork, DOMAIN_AGGREGATE_AND_PROOF, message)
}

/// Electra `AggregateAndProof` (with `committee_bits`) under `DOMAIN_AGGREGATE_AND_PROOF`.
pub fn aggregate_and_proof_electra_signing_root<P: Preset>(
    fork: &ForkInfo,
    message: &AggregateAndProofElectra<P>,
) -> [u8; 32] {
    signing_root(fork, DOMAIN_AGGREGATE_AND_PROOF, message)
}

/// A sync committee message: the head block root (`Root`, its own hash tree root) under
/// `DOMAIN_SYNC_COMMITTEE`.
pub fn sync_committee_message_signing_root(
    fork: &ForkInfo,
    beacon_block_root: [u8; 32],
) -> [u8; 32] {
    compute_signing_root(beacon_block_root, fork.domain(DOMAIN_SYNC_COMMITTEE))
}

/// A sync committee aggregator's selection proof: `SyncAggregatorSelectionData(slot,
/// subcommittee_index)` under `DOMAIN_SYNC_COMMITTEE_SELECTION_PROOF`.
pub fn sync_committee_selection_proof_signing_root(
    fork: &ForkInfo,
    slot: u64,
    subcommittee_index: u64,
) -> [u8; 32] {
    signing_root(
        fork,
        DOMAIN_SYNC_COMMITTEE_SELECTION_PROOF,
        &SyncAggregatorSelectionData {
            slot,
            subcommittee_index,
        },
    )
}

/// `ContributionAndProof` under `DOMAIN_CONTRIBUTION_AND_PROOF`.
pub fn contribution_and_proof_signing_root<P: Preset>(
    fork: &ForkInfo,
    message: &ContributionAndProof<P>,
) -> [u8; 32] {
    signing_root(fork, DOMAIN_CONTRIBUTION_AND_PROOF, message)
}

/// `is_sync_committee_aggregator`: a sync subcommittee member aggregates when the first eight
/// bytes (little endian) of `sha256(selection_proof)` are a multiple of
/// `max(1, SYNC_COMMITTEE_SIZE / SYNC_COMMITTEE_SUBNET_COUNT / TARGET_AGGREGATORS_PER_SYNC_SUBCOMMITTEE)`
/// (8 on mainnet, 1 on minimal: every member).
pub fn is_sync_committee_aggregator(preset: PresetKind, selection_proof: &[u8; 96]) -> bool {
    let modulo = (preset.sync_committee_size()
        / SYNC_COMMITTEE_SUBNET_COUNT
        / TARGET_AGGREGATORS_PER_SYNC_SUBCOMMITTEE)
        .max(1);
    let digest = Sha256::hash(&[selection_proof]);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.0[..8]);
    u64::from_le_bytes(first).is_multiple_of(modulo)
}

/// [`is_sync_committee_aggregator`] with the preset as a type.
pub fn is_sync_committee_aggregator_for<P: Preset>(selection_proof: &[u8; 96]) -> bool {
    debug_assert_eq!(
        P::SyncCommitteeSize::to_u64(),
        P::KIND.sync_committee_size()
    );
    is_sync_committee_aggregator(P::KIND, selection_proof)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preset::{Mainnet, Minimal};

    fn first_u64(proof: &[u8; 96]) -> u64 {
        let digest = Sha256::hash(&[proof]);
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.0[..8]);
        u64::from_le_bytes(first)
    }

    #[test]
    fn sync_aggregator_modulo_is_eight_on_mainnet_and_one_on_minimal() {
        let mut selected = 0;
        for b in 0..=255u8 {
            let proof = [b; 96];
            assert!(is_sync_committee_aggregator(PresetKind::Minimal, &proof));
            assert!(is_sync_committee_aggregator_for::<Minimal>(&proof));
            let expected = first_u64(&proof).is_multiple_of(8);
            assert_eq!(
                is_sync_committee_aggregator(PresetKind::Mainnet, &proof),
                expected
            );
            assert_eq!(
                is_sync_committee_aggregator_for::<Mainnet>(&proof),
                expected
            );
            selected += usize::from(expected);
        }
        assert!(
            (10..60).contains(&selected),
            "about one in eight: {selected}"
        );
    }

    /// The sync committee message signs the block root itself: a `Root`'s hash tree root is the
    /// root.
    #[test]
    fn sync_message_root_is_the_block_root_under_its_domain() {
        let fork = ForkInfo::devnet();
        let root = [7u8; 32];
        assert_eq!(
            sync_committee_message_signing_root(&fork, root),
            signing_root(
                &fork,
                DOMAIN_SYNC_COMMITTEE,
                &alloy_primitives::B256::from(root)
            )
        );
        assert_ne!(
            sync_committee_message_signing_root(&fork, root),
            compute_signing_root(root, fork.domain(DOMAIN_BEACON_ATTESTER))
        );
    }

    /// The roots ingress already computes agree with this crate's containers.
    #[test]
    fn agrees_with_ingress_signing() {
        use cohort_ingress::Checkpoint as Cp;
        use commonware_cryptography::sha256::Digest;
        let fork = ForkInfo::devnet();
        let data = cohort_ingress::AttestationData {
            slot: 99,
            index: 3,
            beacon_block_root: Digest([1; 32]),
            source: Cp {
                epoch: 10,
                root: Digest([2; 32]),
            },
            target: Cp {
                epoch: 11,
                root: Digest([3; 32]),
            },
        };
        assert_eq!(
            attestation_signing_root(&fork, &(&data).into()),
            fork.attestation_signing_root(&data)
        );
        let header = cohort_ingress::BlockHeader {
            slot: 5,
            proposer_index: 6,
            parent_root: Digest([4; 32]),
            state_root: Digest([5; 32]),
            body_root: Digest([6; 32]),
        };
        assert_eq!(
            block_signing_root(&fork, &(&header).into()),
            fork.block_signing_root(&header)
        );
        assert_eq!(
            randao_signing_root(&fork, 12),
            compute_signing_root(
                cohort_ingress::signing::epoch_root(12),
                fork.domain(DOMAIN_RANDAO)
            )
        );
        // The aggregate and proof: ingress's root from plain bits equals this crate's container.
        let bits = [true, false, true, true];
        let mut bitlist = ssz_types::BitList::with_capacity(bits.len()).expect("within limit");
        for (i, bit) in bits.iter().enumerate() {
            bitlist.set(i, *bit).expect("in range");
        }
        let message = AggregateAndProof::<Mainnet> {
            aggregator_index: 42,
            aggregate: Attestation {
                aggregation_bits: bitlist,
                data: (&data).into(),
                signature: [9u8; 96].into(),
            },
            selection_proof: [10u8; 96].into(),
        };
        let ingress_root = cohort_ingress::signing::aggregate_and_proof_root(
            42,
            &bits,
            &data,
            &[9u8; 96],
            &[10u8; 96],
        )
        .expect("valid bits");
        assert_eq!(hash_tree_root(&message), ingress_root);
        assert_eq!(
            aggregate_and_proof_signing_root(&fork, &message),
            compute_signing_root(ingress_root, fork.domain(DOMAIN_AGGREGATE_AND_PROOF))
        );
    }
}
