//! Validator keys split t-of-n among a cluster's operators, in Ethereum's BLS ciphersuite.
//!
//! Operators bring validators that already exist, so a secret key is split as it is: it becomes
//! the constant term of a random polynomial of degree t-1 whose evaluations are the shares. The
//! group public key then equals the validator's public key, and any t partial signatures
//! recover exactly the signature the whole key would give.
//!
//! Signatures are Ethereum's: public keys in G1 ([`MinPk`]), signatures in G2, the proof-of-
//! possession ciphersuite's DST ([`MinPk::MESSAGE`]), and the 32-byte signing root as the
//! message with nothing prepended (so not `sign_message`, which prepends a namespace).

use commonware_codec::{Decode, DecodeExt, Encode, EncodeSize, Write};
use commonware_cryptography::{
    Hasher, Sha256,
    bls12381::primitives::{
        group::{Private, Scalar, Share},
        ops::{self, threshold},
        sharing::{ModeVersion, Sharing},
        variant::{MinPk, PartialSignature, Variant},
    },
};
use commonware_math::poly::Poly;
use commonware_parallel::Sequential;
use commonware_utils::Participant;
use rand::CryptoRng;
use std::num::NonZeroU32;

/// A validator public key (48 bytes, G1).
pub type ValidatorPublicKey = <MinPk as Variant>::Public;
/// An Ethereum BLS signature (96 bytes, G2).
pub type Signature = <MinPk as Variant>::Signature;
/// One operator's partial signature.
pub type Partial = PartialSignature<MinPk>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("threshold {threshold} is not within 1..={operators}")]
    Threshold { threshold: u32, operators: u32 },
    #[error("the secret key is zero")]
    ZeroSecret,
    #[error("could not build the sharing: {0}")]
    Sharing(String),
    #[error("not enough valid partial signatures: {have} of {need}")]
    NotEnoughPartials { have: usize, need: u32 },
    #[error("recovered signature does not verify against the validator's public key")]
    InvalidRecovery,
}

/// The Ethereum interop (devnet) secret key of validator `index`:
/// `int.from_bytes(sha256(index as 32-byte little endian), 'little') mod r`.
pub fn interop_secret(index: u64) -> Private {
    let mut preimage = [0u8; 32];
    preimage[..8].copy_from_slice(&index.to_le_bytes());
    let digest = Sha256::hash(&[&preimage]);
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(digest.as_ref());
    Private::new(scalar_from_le_bytes(&bytes))
}

/// The 256-bit little-endian integer `bytes`, reduced modulo r (`from_limbs` reduces).
fn scalar_from_le_bytes(bytes: &[u8; 32]) -> Scalar {
    let mut limbs = [0u64; 4];
    for (limb, word) in limbs.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut array = [0u8; 8];
        array.copy_from_slice(word);
        *limb = u64::from_le_bytes(array);
    }
    Scalar::from_limbs(limbs)
}

/// A validator's key split among a cluster: what every operator knows (the sharing, from which
/// every share's public key follows) and each operator's share, by operator position.
#[derive(Clone, Debug)]
pub struct SplitKey {
    pub sharing: Sharing<MinPk>,
    pub shares: Vec<Share>,
}

impl SplitKey {
    /// The validator's public key (the sharing's constant term).
    pub fn public_key(&self) -> ValidatorPublicKey {
        *self.sharing.public()
    }

    pub fn threshold(&self) -> u32 {
        self.sharing.required()
    }
}

/// What one operator holds of one validator: the sharing every operator knows (the validator's
/// key and every share's key follow from it) and its own share.
#[derive(Clone, Debug)]
pub struct ValidatorShare {
    pub sharing: Sharing<MinPk>,
    pub share: Share,
}

impl SplitKey {
    /// The part of this key operator `index` (0-based position in the cluster) holds.
    pub fn for_operator(&self, index: usize) -> Option<ValidatorShare> {
        Some(ValidatorShare {
            sharing: self.sharing.clone(),
            share: self.shares.get(index)?.clone(),
        })
    }
}

/// Splits an existing secret key t-of-n.
pub fn split(
    rng: &mut impl CryptoRng,
    secret: &Private,
    operators: u32,
    threshold: u32,
) -> Result<SplitKey, KeyError> {
    if threshold == 0 || threshold > operators {
        return Err(KeyError::Threshold {
            threshold,
            operators,
        });
    }
    let constant = secret.expose(|scalar| scalar.clone());
    if constant == Scalar::from_u64(0) {
        return Err(KeyError::ZeroSecret);
    }
    let private = Poly::new_with_constant(&mut *rng, threshold - 1, constant);
    // Participant i holds the evaluation at i + 1 (commonware's non-zero-counter mode).
    let shares = (0..operators)
        .map(|i| Share {
            index: Participant::new(i),
            private: Private::new(private.eval(&Scalar::from_u64(i as u64 + 1))),
        })
        .collect();
    let commitment = Poly::<ValidatorPublicKey>::commit(private);
    // `Sharing`'s constructor is private to commonware; its canonical encoding is not
    // (mode 0 = non-zero counter, total, committed polynomial).
    let mut encoded = Vec::with_capacity(1 + 4 + commitment.encode_size());
    0u8.write(&mut encoded);
    operators.write(&mut encoded);
    commitment.write(&mut encoded);
    let max = NonZeroU32::new(operators).ok_or(KeyError::Threshold {
        threshold,
        operators,
    })?;
    let sharing = Sharing::<MinPk>::decode_cfg(encoded, &(max, ModeVersion::v0()))
        .map_err(|err| KeyError::Sharing(err.to_string()))?;
    Ok(SplitKey { sharing, shares })
}

