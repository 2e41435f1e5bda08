use super::{
    Config, FinalizedBlocks, MAX_BUILDS, MAX_VERIFICATIONS,
    error::{Fatal, RecordError, StartError},
};
use cohort_engine::{
    Address, B256, BlockTag, EngineError, ExecutionEngine, ExecutionPayloadV3, ExecutionTip,
    ForkchoiceState, ForkchoiceUpdated, PayloadAttributes, PayloadId, PayloadStatus,
    PayloadStatusEnum,
};
use cohort_ingress::{
    SlotClock, committee,
    executor::{Message, PayloadVerdict, Receivers, slot_randao, slot_root},
    runner,
};
use cohort_marshal::Block;
use commonware_consensus::marshal::Update;
use commonware_cryptography::Digestible;
use commonware_macros::select;
use commonware_runtime::{
    Clock, ContextCell, Handle, Metrics, Spawner, Storage, spawn_cell,
    telemetry::metrics::Registered,
};
use commonware_storage::metadata::{self, Metadata};
use commonware_utils::{
    Acknowledgement as _,
    acknowledgement::Exact,
    channel::{mpsc, oneshot},
    futures::{OptionFuture, Pool},
    sequence::U64,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
};
use std::{
    collections::VecDeque,
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime},
};
use tracing::{debug, error, info, warn};

// The actor's work by concern: start-up, finalized blocks and forkchoice, the leader's payload,
// and the engine calls in flight.
mod backfill;
mod forkchoice;
mod proposal;
mod work;

use work::{Done, Finalizing, Lane, Stage};

/// Slots of handed-out payloads remembered: a view of an older slot can no longer be voted for.
const PROPOSALS_KEPT_SLOTS: u64 = 64;

/// A finalized block as the observer sees it.
#[derive(Clone, Debug)]
pub struct Finalized {
    pub block: Arc<Block>,
    /// When this operator processed it.
    pub at: SystemTime,
}

/// How a leader's payload for a slot was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildOutcome {
    /// The payload pre-built at the previous slot's last interval, still on the same head.
    Hit,
    /// A pre-build existed but the head had moved: built again on the new head.
    Fallback,
    /// No pre-build for the slot (it started late, or this operator restarted): built now.
    Miss,
    /// The same payload handed out again for the same slot and parent (a later view).
    Repeat,
}

/// What the executor reports to an observer.
#[derive(Clone, Debug)]
pub enum Observed {
    Finalized(Finalized),
    /// This operator handed `payload_hash` to consensus for `slot`.
    Built {
        slot: u64,
        payload_hash: B256,
        outcome: BuildOutcome,
    },
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

/// Engine call latency, one histogram per Engine API method.
type LatencyByMethod = Family<MethodLabel, Histogram, fn() -> Histogram>;

struct Prebuilt {
    slot: u64,
    parent: B256,
    id: PayloadId,
}

struct Metered {
    call_seconds: Registered<LatencyByMethod>,
    payload_status: Registered<Family<StatusLabel, Counter>>,
    head_number: Registered<Gauge>,
    finalized_number: Registered<Gauge>,
    finalized_height: Registered<Gauge>,
    backfill_remaining: Registered<Gauge>,
    prebuild_hits: Registered<Counter>,
    prebuild_misses: Registered<Counter>,
    prebuild_fallbacks: Registered<Counter>,
    proposed_finalized: Registered<Counter>,
    engine_errors: Registered<Counter>,
    proposals_held: Registered<Gauge>,
    finalized_held: Registered<Gauge>,
    requests_held: Registered<Gauge>,
    calls_held: Registered<Gauge>,
}

pub struct Actor<E: Clock + Spawner + Metrics + Storage, X: ExecutionEngine, M: FinalizedBlocks> {
    context: ContextCell<E>,
    engine: X,
    marshal: M,
    clock: SlotClock,
    operator: u32,
    fee_recipient: Address,
    execution_genesis: ExecutionTip,
    partition: String,
    engine_timeout: Duration,
    retry_delay: Duration,
    heartbeat: Duration,
    runner: runner::Mailbox,
    committee: committee::Mailbox,
    avs: Option<cohort_ingress::avs::Mailbox>,
    observer: Option<mpsc::UnboundedSender<Observed>>,
    updates: mpsc::UnboundedReceiver<Update<Block>>,
    requests: mpsc::Receiver<Message>,

