use super::{Config, Network, POST_CONSENSUS_SLOTS, init, quorum::MAX_ROOTS_PER_SENDER};
use cohort_ingress::{
    Aggregate, AttestationData, AttesterDuty, BlockProposal, Checkpoint, CommitteeId, Duty, DutyId,
    DutySink, DutySource, ProposerDuty, Role, SignedAggregate, SignedAttestation, SignedBlock,
    SinkError, SlotClock, SourceError,
    committee::{self, MAX_BLOCK_AGE_SLOTS},
    keys::{self, Signature, ValidatorShare},
    partial::{PartialSignature, PartialSignatures, Phase},
    runner::Mailbox,
    signing::ForkInfo,
};
use commonware_codec::Encode as _;
use commonware_cryptography::{Signer as _, ed25519, sha256::Digest};
use commonware_p2p::{
    Recipients, Sender as _,
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
}

/// One runner (operator 0 of four) on a simulated network with one peer that may send junk.
async fn start(context: &deterministic::Context) -> Harness {
    let keys: Vec<ed25519::PrivateKey> = (0..OPERATORS as u64)
        .map(ed25519::PrivateKey::from_seed)
        .collect();
    let operators: Set<ed25519::PublicKey> =
        Set::from_iter_dedup(keys.iter().map(|key| key.public_key()));
    let honest = keys[0].public_key();
    let byzantine = keys[1].public_key();
    let position = operators
        .position(&honest)
        .expect("the runner is an operator");

    let mut rng = commonware_utils::test_rng();
    let shares: BTreeMap<u64, ValidatorShare> = (0..VALIDATORS)
        .map(|validator| {
            let split = keys::split(
                &mut rng,
                &keys::interop_secret(validator + 1),
                OPERATORS,
                THRESHOLD,
            )
            .expect("valid threshold");
            let share = split.for_operator(position).expect("operator has a share");
            (validator, share)
        })
        .collect();
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
    for (from, to) in [(&honest, &byzantine), (&byzantine, &honest)] {
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
    let (peer, _) = oracle
        .control(byzantine)
        .register(0, quota)
        .await
        .expect("channel registers");

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
            fetch_timeout: Duration::from_secs(2),
            events: None,
            mailbox_size: 1024,
            fault: None,
            cpu: None,
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
                    })
                    .await;
            }
            harness
                .runner
                .start_duty(Duty {
                    id: DutyId::committee(committee.clone(), epoch, slot),
                    attesters,
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
