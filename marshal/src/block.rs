//! The cluster block: one per consensus decision, batching every duty value decided in it.

use bytes::BufMut;
use bytes::Bytes;
use cohort_ingress::{
    Decision,
    avs::{MAX_TASK_DECISION_BYTES, MAX_TASK_DECISIONS, TaskDecision},
};
use commonware_codec::Buf;
use commonware_codec::{EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, Write};
use commonware_consensus::{BoundedBlock, Heightable, types::Height};
use commonware_cryptography::{Digestible, Hasher, Sha256};

use crate::Digest;
use cohort_engine::{ExecutionPayloadV3, ExecutionTip};
use std::sync::Arc;

/// Slot of the genesis block; real blocks start at slot 0 too, so genesis only differs by height.
pub const GENESIS_SLOT: u64 = 0;

/// Bounds for decoding a block from a peer or from storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockCfg {
    /// Most decisions one block may carry.
    pub max_decisions: usize,
    /// Largest execution payload one block may carry, in bytes.
    pub max_payload_bytes: usize,
    /// Most beacon-block proposals among the decisions: each can be megabytes, so the
    /// message bound counts them apart from the small decisions.
    pub max_proposals: usize,
    /// Most task decisions (orders and outputs of a cluster-run AVS).
    pub max_tasks: usize,
    /// Most bytes the task decisions take together.
    pub max_task_bytes: usize,
}

