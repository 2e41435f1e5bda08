//! What the node's JSON-RPC server (and a simulation's checks) ask of the embedded engine:
//! reads of the finalized chain, calls on its state, and transactions into the pool.

use super::{
    Block, BlockId, EmbeddedEngine, Inner,
    history::{self, Cached},
    tip_of,
};
use crate::{EngineError, ExecutionTip};
use alloy_primitives::{Address, B256, Bytes};
use cohort_evm::{
    AccountInfo, BlockRecord, CallError, CallOutcome, CallRequest, Executor, MemoryState,
    PoolError, StateReader as _,
};
use commonware_runtime::{Clock, Metrics, Storage};
use std::sync::Arc;

impl<E: Storage + Clock + Metrics> EmbeddedEngine<E> {
    /// The finalized block and its state root: what a simulation compares across operators.
    pub async fn finalized(&self) -> (ExecutionTip, B256) {
        let mut inner = self.inner.lock().await;
        // A failed commit is reported by the next forkchoice update; this answer stays the
        // last finalized block that is on disk.
        let _ = inner.settle().await;
        (tip_of(&inner.finalized), inner.finalized.header.state_root)
    }

    /// Takes a signed transaction (EIP-2718 bytes) into the pool, checked against the finalized
    /// state; the leader builds with it. Its hash, or why it was refused.
    pub async fn pool_transaction(&self, raw: Bytes) -> Result<B256, PoolError> {
        let mut inner = self.inner.lock().await;
        let Inner {
            pool, finalized, ..
        } = &mut *inner;
        pool.insert(raw, &finalized.state, finalized.header.gas_limit)
            .map(|pooled| pooled.hash)
    }

    /// An account as the finalized state has it.
    pub async fn account(&self, address: &Address) -> Option<AccountInfo> {
        self.inner.lock().await.finalized.state.account(address)
    }

    /// The finalized block with its state, for reads (a JSON-RPC server's): a shared handle,
    /// read without holding the engine.
    pub async fn finalized_block(&self) -> Arc<cohort_evm::Executed<MemoryState>> {
        self.inner.lock().await.finalized.clone()
    }

    /// The chain id of the engine's genesis.
    pub async fn chain_id(&self) -> u64 {
        self.inner.lock().await.executor.chain_id()
    }

    /// Transactions waiting in the pool.
    pub async fn pool_len(&self) -> usize {
        self.inner.lock().await.pool.len()
    }

    /// The finalized block `id` names, with its transactions and receipts. `None` for a block
    /// that is not finalized (or, in a data directory older than the history, not kept).
    pub async fn block(&self, id: BlockId) -> Result<Option<Arc<BlockRecord>>, EngineError> {
        let mut inner = self.inner.lock().await;
        inner.settle().await?;
        let Some(number) = inner.number(id).await? else {
            return Ok(None);
        };
        inner.record(number).await
    }

    /// A finalized transaction: its block and its index there.
    pub async fn transaction(
        &self,
        hash: &B256,
    ) -> Result<Option<(Arc<BlockRecord>, usize)>, EngineError> {
        let mut inner = self.inner.lock().await;
        inner.settle().await?;
        let Some((number, Some(index))) = inner.locate(hash).await? else {
            return Ok(None);
        };
        Ok(inner
            .record(number)
            .await?
            .map(|record| (record, index as usize)))
    }

    /// Runs a call on the finalized state (`eth_call`); nothing is written. The engine is not
    /// held while the call runs.
    pub async fn call(&self, request: &CallRequest) -> Result<CallOutcome, CallError> {
        let (executor, finalized) = self.snapshot().await;
        executor.call(&finalized, request)
    }

    /// The gas `request` needs on the finalized state (`eth_estimateGas`).
    pub async fn estimate_gas(&self, request: &CallRequest) -> Result<u64, CallError> {
        let (executor, finalized) = self.snapshot().await;
        executor.estimate_gas(&finalized, request)
    }

    async fn snapshot(&self) -> (Executor, Arc<Block>) {
        let inner = self.inner.lock().await;
        (inner.executor.clone(), inner.finalized.clone())
    }
}

impl<E: Storage + Clock + Metrics> Inner<E> {
    /// The record of finalized block `number`, from memory or the history journal.
    ///
    /// Takes `&mut self` although it only reads: the future must be `Send`, and `Inner` is not
    /// `Sync` (a pending commit is a `Send`-only future).
    pub(super) async fn record(
        &mut self,
        number: u64,
    ) -> Result<Option<Arc<BlockRecord>>, EngineError> {
        let position = match self.history.cached(number) {
            Cached::Hit(record) => return Ok(Some(record)),
            Cached::NotKept => return Ok(None),
            Cached::OnDisk(position) => position,
        };
        let stores = self.stores()?;
        let record = history::read(&stores.blocks, position).await?;
        Ok(Some(Arc::new(record)))
    }

    /// The number of the finalized block `id` names, if it is one.
    async fn number(&mut self, id: BlockId) -> Result<Option<u64>, EngineError> {
        let finalized = self.finalized.header.number;
        match id {
            BlockId::Number(number) => Ok((number <= finalized).then_some(number)),
            BlockId::Hash(hash) => {
                if let Some(number) = self.history.number_of(&hash) {
                    return Ok(Some(number));
                }
                Ok(match self.locate(&hash).await? {
                    Some((number, None)) => Some(number),
                    _ => None,
                })
            }
        }
    }

    /// Where the finalized block or transaction hashed `hash` is.
    async fn locate(&mut self, hash: &B256) -> Result<Option<(u64, Option<u32>)>, EngineError> {
        let finalized = self.finalized.header.number;
        let stores = self.stores()?;
        history::locate(&stores.hashes, hash, finalized).await
    }
}
