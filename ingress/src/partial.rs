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
