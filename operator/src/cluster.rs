//! Which cluster an operator belongs to: its name and the hash of its lock, from which every
//! namespace the operators sign under is derived.
//!
//! The lock (operators, threshold, every validator's public polynomial) is what operators must
//! agree on, and whoever can write one operator's copy could hand it a polynomial that still
//! agrees with that operator's share but carries another validator key. Binding the lock's hash
//! into the p2p handshake and the consensus namespace makes a changed lock visible at once: an
//! operator holding it cannot connect to, or vote with, operators holding the real one.

use commonware_codec::Encode as _;
use commonware_cryptography::{
    Hasher as _, Sha256,
    bls12381::primitives::{sharing::Sharing, variant::MinPk},
};
use commonware_utils::ordered::Set;
use std::fmt;

use cohort_marshal::PublicKey;

/// Separates the lock's hash from any other SHA-256 a Cohort operator computes.
const LOCK_HASH_DOMAIN: &[u8] = b"cohort/cluster-lock/v1";
/// Separates the chaining of a lock's AVS key into its hash.
const AVS_KEY_DOMAIN: &[u8] = b"cohort/cluster-lock/avs-key/v1";

/// SHA-256 of a cluster lock's contents, in a fixed encoding (not of the file's bytes, so that
/// reformatting the JSON does not split a cluster).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockHash(pub [u8; 32]);

impl LockHash {
    /// The hash of a lock: the cluster's `name`, its `threshold`, its `operators` in share order
    /// and every validator's index and public polynomial, each length-prefixed so that no two
    /// locks encode alike. A validator's public key is the polynomial's constant term, so it is
    /// covered by the polynomial.
    pub fn of<'a>(
        name: &str,
        threshold: u32,
        operators: &Set<PublicKey>,
        validators: impl IntoIterator<Item = (u64, &'a Sharing<MinPk>)>,
    ) -> Self {
        let mut bytes = Vec::new();
        let mut field = |part: &[u8]| {
            bytes.extend_from_slice(&(part.len() as u64).to_be_bytes());
            bytes.extend_from_slice(part);
        };
        field(LOCK_HASH_DOMAIN);
        field(name.as_bytes());
        field(&threshold.to_be_bytes());
        field(&(operators.len() as u64).to_be_bytes());
        for operator in operators.iter() {
            field(&operator.encode());
        }
        for (index, sharing) in validators {
            field(&index.to_be_bytes());
            field(&sharing.encode());
        }
        let digest = Sha256::hash(&[bytes.as_slice()]);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(digest.as_ref());
        Self(hash)
    }
}

impl LockHash {
    /// The hash of a lock that also holds a cluster AVS key: this lock's hash chained with the
    /// key's public parts (the G2 and G1 group keys and every share's G2 key, each as encoded in
    /// the lock). A lock without one keeps the hash [`LockHash::of`] gives, so clusters whose
    /// lock predates AVS keys keep their namespaces.
    pub fn with_avs_key<'a>(
        self,
        group_g2: &[u8],
        group_g1: &[u8],
        shares: impl IntoIterator<Item = &'a [u8]>,
    ) -> Self {
        let mut bytes = Vec::new();
        let mut field = |part: &[u8]| {
            bytes.extend_from_slice(&(part.len() as u64).to_be_bytes());
            bytes.extend_from_slice(part);
        };
        field(AVS_KEY_DOMAIN);
        field(&self.0);
        field(group_g2);
        field(group_g1);
        for share in shares {
            field(share);
        }
        let digest = Sha256::hash(&[bytes.as_slice()]);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(digest.as_ref());
        Self(hash)
    }
}

impl fmt::Display for LockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("0x")?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for LockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LockHash({self})")
    }
}

/// One cluster, as its operators must agree on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterIdentity {
    pub name: String,
    pub lock_hash: LockHash,
}

impl ClusterIdentity {
    pub fn new(name: impl Into<String>, lock_hash: LockHash) -> Self {
        Self {
            name: name.into(),
            lock_hash,
        }
    }

    /// What the p2p handshake signs under: operators holding another lock, or of another
    /// cluster, fail the handshake.
    pub fn p2p_namespace(&self) -> Vec<u8> {
        self.namespace("p2p")
    }

