//! The doppelganger checker: asks the beacon node, epoch by epoch, whether the validators this
//! operator does not sign for yet were live without it, and tells the shared
//! [`Guard`] what it learned.
//!
//! The guard is the whole interface: the runner asks it before every signature and tells it
//! when it sees the cluster sign for a watched validator; this actor only feeds it the beacon
//! node's answers. So it has no mailbox, and it ends once no validator is watched.

mod actor;
pub use actor::Actor;

#[cfg(test)]
mod tests;

use cohort_ingress::{DutySource, SlotClock, doppelganger::Guard};
use commonware_runtime::{Clock, Metrics, Spawner};
use std::time::Duration;

pub struct Config<S: DutySource> {
    pub clock: SlotClock,
    pub source: S,
    pub guard: Guard,
    /// How long one liveness call may take before it is retried.
    pub fetch_timeout: Duration,
}

pub fn init<E: Clock + Spawner + Metrics, S: DutySource>(
    context: E,
    config: Config<S>,
) -> Actor<E, S> {
    Actor::new(context, config)
}
