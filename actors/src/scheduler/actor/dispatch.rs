//! Handing each slot's duties to the runner when they are due (and the executor its pre-build).

use super::Actor;
use cohort_ingress::{AttesterDuty, Duty, DutyId, DutySource, Role, Stopped, SyncDuty};
use commonware_runtime::{Clock, Metrics, Spawner};
use std::time::SystemTime;
use tracing::{debug, warn};

impl<E: Clock + Spawner + Metrics, S: DutySource> Actor<E, S> {
    /// The sync committee duties of the members who sign in `slot`, if that epoch is fetched.
    pub(super) fn sync_duties_of(&self, slot: u64) -> Option<&[SyncDuty]> {
        self.duties
            .get(&self.clock.sync_committee_epoch(slot))
            .map(|epoch| epoch.sync.as_slice())
    }

    /// Hands the current slot's proposer, aggregator and sync committee contribution duties to
    /// the runner at the slot's start: their pre-consensus signatures (RANDAO reveal, selection
    /// proofs) need no data.
    pub(super) async fn dispatch_validator_duties(
        &mut self,
        now: SystemTime,
    ) -> Result<(), Stopped> {
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
    pub(super) fn request_prebuild(&mut self, now: SystemTime) -> Result<(), Stopped> {
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
    pub(super) async fn dispatch_due(&mut self, now: SystemTime) -> Result<(), Stopped> {
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
}
