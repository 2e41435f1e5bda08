//! Each operator's disk, and what a lone crash leaves on it.
//!
//! The deterministic runtime keeps a blob's unsynced writes in the handle that made them: a
//! crash drops the handle, and the reopened blob is its last synced image, as if not one byte
//! written since had reached the disk. A real disk is less tidy. Of the writes issued since the
//! last sync some did reach it: in issue order up to a point (a page cache flushing in the
//! background), the last of them possibly torn mid-way. Only a whole-cluster power cut
//! (`--power-cut`) tested that, and a power cut hits every operator at once.
//!
//! [`Disk`] keeps, per blob, the writes and resizes issued since its last successful sync (a
//! redo log, shared by every life of the operator). At a lone crash, once the operator's tasks
//! are gone, [`Disk::crash`] makes a seed-drawn prefix of each blob's log durable, the last
//! write it keeps torn at a drawn byte one time in two, and forgets the rest. A run replays
//! from its seed: every draw comes from the seed, the operator and which of its lives crashed.

use commonware_cryptography::{Hasher as _, Sha256};
use commonware_runtime::{
    Blob as _, BlobVersion, Buf as _, Error, Handle, IoBufs, IoBufsMut, ReadOptions, Storage as _,
    WriteOptions, deterministic,
};
use commonware_utils::TestRng;
use rand::RngExt as _;
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};
use tracing::{debug, warn};

/// One mutation not yet covered by a sync.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    /// `bytes` written at `offset`; `durable` when the write itself asked for durability
    /// ([`WriteOptions::SYNC`]): kept whatever the crash draws, and replayed in its place so
    /// that it still wins over any earlier write it overlaps.
    Write {
        offset: u64,
        bytes: Vec<u8>,
        durable: bool,
    },
    Resize(u64),
}

/// What one blob has issued since its last sync.
#[derive(Default)]
struct Log {
    /// The version the blob was opened with, to reopen it at a crash.
    version: BlobVersion,
    ops: Vec<Op>,
}

impl Log {
    fn unsynced(&self) -> usize {
        self.ops
            .iter()
            .filter(|op| !matches!(op, Op::Write { durable: true, .. }))
            .count()
    }
}

type Key = (String, Vec<u8>);

/// Every blob's log, by (partition, name).
type Logs = Arc<Mutex<BTreeMap<Key, Arc<Mutex<Log>>>>>;

/// What a crash kept of one blob's unsynced mutations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cut {
    pub partition: String,
    pub name: Vec<u8>,
    /// Mutations issued since the blob's last sync (writes that were themselves durable
    /// excluded).
    pub unsynced: usize,
    /// How many of them, from the first, reached the disk whole.
    pub kept: usize,
    /// Bytes of the next write that reached the disk too (a torn write), if any.
    pub torn: Option<usize>,
}

/// One operator's disk: the runtime's storage, with a redo log of every blob's unsynced
/// mutations when the operator can crash alone. Clones share the log; it outlives every life
/// of the operator.
#[derive(Clone)]
pub(crate) struct Disk {
    /// `None`: nothing is logged, and a crash keeps nothing unsynced (the runtime's own
    /// behaviour).
    logs: Option<Logs>,
    seed: u64,
    operator: usize,
    /// A partition whose syncs return without making anything durable (an injected bug).
    lying: Option<String>,
}

impl Disk {
    /// A disk that forwards to the runtime's storage and, with `cut`, logs what a lone crash of
    /// `operator` can cut.
    pub fn new(seed: u64, operator: usize, cut: bool) -> Self {
        Self {
            logs: cut.then(Default::default),
            seed,
            operator,
            lying: None,
        }
    }

    /// Makes every sync of `partition` return at once without making its writes durable (the
    /// `unsynced-slashing` injected bug).
    #[cfg(feature = "test-hooks")]
    pub fn with_lying_partition(mut self, partition: String) -> Self {
        self.lying = Some(partition);
        self
    }

    pub async fn open(
        &self,
        context: &deterministic::Context,
        partition: &str,
        name: &[u8],
        versions: std::ops::RangeInclusive<BlobVersion>,
    ) -> Result<(Blob, u64, BlobVersion), Error> {
        let (inner, len, version) = context.open_versioned(partition, name, versions).await?;
        let log = self.logs.as_ref().map(|logs| {
            let log = Arc::new(Mutex::new(Log {
                version,
                ops: Vec::new(),
            }));
            // A reopened blob starts from its durable image: what an earlier handle left
            // unsynced is gone with that handle.
            if let Ok(mut logs) = logs.lock() {
                logs.insert((partition.to_string(), name.to_vec()), log.clone());
            }
            log
        });
        let lies = self.lying.as_deref() == Some(partition);
        Ok((Blob { inner, log, lies }, len, version))
    }

