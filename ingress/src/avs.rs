//! Tasks of a cluster-run AVS: a task one operator receives is ordered through the cluster
//! chain, every operator runs its own performer on it, the cluster agrees on one output, and
//! that output leaves signed by the cluster's threshold BN254 key.
//!
//! Two decisions travel in cluster blocks ([`TaskDecision`]): the order of a task and the
//! output the cluster settled on. Between operators, on a channel of their own, go the tasks
//! received (so whoever leads next can order them), each performer's output digest (so a
//! leader proposes only an output enough operators computed, and a follower whose performer is
//! slow can still vouch for it), and the partial signatures of the two signing rounds.

use bytes::{BufMut, Bytes};
use commonware_codec::{
    Buf, EncodeSize, Error as CodecError, FixedSize, RangeCfg, Read, ReadExt, Write,
};
use commonware_utils::channel::{mpsc, oneshot};
use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

use crate::{Stopped, keys::to_hex};

const STOPPED: Stopped = Stopped { actor: "avs" };

/// Largest task payload the cluster orders. A cluster block carries every task it orders, so
/// the bound is far below Hourglass's own (a task larger than this is refused at submission
/// with an error that says so).
pub const MAX_TASK_PAYLOAD: usize = 16 * 1024;
/// Largest performer output the cluster agrees on and signs.
pub const MAX_TASK_OUTPUT: usize = 16 * 1024;
/// Largest aggregator signature carried with a task (ECDSA is 65 bytes, BN254 64).
pub const MAX_AGGREGATOR_SIGNATURE: usize = 128;
/// Most task decisions (orders and outputs) one cluster block carries.
pub const MAX_TASK_DECISIONS: usize = 8192;
/// Most bytes the task decisions of one cluster block take. With small tasks a block carries
/// thousands, so the cluster orders and settles thousands of tasks per block; a block of large
/// ones carries fewer.
pub const MAX_TASK_DECISION_BYTES: usize = 1024 * 1024;
/// Length of one encoded BN254 partial signature: the operator index and a G1 point.
pub const PARTIAL_LENGTH: usize = 68;

/// A task's id: the 32 bytes of Hourglass's `0x`-hex `task_id`.
pub type TaskId = [u8; 32];

/// A task as the cluster orders it: what every operator needs to run it and to sign its result,
/// and the aggregator's signature so that every operator checks the task for itself instead of
/// trusting the one that received it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterTask {
    pub task_id: TaskId,
    pub avs: [u8; 20],
    pub aggregator: [u8; 20],
    pub operator_set_id: u32,
    pub reference_timestamp: u32,
    pub task_block_number: u64,
    /// Unix time in milliseconds after which nobody waits for the result: the caller's deadline.
    pub deadline_ms: u64,
    pub payload: Bytes,
    pub aggregator_signature: Bytes,
}

impl fmt::Debug for ClusterTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterTask")
            .field("task_id", &to_hex(&self.task_id))
            .field("avs", &to_hex(&self.avs))
            .field("deadline_ms", &self.deadline_ms)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl ClusterTask {
    /// The caller's deadline as a time.
    pub fn deadline(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.deadline_ms)
    }

    /// Fixed part of the encoding: ids, addresses, numbers.
    const FIXED: usize = 32 + 20 + 20 + 4 + 4 + 8 + 8;
    pub const MAX_ENCODE_SIZE: usize =
        Self::FIXED + 5 + MAX_TASK_PAYLOAD + 5 + MAX_AGGREGATOR_SIGNATURE;
}

impl Write for ClusterTask {
    fn write(&self, buf: &mut impl BufMut) {
        self.task_id.write(buf);
        self.avs.write(buf);
        self.aggregator.write(buf);
        self.operator_set_id.write(buf);
        self.reference_timestamp.write(buf);
        self.task_block_number.write(buf);
        self.deadline_ms.write(buf);
        self.payload.write(buf);
        self.aggregator_signature.write(buf);
    }
}

impl EncodeSize for ClusterTask {
    fn encode_size(&self) -> usize {
        Self::FIXED + self.payload.encode_size() + self.aggregator_signature.encode_size()
    }
}

