//! The finalized chain's history for reads (`eth_getBlockBy*`, `eth_getTransactionReceipt`):
//! a journal of [`BlockRecord`]s, item `n - 1` for block `n` like the state changes, and an
//! on-disk index from block and transaction hashes to where they are, both written in the same
//! finalization before the metadata moves.
//!
//! The index is a [`Freezer`] whose checkpoint the metadata keeps beside the finalized header,
//! so an open rewinds it to exactly the finalized chain and reads only the most recent records
//! back: a restart costs the same after a million blocks as after ten, where rebuilding the
//! index from the journal cost a read of every block ever finalized (and memory for every
//! hash). An index that is missing (data written before the engine kept one, or a crash
//! before the first finalization's metadata) or unreadable is rebuilt from the journal once.
//!
//! A data directory written before the engine kept history starts its history at the finalized
//! block it resumes from: older blocks are reported as not kept rather than invented.

use super::storage_error;
use crate::EngineError;
use alloy_primitives::B256;
use cohort_evm::BlockRecord;
use commonware_runtime::{Clock, Metrics, Storage, buffer::paged::CacheRef};
use commonware_storage::{
    freezer::{self, Checkpoint, Freezer, Identifier},
    journal::contiguous::{Contiguous as _, variable::Journal},
};
use commonware_utils::{NZU16, NZUsize, sequence::FixedBytes};
use std::{collections::VecDeque, sync::Arc};
use tracing::{info, warn};

/// Most recent finalized records kept decoded in memory (reads of the chain's tip are the
/// common ones; older blocks come from the journal).
pub(super) const RECENT: usize = 128;

/// Where to find a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockId {
    Number(u64),
    Hash(B256),
}

/// A hash's place in the finalized chain: the block number and, for a transaction, its index
/// in that block (`None` for the block's own hash).
type Location = (u64, Option<u32>);

/// Block and transaction hashes to their [`Location`], on disk.
pub(super) type HashIndex<E> = Freezer<E, FixedBytes<32>, Location>;

/// What [`open`] found.
pub(super) struct Opened<E: Storage + Clock + Metrics> {
    pub journal: Journal<E, Vec<u8>>,
    pub hashes: HashIndex<E>,
    pub index: Index,
    /// The checkpoint of an index rebuilt from the journal, for the metadata to keep (the
    /// metadata's own checkpoint no longer describes it).
    pub rebuilt: Option<Checkpoint>,
}

fn hash_index_config(partition: &str) -> freezer::Config<((), ())> {
    freezer::Config {
        key_partition: format!("{partition}-hashes-keys"),
        key_write_buffer: NZUsize!(64 << 10),
        key_page_cache: CacheRef::new(NZU16!(4096), NZUsize!(16)),
        value_partition: format!("{partition}-hashes-values"),
        value_compression: None,
        value_write_buffer: NZUsize!(64 << 10),
        value_target_size: 16 << 20,
        table_partition: format!("{partition}-hashes-table"),
        // 2^10 entries to start (60 KiB); the table doubles as the chain grows.
        table_initial_size: 1024,
        table_resize_frequency: 4,
        table_resize_chunk_size: 4096,
        table_replay_buffer: NZUsize!(64 << 10),
        codec_config: ((), ()),
    }
}

fn key(hash: &B256) -> FixedBytes<32> {
    FixedBytes::new(hash.0)
}

/// Adds a finalized block's hash and its transactions' hashes to the index (not synced).
pub(super) async fn index_record<E: Storage + Clock + Metrics>(
    mut hashes: HashIndex<E>,
    record: &BlockRecord,
) -> Result<HashIndex<E>, String> {
    let number = record.header.number;
    hashes = hashes
        .put(key(&record.hash), &(number, None))
        .await
        .map_err(|e| format!("indexing block {number}: {e}"))?
        .0;
    for (position, transaction) in record.transactions.iter().enumerate() {
        let position = u32::try_from(position)
            .map_err(|_| format!("block {number} holds more than 2^32 transactions"))?;
        hashes = hashes
            .put(key(transaction.tx_hash()), &(number, Some(position)))
            .await
            .map_err(|e| format!("indexing block {number}: {e}"))?
            .0;
    }
    Ok(hashes)
}

/// Opens the history journal cut back to `finalized` blocks and the hash index at
/// `checkpoint` (rebuilding it from the journal if it has none or cannot be opened at it), and
/// reads the most recent records into memory.
pub(super) async fn open<E: Storage + Clock + Metrics>(
    context: E,
    partition: &str,
    genesis: BlockRecord,
    finalized: u64,
    mut checkpoint: Option<Checkpoint>,
) -> Result<Opened<E>, EngineError> {
    let journal = Journal::<_, Vec<u8>>::init_at_most(
        context.child("open"),
        super::journal_config(partition, "blocks"),
        finalized,
    )
    .await
    .map_err(storage_error)?;
    let journal = if journal.bounds().end < finalized {
        warn!(
            kept = journal.bounds().end,
            finalized,
            "embedded engine keeps no history of blocks up to its finalized block (data written \
             before it kept any); reads of those blocks answer that they are not kept"
        );
        drop(journal);
        // Whatever an index holds describes blocks no longer kept.
        checkpoint = None;
        Journal::<_, Vec<u8>>::init_at_size(
            context.child("reset"),
            super::journal_config(partition, "blocks"),
            finalized,
        )
        .await
        .map_err(storage_error)?
    } else {
        journal
    };
    let opened = match checkpoint {
        None => None,
        Some(checkpoint) => match HashIndex::init(
            context.child("hashes"),
            hash_index_config(partition),
            Some(checkpoint),
        )
        .await
        {
            Ok(hashes) => Some(hashes),
            Err(e) => {
                warn!(
                    error = %e,
                    "embedded engine cannot open its block and transaction hash index at the \
                     finalized block; rebuilding it from the block history"
                );
                None
            }
        },
    };
    let (hashes, rebuilt) = match opened {
        Some(hashes) => (hashes, None),
        None => {
            let (hashes, checkpoint) = rebuild(&context, partition, &journal).await?;
            (hashes, Some(checkpoint))
        }
    };
    let mut index = Index::new(genesis, journal.bounds().start + 1);
    let bounds = journal.bounds();
    if rebuilt.is_some() {
        index.read_at_open = bounds.end - bounds.start;
    }
    let recent_start = bounds.end.saturating_sub(RECENT as u64).max(bounds.start);
    for position in recent_start..bounds.end {
        index.add(Arc::new(read(&journal, position).await?));
        index.read_at_open += 1;
    }
    Ok(Opened {
        journal,
        hashes,
        index,
        rebuilt,
    })
}

