//! The leader's payload: pre-built one interval early, built on demand otherwise, and
//! recorded durably per slot so this operator never hands consensus two payloads for one slot.

use super::{work::BuildRequest, *};

impl<E: Clock + Spawner + Metrics + Storage, X: ExecutionEngine, M: FinalizedBlocks>
    Actor<E, X, M>
{
    /// A leader wants the slot's payload on `parent`: answered at once when there is nothing
    /// to build (or no room), else built beside the loop and answered when the engine is done.
    pub(super) fn build(
        &mut self,
        slot: u64,
        parent: ExecutionTip,
        response: oneshot::Sender<Option<ExecutionPayloadV3>>,
    ) {
        let timestamp = self.clock.slot_timestamp(slot);
        if timestamp <= parent.timestamp {
            debug!(slot, "the parent already carries this slot's payload");
            let _ = response.send(None);
            return;
        }
        if let Some(answer) = self.repeat(slot, parent) {
            let _ = response.send(answer);
            return;
        }
        if self.builds >= MAX_BUILDS {
            warn!(
                slot,
                in_flight = self.builds,
                "engine is not finishing builds; this block goes without a payload"
            );
            let _ = response.send(None);
            return;
        }
        self.builds += 1;
        let prebuilt = self.prebuilt.take();
        match prebuilt {
            Some(pre) if pre.slot == slot && pre.parent == parent.hash => self.fetch(
                BuildRequest {
                    slot,
                    parent,
                    outcome: BuildOutcome::Hit,
                    response,
                },
                pre.id,
            ),
            other => {
                let outcome = match other {
                    Some(pre) if pre.slot == slot => BuildOutcome::Fallback,
                    _ => BuildOutcome::Miss,
                };
                self.lane.builds.push_back(BuildRequest {
                    slot,
                    parent,
                    outcome,
                    response,
                });
            }
        }
    }

    /// What a later request for a slot already handed out gets: the same payload on the same
    /// parent, nothing on another. `None` when the slot has no payload yet.
    fn repeat(&self, slot: u64, parent: ExecutionTip) -> Option<Option<ExecutionPayloadV3>> {
        let (recorded_parent, payload) = self.proposed(slot)?;
        if recorded_parent == parent.hash {
            self.observe_build(slot, &payload, BuildOutcome::Repeat);
            return Some(Some(payload));
        }
        warn!(
            slot,
            "already handed out a payload for this slot on another parent; this block goes without one"
        );
        Some(None)
    }

    /// A build's forkchoice update (with the slot's attributes) answered.
    pub(super) fn on_build_forkchoice(
        &mut self,
        request: BuildRequest,
        state: ForkchoiceState,
        result: Result<ForkchoiceUpdated, EngineError>,
    ) {
        let update = match result {
            Ok(update) if update.payload_status.status == PayloadStatusEnum::Valid => update,
            Ok(update) => {
                warn!(
                    slot = request.slot,
                    status = update.payload_status.status.as_str(),
                    "engine cannot build on the parent; this block goes without a payload"
                );
                return self.build_failed(request);
            }
            Err(_) => return self.build_failed(request),
        };
        self.record_update(state, request.parent);
        match update.payload_id {
            Some(id) => self.fetch(request, id),
            None => self.build_failed(request),
        }
    }

    fn build_failed(&mut self, request: BuildRequest) {
        self.builds -= 1;
        let _ = request.response.send(None);
    }

    /// Asks the engine for the payload it built under `id`.
    fn fetch(&mut self, request: BuildRequest, id: PayloadId) {
        let engine = self.engine.clone();
        let call = self.bounded(async move { engine.get_payload(id).await });
        let started = self.context.current();
        self.work.push(async move {
            Done::Fetched {
                started,
                request,
                result: call.await,
            }
        });
    }

    /// The built payload came back: its own engine executes it, so a block built on it later
    /// (by any leader) finds its parent known here.
    pub(super) fn on_fetched(
        &mut self,
        request: BuildRequest,
        result: Result<ExecutionPayloadV3, EngineError>,
    ) {
        let Ok(payload) = result else {
            return self.build_failed(request);
        };
        let inner = &payload.payload_inner.payload_inner;
        if inner.parent_hash != request.parent.hash
            || inner.timestamp != self.clock.slot_timestamp(request.slot)
        {
            warn!(
                slot = request.slot,
                "engine built on another parent or time than asked; not used"
            );
            return self.build_failed(request);
        }
        let engine = self.engine.clone();
        let root = slot_root(request.slot);
        let executed = payload.clone();
        let call = self.bounded(async move { engine.new_payload(executed, root).await });
        let started = self.context.current();
        self.work.push(async move {
            Done::Executed {
                started,
                request,
                payload,
                result: call.await,
            }
        });
    }

    /// The leader's own engine executed its build: record it durably, then hand it out.
    pub(super) async fn on_executed(
        &mut self,
        request: BuildRequest,
        payload: ExecutionPayloadV3,
        result: Result<PayloadStatus, EngineError>,
    ) {
        let slot = request.slot;
        match result {
            Ok(status) if status.status == PayloadStatusEnum::Valid => {}
            Ok(status) => {
                warn!(
                    slot,
                    status = status.status.as_str(),
                    "engine refused its own build; not used"
                );
                return self.build_failed(request);
            }
            Err(_) => return self.build_failed(request),
        }
        self.builds -= 1;
        // Another view of the slot may have handed out a payload while this one was built.
        if let Some(answer) = self.repeat(slot, request.parent) {
            let _ = request.response.send(answer);
            return;
        }
        // Durable before it leaves: after a crash this operator still knows what it proposed.
        if let Err(e) = self
            .record_proposal(slot, request.parent.hash, &payload)
            .await
        {
            error!(slot, error = %e, "cannot record the proposed payload; not proposing one");
            let _ = request.response.send(None);
            return;
        }
        match request.outcome {
            BuildOutcome::Hit => self.metrics.prebuild_hits.inc(),
            BuildOutcome::Fallback => self.metrics.prebuild_fallbacks.inc(),
            BuildOutcome::Miss => self.metrics.prebuild_misses.inc(),
            BuildOutcome::Repeat => 0,
        };
        info!(
            slot,
            number = payload.payload_inner.payload_inner.block_number,
            transactions = payload.payload_inner.payload_inner.transactions.len(),
            outcome = ?request.outcome,
            "built the slot's payload"
        );
        self.observe_build(slot, &payload, request.outcome);
        let _ = request.response.send(Some(payload));
    }

    pub(super) fn observe_build(
        &self,
        slot: u64,
        payload: &ExecutionPayloadV3,
        outcome: BuildOutcome,
    ) {
        if let Some(observer) = &self.observer {
            let _ = observer.send(Observed::Built {
                slot,
                payload_hash: payload.payload_inner.payload_inner.block_hash,
                outcome,
            });
        }
    }

    pub(super) fn proposed(&self, slot: u64) -> Option<(B256, ExecutionPayloadV3)> {
        let bytes = self.proposals.as_ref()?.get(&U64::new(slot))?;
        if bytes.len() < 32 {
            return None;
        }
        let parent = B256::from_slice(&bytes[..32]);
        let payload = cohort_engine::decode_payload(&bytes[32..], usize::MAX).ok()?;
        Some((parent, payload))
    }

    pub(super) async fn record_proposal(
        &mut self,
        slot: u64,
        parent: B256,
        payload: &ExecutionPayloadV3,
    ) -> Result<(), RecordError> {
        let mut proposals = self.proposals.take().ok_or(RecordError::Unavailable)?;
        let mut bytes = parent.to_vec();
        bytes.extend_from_slice(&cohort_engine::encode_payload(payload));
        proposals.put(U64::new(slot), bytes);
        let stale: Vec<U64> = proposals
            .keys()
            .filter(|k| u64::from(*k) + PROPOSALS_KEPT_SLOTS < slot)
            .cloned()
            .collect();
        for key in stale {
            proposals.remove(&key);
        }
        set_len(&self.metrics.proposals_held, proposals.keys().count());
        let proposals = proposals.sync().await?;
        self.proposals = Some(proposals);
        Ok(())
    }

    /// The pre-build's forkchoice update answered: its payload id is kept for the slot's
    /// leader.
    pub(super) fn on_prebuilt(
        &mut self,
        slot: u64,
        parent: B256,
        result: Result<ForkchoiceUpdated, EngineError>,
    ) {
        let Ok(update) = result else {
            return;
        };
        match update.payload_id {
            Some(id) => {
                debug!(slot, %parent, "pre-building the slot's payload");
                self.prebuilt = Some(Prebuilt { slot, parent, id });
            }
            None => debug!(
                slot,
                status = update.payload_status.status.as_str(),
                "engine did not start a pre-build"
            ),
        }
    }
}
