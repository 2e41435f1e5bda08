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
}

pub fn init<E: Clock + Spawner + Metrics>(
    context: E,
    config: Config,
) -> (Actor<E>, Mailbox<Block>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    (Actor::new(context, config, receiver), Mailbox::new(sender))
}
