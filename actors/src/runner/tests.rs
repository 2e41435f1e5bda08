use super::{Config, Network, POST_CONSENSUS_SLOTS, init, quorum::MAX_ROOTS_PER_SENDER};
use cohort_ingress::{
    Aggregate, AttestationData, AttesterDuty, BlockProposal, Checkpoint, CommitteeId, Duty, DutyId,
    DutySink, DutySource, ProposerDuty, Role, Root, SignedAggregate, SignedAttestation,
    SignedBlock, SignedContributionAndProof, SignedSyncCommitteeMessage, SinkError, SlotClock,
    SourceError, SyncCommitteeContribution, SyncDuty,
    committee::{self, MAX_BLOCK_AGE_SLOTS},
    keys::{self, Signature, ValidatorShare},
    partial::{PartialSignature, PartialSignatures, Phase},
    runner::Mailbox,
    signing::ForkInfo,
};
use commonware_codec::{Decode as _, Encode as _};
use commonware_cryptography::{Signer as _, ed25519, sha256::Digest};
use commonware_p2p::{
    Receiver as _, Recipients, Sender as _,
    simulated::{self, Link},
};
use commonware_runtime::{Clock, Quota, Runner as _, Supervisor as _, deterministic};
use commonware_utils::{NZU32, NZUsize, channel::mpsc, ordered::Set, probability::Probability};
use std::{collections::BTreeMap, sync::Arc, time::Duration};

const OPERATORS: u32 = 4;
const THRESHOLD: u32 = 3;
const VALIDATORS: u64 = 2;
/// Slots a duty or partial may matter for: its own, the block-age window, the post-consensus one.
const WINDOW: u64 = 1 + MAX_BLOCK_AGE_SLOTS + POST_CONSENSUS_SLOTS;

/// A beacon node that never answers: duties wait for a value that never comes and end missed.
#[derive(Clone)]
struct Silent;

fn unavailable() -> SourceError {
    SourceError::Unavailable("silent beacon node".into())
}

impl DutySource for Silent {
    async fn attester_duties(&self, _: u64) -> Result<Vec<AttesterDuty>, SourceError> {
        Err(unavailable())
    }
    async fn proposer_duties(&self, _: u64) -> Result<Vec<ProposerDuty>, SourceError> {
        Err(unavailable())
    }
    async fn attestation_data(&self, _: u64) -> Result<AttestationData, SourceError> {
        Err(unavailable())
    }
    async fn finalized_checkpoint(&self) -> Result<Checkpoint, SourceError> {
        Err(unavailable())
    }
    async fn block_proposal(
        &self,
        _: u64,
        _: u64,
        _: Signature,
    ) -> Result<BlockProposal, SourceError> {
        Err(unavailable())
    }
    fn check_proposal(&self, _: &BlockProposal) -> Result<(), String> {
        Ok(())
    }
    async fn aggregate_attestation(&self, _: AttestationData) -> Result<Aggregate, SourceError> {
        Err(unavailable())
    }
    async fn sync_duties(&self, _: u64) -> Result<Vec<SyncDuty>, SourceError> {
        Err(unavailable())
    }
    async fn sync_committee_contribution(
        &self,
        _: u64,
        _: u64,
        _: Root,
    ) -> Result<SyncCommitteeContribution, SourceError> {
        Err(unavailable())
    }
}

impl DutySink for Silent {
    async fn submit_attestations(&self, _: Vec<SignedAttestation>) -> Result<(), SinkError> {
        Err(SinkError::Unavailable("silent beacon node".into()))
    }
    async fn submit_block(&self, _: SignedBlock) -> Result<(), SinkError> {
        Err(SinkError::Unavailable("silent beacon node".into()))
    }
    async fn submit_aggregate(&self, _: SignedAggregate) -> Result<(), SinkError> {
        Err(SinkError::Unavailable("silent beacon node".into()))
    }
    async fn submit_sync_committee_messages(
        &self,
        _: Vec<SignedSyncCommitteeMessage>,
    ) -> Result<(), SinkError> {
        Err(SinkError::Unavailable("silent beacon node".into()))
    }
    async fn submit_contributions(
        &self,
        _: Vec<SignedContributionAndProof>,
    ) -> Result<(), SinkError> {
        Err(SinkError::Unavailable("silent beacon node".into()))
    }
}

