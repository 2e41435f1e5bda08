//! One BN254 operator key held by a whole cluster: split t-of-n (t = n − f, f = ⌊(n−1)/3⌋) so
//! that no operator holds it, yet any t operators sign exactly what the whole key signs.
//!
//! The secret key `s` becomes the constant term of a random polynomial `p` of degree t−1;
//! operator `i` (0-based, its position in the cluster) holds `p(i + 1)`, the same evaluation
//! points the validator shares use. A partial signature is `p(i + 1) · H` for the message's
//! point `H` (try-and-increment for result and registration digests, gnark's `HashToG1` for
//! auth signatures: both are linear in the scalar, so both split). Lagrange interpolation at 0
//! of any t partials, done in G1, gives `s · H`: byte for byte the signature the whole key
//! would give, so an unmodified Hourglass aggregator and EigenLayer's certificate verifier
//! accept it against the cluster's one G2 key.
//!
//! Everything here is a pure function over typed values (no I/O, randomness passed in), so an
//! actor can call it from its run loop and a simulation stays a function of its seed.
//!
//! What is public: the [`Bn254Sharing`] (group G2 and G1 keys, every share's G2 key), checked
//! on construction to be one polynomial's commitments, so a lock whose share keys were tampered
//! with is refused before any partial is checked against them.

use alloy_primitives::B256;
use ark_bn254::{Bn254, Fr, G1Affine, G1Projective, G2Affine, G2Projective};
use ark_ec::pairing::Pairing;
use ark_ec::{AffineRepr, CurveGroup};
use ark_ff::{Field, One, PrimeField, Zero};
use rand_core::CryptoRng;
use zeroize::{Zeroize, Zeroizing};

use super::{
    Bn254Key, Bn254PublicKey, Bn254Signature, g1_from_bytes, g1_to_bytes, hash_to_g1_gnark,
    hash_to_g1_solidity,
};
use crate::Error;
use crate::encoding::bn254_certificate_digest;

/// Partial signatures needed out of `operators`: n − f with f = ⌊(n−1)/3⌋ (the cluster's
/// quorum, as for validator shares). 0 for 0 operators.
pub const fn threshold_of(operators: u32) -> u32 {
    if operators == 0 {
        return 0;
    }
    operators - (operators - 1) / 3
}

/// Why a split, a sharing or a combination was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    /// The threshold is 0 or above the number of operators.
    #[error("threshold {threshold} is not within 1..={operators}")]
    Threshold { threshold: u32, operators: u32 },
    /// A partial names an operator the sharing does not have.
    #[error("operator {operator} is not in the sharing (it has {operators} operators)")]
    UnknownOperator { operator: u32, operators: u32 },
    /// Two partials (or two shares) name the same operator.
    #[error("operator {0} appears twice")]
    DuplicateOperator(u32),
    /// A partial's bytes are not a G1 point (wrong length, off the curve, infinity).
    #[error("operator {operator}'s partial signature: {source}")]
    Encoding { operator: u32, source: Error },
    /// Fewer than the threshold of valid partials. `bad` lists the operators whose partials
    /// were dropped as invalid (sorted), so the caller can blame them even so.
    #[error(
        "not enough valid partial signatures: {valid} of {need}{}",
        if bad.is_empty() { String::new() } else { format!(" (invalid from operators {bad:?})") }
    )]
    NotEnoughPartials {
        valid: usize,
        need: u32,
        bad: Vec<u32>,
    },
    /// The partials interpolate to the point at infinity (only bad partials can).
    #[error("the partial signatures combine to the point at infinity")]
    Identity,
    /// A partial does not verify against its share's key, or a combined signature against the
    /// group key.
    #[error("operator {0}'s partial signature does not verify")]
    PartialVerification(u32),
    #[error("the combined signature does not verify against the group key")]
    CombinedVerification,
    /// The public half of a sharing is inconsistent (a key that is not a valid point, a share
    /// key off the polynomial, a G1 key that is not the G2 key's scalar).
    #[error("inconsistent sharing: {0}")]
    Sharing(String),
    /// The secret to split is not a valid key.
    #[error("invalid secret: {0}")]
    Secret(Error),
}

