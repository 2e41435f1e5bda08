//! The cluster block: one per consensus decision, batching every duty value decided in it.

use bytes::BufMut;
use bytes::Bytes;
use cohort_ingress::Decision;
use commonware_codec::Buf;
use commonware_codec::{EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, Write};
use commonware_consensus::{BoundedBlock, Heightable, types::Height};
use commonware_cryptography::{Digestible, Hasher, Sha256};

use crate::Digest;

/// Slot of the genesis block; real blocks start at slot 0 too, so genesis only differs by height.
pub const GENESIS_SLOT: u64 = 0;

/// Bounds for decoding a block from a peer or from storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockCfg {
    /// Most decisions one block may carry.
    pub max_decisions: usize,
    /// Largest execution payload one block may carry, in bytes.
    pub max_payload_bytes: usize,
}

impl Default for BlockCfg {
    fn default() -> Self {
        Self {
            max_decisions: 256,
            max_payload_bytes: 64 * 1024,
        }
    }
}

/// A cluster block. The digest is computed once (at construction or decode) and kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub parent: Digest,
    pub height: u64,
    /// The beacon slot the leader built this block for.
    pub slot: u64,
    /// Index of the proposing operator in the cluster's ordered identity set.
    pub proposer: u32,
    /// Duty values decided by this block, ordered by duty id, each duty at most once.
    pub decisions: Vec<Decision>,
    /// Opaque execution payload; empty until the executor fills it.
    pub payload: Bytes,
    digest: Digest,
}

impl Block {
    pub fn new(
        parent: Digest,
        height: u64,
        slot: u64,
        proposer: u32,
        mut decisions: Vec<Decision>,
        payload: Bytes,
    ) -> Self {
        decisions.sort_by(|a, b| a.duty.cmp(&b.duty));
        let mut block = Self {
            parent,
            height,
            slot,
            proposer,
            decisions,
            payload,
            digest: Digest::from([0u8; 32]),
        };
        block.digest = block.compute_digest();
        block
    }

    /// The genesis block every operator starts from.
    pub fn genesis() -> Self {
        Self::new(
            Sha256::hash(&[b"cohort-genesis-parent"]),
            0,
            GENESIS_SLOT,
            0,
            Vec::new(),
            Bytes::new(),
        )
    }

    fn compute_digest(&self) -> Digest {
        let mut buf = Vec::with_capacity(self.encode_size());
        self.write(&mut buf);
        Sha256::hash(&[&buf])
    }
}

impl Write for Block {
    fn write(&self, buf: &mut impl BufMut) {
        self.parent.write(buf);
        self.height.write(buf);
        self.slot.write(buf);
        self.proposer.write(buf);
        self.decisions.write(buf);
        self.payload.write(buf);
    }
}

impl EncodeSize for Block {
    fn encode_size(&self) -> usize {
        32 + 8 + 8 + 4 + self.decisions.encode_size() + self.payload.encode_size()
    }
}

impl Read for Block {
    type Cfg = BlockCfg;

    fn read_cfg(buf: &mut impl Buf, cfg: &BlockCfg) -> Result<Self, CodecError> {
        let parent = Digest::read(buf)?;
        let height = u64::read(buf)?;
        let slot = u64::read(buf)?;
        let proposer = u32::read(buf)?;
        let decisions =
            Vec::<Decision>::read_cfg(buf, &(RangeCfg::new(0..=cfg.max_decisions), ()))?;
        // Canonical form: strictly ordered by duty, so no duty is decided twice in one block and
        // one block has exactly one encoding.
        if decisions.windows(2).any(|w| w[0].duty >= w[1].duty) {
            return Err(CodecError::Invalid(
                "Block",
                "decisions not ordered and unique",
            ));
        }
        let payload = Bytes::read_cfg(buf, &RangeCfg::new(0..=cfg.max_payload_bytes))?;
        let mut block = Self {
            parent,
            height,
            slot,
            proposer,
            decisions,
            payload,
            digest: Digest::from([0u8; 32]),
        };
        block.digest = block.compute_digest();
        Ok(block)
    }
}

impl Digestible for Block {
    type Digest = Digest;
    fn digest(&self) -> Digest {
        self.digest
    }
}

impl Heightable for Block {
    fn height(&self) -> Height {
        Height::new(self.height)
    }
}

