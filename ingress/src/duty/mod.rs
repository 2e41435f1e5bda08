//! Duties, their identifiers, and the values the cluster decides for them.

mod value;
pub use value::*;

use bytes::BufMut;
use commonware_codec::Buf;
use commonware_codec::{EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, Write};
use std::fmt;

use crate::{MAX_OPERATORS, sync::SyncDuty};

/// A 32-byte SSZ root (block root, checkpoint root, signing root).
pub type Root = commonware_cryptography::sha256::Digest;

/// An operator's 1-based identifier inside its cluster, as SSV numbers them.
pub type OperatorId = u64;

/// The role a duty plays, named as the SSV node names it in `duty_id`s and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// All attestations (and sync committee messages) of the cluster's validators in one slot.
    Committee,
    Proposer,
    Aggregator,
    SyncCommitteeContribution,
}

impl Role {
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Committee => "COMMITTEE",
            Self::Proposer => "PROPOSER",
            Self::Aggregator => "AGGREGATOR",
            Self::SyncCommitteeContribution => "SYNC_COMMITTEE_CONTRIBUTION",
        }
    }

    const fn tag(&self) -> u8 {
        match self {
            Self::Committee => 0,
            Self::Proposer => 1,
            Self::Aggregator => 2,
            Self::SyncCommitteeContribution => 3,
        }
    }

    fn from_tag(tag: u8) -> Result<Self, CodecError> {
        Ok(match tag {
            0 => Self::Committee,
            1 => Self::Proposer,
            2 => Self::Aggregator,
            3 => Self::SyncCommitteeContribution,
            other => return Err(CodecError::InvalidEnum(other)),
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operators of a cluster, sorted and deduplicated: a committee duty's identity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommitteeId(Vec<OperatorId>);

impl CommitteeId {
    /// Builds the id from any order of operator ids; fails on an empty or oversized set.
    pub fn new(mut operators: Vec<OperatorId>) -> Result<Self, CodecError> {
        operators.sort_unstable();
        operators.dedup();
        if operators.is_empty() || operators.len() > MAX_OPERATORS {
            return Err(CodecError::InvalidLength(operators.len()));
        }
        Ok(Self(operators))
    }

    pub fn operators(&self) -> &[OperatorId] {
        &self.0
    }
}

impl fmt::Display for CommitteeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, op) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("_")?;
            }
            write!(f, "{op}")?;
        }
        Ok(())
    }
}

impl Write for CommitteeId {
    fn write(&self, buf: &mut impl BufMut) {
        self.0.write(buf);
    }
}

impl EncodeSize for CommitteeId {
    fn encode_size(&self) -> usize {
        self.0.encode_size()
    }
}

impl Read for CommitteeId {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let operators = Vec::<OperatorId>::read_cfg(buf, &(RangeCfg::new(1..=MAX_OPERATORS), ()))?;
        // Only the canonical (sorted, unique) form is accepted, so one id has one encoding.
        if operators.windows(2).any(|w| w[0] >= w[1]) {
            return Err(CodecError::Invalid(
                "CommitteeId",
                "operators not sorted and unique",
            ));
        }
        Ok(Self(operators))
    }
}

/// Whom a duty is for: one validator, or the whole cluster's committee for a slot.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DutyTarget {
    Validator(u64),
    Committee(CommitteeId),
}

/// Identifies one duty across the cluster. Its `Display` is the SSV `duty_id`:
/// `{ROLE}-e{epoch}-s{slot}-v{validator_index}` or `COMMITTEE-{op1_op2_…}-e{epoch}-s{slot}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DutyId {
    /// Slot first so that ordered collections of ids sort by time.
    pub slot: u64,
    pub epoch: u64,
    pub role: Role,
    pub target: DutyTarget,
}

impl DutyId {
    /// The committee duty of `committee` in `slot`.
    pub fn committee(committee: CommitteeId, epoch: u64, slot: u64) -> Self {
        Self {
            slot,
            epoch,
            role: Role::Committee,
            target: DutyTarget::Committee(committee),
        }
    }

    /// A per-validator duty; `role` must not be [`Role::Committee`].
    pub fn validator(role: Role, epoch: u64, slot: u64, validator_index: u64) -> Self {
        debug_assert_ne!(role, Role::Committee, "committee duties name a committee");
        Self {
            slot,
            epoch,
            role,
            target: DutyTarget::Validator(validator_index),
        }
    }

