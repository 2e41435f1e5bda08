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

    /// Brings the engine up to the finalized height marshal has processed, before serving
    /// anything else. Returns marshal updates that arrived meanwhile, to process in order.
    async fn backfill(&mut self) -> Result<VecDeque<Update<Block>>, StartError> {
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
        let mut deferred = VecDeque::new();
        if !missing.is_empty() {
            info!(
                payloads = missing.len(),
                from = engine_finalized.number,
                "engine is behind the finalized chain; backfilling before serving head requests"
            );
        }
        let total = missing.len();
        for (done, (slot, payload)) in missing.into_iter().enumerate() {
            self.metrics.backfill_remaining.set((total - done) as i64);
            // Head requests are meaningless until the engine has caught up: drop them.
            while let Ok(message) = self.mailbox.try_recv() {
                self.while_backfilling(message, &mut deferred);
            }
            let tip = ExecutionTip::of(&payload);
            self.execute_finalized(slot, payload).await?;
            debug!(
                number = tip.number,
                remaining = total - done - 1,
                "backfilled payload"
            );
        }
        self.metrics.backfill_remaining.set(0);
        if total > 0 {
            while let Ok(message) = self.mailbox.try_recv() {
                self.while_backfilling(message, &mut deferred);
            }
            info!(
                payloads = total,
                finalized = self.finalized.number,
                "backfill done; serving head requests again"
            );
        }
        Ok(deferred)
    }

    fn while_backfilling(
        &mut self,
        message: Message<Block>,
        deferred: &mut VecDeque<Update<Block>>,
    ) {
        match message {
            // A tip is only logged, and one comes with every finalization however long the
            // backfill takes: keeping them would grow the queue with the engine's outage.
            Message::Update(Update::Tip(_, height, _)) => {
                debug!(height = height.get(), "new finalized tip while backfilling");
            }
            Message::Update(update) => {
                deferred.push_back(update);
                set_len(&self.metrics.deferred_held, deferred.len());
            }
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

    /// Sends `payload` of a finalized block and moves forkchoice onto it. Retries while the
    /// engine is unreachable or syncing; stops on INVALID.
    async fn execute_finalized(
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
    async fn on_update(&mut self, update: Update<Block>) -> bool {
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
                self.runner
                    .finalized(height, block.slot, decisions.clone())
                    .await;
                self.committee.finalized(decisions).await;
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

    /// The slot's payload for this operator as leader, on `parent`.
    async fn build(&mut self, slot: u64, parent: ExecutionTip) -> Option<ExecutionPayloadV3> {
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

    fn observe_build(&self, slot: u64, payload: &ExecutionPayloadV3, outcome: BuildOutcome) {
        if let Some(observer) = &self.observer {
            let _ = observer.send(Observed::Built {
                slot,
                payload_hash: payload.payload_inner.payload_inner.block_hash,
                outcome,
            });
        }
    }

    fn proposed(&self, slot: u64) -> Option<(B256, ExecutionPayloadV3)> {
        let bytes = self.proposals.as_ref()?.get(&U64::new(slot))?;
        if bytes.len() < 32 {
            return None;
        }
        let parent = B256::from_slice(&bytes[..32]);
        let payload = cohort_engine::decode_payload(&bytes[32..], usize::MAX).ok()?;
        Some((parent, payload))
    }

    async fn record_proposal(
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

    async fn verify(&mut self, slot: u64, payload: Arc<ExecutionPayloadV3>) -> PayloadVerdict {
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

    async fn canonicalize_head(&mut self, head: ExecutionTip) {
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

    async fn prebuild(&mut self, slot: u64) {
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

    async fn on_heartbeat(&mut self) {
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

fn set_len(gauge: &Gauge, len: usize) {
    use commonware_runtime::telemetry::metrics::GaugeExt as _;
    let _ = gauge.try_set(len);
}
