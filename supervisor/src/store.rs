//! Durable records: processed tasks (so a replayed task gets its stored result back, even
//! after a restart), the performer serving each AVS, and deployment outcomes.
//!
//! A commonware variable journal (checksummed items, torn tails cut on open) holds one JSON
//! record per item. One writer task owns it and group-commits: it takes every record waiting,
//! appends them, commits once and only then acknowledges each. A result is answered only after
//! its record is committed, so a crash can never make a task run (and be signed) twice with
//! different outputs. After a storage error the journal is gone and every later append fails:
//! no task is answered without its record (the node must be restarted once the disk is fixed).

use commonware_codec::RangeCfg;
use commonware_runtime::{Clock, Metrics, Spawner, Storage, buffer::paged::CacheRef};
use commonware_storage::journal::contiguous::{
    Contiguous as _,
    variable::{Config as JournalConfig, Journal},
};
use commonware_utils::{NZU16, NZU64, NZUsize};
use futures::{
    StreamExt as _,
    channel::{mpsc, oneshot},
};
use serde::{Deserialize, Serialize};

/// The storage partition of the records.
pub const PARTITION: &str = "supervisor-records";
/// The largest record: a task result carries at most 1.5 MiB of output, hex-encoded.
const MAX_RECORD: usize = 8 * 1024 * 1024;
/// Records appended (and committed) together at most.
const MAX_BATCH: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// A task answered: the hash of the request it answered and the encoded `TaskResult`.
    Task {
        task_id: String,
        request: String,
        result: String,
    },
    /// The performer now serving an AVS (a promotion or a restored one).
    Serving(PerformerRecord),
    /// The AVS's performer was removed: none serves it.
    Removed { avs: String, performer_id: String },
    /// A deployment's outcome.
    Deployment {
        deployment_id: String,
        avs: String,
        performer_id: String,
        digest: String,
        outcome: String,
        message: String,
    },
}

/// Enough to run a performer again after a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerformerRecord {
    pub performer_id: String,
    pub avs: String,
    pub registry_url: String,
    pub digest: String,
    pub env: Vec<(String, String)>,
    pub deployment_id: String,
    pub executable: String,
}

type Pending = (Vec<u8>, oneshot::Sender<Result<(), String>>);

/// A handle to the writer task; cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::UnboundedSender<Pending>,
}

impl Store {
    /// Opens the journal in `context`'s storage, reads back every record, and starts the
    /// writer task. A record that no longer decodes (written by another version) is skipped
    /// with a warning; the journal's own checksums have already cut any torn tail.
    pub async fn open<E: Storage + Clock + Metrics + Spawner>(
        context: E,
    ) -> Result<(Self, Vec<Record>), String> {
        let config = JournalConfig {
            partition: PARTITION.into(),
            items_per_section: NZU64!(4096),
            compression: None,
            codec_config: (RangeCfg::new(0..=MAX_RECORD), ()),
            page_cache: CacheRef::new(NZU16!(4096), NZUsize!(64)),
            write_buffer: NZUsize!(1024 * 1024),
            replay_buffer: NZUsize!(1024 * 1024),
        };
        let journal = Journal::<_, Vec<u8>>::init(context.child("journal"), config)
            .await
            .map_err(|err| format!("opening the supervisor's records: {err}"))?;
        let mut records = Vec::new();
        for position in journal.bounds() {
            let bytes = journal
                .read(position)
                .await
                .map_err(|err| format!("reading supervisor record {position}: {err}"))?;
            match serde_json::from_slice::<Record>(&bytes) {
                Ok(record) => records.push(record),
                Err(err) => {
                    tracing::warn!(position, %err, "supervisor record does not decode; skipped")
                }
            }
        }
        let (tx, rx) = mpsc::unbounded();
        context.child("writer").spawn(move |_| writer(journal, rx));
        Ok((Self { tx }, records))
    }

    /// Appends a record and returns once it is committed to storage.
    pub async fn append(&self, record: &Record) -> Result<(), String> {
        let payload = serde_json::to_vec(record).map_err(|err| err.to_string())?;
        if payload.len() > MAX_RECORD {
            return Err(format!(
                "a {} byte record is over the {MAX_RECORD} byte limit",
                payload.len()
            ));
        }
        let (done, wait) = oneshot::channel();
        self.tx
            .unbounded_send((payload, done))
            .map_err(|_| "the store's writer has stopped".to_string())?;
        wait.await
            .map_err(|_| "the store's writer has stopped".to_string())?
    }
}

/// Appends a batch and commits it; an error consumes the journal.
async fn append_and_commit<E: Storage + Clock + Metrics>(
    mut journal: Journal<E, Vec<u8>>,
    batch: &[Pending],
) -> Result<Journal<E, Vec<u8>>, commonware_storage::journal::Error> {
    for (bytes, _) in batch {
        journal = journal.append(bytes).await?.0;
    }
    journal.commit().await
}

/// Appends and commits records in batches, acknowledging each once its batch is committed.
async fn writer<E: Storage + Clock + Metrics>(
    journal: Journal<E, Vec<u8>>,
    mut rx: mpsc::UnboundedReceiver<Pending>,
) {
    let mut journal = Some(journal);
    while let Some(first) = rx.next().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let result = match journal.take() {
            None => Err("the supervisor's records failed earlier; restart the node".to_string()),
            Some(open) => {
                let committed = append_and_commit(open, &batch).await;
                match committed {
                    Ok(open) => {
                        journal = Some(open);
                        Ok(())
                    }
                    Err(err) => {
                        let err = format!("supervisor records: write failed: {err}");
                        tracing::error!(
                            %err,
                            "no task result can be stored from now on; tasks fail until the \
                             node is restarted with working storage"
                        );
                        Err(err)
                    }
                }
            }
        };
        for (_, done) in batch {
            let _ = done.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_runtime::{Runner as _, tokio};

    fn task(n: u8) -> Record {
        Record::Task {
            task_id: format!("0x{n:064x}"),
            request: "r".into(),
            result: "00".into(),
        }
    }

    fn runner(dir: &std::path::Path) -> tokio::Runner {
        tokio::Runner::new(tokio::Config::default().with_storage_directory(dir))
    }

    #[test]
    fn committed_records_survive_a_reopen_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        runner(dir.path()).start(|context| async move {
            let (store, records) = Store::open(context).await.expect("open");
            assert!(records.is_empty());
            let appends: Vec<_> = (0..5u8)
                .map(|n| {
                    let store = store.clone();
                    async move { store.append(&task(n)).await }
                })
                .collect();
            for result in futures::future::join_all(appends).await {
                result.expect("append");
            }
        });
        runner(dir.path()).start(|context| async move {
            let (store, records) = Store::open(context).await.expect("reopen");
            assert_eq!(records, (0..5).map(task).collect::<Vec<_>>());
            store.append(&task(5)).await.expect("append after reopen");
        });
        runner(dir.path()).start(|context| async move {
            let (_, records) = Store::open(context).await.expect("reopen");
            assert_eq!(records.len(), 6);
        });
    }

    #[test]
    fn an_oversized_record_is_refused_before_it_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        runner(dir.path()).start(|context| async move {
            let (store, _) = Store::open(context).await.expect("open");
            let huge = Record::Task {
                task_id: "0x01".into(),
                request: "r".into(),
                result: "0".repeat(MAX_RECORD + 1),
            };
            let err = store.append(&huge).await.expect_err("too large");
            assert!(err.contains("over the"), "{err}");
            store.append(&task(1)).await.expect("the store still works");
        });
    }
}