    /// A removed blob (or partition) takes its unsynced mutations with it.
    pub async fn remove(
        &self,
        context: &deterministic::Context,
        partition: &str,
        name: Option<&[u8]>,
    ) -> Result<(), Error> {
        context.remove(partition, name).await?;
        if let Some(logs) = &self.logs
            && let Ok(mut logs) = logs.lock()
        {
            logs.retain(|(p, n), _| p != partition || name.is_some_and(|name| name != n));
        }
        Ok(())
    }

    /// The operator's life `life` (0 for the first) ended in a crash and every handle it held is dropped: makes a drawn prefix
    /// of each blob's unsynced mutations durable (the last kept write torn one time in two) and
    /// forgets the rest. Returns what it kept, blob by blob, for blobs that had anything
    /// unsynced.
    pub async fn crash(&self, context: &deterministic::Context, life: u64) -> Vec<Cut> {
        let Some(logs) = &self.logs else {
            return Vec::new();
        };
        let logs: Vec<(Key, Arc<Mutex<Log>>)> = match logs.lock() {
            Ok(mut logs) => std::mem::take(&mut *logs).into_iter().collect(),
            Err(_) => return Vec::new(),
        };
        let mut rng = TestRng::new(self.draw_seed(life));
        let mut cuts = Vec::new();
        for ((partition, name), log) in logs {
            let Ok(log) = log.lock().map(|log| Log {
                version: log.version,
                ops: log.ops.clone(),
            }) else {
                continue;
            };
            let unsynced = log.unsynced();
            if unsynced == 0 {
                continue;
            }
            let kept = rng.random_range(0..=unsynced);
            let mut torn = None;
            let mut replay = Vec::with_capacity(log.ops.len());
            let mut seen = 0usize;
            for op in log.ops {
                let durable = matches!(op, Op::Write { durable: true, .. });
                if durable {
                    replay.push(op);
                    continue;
                }
                seen += 1;
                if seen <= kept {
                    replay.push(op);
                } else if seen == kept + 1
                    && let Op::Write { offset, bytes, .. } = &op
                    && bytes.len() > 1
                    && rng.random_bool(0.5)
                {
                    let len = rng.random_range(1..bytes.len());
                    torn = Some(len);
                    replay.push(Op::Write {
                        offset: *offset,
                        bytes: bytes[..len].to_vec(),
                        durable: false,
                    });
                }
            }
            if let Err(err) = apply(context, &partition, &name, log.version, replay).await {
                // The blob is still open somewhere or gone: nothing unsynced of it survives.
                warn!(operator = self.operator, partition, %err, "crash cut: could not replay a blob's kept writes; it keeps only what was synced");
                continue;
            }
            debug!(
                operator = self.operator,
                partition,
                unsynced,
                kept,
                ?torn,
                "crash cut: kept a prefix of a blob's unsynced writes"
            );
            cuts.push(Cut {
                partition,
                name,
                unsynced,
                kept,
                torn,
            });
        }
        cuts
    }

    fn draw_seed(&self, life: u64) -> u64 {
        let digest = Sha256::hash(&[
            b"crash-cut",
            &self.seed.to_le_bytes(),
            &(self.operator as u64).to_le_bytes(),
            &life.to_le_bytes(),
        ]);
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest.as_ref()[..8]);
        u64::from_le_bytes(bytes)
    }
}

/// Writes what a crash kept onto the blob's durable image.
async fn apply(
    context: &deterministic::Context,
    partition: &str,
    name: &[u8],
    version: BlobVersion,
    replay: Vec<Op>,
) -> Result<(), Error> {
    let (blob, _, _) = context
        .open_versioned(partition, name, version..=version)
        .await?;
    for op in replay {
        match op {
            Op::Write { offset, bytes, .. } => {
                blob.write_at(offset, bytes, WriteOptions::default())
                    .await?
            }
            Op::Resize(len) => blob.resize(len).await?,
        }
    }
    blob.sync().await
}

