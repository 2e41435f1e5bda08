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

use alloy_primitives::B256;

use crate::Error;

/// gnark-crypto's domain separation tag as Hourglass (crypto-libs) passes it to `HashToG1`.
pub const GNARK_DST: &[u8] = b"BLS_SIG_BN254G1_XMD:SHA-256_SSWU_RO_NUL_";

/// A 64-byte G1 signature `X ‖ Y`.
pub type Bn254Signature = [u8; 64];

/// An operator's (or aggregator's) BN254 secret scalar.
#[derive(Clone)]
pub struct Bn254Key {
    scalar: ark_bn254::Fr,
    public: Bn254PublicKey,
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
    /// 32 bytes, possibly shorter). Refuses zero and values not below the group order r.
    pub fn from_be_bytes(secret: &[u8]) -> Result<Self, Error> {
        todo!("{secret:?}")
    }

    /// The G2 public key `sk · G2`.
    pub fn public_key(&self) -> &Bn254PublicKey {
        &self.public
    }

    /// `sk · hash_to_g1_solidity(digest)`: what EigenLayer's certificate verifier checks.
    pub fn sign_solidity(&self, digest: &B256) -> Bn254Signature {
        todo!("{digest} {:?}", self.scalar)
    }

    /// `sk · hash_to_g1_gnark(message, GNARK_DST)`: Hourglass's `Sign(message)`.
    pub fn sign_gnark(&self, message: &[u8]) -> Bn254Signature {
        todo!("{message:?}")
    }
}

/// A BN254 G2 public key, checked on the curve and in the prime-order subgroup.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Bn254PublicKey {
    point: ark_bn254::G2Affine,
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
        todo!("{bytes:?}")
    }

    /// The 128-byte `X.c1 ‖ X.c0 ‖ Y.c1 ‖ Y.c0` encoding.
    pub fn to_bytes(&self) -> [u8; 128] {
        todo!("{:?}", self.point)
    }

    /// Checks `signature` (64 bytes) against `hash_to_g1_solidity(digest)`.
    pub fn verify_solidity(&self, digest: &B256, signature: &[u8]) -> Result<(), Error> {
        todo!("{digest} {signature:?}")
    }

    /// Checks `signature` (64 bytes) against `hash_to_g1_gnark(message, GNARK_DST)`.
    pub fn verify_gnark(&self, message: &[u8], signature: &[u8]) -> Result<(), Error> {
        todo!("{message:?} {signature:?}")
    }
}

/// Parses a 64-byte G1 point `X ‖ Y`; refuses coordinates ≥ p, points off the curve and the
/// identity.
pub fn g1_from_bytes(bytes: &[u8], what: &'static str) -> Result<ark_bn254::G1Affine, Error> {
    todo!("{bytes:?} {what}")
}

/// The 64-byte `X ‖ Y` encoding of a G1 point (all zeros for the identity, which no valid
/// signature is).
pub fn g1_to_bytes(point: &ark_bn254::G1Affine) -> [u8; 64] {
    todo!("{point:?}")
}

/// EigenLayer's Solidity `BN254.hashToG1(bytes32)`: try-and-increment (see the module docs).
pub fn hash_to_g1_solidity(digest: &B256) -> ark_bn254::G1Affine {
    todo!("{digest}")
}

/// gnark-crypto's `bn254.HashToG1(message, dst)`: RFC 9380 `hash_to_curve` with
/// `expand_message_xmd` (SHA-256) and the Shallue–van de Woestijne map (see the module docs).
pub fn hash_to_g1_gnark(message: &[u8], dst: &[u8]) -> ark_bn254::G1Affine {
    todo!("{message:?} {dst:?}")
}
