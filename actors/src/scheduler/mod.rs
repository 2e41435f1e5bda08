//! The scheduler: owns the slot clock, fetches duties per epoch from the duty source, and hands
//! each duty to the runner at its time.
//!
//! A committee duty starts at one third of its slot, or earlier when the beacon node reports a
//! head block for that slot (attesting to a head that arrived is better than waiting). At the
//! last interval of each slot it tells the executor to pre-build the next slot's payload.

mod actor;
pub use actor::Actor;

#[cfg(test)]
mod tests;

use cohort_ingress::{
    CommitteeId, DutySource, SlotClock, committee, executor, runner, scheduler::Mailbox,
};
use cohort_marshal::Block;
use commonware_runtime::{Clock, Metrics, Spawner};
use commonware_utils::channel::mpsc;
use std::time::Duration;

pub struct Config<S: DutySource> {
    pub clock: SlotClock,
    /// The cluster's operators: the committee every committee duty is for.
    pub committee_id: CommitteeId,
    pub source: S,
    pub runner: runner::Mailbox,
    /// Told which committee duties each fetched epoch holds, so it can check leaders' values.
    pub committee: committee::Mailbox,
    /// How long one duty-source call may take before it is retried.
    pub fetch_timeout: Duration,
    /// A duty that starts this much after its planned time is logged as late.
    pub late_threshold: Duration,
    pub mailbox_size: usize,
    /// Told at the last interval of each slot to pre-build the next slot's payload.
    pub executor: Option<executor::Mailbox<Block>>,
}

pub fn init<E: Clock + Spawner + Metrics, S: DutySource>(
    context: E,
    config: Config<S>,
) -> (Actor<E, S>, Mailbox) {
    let (sender, receiver) = mpsc::channel(config.mailbox_size.max(1));
    (Actor::new(context, config, receiver), Mailbox::new(sender))
}
