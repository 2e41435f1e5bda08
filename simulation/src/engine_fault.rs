//! A misbehaving execution engine, for runs that check what the executor does about one.
//!
//! [`FaultyEngine`] wraps an operator's embedded engine and, during a window of slots, answers
//! SYNCING, never answers (the executor's call timeout fires), or calls every payload INVALID.
//! Outside its window it is the engine it wraps.

use crate::traced::Traced;
use cohort_engine::{
    B256, BlockTag, EngineError, ExecutionEngine, ExecutionPayloadV3, ExecutionTip,
    ForkchoiceState, ForkchoiceUpdated, PayloadAttributes, PayloadId, PayloadStatus,
    PayloadStatusEnum, embedded::EmbeddedEngine,
};
use cohort_ingress::SlotClock;
use commonware_runtime::{Clock, deterministic};
use serde::Serialize;
use std::{sync::Arc, time::Duration};

/// What the engine does wrong during its window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum EngineFaultKind {
    /// Answers SYNCING to every payload and forkchoice update.
    Syncing,
    /// Does not answer for a minute: every call times out.
    Hang,
    /// Calls every payload INVALID, finalized ones included.
    Invalid,
}

impl EngineFaultKind {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Syncing => "syncing",
            Self::Hang => "hang",
            Self::Invalid => "invalid",
        }
    }
}

/// One operator's engine misbehaving from `from_slot` until `to_slot` (exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct EngineFault {
    pub operator: usize,
    pub kind: EngineFaultKind,
    pub from_slot: u64,
    pub to_slot: u64,
}

impl EngineFault {
    /// Parses `I:KIND@S-E` (e.g. `1:syncing@10-20`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let usage = || format!("engine fault `{text}`: expected I:syncing|hang|invalid@S-E");
        let (operator, kind, from_slot, to_slot) =
            crate::faults::parse_operator_window("engine fault", text, usage)?;
        let kind = match kind {
            "syncing" => EngineFaultKind::Syncing,
            "hang" => EngineFaultKind::Hang,
            "invalid" => EngineFaultKind::Invalid,
            _ => return Err(usage()),
        };
        let fault = Self {
            operator,
            kind,
            from_slot,
            to_slot,
        };
        Ok(fault)
    }

    pub fn flag(&self) -> String {
        format!(
            "{}:{}@{}-{}",
            self.operator,
            self.kind.name(),
            self.from_slot,
            self.to_slot
        )
    }
}

/// An operator's engine with its faults.
#[derive(Clone)]
pub struct FaultyEngine {
    inner: EmbeddedEngine<Traced>,
    context: Arc<deterministic::Context>,
    clock: SlotClock,
    faults: Arc<Vec<EngineFault>>,
}

impl FaultyEngine {
    pub(crate) fn new(
        inner: EmbeddedEngine<Traced>,
        context: deterministic::Context,
        clock: SlotClock,
        faults: Vec<EngineFault>,
    ) -> Self {
        Self {
            inner,
            context: Arc::new(context),
            clock,
            faults: Arc::new(faults),
        }
    }

    /// The fault in force now, if any; a hang first waits out its minute.
    async fn fault(&self) -> Option<EngineFaultKind> {
        let slot = self.clock.slot_at(self.context.current())?;
        let kind = self
            .faults
            .iter()
            .find(|f| f.from_slot <= slot && slot < f.to_slot)
            .map(|f| f.kind)?;
        if kind == EngineFaultKind::Hang {
            self.context.sleep(Duration::from_secs(60)).await;
        }
        Some(kind)
    }
}

fn syncing() -> PayloadStatus {
    PayloadStatus::from_status(PayloadStatusEnum::Syncing)
}

impl ExecutionEngine for FaultyEngine {
    async fn new_payload(
        &self,
        payload: ExecutionPayloadV3,
        parent_beacon_block_root: B256,
    ) -> Result<PayloadStatus, EngineError> {
        match self.fault().await {
            Some(EngineFaultKind::Syncing) => Ok(syncing()),
            Some(EngineFaultKind::Invalid) => {
                Ok(PayloadStatus::from_status(PayloadStatusEnum::Invalid {
                    validation_error: "injected engine fault".into(),
                }))
            }
            _ => {
                self.inner
                    .new_payload(payload, parent_beacon_block_root)
                    .await
            }
        }
    }

    async fn forkchoice_updated(
        &self,
        state: ForkchoiceState,
        attributes: Option<PayloadAttributes>,
    ) -> Result<ForkchoiceUpdated, EngineError> {
        match self.fault().await {
            Some(EngineFaultKind::Syncing) => Ok(ForkchoiceUpdated::new(syncing())),
            _ => self.inner.forkchoice_updated(state, attributes).await,
        }
    }

    async fn get_payload(&self, id: PayloadId) -> Result<ExecutionPayloadV3, EngineError> {
        let _ = self.fault().await;
        self.inner.get_payload(id).await
    }

    async fn block_by_number(&self, tag: BlockTag) -> Result<Option<ExecutionTip>, EngineError> {
        self.inner.block_by_number(tag).await
    }

    async fn submit_transaction(
        &self,
        raw: cohort_engine::AlloyBytes,
    ) -> Result<cohort_engine::B256, cohort_engine::TransactionRefused> {
        self.inner.submit_transaction(raw).await
    }
}
