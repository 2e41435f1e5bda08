//! The beacon chain's slot clock, shared by every actor that reasons about time.

use crate::SyncCommitteeSpec;
use std::time::{Duration, SystemTime};

/// Genesis time, slot length and intervals: everything needed to map time to slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotClock {
    pub genesis: SystemTime,
    pub slot_duration: Duration,
    /// Ethereum divides a slot in 3 intervals: attest at 1/3, aggregate at 2/3.
    pub intervals_per_slot: u32,
    pub slots_per_epoch: u64,
    /// The sync committee's size, subnets and period, which differ between presets.
    pub sync_committee: SyncCommitteeSpec,
    /// How far this node's clock reads ahead of the cluster's (negative: behind), in
    /// milliseconds. Zero on a real node, whose clock simply is what it is; the simulation sets
    /// it to give one operator a skewed clock on a runtime all operators share. Slot starts and
    /// boundaries are when this node *believes* they happen; the agreed slot timestamp (what
    /// goes into an execution payload) does not move with it.
    pub skew_ms: i64,
}

impl SlotClock {
    /// Mainnet timing from `genesis`: 12 s slots, 3 intervals, 32 slots per epoch, mainnet's
    /// sync committee.
    pub fn mainnet(genesis: SystemTime) -> Self {
        Self {
            genesis,
            slot_duration: Duration::from_secs(12),
            intervals_per_slot: 3,
            slots_per_epoch: 32,
            sync_committee: SyncCommitteeSpec::MAINNET,
            skew_ms: 0,
        }
    }

    /// The minimal preset's chain parameters from `genesis` with `slot_duration` slots: 8 slots
    /// per epoch and the minimal sync committee (what local dev chains run).
    pub fn minimal(genesis: SystemTime, slot_duration: Duration) -> Self {
        Self {
            genesis,
            slot_duration,
            intervals_per_slot: 3,
            slots_per_epoch: 8,
            sync_committee: SyncCommitteeSpec::MINIMAL,
            skew_ms: 0,
        }
    }

    /// The epoch whose sync committee signs in `slot`: that of `slot + 1`, since a committee
    /// signs from the last slot before its period to the second-to-last slot of it (the head
    /// its messages sign is the block the next slot builds on).
    pub fn sync_committee_epoch(&self, slot: u64) -> u64 {
        self.epoch_of(slot.saturating_add(1))
    }

    /// Genesis as this node's clock sees it: a clock that reads ahead reaches every slot early.
    fn local_genesis(&self) -> SystemTime {
        let skew = Duration::from_millis(self.skew_ms.unsigned_abs());
        if self.skew_ms >= 0 {
            self.genesis.checked_sub(skew).unwrap_or(self.genesis)
        } else {
            self.genesis + skew
        }
    }

    /// Checks the invariants the other methods rely on.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.slot_duration.is_zero() {
            return Err("slot_duration must be greater than zero");
        }
        if self.intervals_per_slot == 0 {
            return Err("intervals_per_slot must be greater than zero");
        }
        if self.slots_per_epoch == 0 {
            return Err("slots_per_epoch must be greater than zero");
        }
        self.sync_committee.validate()
    }

    /// The slot at `now`, or `None` before genesis.
    pub fn slot_at(&self, now: SystemTime) -> Option<u64> {
        let since = now.duration_since(self.local_genesis()).ok()?;
        Some((since.as_nanos() / self.slot_duration.as_nanos()) as u64)
    }

    /// The slot at `now`, counting any time before genesis as slot 0.
    pub fn current_slot(&self, now: SystemTime) -> u64 {
        self.slot_at(now).unwrap_or(0)
    }

    /// When this node believes `slot` starts.
    pub fn slot_start(&self, slot: u64) -> SystemTime {
        self.local_genesis() + self.since_genesis(slot)
    }

    fn since_genesis(&self, slot: u64) -> Duration {
        self.slot_duration
            .saturating_mul(slot.min(u32::MAX as u64) as u32)
    }

    /// The execution payload timestamp of `slot`: its start in whole Unix seconds, as the
    /// Engine API counts time (0 for a clock set before the Unix epoch).
    pub fn slot_timestamp(&self, slot: u64) -> u64 {
        (self.genesis + self.since_genesis(slot))
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    pub fn interval_duration(&self) -> Duration {
        self.slot_duration / self.intervals_per_slot
    }

    /// Start of interval `interval` (0-based) of `slot`.
    pub fn interval_start(&self, slot: u64, interval: u32) -> SystemTime {
        self.slot_start(slot) + self.interval_duration() * interval
    }

    pub fn epoch_of(&self, slot: u64) -> u64 {
        slot / self.slots_per_epoch
    }

    pub fn first_slot(&self, epoch: u64) -> u64 {
        epoch.saturating_mul(self.slots_per_epoch)
    }

    /// The first interval boundary strictly after `now`.
    pub fn next_interval_boundary(&self, now: SystemTime) -> SystemTime {
        let genesis = self.local_genesis();
        let Ok(since) = now.duration_since(genesis) else {
            return genesis;
        };
        let interval = self.interval_duration().as_nanos();
        let next = (since.as_nanos() / interval + 1) * interval;
        genesis + Duration::from_nanos(next as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_time_to_slots_and_intervals() {
        let genesis = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let c = SlotClock::mainnet(genesis);
        assert_eq!(c.slot_at(genesis - Duration::from_secs(1)), None);
        assert_eq!(c.current_slot(genesis), 0);
        assert_eq!(c.current_slot(genesis + Duration::from_millis(11_999)), 0);
        assert_eq!(c.current_slot(genesis + Duration::from_secs(12)), 1);
        assert_eq!(c.interval_start(2, 1), genesis + Duration::from_secs(28));
        assert_eq!(c.slot_timestamp(2), 1024);
        assert_eq!(c.epoch_of(63), 1);
        assert_eq!(
            c.next_interval_boundary(genesis + Duration::from_secs(4)),
            genesis + Duration::from_secs(8)
        );
        assert_eq!(
            c.next_interval_boundary(genesis + Duration::from_millis(4100)),
            genesis + Duration::from_secs(8)
        );
    }

    #[test]
    fn a_skewed_clock_moves_slot_boundaries_but_not_the_slot_timestamp() {
        let genesis = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let ahead = SlotClock {
            skew_ms: 300,
            ..SlotClock::mainnet(genesis)
        };
        let behind = SlotClock {
            skew_ms: -300,
            ..SlotClock::mainnet(genesis)
        };
        assert_eq!(ahead.slot_start(1), genesis + Duration::from_millis(11_700));
        assert_eq!(
            behind.slot_start(1),
            genesis + Duration::from_millis(12_300)
        );
        assert_eq!(
            ahead.current_slot(genesis + Duration::from_millis(11_800)),
            1
        );
        assert_eq!(
            behind.current_slot(genesis + Duration::from_millis(12_200)),
            0
        );
        assert_eq!(ahead.slot_timestamp(2), 1024);
        assert_eq!(behind.slot_timestamp(2), 1024);
        assert_eq!(
            behind.next_interval_boundary(genesis + Duration::from_secs(4)),
            genesis + Duration::from_millis(4300)
        );
    }
}
