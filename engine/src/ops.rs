//! The embedded engine's state transition: the cluster's own operations on a key-value state.
//!
//! A payload's transactions are [`ClusterOp`]s. Each records, under a key (the duty target:
//! `COMMITTEE`, `PROPOSER-v7`, ...), the latest slot the cluster decided for it and the digest
//! of the decided value. Applying an op stores it only when its slot is newer than the slot the
//! key holds, so an op that arrives twice, or late, changes nothing: the state is a function
//! of the set of ops executed, which is what lets every operator's engine reach the same root
//! however their pools were filled.
//!
//! Encoding of one op (version 1), as carried in `transactions`:
//! `0x01 | key length (1 byte, 1..=64) | key | slot (8 bytes, big endian) | value (32 bytes)`.
//!
//! The state root is `keccak256("cohort-state-v1" || for each key in byte order:
//! key length (1 byte) || key || slot (8 bytes BE) || value)`; recomputed per block, which is
//! linear in the number of keys (bounded by the cluster's validators, not by time).

use alloy_primitives::{B256, Bytes, keccak256};
use std::collections::BTreeMap;

/// Version byte of the op encoding.
const OP_VERSION: u8 = 1;
/// Longest key an op may name.
pub const MAX_KEY_BYTES: usize = 64;
/// Gas an op is charged, so `gas_used` means something to a reader of the payload.
pub const OP_GAS: u64 = 21_000;

/// One cluster operation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClusterOp {
    pub key: Vec<u8>,
    pub slot: u64,
    pub value: B256,
}

impl ClusterOp {
    /// An op for `key`; `None` if the key is empty or longer than [`MAX_KEY_BYTES`].
    pub fn new(key: impl Into<Vec<u8>>, slot: u64, value: B256) -> Option<Self> {
        let key = key.into();
        (!key.is_empty() && key.len() <= MAX_KEY_BYTES).then_some(Self { key, slot, value })
    }

    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(2 + self.key.len() + 8 + 32);
        out.push(OP_VERSION);
        out.push(self.key.len() as u8);
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.slot.to_be_bytes());
        out.extend_from_slice(self.value.as_slice());
        out.into()
    }

    /// Parses a transaction; anything but one well-formed op is an error (the payload carrying
    /// it is then INVALID).
    pub fn decode(bytes: &[u8]) -> Result<Self, OpError> {
        let (&version, rest) = bytes.split_first().ok_or(OpError::Empty)?;
        if version != OP_VERSION {
            return Err(OpError::Version(version));
        }
        let (&key_len, rest) = rest.split_first().ok_or(OpError::NoKeyLength)?;
        let key_len = key_len as usize;
        if key_len == 0 || key_len > MAX_KEY_BYTES {
            return Err(OpError::KeyLength(key_len));
        }
        let expected = key_len + 8 + 32;
        let wrong_length = OpError::Length {
            found: rest.len(),
            expected,
        };
        if rest.len() != expected {
            return Err(wrong_length);
        }
        let (key, rest) = rest.split_at(key_len);
        let (slot, value) = rest.split_first_chunk::<8>().ok_or(wrong_length)?;
        Ok(Self {
            key: key.to_vec(),
            slot: u64::from_be_bytes(*slot),
            value: B256::from_slice(value),
        })
    }
}

/// Why a transaction is not a cluster op.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("empty transaction")]
    Empty,
    #[error("unknown op version {0}")]
    Version(u8),
    #[error("op has no key length")]
    NoKeyLength,
    #[error("op key length {0} outside 1..={MAX_KEY_BYTES}")]
    KeyLength(usize),
    #[error("op is {found} bytes after its header, expected {expected}")]
    Length { found: usize, expected: usize },
}

/// Why persisted bytes are not an engine state: the storage under the engine is corrupt.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("truncated state entry")]
    Truncated,
    #[error("state lists a key twice")]
    DuplicateKey,
}

/// The engine's state: per key, the newest `(slot, value)` recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    entries: BTreeMap<Vec<u8>, (u64, B256)>,
}

impl State {
    /// Applies `op`; returns whether it changed the state.
    pub fn apply(&mut self, op: &ClusterOp) -> bool {
        match self.entries.get(&op.key) {
            Some((slot, _)) if *slot >= op.slot => false,
            _ => {
                self.entries.insert(op.key.clone(), (op.slot, op.value));
                true
            }
        }
    }

