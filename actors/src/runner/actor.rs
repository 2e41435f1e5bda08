use super::Config;
use cohort_ingress::{
    AttestationData, Checkpoint, DecidedValue, Decision, Duty, DutyId, DutySource, SlotClock,
    SourceError,
    committee::{self, MAX_BLOCK_AGE_SLOTS},
    runner::{DutyEvent, Message},
};
use commonware_macros::select;
use commonware_runtime::{Clock, Handle, Metrics, Spawner, telemetry::metrics::Registered};
use commonware_utils::channel::mpsc;
use futures::{StreamExt, future::BoxFuture, stream::FuturesUnordered};
use prometheus_client::metrics::{counter::Counter, histogram::Histogram};
use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime},
};
use tracing::{debug, info, warn};

type Fetched = (DutyId, Result<(AttestationData, Checkpoint), SourceError>);

/// A duty between its start and its decision (or the end of its slot).
struct Running {
    duty: Duty,
    started: SystemTime,
}

pub struct Actor<E, S: DutySource> {
    context: E,
    clock: SlotClock,
    source: S,
    committee: committee::Mailbox,
    fetch_timeout: Duration,
    events: Option<mpsc::UnboundedSender<DutyEvent>>,
    mailbox: mpsc::Receiver<Message>,

    running: BTreeMap<DutyId, Running>,
    /// Duties finalized before this runner started them (another operator's beacon node saw
    /// the head first), by the height that decided them; kept for the block-age window.
    finalized_early: BTreeMap<DutyId, u64>,

    started: Registered<Counter>,
    decided: Registered<Counter>,
    missed: Registered<Counter>,
    decide_latency: Registered<Histogram>,
}

impl<E: Clock + Spawner + Metrics, S: DutySource> Actor<E, S> {
    pub(super) fn new(context: E, config: Config<S>, mailbox: mpsc::Receiver<Message>) -> Self {
        let started = context.register("duties_started", "duties started", Counter::default());
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
        Self {
            context,
            clock: config.clock,
            source: config.source,
            committee: config.committee,
            fetch_timeout: config.fetch_timeout,
            events: config.events,
            mailbox,
            running: BTreeMap::new(),
            finalized_early: BTreeMap::new(),
            started,
            decided,
            missed,
            decide_latency,
        }
    }

    pub fn start(self) -> Handle<()> {
        let context = self.context.child("runner");
        context.spawn(move |_| self.run())
    }

    fn emit(&self, event: DutyEvent) {
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }

    async fn run(mut self) {
        let mut fetches: FuturesUnordered<BoxFuture<'static, Fetched>> = FuturesUnordered::new();
        loop {
            // The earliest moment a running duty can no longer be decided: no honest operator
            // votes for a block of its slot any more.
            let deadline = self
                .running
                .keys()
                .next()
                .map(|id| self.clock.slot_start(id.slot + 1 + MAX_BLOCK_AGE_SLOTS));
            let expire = async {
                match deadline {
                    Some(at) => self.context.sleep_until(at).await,
                    None => futures::future::pending().await,
                }
            };
            let next_fetch = async {
                if fetches.is_empty() {
                    futures::future::pending::<Option<Fetched>>().await
                } else {
                    fetches.next().await
                }
            };
            // Priorities: finalized decisions and new duties first, then beacon answers, then
            // expiry (a decision that arrives with the deadline still counts).
            select! {
                message = self.mailbox.recv() => {
                    let Some(message) = message else {
                        debug!("runner mailbox closed; stopping");
                        return;
                    };
                    match message {
                        Message::StartDuty(duty) => self.on_start(duty, &mut fetches),
                        Message::Finalized { height, block_slot, decisions } => {
                            self.on_finalized(height, block_slot, &decisions)
                        }
                    }
                },
                fetched = next_fetch => {
                    if let Some((id, result)) = fetched {
                        self.on_fetched(id, result).await;
                    }
                },
                _ = expire => self.expire(),
            }
        }
    }

