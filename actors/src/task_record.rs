//! The once-only record of the task outputs this operator signed with its share of a cluster
//! AVS key: the AVS counterpart of slashing protection.
//!
//! Two different outputs signed by t operators for one task are two valid results from one
//! AVS operator, which an AVS may punish. So each operator refuses, on its own, to sign a
//! second output for a task, whatever its peers or its performer say, and records the output
//! durably before its partial leaves. Signing the same output again is harmless (the partial
//! is the same bytes) and allowed, so a retry after a crash can finish.
//!
//! Tasks are ordered through the cluster chain, so each has the height of the block that
//! ordered it. Records are kept in a segmented journal with one section per height: a batch
//! (every task a block finalizes) costs one append per new task and one sync, and forgetting
//! old tasks is dropping whole sections. A task ordered below the oldest height kept is refused:
//! whether it was signed can no longer be told, and by then its deadline has long passed.
//!
//! The record owns its journal and hands it to each storage call, which consumes it; a call
//! that fails loses it, and every later call is refused until a restart replays the disk. The
//! owner must let each call finish (an actor awaiting it in its loop does).

use cohort_ingress::keys::to_hex;
use commonware_runtime::{Metrics, ReadOptions, Storage, buffer::paged::CacheRef};
use commonware_storage::journal::{
    Error as JournalError,
    segmented::fixed::{Config as JournalConfig, Journal},
};
use commonware_utils::{NZU16, NZUsize, sequence::FixedBytes};
use std::{
    collections::{BTreeSet, HashMap},
    fmt,
};

/// One record: the task's id, then the digest of the output signed for it.
type Entry = FixedBytes<64>;

/// The task id of the entry that marks where a prune cut, in the oldest section kept: after a
/// restart the record must still know that tasks below it were forgotten, even if no task
/// was ordered at that height. No task has it (task ids are keccak-256 digests); a request
/// that names it is refused.
const FLOOR_MARK: [u8; 32] = [0; 32];

/// Where the record lives.
#[derive(Clone, Debug)]
pub struct Config {
    /// Storage partition (unique per operator).
    pub partition: String,
}

/// One output this operator is asked to sign a partial for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignRequest {
    /// The height of the cluster block that ordered the task.
    pub height: u64,
    pub task_id: [u8; 32],
    /// A digest of the output (Hourglass's message hash binds the task and its output).
    pub output: [u8; 32],
}

/// May the partial be signed?
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// First time: recorded (durably, before this verdict was given).
    Sign,
    /// This output was signed before for this task; signing it again gives the same partial.
    SignAgain,
    Refuse(Refusal),
}

/// Why a partial must not be signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Another output was signed for this task.
    Conflict {
        task_id: [u8; 32],
        recorded: [u8; 32],
        asked: [u8; 32],
    },
    /// The task was ordered below the oldest height kept: it may have been signed.
    Forgotten {
        task_id: [u8; 32],
        height: u64,
        oldest: u64,
    },
    /// The all-zero task id, which the record reserves.
    Reserved,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Conflict {
                task_id,
                recorded,
                asked,
            } => write!(
                f,
                "task 0x{}: output 0x{} was signed, refusing another (0x{})",
                to_hex(task_id),
                to_hex(recorded),
                to_hex(asked)
            ),
            Self::Forgotten {
                task_id,
                height,
                oldest,
            } => write!(
                f,
                "task 0x{} was ordered at height {height}, below the oldest kept ({oldest}); \
                 whether it was signed is no longer known",
                to_hex(task_id)
            ),
            Self::Reserved => f.write_str("the all-zero task id is not a task"),
        }
    }
}

/// Why the record cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the task record's storage failed: {0}")]
    Storage(#[from] JournalError),
    #[error("an earlier write of the task record failed; restart to replay it")]
    Unavailable,
}

/// The record of signed task outputs, replayed into memory on open.
pub struct TaskRecord<E: Storage + Metrics> {
    journal: Option<Journal<E, Entry>>,
    signed: HashMap<[u8; 32], (u64, [u8; 32])>,
    /// Tasks ordered below this height are refused.
    oldest: u64,
}

