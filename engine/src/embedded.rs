//! The embedded engine: a small Ethereum execution client in process, speaking Engine API types.
//!
//! Payloads are executed by [`cohort_evm`] (alloy-evm's Ethereum block executor over revm) with
//! every check an execution client makes: the RLP header hash, the header rules against the
//! parent, the EIP-4788 system call, transactions, withdrawals, gas used, receipts root, logs
//! bloom and state root. So the cluster chain is an EVM chain, and an external client given the
//! same genesis file agrees on every block. It answers VALID / INVALID (with the reason) /
//! SYNCING, builds payloads from its transaction pool on `forkchoiceUpdated` with attributes,
//! and refuses forkchoice states that would move the finalized block off its chain. It runs on
//! the runtime it is given, so under the deterministic runtime a whole cluster's engines replay
//! from the seed.
//!
//! Executed but unfinalized blocks live in memory, each with its own post-state (states share
//! every unchanged account and trie node, so a fork costs what it changed). Finalization
//! appends each finalized block's state changes to a journal and then moves the finalized
//! header in a metadata store (see `record`); a restart applies the journaled changes to the
//! genesis state, which re-executes nothing, and checks the result against the finalized
//! header's state root. A payload at or below the finalized height is answered from the
//! canonical record, never executed twice. The same finalization appends each block's record
//! (header, transactions, senders, receipts) to a history journal and their hashes to an on-disk
//! index (see `history`), which the chain's JSON-RPC reads blocks and receipts from.

use crate::{
    EngineError, ExecutionTip, PayloadAttributes, PayloadId, PayloadStatus, PayloadStatusEnum,
};
use alloy_consensus::Header;
use alloy_primitives::{B64, B256, keccak256};
use alloy_rpc_types_engine::ExecutionPayloadV3;
use cohort_evm::{BlockRecord, BuildError, Executor, MemoryState, Pool};
use commonware_codec::{DecodeExt as _, Encode as _, RangeCfg};
use commonware_runtime::{Clock, Metrics, Storage, buffer::paged::CacheRef};
use commonware_storage::{
    freezer::Checkpoint,
    journal::contiguous::{
        Contiguous as _,
        variable::{Config as JournalConfig, Journal},
    },
    metadata::{self, Metadata},
};
use commonware_utils::{NZU16, NZU64, NZUsize, sequence::U64};
use futures::lock::Mutex;
use std::{
    collections::{BTreeMap, VecDeque},
    future::Future,
    pin::Pin,
    sync::Arc,
};
use tracing::{debug, warn};

mod engine_api;
mod history;
pub use history::BlockId;
use history::{HashIndex, Index};
mod record;
mod rpc;
use record::{
    KEY_CANONICAL, KEY_FINALIZED_HEADER, KEY_GENESIS, KEY_HASH_INDEX, KEY_SNAPSHOT, LEGACY_KEYS,
    corrupt, encode_tip, resume, take_snapshot,
};

/// A block this engine executed, with its post-state.
pub type Block = cohort_evm::Executed<MemoryState>;

/// Bytes of transactions one built payload carries at most: a cluster block carries the
/// payload as SSZ within its 64 KiB payload limit, and the rest of the payload (header fields,
/// offsets, withdrawals) fits in what is left.
pub const MAX_TRANSACTION_BYTES_PER_PAYLOAD: usize = 48 * 1024;
/// Executed, unfinalized payloads kept in memory. Beyond it the lowest are dropped (the
/// executor sends them again if they are ever needed).
const MAX_UNFINALIZED: usize = 1024;
/// Finalized canonical hashes remembered, to answer redelivered old payloads without executing
/// them again (and to give BLOCKHASH its 256 after a restart).
const CANONICAL_HISTORY: usize = 1024;
/// Finalized blocks between state snapshots: a restart applies at most this many blocks'
/// changes after the snapshot, and the journal keeps no more (plus one section).
pub const SNAPSHOT_INTERVAL: u64 = 1024;
/// Built payloads kept for `getPayload`.
const MAX_BUILDS: usize = 16;
/// Largest signed transaction the pool (and the transactions channel) takes.
pub const MAX_TRANSACTION_BYTES: usize = cohort_evm::pool::MAX_TRANSACTION_BYTES;
/// Transactions waiting in the pool at most.
pub const MAX_POOL: usize = 65_536;
/// Largest state-changes record read back (a block's changes are bounded by its gas).
const MAX_CHANGES_RECORD: usize = 64 << 20;

/// JSON-RPC error codes of the Engine API.
const INVALID_FORKCHOICE_STATE: i64 = -38002;
const INVALID_PAYLOAD_ATTRIBUTES: i64 = -38003;
const UNKNOWN_PAYLOAD: i64 = -38001;
const INTERNAL_ERROR: i64 = -32603;

#[derive(Clone, Debug)]
pub struct Config {
    /// Storage partition of this engine (unique per operator); the journal of state changes
    /// takes `{partition}-changes`.
    pub partition: String,
    /// The chain's genesis file (geth-style `genesis.json`). Every engine of a cluster,
    /// embedded or external, must be given the same file.
    pub genesis: Arc<str>,
}

impl Config {
    /// An engine on the devnet genesis that `scripts/ethereumjs.sh` also gives EthereumJS.
    pub fn devnet(partition: impl Into<String>) -> Self {
        Self {
            partition: partition.into(),
            genesis: cohort_evm::DEVNET_GENESIS.into(),
        }
    }
}

fn tip_of(block: &Block) -> ExecutionTip {
    ExecutionTip {
        hash: block.hash,
        number: block.header.number,
        timestamp: block.header.timestamp,
    }
}

