//! The values the cluster decides for duties: attestation data, block proposals, aggregates,
//! and the decided value that carries one of them.

use super::*;
use bytes::{BufMut, Bytes};
use commonware_codec::Buf;
use commonware_codec::{EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, Write};

use crate::sync::{MAX_SYNC_COMMITTEE_SUBNETS, SyncCommitteeContribution};

/// An Ethereum `Checkpoint` (epoch, root).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Checkpoint {
    pub epoch: u64,
    pub root: Root,
}

impl Write for Checkpoint {
    fn write(&self, buf: &mut impl BufMut) {
        self.epoch.write(buf);
        self.root.write(buf);
    }
}
impl EncodeSize for Checkpoint {
    fn encode_size(&self) -> usize {
        8 + 32
    }
}
impl Read for Checkpoint {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            epoch: u64::read(buf)?,
            root: Root::read(buf)?,
        })
    }
}

/// An Ethereum `AttestationData`. Since Electra `index` is always 0, so one value serves every
/// attesting validator of the slot: the whole committee duty agrees on one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttestationData {
    pub slot: u64,
    pub index: u64,
    pub beacon_block_root: Root,
    pub source: Checkpoint,
    pub target: Checkpoint,
}

impl Write for AttestationData {
    fn write(&self, buf: &mut impl BufMut) {
        self.slot.write(buf);
        self.index.write(buf);
        self.beacon_block_root.write(buf);
        self.source.write(buf);
        self.target.write(buf);
    }
}
impl EncodeSize for AttestationData {
    fn encode_size(&self) -> usize {
        8 + 8 + 32 + 40 + 40
    }
}
impl Read for AttestationData {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            slot: u64::read(buf)?,
            index: u64::read(buf)?,
            beacon_block_root: Root::read(buf)?,
            source: Checkpoint::read(buf)?,
            target: Checkpoint::read(buf)?,
        })
    }
}

/// A beacon block as the cluster agrees on it: its header. The body stays with the beacon node
/// that built it; `body_root` binds it (RANDAO reveal included), so signing the header's root
/// signs exactly the block the beacon node will publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockHeader {
    pub slot: u64,
    pub proposer_index: u64,
    pub parent_root: Root,
    pub state_root: Root,
    pub body_root: Root,
}

impl Write for BlockHeader {
    fn write(&self, buf: &mut impl BufMut) {
        self.slot.write(buf);
        self.proposer_index.write(buf);
        self.parent_root.write(buf);
        self.state_root.write(buf);
        self.body_root.write(buf);
    }
}

impl EncodeSize for BlockHeader {
    fn encode_size(&self) -> usize {
        8 + 8 + 32 * 3
    }
}

impl Read for BlockHeader {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            slot: u64::read(buf)?,
            proposer_index: u64::read(buf)?,
            parent_root: Root::read(buf)?,
            state_root: Root::read(buf)?,
            body_root: Root::read(buf)?,
        })
    }
}

/// Largest block (its beacon node's JSON, with blobs from Deneb on) the cluster agrees on. A
/// node that builds a larger one gets the proposal refused with an error, never a panic.
pub const MAX_BLOCK_CONTENTS_BYTES: usize = 4 * 1024 * 1024;
/// Longest fork name a proposal carries (`phase0` … `fulu`, or the devnet's).
pub const MAX_FORK_NAME_BYTES: usize = 16;

/// A block as the proposer's beacon node built it: the header the proposer signs and the
/// node's own JSON of the block (or block contents). The whole block goes through consensus,
/// so every operator can publish it, and every follower checks that the header commits to
/// exactly these contents before voting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockProposal {
    pub header: BlockHeader,
    /// The fork whose shape `contents` has (the API's `version`).
    pub fork: String,
    /// The node's JSON, published unchanged with the signature added. Empty on the devnet,
    /// whose chain keeps the bodies it builds.
    pub contents: Bytes,
}

