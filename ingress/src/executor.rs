//! The executor's mailbox: finalized cluster blocks from marshal, in order.
//!
//! It is marshal's reporter. The block type is a parameter because the cluster block lives in
//! the `marshal` crate, which itself speaks this vocabulary.

use commonware_actor::Feedback;
use commonware_consensus::{Block, Reporter, marshal::Update};
use commonware_utils::channel::mpsc;

pub enum Message<B: Block> {
    /// Marshal's update: a finalized block to acknowledge once processed, or a new tip.
    Update(Update<B>),
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
}

/// Unbounded on purpose: marshal never has more than `max_pending_acks` blocks unacknowledged,
/// so the queue is bounded by marshal's own window, and `report` must not block.
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
