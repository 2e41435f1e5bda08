//! What the embedded engine persists. A metadata store holds the finalized block's header and
//! the recent canonical hashes; a journal holds each finalized block's state changes, item
//! `n - 1` for block `n`. The journal is written and synced first, the metadata second, so the
//! metadata never names a block whose changes are not on disk; on open the journal is cut back
//! to the metadata's block, dropping what a crash left between the two writes.

use crate::{EngineError, ExecutionTip};
use alloy_primitives::B256;

pub(super) const KEY_FINALIZED_HEADER: u64 = 3;
pub(super) const KEY_CANONICAL: u64 = 2;
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