struct Harness {
    clock: SlotClock,
    runner: Mailbox,
    /// A peer's half of the partial-signature channel, and the runner's key to address it.
    peer: simulated::Sender<ed25519::PublicKey, deterministic::Context>,
    honest: ed25519::PublicKey,
    /// What the committee is handed; kept so the runner's sends do not fail.
    _committee: mpsc::Receiver<committee::Message>,
    /// A valid signature to send under any root: well-formed junk.
    junk: Signature,
    /// Operator 2's half of the channel (a second peer, for a quorum with operator 1).
    second: simulated::Sender<ed25519::PublicKey, deterministic::Context>,
    /// What operator 1 receives from the runner.
    inbox: simulated::Receiver<ed25519::PublicKey>,
    /// Operators 1 and 2's shares of every validator, to sign valid partials.
    peer_shares: [BTreeMap<u64, ValidatorShare>; 2],
    /// What the runner reports.
    events: mpsc::UnboundedReceiver<cohort_ingress::runner::DutyEvent>,
    /// Why the slashing-protection record is unusable, as `/health` reads it.
    slashing_status: super::slashing::SlashingStatus,
}

/// One runner (operator 0 of four) on a simulated network with one peer that may send junk.
async fn start(context: &deterministic::Context) -> Harness {
    start_metered(context, None).await
}

/// [`start`], with a CPU meter on the runner.
async fn start_metered(
    context: &deterministic::Context,
    cpu: Option<super::cpu::CpuMeter>,
) -> Harness {
    let keys: Vec<ed25519::PrivateKey> = (0..OPERATORS as u64)
        .map(ed25519::PrivateKey::from_seed)
        .collect();
    let operators: Set<ed25519::PublicKey> =
        Set::from_iter_dedup(keys.iter().map(|key| key.public_key()));
    let honest = keys[0].public_key();
    let byzantine = keys[1].public_key();
    let second_key = keys[2].public_key();
    let position = operators
        .position(&honest)
        .expect("the runner is an operator");

    let mut rng = commonware_utils::test_rng();
    let splits: Vec<_> = (0..VALIDATORS)
        .map(|validator| {
            keys::split(
                &mut rng,
                &keys::interop_secret(validator + 1),
                OPERATORS,
                THRESHOLD,
            )
            .expect("valid threshold")
        })
        .collect();
    let shares_of = |key: &ed25519::PublicKey| -> BTreeMap<u64, ValidatorShare> {
        let position = operators.position(key).expect("an operator");
        splits
            .iter()
            .enumerate()
            .map(|(validator, split)| {
                let share = split.for_operator(position).expect("operator has a share");
                (validator as u64, share)
            })
            .collect()
    };
    let _ = position;
    let shares = shares_of(&honest);
    let peer_shares = [shares_of(&byzantine), shares_of(&second_key)];
    let junk = keys::sign_partial(&shares[&0].share, &[0xaa; 32]).value;

    let (network, oracle) = simulated::Network::new_with_peers(
        context.child("network"),
        simulated::Config {
            max_size: 1 << 16,
            max_peers_per_set: NZUsize!(OPERATORS as usize),
            disconnect_on_block: true,
            tracked_peer_sets: NZUsize!(1),
        },
        operators.iter().cloned(),
    )
    .await;
    network.start();
    let link = Link {
        latency: Duration::from_millis(5),
        jitter: Duration::ZERO,
        success_rate: Probability::from_f64(1.0).expect("1.0 is a probability"),
    };
    for (from, to) in [
        (&honest, &byzantine),
        (&byzantine, &honest),
        (&honest, &second_key),
        (&second_key, &honest),
    ] {
        oracle
            .add_link(from.clone(), to.clone(), link.clone())
            .await
            .expect("link between distinct peers");
    }
    let quota = Quota::per_second(NZU32!(100_000));
    let (sender, receiver) = oracle
        .control(honest.clone())
        .register(0, quota)
        .await
        .expect("channel registers");
    let (peer, inbox) = oracle
        .control(byzantine)
        .register(0, quota)
        .await
        .expect("channel registers");
    let (second, _) = oracle
        .control(second_key)
        .register(0, quota)
        .await
        .expect("channel registers");
    let (event_sender, events) = mpsc::unbounded_channel();
    let slashing_status = super::slashing::SlashingStatus::default();

    let clock = SlotClock::mainnet(context.current());
    let (committee_sender, committee_receiver) = mpsc::channel(1024);
    let (actor, runner) = init(
        context.child("runner"),
        Config {
            clock,
            source: Silent,
            sink: Silent,
            committee: committee::Mailbox::new(committee_sender),
            operators,
            shares: Arc::new(shares),
            fork: ForkInfo::devnet(),
            slashing_partition: "runner-test-slashing".into(),
            slashing_status: slashing_status.clone(),
            fetch_timeout: Duration::from_secs(2),
            events: Some(event_sender),
            mailbox_size: 1024,
            fault: None,
            cpu,
        },
    );
    actor.start(Network::new(sender, receiver));
    Harness {
        clock,
        runner,
        peer,
        honest,
        _committee: committee_receiver,
        junk,
        second,
        inbox,
        peer_shares,
        events,
        slashing_status,
    }
}