/// The point a message hashes to, computed once and then used for every partial's signing and
/// verification (try-and-increment costs an exponentiation per attempt).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashedMessage(G1Affine);

impl HashedMessage {
    /// A 32-byte digest hashed by try-and-increment, as EigenLayer's Solidity `hashToG1`: what
    /// result signatures and key-registration signatures are over.
    pub fn solidity(digest: &B256) -> Self {
        Self(hash_to_g1_solidity(digest))
    }

    /// The BN254 result signature's message: the certificate digest of
    /// `(reference_timestamp, message_hash)`, by try-and-increment.
    pub fn certificate(reference_timestamp: u32, message_hash: &B256) -> Self {
        Self::solidity(&bn254_certificate_digest(reference_timestamp, message_hash))
    }

    /// gnark's `HashToG1(message, GNARK_DST)`: what auth and challenge signatures are over.
    pub fn gnark(message: &[u8]) -> Self {
        Self(hash_to_g1_gnark(message, super::GNARK_DST))
    }
}

/// One operator's partial signature: its position in the cluster and `share · H` as 64 bytes
/// `X ‖ Y`. Kept as bytes so whatever a peer sent can be carried and judged later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bn254Partial {
    pub operator: u32,
    pub signature: Bn254Signature,
}

impl Bn254Partial {
    /// Encoded length: operator (4 bytes, big-endian) ‖ signature (64).
    pub const LENGTH: usize = 68;

    /// The signature as a curve point; an encoding error names the operator that sent it.
    fn point(&self) -> Result<G1Affine, ThresholdError> {
        g1_from_bytes(&self.signature, "BN254 partial signature").map_err(|source| {
            ThresholdError::Encoding {
                operator: self.operator,
                source,
            }
        })
    }

    pub fn to_bytes(&self) -> [u8; Self::LENGTH] {
        let mut out = [0u8; Self::LENGTH];
        out[..4].copy_from_slice(&self.operator.to_be_bytes());
        out[4..].copy_from_slice(&self.signature);
        out
    }

    /// Parses the 68-byte encoding. Only the length is checked here: the point is checked when
    /// the partial is verified or combined, where a bad one is attributed to its operator.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let bytes: &[u8; Self::LENGTH] = bytes.try_into().map_err(|_| Error::Length {
            what: "BN254 partial signature",
            expected: Self::LENGTH,
            got: bytes.len(),
        })?;
        let mut operator = [0u8; 4];
        operator.copy_from_slice(&bytes[..4]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&bytes[4..]);
        Ok(Self {
            operator: u32::from_be_bytes(operator),
            signature,
        })
    }
}

/// A G1 public key `s · G1` (64 bytes `X ‖ Y`): EigenLayer's `KeyRegistrar` registers it beside
/// the G2 key, and its certificate verifier aggregates G1 keys.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Bn254G1PublicKey {
    point: G1Affine,
}

impl std::fmt::Debug for Bn254G1PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bn254G1PublicKey(0x")?;
        for b in self.to_bytes() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl Bn254G1PublicKey {
    /// Parses 64 bytes `X ‖ Y`; refuses coordinates ≥ p, points off the curve and infinity.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        g1_from_bytes(bytes, "BN254 G1 public key").map(|point| Self { point })
    }

    pub fn to_bytes(&self) -> [u8; 64] {
        g1_to_bytes(&self.point)
    }
}

impl Bn254Key {
    /// A fresh key: a uniform non-zero scalar from `rng`.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let scalar = random_nonzero_scalar(rng);
        Self::from_scalar(scalar)
    }

    /// The G1 public key `sk · G1` (for `KeyRegistrar`).
    pub fn g1_public_key(&self) -> Bn254G1PublicKey {
        Bn254G1PublicKey {
            point: (G1Affine::generator() * self.scalar).into_affine(),
        }
    }

    /// The 32-byte big-endian secret scalar (what the supervisor's key files and keystores
    /// hold), in a buffer wiped on drop.
    pub fn to_be_bytes(&self) -> Zeroizing<[u8; 32]> {
        scalar_to_be(&self.scalar)
    }

    fn from_scalar(scalar: Fr) -> Self {
        let public = Bn254PublicKey {
            point: (G2Affine::generator() * scalar).into_affine(),
        };
        Self { scalar, public }
    }
}

