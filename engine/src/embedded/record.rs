//! What the embedded engine persists. A metadata store holds the finalized block's header and
//! the recent canonical hashes; a journal holds each finalized block's state changes, item
//! `n - 1` for block `n`. The journal is written and synced first, the metadata second, so the
//! metadata never names a block whose changes are not on disk; on open the journal is cut back
//! to the metadata's block, dropping what a crash left between the two writes.
//!
//! Every [`super::SNAPSHOT_INTERVAL`] blocks the changes since the last snapshot are merged into
//! it (one record: the state as changes from genesis), the snapshot is synced, and only then is
//! the journal pruned below it; a restart applies the snapshot and the changes after it.

use crate::{EngineError, ExecutionTip};
use alloy_primitives::B256;

pub(super) const KEY_FINALIZED_HEADER: u64 = 3;
pub(super) const KEY_CANONICAL: u64 = 2;
/// The genesis hash the data was written for (the canonical record forgets block 0).
pub(super) const KEY_GENESIS: u64 = 4;
/// The checkpoint of the block and transaction hash index (see `history`) as of the finalized
/// header: written in the same metadata sync, so an open rewinds the index to that block.
pub(super) const KEY_HASH_INDEX: u64 = 5;
/// In the snapshot store: the state at a finalized block, as the merged changes since genesis.
pub(super) const KEY_SNAPSHOT: u64 = 0;

/// A snapshot: the block number, its state root, then the merged [`StateChanges`] record.
pub(super) fn encode_snapshot(number: u64, state_root: B256, changes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + changes.len());
    out.extend_from_slice(&number.to_be_bytes());
    out.extend_from_slice(state_root.as_slice());
    out.extend_from_slice(changes);
    out
}

pub(super) fn decode_snapshot(bytes: &[u8]) -> Option<(u64, B256, &[u8])> {
    if bytes.len() < 40 {
        return None;
    }
    let number = u64::from_be_bytes(bytes[..8].try_into().ok()?);
    Some((number, B256::from_slice(&bytes[8..40]), &bytes[40..]))
}
/// Keys the engine wrote before it executed Ethereum blocks (its own state format).
pub(super) const LEGACY_KEYS: [u64; 2] = [0, 1];

pub(super) fn encode_tip(tip: &ExecutionTip, out: &mut Vec<u8>) {
    out.extend_from_slice(tip.hash.as_slice());
    out.extend_from_slice(&tip.number.to_be_bytes());
    out.extend_from_slice(&tip.timestamp.to_be_bytes());
}

pub(super) fn decode_tip(bytes: &[u8]) -> Option<ExecutionTip> {
    if bytes.len() != 48 {
        return None;
    }
    Some(ExecutionTip {
        hash: B256::from_slice(&bytes[..32]),
        number: u64::from_be_bytes(bytes[32..40].try_into().ok()?),
        timestamp: u64::from_be_bytes(bytes[40..48].try_into().ok()?),
    })
}

pub(super) fn corrupt(what: &str) -> EngineError {
    EngineError::Storage(format!(
        "embedded engine storage is corrupt ({what}); the data directory cannot be used"
    ))
}