/// Splits interop validator `validator`'s key among `operators`, any n - f of whom can sign:
/// the devnet's validators, as the simulation and `cohort cluster init` both hand them out.
pub fn split_interop(
    rng: &mut impl CryptoRng,
    validator: u64,
    operators: u32,
) -> Result<SplitKey, KeyError> {
    use commonware_utils::{Faults as _, N3f1};
    split(
        rng,
        &interop_secret(validator),
        operators,
        N3f1::quorum(operators),
    )
}

/// Signs a signing root with a whole key, as a single validator client would.
pub fn sign(secret: &Private, signing_root: &[u8; 32]) -> Signature {
    ops::sign::<MinPk>(secret, MinPk::MESSAGE, signing_root)
}

/// Verifies an Ethereum signature over a signing root.
pub fn verify(public: &ValidatorPublicKey, signing_root: &[u8; 32], signature: &Signature) -> bool {
    ops::verify::<MinPk>(public, MinPk::MESSAGE, signing_root, signature).is_ok()
}

/// Signs a signing root with one operator's share.
pub fn sign_partial(share: &Share, signing_root: &[u8; 32]) -> Partial {
    PartialSignature {
        index: share.index,
        value: sign(&share.private, signing_root),
    }
}

/// Verifies one partial signature against its share's public key.
pub fn verify_partial(
    sharing: &Sharing<MinPk>,
    signing_root: &[u8; 32],
    partial: &Partial,
) -> bool {
    sharing
        .partial_public(partial.index)
        .is_ok_and(|public| verify(&public, signing_root, &partial.value))
}

/// Recovers the validator's signature from partials and checks it. When the result does not
/// verify, every partial is checked, the invalid ones are returned with the error's context,
/// and recovery is retried from the valid ones.
pub fn recover(
    sharing: &Sharing<MinPk>,
    signing_root: &[u8; 32],
    partials: &[Partial],
) -> (Result<Signature, KeyError>, Vec<Participant>) {
    let need = sharing.required();
    let attempt = |partials: &[Partial]| -> Result<Signature, KeyError> {
        if partials.len() < need as usize {
            return Err(KeyError::NotEnoughPartials {
                have: partials.len(),
                need,
            });
        }
        let signature = threshold::recover::<MinPk, _>(sharing, partials, &Sequential)
            .map_err(|_| KeyError::InvalidRecovery)?;
        if verify(sharing.public(), signing_root, &signature) {
            Ok(signature)
        } else {
            Err(KeyError::InvalidRecovery)
        }
    };
    match attempt(partials) {
        Ok(signature) => (Ok(signature), Vec::new()),
        Err(KeyError::NotEnoughPartials { have, need }) => {
            (Err(KeyError::NotEnoughPartials { have, need }), Vec::new())
        }
        Err(_) => {
            let (good, bad): (Vec<Partial>, Vec<Partial>) = partials
                .iter()
                .cloned()
                .partition(|p| verify_partial(sharing, signing_root, p));
            let bad = bad.into_iter().map(|p| p.index).collect();
            (attempt(&good), bad)
        }
    }
}

/// The 96-byte compressed form of a signature, as SSZ containers and the beacon API hold it.
pub fn signature_bytes(signature: &Signature) -> [u8; 96] {
    let mut bytes = [0u8; 96];
    bytes.copy_from_slice(&signature.encode()[..96]);
    bytes
}