impl commonware_consensus::Block for Block {
    fn parent(&self) -> Digest {
        self.parent
    }
}

impl BoundedBlock for Block {
    fn max_encode_size(cfg: &BlockCfg) -> usize {
        // Length prefixes are varints of at most 5 bytes for these bounds.
        32 + 8
            + 8
            + 4
            + 5
            + cfg.max_decisions * Decision::MAX_ENCODE_SIZE
            + 5
            + cfg.max_payload_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_ingress::{AttestationData, Checkpoint, CommitteeId, DecidedValue, DutyId};
    use commonware_codec::{Decode, Encode};

    fn decision(slot: u64) -> Decision {
        Decision {
            duty: DutyId::committee(CommitteeId::new(vec![1, 2, 3, 4]).unwrap(), slot / 32, slot),
            value: DecidedValue::Attestation(AttestationData {
                slot,
                index: 0,
                beacon_block_root: Sha256::hash(&[&slot.to_be_bytes()]),
                source: Checkpoint {
                    epoch: 0,
                    root: Sha256::hash(&[b"a"]),
                },
                target: Checkpoint {
                    epoch: slot / 32,
                    root: Sha256::hash(&[b"b"]),
                },
            }),
        }
    }

    #[test]
    fn roundtrip_keeps_digest() {
        let b = Block::new(
            Sha256::hash(&[b"p"]),
            3,
            7,
            1,
            vec![decision(7)],
            Bytes::new(),
        );
        let cfg = BlockCfg::default();
        let decoded = Block::decode_cfg(b.encode(), &cfg).unwrap();
        assert_eq!(decoded, b);
        assert_eq!(decoded.digest(), b.digest());
        assert!(b.encode().len() <= Block::max_encode_size(&cfg));
    }

    #[test]
    fn digest_commits_to_every_field() {
        let base = Block::new(
            Sha256::hash(&[b"p"]),
            3,
            7,
            1,
            vec![decision(7)],
            Bytes::new(),
        );
        let variants = [
            Block::new(
                Sha256::hash(&[b"q"]),
                3,
                7,
                1,
                vec![decision(7)],
                Bytes::new(),
            ),
            Block::new(
                Sha256::hash(&[b"p"]),
                4,
                7,
                1,
                vec![decision(7)],
                Bytes::new(),
            ),
            Block::new(
                Sha256::hash(&[b"p"]),
                3,
                8,
                1,
                vec![decision(7)],
                Bytes::new(),
            ),
            Block::new(
                Sha256::hash(&[b"p"]),
                3,
                7,
                2,
                vec![decision(7)],
                Bytes::new(),
            ),
            Block::new(Sha256::hash(&[b"p"]), 3, 7, 1, vec![], Bytes::new()),
            Block::new(
                Sha256::hash(&[b"p"]),
                3,
                7,
                1,
                vec![decision(7)],
                Bytes::from_static(b"x"),
            ),
        ];
        for v in variants {
            assert_ne!(v.digest(), base.digest());
        }
    }

    #[test]
    fn oversized_and_duplicate_blocks_are_rejected() {
        let cfg = BlockCfg {
            max_decisions: 1,
            max_payload_bytes: 4,
        };
        let two = Block::new(
            Sha256::hash(&[b"p"]),
            1,
            7,
            0,
            vec![decision(6), decision(7)],
            Bytes::new(),
        );
        assert!(Block::decode_cfg(two.encode(), &cfg).is_err());
        let big = Block::new(
            Sha256::hash(&[b"p"]),
            1,
            7,
            0,
            vec![],
            Bytes::from(vec![0u8; 5]),
        );
        assert!(Block::decode_cfg(big.encode(), &cfg).is_err());
        // The same duty twice: constructed by hand, since `new` sorts but does not dedup.
        let dup = Block::new(
            Sha256::hash(&[b"p"]),
            1,
            7,
            0,
            vec![decision(7), decision(7)],
            Bytes::new(),
        );
        assert!(Block::decode_cfg(dup.encode(), &BlockCfg::default()).is_err());
        // Truncated.
        let one = Block::new(
            Sha256::hash(&[b"p"]),
            1,
            7,
            0,
            vec![decision(7)],
            Bytes::new(),
        )
        .encode();
        assert!(Block::decode_cfg(one.slice(..one.len() - 3), &BlockCfg::default()).is_err());
    }
}
