//! The runner: one state machine per duty, keyed by `duty_id`.
//!
//! In this version a committee duty fetches the slot's attestation data from the operator's own
//! beacon node, hands it to the committee for agreement, and completes when a block of the
//! duty's slot finalizes it; a duty whose slot ends first is missed. The signing phases
//! (pre- and post-consensus partial signatures) build on exactly these transitions.

mod actor;
pub use actor::Actor;

use cohort_ingress::{DutySource, SlotClock, committee, runner::DutyEvent, runner::Mailbox};
use commonware_runtime::{Clock, Metrics, Spawner};
use commonware_utils::channel::mpsc;
use std::time::Duration;

pub struct Config<S: DutySource> {
    pub clock: SlotClock,
    pub source: S,
    pub committee: committee::Mailbox,
    /// How long one duty-source call may take before the duty gives up on it.
    pub fetch_timeout: Duration,
    /// Where duty outcomes are reported (the simulation's recorder, an operator's dashboard).
    pub events: Option<mpsc::UnboundedSender<DutyEvent>>,
    pub mailbox_size: usize,
}

pub fn init<E: Clock + Spawner + Metrics, S: DutySource>(
    context: E,
    config: Config<S>,
) -> (Actor<E, S>, Mailbox) {
    let (sender, receiver) = mpsc::channel(config.mailbox_size.max(1));
    (Actor::new(context, config, receiver), Mailbox::new(sender))
}
