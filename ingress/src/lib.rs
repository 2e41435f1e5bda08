//! The vocabulary Cohort's actors speak.
//!
//! Actors never import each other: each holds the others' `Mailbox`es from here. That keeps
//! every actor replaceable, and testable alone with a hand-made mailbox on the other side.
//!
//! Everything a peer can send (a [`Decision`] inside a cluster block) has a bounded codec that
//! rejects oversized or malformed input with an error instead of allocating what a liar asks.

pub mod avs;
pub mod clock;
pub mod committee;
pub mod doppelganger;
pub mod duty;
pub mod executor;
pub mod exits;
pub mod keys;
pub mod partial;
pub mod runner;
pub mod scheduler;
pub mod signing;
pub mod source;
pub mod sync;
pub mod transactions;

pub use clock::SlotClock;

/// A mailbox send found its actor stopped. Inside a node an actor stops only when the node is
/// stopping or has failed, so the sender treats it as fatal: it logs what it could not hand on
/// and stops too, and the node shuts down (a silent drop would leave it half-running: duties
/// that are never decided, or signed and never counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the {actor} has stopped")]
pub struct Stopped {
    /// Which actor: `runner`, `committee`, `scheduler`, `executor`.
    pub actor: &'static str,
}
pub use duty::{
    Aggregate, AttestationData, AttesterDuty, BlockHeader, BlockProposal, Checkpoint, CommitteeId,
    DecidedValue, Decision, Duty, DutyId, DutyTarget, MAX_BLOCK_CONTENTS_BYTES, OperatorId,
    ProposerDuty, Role, Root,
};
pub use source::{
    DutySink, DutySource, SignedAggregate, SignedAttestation, SignedBlock, SinkError, SourceError,
};
pub use sync::{
    SignedContributionAndProof, SignedSyncCommitteeMessage, SyncCommitteeContribution,
    SyncCommitteeSpec, SyncDuty,
};

/// Most operators one cluster may have (13 = 3f+1 with f = 4).
pub const MAX_OPERATORS: usize = 13;