/// The genesis block of the chain `genesis_json` describes.
pub fn genesis(genesis_json: &str) -> Result<ExecutionTip, EngineError> {
    let (_, genesis) =
        Executor::genesis(genesis_json).map_err(|e| EngineError::Genesis(e.to_string()))?;
    Ok(tip_of(&genesis))
}

/// The genesis block of the devnet genesis file the repository keeps.
pub fn devnet_genesis() -> ExecutionTip {
    // The file is compiled in and its genesis hash is pinned by cohort-evm's tests.
    genesis(cohort_evm::DEVNET_GENESIS).unwrap_or_else(|e| panic!("the devnet genesis: {e}"))
}

/// The state root of the devnet genesis.
pub fn devnet_genesis_state_root() -> B256 {
    Executor::genesis(cohort_evm::DEVNET_GENESIS)
        .map(|(_, genesis)| genesis.header.state_root)
        .unwrap_or_else(|e| panic!("the devnet genesis: {e}"))
}

/// The stores a finalization writes: journal first, metadata second.
struct Stores<E: Storage + Clock + Metrics> {
    metadata: Metadata<E, U64, Vec<u8>>,
    journal: Journal<E, Vec<u8>>,
    /// The latest state snapshot (synced only when it moves, every [`SNAPSHOT_INTERVAL`]).
    snapshot: Metadata<E, U64, Vec<u8>>,
    /// The block the snapshot is at (0: none yet, the genesis state is the base).
    snapshot_at: u64,
    /// The finalized blocks' [`BlockRecord`]s, for reads.
    blocks: Journal<E, Vec<u8>>,
    hashes: HashIndex<E>,
}

/// The commit of a finalization: it owns the stores while it writes.
type Commit<E> = Pin<Box<dyn Future<Output = Result<Stores<E>, String>> + Send>>;

/// A finalization whose write has started. It lives in the engine, not in the caller's future:
/// a caller that gives up (the executor drops a call that outlives its timeout) must not take
/// the stores down with it, so whoever takes the lock next finishes the write.
struct Pending<E: Storage + Clock + Metrics> {
    commit: Commit<E>,
    finalized: Arc<Block>,
    /// The records the commit writes, indexed once it is on disk.
    records: Vec<Arc<BlockRecord>>,
}

struct Inner<E: Storage + Clock + Metrics> {
    executor: Executor,
    /// `None` while a commit is pending and once a write failed: nothing more may be finalized
    /// on an unknown disk state.
    stores: Option<Stores<E>>,
    pending: Option<Pending<E>>,
    finalized: Arc<Block>,
    /// Finalized chain by number (the finalized tip included), most recent only.
    canonical: BTreeMap<u64, ExecutionTip>,
    /// Executed payloads above the finalized block, by hash.
    blocks: BTreeMap<B256, Arc<Block>>,
    head: B256,
    safe: B256,
    pool: Pool,
    builds: BTreeMap<B64, ExecutionPayloadV3>,
    build_order: VecDeque<B64>,
    history: Index,
}

/// The engine handle; clones share one engine.
pub struct EmbeddedEngine<E: Storage + Clock + Metrics> {
    inner: Arc<Mutex<Inner<E>>>,
}

impl<E: Storage + Clock + Metrics> Clone for EmbeddedEngine<E> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

fn invalid(reason: impl Into<String>, latest_valid_hash: Option<B256>) -> PayloadStatus {
    PayloadStatus::new(
        PayloadStatusEnum::Invalid {
            validation_error: reason.into(),
        },
        latest_valid_hash,
    )
}

fn storage_error(e: impl std::fmt::Display) -> EngineError {
    EngineError::Storage(e.to_string())
}