impl BlockProposal {
    /// The encoding bound of one proposal.
    pub const MAX_ENCODE_SIZE: usize = 112 + 1 + MAX_FORK_NAME_BYTES + 5 + MAX_BLOCK_CONTENTS_BYTES;

    /// A proposal that is only a header (the devnet's blocks).
    pub fn header_only(header: BlockHeader, fork: &str) -> Self {
        Self {
            header,
            fork: fork.to_string(),
            contents: Bytes::new(),
        }
    }
}

impl Write for BlockProposal {
    fn write(&self, buf: &mut impl BufMut) {
        self.header.write(buf);
        Bytes::copy_from_slice(self.fork.as_bytes()).write(buf);
        self.contents.write(buf);
    }
}

impl EncodeSize for BlockProposal {
    fn encode_size(&self) -> usize {
        self.header.encode_size()
            + Bytes::copy_from_slice(self.fork.as_bytes()).encode_size()
            + self.contents.encode_size()
    }
}

impl Read for BlockProposal {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let header = BlockHeader::read(buf)?;
        let fork = Bytes::read_cfg(buf, &RangeCfg::new(0..=MAX_FORK_NAME_BYTES))?;
        let fork = String::from_utf8(fork.to_vec())
            .map_err(|_| CodecError::Invalid("BlockProposal", "fork name is not UTF-8"))?;
        let contents = Bytes::read_cfg(buf, &RangeCfg::new(0..=MAX_BLOCK_CONTENTS_BYTES))?;
        Ok(Self {
            header,
            fork,
            contents,
        })
    }
}

/// Most members one beacon committee may have (`MAX_VALIDATORS_PER_COMMITTEE`).
pub const MAX_COMMITTEE_MEMBERS: usize = 2048;

/// An aggregate attestation as a beacon node hands it to an aggregator: which committee
/// members it covers, their common data and the aggregate of their signatures.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Aggregate {
    pub aggregation_bits: Vec<bool>,
    pub data: AttestationData,
    pub signature: [u8; 96],
}

impl Write for Aggregate {
    fn write(&self, buf: &mut impl BufMut) {
        write_bits(&self.aggregation_bits, buf);
        self.data.write(buf);
        buf.put_slice(&self.signature);
    }
}

/// Writes a bit list as its length (`u16`) and the bits packed little-endian into bytes, the
/// last byte's unused bits zero.
pub(crate) fn write_bits(bits: &[bool], buf: &mut impl BufMut) {
    (bits.len() as u16).write(buf);
    let mut byte = 0u8;
    for (i, bit) in bits.iter().enumerate() {
        if *bit {
            byte |= 1 << (i % 8);
        }
        if i % 8 == 7 {
            buf.put_u8(byte);
            byte = 0;
        }
    }
    if !bits.len().is_multiple_of(8) {
        buf.put_u8(byte);
    }
}

/// Reads what [`write_bits`] wrote, refusing an empty list, more than `max` bits (before
/// allocating), and set padding bits (so one list has one encoding).
pub(crate) fn read_bits(
    buf: &mut impl Buf,
    max: usize,
    what: &'static str,
) -> Result<Vec<bool>, CodecError> {
    let length = u16::read(buf)? as usize;
    if length == 0 || length > max {
        return Err(CodecError::InvalidLength(length));
    }
    let bytes = length.div_ceil(8);
    if buf.remaining() < bytes {
        return Err(CodecError::EndOfBuffer);
    }
    let mut bits = Vec::with_capacity(length);
    for i in 0..bytes {
        let byte = buf.get_u8();
        for bit in 0..8 {
            let position = i * 8 + bit;
            let set = byte & (1 << bit) != 0;
            if position < length {
                bits.push(set);
            } else if set {
                return Err(CodecError::Invalid(what, "padding bits set"));
            }
        }
    }
    Ok(bits)
}

