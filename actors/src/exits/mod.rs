//! The exits actor: voluntary exits threshold-signed through the cluster.
//!
//! An exit is for good, so no single operator can make one. An operator whose operator asks
//! for a validator's exit signs it with its share and announces the partial on the exits
//! channel; the others hold it (verified against the sender's share) but sign nothing unless
//! their own operators ask too. Threshold-many partials for the same (validator, epoch) are
//! the cluster agreeing: whoever holds them combines them, checks the result against the
//! validator's key and submits it to its beacon nodes. An operator that asks without naming an
//! epoch joins the epoch others already signed, so operators asking hours apart still agree.
//!
//! Partials are announced again every few slots until the exit is submitted, so an operator
//! that was down or restarted catches up; an operator's request survives its restarts in the
//! node's request files (see the node's `exit request`).

mod actor;
pub use actor::Actor;

#[cfg(test)]
mod tests;

use cohort_ingress::{DutySink, SlotClock, exits::Mailbox, keys::ValidatorShare};
use commonware_cryptography::PublicKey;
use commonware_runtime::{Clock, Metrics, Spawner};
use commonware_utils::{channel::mpsc, ordered::Set};
use std::{collections::BTreeMap, sync::Arc, time::Duration};

pub struct Config<K: DutySink, P: PublicKey> {
    pub clock: SlotClock,
    /// Where combined exits go (the beacon nodes).
    pub sink: K,
    /// The cluster's operators in share order: a peer's position is its share index.
    pub operators: Set<P>,
    /// This operator's share of every validator the cluster runs.
    pub shares: Arc<BTreeMap<u64, ValidatorShare>>,
    /// What exits are signed under: the Capella fork version (EIP-7044) and the chain's
    /// genesis validators root.
    pub capella_fork_version: [u8; 4],
    pub genesis_validators_root: [u8; 32],
    /// How long one submission may take before it counts as failed (and is tried again).
    pub submit_timeout: Duration,
    pub mailbox_size: usize,
}

pub fn init<E, K, P>(context: E, config: Config<K, P>) -> (Actor<E, K, P>, Mailbox)
where
    E: Clock + Spawner + Metrics,
    K: DutySink,
    P: PublicKey,
{
    let (sender, receiver) = mpsc::channel(config.mailbox_size.max(1));
    (Actor::new(context, config, receiver), Mailbox::new(sender))
}
