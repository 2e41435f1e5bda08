//! Finalized blocks to the engine (newPayload, then forkchoice), followers' payload checks and
//! head moves. Each step is started by the run loop and finished when the engine answers; none
//! waits for another.

use super::{
    work::{Finalizing, Stage},
    *,
};

impl<E: Clock + Spawner + Metrics + Storage, X: ExecutionEngine, M: FinalizedBlocks>
    Actor<E, X, M>
{
    /// Takes marshal's update: a block joins the finalized queue, and its decisions go to the
    /// runner and the committee at once. `false` when the executor must stop (a block out of
    /// order, or an actor gone).
    pub(super) async fn on_update(&mut self, update: Update<Block>) -> bool {
        match update {
            Update::Tip(round, height, digest) => {
                debug!(height = height.get(), view = round.view().get(), %digest, "new finalized tip");
                true
            }
            Update::Block(block, ack) => {
                let height = block.inner().height;
                if self.queued.is_some_and(|p| height <= p) {
                    // Already processed before a restart: acknowledging again is harmless.
                    ack.acknowledge();
                    return true;
                }
                if let Some(p) = self.queued
                    && height != p + 1
                {
                    self.stop_on(Fatal::OutOfOrder {
                        height,
                        processed: p,
                    });
                    return false;
                }
                let block: Arc<Block> = block.inner_shared();
                self.queued = Some(height);
                if let Err(reason) = self.announce(&block).await {
                    self.stop_on(reason);
                    return false;
                }
                self.finalizing.push_back(Finalizing {
                    slot: block.slot,
                    payload: block.payload.clone(),
                    block: Some((block, ack)),
                });
                true
            }
        }
    }

    /// Hands a finalized block's decisions to the runner and the committee as soon as marshal
    /// delivers it, before its payload reaches the engine: what the cluster decided is final
    /// whatever the engine says of the payload (an engine that refuses it stops this executor,
    /// not the duties), and the post-consensus signatures need not wait for newPayload and
    /// forkchoice, nor for an engine that is syncing or slow.
    async fn announce(&mut self, block: &Block) -> Result<(), Fatal> {
        let decisions = Arc::new(block.decisions.clone());
        self.runner
            .finalized(block.height, block.slot, decisions.clone())
            .await
            .map_err(Fatal::HandOff)?;
        self.committee
            .finalized(decisions)
            .await
            .map_err(Fatal::HandOff)
    }

    /// The front finalized payload's newPayload answered (a storage failure never gets here:
    /// `on_done` stops the executor on it, whichever call reported it).
    pub(super) fn on_finalized_payload(
        &mut self,
        result: Result<PayloadStatus, EngineError>,
    ) -> Result<(), Fatal> {
        let Some(tip) = self
            .finalizing
            .front()
            .and_then(|f| f.payload.as_deref())
            .map(ExecutionTip::of)
        else {
            self.stage = Stage::Ready;
            return Ok(());
        };
        let retry_at = self.context.current() + self.retry_delay;
        let status = match result {
            Ok(status) => status,
            Err(e) => {
                warn!(number = tip.number, error = %e, retry_in = ?self.retry_delay, "engine did not take a finalized payload; retrying");
                self.stage = Stage::PayloadAt(retry_at);
                return Ok(());
            }
        };
        self.count_status(&status.status);
        match status.status {
            PayloadStatusEnum::Valid => {
                // The head stays where consensus put it if that is further along; the engine
                // says so if it does not descend from the new finalized block, and then the
                // head is pulled back.
                self.finalized = tip;
                let head = if self.head.number > tip.number {
                    self.head
                } else {
                    tip
                };
                self.stage = Stage::Forkchoice { head };
                self.lane.finalized = true;
                Ok(())
            }
            PayloadStatusEnum::Invalid { validation_error } => Err(Fatal::Invalid {
                hash: tip.hash,
                number: tip.number,
                reason: validation_error,
            }),
            PayloadStatusEnum::Syncing | PayloadStatusEnum::Accepted => {
                if self.syncing_reported.replace(tip.number) != Some(tip.number) {
                    warn!(
                        number = tip.number,
                        status = status.status.as_str(),
                        retry_every = ?self.retry_delay,
                        "engine has not validated a finalized payload yet; asking again until \
                         it does, and marshal holds back further blocks past its limit of \
                         unacknowledged ones meanwhile (said once per payload)"
                    );
                } else {
                    debug!(
                        number = tip.number,
                        status = status.status.as_str(),
                        "engine still has not validated the finalized payload; asking again"
                    );
                }
                self.stage = Stage::PayloadAt(retry_at);
                Ok(())
            }
        }
    }

    /// The front finalized payload's forkchoice update answered (storage failures stopped in
    /// `on_done`).
    pub(super) async fn on_finalized_forkchoice(
        &mut self,
        tip: ExecutionTip,
        head: ExecutionTip,
        state: ForkchoiceState,
        result: Result<ForkchoiceUpdated, EngineError>,
    ) -> Result<(), Fatal> {
        let retry_at = self.context.current() + self.retry_delay;
        match result {
            Ok(update) if update.payload_status.status == PayloadStatusEnum::Valid => {
                self.record_update(state, head);
                self.metrics.finalized_number.set(tip.number as i64);
                self.complete_front().await?;
            }
            Ok(update) => {
                warn!(
                    number = tip.number,
                    status = update.payload_status.status.as_str(),
                    "engine did not take the finalized forkchoice; asking again"
                );
                self.stage = Stage::ForkchoiceAt { head, at: retry_at };
            }
            Err(e) if e.is_retryable() => {
                warn!(number = tip.number, error = %e, retry_in = ?self.retry_delay, "engine unavailable for the finalized forkchoice; retrying");
                self.stage = Stage::ForkchoiceAt { head, at: retry_at };
            }
            Err(e) if head != tip => {
                debug!(error = %e, "head is off the finalized chain; moving it to the finalized block");
                self.stage = Stage::Forkchoice { head: tip };
                self.lane.finalized = true;
            }
            Err(source) => {
                return Err(Fatal::Unfinalizable {
                    hash: tip.hash,
                    number: tip.number,
                    source,
                });
            }
        }
        Ok(())
    }

    /// The front finalized payload is in the engine: hand its tasks on and acknowledge it (its
    /// decisions went out when it arrived).
    pub(super) async fn complete_front(&mut self) -> Result<(), Fatal> {
        self.stage = Stage::Ready;
        let Some(front) = self.finalizing.pop_front() else {
            return Ok(());
        };
        let Some((block, ack)) = front.block else {
            self.backfilling = self.backfilling.saturating_sub(1);
            self.metrics.backfill_remaining.set(self.backfilling as i64);
            if let Some(payload) = &front.payload {
                debug!(
                    number = ExecutionTip::of(payload).number,
                    remaining = self.backfilling,
                    "backfilled payload"
                );
            }
            if self.backfilling == 0 {
                info!(
                    finalized = self.finalized.number,
                    "backfill done; serving head requests again"
                );
            }
            return Ok(());
        };
        let height = block.height;
        // Every block, even one without tasks: the AVS actor learns from the first that the
        // chain moves (see its `chain_moving`).
        if let Some(avs) = &mut self.avs {
            avs.finalized(height, Arc::new(block.tasks.clone()))
                .await
                .map_err(Fatal::HandOff)?;
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
        Ok(())
    }

    /// A follower's payload check: the engine's answer goes straight back to consensus.
    pub(super) fn verify(
        &mut self,
        slot: u64,
        payload: Arc<ExecutionPayloadV3>,
        response: oneshot::Sender<PayloadVerdict>,
    ) {
        if self.verifications >= MAX_VERIFICATIONS {
            warn!(
                slot,
                in_flight = self.verifications,
                "engine is not answering payload checks; this one is unknown"
            );
            let _ = response.send(PayloadVerdict::Unknown);
            return;
        }
        self.verifications += 1;
        let engine = self.engine.clone();
        let root = slot_root(slot);
        let call =
            self.bounded(async move { engine.new_payload(payload.as_ref().clone(), root).await });
        let started = self.context.current();
        self.work.push(async move {
            Done::Verified {
                started,
                response,
                result: call.await,
            }
        });
    }

    pub(super) fn verdict(&self, result: Result<PayloadStatus, EngineError>) -> PayloadVerdict {
        match result {
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

    /// Consensus votes for a block with this execution head: the latest such head waits for
    /// the lane (an older one waiting is replaced; the engine only needs the newest).
    pub(super) fn canonicalize_head(&mut self, head: ExecutionTip) {
        self.lane.head = Some(head);
    }
}
