//! Why the executor stops or skips a step. Kept apart from the actor: these say what went
//! wrong in values the run loop matches on, and the log lines print them.

use cohort_engine::{B256, EngineError};
use commonware_storage::metadata;

/// Why processing a finalized block stopped the executor.
#[derive(Debug, thiserror::Error)]
pub(super) enum Fatal {
    /// Consensus finalized a payload the engine calls INVALID.
    #[error("engine says finalized payload {hash} (number {number}) is INVALID: {reason}")]
    Invalid {
        hash: B256,
        number: u64,
        reason: String,
    },
    /// The engine took the payload but refuses the forkchoice that finalizes it.
    #[error("engine refused to finalize {hash} (number {number}): {source}")]
    Unfinalizable {
        hash: B256,
        number: u64,
        source: EngineError,
    },
    /// The engine's own storage failed.
    #[error("{0}")]
    Storage(String),
    /// The runner or the committee has stopped, so a finalized block's decisions cannot be
    /// handed on (this operator would not sign them). Unacknowledged, the block is delivered
    /// again after a restart.
    #[error("the finalized block's decisions cannot be handed on: {0}")]
    HandOff(cohort_ingress::Stopped),
    /// Marshal delivered a block that does not follow the last one.
    #[error("finalized block {height} does not follow {processed}")]
    OutOfOrder { height: u64, processed: u64 },
}

/// Why the executor could not start: it stops, and this operator executes nothing.
#[derive(Debug, thiserror::Error)]
pub(super) enum StartError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(
        "the engine's genesis {engine:?} is not the cluster's execution genesis {cluster}; \
         the engine belongs to another chain"
    )]
    ForeignGenesis { engine: Option<B256>, cluster: B256 },
    #[error("marshal does not have processed block {0}")]
    MissingBlock(u64),
    #[error("the engine finalized {engine} at number {number}, the cluster chain has {cluster}")]
    FinalizedConflict {
        engine: B256,
        number: u64,
        cluster: B256,
    },
}

/// Why a payload handed to consensus could not be recorded first.
#[derive(Debug, thiserror::Error)]
pub(super) enum RecordError {
    #[error("an earlier write of the proposal record failed")]
    Unavailable,
    #[error(transparent)]
    Storage(#[from] metadata::Error),
}
