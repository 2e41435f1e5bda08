//! The scheduler's mailbox: head events from the beacon node.

use crate::{Root, Stopped};

const STOPPED: Stopped = Stopped { actor: "scheduler" };
use commonware_utils::channel::{mpsc, oneshot};

#[derive(Debug)]
pub enum Message {
    /// The beacon node saw a new head block for `slot` (its SSE `head` event).
    Head { slot: u64, block_root: Root },
    /// The duties of `epoch` may have changed (the block they depend on is no longer canonical):
    /// fetch them again.
    Refetch { epoch: u64 },
    /// The cluster finalized `slot`'s attestation data before this operator's beacon node
    /// reported the slot's head: the head exists and the cluster agreed on it, so the slot's
    /// committee duty starts now rather than at the head event or a third into the slot.
    Decided { slot: u64 },
    /// Hand the runner no more duties: the node is stopping. Answered once it takes effect.
    Drain { response: oneshot::Sender<()> },
}

#[derive(Clone, Debug)]
pub struct Mailbox {
    sender: mpsc::Sender<Message>,
}

impl Mailbox {
    pub fn new(sender: mpsc::Sender<Message>) -> Self {
        Self { sender }
    }

    /// Reports a head event; fails if the scheduler has stopped (whoever follows the beacon
    /// node's events then stops following).
    pub async fn head(&mut self, slot: u64, block_root: Root) -> Result<(), Stopped> {
        self.sender
            .send(Message::Head { slot, block_root })
            .await
            .map_err(|_| STOPPED)
    }

    /// See [`Message::Decided`]. Never waits: the runner reports from its loop while the
    /// scheduler may be waiting to hand the runner a duty, and a report that does not fit in a
    /// full mailbox only leaves the duty to start at its usual time. Returns whether the
    /// report went in.
    pub fn decided(&mut self, slot: u64) -> bool {
        self.sender.try_send(Message::Decided { slot }).is_ok()
    }

    /// Asks for `epoch`'s duties to be fetched again; fails if the scheduler has stopped.
    pub async fn refetch(&mut self, epoch: u64) -> Result<(), Stopped> {
        self.sender
            .send(Message::Refetch { epoch })
            .await
            .map_err(|_| STOPPED)
    }

    /// Stops handing out duties; returns once the scheduler has stopped (or is gone).
    pub async fn drain(&mut self) {
        let (response, answer) = oneshot::channel();
        if self.sender.send(Message::Drain { response }).await.is_ok() {
            let _ = answer.await;
        }
    }
}
