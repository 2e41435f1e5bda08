//! A devnet beacon node: deterministic duties and attestation data for `V` validators.
//!
//! Every operator gets its own instance, as every operator runs its own beacon node. They agree
//! on duties and checkpoints, but not always on the head: for some slots an operator's node has
//! not seen the slot's block yet and answers with the previous head, as real nodes do. The
//! cluster must still agree on one value (the leader's) and followers must accept it.

use cohort_ingress::{
    AttestationData, AttesterDuty, Checkpoint, ProposerDuty, Root, SlotClock, SyncDuty,
};
use commonware_cryptography::{Hasher, Sha256};
use std::time::Duration;

/// The consensus spec's `TARGET_COMMITTEE_SIZE`.
const TARGET_COMMITTEE_SIZE: u64 = 128;
/// The consensus spec's `MAX_COMMITTEES_PER_SLOT`.
const MAX_COMMITTEES_PER_SLOT: u64 = 64;

#[derive(Clone, Debug)]
pub struct DevnetBeacon {
    seed: u64,
    operator: u64,
    validators: u64,
    /// How many validators the chain has for its sync committees to be drawn from: the
    /// cluster's (the first `validators`) and, above them, validators nobody here runs.
    sync_population: u64,
    clock: SlotClock,
    /// When every slot's head block reaches this node (`None`: a seed-drawn time per operator
    /// and slot, some slots one head behind).
    head_at: Option<Duration>,
}

fn hash_u64(parts: &[&[u8]]) -> u64 {
    let digest = Sha256::hash(parts);
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_le_bytes(bytes)
}

impl DevnetBeacon {
    pub fn new(seed: u64, operator: u64, validators: u64, clock: SlotClock) -> Self {
        Self {
            seed,
            operator,
            validators,
            sync_population: validators,
            clock,
            head_at: None,
        }
    }

    /// This beacon with every slot's head block seen `at` into the slot, and never one head
    /// behind: the condition under which the head-to-submission delay is measured.
    pub fn with_head_at(mut self, at: Option<Duration>) -> Self {
        self.head_at = at;
        self
    }

    /// This beacon with sync committees drawn from `population` validators (at least the
    /// cluster's), of which the cluster runs only the first `validators`: on a real chain the
    /// cluster holds a few of the committee's positions, not all of them.
    pub fn with_sync_population(mut self, population: u64) -> Self {
        self.sync_population = population.max(self.validators);
        self
    }

    /// The beacon node's own clock.
    pub fn clock(&self) -> &SlotClock {
        &self.clock
    }

    /// The slot in `epoch` at which `validator` attests.
    pub fn attester_slot(&self, epoch: u64, validator: u64) -> u64 {
        let offset = hash_u64(&[
            b"attester",
            &self.seed.to_le_bytes(),
            &epoch.to_le_bytes(),
            &validator.to_le_bytes(),
        ]) % self.clock.slots_per_epoch;
        self.clock.first_slot(epoch) + offset
    }

    /// Beacon committees per slot, counted as the consensus spec counts them
    /// (`get_committee_count_per_slot`): one per 128 validators of a slot's share of the
    /// validator set, at least 1 and at most 64. At 100,000 validators that is 24 committees of
    /// about 130 each, never one committee above the 2,048 members an aggregate's bits allow.
    pub fn committees_per_slot(&self) -> u64 {
        (self.validators / self.clock.slots_per_epoch.max(1) / TARGET_COMMITTEE_SIZE)
            .clamp(1, MAX_COMMITTEES_PER_SLOT)
    }

    /// Every attester duty of `epoch`, computed the same way on every operator: each slot's
    /// attesters split into [`Self::committees_per_slot`] committees of near-equal size, as
    /// the spec slices a shuffled list (`compute_committee`).
    pub fn duties(&self, epoch: u64) -> Vec<AttesterDuty> {
        let mut duties: Vec<AttesterDuty> = (0..self.validators)
            .map(|validator_index| AttesterDuty {
                slot: self.attester_slot(epoch, validator_index),
                validator_index,
                committee_index: 0,
                committee_length: 0,
                validator_committee_index: 0,
            })
            .collect();
        duties.sort();
        let committees = self.committees_per_slot() as usize;
        for attesters in duties.chunk_by_mut(|a, b| a.slot == b.slot) {
            let total = attesters.len();
            for index in 0..committees {
                let (start, end) = (total * index / committees, total * (index + 1) / committees);
                let length = (end - start) as u64;
                for (position, duty) in attesters[start..end].iter_mut().enumerate() {
                    duty.committee_index = index as u64;
                    duty.validator_committee_index = position as u64;
                    duty.committee_length = length;
                }
            }
        }
        duties
    }

    pub fn slot_start(&self, slot: u64) -> std::time::SystemTime {
        self.clock.slot_start(slot)
    }