impl Read for ClusterTask {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            task_id: <[u8; 32]>::read(buf)?,
            avs: <[u8; 20]>::read(buf)?,
            aggregator: <[u8; 20]>::read(buf)?,
            operator_set_id: u32::read(buf)?,
            reference_timestamp: u32::read(buf)?,
            task_block_number: u64::read(buf)?,
            deadline_ms: u64::read(buf)?,
            payload: Bytes::read_cfg(buf, &RangeCfg::new(0..=MAX_TASK_PAYLOAD))?,
            aggregator_signature: Bytes::read_cfg(
                buf,
                &RangeCfg::new(0..=MAX_AGGREGATOR_SIGNATURE),
            )?,
        })
    }
}

/// What a cluster block decides about tasks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskDecision {
    /// Run this task: every operator's performer executes it once the block is finalized. The
    /// first finalized order of a task id counts; a later one is ignored.
    Order(ClusterTask),
    /// The output the cluster signs for an ordered task. Only the first finalized output of a
    /// task counts, and an operator signs nothing else for it, ever.
    Output { task_id: TaskId, output: Bytes },
}

impl TaskDecision {
    pub const MAX_ENCODE_SIZE: usize =
        1 + if ClusterTask::MAX_ENCODE_SIZE > 32 + 5 + MAX_TASK_OUTPUT {
            ClusterTask::MAX_ENCODE_SIZE
        } else {
            32 + 5 + MAX_TASK_OUTPUT
        };

    pub fn task_id(&self) -> &TaskId {
        match self {
            Self::Order(task) => &task.task_id,
            Self::Output { task_id, .. } => task_id,
        }
    }

    /// Orders sort before outputs, then by task: one canonical order per block.
    pub fn sort_key(&self) -> (u8, TaskId) {
        match self {
            Self::Order(task) => (0, task.task_id),
            Self::Output { task_id, .. } => (1, *task_id),
        }
    }
}

impl Write for TaskDecision {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            Self::Order(task) => {
                0u8.write(buf);
                task.write(buf);
            }
            Self::Output { task_id, output } => {
                1u8.write(buf);
                task_id.write(buf);
                output.write(buf);
            }
        }
    }
}

impl EncodeSize for TaskDecision {
    fn encode_size(&self) -> usize {
        1 + match self {
            Self::Order(task) => task.encode_size(),
            Self::Output { output, .. } => 32 + output.encode_size(),
        }
    }
}

impl Read for TaskDecision {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        match u8::read(buf)? {
            0 => Ok(Self::Order(ClusterTask::read(buf)?)),
            1 => Ok(Self::Output {
                task_id: <[u8; 32]>::read(buf)?,
                output: Bytes::read_cfg(buf, &RangeCfg::new(0..=MAX_TASK_OUTPUT))?,
            }),
            other => Err(CodecError::InvalidEnum(other)),
        }
    }
}

/// Which of a result's two signatures a partial is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureRound {
    Result,
    Auth,
}

/// One operator's performer output for an ordered task, by digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    pub task_id: TaskId,
    pub digest: [u8; 32],
}

/// One operator's partial signature for one round of a decided output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskPartial {
    pub task_id: TaskId,
    pub round: SignatureRound,
    pub partial: [u8; PARTIAL_LENGTH],
}

impl TaskPartial {
    const SIZE: usize = 32 + 1 + PARTIAL_LENGTH;
}

/// What operators of a cluster-run AVS send each other. Each message batches what one turn of
/// the sender's run loop produced (every report of the performers that answered, every partial
/// of the block just finalized), so the message count stays flat as the task load grows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskMessage {
    /// Tasks this operator received and checked, for whoever leads next to order.
    Tasks(Vec<ClusterTask>),
    /// The digests of what this operator's performer gave for ordered tasks.
    Reports(Vec<Report>),
    /// This operator's partial signatures for decided outputs.
    Partials(Vec<TaskPartial>),
}

impl TaskMessage {
    /// Most items (tasks, reports, partials) in one message.
    pub const MAX_ITEMS: usize = 4096;
    /// Most bytes the tasks of one [`TaskMessage::Tasks`] take: a sender splits a larger batch.
    pub const MAX_TASK_BYTES: usize = 1024 * 1024;
    pub const MAX_ENCODE_SIZE: usize = 1 + 5 + {
        let partials = Self::MAX_ITEMS * TaskPartial::SIZE;
        if partials > Self::MAX_TASK_BYTES {
            partials
        } else {
            Self::MAX_TASK_BYTES
        }
    };

