//! The AVS actor's state and run loop.

mod signing;

use super::{
    Config, Performer, TaskCheck, TaskEvent,
    task::{Tracked, digest},
};
use crate::task_record::{SignRequest, TaskRecord, Verdict};
use bytes::Bytes;
use cohort_avs_crypto::{
    Address, B256, Bn254Partial, Bn254SecretShare, Bn254Sharing, ResultFields,
    cluster_result::{ResultSigning, Round},
};
use cohort_ingress::avs::{
    ClusterTask, MAX_TASK_DECISIONS, MAX_TASK_PAYLOAD, Message, SignatureRound, SignedTask,
    TaskDecision, TaskError, TaskId, TaskMessage,
};
use cohort_ingress::keys::to_hex;
use commonware_codec::{DecodeExt as _, Encode as _};
use commonware_cryptography::PublicKey;
use commonware_macros::select;
use commonware_p2p::{Receiver, Recipients, Sender};
use commonware_runtime::{
    Clock, ContextCell, Handle, Metrics, Spawner, Storage, spawn_cell,
    telemetry::metrics::Registered,
};
use commonware_utils::{
    channel::{mpsc, oneshot},
    ordered::Set,
};
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, SystemTime},
};
use tracing::{debug, error, info, warn};

/// How long a task is remembered after its deadline: a caller's retry to this operator within
/// it gets the signed result (or the same error) at once.
const RETAIN_AFTER_DEADLINE: Duration = Duration::from_secs(60);
/// A task decision proposed in a block (built here or seen) is not proposed again sooner than
/// this: that block is most likely on its way to finalization.
const REPROPOSE_AFTER: Duration = Duration::from_secs(4);
/// A leader orders only tasks that still have this long before their deadline: a task that
/// expires while the block is voted on would make honest followers refuse the block.
const ORDER_MARGIN: Duration = Duration::from_secs(1);
/// The furthest deadline a task may have: a task is remembered until its deadline, so a caller
/// must not be able to make it stay for a year.
pub const MAX_TASK_LIFETIME: Duration = Duration::from_secs(600);
/// The record is pruned at most once per this many finalized heights.
const PRUNE_EVERY_HEIGHTS: u64 = 64;

/// A performer's answer for a task, back from its own task.
type Performed = (TaskId, Result<Bytes, String>);

/// A block's task decisions this operator cannot vouch for yet.
struct Waiting {
    decisions: Arc<Vec<TaskDecision>>,
    response: oneshot::Sender<bool>,
    until: SystemTime,
}

struct AvsMetrics {
    submitted: Registered<Counter>,
    ordered: Registered<Counter>,
    decided: Registered<Counter>,
    signed: Registered<Counter>,
    failed: Registered<Counter>,
    bad_partials: Registered<Counter>,
    disagreements: Registered<Counter>,
    invalid: Registered<Counter>,
    held: Registered<Gauge>,
}

impl AvsMetrics {
    fn new(context: &impl Metrics) -> Self {
        Self {
            submitted: context.register(
                "tasks_submitted",
                "tasks callers submitted to this operator",
                Counter::default(),
            ),
            ordered: context.register(
                "tasks_ordered",
                "tasks the cluster chain ordered",
                Counter::default(),
            ),
            decided: context.register(
                "tasks_decided",
                "task outputs the cluster chain decided",
                Counter::default(),
            ),
            signed: context.register(
                "tasks_signed",
                "task results whose two signatures combined here",
                Counter::default(),
            ),
            failed: context.register(
                "tasks_failed",
                "callers answered with an error",
                Counter::default(),
            ),
            bad_partials: context.register(
                "bad_partials",
                "partial signatures that did not verify",
                Counter::default(),
            ),
            disagreements: context.register(
                "performer_disagreements",
                "performer outputs that differed from the decided one",
                Counter::default(),
            ),
            invalid: context.register(
                "invalid_messages",
                "task-channel messages dropped as malformed or misattributed",
                Counter::default(),
            ),
            held: context.register("tasks_held", "tasks this operator tracks", Gauge::default()),
        }
    }
}

