//! Sync-committee duties and the objects they sign: the chain parameters that shape them
//! ([`SyncCommitteeSpec`]), a validator's place in the sync committee ([`SyncDuty`]), the
//! contribution an aggregator publishes ([`SyncCommitteeContribution`]) and the signed objects
//! that go to the beacon node.
//!
//! Sync committee messages need no value of their own: every member signs the block root the
//! slot's committee duty decided (the attestation data's `beacon_block_root`), so they ride on
//! the committee duty. A contribution is a value of its own, agreed like an aggregate.

use crate::{
    Root,
    duty::{read_bits, write_bits},
    keys::Signature,
};
use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, Read, ReadExt, Write};

/// `EPOCHS_PER_SYNC_COMMITTEE_PERIOD` of the mainnet preset.
pub const EPOCHS_PER_SYNC_COMMITTEE_PERIOD_MAINNET: u64 = 256;
/// `EPOCHS_PER_SYNC_COMMITTEE_PERIOD` of the minimal preset (what local dev chains run).
pub const EPOCHS_PER_SYNC_COMMITTEE_PERIOD_MINIMAL: u64 = 8;
/// `TARGET_AGGREGATORS_PER_SYNC_SUBCOMMITTEE`, the same in every preset.
pub const TARGET_AGGREGATORS_PER_SYNC_SUBCOMMITTEE: u64 = 16;
/// Most subnets a sync committee may be split in: `SYNC_COMMITTEE_SUBNET_COUNT` is 4 in every
/// preset; this bounds what a peer's contribution list may carry.
pub const MAX_SYNC_COMMITTEE_SUBNETS: u64 = 4;
/// Most members one sync subcommittee may have: mainnet's 512 / 4. Bounds a contribution's bits.
pub const MAX_SYNC_SUBCOMMITTEE_SIZE: u64 = 128;

/// The sync-committee parameters of the chain. They differ between presets (a real beacon
/// node's `config/spec` says which), so they travel with the other chain parameters in the
/// [`SlotClock`](crate::SlotClock) instead of being constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncCommitteeSpec {
    /// `SYNC_COMMITTEE_SIZE`: members of one sync committee (a validator may hold several
    /// positions).
    pub size: u64,
    /// `SYNC_COMMITTEE_SUBNET_COUNT`: subcommittees the committee is split in.
    pub subnet_count: u64,
    /// `EPOCHS_PER_SYNC_COMMITTEE_PERIOD`: how long one sync committee serves.
    pub epochs_per_period: u64,
}

impl SyncCommitteeSpec {
    pub const MAINNET: Self = Self {
        size: 512,
        subnet_count: 4,
        epochs_per_period: EPOCHS_PER_SYNC_COMMITTEE_PERIOD_MAINNET,
    };

    pub const MINIMAL: Self = Self {
        size: 32,
        subnet_count: 4,
        epochs_per_period: EPOCHS_PER_SYNC_COMMITTEE_PERIOD_MINIMAL,
    };

    /// Checks the invariants the other methods and the codec bounds rely on.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.subnet_count == 0 || self.subnet_count > MAX_SYNC_COMMITTEE_SUBNETS {
            return Err("sync committee subnet count must be within 1..=4");
        }
        if self.size == 0 || !self.size.is_multiple_of(self.subnet_count) {
            return Err("sync committee size must be a positive multiple of the subnet count");
        }
        if self.subcommittee_size() > MAX_SYNC_SUBCOMMITTEE_SIZE {
            return Err("sync subcommittee size must be at most 128");
        }
        if self.epochs_per_period == 0 {
            return Err("epochs per sync committee period must be greater than zero");
        }
        Ok(())
    }

    /// Members of one subcommittee: the length of a contribution's aggregation bits.
    pub const fn subcommittee_size(&self) -> u64 {
        if self.subnet_count == 0 {
            return self.size;
        }
        self.size / self.subnet_count
    }

    /// The subcommittee a committee position belongs to.
    pub const fn subcommittee_of(&self, committee_index: u64) -> u64 {
        let size = self.subcommittee_size();
        if size == 0 {
            return 0;
        }
        committee_index / size
    }

    /// The sync committee period of `epoch`.
    pub const fn period_of(&self, epoch: u64) -> u64 {
        if self.epochs_per_period == 0 {
            return epoch;
        }
        epoch / self.epochs_per_period
    }

    /// The first epoch of `period`.
    pub const fn first_epoch(&self, period: u64) -> u64 {
        period.saturating_mul(self.epochs_per_period)
    }

    /// `max(1, SYNC_COMMITTEE_SIZE / SYNC_COMMITTEE_SUBNET_COUNT /
    /// TARGET_AGGREGATORS_PER_SYNC_SUBCOMMITTEE)`: one in this many selection proofs selects
    /// its validator as a subcommittee's aggregator (every member in the minimal preset).
    pub fn aggregator_modulo(&self) -> u64 {
        (self.subcommittee_size() / TARGET_AGGREGATORS_PER_SYNC_SUBCOMMITTEE).max(1)
    }
}