/// A blob on an operator's [`Disk`]: the runtime's blob, logging each mutation until a sync
/// covers it.
pub struct Blob {
    inner: <deterministic::Context as commonware_runtime::Storage>::Blob,
    log: Option<Arc<Mutex<Log>>>,
    lies: bool,
}

impl Blob {
    fn record(&self, op: Op) {
        if let Some(log) = &self.log
            && let Ok(mut log) = log.lock()
        {
            log.ops.push(op);
        }
    }
}

impl commonware_runtime::Blob for Blob {
    async fn read_at_buf(
        &self,
        offset: u64,
        len: usize,
        bufs: impl Into<IoBufsMut> + Send,
        options: ReadOptions,
    ) -> Result<IoBufsMut, Error> {
        self.inner.read_at_buf(offset, len, bufs, options).await
    }

    async fn read_at(
        &self,
        offset: u64,
        len: usize,
        options: ReadOptions,
    ) -> Result<IoBufsMut, Error> {
        self.inner.read_at(offset, len, options).await
    }

    async fn write_at(
        &self,
        offset: u64,
        bufs: impl Into<IoBufs> + Send,
        options: WriteOptions,
    ) -> Result<(), Error> {
        let bufs: IoBufs = bufs.into();
        let durable = options.contains(WriteOptions::SYNC) && !self.lies;
        let options = if self.lies {
            options.without(WriteOptions::SYNC)
        } else {
            options
        };
        let copy = (self.log.is_some() && bufs.has_remaining())
            .then(|| bufs.clone().coalesce().as_ref().to_vec());
        self.inner.write_at(offset, bufs, options).await?;
        if let Some(bytes) = copy {
            self.record(Op::Write {
                offset,
                bytes,
                durable,
            });
        }
        Ok(())
    }

    async fn resize(&self, len: u64) -> Result<(), Error> {
        self.inner.resize(len).await?;
        self.record(Op::Resize(len));
        Ok(())
    }

    async fn sync(&self) -> Result<(), Error> {
        if self.lies {
            return Ok(());
        }
        self.inner.sync().await?;
        if let Some(log) = &self.log
            && let Ok(mut log) = log.lock()
        {
            log.ops.clear();
        }
        Ok(())
    }