/// One operator's share of the cluster key: `p(operator + 1)`. Wiped on drop; never printed.
#[derive(Clone)]
pub struct Bn254SecretShare {
    operator: u32,
    scalar: Fr,
}

impl Drop for Bn254SecretShare {
    fn drop(&mut self) {
        self.scalar.zeroize();
    }
}

impl std::fmt::Debug for Bn254SecretShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bn254SecretShare")
            .field("operator", &self.operator)
            .field("public", &self.public_key())
            .finish_non_exhaustive()
    }
}

impl Bn254SecretShare {
    /// Operator `operator`'s share from its 32-byte big-endian scalar (the keystore's secret).
    /// Refuses zero and values not below the group order, like a whole key.
    pub fn from_be_bytes(operator: u32, secret: &[u8]) -> Result<Self, Error> {
        let key = Bn254Key::from_be_bytes(secret)?;
        Ok(Self {
            operator,
            scalar: key.scalar,
        })
    }

    /// The 32-byte big-endian scalar, in a buffer wiped on drop.
    pub fn to_be_bytes(&self) -> Zeroizing<[u8; 32]> {
        scalar_to_be(&self.scalar)
    }

    pub fn operator(&self) -> u32 {
        self.operator
    }

    /// The share's G2 key, `p(operator + 1) · G2`, which its partials verify against.
    pub fn public_key(&self) -> Bn254PublicKey {
        Bn254PublicKey {
            point: (G2Affine::generator() * self.scalar).into_affine(),
        }
    }

    /// `share · H`.
    pub fn sign(&self, message: &HashedMessage) -> Bn254Partial {
        Bn254Partial {
            operator: self.operator,
            signature: g1_to_bytes(&(message.0 * self.scalar).into_affine()),
        }
    }
}

/// The public half of a split key, what every operator's cluster lock holds: the threshold, the
/// group keys and every share's G2 key (operator `i`'s at position `i`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bn254Sharing {
    threshold: u32,
    group: Bn254PublicKey,
    group_g1: Bn254G1PublicKey,
    shares: Vec<Bn254PublicKey>,
}

impl Bn254Sharing {
    /// Checks and builds a sharing from its public parts (as read from a lock): `1 ≤ t ≤ n`;
    /// the G1 and G2 group keys have the same scalar (`e(g1, G2) = e(G1, g2)`); and the share
    /// keys are the values at 1..=n of one polynomial of degree < t whose value at 0 is the
    /// group key (interpolating the first t shares reproduces the group key and every other
    /// share key). A sharing that passes cannot hold a share key that would let a wrong partial
    /// verify or a right one fail.
    pub fn new(
        threshold: u32,
        group: Bn254PublicKey,
        group_g1: Bn254G1PublicKey,
        shares: Vec<Bn254PublicKey>,
    ) -> Result<Self, ThresholdError> {
        let operators = u32::try_from(shares.len()).map_err(|_| ThresholdError::Threshold {
            threshold,
            operators: u32::MAX,
        })?;
        if threshold == 0 || threshold > operators {
            return Err(ThresholdError::Threshold {
                threshold,
                operators,
            });
        }
        let same_scalar = Bn254::multi_pairing(
            [group_g1.point, -G1Affine::generator()],
            [G2Affine::generator(), group.point],
        );
        if !same_scalar.is_zero() {
            return Err(ThresholdError::Sharing(
                "the G1 group key is not the G2 group key's scalar".into(),
            ));
        }
        let basis: Vec<u32> = (0..threshold).collect();
        let interpolate = |at: Fr| -> G2Projective {
            let coefficients = lagrange(&basis, at);
            basis
                .iter()
                .zip(coefficients)
                .map(|(i, c)| shares[*i as usize].point * c)
                .sum()
        };
        if interpolate(Fr::zero()).into_affine() != group.point {
            return Err(ThresholdError::Sharing(format!(
                "the first {threshold} share keys do not interpolate to the group key"
            )));
        }
        for j in threshold..operators {
            if interpolate(evaluation_point(j)).into_affine() != shares[j as usize].point {
                return Err(ThresholdError::Sharing(format!(
                    "operator {j}'s share key is not on the polynomial of the others"
                )));
            }
        }
        Ok(Self {
            threshold,
            group,
            group_g1,
            shares,
        })
    }

