//! Partial signatures as operators exchange them: every partial signature one operator makes
//! in one phase of one slot travels in one message, so a slot costs each operator one message
//! per phase however many validators the cluster runs.
//!
//! A message does not name its sender: the authenticated network does, and the receiver takes
//! the sender's share index from the peer's identity, so an operator cannot speak for another.

use crate::{Root, keys::Signature};
use bytes::BufMut;
use commonware_codec::{
    Buf, EncodeSize, Error as CodecError, FixedSize, RangeCfg, Read, ReadExt, Write,
};

/// Which half of a duty a partial signature belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Before agreement: RANDAO reveals and selection proofs.
    PreConsensus,
    /// After finalization: the decided attestations, blocks and aggregates.
    PostConsensus,
}

impl Phase {
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::PreConsensus => "pre-consensus",
            Self::PostConsensus => "post-consensus",
        }
    }
}

/// One validator's share signature over one signing root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartialSignature {
    pub validator_index: u64,
    pub signing_root: Root,
    pub signature: Signature,
}

impl Write for PartialSignature {
    fn write(&self, buf: &mut impl BufMut) {
        self.validator_index.write(buf);
        self.signing_root.write(buf);
        self.signature.write(buf);
    }
}

impl FixedSize for PartialSignature {
    const SIZE: usize = 8 + 32 + Signature::SIZE;
}

impl Read for PartialSignature {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            validator_index: u64::read(buf)?,
            signing_root: Root::read(buf)?,
            // Decoding checks the point is on the curve and in the right subgroup.
            signature: Signature::read(buf)?,
        })
    }
}

/// All partial signatures one operator made in one phase of one slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartialSignatures {
    pub slot: u64,
    pub phase: Phase,
    pub signatures: Vec<PartialSignature>,
}

impl PartialSignatures {
    /// The largest message that carries `max_signatures` entries.
    pub const fn max_encode_size(max_signatures: usize) -> usize {
        8 + 1 + 5 + max_signatures * PartialSignature::SIZE
    }
}

impl Write for PartialSignatures {
    fn write(&self, buf: &mut impl BufMut) {
        self.slot.write(buf);
        let phase: u8 = match self.phase {
            Phase::PreConsensus => 0,
            Phase::PostConsensus => 1,
        };
        phase.write(buf);
        self.signatures.write(buf);
    }
}

impl EncodeSize for PartialSignatures {
    fn encode_size(&self) -> usize {
        8 + 1 + self.signatures.encode_size()
    }
}

impl Read for PartialSignatures {
    /// The most entries one message may carry: what the cluster's validators can sign in one
    /// phase of one slot. A peer that sends more is cut off before anything is allocated.
    type Cfg = usize;
    fn read_cfg(buf: &mut impl Buf, max_signatures: &usize) -> Result<Self, CodecError> {
        let slot = u64::read(buf)?;
        let phase = match u8::read(buf)? {
            0 => Phase::PreConsensus,
            1 => Phase::PostConsensus,
            other => return Err(CodecError::InvalidEnum(other)),
        };
        let signatures =
            Vec::<PartialSignature>::read_cfg(buf, &(RangeCfg::new(1..=*max_signatures), ()))?;
        Ok(Self {
            slot,
            phase,
            signatures,
        })
    }
}

/// One entry of a [`PartialSignatures`] message before its point is decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UncheckedPartial {
    pub validator_index: u64,
    pub signing_root: Root,
    /// The compressed G2 point as sent: neither decompressed nor subgroup-checked yet.
    pub signature: [u8; Signature::SIZE],
}

/// A [`PartialSignatures`] message whose header and length are checked but whose points are
/// not decoded.
///
/// Decoding a point (decompression and subgroup check) costs about 100 µs, and a message may
/// carry thousands: decoding a whole message before knowing whether its slot, validators and
/// roots are any use would let one peer buy seconds of the runner's CPU per message. A
/// receiver reads this first, drops what it cannot use, and decodes only the points it needs.
#[derive(Clone, Debug)]
pub struct UncheckedPartials {
    pub slot: u64,
    pub phase: Phase,
    entries: bytes::Bytes,
}