pub struct Actor<E: Clock + Spawner + Metrics + Storage, P: PublicKey> {
    context: ContextCell<E>,
    operators: Set<P>,
    me: u32,
    threshold: usize,
    sharing: Bn254Sharing,
    share: Bn254SecretShare,
    operator_address: [u8; 20],
    performer: Arc<dyn Performer>,
    check: TaskCheck,
    record: TaskRecord<E>,
    events: Option<mpsc::UnboundedSender<TaskEvent>>,
    mailbox: mpsc::Receiver<Message>,
    performed: (
        mpsc::UnboundedSender<Performed>,
        mpsc::UnboundedReceiver<Performed>,
    ),
    tasks: BTreeMap<TaskId, Tracked>,
    waiting: Vec<Waiting>,
    max_pending: usize,
    verify_wait: Duration,
    pruned_at: u64,
    committee: Option<cohort_ingress::committee::Mailbox>,
    /// What the committee was last told about waiting task decisions.
    work_signalled: bool,
    metrics: AvsMetrics,
}

/// Sends `message` to every other operator; a full or closed channel drops it (partials and
/// reports are sent again by nobody, so a lost one only slows the round down to the others).
fn broadcast<S: Sender>(sender: &mut S, message: &TaskMessage) {
    let _ = sender.send(Recipients::All, message.encode(), false);
}

