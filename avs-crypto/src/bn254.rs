//! BN254 (alt_bn128) BLS signatures as EigenLayer and Hourglass use them: signatures in G1,
//! public keys in G2, verification by `e(σ, G2) = e(H(m), pk)`.
//!
//! Hourglass hashes to G1 in two different ways, and which one depends on what is signed:
//!
//! - [`hash_to_g1_solidity`]: try-and-increment over a 32-byte digest, exactly as EigenLayer's
//!   Solidity `BN254.hashToG1` (and Hourglass's `SolidityHashToG1`): `x = digest mod p`; while
//!   `x³ + 3` has no square root, `x += 1`; `y = (x³ + 3)^((p+1)/4)` (that root, not its
//!   negation). Used for the **result** signature, because the certificate verifier re-hashes on
//!   chain.
//! - [`hash_to_g1_gnark`]: gnark-crypto's `bn254.HashToG1(msg, dst)`, RFC 9380 `hash_to_curve`
//!   with `expand_message_xmd` over SHA-256, two field elements, each mapped with
//!   Shallue–van de Woestijne (Z = 1, since BN254's `a` is 0 and SSWU does not apply), the
//!   two points added (G1's cofactor is 1). The DST is [`GNARK_DST`] (its "SSWU" is only a
//!   name). Hourglass's `Sign(message)` uses it for the **aggregator's task** signature and the
//!   **auth** signature, over the 32-byte keccak digest.
//!
//! # Byte layouts
//!
//! All coordinates are 32-byte big-endian integers below p, no flag bits (gnark's `Marshal`,
//! which is the EVM precompiles' layout, EIP-196/197):
//!
//! - G1 (signatures, 64 bytes): `X ‖ Y`.
//! - G2 (public keys, 128 bytes): `X.c1 ‖ X.c0 ‖ Y.c1 ‖ Y.c0`, where an F_p² element is
//!   `c0 + c1·i` (imaginary part first). EigenLayer's `BN254.G2Point { uint256[2] X; uint256[2]
//!   Y; }` stores `X = [c1, c0]` (its generator is `G2Point([G2x1, G2x0], [G2y1, G2y0])`), and
//!   gnark's `G2Affine.Marshal` writes `X.A1 ‖ X.A0 ‖ Y.A1 ‖ Y.A0`; Hourglass's
//!   `NewPublicKeyFromSolidity` maps `X[0]` to `A1`. The all-zero encoding (the identity) is
//!   refused everywhere.

use std::sync::OnceLock;

use alloy_primitives::B256;
use ark_bn254::{Bn254, Fq, Fq2, Fr, G1Affine, G1Projective, G2Affine};
use ark_ec::pairing::Pairing;
use ark_ec::{AffineRepr, CurveGroup};
use ark_ff::{BigInt, BigInteger, Field, One, PrimeField, Zero};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::Error;

pub mod threshold;

/// gnark-crypto's domain separation tag as Hourglass (crypto-libs) passes it to `HashToG1`.
pub const GNARK_DST: &[u8] = b"BLS_SIG_BN254G1_XMD:SHA-256_SSWU_RO_NUL_";

/// A 64-byte G1 signature `X ‖ Y`.
pub type Bn254Signature = [u8; 64];

/// An operator's (or aggregator's) BN254 secret scalar.
#[derive(Clone)]
pub struct Bn254Key {
    scalar: Fr,
    public: Bn254PublicKey,
}

impl Drop for Bn254Key {
    fn drop(&mut self) {
        self.scalar.zeroize();
    }
}

impl std::fmt::Debug for Bn254Key {
    /// Shows the public key only: a secret key must never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bn254Key")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl Bn254Key {
    /// A key from its big-endian secret scalar (Hourglass keys are `big.Int` bytes, so up to
    /// 32 bytes, possibly shorter). Refuses zero and values not below the group order r: gnark
    /// would silently reduce them, but a key file holding one is more likely corrupt than meant.
    pub fn from_be_bytes(secret: &[u8]) -> Result<Self, Error> {
        if secret.len() > 32 {
            return Err(Error::Length {
                what: "BN254 secret key",
                expected: 32,
                got: secret.len(),
            });
        }
        let mut padded = [0u8; 32];
        padded[32 - secret.len()..].copy_from_slice(secret);
        let scalar = Fr::from_bigint(bigint_from_be(&padded)).ok_or(Error::SecretKey);
        padded.zeroize();
        let scalar = scalar?;
        if scalar.is_zero() {
            return Err(Error::SecretKey);
        }
        let public = Bn254PublicKey {
            point: (G2Affine::generator() * scalar).into_affine(),
        };
        Ok(Self { scalar, public })
    }

