//! Hourglass's signatures, one function per (what, curve): the executor side (verify the
//! aggregator, sign the result and the auth, check a management challenge) and, for tests and
//! for a cluster acting as its own aggregator, the aggregator side.
//!
//! Sources (hourglass-monorepo 11f15549, crypto-libs v0.0.4):
//! - the aggregator signs a task with `SignMessage(message)` = sign `keccak256(message)`;
//!   the executor verifies with `sig.Verify(pk, keccak256(message))` (BN254: gnark HashToG1) or
//!   address recovery (ECDSA);
//! - the executor signs the result with `SignMessageForSolidity(certificateDigest)` (BN254:
//!   try-and-increment, ECDSA: the EIP-712 digest as is) and the auth with
//!   `SignMessage(authBytes)` = sign `keccak256(authBytes)` (BN254: gnark HashToG1).

use alloy_primitives::{Address, B256};

use crate::Error;
use crate::bn254::{Bn254Key, Bn254PublicKey, Bn254Signature};
use crate::ecdsa::{self, EcdsaKey, EcdsaSignature};
use crate::encoding::{
    AuthFields, Eip712Domain, TaskFields, aggregator_digest, auth_digest, bn254_certificate_digest,
    challenge_digest, ecdsa_certificate_digest,
};

/// Checks an ECDSA aggregator signature on a task: `signature` (65 bytes, `v` 0/1/27/28, low
/// `s`) over `aggregator_digest(task)` must recover to `aggregator`.
pub fn verify_aggregator_ecdsa(
    task: &TaskFields<'_>,
    signature: &[u8],
    aggregator: &Address,
) -> Result<(), Error> {
    ecdsa::verify_digest(&aggregator_digest(task), signature, aggregator)
}

/// Checks a BN254 aggregator signature on a task: `signature` (64-byte G1) over the 32 bytes of
/// `aggregator_digest(task)` hashed to G1 with gnark's `HashToG1`, against the aggregator's G2
/// key.
pub fn verify_aggregator_bn254(
    task: &TaskFields<'_>,
    signature: &[u8],
    aggregator: &Bn254PublicKey,
) -> Result<(), Error> {
    aggregator.verify_gnark(aggregator_digest(task).as_slice(), signature)
}

/// Signs a task as an ECDSA aggregator would (tests, and a cluster acting as aggregator).
pub fn sign_aggregator_ecdsa(key: &EcdsaKey, task: &TaskFields<'_>) -> EcdsaSignature {
    key.sign_digest(&aggregator_digest(task))
}

/// Signs a task as a BN254 aggregator would.
pub fn sign_aggregator_bn254(key: &Bn254Key, task: &TaskFields<'_>) -> Bn254Signature {
    key.sign_gnark(aggregator_digest(task).as_slice())
}

/// The BN254 result signature: `bn254_certificate_digest(reference_timestamp, message_hash)`
/// hashed to G1 by try-and-increment, times the secret scalar.
pub fn sign_result_bn254(
    key: &Bn254Key,
    reference_timestamp: u32,
    message_hash: &B256,
) -> Bn254Signature {
    key.sign_solidity(&bn254_certificate_digest(reference_timestamp, message_hash))
}

/// Checks a BN254 result signature (what the aggregator and the certificate verifier do).
pub fn verify_result_bn254(
    public: &Bn254PublicKey,
    reference_timestamp: u32,
    message_hash: &B256,
    signature: &[u8],
) -> Result<(), Error> {
    public.verify_solidity(
        &bn254_certificate_digest(reference_timestamp, message_hash),
        signature,
    )
}

/// The ECDSA result signature over the EIP-712 certificate digest of `domain`.
pub fn sign_result_ecdsa(
    key: &EcdsaKey,
    domain: &Eip712Domain,
    reference_timestamp: u32,
    message_hash: &B256,
) -> EcdsaSignature {
    key.sign_digest(&ecdsa_certificate_digest(
        domain,
        reference_timestamp,
        message_hash,
    ))
}

/// Checks an ECDSA result signature recovers to `operator`.
pub fn verify_result_ecdsa(
    operator: &Address,
    domain: &Eip712Domain,
    reference_timestamp: u32,
    message_hash: &B256,
    signature: &[u8],
) -> Result<(), Error> {
    ecdsa::verify_digest(
        &ecdsa_certificate_digest(domain, reference_timestamp, message_hash),
        signature,
        operator,
    )
}

/// The ECDSA auth signature over `auth_digest(auth)`.
pub fn sign_auth_ecdsa(key: &EcdsaKey, auth: &AuthFields<'_>) -> EcdsaSignature {
    key.sign_digest(&auth_digest(auth))
}

/// Checks an ECDSA auth signature recovers to `auth.operator`.
pub fn verify_auth_ecdsa(auth: &AuthFields<'_>, signature: &[u8]) -> Result<(), Error> {
    ecdsa::verify_digest(&auth_digest(auth), signature, &auth.operator)
}