impl UncheckedPartials {
    /// Reads the header and checks that exactly `1..=max_signatures` whole entries follow,
    /// without looking at any entry: constant work whatever the message holds.
    pub fn read(mut buf: impl Buf, max_signatures: usize) -> Result<Self, CodecError> {
        let slot = u64::read(&mut buf)?;
        let phase = match u8::read(&mut buf)? {
            0 => Phase::PreConsensus,
            1 => Phase::PostConsensus,
            other => return Err(CodecError::InvalidEnum(other)),
        };
        let count = usize::read_cfg(&mut buf, &RangeCfg::new(1..=max_signatures))?;
        let size = count * PartialSignature::SIZE;
        if buf.remaining() < size {
            return Err(CodecError::EndOfBuffer);
        }
        if buf.remaining() > size {
            return Err(CodecError::ExtraData(buf.remaining() - size));
        }
        Ok(Self {
            slot,
            phase,
            entries: buf.copy_to_bytes(size),
        })
    }

    /// How many entries the message carries.
    pub fn len(&self) -> usize {
        self.entries.len() / PartialSignature::SIZE
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in order, points still compressed.
    pub fn iter(&self) -> impl Iterator<Item = UncheckedPartial> + '_ {
        self.entries
            .chunks_exact(PartialSignature::SIZE)
            .map(|entry| {
                let (index, rest) = entry.split_at(8);
                let (root, signature) = rest.split_at(32);
                let mut validator_index = [0u8; 8];
                validator_index.copy_from_slice(index);
                let mut root_bytes = [0u8; 32];
                root_bytes.copy_from_slice(root);
                let mut point = [0u8; Signature::SIZE];
                point.copy_from_slice(signature);
                UncheckedPartial {
                    validator_index: u64::from_be_bytes(validator_index),
                    signing_root: commonware_cryptography::sha256::Digest(root_bytes),
                    signature: point,
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{interop_secret, sign};
    use commonware_codec::{Decode, Encode};
    use commonware_cryptography::{Hasher, Sha256};

    fn message(entries: usize) -> PartialSignatures {
        let root = Sha256::hash(&[b"root"]);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(root.as_ref());
        PartialSignatures {
            slot: 9,
            phase: Phase::PostConsensus,
            signatures: (0..entries as u64)
                .map(|v| PartialSignature {
                    validator_index: v,
                    signing_root: root,
                    signature: sign(&interop_secret(v), &bytes),
                })
                .collect(),
        }
    }

    #[test]
    fn roundtrips_within_its_bound() {
        let m = message(3);
        let bytes = m.encode();
        assert_eq!(bytes.len(), m.encode_size());
        assert!(bytes.len() <= PartialSignatures::max_encode_size(3));
        assert_eq!(PartialSignatures::decode_cfg(bytes, &3).unwrap(), m);
    }

    #[test]
    fn unchecked_reads_the_same_entries_without_decoding_points() {
        let m = message(3);
        let unchecked = UncheckedPartials::read(m.encode(), 3).unwrap();
        assert_eq!((unchecked.slot, unchecked.phase), (m.slot, m.phase));
        let entries: Vec<UncheckedPartial> = unchecked.iter().collect();
        assert_eq!(entries.len(), 3);
        for (entry, partial) in entries.iter().zip(&m.signatures) {
            assert_eq!(entry.validator_index, partial.validator_index);
            assert_eq!(entry.signing_root, partial.signing_root);
            assert_eq!(entry.signature[..], partial.signature.encode()[..]);
        }
        // Bad points pass (they are decoded later, if ever); bad framing does not.
        let bytes = m.encode();
        let mut corrupted = bytes.to_vec();
        let last = corrupted.len() - 1;
        corrupted[last] ^= 0xff;
        assert!(UncheckedPartials::read(bytes::Bytes::from(corrupted), 3).is_ok());
        assert!(UncheckedPartials::read(bytes.clone(), 2).is_err());
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(UncheckedPartials::read(bytes::Bytes::from(long), 3).is_err());
        assert!(UncheckedPartials::read(bytes.slice(..bytes.len() - 1), 3).is_err());
    }

    #[test]
    fn rejects_too_many_entries_empty_messages_and_bad_points() {
        let bytes = message(3).encode();
        assert!(PartialSignatures::decode_cfg(bytes.clone(), &2).is_err());
        assert!(PartialSignatures::decode_cfg(message(0).encode(), &2).is_err());
        // A signature that is not a valid G2 point is refused at decode.
        let mut corrupted = bytes.to_vec();
        let last = corrupted.len() - 1;
        corrupted[last] ^= 0xff;
        assert!(PartialSignatures::decode_cfg(corrupted, &3).is_err());
        // Trailing bytes and truncation.
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(PartialSignatures::decode_cfg(long, &3).is_err());
        assert!(PartialSignatures::decode_cfg(bytes.slice(..bytes.len() - 1), &3).is_err());
        let mut phase = bytes.to_vec();
        phase[8] = 7;
        assert!(PartialSignatures::decode_cfg(phase, &3).is_err());
    }
}
