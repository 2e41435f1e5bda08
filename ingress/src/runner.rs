//! The runner's mailbox: duties to start and decisions the cluster finalized.

use crate::{Decision, Duty};
use commonware_utils::channel::mpsc;
use std::sync::Arc;

#[derive(Debug)]
pub enum Message {
    /// Start a duty's state machine (from the scheduler).
    StartDuty(Duty),
    /// A cluster block was finalized; `decisions` are final and may be signed.
    Finalized {
        height: u64,
        block_slot: u64,
        decisions: Arc<Vec<Decision>>,
    },
}

#[derive(Clone, Debug)]
pub struct Mailbox {
    sender: mpsc::Sender<Message>,
}

impl Mailbox {
    pub fn new(sender: mpsc::Sender<Message>) -> Self {
        Self { sender }
    }

    pub async fn start_duty(&mut self, duty: Duty) {
        let _ = self.sender.send(Message::StartDuty(duty)).await;
    }

    pub async fn finalized(&mut self, height: u64, block_slot: u64, decisions: Arc<Vec<Decision>>) {
        let _ = self
            .sender
            .send(Message::Finalized {
                height,
                block_slot,
                decisions,
            })
            .await;
    }
}

/// What a runner reports about each duty, for metrics and for the simulation's report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DutyEvent {
    Started {
        duty: crate::DutyId,
        at: std::time::SystemTime,
    },
    /// Finalized in a block of the duty's own slot.
    Decided {
        duty: crate::DutyId,
        latency: std::time::Duration,
    },
    /// No block of the duty's slot can be finalized any more (see
    /// [`crate::committee::MAX_BLOCK_AGE_SLOTS`]).
    Missed { duty: crate::DutyId },
}