/// The BN254 auth signature: the 32 bytes of `auth_digest(auth)` hashed to G1 with gnark's
/// `HashToG1`, times the secret scalar.
pub fn sign_auth_bn254(key: &Bn254Key, auth: &AuthFields<'_>) -> Bn254Signature {
    key.sign_gnark(auth_digest(auth).as_slice())
}

/// Checks a BN254 auth signature against the operator's G2 key.
pub fn verify_auth_bn254(
    public: &Bn254PublicKey,
    auth: &AuthFields<'_>,
    signature: &[u8],
) -> Result<(), Error> {
    public.verify_gnark(auth_digest(auth).as_slice(), signature)
}

/// Signs a management challenge token with the operator's ECDSA key (Hourglass's executor
/// checks challenges with its ECDSA signer when it has one, else with its BN254 signer):
/// `challenge_digest(token)`, `v` 27/28. Deterministic (RFC 6979), so it equals what
/// Hourglass's client sends for the same key and token.
pub fn sign_challenge_ecdsa(key: &EcdsaKey, token: &str) -> EcdsaSignature {
    key.sign_digest(&challenge_digest(token))
}

/// Checks a management challenge signature: it must recover to `operator`. Hourglass re-signs
/// and compares bytes; recovering is equivalent for its own clients (deterministic nonces) and
/// also accepts a valid signature with `v` 0/1 or another RFC 6979-free signer.
pub fn verify_challenge_ecdsa(
    token: &str,
    signature: &[u8],
    operator: &Address,
) -> Result<(), Error> {
    ecdsa::verify_digest(&challenge_digest(token), signature, operator)
}

/// Signs a management challenge token with the operator's BN254 key (Hourglass uses it when the
/// operator has no ECDSA key): `challenge_digest(token)` hashed to G1 with gnark's `HashToG1`.
/// Deterministic, like every BLS signature.
pub fn sign_challenge_bn254(key: &Bn254Key, token: &str) -> Bn254Signature {
    key.sign_gnark(challenge_digest(token).as_slice())
}

/// Checks a BN254 management challenge signature against the operator's G2 key.
pub fn verify_challenge_bn254(
    token: &str,
    signature: &[u8],
    operator: &Bn254PublicKey,
) -> Result<(), Error> {
    operator.verify_gnark(challenge_digest(token).as_slice(), signature)
}

/// The key an operator signs task results with, as its operator set's curve type says. The
/// ECDSA variant carries the `ECDSACertificateVerifier` domain its certificate digests use.
#[derive(Debug, Clone)]
pub enum OperatorKey {
    Ecdsa { key: EcdsaKey, domain: Eip712Domain },
    Bn254(Bn254Key),
}

/// The two signatures of a `TaskResult`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultSignatures {
    /// 65 bytes (ECDSA) or 64 bytes (BN254): over the certificate digest of
    /// `message_hash(task_id, output)`; what the aggregator groups and aggregates.
    pub result_signature: Vec<u8>,
    /// Same length, over the auth digest that binds `operator` to `result_signature`.
    pub auth_signature: Vec<u8>,
}

/// What a `TaskResult` is signed over, besides the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultFields<'a> {
    pub task_id: B256,
    pub avs: Address,
    /// The operator's configured address (also for BN254 operators: the auth names the operator
    /// by address whatever its curve).
    pub operator: Address,
    pub operator_set_id: u32,
    pub reference_timestamp: u32,
    pub output: &'a [u8],
}

impl OperatorKey {
    /// Hourglass's `signResult`: the result signature over the certificate digest, then the auth
    /// signature over it, each with the hash to G1 Hourglass uses for it.
    pub fn sign_result(&self, fields: &ResultFields<'_>) -> ResultSignatures {
        let message_hash = crate::encoding::message_hash(&fields.task_id, fields.output);
        let result_signature = match self {
            Self::Ecdsa { key, domain } => {
                sign_result_ecdsa(key, domain, fields.reference_timestamp, &message_hash).to_vec()
            }
            Self::Bn254(key) => {
                sign_result_bn254(key, fields.reference_timestamp, &message_hash).to_vec()
            }
        };
        let auth = AuthFields {
            task_id: fields.task_id,
            avs: fields.avs,
            operator: fields.operator,
            operator_set_id: fields.operator_set_id,
            result_signature: &result_signature,
        };
        let auth_signature = match self {
            Self::Ecdsa { key, .. } => sign_auth_ecdsa(key, &auth).to_vec(),
            Self::Bn254(key) => sign_auth_bn254(key, &auth).to_vec(),
        };
        ResultSignatures {
            result_signature,
            auth_signature,
        }
    }
}

#[cfg(test)]
mod tests;