    /// Whether applying `op` would change anything: a pool drops ops that would not.
    pub fn is_newer(&self, op: &ClusterOp) -> bool {
        self.entries
            .get(&op.key)
            .is_none_or(|(slot, _)| *slot < op.slot)
    }

    pub fn get(&self, key: &[u8]) -> Option<(u64, B256)> {
        self.entries.get(key).copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn root(&self) -> B256 {
        keccak256(self.encode_entries(b"cohort-state-v1".to_vec()))
    }

    fn encode_entries(&self, mut out: Vec<u8>) -> Vec<u8> {
        for (key, (slot, value)) in &self.entries {
            out.push(key.len() as u8);
            out.extend_from_slice(key);
            out.extend_from_slice(&slot.to_be_bytes());
            out.extend_from_slice(value.as_slice());
        }
        out
    }

    /// The persisted form: the same entry encoding the root hashes, without the domain tag.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_entries(Vec::new())
    }

    pub fn from_bytes(mut bytes: &[u8]) -> Result<Self, StateError> {
        let mut entries = BTreeMap::new();
        while let Some((&key_len, rest)) = bytes.split_first() {
            let key_len = key_len as usize;
            if key_len == 0 || rest.len() < key_len + 40 {
                return Err(StateError::Truncated);
            }
            let (key, rest) = rest.split_at(key_len);
            let (slot, rest) = rest.split_first_chunk::<8>().ok_or(StateError::Truncated)?;
            let (value, rest) = rest.split_at(32);
            if entries
                .insert(
                    key.to_vec(),
                    (u64::from_be_bytes(*slot), B256::from_slice(value)),
                )
                .is_some()
            {
                return Err(StateError::DuplicateKey);
            }
            bytes = rest;
        }
        Ok(Self { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(key: &str, slot: u64, byte: u8) -> ClusterOp {
        ClusterOp::new(key, slot, B256::repeat_byte(byte)).expect("valid key")
    }

    #[test]
    fn op_round_trips_and_refuses_malformed_bytes() {
        let original = op("PROPOSER-v7", 42, 9);
        let bytes = original.encode();
        assert_eq!(ClusterOp::decode(&bytes), Ok(original));
        assert_eq!(ClusterOp::decode(&[]), Err(OpError::Empty));
        let length = |found| -> Result<ClusterOp, OpError> {
            Err(OpError::Length {
                found,
                expected: 11 + 40,
            })
        };
        assert_eq!(ClusterOp::decode(&bytes[..bytes.len() - 1]), length(50));
        let mut long = bytes.to_vec();
        long.push(0);
        assert_eq!(ClusterOp::decode(&long), length(52));
        let mut version = bytes.to_vec();
        version[0] = 2;
        assert_eq!(ClusterOp::decode(&version), Err(OpError::Version(2)));
        assert_eq!(ClusterOp::decode(&[1]), Err(OpError::NoKeyLength));
        assert_eq!(ClusterOp::decode(&[1, 0]), Err(OpError::KeyLength(0)));
        assert!(ClusterOp::new("", 1, B256::ZERO).is_none());
        assert!(ClusterOp::new(vec![b'k'; MAX_KEY_BYTES + 1], 1, B256::ZERO).is_none());
    }

    #[test]
    fn stale_and_repeated_ops_change_nothing() {
        let mut state = State::default();
        assert!(state.apply(&op("COMMITTEE", 5, 1)));
        let root = state.root();
        assert!(!state.apply(&op("COMMITTEE", 5, 2)), "same slot again");
        assert!(!state.apply(&op("COMMITTEE", 4, 3)), "older slot");
        assert_eq!(state.root(), root);
        assert!(state.apply(&op("COMMITTEE", 6, 1)));
        assert_ne!(state.root(), root);
    }

    #[test]
    fn root_depends_on_content_not_order_of_application() {
        let mut a = State::default();
        let mut b = State::default();
        for o in [op("A", 1, 1), op("B", 2, 2), op("A", 3, 3)] {
            a.apply(&o);
        }
        for o in [op("A", 3, 3), op("B", 2, 2), op("A", 1, 1)] {
            b.apply(&o);
        }
        assert_eq!(a.root(), b.root());
        assert_ne!(a.root(), State::default().root());
        assert_eq!(State::from_bytes(&a.to_bytes()), Ok(a));
        assert_eq!(State::from_bytes(&[3, b'a']), Err(StateError::Truncated));
        let twice = [b.to_bytes(), b.to_bytes()].concat();
        assert_eq!(State::from_bytes(&twice), Err(StateError::DuplicateKey));
    }
}
