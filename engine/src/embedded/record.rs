//! What the embedded engine persists: the keys of its one metadata store, the fixed-width
//! encoding of an execution tip in it, and the error for a store that does not decode.

use crate::{EngineError, ExecutionTip};
use alloy_primitives::B256;

pub(super) const KEY_FINALIZED: u64 = 0;
pub(super) const KEY_STATE: u64 = 1;
pub(super) const KEY_CANONICAL: u64 = 2;

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