    /// The messages that carry `tasks`, each within the bounds a receiver enforces.
    pub fn tasks(tasks: Vec<ClusterTask>) -> Vec<Self> {
        let mut messages = Vec::new();
        let mut batch = Vec::new();
        let mut bytes = 0;
        for task in tasks {
            let size = task.encode_size();
            if !batch.is_empty()
                && (batch.len() == Self::MAX_ITEMS || bytes + size > Self::MAX_TASK_BYTES)
            {
                messages.push(Self::Tasks(std::mem::take(&mut batch)));
                bytes = 0;
            }
            bytes += size;
            batch.push(task);
        }
        if !batch.is_empty() {
            messages.push(Self::Tasks(batch));
        }
        messages
    }

    /// The messages that carry `reports`.
    pub fn reports(reports: Vec<Report>) -> Vec<Self> {
        reports
            .chunks(Self::MAX_ITEMS)
            .map(|chunk| Self::Reports(chunk.to_vec()))
            .collect()
    }

    /// The messages that carry `partials`.
    pub fn partials(partials: Vec<TaskPartial>) -> Vec<Self> {
        partials
            .chunks(Self::MAX_ITEMS)
            .map(|chunk| Self::Partials(chunk.to_vec()))
            .collect()
    }
}

fn round_tag(round: SignatureRound) -> u8 {
    match round {
        SignatureRound::Result => 0,
        SignatureRound::Auth => 1,
    }
}

impl Write for TaskMessage {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            Self::Tasks(tasks) => {
                0u8.write(buf);
                tasks.write(buf);
            }
            Self::Reports(reports) => {
                1u8.write(buf);
                reports.len().write(buf);
                for report in reports {
                    report.task_id.write(buf);
                    report.digest.write(buf);
                }
            }
            Self::Partials(partials) => {
                2u8.write(buf);
                partials.len().write(buf);
                for partial in partials {
                    partial.task_id.write(buf);
                    round_tag(partial.round).write(buf);
                    partial.partial.write(buf);
                }
            }
        }
    }
}

impl EncodeSize for TaskMessage {
    fn encode_size(&self) -> usize {
        1 + match self {
            Self::Tasks(tasks) => tasks.encode_size(),
            Self::Reports(reports) => reports.len().encode_size() + reports.len() * 64,
            Self::Partials(partials) => {
                partials.len().encode_size() + partials.len() * TaskPartial::SIZE
            }
        }
    }
}

/// Reads a batch's length: at most [`TaskMessage::MAX_ITEMS`], and backed by the bytes left at
/// `min_item` bytes each, so a length prefix alone never buys an allocation.
fn read_count(buf: &mut impl Buf, min_item: usize) -> Result<usize, CodecError> {
    let count = usize::read_cfg(buf, &RangeCfg::new(1..=TaskMessage::MAX_ITEMS))?;
    if count.saturating_mul(min_item) > buf.remaining() {
        return Err(CodecError::EndOfBuffer);
    }
    Ok(count)
}

impl Read for TaskMessage {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        match u8::read(buf)? {
            0 => {
                let count = read_count(buf, ClusterTask::FIXED + 2)?;
                let start = buf.remaining();
                let mut tasks = Vec::with_capacity(count);
                for _ in 0..count {
                    tasks.push(ClusterTask::read(buf)?);
                    if start - buf.remaining() > Self::MAX_TASK_BYTES {
                        return Err(CodecError::Invalid(
                            "TaskMessage",
                            "tasks exceed the batch's byte bound",
                        ));
                    }
                }
                Ok(Self::Tasks(tasks))
            }
            1 => {
                let count = read_count(buf, 64)?;
                let mut reports = Vec::with_capacity(count);
                for _ in 0..count {
                    reports.push(Report {
                        task_id: <[u8; 32]>::read(buf)?,
                        digest: <[u8; 32]>::read(buf)?,
                    });
                }
                Ok(Self::Reports(reports))
            }
            2 => {
                let count = read_count(buf, TaskPartial::SIZE)?;
                let mut partials = Vec::with_capacity(count);
                for _ in 0..count {
                    let task_id = <[u8; 32]>::read(buf)?;
                    let round = match u8::read(buf)? {
                        0 => SignatureRound::Result,
                        1 => SignatureRound::Auth,
                        other => return Err(CodecError::InvalidEnum(other)),
                    };
                    partials.push(TaskPartial {
                        task_id,
                        round,
                        partial: <[u8; PARTIAL_LENGTH]>::read(buf)?,
                    });
                }
                Ok(Self::Partials(partials))
            }
            other => Err(CodecError::InvalidEnum(other)),
        }
    }
}

