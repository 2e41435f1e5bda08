mod dispatch;
mod fetch;

use super::Config;
use cohort_ingress::{
    AttesterDuty, CommitteeId, DutySource, ProposerDuty, SlotClock, SourceError, Stopped, SyncDuty,
    committee, executor, runner, scheduler::Message,
};
use cohort_marshal::Block;
use commonware_macros::select;
use commonware_runtime::{
    Clock, ContextCell, Handle, Metrics, Spawner, spawn_cell,
    telemetry::metrics::{GaugeExt as _, Registered},
};
use commonware_utils::channel::mpsc;
use futures::{StreamExt, future::BoxFuture, stream::FuturesUnordered};
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, SystemTime},
};
use tracing::{debug, error, info};

/// How long to wait before asking the duty source again after a failure.
const FETCH_RETRY: Duration = Duration::from_secs(1);

/// One epoch's duties of the cluster's validators.
#[derive(Default)]
struct EpochDuties {
    attesters: Vec<AttesterDuty>,
    proposers: Vec<ProposerDuty>,
    /// The source could not name the epoch's proposers yet (it knows them for sure only once
    /// the epoch starts): they are fetched again then, and no proposer duty of the epoch is
    /// handed out before.
    proposers_pending: bool,
    /// The sync committee members of the epoch's period, one entry per validator, each with
    /// at least one position in the committee. They sign in the slots whose next slot is in
    /// this epoch ([`SlotClock::sync_committee_epoch`]).
    sync: Vec<SyncDuty>,
}

type FetchResult = (u64, Result<EpochDuties, SourceError>);

/// How much the scheduler holds in memory, set at every wake after pruning, so a long run can
/// show that nothing grows with its length. Each help text says what bounds its gauge.
struct Held {
    epochs: Registered<Gauge>,
    duties: Registered<Gauge>,
    fetches: Registered<Gauge>,
    dispatched: Registered<Gauge>,
    heads: Registered<Gauge>,
}

impl Held {
    fn new(context: &impl Metrics) -> Self {
        let gauge = |name: &str, help: &str| context.register(name, help, Gauge::default());
        Self {
            epochs: gauge(
                "duty_epochs_held",
                "epochs whose duties are held; the previous, current and next epoch",
            ),
            duties: gauge(
                "scheduled_duties_held",
                "attester, proposer and sync committee duties held; those of the previous, \
                 current and next epoch",
            ),
            fetches: gauge(
                "duty_fetches_held",
                "epochs being fetched plus epochs waiting to retry a fetch; only epochs from the \
                 previous to the one after next, each call ending within the fetch timeout",
            ),
            dispatched: gauge(
                "dispatched_slots_held",
                "slots whose committee duty or validator duties were handed to the runner; the \
                 current and previous slot, once each",
            ),
            heads: gauge(
                "head_slots_held",
                "slots with a head event; the current and previous slot",
            ),
        }
    }
}

pub struct Actor<E, S: DutySource> {
    context: ContextCell<E>,
    clock: SlotClock,
    committee: CommitteeId,
    source: S,
    runner: runner::Mailbox,
    committee_mailbox: committee::Mailbox,
    fetch_timeout: Duration,
    late_threshold: Duration,
    mailbox: mpsc::Receiver<Message>,
    executor: Option<executor::Mailbox<Block>>,
    /// The last slot whose payload pre-build was requested.
    prebuild_requested: Option<u64>,

    /// Duties of the cluster's validators, by epoch.
    duties: BTreeMap<u64, EpochDuties>,
    /// Epochs being fetched, and epochs that may be retried after the given time.
    fetching: BTreeSet<u64>,
    retry_at: BTreeMap<u64, SystemTime>,
    /// Slots whose committee duty was already handed to the runner.
    dispatched: BTreeSet<u64>,
    /// Slots whose validator duties (proposer, aggregators) were handed to the runner.
    dispatched_validator: BTreeSet<u64>,
    /// Slots whose head event arrived: their committee duty may start before one third.
    heads: BTreeSet<u64>,
    /// The node is stopping: no duty is handed out any more.
    draining: bool,

    dispatched_total: Registered<Counter>,
    late_total: Registered<Counter>,
    fetch_failures: Registered<Counter>,
    held: Held,
}

impl<E: Clock + Spawner + Metrics, S: DutySource> Actor<E, S> {
    pub(super) fn new(context: E, config: Config<S>, mailbox: mpsc::Receiver<Message>) -> Self {
        let dispatched_total = context.register(
            "duties_dispatched",
            "duties handed to the runner",
            Counter::default(),
        );
        let late_total = context.register(
            "duties_late",
            "duties that started later than planned",
            Counter::default(),
        );
        let fetch_failures = context.register(
            "duty_fetch_failures",
            "failed or timed out duty-source calls",
            Counter::default(),
        );
        let held = Held::new(&context);
        Self {
            context: ContextCell::new(context),
            clock: config.clock,
            committee: config.committee_id,
            source: config.source,
            runner: config.runner,
            committee_mailbox: config.committee,
            fetch_timeout: config.fetch_timeout,
            late_threshold: config.late_threshold,
            mailbox,
            executor: config.executor,
            prebuild_requested: None,
            duties: BTreeMap::new(),
            fetching: BTreeSet::new(),
            retry_at: BTreeMap::new(),
            dispatched: BTreeSet::new(),
            dispatched_validator: BTreeSet::new(),
            heads: BTreeSet::new(),
            draining: false,
            dispatched_total,
            late_total,
            fetch_failures,
            held,
        }
    }

