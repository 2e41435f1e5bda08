//! The AVS actor's state and run loop.

mod ordering;
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
    ClusterTask, MAX_TASK_DECISION_BYTES, MAX_TASK_DECISIONS, MAX_TASK_PAYLOAD, Message, Report,
    SignatureRound, SignedTask, TaskDecision, TaskError, TaskId, TaskMessage, TaskPartial,
};
use cohort_ingress::keys::to_hex;
use commonware_codec::{DecodeExt as _, Encode as _, EncodeSize as _};
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

/// How long a task is remembered after its deadline: a caller's late retry to this operator
/// within it gets the signed result (or the same error) at once. Short, since everything held
/// costs memory at thousands of tasks per second, and a task past its deadline is refused at
/// submission anyway (the task record, not this memory, is what keeps a second output from
/// being signed).
const RETAIN_AFTER_DEADLINE: Duration = Duration::from_secs(10);
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
/// What this operator sends its peers goes out at most this often under load, batched (at
/// once when the last batch left longer ago): a heavy load then costs a few hundred messages
/// per second, not several per task.
const FLUSH_EVERY: Duration = Duration::from_millis(5);
/// Most mailbox messages (mostly callers' tasks) taken in one turn of the run loop, so that
/// what they produce leaves in one batch without starving the other inputs.
const MAILBOX_BATCH: usize = 256;

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
    /// Tasks not ordered yet: what a leader orders, and what `max_pending` bounds.
    unordered: BTreeSet<TaskId>,
    /// Ordered tasks without a decided output: what a leader proposes outputs for.
    undecided: BTreeSet<TaskId>,
    /// When each task next needs attention (its deadline, then the end of its retention).
    /// Entries may be stale; each is checked against the task when it comes due.
    timers: BTreeSet<(SystemTime, TaskId)>,
    /// Tasks whose signing may progress: combined together at the end of the loop's turn.
    dirty: BTreeSet<TaskId>,
    outbox: Outbox,
    waiting: Vec<Waiting>,
    /// Whether anything a waiting block's verdict depends on changed since it was evaluated.
    verdicts_stale: bool,
    max_pending: usize,
    max_tracked: usize,
    verify_wait: Duration,
    pruned_at: u64,
    committee: Option<cohort_ingress::committee::Mailbox>,
    /// Whether this operator, as leader, has task decisions to propose.
    work: bool,
    /// `work` must be found again by looking at every task that could be proposed: something
    /// was proposed, ordered or decided, or a proposal's window ran out.
    work_stale: bool,
    /// When the earliest proposal seen here stops counting as recent.
    reconsider_at: Option<SystemTime>,
    /// What the committee was last told about waiting task decisions.
    work_signalled: bool,
    /// Whether a block was finalized since this operator started. Until then the committee is
    /// not told of task work: at a start no operator has heard from the others yet, and
    /// consensus skips (votes to nullify) the view of a leader it has not heard from while it
    /// hears a quorum of others. A leader that proposes at once, before those skip votes reach
    /// it, then loses its view to the certification timeout (16 s at 12 s slots); a leader
    /// without work holds its proposal and gives the view up when f + 1 skip votes arrive
    /// (the committee's rule), which costs one round trip.
    chain_moving: bool,
    metrics: AvsMetrics,
}

/// What this operator sends its peers, gathered during a turn of the run loop (or a few) and
/// sent as one message per kind.
#[derive(Default)]
struct Outbox {
    tasks: Vec<ClusterTask>,
    reports: Vec<Report>,
    partials: Vec<TaskPartial>,
    flushed_at: Option<SystemTime>,
}

impl Outbox {
    fn is_empty(&self) -> bool {
        self.tasks.is_empty() && self.reports.is_empty() && self.partials.is_empty()
    }

    /// When the next batch may leave: at once if none left recently.
    fn due(&self) -> Option<SystemTime> {
        if self.is_empty() {
            return None;
        }
        Some(
            self.flushed_at
                .map_or(SystemTime::UNIX_EPOCH, |at| at + FLUSH_EVERY),
        )
    }

