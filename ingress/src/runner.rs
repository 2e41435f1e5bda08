//! The runner's mailbox: duties to start and decisions the cluster finalized.

use crate::{Decision, Duty, Stopped};

const STOPPED: Stopped = Stopped { actor: "runner" };
use commonware_utils::channel::{mpsc, oneshot};
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
    /// Decisions of a block this operator processed before it (re)started: the runner did
    /// what it could for them in its previous life and the peers have moved on, so a duty among
    /// them that starts now is not run again (it would wait for partials no peer sends again,
    /// and end failed or missed though the cluster decided it).
    Recalled {
        height: u64,
        block_slot: u64,
        decisions: Arc<Vec<Decision>>,
    },
    /// How many duties are still running (a stopping node waits for them).
    InFlight { response: oneshot::Sender<usize> },
    /// The node is stopping: start no more duties, end at once those the cluster has not
    /// decided (the operators still running decide and sign them; this one would only wait
    /// for a decision that, in a whole-cluster stop, never comes), and give the decided ones
    /// about a slot for their post-consensus quorum. Answered with the duties still running.
    Drain { response: oneshot::Sender<usize> },
}

#[derive(Clone, Debug)]
pub struct Mailbox {
    sender: mpsc::Sender<Message>,
}

impl Mailbox {
    pub fn new(sender: mpsc::Sender<Message>) -> Self {
        Self { sender }
    }

    /// Fails if the runner has stopped.
    pub async fn start_duty(&mut self, duty: Duty) -> Result<(), Stopped> {
        self.sender
            .send(Message::StartDuty(duty))
            .await
            .map_err(|_| STOPPED)
    }

    /// Fails if the runner has stopped: the decisions would go unsigned by this operator.
    pub async fn finalized(
        &mut self,
        height: u64,
        block_slot: u64,
        decisions: Arc<Vec<Decision>>,
    ) -> Result<(), Stopped> {
        self.sender
            .send(Message::Finalized {
                height,
                block_slot,
                decisions,
            })
            .await
            .map_err(|_| STOPPED)
    }

    /// See [`Message::Recalled`]; fails if the runner has stopped.
    pub async fn recalled(
        &mut self,
        height: u64,
        block_slot: u64,
        decisions: Arc<Vec<Decision>>,
    ) -> Result<(), Stopped> {
        self.sender
            .send(Message::Recalled {
                height,
                block_slot,
                decisions,
            })
            .await
            .map_err(|_| STOPPED)
    }

    /// Starts draining (see [`Message::Drain`]): the duties still running after the undecided
    /// ones were cancelled, or `None` if the runner has stopped.
    pub async fn drain(&mut self) -> Option<usize> {
        let (response, answer) = oneshot::channel();
        self.sender.send(Message::Drain { response }).await.ok()?;
        answer.await.ok()
    }

    /// Duties still running, or `None` if the runner has stopped.
    pub async fn in_flight(&mut self) -> Option<usize> {
        let (response, answer) = oneshot::channel();
        self.sender
            .send(Message::InFlight { response })
            .await
            .ok()?;
        answer.await.ok()
    }
}

/// Something a share is about to sign that slashing protection must allow first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SignRequest {
    Attestation {
        validator_index: u64,
        source_epoch: u64,
        target_epoch: u64,
        signing_root: [u8; 32],
    },
    Block {
        validator_index: u64,
        slot: u64,
        signing_root: [u8; 32],
    },
}

impl SignRequest {
    pub fn validator_index(&self) -> u64 {
        match self {
            Self::Attestation {
                validator_index, ..
            }
            | Self::Block {
                validator_index, ..
            } => *validator_index,
        }
    }
}

/// How a duty ended after its value was decided (or its pre-consensus said there is nothing to do).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every signed object the duty owes was submitted.
    Success,
    /// Some were submitted, some could not be (no quorum of valid partials in time).
    Partial { submitted: usize, expected: usize },
    /// The selection proof says this validator does not aggregate in this slot.
    NotSelected,
    /// Nothing was submitted.
    Failed { reason: String },
    /// The cluster decided the duty in a block this operator processed before it restarted:
    /// its previous life took its part; nothing is run again.
    DecidedBeforeRestart,
    /// The node stopped before the cluster decided the duty: this operator took no part in it
    /// after that (the operators still running decide and sign it).
    Cancelled,
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
    /// The share signed these objects (after slashing protection allowed them): what the
    /// simulation checks for conflicting signatures.
    Signed { requests: Vec<SignRequest> },
    /// Signed objects of the duty were handed to the duty sink.
    Submitted {
        duty: crate::DutyId,
        objects: usize,
        at: std::time::SystemTime,
    },
    /// The duty's work is over.
    Finished {
        duty: crate::DutyId,
        outcome: Outcome,
    },
    /// No block of the duty's slot can be finalized any more (see
    /// [`crate::committee::MAX_BLOCK_AGE_SLOTS`]).
    Missed { duty: crate::DutyId },
    /// A duty this runner reported [`DutyEvent::Missed`] was decided by the cluster after all:
    /// the finalized block reached this operator only after the duty's window (it was cut off,
    /// or behind). This operator did not sign it; the others did.
    DecidedAfterMissed {
        duty: crate::DutyId,
        /// The finalized height that decided it.
        height: u64,
    },
    /// A finalized block decided a duty of a slot before this runner started: the operator
    /// was down (or cut off and then restarted) while the cluster decided it, so this process
    /// never ran it and did not sign it. If the operator's previous run reported it
    /// [`DutyEvent::Missed`], this is the correction that run could no longer send.
    DecidedWhileAway {
        duty: crate::DutyId,
        /// The finalized height that decided it.
        height: u64,
    },
    /// A peer's partial signature was dropped as invalid: it failed verification against the
    /// sender's share, or names a validator the cluster does not run. One event per partial,
    /// as the runner's `partials_invalid{sender}` metric counts them, so an observer can tell
    /// which operator misbehaves without reading metrics.
    InvalidPartial {
        /// The sending operator (share index + 1, as the metric's `sender` label).
        sender: crate::OperatorId,
        /// The slot the sender's message was for.
        slot: u64,
        validator_index: u64,
    },
}