    /// Runs the actor under the context the wiring named it with.
    pub fn start(mut self) -> Handle<()> {
        spawn_cell!(self.context, self.run())
    }

    async fn run(mut self) {
        info!(
            committee = %self.committee,
            slot = self.clock.current_slot(self.context.current()),
            "duty scheduler started"
        );
        let mut fetches: FuturesUnordered<BoxFuture<'static, FetchResult>> =
            FuturesUnordered::new();
        loop {
            let now = self.context.current();
            self.request_duties(now, &mut fetches);
            if !self.draining
                && let Err(stopped) = self
                    .dispatch_due(now)
                    .await
                    .and_then(|()| self.request_prebuild(now))
            {
                return self.on_stopped(stopped);
            }
            self.prune(now);
            self.set_held();

            let mut wake = self.clock.next_interval_boundary(now);
            // Slot 0's payload is pre-built one interval before genesis.
            let before_genesis = self.clock.slot_start(0) - self.clock.interval_duration();
            if now < before_genesis {
                wake = before_genesis;
            }
            let next_fetch = async {
                if fetches.is_empty() {
                    futures::future::pending::<Option<FetchResult>>().await
                } else {
                    fetches.next().await
                }
            };
            // Priorities: head events first (they can start a duty early), then duty-source
            // answers, then the clock.
            select! {
                message = self.mailbox.recv() => {
                    let Some(message) = message else {
                        debug!("scheduler mailbox closed; stopping");
                        return;
                    };
                    match message {
                        Message::Head { slot, block_root } => {
                            let current = self.clock.current_slot(self.context.current());
                            // Only a head for the current slot is a valid trigger; old or future
                            // heads say nothing about when this slot's attestation is due.
                            if slot == current {
                                debug!(slot, %block_root, "head event for the current slot");
                                self.heads.insert(slot);
                            }
                        }
                        Message::Decided { slot } => {
                            let current = self.clock.current_slot(self.context.current());
                            if slot == current && self.heads.insert(slot) {
                                debug!(
                                    slot,
                                    "the cluster decided the slot's attestation data before \
                                     this operator's beacon node reported its head; the \
                                     committee duty starts now"
                                );
                            }
                        }
                        Message::Refetch { epoch } => {
                            // Slots already handed out stay handed out; the rest of the epoch
                            // runs on what the node says now.
                            if self.duties.remove(&epoch).is_some() {
                                info!(epoch, "duties may have moved: fetching them again");
                            }
                            self.retry_at.remove(&epoch);
                        }
                        Message::Drain { response } => {
                            if !self.draining {
                                info!(
                                    slot = self.clock.current_slot(self.context.current()),
                                    "node stopping: handing out no more duties; duties already \
                                     running finish"
                                );
                            }
                            self.draining = true;
                            let _ = response.send(());
                        }
                    }
                },
                result = next_fetch => {
                    if let Some((epoch, result)) = result
                        && let Err(stopped) = self.on_fetched(epoch, result).await
                    {
                        return self.on_stopped(stopped);
                    }
                },
                _ = self.context.sleep_until(wake) => {},
            }
        }
    }

    /// An actor this one hands work to has stopped: the node is stopping or failed, and
    /// without it no duty can run, so the scheduler stops too.
    fn on_stopped(&self, stopped: Stopped) {
        error!(%stopped, "could not hand on duties; the scheduler stops and the node shuts down");
    }

    fn set_held(&self) {
        let set = |gauge: &Registered<Gauge>, len: usize| {
            let _ = gauge.try_set(len);
        };
        set(&self.held.epochs, self.duties.len());
        set(
            &self.held.duties,
            self.duties
                .values()
                .map(|epoch| epoch.attesters.len() + epoch.proposers.len() + epoch.sync.len())
                .sum(),
        );
        set(
            &self.held.fetches,
            self.fetching.len() + self.retry_at.len(),
        );
        set(
            &self.held.dispatched,
            self.dispatched.len() + self.dispatched_validator.len(),
        );
        set(&self.held.heads, self.heads.len());
    }

    /// Forgets what no future decision depends on.
    fn prune(&mut self, now: SystemTime) {
        let slot = self.clock.current_slot(now);
        let epoch = self.clock.epoch_of(slot);
        self.duties = self.duties.split_off(&epoch.saturating_sub(1));
        self.retry_at = self.retry_at.split_off(&epoch);
        self.dispatched = self.dispatched.split_off(&slot.saturating_sub(1));
        self.dispatched_validator = self.dispatched_validator.split_off(&slot.saturating_sub(1));
        self.heads = self.heads.split_off(&slot.saturating_sub(1));
    }
}
