//! The committee: runs the cluster's simplex consensus and decides what goes in each block.
//!
//! Runners hand it duty values; when this operator leads a view, every value waiting for the
//! current slot goes into one block (one consensus instance for many duties). Block production
//! is paced to the work: a leader with nothing to propose waits, and only proposes an empty
//! block once `heartbeat` has passed, so an idle cluster makes about one block per heartbeat
//! instead of a flood. As a follower it votes only for blocks whose values it can check against
//! its own view (its own duty schedule, slot clock and beacon node's finalized checkpoint).
//!
//! Beacon nodes see a slot's head at different times, and the committee duty starts when an
//! operator's node reports it. So that a leader whose node is late does not hold the slot up,
//! each operator offers its slot's attestation data to every peer (the offers channel); a
//! leader without its own value proposes data that f+1 operators offered alike, checked as a
//! follower would check it.

mod actor;
mod application;
mod skips;
#[cfg(test)]
mod tests;

pub use actor::Actor;
pub use application::{Application, LeaderView, ProposalObserver, ProposalTamper};

use cohort_ingress::{CommitteeId, SlotClock, committee::Mailbox};
use commonware_cryptography::PublicKey;
use commonware_runtime::{Clock, Metrics, Spawner};
use commonware_utils::{channel::mpsc, ordered::Set};
use std::time::Duration;

pub struct Config<P: PublicKey> {
    pub clock: SlotClock,
    pub committee: CommitteeId,
    /// How long a leader with no work waits before proposing an empty block. Must stay below
    /// consensus's leader timeout, or idle views time out instead.
    pub heartbeat: Duration,
    /// How long after its slot ends a follower waits to learn a duty it has not scheduled
    /// before refusing to vote for a block that decides it.
    pub verify_grace: Duration,
    pub mailbox_size: usize,
    /// The operators voting in the cluster's consensus, in share order (a peer's position is
    /// its participant index). f+1 of them (f = (n - 1) / 3) voting to skip a view make its
    /// leader give the view up (see
    /// [`Message::Nullify`](cohort_ingress::committee::Message::Nullify)); f+1 of them
    /// offering the same attestation data let a leader whose beacon node has not answered yet
    /// propose it (at least one of them is honest).
    pub participants: Set<P>,
    /// Whether a proposed beacon block's header commits to its contents (the duty source's
    /// [`check_proposal`](cohort_ingress::DutySource::check_proposal)).
    pub check_proposal: ProposalCheck,
}

/// f+1 of `operators` (f = (n - 1) / 3): enough that at least one is honest. What makes a
/// view lost (skip votes) and what makes an offered value or source trustworthy (offers).
fn f_plus_one(operators: usize) -> usize {
    operators.saturating_sub(1) / 3 + 1
}

/// See [`Config::check_proposal`].
pub type ProposalCheck =
    std::sync::Arc<dyn Fn(&cohort_ingress::BlockProposal) -> Result<(), String> + Send + Sync>;

pub fn init<E: Clock + Spawner + Metrics, P: PublicKey>(
    context: E,
    config: Config<P>,
) -> (Actor<E, P>, Mailbox) {
    let (sender, receiver) = mpsc::channel(config.mailbox_size.max(1));
    (Actor::new(context, config, receiver), Mailbox::new(sender))
}