    /// The smallest id of `slot`: `first_of_slot(s)..first_of_slot(s + 1)` ranges over every
    /// duty of slot `s` in an ordered collection. It relies on the derived order (fields
    /// compared in declaration order, slot first, then the smallest epoch, role and target);
    /// the test `first_of_slot_bounds_every_duty_of_its_slot` keeps the two together.
    pub const fn first_of_slot(slot: u64) -> Self {
        Self {
            slot,
            epoch: 0,
            role: Role::Committee,
            target: DutyTarget::Validator(0),
        }
    }
}

impl fmt::Display for DutyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            DutyTarget::Committee(committee) => {
                write!(
                    f,
                    "{}-{committee}-e{}-s{}",
                    self.role, self.epoch, self.slot
                )
            }
            DutyTarget::Validator(index) => {
                write!(f, "{}-e{}-s{}-v{index}", self.role, self.epoch, self.slot)
            }
        }
    }
}

impl Write for DutyId {
    fn write(&self, buf: &mut impl BufMut) {
        self.slot.write(buf);
        self.epoch.write(buf);
        self.role.tag().write(buf);
        match &self.target {
            DutyTarget::Validator(index) => {
                0u8.write(buf);
                index.write(buf);
            }
            DutyTarget::Committee(committee) => {
                1u8.write(buf);
                committee.write(buf);
            }
        }
    }
}

impl EncodeSize for DutyId {
    fn encode_size(&self) -> usize {
        8 + 8
            + 1
            + 1
            + match &self.target {
                DutyTarget::Validator(_) => 8,
                DutyTarget::Committee(c) => c.encode_size(),
            }
    }
}

impl Read for DutyId {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let slot = u64::read(buf)?;
        let epoch = u64::read(buf)?;
        let role = Role::from_tag(u8::read(buf)?)?;
        let target = match u8::read(buf)? {
            0 => DutyTarget::Validator(u64::read(buf)?),
            1 => DutyTarget::Committee(CommitteeId::read(buf)?),
            other => return Err(CodecError::InvalidEnum(other)),
        };
        // A committee role always names a committee and nothing else does.
        if (role == Role::Committee) != matches!(target, DutyTarget::Committee(_)) {
            return Err(CodecError::Invalid("DutyId", "role does not match target"));
        }
        Ok(Self {
            slot,
            epoch,
            role,
            target,
        })
    }
}

/// One validator's attester duty for an epoch, as a beacon node's duties endpoint reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttesterDuty {
    pub slot: u64,
    pub validator_index: u64,
    pub committee_index: u64,
    pub committee_length: u64,
    pub validator_committee_index: u64,
}

/// A block proposal the beacon chain assigns to one of the cluster's validators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProposerDuty {
    pub slot: u64,
    pub validator_index: u64,
}

/// A duty handed from the scheduler to the runner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Duty {
    pub id: DutyId,
    /// For a committee duty: every attester duty of the cluster's validators in the slot. For
    /// an aggregator duty: the aggregator's own attester duty (its committee's length decides
    /// whether its selection proof makes it an aggregator). Empty for a proposer duty.
    pub attesters: Vec<AttesterDuty>,
    /// For a committee duty: the sync committee duties of the cluster's validators that sign
    /// a sync committee message in the slot. For a sync committee contribution duty: the
    /// contributor's own sync duty (its positions name the subcommittees it may aggregate).
    /// Empty otherwise.
    pub sync: Vec<SyncDuty>,
}

impl Duty {
    pub fn slot(&self) -> u64 {
        self.id.slot
    }
    pub fn role(&self) -> Role {
        self.id.role
    }
}

/// A duty and the value the cluster decided for it: what a cluster block carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub duty: DutyId,
    pub value: DecidedValue,
}

impl Write for Decision {
    fn write(&self, buf: &mut impl BufMut) {
        self.duty.write(buf);
        self.value.write(buf);
    }
}

impl EncodeSize for Decision {
    fn encode_size(&self) -> usize {
        self.duty.encode_size() + self.value.encode_size()
    }
}

