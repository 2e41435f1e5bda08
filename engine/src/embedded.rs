//! The embedded engine: an in-process execution engine speaking Engine API types.
//!
//! It behaves like an execution client as far as the executor can tell: it keeps executed
//! payloads by hash, checks parent linkage, number, timestamp and its own state root,
//! executes the payload's transactions ([`crate::ops`]), answers VALID / INVALID / SYNCING,
//! builds payloads on `forkchoiceUpdated` with attributes, and refuses forkchoice states that
//! would move the finalized block off its chain. It runs on the runtime it is given, so under
//! the deterministic runtime a whole cluster's engines replay from the seed.
//!
//! Only the finalized block, its state and the recent canonical hashes are persisted (one
//! atomic [`Metadata`] commit per finalization); executed but unfinalized payloads live in
//! memory and are simply sent again after a restart, as marshal redelivers what was not
//! acknowledged. A payload at or below the finalized height is answered from the canonical
//! record, never executed twice.
//!
//! The block hash is `keccak256(ssz(payload with block_hash zeroed) || parent_beacon_block_root)`,
//! not an RLP header hash: every operator of a cluster must run this engine for payloads to
//! agree.

use crate::{
    BlockTag, EngineError, ExecutionEngine, ExecutionTip, ForkchoiceState, ForkchoiceUpdated,
    InvalidPayload, PayloadAttributes, PayloadId, PayloadStatus, PayloadStatusEnum,
    ops::{ClusterOp, OP_GAS, State},
};
use alloy_primitives::{B64, B256, Bloom, Bytes, U256, keccak256};
use alloy_rpc_types_engine::{ExecutionPayloadV1, ExecutionPayloadV2, ExecutionPayloadV3};
use commonware_runtime::{Clock, Metrics, Storage};
use commonware_storage::metadata::{self, Metadata};
use commonware_utils::sequence::U64;
use futures::lock::Mutex;
use std::{
    collections::{BTreeMap, VecDeque},
    future::Future,
    pin::Pin,
    sync::Arc,
};
use tracing::{debug, info, warn};

mod record;
use record::{KEY_CANONICAL, KEY_FINALIZED, KEY_STATE, corrupt, decode_tip, encode_tip};

/// Gas limit of every payload this engine builds and accepts.
pub const GAS_LIMIT: u64 = 30_000_000;
/// Most ops one payload carries: keeps a payload well inside a cluster block's size limit.
pub const MAX_OPS_PER_PAYLOAD: usize = 256;
/// Base fee of every payload; the state transition charges no fees.
pub const BASE_FEE: u64 = 7;
/// Executed, unfinalized payloads kept in memory. Beyond it the lowest are dropped (the
/// executor sends them again if they are ever needed).
const MAX_UNFINALIZED: usize = 1024;
/// Finalized canonical hashes remembered, to answer redelivered old payloads without
/// executing them again.
const CANONICAL_HISTORY: usize = 1024;
/// Built payloads kept for `getPayload`.
const MAX_BUILDS: usize = 16;
/// Ops waiting in the pool; more are refused with a warning.
const MAX_POOL: usize = 65_536;

/// JSON-RPC error codes of the Engine API.
const INVALID_FORKCHOICE_STATE: i64 = -38002;
const INVALID_PAYLOAD_ATTRIBUTES: i64 = -38003;
const UNKNOWN_PAYLOAD: i64 = -38001;

#[derive(Clone, Debug)]
pub struct Config {
    /// Storage partition of this engine (unique per operator).
    pub partition: String,
    /// Timestamp of the execution genesis block (seconds).
    pub genesis_timestamp: u64,
}

/// The genesis block every embedded engine with `genesis_timestamp` starts from.
pub fn genesis(genesis_timestamp: u64) -> ExecutionTip {
    let mut preimage = b"cohort-embedded-genesis".to_vec();
    preimage.extend_from_slice(&genesis_timestamp.to_be_bytes());
    preimage.extend_from_slice(State::default().root().as_slice());
    ExecutionTip {
        hash: keccak256(&preimage),
        number: 0,
        timestamp: genesis_timestamp,
    }
}