    /// Partial signatures needed.
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    pub fn operators(&self) -> u32 {
        self.shares.len() as u32
    }

    /// The cluster's G2 key: what Hourglass's aggregator and the certificate verifier check
    /// combined signatures against.
    pub fn group_public_key(&self) -> &Bn254PublicKey {
        &self.group
    }

    /// The cluster's G1 key (registered with `KeyRegistrar` beside the G2 key).
    pub fn group_g1_public_key(&self) -> &Bn254G1PublicKey {
        &self.group_g1
    }

    /// Operator `operator`'s share key.
    pub fn share_public_key(&self, operator: u32) -> Option<&Bn254PublicKey> {
        self.shares.get(operator as usize)
    }

    /// Every share key, operator `i`'s at position `i`.
    pub fn share_public_keys(&self) -> &[Bn254PublicKey] {
        &self.shares
    }

    /// Checks one partial against its operator's share key: `e(σᵢ, G2) = e(H, pkᵢ)`.
    pub fn verify_partial(
        &self,
        message: &HashedMessage,
        partial: &Bn254Partial,
    ) -> Result<(), ThresholdError> {
        let key =
            self.share_public_key(partial.operator)
                .ok_or(ThresholdError::UnknownOperator {
                    operator: partial.operator,
                    operators: self.operators(),
                })?;
        let point = partial.point()?;
        key.verify_point(&message.0, &point)
            .map_err(|_| ThresholdError::PartialVerification(partial.operator))
    }

    /// Checks a combined (or any whole-key) signature against the group G2 key.
    pub fn verify(&self, message: &HashedMessage, signature: &[u8]) -> Result<(), ThresholdError> {
        let point = g1_from_bytes(signature, "BN254 signature")
            .map_err(|_| ThresholdError::CombinedVerification)?;
        self.group
            .verify_point(&message.0, &point)
            .map_err(|_| ThresholdError::CombinedVerification)
    }

    /// Interpolates the first t partials (lowest operators first) at 0, without verifying
    /// anything: with t valid partials this is exactly the whole key's signature. Refuses
    /// unknown or repeated operators, undecodable points and fewer than t partials.
    pub fn combine(&self, partials: &[Bn254Partial]) -> Result<Bn254Signature, ThresholdError> {
        let sorted = self.checked_sorted(partials)?;
        if sorted.len() < self.threshold as usize {
            return Err(ThresholdError::NotEnoughPartials {
                valid: sorted.len(),
                need: self.threshold,
                bad: Vec::new(),
            });
        }
        let chosen = &sorted[..self.threshold as usize];
        let mut points = Vec::with_capacity(chosen.len());
        for partial in chosen {
            points.push((partial.operator, partial.point()?));
        }
        interpolate_g1(&points)
    }

    /// The runner's combination: interpolate t partials and verify the result against the group
    /// key (one pairing check, the usual case); only if that fails, verify every partial, drop
    /// the bad ones (including undecodable ones) and interpolate t of the rest. Returns the
    /// signature and the operators whose partials were found bad (sorted; in the fast path
    /// partials beyond the first t are not examined, so none are reported).
    ///
    /// Errors: an operator unknown to the sharing or present twice (the caller binds partials
    /// to peers, so that is its bug, not a peer's), fewer than t partials, or fewer than t
    /// valid ones (the error lists the bad).
    pub fn combine_verified(
        &self,
        message: &HashedMessage,
        partials: &[Bn254Partial],
    ) -> Result<Combined, ThresholdError> {
        let sorted = self.checked_sorted(partials)?;
        let need = self.threshold as usize;
        if sorted.len() < need {
            return Err(ThresholdError::NotEnoughPartials {
                valid: sorted.len(),
                need: self.threshold,
                bad: Vec::new(),
            });
        }
        if let Ok(signature) = self.combine(&sorted[..need])
            && self.verify(message, &signature).is_ok()
        {
            return Ok(Combined {
                signature,
                bad: Vec::new(),
            });
        }
        let mut good = Vec::with_capacity(sorted.len());
        let mut bad = Vec::new();
        for partial in &sorted {
            match self.verify_partial(message, partial) {
                Ok(()) => good.push(*partial),
                Err(_) => bad.push(partial.operator),
            }
        }
        if good.len() < need {
            return Err(ThresholdError::NotEnoughPartials {
                valid: good.len(),
                need: self.threshold,
                bad,
            });
        }
        let signature = self.combine(&good[..need])?;
        // t verified partials of a checked sharing always interpolate to a valid signature;
        // checked anyway, since a signature that leaves here is trusted by everyone after.
        self.verify(message, &signature)?;
        Ok(Combined { signature, bad })
    }