    pub fn epoch_of(&self, slot: u64) -> u64 {
        self.clock.epoch_of(slot)
    }

    pub fn first_slot(&self, epoch: u64) -> u64 {
        self.clock.first_slot(epoch)
    }

    /// The validator that proposes `slot`. Every devnet validator is the cluster's, so the
    /// cluster proposes every slot.
    pub fn proposer(&self, slot: u64) -> u64 {
        hash_u64(&[b"proposer", &self.seed.to_le_bytes(), &slot.to_le_bytes()]) % self.validators
    }

    pub fn proposer_duties(&self, epoch: u64) -> Vec<ProposerDuty> {
        let first = self.clock.first_slot(epoch);
        (first..first + self.clock.slots_per_epoch)
            .map(|slot| ProposerDuty {
                slot,
                validator_index: self.proposer(slot),
            })
            .collect()
    }

    pub fn block_root(&self, slot: u64) -> Root {
        Sha256::hash(&[b"block", &self.seed.to_le_bytes(), &slot.to_le_bytes()])
    }

    fn checkpoint(&self, epoch: u64) -> Checkpoint {
        Checkpoint {
            epoch,
            root: Sha256::hash(&[
                b"checkpoint",
                &self.seed.to_le_bytes(),
                &epoch.to_le_bytes(),
            ]),
        }
    }

    /// When this operator's node sees the head block of `slot`, after the slot starts.
    pub fn head_delay(&self, slot: u64) -> Duration {
        if let Some(at) = self.head_at {
            return at;
        }
        let ms = hash_u64(&[
            b"head",
            &self.seed.to_le_bytes(),
            &self.operator.to_le_bytes(),
            &slot.to_le_bytes(),
        ]) % 6_000;
        Duration::from_millis(ms)
    }

    /// Whether this operator's node is one head behind in `slot` (about one slot in eight).
    fn lagging(&self, slot: u64) -> bool {
        if self.head_at.is_some() {
            return false;
        }
        hash_u64(&[
            b"lag",
            &self.seed.to_le_bytes(),
            &self.operator.to_le_bytes(),
            &slot.to_le_bytes(),
        ])
        .is_multiple_of(8)
    }

    pub fn attestation_data_for(&self, slot: u64) -> AttestationData {
        let epoch = self.clock.epoch_of(slot);
        let head = if self.lagging(slot) && slot > 0 {
            self.block_root(slot - 1)
        } else {
            self.block_root(slot)
        };
        AttestationData {
            slot,
            index: 0,
            beacon_block_root: head,
            source: self.checkpoint(epoch.saturating_sub(1)),
            target: self.checkpoint(epoch),
        }
    }

    pub fn finalized_for(&self, slot: u64) -> Checkpoint {
        self.checkpoint(self.clock.epoch_of(slot).saturating_sub(2))
    }

    /// The sync committee of `period`: the validator at each of its positions, drawn from the
    /// seed per period out of the sync population (with repeats, as the beacon chain's
    /// sampling allows).
    pub fn sync_committee(&self, period: u64) -> Vec<u64> {
        (0..self.clock.sync_committee.size)
            .map(|position| {
                hash_u64(&[
                    b"sync committee",
                    &self.seed.to_le_bytes(),
                    &period.to_le_bytes(),
                    &position.to_le_bytes(),
                ]) % self.sync_population.max(1)
            })
            .collect()
    }

    /// The sync committee whose members sign in `slot` (that of `slot + 1`'s epoch).
    pub fn sync_committee_at(&self, slot: u64) -> Vec<u64> {
        let epoch = self.clock.sync_committee_epoch(slot);
        self.sync_committee(self.clock.sync_committee.period_of(epoch))
    }

    /// The sync duties of the cluster's validators in the period that contains `epoch`, one
    /// per member, as the Beacon API answers them.
    pub fn sync_duties(&self, epoch: u64) -> Vec<SyncDuty> {
        let period = self.clock.sync_committee.period_of(epoch);
        let mut positions: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
        for (position, validator) in self.sync_committee(period).into_iter().enumerate() {
            if validator >= self.validators {
                continue;
            }
            positions
                .entry(validator)
                .or_default()
                .push(position as u64);
        }
        positions
            .into_iter()
            .map(
                |(validator_index, validator_sync_committee_indices)| SyncDuty {
                    validator_index,
                    validator_sync_committee_indices,
                },
            )
            .collect()
    }

    /// Whether `root` is a head a node of this devnet may report in `slot` (the slot's block,
    /// or the previous one for a node that has not seen it yet).
    pub fn is_head_of(&self, slot: u64, root: &Root) -> bool {
        *root == self.block_root(slot) || (slot > 0 && *root == self.block_root(slot - 1))
    }
}

