//! The cluster key's combined signatures, checked with a BN254 implementation that shares no
//! code with arkworks (`substrate-bn`, Parity's fork of zcash's `bn`) and a hash to G1 and
//! certificate digest written here from the facts in shared/hourglass/INTERFACE.md, with plain
//! big-integer arithmetic: what an unmodified Hourglass aggregator computes, not what the code
//! under test computes.

use alloy_primitives::{B256, keccak256};
use cohort_avs_crypto::{Bn254Key, Bn254Partial, HashedMessage, threshold_of};
use num_bigint::BigUint;
use rand::{SeedableRng as _, rngs::StdRng};
use substrate_bn::{AffineG1, AffineG2, Fq, Fq2, Fr, G1, G2, Group as _, Gt, pairing_batch};

/// The BN254 base field modulus (INTERFACE.md; p ≡ 3 mod 4).
fn p() -> BigUint {
    BigUint::parse_bytes(
        b"21888242871839275222246405745257275088696311157297823662689037894645226208583",
        10,
    )
    .expect("decimal")
}

/// `keccak256(abi.encode(BN254_CERTIFICATE_TYPEHASH, uint32 referenceTimestamp, bytes32
/// messageHash))`: three 32-byte words, the uint32 left-padded.
fn certificate_digest(reference_timestamp: u32, message_hash: &[u8; 32]) -> [u8; 32] {
    let typehash = keccak256(b"BN254Certificate(uint32 referenceTimestamp,bytes32 messageHash)");
    let mut encoded = Vec::with_capacity(96);
    encoded.extend_from_slice(typehash.as_slice());
    encoded.extend_from_slice(&[0u8; 28]);
    encoded.extend_from_slice(&reference_timestamp.to_be_bytes());
    encoded.extend_from_slice(message_hash);
    keccak256(&encoded).0
}

/// Try-and-increment as the Solidity library: x = digest mod p; β = x³ + 3; y = β^((p+1)/4);
/// the point if y² = β (that root, not its negation), else x + 1.
fn hash_to_g1(digest: &[u8; 32]) -> (BigUint, BigUint) {
    let p = p();
    let exponent = (&p + 1u32) / 4u32;
    let mut x = BigUint::from_bytes_be(digest) % &p;
    loop {
        let beta = (x.modpow(&BigUint::from(3u32), &p) + 3u32) % &p;
        let y = beta.modpow(&exponent, &p);
        if (&y * &y) % &p == beta {
            return (x, y);
        }
        x = (x + 1u32) % &p;
    }
}

fn be32(n: &BigUint) -> [u8; 32] {
    let bytes = n.to_bytes_be();
    let mut out = [0u8; 32];
    out[32 - bytes.len()..].copy_from_slice(&bytes);
    out
}

fn fq(bytes: &[u8]) -> Fq {
    Fq::from_slice(bytes).expect("coordinate below p")
}

fn g1_from(bytes: &[u8; 64]) -> G1 {
    AffineG1::new(fq(&bytes[..32]), fq(&bytes[32..]))
        .expect("on the curve")
        .into()
}

fn g1_bytes(point: G1) -> [u8; 64] {
    let affine = AffineG1::from_jacobian(point).expect("not infinity");
    let mut out = [0u8; 64];
    affine.x().to_big_endian(&mut out[..32]).expect("32 bytes");
    affine.y().to_big_endian(&mut out[32..]).expect("32 bytes");
    out
}

/// EigenLayer's G2 layout: `X.c1 ‖ X.c0 ‖ Y.c1 ‖ Y.c0` (imaginary part first).
fn g2_from(bytes: &[u8; 128]) -> G2 {
    let x = Fq2::new(fq(&bytes[32..64]), fq(&bytes[..32]));
    let y = Fq2::new(fq(&bytes[96..128]), fq(&bytes[64..96]));
    AffineG2::new(x, y)
        .expect("on the twist, in the subgroup")
        .into()
}

fn fr(n: u64) -> Fr {
    Fr::from_str(&n.to_string()).expect("small integer")
}

/// What the aggregator checks: `e(σ, G2) = e(H(m), pk)`.
fn verifies(signature: G1, hashed: G1, public: G2) -> bool {
    pairing_batch(&[(signature, -G2::one()), (hashed, public)]) == Gt::one()
}

/// Lagrange interpolation at 0 over the operators' evaluation points (operator i at i + 1),
/// in substrate-bn's scalar field.
fn interpolate(partials: &[Bn254Partial]) -> G1 {
    let xs: Vec<Fr> = partials
        .iter()
        .map(|p| fr(u64::from(p.operator) + 1))
        .collect();
    let mut sum = G1::zero();
    for (i, partial) in partials.iter().enumerate() {
        let mut lambda = Fr::one();
        for (j, xj) in xs.iter().enumerate() {
            if i != j {
                lambda = lambda * *xj * (*xj - xs[i]).inverse().expect("distinct points");
            }
        }
        sum = sum + g1_from(&partial.signature) * lambda;
    }
    sum
}

