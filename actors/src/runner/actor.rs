//! The runner's state and its run loop. Each turn of the loop is one handling step: an input
//! (a mailbox message with everything queued behind it, a peer's partial signatures, a
//! finished call, an expiry) fills a fresh [`Step`] with what it made due, and
//! [`Actor::flush`] carries it out, so a slot's duties share one message per phase.

use super::{
    Config, Fault, Network,
    cpu::CpuMeter,
    duty::Running,
    metrics::Metrics,
    quorum::{Key, Quorum},
    slashing::{SlashingKeeper, SlashingStatus},
    submit::{Object, Reconstructed, Submission},
};
use cohort_ingress::{
    AttestationData, Checkpoint, DecidedValue, DutyId, DutySink, DutySource, SinkError, SlotClock,
    SourceError, committee,
    doppelganger::Guard,
    keys::{Signature, ValidatorShare},
    runner::{DutyEvent, Message},
    scheduler,
    signing::ForkInfo,
};
use commonware_cryptography::PublicKey;
use commonware_macros::select;
use commonware_p2p::{Receiver, Sender};
use commonware_runtime::{
    Clock, ContextCell, Handle, Spawner, Storage, spawn_cell, telemetry::metrics::GaugeExt as _,
};
use commonware_utils::{channel::mpsc, ordered::Set};
use futures::{StreamExt, future::BoxFuture, stream::FuturesUnordered};
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};
use tracing::{debug, error, warn};

/// How many slots after its own a decided duty may still collect post-consensus partials.
pub const POST_CONSENSUS_SLOTS: u64 = 2;

/// How many slots a duty reported missed is remembered, to report the cluster's decision if it
/// arrives later: as long as the committee remembers decided duties, and longer than a
/// partition the cluster is expected to heal from.
pub const MISSED_MEMORY_SLOTS: u64 = 64;

/// What a duty waits for from the outside world.
pub(super) enum Work {
    /// A value to submit for agreement, with the finalized checkpoint the beacon node knows.
    Value(DutyId, Result<(DecidedValue, Checkpoint), SourceError>),
    /// An aggregator's (or sync committee aggregator's) two-thirds mark: time to ask for the
    /// aggregate (or contributions).
    AggregateDue(DutyId),
    /// An aggregation whose beacon-node answer had no usable value is due to ask again.
    AggregateRetry(DutyId),
    /// A submission of `usize` objects of one kind to the duty sink finished.
    Submitted(DutyId, Object, usize, Result<(), SinkError>),
}

/// What one handling step made due, carried out together at its end by [`Actor::flush`].
#[derive(Default)]
pub(super) struct Step {
    /// Duties whose pre-consensus partials are due.
    pub(super) pre_consensus: BTreeSet<DutyId>,
    /// Decided duties whose post-consensus partials are due.
    pub(super) post_consensus: BTreeSet<DutyId>,
    /// Proposers whose RANDAO reveal was reconstructed: their block is due.
    pub(super) blocks: Vec<(DutyId, u64, Signature)>,
    /// Aggregators and sync committee aggregators whose selection proofs select them: they
    /// wait for two thirds of the slot.
    pub(super) aggregators: Vec<DutyId>,
    /// Reconstructed objects, by duty, to submit together.
    pub(super) reconstructed: Reconstructed,
}

impl Step {
    fn len(&self) -> usize {
        self.pre_consensus.len()
            + self.post_consensus.len()
            + self.reconstructed.len()
            + self.blocks.len()
            + self.aggregators.len()
    }
}

