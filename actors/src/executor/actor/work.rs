//! The engine work in flight and what waits for it: the finalized payloads in height order, the
//! forkchoice lane (one update with the engine at a time, by priority), and the run loop's
//! handling of each answer.

use super::*;

/// One finalized payload on its way to the engine.
pub(crate) struct Finalizing {
    pub slot: u64,
    pub payload: Option<Arc<ExecutionPayloadV3>>,
    /// Marshal's block, acknowledged once its payload is finalized in the engine; `None` for a
    /// payload a start backfills (marshal processed its block before the restart).
    pub block: Option<(Arc<Block>, Exact)>,
}

/// Where the front of the finalized queue stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Nothing with the engine for it: start it.
    Ready,
    /// Its newPayload is with the engine.
    Payload,
    /// Its newPayload waits until then (engine unreachable, SYNCING or ACCEPTED).
    PayloadAt(SystemTime),
    /// Its forkchoice update waits in the lane or is with the engine.
    Forkchoice { head: ExecutionTip },
    /// Its forkchoice update waits until then before going back into the lane.
    ForkchoiceAt { head: ExecutionTip, at: SystemTime },
}

impl Stage {
    /// When a waiting stage may try again.
    pub fn retry_at(&self) -> Option<SystemTime> {
        match self {
            Self::PayloadAt(at) | Self::ForkchoiceAt { at, .. } => Some(*at),
            _ => None,
        }
    }

    /// The retry delay is over.
    pub fn retry_now(&mut self) {
        *self = match *self {
            Self::PayloadAt(_) => Self::Ready,
            Self::ForkchoiceAt { head, .. } => Self::Forkchoice { head },
            other => other,
        };
    }
}

/// A leader's build waiting for its forkchoice update.
pub(crate) struct BuildRequest {
    pub slot: u64,
    pub parent: ExecutionTip,
    pub outcome: BuildOutcome,
    pub response: oneshot::Sender<Option<ExecutionPayloadV3>>,
}

/// Forkchoice updates waiting for their turn; the engine sees one at a time, in this order of
/// priority: builds, the finalized block, the voted head, the pre-build, the heartbeat. Each
/// kind but builds keeps only its latest request.
#[derive(Default)]
pub(crate) struct Lane {
    /// An update is with the engine.
    pub busy: bool,
    pub builds: VecDeque<BuildRequest>,
    /// The finalized block's update is due (its head is in [`Stage::Forkchoice`]).
    pub finalized: bool,
    pub head: Option<ExecutionTip>,
    pub prebuild: Option<u64>,
    pub heartbeat: bool,
}

/// Why a forkchoice update was sent.
pub(crate) enum Purpose {
    Finalized {
        tip: ExecutionTip,
        head: ExecutionTip,
    },
    Head(ExecutionTip),
    Prebuild {
        slot: u64,
        parent: B256,
    },
    Build(BuildRequest),
    Heartbeat,
}

/// An engine call that answered.
pub(crate) enum Done {
    /// The front finalized payload's newPayload.
    FinalizedPayload {
        started: SystemTime,
        result: Result<PayloadStatus, EngineError>,
    },
    Forkchoice {
        started: SystemTime,
        purpose: Purpose,
        state: ForkchoiceState,
        result: Result<ForkchoiceUpdated, EngineError>,
    },
    /// A follower's payload check.
    Verified {
        started: SystemTime,
        response: oneshot::Sender<PayloadVerdict>,
        result: Result<PayloadStatus, EngineError>,
    },
    /// A leader's payload fetched from the engine's builder.
    Fetched {
        started: SystemTime,
        request: BuildRequest,
        result: Result<ExecutionPayloadV3, EngineError>,
    },
    /// A leader's payload executed by its own engine.
    Executed {
        started: SystemTime,
        request: BuildRequest,
        payload: ExecutionPayloadV3,
        result: Result<PayloadStatus, EngineError>,
    },
}

impl Done {
    /// The engine's own storage failure this call reported, if it did.
    fn storage_failure(&self) -> Option<&str> {
        let error = match self {
            Self::FinalizedPayload { result, .. }
            | Self::Verified { result, .. }
            | Self::Executed { result, .. } => result.as_ref().err(),
            Self::Forkchoice { result, .. } => result.as_ref().err(),
            Self::Fetched { result, .. } => result.as_ref().err(),
        };
        match error {
            Some(EngineError::Storage(reason)) => Some(reason),
            _ => None,
        }
    }
}

