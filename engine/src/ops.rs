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
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let (&version, rest) = bytes.split_first().ok_or("empty transaction")?;
        if version != OP_VERSION {
            return Err(format!("unknown op version {version}"));
        }
        let (&key_len, rest) = rest.split_first().ok_or("op has no key length")?;
        let key_len = key_len as usize;
        if key_len == 0 || key_len > MAX_KEY_BYTES {
            return Err(format!(
                "op key length {key_len} outside 1..={MAX_KEY_BYTES}"
            ));
        }
        if rest.len() != key_len + 8 + 32 {
            return Err(format!(
                "op is {} bytes after its header, expected {}",
                rest.len(),
                key_len + 40
            ));
        }
        let (key, rest) = rest.split_at(key_len);
        let (slot, value) = rest.split_at(8);
        let slot = u64::from_be_bytes(slot.try_into().map_err(|_| "op slot is not 8 bytes")?);
        Ok(Self {
            key: key.to_vec(),
            slot,
            value: B256::from_slice(value),
        })
    }
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

    pub fn from_bytes(mut bytes: &[u8]) -> Result<Self, String> {
        let mut entries = BTreeMap::new();
        while let Some((&key_len, rest)) = bytes.split_first() {
            let key_len = key_len as usize;
            if key_len == 0 || rest.len() < key_len + 40 {
                return Err("truncated state entry".into());
            }
            let (key, rest) = rest.split_at(key_len);
            let (slot, rest) = rest.split_at(8);
            let (value, rest) = rest.split_at(32);
            let slot = u64::from_be_bytes(slot.try_into().map_err(|_| "bad slot")?);
            if entries
                .insert(key.to_vec(), (slot, B256::from_slice(value)))
                .is_some()
            {
                return Err("state lists a key twice".into());
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
        assert!(ClusterOp::decode(&[]).is_err());
        assert!(ClusterOp::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(ClusterOp::decode(&long).is_err());
        let mut version = bytes.to_vec();
        version[0] = 2;
        assert!(ClusterOp::decode(&version).is_err());
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
        assert!(State::from_bytes(&[3, b'a']).is_err());
    }
}