    /// The G2 public key `sk · G2`.
    pub fn public_key(&self) -> &Bn254PublicKey {
        &self.public
    }

    /// `sk · hash_to_g1_solidity(digest)`: what EigenLayer's certificate verifier checks.
    pub fn sign_solidity(&self, digest: &B256) -> Bn254Signature {
        self.sign_point(&hash_to_g1_solidity(digest))
    }

    /// `sk · hash_to_g1_gnark(message, GNARK_DST)`: Hourglass's `Sign(message)`.
    pub fn sign_gnark(&self, message: &[u8]) -> Bn254Signature {
        self.sign_point(&hash_to_g1_gnark(message, GNARK_DST))
    }

    fn sign_point(&self, point: &G1Affine) -> Bn254Signature {
        g1_to_bytes(&(*point * self.scalar).into_affine())
    }
}

/// A BN254 G2 public key, checked on the curve and in the prime-order subgroup.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Bn254PublicKey {
    point: G2Affine,
}

impl std::fmt::Debug for Bn254PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bn254PublicKey(0x")?;
        for b in self.to_bytes() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl Bn254PublicKey {
    /// Parses the 128-byte `X.c1 ‖ X.c0 ‖ Y.c1 ‖ Y.c0` layout (see the module docs). Refuses
    /// other lengths, coordinates ≥ p, points off the twist, outside the subgroup, or infinity.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        const WHAT: &str = "BN254 G2 public key";
        let bytes: &[u8; 128] = bytes.try_into().map_err(|_| Error::Length {
            what: WHAT,
            expected: 128,
            got: bytes.len(),
        })?;
        if bytes.iter().all(|b| *b == 0) {
            return Err(Error::Infinity(WHAT));
        }
        let limb = |i: usize| fq_from_be(bytes[32 * i..32 * (i + 1)].try_into().expect("32"), WHAT);
        let x = Fq2::new(limb(1)?, limb(0)?);
        let y = Fq2::new(limb(3)?, limb(2)?);
        let point = G2Affine::new_unchecked(x, y);
        if !point.is_on_curve() {
            return Err(Error::NotOnCurve(WHAT));
        }
        if !point.is_in_correct_subgroup_assuming_on_curve() {
            return Err(Error::NotInSubgroup(WHAT));
        }
        Ok(Self { point })
    }

    /// The 128-byte `X.c1 ‖ X.c0 ‖ Y.c1 ‖ Y.c0` encoding.
    pub fn to_bytes(&self) -> [u8; 128] {
        let mut out = [0u8; 128];
        // A checked key is never the identity, whose affine coordinates are (0, 0).
        let (x, y) = self.point.xy().unwrap_or((Fq2::zero(), Fq2::zero()));
        out[0..32].copy_from_slice(&fq_to_be(&x.c1));
        out[32..64].copy_from_slice(&fq_to_be(&x.c0));
        out[64..96].copy_from_slice(&fq_to_be(&y.c1));
        out[96..128].copy_from_slice(&fq_to_be(&y.c0));
        out
    }

    /// Checks `signature` (64 bytes) against `hash_to_g1_solidity(digest)`.
    pub fn verify_solidity(&self, digest: &B256, signature: &[u8]) -> Result<(), Error> {
        let signature = g1_from_bytes(signature, "BN254 signature")?;
        self.verify_point(&hash_to_g1_solidity(digest), &signature)
    }

    /// Checks `signature` (64 bytes) against `hash_to_g1_gnark(message, GNARK_DST)`.
    pub fn verify_gnark(&self, message: &[u8], signature: &[u8]) -> Result<(), Error> {
        let signature = g1_from_bytes(signature, "BN254 signature")?;
        self.verify_point(&hash_to_g1_gnark(message, GNARK_DST), &signature)
    }

    /// `e(σ, G2) = e(H, pk)`, checked as `e(σ, G2) · e(-H, pk) = 1` (one final exponentiation).
    fn verify_point(&self, hashed: &G1Affine, signature: &G1Affine) -> Result<(), Error> {
        let product =
            Bn254::multi_pairing([*signature, -*hashed], [G2Affine::generator(), self.point]);
        if product.is_zero() {
            Ok(())
        } else {
            Err(Error::Bn254Verification)
        }
    }
}