/// The value of the runner's gauge `name` in the runtime's metrics.
fn held(context: &deterministic::Context, name: &str) -> i64 {
    crate::testing::gauge(context, &format!("runner_{name}"))
}

#[test]
fn junk_partials_stay_bounded_over_many_slots() {
    deterministic::Runner::default().start(|context| async move {
        let mut harness = start(&context).await;
        // The runner holds partials of the window's slots and the next, for the cluster's
        // validators, under a capped number of roots per sender.
        let bound = MAX_ROOTS_PER_SENDER as i64 * VALIDATORS as i64 * (WINDOW as i64 + 2);
        let slots = 4 * WINDOW + 20;
        let mut nonce = 0u64;
        let mut peak = 0;
        for slot in 0..slots {
            context
                .sleep_until(harness.clock.slot_start(slot) + Duration::from_millis(100))
                .await;
            // Every message names fresh roots for every validator: without a cap each would be
            // a new key, and without pruning each slot's keys would stay for good.
            for _ in 0..20 {
                let signatures = (0..VALIDATORS)
                    .map(|validator_index| {
                        nonce += 1;
                        let mut root = [0u8; 32];
                        root[..8].copy_from_slice(&nonce.to_le_bytes());
                        PartialSignature {
                            validator_index,
                            signing_root: Digest(root),
                            signature: harness.junk,
                        }
                    })
                    .collect();
                let message = PartialSignatures {
                    slot,
                    phase: Phase::PostConsensus,
                    signatures,
                };
                harness.peer.send(
                    Recipients::One(harness.honest.clone()),
                    message.encode(),
                    false,
                );
            }
            context.sleep(Duration::from_secs(1)).await;
            let entries = held(&context, "quorum_entries_held");
            assert!(
                entries <= bound,
                "slot {slot}: {entries} keys held, bound {bound}"
            );
            peak = peak.max(entries);
        }
        assert!(peak > 0, "the runner never took the peer's partials");
        assert_eq!(held(&context, "running_duties_held"), 0);
        assert_eq!(held(&context, "step_items_held"), 0);
    });
}