/// Tells the scheduler of each slot's head block when this operator's beacon node sees it (its
/// SSE `head` event), from the current slot on, until the scheduler stops.
pub async fn head_events<E: commonware_runtime::Clock>(
    context: E,
    beacon: DevnetBeacon,
    mut scheduler: cohort_ingress::scheduler::Mailbox,
) {
    let mut slot = beacon.clock().current_slot(context.current());
    loop {
        let at = beacon.slot_start(slot) + beacon.head_delay(slot);
        context.sleep_until(at).await;
        let root = beacon.attestation_data_for(slot).beacon_block_root;
        if let Err(stopped) = scheduler.head(slot, root).await {
            tracing::info!(%stopped, "no longer following the beacon node's head events");
            return;
        }
        slot += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{collections::BTreeMap, time::SystemTime};

    #[test]
    fn every_validator_attests_once_per_epoch() {
        let clock = SlotClock::mainnet(SystemTime::UNIX_EPOCH);
        let beacon = DevnetBeacon::new(7, 1, 100, clock);
        let duties = beacon.duties(3);
        assert_eq!(duties.len(), 100);
        assert!(duties.iter().all(|d| clock.epoch_of(d.slot) == 3));
        let other = DevnetBeacon::new(7, 2, 100, clock);
        assert_eq!(other.duties(3), duties, "operators agree on duties");
        assert_ne!(DevnetBeacon::new(8, 1, 100, clock).duties(3), duties);
    }

    /// Committees are counted and sized as on a real chain, so no aggregate's bits exceed the
    /// 2,048 members a committee may have, however many validators the devnet runs.
    #[test]
    fn a_slots_attesters_split_into_committees_of_at_most_2048() {
        let clock = SlotClock::mainnet(SystemTime::UNIX_EPOCH);
        for (validators, committees) in [(64, 1), (10_000, 2), (100_000, 24), (4_000_000, 64)] {
            let beacon = DevnetBeacon::new(7, 1, validators, clock);
            assert_eq!(beacon.committees_per_slot(), committees, "{validators}");
            if validators > 100_000 {
                continue; // counted, not drawn: a duty list that long is slow to build
            }
            let duties = beacon.duties(2);
            assert_eq!(duties.len() as u64, validators);
            let mut seats: BTreeMap<(u64, u64), Vec<u64>> = BTreeMap::new();
            for duty in &duties {
                assert!(duty.committee_index < committees);
                assert!(
                    duty.committee_length as usize <= cohort_ingress::duty::MAX_COMMITTEE_MEMBERS
                );
                seats
                    .entry((duty.slot, duty.committee_index))
                    .or_default()
                    .push(duty.validator_committee_index);
            }
            for ((slot, committee), mut positions) in seats {
                let length = duties
                    .iter()
                    .find(|d| d.slot == slot && d.committee_index == committee)
                    .map(|d| d.committee_length);
                positions.sort_unstable();
                let expected: Vec<u64> = (0..positions.len() as u64).collect();
                assert_eq!(positions, expected, "slot {slot} committee {committee}");
                assert_eq!(length, Some(positions.len() as u64));
            }
        }
    }

    #[test]
    fn sync_committees_change_per_period_and_sign_one_slot_early() {
        let clock = SlotClock {
            sync_committee: cohort_ingress::SyncCommitteeSpec::MINIMAL,
            ..SlotClock::mainnet(SystemTime::UNIX_EPOCH)
        };
        let beacon = DevnetBeacon::new(7, 1, 100, clock);
        let committee = beacon.sync_committee(0);
        assert_eq!(committee.len(), 32);
        assert_eq!(beacon.sync_committee(0), committee, "deterministic");
        assert_ne!(beacon.sync_committee(1), committee);
        // Every position appears once among the duties, under its validator.
        let duties = beacon.sync_duties(3);
        let positions: usize = duties
            .iter()
            .map(|d| d.validator_sync_committee_indices.len())
            .sum();
        assert_eq!(positions, 32);
        for duty in &duties {
            for position in &duty.validator_sync_committee_indices {
                assert_eq!(committee[*position as usize], duty.validator_index);
            }
        }
        // Period 1 starts at epoch 8 (slot 256): its committee signs from slot 255 on.
        assert_eq!(beacon.sync_committee_at(254), committee);
        assert_eq!(beacon.sync_committee_at(255), beacon.sync_committee(1));
        assert_eq!(
            DevnetBeacon::new(7, 2, 100, clock).sync_duties(3),
            duties,
            "operators agree"
        );
        // From a larger population the cluster holds only some positions.
        let wide = DevnetBeacon::new(7, 1, 100, clock).with_sync_population(1_000);
        let held: usize = wide
            .sync_duties(3)
            .iter()
            .map(|d| d.validator_sync_committee_indices.len())
            .sum();
        assert!(held < 32);
        assert!(wide.sync_duties(3).iter().all(|d| d.validator_index < 100));
    }
}