    async fn start_sync(&self) -> Handle<()> {
        // The runtime's in-memory blobs sync at once; so does this.
        Handle::ready(self.sync().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_runtime::Runner as _;

    async fn read_all(context: &deterministic::Context, name: &[u8]) -> Vec<u8> {
        let (blob, len) = context.open("disk", name).await.expect("opens");
        let bytes = if len == 0 {
            Vec::new()
        } else {
            blob.read_at(0, len as usize, ReadOptions::default())
                .await
                .expect("reads")
                .coalesce()
                .as_ref()
                .to_vec()
        };
        drop(blob);
        bytes
    }

    /// Without this disk a dropped handle already loses every unsynced write: the runtime
    /// alone cuts all of them, never a part.
    #[test]
    fn the_runtime_alone_drops_every_unsynced_write() {
        deterministic::Runner::default().start(|context| async move {
            let (blob, _) = context.open("disk", b"a").await.unwrap();
            blob.write_at(0, vec![1u8; 8], WriteOptions::default())
                .await
                .unwrap();
            blob.sync().await.unwrap();
            blob.write_at(8, vec![2u8; 8], WriteOptions::default())
                .await
                .unwrap();
            drop(blob);
            assert_eq!(read_all(&context, b"a").await, vec![1u8; 8]);
        });
    }

    /// A write never synced, then a crash: from one seed to another the crash keeps none of
    /// it, all of it or a torn prefix, and every outcome is a prefix of what was written.
    #[test]
    fn a_crash_keeps_a_drawn_prefix_of_unsynced_writes_and_nothing_synced_is_lost() {
        let mut outcomes = std::collections::BTreeSet::new();
        for seed in 0..64u64 {
            let kept = deterministic::Runner::default().start(|context| async move {
                let disk = Disk::new(seed, 0, true);
                let (blob, _, _) = disk
                    .open(
                        &context,
                        "disk",
                        b"a",
                        BlobVersion::default()..=BlobVersion::default(),
                    )
                    .await
                    .unwrap();
                blob.write_at(0, vec![1u8; 8], WriteOptions::default())
                    .await
                    .unwrap();
                blob.sync().await.unwrap();
                blob.write_at(8, vec![2u8; 8], WriteOptions::default())
                    .await
                    .unwrap();
                blob.write_at(16, vec![3u8; 8], WriteOptions::default())
                    .await
                    .unwrap();
                drop(blob);
                let cuts = disk.crash(&context, 5).await;
                assert_eq!(cuts.len(), 1);
                assert_eq!(cuts[0].unsynced, 2);
                let bytes = read_all(&context, b"a").await;
                let expected = [vec![1u8; 8], vec![2u8; 8], vec![3u8; 8]].concat();
                // Whatever survives is the synced part plus a prefix of what followed it.
                assert!(bytes.len() >= 8, "synced bytes lost: {bytes:?}");
                assert_eq!(bytes[..], expected[..bytes.len()]);
                let cut = &cuts[0];
                assert_eq!(
                    bytes.len(),
                    8 + cut.kept * 8 + cut.torn.unwrap_or(0),
                    "{cut:?}"
                );
                // The same seed draws the same cut.
                bytes.len()
            });
            outcomes.insert(kept);
        }
        // Gone, kept and torn all happen.
        assert!(outcomes.contains(&8), "{outcomes:?}");
        assert!(outcomes.contains(&24), "{outcomes:?}");
        assert!(
            outcomes
                .iter()
                .any(|len| *len != 8 && *len != 16 && *len != 24),
            "no torn write in {outcomes:?}"
        );
    }

    /// Synced before the crash: kept whole, whatever the draw.
    #[test]
    fn a_synced_write_survives_every_crash() {
        for seed in 0..16u64 {
            deterministic::Runner::default().start(|context| async move {
                let disk = Disk::new(seed, 0, true);
                let (blob, _, _) = disk
                    .open(
                        &context,
                        "disk",
                        b"a",
                        BlobVersion::default()..=BlobVersion::default(),
                    )
                    .await
                    .unwrap();
                blob.write_at(0, vec![7u8; 32], WriteOptions::default())
                    .await
                    .unwrap();
                blob.resize(40).await.unwrap();
                blob.sync().await.unwrap();
                drop(blob);
                assert!(disk.crash(&context, 1).await.is_empty());
                let mut expected = vec![7u8; 32];
                expected.resize(40, 0);
                assert_eq!(read_all(&context, b"a").await, expected);
            });
        }
    }

    /// A write that asked for durability itself stays, and wins over an earlier unsynced write
    /// it overlaps even when that one is kept.
    #[test]
    fn a_durable_write_survives_and_keeps_its_place() {
        for seed in 0..16u64 {
            deterministic::Runner::default().start(|context| async move {
                let disk = Disk::new(seed, 0, true);
                let (blob, _, _) = disk
                    .open(
                        &context,
                        "disk",
                        b"a",
                        BlobVersion::default()..=BlobVersion::default(),
                    )
                    .await
                    .unwrap();
                blob.write_at(0, vec![1u8; 8], WriteOptions::default())
                    .await
                    .unwrap();
                blob.write_at(4, vec![9u8; 4], WriteOptions::SYNC)
                    .await
                    .unwrap();
                drop(blob);
                disk.crash(&context, 2).await;
                let bytes = read_all(&context, b"a").await;
                assert_eq!(bytes[4..8], [9u8; 4], "{bytes:?}");
            });
        }
    }

    /// The same seed, operator and slot cut the same way; the cut is the seed's, not chance's.
    #[test]
    fn the_cut_replays_from_its_seed() {
        let run = |seed: u64| {
            deterministic::Runner::default().start(|context| async move {
                let disk = Disk::new(seed, 3, true);
                let mut all = Vec::new();
                for name in [b"a".as_slice(), b"b", b"c", b"d"] {
                    let (blob, _, _) = disk
                        .open(
                            &context,
                            "disk",
                            name,
                            BlobVersion::default()..=BlobVersion::default(),
                        )
                        .await
                        .unwrap();
                    for i in 0..6u8 {
                        blob.write_at(u64::from(i) * 10, vec![i; 10], WriteOptions::default())
                            .await
                            .unwrap();
                    }
                    drop(blob);
                }
                for cut in disk.crash(&context, 9).await {
                    all.push((cut.kept, cut.torn));
                }
                all
            })
        };
        assert_eq!(run(11), run(11));
        assert_ne!(run(11), run(12));
    }
}
