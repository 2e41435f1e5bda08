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

/// Questions consensus and the scheduler ask. They travel on a bounded channel: a full one is
/// answered at once as the executor would answer when it cannot help (no payload, `Unknown`),
/// so no caller ever waits on a backlog.
pub enum Message {
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

/// How many questions may wait for the executor: consensus asks about one per view and the
/// scheduler one pre-build per slot, and the executor takes each off the queue at once (its
/// engine calls run beside its loop), so a full queue means the executor is stuck.
pub const REQUESTS_CAPACITY: usize = 64;

pub struct Mailbox<B: Block> {
    /// Marshal's updates. Marshal leaves at most `max_pending_acks` blocks unacknowledged (and
    /// sends a tip with each), so this queue is bounded by marshal; `report` must not block
    /// and must never drop a block, whose acknowledgement marshal waits for.
    updates: mpsc::UnboundedSender<Update<B>>,
    requests: mpsc::Sender<Message>,
}

impl<B: Block> Clone for Mailbox<B> {
    fn clone(&self) -> Self {
        Self {
            updates: self.updates.clone(),
            requests: self.requests.clone(),
        }
    }
}

/// What the executor reads: marshal's updates and the questions.
pub struct Receivers<B: Block> {
    pub updates: mpsc::UnboundedReceiver<Update<B>>,
    pub requests: mpsc::Receiver<Message>,
}

/// A mailbox and the executor's end of it, with room for `capacity` questions.
pub fn channels<B: Block>(capacity: usize) -> (Mailbox<B>, Receivers<B>) {
    let (updates, updates_receiver) = mpsc::unbounded_channel();
    let (requests, requests_receiver) = mpsc::channel(capacity.max(1));
    (
        Mailbox { updates, requests },
        Receivers {
            updates: updates_receiver,
            requests: requests_receiver,
        },
    )
}

impl<B: Block> Mailbox<B> {
    pub fn new(updates: mpsc::UnboundedSender<Update<B>>, requests: mpsc::Sender<Message>) -> Self {
        Self { updates, requests }
    }

    /// The slot's payload for a leader; `None` if the executor is gone, has none, or is too
    /// far behind to take the question.
    pub async fn canonicalize_and_build(
        &self,
        slot: u64,
        parent: ExecutionTip,
    ) -> Option<ExecutionPayloadV3> {
        let (response, receiver) = oneshot::channel();
        self.requests
            .try_send(Message::CanonicalizeAndBuild {
                slot,
                parent,
                response,
            })
            .ok()?;
        receiver.await.ok().flatten()
    }

    /// Whether `payload` executes validly; `Unknown` if the executor is gone or too far behind
    /// to take the question.
    pub async fn verify(&self, slot: u64, payload: Arc<ExecutionPayloadV3>) -> PayloadVerdict {
        let (response, receiver) = oneshot::channel();
        if self
            .requests
            .try_send(Message::Verify {
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

    /// Fire and forget: a full queue drops the head (the next vote sends a newer one); fails
    /// only if the executor has stopped.
    pub fn canonicalize_head(&self, head: ExecutionTip) -> Result<(), crate::Stopped> {
        self.fire(Message::CanonicalizeHead { head })
    }

    /// Fire and forget: a full queue drops the pre-build (the leader then builds at the slot
    /// boundary); fails only if the executor has stopped.
    pub fn prebuild(&self, slot: u64) -> Result<(), crate::Stopped> {
        self.fire(Message::Prebuild { slot })
    }

    fn fire(&self, message: Message) -> Result<(), crate::Stopped> {
        match self.requests.try_send(message) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(STOPPED),
        }
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

/// Marshal's updates go on their own unbounded queue: marshal never has more than
/// `max_pending_acks` blocks unacknowledged, and `report` must neither block nor drop a block.
impl<B: Block + Send + Sync + 'static> Reporter for Mailbox<B>
where
    B::Digest: Send,
{
    type Activity = Update<B>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        match self.updates.send(activity) {
            Ok(()) => Feedback::Ok,
            Err(_) => Feedback::Closed,
        }
    }
}
