use super::Config;
use cohort_ingress::{
    AttesterDuty, CommitteeId, Duty, DutyId, DutySource, ProposerDuty, Role, SlotClock,
    SourceError, Stopped, SyncDuty, committee, executor, runner, scheduler::Message,
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
use tracing::{debug, error, info, warn};

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

    /// Fetch this epoch's and the next epoch's duties when missing.
    fn request_duties(
        &mut self,
        now: SystemTime,
        fetches: &mut FuturesUnordered<BoxFuture<'static, FetchResult>>,
    ) {
        let epoch = self.clock.epoch_of(self.clock.current_slot(now));
        let current = epoch;
        for epoch in [epoch, epoch + 1] {
            let pending_now = epoch == current
                && self
                    .duties
                    .get(&epoch)
                    .is_some_and(|duties| duties.proposers_pending);
            if (self.duties.contains_key(&epoch) && !pending_now) || self.fetching.contains(&epoch)
            {
                continue;
            }
            if self.retry_at.get(&epoch).is_some_and(|at| *at > now) {
                continue;
            }
            self.fetching.insert(epoch);
            let source = self.source.clone();
            let timeout = self.context.sleep(self.fetch_timeout);
            fetches.push(Box::pin(async move {
                let fetch = async {
                    let attesters = source.attester_duties(epoch).await?;
                    let (proposers, proposers_pending) = match source.proposer_duties(epoch).await {
                        Ok(proposers) => (proposers, false),
                        Err(SourceError::NotYet { .. }) => (Vec::new(), true),
                        Err(err) => return Err(err),
                    };
                    let sync = source.sync_duties(epoch).await?;
                    Ok(EpochDuties {
                        attesters,
                        proposers,
                        proposers_pending,
                        sync,
                    })
                };
                select! {
                    result = fetch => (epoch, result),
                    _ = timeout => (epoch, Err(SourceError::Unavailable("timed out".into()))),
                }
            }));
        }
    }

    async fn on_fetched(
        &mut self,
        epoch: u64,
        result: Result<EpochDuties, SourceError>,
    ) -> Result<(), Stopped> {
        self.fetching.remove(&epoch);
        match result {
            Ok(mut duties) => {
                duties.attesters.sort();
                duties.proposers.sort();
                // A beacon node answers for the epoch asked; anything else is not scheduled.
                duties
                    .attesters
                    .retain(|d| self.clock.epoch_of(d.slot) == epoch);
                duties
                    .proposers
                    .retain(|d| self.clock.epoch_of(d.slot) == epoch);
                duties.sync = sanitize_sync_duties(duties.sync, &self.clock);
                info!(
                    epoch,
                    attester_duties = duties.attesters.len(),
                    proposer_duties = duties.proposers.len(),
                    sync_committee_members = duties.sync.len(),
                    "fetched duties"
                );
                self.retry_at.remove(&epoch);
                let now = self.context.current();
                if duties.proposers_pending
                    && epoch <= self.clock.epoch_of(self.clock.current_slot(now))
                {
                    // The epoch has started, yet the source still cannot name its proposers.
                    self.retry_at.insert(epoch, now + FETCH_RETRY);
                }
                let mut slots: Vec<u64> = duties.attesters.iter().map(|d| d.slot).collect();
                slots.dedup();
                let mut expected: Vec<DutyId> = slots
                    .into_iter()
                    .map(|slot| DutyId::committee(self.committee.clone(), epoch, slot))
                    .collect();
                expected.extend(
                    duties.proposers.iter().map(|d| {
                        DutyId::validator(Role::Proposer, epoch, d.slot, d.validator_index)
                    }),
                );
                expected.extend(duties.attesters.iter().map(|d| {
                    DutyId::validator(Role::Aggregator, epoch, d.slot, d.validator_index)
                }));
                // The slots this epoch's sync committee signs in: a committee duty each (its
                // sync committee messages ride on it) and a contribution duty per member.
                if !duties.sync.is_empty() {
                    for slot in self.sync_slots(epoch) {
                        let slot_epoch = self.clock.epoch_of(slot);
                        expected.push(DutyId::committee(self.committee.clone(), slot_epoch, slot));
                        expected.extend(duties.sync.iter().map(|d| {
                            DutyId::validator(
                                Role::SyncCommitteeContribution,
                                slot_epoch,
                                slot,
                                d.validator_index,
                            )
                        }));
                    }
                }
                // Complete only if the source named the epoch's proposers: a proposer duty
                // still to come must not be refused as non-existent meanwhile.
                if duties.proposers_pending {
                    self.committee_mailbox.expect(expected).await?;
                } else {
                    self.committee_mailbox.expect_epoch(epoch, expected).await?;
                }
                self.duties.insert(epoch, duties);
            }
            Err(err) => {
                self.fetch_failures.inc();
                warn!(epoch, %err, "could not fetch duties; retrying in 1s");
                self.retry_at
                    .insert(epoch, self.context.current() + FETCH_RETRY);
            }
        }
        Ok(())
    }

    /// The slots in which `epoch`'s sync committee signs: from the one before the epoch to the
    /// epoch's second-to-last.
    fn sync_slots(&self, epoch: u64) -> impl Iterator<Item = u64> + use<E, S> {
        let clock = self.clock;
        let first = clock.first_slot(epoch);
        let end = first + clock.slots_per_epoch;
        (first.saturating_sub(1)..end)
            .filter(move |slot| clock.sync_committee_epoch(*slot) == epoch)
    }

    /// The sync committee duties of the members who sign in `slot`, if that epoch is fetched.
    fn sync_duties_of(&self, slot: u64) -> Option<&[SyncDuty]> {
        self.duties
            .get(&self.clock.sync_committee_epoch(slot))
            .map(|epoch| epoch.sync.as_slice())
    }

    /// Hands the current slot's proposer, aggregator and sync committee contribution duties to
    /// the runner at the slot's start: their pre-consensus signatures (RANDAO reveal, selection
    /// proofs) need no data.
    async fn dispatch_validator_duties(&mut self, now: SystemTime) -> Result<(), Stopped> {
        let Some(slot) = self.clock.slot_at(now) else {
            return Ok(());
        };
        if self.dispatched_validator.contains(&slot) {
            return Ok(());
        }
        let epoch = self.clock.epoch_of(slot);
        let Some(epoch_duties) = self.duties.get(&epoch) else {
            return Ok(());
        };
        if epoch_duties.proposers_pending {
            return Ok(());
        }
        self.dispatched_validator.insert(slot);
        let mut duties: Vec<Duty> = epoch_duties
            .proposers
            .iter()
            .filter(|d| d.slot == slot)
            .map(|d| Duty {
                id: DutyId::validator(Role::Proposer, epoch, slot, d.validator_index),
                attesters: Vec::new(),
                sync: Vec::new(),
            })
            .collect();
        duties.extend(
            epoch_duties
                .attesters
                .iter()
                .filter(|d| d.slot == slot)
                .map(|d| Duty {
                    id: DutyId::validator(Role::Aggregator, epoch, slot, d.validator_index),
                    attesters: vec![*d],
                    sync: Vec::new(),
                }),
        );
        match self.sync_duties_of(slot) {
            Some(sync) => duties.extend(sync.iter().map(|d| Duty {
                id: DutyId::validator(
                    Role::SyncCommitteeContribution,
                    epoch,
                    slot,
                    d.validator_index,
                ),
                attesters: Vec::new(),
                sync: vec![d.clone()],
            })),
            None => warn!(
                slot,
                sync_committee_epoch = self.clock.sync_committee_epoch(slot),
                "sync committee duties for this slot not fetched; no contributions this slot"
            ),
        }
        let delay = now
            .duration_since(self.clock.slot_start(slot))
            .unwrap_or_default();
        for duty in duties {
            if delay > self.late_threshold {
                self.late_total.inc();
                warn!(
                    duty_id = %duty.id,
                    runner_role = %duty.id.role,
                    slot,
                    delay_ms = delay.as_millis() as u64,
                    "late duty execution: starting the duty anyway"
                );
            }
            self.dispatched_total.inc();
            self.runner.start_duty(duty).await?;
        }
        Ok(())
    }

    /// At the last interval of a slot, asks the executor to pre-build the next slot's payload.
    fn request_prebuild(&mut self, now: SystemTime) -> Result<(), Stopped> {
        let Some(executor) = &self.executor else {
            return Ok(());
        };
        // Before genesis the "previous slot" of slot 0 is the interval just before genesis.
        let (next, last_interval) = match self.clock.slot_at(now) {
            Some(slot) => (
                slot + 1,
                self.clock
                    .interval_start(slot, self.clock.intervals_per_slot.saturating_sub(1)),
            ),
            None => (0, self.clock.slot_start(0) - self.clock.interval_duration()),
        };
        if now < last_interval || self.prebuild_requested.is_some_and(|r| r >= next) {
            return Ok(());
        }
        self.prebuild_requested = Some(next);
        debug!(
            slot = next,
            "asking the executor to pre-build the next slot's payload"
        );
        executor.prebuild(next)
    }

    /// Hands the current slot's committee duty to the runner once it is due.
    async fn dispatch_due(&mut self, now: SystemTime) -> Result<(), Stopped> {
        self.dispatch_validator_duties(now).await?;
        let Some(slot) = self.clock.slot_at(now) else {
            return Ok(());
        };
        if self.dispatched.contains(&slot) {
            return Ok(());
        }
        let one_third = self.clock.interval_start(slot, 1);
        let head_seen = self.heads.contains(&slot);
        if now < one_third && !head_seen {
            return Ok(());
        }
        let epoch = self.clock.epoch_of(slot);
        // Without the epoch's duties there is nothing to start yet; this slot is retried when
        // they arrive, and started late if they arrive late.
        let Some(epoch_duties) = self.duties.get(&epoch) else {
            return Ok(());
        };
        self.dispatched.insert(slot);
        let attesters: Vec<AttesterDuty> = epoch_duties
            .attesters
            .iter()
            .filter(|d| d.slot == slot)
            .copied()
            .collect();
        let sync = match self.sync_duties_of(slot) {
            Some(sync) => sync.to_vec(),
            None => {
                warn!(
                    slot,
                    sync_committee_epoch = self.clock.sync_committee_epoch(slot),
                    "sync committee duties for this slot not fetched; no sync committee \
                     messages this slot"
                );
                Vec::new()
            }
        };
        if attesters.is_empty() && sync.is_empty() {
            return Ok(());
        }
        let id = DutyId::committee(self.committee.clone(), epoch, slot);
        let planned = if head_seen {
            self.clock.slot_start(slot)
        } else {
            one_third
        };
        let delay = now.duration_since(planned).unwrap_or_default();
        if !head_seen && delay > self.late_threshold {
            self.late_total.inc();
            warn!(
                duty_id = %id,
                runner_role = %id.role,
                slot,
                delay_ms = delay.as_millis() as u64,
                "late duty execution: starting the duty anyway"
            );
        }
        debug!(
            duty_id = %id,
            runner_role = %id.role,
            slot,
            validators = attesters.len(),
            sync_committee_members = sync.len(),
            early = head_seen && now < one_third,
            "dispatching committee duty"
        );
        self.dispatched_total.inc();
        self.runner
            .start_duty(Duty {
                id,
                attesters,
                sync,
            })
            .await
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

/// A beacon node's sync duties as the scheduler keeps them: one per validator (positions of
/// repeated entries merged), only positions inside the committee, sorted, and validators with
/// no position left dropped. The answer is trusted no further than that.
fn sanitize_sync_duties(duties: Vec<SyncDuty>, clock: &SlotClock) -> Vec<SyncDuty> {
    let size = clock.sync_committee.size;
    let mut merged: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for duty in duties {
        merged.entry(duty.validator_index).or_default().extend(
            duty.validator_sync_committee_indices
                .into_iter()
                .filter(|index| *index < size),
        );
    }
    merged
        .into_iter()
        .filter(|(_, indices)| !indices.is_empty())
        .map(|(validator_index, indices)| SyncDuty {
            validator_index,
            validator_sync_committee_indices: indices.into_iter().collect(),
        })
        .collect()
}
