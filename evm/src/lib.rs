//! A small Ethereum execution core for the embedded engine: genesis from a geth-style
//! `genesis.json`, execution of Engine API V3 payloads with every header, receipt and state
//! root check a client makes, and payload building for the leader.
//!
//! Execution is alloy-evm's Ethereum block executor over revm; headers and blocks are
//! alloy-consensus types, so hashes are the real RLP header hashes. The state root is kept by
//! [`trie::Trie`], whose nodes cache their hashes, so a block rehashes only what it changed.

mod executor;
mod spec;
pub mod state;
pub mod trie;

pub use executor::{BuildError, Built, Executed, Executor, Invalid, NewPayload};
pub use spec::{ChainSpec, GenesisError};
pub use state::{AccountChange, AccountInfo, MemoryState, StateChanges, StateReader, StateStore};

/// The devnet genesis that `scripts/ethereumjs.sh` gives EthereumJS.
pub const DEVNET_GENESIS: &str = include_str!("../genesis/devnet.json");