    /// [`Self::combine_verified`] for many messages at once, at the cost of about one
    /// pairing check for the whole batch instead of one per message: each item's first t
    /// partials are interpolated, and the combined signatures are checked together (see
    /// [`verify_batch`]). Only the items of a failing batch (found by bisection) take the slow
    /// path of checking their partials one by one. The answers come in the items' order.
    pub fn combine_verified_batch(
        &self,
        items: &[(HashedMessage, Vec<Bn254Partial>)],
    ) -> Vec<Result<Combined, ThresholdError>> {
        let need = self.threshold as usize;
        let mut answers: Vec<Option<Result<Combined, ThresholdError>>> = Vec::new();
        let mut candidates = Vec::new();
        for (index, (message, partials)) in items.iter().enumerate() {
            let combined = self.checked_sorted(partials).and_then(|sorted| {
                if sorted.len() < need {
                    return Err(ThresholdError::NotEnoughPartials {
                        valid: sorted.len(),
                        need: self.threshold,
                        bad: Vec::new(),
                    });
                }
                let mut points = Vec::with_capacity(need);
                for partial in &sorted[..need] {
                    points.push((partial.operator, partial.point()?));
                }
                interpolate_point(&points)
            });
            match combined {
                Ok(point) => {
                    answers.push(None);
                    candidates.push((index, message.0, point));
                }
                // Too few partials, or an operator the caller should not have let in: the
                // same answer the one-by-one path gives.
                Err(err @ ThresholdError::NotEnoughPartials { .. })
                | Err(err @ ThresholdError::UnknownOperator { .. })
                | Err(err @ ThresholdError::DuplicateOperator(_)) => answers.push(Some(Err(err))),
                // An undecodable partial or an identity: only the slow path names the culprit.
                Err(_) => answers.push(Some(self.combine_verified(message, partials))),
            }
        }
        let checked: Vec<(G1Affine, G1Affine)> = candidates
            .iter()
            .map(|(_, hashed, signature)| (*hashed, *signature))
            .collect();
        let valid = verify_points_batch(&self.group.point, &checked);
        for ((index, _, signature), valid) in candidates.into_iter().zip(valid) {
            answers[index] = Some(if valid {
                Ok(Combined {
                    signature: g1_to_bytes(&signature),
                    bad: Vec::new(),
                })
            } else {
                let (message, partials) = &items[index];
                self.combine_verified(message, partials)
            });
        }
        answers
            .into_iter()
            .map(|answer| answer.unwrap_or(Err(ThresholdError::CombinedVerification)))
            .collect()
    }

    /// The partials sorted by operator, refusing unknown and repeated operators.
    fn checked_sorted(
        &self,
        partials: &[Bn254Partial],
    ) -> Result<Vec<Bn254Partial>, ThresholdError> {
        let mut sorted = partials.to_vec();
        sorted.sort_by_key(|partial| partial.operator);
        for (i, partial) in sorted.iter().enumerate() {
            if partial.operator >= self.operators() {
                return Err(ThresholdError::UnknownOperator {
                    operator: partial.operator,
                    operators: self.operators(),
                });
            }
            if i > 0 && sorted[i - 1].operator == partial.operator {
                return Err(ThresholdError::DuplicateOperator(partial.operator));
            }
        }
        Ok(sorted)
    }
}

/// A combined signature and the operators whose partials were dropped as bad.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Combined {
    pub signature: Bn254Signature,
    pub bad: Vec<u32>,
}

