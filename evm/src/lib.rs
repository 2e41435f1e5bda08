//! A small Ethereum execution core for the embedded engine: genesis from a geth-style
//! `genesis.json`, execution of Engine API V3 payloads with every header, receipt and state
//! root check a client makes, and payload building for the leader.
//!
//! Execution is alloy-evm's Ethereum block executor over revm; headers and blocks are
//! alloy-consensus types, so hashes are the real RLP header hashes. The state root is kept by
//! [`trie::Trie`], whose nodes cache their hashes, so a block rehashes only what it changed.

mod call;
mod executor;
mod header;
pub mod history;
pub mod pool;
mod spec;
pub mod state;
pub mod trie;
pub mod wallet;

pub use call::{CallError, CallOutcome, CallRequest};
pub use executor::{BuildError, Built, Executed, Executor, Invalid, NewPayload};
pub use header::{next_base_fee, reseal, sealed_block};
pub use history::{BlockRecord, Placement, RecordDecodeError};
pub use pool::{Pool, PoolError, Pooled};
pub use spec::{ChainSpec, GenesisError};
pub use state::{
    AccountChange, AccountInfo, ChangesDecodeError, MemoryState, StateChanges, StateReader,
    StateStore,
};
pub use wallet::{DEVNET_FUNDED_KEY, Wallet, WalletError};

/// The devnet genesis that `scripts/ethereumjs.sh` gives EthereumJS.
pub const DEVNET_GENESIS: &str = include_str!("../genesis/devnet.json");