#[test]
fn duties_that_never_decide_end_and_their_state_goes() {
    deterministic::Runner::default().start(|context| async move {
        let mut harness = start(&context).await;
        let committee = CommitteeId::new(vec![1, 2, 3, 4]).expect("valid committee");
        // Per slot: the committee duty, a proposer and an aggregator per validator.
        let per_slot = 2 + VALIDATORS as i64;
        let slots = 4 * WINDOW + 20;
        let mut peak = 0;
        for slot in 0..slots {
            context.sleep_until(harness.clock.slot_start(slot)).await;
            let epoch = harness.clock.epoch_of(slot);
            let attesters: Vec<AttesterDuty> = (0..VALIDATORS)
                .map(|validator_index| AttesterDuty {
                    slot,
                    validator_index,
                    committee_index: 0,
                    committee_length: VALIDATORS,
                    validator_committee_index: validator_index,
                })
                .collect();
            harness
                .runner
                .start_duty(Duty {
                    id: DutyId::validator(Role::Proposer, epoch, slot, slot % VALIDATORS),
                    attesters: Vec::new(),
                    sync: Vec::new(),
                })
                .await;
            for attester in &attesters {
                harness
                    .runner
                    .start_duty(Duty {
                        id: DutyId::validator(
                            Role::Aggregator,
                            epoch,
                            slot,
                            attester.validator_index,
                        ),
                        attesters: vec![*attester],
                        sync: Vec::new(),
                    })
                    .await;
            }
            harness
                .runner
                .start_duty(Duty {
                    id: DutyId::committee(committee.clone(), epoch, slot),
                    attesters,
                    sync: Vec::new(),
                })
                .await;
            context.sleep(Duration::from_secs(6)).await;
            let running = held(&context, "running_duties_held");
            assert!(
                running <= per_slot * WINDOW as i64,
                "slot {slot}: {running} duties running"
            );
            // Proposers and aggregators wait for their pre-consensus quorum, which never forms.
            let waiting = held(&context, "waiting_keys_held");
            assert!(
                waiting <= (1 + VALIDATORS as i64) * WINDOW as i64,
                "slot {slot}: {waiting} keys waiting"
            );
            // Only this operator's own partials, kept for the window after their duty ended.
            let entries = held(&context, "quorum_entries_held");
            assert!(
                entries <= (1 + VALIDATORS as i64) * (WINDOW as i64 + 2),
                "slot {slot}: {entries} keys held"
            );
            assert!(held(&context, "pending_calls_held") <= 2 * per_slot * WINDOW as i64);
            peak = peak.max(running);
        }
        assert!(peak >= per_slot, "duties never ran");
    });
}

/// Item 4 of issue 21: a peer's partial-signature messages cost the runner no point decoding
/// unless it waits for their keys, and past what an honest operator sends in a slot they are
/// dropped unread. Before, every entry of every message was decompressed and subgroup-checked
/// (about 100 µs each) before its slot or validator was even looked at.
#[test]
fn a_flood_of_partials_costs_no_point_decoding_and_stops_at_the_slot_budget() {
    let wall = std::time::Instant::now();
    let meter = super::cpu::CpuMeter::new(Arc::new(move || wall.elapsed()));
    let spent = meter.clone();
    deterministic::Runner::default().start(|context| async move {
        let harness = start_metered(&context, Some(meter)).await;
        let max_entries = super::max_partials_per_message(VALIDATORS as usize);
        let budget = super::max_partials_per_slot(VALIDATORS as usize);
        let slot = 1;
        context
            .sleep_until(harness.clock.slot_start(slot) + Duration::from_millis(100))
            .await;
        // The most entries a message may carry, each a valid point for a validator of the
        // cluster under a fresh root: as much decoding as one message could ask for.
        let mut nonce = 0u64;
        let messages = 200;
        for _ in 0..messages {
            let signatures = (0..max_entries)
                .map(|i| {
                    nonce += 1;
                    let mut root = [0u8; 32];
                    root[..8].copy_from_slice(&nonce.to_le_bytes());
                    PartialSignature {
                        validator_index: i as u64 % VALIDATORS,
                        signing_root: Digest(root),
                        signature: harness.junk,
                    }
                })
                .collect();
            let message = PartialSignatures {
                slot,
                phase: Phase::PreConsensus,
                signatures,
            };
            harness.peer.clone().send(
                Recipients::One(harness.honest.clone()),
                message.encode(),
                false,
            );
            context.sleep(Duration::from_millis(5)).await;
        }
        context.sleep(Duration::from_secs(1)).await;
        let entries = held(&context, "quorum_entries_held");
        assert!(entries > 0, "the runner never took the peer's partials");
        assert!(
            entries as usize <= budget,
            "{entries} keys held for one sender and slot, budget {budget}"
        );
    });
    // 200 messages of up to 15 valid points: about 0.3 s of decoding if each were decoded.
    let decode = spent.spent(super::cpu::CryptoWork::Decode);
    let recover = spent.spent(super::cpu::CryptoWork::Recover);
    assert!(
        decode + recover < Duration::from_millis(30),
        "the flood cost {decode:?} decoding and {recover:?} recovering"
    );
}