/// A key split among a cluster: the public sharing and every operator's share (operator `i`'s
/// at position `i`). Held whole only by whoever split it (`cluster init`, a simulation), which
/// hands each share to its operator and drops the rest.
#[derive(Clone, Debug)]
pub struct SplitBn254Key {
    pub sharing: Bn254Sharing,
    pub shares: Vec<Bn254SecretShare>,
}

/// Splits `secret` among `operators` with the cluster threshold [`threshold_of`].
pub fn split(
    rng: &mut impl CryptoRng,
    secret: &Bn254Key,
    operators: u32,
) -> Result<SplitBn254Key, ThresholdError> {
    split_with_threshold(rng, secret, operators, threshold_of(operators))
}

/// Splits `secret` t-of-n: a random polynomial of degree t−1 with `secret` as its constant term,
/// operator i's share its value at i + 1. The group keys are the secret's own.
pub fn split_with_threshold(
    rng: &mut impl CryptoRng,
    secret: &Bn254Key,
    operators: u32,
    threshold: u32,
) -> Result<SplitBn254Key, ThresholdError> {
    if threshold == 0 || threshold > operators {
        return Err(ThresholdError::Threshold {
            threshold,
            operators,
        });
    }
    let mut coefficients = Vec::with_capacity(threshold as usize);
    coefficients.push(secret.scalar);
    for _ in 1..threshold {
        coefficients.push(random_scalar(rng));
    }
    let mut shares = Vec::with_capacity(operators as usize);
    for operator in 0..operators {
        let x = evaluation_point(operator);
        // Horner's rule, highest coefficient first.
        let mut value = Fr::zero();
        for c in coefficients.iter().rev() {
            value = value * x + c;
        }
        if value.is_zero() {
            // Probability n/r (about 2^-250): a zero share would be refused when read back.
            coefficients.zeroize();
            return Err(ThresholdError::Secret(Error::SecretKey));
        }
        shares.push(Bn254SecretShare {
            operator,
            scalar: value,
        });
    }
    coefficients.zeroize();
    let sharing = Bn254Sharing::new(
        threshold,
        *secret.public_key(),
        secret.g1_public_key(),
        shares.iter().map(Bn254SecretShare::public_key).collect(),
    )?;
    Ok(SplitBn254Key { sharing, shares })
}

/// Where operator `operator`'s share is evaluated: `operator + 1` (0 is the secret).
fn evaluation_point(operator: u32) -> Fr {
    Fr::from(u64::from(operator) + 1)
}

/// Lagrange basis coefficients of the operators `basis` (distinct) at `at`:
/// `λᵢ(at) = Π_{j≠i} (at − xⱼ) / (xᵢ − xⱼ)`.
fn lagrange(basis: &[u32], at: Fr) -> Vec<Fr> {
    let xs: Vec<Fr> = basis.iter().map(|i| evaluation_point(*i)).collect();
    xs.iter()
        .enumerate()
        .map(|(i, xi)| {
            let mut numerator = Fr::one();
            let mut denominator = Fr::one();
            for (j, xj) in xs.iter().enumerate() {
                if i != j {
                    numerator *= at - xj;
                    denominator *= *xi - xj;
                }
            }
            // Distinct points: the denominator is a product of non-zero differences below r.
            numerator * denominator.inverse().unwrap_or(Fr::zero())
        })
        .collect()
}

/// `Σ λᵢ(0) σᵢ` over distinct operators.
fn interpolate_g1(points: &[(u32, G1Affine)]) -> Result<Bn254Signature, ThresholdError> {
    interpolate_point(points).map(|point| g1_to_bytes(&point))
}

fn interpolate_point(points: &[(u32, G1Affine)]) -> Result<G1Affine, ThresholdError> {
    let basis: Vec<u32> = points.iter().map(|(operator, _)| *operator).collect();
    let combined: G1Projective = lagrange(&basis, Fr::zero())
        .into_iter()
        .zip(points)
        .map(|(c, (_, point))| *point * c)
        .sum();
    if combined.is_zero() {
        return Err(ThresholdError::Identity);
    }
    Ok(combined.into_affine())
}

