//! Every kind of object the Beacon API client signs, signed the way the runner signs
//! (commonware's `ops::sign::<MinPk>(secret, MinPk::MESSAGE, &signing_root)`), then checked with
//! an independent BLS12-381 implementation (zkcrypto's `bls12_381`): its own hash-to-curve with
//! Ethereum's DST, its own pairing check, its own key derivation. A signature that a beacon node
//! would reject cannot pass here just because the same library made and checked it.
//!
//! The zkcrypto side is first anchored to the consensus specs' BLS `sign` vector, so that this
//! test does not merely compare two implementations that could share a mistake.

use bls12_381::{
    G1Affine, G2Affine, G2Projective, Scalar,
    hash_to_curve::{ExpandMsgXmd, HashToCurve},
    pairing,
};
use cohort_eth_types::signing::{self, ForkInfo};
use cohort_eth_types::{
    AggregateAndProof, AggregateAndProofElectra, Attestation, AttestationData, AttestationElectra,
    BeaconBlockHeader, Checkpoint, ContributionAndProof, Mainnet, Minimal, PresetKind,
    SingleAttestation, SyncCommitteeContribution, SyncCommitteeMessage, hash_tree_root,
};
use commonware_codec::Encode;
use commonware_cryptography::bls12381::primitives::{
    group::Private,
    ops,
    variant::{MinPk, Variant},
};
use sha2_010::{Digest, Sha256};
use ssz_types::{BitList, BitVector};

/// The proof-of-possession ciphersuite's DST, written out here rather than taken from
/// commonware, so that a wrong DST there would show.
const ETH_DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";

fn hash_to_g2(message: &[u8]) -> G2Projective {
    <G2Projective as HashToCurve<ExpandMsgXmd<Sha256>>>::hash_to_curve([message], ETH_DST)
}

/// zkcrypto's verification: `e(pk, H(m)) == e(g1, sig)`, with both points decompressed (which
/// checks they are on the curve and in the subgroup) and the identity key refused.
fn zk_verify(public: &[u8; 48], message: &[u8], signature: &[u8; 96]) -> bool {
    let Some(public) = Option::<G1Affine>::from(G1Affine::from_compressed(public)) else {
        return false;
    };
    let Some(signature) = Option::<G2Affine>::from(G2Affine::from_compressed(signature)) else {
        return false;
    };
    if bool::from(public.is_identity()) {
        return false;
    }
    let hashed = G2Affine::from(hash_to_g2(message));
    pairing(&public, &hashed) == pairing(&G1Affine::generator(), &signature)
}

fn zk_sign(secret: &Scalar, message: &[u8]) -> [u8; 96] {
    G2Affine::from(hash_to_g2(message) * secret).to_compressed()
}

fn zk_public(secret: &Scalar) -> [u8; 48] {
    G1Affine::from(G1Affine::generator() * secret).to_compressed()
}

/// The interop secret of validator `index`, derived here on its own:
/// `int.from_bytes(sha256(index.to_bytes(32, 'little')), 'little') % r`.
fn zk_interop_secret(index: u64) -> Scalar {
    let mut preimage = [0u8; 32];
    preimage[..8].copy_from_slice(&index.to_le_bytes());
    let digest = Sha256::digest(preimage);
    let mut wide = [0u8; 64];
    wide[..32].copy_from_slice(&digest);
    Scalar::from_bytes_wide(&wide)
}

fn unhex<const N: usize>(text: &str) -> [u8; N] {
    let text = text.trim_start_matches("0x");
    let mut out = [0u8; N];
    assert_eq!(text.len(), 2 * N);
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex");
    }
    out
}