    fn on_start(
        &mut self,
        duty: Duty,
        fetches: &mut FuturesUnordered<BoxFuture<'static, Fetched>>,
    ) {
        let id = duty.id.clone();
        if self.running.contains_key(&id) {
            debug!(duty_id = %id, "duty already running; ignoring the second start");
            return;
        }
        let now = self.context.current();
        info!(
            duty_id = %id,
            runner_role = %id.role,
            slot = id.slot,
            validators = duty.attesters.len(),
            "executing committee duty"
        );
        self.started.inc();
        self.emit(DutyEvent::Started {
            duty: id.clone(),
            at: now,
        });
        if let Some(height) = self.finalized_early.remove(&id) {
            self.decided.inc();
            self.decide_latency.observe(0.0);
            info!(
                duty_id = %id,
                runner_role = %id.role,
                slot = id.slot,
                height,
                "duty already decided and finalized by the cluster; nothing left to agree on"
            );
            self.emit(DutyEvent::Decided {
                duty: id,
                latency: Duration::ZERO,
            });
            return;
        }
        self.running
            .insert(id.clone(), Running { duty, started: now });

        let source = self.source.clone();
        let timeout = self.context.sleep(self.fetch_timeout);
        fetches.push(Box::pin(async move {
            let slot = id.slot;
            let fetch = async {
                let data = source.attestation_data(slot).await?;
                let finalized = source.finalized_checkpoint().await?;
                Ok((data, finalized))
            };
            select! {
                result = fetch => (id, result),
                _ = timeout => (id, Err(SourceError::Unavailable("timed out".into()))),
            }
        }));
    }

    async fn on_fetched(
        &mut self,
        id: DutyId,
        result: Result<(AttestationData, Checkpoint), SourceError>,
    ) {
        if !self.running.contains_key(&id) {
            return; // Decided or expired meanwhile.
        }
        match result {
            Ok((data, finalized)) if data.slot == id.slot => {
                debug!(
                    duty_id = %id,
                    runner_role = %id.role,
                    slot = id.slot,
                    "submitting attestation data for agreement"
                );
                self.committee
                    .submit(id, DecidedValue::Attestation(data), finalized)
                    .await;
            }
            Ok((data, _)) => {
                warn!(
                    duty_id = %id,
                    runner_role = %id.role,
                    slot = id.slot,
                    data_slot = data.slot,
                    "beacon node returned attestation data for another slot; the duty waits for the cluster's decision"
                );
            }
            Err(err) => {
                warn!(
                    duty_id = %id,
                    runner_role = %id.role,
                    slot = id.slot,
                    %err,
                    "could not fetch attestation data; the duty waits for another operator's value"
                );
            }
        }
    }

    fn on_finalized(&mut self, height: u64, block_slot: u64, decisions: &Arc<Vec<Decision>>) {
        let now = self.context.current();
        self.forget_finalized_early(self.clock.current_slot(now));
        for decision in decisions.iter() {
            if decision.duty.slot != block_slot {
                continue; // Cannot happen in a verified block; never count it as decided.
            }
            let Some(running) = self.running.remove(&decision.duty) else {
                self.finalized_early.insert(decision.duty.clone(), height);
                continue;
            };
            let latency = now.duration_since(running.started).unwrap_or_default();
            self.decided.inc();
            self.decide_latency.observe(latency.as_secs_f64());
            info!(
                duty_id = %decision.duty,
                runner_role = %decision.duty.role,
                slot = decision.duty.slot,
                height,
                validators = running.duty.attesters.len(),
                latency_ms = latency.as_millis() as u64,
                "duty decided and finalized"
            );
            self.emit(DutyEvent::Decided {
                duty: decision.duty.clone(),
                latency,
            });
        }
    }

    /// Duties of slots whose blocks can no longer be voted for will not start any more.
    fn forget_finalized_early(&mut self, slot: u64) {
        self.finalized_early
            .retain(|id, _| id.slot + 1 + MAX_BLOCK_AGE_SLOTS >= slot);
    }

    fn expire(&mut self) {
        let slot = self.clock.current_slot(self.context.current());
        self.forget_finalized_early(slot);
        while let Some(entry) = self.running.first_entry() {
            if entry.key().slot + MAX_BLOCK_AGE_SLOTS >= slot {
                break;
            }
            let (id, _) = entry.remove_entry();
            self.missed.inc();
            warn!(
                duty_id = %id,
                runner_role = %id.role,
                slot = id.slot,
                "duty missed: no block of its slot can be finalized any more"
            );
            self.emit(DutyEvent::Missed { duty: id });
        }
    }
}
