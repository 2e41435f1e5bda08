//! Start-up: bringing the engine up to the finalized height marshal already processed,
//! before the executor serves proposals and verifications.

use super::{work::Finalizing, *};

/// The most processed blocks [`Actor::recall_processed`] walks back through.
const RECALL_MAX_BLOCKS: usize = 64;

impl<E: Clock + Spawner + Metrics + Storage, X: ExecutionEngine, M: FinalizedBlocks>
    Actor<E, X, M>
{
    /// Tells the runner what the blocks processed before this start decided, for the slots
    /// whose duties may still be running: marshal does not deliver them again, and a duty the
    /// scheduler starts again after a restart (its slot still current, or a clock behind) would
    /// otherwise wait for a decision that never comes, or for partials no peer sends again.
    pub(super) async fn recall_processed(&mut self) -> Result<(), cohort_ingress::Stopped> {
        let current = self.clock.current_slot(self.context.current());
        let oldest = current.saturating_sub(1 + cohort_ingress::committee::MAX_BLOCK_AGE_SLOTS);
        let mut recalled = Vec::new();
        let mut height = self.processed.filter(|h| *h > 0);
        // A block per decision kind and slot at most, plus heartbeats: a bounded walk.
        while let Some(h) = height
            && recalled.len() < RECALL_MAX_BLOCKS
        {
            let Some(block) = self.marshal.block(h).await else {
                break;
            };
            if block.slot < oldest {
                break;
            }
            if !block.decisions.is_empty() {
                recalled.push(block);
            }
            height = h.checked_sub(1).filter(|h| *h > 0);
        }
        if !recalled.is_empty() {
            info!(
                blocks = recalled.len(),
                from_slot = oldest,
                "telling the runner what blocks processed before this start decided"
            );
        }
        for block in recalled.into_iter().rev() {
            self.runner
                .recalled(block.height, block.slot, Arc::new(block.decisions.clone()))
                .await?;
        }
        Ok(())
    }

    /// Queues every finalized payload the engine is missing up to the height marshal has
    /// processed; until they are in, requests are answered without the engine.
    pub(super) async fn backfill(&mut self) -> Result<(), StartError> {
        let genesis = self
            .answered("eth_getBlockByNumber", |engine| async move {
                engine.block_by_number(BlockTag::Number(0)).await
            })
            .await?;
        if genesis.map(|g| g.hash) != Some(self.execution_genesis.hash) {
            return Err(StartError::ForeignGenesis {
                engine: genesis.map(|g| g.hash),
                cluster: self.execution_genesis.hash,
            });
        }
        let engine_finalized = self
            .answered("eth_getBlockByNumber", |engine| async move {
                engine.block_by_number(BlockTag::Finalized).await
            })
            .await?
            .unwrap_or(self.execution_genesis);
        self.finalized = engine_finalized;
        self.head = engine_finalized;

        // Walk marshal's processed blocks down to the engine's finalized block, collecting the
        // payloads it is missing.
        let mut missing: Vec<(u64, Arc<ExecutionPayloadV3>)> = Vec::new();
        let mut height = self.processed;
        while let Some(h) = height {
            let Some(block) = self.marshal.block(h).await else {
                return Err(StartError::MissingBlock(h));
            };
            if block.execution.number <= engine_finalized.number {
                if block.execution.number == engine_finalized.number
                    && block.execution.hash != engine_finalized.hash
                {
                    return Err(StartError::FinalizedConflict {
                        engine: engine_finalized.hash,
                        number: engine_finalized.number,
                        cluster: block.execution.hash,
                    });
                }
                break;
            }
            if let Some(payload) = &block.payload {
                missing.push((block.slot, payload.clone()));
            }
            height = h.checked_sub(1);
        }
        missing.reverse();
        if !missing.is_empty() {
            info!(
                payloads = missing.len(),
                from = engine_finalized.number,
                "engine is behind the finalized chain; backfilling before serving head requests"
            );
        }
        self.backfilling = missing.len();
        self.metrics.backfill_remaining.set(missing.len() as i64);
        self.finalizing
            .extend(missing.into_iter().map(|(slot, payload)| Finalizing {
                slot,
                payload: Some(payload),
                block: None,
            }));
        Ok(())
    }

    /// A request while the engine is behind the finalized chain: answered at once, without it.
    pub(super) fn while_backfilling(&mut self, message: Message) {
        match message {
            Message::CanonicalizeAndBuild { slot, response, .. } => {
                info!(slot, "dropping a build request while backfilling");
                let _ = response.send(None);
            }
            Message::Verify { slot, response, .. } => {
                info!(slot, "cannot check a payload while backfilling");
                let _ = response.send(PayloadVerdict::Unknown);
            }
            Message::CanonicalizeHead { head } => {
                info!(
                    number = head.number,
                    "dropping a head update while backfilling"
                );
            }
            Message::Prebuild { slot } => {
                info!(slot, "dropping a pre-build while backfilling");
            }
        }
    }
}
