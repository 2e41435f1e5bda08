use super::{
    Config, Fault, Network,
    cpu::{self, CpuMeter, CryptoWork},
    quorum::{Key, Quorum, Recovery},
    slashing::SlashingProtection,
};
use cohort_ingress::{
    Aggregate, AttestationData, AttesterDuty, BlockHeader, Checkpoint, DecidedValue, Decision,
    Duty, DutyId, DutySink, DutySource, DutyTarget, Role, SignedAggregate, SignedAttestation,
    SignedBlock, SinkError, SlotClock, SourceError,
    committee::{self, MAX_BLOCK_AGE_SLOTS},
    keys::{self, Signature, ValidatorShare},
    partial::{PartialSignature, PartialSignatures, Phase},
    runner::{DutyEvent, Message, Outcome, SignRequest},
    signing::{self, ForkInfo},
};
use commonware_codec::{Decode, Encode};
use commonware_cryptography::{PublicKey, sha256::Digest};
use commonware_macros::select;
use commonware_p2p::{Receiver, Recipients, Sender};
use commonware_runtime::{
    Clock, Handle, Metrics, Spawner, Storage, telemetry::metrics::Registered,
};
use commonware_utils::{channel::mpsc, ordered::Set};
use futures::{StreamExt, future::BoxFuture, stream::FuturesUnordered};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
};
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, SystemTime},
};
use tracing::{debug, error, info, warn};