impl Default for BlockCfg {
    fn default() -> Self {
        Self {
            max_decisions: 256,
            max_payload_bytes: 64 * 1024,
            // One slot has one proposer; a block may also carry the previous slot's late one.
            max_proposals: 2,
            max_tasks: MAX_TASK_DECISIONS,
            max_task_bytes: MAX_TASK_DECISION_BYTES,
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
    /// The execution chain's head once this block is applied: the payload's block if it
    /// carries one, else its parent's. Lets a follower check a payload's linkage without
    /// walking the chain back to the last block that carried one.
    pub execution: ExecutionTip,
    /// The execution payload of this block's slot, carried by the first block of a slot only.
    pub payload: Option<Arc<ExecutionPayloadV3>>,
    /// Tasks of a cluster-run AVS this block orders, and outputs it decides: orders first, then
    /// outputs, each by task id, a task at most once per kind.
    pub tasks: Vec<TaskDecision>,
    digest: Digest,
}

impl Block {
    /// A block on top of a parent whose execution head is `parent_execution`.
    pub fn new(
        parent: Digest,
        height: u64,
        slot: u64,
        proposer: u32,
        mut decisions: Vec<Decision>,
        parent_execution: ExecutionTip,
        payload: Option<ExecutionPayloadV3>,
    ) -> Self {
        decisions.sort_by(|a, b| a.duty.cmp(&b.duty));
        let execution = payload
            .as_ref()
            .map(ExecutionTip::of)
            .unwrap_or(parent_execution);
        let mut block = Self {
            parent,
            height,
            slot,
            proposer,
            decisions,
            execution,
            payload: payload.map(Arc::new),
            tasks: Vec::new(),
            digest: Digest::from([0u8; 32]),
        };
        block.digest = block.compute_digest();
        block
    }

    /// The same block carrying `tasks` (put in canonical order here).
    pub fn with_tasks(mut self, mut tasks: Vec<TaskDecision>) -> Self {
        tasks.sort_by_key(|t| t.sort_key());
        tasks.dedup_by_key(|t| t.sort_key());
        self.tasks = tasks;
        self.digest = self.compute_digest();
        self
    }

    /// The genesis block every operator starts from, on the execution genesis `execution`.
    pub fn genesis(execution: ExecutionTip) -> Self {
        Self::new(
            Sha256::hash(&[b"cohort-genesis-parent"]),
            0,
            GENESIS_SLOT,
            0,
            Vec::new(),
            execution,
            None,
        )
    }

    fn compute_digest(&self) -> Digest {
        let mut buf = Vec::with_capacity(self.encode_size());
        self.write(&mut buf);
        Sha256::hash(&[&buf])
    }

    fn payload_bytes(&self) -> Option<Bytes> {
        self.payload
            .as_ref()
            .map(|p| Bytes::from(cohort_engine::encode_payload(p)))
    }
}

fn write_tip(tip: &ExecutionTip, buf: &mut impl BufMut) {
    buf.put_slice(tip.hash.as_slice());
    tip.number.write(buf);
    tip.timestamp.write(buf);
}

fn read_tip(buf: &mut impl Buf) -> Result<ExecutionTip, CodecError> {
    let hash = <[u8; 32]>::read(buf)?;
    Ok(ExecutionTip {
        hash: hash.into(),
        number: u64::read(buf)?,
        timestamp: u64::read(buf)?,
    })
}

impl Write for Block {
    fn write(&self, buf: &mut impl BufMut) {
        self.parent.write(buf);
        self.height.write(buf);
        self.slot.write(buf);
        self.proposer.write(buf);
        self.decisions.write(buf);
        write_tip(&self.execution, buf);
        self.payload_bytes().write(buf);
        self.tasks.write(buf);
    }
}

impl EncodeSize for Block {
    fn encode_size(&self) -> usize {
        32 + 8
            + 8
            + 4
            + self.decisions.encode_size()
            + TIP_SIZE
            + self.payload_bytes().encode_size()
            + self.tasks.encode_size()
    }
}

/// The fewest bytes one decision can take: its duty's slot and epoch, role and target tags,
/// and its value's tag.
const MIN_DECISION_SIZE: usize = 8 + 8 + 1 + 1 + 1;

/// The fewest bytes one task decision can take: an output's tag, task id and empty output.
const MIN_TASK_DECISION_SIZE: usize = 1 + 32 + 1;

/// Encoded size of an [`ExecutionTip`].
const TIP_SIZE: usize = 32 + 8 + 8;

impl Read for Block {
    type Cfg = BlockCfg;

    fn read_cfg(buf: &mut impl Buf, cfg: &BlockCfg) -> Result<Self, CodecError> {
        let parent = Digest::read(buf)?;
        let height = u64::read(buf)?;
        let slot = u64::read(buf)?;
        let proposer = u32::read(buf)?;
        // The count is checked against the bytes left before anything is allocated: a peer's
        // length prefix alone must not buy a vector its bytes do not back.
        let count = usize::read_cfg(buf, &RangeCfg::new(0..=cfg.max_decisions))?;
        if count.saturating_mul(MIN_DECISION_SIZE) > buf.remaining() {
            return Err(CodecError::EndOfBuffer);
        }
        let mut decisions = Vec::new();
        for _ in 0..count {
            decisions.push(Decision::read(buf)?);
        }
        // Canonical form: strictly ordered by duty, so no duty is decided twice in one block and
        // one block has exactly one encoding.
        if decisions.windows(2).any(|w| w[0].duty >= w[1].duty) {
            return Err(CodecError::Invalid(
                "Block",
                "decisions not ordered and unique",
            ));
        }
        if decisions.iter().filter(|d| d.is_proposal()).count() > cfg.max_proposals {
            return Err(CodecError::Invalid("Block", "too many block proposals"));
        }
        let execution = read_tip(buf)?;
        let payload_bytes =
            Option::<Bytes>::read_cfg(buf, &RangeCfg::new(0..=cfg.max_payload_bytes))?;
        let payload = match payload_bytes {
            None => None,
            Some(bytes) => {
                let payload = cohort_engine::decode_payload(&bytes, cfg.max_payload_bytes)
                    .map_err(|_| CodecError::Invalid("Block", "payload is not valid SSZ"))?;
                // One encoding per block: the payload must re-encode to the bytes sent.
                if cohort_engine::encode_payload(&payload) != bytes.as_ref() {
                    return Err(CodecError::Invalid(
                        "Block",
                        "payload encoding not canonical",
                    ));
                }
                if ExecutionTip::of(&payload) != execution {
                    return Err(CodecError::Invalid(
                        "Block",
                        "execution head does not name the carried payload",
                    ));
                }
                Some(Arc::new(payload))
            }
        };
        let count = usize::read_cfg(buf, &RangeCfg::new(0..=cfg.max_tasks))?;
        if count.saturating_mul(MIN_TASK_DECISION_SIZE) > buf.remaining() {
            return Err(CodecError::EndOfBuffer);
        }
        let start = buf.remaining();
        let mut tasks = Vec::with_capacity(count);
        for _ in 0..count {
            tasks.push(TaskDecision::read(buf)?);
            if start - buf.remaining() > cfg.max_task_bytes {
                return Err(CodecError::Invalid(
                    "Block",
                    "task decisions exceed the block's byte bound",
                ));
            }
        }
        if tasks.windows(2).any(|w| w[0].sort_key() >= w[1].sort_key()) {
            return Err(CodecError::Invalid(
                "Block",
                "task decisions not ordered and unique",
            ));
        }
        let mut block = Self {
            parent,
            height,
            slot,
            proposer,
            decisions,
            execution,
            payload,
            tasks,
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
            + cfg.max_proposals * Decision::MAX_PROPOSAL_ENCODE_SIZE
            + TIP_SIZE
            + 1
            + 5
            + cfg.max_payload_bytes
            + 5
            + cfg.max_task_bytes
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

    fn payload() -> ExecutionPayloadV3 {
        let mut payload = ExecutionPayloadV3 {
            payload_inner: cohort_engine::ExecutionPayloadV2 {
                payload_inner: cohort_engine::ExecutionPayloadV1 {
                    parent_hash: Default::default(),
                    fee_recipient: Default::default(),
                    state_root: Default::default(),
                    receipts_root: Default::default(),
                    logs_bloom: Default::default(),
                    prev_randao: Default::default(),
                    block_number: 1,
                    gas_limit: 30_000_000,
                    gas_used: 0,
                    timestamp: 12,
                    extra_data: Default::default(),
                    base_fee_per_gas: Default::default(),
                    block_hash: Default::default(),
                    transactions: vec![cohort_engine::AlloyBytes::from_static(b"op")],
                },
                withdrawals: Vec::new(),
            },
            blob_gas_used: 0,
            excess_blob_gas: 0,
        };
        payload.payload_inner.payload_inner.block_hash = [7u8; 32].into();
        payload
    }

    #[test]
    fn payload_roundtrips_and_must_match_the_execution_head() {
        let b = Block::new(
            Sha256::hash(&[b"p"]),
            3,
            7,
            1,
            vec![decision(7)],
            ExecutionTip::default(),
            Some(payload()),
        );
        assert_eq!(b.execution, ExecutionTip::of(&payload()));
        let cfg = BlockCfg::default();
        let decoded = Block::decode_cfg(b.encode(), &cfg).unwrap();
        assert_eq!(decoded, b);
        // A block whose execution head does not name its payload is malformed.
        let mut lying = b.clone();
        lying.execution.number = 9;
        assert!(Block::decode_cfg(lying.encode(), &cfg).is_err());
        // Bytes that are not a payload are malformed, not a panic.
        let mut garbage = b.encode().to_vec();
        let len = garbage.len();
        garbage[len - 10] ^= 0xff;
        let _ = Block::decode_cfg(Bytes::from(garbage), &cfg);
    }

    #[test]
    fn roundtrip_keeps_digest() {
        let b = Block::new(
            Sha256::hash(&[b"p"]),
            3,
            7,
            1,
            vec![decision(7)],
            ExecutionTip::default(),
            None,
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
            ExecutionTip::default(),
            None,
        );
        let variants = [
            Block::new(
                Sha256::hash(&[b"q"]),
                3,
                7,
                1,
                vec![decision(7)],
                ExecutionTip::default(),
                None,
            ),
            Block::new(
                Sha256::hash(&[b"p"]),
                4,
                7,
                1,
                vec![decision(7)],
                ExecutionTip::default(),
                None,
            ),
            Block::new(
                Sha256::hash(&[b"p"]),
                3,
                8,
                1,
                vec![decision(7)],
                ExecutionTip::default(),
                None,
            ),
            Block::new(
                Sha256::hash(&[b"p"]),
                3,
                7,
                2,
                vec![decision(7)],
                ExecutionTip::default(),
                None,
            ),
            Block::new(
                Sha256::hash(&[b"p"]),
                3,
                7,
                1,
                vec![],
                ExecutionTip::default(),
                None,
            ),
            Block::new(
                Sha256::hash(&[b"p"]),
                3,
                7,
                1,
                vec![decision(7)],
                ExecutionTip::default(),
                Some(payload()),
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
            max_proposals: 0,
            max_tasks: 1,
            max_task_bytes: 64,
        };
        let two = Block::new(
            Sha256::hash(&[b"p"]),
            1,
            7,
            0,
            vec![decision(6), decision(7)],
            ExecutionTip::default(),
            None,
        );
        assert!(Block::decode_cfg(two.encode(), &cfg).is_err());
        let big = Block::new(
            Sha256::hash(&[b"p"]),
            1,
            7,
            0,
            vec![],
            ExecutionTip::default(),
            Some(payload()),
        );
        assert!(Block::decode_cfg(big.encode(), &cfg).is_err());
        // The same duty twice: constructed by hand, since `new` sorts but does not dedup.
        let dup = Block::new(
            Sha256::hash(&[b"p"]),
            1,
            7,
            0,
            vec![decision(7), decision(7)],
            ExecutionTip::default(),
            None,
        );
        assert!(Block::decode_cfg(dup.encode(), &BlockCfg::default()).is_err());
        // Truncated.
        let one = Block::new(
            Sha256::hash(&[b"p"]),
            1,
            7,
            0,
            vec![decision(7)],
            ExecutionTip::default(),
            None,
        )
        .encode();
        assert!(Block::decode_cfg(one.slice(..one.len() - 3), &BlockCfg::default()).is_err());
    }

    #[test]
    fn task_decisions_round_trip_count_in_the_digest_and_must_be_canonical() {
        use cohort_ingress::avs::ClusterTask;
        let base = Block::new(
            Sha256::hash(&[b"p"]),
            3,
            7,
            1,
            vec![decision(7)],
            ExecutionTip::default(),
            None,
        );
        let task = |id: u8| {
            TaskDecision::Order(ClusterTask {
                task_id: [id; 32],
                avs: [1; 20],
                aggregator: [2; 20],
                operator_set_id: 0,
                reference_timestamp: 0,
                task_block_number: 0,
                deadline_ms: 1,
                payload: Bytes::from_static(b"x"),
                aggregator_signature: Bytes::new(),
            })
        };
        let output = TaskDecision::Output {
            task_id: [1; 32],
            output: Bytes::from_static(b"out"),
        };
        let with = base
            .clone()
            .with_tasks(vec![output.clone(), task(2), task(1)]);
        assert_ne!(with.digest(), base.digest());
        assert_eq!(with.tasks, vec![task(1), task(2), output.clone()]);
        let decoded = Block::decode_cfg(with.encode(), &BlockCfg::default()).unwrap();
        assert_eq!(decoded, with);
        assert_eq!(decoded.digest(), with.digest());
        // A peer's block with its tasks out of order, or over the bound, is refused.
        let mut unordered = with.clone();
        unordered.tasks.swap(0, 1);
        assert!(Block::decode_cfg(unordered.encode(), &BlockCfg::default()).is_err());
        let tight = BlockCfg {
            max_tasks: 2,
            ..BlockCfg::default()
        };
        assert!(Block::decode_cfg(with.encode(), &tight).is_err());
        let small = BlockCfg {
            max_task_bytes: with.tasks.iter().map(|t| t.encode_size()).sum::<usize>() - 1,
            ..BlockCfg::default()
        };
        assert!(
            Block::decode_cfg(with.encode(), &small).is_err(),
            "task decisions over the byte bound"
        );
        assert!(with.encode_size() <= Block::max_encode_size(&BlockCfg::default()));
    }
}