/// Item 2 of issue 21 (the runner's half): an aggregator whose selection proof does not select
/// it signs no aggregate, even when the cluster decided one before its proof was reconstructed
/// (a byzantine leader can decide an aggregate for any aggregator duty it knows). Before, the
/// proof was checked only when it came first.
#[test]
fn an_aggregate_decided_before_the_selection_proof_is_not_signed_unless_selected() {
    deterministic::Runner::default().start(|context| async move {
        let mut harness = start(&context).await;
        let slot = 3;
        context
            .sleep_until(harness.clock.slot_start(slot) + Duration::from_millis(10))
            .await;
        let fork = ForkInfo::devnet();
        let validator = 0;
        // A committee this long selects one validator in 2^32: never this one.
        let attester = AttesterDuty {
            slot,
            validator_index: validator,
            committee_index: 0,
            committee_length: 16 << 32,
            validator_committee_index: 0,
        };
        let id = DutyId::validator(Role::Aggregator, 0, slot, validator);
        harness
            .runner
            .start_duty(Duty {
                id: id.clone(),
                attesters: vec![attester],
                sync: Vec::new(),
            })
            .await;
        // The cluster decides an aggregate for it before the proof's quorum forms.
        let data = AttestationData {
            slot,
            index: 0,
            beacon_block_root: Digest([1; 32]),
            source: Checkpoint {
                epoch: 0,
                root: Digest([2; 32]),
            },
            target: Checkpoint {
                epoch: 0,
                root: Digest([3; 32]),
            },
        };
        let aggregate = cohort_ingress::DecidedValue::Aggregate(Box::new(Aggregate {
            aggregation_bits: vec![true],
            data,
            signature: [0u8; 96],
        }));
        harness
            .runner
            .finalized(
                1,
                slot,
                Arc::new(vec![cohort_ingress::Decision {
                    duty: id.clone(),
                    value: aggregate,
                }]),
            )
            .await;
        context.sleep(Duration::from_millis(50)).await;
        // Now operators 1 and 2's selection-proof partials complete the quorum.
        let root = cohort_ingress::signing::compute_signing_root(
            cohort_ingress::signing::slot_root(slot),
            fork.domain(cohort_ingress::signing::DOMAIN_SELECTION_PROOF),
        );
        for (shares, sender) in harness
            .peer_shares
            .iter()
            .zip([&mut harness.peer, &mut harness.second])
        {
            let message = PartialSignatures {
                slot,
                phase: Phase::PreConsensus,
                signatures: vec![PartialSignature {
                    validator_index: validator,
                    signing_root: Digest(root),
                    signature: keys::sign_partial(&shares[&validator].share, &root).value,
                }],
            };
            let _ = sender.send(
                Recipients::One(harness.honest.clone()),
                message.encode(),
                false,
            );
        }
        context.sleep(Duration::from_secs(1)).await;
        // Nothing post-consensus left the runner, and the duty ended unselected.
        let mut finished = None;
        while let Ok(event) = harness.events.try_recv() {
            if let cohort_ingress::runner::DutyEvent::Finished { duty, outcome } = event
                && duty == id
            {
                finished = Some(outcome);
            }
        }
        assert_eq!(finished, Some(cohort_ingress::runner::Outcome::NotSelected));
        while let Some(Ok((_, bytes))) = futures::FutureExt::now_or_never(harness.inbox.recv()) {
            let message = PartialSignatures::decode_cfg(bytes, &64).expect("a runner message");
            assert_eq!(
                message.phase,
                Phase::PreConsensus,
                "the runner signed the aggregate of a validator it does not select"
            );
        }
    });
}