const _: () = assert!(<[u8; PARTIAL_LENGTH]>::SIZE == PARTIAL_LENGTH);

/// A task's result as the cluster signed it: what the operator that received the task answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedTask {
    pub task_id: TaskId,
    pub output: Bytes,
    /// The cluster key's signature over the result's certificate digest (64 bytes, G1).
    pub result_signature: Vec<u8>,
    /// The cluster key's signature binding the cluster's operator address to the result.
    pub auth_signature: Vec<u8>,
}

/// Why a task submitted to this operator ends without a signed result.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// The task itself is wrong (malformed, too large, badly signed, for an unknown AVS, or past
    /// its deadline): nothing was ordered.
    #[error("task refused: {0}")]
    Invalid(String),
    /// Too many tasks wait for ordering; the caller may retry later.
    #[error("task refused: {0}")]
    Busy(String),
    /// The deadline passed before the cluster agreed on and signed an output.
    #[error("no signed result by the task's deadline: {0}")]
    NoAgreement(String),
    /// This operator will not sign the output the cluster decided (it signed another one for the
    /// task, or forgot whether it did), or cannot record that it signs.
    #[error("this operator refuses to sign the task's output: {0}")]
    Refused(String),
    /// The node is stopping.
    #[error("the node is stopping")]
    Stopped,
}