/// How many slots after its own a decided duty may still collect post-consensus partials.
pub const POST_CONSENSUS_SLOTS: u64 = 2;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabel {
    role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperatorLabel {
    /// The sending operator's id (share index + 1); `sender`, not `operator`, so it never
    /// collides with a runtime attribute naming the receiving operator.
    sender: u64,
}

/// What a duty waits for from the outside world.
enum Work {
    /// A value to submit for agreement, with the finalized checkpoint the beacon node knows.
    Value(DutyId, Result<(DecidedValue, Checkpoint), SourceError>),
    /// An aggregator's two-thirds mark: time to ask for the aggregate.
    AggregateDue(DutyId),
    /// A submission to the duty sink finished.
    Submitted(DutyId, usize, Result<(), SinkError>),
}

/// A signed object waiting for its validator's signature to be reconstructed.
#[derive(Clone, Debug)]
enum Submission {
    Attestation(AttesterDuty, AttestationData),
    Block(BlockHeader),
    /// The aggregate, the aggregator's index and its selection proof (boxed: a few per slot,
    /// next to hundreds of attestations).
    Aggregate(Box<(Aggregate, u64, Signature)>),
}

/// A duty between its start and its end.
struct Running {
    duty: Duty,
    started: SystemTime,
    /// Pre-consensus key (RANDAO reveal, selection proof) and its reconstruction.
    pre_key: Option<Key>,
    pre: Option<Signature>,
    /// The finalized value, once decided.
    decision: Option<DecidedValue>,
    /// Post-consensus partials were signed (or refused).
    post_started: bool,
    /// Aggregator: two thirds of the slot has passed.
    aggregate_due: bool,
    aggregate_requested: bool,
    /// Objects owed to the duty sink and how many were handed over.
    expected: usize,
    submitted: usize,
    in_flight: usize,
    /// When this operator's post-consensus partials left (for the reconstruction time).
    post_signed_at: Option<SystemTime>,
}

pub struct Actor<E, S: DutySource, K: DutySink, P: PublicKey> {
    context: E,
    clock: SlotClock,
    source: S,
    sink: K,
    committee: committee::Mailbox,
    operators: Set<P>,
    shares: Arc<BTreeMap<u64, ValidatorShare>>,
    /// This operator's share index (its position among the operators).
    me: u32,
    fork: ForkInfo,
    slashing_partition: String,
    fetch_timeout: Duration,
    events: Option<mpsc::UnboundedSender<DutyEvent>>,
    mailbox: mpsc::Receiver<Message>,
    max_partials: usize,
    fault: Option<Fault>,
    cpu: Option<CpuMeter>,

    running: BTreeMap<DutyId, Running>,
    /// Keys this operator computed itself, by the duty that waits for them.
    waiting: BTreeMap<Key, (DutyId, Option<Submission>)>,
    quorum: Quorum,
    /// Duties finalized before this runner started them, with their value; kept for the
    /// block-age window.
    finalized_early: BTreeMap<DutyId, DecidedValue>,
    /// The attestation data the cluster decided per slot: what aggregators aggregate.
    decided_data: BTreeMap<u64, AttestationData>,
    /// Duties whose pre- or post-consensus partials are due in this handling step.
    pre_ready: BTreeSet<DutyId>,
    post_ready: BTreeSet<DutyId>,
    /// Reconstructed objects of this step, by duty, to submit together.
    reconstructed: BTreeMap<DutyId, Vec<(Submission, Signature)>>,
    /// Proposers whose RANDAO reveal was reconstructed in this step: their block is due.
    pending_block: Vec<(DutyId, u64, Signature)>,
    /// Aggregators selected in this step: they wait for two thirds of the slot.
    pending_aggregate: Vec<DutyId>,

    started: Registered<Family<RoleLabel, Counter>>,
    succeeded: Registered<Family<RoleLabel, Counter>>,
    failed: Registered<Family<RoleLabel, Counter>>,
    partials_received: Registered<Family<OperatorLabel, Counter>>,
    partials_invalid: Registered<Family<OperatorLabel, Counter>>,
    messages_invalid: Registered<Counter>,
    slashing_refusals: Registered<Counter>,
    decided: Registered<Counter>,
    missed: Registered<Counter>,
    decide_latency: Registered<Histogram>,
    reconstruction_time: Registered<Histogram>,
    submission_delay: Registered<Histogram>,
    held: Held,
}

/// How much the runner holds in memory, set after every handling step, so a long run can show
/// that nothing grows with its length. Each help text says what bounds its gauge.
struct Held {
    running: Registered<Gauge>,
    waiting: Registered<Gauge>,
    quorum: Registered<Gauge>,
    finalized_early: Registered<Gauge>,
    decided_data: Registered<Gauge>,
    step: Registered<Gauge>,
    calls: Registered<Gauge>,
}

impl Held {
    fn new(context: &impl Metrics) -> Self {
        let gauge = |name: &str, help: &str| context.register(name, help, Gauge::default());
        Self {
            running: gauge(
                "running_duties_held",
                "duties in flight; a duty ends by 1 + MAX_BLOCK_AGE_SLOTS + \
                 POST_CONSENSUS_SLOTS slots after its own, so at most the duties of that many slots",
            ),
            waiting: gauge(
                "waiting_keys_held",
                "signing roots this operator signed and waits to reconstruct; at most one per \
                 running proposer or aggregator duty and one per attester of a running committee duty",
            ),
            quorum: gauge(
                "quorum_entries_held",
                "partial-signature keys held; only the cluster's validators, slots from \
                 1 + MAX_BLOCK_AGE_SLOTS + POST_CONSENSUS_SLOTS back to the next one, and at most \
                 MAX_ROOTS_PER_SENDER roots per operator, validator and slot",
            ),
            finalized_early: gauge(
                "finalized_early_held",
                "decisions finalized before this runner started their duty; only duties of \
                 slots from 1 + MAX_BLOCK_AGE_SLOTS back (their blocks may still be finalized) to \
                 the next one",
            ),
            decided_data: gauge(
                "decided_data_held",
                "slots whose decided attestation data an aggregator may still need; slots \
                 from 1 + MAX_BLOCK_AGE_SLOTS + POST_CONSENSUS_SLOTS back to the next one",
            ),
            step: gauge(
                "step_items_held",
                "duties and objects queued within one handling step (signatures due, \
                 reconstructions to submit, blocks and aggregates to fetch); empty between steps",
            ),
            calls: gauge(
                "pending_calls_held",
                "beacon-node and duty-sink calls and aggregation timers outstanding; each \
                 ends within the fetch timeout or two thirds of its slot, a few per recent duty",
            ),
        }
    }
}

fn role_label(role: Role) -> RoleLabel {
    RoleLabel {
        role: role.as_str().to_string(),
    }
}

impl<E, S, K, P> Actor<E, S, K, P>
where
    E: Clock + Spawner + Metrics + Storage,
    S: DutySource,
    K: DutySink,
    P: PublicKey,
{
    pub(super) fn new(
        context: E,
        config: Config<S, K, P>,
        mailbox: mpsc::Receiver<Message>,
    ) -> Self {
        let family = |name: &str, help: &str| {
            // The handle is kept: dropping it would take the family out of the registry.
            context.register(name, help, Family::<RoleLabel, Counter>::default())
        };
        let started = family("duties_started", "duties started, by role");
        let succeeded = family(
            "duties_succeeded",
            "duties whose signed objects all reached the duty sink, by role",
        );
        let failed = family(
            "duties_failed",
            "duties missed or ended with objects not submitted, by role",
        );
        let operator_family = |name: &str, help: &str| {
            context.register(name, help, Family::<OperatorLabel, Counter>::default())
        };
        let partials_received = operator_family(
            "partials_received",
            "partial signatures received, by sending operator",
        );
        let partials_invalid = operator_family(
            "partials_invalid",
            "partial signatures that failed verification and were dropped, by operator",
        );
        let messages_invalid = context.register(
            "partial_messages_invalid",
            "partial-signature messages that did not decode or came from outside the cluster",
            Counter::default(),
        );
        let slashing_refusals = context.register(
            "slashing_refusals",
            "signatures refused by slashing protection",
            Counter::default(),
        );
        let decided = context.register(
            "duties_decided",
            "duties finalized in a block of their slot",
            Counter::default(),
        );
        let missed = context.register(
            "duties_missed",
            "duties whose slot ended before a finalized decision",
            Counter::default(),
        );
        let decide_latency = context.register(
            "decide_latency_seconds",
            "time from duty start to finalized decision",
            Histogram::new([0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8]),
        );
        let reconstruction_time = context.register(
            "reconstruction_seconds",
            "time from this operator's post-consensus partials to the reconstructed signature",
            Histogram::new([0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2]),
        );
        let submission_delay = context.register(
            "submission_delay_seconds",
            "time from the start of the duty's slot to its submission",
            Histogram::new([0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 24.0]),
        );
        let held = Held::new(&context);
        let max_partials = config.max_partials_per_message();
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
            context,
            clock: config.clock,
            source: config.source,
            sink: config.sink,
            committee: config.committee,
            operators: config.operators,
            shares: config.shares,
            me,
            fork: config.fork,
            slashing_partition: config.slashing_partition,
            fetch_timeout: config.fetch_timeout,
            events: config.events,
            mailbox,
            max_partials,
            fault: config.fault,
            cpu: config.cpu,
            running: BTreeMap::new(),
            waiting: BTreeMap::new(),
            quorum: Quorum::new(threshold),
            finalized_early: BTreeMap::new(),
            decided_data: BTreeMap::new(),
            pre_ready: BTreeSet::new(),
            post_ready: BTreeSet::new(),
            reconstructed: BTreeMap::new(),
            pending_block: Vec::new(),
            pending_aggregate: Vec::new(),
            started,
            succeeded,
            failed,
            partials_received,
            partials_invalid,
            messages_invalid,
            slashing_refusals,
            decided,
            missed,
            decide_latency,
            reconstruction_time,
            submission_delay,
            held,
        }
    }

    pub fn start<Tx, Rx>(self, network: Network<Tx, Rx>) -> Handle<()>
    where
        Tx: Sender<PublicKey = P>,
        Rx: Receiver<PublicKey = P>,
    {
        let context = self.context.child("runner");
        context.spawn(move |context| self.run(context, network))
    }

    fn emit(&self, event: DutyEvent) {
        emit(&self.events, event);
    }

    async fn run<Tx, Rx>(mut self, context: E, mut network: Network<Tx, Rx>)
    where
        Tx: Sender<PublicKey = P>,
        Rx: Receiver<PublicKey = P>,
    {
        let mut slashing = match SlashingProtection::init(
            context.child("slashing"),
            self.slashing_partition.clone(),
        )
        .await
        {
            Ok(store) => store,
            Err(err) => {
                error!(%err, "cannot open the slashing-protection record; the runner stops and signs nothing");
                return;
            }
        };
        let mut work: FuturesUnordered<BoxFuture<'static, Work>> = FuturesUnordered::new();
        loop {
            let deadline = self.next_deadline();
            let expire = async {
                match deadline {
                    Some(at) => self.context.sleep_until(at).await,
                    None => futures::future::pending().await,
                }
            };
            let next_work = async {
                if work.is_empty() {
                    futures::future::pending::<Option<Work>>().await
                } else {
                    work.next().await
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
                    self.handle(message, &mut work);
                    // Everything already queued joins this step, so a slot's duties share
                    // one message per phase.
                    while let Ok(message) = self.mailbox.try_recv() {
                        self.handle(message, &mut work);
                    }
                },
                received = network.receiver.recv() => {
                    match received {
                        Ok((peer, bytes)) => self.on_partials(peer, bytes),
                        Err(err) => {
                            warn!(%err, "partial-signature channel closed; the runner stops");
                            return;
                        }
                    }
                },
                done = next_work => {
                    if let Some(done) = done {
                        self.on_work(done, &mut work).await;
                    }
                },
                _ = expire => self.expire(),
            }
            self.flush(&mut network.sender, &mut slashing, &mut work)
                .await;
            // Expiry alone would leave old slots' partials in place until some duty's deadline
            // or a finalization, which an idle operator (no duties, a partition) may not see for
            // many slots while peers keep sending; pruning every step keeps memory to the window.
            self.forget_old(self.clock.current_slot(self.context.current()));
            self.set_held(work.len());
        }
    }

    fn set_held(&self, calls: usize) {
        let set = |gauge: &Registered<Gauge>, len: usize| {
            gauge.set(len.try_into().unwrap_or(i64::MAX));
        };
        set(&self.held.running, self.running.len());
        set(&self.held.waiting, self.waiting.len());
        set(&self.held.quorum, self.quorum.keys());
        set(&self.held.finalized_early, self.finalized_early.len());
        set(&self.held.decided_data, self.decided_data.len());
        set(
            &self.held.step,
            self.pre_ready.len()
                + self.post_ready.len()
                + self.reconstructed.len()
                + self.pending_block.len()
                + self.pending_aggregate.len(),
        );
        set(&self.held.calls, calls);
    }

    fn handle(&mut self, message: Message, work: &mut FuturesUnordered<BoxFuture<'static, Work>>) {
        match message {
            Message::StartDuty(duty) => self.on_start(duty, work),
            Message::Finalized {
                height,
                block_slot,
                decisions,
            } => self.on_finalized(height, block_slot, &decisions, work),
            Message::InFlight { response } => {
                let _ = response.send(self.running.len());
            }
        }
    }

    fn on_start(&mut self, duty: Duty, work: &mut FuturesUnordered<BoxFuture<'static, Work>>) {
        let id = duty.id.clone();
        if self.running.contains_key(&id) {
            debug!(duty_id = %id, "duty already running; ignoring the second start");
            return;
        }
        if let DutyTarget::Validator(v) = id.target
            && !self.shares.contains_key(&v)
        {
            warn!(duty_id = %id, runner_role = %id.role, slot = id.slot, "no share of this validator; ignoring the duty");
            return;
        }
        let now = self.context.current();
        let message = if id.role == Role::Committee {
            "executing committee duty"
        } else {
            "executing validator duty"
        };
        info!(
            duty_id = %id,
            runner_role = %id.role,
            slot = id.slot,
            validators = duty.attesters.len(),
            "{message}"
        );
        self.started.get_or_create(&role_label(id.role)).inc();
        self.emit(DutyEvent::Started {
            duty: id.clone(),
            at: now,
        });
        let mut running = Running {
            duty,
            started: now,
            pre_key: None,
            pre: None,
            decision: None,
            post_started: false,
            aggregate_due: false,
            aggregate_requested: false,
            expected: 0,
            submitted: 0,
            in_flight: 0,
            post_signed_at: None,
        };
        if let Some(value) = self.finalized_early.remove(&id) {
            info!(
                duty_id = %id,
                runner_role = %id.role,
                slot = id.slot,
                "duty already decided and finalized by the cluster; going on to sign it"
            );
            self.decided.inc();
            self.decide_latency.observe(0.0);
            self.emit(DutyEvent::Decided {
                duty: id.clone(),
                latency: Duration::ZERO,
            });
            running.decision = Some(value);
        }
        let decided = running.decision.is_some();
        self.running.insert(id.clone(), running);
        match id.role {
            Role::Committee if decided => {
                self.post_ready.insert(id);
            }
            Role::Committee => self.fetch_attestation(id, work),
            Role::Proposer | Role::Aggregator => {
                self.pre_ready.insert(id);
            }
            Role::SyncCommitteeContribution => {
                warn!(duty_id = %id, "sync committee contributions are not carried out yet; dropping the duty");
                self.running.remove(&id);
            }
        }
    }

    fn bounded<T: Send + 'static>(
        &self,
        call: impl std::future::Future<Output = Result<T, SourceError>> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, SourceError>> {
        let timeout = self.context.sleep(self.fetch_timeout);
        Box::pin(async move {
            select! {
                result = call => result,
                _ = timeout => Err(SourceError::Unavailable("timed out".into())),
            }
        })
    }

    fn fetch_attestation(&self, id: DutyId, work: &mut FuturesUnordered<BoxFuture<'static, Work>>) {
        let source = self.source.clone();
        let slot = id.slot;
        let call = self.bounded(async move {
            let data = source.attestation_data(slot).await?;
            if data.slot != slot {
                return Err(SourceError::Unavailable(format!(
                    "attestation data for slot {} instead of {slot}",
                    data.slot
                )));
            }
            let finalized = source.finalized_checkpoint().await?;
            Ok((DecidedValue::Attestation(data), finalized))
        });
        work.push(Box::pin(async move { Work::Value(id, call.await) }));
    }

    fn fetch_block(
        &self,
        id: DutyId,
        validator: u64,
        randao: Signature,
        work: &mut FuturesUnordered<BoxFuture<'static, Work>>,
    ) {
        let source = self.source.clone();
        let slot = id.slot;
        let call = self.bounded(async move {
            let header = source.block_proposal(slot, validator, randao).await?;
            if header.slot != slot || header.proposer_index != validator {
                return Err(SourceError::Unavailable(
                    "beacon node built a block for another slot or proposer".into(),
                ));
            }
            let finalized = source.finalized_checkpoint().await?;
            Ok((DecidedValue::Block(header), finalized))
        });
        work.push(Box::pin(async move { Work::Value(id, call.await) }));
    }

    fn fetch_aggregate(
        &self,
        id: DutyId,
        data: AttestationData,
        work: &mut FuturesUnordered<BoxFuture<'static, Work>>,
    ) {
        let source = self.source.clone();
        let call = self.bounded(async move {
            let aggregate = source.aggregate_attestation(data).await?;
            if aggregate.data != data {
                return Err(SourceError::Unavailable(
                    "beacon node aggregated other attestation data".into(),
                ));
            }
            let finalized = source.finalized_checkpoint().await?;
            Ok((DecidedValue::Aggregate(Box::new(aggregate)), finalized))
        });
        work.push(Box::pin(async move { Work::Value(id, call.await) }));
    }

    async fn on_work(&mut self, done: Work, work: &mut FuturesUnordered<BoxFuture<'static, Work>>) {
        match done {
            Work::Value(id, result) => {
                let Some(running) = self.running.get(&id) else {
                    return; // Ended meanwhile.
                };
                if running.decision.is_some() {
                    return; // Another operator's value won already.
                }
                match result {
                    Ok((value, finalized)) => {
                        debug!(duty_id = %id, runner_role = %id.role, slot = id.slot, "submitting the duty's value for agreement");
                        self.committee.submit(id, value, finalized).await;
                    }
                    Err(err) => warn!(
                        duty_id = %id,
                        runner_role = %id.role,
                        slot = id.slot,
                        %err,
                        "could not fetch the duty's value; the duty waits for another operator's value"
                    ),
                }
            }
            Work::AggregateDue(id) => {
                if let Some(running) = self.running.get_mut(&id) {
                    running.aggregate_due = true;
                }
                self.request_aggregate(&id, work);
            }
            Work::Submitted(id, count, result) => self.on_submitted(id, count, result),
        }
    }

    /// An aggregator asks for its aggregate once two thirds of the slot passed and the cluster
    /// decided the slot's attestation data.
    fn request_aggregate(
        &mut self,
        id: &DutyId,
        work: &mut FuturesUnordered<BoxFuture<'static, Work>>,
    ) {
        let Some(data) = self.decided_data.get(&id.slot).copied() else {
            return;
        };
        let Some(running) = self.running.get_mut(id) else {
            return;
        };
        if !running.aggregate_due || running.aggregate_requested || running.decision.is_some() {
            return;
        }
        running.aggregate_requested = true;
        self.fetch_aggregate(id.clone(), data, work);
    }

    fn on_finalized(
        &mut self,
        height: u64,
        block_slot: u64,
        decisions: &Arc<Vec<Decision>>,
        work: &mut FuturesUnordered<BoxFuture<'static, Work>>,
    ) {
        let now = self.context.current();
        self.forget_old(self.clock.current_slot(now));
        let mut aggregators = Vec::new();
        for decision in decisions.iter() {
            if decision.duty.slot != block_slot {
                continue; // Cannot happen in a verified block; never sign it.
            }
            if let DecidedValue::Attestation(data) = &decision.value {
                self.decided_data.insert(decision.duty.slot, *data);
                aggregators.extend(
                    self.running
                        .range(first_id_of_slot(block_slot)..first_id_of_slot(block_slot + 1))
                        .filter(|(id, _)| id.role == Role::Aggregator)
                        .map(|(id, _)| id.clone()),
                );
            }
            let Some(running) = self.running.get_mut(&decision.duty) else {
                self.finalized_early
                    .insert(decision.duty.clone(), decision.value.clone());
                continue;
            };
            if running.decision.is_some() {
                continue;
            }
            running.decision = Some(decision.value.clone());
            let latency = now.duration_since(running.started).unwrap_or_default();
            self.decided.inc();
            self.decide_latency.observe(latency.as_secs_f64());
            info!(
                duty_id = %decision.duty,
                runner_role = %decision.duty.role,
                slot = decision.duty.slot,
                height,
                latency_ms = latency.as_millis() as u64,
                "duty decided and finalized"
            );
            emit(
                &self.events,
                DutyEvent::Decided {
                    duty: decision.duty.clone(),
                    latency,
                },
            );
            let needs_pre = decision.duty.role != Role::Committee;
            if !needs_pre || running.pre.is_some() {
                self.post_ready.insert(decision.duty.clone());
            }
        }
        for id in aggregators {
            self.request_aggregate(&id, work);
        }
    }

    fn on_partials(&mut self, peer: P, bytes: impl commonware_codec::Buf) {
        let Some(operator) = self.operators.position(&peer) else {
            self.messages_invalid.inc();
            warn!(%peer, "partial signatures from outside the cluster; dropped");
            return;
        };
        let operator = operator as u32;
        let label = OperatorLabel {
            sender: operator as u64 + 1,
        };
        let message = match cpu::measure(&self.cpu, CryptoWork::Decode, || {
            PartialSignatures::decode_cfg(bytes, &self.max_partials)
        }) {
            Ok(message) => message,
            Err(err) => {
                self.messages_invalid.inc();
                warn!(operator = operator + 1, %err, "malformed partial-signature message; dropped");
                return;
            }
        };
        let current = self.clock.current_slot(self.context.current());
        let oldest = current.saturating_sub(MAX_BLOCK_AGE_SLOTS + POST_CONSENSUS_SLOTS + 1);
        if message.slot < oldest || message.slot > current + 1 {
            debug!(
                operator = operator + 1,
                slot = message.slot,
                "partial signatures for a slot outside the window; dropped"
            );
            return;
        }
        let mut added = Vec::new();
        for partial in message.signatures {
            if !self.shares.contains_key(&partial.validator_index) {
                self.partials_invalid.get_or_create(&label).inc();
                continue;
            }
            let key = Key {
                slot: message.slot,
                validator_index: partial.validator_index,
                signing_root: partial.signing_root,
            };
            if self.quorum.add(key, operator, partial.signature) {
                self.partials_received.get_or_create(&label).inc();
                added.push(key);
            }
        }
        for key in added {
            self.try_recover(key);
        }
    }

    /// Recovers `key` if this operator expects it and a threshold of partials is in.
    fn try_recover(&mut self, key: Key) {
        let Some((id, _)) = self.waiting.get(&key) else {
            return;
        };
        let id = id.clone();
        let Some(share) = self.shares.get(&key.validator_index) else {
            return;
        };
        let recovery = cpu::measure(&self.cpu, CryptoWork::Recover, || {
            self.quorum.try_recover(&key, &share.sharing)
        });
        match recovery {
            Recovery::Waiting | Recovery::Done => {}
            Recovery::Invalid { invalid } => self.report_invalid(&id, &key, &invalid),
            Recovery::Recovered { signature, invalid } => {
                self.report_invalid(&id, &key, &invalid);
                let Some((id, submission)) = self.waiting.remove(&key) else {
                    return;
                };
                self.on_recovered(id, key, submission, signature);
            }
        }
    }

    fn report_invalid(&mut self, id: &DutyId, key: &Key, operators: &[u32]) {
        for operator in operators {
            self.partials_invalid
                .get_or_create(&OperatorLabel {
                    sender: *operator as u64 + 1,
                })
                .inc();
            warn!(
                duty_id = %id,
                runner_role = %id.role,
                slot = id.slot,
                validator = key.validator_index,
                operator = operator + 1,
                "invalid partial signature dropped; reconstructing from the valid ones"
            );
        }
    }

    fn on_recovered(
        &mut self,
        id: DutyId,
        key: Key,
        submission: Option<Submission>,
        signature: Signature,
    ) {
        let now = self.context.current();
        let Some(running) = self.running.get_mut(&id) else {
            return;
        };
        match submission {
            None => {
                // Pre-consensus: a RANDAO reveal or a selection proof.
                info!(duty_id = %id, runner_role = %id.role, slot = id.slot, "got pre-consensus quorum");
                debug!(duty_id = %id, runner_role = %id.role, slot = id.slot, validator = key.validator_index, "reconstructed partial signature");
                running.pre = Some(signature);
                if running.decision.is_some() {
                    self.post_ready.insert(id.clone());
                    return;
                }
                match id.role {
                    Role::Proposer => {
                        self.pending_block
                            .push((id, key.validator_index, signature));
                    }
                    Role::Aggregator => {
                        let committee_length = running
                            .duty
                            .attesters
                            .first()
                            .map_or(0, |a| a.committee_length);
                        if !signing::is_aggregator(committee_length, &signature_bytes(&signature)) {
                            info!(duty_id = %id, runner_role = %id.role, slot = id.slot, "selection proof does not select this validator; nothing to aggregate");
                            self.finish(&id, Outcome::NotSelected);
                            return;
                        }
                        self.pending_aggregate.push(id);
                    }
                    _ => {}
                }
            }
            Some(submission) => {
                if let Some(at) = running.post_signed_at {
                    self.reconstruction_time
                        .observe(now.duration_since(at).unwrap_or_default().as_secs_f64());
                }
                debug!(duty_id = %id, runner_role = %id.role, slot = id.slot, validator = key.validator_index, "reconstructed partial signature");
                self.reconstructed
                    .entry(id)
                    .or_default()
                    .push((submission, signature));
            }
        }
    }

    /// Everything this handling step made due: pre-consensus partials, value fetches,
    /// post-consensus partials (after slashing protection), and submissions.
    async fn flush<Tx: Sender<PublicKey = P>>(
        &mut self,
        sender: &mut Tx,
        slashing: &mut SlashingProtection<E>,
        work: &mut FuturesUnordered<BoxFuture<'static, Work>>,
    ) {
        if !self.pre_ready.is_empty() {
            self.sign_pre_consensus(sender);
        }
        for (id, validator, randao) in std::mem::take(&mut self.pending_block) {
            self.fetch_block(id, validator, randao, work);
        }
        for id in std::mem::take(&mut self.pending_aggregate) {
            let at = self.clock.interval_start(id.slot, 2);
            let sleep = self.context.sleep_until(at);
            work.push(Box::pin(async move {
                sleep.await;
                Work::AggregateDue(id)
            }));
        }
        if !self.post_ready.is_empty() {
            self.sign_post_consensus(sender, slashing).await;
        }
        if !self.reconstructed.is_empty() {
            self.submit(work);
        }
    }

    /// Signs `root` with this operator's share of `validator` (or, under
    /// [`Fault::WrongPartials`], another root).
    fn sign_share(&self, validator: u64, root: &[u8; 32]) -> Option<Signature> {
        let share = self.shares.get(&validator)?;
        let signed = cpu::measure(&self.cpu, CryptoWork::Sign, || match self.fault {
            Some(Fault::WrongPartials) => {
                let mut wrong = *root;
                wrong[0] ^= 0xff;
                keys::sign_partial(&share.share, &wrong)
            }
            None => keys::sign_partial(&share.share, root),
        });
        Some(signed.value)
    }

    fn sign_pre_consensus<Tx: Sender<PublicKey = P>>(&mut self, sender: &mut Tx) {
        let mut by_slot: BTreeMap<u64, Vec<PartialSignature>> = BTreeMap::new();
        let mut keys = Vec::new();
        for id in std::mem::take(&mut self.pre_ready) {
            let DutyTarget::Validator(validator) = id.target else {
                continue;
            };
            let Some(running) = self.running.get(&id) else {
                continue;
            };
            if running.pre_key.is_some() {
                continue;
            }
            let root = match id.role {
                Role::Proposer => signing::compute_signing_root(
                    signing::epoch_root(id.epoch),
                    self.fork.domain(signing::DOMAIN_RANDAO),
                ),
                Role::Aggregator => signing::compute_signing_root(
                    signing::slot_root(id.slot),
                    self.fork.domain(signing::DOMAIN_SELECTION_PROOF),
                ),
                _ => continue,
            };
            let Some(signature) = self.sign_share(validator, &root) else {
                continue;
            };
            let key = Key {
                slot: id.slot,
                validator_index: validator,
                signing_root: Digest(root),
            };
            if let Some(running) = self.running.get_mut(&id) {
                running.pre_key = Some(key);
            }
            self.quorum.add(key, self.me, signature);
            self.waiting.insert(key, (id.clone(), None));
            by_slot.entry(id.slot).or_default().push(PartialSignature {
                validator_index: validator,
                signing_root: key.signing_root,
                signature,
            });
            keys.push(key);
        }
        for (slot, signatures) in by_slot {
            debug!(
                slot,
                partials = signatures.len(),
                "broadcasting pre-consensus partial signatures"
            );
            self.broadcast(sender, slot, Phase::PreConsensus, signatures);
        }
        for key in keys {
            self.try_recover(key);
        }
    }

    /// What a decided duty's post-consensus phase signs: per object, its key, what is
    /// submitted once reconstructed, and what slashing protection must allow first.
    fn post_consensus_items(
        &self,
        id: &DutyId,
        running: &Running,
    ) -> Result<Vec<(Key, Submission, Option<SignRequest>)>, String> {
        let Some(value) = &running.decision else {
            return Err("no decided value".into());
        };
        let key = |validator: u64, root: [u8; 32]| Key {
            slot: id.slot,
            validator_index: validator,
            signing_root: Digest(root),
        };
        match (value, &id.target) {
            (DecidedValue::Attestation(data), _) => {
                let root = self.fork.attestation_signing_root(data);
                Ok(running
                    .duty
                    .attesters
                    .iter()
                    .filter(|a| a.slot == id.slot && self.shares.contains_key(&a.validator_index))
                    .map(|attester| {
                        (
                            key(attester.validator_index, root),
                            Submission::Attestation(*attester, *data),
                            Some(SignRequest::Attestation {
                                validator_index: attester.validator_index,
                                source_epoch: data.source.epoch,
                                target_epoch: data.target.epoch,
                                signing_root: root,
                            }),
                        )
                    })
                    .collect())
            }
            (DecidedValue::Block(header), DutyTarget::Validator(validator)) => {
                let root = self.fork.block_signing_root(header);
                Ok(vec![(
                    key(*validator, root),
                    Submission::Block(*header),
                    Some(SignRequest::Block {
                        validator_index: *validator,
                        slot: header.slot,
                        signing_root: root,
                    }),
                )])
            }
            (DecidedValue::Aggregate(aggregate), DutyTarget::Validator(validator)) => {
                let Some(selection_proof) = running.pre else {
                    return Err("selection proof not reconstructed".into());
                };
                let object = signing::aggregate_and_proof_root(
                    *validator,
                    &aggregate.aggregation_bits,
                    &aggregate.data,
                    &aggregate.signature,
                    &signature_bytes(&selection_proof),
                )
                .map_err(|err| err.to_string())?;
                let root = signing::compute_signing_root(
                    object,
                    self.fork.domain(signing::DOMAIN_AGGREGATE_AND_PROOF),
                );
                Ok(vec![(
                    key(*validator, root),
                    Submission::Aggregate(Box::new((
                        (**aggregate).clone(),
                        *validator,
                        selection_proof,
                    ))),
                    None,
                )])
            }
            _ => Err("decided value does not fit the duty".into()),
        }
    }

    async fn sign_post_consensus<Tx: Sender<PublicKey = P>>(
        &mut self,
        sender: &mut Tx,
        slashing: &mut SlashingProtection<E>,
    ) {
        let mut plans = Vec::new();
        for id in std::mem::take(&mut self.post_ready) {
            let Some(running) = self.running.get_mut(&id) else {
                continue;
            };
            if running.post_started {
                continue;
            }
            running.post_started = true;
            let Some(running) = self.running.get(&id) else {
                continue;
            };
            match self.post_consensus_items(&id, running) {
                Ok(items) => plans.push((id, items)),
                Err(reason) => {
                    warn!(duty_id = %id, runner_role = %id.role, slot = id.slot, reason, "cannot sign the decided value; the duty fails");
                    self.finish(&id, Outcome::Failed { reason });
                }
            }
        }
        // One durable slashing-protection write for the whole step, before any signature.
        let requests: Vec<SignRequest> = plans
            .iter()
            .flat_map(|(_, items)| items.iter().filter_map(|(_, _, request)| *request))
            .collect();
        let verdicts = if requests.is_empty() {
            Vec::new()
        } else {
            match slashing.check_and_record(&requests).await {
                Ok(verdicts) => verdicts
                    .into_iter()
                    .map(|v| v.map_err(|r| r.to_string()))
                    .collect(),
                Err(err) => {
                    error!(%err, requests = requests.len(), "slashing-protection record could not be written; signing nothing for these duties");
                    requests
                        .iter()
                        .map(|_| Err(format!("slashing-protection record unavailable: {err}")))
                        .collect()
                }
            }
        };
        let mut verdicts = verdicts.into_iter();
        let mut by_slot: BTreeMap<u64, Vec<PartialSignature>> = BTreeMap::new();
        let mut signed = Vec::new();
        let mut keys = Vec::new();
        let now = self.context.current();
        for (id, items) in plans {
            let mut expected = 0;
            for (key, submission, request) in items {
                if let Some(request) = request {
                    match verdicts.next() {
                        Some(Ok(())) => signed.push(request),
                        Some(Err(refusal)) => {
                            self.slashing_refusals.inc();
                            warn!(
                                duty_id = %id,
                                runner_role = %id.role,
                                slot = id.slot,
                                validator = key.validator_index,
                                %refusal,
                                "slashing protection refused to sign; this validator's object is dropped"
                            );
                            continue;
                        }
                        None => continue,
                    }
                }
                let Some(signature) = self.sign_share(key.validator_index, &key.signing_root.0)
                else {
                    continue;
                };
                self.quorum.add(key, self.me, signature);
                self.waiting.insert(key, (id.clone(), Some(submission)));
                by_slot.entry(id.slot).or_default().push(PartialSignature {
                    validator_index: key.validator_index,
                    signing_root: key.signing_root,
                    signature,
                });
                keys.push(key);
                expected += 1;
            }
            let Some(running) = self.running.get_mut(&id) else {
                continue;
            };
            running.expected = expected;
            running.post_signed_at = Some(now);
            if expected == 0 {
                self.finish(
                    &id,
                    Outcome::Failed {
                        reason: "slashing protection refused every signature".into(),
                    },
                );
            }
        }
        if !signed.is_empty() {
            self.emit(DutyEvent::Signed { requests: signed });
        }
        for (slot, signatures) in by_slot {
            debug!(
                slot,
                partials = signatures.len(),
                "broadcasting post-consensus partial signatures"
            );
            self.broadcast(sender, slot, Phase::PostConsensus, signatures);
        }
        for key in keys {
            self.try_recover(key);
        }
        if self
            .reconstructed
            .keys()
            .any(|id| self.running.contains_key(id))
        {
            debug!("post-consensus quorum reached from buffered partials");
        }
    }

    fn broadcast<Tx: Sender<PublicKey = P>>(
        &self,
        sender: &mut Tx,
        slot: u64,
        phase: Phase,
        signatures: Vec<PartialSignature>,
    ) {
        for chunk in signatures.chunks(self.max_partials.max(1)) {
            let message = PartialSignatures {
                slot,
                phase,
                signatures: chunk.to_vec(),
            };
            let sent = sender.send(Recipients::All, message.encode(), false);
            if sent.is_empty() && self.operators.len() > 1 {
                debug!(
                    slot,
                    phase = phase.as_str(),
                    "no peer took the partial signatures (all offline or limited)"
                );
            }
        }
    }

    fn submit(&mut self, work: &mut FuturesUnordered<BoxFuture<'static, Work>>) {
        for (id, objects) in std::mem::take(&mut self.reconstructed) {
            let Some(running) = self.running.get_mut(&id) else {
                continue;
            };
            if id.role == Role::Committee {
                info!(duty_id = %id, runner_role = %id.role, slot = id.slot, validators = objects.len(), "got post-consensus quorum");
            } else {
                info!(duty_id = %id, runner_role = %id.role, slot = id.slot, "got post-consensus quorum");
            }
            let count = objects.len();
            running.in_flight += count;
            let sink = self.sink.clone();
            let timeout = self.context.sleep(self.fetch_timeout);
            let call = async move {
                let mut attestations = Vec::new();
                for (submission, signature) in objects {
                    match submission {
                        Submission::Attestation(duty, data) => {
                            attestations.push(SignedAttestation {
                                duty,
                                data,
                                signature,
                            })
                        }
                        Submission::Block(header) => {
                            sink.submit_block(SignedBlock { header, signature }).await?
                        }
                        Submission::Aggregate(boxed) => {
                            let (aggregate, aggregator_index, selection_proof) = *boxed;
                            sink.submit_aggregate(SignedAggregate {
                                aggregator_index,
                                aggregate,
                                selection_proof,
                                signature,
                            })
                            .await?
                        }
                    }
                }
                if !attestations.is_empty() {
                    sink.submit_attestations(attestations).await?;
                }
                Ok(())
            };
            work.push(Box::pin(async move {
                let result = select! {
                    result = call => result,
                    _ = timeout => Err(SinkError::Unavailable("timed out".into())),
                };
                Work::Submitted(id, count, result)
            }));
        }
    }

    fn on_submitted(&mut self, id: DutyId, count: usize, result: Result<(), SinkError>) {
        let now = self.context.current();
        let Some(running) = self.running.get_mut(&id) else {
            return;
        };
        running.in_flight = running.in_flight.saturating_sub(count);
        match result {
            Ok(()) => {
                running.submitted += count;
                let delay = now
                    .duration_since(self.clock.slot_start(id.slot))
                    .unwrap_or_default();
                self.submission_delay.observe(delay.as_secs_f64());
                let what = match id.role {
                    Role::Committee => "successfully submitted attestations",
                    Role::Proposer => "successfully submitted block proposal",
                    Role::Aggregator => "successfully submitted aggregate and proof",
                    Role::SyncCommitteeContribution => "successfully submitted contribution",
                };
                info!(duty_id = %id, runner_role = %id.role, slot = id.slot, count, delay_ms = delay.as_millis() as u64, "{what}");
                emit(
                    &self.events,
                    DutyEvent::Submitted {
                        duty: id.clone(),
                        objects: count,
                        at: now,
                    },
                );
                if running.submitted >= running.expected {
                    self.finish(&id, Outcome::Success);
                }
            }
            Err(err) => {
                warn!(duty_id = %id, runner_role = %id.role, slot = id.slot, count, %err, "submission to the beacon node failed; those objects are lost for this slot");
            }
        }
    }

    /// Ends a duty: logs the SSV closing line, counts it, reports it.
    fn finish(&mut self, id: &DutyId, outcome: Outcome) {
        if self.running.remove(id).is_none() {
            return;
        }
        self.waiting.retain(|_, (waiting, _)| waiting != id);
        let label = role_label(id.role);
        match &outcome {
            Outcome::Success | Outcome::NotSelected => {
                self.succeeded.get_or_create(&label).inc();
                info!(duty_id = %id, runner_role = %id.role, slot = id.slot, "finished duty processing (100% success)");
            }
            Outcome::Partial {
                submitted,
                expected,
            } => {
                self.failed.get_or_create(&label).inc();
                warn!(duty_id = %id, runner_role = %id.role, slot = id.slot, submitted, expected, "finished duty processing (partial success)");
            }
            Outcome::Failed { reason } => {
                self.failed.get_or_create(&label).inc();
                warn!(duty_id = %id, runner_role = %id.role, slot = id.slot, reason, "finished duty processing (failed)");
            }
        }
        self.emit(DutyEvent::Finished {
            duty: id.clone(),
            outcome,
        });
    }

    /// The earliest moment a running duty must end without new input: its slot's blocks can
    /// no longer be voted for (undecided), or its post-consensus window closed (decided).
    fn next_deadline(&self) -> Option<SystemTime> {
        self.running
            .iter()
            .map(|(id, running)| self.deadline_of(id, running))
            .min()
    }

    fn deadline_of(&self, id: &DutyId, running: &Running) -> SystemTime {
        let extra = if running.decision.is_some() {
            POST_CONSENSUS_SLOTS
        } else {
            0
        };
        self.clock
            .slot_start(id.slot + 1 + MAX_BLOCK_AGE_SLOTS + extra)
    }

    /// Duties, values and partials no future decision or quorum depends on.
    fn forget_old(&mut self, slot: u64) {
        self.finalized_early
            .retain(|id, _| id.slot + 1 + MAX_BLOCK_AGE_SLOTS >= slot);
        let keep = slot.saturating_sub(MAX_BLOCK_AGE_SLOTS + POST_CONSENSUS_SLOTS + 1);
        self.decided_data = self.decided_data.split_off(&keep);
        self.quorum.prune(keep);
    }

    fn expire(&mut self) {
        let now = self.context.current();
        let slot = self.clock.current_slot(now);
        self.forget_old(slot);
        let due: Vec<DutyId> = self
            .running
            .iter()
            .filter(|(id, running)| self.deadline_of(id, running) <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(running) = self.running.get(&id) else {
                continue;
            };
            if running.decision.is_none() {
                self.running.remove(&id);
                self.waiting.retain(|_, (waiting, _)| *waiting != id);
                self.missed.inc();
                self.failed.get_or_create(&role_label(id.role)).inc();
                warn!(
                    duty_id = %id,
                    runner_role = %id.role,
                    slot = id.slot,
                    "duty missed: no block of its slot can be finalized any more"
                );
                self.emit(DutyEvent::Missed { duty: id });
                continue;
            }
            let outcome = if running.submitted > 0 {
                Outcome::Partial {
                    submitted: running.submitted,
                    expected: running.expected,
                }
            } else {
                Outcome::Failed {
                    reason: "no quorum of valid post-consensus partial signatures in time".into(),
                }
            };
            self.finish(&id, outcome);
        }
    }
}

fn emit(events: &Option<mpsc::UnboundedSender<DutyEvent>>, event: DutyEvent) {
    if let Some(events) = events {
        let _ = events.send(event);
    }
}

/// The 96-byte compressed form of a signature, as SSZ containers hold it.
fn signature_bytes(signature: &Signature) -> [u8; 96] {
    let mut bytes = [0u8; 96];
    let encoded = signature.encode();
    bytes.copy_from_slice(&encoded[..96]);
    bytes
}

/// The smallest duty id of `slot` (ids order by slot first).
fn first_id_of_slot(slot: u64) -> DutyId {
    DutyId {
        slot,
        epoch: 0,
        role: Role::Committee,
        target: DutyTarget::Validator(0),
    }
}
