//! The embedded engine behind the [`ExecutionEngine`] trait: the Engine API calls the executor
//! makes (`newPayload`, `forkchoiceUpdated`, `getPayload`), transactions in, blocks by number.

use super::{EmbeddedEngine, INVALID_FORKCHOICE_STATE, UNKNOWN_PAYLOAD, invalid, tip_of};
use crate::{
    BlockTag, EngineError, ExecutionEngine, ExecutionTip, ForkchoiceState, ForkchoiceUpdated,
    PayloadAttributes, PayloadId, PayloadStatus, PayloadStatusEnum, TransactionRefused,
};
use alloy_primitives::{B256, Bytes};
use alloy_rpc_types_engine::ExecutionPayloadV3;
use cohort_evm::{NewPayload, PoolError};
use commonware_runtime::{Clock, Metrics, Storage};
use std::sync::Arc;
use tracing::warn;

impl<E: Storage + Clock + Metrics> ExecutionEngine for EmbeddedEngine<E> {
    async fn new_payload(
        &self,
        payload: ExecutionPayloadV3,
        parent_beacon_block_root: B256,
    ) -> Result<PayloadStatus, EngineError> {
        let mut inner = self.inner.lock().await;
        inner.settle().await?;
        // The hash is checked before anything else: a payload is the block it names only if
        // its contents hash to that name.
        if let Err(reason) = cohort_evm::sealed_block(&payload, parent_beacon_block_root) {
            return Ok(invalid(reason.to_string(), None));
        }
        let tip = ExecutionTip::of(&payload);
        let parent_hash = payload.payload_inner.payload_inner.parent_hash;
        if inner.blocks.contains_key(&tip.hash) || inner.canonical.get(&tip.number) == Some(&tip) {
            // Known: executed before (maybe before a restart); never execute twice.
            return Ok(PayloadStatus::new(PayloadStatusEnum::Valid, Some(tip.hash)));
        }
        if tip.number <= inner.finalized.header.number {
            return Ok(invalid(
                format!(
                    "block {} is at or below finalized number {} and not on the finalized chain",
                    tip.number, inner.finalized.header.number
                ),
                Some(inner.finalized.hash),
            ));
        }
        let Some(parent) = inner.lookup(&parent_hash) else {
            return Ok(PayloadStatus::from_status(PayloadStatusEnum::Syncing));
        };
        let new = NewPayload {
            payload,
            versioned_hashes: Vec::new(),
            parent_beacon_block_root,
        };
        match inner.executor.execute(&parent, &new) {
            Ok(block) => {
                inner.remember(Arc::new(block));
                Ok(PayloadStatus::new(PayloadStatusEnum::Valid, Some(tip.hash)))
            }
            Err(reason) => {
                warn!(
                    number = tip.number,
                    hash = %tip.hash,
                    %reason,
                    "embedded engine found the payload INVALID; its parent state is unchanged"
                );
                Ok(invalid(reason.to_string(), Some(parent_hash)))
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
        let Some(head) = inner.lookup(&state.head_block_hash) else {
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
            let Some(position) = path.iter().position(|b| b.hash == finalized) else {
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
            Some(attributes) => Some(inner.build(&head, &attributes)?),
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

    async fn submit_transaction(&self, raw: Bytes) -> Result<B256, TransactionRefused> {
        self.pool_transaction(raw).await.map_err(|e| match e {
            PoolError::Known => TransactionRefused::Known,
            PoolError::NonceTooLow { .. } => TransactionRefused::Stale(e.to_string()),
            other => TransactionRefused::Refused(other.to_string()),
        })
    }

    async fn block_by_number(&self, tag: BlockTag) -> Result<Option<ExecutionTip>, EngineError> {
        let mut inner = self.inner.lock().await;
        inner.settle().await?;
        let finalized_number = inner.finalized.header.number;
        Ok(match tag {
            BlockTag::Finalized => Some(tip_of(&inner.finalized)),
            BlockTag::Latest => inner.lookup(&inner.head).map(|b| tip_of(&b)),
            // The canonical record keeps recent hashes only; older blocks (genesis, which the
            // node asks for on every start, among them) come from the history.
            BlockTag::Number(number) if number <= finalized_number => {
                match inner.canonical.get(&number).copied() {
                    Some(tip) => Some(tip),
                    None => inner.record(number).await?.map(|record| ExecutionTip {
                        hash: record.hash,
                        number,
                        timestamp: record.header.timestamp,
                    }),
                }
            }
            BlockTag::Number(number) => inner
                .path_to_finalized(&inner.head)
                .and_then(|path| path.into_iter().find(|b| b.header.number == number))
                .map(|b| tip_of(&b)),
        })
    }
}