#[test]
fn combined_signatures_verify_under_an_independent_bn254() {
    let mut rng = StdRng::seed_from_u64(2026);
    for (n, round) in [(4u32, 0u8), (7, 1), (10, 2)] {
        let key = Bn254Key::generate(&mut rng);
        let secret = key.to_be_bytes();
        let split = cohort_avs_crypto::bn254::threshold::split(&mut rng, &key, n).expect("split");
        let t = threshold_of(n) as usize;

        // The group key in the lock is the secret's own, in EigenLayer's layout.
        let secret_fr = Fr::from_slice(&*secret).expect("scalar");
        let public = g2_from(&split.sharing.group_public_key().to_bytes());
        assert!(public == G2::one() * secret_fr, "group G2 key of n={n}");
        let g1 = split.sharing.group_g1_public_key().to_bytes();
        assert!(
            g1_from(&g1) == G1::one() * secret_fr,
            "group G1 key of n={n}"
        );

        let message_hash = keccak256([b"task output ".as_slice(), &[round]].concat()).0;
        let reference_timestamp = 1_760_000_000 + u32::from(round);
        let digest = certificate_digest(reference_timestamp, &message_hash);
        assert_eq!(
            cohort_avs_crypto::bn254_certificate_digest(
                reference_timestamp,
                &B256::from(message_hash)
            )
            .0,
            digest
        );
        let (x, y) = hash_to_g1(&digest);
        let hashed: G1 = AffineG1::new(fq(&be32(&x)), fq(&be32(&y)))
            .expect("the hash is on the curve")
            .into();
        let whole = hashed * secret_fr;

        let message = HashedMessage::certificate(reference_timestamp, &B256::from(message_hash));
        let partials: Vec<Bn254Partial> = split
            .shares
            .iter()
            .map(|share| share.sign(&message))
            .collect();
        for partial in &partials {
            let share_key = split
                .sharing
                .share_public_key(partial.operator)
                .expect("share key");
            assert!(
                verifies(
                    g1_from(&partial.signature),
                    hashed,
                    g2_from(&share_key.to_bytes())
                ),
                "operator {}'s partial under its share key",
                partial.operator
            );
        }

        // The last t operators, and the first t: both give the whole key's signature, byte for
        // byte, and it verifies against the group key.
        for chosen in [&partials[n as usize - t..], &partials[..t]] {
            let combined = split.sharing.combine(chosen).expect("t partials");
            assert_eq!(combined, g1_bytes(whole), "n={n}");
            assert!(verifies(g1_from(&combined), hashed, public), "n={n}");
            assert!(
                interpolate(chosen) == whole,
                "independent interpolation, n={n}"
            );
        }
        // t − 1 partials: no interpolation of them verifies.
        let short = &partials[..t - 1];
        assert!(split.sharing.combine(short).is_err());
        assert!(
            !verifies(interpolate(short), hashed, public),
            "t-1 partials must not verify, n={n}"
        );
        // Nor does the signature verify over another message.
        let (ox, oy) = hash_to_g1(&certificate_digest(reference_timestamp + 1, &message_hash));
        let other: G1 = AffineG1::new(fq(&be32(&ox)), fq(&be32(&oy)))
            .expect("on the curve")
            .into();
        assert!(!verifies(whole, other, public));
    }
}

/// `abi.encode(bytes32 task_hash, bytes output)`, written here from the ABI's rules: the
/// word, the offset of the dynamic part (64), its length, the bytes padded to whole words.
fn message_hash(task_hash: &[u8; 32], output: &[u8]) -> [u8; 32] {
    let mut encoded = task_hash.to_vec();
    encoded.extend_from_slice(&be32(&BigUint::from(64u32)));
    encoded.extend_from_slice(&be32(&BigUint::from(output.len())));
    encoded.extend_from_slice(output);
    encoded.resize(encoded.len().div_ceil(32) * 32, 0);
    keccak256(&encoded).0
}

/// A cluster of 4 signs one task result in its two rounds while operator 1's performer lies:
/// the result signature the honest operators combine verifies, under the independent
/// implementation, against the cluster's one key and over the output they agreed on, and not
/// over the liar's.
#[test]
fn a_cluster_result_signed_despite_a_liar_verifies_under_an_independent_bn254() {
    use cohort_avs_crypto::{
        Address, ResultFields,
        cluster_result::{ResultSigning, Round},
    };
    let mut rng = StdRng::seed_from_u64(16);
    let key = Bn254Key::generate(&mut rng);
    let split = cohort_avs_crypto::bn254::threshold::split(&mut rng, &key, 4).expect("split");
    let task_id = keccak256(b"task 16");
    let fields = |output| ResultFields {
        task_id,
        avs: Address::repeat_byte(1),
        operator: Address::repeat_byte(2),
        operator_set_id: 0,
        reference_timestamp: 1_760_000_016,
        output,
    };
    let agreed = b"42".as_slice();
    let lie = b"41".as_slice();
    let mut view = ResultSigning::new(split.sharing.clone(), &fields(agreed));
    let liar = ResultSigning::new(split.sharing.clone(), &fields(lie));
    for share in &split.shares {
        let partial = if share.operator() == 1 {
            liar.result_partial(share)
        } else {
            view.result_partial(share)
        };
        view.add(Round::Result, partial).expect("known operator");
    }
    view.advance();
    assert_eq!(
        view.bad().get(&1),
        Some(&Round::Result),
        "the liar is named"
    );
    let signature = *view
        .result_signature()
        .expect("three honest partials combine");

    let public = g2_from(&split.sharing.group_public_key().to_bytes());
    let hashed_of = |output: &[u8]| -> G1 {
        let digest = certificate_digest(1_760_000_016, &message_hash(&task_id.0, output));
        let (x, y) = hash_to_g1(&digest);
        AffineG1::new(fq(&be32(&x)), fq(&be32(&y)))
            .expect("on the curve")
            .into()
    };
    assert!(verifies(g1_from(&signature), hashed_of(agreed), public));
    assert!(!verifies(g1_from(&signature), hashed_of(lie), public));
}
