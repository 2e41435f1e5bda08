//! The transaction relay: signed transactions for the cluster chain reach every operator's
//! engine, so whichever operator leads a slot builds with them.
//!
//! A transaction a user hands this operator (its JSON-RPC port) is checked by the engine's
//! pool first; only one the pool took goes out, once, to every peer on the transactions
//! channel. A peer's transaction is checked the same way and never sent on: its sender already
//! sent it to everyone, so a relay storm needs no de-duplication. The pool's refusals of a
//! peer's transactions are counted, not punished: a transaction valid where it was sent can be
//! stale here a moment later (finality passed its nonce).

mod actor;
pub use actor::Actor;

#[cfg(test)]
mod tests;

use cohort_engine::ExecutionEngine;
use cohort_ingress::transactions::Mailbox;
use commonware_runtime::{Metrics, Spawner};
use commonware_utils::channel::mpsc;

pub struct Config<X: ExecutionEngine> {
    /// The engine whose pool takes the transactions.
    pub engine: X,
    pub mailbox_size: usize,
}

pub fn init<E, X>(context: E, config: Config<X>) -> (Actor<E, X>, Mailbox)
where
    E: Spawner + Metrics,
    X: ExecutionEngine,
{
    let (sender, receiver) = mpsc::channel(config.mailbox_size.max(1));
    (Actor::new(context, config, receiver), Mailbox::new(sender))
}