impl<E: Storage + Clock + Metrics> EmbeddedEngine<E> {
    /// Opens the engine's storage, resuming at the finalized block it last persisted, or at
    /// genesis on first start.
    pub async fn init(context: E, config: Config) -> Result<Self, EngineError> {
        let (executor, genesis) =
            Executor::genesis(&config.genesis).map_err(|e| EngineError::Genesis(e.to_string()))?;
        let metadata = Metadata::<_, U64, Vec<u8>>::init(
            context.child("metadata"),
            metadata::Config {
                partition: config.partition.clone(),
                codec_config: ((0..).into(), ()),
            },
        )
        .await
        .map_err(storage_error)?;
        if LEGACY_KEYS
            .iter()
            .any(|key| metadata.get(&U64::new(*key)).is_some())
        {
            return Err(corrupt(
                "written by an engine version before Ethereum execution; remove the operator's \
                 engine data to start its execution chain again from genesis",
            ));
        }
        if let Some(stored) = metadata.get(&U64::new(KEY_GENESIS))
            && stored.as_slice() != genesis.hash.as_slice()
        {
            return Err(EngineError::Genesis(
                "the engine's data was written for a chain with another genesis; give it the \
                 genesis file it started with"
                    .into(),
            ));
        }
        let snapshot = Metadata::<_, U64, Vec<u8>>::init(
            context.child("snapshot"),
            metadata::Config {
                partition: format!("{}-snapshot", config.partition),
                codec_config: ((0..).into(), ()),
            },
        )
        .await
        .map_err(storage_error)?;
        let finalized_header = match metadata.get(&U64::new(KEY_FINALIZED_HEADER)) {
            None => None,
            Some(bytes) => Some(
                <Header as alloy_rlp::Decodable>::decode(&mut bytes.as_slice())
                    .map_err(|_| corrupt("finalized header"))?,
            ),
        };
        let finalized_number = finalized_header.as_ref().map_or(0, |h| h.number);
        let checkpoint = match metadata.get(&U64::new(KEY_HASH_INDEX)) {
            None => None,
            Some(bytes) => match Checkpoint::decode(bytes.clone()) {
                Ok(checkpoint) => Some(checkpoint),
                Err(e) => {
                    warn!(
                        error = %e,
                        "embedded engine's hash index checkpoint is unreadable; the index is \
                         rebuilt from the block history"
                    );
                    None
                }
            },
        };
        let history::Opened {
            journal: blocks,
            hashes,
            index: history,
            rebuilt,
        } = history::open(
            context.child("blocks"),
            &config.partition,
            BlockRecord::of(&genesis),
            finalized_number,
            checkpoint,
        )
        .await?;
        debug!(
            finalized = finalized_number,
            records_read = history.read_at_open(),
            rebuilt_hash_index = rebuilt.is_some(),
            "embedded engine opened its block history"
        );
        // The rebuilt index is what the metadata must name from now on (before any
        // finalization, there is nothing to name: the next one writes its checkpoint).
        let metadata = match rebuilt {
            Some(checkpoint) if finalized_header.is_some() => {
                let mut metadata = metadata;
                metadata.put(U64::new(KEY_HASH_INDEX), checkpoint.encode().to_vec());
                metadata.sync().await.map_err(storage_error)?
            }
            _ => metadata,
        };
        let journal = Journal::<_, Vec<u8>>::init_at_most(
            context.child("changes"),
            journal_config(&config.partition, "changes"),
            finalized_number,
        )
        .await
        .map_err(storage_error)?;
        let (finalized, canonical, snapshot_at) = match finalized_header {
            None => {
                if journal.bounds().end != 0 || snapshot.get(&U64::new(KEY_SNAPSHOT)).is_some() {
                    return Err(corrupt("state changes without a finalized block"));
                }
                let tip = tip_of(&genesis);
                (genesis, BTreeMap::from([(0, tip)]), 0)
            }
            Some(header) => resume(&metadata, &snapshot, &journal, genesis, header).await?,
        };
        let head = finalized.hash;
        let mut pool = Pool::new(executor.chain_id(), MAX_POOL);
        pool.prune(&finalized.state);
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                executor,
                stores: Some(Stores {
                    metadata,
                    journal,
                    snapshot,
                    snapshot_at,
                    blocks,
                    hashes,
                }),
                pending: None,
                finalized: Arc::new(finalized),
                canonical,
                blocks: BTreeMap::new(),
                head,
                safe: head,
                pool,
                builds: BTreeMap::new(),
                build_order: VecDeque::new(),
                history,
            })),
        })
    }
}

/// The engine's journals (`{partition}-changes`, `{partition}-blocks`): one record per
/// finalized block, each at most [`MAX_CHANGES_RECORD`] bytes.
fn journal_config(partition: &str, kind: &str) -> JournalConfig<(RangeCfg<usize>, ())> {
    JournalConfig {
        partition: format!("{partition}-{kind}"),
        items_per_section: NZU64!(1024),
        compression: None,
        codec_config: (RangeCfg::new(0..=MAX_CHANGES_RECORD), ()),
        page_cache: CacheRef::new(NZU16!(4096), NZUsize!(16)),
        write_buffer: NZUsize!(1 << 20),
        replay_buffer: NZUsize!(1 << 20),
    }
}

impl<E: Storage + Clock + Metrics> Inner<E> {
    fn stores(&mut self) -> Result<&mut Stores<E>, EngineError> {
        self.stores
            .as_mut()
            .ok_or_else(|| EngineError::Storage("an earlier write failed; restart".into()))
    }

    fn lookup(&self, hash: &B256) -> Option<Arc<Block>> {
        if *hash == self.finalized.hash {
            return Some(self.finalized.clone());
        }
        self.blocks.get(hash).cloned()
    }

    /// The unfinalized blocks from `head` back to (not including) the finalized block, head
    /// first; `None` if `head` does not descend from the finalized block.
    fn path_to_finalized(&self, head: &B256) -> Option<Vec<Arc<Block>>> {
        let mut path = Vec::new();
        let mut cursor = *head;
        while cursor != self.finalized.hash {
            let block = self.blocks.get(&cursor)?;
            cursor = block.header.parent_hash;
            path.push(block.clone());
        }
        Some(path)
    }

    fn remember(&mut self, block: Arc<Block>) {
        if self.blocks.len() >= MAX_UNFINALIZED
            && let Some(lowest) = self
                .blocks
                .iter()
                .min_by_key(|(hash, b)| (b.header.number, **hash))
                .map(|(hash, _)| *hash)
        {
            self.blocks.remove(&lowest);
        }
        self.blocks.insert(block.hash, block);
    }

