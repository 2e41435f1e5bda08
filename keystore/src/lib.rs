//! Key material at rest for a Cohort operator: EIP-2335 keystores for validator secrets,
//! owner-only secret files, and the operator's ed25519 identity.
//!
//! Kept apart from the node so that `cohort keys generate`, `cohort cluster init` and node
//! start-up all read and write keys through one audited path.

pub mod eip2335;
pub mod files;
pub mod identity;

use rand::{CryptoRng, rand_core::UnwrapErr, rngs::SysRng};

/// Randomness for long-lived keys straight from the OS, rather than a user-space generator
/// seeded from it. Panics only if the OS cannot supply randomness at all.
pub fn os_rng() -> impl CryptoRng {
    UnwrapErr(SysRng)
}

#[cfg(test)]
mod tests {
    #[test]
    fn os_rng_produces_distinct_keys() {
        use commonware_cryptography::Signer;
        let a = crate::identity::generate(&mut super::os_rng());
        let b = crate::identity::generate(&mut super::os_rng());
        assert_ne!(a.public_key(), b.public_key());
    }
}