/// The hash this engine gives a payload.
pub fn block_hash(payload: &ExecutionPayloadV3, parent_beacon_block_root: B256) -> B256 {
    let mut unsealed = payload.clone();
    unsealed.payload_inner.payload_inner.block_hash = B256::ZERO;
    let mut preimage = crate::encode_payload(&unsealed);
    preimage.extend_from_slice(parent_beacon_block_root.as_slice());
    keccak256(&preimage)
}

#[derive(Clone, Debug)]
struct Executed {
    tip: ExecutionTip,
    parent: B256,
    state: Arc<State>,
}

/// The commit of the finalized record: [`Metadata::sync`] owns the store while it writes.
type Commit<E> =
    Pin<Box<dyn Future<Output = Result<Metadata<E, U64, Vec<u8>>, metadata::Error>> + Send>>;

/// A finalization whose write has started. It lives in the engine, not in the caller's future:
/// a caller that gives up (the executor drops a call that outlives its timeout) must not take
/// the store down with it, so whoever takes the lock next finishes the write.
struct Pending<E: Storage + Clock + Metrics> {
    commit: Commit<E>,
    finalized: Executed,
}

struct Inner<E: Storage + Clock + Metrics> {
    /// `None` while a commit is pending and once a write failed: nothing more may be finalized
    /// on an unknown disk state.
    metadata: Option<Metadata<E, U64, Vec<u8>>>,
    pending: Option<Pending<E>>,
    finalized: ExecutionTip,
    finalized_state: Arc<State>,
    /// Finalized chain by number (the finalized tip included), most recent only.
    canonical: BTreeMap<u64, ExecutionTip>,
    /// Executed payloads above the finalized block, by hash.
    blocks: BTreeMap<B256, Executed>,
    head: B256,
    safe: B256,
    /// The newest waiting op per key.
    pool: BTreeMap<Vec<u8>, ClusterOp>,
    builds: BTreeMap<B64, ExecutionPayloadV3>,
    build_order: VecDeque<B64>,
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

impl<E: Storage + Clock + Metrics> EmbeddedEngine<E> {
    /// Opens the engine's storage, resuming at the finalized block it last persisted, or at
    /// genesis on first start.
    pub async fn init(context: E, config: Config) -> Result<Self, EngineError> {
        let metadata = Metadata::<_, U64, Vec<u8>>::init(
            context.child("metadata"),
            metadata::Config {
                partition: config.partition,
                codec_config: ((0..).into(), ()),
            },
        )
        .await
        .map_err(|e| EngineError::Storage(e.to_string()))?;
        let (finalized, state, canonical) = match metadata.get(&U64::new(KEY_FINALIZED)) {
            None => {
                let genesis = genesis(config.genesis_timestamp);
                (genesis, State::default(), BTreeMap::from([(0, genesis)]))
            }
            Some(bytes) => {
                let finalized = decode_tip(bytes).ok_or_else(|| corrupt("finalized record"))?;
                let state = metadata
                    .get(&U64::new(KEY_STATE))
                    .ok_or_else(|| corrupt("state missing"))
                    .and_then(|b| State::from_bytes(b).map_err(|e| corrupt(&e.to_string())))?;
                let mut canonical = BTreeMap::new();
                for chunk in metadata
                    .get(&U64::new(KEY_CANONICAL))
                    .ok_or_else(|| corrupt("canonical hashes missing"))?
                    .chunks(48)
                {
                    let tip = decode_tip(chunk).ok_or_else(|| corrupt("canonical hash"))?;
                    canonical.insert(tip.number, tip);
                }
                if canonical.get(&finalized.number) != Some(&finalized) {
                    return Err(corrupt("finalized block missing from canonical hashes"));
                }
                info!(
                    number = finalized.number,
                    hash = %finalized.hash,
                    keys = state.len(),
                    "embedded engine resumed from its finalized block"
                );
                (finalized, state, canonical)
            }
        };
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                metadata: Some(metadata),
                pending: None,
                finalized,
                finalized_state: Arc::new(state),
                canonical,
                blocks: BTreeMap::new(),
                head: finalized.hash,
                safe: finalized.hash,
                pool: BTreeMap::new(),
                builds: BTreeMap::new(),
                build_order: VecDeque::new(),
            })),
        })
    }

    /// The finalized block and its state root: what a simulation compares across operators.
    pub async fn finalized(&self) -> (ExecutionTip, B256) {
        let mut inner = self.inner.lock().await;
        // A failed commit is reported by the next forkchoice update; this answer stays the
        // last finalized block that is on disk.
        let _ = inner.settle().await;
        (inner.finalized, inner.finalized_state.root())
    }
}