impl Read for Decision {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let duty = DutyId::read(buf)?;
        let value = DecidedValue::read(buf)?;
        let fits = match (&duty.role, &duty.target, &value) {
            (Role::Committee, _, DecidedValue::Attestation(data)) => data.slot == duty.slot,
            (Role::Proposer, DutyTarget::Validator(v), DecidedValue::Block(block)) => {
                block.header.slot == duty.slot && block.header.proposer_index == *v
            }
            (Role::Aggregator, _, DecidedValue::Aggregate(aggregate)) => {
                aggregate.data.slot == duty.slot
            }
            // Ascending subcommittees: one contribution each, and one encoding per list.
            (Role::SyncCommitteeContribution, _, DecidedValue::Contributions(contributions)) => {
                contributions.iter().all(|c| c.slot == duty.slot)
                    && contributions
                        .windows(2)
                        .all(|w| w[0].subcommittee_index < w[1].subcommittee_index)
            }
            _ => false,
        };
        if !fits {
            return Err(CodecError::Invalid(
                "Decision",
                "value does not fit the duty",
            ));
        }
        Ok(Self { duty, value })
    }
}

impl Decision {
    /// Largest encoding of a duty id: a committee of [`MAX_OPERATORS`].
    const MAX_DUTY_SIZE: usize = 8 + 8 + 1 + 1 + 1 + 8 * MAX_OPERATORS;

    /// Largest encoding of one decision that is not a block proposal: the largest duty id with
    /// the largest such value (a full committee's aggregate, or a slot's contributions). Blocks
    /// are bounded apart, by [`Decision::MAX_PROPOSAL_ENCODE_SIZE`], and a cluster block carries
    /// few of them.
    pub const MAX_ENCODE_SIZE: usize = Self::MAX_DUTY_SIZE
        + 1
        + if Aggregate::MAX_ENCODE_SIZE > DecidedValue::MAX_CONTRIBUTIONS_SIZE {
            Aggregate::MAX_ENCODE_SIZE
        } else {
            DecidedValue::MAX_CONTRIBUTIONS_SIZE
        };

    /// Largest encoding of a block proposal's decision.
    pub const MAX_PROPOSAL_ENCODE_SIZE: usize =
        Self::MAX_DUTY_SIZE + 1 + BlockProposal::MAX_ENCODE_SIZE;