impl EncodeSize for Aggregate {
    fn encode_size(&self) -> usize {
        2 + self.aggregation_bits.len().div_ceil(8) + self.data.encode_size() + 96
    }
}

impl Read for Aggregate {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let aggregation_bits = read_bits(buf, MAX_COMMITTEE_MEMBERS, "Aggregate")?;
        let data = AttestationData::read(buf)?;
        if buf.remaining() < 96 {
            return Err(CodecError::EndOfBuffer);
        }
        let mut signature = [0u8; 96];
        buf.copy_to_slice(&mut signature);
        Ok(Self {
            aggregation_bits,
            data,
            signature,
        })
    }
}

impl Aggregate {
    pub const MAX_ENCODE_SIZE: usize = 2 + MAX_COMMITTEE_MEMBERS / 8 + 128 + 96;
}

/// The value a duty is decided on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecidedValue {
    /// A committee duty: the attestation data every attester of the slot signs.
    Attestation(AttestationData),
    /// A proposer duty: the block built with the cluster's RANDAO reveal.
    Block(Box<BlockProposal>),
    /// An aggregator duty: the aggregate the cluster's aggregator publishes.
    Aggregate(Box<Aggregate>),
    /// A sync committee contribution duty: one contribution per subcommittee the validator
    /// aggregates for, ascending by subcommittee index.
    Contributions(Vec<SyncCommitteeContribution>),
}

impl DecidedValue {
    /// The largest encoding of a contribution list.
    pub(super) const MAX_CONTRIBUTIONS_SIZE: usize =
        5 + MAX_SYNC_COMMITTEE_SUBNETS as usize * SyncCommitteeContribution::MAX_ENCODE_SIZE;

    /// Whether this is the kind of value a duty of `role` signs after consensus. Another kind
    /// would have honest shares sign what the duty is not for: a second attestation for a
    /// validator (its honest one then refused as a double vote), the slot's attestation data
    /// overwritten by an aggregator's, a block header for a validator that is the real
    /// proposer. Followers refuse such a block and runners refuse to sign such a decision.
    pub fn fits_role(&self, role: Role) -> bool {
        matches!(
            (role, self),
            (Role::Committee, DecidedValue::Attestation(_))
                | (Role::Proposer, DecidedValue::Block(_))
                | (Role::Aggregator, DecidedValue::Aggregate(_))
                | (
                    Role::SyncCommitteeContribution,
                    DecidedValue::Contributions(_)
                )
        )
    }
}

impl Write for DecidedValue {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            Self::Attestation(data) => {
                0u8.write(buf);
                data.write(buf);
            }
            Self::Block(block) => {
                1u8.write(buf);
                block.write(buf);
            }
            Self::Aggregate(aggregate) => {
                2u8.write(buf);
                aggregate.write(buf);
            }
            Self::Contributions(contributions) => {
                3u8.write(buf);
                contributions.write(buf);
            }
        }
    }
}

impl EncodeSize for DecidedValue {
    fn encode_size(&self) -> usize {
        1 + match self {
            Self::Attestation(data) => data.encode_size(),
            Self::Block(block) => block.encode_size(),
            Self::Aggregate(aggregate) => aggregate.encode_size(),
            Self::Contributions(contributions) => contributions.encode_size(),
        }
    }
}

impl Read for DecidedValue {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        match u8::read(buf)? {
            0 => Ok(Self::Attestation(AttestationData::read(buf)?)),
            1 => Ok(Self::Block(Box::new(BlockProposal::read(buf)?))),
            2 => Ok(Self::Aggregate(Box::new(Aggregate::read(buf)?))),
            3 => Ok(Self::Contributions(Vec::read_cfg(
                buf,
                &(RangeCfg::new(1..=MAX_SYNC_COMMITTEE_SUBNETS as usize), ()),
            )?)),
            other => Err(CodecError::InvalidEnum(other)),
        }
    }
}
