use super::{Config, Network, POST_CONSENSUS_SLOTS, init, quorum::MAX_ROOTS_PER_SENDER};
use cohort_ingress::{
    Aggregate, AttestationData, AttesterDuty, BlockProposal, Checkpoint, CommitteeId, Duty, DutyId,
    DutySink, DutySource, ProposerDuty, Role, Root, SignedAggregate, SignedAttestation,
    SignedBlock, SignedContributionAndProof, SignedSyncCommitteeMessage, SinkError, SlotClock,
    SourceError, SyncCommitteeContribution, SyncDuty,
    committee::{self, MAX_BLOCK_AGE_SLOTS},
    doppelganger::{Clearance, Guard, Status},
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
/// Only its aggregation pools can be filled, by the test, at a moment of its choosing: until
/// then it answers as a node whose attestations (or sync committee messages) have not arrived.
#[derive(Clone, Default)]
struct Silent {
    aggregates: Arc<std::sync::Mutex<Vec<Aggregate>>>,
    contributions: Arc<std::sync::Mutex<Vec<SyncCommitteeContribution>>>,
}

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
        // Asked only after another call succeeded (the value's checkpoint).
        Ok(Checkpoint {
            epoch: 0,
            root: Digest([0; 32]),
        })
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
    async fn aggregate_attestation(
        &self,
        data: AttestationData,
        _committee_index: u64,
    ) -> Result<Aggregate, SourceError> {
        let pool = self.aggregates.lock().expect("pool lock");
        pool.iter()
            .find(|aggregate| aggregate.data == data)
            .cloned()
            .ok_or(SourceError::NotYet {
                what: "attestations to aggregate",
            })
    }
    async fn sync_duties(&self, _: u64) -> Result<Vec<SyncDuty>, SourceError> {
        Err(unavailable())
    }
    async fn sync_committee_contribution(
        &self,
        slot: u64,
        subcommittee_index: u64,
        beacon_block_root: Root,
    ) -> Result<SyncCommitteeContribution, SourceError> {
        let pool = self.contributions.lock().expect("pool lock");
        pool.iter()
            .find(|contribution| {
                contribution.slot == slot
                    && contribution.subcommittee_index == subcommittee_index
                    && contribution.beacon_block_root == beacon_block_root
            })
            .cloned()
            .ok_or(SourceError::NotYet {
                what: "sync committee messages to aggregate",
            })
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
    /// What the committee is handed (kept so the runner's sends do not fail).
    committee: mpsc::Receiver<committee::Message>,
    /// The runner's beacon node, whose aggregation pool a test fills.
    beacon: Silent,
    /// A valid signature to send under any root: well-formed junk.
    junk: Signature,
    /// Operator 2's half of the channel (a second peer, for a quorum with operator 1).
    second: simulated::Sender<ed25519::PublicKey, deterministic::Context>,
    /// Operator 3's half (with operators 1 and 2, a quorum without the runner).
    third: simulated::Sender<ed25519::PublicKey, deterministic::Context>,
    /// What operator 1 receives from the runner.
    inbox: simulated::Receiver<ed25519::PublicKey>,
    /// Operators 1, 2 and 3's shares of every validator, to sign valid partials.
    peer_shares: [BTreeMap<u64, ValidatorShare>; 3],
    /// What the runner reports.
    events: mpsc::UnboundedReceiver<cohort_ingress::runner::DutyEvent>,
    /// Why the slashing-protection record is unusable, as `/health` reads it.
    slashing_status: super::slashing::SlashingStatus,
    /// What the runner tells the scheduler.
    scheduler: mpsc::Receiver<cohort_ingress::scheduler::Message>,
}

/// One runner (operator 0 of four) on a simulated network with one peer that may send junk.
async fn start(context: &deterministic::Context) -> Harness {
    start_with(context, None, Guard::off()).await
}

/// [`start`], with a CPU meter on the runner.
async fn start_metered(
    context: &deterministic::Context,
    cpu: Option<super::cpu::CpuMeter>,
) -> Harness {
    start_with(context, cpu, Guard::off()).await
}

/// [`start`], with a CPU meter and a doppelganger guard on the runner.
async fn start_with(
    context: &deterministic::Context,
    cpu: Option<super::cpu::CpuMeter>,
    guard: Guard,
) -> Harness {
    let keys: Vec<ed25519::PrivateKey> = (0..OPERATORS as u64)
        .map(ed25519::PrivateKey::from_seed)
        .collect();
    let operators: Set<ed25519::PublicKey> =
        Set::from_iter_dedup(keys.iter().map(|key| key.public_key()));
    let honest = keys[0].public_key();
    let byzantine = keys[1].public_key();
    let second_key = keys[2].public_key();
    let third_key = keys[3].public_key();
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
    let peer_shares = [
        shares_of(&byzantine),
        shares_of(&second_key),
        shares_of(&third_key),
    ];
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
        (&honest, &third_key),
        (&third_key, &honest),
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
    let (third, _) = oracle
        .control(third_key)
        .register(0, quota)
        .await
        .expect("channel registers");
    let (event_sender, events) = mpsc::unbounded_channel();
    let slashing_status = super::slashing::SlashingStatus::default();

    let clock = SlotClock::mainnet(context.current());
    let (committee_sender, committee_receiver) = mpsc::channel(1024);
    let beacon = Silent::default();
    let (actor, runner) = init(
        context.child("runner"),
        Config {
            clock,
            source: beacon.clone(),
            sink: beacon.clone(),
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
            guard,
            crypto: super::crypto::Crypto::new(
                super::crypto::Parallel::Sequential,
                rand::SeedableRng::seed_from_u64(3),
            ),
        },
    );
    let (scheduler_sender, scheduler) = mpsc::channel(16);
    actor
        .with_scheduler(cohort_ingress::scheduler::Mailbox::new(scheduler_sender))
        .start(Network::new(sender, receiver));
    Harness {
        scheduler,
        clock,
        runner,
        peer,
        honest,
        committee: committee_receiver,
        beacon,
        junk,
        second,
        third,
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
                .await
                .expect("actor running");
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
                    .await
                    .expect("actor running");
            }
            harness
                .runner
                .start_duty(Duty {
                    id: DutyId::committee(committee.clone(), epoch, slot),
                    attesters,
                    sync: Vec::new(),
                })
                .await
                .expect("actor running");
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
            .await
            .expect("actor running");
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
            .await
            .expect("actor running");
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

/// Operators 1 and 2's selection-proof partials for `validator` in `slot`: with this runner's
/// own, a quorum.
fn send_selection_proofs(harness: &mut Harness, slot: u64, validator: u64) {
    let fork = ForkInfo::devnet();
    let root = cohort_ingress::signing::compute_signing_root(
        cohort_ingress::signing::slot_root(slot),
        fork.domain(cohort_ingress::signing::DOMAIN_SELECTION_PROOF),
    );
    send_pre_consensus_partials(harness, slot, validator, root);
}

/// Operators 1 and 2's pre-consensus partials of `validator` over `root`: with this runner's
/// own, a quorum.
fn send_pre_consensus_partials(harness: &mut Harness, slot: u64, validator: u64, root: [u8; 32]) {
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
}

/// The cluster finalizes `slot`'s committee duty with [`decided_vote`] in a block of height
/// `slot`, as the executor hands it to the runner; returns the decided data.
async fn decide_attestation_data(
    harness: &mut Harness,
    committee: &CommitteeId,
    slot: u64,
    epoch: u64,
) -> AttestationData {
    let vote = decided_vote(slot, epoch);
    harness
        .runner
        .finalized(
            slot,
            slot,
            Arc::new(vec![cohort_ingress::Decision {
                duty: DutyId::committee(committee.clone(), epoch, slot),
                value: cohort_ingress::DecidedValue::Attestation(vote),
            }]),
        )
        .await
        .expect("actor running");
    vote
}

/// The values the runner submitted to the committee since the last call, with their duties.
fn submitted_to_committee(harness: &mut Harness) -> Vec<(DutyId, cohort_ingress::DecidedValue)> {
    let mut submitted = Vec::new();
    while let Ok(message) = harness.committee.try_recv() {
        if let committee::Message::Submit { duty, value, .. } = message {
            submitted.push((duty, value));
        }
    }
    submitted
}

/// Issue 19, item 1: the cluster decides a slot's attestation data after two thirds of the slot,
/// so an aggregator asks its beacon node for the aggregate just before the attestations reach
/// it. The runner asks again, with a backoff, until the role's deadline, and hands the aggregate
/// to the committee once the node has it. Before, it asked once, and every operator of the
/// cluster missed the aggregation the same way. That holds also when the cluster decided the
/// data after the next slot's attestation time (as after a lost view): the aggregate is asked
/// for until the duty ends, no longer only until then. A node that never gets the attestations
/// is asked a bounded number of times, never past the duty's end.
#[test]
fn an_aggregate_the_beacon_node_lacks_at_first_is_asked_for_again() {
    deterministic::Runner::default().start(|context| async move {
        let mut harness = start(&context).await;
        let committee = CommitteeId::new(vec![1, 2, 3, 4]).expect("valid committee");
        let clock = harness.clock;
        // Slot 3: decided 100 ms after two thirds of the slot; the attestations reach the
        // beacon node 50 ms after the runner first asks. Slot 7: the same, but decided only
        // after slot 8's attestation time. Slot 11: they never reach it.
        let cases = [
            (
                3,
                clock.interval_start(3, 2) + Duration::from_millis(100),
                true,
            ),
            (
                7,
                clock.interval_start(8, 1) + Duration::from_millis(500),
                true,
            ),
            (
                11,
                clock.interval_start(11, 2) + Duration::from_millis(100),
                false,
            ),
        ];
        let mut retries = Vec::new();
        for (slot, decided_at, arrive) in cases {
            let epoch = clock.epoch_of(slot);
            let validator = 0;
            context
                .sleep_until(clock.slot_start(slot) + Duration::from_millis(10))
                .await;
            // A committee of one selects its member.
            let id = DutyId::validator(Role::Aggregator, epoch, slot, validator);
            harness
                .runner
                .start_duty(Duty {
                    id: id.clone(),
                    attesters: vec![AttesterDuty {
                        slot,
                        validator_index: validator,
                        committee_index: 0,
                        committee_length: 1,
                        validator_committee_index: 0,
                    }],
                    sync: Vec::new(),
                })
                .await
                .expect("actor running");
            send_selection_proofs(&mut harness, slot, validator);
            context.sleep_until(decided_at).await;
            let before = crate::testing::gauge(&context, "runner_aggregation_retries_total");
            let vote = decide_attestation_data(&mut harness, &committee, slot, epoch).await;
            context.sleep(Duration::from_millis(50)).await;
            let aggregate = Aggregate {
                aggregation_bits: vec![true],
                data: ForkInfo::devnet().attester_data(&vote, 0, epoch),
                signature: [0u8; 96],
            };
            if arrive {
                harness
                    .beacon
                    .aggregates
                    .lock()
                    .expect("pool lock")
                    .push(aggregate.clone());
            }
            // Past the duty's end: nothing is asked for after it.
            context
                .sleep_until(
                    clock.slot_start(slot + 1 + MAX_BLOCK_AGE_SLOTS) + Duration::from_secs(1),
                )
                .await;
            let submitted = submitted_to_committee(&mut harness);
            if arrive {
                assert_eq!(
                    submitted,
                    vec![(
                        id,
                        cohort_ingress::DecidedValue::Aggregate(Box::new(aggregate))
                    )],
                    "the late aggregate of slot {slot} goes to the committee"
                );
            } else {
                assert!(submitted.is_empty(), "the absent aggregate never does");
            }
            retries
                .push(crate::testing::gauge(&context, "runner_aggregation_retries_total") - before);
        }
        // The absent aggregate is asked for with a backoff (100, 200, 400 ms, then a quarter
        // interval) until its duty ends: a bounded number of times.
        let window = clock
            .slot_start(11 + 1 + MAX_BLOCK_AGE_SLOTS)
            .duration_since(cases[2].1)
            .expect("the duty ends after its decision");
        let cap = clock.interval_duration() / 4;
        let most = 3 + (window.as_millis() / cap.as_millis()) as i64 + 1;
        assert!(retries[0] >= 1, "the late aggregate was asked for again");
        assert!(retries[1] >= 1, "the one decided late was asked for again");
        assert!(
            (4..=most).contains(&retries[2]),
            "{} retries for the absent one, expected between 4 and {most}",
            retries[2]
        );
    });
}

/// Issue 19, item 1, for sync committee contributions: a contributor that asks its beacon node
/// before the slot's sync committee messages reach it asks again, with the aggregate's backoff,
/// and hands the contribution to the committee once the node has it. A contribution is
/// published only in its own slot, so one the node never gets is asked for until the slot
/// ends, not for the aggregate's block-age window. Before, it was asked for once.
#[test]
fn a_contribution_the_beacon_node_lacks_at_first_is_asked_for_again_until_its_slot_ends() {
    deterministic::Runner::default().start(|context| async move {
        let mut harness = start(&context).await;
        let committee = CommitteeId::new(vec![1, 2, 3, 4]).expect("valid committee");
        let clock = harness.clock;
        let spec = clock.sync_committee;
        let fork = ForkInfo::devnet();
        let validator = 0;
        // Validator 0 holds sync committee position 0, in subcommittee 0. Its selection proof
        // picks one slot in `aggregator_modulo` (8 on mainnet): the test takes two such slots,
        // the second after the window the first case watches.
        let secret = keys::interop_secret(validator + 1);
        let selects = |slot: u64| {
            let root = fork.sync_selection_proof_signing_root(slot, 0);
            cohort_ingress::signing::is_sync_committee_aggregator(
                &spec,
                &keys::signature_bytes(&keys::sign(&secret, &root)),
            )
        };
        let first = (3..).find(|slot| selects(*slot)).expect("a selecting slot");
        let second = (first + MAX_BLOCK_AGE_SLOTS + 2..)
            .find(|slot| selects(*slot))
            .expect("a selecting slot");
        let mut retries = Vec::new();
        // The first slot's messages reach the beacon node 50 ms after the runner first asks;
        // the second's never do.
        for (slot, arrive) in [(first, true), (second, false)] {
            let epoch = clock.epoch_of(slot);
            context
                .sleep_until(clock.slot_start(slot) + Duration::from_millis(10))
                .await;
            let id = DutyId::validator(Role::SyncCommitteeContribution, epoch, slot, validator);
            harness
                .runner
                .start_duty(Duty {
                    id: id.clone(),
                    attesters: Vec::new(),
                    sync: vec![SyncDuty {
                        validator_index: validator,
                        validator_sync_committee_indices: vec![0],
                    }],
                })
                .await
                .expect("actor running");
            let root = fork.sync_selection_proof_signing_root(slot, 0);
            send_pre_consensus_partials(&mut harness, slot, validator, root);
            // The slot's block root is decided 100 ms after two thirds of the slot.
            context
                .sleep_until(clock.interval_start(slot, 2) + Duration::from_millis(100))
                .await;
            let before = crate::testing::gauge(&context, "runner_aggregation_retries_total");
            let vote = decide_attestation_data(&mut harness, &committee, slot, epoch).await;
            context.sleep(Duration::from_millis(50)).await;
            let contribution = SyncCommitteeContribution {
                slot,
                beacon_block_root: vote.beacon_block_root,
                subcommittee_index: 0,
                aggregation_bits: (0..spec.subcommittee_size()).map(|bit| bit == 0).collect(),
                signature: [0u8; 96],
            };
            if arrive {
                harness
                    .beacon
                    .contributions
                    .lock()
                    .expect("pool lock")
                    .push(contribution.clone());
            }
            // Until the end of the window an aggregate would be asked for in: a contribution
            // is not asked for in it.
            context
                .sleep_until(
                    clock.slot_start(slot + 1 + MAX_BLOCK_AGE_SLOTS) + Duration::from_secs(1),
                )
                .await;
            let submitted = submitted_to_committee(&mut harness);
            if arrive {
                assert_eq!(
                    submitted,
                    vec![(
                        id,
                        cohort_ingress::DecidedValue::Contributions(vec![contribution])
                    )],
                    "the late contribution of slot {slot} goes to the committee"
                );
            } else {
                assert!(submitted.is_empty(), "the absent contribution never does");
            }
            retries
                .push(crate::testing::gauge(&context, "runner_aggregation_retries_total") - before);
        }
        // The absent contribution is asked for with a backoff (100, 200, 400 ms, then a quarter
        // interval) from its decision until its slot ends: about 3.9 s, so at most six times.
        let window = clock
            .slot_start(second + 1)
            .duration_since(clock.interval_start(second, 2) + Duration::from_millis(100))
            .expect("the slot ends after its decision");
        let cap = clock.interval_duration() / 4;
        let most = 3 + (window.as_millis() / cap.as_millis()) as i64 + 1;
        assert!(retries[0] >= 1, "the late contribution was asked for again");
        assert!(
            (4..=most).contains(&retries[1]),
            "{} retries for the absent contribution, expected between 4 and {most}",
            retries[1]
        );
    });
}

/// Issue 19, item 4: a stopping runner cancels the duties the cluster has not decided at once,
/// gives a decided one about a slot for its post-consensus quorum, and starts nothing new, so
/// a node stops in about a slot. Before, a whole-cluster stop waited for decisions that no
/// longer came (fewer than a quorum of operators left) until each duty's block-age window
/// closed: three slots, more than the 30 s stop timeout at 12 s slots.
#[test]
fn a_stopping_runner_cancels_undecided_duties_and_stops_within_a_slot() {
    deterministic::Runner::default().start(|context| async move {
        let mut harness = start(&context).await;
        let committee = CommitteeId::new(vec![1, 2, 3, 4]).expect("valid committee");
        let slot = 3;
        let epoch = harness.clock.epoch_of(slot);
        context
            .sleep_until(harness.clock.slot_start(slot) + Duration::from_millis(10))
            .await;
        let attester = |slot, validator_index| AttesterDuty {
            slot,
            validator_index,
            committee_index: 0,
            committee_length: 1,
            validator_committee_index: 0,
        };
        // The previous slot's committee duty, decided: its partials go out and wait for peers'.
        let decided = DutyId::committee(committee.clone(), epoch, slot - 1);
        harness
            .runner
            .start_duty(Duty {
                id: decided.clone(),
                attesters: vec![attester(slot - 1, 0)],
                sync: Vec::new(),
            })
            .await
            .expect("actor running");
        let vote = AttestationData {
            slot: slot - 1,
            index: 0,
            beacon_block_root: Digest([1; 32]),
            source: Checkpoint {
                epoch: 0,
                root: Digest([2; 32]),
            },
            target: Checkpoint {
                epoch,
                root: Digest([3; 32]),
            },
        };
        harness
            .runner
            .finalized(
                1,
                slot - 1,
                Arc::new(vec![cohort_ingress::Decision {
                    duty: decided.clone(),
                    value: cohort_ingress::DecidedValue::Attestation(vote),
                }]),
            )
            .await
            .expect("actor running");
        // This slot's committee duty and an aggregator, neither decided.
        let undecided = [
            DutyId::committee(committee.clone(), epoch, slot),
            DutyId::validator(Role::Aggregator, epoch, slot, 1),
        ];
        for id in &undecided {
            harness
                .runner
                .start_duty(Duty {
                    id: id.clone(),
                    attesters: vec![attester(slot, 1)],
                    sync: Vec::new(),
                })
                .await
                .expect("actor running");
        }
        context.sleep(Duration::from_millis(100)).await;
        assert_eq!(harness.runner.in_flight().await, Some(3));

        let stop = context.current();
        assert_eq!(
            harness.runner.drain().await,
            Some(1),
            "only the decided duty keeps running"
        );
        // A duty handed out after the stop does not start.
        harness
            .runner
            .start_duty(Duty {
                id: DutyId::validator(Role::Proposer, epoch, slot, 0),
                attesters: Vec::new(),
                sync: Vec::new(),
            })
            .await
            .expect("actor running");
        assert_eq!(harness.runner.in_flight().await, Some(1));
        // Within a slot of the stop, nothing runs any more.
        loop {
            if harness.runner.in_flight().await == Some(0) {
                break;
            }
            let waited = context.current().duration_since(stop).unwrap_or_default();
            assert!(
                waited <= harness.clock.slot_duration + Duration::from_millis(100),
                "duties still running {waited:?} after the stop"
            );
            context.sleep(Duration::from_millis(100)).await;
        }
        let mut ended = BTreeMap::new();
        while let Ok(event) = harness.events.try_recv() {
            if let cohort_ingress::runner::DutyEvent::Finished { duty, outcome } = event {
                ended.insert(duty, outcome);
            }
        }
        for id in &undecided {
            assert_eq!(
                ended.get(id),
                Some(&cohort_ingress::runner::Outcome::Cancelled),
                "{id}"
            );
        }
        assert!(
            matches!(
                ended.get(&decided),
                Some(cohort_ingress::runner::Outcome::Failed { .. })
            ),
            "the decided duty with no quorum fails at the drain deadline: {ended:?}"
        );
        assert_eq!(ended.len(), 3, "{ended:?}");
    });
}

/// The slot's attestation data, decided, for the tests below.
fn decided_vote(slot: u64, epoch: u64) -> AttestationData {
    AttestationData {
        slot,
        index: 0,
        beacon_block_root: Digest([1; 32]),
        source: Checkpoint {
            epoch: 0,
            root: Digest([2; 32]),
        },
        target: Checkpoint {
            epoch,
            root: Digest([3; 32]),
        },
    }
}

/// Issue 19, item 3: a runner that reported a duty missed (its window closed before the deciding
/// block reached it: cut off by a partition, or catching up) reports the cluster's decision
/// when the block arrives after all, in its log, a metric and an event. Before, the block was
/// taken as a decision for a duty not started yet and the "missed" stood.
#[test]
fn a_duty_reported_missed_and_decided_later_is_reported_decided_after_all() {
    deterministic::Runner::default().start(|context| async move {
        let mut harness = start(&context).await;
        let committee = CommitteeId::new(vec![1, 2, 3, 4]).expect("valid committee");
        let slot = 3;
        let epoch = harness.clock.epoch_of(slot);
        context.sleep_until(harness.clock.slot_start(slot)).await;
        let id = DutyId::committee(committee, epoch, slot);
        harness
            .runner
            .start_duty(Duty {
                id: id.clone(),
                attesters: vec![AttesterDuty {
                    slot,
                    validator_index: 0,
                    committee_index: 0,
                    committee_length: 1,
                    validator_committee_index: 0,
                }],
                sync: Vec::new(),
            })
            .await
            .expect("actor running");
        // Its window closes with no decision: missed.
        context
            .sleep_until(harness.clock.slot_start(slot + 1 + MAX_BLOCK_AGE_SLOTS + 1))
            .await;
        // The block that decided it reaches this operator now (the partition healed).
        harness
            .runner
            .finalized(
                9,
                slot,
                Arc::new(vec![cohort_ingress::Decision {
                    duty: id.clone(),
                    value: cohort_ingress::DecidedValue::Attestation(decided_vote(slot, epoch)),
                }]),
            )
            .await
            .expect("actor running");
        context.sleep(Duration::from_millis(100)).await;
        let mut events = Vec::new();
        while let Ok(event) = harness.events.try_recv() {
            match event {
                cohort_ingress::runner::DutyEvent::Missed { duty } => {
                    events.push(format!("missed {duty}"))
                }
                cohort_ingress::runner::DutyEvent::DecidedAfterMissed { duty, height } => {
                    events.push(format!("decided after missed {duty} at {height}"))
                }
                _ => {}
            }
        }
        assert_eq!(
            events,
            vec![
                format!("missed {id}"),
                format!("decided after missed {id} at 9")
            ]
        );
        assert_eq!(
            crate::testing::gauge(&context, "runner_duties_decided_after_missed_total"),
            1
        );
        // Nothing is signed or kept for it.
        assert_eq!(harness.runner.in_flight().await, Some(0));
        assert_eq!(held(&context, "finalized_early_held"), 0);
    });
}

/// Issue 17, item 3: the cluster deciding the current slot's committee duty before this
/// operator started it (its beacon node has not reported the head) asks the scheduler to start
/// it now; a decision for a past slot's does not.
#[test]
fn a_committee_duty_decided_before_it_starts_here_is_started_at_once() {
    deterministic::Runner::default().start(|context| async move {
        let mut harness = start(&context).await;
        let committee = CommitteeId::new(vec![1, 2, 3, 4]).expect("valid committee");
        let slot = 3;
        let epoch = harness.clock.epoch_of(slot);
        context
            .sleep_until(harness.clock.slot_start(slot) + Duration::from_secs(1))
            .await;
        let decided = |slot: u64| {
            Arc::new(vec![cohort_ingress::Decision {
                duty: DutyId::committee(committee.clone(), epoch, slot),
                value: cohort_ingress::DecidedValue::Attestation(decided_vote(slot, epoch)),
            }])
        };
        harness
            .runner
            .finalized(7, slot - 1, decided(slot - 1))
            .await
            .expect("actor running");
        harness
            .runner
            .finalized(8, slot, decided(slot))
            .await
            .expect("actor running");
        context.sleep(Duration::from_millis(10)).await;
        let mut told = Vec::new();
        while let Ok(message) = harness.scheduler.try_recv() {
            match message {
                cohort_ingress::scheduler::Message::Decided { slot } => told.push(slot),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(told, vec![slot]);
        // Kept until the scheduler starts it.
        assert_eq!(held(&context, "finalized_early_held"), 2);
    });
}

/// Issue 19, item 2: a restarted runner is told (by its executor) what the blocks it processed
/// before the restart decided; a duty among them that the scheduler starts again ends decided
/// at once, without running again. Before, it ran again: it waited for a decision that marshal
/// never delivers again and ended missed (or, decided, for partials no peer sends again).
#[test]
fn a_duty_decided_before_a_restart_is_not_run_again() {
    deterministic::Runner::default().start(|context| async move {
        let mut harness = start(&context).await;
        let committee = CommitteeId::new(vec![1, 2, 3, 4]).expect("valid committee");
        let slot = 3;
        let epoch = harness.clock.epoch_of(slot);
        context
            .sleep_until(harness.clock.interval_start(slot, 2))
            .await;
        let id = DutyId::committee(committee, epoch, slot);
        harness
            .runner
            .recalled(
                7,
                slot,
                Arc::new(vec![cohort_ingress::Decision {
                    duty: id.clone(),
                    value: cohort_ingress::DecidedValue::Attestation(decided_vote(slot, epoch)),
                }]),
            )
            .await
            .expect("actor running");
        harness
            .runner
            .start_duty(Duty {
                id: id.clone(),
                attesters: vec![AttesterDuty {
                    slot,
                    validator_index: 0,
                    committee_index: 0,
                    committee_length: 1,
                    validator_committee_index: 0,
                }],
                sync: Vec::new(),
            })
            .await
            .expect("actor running");
        assert_eq!(harness.runner.in_flight().await, Some(0));
        context
            .sleep_until(harness.clock.slot_start(slot + 1 + MAX_BLOCK_AGE_SLOTS + 1))
            .await;
        let mut events = Vec::new();
        while let Ok(event) = harness.events.try_recv() {
            match event {
                cohort_ingress::runner::DutyEvent::Started { duty, .. } => {
                    events.push(format!("started {duty}"))
                }
                cohort_ingress::runner::DutyEvent::Decided { duty, .. } => {
                    events.push(format!("decided {duty}"))
                }
                cohort_ingress::runner::DutyEvent::Finished { duty, outcome } => {
                    events.push(format!("finished {duty} {outcome:?}"))
                }
                cohort_ingress::runner::DutyEvent::Missed { duty } => {
                    events.push(format!("missed {duty}"))
                }
                _ => {}
            }
        }
        assert_eq!(
            events,
            vec![
                format!("started {id}"),
                format!("decided {id}"),
                format!("finished {id} DecidedBeforeRestart"),
            ]
        );
        // Nothing went to the committee for it.
        assert!(harness.committee.try_recv().is_err());
    });
}

/// The validators one runner message carries partials for, by phase.
fn drain_partials(inbox: &mut simulated::Receiver<ed25519::PublicKey>) -> Vec<(Phase, Vec<u64>)> {
    let mut seen = Vec::new();
    while let Some(Ok((_, bytes))) = futures::FutureExt::now_or_never(inbox.recv()) {
        let message = PartialSignatures::decode_cfg(bytes, &64).expect("a runner message");
        seen.push((
            message.phase,
            message
                .signatures
                .iter()
                .map(|s| s.validator_index)
                .collect(),
        ));
    }
    seen
}

#[test]
fn doppelganger_protection_withholds_signatures_until_the_cluster_signs_without_this_operator() {
    deterministic::Runner::default().start(|context| async move {
        let guard = Guard::watching([0, 1], 0);
        let mut harness = start_with(&context, None, guard.clone()).await;
        let fork = ForkInfo::devnet();
        let slot = 3;
        context
            .sleep_until(harness.clock.slot_start(slot) + Duration::from_millis(10))
            .await;
        // Validator 0 proposes: its RANDAO reveal is due at once, but the guard holds it.
        let proposer = DutyId::validator(Role::Proposer, 0, slot, 0);
        harness
            .runner
            .start_duty(Duty {
                id: proposer.clone(),
                attesters: Vec::new(),
                sync: Vec::new(),
            })
            .await
            .expect("the runner is running");
        context.sleep(Duration::from_millis(50)).await;
        assert_eq!(
            drain_partials(&mut harness.inbox),
            Vec::new(),
            "a watched validator got a partial signature from this operator"
        );
        // The other three operators sign: a quorum without this one, which clears validator 0.
        let randao = cohort_ingress::signing::compute_signing_root(
            cohort_ingress::signing::epoch_root(0),
            fork.domain(cohort_ingress::signing::DOMAIN_RANDAO),
        );
        for (shares, sender) in harness.peer_shares.iter().zip([
            &mut harness.peer,
            &mut harness.second,
            &mut harness.third,
        ]) {
            let message = PartialSignatures {
                slot,
                phase: Phase::PreConsensus,
                signatures: vec![PartialSignature {
                    validator_index: 0,
                    signing_root: Digest(randao),
                    signature: keys::sign_partial(&shares[&0].share, &randao).value,
                }],
            };
            let _ = sender.send(
                Recipients::One(harness.honest.clone()),
                message.encode(),
                false,
            );
        }
        context.sleep(Duration::from_millis(100)).await;
        assert_eq!(
            guard.status(0),
            Some(Status::Cleared(Clearance::ClusterSigned { slot }))
        );
        assert!(!guard.may_sign(1), "validator 1 was never seen signed");

        // Next slot, both validators aggregate: only validator 0's selection proof leaves.
        let slot = 4;
        context
            .sleep_until(harness.clock.slot_start(slot) + Duration::from_millis(10))
            .await;
        for validator in [0, 1] {
            harness
                .runner
                .start_duty(Duty {
                    id: DutyId::validator(Role::Aggregator, 0, slot, validator),
                    attesters: vec![AttesterDuty {
                        slot,
                        validator_index: validator,
                        committee_index: 0,
                        committee_length: 16,
                        validator_committee_index: validator,
                    }],
                    sync: Vec::new(),
                })
                .await
                .expect("the runner is running");
        }
        context.sleep(Duration::from_millis(50)).await;
        let sent = drain_partials(&mut harness.inbox);
        let signed: Vec<u64> = sent.iter().flat_map(|(_, v)| v.clone()).collect();
        assert_eq!(signed, vec![0], "what left the runner: {sent:?}");
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
        harness
            .runner
            .start_duty(duty)
            .await
            .expect("actor running");
        *context.storage_fault_config().write() = FaultConfig::default().sync(probability!(1.0));
        harness
            .runner
            .finalized(1, slot, Arc::new(vec![decision]))
            .await
            .expect("actor running");
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
        harness
            .runner
            .start_duty(duty)
            .await
            .expect("actor running");
        harness
            .runner
            .finalized(2, slot, Arc::new(vec![decision]))
            .await
            .expect("actor running");
        context.sleep(Duration::from_secs(2)).await;
        assert_eq!(signed(&mut harness.inbox), vec![slot]);
        assert_eq!(*harness.slashing_status.lock().unwrap(), None);
    });
}
