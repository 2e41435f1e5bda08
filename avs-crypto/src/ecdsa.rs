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
    /// hold). Refuses other lengths, zero and values not below the curve order.
    pub fn from_bytes(secret: &[u8]) -> Result<Self, Error> {
        if secret.len() != 32 {
            return Err(Error::Length {
                what: "ECDSA secret key",
                expected: 32,
                got: secret.len(),
            });
        }
        let signing = SigningKey::from_slice(secret).map_err(|_| Error::SecretKey)?;
        let address = address_of(signing.verifying_key());
        Ok(Self { signing, address })
    }

    /// The Ethereum address: the last 20 bytes of keccak256 of the uncompressed public key
    /// (without its 0x04 prefix).
    pub fn address(&self) -> Address {
        self.address
    }

    /// Signs a 32-byte digest as is (no EIP-191 prefix): RFC 6979 nonce, low `s`, `v` 27/28.
    pub fn sign_digest(&self, digest: &B256) -> EcdsaSignature {
        // Fails only if RFC 6979 yields r = 0 or s = 0, which no one can make happen
        // (probability about 2^-256); not an input that can be bad.
        let (mut signature, mut recovery) = self
            .signing
            .sign_prehash_recoverable(digest.as_slice())
            .expect("RFC 6979 signing of a 32-byte digest");
        // k256 already normalises; kept so the low-s guarantee never rests on a default.
        if let Some(low) = signature.normalize_s() {
            signature = low;
            recovery = RecoveryId::new(!recovery.is_y_odd(), recovery.is_x_reduced());
        }
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&signature.to_bytes());
        out[64] = 27 + recovery.to_byte();
        out
    }
}

/// Recovers the signer's address from a 65-byte `r ‖ s ‖ v` signature over `digest`.
/// Accepts `v` ∈ {0, 1, 27, 28}; refuses high `s`, zero or out-of-range `r`/`s`, other lengths.
pub fn recover_address(digest: &B256, signature: &[u8]) -> Result<Address, Error> {
    let signature: &[u8; 65] = signature.try_into().map_err(|_| Error::Length {
        what: "ECDSA signature",
        expected: 65,
        got: signature.len(),
    })?;
    let v = signature[64];
    let recovery = match v {
        0 | 1 => v,
        27 | 28 => v - 27,
        other => return Err(Error::RecoveryId(other)),
    };
    let recovery = RecoveryId::from_byte(recovery).ok_or(Error::RecoveryId(v))?;
    let parsed = Signature::from_slice(&signature[..64]).map_err(|_| Error::EcdsaScalars)?;
    if parsed.normalize_s().is_some() {
        return Err(Error::HighS);
    }
    let key = VerifyingKey::recover_from_prehash(digest.as_slice(), &parsed, recovery)
        .map_err(|_| Error::Recovery)?;
    Ok(address_of(&key))
}

/// Checks that `signature` over `digest` recovers to `expected`.
pub fn verify_digest(digest: &B256, signature: &[u8], expected: &Address) -> Result<(), Error> {
    let recovered = recover_address(digest, signature)?;
    if recovered == *expected {
        Ok(())
    } else {
        Err(Error::WrongSigner {
            expected: *expected,
            recovered,
        })
    }
}

fn address_of(key: &VerifyingKey) -> Address {
    let point = key.to_encoded_point(false);
    Address::from_slice(&keccak256(&point.as_bytes()[1..])[12..])
}

#[cfg(test)]
mod tests;