    /// Sends what is due to every other operator. A full or closed channel drops a message:
    /// nobody sends reports and partials again, so a lost one only slows the round down to
    /// the others' (and a lost task is shared again by nobody, but its caller can retry).
    fn flush<S: Sender>(&mut self, sender: &mut S, now: SystemTime) {
        if self.due().is_none_or(|due| now < due) {
            return;
        }
        self.flushed_at = Some(now);
        let messages = TaskMessage::tasks(std::mem::take(&mut self.tasks))
            .into_iter()
            .chain(TaskMessage::reports(std::mem::take(&mut self.reports)))
            .chain(TaskMessage::partials(std::mem::take(&mut self.partials)));
        for message in messages {
            let _ = sender.send(Recipients::All, message.encode(), false);
        }
    }
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
            unordered: BTreeSet::new(),
            undecided: BTreeSet::new(),
            timers: BTreeSet::new(),
            dirty: BTreeSet::new(),
            outbox: Outbox::default(),
            waiting: Vec::new(),
            verdicts_stale: false,
            max_pending: config.max_pending,
            max_tracked: config.max_tracked,
            verify_wait: config.verify_wait,
            pruned_at: 0,
            committee: config.committee,
            work: false,
            work_stale: false,
            reconsider_at: None,
            work_signalled: false,
            chain_moving: false,
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
            // outputs, then peers, then deadlines and batches due.
            select! {
                message = self.mailbox.recv() => {
                    let Some(message) = message else {
                        debug!("avs mailbox closed; stopping");
                        return;
                    };
                    self.handle(message).await;
                    for _ in 1..MAILBOX_BATCH {
                        let Ok(message) = self.mailbox.try_recv() else {
                            break;
                        };
                        self.handle(message).await;
                    }
                },
                performed = self.performed.1.recv() => {
                    if let Some((task_id, result)) = performed {
                        self.on_performed(task_id, result);
                    }
                    while let Ok((task_id, result)) = self.performed.1.try_recv() {
                        self.on_performed(task_id, result);
                    }
                },
                received = receiver.recv() => {
                    match received {
                        Ok((peer, bytes)) => self.on_message(peer, bytes),
                        Err(err) => {
                            warn!(%err, "task channel closed; the avs actor stops and this operator signs no more task results");
                            return;
                        }
                    }
                },
                _ = self.context.sleep_until(wake) => {
                    self.on_timers();
                },
            }
            self.settle_dirty();
            self.outbox.flush(&mut sender, self.context.current());
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

    /// Whether this operator, as leader, has task decisions to propose now. Kept up to date
    /// by the events that can make a task proposable (each checked alone), and found again by
    /// a scan only after the events that can make it false: a scan per block, not per task.
    fn has_work(&mut self) -> bool {
        if !self.chain_moving {
            return false;
        }
        if self.work_stale {
            self.work_stale = false;
            let now = self.context.current();
            self.work = self
                .unordered
                .iter()
                .filter_map(|id| self.tasks.get(id))
                .any(|t| t.orderable(now, REPROPOSE_AFTER, ORDER_MARGIN))
                || self
                    .undecided
                    .iter()
                    .filter_map(|id| self.tasks.get(id))
                    .any(|t| {
                        t.proposable_output(self.threshold, now, REPROPOSE_AFTER)
                            .is_some()
                    });
        }
        self.work
    }

    /// One task may have become proposable: cheaper than a scan.
    fn maybe_work(&mut self, task_id: &TaskId) {
        if self.work {
            return;
        }
        let now = self.context.current();
        if let Some(tracked) = self.tasks.get(task_id)
            && (tracked.orderable(now, REPROPOSE_AFTER, ORDER_MARGIN)
                || tracked
                    .proposable_output(self.threshold, now, REPROPOSE_AFTER)
                    .is_some())
        {
            self.work = true;
        }
    }

    /// A proposal was built or seen now: what it holds is not proposable until the window
    /// ends, so the work is found again, and again when the window ends.
    fn proposed_now(&mut self) {
        self.work_stale = true;
        if self.reconsider_at.is_none() {
            self.reconsider_at = Some(self.context.current() + REPROPOSE_AFTER);
        }
    }

    /// Starts tracking a task: indexed as unordered, with a timer at its deadline.
    fn track(&mut self, task: &ClusterTask) {
        let task_id = task.task_id;
        if !self.tasks.contains_key(&task_id) {
            self.unordered.insert(task_id);
            self.timers.insert((task.deadline(), task_id));
            self.tasks.insert(task_id, Tracked::new(task.clone()));
        }
    }

    fn forget(&mut self, task_id: &TaskId) {
        self.tasks.remove(task_id);
        self.unordered.remove(task_id);
        self.undecided.remove(task_id);
        self.dirty.remove(task_id);
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
        if let Some((at, _)) = self.timers.first() {
            wake = wake.min(*at);
        }
        if let Some(at) = self.reconsider_at {
            wake = wake.min(at);
        }
        if let Some(at) = self.outbox.due() {
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
        self.unordered.len()
    }

    async fn handle(&mut self, message: Message) {
        match message {
            Message::Submit { task, response } => self.submit(task, response),
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
                self.on_finalized(height, &decisions).await;
            }
        }
    }

