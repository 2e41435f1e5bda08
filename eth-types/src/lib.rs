//! Ethereum consensus containers for the Beacon API client: per fork (phase0 through Fulu) and
//! per preset (mainnet, minimal), with SSZ `hash_tree_root`, serde in the Beacon API's JSON
//! shapes, and the signing roots of every role the client signs.
//!
//! The entry points a client needs:
//! - [`Fork`] (parsed from the API's `version` strings) and [`ForkSchedule`] (which fork is
//!   active at an epoch);
//! - [`PresetKind`] (parsed from `PRESET_BASE`), or the [`Mainnet`]/[`Minimal`] types;
//! - [`block_header`] / [`body_root`]: the header a produced block commits to, with the body
//!   root computed here from the block's JSON, so a follower checks a proposer's block
//!   instead of trusting it;
//! - the containers in [`containers`] and the roots in [`signing`].
//!
//! Everything that reads input returns an [`Error`]; nothing panics on malformed, wrongly sized
//! or oversize input.

pub mod block;
pub mod containers;
pub mod fork;
pub mod preset;
pub mod signing;

pub use block::{
    BeaconBlock, BeaconBlockBodyAltair, BeaconBlockBodyBellatrix, BeaconBlockBodyCapella,
    BeaconBlockBodyDeneb, BeaconBlockBodyElectra, BeaconBlockBodyFulu, BeaconBlockBodyPhase0,
    BlindedBeaconBlockBodyBellatrix, BlindedBeaconBlockBodyCapella, BlindedBeaconBlockBodyDeneb,
    BlindedBeaconBlockBodyElectra, BlindedBeaconBlockBodyFulu, block_header,
    block_header_from_slice, block_root, body_root, body_root_from_slice,
};
pub use containers::*;
pub use fork::{FAR_FUTURE_EPOCH, Fork, ForkSchedule, ScheduledFork};
pub use preset::{Mainnet, Minimal, Preset, PresetKind};

/// Hex with or without `0x`, as the API's byte fields are read.
pub(crate) mod hex {
    pub use alloy_primitives::hex::decode;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The JSON did not parse as the fork's container: a missing field, a wrong length, a list
    /// over its limit, a bad number or hex string.
    #[error("block JSON: {0}")]
    Json(String),
    #[error("unknown fork {0:?}")]
    UnknownFork(String),
    #[error("unknown preset {0:?}")]
    UnknownPreset(String),
    #[error("fork schedule: {0}")]
    ForkSchedule(String),
}