impl<E: Storage + Clock + Metrics> Inner<E> {
    fn lookup(&self, hash: &B256) -> Option<(ExecutionTip, Arc<State>)> {
        if *hash == self.finalized.hash {
            return Some((self.finalized, self.finalized_state.clone()));
        }
        self.blocks
            .get(hash)
            .map(|executed| (executed.tip, executed.state.clone()))
    }

    /// The unfinalized blocks from `head` back to (not including) the finalized block, head
    /// first; `None` if `head` does not descend from the finalized block.
    fn path_to_finalized(&self, head: &B256) -> Option<Vec<Executed>> {
        let mut path = Vec::new();
        let mut cursor = *head;
        while cursor != self.finalized.hash {
            let executed = self.blocks.get(&cursor)?;
            cursor = executed.parent;
            path.push(executed.clone());
        }
        Some(path)
    }

    /// Validates `payload` against its parent and executes it; the new state on success.
    fn execute(
        parent: &ExecutionTip,
        parent_state: &State,
        payload: &ExecutionPayloadV3,
    ) -> Result<State, InvalidPayload> {
        let v2 = &payload.payload_inner;
        let v1 = &v2.payload_inner;
        if v1.block_number != parent.number + 1 {
            return Err(InvalidPayload::Number {
                number: v1.block_number,
                parent: parent.number,
            });
        }
        if v1.timestamp <= parent.timestamp {
            return Err(InvalidPayload::Timestamp {
                timestamp: v1.timestamp,
                parent: parent.timestamp,
            });
        }
        if !v2.withdrawals.is_empty() {
            return Err(InvalidPayload::Withdrawals);
        }
        if payload.blob_gas_used != 0 || payload.excess_blob_gas != 0 {
            return Err(InvalidPayload::Blobs);
        }
        if v1.gas_limit != GAS_LIMIT {
            return Err(InvalidPayload::GasLimit {
                found: v1.gas_limit,
                expected: GAS_LIMIT,
            });
        }
        if v1.base_fee_per_gas != U256::from(BASE_FEE) {
            return Err(InvalidPayload::BaseFee {
                found: v1.base_fee_per_gas,
                expected: BASE_FEE,
            });
        }
        if v1.transactions.len() > MAX_OPS_PER_PAYLOAD {
            return Err(InvalidPayload::TooManyTransactions {
                count: v1.transactions.len(),
                max: MAX_OPS_PER_PAYLOAD,
            });
        }
        let gas_used = v1.transactions.len() as u64 * OP_GAS;
        if v1.gas_used != gas_used {
            return Err(InvalidPayload::GasUsed {
                found: v1.gas_used,
                expected: gas_used,
            });
        }
        let mut state = parent_state.clone();
        for (index, tx) in v1.transactions.iter().enumerate() {
            let op = ClusterOp::decode(tx)
                .map_err(|source| InvalidPayload::Transaction { index, source })?;
            state.apply(&op);
        }
        if receipts_root(&v1.transactions) != v1.receipts_root {
            return Err(InvalidPayload::ReceiptsRoot);
        }
        let executed = state.root();
        if executed != v1.state_root {
            return Err(InvalidPayload::StateRoot {
                claimed: v1.state_root,
                executed,
            });
        }
        Ok(state)
    }

