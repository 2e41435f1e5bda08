//! Finalized blocks to the engine (newPayload, then forkchoice), followers' payload checks,
//! head moves and the heartbeat that repeats forkchoice to an engine that restarted.

use super::*;

impl<E: Clock + Spawner + Metrics + Storage, X: ExecutionEngine, M: FinalizedBlocks>
    Actor<E, X, M>
{
    /// Sends `payload` of a finalized block and moves forkchoice onto it. Retries while the
    /// engine is unreachable or syncing; stops on INVALID.
    pub(super) async fn execute_finalized(
        &mut self,
        slot: u64,
        payload: Arc<ExecutionPayloadV3>,
    ) -> Result<(), Fatal> {
        let tip = ExecutionTip::of(&payload);
        if tip.number <= self.finalized.number {
            // Executed before a restart; the engine answers it from its canonical record.
            return Ok(());
        }
        let root = slot_root(slot);
        loop {
            let status = self
                .answered("engine_newPayloadV3", |engine| {
                    let payload = payload.as_ref().clone();
                    async move { engine.new_payload(payload, root).await }
                })
                .await;
            let status = match status {
                Ok(status) => status,
                Err(EngineError::Storage(reason)) => return Err(Fatal::Storage(reason)),
                Err(e) => {
                    warn!(number = tip.number, error = %e, "engine refused newPayload; retrying");
                    self.context.sleep(self.retry_delay).await;
                    continue;
                }
            };
            self.count_status(&status.status);
            match status.status {
                PayloadStatusEnum::Valid => break,
                PayloadStatusEnum::Invalid { validation_error } => {
                    return Err(Fatal::Invalid {
                        hash: tip.hash,
                        number: tip.number,
                        reason: validation_error,
                    });
                }
                PayloadStatusEnum::Syncing | PayloadStatusEnum::Accepted => {
                    warn!(
                        number = tip.number,
                        status = status.status.as_str(),
                        "engine has not validated a finalized payload yet; asking again"
                    );
                    self.context.sleep(self.retry_delay).await;
                }
            }
        }
        // The head stays where consensus put it if that is further along; the engine says so
        // if it does not descend from the new finalized block, and then the head is pulled back.
        self.finalized = tip;
        let mut head = if self.head.number > tip.number {
            self.head
        } else {
            tip
        };
        loop {
            let state = self.forkchoice(head);
            match self
                .answered("engine_forkchoiceUpdatedV3", |engine| async move {
                    engine.forkchoice_updated(state, None).await
                })
                .await
            {
                Ok(update) if update.payload_status.status == PayloadStatusEnum::Valid => {
                    self.record_update(state, head);
                    break;
                }
                Ok(update) => {
                    warn!(
                        number = tip.number,
                        status = update.payload_status.status.as_str(),
                        "engine did not take the finalized forkchoice; asking again"
                    );
                    self.context.sleep(self.retry_delay).await;
                }
                Err(EngineError::Storage(reason)) => return Err(Fatal::Storage(reason)),
                Err(e) if head != tip => {
                    debug!(error = %e, "head is off the finalized chain; moving it to the finalized block");
                    head = tip;
                }
                Err(source) => {
                    return Err(Fatal::Unfinalizable {
                        hash: tip.hash,
                        number: tip.number,
                        source,
                    });
                }
            }
        }
        self.metrics.finalized_number.set(tip.number as i64);
        Ok(())
    }

    /// Processes marshal's update; `false` when the executor must stop.
    pub(super) async fn on_update(&mut self, update: Update<Block>) -> bool {
        match update {
            Update::Tip(round, height, digest) => {
                debug!(height = height.get(), view = round.view().get(), %digest, "new finalized tip");
                true
            }
            Update::Block(block, ack) => {
                let height = block.inner().height;
                if self.processed.is_some_and(|p| height <= p) {
                    // Already processed before a restart: acknowledging again is harmless.
                    ack.acknowledge();
                    return true;
                }
                if let Some(p) = self.processed
                    && height != p + 1
                {
                    error!(
                        height,
                        processed = p,
                        "finalized blocks arrived out of order; stopping the executor"
                    );
                    return false;
                }
                let block: Arc<Block> = block.inner_shared();
                if let Some(payload) = &block.payload {
                    match self.execute_finalized(block.slot, payload.clone()).await {
                        Ok(()) => {}
                        Err(reason @ (Fatal::Invalid { .. } | Fatal::Unfinalizable { .. })) => {
                            error!(
                                height,
                                slot = block.slot,
                                %reason,
                                "stopping the executor: consensus finalized what the engine calls invalid, \
                                 and going on would let the two diverge"
                            );
                            return false;
                        }
                        Err(reason @ Fatal::Storage(_)) => {
                            error!(height, %reason, "stopping the executor: engine storage failed");
                            return false;
                        }
                    }
                }
                let ops: Vec<_> = block.decisions.iter().filter_map(op_for).collect();
                if !ops.is_empty() {
                    self.engine.submit_ops(ops).await;
                }
                let decisions = Arc::new(block.decisions.clone());
                let handed = match self
                    .runner
                    .finalized(height, block.slot, decisions.clone())
                    .await
                {
                    Ok(()) => self.committee.finalized(decisions).await,
                    Err(stopped) => Err(stopped),
                };
                if let Err(stopped) = handed {
                    // Unacknowledged, the block is delivered again after a restart.
                    error!(
                        height,
                        %stopped,
                        "stopping the executor: the block's decisions cannot be handed on \
                         (this operator would not sign them); the node shuts down"
                    );
                    return false;
                }
                if let Some(observer) = &self.observer {
                    let _ = observer.send(Observed::Finalized(Finalized {
                        block: block.clone(),
                        at: self.context.current(),
                    }));
                }
                if block.proposer == self.operator && height > 0 {
                    self.metrics.proposed_finalized.inc();
                }
                self.processed = Some(height);
                self.metrics.finalized_height.set(height as i64);
                info!(
                    height,
                    slot = block.slot,
                    digest = %block.digest(),
                    decisions = block.decisions.len(),
                    execution = block.execution.number,
                    "processed finalized block"
                );
                ack.acknowledge();
                true
            }
        }
    }

    pub(super) async fn verify(
        &mut self,
        slot: u64,
        payload: Arc<ExecutionPayloadV3>,
    ) -> PayloadVerdict {
        let engine = self.engine.clone();
        let root = slot_root(slot);
        let status = self
            .call(
                "engine_newPayloadV3",
                engine.new_payload(payload.as_ref().clone(), root),
            )
            .await;
        match status {
            Ok(status) => {
                self.count_status(&status.status);
                match status.status {
                    PayloadStatusEnum::Valid => PayloadVerdict::Valid,
                    PayloadStatusEnum::Invalid { validation_error } => {
                        PayloadVerdict::Invalid(validation_error)
                    }
                    PayloadStatusEnum::Syncing | PayloadStatusEnum::Accepted => {
                        PayloadVerdict::Unknown
                    }
                }
            }
            Err(_) => PayloadVerdict::Unknown,
        }
    }

    pub(super) async fn canonicalize_head(&mut self, head: ExecutionTip) {
        if head.number < self.finalized.number
            || self
                .last_update
                .is_some_and(|u| u.head_block_hash == head.hash)
        {
            return;
        }
        let state = self.forkchoice(head);
        let engine = self.engine.clone();
        match self
            .call(
                "engine_forkchoiceUpdatedV3",
                engine.forkchoice_updated(state, None),
            )
            .await
        {
            Ok(update) if update.payload_status.status == PayloadStatusEnum::Valid => {
                self.record_update(state, head);
            }
            Ok(update) => debug!(
                number = head.number,
                status = update.payload_status.status.as_str(),
                "engine did not move its head"
            ),
            Err(_) => {}
        }
    }

    pub(super) async fn on_heartbeat(&mut self) {
        self.heartbeat_at = self.context.current() + self.heartbeat;
        let Some(state) = self.last_update else {
            return;
        };
        let engine = self.engine.clone();
        let _ = self
            .call(
                "engine_forkchoiceUpdatedV3",
                engine.forkchoice_updated(state, None),
            )
            .await;
    }
}