#[test]
fn zkcrypto_reproduces_the_spec_sign_vector() {
    // consensus-spec-tests general/phase0/bls/sign, case sign_case_c82df61aa3ee60fb.
    let mut secret_be: [u8; 32] =
        unhex("263dbd792f5b1be47ed85f8938c0f29586af0d3ac7b977f21c278fe1462040e3");
    secret_be.reverse();
    let secret = Option::<Scalar>::from(Scalar::from_bytes(&secret_be)).expect("canonical");
    let public: [u8; 48] = unhex(
        "a491d1b0ecd9bb917989f0e74f0dea0422eac4a873e5e2644f368dffb9a6e20fd6e10c1b77654d067c0618f6e5a7f79a",
    );
    let signature: [u8; 96] = unhex(
        "b6ed936746e01f8ecf281f020953fbf1f01debd5657c4a383940b020b26507f6076334f91e2366c96e9ab279fb5158090352ea1c5b0c9274504f4f0e7053af24802e51e4568d164fe986834f41e55c8e850ce1f98458c0cfc9ab380b55285a55",
    );
    assert_eq!(zk_public(&secret), public);
    assert_eq!(zk_sign(&secret, &[0u8; 32]), signature);
    assert!(zk_verify(&public, &[0u8; 32], &signature));
    assert!(!zk_verify(&public, &[1u8; 32], &signature));
}

/// One validator: commonware's key and zkcrypto's key for the same interop index.
struct Signer {
    secret: Private,
    public: [u8; 48],
    zk_secret: Scalar,
}

impl Signer {
    fn interop(index: u64) -> Self {
        let secret = cohort_ingress::keys::interop_secret(index);
        let public = ops::compute_public::<MinPk>(&secret);
        let mut bytes = [0u8; 48];
        bytes.copy_from_slice(&public.encode()[..48]);
        let zk_secret = zk_interop_secret(index);
        assert_eq!(
            zk_public(&zk_secret),
            bytes,
            "both derive the same interop key"
        );
        Self {
            secret,
            public: bytes,
            zk_secret,
        }
    }

    /// The runner's path: commonware, the POP DST, the signing root as the message.
    fn sign(&self, root: &[u8; 32]) -> [u8; 96] {
        let signature: <MinPk as Variant>::Signature =
            ops::sign::<MinPk>(&self.secret, MinPk::MESSAGE, root);
        cohort_ingress::keys::signature_bytes(&signature)
    }
}

fn root(byte: u8) -> alloy_primitives::B256 {
    alloy_primitives::B256::from([byte; 32])
}

fn data(slot: u64, index: u64) -> AttestationData {
    AttestationData {
        slot,
        index,
        beacon_block_root: root(1),
        source: Checkpoint {
            epoch: 2,
            root: root(2),
        },
        target: Checkpoint {
            epoch: 3,
            root: root(3),
        },
    }
}

fn bitlist<N: ssz_types::typenum::Unsigned + Clone>(bits: &[bool]) -> BitList<N> {
    let mut list = BitList::with_capacity(bits.len()).expect("within limit");
    for (i, bit) in bits.iter().enumerate() {
        list.set(i, *bit).expect("in range");
    }
    list
}

fn bitvector<N: ssz_types::typenum::Unsigned + Clone>(set: &[usize]) -> BitVector<N> {
    let mut vector = BitVector::new();
    for i in set {
        vector.set(*i, true).expect("in range");
    }
    vector
}

