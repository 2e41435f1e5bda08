//! The leader's payload: pre-built one interval early, built on demand otherwise, and
//! recorded durably per slot so this operator never hands consensus two payloads for one slot.

use super::*;

impl<E: Clock + Spawner + Metrics + Storage, X: ExecutionEngine, M: FinalizedBlocks>
    Actor<E, X, M>
{
    /// The slot's payload for this operator as leader, on `parent`.
    pub(super) async fn build(
        &mut self,
        slot: u64,
        parent: ExecutionTip,
    ) -> Option<ExecutionPayloadV3> {
        let timestamp = self.clock.slot_timestamp(slot);
        if timestamp <= parent.timestamp {
            debug!(slot, "the parent already carries this slot's payload");
            return None;
        }
        if let Some((recorded_parent, payload)) = self.proposed(slot) {
            if recorded_parent == parent.hash {
                self.observe_build(slot, &payload, BuildOutcome::Repeat);
                return Some(payload);
            }
            warn!(
                slot,
                "already handed out a payload for this slot on another parent; this block goes without one"
            );
            return None;
        }
        let prebuilt = self.prebuilt.take();
        let (id, outcome) = match prebuilt {
            Some(pre) if pre.slot == slot && pre.parent == parent.hash => {
                (pre.id, BuildOutcome::Hit)
            }
            other => {
                let outcome = match other {
                    Some(pre) if pre.slot == slot => BuildOutcome::Fallback,
                    _ => BuildOutcome::Miss,
                };
                let state = self.forkchoice(parent);
                let attributes = self.attributes(slot);
                let engine = self.engine.clone();
                let update = self
                    .call(
                        "engine_forkchoiceUpdatedV3",
                        engine.forkchoice_updated(state, Some(attributes)),
                    )
                    .await
                    .ok()?;
                if update.payload_status.status != PayloadStatusEnum::Valid {
                    warn!(
                        slot,
                        status = update.payload_status.status.as_str(),
                        "engine cannot build on the parent; this block goes without a payload"
                    );
                    return None;
                }
                self.record_update(state, parent);
                (update.payload_id?, outcome)
            }
        };
        let engine = self.engine.clone();
        let payload = self
            .call("engine_getPayloadV3", engine.get_payload(id))
            .await
            .ok()?;
        if payload.payload_inner.payload_inner.parent_hash != parent.hash
            || payload.payload_inner.payload_inner.timestamp != timestamp
        {
            warn!(
                slot,
                "engine built on another parent or time than asked; not used"
            );
            return None;
        }
        // The engine executes its own build, so a block built on this payload later (by any
        // leader) finds its parent known here.
        let engine = self.engine.clone();
        match self
            .call(
                "engine_newPayloadV3",
                engine.new_payload(payload.clone(), slot_root(slot)),
            )
            .await
        {
            Ok(status) if status.status == PayloadStatusEnum::Valid => {}
            Ok(status) => {
                warn!(
                    slot,
                    status = status.status.as_str(),
                    "engine refused its own build; not used"
                );
                return None;
            }
            Err(_) => return None,
        }
        // Durable before it leaves: after a crash this operator still knows what it proposed.
        if let Err(e) = self.record_proposal(slot, parent.hash, &payload).await {
            error!(slot, error = %e, "cannot record the proposed payload; not proposing one");
            return None;
        }
        match outcome {
            BuildOutcome::Hit => self.metrics.prebuild_hits.inc(),
            BuildOutcome::Fallback => self.metrics.prebuild_fallbacks.inc(),
            BuildOutcome::Miss => self.metrics.prebuild_misses.inc(),
            BuildOutcome::Repeat => 0,
        };
        info!(
            slot,
            number = payload.payload_inner.payload_inner.block_number,
            transactions = payload.payload_inner.payload_inner.transactions.len(),
            outcome = ?outcome,
            "built the slot's payload"
        );
        self.observe_build(slot, &payload, outcome);
        Some(payload)
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

    pub(super) async fn prebuild(&mut self, slot: u64) {
        let head = self.head;
        let attributes = self.attributes(slot);
        if attributes.timestamp <= head.timestamp {
            return;
        }
        // The forkchoice sent is the one already in force: a pre-build moves nothing.
        let state = self.last_update.unwrap_or_else(|| self.forkchoice(head));
        let engine = self.engine.clone();
        let Ok(update) = self
            .call(
                "engine_forkchoiceUpdatedV3",
                engine.forkchoice_updated(state, Some(attributes)),
            )
            .await
        else {
            return;
        };
        match update.payload_id {
            Some(id) => {
                debug!(slot, parent = %head.hash, "pre-building the slot's payload");
                self.prebuilt = Some(Prebuilt {
                    slot,
                    parent: state.head_block_hash,
                    id,
                });
            }
            None => debug!(
                slot,
                status = update.payload_status.status.as_str(),
                "engine did not start a pre-build"
            ),
        }
    }
}
