//! The executor: consumes finalized cluster blocks from marshal, in order, and acknowledges
//! each once every consumer has it.
//!
//! Today its consumers are the runner (decisions to complete duties), the committee (duties
//! that leave its pool) and an optional observer (the simulation's recorder). Driving an
//! execution engine's forkchoice from these blocks is the executor issue's work.

mod actor;
pub use actor::{Actor, Finalized};

use cohort_ingress::{committee, executor::Mailbox, runner};
use cohort_marshal::Block;
use commonware_runtime::{Clock, Metrics, Spawner};
use commonware_utils::channel::mpsc;

pub struct Config {
    pub runner: runner::Mailbox,
    pub committee: committee::Mailbox,
    /// Receives every finalized block once processed (duplicates after a restart removed).
    pub observer: Option<mpsc::UnboundedSender<Finalized>>,
    /// Height already processed before this start (from marshal), to skip redeliveries.
    pub processed_height: Option<u64>,
}

/// Builds the executor around an existing channel: marshal needs the executor's mailbox (its
/// reporter) before the executor can learn marshal's processed height.
impl<E: Clock + Spawner + Metrics> Actor<E> {
    pub fn from_receiver(
        context: E,
        config: Config,
        receiver: mpsc::UnboundedReceiver<cohort_ingress::executor::Message<Block>>,
    ) -> Self {
        Self::new(context, config, receiver)
    }
}

pub fn init<E: Clock + Spawner + Metrics>(
    context: E,
    config: Config,
) -> (Actor<E>, Mailbox<Block>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    (Actor::new(context, config, receiver), Mailbox::new(sender))
}