#[test]
fn every_signed_object_verifies_with_an_independent_implementation() {
    let genesis_validators_root = [0x42; 32];
    let capella = ForkInfo {
        fork_version: [3, 0, 0, 1],
        genesis_validators_root,
    };
    let electra = ForkInfo {
        fork_version: [5, 0, 0, 1],
        genesis_validators_root,
    };
    let signer = Signer::interop(7);
    let other = Signer::interop(8);

    let selection_proof = signer.sign(&signing::selection_proof_signing_root(&capella, 96));
    let sync_selection_proof = signer.sign(&signing::sync_committee_selection_proof_signing_root(
        &capella, 97, 2,
    ));

    let phase0_aggregate = AggregateAndProof::<Mainnet> {
        aggregator_index: 7,
        aggregate: Attestation {
            aggregation_bits: bitlist(&[true, false, true]),
            data: data(96, 5),
            signature: [0xaa; 96].into(),
        },
        selection_proof: selection_proof.into(),
    };
    let electra_aggregate = AggregateAndProofElectra::<Mainnet> {
        aggregator_index: 7,
        aggregate: AttestationElectra {
            aggregation_bits: bitlist(&[true; 70]),
            data: data(96, 0),
            signature: [0xbb; 96].into(),
            committee_bits: bitvector(&[5]),
        },
        selection_proof: selection_proof.into(),
    };
    let contribution = ContributionAndProof::<Minimal> {
        aggregator_index: 7,
        contribution: SyncCommitteeContribution {
            slot: 97,
            beacon_block_root: root(9),
            subcommittee_index: 2,
            aggregation_bits: bitvector(&[0, 3, 7]),
            signature: [0xcc; 96].into(),
        },
        selection_proof: sync_selection_proof.into(),
    };
    let header = BeaconBlockHeader {
        slot: 98,
        proposer_index: 7,
        parent_root: root(4),
        state_root: root(5),
        body_root: root(6),
    };
    let single = SingleAttestation {
        committee_index: 5,
        attester_index: 7,
        data: data(96, 0),
        signature: [0; 96].into(),
    };

    let roles: Vec<(&str, [u8; 32])> = vec![
        (
            "attestation (phase0)",
            signing::attestation_signing_root(&capella, &data(96, 5)),
        ),
        (
            "SingleAttestation (electra)",
            signing::attestation_signing_root(&electra, &single.data),
        ),
        (
            "aggregate and proof (phase0)",
            signing::aggregate_and_proof_signing_root(&capella, &phase0_aggregate),
        ),
        (
            "aggregate and proof (electra)",
            signing::aggregate_and_proof_electra_signing_root(&electra, &electra_aggregate),
        ),
        ("block", signing::block_signing_root(&capella, &header)),
        ("randao reveal", signing::randao_signing_root(&capella, 12)),
        (
            "selection proof",
            signing::selection_proof_signing_root(&capella, 96),
        ),
        (
            "sync committee message",
            signing::sync_committee_message_signing_root(&capella, [9; 32]),
        ),
        (
            "sync committee selection proof",
            signing::sync_committee_selection_proof_signing_root(&capella, 97, 2),
        ),
        (
            "contribution and proof",
            signing::contribution_and_proof_signing_root(&capella, &contribution),
        ),
    ];

    let mut seen = std::collections::BTreeSet::new();
    for (role, signing_root) in &roles {
        assert!(seen.insert(*signing_root), "{role}: roots of roles differ");
        let signature = signer.sign(signing_root);
        assert!(
            zk_verify(&signer.public, signing_root, &signature),
            "{role}: commonware's signature verifies with zkcrypto"
        );
        assert_eq!(
            zk_sign(&signer.zk_secret, signing_root),
            signature,
            "{role}: both produce the same bytes"
        );
        // A wrong root, a wrong key, or a signature from another key must not verify.
        let mut wrong_root = *signing_root;
        wrong_root[31] ^= 1;
        assert!(
            !zk_verify(&signer.public, &wrong_root, &signature),
            "{role}: wrong root"
        );
        assert!(
            !zk_verify(&other.public, signing_root, &signature),
            "{role}: wrong key"
        );
        assert!(
            !zk_verify(&signer.public, signing_root, &other.sign(signing_root)),
            "{role}: another key's signature"
        );
    }

    // The signed objects carry the signature where the API expects it.
    let message = SyncCommitteeMessage {
        slot: 97,
        beacon_block_root: root(9),
        validator_index: 7,
        signature: signer.sign(&roles[7].1).into(),
    };
    let json = serde_json::to_value(&message).expect("serializes");
    assert_eq!(json["slot"], "97");
    assert_eq!(json["validator_index"], "7");
    let signature: [u8; 96] = unhex(json["signature"].as_str().expect("hex"));
    assert!(zk_verify(&signer.public, &roles[7].1, &signature));
    // The electra attestation signs data with index 0 under the electra fork: not the same
    // root as the phase0 attestation of committee 5, and not valid on capella.
    assert_ne!(roles[0].1, roles[1].1);
    assert_ne!(
        signing::attestation_signing_root(&capella, &single.data),
        roles[1].1
    );
    // Minimal: every sync subcommittee member aggregates.
    assert!(signing::is_sync_committee_aggregator(
        PresetKind::Minimal,
        &sync_selection_proof
    ));
    // The block's signing root is over the header's root (which equals the block's root).
    assert_eq!(
        roles[4].1,
        signing::compute_signing_root(
            hash_tree_root(&header),
            capella.domain(signing::DOMAIN_BEACON_PROPOSER)
        )
    );
}
