//! The committee: runs the cluster's simplex consensus and decides what goes in each block.
//!
//! Runners hand it duty values; when this operator leads a view, every value waiting for the
//! current slot goes into one block (one consensus instance for many duties). Block production
//! is paced to the work: a leader with nothing to propose waits, and only proposes an empty
//! block once `heartbeat` has passed, so an idle cluster makes about one block per heartbeat
//! instead of a flood. As a follower it votes only for blocks whose values it can check against
//! its own view (its own duty schedule, slot clock and beacon node's finalized checkpoint).

mod actor;
mod application;
mod skips;
#[cfg(test)]
mod tests;

pub use actor::Actor;
pub use application::{Application, LeaderView, ProposalObserver, ProposalTamper};

use cohort_ingress::{CommitteeId, SlotClock, committee::Mailbox};
use commonware_runtime::{Clock, Metrics, Spawner};
use commonware_utils::channel::mpsc;
use std::time::Duration;

pub struct Config {
    pub clock: SlotClock,
    pub committee: CommitteeId,
    /// How long a leader with no work waits before proposing an empty block. Must stay below
    /// consensus's leader timeout, or idle views time out instead.
    pub heartbeat: Duration,
    /// How long after its slot ends a follower waits to learn a duty it has not scheduled
    /// before refusing to vote for a block that decides it.
    pub verify_grace: Duration,
    pub mailbox_size: usize,
    /// How many operators vote in the cluster's consensus: f+1 of them voting to skip a view
    /// (f = (n - 1) / 3) make its leader give the view up (see
    /// [`Message::Nullify`](cohort_ingress::committee::Message::Nullify)).
    pub operators: usize,
    /// Whether a proposed beacon block's header commits to its contents (the duty source's
    /// [`check_proposal`](cohort_ingress::DutySource::check_proposal)).
    pub check_proposal: ProposalCheck,
}

/// See [`Config::check_proposal`].
pub type ProposalCheck =
    std::sync::Arc<dyn Fn(&cohort_ingress::BlockProposal) -> Result<(), String> + Send + Sync>;

pub fn init<E: Clock + Spawner + Metrics>(context: E, config: Config) -> (Actor<E>, Mailbox) {
    let (sender, receiver) = mpsc::channel(config.mailbox_size.max(1));
    (Actor::new(context, config, receiver), Mailbox::new(sender))
}