    pub fn is_proposal(&self) -> bool {
        matches!(self.value, DecidedValue::Block(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::SyncCommitteeContribution;
    use commonware_codec::{DecodeExt, Encode};
    use commonware_cryptography::{Hasher, Sha256};

    fn committee() -> CommitteeId {
        CommitteeId::new(vec![4, 2, 1, 3]).unwrap()
    }

    fn data(slot: u64) -> AttestationData {
        AttestationData {
            slot,
            index: 0,
            beacon_block_root: Sha256::hash(&[b"head"]),
            source: Checkpoint {
                epoch: 1,
                root: Sha256::hash(&[b"s"]),
            },
            target: Checkpoint {
                epoch: 2,
                root: Sha256::hash(&[b"t"]),
            },
        }
    }

    #[test]
    fn first_of_slot_bounds_every_duty_of_its_slot() {
        let ids = [
            DutyId::committee(committee(), 0, 9),
            DutyId::committee(committee(), 3, 9),
            DutyId::validator(Role::Proposer, 0, 9, 0),
            DutyId::validator(Role::Aggregator, 2, 9, 7),
            DutyId::validator(Role::SyncCommitteeContribution, 2, 9, u64::MAX),
        ];
        for id in &ids {
            assert!(DutyId::first_of_slot(9) <= *id, "{id}");
            assert!(*id < DutyId::first_of_slot(10), "{id}");
            assert!(DutyId::first_of_slot(8) < *id, "{id}");
        }
        let previous = DutyId::committee(committee(), u64::MAX, 8);
        assert!(previous < DutyId::first_of_slot(9));
    }

    #[test]
    fn duty_ids_use_the_ssv_formats() {
        let c = DutyId::committee(committee(), 10, 320);
        assert_eq!(c.to_string(), "COMMITTEE-1_2_3_4-e10-s320");
        let p = DutyId::validator(Role::Proposer, 3, 100, 42);
        assert_eq!(p.to_string(), "PROPOSER-e3-s100-v42");
        let a = DutyId::validator(Role::Aggregator, 0, 5, 7);
        assert_eq!(a.to_string(), "AGGREGATOR-e0-s5-v7");
    }

    #[test]
    fn decision_roundtrips() {
        let d = Decision {
            duty: DutyId::committee(committee(), 0, 9),
            value: DecidedValue::Attestation(data(9)),
        };
        let bytes = d.encode();
        assert_eq!(bytes.len(), d.encode_size());
        assert!(bytes.len() <= Decision::MAX_ENCODE_SIZE);
        assert_eq!(Decision::decode(bytes).unwrap(), d);
    }

    #[test]
    fn malformed_decisions_are_rejected() {
        // Value for another slot than the duty.
        let d = Decision {
            duty: DutyId::committee(committee(), 0, 9),
            value: DecidedValue::Attestation(data(10)),
        };
        assert!(Decision::decode(d.encode()).is_err());
        // Truncated.
        let good = Decision {
            duty: DutyId::committee(committee(), 0, 9),
            value: DecidedValue::Attestation(data(9)),
        }
        .encode();
        assert!(Decision::decode(good.slice(..good.len() - 1)).is_err());
        // Trailing garbage.
        let mut long = good.to_vec();
        long.push(0);
        assert!(Decision::decode(long).is_err());
        // Unsorted committee: only the canonical form is accepted.
        let mut bad = Vec::new();
        9u64.write(&mut bad);
        0u64.write(&mut bad);
        Role::Committee.tag().write(&mut bad);
        1u8.write(&mut bad);
        vec![2u64, 1u64].write(&mut bad);
        DecidedValue::Attestation(data(9)).write(&mut bad);
        assert!(Decision::decode(bad).is_err());
    }

    fn contribution(slot: u64, subcommittee_index: u64) -> SyncCommitteeContribution {
        SyncCommitteeContribution {
            slot,
            beacon_block_root: Sha256::hash(&[b"head"]),
            subcommittee_index,
            aggregation_bits: vec![true; 128],
            signature: [7; 96],
        }
    }

    #[test]
    fn contribution_decisions_roundtrip_and_must_fit_their_duty() {
        let duty = DutyId::validator(Role::SyncCommitteeContribution, 0, 9, 3);
        let full = Decision {
            duty: duty.clone(),
            value: DecidedValue::Contributions((0..4).map(|i| contribution(9, i)).collect()),
        };
        let bytes = full.encode();
        assert_eq!(bytes.len(), full.encode_size());
        assert!(bytes.len() <= Decision::MAX_ENCODE_SIZE);
        assert_eq!(Decision::decode(bytes).unwrap(), full);
        let refused = |value: DecidedValue| {
            let decision = Decision {
                duty: duty.clone(),
                value,
            };
            Decision::decode(decision.encode()).is_err()
        };
        // Another slot, a repeated or unordered subcommittee, none at all, too many.
        assert!(refused(DecidedValue::Contributions(vec![contribution(
            10, 0
        )])));
        assert!(refused(DecidedValue::Contributions(vec![
            contribution(9, 1),
            contribution(9, 1)
        ])));
        assert!(refused(DecidedValue::Contributions(vec![
            contribution(9, 2),
            contribution(9, 1)
        ])));
        assert!(refused(DecidedValue::Contributions(Vec::new())));
        let mut five: Vec<_> = (0..4).map(|i| contribution(9, i)).collect();
        five.push(contribution(9, 3));
        assert!(refused(DecidedValue::Contributions(five)));
        // Contributions for another role's duty.
        let other = Decision {
            duty: DutyId::validator(Role::Aggregator, 0, 9, 3),
            value: DecidedValue::Contributions(vec![contribution(9, 0)]),
        };
        assert!(Decision::decode(other.encode()).is_err());
    }

    #[test]
    fn oversized_committee_is_rejected() {
        let mut buf = Vec::new();
        9u64.write(&mut buf);
        0u64.write(&mut buf);
        0u8.write(&mut buf);
        1u8.write(&mut buf);
        // Claims a million operators: rejected by the length bound before any allocation.
        1_000_000usize.write(&mut buf);
        assert!(DutyId::decode(buf).is_err());
        assert!(CommitteeId::new((1..=14).collect()).is_err());
    }

    #[test]
    fn role_and_target_must_agree() {
        let mut buf = Vec::new();
        9u64.write(&mut buf);
        0u64.write(&mut buf);
        Role::Committee.tag().write(&mut buf);
        0u8.write(&mut buf);
        5u64.write(&mut buf);
        assert!(DutyId::decode(buf).is_err());
    }
}