impl<E: Storage + Metrics> TaskRecord<E> {
    /// Opens the record and replays it; a torn last write (a crash mid-append, never
    /// acknowledged) is cut.
    pub async fn init(context: E, config: Config) -> Result<Self, RecordError> {
        let journal = Journal::init(
            context,
            JournalConfig {
                partition: config.partition,
                page_cache: CacheRef::new(NZU16!(4096), NZUsize!(16)),
                write_buffer: NZUsize!(64 * 1024),
            },
        )
        .await?;
        let first = journal.oldest_section().unwrap_or(0);
        let mut replay = journal
            .replay(first, 0, NZUsize!(64 * 1024), ReadOptions::default())
            .await?;
        let mut signed = HashMap::new();
        let mut oldest = 0;
        while let Some(item) = replay.next().await {
            let (height, _, entry) = item?;
            let (task_id, output) = split(&entry);
            if task_id == FLOOR_MARK {
                oldest = oldest.max(height);
                continue;
            }
            signed.entry(task_id).or_insert((height, output));
        }
        let journal = replay.finish()?;
        Ok(Self {
            journal: Some(journal),
            signed,
            oldest,
        })
    }

    /// Decides a batch (every partial a finalized block asks for): records the new outputs and
    /// syncs them once, then answers each request in order. A later request in the batch for a
    /// task an earlier one recorded is judged against it.
    pub async fn decide(&mut self, batch: &[SignRequest]) -> Result<Vec<Verdict>, RecordError> {
        let mut verdicts = Vec::with_capacity(batch.len());
        let mut new = Vec::new();
        let mut pending: HashMap<[u8; 32], [u8; 32]> = HashMap::new();
        for request in batch {
            let recorded = self
                .signed
                .get(&request.task_id)
                .map(|(_, output)| *output)
                .or_else(|| pending.get(&request.task_id).copied());
            let verdict = match recorded {
                _ if request.task_id == FLOOR_MARK => Verdict::Refuse(Refusal::Reserved),
                Some(output) if output == request.output => Verdict::SignAgain,
                Some(recorded) => Verdict::Refuse(Refusal::Conflict {
                    task_id: request.task_id,
                    recorded,
                    asked: request.output,
                }),
                None if request.height < self.oldest => Verdict::Refuse(Refusal::Forgotten {
                    task_id: request.task_id,
                    height: request.height,
                    oldest: self.oldest,
                }),
                None => {
                    pending.insert(request.task_id, request.output);
                    new.push(*request);
                    Verdict::Sign
                }
            };
            verdicts.push(verdict);
        }
        if new.is_empty() {
            return Ok(verdicts);
        }
        let mut journal = self.journal.take().ok_or(RecordError::Unavailable)?;
        let mut touched = BTreeSet::new();
        for request in &new {
            (journal, _) = journal
                .append(request.height, &entry(&request.task_id, &request.output))
                .await?;
            touched.insert(request.height);
        }
        let journal = journal.sync(touched).await?;
        self.journal = Some(journal);
        for request in new {
            self.signed
                .insert(request.task_id, (request.height, request.output));
        }
        Ok(verdicts)
    }

    /// Forgets tasks ordered below `height` (their deadlines have passed); they are refused
    /// from now on.
    pub async fn prune(&mut self, height: u64) -> Result<(), RecordError> {
        if height <= self.oldest {
            return Ok(());
        }
        let journal = self.journal.take().ok_or(RecordError::Unavailable)?;
        // The mark first: a crash between the two leaves it and the old sections, which the
        // next prune drops.
        let (journal, _) = journal
            .append(height, &entry(&FLOOR_MARK, &[0; 32]))
            .await?;
        let journal = journal.sync(height).await?;
        let (journal, _) = journal.prune(height).await?;
        self.journal = Some(journal);
        self.oldest = height;
        self.signed.retain(|_, (at, _)| *at >= height);
        Ok(())
    }

    /// How many tasks are remembered.
    pub fn len(&self) -> usize {
        self.signed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.signed.is_empty()
    }
}

fn entry(task_id: &[u8; 32], output: &[u8; 32]) -> Entry {
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(task_id);
    bytes[32..].copy_from_slice(output);
    FixedBytes::new(bytes)
}

fn split(entry: &Entry) -> ([u8; 32], [u8; 32]) {
    let mut task_id = [0u8; 32];
    let mut output = [0u8; 32];
    task_id.copy_from_slice(&entry[..32]);
    output.copy_from_slice(&entry[32..]);
    (task_id, output)
}

#[cfg(test)]
mod tests;