/// Hex of a compressed point or signature, as Ethereum tools print them.
pub fn to_hex(value: &impl Encode) -> String {
    value.encode().iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a compressed public key from hex (with or without `0x`).
pub fn public_key_from_hex(hex: &str) -> Option<ValidatorPublicKey> {
    let bytes = decode_hex(hex)?;
    ValidatorPublicKey::decode(bytes).ok()
}

/// Parses a compressed signature from hex (with or without `0x`).
pub fn signature_from_hex(hex: &str) -> Option<Signature> {
    let bytes = decode_hex(hex)?;
    Signature::decode(bytes).ok()
}

/// Bytes from hex (with or without `0x`); `None` for odd lengths or non-hex digits.
pub fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    let hex = hex.strip_prefix("0x").unwrap_or(hex);
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_utils::test_rng;

    #[test]
    fn interop_key_zero_matches_ethereum() {
        let public = ops::compute_public::<MinPk>(&interop_secret(0));
        assert_eq!(
            to_hex(&public),
            "a99a76ed7796f7be22d5b7e85deeb7c5677e88e511e0b337618f8c4eb61349b4bf2d153f649f7b53359fe8b94a38e44c"
        );
    }

    #[test]
    fn split_existing_key_recovers_the_full_key_signature() {
        let mut rng = test_rng();
        let secret = interop_secret(42);
        let public = ops::compute_public::<MinPk>(&secret);
        let key = split(&mut rng, &secret, 4, 3).unwrap();
        assert_eq!(key.public_key(), public, "group key is the validator's key");
        assert_eq!(key.threshold(), 3);
        let root = [7u8; 32];
        let whole = sign(&secret, &root);
        for skip in 0..4 {
            let partials: Vec<Partial> = key
                .shares
                .iter()
                .filter(|s| s.index.get() != skip)
                .map(|s| sign_partial(s, &root))
                .collect();
            assert!(
                partials
                    .iter()
                    .all(|p| verify_partial(&key.sharing, &root, p))
            );
            let (recovered, bad) = recover(&key.sharing, &root, &partials);
            assert_eq!(
                recovered.unwrap(),
                whole,
                "byte-identical to the whole key's"
            );
            assert!(bad.is_empty());
        }
    }

    #[test]
    fn bad_partials_are_found_dropped_and_recovery_retried() {
        let mut rng = test_rng();
        let secret = interop_secret(1);
        let key = split(&mut rng, &secret, 4, 3).unwrap();
        let root = [9u8; 32];
        let mut partials: Vec<Partial> =
            key.shares.iter().map(|s| sign_partial(s, &root)).collect();
        // Operator 2 signs another root.
        partials[2] = sign_partial(&key.shares[2], &[1u8; 32]);
        let (recovered, bad) = recover(&key.sharing, &root, &partials);
        assert_eq!(recovered.unwrap(), sign(&secret, &root));
        assert_eq!(bad, vec![Participant::new(2)]);
        // With two bad partials only two good ones remain: not enough.
        partials[1] = sign_partial(&key.shares[1], &[1u8; 32]);
        let (recovered, bad) = recover(&key.sharing, &root, &partials);
        assert_eq!(
            recovered,
            Err(KeyError::NotEnoughPartials { have: 2, need: 3 })
        );
        assert_eq!(bad.len(), 2);
    }

    #[test]
    fn bad_split_parameters_are_rejected() {
        let mut rng = test_rng();
        let secret = interop_secret(3);
        assert!(matches!(
            split(&mut rng, &secret, 4, 0),
            Err(KeyError::Threshold { .. })
        ));
        assert!(matches!(
            split(&mut rng, &secret, 4, 5),
            Err(KeyError::Threshold { .. })
        ));
    }

    fn secret_from_hex(hex: &str) -> Private {
        // Test vectors give secret keys big-endian.
        let mut bytes: [u8; 32] = decode_hex(hex).unwrap().try_into().unwrap();
        bytes.reverse();
        Private::new(scalar_from_le_bytes(&bytes))
    }

    /// The official Ethereum BLS test vectors (consensus-spec-tests `general/phase0/bls/sign`).
    #[test]
    fn official_sign_and_verify_vectors() {
        let secret =
            secret_from_hex("47b8192d77bf871b62e87859d653922725724a5c031afeabc60bcef5ff665138");
        let public = ops::compute_public::<MinPk>(&secret);
        let cases: [([u8; 32], &str); 2] = [
            // sign_case_142f678a8d05fcd1
            (
                [0x56; 32],
                "af1390c3c47acdb37131a51216da683c509fce0e954328a59f93aebda7e4ff974ba208d9a4a2a2389f892a9d418d618418dd7f7a6bc7aa0da999a9d3a5b815bc085e14fd001f6a1948768a3f4afefc8b8240dda329f984cb345c6363272ba4fe",
            ),
            // sign_case_11b8c7cad5238946
            (
                [0x00; 32],
                "b23c46be3a001c63ca711f87a005c200cc550b9429d5f4eb38d74322144f1b63926da3388979e5321012fb1a0526bcd100b5ef5fe72628ce4cd5e904aeaa3279527843fae5ca9ca675f4f51ed8f83bbf7155da9ecc9663100a885d5dc6df96d9",
            ),
        ];
        for (message, expected) in cases {
            let signature = sign(&secret, &message);
            assert_eq!(to_hex(&signature), expected);
            assert_eq!(decode_hex(expected).unwrap(), signature_bytes(&signature));
            let parsed = signature_from_hex(expected).unwrap();
            assert!(verify(&public, &message, &parsed));
            assert!(!verify(&public, &[0xab; 32], &parsed));
        }
        // The same key split 3-of-4 signs byte-identically.
        let key = split(&mut test_rng(), &secret, 4, 3).unwrap();
        let partials: Vec<Partial> = key.shares[1..]
            .iter()
            .map(|s| sign_partial(s, &[0x56; 32]))
            .collect();
        let (recovered, _) = recover(&key.sharing, &[0x56; 32], &partials);
        assert_eq!(to_hex(&recovered.unwrap()), cases[0].1);
        assert!(public_key_from_hex(&format!("0x{}", to_hex(&public))).is_some());
        assert!(public_key_from_hex("0xzz").is_none());
    }
}
