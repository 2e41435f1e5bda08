//! secp256k1 ECDSA as Ethereum (and Hourglass's signer) uses it: deterministic RFC 6979 nonces,
//! low `s`, and 65-byte `r ‖ s ‖ v` signatures with `v` ∈ {27, 28}.
//!
//! Hourglass signs with go-ethereum's `crypto.Sign` (libsecp256k1, RFC 6979, low s) and adds 27
//! to `v`; k256 signs with the same RFC 6979 nonces, so for one key and digest the two produce
//! the same bytes. That matters for the management challenge, where Hourglass re-signs and
//! compares bytes.

use alloy_primitives::{Address, B256, keccak256};
use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};

use crate::Error;

/// A 65-byte Ethereum signature `r ‖ s ‖ v`, `v` ∈ {27, 28}.
pub type EcdsaSignature = [u8; 65];

/// An operator's (or aggregator's) secp256k1 secret key.
#[derive(Clone)]
pub struct EcdsaKey {
    #[allow(dead_code)] // skeleton only
    signing: SigningKey,
    address: Address,
}

impl std::fmt::Debug for EcdsaKey {
    /// Shows the address only: a secret key must never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcdsaKey")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl EcdsaKey {
    /// A key from its 32-byte big-endian secret scalar (what keystores and `0x…` hex keys
    /// hold). Refuses zero and values not below the curve order.
    pub fn from_bytes(secret: &[u8]) -> Result<Self, Error> {
        todo!("{secret:?}")
    }

    /// The Ethereum address: the last 20 bytes of keccak256 of the uncompressed public key
    /// (without its 0x04 prefix).
    pub fn address(&self) -> Address {
        self.address
    }

    /// Signs a 32-byte digest as is (no EIP-191 prefix): RFC 6979 nonce, low `s`, `v` 27/28.
    pub fn sign_digest(&self, digest: &B256) -> EcdsaSignature {
        todo!("{digest}")
    }
}

/// Recovers the signer's address from a 65-byte `r ‖ s ‖ v` signature over `digest`.
/// Accepts `v` ∈ {0, 1, 27, 28}; refuses high `s`, zero or out-of-range `r`/`s`, other lengths.
pub fn recover_address(digest: &B256, signature: &[u8]) -> Result<Address, Error> {
    todo!("{digest} {signature:?}")
}

/// Checks that `signature` over `digest` recovers to `expected`.
pub fn verify_digest(digest: &B256, signature: &[u8], expected: &Address) -> Result<(), Error> {
    todo!("{digest} {signature:?} {expected}")
}

#[allow(dead_code)]
fn address_of(key: &VerifyingKey) -> Address {
    let point = key.to_encoded_point(false);
    Address::from_slice(&keccak256(&point.as_bytes()[1..])[12..])
}

#[allow(dead_code)]
fn _types(_: Signature, _: RecoveryId) {}
