//! Issue 19, item 11: the cluster block decoder (what peers send on the `blocks`, `backfill`
//! and `resolver` channels, and what storage hands back), fed random and mutated bytes: a fixed
//! number of seeded cases per run, each ending in an error or in a block that encodes back to
//! exactly the bytes read, never in a panic or an allocation the input does not justify.

#[path = "../../ingress/tests/support/malformed.rs"]
mod support;

use cohort_engine::{
    Address, B256, ExecutionEngine as _, ExecutionPayloadV3, ForkchoiceState, PayloadAttributes,
    embedded::{self, EmbeddedEngine},
};
use cohort_ingress::{
    AttestationData, Checkpoint, CommitteeId, DecidedValue, Decision, DutyId, Role,
};
use cohort_marshal::{Block, BlockCfg};
use commonware_codec::{Decode as _, Encode, ReadExt as _};
use commonware_cryptography::{Digestible as _, Hasher, Sha256};
use commonware_runtime::{Runner as _, Supervisor as _, deterministic};

counting_allocator!();

const CASES: usize = 3_000;

/// A payload built by the embedded engine on its genesis, as a leader's block carries one.
fn payload() -> ExecutionPayloadV3 {
    deterministic::Runner::default().start(|context| async move {
        let engine = EmbeddedEngine::init(
            context.child("engine"),
            embedded::Config::devnet("malformed-engine"),
        )
        .await
        .expect("engine opens");
        let genesis = embedded::devnet_genesis();
        let update = engine
            .forkchoice_updated(
                ForkchoiceState {
                    head_block_hash: genesis.hash,
                    safe_block_hash: B256::ZERO,
                    finalized_block_hash: B256::ZERO,
                },
                Some(PayloadAttributes {
                    timestamp: 12,
                    prev_randao: B256::ZERO,
                    suggested_fee_recipient: Address::ZERO,
                    withdrawals: Some(Vec::new()),
                    parent_beacon_block_root: Some(B256::ZERO),
                    ..Default::default()
                }),
            )
            .await
            .expect("a build starts");
        engine
            .get_payload(update.payload_id.expect("a payload id"))
            .await
            .expect("the built payload")
    })
}

fn blocks() -> Vec<Block> {
    let genesis = Block::genesis(embedded::devnet_genesis());
    let committee = CommitteeId::new(vec![1, 2, 3, 4]).expect("a committee");
    let data = |slot| AttestationData {
        slot,
        index: 0,
        beacon_block_root: Sha256::hash(&[b"head"]),
        source: Checkpoint {
            epoch: 0,
            root: Sha256::hash(&[b"s"]),
        },
        target: Checkpoint {
            epoch: 1,
            root: Sha256::hash(&[b"t"]),
        },
    };
    let decisions = vec![
        Decision {
            duty: DutyId::committee(committee.clone(), 0, 1),
            value: DecidedValue::Attestation(data(1)),
        },
        Decision {
            duty: DutyId::validator(Role::Aggregator, 0, 1, 3),
            value: DecidedValue::Aggregate(Box::new(cohort_ingress::Aggregate {
                aggregation_bits: vec![true; 5],
                data: data(1),
                signature: [9; 96],
            })),
        },
    ];
    let with_payload = Block::new(
        genesis.digest(),
        1,
        1,
        2,
        decisions.clone(),
        genesis.execution,
        Some(payload()),
    );
    let without = Block::new(
        with_payload.digest(),
        2,
        1,
        3,
        decisions,
        with_payload.execution,
        None,
    );
    vec![genesis, with_payload, without]
}

#[test]
fn cluster_blocks_refuse_malformed_bytes() {
    let valid: Vec<Vec<u8>> = blocks().iter().map(|b| b.encode().to_vec()).collect();
    for block in blocks() {
        assert_eq!(
            Block::decode_cfg(block.encode(), &BlockCfg::default()).ok(),
            Some(block.clone()),
            "valid blocks decode"
        );
    }
    let outcome = support::fuzz(
        "Block",
        11,
        CASES,
        &valid,
        |len| 8 * len + 4096,
        |bytes| match Block::decode_cfg(bytes::Bytes::copy_from_slice(bytes), &BlockCfg::default())
        {
            Ok(block) => {
                assert_eq!(block.encode().as_ref(), bytes, "one encoding per block");
                true
            }
            Err(_) => false,
        },
    );
    assert!(outcome.accepted < outcome.cases, "{outcome:?}");
    // The digest a block is named by is decoded too (resolver requests carry one).
    let digests: Vec<Vec<u8>> = blocks()
        .iter()
        .map(|b| b.digest().encode().to_vec())
        .collect();
    support::fuzz(
        "Digest",
        12,
        CASES,
        &digests,
        |len| 8 * len + 4096,
        |bytes| <cohort_marshal::Digest>::read(&mut bytes::Bytes::copy_from_slice(bytes)).is_ok(),
    );
}