fn emit(events: &Option<mpsc::UnboundedSender<TaskEvent>>, event: TaskEvent) {
    if let Some(events) = events {
        let _ = events.send(event);
    }
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The operators `bad` names that `before` did not: each is reported once per task, however
/// many more turn up after it.
pub(super) fn newly_bad(before: &BTreeSet<u32>, bad: &BTreeMap<u32, Round>) -> Vec<(u32, Round)> {
    bad.iter()
        .filter(|(operator, _)| !before.contains(operator))
        .map(|(operator, round)| (*operator, *round))
        .collect()
}

fn round_of(round: SignatureRound) -> Round {
    match round {
        SignatureRound::Result => Round::Result,
        SignatureRound::Auth => Round::Auth,
    }
}

impl<E: Clock + Spawner + Metrics + Storage, P: PublicKey> Actor<E, P> {
    pub(super) fn new(
        context: E,
        config: Config<P>,
        record: TaskRecord<E>,
        mailbox: mpsc::Receiver<Message>,
    ) -> Self {
        let metrics = AvsMetrics::new(&context);
        Self {
            context: ContextCell::new(context),
            operators: config.operators,
            me: config.share.operator(),
            threshold: config.sharing.threshold() as usize,
            sharing: config.sharing,
            share: config.share,
            operator_address: config.operator_address,
            performer: config.performer,
            check: config.check,
            record,
            events: config.events,
            mailbox,
            performed: mpsc::unbounded_channel(),
            tasks: BTreeMap::new(),
            waiting: Vec::new(),
            max_pending: config.max_pending,
            verify_wait: config.verify_wait,
            pruned_at: 0,
            committee: config.committee,
            work_signalled: false,
            metrics,
        }
    }

    pub fn start<Tx, Rx>(mut self, sender: Tx, receiver: Rx) -> Handle<()>
    where
        Tx: Sender<PublicKey = P>,
        Rx: Receiver<PublicKey = P>,
    {
        spawn_cell!(self.context, self.run(sender, receiver))
    }

    async fn run<Tx, Rx>(mut self, mut sender: Tx, mut receiver: Rx)
    where
        Tx: Sender<PublicKey = P>,
        Rx: Receiver<PublicKey = P>,
    {
        loop {
            let wake = self.next_wake();
            // Priorities: consensus and callers first (a block waits on them), then performers'
            // outputs, then peers, then deadlines.
            select! {
                message = self.mailbox.recv() => {
                    let Some(message) = message else {
                        debug!("avs mailbox closed; stopping");
                        return;
                    };
                    self.handle(message, &mut sender).await;
                },
                performed = self.performed.1.recv() => {
                    if let Some((task_id, result)) = performed {
                        self.on_performed(task_id, result, &mut sender);
                    }
                },
                received = receiver.recv() => {
                    match received {
                        Ok((peer, bytes)) => self.on_message(peer, bytes, &mut sender),
                        Err(err) => {
                            warn!(%err, "task channel closed; the avs actor stops and this operator signs no more task results");
                            return;
                        }
                    }
                },
                _ = self.context.sleep_until(wake) => {
                    self.on_deadlines();
                },
            }
            self.answer_waiting();
            self.metrics.held.set(self.tasks.len() as i64);
            let work = self.has_work();
            if work != self.work_signalled
                && let Some(committee) = &mut self.committee
            {
                if let Err(stopped) = committee.other_work(work).await {
                    warn!(%stopped, "the committee stopped; the avs actor stops too");
                    return;
                }
                self.work_signalled = work;
            }
        }
    }

    /// Whether this operator, as leader, has task decisions to propose now.
    fn has_work(&self) -> bool {
        let now = self.context.current();
        self.tasks.values().any(|t| {
            t.orderable(now, REPROPOSE_AFTER, ORDER_MARGIN)
                || t.proposable_output(self.threshold, now, REPROPOSE_AFTER)
                    .is_some()
        })
    }

    fn now_ms(&self) -> u64 {
        unix_ms(self.context.current())
    }

    fn next_wake(&self) -> SystemTime {
        let now = self.context.current();
        let mut wake = now + Duration::from_secs(3600);
        for waiting in &self.waiting {
            wake = wake.min(waiting.until);
        }
        for tracked in self.tasks.values() {
            let deadline = tracked.deadline();
            let at = if tracked.expired {
                deadline + RETAIN_AFTER_DEADLINE
            } else {
                deadline
            };
            wake = wake.min(at);
        }
        wake.max(now)
    }

    /// Whether a task may be ordered now: well-formed, in time, and passing the AVS's checks.
    fn admissible(&self, task: &ClusterTask) -> Result<(), String> {
        if task.payload.len() > MAX_TASK_PAYLOAD {
            return Err(format!(
                "payload of {} bytes exceeds the cluster's limit of {MAX_TASK_PAYLOAD}",
                task.payload.len()
            ));
        }
        let now = self.now_ms();
        if task.deadline_ms <= now {
            return Err(format!(
                "deadline {} is not after now ({now}, unix ms)",
                task.deadline_ms
            ));
        }
        let furthest = now + MAX_TASK_LIFETIME.as_millis() as u64;
        if task.deadline_ms > furthest {
            return Err(format!(
                "deadline {} is more than {} s ahead (now {now}, unix ms)",
                task.deadline_ms,
                MAX_TASK_LIFETIME.as_secs()
            ));
        }
        (self.check)(task)
    }

    fn pending(&self) -> usize {
        self.tasks
            .values()
            .filter(|t| t.ordered_at.is_none())
            .count()
    }

    async fn handle<S: Sender<PublicKey = P>>(&mut self, message: Message, sender: &mut S) {
        match message {
            Message::Submit { task, response } => self.submit(task, response, sender),
            Message::Propose { response } => {
                let _ = response.send(self.propose());
            }
            Message::Verify {
                decisions,
                response,
            } => {
                self.seen_proposed(&decisions);
                let verdict = self.evaluate(&decisions);
                match verdict {
                    Some(vote) => {
                        let _ = response.send(vote);
                    }
                    None => self.waiting.push(Waiting {
                        decisions,
                        response,
                        until: self.context.current() + self.verify_wait,
                    }),
                }
            }
            Message::Finalized { height, decisions } => {
                self.on_finalized(height, &decisions, sender).await;
            }
        }
    }

    fn submit<S: Sender<PublicKey = P>>(
        &mut self,
        task: ClusterTask,
        response: oneshot::Sender<Result<SignedTask, TaskError>>,
        sender: &mut S,
    ) {
        self.metrics.submitted.inc();
        let task_id = task.task_id;
        if let Some(tracked) = self.tasks.get_mut(&task_id) {
            // A retry (to this operator, or after the caller tried another): the same answer.
            if let Some(signed) = &tracked.signed {
                let _ = response.send(Ok(signed.clone()));
                return;
            }
            if let Some(refused) = &tracked.refused {
                self.metrics.failed.inc();
                let _ = response.send(Err(refused.clone()));
                return;
            }
        }
        if let Err(reason) = self.admissible(&task) {
            self.metrics.failed.inc();
            info!(task_id = %to_hex(&task_id), %reason, "task refused");
            let _ = response.send(Err(TaskError::Invalid(reason)));
            return;
        }
        if !self.tasks.contains_key(&task_id) && self.pending() >= self.max_pending {
            self.metrics.failed.inc();
            let _ = response.send(Err(TaskError::Busy(format!(
                "{} tasks already wait for ordering",
                self.max_pending
            ))));
            return;
        }
        let tracked = self
            .tasks
            .entry(task_id)
            .or_insert_with(|| Tracked::new(task.clone()));
        tracked.waiters.push(response);
        if tracked.ordered_at.is_none() {
            debug!(task_id = %to_hex(&task_id), "task accepted; shared for ordering");
            broadcast(sender, &TaskMessage::Task(tracked.task.clone()));
        }
    }

    /// The task decisions of this operator's next block as leader: outputs enough operators
    /// computed, then tasks waiting to be ordered.
    fn propose(&mut self) -> Vec<TaskDecision> {
        let now = self.context.current();
        let mut decisions = Vec::new();
        for (task_id, tracked) in self.tasks.iter_mut() {
            if decisions.len() == MAX_TASK_DECISIONS {
                return decisions;
            }
            if let Some(output) = tracked.proposable_output(self.threshold, now, REPROPOSE_AFTER) {
                tracked.output_proposed = Some(now);
                decisions.push(TaskDecision::Output {
                    task_id: *task_id,
                    output,
                });
            }
        }
        for tracked in self.tasks.values_mut() {
            if decisions.len() == MAX_TASK_DECISIONS {
                break;
            }
            if tracked.orderable(now, REPROPOSE_AFTER, ORDER_MARGIN) {
                tracked.order_proposed = Some(now);
                decisions.push(TaskDecision::Order(tracked.task.clone()));
            }
        }
        decisions
    }

    /// A block being voted on proposes these decisions: this operator, as the next leader,
    /// does not propose them again while that block may still be finalized.
    fn seen_proposed(&mut self, decisions: &[TaskDecision]) {
        let now = self.context.current();
        for decision in decisions {
            if let Some(tracked) = self.tasks.get_mut(decision.task_id()) {
                match decision {
                    TaskDecision::Order(_) => tracked.order_proposed = Some(now),
                    TaskDecision::Output { .. } => tracked.output_proposed = Some(now),
                }
            }
        }
    }

    /// Whether this operator vouches for a block's task decisions; `None` while it cannot tell.
    fn evaluate(&self, decisions: &[TaskDecision]) -> Option<bool> {
        let mut undecided = false;
        for decision in decisions {
            match decision {
                TaskDecision::Order(task) => {
                    if let Err(reason) = self.admissible(task) {
                        warn!(task_id = %to_hex(&task.task_id), %reason, "refusing block: it orders a task this operator finds invalid");
                        return Some(false);
                    }
                }
                TaskDecision::Output { task_id, output } => {
                    match self
                        .tasks
                        .get(task_id)
                        .and_then(|t| t.vouch(output, self.threshold))
                    {
                        Some(true) => {}
                        Some(false) => {
                            warn!(task_id = %to_hex(task_id), "refusing block: its output for the task is not the one this operator's performer gave");
                            return Some(false);
                        }
                        None => undecided = true,
                    }
                }
            }
        }
        (!undecided).then_some(true)
    }

    fn answer_waiting(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let now = self.context.current();
        let waiting = std::mem::take(&mut self.waiting);
        for entry in waiting {
            if entry.response.is_closed() {
                continue;
            }
            match self.evaluate(&entry.decisions) {
                Some(vote) => {
                    let _ = entry.response.send(vote);
                }
                None if now >= entry.until => {
                    warn!(
                        "not voting for a block: this operator's performer has not answered and too few peers reported the proposed output"
                    );
                    let _ = entry.response.send(false);
                }
                None => self.waiting.push(entry),
            }
        }
    }

    async fn on_finalized<S: Sender<PublicKey = P>>(
        &mut self,
        height: u64,
        decisions: &[TaskDecision],
        sender: &mut S,
    ) {
        let mut requests = Vec::new();
        for decision in decisions {
            match decision {
                TaskDecision::Order(task) => self.on_ordered(height, task),
                TaskDecision::Output { task_id, output } => {
                    if let Some(request) = self.on_decided(task_id, output) {
                        requests.push(request);
                    }
                }
            }
        }
        if !requests.is_empty() {
            self.sign_decided(&requests, sender).await;
        }
        if height >= self.pruned_at + PRUNE_EVERY_HEIGHTS {
            self.prune(height).await;
        }
    }

    fn on_ordered(&mut self, height: u64, task: &ClusterTask) {
        let now = self.context.current();
        let tracked = self
            .tasks
            .entry(task.task_id)
            .or_insert_with(|| Tracked::new(task.clone()));
        if tracked.ordered_at.is_some() {
            return;
        }
        // The finalized body is the task every operator runs and signs for.
        tracked.task = task.clone();
        tracked.ordered_at = Some(height);
        self.metrics.ordered.inc();
        emit(
            &self.events,
            TaskEvent::Ordered {
                height,
                task_id: task.task_id,
            },
        );
        if tracked.deadline() <= now {
            debug!(task_id = %to_hex(&task.task_id), height, "task ordered after its deadline; not running it");
            tracked.own = Some(Err("ordered after its deadline".into()));
            return;
        }
        debug!(task_id = %to_hex(&task.task_id), height, "task ordered; running the performer");
        let execution = self.performer.execute(&tracked.task);
        let deadline = tracked.deadline();
        let task_id = task.task_id;
        let done = self.performed.0.clone();
        self.context
            .child("performer")
            .spawn(move |context| async move {
                let result = select! {
                    result = execution => result,
                    _ = context.sleep_until(deadline) => Err("the performer did not answer by the task's deadline".to_string()),
                };
                let _ = done.send((task_id, result));
            });
    }

    /// Takes a finalized output; returns the record request its partial needs.
    fn on_decided(&mut self, task_id: &TaskId, output: &Bytes) -> Option<SignRequest> {
        let Some(tracked) = self.tasks.get_mut(task_id) else {
            warn!(task_id = %to_hex(task_id), "output decided for a task this operator does not know (ordered before it restarted, or already forgotten); not signing it");
            return None;
        };
        let height = tracked.ordered_at?;
        if tracked.decided.is_some() {
            return None;
        }
        let decided = digest(task_id, output);
        tracked.decided = Some(output.clone());
        self.metrics.decided.inc();
        emit(
            &self.events,
            TaskEvent::Decided {
                task_id: *task_id,
                digest: decided,
            },
        );
        for (operator, reported) in &tracked.reports {
            if *reported != decided {
                self.metrics.disagreements.inc();
                warn!(task_id = %to_hex(task_id), operator = operator + 1, "operator's performer reported another output than the one the cluster decided");
                emit(
                    &self.events,
                    TaskEvent::Disagreed {
                        task_id: *task_id,
                        operator: *operator,
                    },
                );
            }
        }
        tracked.signing = Some(ResultSigning::new(
            self.sharing.clone(),
            &ResultFields {
                task_id: B256::from(*task_id),
                avs: Address::from(tracked.task.avs),
                operator: Address::from(self.operator_address),
                operator_set_id: tracked.task.operator_set_id,
                reference_timestamp: tracked.task.reference_timestamp,
                output,
            },
        ));
        Some(SignRequest {
            height,
            task_id: *task_id,
            output: decided,
        })
    }

    fn on_performed<S: Sender<PublicKey = P>>(
        &mut self,
        task_id: TaskId,
        result: Result<Bytes, String>,
        sender: &mut S,
    ) {
        let Some(tracked) = self.tasks.get_mut(&task_id) else {
            return;
        };
        match &result {
            Ok(output) => {
                let reported = digest(&task_id, output);
                tracked.reports.insert(self.me, reported);
                if let Some(decided) = &tracked.decided
                    && decided != output
                {
                    warn!(task_id = %to_hex(&task_id), "this operator's performer gave another output than the one the cluster decided");
                }
                broadcast(
                    sender,
                    &TaskMessage::Report {
                        task_id,
                        digest: reported,
                    },
                );
            }
            Err(reason) => {
                warn!(task_id = %to_hex(&task_id), %reason, "performer failed; this operator vouches only for an output enough peers report");
            }
        }
        tracked.own = Some(result);
    }

    fn on_message<S: Sender<PublicKey = P>>(
        &mut self,
        peer: P,
        bytes: impl commonware_codec::Buf,
        sender: &mut S,
    ) {
        let Some(operator) = self.operators.position(&peer) else {
            self.metrics.invalid.inc();
            return;
        };
        let operator = operator as u32;
        let message = match TaskMessage::decode(bytes) {
            Ok(message) => message,
            Err(err) => {
                self.metrics.invalid.inc();
                warn!(operator = operator + 1, %err, "malformed task-channel message; dropped");
                return;
            }
        };
        match message {
            TaskMessage::Task(task) => {
                if self.tasks.contains_key(&task.task_id) {
                    return;
                }
                if let Err(reason) = self.admissible(&task) {
                    self.metrics.invalid.inc();
                    debug!(operator = operator + 1, task_id = %to_hex(&task.task_id), %reason, "peer shared a task this operator refuses");
                    return;
                }
                if self.pending() >= self.max_pending {
                    return;
                }
                self.tasks.insert(task.task_id, Tracked::new(task));
            }
            TaskMessage::Report { task_id, digest } => {
                if let Some(tracked) = self.tasks.get_mut(&task_id) {
                    tracked.reports.entry(operator).or_insert(digest);
                }
            }
            TaskMessage::Partial {
                task_id,
                round,
                partial,
            } => {
                let partial = match Bn254Partial::from_bytes(&partial) {
                    Ok(partial) if partial.operator == operator => partial,
                    Ok(partial) => {
                        self.metrics.invalid.inc();
                        warn!(
                            operator = operator + 1,
                            claimed = partial.operator + 1,
                            "partial signature claims another operator; dropped"
                        );
                        return;
                    }
                    Err(err) => {
                        self.metrics.invalid.inc();
                        warn!(operator = operator + 1, %err, "undecodable partial signature; dropped");
                        return;
                    }
                };
                let Some(tracked) = self.tasks.get_mut(&task_id) else {
                    return;
                };
                match tracked.signing.as_mut() {
                    Some(signing) => {
                        let _ = signing.add(round_of(round), partial);
                        self.advance(&task_id, sender);
                    }
                    None => tracked.hold_early(round, partial),
                }
            }
        }
    }

    /// Answers callers whose task's deadline passed without a signed result, and forgets tasks
    /// long past theirs.
    fn on_deadlines(&mut self) {
        let now = self.context.current();
        let threshold = self.threshold;
        let mut failed = Vec::new();
        self.tasks.retain(|task_id, tracked| {
            let deadline = tracked.deadline();
            if now >= deadline + RETAIN_AFTER_DEADLINE {
                return false;
            }
            if now >= deadline && !tracked.expired {
                tracked.expired = true;
                if tracked.signed.is_none() && tracked.refused.is_none() {
                    let error = TaskError::NoAgreement(tracked.stage(threshold));
                    if !tracked.waiters.is_empty() {
                        info!(task_id = %to_hex(task_id), %error, "task failed");
                        failed.push((*task_id, error.clone()));
                    }
                    for waiter in tracked.waiters.drain(..) {
                        let _ = waiter.send(Err(error.clone()));
                    }
                    tracked.refused = Some(error);
                }
            }
            true
        });
        for (task_id, error) in failed {
            self.metrics.failed.inc();
            emit(&self.events, TaskEvent::Failed { task_id, error });
        }
    }

    /// Drops the record's sections below every task still tracked.
    async fn prune(&mut self, height: u64) {
        let floor = self
            .tasks
            .values()
            .filter_map(|t| t.ordered_at)
            .min()
            .unwrap_or(height)
            .min(height);
        self.pruned_at = height;
        if let Err(err) = self.record.prune(floor).await {
            error!(%err, "cannot prune the task record; it stops answering and this operator signs no more task results until it restarts");
        }
    }
}