/// Checks many signatures under one key: `(message, signature)` pairs, encoded as an
/// aggregator receives them. Returns, in order, whether each verifies. Costs two pairings and
/// two multi-scalar multiplications for a batch that holds, instead of two pairings per
/// signature; a failing batch is bisected so each bad signature is named.
pub fn verify_batch(key: &Bn254PublicKey, items: &[(HashedMessage, &[u8])]) -> Vec<bool> {
    let mut answers = vec![false; items.len()];
    let mut decoded = Vec::with_capacity(items.len());
    let mut positions = Vec::with_capacity(items.len());
    for (index, (message, signature)) in items.iter().enumerate() {
        if let Ok(point) = g1_from_bytes(signature, "BN254 signature") {
            decoded.push((message.0, point));
            positions.push(index);
        }
    }
    for (index, valid) in positions
        .into_iter()
        .zip(verify_points_batch(&key.point, &decoded))
    {
        answers[index] = valid;
    }
    answers
}

/// Whether each `(H, σ)` satisfies `e(σ, G2) = e(H, pk)`, checked as one random linear
/// combination `e(Σ rᵢσᵢ, G2) = e(Σ rᵢHᵢ, pk)`. The 128-bit coefficients `rᵢ` come from a hash
/// of every point in the batch: fixed only once every signature is, so a signer cannot choose
/// a wrong signature that the combination cancels (it holds for a wrong one with probability
/// 2⁻¹²⁸), and the same batch always gets the same answer, as a deterministic simulation
/// needs. A failing batch is split in halves until the bad signatures are alone.
fn verify_points_batch(key: &G2Affine, items: &[(G1Affine, G1Affine)]) -> Vec<bool> {
    use ark_ec::VariableBaseMSM;
    use sha2::{Digest, Sha256};
    match items.len() {
        0 => return Vec::new(),
        1 => {
            let (hashed, signature) = items[0];
            let product = Bn254::multi_pairing([signature, -hashed], [G2Affine::generator(), *key]);
            return vec![product.is_zero()];
        }
        _ => {}
    }
    let mut transcript = Sha256::new();
    transcript.update(b"cohort/bn254-batch-verify");
    for (hashed, signature) in items {
        transcript.update(g1_to_bytes(hashed));
        transcript.update(g1_to_bytes(signature));
    }
    let seed = transcript.finalize();
    let coefficients: Vec<Fr> = (0..items.len() as u64)
        .map(|i| {
            let digest = Sha256::new()
                .chain_update(seed)
                .chain_update(i.to_be_bytes())
                .finalize();
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&digest[..16]);
            // A zero coefficient would leave its signature unchecked.
            Fr::from(u128::from_be_bytes(bytes).max(1))
        })
        .collect();
    let hashed: Vec<G1Affine> = items.iter().map(|(hashed, _)| *hashed).collect();
    let signatures: Vec<G1Affine> = items.iter().map(|(_, signature)| *signature).collect();
    let signature_sum = G1Projective::msm_unchecked(&signatures, &coefficients).into_affine();
    let hashed_sum = G1Projective::msm_unchecked(&hashed, &coefficients).into_affine();
    let product = Bn254::multi_pairing([signature_sum, -hashed_sum], [G2Affine::generator(), *key]);
    if product.is_zero() {
        return vec![true; items.len()];
    }
    let (left, right) = items.split_at(items.len() / 2);
    let mut answers = verify_points_batch(key, left);
    answers.extend(verify_points_batch(key, right));
    answers
}

/// A uniform scalar: 64 random bytes reduced mod r (bias below 2^-250).
fn random_scalar(rng: &mut impl CryptoRng) -> Fr {
    let mut bytes = Zeroizing::new([0u8; 64]);
    rng.fill_bytes(&mut *bytes);
    Fr::from_be_bytes_mod_order(&*bytes)
}

fn random_nonzero_scalar(rng: &mut impl CryptoRng) -> Fr {
    loop {
        let scalar = random_scalar(rng);
        if !scalar.is_zero() {
            return scalar;
        }
    }
}

fn scalar_to_be(scalar: &Fr) -> Zeroizing<[u8; 32]> {
    use ark_ff::BigInteger;
    let mut out = Zeroizing::new([0u8; 32]);
    let mut bytes = scalar.into_bigint().to_bytes_be();
    out[32 - bytes.len()..].copy_from_slice(&bytes);
    bytes.zeroize();
    out
}

#[cfg(test)]
mod tests;
