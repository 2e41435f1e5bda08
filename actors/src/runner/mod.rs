//! The runner: one state machine per duty, keyed by `duty_id`, carrying a distributed-validator
//! duty from its start to signed objects at the duty sink.
//!
//! - committee duty: attestation data fetched, agreed through the committee, then (on
//!   finalization only) a post-consensus partial signature per attesting validator and per
//!   sync committee member (over the decided head block root), quorum, reconstruction,
//!   submission of the slot's attestations and sync committee messages;
//! - proposer duty: a partial RANDAO reveal at slot start, quorum, reconstruction, a block
//!   built with the reveal, agreed, then post-consensus signatures over the block root;
//! - aggregator duty: a partial selection proof, quorum, and, if the proof selects the
//!   validator, the aggregate at two thirds of the slot, agreed, then post-consensus
//!   signatures over the `AggregateAndProof`;
//! - sync committee contribution duty: a partial selection proof per subcommittee the member
//!   has positions in, quorum, and for each subcommittee the proof selects it for, the
//!   contribution for the decided head block root at two thirds of the slot, agreed (all of
//!   the duty's contributions in one value), then post-consensus signatures over each
//!   `ContributionAndProof`.
//!
//! Every partial signature this operator makes in one phase of one handling step (a slot's
//! starts, a finalized block) leaves in one message. A share signs an attestation or block only
//! after the slashing-protection record for it is durable; sync committee messages and
//! contributions are not slashable and need no record.
//!
//! Where to look (one file per step of a duty):
//!
//! - `duty.rs`: a duty's state and what it waits for next (`Phase`); where a duty starts,
//!   ends and expires;
//! - `fetch.rs`: fetching a duty's value from the beacon node (attestation data, block,
//!   aggregate, contributions);
//! - `agree.rs`: handing the value to the committee, and taking back the finalized decision;
//! - `sign.rs`: signing with this operator's share, pre- and post-consensus (after the
//!   `slashing.rs` protection), and broadcasting the partials;
//! - `partials.rs`: peers' partial signatures and reconstruction at threshold (`quorum.rs`,
//!   with the batched cryptography in `crypto/`: weights, batch verification);
//! - `submit.rs`: handing the reconstructed objects to the duty sink;
//! - `actor.rs`: the run loop and the handling step; `metrics.rs`: what the runner exports.

mod actor;
mod agree;
pub mod cpu;
pub mod crypto;
mod duty;
mod fetch;
mod metrics;
mod partials;
pub mod quorum;
mod sign;
pub mod slashing;
mod submit;
#[cfg(test)]
mod tests;
pub use actor::{Actor, MISSED_MEMORY_SLOTS, POST_CONSENSUS_SLOTS};

use cohort_ingress::{
    DutySink, DutySource, SlotClock, committee,
    doppelganger::Guard,
    keys::ValidatorShare,
    runner::{DutyEvent, Mailbox},
    signing::ForkInfo,
};
use commonware_cryptography::PublicKey;
use commonware_p2p::{Receiver, Sender};
use commonware_runtime::{Clock, Metrics, Spawner, Storage};
use commonware_utils::{channel::mpsc, ordered::Set};
use std::{collections::BTreeMap, sync::Arc, time::Duration};

/// Misbehaviour a simulation can switch on to check that the cluster survives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Sign a different root than the one announced: well-formed, invalid partials.
    WrongPartials,
}