/// One validator's membership in the sync committee of a period, as the Beacon API's
/// `POST /eth/v1/validator/duties/sync/{epoch}` reports it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SyncDuty {
    pub validator_index: u64,
    /// The validator's positions in the sync committee (`0..SYNC_COMMITTEE_SIZE`); a validator
    /// can hold more than one.
    pub validator_sync_committee_indices: Vec<u64>,
}

impl SyncDuty {
    /// The subcommittees the validator's positions fall in, ascending and without repeats
    /// (positions beyond the committee are dropped: a beacon node's answer is not trusted to
    /// be in range).
    pub fn subcommittees(&self, spec: &SyncCommitteeSpec) -> Vec<u64> {
        let mut subcommittees: Vec<u64> = self
            .validator_sync_committee_indices
            .iter()
            .filter(|index| **index < spec.size)
            .map(|index| spec.subcommittee_of(*index))
            .collect();
        subcommittees.sort_unstable();
        subcommittees.dedup();
        subcommittees
    }
}

/// A `SyncCommitteeContribution`: one subcommittee's aggregate of the sync committee messages
/// for `beacon_block_root` in `slot`, as a beacon node hands it to an aggregator.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SyncCommitteeContribution {
    pub slot: u64,
    pub beacon_block_root: Root,
    pub subcommittee_index: u64,
    /// One bit per subcommittee member (`Bitvector[SYNC_COMMITTEE_SIZE // SUBNET_COUNT]`).
    pub aggregation_bits: Vec<bool>,
    pub signature: [u8; 96],
}

impl SyncCommitteeContribution {
    pub const MAX_ENCODE_SIZE: usize =
        8 + 32 + 8 + 2 + (MAX_SYNC_SUBCOMMITTEE_SIZE as usize).div_ceil(8) + 96;
}

impl Write for SyncCommitteeContribution {
    fn write(&self, buf: &mut impl BufMut) {
        self.slot.write(buf);
        self.beacon_block_root.write(buf);
        self.subcommittee_index.write(buf);
        write_bits(&self.aggregation_bits, buf);
        buf.put_slice(&self.signature);
    }
}

impl EncodeSize for SyncCommitteeContribution {
    fn encode_size(&self) -> usize {
        8 + 32 + 8 + 2 + self.aggregation_bits.len().div_ceil(8) + 96
    }
}

impl Read for SyncCommitteeContribution {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let slot = u64::read(buf)?;
        let beacon_block_root = Root::read(buf)?;
        let subcommittee_index = u64::read(buf)?;
        if subcommittee_index >= MAX_SYNC_COMMITTEE_SUBNETS {
            return Err(CodecError::Invalid(
                "SyncCommitteeContribution",
                "subcommittee index out of range",
            ));
        }
        let aggregation_bits = read_bits(
            buf,
            MAX_SYNC_SUBCOMMITTEE_SIZE as usize,
            "SyncCommitteeContribution",
        )?;
        if buf.remaining() < 96 {
            return Err(CodecError::EndOfBuffer);
        }
        let mut signature = [0u8; 96];
        buf.copy_to_slice(&mut signature);
        Ok(Self {
            slot,
            beacon_block_root,
            subcommittee_index,
            aggregation_bits,
            signature,
        })
    }
}