pub struct Actor<E, S: DutySource, K: DutySink, P: PublicKey> {
    pub(super) context: ContextCell<E>,
    pub(super) clock: SlotClock,
    pub(super) source: S,
    pub(super) sink: K,
    pub(super) committee: committee::Mailbox,
    /// Told when the cluster decides a committee duty this operator has not started, so the
    /// duty starts at once (see [`Actor::with_scheduler`]).
    pub(super) scheduler: Option<scheduler::Mailbox>,
    pub(super) operators: Set<P>,
    pub(super) shares: Arc<BTreeMap<u64, ValidatorShare>>,
    /// This operator's share index (its position among the operators).
    pub(super) me: u32,
    pub(super) fork: ForkInfo,
    slashing_partition: String,
    slashing_status: SlashingStatus,
    pub(super) fetch_timeout: Duration,
    pub(super) events: Option<mpsc::UnboundedSender<DutyEvent>>,
    mailbox: mpsc::Receiver<Message>,
    pub(super) max_partials: usize,
    /// The most partial signatures one peer may send for one slot (see
    /// [`super::max_partials_per_slot`]).
    pub(super) max_partials_per_slot: usize,
    /// Entries each peer sent per slot, by `(slot, share index)`: what the budget is spent on.
    pub(super) partial_budget: BTreeMap<(u64, u32), usize>,
    pub(super) fault: Option<Fault>,
    pub(super) cpu: Option<CpuMeter>,
    /// Which validators this operator may sign for yet (doppelganger protection).
    pub(super) guard: Guard,

    pub(super) running: BTreeMap<DutyId, Running>,
    /// Keys this operator computed itself, by the duty that waits for them (with what to
    /// submit once reconstructed; none for a pre-consensus key).
    pub(super) waiting: BTreeMap<Key, (DutyId, Option<Submission>)>,
    pub(super) quorum: Quorum,
    /// Duties finalized before this runner started them, with their value; kept for the
    /// block-age window.
    pub(super) finalized_early: BTreeMap<DutyId, DecidedValue>,
    /// Duties decided in blocks this operator processed before it restarted (see
    /// [`Message::Recalled`]); kept for the block-age window, like `finalized_early`.
    pub(super) recalled: BTreeMap<DutyId, u64>,
    /// Duties this runner reported missed, kept [`MISSED_MEMORY_SLOTS`] so a decision that
    /// reaches it late (after a partition, while catching up) is reported as the final outcome.
    pub(super) missed: std::collections::BTreeSet<DutyId>,
    /// The slot this runner started in: duties of earlier slots were never its own to run
    /// (a previous run's, or none while the operator was down).
    pub(super) started_slot: u64,
    /// The attestation data the cluster decided per slot: what aggregators aggregate.
    pub(super) decided_data: BTreeMap<u64, AttestationData>,
    /// Beacon-node and duty-sink calls and aggregation timers outstanding.
    pub(super) calls: FuturesUnordered<BoxFuture<'static, Work>>,
    /// Set once the node is stopping: when the decided duties still running give up on their
    /// post-consensus quorum (see [`Actor::drain`](super::duty)).
    pub(super) draining: Option<std::time::SystemTime>,

    pub(super) metrics: Metrics,
}

