//! The cluster block and the ordered, acknowledged delivery of finalized blocks.
//!
//! Delivery is commonware's marshal ([`commonware_consensus::marshal`]): it persists every
//! finalized block in immutable archives before reporting it, reports blocks in height order
//! without gaps, and redelivers whatever was not acknowledged before a crash. [`init`] opens it
//! with its broadcast buffer and backfill resolver, so every operator builds it the same way, and
//! [`Marshal::start`] hands it the application it reports to.

mod block;
mod wiring;

pub use block::{Block, BlockCfg, GENESIS_SLOT};
pub use wiring::{
    Config, IO_BUFFER, Marshal, epocher, genesis, init, max_message_size, page_cache,
};

use commonware_consensus::{
    marshal::{self, standard::Standard},
    simplex,
};
use commonware_cryptography::{ed25519, sha256};

/// Digest of a cluster block (SHA-256 of its canonical encoding).
pub type Digest = sha256::Digest;
/// An operator's identity key.
pub type PublicKey = ed25519::PublicKey;
/// The certificate scheme consensus signs votes with: the operators' ed25519 identities.
pub type Scheme = simplex::scheme::ed25519::Scheme;
/// What consensus tells the application about a proposal.
pub type ConsensusContext = simplex::types::Context<Digest, PublicKey>;
/// Marshal's mailbox for cluster blocks.
pub type Mailbox = marshal::core::Mailbox<Scheme, Standard<Block>>;
/// A finalized-block update from marshal.
pub type Update = marshal::Update<Block>;