/// Parses a 64-byte G1 point `X ‖ Y`; refuses coordinates ≥ p, points off the curve and the
/// identity (all zeros, the EVM's encoding of it). G1's cofactor is 1, so every point on the
/// curve is in the subgroup.
pub fn g1_from_bytes(bytes: &[u8], what: &'static str) -> Result<G1Affine, Error> {
    let bytes: &[u8; 64] = bytes.try_into().map_err(|_| Error::Length {
        what,
        expected: 64,
        got: bytes.len(),
    })?;
    if bytes.iter().all(|b| *b == 0) {
        return Err(Error::Infinity(what));
    }
    let x = fq_from_be(bytes[..32].try_into().expect("32"), what)?;
    let y = fq_from_be(bytes[32..].try_into().expect("32"), what)?;
    let point = G1Affine::new_unchecked(x, y);
    if !point.is_on_curve() {
        return Err(Error::NotOnCurve(what));
    }
    Ok(point)
}

/// The 64-byte `X ‖ Y` encoding of a G1 point (all zeros for the identity, which no valid
/// signature is).
pub fn g1_to_bytes(point: &G1Affine) -> [u8; 64] {
    let mut out = [0u8; 64];
    if let Some((x, y)) = point.xy() {
        out[..32].copy_from_slice(&fq_to_be(&x));
        out[32..].copy_from_slice(&fq_to_be(&y));
    }
    out
}

/// EigenLayer's Solidity `BN254.hashToG1(bytes32)`: try-and-increment (see the module docs).
///
/// Terminates: about half of all x have `x³ + 3` square, and x comes from a hash, so the loop
/// runs twice on average (Solidity's has no bound either).
pub fn hash_to_g1_solidity(digest: &B256) -> G1Affine {
    let exponent = sqrt_exponent();
    let three = Fq::from(3u64);
    let mut x = Fq::from_be_bytes_mod_order(digest.as_slice());
    loop {
        let beta = x.square() * x + three;
        let y = beta.pow(exponent);
        if y.square() == beta {
            return G1Affine::new_unchecked(x, y);
        }
        x += Fq::one();
    }
}

/// `(p + 1) / 4`: since p ≡ 3 (mod 4), `β^((p+1)/4)` is a square root of β whenever one exists.
fn sqrt_exponent() -> &'static BigInt<4> {
    static EXPONENT: OnceLock<BigInt<4>> = OnceLock::new();
    EXPONENT.get_or_init(|| {
        let mut e = Fq::MODULUS;
        e.add_with_carry(&BigInt::from(1u64));
        e.div2();
        e.div2();
        e
    })
}

/// gnark-crypto's `bn254.HashToG1(message, dst)`: RFC 9380 `hash_to_curve` with
/// `expand_message_xmd` (SHA-256) and the Shallue–van de Woestijne map (see the module docs).
///
/// `hash_to_field(message, 2)`: 96 uniform bytes, two 48-byte big-endian integers reduced mod p
/// (L = ceil((254 + 128) / 8) = 48); each mapped; the sum is the result (cofactor 1).
pub fn hash_to_g1_gnark(message: &[u8], dst: &[u8]) -> G1Affine {
    let uniform = expand_message_xmd(message, dst, 96);
    let u0 = Fq::from_be_bytes_mod_order(&uniform[..48]);
    let u1 = Fq::from_be_bytes_mod_order(&uniform[48..]);
    (map_to_curve_svdw(&u0) + map_to_curve_svdw(&u1)).into_affine()
}

/// RFC 9380 §5.3.1 `expand_message_xmd` with SHA-256 (b_in_bytes 32, s_in_bytes 64), for
/// `len_in_bytes` ≤ 255 · 32. A DST over 255 bytes is first hashed as §5.3.3 prescribes.
fn expand_message_xmd(message: &[u8], dst: &[u8], len_in_bytes: usize) -> Vec<u8> {
    let oversize;
    let dst = if dst.len() > 255 {
        oversize = Sha256::new()
            .chain_update(b"H2C-OVERSIZE-DST-")
            .chain_update(dst)
            .finalize();
        oversize.as_slice()
    } else {
        dst
    };
    let ell = len_in_bytes.div_ceil(32);
    debug_assert!(ell <= 255 && len_in_bytes <= 65535);
    let dst_len = [dst.len() as u8];
    let b0 = Sha256::new()
        .chain_update([0u8; 64])
        .chain_update(message)
        .chain_update((len_in_bytes as u16).to_be_bytes())
        .chain_update([0u8])
        .chain_update(dst)
        .chain_update(dst_len)
        .finalize();
    let mut out = Vec::with_capacity(ell * 32);
    let mut previous = Sha256::new()
        .chain_update(b0)
        .chain_update([1u8])
        .chain_update(dst)
        .chain_update(dst_len)
        .finalize();
    out.extend_from_slice(&previous);
    for i in 2..=ell {
        let mut mixed = [0u8; 32];
        for (m, (a, b)) in mixed.iter_mut().zip(b0.iter().zip(previous.iter())) {
            *m = a ^ b;
        }
        previous = Sha256::new()
            .chain_update(mixed)
            .chain_update([i as u8])
            .chain_update(dst)
            .chain_update(dst_len)
            .finalize();
        out.extend_from_slice(&previous);
    }
    out.truncate(len_in_bytes);
    out
}

