use super::Config;
use cohort_ingress::{
    DutySource, SlotClock, SourceError,
    doppelganger::{Change, Clearance, Counts, Guard},
};
use commonware_macros::select;
use commonware_runtime::{
    Clock, ContextCell, Handle, Metrics, Spawner, spawn_cell, telemetry::metrics::Registered,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, gauge::Gauge},
};
use std::{collections::BTreeSet, time::Duration};
use tracing::{error, info, warn};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

pub struct Actor<E: Clock + Spawner + Metrics, S: DutySource> {
    context: ContextCell<E>,
    clock: SlotClock,
    source: S,
    guard: Guard,
    fetch_timeout: Duration,
    validators: Registered<Family<StatusLabel, Gauge>>,
}

impl<E: Clock + Spawner + Metrics, S: DutySource> Actor<E, S> {
    pub(super) fn new(context: E, config: Config<S>) -> Self {
        // The actor runs under a `doppelganger` context, so the exported name is
        // `<parent>_doppelganger_validators`, the name the README's metric table gives.
        let validators = context.register(
            "validators",
            "Validators by doppelganger status: watching (not signed for yet), cleared, detected \
             (live elsewhere: never signed for)",
            Family::<StatusLabel, Gauge>::default(),
        );
        Self {
            context: ContextCell::new(context),
            clock: config.clock,
            source: config.source,
            guard: config.guard,
            fetch_timeout: config.fetch_timeout,
            validators,
        }
    }

    pub fn start(mut self) -> Handle<()> {
        spawn_cell!(self.context, self.run())
    }

    fn export(&self, counts: Counts) {
        for (status, value) in [
            ("watching", counts.watching),
            ("cleared", counts.cleared),
            ("detected", counts.detected),
        ] {
            self.validators
                .get_or_create(&StatusLabel { status })
                .set(value as i64);
        }
    }

    /// When the beacon node can answer for `epoch`: half a slot into the next epoch, so the
    /// epoch's last attestations have reached it.
    fn answerable_at(&self, epoch: u64) -> std::time::SystemTime {
        self.clock.slot_start(self.clock.first_slot(epoch + 1)) + self.clock.slot_duration / 2
    }

    async fn run(mut self) {
        // The operator's tasks run until the node stops (one that ends stops the node), so a
        // checker with nothing to check idles instead of returning.
        let Some(mut epoch) = self.guard.first_checked_epoch() else {
            futures::future::pending::<()>().await;
            return;
        };
        let watched = self.guard.watched();
        self.export(self.guard.counts());
        if watched.is_empty() {
            futures::future::pending::<()>().await;
            return;
        }
        info!(
            validators = watched.len(),
            first_epoch = epoch,
            last_epoch = epoch + 1,
            "doppelganger protection: signing nothing for these validators until the beacon \
             node reports them not live in two epochs, or this operator sees its cluster sign \
             for them"
        );
        loop {
            let watched = self.guard.watched();
            self.export(self.guard.counts());
            if watched.is_empty() {
                let counts = self.guard.counts();
                info!(
                    cleared = counts.cleared,
                    detected = counts.detected,
                    "doppelganger protection: no validator left to check"
                );
                // Nothing left to do, but the gauges stay exported (a detected validator must
                // stay visible): the task idles until the node stops.
                futures::future::pending::<()>().await;
                return;
            }
            // Every slot until the epoch is answerable: the gauges follow the runner's clears.
            let ready = self.answerable_at(epoch);
            let now = self.context.current();
            if now < ready {
                let wake = self
                    .clock
                    .slot_start(self.clock.current_slot(now) + 1)
                    .min(ready);
                self.context.sleep_until(wake).await;
                continue;
            }
            // The answer for an epoch is good until the next one is due; past that, the epoch
            // does not count and the next is asked.
            let give_up = self.answerable_at(epoch + 1);
            match self.ask(epoch, &watched, give_up).await {
                Ok(live) => self.record(epoch, &watched, &live),
                Err(err) => warn!(
                    epoch,
                    %err,
                    "doppelganger protection: the beacon node did not say which validators were \
                     live; this epoch does not count towards clearing them"
                ),
            }
            epoch += 1;
        }
    }

    /// Asks until an answer comes or `give_up` passes, each call bounded by the fetch timeout.
    async fn ask(
        &mut self,
        epoch: u64,
        watched: &[u64],
        give_up: std::time::SystemTime,
    ) -> Result<BTreeSet<u64>, SourceError> {
        loop {
            let call = self.source.liveness(epoch, watched.to_vec());
            let timeout = self.context.sleep(self.fetch_timeout);
            let result = select! {
                result = call => result,
                _ = timeout => Err(SourceError::Unavailable("timed out".into())),
            };
            match result {
                Ok(live) => return Ok(live.into_iter().collect()),
                Err(err) => {
                    let retry = self.context.current() + self.clock.slot_duration / 4;
                    if retry >= give_up {
                        return Err(err);
                    }
                    self.context.sleep_until(retry).await;
                }
            }
        }
    }

    fn record(&self, epoch: u64, watched: &[u64], live: &BTreeSet<u64>) {
        for change in self.guard.record_liveness(epoch, watched, live) {
            match change {
                Change::Cleared {
                    validator,
                    how: Clearance::NotLive,
                } => info!(
                    validator,
                    epoch,
                    "doppelganger protection: not live elsewhere for two epochs; signing for it from now on"
                ),
                Change::Cleared { validator, .. } => {
                    info!(validator, epoch, "doppelganger protection: cleared")
                }
                Change::Detected { validator, epoch } => error!(
                    validator,
                    epoch,
                    "doppelganger detected: the validator was live in this epoch without this \
                     cluster signing for it, so another instance holds its key. This operator \
                     will not sign for it; stop the other instance, then restart this node"
                ),
            }
        }
        self.export(self.guard.counts());
    }
}