    fn remember(&mut self, tip: ExecutionTip, parent: B256, state: State) {
        if self.blocks.len() >= MAX_UNFINALIZED
            && let Some(lowest) = self
                .blocks
                .iter()
                .min_by_key(|(hash, e)| (e.tip.number, **hash))
                .map(|(hash, _)| *hash)
        {
            self.blocks.remove(&lowest);
        }
        self.blocks.insert(
            tip.hash,
            Executed {
                tip,
                parent,
                state: Arc::new(state),
            },
        );
    }

    /// Moves the finalized block to `path[0]` (path from new finalized back to the old one's
    /// child, new first) and persists it before anything else may rely on it.
    async fn finalize(&mut self, path: Vec<Executed>) -> Result<(), EngineError> {
        let Some(new) = path.first().cloned() else {
            return Ok(());
        };
        let mut metadata = self
            .metadata
            .take()
            .ok_or_else(|| EngineError::Storage("an earlier write failed; restart".into()))?;
        for executed in path.iter().rev() {
            self.canonical.insert(executed.tip.number, executed.tip);
        }
        while self.canonical.len() > CANONICAL_HISTORY {
            self.canonical.pop_first();
        }
        let mut finalized = Vec::with_capacity(48);
        encode_tip(&new.tip, &mut finalized);
        let mut canonical = Vec::with_capacity(self.canonical.len() * 48);
        for tip in self.canonical.values() {
            encode_tip(tip, &mut canonical);
        }
        metadata.put(U64::new(KEY_FINALIZED), finalized);
        metadata.put(U64::new(KEY_STATE), new.state.to_bytes());
        metadata.put(U64::new(KEY_CANONICAL), canonical);
        self.pending = Some(Pending {
            commit: Box::pin(metadata.sync()),
            finalized: new,
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
        let Some(Pending { finalized: new, .. }) = self.pending.take() else {
            return Ok(());
        };
        let metadata = written.map_err(|e| EngineError::Storage(e.to_string()))?;
        self.metadata = Some(metadata);
        self.finalized = new.tip;
        self.finalized_state = new.state.clone();
        let number = new.tip.number;
        self.blocks.retain(|_, e| e.tip.number > number);
        let state = self.finalized_state.clone();
        self.pool.retain(|_, op| state.is_newer(op));
        debug!(number, hash = %new.tip.hash, "embedded engine finalized");
        Ok(())
    }

    fn build(
        &mut self,
        head: ExecutionTip,
        head_state: &State,
        attributes: &PayloadAttributes,
    ) -> Result<PayloadId, EngineError> {
        let refuse = |message: String| EngineError::Rpc {
            code: INVALID_PAYLOAD_ATTRIBUTES,
            message,
        };
        if attributes.timestamp <= head.timestamp {
            return Err(refuse(format!(
                "timestamp {} is not after head timestamp {}",
                attributes.timestamp, head.timestamp
            )));
        }
        if attributes
            .withdrawals
            .as_ref()
            .is_some_and(|w| !w.is_empty())
        {
            return Err(refuse("the cluster chain has no withdrawals".into()));
        }
        let Some(parent_beacon_block_root) = attributes.parent_beacon_block_root else {
            return Err(refuse("parent_beacon_block_root is required (V3)".into()));
        };
        let mut state = head_state.clone();
        let mut transactions = Vec::new();
        for op in self.pool.values() {
            if transactions.len() == MAX_OPS_PER_PAYLOAD {
                break;
            }
            if state.apply(op) {
                transactions.push(op.encode());
            }
        }
        let mut payload = ExecutionPayloadV3 {
            payload_inner: ExecutionPayloadV2 {
                payload_inner: ExecutionPayloadV1 {
                    parent_hash: head.hash,
                    fee_recipient: attributes.suggested_fee_recipient,
                    state_root: state.root(),
                    receipts_root: receipts_root(&transactions),
                    logs_bloom: Bloom::default(),
                    prev_randao: attributes.prev_randao,
                    block_number: head.number + 1,
                    gas_limit: GAS_LIMIT,
                    gas_used: transactions.len() as u64 * OP_GAS,
                    timestamp: attributes.timestamp,
                    extra_data: Bytes::from_static(b"cohort"),
                    base_fee_per_gas: U256::from(BASE_FEE),
                    block_hash: B256::ZERO,
                    transactions,
                },
                withdrawals: Vec::new(),
            },
            blob_gas_used: 0,
            excess_blob_gas: 0,
        };
        payload.payload_inner.payload_inner.block_hash =
            block_hash(&payload, parent_beacon_block_root);

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
        if self.builds.insert(id.0, payload).is_none() {
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

/// The receipts root this engine commits to: the hash of the transactions in order (an op has
/// no outcome beyond the state change, so its receipt is itself).
fn receipts_root(transactions: &[Bytes]) -> B256 {
    let mut preimage = Vec::new();
    for tx in transactions {
        preimage.extend_from_slice(&(tx.len() as u32).to_be_bytes());
        preimage.extend_from_slice(tx);
    }
    keccak256(&preimage)
}

impl<E: Storage + Clock + Metrics> ExecutionEngine for EmbeddedEngine<E> {
    async fn new_payload(
        &self,
        payload: ExecutionPayloadV3,
        parent_beacon_block_root: B256,
    ) -> Result<PayloadStatus, EngineError> {
        let mut inner = self.inner.lock().await;
        inner.settle().await?;
        let tip = ExecutionTip::of(&payload);
        let parent_hash = payload.payload_inner.payload_inner.parent_hash;
        if block_hash(&payload, parent_beacon_block_root) != tip.hash {
            return Ok(invalid(
                "block hash does not match the payload's contents",
                None,
            ));
        }
        if inner.blocks.contains_key(&tip.hash) || inner.canonical.get(&tip.number) == Some(&tip) {
            // Known: executed before (maybe before a restart); never execute twice.
            return Ok(PayloadStatus::new(PayloadStatusEnum::Valid, Some(tip.hash)));
        }
        if tip.number <= inner.finalized.number {
            return Ok(invalid(
                format!(
                    "block {} is at or below finalized number {} and not on the finalized chain",
                    tip.number, inner.finalized.number
                ),
                Some(inner.finalized.hash),
            ));
        }
        let Some((parent, parent_state)) = inner.lookup(&parent_hash) else {
            return Ok(PayloadStatus::from_status(PayloadStatusEnum::Syncing));
        };
        match Inner::<E>::execute(&parent, &parent_state, &payload) {
            Ok(state) => {
                inner.remember(tip, parent_hash, state);
                Ok(PayloadStatus::new(PayloadStatusEnum::Valid, Some(tip.hash)))
            }
            Err(reason) => {
                warn!(number = tip.number, hash = %tip.hash, %reason, "payload is invalid");
                Ok(invalid(reason.to_string(), Some(parent.hash)))
            }
        }
    }

    async fn forkchoice_updated(
        &self,
        state: ForkchoiceState,
        attributes: Option<PayloadAttributes>,
    ) -> Result<ForkchoiceUpdated, EngineError> {
        let mut inner = self.inner.lock().await;
        inner.settle().await?;
        let Some((head, head_state)) = inner.lookup(&state.head_block_hash) else {
            return Ok(ForkchoiceUpdated::new(PayloadStatus::from_status(
                PayloadStatusEnum::Syncing,
            )));
        };
        let Some(path) = inner.path_to_finalized(&head.hash) else {
            return Err(EngineError::Rpc {
                code: INVALID_FORKCHOICE_STATE,
                message: "head does not descend from the finalized block".into(),
            });
        };
        let finalized = state.finalized_block_hash;
        if finalized != B256::ZERO && finalized != inner.finalized.hash {
            let Some(position) = path.iter().position(|e| e.tip.hash == finalized) else {
                return Err(EngineError::Rpc {
                    code: INVALID_FORKCHOICE_STATE,
                    message: "finalized block is not an ancestor of head".into(),
                });
            };
            inner.finalize(path[position..].to_vec()).await?;
        }
        if state.safe_block_hash != B256::ZERO {
            inner.safe = state.safe_block_hash;
        }
        inner.head = head.hash;
        let payload_id = match attributes {
            Some(attributes) => Some(inner.build(head, &head_state, &attributes)?),
            None => None,
        };
        Ok(ForkchoiceUpdated {
            payload_status: PayloadStatus::new(PayloadStatusEnum::Valid, Some(head.hash)),
            payload_id,
        })
    }

    async fn get_payload(&self, id: PayloadId) -> Result<ExecutionPayloadV3, EngineError> {
        let inner = self.inner.lock().await;
        inner.builds.get(&id.0).cloned().ok_or(EngineError::Rpc {
            code: UNKNOWN_PAYLOAD,
            message: format!("unknown payload {id}"),
        })
    }

    async fn block_by_number(&self, tag: BlockTag) -> Result<Option<ExecutionTip>, EngineError> {
        let mut inner = self.inner.lock().await;
        inner.settle().await?;
        Ok(match tag {
            BlockTag::Finalized => Some(inner.finalized),
            BlockTag::Latest => inner.lookup(&inner.head).map(|(tip, _)| tip),
            BlockTag::Number(number) if number <= inner.finalized.number => {
                inner.canonical.get(&number).copied()
            }
            BlockTag::Number(number) => inner
                .path_to_finalized(&inner.head)
                .and_then(|path| path.into_iter().find(|e| e.tip.number == number))
                .map(|e| e.tip),
        })
    }

    async fn submit_ops(&self, ops: Vec<ClusterOp>) {
        let mut inner = self.inner.lock().await;
        for op in ops {
            if !inner.finalized_state.is_newer(&op) {
                continue;
            }
            if inner
                .pool
                .get(&op.key)
                .is_some_and(|held| held.slot >= op.slot)
            {
                continue;
            }
            if inner.pool.len() >= MAX_POOL && !inner.pool.contains_key(&op.key) {
                warn!(key = %String::from_utf8_lossy(&op.key), "op pool full; dropping op");
                continue;
            }
            inner.pool.insert(op.key.clone(), op);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Address;
    use commonware_runtime::{Runner as _, Supervisor as _, deterministic};

    const GENESIS_TIME: u64 = 1_000;

    async fn engine(
        context: &deterministic::Context,
        name: &'static str,
    ) -> EmbeddedEngine<deterministic::Context> {
        EmbeddedEngine::init(
            context.child(name),
            Config {
                partition: format!("{name}-engine"),
                genesis_timestamp: GENESIS_TIME,
            },
        )
        .await
        .expect("engine opens")
    }

    fn attributes(timestamp: u64) -> PayloadAttributes {
        PayloadAttributes {
            timestamp,
            prev_randao: B256::repeat_byte(1),
            suggested_fee_recipient: Address::repeat_byte(2),
            withdrawals: Some(Vec::new()),
            parent_beacon_block_root: Some(B256::repeat_byte(3)),
            ..Default::default()
        }
    }

    fn op(key: &str, slot: u64) -> ClusterOp {
        ClusterOp::new(key, slot, B256::repeat_byte(slot as u8)).expect("valid key")
    }

    fn choice(head: B256, finalized: B256) -> ForkchoiceState {
        ForkchoiceState {
            head_block_hash: head,
            safe_block_hash: finalized,
            finalized_block_hash: finalized,
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

    #[test]
    fn a_built_payload_executes_identically_on_another_engine() {
        deterministic::Runner::default().start(|context| async move {
            let builder = engine(&context, "a").await;
            let follower = engine(&context, "b").await;
            let genesis = genesis(GENESIS_TIME);
            builder
                .submit_ops(vec![op("COMMITTEE", 1), op("PROPOSER-v1", 1)])
                .await;
            let payload = build(&builder, genesis.hash, GENESIS_TIME + 12).await;
            let inner = &payload.payload_inner.payload_inner;
            assert_eq!(inner.block_number, 1);
            assert_eq!(inner.parent_hash, genesis.hash);
            assert_eq!(inner.transactions.len(), 2);
            let root = B256::repeat_byte(3);
            assert!(
                builder
                    .new_payload(payload.clone(), root)
                    .await
                    .unwrap()
                    .is_valid()
            );
            assert!(
                follower
                    .new_payload(payload.clone(), root)
                    .await
                    .unwrap()
                    .is_valid()
            );
            let hash = inner.block_hash;
            for engine in [&builder, &follower] {
                engine
                    .forkchoice_updated(choice(hash, hash), None)
                    .await
                    .unwrap();
            }
            let (a, root_a) = builder.finalized().await;
            let (b, root_b) = follower.finalized().await;
            assert_eq!((a, root_a), (b, root_b));
            assert_eq!(a.number, 1);
            assert_eq!(root_a, inner.state_root);
            // Ops now finalized leave the pool: the next build carries none.
            let next = build(&builder, hash, GENESIS_TIME + 24).await;
            assert!(next.payload_inner.payload_inner.transactions.is_empty());
        });
    }

    #[test]
    fn tampered_unknown_and_stale_payloads_are_answered_like_an_engine() {
        deterministic::Runner::default().start(|context| async move {
            let builder = engine(&context, "a").await;
            let follower = engine(&context, "b").await;
            let genesis = genesis(GENESIS_TIME);
            builder.submit_ops(vec![op("COMMITTEE", 1)]).await;
            let first = build(&builder, genesis.hash, GENESIS_TIME + 12).await;
            let root = B256::repeat_byte(3);
            builder.new_payload(first.clone(), root).await.unwrap();
            let first_hash = first.payload_inner.payload_inner.block_hash;
            builder.submit_ops(vec![op("COMMITTEE", 2)]).await;
            let second = build(&builder, first_hash, GENESIS_TIME + 24).await;

            // Parent unknown to the follower: SYNCING, not INVALID.
            let answer = follower.new_payload(second.clone(), root).await.unwrap();
            assert_eq!(answer.status, PayloadStatusEnum::Syncing);

            // A changed state root (resealed so the hash matches) is caught by execution.
            let mut lying = first.clone();
            lying.payload_inner.payload_inner.state_root = B256::repeat_byte(9);
            let resealed = block_hash(&lying, root);
            lying.payload_inner.payload_inner.block_hash = resealed;
            let answer = follower.new_payload(lying, root).await.unwrap();
            let expected = InvalidPayload::StateRoot {
                claimed: B256::repeat_byte(9),
                executed: first.payload_inner.payload_inner.state_root,
            };
            assert_eq!(
                answer.status,
                PayloadStatusEnum::Invalid {
                    validation_error: expected.to_string()
                }
            );

            // A changed field without resealing breaks the hash.
            let mut tampered = first.clone();
            tampered.payload_inner.payload_inner.gas_used += 1;
            let answer = follower.new_payload(tampered, root).await.unwrap();
            assert!(matches!(answer.status, PayloadStatusEnum::Invalid { .. }));

            // A malformed transaction, resealed, is INVALID.
            let mut garbage = first.clone();
            garbage.payload_inner.payload_inner.transactions = vec![Bytes::from_static(b"\x01")];
            garbage.payload_inner.payload_inner.gas_used = OP_GAS;
            garbage.payload_inner.payload_inner.block_hash = block_hash(&garbage, root);
            let answer = follower.new_payload(garbage, root).await.unwrap();
            let expected = InvalidPayload::Transaction {
                index: 0,
                source: crate::ops::OpError::NoKeyLength,
            };
            assert_eq!(
                answer.status,
                PayloadStatusEnum::Invalid {
                    validation_error: expected.to_string()
                }
            );

            // Attributes that do not move time forward are refused.
            let refused = builder
                .forkchoice_updated(
                    choice(first_hash, B256::ZERO),
                    Some(attributes(GENESIS_TIME + 12)),
                )
                .await;
            assert!(matches!(
                refused,
                Err(EngineError::Rpc {
                    code: INVALID_PAYLOAD_ATTRIBUTES,
                    ..
                })
            ));

            // Finalizing a block that is not an ancestor of head is refused.
            assert!(
                follower
                    .new_payload(first.clone(), root)
                    .await
                    .unwrap()
                    .is_valid()
            );
            let refused = follower
                .forkchoice_updated(choice(genesis.hash, first_hash), None)
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
    fn a_restart_resumes_at_the_finalized_block_and_never_executes_it_again() {
        let executor = deterministic::Runner::default();
        let ((payload, finalized), checkpoint) = executor.start_and_recover(|context| async move {
            let engine = engine(&context, "a").await;
            engine.submit_ops(vec![op("COMMITTEE", 1)]).await;
            let payload = build(&engine, genesis(GENESIS_TIME).hash, GENESIS_TIME + 12).await;
            engine
                .new_payload(payload.clone(), B256::repeat_byte(3))
                .await
                .unwrap();
            let hash = payload.payload_inner.payload_inner.block_hash;
            engine
                .forkchoice_updated(choice(hash, hash), None)
                .await
                .unwrap();
            (payload, engine.finalized().await)
        });
        deterministic::Runner::from(checkpoint).start(|context| async move {
            let engine = engine(&context, "a").await;
            assert_eq!(engine.finalized().await, finalized);
            assert_eq!(
                engine.block_by_number(BlockTag::Latest).await.unwrap(),
                Some(finalized.0)
            );
            // Redelivered after the restart: known, VALID, nothing executed.
            let answer = engine
                .new_payload(payload.clone(), B256::repeat_byte(3))
                .await
                .unwrap();
            assert!(answer.is_valid());
            assert_eq!(engine.finalized().await, finalized);
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
                Config {
                    partition: "dropped-write-engine".into(),
                    genesis_timestamp: GENESIS_TIME,
                },
            )
            .await
            .expect("engine opens");
            engine.submit_ops(vec![op("COMMITTEE", 1)]).await;
            let first = build(&engine, genesis(GENESIS_TIME).hash, GENESIS_TIME + 12).await;
            engine
                .new_payload(first.clone(), B256::repeat_byte(3))
                .await
                .expect("executes");
            let hash = first.payload_inner.payload_inner.block_hash;

            let mut update = Box::pin(engine.forkchoice_updated(choice(hash, hash), None));
            assert!(
                futures::poll!(update.as_mut()).is_pending(),
                "the finalization is on its way to disk"
            );
            drop(update);

            // Whoever comes next finishes the write; the engine keeps finalizing.
            assert_eq!(engine.finalized().await.0.hash, hash);
            engine.submit_ops(vec![op("COMMITTEE", 2)]).await;
            let second = build(&engine, hash, GENESIS_TIME + 24).await;
            let status = engine
                .new_payload(second.clone(), B256::repeat_byte(3))
                .await
                .expect("executes");
            assert!(status.is_valid(), "{status:?}");
            let next = second.payload_inner.payload_inner.block_hash;
            engine
                .forkchoice_updated(choice(next, next), None)
                .await
                .expect("the store survived the dropped call");
            assert_eq!(engine.finalized().await.0.hash, next);
        });
    }
}