/// A fresh hash index holding every record the journal keeps, synced.
async fn rebuild<E: Storage + Clock + Metrics>(
    context: &E,
    partition: &str,
    journal: &Journal<E, Vec<u8>>,
) -> Result<(HashIndex<E>, Checkpoint), EngineError> {
    // `None` removes whatever an earlier index left.
    let mut hashes = HashIndex::init(
        context.child("rebuilt_hashes"),
        hash_index_config(partition),
        None,
    )
    .await
    .map_err(storage_error)?;
    let bounds = journal.bounds();
    for position in bounds.clone() {
        let record = read(journal, position).await?;
        hashes = index_record(hashes, &record)
            .await
            .map_err(EngineError::Storage)?;
    }
    let (hashes, checkpoint) = hashes.sync().await.map_err(storage_error)?;
    if !bounds.is_empty() {
        info!(
            blocks = bounds.end - bounds.start,
            "embedded engine rebuilt its block and transaction hash index from the block \
             history; later restarts read it from disk"
        );
    }
    Ok((hashes, checkpoint))
}

/// The record at journal position `position` (block `position + 1`), checked to be that
/// block's.
pub(super) async fn read<E: Storage + Clock + Metrics>(
    journal: &Journal<E, Vec<u8>>,
    position: u64,
) -> Result<BlockRecord, EngineError> {
    let bytes = journal.read(position).await.map_err(storage_error)?;
    let record = BlockRecord::decode(&bytes)
        .map_err(|e| super::corrupt(&format!("history of block {}: {e}", position + 1)))?;
    if record.header.number != position + 1 {
        return Err(super::corrupt(&format!(
            "history item {position} holds block {}",
            record.header.number
        )));
    }
    Ok(record)
}

/// Where the index puts `hash`, if it is finalized: a stale entry above `finalized` cannot
/// exist (the index rewinds with the metadata) but is refused all the same.
pub(super) async fn locate<E: Storage + Clock + Metrics>(
    hashes: &HashIndex<E>,
    hash: &B256,
    finalized: u64,
) -> Result<Option<Location>, EngineError> {
    let found = hashes
        .get(Identifier::Key(&key(hash)))
        .await
        .map_err(storage_error)?;
    Ok(found.filter(|(number, _)| *number <= finalized))
}

/// The genesis block and the most recent records, in memory.
pub(super) struct Index {
    genesis: Arc<BlockRecord>,
    /// The first block number the journal holds (blocks between genesis and it are not kept).
    first_kept: u64,
    recent: VecDeque<Arc<BlockRecord>>,
    /// Records the open read from the journal (the recent ones, and all of them to rebuild the
    /// hash index): what a restart costs.
    read_at_open: u64,
}

impl Index {
    fn new(genesis: BlockRecord, first_kept: u64) -> Self {
        Self {
            genesis: Arc::new(genesis),
            first_kept,
            recent: VecDeque::with_capacity(RECENT),
            read_at_open: 0,
        }
    }

    pub(super) fn genesis_hash(&self) -> B256 {
        self.genesis.hash
    }

    /// Keeps a newly finalized block's record (in number order) among the recent ones.
    pub(super) fn add(&mut self, record: Arc<BlockRecord>) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(record);
    }

    /// The number of the block hashed `hash` if memory knows it (genesis or a recent block).
    pub(super) fn number_of(&self, hash: &B256) -> Option<u64> {
        if *hash == self.genesis.hash {
            return Some(0);
        }
        self.recent
            .iter()
            .rev()
            .find(|record| record.hash == *hash)
            .map(|record| record.header.number)
    }

    /// Records the open read from the journal.
    pub(super) fn read_at_open(&self) -> u64 {
        self.read_at_open
    }

    /// The record of block `number` (at most the finalized one) as memory knows it.
    pub(super) fn cached(&self, number: u64) -> Cached {
        if number == 0 {
            return Cached::Hit(self.genesis.clone());
        }
        if number < self.first_kept {
            return Cached::NotKept;
        }
        match self.recent.front().map(|first| first.header.number) {
            Some(first) if number >= first => self
                .recent
                .get((number - first) as usize)
                .map_or(Cached::NotKept, |record| Cached::Hit(record.clone())),
            _ => Cached::OnDisk(number - 1),
        }
    }
}

/// What memory knows of a finalized block's record.
pub(super) enum Cached {
    Hit(Arc<BlockRecord>),
    /// Read journal item this.
    OnDisk(u64),
    NotKept,
}