pub struct Config<S: DutySource, K: DutySink, P: PublicKey> {
    pub clock: SlotClock,
    pub source: S,
    pub sink: K,
    pub committee: committee::Mailbox,
    /// The cluster's operators in share order: a peer's position is its share index.
    pub operators: Set<P>,
    /// This operator's share of every validator the cluster runs.
    pub shares: Arc<BTreeMap<u64, ValidatorShare>>,
    pub fork: ForkInfo,
    /// Storage partition of the slashing-protection record.
    pub slashing_partition: String,
    /// Set to why the slashing-protection record is unusable while it is (read by `/health`).
    pub slashing_status: slashing::SlashingStatus,
    /// How long one duty-source or duty-sink call may take before the duty gives up on it.
    pub fetch_timeout: Duration,
    /// Where duty outcomes are reported (the simulation's recorder, an operator's dashboard).
    pub events: Option<mpsc::UnboundedSender<DutyEvent>>,
    pub mailbox_size: usize,
    pub fault: Option<Fault>,
    /// Adds up the real CPU of signing, decoding and recovery (see [`cpu`]); none in production.
    pub cpu: Option<cpu::CpuMeter>,
    /// Doppelganger protection: a validator it does not clear yet gets no signature from this
    /// operator's share, though its duties still run (the cluster signing without this
    /// operator is what clears it). [`Guard::off`] when protection is off.
    pub guard: Guard,
    /// Signs, recovers and verifies a step's partials in batches, on as many threads as it
    /// was given (see [`crypto`]).
    pub crypto: crypto::Crypto,
}

impl<S: DutySource, K: DutySink, P: PublicKey> Config<S, K, P> {
    /// The most partial signatures one message may carry: per validator, an attestation (or
    /// a selection proof) and an aggregate, plus a proposal (or RANDAO reveal); and the sync
    /// committee's: a message per member, a selection proof (or a contribution) per member and
    /// subcommittee, which the committee's size caps whatever the cluster's size.
    pub fn max_partials_per_message(&self) -> usize {
        max_partials_per_message(self.shares.len())
    }
}

/// See [`Config::max_partials_per_message`].
pub fn max_partials_per_message(validators: usize) -> usize {
    use cohort_ingress::sync::{MAX_SYNC_COMMITTEE_SUBNETS, MAX_SYNC_SUBCOMMITTEE_SIZE};
    let positions = (MAX_SYNC_SUBCOMMITTEE_SIZE * MAX_SYNC_COMMITTEE_SUBNETS) as usize;
    let subnets = MAX_SYNC_COMMITTEE_SUBNETS as usize;
    2 * validators
        + 1
        + validators.min(positions)
        + validators.saturating_mul(subnets).min(positions)
}

/// The most partial signatures one peer may send this operator for one slot: twice what an
/// honest operator signs in a slot (a restart may send a slot's partials again), for
/// `validators` validators: per validator a selection proof, an attestation and an aggregate,
/// the slot's RANDAO reveal and block, and the sync committee's messages, selection proofs and
/// contributions. A peer past it has its further messages for the slot dropped unread, so the
/// work and memory one peer can demand per slot are bounded by the cluster's shape.
pub fn max_partials_per_slot(validators: usize) -> usize {
    use cohort_ingress::sync::{MAX_SYNC_COMMITTEE_SUBNETS, MAX_SYNC_SUBCOMMITTEE_SIZE};
    let positions = (MAX_SYNC_SUBCOMMITTEE_SIZE * MAX_SYNC_COMMITTEE_SUBNETS) as usize;
    let subnets = MAX_SYNC_COMMITTEE_SUBNETS as usize;
    let sync = validators.min(positions);
    let pairs = validators.saturating_mul(subnets).min(positions);
    2 * (3 * validators + 2 + sync + 2 * pairs)
}

pub fn init<E, S, K, P>(context: E, config: Config<S, K, P>) -> (Actor<E, S, K, P>, Mailbox)
where
    E: Clock + Spawner + Metrics + Storage,
    S: DutySource,
    K: DutySink,
    P: PublicKey,
{
    let (sender, receiver) = mpsc::channel(config.mailbox_size.max(1));
    (Actor::new(context, config, receiver), Mailbox::new(sender))
}

/// The network half the runner needs: where its partial signatures go and come from.
pub struct Network<Tx, Rx> {
    pub sender: Tx,
    pub receiver: Rx,
}

impl<Tx: Sender, Rx: Receiver> Network<Tx, Rx> {
    pub fn new(sender: Tx, receiver: Rx) -> Self {
        Self { sender, receiver }
    }
}
