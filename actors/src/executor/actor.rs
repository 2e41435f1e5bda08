use super::{
    Config, FinalizedBlocks,
    error::{Fatal, RecordError, StartError},
    ops::op_for,
};
use cohort_engine::{
    Address, B256, BlockTag, EngineError, ExecutionEngine, ExecutionPayloadV3, ExecutionTip,
    ForkchoiceState, PayloadAttributes, PayloadId, PayloadStatusEnum,
};
use cohort_ingress::{
    SlotClock, committee,
    executor::{Message, PayloadVerdict, slot_randao, slot_root},
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
use commonware_utils::{Acknowledgement as _, channel::mpsc, sequence::U64};
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

// The actor's work by concern: start-up, finalized blocks and forkchoice, the leader's payload.
mod backfill;
mod forkchoice;
mod proposal;

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
    deferred_held: Registered<Gauge>,
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
    observer: Option<mpsc::UnboundedSender<Observed>>,
    mailbox: mpsc::UnboundedReceiver<Message<Block>>,

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
    metrics: Metered,
}

impl<E: Clock + Spawner + Metrics + Storage, X: ExecutionEngine, M: FinalizedBlocks>
    Actor<E, X, M>
{
    pub(super) fn new(
        context: E,
        config: Config<X, M>,
        mailbox: mpsc::UnboundedReceiver<Message<Block>>,
    ) -> Self {
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
        let deferred_held = gauge(
            "deferred_updates_held",
            "finalized blocks from marshal waiting for a backfill to end; marshal leaves at most \
             max_pending_acks blocks unacknowledged",
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
            deferred_held,
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
            observer: config.observer,
            mailbox,
            processed: config.processed_height,
            head: config.execution_genesis,
            finalized: config.execution_genesis,
            last_update: None,
            heartbeat_at: SystemTime::UNIX_EPOCH,
            prebuilt: None,
            proposals: None,
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
        let mut deferred = match self.backfill().await {
            Ok(deferred) => deferred,
            Err(reason) => {
                error!(%reason, "executor cannot start; it stops and this operator executes nothing");
                return;
            }
        };
        while let Some(update) = deferred.pop_front() {
            set_len(&self.metrics.deferred_held, deferred.len());
            if !self.on_update(update).await {
                return;
            }
        }
        self.heartbeat_at = self.context.current() + self.heartbeat;
        loop {
            // Priorities: consensus and marshal in arrival order (both wait on this actor),
            // then the heartbeat.
            select! {
                message = self.mailbox.recv() => {
                    let Some(message) = message else {
                        debug!("executor mailbox closed; stopping");
                        return;
                    };
                    if !self.on_message(message).await {
                        return;
                    }
                },
                _ = self.context.sleep_until(self.heartbeat_at) => {
                    self.on_heartbeat().await;
                },
            }
        }
    }

    /// Handles one message; `false` when the executor must stop.
    async fn on_message(&mut self, message: Message<Block>) -> bool {
        match message {
            Message::Update(update) => return self.on_update(update).await,
            Message::CanonicalizeAndBuild {
                slot,
                parent,
                response,
            } => {
                let payload = self.build(slot, parent).await;
                let _ = response.send(payload);
            }
            Message::Verify {
                slot,
                payload,
                response,
            } => {
                let verdict = self.verify(slot, payload).await;
                let _ = response.send(verdict);
            }
            Message::CanonicalizeHead { head } => self.canonicalize_head(head).await,
            Message::Prebuild { slot } => self.prebuild(slot).await,
        }
        true
    }

    /// One engine call, bounded by the engine timeout and measured.
    async fn call<T, F>(&mut self, method: &'static str, call: F) -> Result<T, EngineError>
    where
        F: Future<Output = Result<T, EngineError>>,
    {
        let started = self.context.current();
        let result = select! {
            result = call => result,
            _ = self.context.sleep(self.engine_timeout) => Err(EngineError::Timeout(self.engine_timeout)),
        };
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
        if let Err(e) = &result {
            self.metrics.engine_errors.inc();
            warn!(method, error = %e, "engine call failed");
        }
        result
    }

    /// A call that must get an answer: retryable failures are retried until the engine answers.
    async fn answered<T, F, Fut>(
        &mut self,
        method: &'static str,
        mut call: F,
    ) -> Result<T, EngineError>
    where
        F: FnMut(X) -> Fut,
        Fut: Future<Output = Result<T, EngineError>>,
    {
        loop {
            let engine = self.engine.clone();
            match self.call(method, call(engine)).await {
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

fn set_len(gauge: &Gauge, len: usize) {
    use commonware_runtime::telemetry::metrics::GaugeExt as _;
    let _ = gauge.try_set(len);
}