impl<E, S, K, P> Actor<E, S, K, P>
where
    E: Clock + Spawner + super::Metrics + Storage,
    S: DutySource,
    K: DutySink,
    P: PublicKey,
{
    pub(super) fn new(
        context: E,
        config: Config<S, K, P>,
        mailbox: mpsc::Receiver<Message>,
    ) -> Self {
        let metrics = Metrics::register(&context);
        let started_slot = config.clock.current_slot(context.current());
        let max_partials = config.max_partials_per_message();
        let max_partials_per_slot = super::max_partials_per_slot(config.shares.len());
        let me = config
            .shares
            .values()
            .next()
            .map(|share| share.share.index.get())
            .unwrap_or(0);
        let threshold = config
            .shares
            .values()
            .next()
            .map(|share| share.sharing.required())
            .unwrap_or(1);
        Self {
            context: ContextCell::new(context),
            clock: config.clock,
            source: config.source,
            sink: config.sink,
            committee: config.committee,
            operators: config.operators,
            shares: config.shares,
            me,
            fork: config.fork,
            slashing_partition: config.slashing_partition,
            slashing_status: config.slashing_status,
            fetch_timeout: config.fetch_timeout,
            events: config.events,
            mailbox,
            max_partials,
            max_partials_per_slot,
            partial_budget: BTreeMap::new(),
            fault: config.fault,
            cpu: config.cpu,
            guard: config.guard,
            running: BTreeMap::new(),
            waiting: BTreeMap::new(),
            quorum: Quorum::new(threshold, config.crypto),
            finalized_early: BTreeMap::new(),
            scheduler: None,
            missed: BTreeSet::new(),
            started_slot,
            recalled: BTreeMap::new(),
            decided_data: BTreeMap::new(),
            calls: FuturesUnordered::new(),
            draining: None,
            metrics,
        }
    }

    /// Runs the actor on the context the wiring named for it (no second name of its own).
    /// Lets the runner start a committee duty as soon as the cluster decides it. The scheduler
    /// is built after the runner (it hands the runner duties), so it is given here, before
    /// [`Actor::start`]; without it a decided duty waits for its usual start.
    pub fn with_scheduler(mut self, scheduler: scheduler::Mailbox) -> Self {
        self.scheduler = Some(scheduler);
        self
    }

    pub fn start<Tx, Rx>(mut self, network: Network<Tx, Rx>) -> Handle<()>
    where
        Tx: Sender<PublicKey = P>,
        Rx: Receiver<PublicKey = P>,
    {
        spawn_cell!(self.context, self.run(network))
    }

    pub(super) fn emit(&self, event: DutyEvent) {
        emit(&self.events, event);
    }

    async fn run<Tx, Rx>(mut self, mut network: Network<Tx, Rx>)
    where
        Tx: Sender<PublicKey = P>,
        Rx: Receiver<PublicKey = P>,
    {
        // Not "slashing": the store's `refusals` would then collide with the runner's own
        // `slashing_refusals`. A record that cannot be opened is reported and retried; the
        // runner keeps running (pre-consensus work, reconstruction of peers' signatures) but
        // signs nothing slashable until it opens.
        let mut slashing = SlashingKeeper::open(
            self.context.child("slashing_protection"),
            self.slashing_partition.clone(),
            self.slashing_status.clone(),
        )
        .await;
        loop {
            let mut step = Step::default();
            let deadline = self.next_deadline();
            let timer = &self.context;
            let expire = async move {
                match deadline {
                    Some(at) => timer.sleep_until(at).await,
                    None => futures::future::pending().await,
                }
            };
            let calls = &mut self.calls;
            let next_call = async move {
                if calls.is_empty() {
                    futures::future::pending::<Option<Work>>().await
                } else {
                    calls.next().await
                }
            };
            // Priorities: finalized decisions and new duties first, then peers' partial
            // signatures, then beacon answers, then expiry (a decision that arrives with the
            // deadline still counts).
            select! {
                message = self.mailbox.recv() => {
                    let Some(message) = message else {
                        debug!("runner mailbox closed; stopping");
                        return;
                    };
                    self.handle(message, &mut step);
                    // Everything already queued joins this step, so a slot's duties share
                    // one message per phase.
                    while let Ok(message) = self.mailbox.try_recv() {
                        self.handle(message, &mut step);
                    }
                },
                received = network.receiver.recv() => {
                    match received {
                        Ok((peer, bytes)) => self.on_partials(peer, bytes, &mut step),
                        Err(err) => {
                            warn!(%err, "partial-signature channel closed; the runner stops");
                            return;
                        }
                    }
                },
                done = next_call => {
                    if let Some(done) = done
                        && let Err(stopped) = self.on_work(done).await
                    {
                        error!(
                            %stopped,
                            "cannot hand a duty's value on for agreement; the runner stops and \
                             the node shuts down"
                        );
                        return;
                    }
                },
                _ = expire => self.expire(),
            }
            self.flush(&mut network.sender, &mut slashing, &mut step)
                .await;
            // Expiry alone would leave old slots' partials in place until some duty's deadline
            // or a finalization, which an idle operator (no duties, a partition) may not see for
            // many slots while peers keep sending; pruning every step keeps memory to the window.
            self.forget_old(self.clock.current_slot(self.context.current()));
            self.set_held(&step);
        }
    }

    fn set_held(&self, step: &Step) {
        // A length always fits the gauge's i64 on the 64-bit targets the node runs on.
        let held = &self.metrics.held;
        let _ = held.running.try_set(self.running.len());
        let _ = held.waiting.try_set(self.waiting.len());
        let _ = held.quorum.try_set(self.quorum.keys());
        let _ = held
            .finalized_early
            .try_set(self.finalized_early.len() + self.recalled.len());
        let _ = held.missed.try_set(self.missed.len());
        let _ = held.decided_data.try_set(self.decided_data.len());
        let _ = held.step.try_set(step.len());
        let _ = held.calls.try_set(self.calls.len());
    }

    fn handle(&mut self, message: Message, step: &mut Step) {
        match message {
            Message::StartDuty(duty) => self.on_start(duty, step),
            Message::Finalized {
                height,
                block_slot,
                decisions,
            } => self.on_finalized(height, block_slot, &decisions, step),
            Message::Recalled {
                height,
                block_slot,
                decisions,
            } => self.on_recalled(height, block_slot, &decisions),
            Message::InFlight { response } => {
                let _ = response.send(self.running.len());
            }
            Message::Drain { response } => {
                self.drain();
                let _ = response.send(self.running.len());
            }
        }
    }

    async fn on_work(&mut self, done: Work) -> Result<(), cohort_ingress::Stopped> {
        match done {
            Work::Value(id, result) => return self.on_value(id, result).await,
            Work::AggregateDue(id) => self.on_aggregate_due(&id),
            Work::AggregateRetry(id) => self.on_aggregate_retry(&id),
            Work::Submitted(id, object, count, result) => {
                self.on_submitted(id, object, count, result)
            }
        }
        Ok(())
    }

    /// Everything this handling step made due: pre-consensus partials, value fetches,
    /// post-consensus partials (after slashing protection), and submissions.
    async fn flush<Tx: Sender<PublicKey = P>>(
        &mut self,
        sender: &mut Tx,
        slashing: &mut SlashingKeeper<E>,
        step: &mut Step,
    ) {
        // Partials decoded and keys recovered while handling: what they complete waits for it.
        self.pay_for_crypto().await;
        if !step.pre_consensus.is_empty() {
            self.sign_pre_consensus(sender, step).await;
        }
        for (id, validator, randao) in std::mem::take(&mut step.blocks) {
            self.fetch_block(id, validator, randao);
        }
        for id in std::mem::take(&mut step.aggregators) {
            self.wait_for_aggregate(id);
        }
        if !step.post_consensus.is_empty() {
            self.sign_post_consensus(sender, slashing, step).await;
        }
        if !step.reconstructed.is_empty() {
            // Keys recovered from buffered partials right after signing.
            self.pay_for_crypto().await;
            self.submit(std::mem::take(&mut step.reconstructed));
        }
    }

    /// Sleeps for what the cryptography since the last payment costs under a simulation's
    /// [`CryptoCost`](super::cpu::CryptoCost), before what that work produced leaves, as a busy
    /// core would hold it; without one (every real node) it returns at once. The sleep is
    /// made before it is awaited, so the future borrows nothing of the actor.
    pub(super) fn pay_for_crypto(
        &self,
    ) -> impl Future<Output = ()> + Send + 'static + use<E, S, K, P> {
        let owed = self
            .cpu
            .as_ref()
            .map(CpuMeter::take_owed)
            .unwrap_or_default();
        let sleep = (!owed.is_zero()).then(|| self.context.sleep(owed));
        async move {
            if let Some(sleep) = sleep {
                sleep.await;
            }
        }
    }
}

pub(super) fn emit(events: &Option<mpsc::UnboundedSender<DutyEvent>>, event: DutyEvent) {
    if let Some(events) = events {
        let _ = events.send(event);
    }
}