#[derive(Debug)]
pub enum Message {
    /// A task received from a caller: checked, shared for ordering, answered once signed.
    Submit {
        task: ClusterTask,
        response: oneshot::Sender<Result<SignedTask, TaskError>>,
    },
    /// Consensus asks this operator, as leader, for the task decisions of its next block.
    Propose {
        response: oneshot::Sender<Vec<TaskDecision>>,
    },
    /// Consensus asks whether this operator can vote for a block with these task decisions.
    /// Stays unanswered while this operator cannot tell yet (its performer has not answered).
    Verify {
        decisions: Arc<Vec<TaskDecision>>,
        response: oneshot::Sender<bool>,
    },
    /// Task decisions finalized at `height`.
    Finalized {
        height: u64,
        decisions: Arc<Vec<TaskDecision>>,
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

    /// Resolves when the cluster signed the task's result, or with why it did not.
    pub async fn submit(&mut self, task: ClusterTask) -> Result<SignedTask, TaskError> {
        let (response, receiver) = oneshot::channel();
        self.sender
            .send(Message::Submit { task, response })
            .await
            .map_err(|_| TaskError::Stopped)?;
        receiver.await.map_err(|_| TaskError::Stopped)?
    }

    /// No decisions if the actor stopped.
    pub async fn propose(&mut self) -> Vec<TaskDecision> {
        let (response, receiver) = oneshot::channel();
        if self
            .sender
            .send(Message::Propose { response })
            .await
            .is_err()
        {
            return Vec::new();
        }
        receiver.await.unwrap_or_default()
    }

    /// `false` if the actor stopped before answering.
    pub async fn verify(&mut self, decisions: Arc<Vec<TaskDecision>>) -> bool {
        let (response, receiver) = oneshot::channel();
        if self
            .sender
            .send(Message::Verify {
                decisions,
                response,
            })
            .await
            .is_err()
        {
            return false;
        }
        receiver.await.unwrap_or(false)
    }

    pub async fn finalized(
        &mut self,
        height: u64,
        decisions: Arc<Vec<TaskDecision>>,
    ) -> Result<(), Stopped> {
        self.sender
            .send(Message::Finalized { height, decisions })
            .await
            .map_err(|_| STOPPED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{DecodeExt, Encode};

    fn task() -> ClusterTask {
        ClusterTask {
            task_id: [7; 32],
            avs: [1; 20],
            aggregator: [2; 20],
            operator_set_id: 3,
            reference_timestamp: 4,
            task_block_number: 5,
            deadline_ms: 6,
            payload: Bytes::from_static(b"payload"),
            aggregator_signature: Bytes::from(vec![9u8; 65]),
        }
    }

    #[test]
    fn decisions_and_messages_round_trip() {
        for decision in [
            TaskDecision::Order(task()),
            TaskDecision::Output {
                task_id: [1; 32],
                output: Bytes::from_static(b"out"),
            },
        ] {
            let bytes = decision.encode();
            assert_eq!(bytes.len(), decision.encode_size());
            assert_eq!(TaskDecision::decode(bytes).unwrap(), decision);
        }
        for message in [
            TaskMessage::Tasks(vec![task(), task()]),
            TaskMessage::Reports(vec![Report {
                task_id: [1; 32],
                digest: [2; 32],
            }]),
            TaskMessage::Partials(vec![
                TaskPartial {
                    task_id: [1; 32],
                    round: SignatureRound::Auth,
                    partial: [3; PARTIAL_LENGTH],
                },
                TaskPartial {
                    task_id: [2; 32],
                    round: SignatureRound::Result,
                    partial: [4; PARTIAL_LENGTH],
                },
            ]),
        ] {
            let bytes = message.encode();
            assert!(bytes.len() <= TaskMessage::MAX_ENCODE_SIZE);
            assert_eq!(TaskMessage::decode(bytes).unwrap(), message);
        }
    }

    #[test]
    fn oversized_payloads_and_outputs_are_refused() {
        let mut big = task();
        big.payload = Bytes::from(vec![0u8; MAX_TASK_PAYLOAD + 1]);
        assert!(ClusterTask::decode(big.encode()).is_err());
        let output = TaskDecision::Output {
            task_id: [1; 32],
            output: Bytes::from(vec![0u8; MAX_TASK_OUTPUT + 1]),
        };
        assert!(TaskDecision::decode(output.encode()).is_err());
    }

    #[test]
    fn batches_are_split_within_the_bounds_a_receiver_enforces() {
        let mut big = task();
        big.payload = Bytes::from(vec![0u8; MAX_TASK_PAYLOAD]);
        // 200 tasks of 16 KiB: more than one message's byte bound.
        let messages = TaskMessage::tasks(vec![big; 200]);
        assert!(messages.len() > 1);
        let mut carried = 0;
        for message in &messages {
            let bytes = message.encode();
            assert!(bytes.len() <= TaskMessage::MAX_ENCODE_SIZE);
            let TaskMessage::Tasks(tasks) = TaskMessage::decode(bytes).unwrap() else {
                panic!("not tasks");
            };
            carried += tasks.len();
        }
        assert_eq!(carried, 200);
        let partial = TaskPartial {
            task_id: [1; 32],
            round: SignatureRound::Result,
            partial: [3; PARTIAL_LENGTH],
        };
        let messages = TaskMessage::partials(vec![partial; TaskMessage::MAX_ITEMS + 1]);
        assert_eq!(messages.len(), 2);
        for message in &messages {
            assert!(message.encode().len() <= TaskMessage::MAX_ENCODE_SIZE);
        }
    }

    #[test]
    fn a_batch_longer_than_its_bytes_or_bound_is_refused() {
        // A count the bytes do not back.
        let mut bytes = vec![2u8];
        4096usize.write(&mut bytes);
        assert!(TaskMessage::decode(Bytes::from(bytes)).is_err());
        // A count above the bound.
        let mut bytes = vec![1u8];
        (TaskMessage::MAX_ITEMS + 1).write(&mut bytes);
        bytes.extend(std::iter::repeat_n(0u8, 64 * (TaskMessage::MAX_ITEMS + 1)));
        assert!(TaskMessage::decode(Bytes::from(bytes)).is_err());
        // An empty batch: nobody sends one.
        let mut bytes = vec![1u8];
        0usize.write(&mut bytes);
        assert!(TaskMessage::decode(Bytes::from(bytes)).is_err());
    }
}