impl<E: Clock + Spawner + Metrics + Storage, X: ExecutionEngine, M: FinalizedBlocks>
    Actor<E, X, M>
{
    /// Starts what can start: the front finalized payload, the next forkchoice update. Blocks
    /// without a payload (or with one the engine finalized before) complete here.
    pub(super) async fn schedule(&mut self) -> Result<(), Fatal> {
        while self.stage == Stage::Ready {
            let Some(front) = self.finalizing.front() else {
                break;
            };
            match front.payload.clone() {
                Some(payload) if ExecutionTip::of(&payload).number > self.finalized.number => {
                    let engine = self.engine.clone();
                    let root = slot_root(front.slot);
                    let call = self.bounded(async move {
                        engine.new_payload(payload.as_ref().clone(), root).await
                    });
                    let started = self.context.current();
                    self.work.push(async move {
                        Done::FinalizedPayload {
                            started,
                            result: call.await,
                        }
                    });
                    self.stage = Stage::Payload;
                }
                // No payload, or one executed before a restart (the engine answers it from
                // its canonical record).
                _ => self.complete_front().await?,
            }
        }
        if !self.lane.busy {
            self.start_forkchoice();
        }
        set_len(&self.metrics.calls_held, self.work.len());
        set_len(
            &self.metrics.finalized_held,
            self.finalizing.len().saturating_sub(self.backfilling),
        );
        self.metrics.requests_held.set(self.requests.len() as i64);
        Ok(())
    }

    /// Sends the most urgent forkchoice update waiting, if any still means something.
    fn start_forkchoice(&mut self) {
        loop {
            let (purpose, state, attributes) = if let Some(request) = self.lane.builds.pop_front() {
                let state = self.forkchoice(request.parent);
                let attributes = Some(self.attributes(request.slot));
                (Purpose::Build(request), state, attributes)
            } else if let (true, Stage::Forkchoice { head }) = (self.lane.finalized, self.stage) {
                self.lane.finalized = false;
                let tip = self.finalized;
                (
                    Purpose::Finalized { tip, head },
                    self.forkchoice(head),
                    None,
                )
            } else if let Some(head) = self.lane.head.take() {
                if head.number < self.finalized.number
                    || self
                        .last_update
                        .is_some_and(|u| u.head_block_hash == head.hash)
                {
                    continue;
                }
                (Purpose::Head(head), self.forkchoice(head), None)
            } else if let Some(slot) = self.lane.prebuild.take() {
                let attributes = self.attributes(slot);
                if attributes.timestamp <= self.head.timestamp {
                    continue;
                }
                // The forkchoice sent is the one already in force: a pre-build moves nothing.
                let state = self
                    .last_update
                    .unwrap_or_else(|| self.forkchoice(self.head));
                let parent = state.head_block_hash;
                (Purpose::Prebuild { slot, parent }, state, Some(attributes))
            } else if self.lane.heartbeat {
                self.lane.heartbeat = false;
                let Some(state) = self.last_update else {
                    continue;
                };
                (Purpose::Heartbeat, state, None)
            } else {
                return;
            };
            let engine = self.engine.clone();
            let call =
                self.bounded(async move { engine.forkchoice_updated(state, attributes).await });
            let started = self.context.current();
            self.work.push(async move {
                Done::Forkchoice {
                    started,
                    purpose,
                    state,
                    result: call.await,
                }
            });
            self.lane.busy = true;
            return;
        }
    }

    /// Handles an engine answer; an error stops the executor.
    pub(super) async fn on_done(&mut self, done: Done) -> Result<(), Fatal> {
        // The engine said it cannot go on safely, whichever call heard it: stop here rather
        // than keep proposing and verifying on an engine that answers every call with it.
        if let Some(reason) = done.storage_failure() {
            return Err(Fatal::Storage(reason.to_string()));
        }
        match done {
            Done::FinalizedPayload { started, result } => {
                self.measure("engine_newPayloadV3", started, &result);
                self.on_finalized_payload(result)
            }
            Done::Forkchoice {
                started,
                purpose,
                state,
                result,
            } => {
                self.lane.busy = false;
                self.measure("engine_forkchoiceUpdatedV3", started, &result);
                self.on_forkchoice(purpose, state, result).await
            }
            Done::Verified {
                started,
                response,
                result,
            } => {
                self.verifications -= 1;
                self.measure("engine_newPayloadV3", started, &result);
                let _ = response.send(self.verdict(result));
                Ok(())
            }
            Done::Fetched {
                started,
                request,
                result,
            } => {
                self.measure("engine_getPayloadV3", started, &result);
                self.on_fetched(request, result);
                Ok(())
            }
            Done::Executed {
                started,
                request,
                payload,
                result,
            } => {
                self.measure("engine_newPayloadV3", started, &result);
                self.on_executed(request, payload, result).await;
                Ok(())
            }
        }
    }

    /// Where a forkchoice answer goes.
    async fn on_forkchoice(
        &mut self,
        purpose: Purpose,
        state: ForkchoiceState,
        result: Result<ForkchoiceUpdated, EngineError>,
    ) -> Result<(), Fatal> {
        match purpose {
            Purpose::Finalized { tip, head } => {
                self.on_finalized_forkchoice(tip, head, state, result).await
            }
            Purpose::Head(head) => {
                match result {
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
                Ok(())
            }
            Purpose::Prebuild { slot, parent } => {
                self.on_prebuilt(slot, parent, result);
                Ok(())
            }
            Purpose::Build(request) => {
                self.on_build_forkchoice(request, state, result);
                Ok(())
            }
            Purpose::Heartbeat => Ok(()),
        }
    }
}