/// A `SyncCommitteeMessage`: one member's signature over the slot's head block root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedSyncCommitteeMessage {
    pub slot: u64,
    pub beacon_block_root: Root,
    pub validator_index: u64,
    pub signature: Signature,
}

/// A `SignedContributionAndProof`, flattened as [`SignedAggregate`](crate::SignedAggregate) is:
/// the `ContributionAndProof` message's fields, then the aggregator's signature over it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedContributionAndProof {
    pub aggregator_index: u64,
    pub contribution: SyncCommitteeContribution,
    pub selection_proof: Signature,
    pub signature: Signature,
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{DecodeExt, Encode};

    fn contribution(bits: usize) -> SyncCommitteeContribution {
        SyncCommitteeContribution {
            slot: 17,
            beacon_block_root: commonware_cryptography::sha256::Digest([3; 32]),
            subcommittee_index: 2,
            aggregation_bits: (0..bits).map(|i| i % 3 == 0).collect(),
            signature: [9; 96],
        }
    }

    #[test]
    fn presets_are_valid_and_shape_subcommittees() {
        for spec in [SyncCommitteeSpec::MAINNET, SyncCommitteeSpec::MINIMAL] {
            assert_eq!(spec.validate(), Ok(()));
        }
        assert_eq!(SyncCommitteeSpec::MAINNET.subcommittee_size(), 128);
        assert_eq!(SyncCommitteeSpec::MAINNET.aggregator_modulo(), 8);
        assert_eq!(SyncCommitteeSpec::MINIMAL.subcommittee_size(), 8);
        assert_eq!(SyncCommitteeSpec::MINIMAL.aggregator_modulo(), 1);
        assert_eq!(SyncCommitteeSpec::MINIMAL.period_of(15), 1);
        assert_eq!(SyncCommitteeSpec::MAINNET.period_of(255), 0);
        let bad = SyncCommitteeSpec {
            size: 30,
            ..SyncCommitteeSpec::MINIMAL
        };
        assert!(bad.validate().is_err());
        let too_many_subnets = SyncCommitteeSpec {
            size: 64,
            subnet_count: 8,
            ..SyncCommitteeSpec::MINIMAL
        };
        assert!(too_many_subnets.validate().is_err());
    }

    #[test]
    fn subcommittees_are_sorted_unique_and_in_range() {
        let duty = SyncDuty {
            validator_index: 4,
            validator_sync_committee_indices: vec![31, 0, 7, 9, 32, 1000],
        };
        assert_eq!(
            duty.subcommittees(&SyncCommitteeSpec::MINIMAL),
            vec![0, 1, 3]
        );
        assert_eq!(duty.subcommittees(&SyncCommitteeSpec::MAINNET), vec![0]);
    }

    #[test]
    fn contribution_roundtrips_within_its_bound() {
        for bits in [8, 128] {
            let c = contribution(bits);
            let bytes = c.encode();
            assert_eq!(bytes.len(), c.encode_size());
            assert!(bytes.len() <= SyncCommitteeContribution::MAX_ENCODE_SIZE);
            assert_eq!(SyncCommitteeContribution::decode(bytes).unwrap(), c);
        }
    }

    #[test]
    fn malformed_contributions_are_rejected() {
        assert!(SyncCommitteeContribution::decode(contribution(129).encode()).is_err());
        assert!(SyncCommitteeContribution::decode(contribution(0).encode()).is_err());
        let mut out_of_range = contribution(8);
        out_of_range.subcommittee_index = 4;
        assert!(SyncCommitteeContribution::decode(out_of_range.encode()).is_err());
        let good = contribution(8).encode();
        assert!(SyncCommitteeContribution::decode(good.slice(..good.len() - 1)).is_err());
        // Padding bits set: 5 bits in one byte, bit 7 set.
        let mut padded = contribution(5).encode().to_vec();
        padded[8 + 32 + 8 + 2] |= 0x80;
        assert!(SyncCommitteeContribution::decode(padded).is_err());
    }
}