/// Issue 19, item 10: a slashing-protection write that fails (a full disk: the sync errors)
/// makes the runner sign nothing, say why where an operator looks (`/health`'s reason), and
/// sign again only once storage works and the record re-opened from what is durable; no
/// signature ever leaves without its durable record.
#[test]
fn a_failed_slashing_protection_write_signs_nothing_until_storage_heals() {
    use commonware_runtime::deterministic::FaultConfig;
    use commonware_utils::probability;
    deterministic::Runner::default().start(|context| async move {
        let mut harness = start(&context).await;
        let committee = CommitteeId::new((1..=OPERATORS as u64).collect()).expect("a committee");
        let validator = 0;
        let attest = |slot: u64| {
            let epoch = slot / 32;
            let id = DutyId::committee(committee.clone(), epoch, slot);
            let duty = Duty {
                id: id.clone(),
                attesters: vec![AttesterDuty {
                    slot,
                    validator_index: validator,
                    committee_index: 0,
                    committee_length: 16,
                    validator_committee_index: 0,
                }],
                sync: Vec::new(),
            };
            let data = AttestationData {
                slot,
                index: 0,
                beacon_block_root: Digest([slot as u8; 32]),
                source: Checkpoint {
                    epoch: epoch - 1,
                    root: Digest([2; 32]),
                },
                target: Checkpoint {
                    epoch,
                    root: Digest([epoch as u8; 32]),
                },
            };
            let decision = cohort_ingress::Decision {
                duty: id,
                value: cohort_ingress::DecidedValue::Attestation(data),
            };
            (duty, decision)
        };
        // What the runner sent operator 1 after consensus, by slot.
        let signed = |inbox: &mut simulated::Receiver<ed25519::PublicKey>| {
            let mut slots = Vec::new();
            while let Some(Ok((_, bytes))) = futures::FutureExt::now_or_never(inbox.recv()) {
                let message = PartialSignatures::decode_cfg(bytes, &64).expect("a runner message");
                if message.phase == Phase::PostConsensus {
                    slots.push(message.slot);
                }
            }
            slots
        };

        // The disk fills up before slot 35's attestation is decided.
        let slot = 35;
        context
            .sleep_until(harness.clock.slot_start(slot) + Duration::from_millis(10))
            .await;
        let (duty, decision) = attest(slot);
        harness.runner.start_duty(duty).await;
        *context.storage_fault_config().write() = FaultConfig::default().sync(probability!(1.0));
        harness
            .runner
            .finalized(1, slot, Arc::new(vec![decision]))
            .await;
        context.sleep(Duration::from_secs(2)).await;
        assert_eq!(
            signed(&mut harness.inbox),
            Vec::<u64>::new(),
            "signed without a record"
        );
        let reason = harness
            .slashing_status
            .lock()
            .unwrap()
            .clone()
            .expect("/health is told why");
        assert!(reason.contains("could not be written"), "{reason}");

        // Storage works again: the record re-opens and the next epoch's attestation is signed.
        *context.storage_fault_config().write() = FaultConfig::default();
        let slot = 67;
        context
            .sleep_until(harness.clock.slot_start(slot) + Duration::from_millis(10))
            .await;
        let (duty, decision) = attest(slot);
        harness.runner.start_duty(duty).await;
        harness
            .runner
            .finalized(2, slot, Arc::new(vec![decision]))
            .await;
        context.sleep(Duration::from_secs(2)).await;
        assert_eq!(signed(&mut harness.inbox), vec![slot]);
        assert_eq!(*harness.slashing_status.lock().unwrap(), None);
    });
}
