//! Hourglass's signing math, byte for byte.
//!
//! Cohort's performer supervisor stands where Hourglass's executor (Ponos) stands: an existing
//! Hourglass aggregator signs tasks for it, and verifies the results it signs. Every digest and
//! signature here is therefore fixed by what Hourglass and EigenLayer's contracts compute, not by
//! taste; each function names the fact it reproduces. The facts were read from
//! hourglass-monorepo at 11f15549 (2025-10-15), Layr-Labs/crypto-libs v0.0.4 (the signer
//! Hourglass uses) and eigenlayer-contracts' `ECDSACertificateVerifier`/`BN254CertificateVerifier`.
//!
//! What Hourglass signs, and with which hash to G1 (two different ones, see [`bn254`]):
//!
//! | what | digest | ECDSA | BN254 |
//! |---|---|---|---|
//! | task (aggregator → executor) | `keccak256(aggregator_message)` | recoverable, v 27/28 | gnark `HashToG1` (RFC 9380) |
//! | result signature | certificate digest | EIP-712, v 27/28 | try-and-increment |
//! | auth signature | `keccak256(auth_bytes)` | recoverable, v 27/28 | gnark `HashToG1` (RFC 9380) |
//! | management challenge | `keccak256(keccak256(token))` | recoverable, v 27/28 | gnark `HashToG1` (used only without an ECDSA key) |
//!
//! Nothing here panics on bad input: wrong lengths, points off the curve or outside the
//! subgroup, the point at infinity, out-of-range scalars and malleable ECDSA signatures all come
//! back as [`Error`].

pub mod bn254;
pub mod cluster_result;
pub mod ecdsa;
pub mod encoding;
mod error;
mod hourglass;

pub use alloy_primitives::{Address, B256, keccak256};
pub use bn254::threshold::{
    Bn254G1PublicKey, Bn254Partial, Bn254SecretShare, Bn254Sharing, Combined, HashedMessage,
    SplitBn254Key, ThresholdError, threshold_of, verify_batch,
};
pub use bn254::{Bn254Key, Bn254PublicKey, Bn254Signature};
pub use ecdsa::{EcdsaKey, EcdsaSignature};
pub use encoding::{
    AuthFields, Eip712Domain, TaskFields, aggregator_digest, aggregator_message, auth_bytes,
    auth_digest, bn254_certificate_digest, challenge_digest, ecdsa_certificate_digest,
    message_hash,
};
pub use error::Error;
pub use hourglass::{
    OperatorKey, ResultFields, ResultSignatures, sign_aggregator_bn254, sign_aggregator_ecdsa,
    sign_auth_bn254, sign_auth_ecdsa, sign_challenge_bn254, sign_challenge_ecdsa,
    sign_result_bn254, sign_result_ecdsa, verify_aggregator_bn254, verify_aggregator_ecdsa,
    verify_auth_bn254, verify_auth_ecdsa, verify_challenge_bn254, verify_challenge_ecdsa,
    verify_result_bn254, verify_result_ecdsa,
};