    /// What consensus votes and certificates are signed under: a vote of one cluster (or of
    /// one lock) can never count in another.
    pub fn consensus_namespace(&self) -> Vec<u8> {
        self.namespace("consensus")
    }

    fn namespace(&self, purpose: &str) -> Vec<u8> {
        format!("cohort/{purpose}/{}/{}", self.name, self.lock_hash).into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_ingress::keys;
    use commonware_cryptography::{Signer as _, ed25519::PrivateKey};
    use commonware_math::algebra::Random as _;
    use commonware_utils::TryCollect as _;
    use rand::{SeedableRng as _, rngs::StdRng};

    fn operators(seed: u64) -> Set<PublicKey> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..4)
            .map(|_| PrivateKey::random(&mut rng).public_key())
            .try_collect()
            .expect("distinct keys")
    }

    #[test]
    fn every_part_of_the_lock_changes_every_namespace() {
        let mut rng = StdRng::seed_from_u64(1);
        let ops = operators(1);
        let a = keys::split_interop(&mut rng, 0, 4).expect("split");
        let b = keys::split_interop(&mut rng, 1, 4).expect("split");
        let c = keys::split_interop(&mut rng, 2, 4).expect("split");
        let hash =
            |name: &str, threshold, ops: &Set<PublicKey>, validators: &[(u64, &keys::SplitKey)]| {
                LockHash::of(
                    name,
                    threshold,
                    ops,
                    validators
                        .iter()
                        .map(|(index, split)| (*index, &split.sharing)),
                )
            };
        let lock = hash("devnet", 3, &ops, &[(0, &a), (1, &b), (2, &c)]);
        assert_eq!(lock, hash("devnet", 3, &ops, &[(0, &a), (1, &b), (2, &c)]));
        let others = [
            hash("devnet2", 3, &ops, &[(0, &a), (1, &b), (2, &c)]),
            hash("devnet", 4, &ops, &[(0, &a), (1, &b), (2, &c)]),
            hash("devnet", 3, &operators(2), &[(0, &a), (1, &b), (2, &c)]),
            // Two validators removed: the lock the attacker wrote.
            hash("devnet", 3, &ops, &[(0, &a)]),
            // A validator's polynomial swapped.
            hash("devnet", 3, &ops, &[(0, &a), (1, &c), (2, &c)]),
            hash("devnet", 3, &ops, &[(0, &a), (1, &b), (3, &c)]),
        ];
        let identity = ClusterIdentity::new("devnet", lock);
        for other in others {
            assert_ne!(other, lock);
            let other = ClusterIdentity::new("devnet", other);
            assert_ne!(other.p2p_namespace(), identity.p2p_namespace());
            assert_ne!(other.consensus_namespace(), identity.consensus_namespace());
        }
        // An AVS key section changes the hash, and each of its parts does.
        let g2 = [1u8; 128];
        let g1 = [2u8; 64];
        let shares = [[3u8; 128], [4u8; 128]];
        let with = |g2: &[u8], g1: &[u8], shares: &[[u8; 128]]| {
            lock.with_avs_key(g2, g1, shares.iter().map(|s| s.as_slice()))
        };
        let avs = with(&g2, &g1, &shares);
        assert_eq!(avs, with(&g2, &g1, &shares));
        for other in [
            lock,
            with(&[9u8; 128], &g1, &shares),
            with(&g2, &[9u8; 64], &shares),
            with(&g2, &g1, &[[3u8; 128], [9u8; 128]]),
            with(&g2, &g1, &shares[..1]),
            others[0].with_avs_key(&g2, &g1, shares.iter().map(|s| s.as_slice())),
        ] {
            assert_ne!(other, avs);
        }
        // Neither namespace is the one fixed name every cluster used to share, nor each other.
        assert_ne!(identity.consensus_namespace(), b"cohort");
        assert_ne!(identity.consensus_namespace(), identity.p2p_namespace());
        let text = String::from_utf8(identity.p2p_namespace()).expect("text");
        assert!(
            text.contains("devnet") && text.contains(&lock.to_string()),
            "{text}"
        );
    }
}
