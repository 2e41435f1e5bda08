//! The vocabulary Cohort's actors speak.
//!
//! Actors never import each other: each holds the others' [`Mailbox`]es from here. That keeps
//! every actor replaceable, and testable alone with a hand-made mailbox on the other side.
//!
//! Everything a peer can send (a [`Decision`] inside a cluster block) has a bounded codec that
//! rejects oversized or malformed input with an error instead of allocating what a liar asks.

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

pub use clock::SlotClock;
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