    fn submit(
        &mut self,
        task: ClusterTask,
        response: oneshot::Sender<Result<SignedTask, TaskError>>,
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
        if !self.tasks.contains_key(&task_id) && self.tasks.len() >= self.max_tracked {
            self.metrics.failed.inc();
            let _ = response.send(Err(TaskError::Busy(format!(
                "{} tasks are in flight or kept for retries",
                self.max_tracked
            ))));
            return;
        }
        self.track(&task);
        let Some(tracked) = self.tasks.get_mut(&task_id) else {
            return;
        };
        tracked.waiters.push(response);
        if tracked.ordered_at.is_none() {
            debug!(task_id = %to_hex(&task_id), "task accepted; shared for ordering");
            let shared = tracked.task.clone();
            self.outbox.tasks.push(shared);
            self.maybe_work(&task_id);
        }
    }

    fn on_performed(&mut self, task_id: TaskId, result: Result<Bytes, String>) {
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
                self.outbox.reports.push(Report {
                    task_id,
                    digest: reported,
                });
            }
            Err(reason) => {
                warn!(task_id = %to_hex(&task_id), %reason, "performer failed; this operator vouches only for an output enough peers report");
            }
        }
        tracked.own = Some(result);
        self.verdicts_stale = true;
        self.maybe_work(&task_id);
    }

    fn on_message(&mut self, peer: P, bytes: impl commonware_codec::Buf) {
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
            TaskMessage::Tasks(tasks) => {
                for task in tasks {
                    self.on_shared(operator, task);
                }
            }
            TaskMessage::Reports(reports) => {
                for Report { task_id, digest } in reports {
                    if let Some(tracked) = self.tasks.get_mut(&task_id) {
                        tracked.reports.entry(operator).or_insert(digest);
                        self.maybe_work(&task_id);
                    }
                }
                self.verdicts_stale = true;
            }
            TaskMessage::Partials(partials) => {
                for partial in partials {
                    self.on_partial(operator, partial);
                }
            }
        }
    }

    /// A task a peer received and shared, for ordering.
    fn on_shared(&mut self, operator: u32, task: ClusterTask) {
        if self.tasks.contains_key(&task.task_id) {
            return;
        }
        if let Err(reason) = self.admissible(&task) {
            self.metrics.invalid.inc();
            debug!(operator = operator + 1, task_id = %to_hex(&task.task_id), %reason, "peer shared a task this operator refuses");
            return;
        }
        if self.pending() >= self.max_pending || self.tasks.len() >= self.max_tracked {
            return;
        }
        let task_id = task.task_id;
        self.track(&task);
        self.maybe_work(&task_id);
    }

    fn on_partial(&mut self, operator: u32, message: TaskPartial) {
        let TaskPartial {
            task_id,
            round,
            partial,
        } = message;
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
        if tracked.signed.is_some() {
            return;
        }
        match tracked.signing.as_mut() {
            Some(signing) => {
                let _ = signing.add(round_of(round), partial);
                self.dirty.insert(task_id);
            }
            None => tracked.hold_early(round, partial),
        }
    }

    /// Timers that came due: callers whose task's deadline passed without a signed result
    /// are answered, tasks long past theirs are forgotten, and a proposal window that ended
    /// makes this operator look for work again.
    fn on_timers(&mut self) {
        let now = self.context.current();
        if self.reconsider_at.is_some_and(|at| at <= now) {
            self.reconsider_at = None;
            self.work_stale = true;
        }
        let threshold = self.threshold;
        let mut failed = Vec::new();
        let mut forgotten = Vec::new();
        while let Some(&(at, task_id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            let Some(tracked) = self.tasks.get_mut(&task_id) else {
                continue;
            };
            let deadline = tracked.deadline();
            if now >= deadline + RETAIN_AFTER_DEADLINE {
                forgotten.push(task_id);
                continue;
            }
            if now < deadline {
                // A stale entry: the finalized copy of the task has a later deadline.
                self.timers.insert((deadline, task_id));
                continue;
            }
            self.timers
                .insert((deadline + RETAIN_AFTER_DEADLINE, task_id));
            if tracked.expired {
                continue;
            }
            tracked.expired = true;
            if tracked.signed.is_none() && tracked.refused.is_none() {
                let error = TaskError::NoAgreement(tracked.stage(threshold));
                if !tracked.waiters.is_empty() {
                    info!(task_id = %to_hex(&task_id), %error, "task failed");
                    failed.push((task_id, error.clone()));
                }
                for waiter in tracked.waiters.drain(..) {
                    let _ = waiter.send(Err(error.clone()));
                }
                tracked.refused = Some(error);
            }
            // Past its deadline nothing is proposed for it any more.
            self.undecided.remove(&task_id);
            self.work_stale = true;
        }
        for task_id in forgotten {
            self.forget(&task_id);
        }
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