    /// Highest height processed; marshal redelivers unacknowledged blocks after a restart.
    processed: Option<u64>,
    /// The forkchoice this executor last gave the engine.
    head: ExecutionTip,
    finalized: ExecutionTip,
    last_update: Option<ForkchoiceState>,
    heartbeat_at: SystemTime,
    prebuilt: Option<Prebuilt>,
    /// Payloads handed to consensus, by slot: never a second, different one for a slot.
    proposals: Option<Metadata<E, U64, Vec<u8>>>,

    /// Finalized payloads on their way to the engine, in height order: a start's backfill
    /// first, then marshal's blocks (each acknowledged once its payload is finalized).
    finalizing: VecDeque<Finalizing>,
    /// Backfilled payloads still in `finalizing`: until they are done, the engine is behind the
    /// finalized chain and build, check and head requests are answered at once without it.
    backfilling: usize,
    /// Where the front of `finalizing` stands.
    stage: Stage,
    /// The highest height queued from marshal: the next block must follow it.
    queued: Option<u64>,
    /// The finalized payload the engine was last said to be syncing: a syncing engine is
    /// asked again every `retry_delay` for as long as it syncs, and says so once per payload.
    syncing_reported: Option<u64>,
    /// Forkchoice updates waiting for their turn; at most one is with the engine.
    lane: Lane,
    /// Engine calls in flight, polled by the run loop beside its mailbox.
    work: Pool<'static, Done>,
    verifications: usize,
    builds: usize,
    metrics: Metered,
}

impl<E: Clock + Spawner + Metrics + Storage, X: ExecutionEngine, M: FinalizedBlocks>
    Actor<E, X, M>
{
    pub(super) fn new(context: E, config: Config<X, M>, receivers: Receivers<Block>) -> Self {
        let call_seconds = context.register(
            "engine_call_seconds",
            "engine API call latency by method",
            LatencyByMethod::new_with_constructor(|| {
                Histogram::new([0.001, 0.005, 0.025, 0.1, 0.5, 2.0, 8.0])
            }),
        );
        let payload_status = context.register(
            "payload_status",
            "engine answers to newPayload by status",
            Family::<StatusLabel, Counter>::default(),
        );
        let gauge =
            |name: &'static str, help: &'static str| context.register(name, help, Gauge::default());
        let head_number = gauge(
            "forkchoice_head_number",
            "execution block number of the head",
        );
        let finalized_number = gauge(
            "forkchoice_finalized_number",
            "execution block number the engine holds as finalized",
        );
        let finalized_height = gauge(
            "finalized_height",
            "height of the last finalized cluster block processed",
        );
        let backfill_remaining = gauge(
            "backfill_remaining",
            "finalized payloads still to send to the engine after a start",
        );
        let proposals_held = gauge(
            "proposed_payloads_held",
            "payloads handed to consensus still remembered; those of the PROPOSALS_KEPT_SLOTS \
             slots before the newest one recorded, and that one",
        );
        let finalized_held = gauge(
            "finalized_blocks_held",
            "finalized blocks from marshal waiting for the engine; marshal leaves at most \
             max_pending_acks blocks unacknowledged",
        );
        let requests_held = gauge(
            "requests_held",
            "build, check, head and pre-build requests waiting in the mailbox; at most \
             REQUESTS_CAPACITY",
        );
        let calls_held = gauge(
            "engine_calls_held",
            "engine calls in flight; at most MAX_ENGINE_CALLS",
        );
        let counter = |name: &'static str, help: &'static str| {
            context.register(name, help, Counter::default())
        };
        let metrics = Metered {
            call_seconds,
            payload_status,
            head_number,
            finalized_number,
            finalized_height,
            backfill_remaining,
            prebuild_hits: counter("prebuild_hits", "proposals that used the pre-built payload"),
            prebuild_misses: counter(
                "prebuild_misses",
                "proposals with no pre-built payload for their slot",
            ),
            prebuild_fallbacks: counter(
                "prebuild_fallbacks",
                "proposals that rebuilt because the head moved after the pre-build",
            ),
            proposed_finalized: counter(
                "proposed_finalized",
                "finalized cluster blocks this operator proposed",
            ),
            engine_errors: counter("engine_errors", "engine calls that failed or timed out"),
            proposals_held,
            finalized_held,
            requests_held,
            calls_held,
        };
        Self {
            context: ContextCell::new(context),
            engine: config.engine,
            marshal: config.marshal,
            clock: config.clock,
            operator: config.operator,
            fee_recipient: config.fee_recipient,
            execution_genesis: config.execution_genesis,
            partition: config.partition,
            engine_timeout: config.engine_timeout,
            retry_delay: config.retry_delay,
            heartbeat: config.heartbeat,
            runner: config.runner,
            committee: config.committee,
            avs: config.avs,
            observer: config.observer,
            updates: receivers.updates,
            requests: receivers.requests,
            processed: config.processed_height,
            head: config.execution_genesis,
            finalized: config.execution_genesis,
            last_update: None,
            heartbeat_at: SystemTime::UNIX_EPOCH,
            prebuilt: None,
            proposals: None,
            finalizing: VecDeque::new(),
            backfilling: 0,
            stage: Stage::Ready,
            queued: config.processed_height,
            syncing_reported: None,
            lane: Lane::default(),
            work: Pool::default(),
            verifications: 0,
            builds: 0,
            metrics,
        }
    }

    /// Runs the actor under the context the wiring named it with.
    pub fn start(mut self) -> Handle<()> {
        spawn_cell!(self.context, self.run())
    }

    async fn run(mut self) {
        let proposals = Metadata::<_, U64, Vec<u8>>::init(
            self.context.child("proposals"),
            metadata::Config {
                partition: self.partition.clone(),
                codec_config: ((0..).into(), ()),
            },
        )
        .await;
        match proposals {
            Ok(proposals) => {
                set_len(&self.metrics.proposals_held, proposals.keys().count());
                self.proposals = Some(proposals);
            }
            Err(e) => {
                error!(error = %e, "cannot open the record of proposed payloads; the executor stops");
                return;
            }
        }
        if let Err(stopped) = self.recall_processed().await {
            error!(%stopped, "cannot tell the runner what was decided before this start; the executor stops and the node shuts down");
            return;
        }
        if let Err(reason) = self.backfill().await {
            error!(%reason, "executor cannot start; it stops and this operator executes nothing");
            return;
        }
        self.heartbeat_at = self.context.current() + self.heartbeat;
        loop {
            if let Err(reason) = self.schedule().await {
                self.stop_on(reason);
                return;
            }
            let retry =
                OptionFuture::from(self.stage.retry_at().map(|at| self.context.sleep_until(at)));
            // Priorities: answers from the engine first (they free what waits on them), then
            // marshal's blocks, then questions, then timers.
            select! {
                done = self.work.next_completed() => {
                    if let Err(reason) = self.on_done(done).await {
                        self.stop_on(reason);
                        return;
                    }
                },
                update = self.updates.recv() => {
                    let Some(update) = update else {
                        debug!("marshal is gone; the executor stops");
                        return;
                    };
                    if !self.on_update(update).await {
                        return;
                    }
                },
                message = self.requests.recv() => {
                    let Some(message) = message else {
                        debug!("executor mailbox closed; stopping");
                        return;
                    };
                    self.on_message(message);
                },
                _ = retry => {
                    self.stage.retry_now();
                },
                _ = self.context.sleep_until(self.heartbeat_at) => {
                    self.heartbeat_at = self.context.current() + self.heartbeat;
                    self.lane.heartbeat = true;
                },
            }
        }
    }

    /// Handles one question at once: engine work it needs goes into `work` or the lane.
    fn on_message(&mut self, message: Message) {
        self.metrics.requests_held.set(self.requests.len() as i64);
        if self.backfilling > 0 {
            self.while_backfilling(message);
            return;
        }
        match message {
            Message::CanonicalizeAndBuild {
                slot,
                parent,
                response,
            } => self.build(slot, parent, response),
            Message::Verify {
                slot,
                payload,
                response,
            } => self.verify(slot, payload, response),
            Message::CanonicalizeHead { head } => self.canonicalize_head(head),
            Message::Prebuild { slot } => self.lane.prebuild = Some(slot),
        }
    }

    fn stop_on(&self, reason: Fatal) {
        match reason {
            reason @ (Fatal::Invalid { .. } | Fatal::Unfinalizable { .. }) => error!(
                %reason,
                "stopping the executor: consensus finalized what the engine calls invalid, \
                 and going on would let the two diverge"
            ),
            reason @ Fatal::Storage(_) => {
                error!(%reason, "stopping the executor: engine storage failed")
            }
            reason @ Fatal::HandOff(_) => error!(
                %reason,
                "stopping the executor: this operator would not sign the block's decisions; \
                 the node shuts down and the block is delivered again after a restart"
            ),
            reason @ Fatal::OutOfOrder { .. } => {
                error!(%reason, "stopping the executor: finalized blocks arrived out of order")
            }
        }
    }

    /// One engine call as a future the run loop can poll, bounded by the engine timeout.
    pub(super) fn bounded<T, F>(
        &self,
        call: F,
    ) -> impl Future<Output = Result<T, EngineError>> + Send + 'static
    where
        T: Send + 'static,
        F: Future<Output = Result<T, EngineError>> + Send + 'static,
    {
        let timeout = self.engine_timeout;
        let deadline = self.context.sleep(timeout);
        async move {
            select! {
                result = call => result,
                _ = deadline => Err(EngineError::Timeout(timeout)),
            }
        }
    }

    /// Measures a call that answered, started at `started`, and logs a failure.
    pub(super) fn measure<T>(
        &self,
        method: &'static str,
        started: SystemTime,
        result: &Result<T, EngineError>,
    ) {
        let elapsed = self
            .context
            .current()
            .duration_since(started)
            .unwrap_or_default();
        self.metrics
            .call_seconds
            .get_or_create(&MethodLabel {
                method: method.into(),
            })
            .observe(elapsed.as_secs_f64());
        if let Err(e) = result {
            self.metrics.engine_errors.inc();
            warn!(method, error = %e, "engine call failed");
        }
    }

    /// One start-up call that must get an answer, retried until the engine answers; questions
    /// arriving meanwhile are answered at once as the executor cannot help yet.
    pub(super) async fn answered<T, F, Fut>(
        &mut self,
        method: &'static str,
        mut call: F,
    ) -> Result<T, EngineError>
    where
        T: Send + 'static,
        F: FnMut(X) -> Fut,
        Fut: Future<Output = Result<T, EngineError>> + Send + 'static,
    {
        loop {
            let started = self.context.current();
            let mut attempt = Box::pin(self.bounded(call(self.engine.clone())));
            let result = loop {
                select! {
                    result = &mut attempt => break result,
                    message = self.requests.recv() => match message {
                        Some(message) => self.while_backfilling(message),
                        None => return Err(EngineError::Transport("executor mailbox closed".into())),
                    },
                }
            };
            self.measure(method, started, &result);
            match result {
                Err(e) if e.is_retryable() => {
                    warn!(method, error = %e, retry_in = ?self.retry_delay, "engine unavailable; retrying");
                    self.context.sleep(self.retry_delay).await;
                }
                other => return other,
            }
        }
    }

    fn attributes(&self, slot: u64) -> PayloadAttributes {
        PayloadAttributes {
            timestamp: self.clock.slot_timestamp(slot),
            prev_randao: slot_randao(slot),
            suggested_fee_recipient: self.fee_recipient,
            withdrawals: Some(Vec::new()),
            parent_beacon_block_root: Some(slot_root(slot)),
            ..Default::default()
        }
    }

    fn forkchoice(&self, head: ExecutionTip) -> ForkchoiceState {
        ForkchoiceState {
            head_block_hash: head.hash,
            safe_block_hash: self.finalized.hash,
            finalized_block_hash: self.finalized.hash,
        }
    }

    fn record_update(&mut self, state: ForkchoiceState, head: ExecutionTip) {
        self.last_update = Some(state);
        self.head = head;
        self.heartbeat_at = self.context.current() + self.heartbeat;
        self.metrics.head_number.set(head.number as i64);
    }

    fn count_status(&self, status: &PayloadStatusEnum) {
        self.metrics
            .payload_status
            .get_or_create(&StatusLabel {
                status: status.as_str().into(),
            })
            .inc();
    }
}

pub(super) fn set_len(gauge: &Gauge, len: usize) {
    use commonware_runtime::telemetry::metrics::GaugeExt as _;
    let _ = gauge.try_set(len);
}