    /// Moves the finalized block to `path[0]` (path from new finalized back to the old one's
    /// child, new first) and persists it before anything else may rely on it.
    async fn finalize(&mut self, path: Vec<Arc<Block>>) -> Result<(), EngineError> {
        let Some(new) = path.first().cloned() else {
            return Ok(());
        };
        let Stores {
            metadata,
            journal,
            snapshot,
            snapshot_at,
            blocks,
            hashes,
        } = self
            .stores
            .take()
            .ok_or_else(|| EngineError::Storage("an earlier write failed; restart".into()))?;
        for block in path.iter().rev() {
            self.canonical.insert(block.header.number, tip_of(block));
        }
        while self.canonical.len() > CANONICAL_HISTORY {
            self.canonical.pop_first();
        }
        let records: Vec<Vec<u8>> = path.iter().rev().map(|b| b.changes.encode()).collect();
        let block_records: Vec<Arc<BlockRecord>> = path
            .iter()
            .rev()
            .map(|b| Arc::new(BlockRecord::of(b)))
            .collect();
        let history: Vec<Vec<u8>> = block_records.iter().map(|r| r.encode()).collect();
        let indexed = block_records.clone();
        let mut canonical = Vec::with_capacity(self.canonical.len() * 48);
        for tip in self.canonical.values() {
            encode_tip(tip, &mut canonical);
        }
        let header = alloy_rlp::encode(&new.header);
        let genesis_hash = self.history.genesis_hash();
        let (new_number, new_root) = (new.header.number, new.header.state_root);
        let first = path.last().map_or(new.header.number, |b| b.header.number);
        let commit = async move {
            let mut journal = journal;
            if journal.bounds().end + 1 != first {
                return Err(format!(
                    "the journal ends at block {}, the finalization starts at {first}",
                    journal.bounds().end
                ));
            }
            if blocks.bounds().end + 1 != first {
                return Err(format!(
                    "the block history ends at block {}, the finalization starts at {first}",
                    blocks.bounds().end
                ));
            }
            for record in &records {
                journal = journal.append(record).await.map_err(|e| e.to_string())?.0;
            }
            let mut blocks = blocks;
            for record in &history {
                blocks = blocks.append(record).await.map_err(|e| e.to_string())?.0;
            }
            let journal = journal.sync().await.map_err(|e| e.to_string())?;
            let blocks = blocks.sync().await.map_err(|e| e.to_string())?;
            let mut hashes = hashes;
            for record in &indexed {
                hashes = history::index_record(hashes, record).await?;
            }
            let (hashes, checkpoint) = hashes.sync().await.map_err(|e| e.to_string())?;
            let mut metadata = metadata;
            metadata.put(U64::new(KEY_HASH_INDEX), checkpoint.encode().to_vec());
            metadata.put(U64::new(KEY_FINALIZED_HEADER), header);
            metadata.put(U64::new(KEY_CANONICAL), canonical);
            metadata.put(U64::new(KEY_GENESIS), genesis_hash.to_vec());
            let metadata = metadata.sync().await.map_err(|e| e.to_string())?;
            let (journal, snapshot, snapshot_at) = if new_number >= snapshot_at + SNAPSHOT_INTERVAL
            {
                take_snapshot(journal, snapshot, snapshot_at, new_number, new_root).await?
            } else {
                (journal, snapshot, snapshot_at)
            };
            Ok(Stores {
                metadata,
                journal,
                snapshot,
                snapshot_at,
                blocks,
                hashes,
            })
        };
        self.pending = Some(Pending {
            commit: Box::pin(commit),
            finalized: new,
            records: block_records,
        });
        self.settle().await
    }

    /// Finishes a pending commit, if any, and only then makes its block the finalized one.
    /// Cancel-safe: dropped while it waits, the commit stays pending for the next call.
    async fn settle(&mut self) -> Result<(), EngineError> {
        let Some(pending) = self.pending.as_mut() else {
            return Ok(());
        };
        let written = pending.commit.as_mut().await;
        let Some(Pending {
            finalized: new,
            records,
            ..
        }) = self.pending.take()
        else {
            return Ok(());
        };
        self.stores = Some(written.map_err(EngineError::Storage)?);
        for record in records {
            self.history.add(record);
        }
        let number = new.header.number;
        self.finalized = new;
        self.blocks.retain(|_, b| b.header.number > number);
        self.pool.prune(&self.finalized.state);
        debug!(number, hash = %self.finalized.hash, "embedded engine finalized");
        Ok(())
    }

