//! Why an engine call, a payload or a stored engine record was refused, as values a caller
//! can match on: the executor retries some engine errors and stops on others, and a block
//! decoder maps a bad payload to its own codec error.

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
    /// The genesis file cannot start a chain, or is not the one the engine's data was written
    /// for.
    #[error("engine genesis: {0}")]
    Genesis(String),
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

/// Why an engine did not take a signed transaction into its pool. Callers that resend (the
/// relay, the simulation's load) treat the first two as done, not as failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionRefused {
    /// The engine holds it already.
    #[error("already pooled")]
    Known,
    /// Its nonce is below the sender's: it, or another with that nonce, already executed.
    #[error("{0}")]
    Stale(String),
    /// Anything else (malformed, bad signature, no funds, pool full...), in the engine's words;
    /// an engine that could not be reached says so here too.
    #[error("{0}")]
    Refused(String),
}
