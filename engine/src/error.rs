//! Why an engine call, a payload or a stored engine record was refused, as values a caller
//! can match on: the executor retries some engine errors and stops on others, and a block
//! decoder maps a bad payload to its own codec error.

use crate::ops::OpError;
use alloy_primitives::{B256, U256};
use std::time::Duration;

/// Why an engine call did not produce an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The engine could not be reached or the connection broke; the call may be retried.
    #[error("engine transport error: {0}")]
    Transport(String),
    /// The engine took longer than the call's timeout; the call may be retried.
    #[error("engine call timed out after {0:?}")]
    Timeout(Duration),
    /// The engine refused the JWT (HTTP 401/403): retrying will not help until the secret
    /// matches.
    #[error("engine refused our JWT: {0}")]
    Unauthorized(String),
    /// The engine answered something that is not a JSON-RPC answer to the call (not JSON, a
    /// wrong id, a result of the wrong shape). Retryable, like a transport error: a client
    /// restarting behind a proxy answers garbage for a moment.
    #[error("engine response is malformed: {0}")]
    Malformed(String),
    /// The engine answered with a JSON-RPC error (for example -38001, unknown payload).
    #[error("engine answered error {code}: {message}")]
    Rpc { code: i64, message: String },
    /// The engine's storage failed; the engine cannot go on safely.
    #[error("engine storage failed: {0}")]
    Storage(String),
}

impl EngineError {
    /// Whether trying the same call again later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Transport(_) | Self::Timeout(_) | Self::Malformed(_)
        )
    }
}

/// Why bytes a peer sent are not a payload.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PayloadDecodeError {
    /// Refused before parsing, so a peer cannot make an operator parse an unbounded payload.
    #[error("payload of {len} bytes is over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("payload is not valid SSZ: {0:?}")]
    Ssz(ssz::DecodeError),
}

/// Why the embedded engine calls a payload INVALID. Its text is the `validation_error` of the
/// INVALID status, which the executor logs and passes on to consensus.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPayload {
    #[error("block number {number} does not follow parent number {parent}")]
    Number { number: u64, parent: u64 },
    #[error("timestamp {timestamp} is not after parent timestamp {parent}")]
    Timestamp { timestamp: u64, parent: u64 },
    #[error("the cluster chain has no withdrawals")]
    Withdrawals,
    #[error("the cluster chain has no blobs")]
    Blobs,
    #[error("gas limit {found} is not {expected}")]
    GasLimit { found: u64, expected: u64 },
    #[error("base fee {found} is not {expected}")]
    BaseFee { found: U256, expected: u64 },
    #[error("{count} transactions, more than {max}")]
    TooManyTransactions { count: usize, max: usize },
    #[error("gas used {found} is not {expected}")]
    GasUsed { found: u64, expected: u64 },
    #[error("transaction {index}: {source}")]
    Transaction { index: usize, source: OpError },
    #[error("receipts root does not match the transactions")]
    ReceiptsRoot,
    #[error("state root {claimed} does not match the executed state {executed}")]
    StateRoot { claimed: B256, executed: B256 },
}
