//! Issue 19, item 11: every decoder a peer reaches in this crate, fed random and mutated bytes
//! (a fixed number of seeded cases per run, so a failure replays): each case ends in an error or
//! in a value that encodes back to exactly the bytes read (one encoding per value), never in a
//! panic, and never in an allocation larger than the input justifies.

#[path = "support/malformed.rs"]
mod support;

use bytes::Bytes;
use cohort_ingress::{
    Aggregate, AttestationData, BlockHeader, BlockProposal, Checkpoint, CommitteeId, DecidedValue,
    Decision, DutyId, Role, SyncCommitteeContribution,
    keys::{interop_secret, sign},
    partial::{PartialSignature, PartialSignatures, Phase, UncheckedPartials},
};
use commonware_codec::{Decode, DecodeExt, Encode};
use commonware_cryptography::{Hasher, Sha256};

counting_allocator!();

/// Cases per decoder per run.
const CASES: usize = 3_000;

/// A decoder may allocate, at once, a few times what it read plus a small constant: a length
/// prefix alone must never buy memory the bytes behind it do not back.
fn budget(len: usize) -> usize {
    8 * len + 4096
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

fn decisions() -> Vec<Decision> {
    let committee = CommitteeId::new(vec![1, 2, 3, 4]).expect("a committee");
    let header = BlockHeader {
        slot: 9,
        proposer_index: 5,
        parent_root: Sha256::hash(&[b"p"]),
        state_root: Sha256::hash(&[b"s"]),
        body_root: Sha256::hash(&[b"b"]),
    };
    let mut proposal = BlockProposal::header_only(header, "deneb");
    proposal.contents = Bytes::from_static(b"{\"body\":{}}");
    vec![
        Decision {
            duty: DutyId::committee(committee, 0, 9),
            value: DecidedValue::Attestation(data(9)),
        },
        Decision {
            duty: DutyId::validator(Role::Proposer, 0, 9, 5),
            value: DecidedValue::Block(Box::new(proposal)),
        },
        Decision {
            duty: DutyId::validator(Role::Aggregator, 0, 9, 7),
            value: DecidedValue::Aggregate(Box::new(Aggregate {
                aggregation_bits: vec![true, false, true, true, false, false, true, true, true],
                data: data(9),
                signature: [3; 96],
            })),
        },
        Decision {
            duty: DutyId::validator(Role::SyncCommitteeContribution, 0, 9, 3),
            value: DecidedValue::Contributions(
                (0..2)
                    .map(|i| SyncCommitteeContribution {
                        slot: 9,
                        beacon_block_root: Sha256::hash(&[b"head"]),
                        subcommittee_index: i,
                        aggregation_bits: vec![true; 128],
                        signature: [7; 96],
                    })
                    .collect(),
            ),
        },
    ]
}

/// Accepts a decode only if the value re-encodes to the very bytes it came from.
fn canonical<T: Encode>(bytes: &[u8], decoded: Result<T, commonware_codec::Error>) -> bool {
    match decoded {
        Ok(value) => {
            assert_eq!(
                value.encode().as_ref(),
                bytes,
                "a decoded value must encode back to the bytes it came from"
            );
            true
        }
        Err(_) => false,
    }
}

#[test]
fn decisions_and_duty_ids_refuse_malformed_bytes() {
    let valid: Vec<Vec<u8>> = decisions().iter().map(|d| d.encode().to_vec()).collect();
    let outcome = support::fuzz("Decision", 1, CASES, &valid, budget, |bytes| {
        canonical(bytes, Decision::decode(Bytes::copy_from_slice(bytes)))
    });
    assert!(outcome.accepted < outcome.cases, "{outcome:?}");
    let ids: Vec<Vec<u8>> = decisions()
        .iter()
        .map(|d| d.duty.encode().to_vec())
        .collect();
    support::fuzz("DutyId", 2, CASES, &ids, budget, |bytes| {
        canonical(bytes, DutyId::decode(Bytes::copy_from_slice(bytes)))
    });
    let contributions: Vec<Vec<u8>> = decisions()
        .iter()
        .filter_map(|d| match &d.value {
            DecidedValue::Contributions(c) => Some(c[0].encode().to_vec()),
            _ => None,
        })
        .collect();
    support::fuzz(
        "SyncCommitteeContribution",
        3,
        CASES,
        &contributions,
        budget,
        |bytes| {
            canonical(
                bytes,
                SyncCommitteeContribution::decode(Bytes::copy_from_slice(bytes)),
            )
        },
    );
}

/// The offers channel carries one encoded `AttestationData` (see
/// `committee::ATTESTATION_OFFER_SIZE`): a fixed-size value, so anything but its exact length
/// is refused.
#[test]
fn attestation_offers_refuse_malformed_bytes() {
    let valid: Vec<Vec<u8>> = [0, 9, u64::MAX]
        .into_iter()
        .map(|slot| data(slot).encode().to_vec())
        .collect();
    assert!(
        valid
            .iter()
            .all(|bytes| bytes.len() == cohort_ingress::committee::ATTESTATION_OFFER_SIZE)
    );
    let outcome = support::fuzz("AttestationData", 8, CASES, &valid, budget, |bytes| {
        let decoded = AttestationData::decode(Bytes::copy_from_slice(bytes));
        if bytes.len() != cohort_ingress::committee::ATTESTATION_OFFER_SIZE {
            assert!(
                decoded.is_err(),
                "{} bytes decoded as an offer",
                bytes.len()
            );
        }
        canonical(bytes, decoded)
    });
    assert!(outcome.accepted < outcome.cases, "{outcome:?}");
}

fn partials(entries: u64) -> PartialSignatures {
    let root = Sha256::hash(&[b"root"]);
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(root.as_ref());
    PartialSignatures {
        slot: 9,
        phase: Phase::PostConsensus,
        signatures: (0..entries)
            .map(|v| PartialSignature {
                validator_index: v,
                signing_root: root,
                signature: sign(&interop_secret(v), &bytes),
            })
            .collect(),
    }
}

#[test]
fn partial_signature_messages_refuse_malformed_bytes() {
    let valid: Vec<Vec<u8>> = [1, 3].map(|n| partials(n).encode().to_vec()).to_vec();
    // The header-only read a runner does first: constant work, any bytes.
    let max = 4_000;
    let outcome = support::fuzz("UncheckedPartials", 4, CASES, &valid, budget, |bytes| {
        match UncheckedPartials::read(Bytes::copy_from_slice(bytes), max) {
            Ok(message) => {
                assert_eq!(
                    message.len() * <PartialSignature as commonware_codec::FixedSize>::SIZE,
                    bytes.len() - 9 - varint_len(message.len())
                );
                message.iter().count() == message.len()
            }
            Err(_) => false,
        }
    });
    assert!(
        outcome.accepted > 0,
        "some mutations keep the shape: {outcome:?}"
    );
    // The full decode, points included (fewer cases: each point costs a subgroup check).
    support::fuzz(
        "PartialSignatures",
        5,
        CASES / 10,
        &valid,
        budget,
        |bytes| {
            canonical(
                bytes,
                PartialSignatures::decode_cfg(Bytes::copy_from_slice(bytes), &max),
            )
        },
    );
}

/// The length of a varint-encoded `value`.
fn varint_len(value: usize) -> usize {
    let mut len = 1;
    let mut rest = value >> 7;
    while rest > 0 {
        len += 1;
        rest >>= 7;
    }
    len
}

fn cluster_task(id: u8) -> cohort_ingress::avs::ClusterTask {
    cohort_ingress::avs::ClusterTask {
        task_id: [id; 32],
        avs: [1; 20],
        aggregator: [2; 20],
        operator_set_id: 3,
        reference_timestamp: 4,
        task_block_number: 5,
        deadline_ms: 6,
        payload: Bytes::from_static(b"payload"),
        aggregator_signature: Bytes::from(vec![9u8; 65]),
    }
}

#[test]
fn task_channel_messages_and_task_decisions_refuse_malformed_bytes() {
    use cohort_ingress::avs::{
        PARTIAL_LENGTH, Report, SignatureRound, TaskDecision, TaskMessage, TaskPartial,
    };
    let messages = [
        TaskMessage::Tasks(vec![cluster_task(1), cluster_task(2)]),
        TaskMessage::Reports(
            (0..3)
                .map(|i| Report {
                    task_id: [i; 32],
                    digest: [i + 1; 32],
                })
                .collect(),
        ),
        TaskMessage::Partials(vec![
            TaskPartial {
                task_id: [1; 32],
                round: SignatureRound::Result,
                partial: [3; PARTIAL_LENGTH],
            },
            TaskPartial {
                task_id: [2; 32],
                round: SignatureRound::Auth,
                partial: [4; PARTIAL_LENGTH],
            },
        ]),
    ];
    let valid: Vec<Vec<u8>> = messages.iter().map(|m| m.encode().to_vec()).collect();
    let outcome = support::fuzz("TaskMessage", 6, CASES, &valid, budget, |bytes| {
        canonical(bytes, TaskMessage::decode(Bytes::copy_from_slice(bytes)))
    });
    assert!(outcome.accepted < outcome.cases, "{outcome:?}");
    let decisions = [
        TaskDecision::Order(cluster_task(3)),
        TaskDecision::Output {
            task_id: [4; 32],
            output: Bytes::from_static(b"output"),
        },
    ];
    let valid: Vec<Vec<u8>> = decisions.iter().map(|d| d.encode().to_vec()).collect();
    support::fuzz("TaskDecision", 7, CASES, &valid, budget, |bytes| {
        canonical(bytes, TaskDecision::decode(Bytes::copy_from_slice(bytes)))
    });
}
