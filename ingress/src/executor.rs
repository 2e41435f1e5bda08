//! The executor's mailbox: finalized cluster blocks from marshal, in order, and the execution
//! questions consensus and the scheduler ask.
//!
//! It is marshal's reporter. The block type is a parameter because the cluster block lives in
//! the `marshal` crate, which itself speaks this vocabulary.

use cohort_engine::{B256, ExecutionPayloadV3, ExecutionTip};
use commonware_actor::Feedback;
use commonware_consensus::{Block, Reporter, marshal::Update};
use commonware_cryptography::{Hasher as _, Sha256};
use commonware_utils::channel::{mpsc, oneshot};
use std::sync::Arc;

/// What a follower may conclude about a block's payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayloadVerdict {
    Valid,
    Invalid(String),
    /// The engine cannot tell yet (it is syncing, or unreachable); do not vote for it now.
    Unknown,
}

pub enum Message<B: Block> {
    /// Marshal's update: a finalized block to acknowledge once processed, or a new tip.
    Update(Update<B>),
    /// The leader of a block for `slot`, whose parent's execution head is `parent`, wants the
    /// slot's payload: the pre-built one if it is still built on `parent`, else one built now.
    /// `None` when no payload can be had (the block then goes without one).
    CanonicalizeAndBuild {
        slot: u64,
        parent: ExecutionTip,
        response: oneshot::Sender<Option<ExecutionPayloadV3>>,
    },
    /// A follower asks whether `payload` (carried by a block of `slot`) executes validly.
    Verify {
        slot: u64,
        payload: Arc<ExecutionPayloadV3>,
        response: oneshot::Sender<PayloadVerdict>,
    },
    /// Consensus is voting for a block whose execution head is `head`: make it the engine's
    /// head (an unchanged head is not sent again).
    CanonicalizeHead { head: ExecutionTip },
    /// The last interval before `slot` began: start building `slot`'s payload on the current
    /// head, so a leader of `slot` does not wait for a build at the slot boundary.
    Prebuild { slot: u64 },
}

pub struct Mailbox<B: Block> {
    sender: mpsc::UnboundedSender<Message<B>>,
}

impl<B: Block> Clone for Mailbox<B> {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
        }
    }
}

impl<B: Block> Mailbox<B> {
    pub fn new(sender: mpsc::UnboundedSender<Message<B>>) -> Self {
        Self { sender }
    }

    /// The slot's payload for a leader; `None` if the executor is gone or has none.
    pub async fn canonicalize_and_build(
        &self,
        slot: u64,
        parent: ExecutionTip,
    ) -> Option<ExecutionPayloadV3> {
        let (response, receiver) = oneshot::channel();
        self.sender
            .send(Message::CanonicalizeAndBuild {
                slot,
                parent,
                response,
            })
            .ok()?;
        receiver.await.ok().flatten()
    }

    /// Whether `payload` executes validly; `Unknown` if the executor is gone.
    pub async fn verify(&self, slot: u64, payload: Arc<ExecutionPayloadV3>) -> PayloadVerdict {
        let (response, receiver) = oneshot::channel();
        if self
            .sender
            .send(Message::Verify {
                slot,
                payload,
                response,
            })
            .is_err()
        {
            return PayloadVerdict::Unknown;
        }
        receiver.await.unwrap_or(PayloadVerdict::Unknown)
    }

    /// Fire and forget (no answer awaited); fails if the executor has stopped.
    pub fn canonicalize_head(&self, head: ExecutionTip) -> Result<(), crate::Stopped> {
        self.sender
            .send(Message::CanonicalizeHead { head })
            .map_err(|_| STOPPED)
    }

    /// Fails if the executor has stopped.
    pub fn prebuild(&self, slot: u64) -> Result<(), crate::Stopped> {
        self.sender
            .send(Message::Prebuild { slot })
            .map_err(|_| STOPPED)
    }
}

const STOPPED: crate::Stopped = crate::Stopped { actor: "executor" };

/// The `parent_beacon_block_root` of `slot`'s payload. Derived from the slot alone, not from
/// the cluster block that will carry it, so a payload pre-built before that block exists stays
/// usable whichever cluster block ends up its parent.
pub fn slot_root(slot: u64) -> B256 {
    slot_hash(b"cohort-execution-slot", slot)
}

/// The `prev_randao` of `slot`'s payload: deterministic, since the cluster chain has no
/// RANDAO of its own; every builder of the slot uses the same value.
pub fn slot_randao(slot: u64) -> B256 {
    slot_hash(b"cohort-execution-randao", slot)
}

fn slot_hash(domain: &[u8], slot: u64) -> B256 {
    let digest = Sha256::hash(&[domain, &slot.to_be_bytes()]);
    B256::from_slice(digest.as_ref())
}

/// Unbounded on purpose: marshal never has more than `max_pending_acks` blocks unacknowledged,
/// consensus asks one question per view, and the scheduler one pre-build per slot, so the
/// queue is bounded by those, and `report` must not block.
impl<B: Block + Send + Sync + 'static> Reporter for Mailbox<B>
where
    B::Digest: Send,
{
    type Activity = Update<B>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        match self.sender.send(Message::Update(activity)) {
            Ok(()) => Feedback::Ok,
            Err(_) => Feedback::Closed,
        }
    }
}