/// The constants of RFC 9380 §6.6.1 for BN254 G1 (A = 0, B = 3) with Z = 1:
/// c1 = g(Z) = 4, c2 = -Z/2, c3 = sqrt(-g(Z)·(3Z² + 4A)) = sqrt(-12) with sgn0(c3) = 0,
/// c4 = -4·g(Z)/(3Z² + 4A) = -16/3.
struct SvdwConstants {
    c1: Fq,
    c2: Fq,
    c3: Fq,
    c4: Fq,
}

fn svdw_constants() -> &'static SvdwConstants {
    static CONSTANTS: OnceLock<SvdwConstants> = OnceLock::new();
    CONSTANTS.get_or_init(|| {
        let two_inv = Fq::from(2u64).inverse().expect("2 is invertible");
        let three_inv = Fq::from(3u64).inverse().expect("3 is invertible");
        let c3 = (-Fq::from(12u64)).sqrt().expect("-12 is a square mod p");
        let c3 = if sgn0(&c3) { -c3 } else { c3 };
        SvdwConstants {
            c1: Fq::from(4u64),
            c2: -two_inv,
            c3,
            c4: -Fq::from(16u64) * three_inv,
        }
    })
}

/// RFC 9380 §4.1 `sgn0` for a prime field: the parity of the canonical integer.
fn sgn0(x: &Fq) -> bool {
    x.into_bigint().is_odd()
}

/// RFC 9380 §6.6.1 Shallue–van de Woestijne, the straight-line steps of its appendix F.1.
fn map_to_curve_svdw(u: &Fq) -> G1Projective {
    let k = svdw_constants();
    let g = |x: &Fq| x.square() * x + Fq::from(3u64);
    let is_square = |x: &Fq| !x.legendre().is_qnr();

    let tv1 = u.square() * k.c1;
    let tv2 = Fq::one() + tv1;
    let tv1 = Fq::one() - tv1;
    // inv0: the inverse, or 0 for 0.
    let tv3 = (tv1 * tv2).inverse().unwrap_or(Fq::zero());
    let tv4 = *u * tv1 * tv3 * k.c3;
    let x1 = k.c2 - tv4;
    let x2 = k.c2 + tv4;
    let x3 = (tv2.square() * tv3).square() * k.c4 + Fq::one();
    let x = if is_square(&g(&x1)) {
        x1
    } else if is_square(&g(&x2)) {
        x2
    } else {
        x3
    };
    let gx = g(&x);
    // One of g(x1), g(x2), g(x3) is always square (that is the point of the map).
    let mut y = gx.sqrt().unwrap_or(Fq::zero());
    if sgn0(u) != sgn0(&y) {
        y = -y;
    }
    G1Affine::new_unchecked(x, y).into_group()
}

/// A field element from 32 big-endian bytes, refusing values ≥ p (no silent reduction: the EVM
/// precompiles refuse them too).
fn fq_from_be(bytes: &[u8; 32], what: &'static str) -> Result<Fq, Error> {
    Fq::from_bigint(bigint_from_be(bytes)).ok_or(Error::FieldElement(what))
}

fn fq_to_be(x: &Fq) -> [u8; 32] {
    let bytes = x.into_bigint().to_bytes_be();
    let mut out = [0u8; 32];
    out[32 - bytes.len()..].copy_from_slice(&bytes);
    out
}

fn bigint_from_be(bytes: &[u8; 32]) -> BigInt<4> {
    let mut limbs = [0u64; 4];
    for (i, limb) in limbs.iter_mut().enumerate() {
        let start = 32 - 8 * (i + 1);
        *limb = u64::from_be_bytes(bytes[start..start + 8].try_into().expect("8"));
    }
    BigInt::new(limbs)
}

#[cfg(test)]
mod tests;
