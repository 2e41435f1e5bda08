//! The finalized chain's history for reads (`eth_getBlockBy*`, `eth_getTransactionReceipt`):
//! a journal of [`BlockRecord`]s, item `n - 1` for block `n` like the state changes, written in
//! the same finalization before the metadata moves, plus in-memory indexes from block and
//! transaction hashes to where they are.
//!
//! The indexes are rebuilt from the journal on open. A data directory written before the
//! engine kept history starts its history at the finalized block it resumes from: older
//! blocks are reported as not kept rather than invented.

use super::storage_error;
use crate::EngineError;
use alloy_primitives::B256;
use cohort_evm::BlockRecord;
use commonware_runtime::{Clock, Metrics, Storage};
use commonware_storage::journal::contiguous::{Contiguous as _, variable::Journal};
use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
};
use tracing::warn;

/// Most recent finalized records kept decoded in memory (reads of the chain's tip are the
/// common ones; older blocks come from the journal).
const RECENT: usize = 128;

/// Where to find a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockId {
    Number(u64),
    Hash(B256),
}

/// Opens the history journal cut back to `finalized` blocks and rebuilds the indexes.
pub(super) async fn open<E: Storage + Clock + Metrics>(
    context: E,
    partition: &str,
    genesis: BlockRecord,
    finalized: u64,
) -> Result<(Journal<E, Vec<u8>>, Index), EngineError> {
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
    let mut index = Index::new(genesis, journal.bounds().start + 1);
    for position in journal.bounds() {
        let bytes = journal.read(position).await.map_err(storage_error)?;
        let record = BlockRecord::decode(&bytes)
            .map_err(|e| super::corrupt(&format!("history of block {}: {e}", position + 1)))?;
        if record.header.number != position + 1 {
            return Err(super::corrupt(&format!(
                "history item {position} holds block {}",
                record.header.number
            )));
        }
        index.add(Arc::new(record));
    }
    Ok((journal, index))
}

/// Hash indexes and the most recent records.
pub(super) struct Index {
    genesis: Arc<BlockRecord>,
    /// The first block number the journal holds (blocks between genesis and it are not kept).
    first_kept: u64,
    numbers: BTreeMap<B256, u64>,
    transactions: BTreeMap<B256, (u64, usize)>,
    recent: VecDeque<Arc<BlockRecord>>,
}

impl Index {
    fn new(genesis: BlockRecord, first_kept: u64) -> Self {
        let numbers = BTreeMap::from([(genesis.hash, 0)]);
        Self {
            genesis: Arc::new(genesis),
            first_kept,
            numbers,
            transactions: BTreeMap::new(),
            recent: VecDeque::with_capacity(RECENT),
        }
    }

    pub(super) fn genesis_hash(&self) -> B256 {
        self.genesis.hash
    }

    /// Indexes a newly finalized block (in number order).
    pub(super) fn add(&mut self, record: Arc<BlockRecord>) {
        let number = record.header.number;
        self.numbers.insert(record.hash, number);
        for (position, tx) in record.transactions.iter().enumerate() {
            self.transactions.insert(*tx.tx_hash(), (number, position));
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(record);
    }

    /// The number of the finalized block `id` names, if it is one.
    pub(super) fn number(&self, id: BlockId, finalized: u64) -> Option<u64> {
        match id {
            BlockId::Number(number) => (number <= finalized).then_some(number),
            BlockId::Hash(hash) => self.numbers.get(&hash).copied(),
        }
    }

    /// Where the finalized transaction `hash` is: block number and index.
    pub(super) fn transaction(&self, hash: &B256) -> Option<(u64, usize)> {
        self.transactions.get(hash).copied()
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
