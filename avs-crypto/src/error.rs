//! One error type for every way an input can be refused.

use alloy_primitives::Address;

/// Why a key, point or signature was refused. Every variant is a property of the input (never an
/// internal failure), so a gRPC handler can map all of them to INVALID_ARGUMENT or
/// UNAUTHENTICATED without retrying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A byte string has the wrong length for what it encodes.
    #[error("{what}: expected {expected} bytes, got {got}")]
    Length {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// A secret key is zero or not below the group order.
    #[error("invalid secret key: zero or not below the group order")]
    SecretKey,
    /// An ECDSA recovery byte that is none of 0, 1, 27, 28.
    #[error("invalid ECDSA recovery id {0} (expected 0, 1, 27 or 28)")]
    RecoveryId(u8),
    /// `r` or `s` is zero or not below the secp256k1 order.
    #[error("invalid ECDSA signature scalars")]
    EcdsaScalars,
    /// `s` is in the upper half of the order: the malleable twin of a valid signature
    /// (Ethereum, OpenZeppelin's ECDSA and EIP-2 refuse it).
    #[error("ECDSA signature has high s (malleable)")]
    HighS,
    /// No public key recovers from the signature and digest.
    #[error("ECDSA public key recovery failed")]
    Recovery,
    /// The signature recovers, but to another address.
    #[error("signature is from {recovered}, expected {expected}")]
    WrongSigner {
        expected: Address,
        recovered: Address,
    },
    /// A BN254 coordinate is not below the base field modulus.
    #[error("{0}: coordinate not below the BN254 field modulus")]
    FieldElement(&'static str),
    /// A BN254 point is not on its curve.
    #[error("{0}: point not on the curve")]
    NotOnCurve(&'static str),
    /// A BN254 G2 point is on the curve but outside the prime-order subgroup.
    #[error("{0}: point not in the prime-order subgroup")]
    NotInSubgroup(&'static str),
    /// A BN254 point is the identity (all-zero encoding): never a valid key or signature.
    #[error("{0}: point at infinity")]
    Infinity(&'static str),
    /// A BN254 pairing check failed: the signature is not over this digest by this key.
    #[error("BN254 signature does not verify")]
    Bn254Verification,
}