    fn build(
        &mut self,
        head: &Block,
        attributes: &PayloadAttributes,
    ) -> Result<PayloadId, EngineError> {
        let Some(parent_beacon_block_root) = attributes.parent_beacon_block_root else {
            return Err(EngineError::Rpc {
                code: INVALID_PAYLOAD_ATTRIBUTES,
                message: "parent_beacon_block_root is required (V3)".into(),
            });
        };
        let transactions = self
            .pool
            .select(&head.state, MAX_TRANSACTION_BYTES_PER_PAYLOAD);
        let built = self
            .executor
            .build(head, attributes, &transactions)
            .map_err(|e| EngineError::Rpc {
                code: match e {
                    BuildError::Execution(_) => INTERNAL_ERROR,
                    _ => INVALID_PAYLOAD_ATTRIBUTES,
                },
                message: e.to_string(),
            })?;
        if !built.skipped.is_empty() {
            debug!(
                left_out = built.skipped.len(),
                first_reason = %built.skipped[0].1,
                "pooled transactions left out of the built payload; they stay pooled until finality passes their nonce"
            );
        }
        let mut preimage = Vec::with_capacity(32 * 4 + 8 + 20);
        preimage.extend_from_slice(head.hash.as_slice());
        preimage.extend_from_slice(&attributes.timestamp.to_be_bytes());
        preimage.extend_from_slice(attributes.prev_randao.as_slice());
        preimage.extend_from_slice(attributes.suggested_fee_recipient.as_slice());
        preimage.extend_from_slice(parent_beacon_block_root.as_slice());
        let digest = keccak256(&preimage);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        let id = PayloadId::new(id);
        // The builder executed its block: keep it, so its own newPayload executes nothing.
        self.remember(Arc::new(built.executed));
        if self.builds.insert(id.0, built.payload).is_none() {
            self.build_order.push_back(id.0);
        }
        while self.build_order.len() > MAX_BUILDS {
            if let Some(old) = self.build_order.pop_front() {
                self.builds.remove(&old);
            }
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BlockTag, ExecutionEngine as _, ForkchoiceState};
    use alloy_primitives::{Address, Bytes, U256};
    use cohort_evm::{DEVNET_FUNDED_KEY, PoolError, Wallet};
    use commonware_runtime::{Runner as _, Supervisor as _, deterministic};

    const ROOT: B256 = B256::repeat_byte(3);
    const RECIPIENT: Address = Address::repeat_byte(0xbe);
    const GWEI: u128 = 1_000_000_000;

    async fn engine(
        context: &deterministic::Context,
        name: &'static str,
    ) -> EmbeddedEngine<deterministic::Context> {
        EmbeddedEngine::init(
            context.child(name),
            Config::devnet(format!("{name}-engine")),
        )
        .await
        .expect("engine opens")
    }

    /// [`engine`] opened a second time in one run (its metrics under another label).
    async fn engine_again(
        context: &deterministic::Context,
        name: &'static str,
    ) -> EmbeddedEngine<deterministic::Context> {
        EmbeddedEngine::init(
            context.child("again"),
            Config::devnet(format!("{name}-engine")),
        )
        .await
        .expect("engine opens")
    }

    fn wallet() -> Wallet {
        Wallet::new(&DEVNET_FUNDED_KEY, 1337, 0).expect("the devnet key")
    }

    fn attributes(timestamp: u64) -> PayloadAttributes {
        PayloadAttributes {
            timestamp,
            prev_randao: B256::repeat_byte(1),
            suggested_fee_recipient: Address::repeat_byte(2),
            withdrawals: Some(Vec::new()),
            parent_beacon_block_root: Some(ROOT),
            ..Default::default()
        }
    }

    fn choice(head: B256, finalized: B256) -> ForkchoiceState {
        ForkchoiceState {
            head_block_hash: head,
            safe_block_hash: finalized,
            finalized_block_hash: finalized,
        }
    }

    /// Submits `count` transfers from `wallet` to `engine`'s pool.
    async fn transfers<E: Storage + Clock + Metrics>(
        engine: &EmbeddedEngine<E>,
        wallet: &mut Wallet,
        count: usize,
    ) {
        for _ in 0..count {
            let raw = wallet
                .transfer(RECIPIENT, U256::from(1_000), 10 * GWEI, GWEI)
                .expect("signs");
            engine.pool_transaction(raw).await.expect("pooled");
        }
    }

    /// Builds a payload on `head` with the engine's pool.
    async fn build<E: Storage + Clock + Metrics>(
        engine: &EmbeddedEngine<E>,
        head: B256,
        timestamp: u64,
    ) -> ExecutionPayloadV3 {
        let update = engine
            .forkchoice_updated(choice(head, B256::ZERO), Some(attributes(timestamp)))
            .await
            .expect("forkchoice accepted");
        assert_eq!(update.payload_status.status, PayloadStatusEnum::Valid);
        let id = update.payload_id.expect("a build started");
        engine.get_payload(id).await.expect("payload built")
    }

    async fn finalize<E: Storage + Clock + Metrics>(engine: &EmbeddedEngine<E>, hash: B256) {
        engine
            .forkchoice_updated(choice(hash, hash), None)
            .await
            .expect("finalized");
    }

    fn hash_of(payload: &ExecutionPayloadV3) -> B256 {
        payload.payload_inner.payload_inner.block_hash
    }

    /// Builds a payload on `head` from the pool, executes it (VALID) and finalizes it.
    async fn extend<E: Storage + Clock + Metrics>(
        engine: &EmbeddedEngine<E>,
        head: B256,
        timestamp: u64,
    ) -> ExecutionPayloadV3 {
        let payload = build(engine, head, timestamp).await;
        let status = engine
            .new_payload(payload.clone(), ROOT)
            .await
            .expect("executes");
        assert!(status.is_valid(), "{status:?}");
        finalize(engine, hash_of(&payload)).await;
        payload
    }

    #[test]
    fn a_built_payload_executes_identically_on_another_engine() {
        deterministic::Runner::default().start(|context| async move {
            let builder = engine(&context, "a").await;
            let follower = engine(&context, "b").await;
            let genesis = devnet_genesis();
            transfers(&builder, &mut wallet(), 2).await;
            let payload = build(&builder, genesis.hash, 12).await;
            let inner = &payload.payload_inner.payload_inner;
            assert_eq!(inner.block_number, 1);
            assert_eq!(inner.parent_hash, genesis.hash);
            assert_eq!(inner.transactions.len(), 2);
            assert_eq!(inner.gas_used, 42_000);
            for engine in [&builder, &follower] {
                let status = engine.new_payload(payload.clone(), ROOT).await.unwrap();
                assert!(status.is_valid(), "{status:?}");
                finalize(engine, inner.block_hash).await;
            }
            let (a, root_a) = builder.finalized().await;
            let (b, root_b) = follower.finalized().await;
            assert_eq!((a, root_a), (b, root_b));
            assert_eq!(a.number, 1);
            assert_eq!(root_a, inner.state_root);
            // Transactions now finalized leave the pool: the next build carries none.
            assert_eq!(builder.pool_len().await, 0);
            let next = build(&builder, inner.block_hash, 24).await;
            assert!(next.payload_inner.payload_inner.transactions.is_empty());
        });
    }

    #[test]
    fn tampered_unknown_and_stale_payloads_are_answered_like_an_engine() {
        deterministic::Runner::default().start(|context| async move {
            let builder = engine(&context, "a").await;
            let follower = engine(&context, "b").await;
            let genesis = devnet_genesis();
            let mut wallet = wallet();
            transfers(&builder, &mut wallet, 1).await;
            let first = build(&builder, genesis.hash, 12).await;
            builder.new_payload(first.clone(), ROOT).await.unwrap();
            transfers(&builder, &mut wallet, 1).await;
            let second = build(&builder, hash_of(&first), 24).await;
            assert_eq!(second.payload_inner.payload_inner.transactions.len(), 1);

            // Parent unknown to the follower: SYNCING, not INVALID.
            let answer = follower.new_payload(second.clone(), ROOT).await.unwrap();
            assert_eq!(answer.status, PayloadStatusEnum::Syncing);

            // A changed state root (resealed so the hash matches) is caught by execution, and
            // the parent stays the latest valid block.
            let mut lying = first.clone();
            lying.payload_inner.payload_inner.state_root = B256::repeat_byte(9);
            cohort_evm::reseal(&mut lying, ROOT);
            let answer = follower.new_payload(lying, ROOT).await.unwrap();
            let PayloadStatusEnum::Invalid { validation_error } = &answer.status else {
                panic!("a wrong state root must be INVALID: {answer:?}");
            };
            assert!(
                validation_error.starts_with("state root"),
                "{validation_error}"
            );
            assert_eq!(answer.latest_valid_hash, Some(genesis.hash));

            // A changed field without resealing breaks the hash, even for a known block.
            let mut tampered = first.clone();
            tampered.payload_inner.payload_inner.gas_used += 1;
            let answer = builder.new_payload(tampered, ROOT).await.unwrap();
            let PayloadStatusEnum::Invalid { validation_error } = &answer.status else {
                panic!("a tampered payload must be INVALID: {answer:?}");
            };
            assert!(
                validation_error.contains("block hash"),
                "{validation_error}"
            );

            // A transaction that does not decode, resealed, is INVALID.
            let mut garbage = first.clone();
            garbage.payload_inner.payload_inner.transactions = vec![Bytes::from_static(b"\x02")];
            cohort_evm::reseal(&mut garbage, ROOT);
            let answer = follower.new_payload(garbage, ROOT).await.unwrap();
            assert!(
                matches!(answer.status, PayloadStatusEnum::Invalid { .. }),
                "{answer:?}"
            );

            // Attributes that do not move time forward are refused.
            let refused = builder
                .forkchoice_updated(choice(hash_of(&first), B256::ZERO), Some(attributes(12)))
                .await;
            assert!(
                matches!(
                    refused,
                    Err(EngineError::Rpc {
                        code: INVALID_PAYLOAD_ATTRIBUTES,
                        ..
                    })
                ),
                "{refused:?}"
            );

            // Finalizing a block that is not an ancestor of head is refused.
            assert!(
                follower
                    .new_payload(first.clone(), ROOT)
                    .await
                    .unwrap()
                    .is_valid()
            );
            let refused = follower
                .forkchoice_updated(choice(genesis.hash, hash_of(&first)), None)
                .await;
            assert!(matches!(
                refused,
                Err(EngineError::Rpc {
                    code: INVALID_FORKCHOICE_STATE,
                    ..
                })
            ));
        });
    }

    #[test]
    fn the_pool_refuses_what_cannot_execute_and_says_why() {
        deterministic::Runner::default().start(|context| async move {
            let engine = engine(&context, "a").await;
            let mut funded = wallet();
            let raw = funded
                .transfer(RECIPIENT, U256::from(1), 10 * GWEI, GWEI)
                .unwrap();
            engine.pool_transaction(raw.clone()).await.unwrap();
            assert_eq!(engine.pool_transaction(raw).await, Err(PoolError::Known));
            let mut other_chain = Wallet::new(&DEVNET_FUNDED_KEY, 1, 1).unwrap();
            let raw = other_chain
                .transfer(RECIPIENT, U256::from(1), 10 * GWEI, GWEI)
                .unwrap();
            assert!(matches!(
                engine.pool_transaction(raw).await,
                Err(PoolError::ChainId { .. })
            ));
            let mut empty = Wallet::new(&B256::repeat_byte(7), 1337, 0).unwrap();
            let raw = empty
                .transfer(RECIPIENT, U256::from(1), 10 * GWEI, GWEI)
                .unwrap();
            assert!(matches!(
                engine.pool_transaction(raw).await,
                Err(PoolError::InsufficientFunds { .. })
            ));
            assert!(matches!(
                engine
                    .pool_transaction(Bytes::from_static(b"\x02\xff"))
                    .await,
                Err(PoolError::Malformed(_))
            ));
            assert_eq!(engine.pool_len().await, 1);
        });
    }

    #[test]
    fn a_restart_resumes_at_the_finalized_block_and_never_executes_it_again() {
        let executor = deterministic::Runner::default();
        let ((payloads, finalized), checkpoint) =
            executor.start_and_recover(|context| async move {
                let engine = engine(&context, "a").await;
                let mut wallet = wallet();
                let mut head = devnet_genesis().hash;
                let mut payloads = Vec::new();
                for block in 1..=3u64 {
                    transfers(&engine, &mut wallet, 2).await;
                    let payload = extend(&engine, head, block * 12).await;
                    head = hash_of(&payload);
                    payloads.push(payload);
                }
                (payloads, engine.finalized().await)
            });
        deterministic::Runner::from(checkpoint).start(|context| async move {
            let engine = engine(&context, "a").await;
            assert_eq!(engine.finalized().await, finalized);
            assert_eq!(
                engine.block_by_number(BlockTag::Latest).await.unwrap(),
                Some(finalized.0)
            );
            // Redelivered after the restart: known, VALID, nothing executed.
            let answer = engine.new_payload(payloads[2].clone(), ROOT).await.unwrap();
            assert!(answer.is_valid());
            // The restored state knows the sender's nonce: a used nonce is refused...
            let mut replay = wallet();
            let used = replay
                .transfer(RECIPIENT, U256::from(1_000), 10 * GWEI, GWEI)
                .unwrap();
            assert_eq!(
                engine.pool_transaction(used).await,
                Err(PoolError::NonceTooLow {
                    nonce: 0,
                    account: 6
                })
            );
            // ...and the next block built on it is VALID to an engine that executed all four.
            let mut next_wallet = Wallet::new(&DEVNET_FUNDED_KEY, 1337, 6).unwrap();
            transfers(&engine, &mut next_wallet, 1).await;
            let fourth = build(&engine, finalized.0.hash, 48).await;
            let witness = self::engine(&context, "witness").await;
            for payload in payloads.iter().chain([&fourth]) {
                let status = witness.new_payload(payload.clone(), ROOT).await.unwrap();
                assert!(status.is_valid(), "{status:?}");
            }
        });
    }

    #[test]
    fn finalized_blocks_and_transactions_are_read_back_across_a_restart() {
        // More blocks than the engine keeps decoded in memory, so the oldest come from disk,
        // and more than the canonical record keeps hashes of.
        const BLOCKS: u64 = CANONICAL_HISTORY as u64 + 6;
        let executor = deterministic::Runner::default();
        let ((records, sent), checkpoint) = executor.start_and_recover(|context| async move {
            let engine = engine(&context, "a").await;
            let mut wallet = wallet();
            let mut head = devnet_genesis().hash;
            let mut sent = Vec::new();
            for block in 1..=BLOCKS {
                if block % 20 == 1 {
                    let raw = wallet
                        .transfer(RECIPIENT, U256::from(block), 10 * GWEI, GWEI)
                        .unwrap();
                    sent.push((engine.pool_transaction(raw).await.unwrap(), block));
                }
                let payload = extend(&engine, head, block * 12).await;
                head = hash_of(&payload);
            }
            let mut records = Vec::new();
            for number in [0, 1, 2, BLOCKS - 1, BLOCKS] {
                let record = engine.block(BlockId::Number(number)).await.unwrap();
                records.push(record.expect("a finalized block is kept"));
            }
            // Not finalized (not even built): nothing.
            assert!(
                engine
                    .block(BlockId::Number(BLOCKS + 1))
                    .await
                    .unwrap()
                    .is_none()
            );
            (records, sent)
        });
        let checkpoint = deterministic::Runner::from(checkpoint)
            .start_and_recover(|context| async move {
                let engine = engine(&context, "a").await;
                for record in &records {
                    let by_number = engine.block(BlockId::Number(record.header.number)).await;
                    let by_hash = engine.block(BlockId::Hash(record.hash)).await;
                    assert_eq!(by_number.unwrap().as_deref(), Some(&**record));
                    assert_eq!(by_hash.unwrap().as_deref(), Some(&**record));
                }
                assert_eq!(records[4].hash, engine.finalized().await.0.hash);
                // The node asks for the genesis block on every start: still answered.
                assert_eq!(
                    engine.block_by_number(BlockTag::Number(0)).await.unwrap(),
                    Some(devnet_genesis())
                );
                let second = engine.block_by_number(BlockTag::Number(2)).await.unwrap();
                assert_eq!(second.map(|tip| tip.hash), Some(records[2].hash));
                for (hash, number) in &sent {
                    let (record, index) = engine.transaction(hash).await.unwrap().expect("found");
                    assert_eq!(record.header.number, *number);
                    assert_eq!(record.transactions[index].tx_hash(), hash);
                    assert_eq!(record.senders[index], wallet().address());
                    assert!(record.receipts[index].status());
                }
                assert!(
                    engine
                        .transaction(&B256::repeat_byte(9))
                        .await
                        .unwrap()
                        .is_none()
                );
                // The state came from the snapshot at block 1024 plus six blocks' changes, and
                // the journal no longer holds the changes before the snapshot.
                {
                    let inner = engine.inner.lock().await;
                    let stores = inner.stores.as_ref().expect("stores");
                    assert_eq!(stores.snapshot_at, SNAPSHOT_INTERVAL);
                    assert_eq!(stores.journal.bounds(), SNAPSHOT_INTERVAL..BLOCKS);
                }
                // Another genesis on the same data is refused, whatever the canonical record
                // still remembers.
                drop(engine);
                let other = cohort_evm::DEVNET_GENESIS.replace("0x3b9aca00", "0x3b9aca01");
                let refused = EmbeddedEngine::init(
                    context.child("other"),
                    Config {
                        partition: "a-engine".into(),
                        genesis: other.into(),
                    },
                )
                .await;
                assert!(
                    matches!(refused, Err(EngineError::Genesis(_))),
                    "{:?}",
                    refused.err()
                );
                // An engine whose data predates the history: drop the history's partition.
                for partition in [
                    "a-engine-blocks_data",
                    "a-engine-blocks_offsets-blobs",
                    "a-engine-blocks_offsets-metadata",
                ] {
                    context.remove(partition, None).await.unwrap();
                }
            })
            .1;
        deterministic::Runner::from(checkpoint).start(|context| async move {
            let engine = engine(&context, "a").await;
            let (finalized, _) = engine.finalized().await;
            assert_eq!(finalized.number, BLOCKS);
            // Blocks before the resumed one are not kept; genesis always is.
            assert!(engine.block(BlockId::Number(3)).await.unwrap().is_none());
            assert!(engine.block(BlockId::Number(0)).await.unwrap().is_some());
            // Blocks finalized from now on are.
            let payload = extend(&engine, finalized.hash, (BLOCKS + 1) * 12).await;
            let record = engine.block(BlockId::Number(BLOCKS + 1)).await.unwrap();
            assert_eq!(record.map(|r| r.hash), Some(hash_of(&payload)));
        });
    }

    /// A restart used to rebuild the hash indexes by reading every block ever finalized (a
    /// minute per few million blocks, and memory for every hash); the index is on disk now and
    /// an open reads only the recent records. An index that is lost, or a data directory
    /// written before it existed, is rebuilt from the history once.
    #[test]
    fn a_restart_reads_the_hash_index_from_disk_and_rebuilds_one_that_is_lost() {
        const BLOCKS: u64 = history::RECENT as u64 + 72;
        const RECENT: u64 = history::RECENT as u64;
        /// Everything the engine answers by hash: every block, and one transaction a block.
        async fn check_reads(
            engine: &EmbeddedEngine<deterministic::Context>,
            blocks: &[(B256, B256)],
        ) {
            for (number, (block, transaction)) in (1..).zip(blocks) {
                let by_hash = engine.block(BlockId::Hash(*block)).await.unwrap();
                assert_eq!(by_hash.map(|r| r.header.number), Some(number));
                let (record, index) = engine
                    .transaction(transaction)
                    .await
                    .unwrap()
                    .expect("a finalized transaction is found");
                assert_eq!(record.header.number, number);
                assert_eq!(record.transactions[index].tx_hash(), transaction);
            }
            // A transaction's hash is not a block's, nor the reverse.
            let (block, transaction) = blocks[0];
            assert!(
                engine
                    .block(BlockId::Hash(transaction))
                    .await
                    .unwrap()
                    .is_none()
            );
            assert!(engine.transaction(&block).await.unwrap().is_none());
        }
        async fn read_at_open(engine: &EmbeddedEngine<deterministic::Context>) -> u64 {
            engine.inner.lock().await.history.read_at_open()
        }
        async fn drop_index(context: &deterministic::Context) {
            for kind in ["keys", "values", "table"] {
                context
                    .remove(&format!("h-engine-hashes-{kind}"), None)
                    .await
                    .unwrap();
            }
        }

        let executor = deterministic::Runner::default();
        let (blocks, checkpoint) = executor.start_and_recover(|context| async move {
            let engine = engine(&context, "h").await;
            let mut wallet = wallet();
            let mut head = devnet_genesis().hash;
            let mut blocks = Vec::new();
            for block in 1..=BLOCKS {
                let raw = wallet
                    .transfer(RECIPIENT, U256::from(block), 10 * GWEI, GWEI)
                    .unwrap();
                let transaction = engine.pool_transaction(raw).await.unwrap();
                let payload = extend(&engine, head, block * 12).await;
                head = hash_of(&payload);
                blocks.push((head, transaction));
            }
            check_reads(&engine, &blocks).await;
            blocks
        });
        // A restart reads the recent records only, and answers every hash from disk.
        let (blocks, checkpoint) =
            deterministic::Runner::from(checkpoint).start_and_recover(|context| async move {
                let engine = engine(&context, "h").await;
                assert_eq!(read_at_open(&engine).await, RECENT);
                check_reads(&engine, &blocks).await;
                drop(engine);
                drop_index(&context).await;
                blocks
            });
        // The index is lost (the metadata still names its checkpoint): rebuilt from the
        // history, once.
        let (blocks, checkpoint) =
            deterministic::Runner::from(checkpoint).start_and_recover(|context| async move {
                let engine = engine(&context, "h").await;
                assert_eq!(read_at_open(&engine).await, BLOCKS + RECENT);
                check_reads(&engine, &blocks).await;
                drop(engine);
                let engine = engine_again(&context, "h").await;
                assert_eq!(read_at_open(&engine).await, RECENT);
                check_reads(&engine, &blocks).await;
                drop(engine);
                // Data written before the engine kept an index: no checkpoint, no index.
                drop_index(&context).await;
                let mut metadata = Metadata::<_, U64, Vec<u8>>::init(
                    context.child("old_metadata"),
                    metadata::Config {
                        partition: "h-engine".into(),
                        codec_config: ((0..).into(), ()),
                    },
                )
                .await
                .unwrap();
                assert!(metadata.remove(&U64::new(KEY_HASH_INDEX)).is_some());
                metadata.sync().await.unwrap();
                blocks
            });
        deterministic::Runner::from(checkpoint).start(|context| async move {
            let engine = engine(&context, "h").await;
            assert_eq!(read_at_open(&engine).await, BLOCKS + RECENT);
            check_reads(&engine, &blocks).await;
            // It keeps finalizing, and indexing, after the rebuild.
            let (finalized, _) = engine.finalized().await;
            let payload = extend(&engine, finalized.hash, (BLOCKS + 1) * 12).await;
            let record = engine
                .block(BlockId::Hash(hash_of(&payload)))
                .await
                .unwrap();
            assert_eq!(record.map(|r| r.header.number), Some(BLOCKS + 1));
        });
    }

    /// The executor drops an engine call that outlives its timeout. A forkchoice update dropped
    /// while its finalization was being written used to take the store with it, and every later
    /// call failed with "an earlier write failed; restart" (seen against Lodestar on a loaded
    /// machine). Under the tokio runtime the write goes to the blocking pool, so the first poll
    /// of the update pends in the middle of it.
    #[test]
    fn a_forkchoice_update_dropped_while_it_writes_leaves_the_engine_working() {
        let runner = commonware_runtime::tokio::Runner::default();
        runner.start(|context| async move {
            let engine = EmbeddedEngine::init(
                context.child("engine"),
                Config::devnet("dropped-write-engine"),
            )
            .await
            .expect("engine opens");
            let mut wallet = wallet();
            transfers(&engine, &mut wallet, 1).await;
            let first = build(&engine, devnet_genesis().hash, 12).await;
            engine
                .new_payload(first.clone(), ROOT)
                .await
                .expect("executes");
            let hash = hash_of(&first);

            let mut update = Box::pin(engine.forkchoice_updated(choice(hash, hash), None));
            assert!(
                futures::poll!(update.as_mut()).is_pending(),
                "the finalization is on its way to disk"
            );
            drop(update);

            // Whoever comes next finishes the write; the engine keeps finalizing.
            assert_eq!(engine.finalized().await.0.hash, hash);
            transfers(&engine, &mut wallet, 1).await;
            let second = build(&engine, hash, 24).await;
            let status = engine
                .new_payload(second.clone(), ROOT)
                .await
                .expect("executes");
            assert!(status.is_valid(), "{status:?}");
            let next = hash_of(&second);
            finalize(&engine, next).await;
            assert_eq!(engine.finalized().await.0.hash, next);
        });
    }
}
