//! The committee's mailbox: values waiting for agreement, and the questions consensus asks.

use crate::{Checkpoint, DecidedValue, Decision, DutyId, Stopped};

const STOPPED: Stopped = Stopped { actor: "committee" };
use commonware_utils::channel::{mpsc, oneshot};
use std::{collections::BTreeSet, sync::Arc};

/// How many slots after its own a block of a slot may still be voted for. Until then a duty of
/// that slot can still be decided; after it, it is missed for good.
pub const MAX_BLOCK_AGE_SLOTS: u64 = 2;

/// The size of an attestation offer on the wire: one encoded
/// [`AttestationData`](crate::AttestationData).
///
/// An operator whose beacon node answered its slot's attestation data offers it to every peer,
/// so that a leader whose own node has not seen the slot's head yet can propose what f+1
/// operators' nodes agree on instead of holding the slot up (the committee's `offers`). The
/// cluster's committee is the only one an operator attests for, so the data names the duty.
pub const ATTESTATION_OFFER_SIZE: usize = 8 + 8 + 32 + (8 + 32) * 2;

/// What the leader puts in its next cluster block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The slot the block is for (the leader's slot clock when it proposed).
    pub slot: u64,
    pub decisions: Vec<Decision>,
}

#[derive(Debug)]
pub enum Message {
    /// A runner's duty value waiting for agreement, with the finalized checkpoint its beacon
    /// node knows (what followers check the leader's values against).
    Submit {
        duty: DutyId,
        value: DecidedValue,
        finalized: Checkpoint,
    },
    /// Consensus asks this operator, as leader, for the next block's contents. `included` holds
    /// the duties already decided in the not-yet-finalized ancestry, which must not repeat.
    /// Answered when there is work, or with an empty batch once the heartbeat is due; dropped
    /// unanswered once enough operators voted to skip `view` (see [`Message::Nullify`]).
    Propose {
        view: u64,
        parent_slot: u64,
        included: BTreeSet<DutyId>,
        response: oneshot::Sender<Batch>,
    },
    /// Consensus asks whether this operator can vote for a block of `slot` with `decisions`
    /// (structure, ancestry and duplicates already checked). Stays unanswered while this
    /// operator cannot check yet.
    Verify {
        slot: u64,
        decisions: Arc<Vec<Decision>>,
        response: oneshot::Sender<bool>,
    },
    /// The committee duties this operator's own schedule holds for an epoch: enough to vouch
    /// for a leader's value before this operator's runner has started the duty itself.
    /// `complete` names the epoch when `duties` are all of it (attesters, proposers, sync
    /// committee): a duty of that epoch outside them does not exist, and is refused at once
    /// rather than waited for.
    Expect {
        complete: Option<u64>,
        duties: Vec<DutyId>,
    },
    /// Decisions finalized at some height: their duties leave the pool.
    Finalized { decisions: Arc<Vec<Decision>> },
    /// Operator `signer` (its participant index) voted to skip consensus view `view`. Once f+1
    /// have, at least one honest operator did, and an honest operator that voted to skip never
    /// votes for the view's block: a leader still holding that view's request gives it up, so
    /// the view is skipped at once rather than after the certification timeout.
    Nullify { view: u64, signer: u32 },
    /// Whether work besides duty values waits for a block (a cluster-run AVS's tasks): while
    /// it does, a leader proposes at once instead of waiting for duties or the heartbeat.
    OtherWork(bool),
}

#[derive(Clone, Debug)]
pub struct Mailbox {
    sender: mpsc::Sender<Message>,
}

impl Mailbox {
    pub fn new(sender: mpsc::Sender<Message>) -> Self {
        Self { sender }
    }

    /// A value for agreement; fails if the committee has stopped.
    pub async fn submit(
        &mut self,
        duty: DutyId,
        value: DecidedValue,
        finalized: Checkpoint,
    ) -> Result<(), Stopped> {
        self.sender
            .send(Message::Submit {
                duty,
                value,
                finalized,
            })
            .await
            .map_err(|_| STOPPED)
    }

    /// Resolves to `None` if the committee stopped before answering.
    /// Resolves to `None` if the committee stopped or gave the view up.
    pub async fn propose(
        &mut self,
        view: u64,
        parent_slot: u64,
        included: BTreeSet<DutyId>,
    ) -> Option<Batch> {
        let (response, receiver) = oneshot::channel();
        self.sender
            .send(Message::Propose {
                view,
                parent_slot,
                included,
                response,
            })
            .await
            .ok()?;
        receiver.await.ok()
    }

    /// Resolves to `None` if the committee stopped before answering.
    pub async fn verify(&mut self, slot: u64, decisions: Arc<Vec<Decision>>) -> Option<bool> {
        let (response, receiver) = oneshot::channel();
        self.sender
            .send(Message::Verify {
                slot,
                decisions,
                response,
            })
            .await
            .ok()?;
        receiver.await.ok()
    }

    /// Duties this operator will vouch for (see [`Message::Expect`]).
    pub async fn expect(&mut self, duties: Vec<DutyId>) -> Result<(), Stopped> {
        self.sender
            .send(Message::Expect {
                complete: None,
                duties,
            })
            .await
            .map_err(|_| STOPPED)
    }

    /// Every duty of `epoch` in this operator's schedule (see [`Message::Expect`]).
    pub async fn expect_epoch(&mut self, epoch: u64, duties: Vec<DutyId>) -> Result<(), Stopped> {
        self.sender
            .send(Message::Expect {
                complete: Some(epoch),
                duties,
            })
            .await
            .map_err(|_| STOPPED)
    }

    /// See [`Message::Nullify`]. Never waits: consensus reports from its voting loop, and a
    /// vote that does not fit in a full mailbox only costs a faster skip.
    pub fn nullify(&mut self, view: u64, signer: u32) {
        let _ = self.sender.try_send(Message::Nullify { view, signer });
    }

    /// See [`Message::OtherWork`].
    pub async fn other_work(&mut self, waiting: bool) -> Result<(), Stopped> {
        self.sender
            .send(Message::OtherWork(waiting))
            .await
            .map_err(|_| STOPPED)
    }

    pub async fn finalized(&mut self, decisions: Arc<Vec<Decision>>) -> Result<(), Stopped> {
        self.sender
            .send(Message::Finalized { decisions })
            .await
            .map_err(|_| STOPPED)
    }
}

#[cfg(test)]
mod offer_tests {
    use super::*;
    use crate::AttestationData;
    use commonware_codec::EncodeSize as _;
    use commonware_cryptography::sha256::Digest;

    #[test]
    fn an_offer_is_exactly_one_attestation_data() {
        let data = AttestationData {
            slot: u64::MAX,
            index: 0,
            beacon_block_root: Digest([7; 32]),
            source: Checkpoint {
                epoch: 1,
                root: Digest([1; 32]),
            },
            target: Checkpoint {
                epoch: 2,
                root: Digest([2; 32]),
            },
        };
        assert_eq!(data.encode_size(), ATTESTATION_OFFER_SIZE);
    }
}
