//! The devnet beacon: what stands in for Ethereum until the Beacon API client lands.
//!
//! Every operator runs its own [`DevnetBeacon`] (deterministic duties and attestation data,
//! heads seen a little late, as a real beacon node sees them) in front of a [`DevnetChain`] that
//! builds blocks and aggregates and checks every signed object with its own BLS verification.
//! The node embeds it for `cohort run`; the simulation gives every simulated operator one and
//! shares a single chain among them. It lives in its own crate so the node does not depend on
//! the simulation harness.

mod beacon;
mod chain;
mod source;

pub use beacon::{DevnetBeacon, head_events};
pub use chain::{ChainReport, DevnetChain, Kind, KindStats, Seat};
pub use source::DevnetSource;
