use super::{Config, init};
use cohort_ingress::{
    AttestationData, BlockProposal, Checkpoint, CommitteeId, DecidedValue, Decision, DutyId, Role,
    SlotClock, SyncCommitteeContribution, committee::Mailbox,
};
use commonware_codec::{DecodeExt as _, Encode as _};
use commonware_cryptography::{Hasher, Sha256, Signer as _, ed25519};
use commonware_macros::select;
use commonware_p2p::{
    Receiver as _, Recipients, Sender as _,
    simulated::{self, Link},
};
use commonware_runtime::{Clock, Quota, Runner, Supervisor as _, deterministic};
use commonware_utils::{NZU32, NZUsize, ordered::Set, probability::Probability};
use std::{collections::BTreeSet, sync::Arc, time::Duration};

fn clock(context: &deterministic::Context) -> SlotClock {
    SlotClock::mainnet(context.current())
}

fn committee() -> CommitteeId {
    CommitteeId::new(vec![1, 2, 3, 4]).unwrap()
}

fn checkpoint(epoch: u64) -> Checkpoint {
    Checkpoint {
        epoch,
        root: Sha256::hash(&[b"cp", &epoch.to_le_bytes()]),
    }
}

fn decision(slot: u64) -> Decision {
    Decision {
        duty: DutyId::committee(committee(), slot / 32, slot),
        value: DecidedValue::Attestation(AttestationData {
            slot,
            index: 0,
            beacon_block_root: Sha256::hash(&[b"head", &slot.to_le_bytes()]),
            source: checkpoint(0),
            target: checkpoint(slot / 32),
        }),
    }
}

/// The three other operators of the cluster, as raw channel ends on the offers channel.
struct Peers {
    /// The committee under test's key.
    me: ed25519::PublicKey,
    senders: Vec<simulated::Sender<ed25519::PublicKey, deterministic::Context>>,
    receivers: Vec<simulated::Receiver<ed25519::PublicKey>>,
}

async fn start(context: &deterministic::Context) -> Mailbox {
    start_with_peers(context).await.0
}

/// A committee for operator 0 of four, linked to the other three by 50 ms links.
async fn start_with_peers(context: &deterministic::Context) -> (Mailbox, Peers) {
    let keys: Vec<ed25519::PrivateKey> = (0..4u64).map(ed25519::PrivateKey::from_seed).collect();
    let participants: Set<ed25519::PublicKey> =
        Set::from_iter_dedup(keys.iter().map(|key| key.public_key()));
    let (network, oracle) = simulated::Network::new_with_peers(
        context.child("network"),
        simulated::Config {
            max_size: 1 << 12,
            max_peers_per_set: NZUsize!(4),
            disconnect_on_block: true,
            tracked_peer_sets: NZUsize!(1),
        },
        participants.iter().cloned(),
    )
    .await;
    network.start();
    let link = Link {
        latency: Duration::from_millis(50),
        jitter: Duration::ZERO,
        success_rate: Probability::from_f64(1.0).expect("1.0 is a probability"),
    };
    for from in participants.iter() {
        for to in participants.iter().filter(|to| *to != from) {
            oracle
                .add_link(from.clone(), to.clone(), link.clone())
                .await
                .expect("link between distinct peers");
        }
    }
    let quota = Quota::per_second(NZU32!(1_000));
    let mut ends = Vec::new();
    for key in &keys {
        ends.push(
            oracle
                .control(key.public_key())
                .register(0, quota)
                .await
                .expect("channel registers"),
        );
    }
    let (actor, mailbox) = init(
        context.child("committee"),
        Config {
            clock: clock(context),
            committee: committee(),
            heartbeat: Duration::from_secs(12),
            verify_grace: Duration::from_secs(4),
            mailbox_size: 16,
            participants,
            check_proposal: Arc::new(|_| Ok(())),
        },
    );
    let mut ends = ends.into_iter();
    let (sender, receiver) = ends.next().expect("four operators");
    actor.start(sender, receiver);
    let (senders, receivers) = ends.unzip();
    let peers = Peers {
        me: keys[0].public_key(),
        senders,
        receivers,
    };
    (mailbox, peers)
}

#[test]
fn follower_refuses_values_it_can_prove_wrong() {
    deterministic::Runner::default().start(|context| async move {
        let mut mailbox = start(&context).await;
        context.sleep(Duration::from_secs(4)).await;
        let own = decision(0);
        mailbox
            .submit(own.duty.clone(), own.value.clone(), checkpoint(0))
            .await
            .expect("actor running");

        // The leader's value may differ from ours (another head) and is still accepted.
        let mut other_head = decision(0);
        let DecidedValue::Attestation(ref mut data) = other_head.value else {
            unreachable!("built as an attestation above")
        };
        data.beacon_block_root = Sha256::hash(&[b"another head"]);
        assert_eq!(
            mailbox.verify(0, Arc::new(vec![other_head])).await,
            Some(true)
        );

        // A source checkpoint that conflicts with the finalized checkpoint we know.
        let mut bad_source = decision(0);
        let DecidedValue::Attestation(ref mut data) = bad_source.value else {
            unreachable!("built as an attestation above")
        };
        data.source.root = Sha256::hash(&[b"fork"]);
        assert_eq!(
            mailbox.verify(0, Arc::new(vec![bad_source])).await,
            Some(false)
        );

        // A target in another epoch than the slot's.
        let mut bad_target = decision(0);
        let DecidedValue::Attestation(ref mut data) = bad_target.value else {
            unreachable!("built as an attestation above")
        };
        data.target = checkpoint(3);
        assert_eq!(
            mailbox.verify(0, Arc::new(vec![bad_target])).await,
            Some(false)
        );

        // Another cluster's committee duty.
        let mut foreign = decision(0);
        foreign.duty = DutyId::committee(CommitteeId::new(vec![5, 6, 7, 8]).unwrap(), 0, 0);
        assert_eq!(
            mailbox.verify(0, Arc::new(vec![foreign])).await,
            Some(false)
        );

        // A value decided for a slot other than the block's.
        assert_eq!(
            mailbox.verify(1, Arc::new(vec![decision(0)])).await,
            Some(false)
        );

        // Once finalized, the same duty may not be decided again.
        mailbox
            .finalized(Arc::new(vec![decision(0)]))
            .await
            .expect("actor running");
        assert_eq!(
            mailbox.verify(0, Arc::new(vec![decision(0)])).await,
            Some(false)
        );
    });
}

#[test]
fn follower_waits_for_a_duty_it_has_not_started_then_refuses() {
    deterministic::Runner::default().start(|context| async move {
        let mut mailbox = start(&context).await;
        let slots = clock(&context);
        context.sleep(Duration::from_secs(1)).await;
        // Slot 0's duty is not known here yet: the answer waits.
        let verdict = {
            let mut mailbox = mailbox.clone();
            async move { mailbox.verify(0, Arc::new(vec![decision(0)])).await }
        };
        let early = select! {
            _ = context.sleep(Duration::from_secs(2)) => None,
            verdict = verdict => Some(verdict),
        };
        assert_eq!(early, None, "answered before this operator could check");

        // Learning the duty lets a pending check succeed.
        let pending = {
            let mut mailbox = mailbox.clone();
            async move { mailbox.verify(0, Arc::new(vec![decision(0)])).await }
        };
        let submit = async {
            context.sleep(Duration::from_secs(1)).await;
            let own = decision(0);
            mailbox
                .submit(own.duty, own.value, checkpoint(0))
                .await
                .expect("actor running");
            futures::future::pending::<()>().await;
        };
        let verdict = select! {
            verdict = pending => verdict,
            _ = submit => unreachable!(),
        };
        assert_eq!(verdict, Some(true));

        // A duty never learned is refused after its slot plus the grace period.
        context.sleep_until(slots.slot_start(1)).await;
        let started = context.current();
        let verdict = mailbox.verify(1, Arc::new(vec![decision(1)])).await;
        assert_eq!(verdict, Some(false));
        let waited = context.current().duration_since(started).unwrap();
        assert!(
            waited >= Duration::from_secs(12 + 4 - 1),
            "gave up after {waited:?}"
        );
    });
}

/// A leader waiting for work gives its view up as soon as f+1 operators (2 of 4) voted to skip
/// it, and only then: one skip vote (possibly a byzantine one's), or votes for other views, keep
/// it waiting for its heartbeat.
#[test]
fn idle_leader_gives_up_a_view_that_f_plus_one_operators_skip() {
    deterministic::Runner::default().start(|context| async move {
        let mut mailbox = start(&context).await;
        let genesis = context.current();
        let elapsed = |from| context.current().duration_since(from).unwrap();

        let mut waiting = mailbox.clone();
        let mut request = Box::pin(async move { waiting.propose(5, 0, BTreeSet::new()).await });
        // One skip vote for the view, votes for others, a repeated vote and a signer outside
        // the cluster: not enough.
        mailbox.nullify(5, 1);
        mailbox.nullify(5, 1);
        mailbox.nullify(4, 2);
        mailbox.nullify(6, 3);
        mailbox.nullify(5, 9);
        select! {
            _ = &mut request => panic!("gave the view up on one skip vote"),
            _ = context.sleep(Duration::from_secs(3)) => {},
        }
        // A second operator skips view 5: the request is dropped at once, unanswered.
        mailbox.nullify(5, 2);
        let before = context.current();
        assert_eq!(request.await, None);
        assert!(elapsed(before) < Duration::from_millis(50));

        // The next view's request is unaffected and waits for its heartbeat as before.
        let batch = mailbox.propose(7, 0, BTreeSet::new()).await.unwrap();
        assert!(batch.decisions.is_empty());
        assert!(elapsed(genesis) >= Duration::from_secs(12));
    });
}

#[test]
fn leader_proposes_at_once_with_work_and_waits_without() {
    deterministic::Runner::default().start(|context| async move {
        let mut mailbox = start(&context).await;
        let genesis = context.current();
        // The deterministic runtime advances a millisecond per scheduler cycle.
        let elapsed = |from| context.current().duration_since(from).unwrap();

        // No duty expected and no work: the empty block waits for the heartbeat (12 s).
        let batch = mailbox.propose(1, 0, BTreeSet::new()).await.unwrap();
        assert!(batch.decisions.is_empty());
        let waited = elapsed(genesis);
        assert!(
            waited >= Duration::from_secs(12) && waited < Duration::from_millis(12_050),
            "empty block after {waited:?}"
        );

        // A duty expected in slot 1 whose value never comes: the empty block follows just
        // after its duty time (12 s + 4 s + 1 s), not earlier.
        mailbox
            .expect(vec![decision(1).duty])
            .await
            .expect("actor running");
        let batch = mailbox.propose(1, 0, BTreeSet::new()).await.unwrap();
        assert!(batch.decisions.is_empty());
        let waited = elapsed(genesis);
        assert!(
            waited >= Duration::from_secs(17) && waited < Duration::from_millis(17_050),
            "empty block after {waited:?}"
        );
        assert_eq!(batch.slot, 1);

        // Work for the current slot: answered immediately.
        let own = decision(1);
        mailbox
            .submit(own.duty.clone(), own.value.clone(), checkpoint(0))
            .await
            .expect("actor running");
        let before = context.current();
        let batch = mailbox.propose(1, 1, BTreeSet::new()).await.unwrap();
        assert_eq!(batch.slot, 1);
        assert_eq!(batch.decisions, vec![own.clone()]);
        assert!(context.current().duration_since(before).unwrap() < Duration::from_millis(50));

        // Already in the unfinalized ancestry: not proposed again; nothing else is due in slot 1,
        // so the empty block waits for slot 2's duty time (24 s + 4 s + 1 s).
        let included: BTreeSet<DutyId> = [own.duty.clone()].into();
        let batch = mailbox.propose(1, 1, included).await.unwrap();
        assert!(batch.decisions.is_empty());
        assert_eq!(batch.slot, 2);
        let waited = elapsed(genesis);
        assert!(
            waited >= Duration::from_secs(29) && waited < Duration::from_millis(29_050),
            "empty block after {waited:?}"
        );
        assert_eq!(own.duty.role, Role::Committee);
    });
}

#[test]
fn follower_vouches_for_a_scheduled_duty_before_its_own_runner_starts_it() {
    deterministic::Runner::default().start(|context| async move {
        let mut mailbox = start(&context).await;
        let slots = clock(&context);
        // The finalized checkpoint comes from an earlier duty's submission.
        let earlier = decision(0);
        mailbox
            .submit(earlier.duty, earlier.value, checkpoint(0))
            .await
            .expect("actor running");
        mailbox
            .expect(vec![decision(1).duty])
            .await
            .expect("actor running");
        context.sleep(Duration::from_secs(12)).await;
        let started = context.current();
        assert_eq!(
            mailbox.verify(1, Arc::new(vec![decision(1)])).await,
            Some(true)
        );
        assert!(context.current().duration_since(started).unwrap() < Duration::from_millis(50));
        // A duty outside the schedule (not known to be complete) still waits for its slot to
        // end, then is refused. (Asked once its slot started: a block of a slot that has not
        // started is refused at once.)
        context.sleep_until(slots.slot_start(2)).await;
        let asked = context.current();
        assert_eq!(
            mailbox.verify(2, Arc::new(vec![decision(2)])).await,
            Some(false)
        );
        assert!(context.current() >= asked + Duration::from_secs(12 + 4 - 1));
    });
}

/// The value of the committee's gauge `name` in the runtime's metrics.
fn held(context: &deterministic::Context, name: &str) -> i64 {
    crate::testing::gauge(context, &format!("committee_{name}"))
}

#[test]
fn what_the_committee_holds_stays_bounded_over_many_epochs() {
    use cohort_ingress::BlockHeader;
    deterministic::Runner::default().start(|context| async move {
        const VALIDATORS: u64 = 4;
        let mut mailbox = start(&context).await;
        let clock = clock(&context);
        let schedule = |epoch: u64| -> Vec<DutyId> {
            let first = epoch * 32;
            let mut duties = Vec::new();
            for slot in first..first + 32 {
                duties.push(decision(slot).duty);
                duties.push(DutyId::validator(
                    Role::Proposer,
                    epoch,
                    slot,
                    slot % VALIDATORS,
                ));
            }
            duties.extend(
                (0..VALIDATORS)
                    .map(|v| DutyId::validator(Role::Aggregator, epoch, first + (v * 7) % 32, v)),
            );
            duties
        };
        mailbox.expect(schedule(0)).await.expect("actor running");
        let epochs = 6;
        for slot in 0..epochs * 32 {
            context.sleep_until(clock.slot_start(slot)).await;
            let epoch = slot / 32;
            if slot % 32 == 0 {
                // As the scheduler does: the next epoch's duties, one epoch ahead.
                mailbox
                    .expect(schedule(epoch + 1))
                    .await
                    .expect("actor running");
            }
            // This operator's values for the slot: the committee duty's is decided, the
            // proposer's never is.
            let own = decision(slot);
            mailbox
                .submit(own.duty.clone(), own.value.clone(), checkpoint(0))
                .await
                .expect("actor running");
            let proposer = DutyId::validator(Role::Proposer, epoch, slot, slot % VALIDATORS);
            let root = Sha256::hash(&[b"block", &slot.to_le_bytes()]);
            let block = DecidedValue::Block(Box::new(BlockProposal::header_only(
                BlockHeader {
                    slot,
                    proposer_index: slot % VALIDATORS,
                    parent_root: root,
                    state_root: root,
                    body_root: root,
                },
                "devnet",
            )));
            mailbox
                .submit(proposer, block, checkpoint(0))
                .await
                .expect("actor running");
            mailbox
                .finalized(Arc::new(vec![own]))
                .await
                .expect("actor running");
            context.sleep(Duration::from_secs(1)).await;
            let memory = 4 * (VALIDATORS as i64 + 2 * 32);
            let checks = [
                ("pool_values_held", 2 * (VALIDATORS as i64 + 2)),
                ("known_duties_held", memory),
                ("decided_duties_held", memory),
                ("decided_data_held", 2 * 32 + 3),
                ("pending_proposals_held", 0),
                ("pending_verifications_held", 0),
            ];
            for (name, bound) in checks {
                let value = held(&context, name);
                assert!(value <= bound, "slot {slot}: {name} = {value} > {bound}");
            }
        }
        assert!(held(&context, "decided_duties_held") >= 60);
        assert!(held(&context, "known_duties_held") >= 64);
    });
}

fn contribution(slot: u64, subcommittee_index: u64, bits: usize) -> SyncCommitteeContribution {
    SyncCommitteeContribution {
        slot,
        beacon_block_root: Sha256::hash(&[b"head", &slot.to_le_bytes()]),
        subcommittee_index,
        aggregation_bits: (0..bits).map(|i| i == 0).collect(),
        signature: [0; 96],
    }
}

fn contributions(slot: u64, list: Vec<SyncCommitteeContribution>) -> Arc<Vec<Decision>> {
    Arc::new(vec![Decision {
        duty: DutyId::validator(Role::SyncCommitteeContribution, slot / 32, slot, 5),
        value: DecidedValue::Contributions(list),
    }])
}

#[test]
fn follower_checks_contributions_against_the_decided_head() {
    deterministic::Runner::default().start(|context| async move {
        let mut mailbox = start(&context).await;
        // Mainnet's subcommittees have 128 members.
        let bits = SlotClock::mainnet(context.current())
            .sync_committee
            .subcommittee_size() as usize;
        context.sleep(Duration::from_secs(4)).await;
        let duty = DutyId::validator(Role::SyncCommitteeContribution, 0, 0, 5);
        mailbox.expect(vec![duty]).await.expect("actor running");
        let own = decision(0);
        mailbox
            .submit(own.duty.clone(), own.value.clone(), checkpoint(0))
            .await
            .expect("actor running");

        // Until the slot's head is decided here, a contribution cannot be checked.
        let pending = {
            let mut mailbox = mailbox.clone();
            async move {
                mailbox
                    .verify(0, contributions(0, vec![contribution(0, 1, bits)]))
                    .await
            }
        };
        let early = select! {
            _ = context.sleep(Duration::from_millis(500)) => None,
            verdict = pending => Some(verdict),
        };
        assert_eq!(early, None, "answered before the slot's head was decided");
        mailbox
            .finalized(Arc::new(vec![decision(0)]))
            .await
            .expect("actor running");
        assert_eq!(
            mailbox
                .verify(0, contributions(0, vec![contribution(0, 1, bits)]))
                .await,
            Some(true)
        );

        // Another head, a bit count that is not the subcommittee's, no participant, a
        // subcommittee out of range: refused.
        let mut other_head = contribution(0, 1, bits);
        other_head.beacon_block_root = Sha256::hash(&[b"another head"]);
        let mut nobody = contribution(0, 1, bits);
        nobody.aggregation_bits = vec![false; bits];
        for bad in [
            other_head,
            contribution(0, 1, 8),
            nobody,
            contribution(0, 4, bits),
        ] {
            let verdict = mailbox.verify(0, contributions(0, vec![bad.clone()])).await;
            assert_eq!(verdict, Some(false), "{bad:?}");
        }
    });
}

/// The follower's answer to `decisions` in a block of `slot`, if it comes within `within`.
async fn answer_within(
    context: &deterministic::Context,
    mailbox: &Mailbox,
    slot: u64,
    decisions: Vec<Decision>,
    within: Duration,
) -> Option<Option<bool>> {
    let mut mailbox = mailbox.clone();
    before(context, within, mailbox.verify(slot, Arc::new(decisions))).await
}

/// What `answer` resolves to, unless `within` passes first (then the request is dropped, as
/// consensus drops one when it moves on).
async fn before<T>(
    context: &deterministic::Context,
    within: Duration,
    answer: impl std::future::Future<Output = T>,
) -> Option<T> {
    select! {
        _ = context.sleep(within) => None,
        answer = answer => Some(answer),
    }
}

/// Item 1 of issue 21: a block for the next slot, before it starts here, is refused at once;
/// finalized early it would leave every undecided duty of this slot nothing but to expire,
/// and waited for it would hold the view past them.
#[test]
fn follower_refuses_a_block_of_a_slot_that_has_not_started() {
    deterministic::Runner::default().start(|context| async move {
        let mut mailbox = start(&context).await;
        let slots = clock(&context);
        context.sleep(Duration::from_secs(4)).await;
        let own = decision(0);
        mailbox
            .submit(own.duty.clone(), own.value.clone(), checkpoint(0))
            .await
            .expect("actor running");
        // An empty block for slot 1, 8 s before slot 1 starts.
        assert_eq!(
            answer_within(&context, &mailbox, 1, vec![], Duration::from_millis(100)).await,
            Some(Some(false)),
            "voted for (or held the view on) a slot that has not started"
        );
        // Once slot 1 has started here, the same block is fine.
        context.sleep_until(slots.slot_start(1)).await;
        assert_eq!(
            answer_within(&context, &mailbox, 1, vec![], Duration::from_millis(100)).await,
            Some(Some(true))
        );
    });
}

/// Issue 21 (values for duties that do not exist): once this operator holds an epoch's whole
/// schedule, a decision for a duty outside it is refused at once instead of holding the view
/// until the leader times out.
#[test]
fn follower_refuses_at_once_a_duty_its_complete_schedule_lacks() {
    deterministic::Runner::default().start(|context| async move {
        let mut mailbox = start(&context).await;
        context.sleep(Duration::from_secs(4)).await;
        let own = decision(0);
        mailbox
            .submit(own.duty.clone(), own.value.clone(), checkpoint(0))
            .await
            .expect("actor running");
        mailbox
            .finalized(Arc::new(vec![own.clone()]))
            .await
            .expect("actor running");
        let DecidedValue::Attestation(data) = own.value else {
            unreachable!("built as an attestation")
        };
        let ghost = Decision {
            duty: DutyId::validator(Role::Aggregator, 0, 0, 999_999),
            value: DecidedValue::Aggregate(Box::new(cohort_ingress::Aggregate {
                aggregation_bits: vec![true],
                data,
                signature: [0u8; 96],
            })),
        };
        // Without the whole schedule, an unknown duty may still be learned: wait.
        assert_eq!(
            answer_within(
                &context,
                &mailbox,
                0,
                vec![ghost.clone()],
                Duration::from_secs(1)
            )
            .await,
            None
        );
        mailbox
            .expect_epoch(0, vec![DutyId::validator(Role::Aggregator, 0, 0, 7)])
            .await
            .expect("actor running");
        assert_eq!(
            answer_within(
                &context,
                &mailbox,
                0,
                vec![ghost],
                Duration::from_millis(100)
            )
            .await,
            Some(Some(false))
        );
    });
}

/// Item 2 of issue 21: a value of another kind than the duty's role is refused, even for a
/// duty this operator knows and data it would accept as an attestation.
#[test]
fn follower_refuses_a_value_of_another_kind_than_the_role() {
    deterministic::Runner::default().start(|context| async move {
        let mut mailbox = start(&context).await;
        context.sleep(Duration::from_secs(4)).await;
        let own = decision(0);
        mailbox
            .submit(own.duty.clone(), own.value.clone(), checkpoint(0))
            .await
            .expect("actor running");
        let aggregator = DutyId::validator(Role::Aggregator, 0, 0, 7);
        let proposer = DutyId::validator(Role::Proposer, 0, 0, 7);
        mailbox
            .expect(vec![aggregator.clone(), proposer.clone()])
            .await
            .expect("actor running");
        let DecidedValue::Attestation(data) = own.value.clone() else {
            unreachable!("built as an attestation")
        };
        // An aggregator or proposer duty carrying attestation data: honest shares would sign a
        // second attestation for the validator.
        for duty in [aggregator.clone(), proposer] {
            let wrong = Decision {
                duty,
                value: DecidedValue::Attestation(data),
            };
            assert_eq!(mailbox.verify(0, Arc::new(vec![wrong])).await, Some(false));
        }
        // An aggregator duty carrying the attestation data the cluster decided for its slot.
        context.sleep(Duration::from_secs(12)).await;
        let own = decision(1);
        mailbox
            .submit(own.duty.clone(), own.value.clone(), checkpoint(0))
            .await
            .expect("actor running");
        mailbox
            .finalized(Arc::new(vec![own.clone()]))
            .await
            .expect("actor running");
        let DecidedValue::Attestation(data) = own.value else {
            unreachable!("built as an attestation")
        };
        let wrong = Decision {
            duty: DutyId::validator(Role::Aggregator, 0, 1, 7),
            value: DecidedValue::Attestation(data),
        };
        mailbox
            .expect(vec![wrong.duty.clone()])
            .await
            .expect("actor running");
        assert_eq!(mailbox.verify(1, Arc::new(vec![wrong])).await, Some(false));
        // And the right kind for the same duty passes.
        let right = Decision {
            duty: DutyId::validator(Role::Aggregator, 0, 1, 7),
            value: DecidedValue::Aggregate(Box::new(cohort_ingress::Aggregate {
                aggregation_bits: vec![true],
                data,
                signature: [0u8; 96],
            })),
        };
        assert_eq!(mailbox.verify(1, Arc::new(vec![right])).await, Some(true));
    });
}

/// Item 3 of issue 21: the decided source must be older than the target (past genesis) and no
/// newer than the justified checkpoint this operator's own beacon node votes from.
#[test]
fn follower_refuses_a_source_not_before_target_or_newer_than_it_justified() {
    deterministic::Runner::default().start(|context| async move {
        let mut mailbox = start(&context).await;
        // Slot 65, epoch 2.
        context.sleep(Duration::from_secs(65 * 12 + 4)).await;
        let data = |slot: u64, source: u64| AttestationData {
            slot,
            index: 0,
            beacon_block_root: Sha256::hash(&[b"head"]),
            source: checkpoint(source),
            target: checkpoint(2),
        };
        let duty = |slot: u64| DutyId::committee(committee(), 2, slot);
        let at = |slot: u64, source: u64| Decision {
            duty: duty(slot),
            value: DecidedValue::Attestation(data(slot, source)),
        };
        // This operator's beacon node voted from epoch 0 in the slot before.
        mailbox
            .submit(
                duty(64),
                DecidedValue::Attestation(data(64, 0)),
                checkpoint(0),
            )
            .await
            .expect("actor running");
        mailbox
            .expect(vec![duty(65), duty(66)])
            .await
            .expect("actor running");
        // Source == target: never.
        assert_eq!(
            answer_within(
                &context,
                &mailbox,
                65,
                vec![at(65, 2)],
                Duration::from_secs(1)
            )
            .await,
            Some(Some(false))
        );
        // A source newer than this operator's justified checkpoint waits while its node has
        // not answered for this slot...
        assert_eq!(
            answer_within(
                &context,
                &mailbox,
                65,
                vec![at(65, 1)],
                Duration::from_secs(1)
            )
            .await,
            None,
            "voted for a source this operator's beacon node has not justified"
        );
        // ...and passes once the node justified it.
        let pending = {
            let mut mailbox = mailbox.clone();
            async move { mailbox.verify(65, Arc::new(vec![at(65, 1)])).await }
        };
        let submit = async {
            mailbox
                .submit(
                    duty(65),
                    DecidedValue::Attestation(data(65, 1)),
                    checkpoint(0),
                )
                .await
                .expect("actor running");
            futures::future::pending::<()>().await;
        };
        let verdict = select! {
            verdict = pending => verdict,
            _ = submit => unreachable!(),
        };
        assert_eq!(verdict, Some(true));

        // A node that answered for the slot and justified less: refused at once. (Epoch 3,
        // where this operator's node still votes from epoch 1 and the leader claims 2.)
        context.sleep(Duration::from_secs(32 * 12)).await;
        let slot = 97;
        let duty3 = DutyId::committee(committee(), 3, slot);
        let data3 = |source: u64| AttestationData {
            slot,
            index: 0,
            beacon_block_root: Sha256::hash(&[b"head"]),
            source: checkpoint(source),
            target: checkpoint(3),
        };
        mailbox
            .submit(
                duty3.clone(),
                DecidedValue::Attestation(data3(1)),
                checkpoint(0),
            )
            .await
            .expect("actor running");
        let newer = Decision {
            duty: duty3,
            value: DecidedValue::Attestation(data3(2)),
        };
        assert_eq!(
            answer_within(
                &context,
                &mailbox,
                slot,
                vec![newer],
                Duration::from_millis(100)
            )
            .await,
            Some(Some(false))
        );
    });
}

fn attestation(decision: &Decision) -> AttestationData {
    match decision.value {
        DecidedValue::Attestation(data) => data,
        _ => panic!("not an attestation"),
    }
}

/// Asks for a block on a parent of `parent_slot` as leader of view 1, and gives up after
/// `within` (dropping the request, as consensus does when it moves on).
async fn propose_within(
    context: &deterministic::Context,
    mailbox: &Mailbox,
    parent_slot: u64,
    within: Duration,
) -> Option<Option<cohort_ingress::committee::Batch>> {
    let mut mailbox = mailbox.clone();
    before(
        context,
        within,
        mailbox.propose(1, parent_slot, BTreeSet::new()),
    )
    .await
}

/// Issue 17, item 3: a leader whose beacon node has not answered yet does not hold the slot
/// up when f+1 operators' nodes have (it proposes what they offered alike), and takes nothing
/// less: one offer, offers that disagree, data a follower would refuse, malformed bytes.
#[test]
fn leader_without_its_own_value_proposes_what_f_plus_one_operators_offered() {
    deterministic::Runner::default().start(|context| async move {
        let (mut mailbox, mut peers) = start_with_peers(&context).await;
        let slots = clock(&context);

        // This operator's own value for slot 0 goes to every peer.
        let own = decision(0);
        mailbox
            .submit(own.duty.clone(), own.value.clone(), checkpoint(0))
            .await
            .expect("actor running");
        for receiver in peers.receivers.iter_mut() {
            let (from, bytes) = receiver.recv().await.expect("offer arrives");
            assert_eq!(from, peers.me);
            assert_eq!(AttestationData::decode(bytes).unwrap(), attestation(&own));
        }

        // Slot 1: this operator's node has not answered.
        mailbox
            .expect(vec![decision(1).duty])
            .await
            .expect("actor running");
        context.sleep_until(slots.slot_start(1)).await;
        let head = attestation(&decision(1));
        let mut other_head = head;
        other_head.beacon_block_root = Sha256::hash(&[b"another head"]);
        let me = Recipients::One(peers.me.clone());
        let mut offer = |peer: usize, bytes: Vec<u8>| {
            let sent = peers.senders[peer].send(me.clone(), bytes, false);
            assert_eq!(sent.len(), 1);
        };

        // One offer, then a second naming another head: no f+1 alike, so the leader waits.
        offer(0, head.encode().to_vec());
        offer(1, other_head.encode().to_vec());
        // Malformed, and a second offer from the same operator: both dropped.
        offer(1, vec![1, 2, 3]);
        offer(1, head.encode().to_vec());
        assert!(
            propose_within(&context, &mailbox, 1, Duration::from_millis(500))
                .await
                .is_none(),
            "proposed on fewer than f+1 alike offers"
        );
        assert_eq!(
            crate::testing::gauge(&context, "committee_offers_refused_total"),
            2
        );

        // A second operator offers the first head: proposed at once.
        offer(2, head.encode().to_vec());
        let batch = propose_within(&context, &mailbox, 1, Duration::from_millis(200))
            .await
            .expect("proposed once f+1 offered alike")
            .expect("actor running");
        assert_eq!(batch.slot, 1);
        assert_eq!(batch.decisions, vec![decision(1)]);
        assert_eq!(held(&context, "offers_held"), 3);

        // Slot 2: two operators offer data a follower would refuse (a source newer than its
        // target): never proposed.
        mailbox
            .expect(vec![decision(2).duty])
            .await
            .expect("actor running");
        context.sleep_until(slots.slot_start(2)).await;
        let mut wrong = attestation(&decision(2));
        wrong.source = checkpoint(1);
        offer(0, wrong.encode().to_vec());
        offer(2, wrong.encode().to_vec());
        assert!(
            propose_within(&context, &mailbox, 2, Duration::from_millis(500))
                .await
                .is_none(),
            "proposed offered data that fails a follower's checks"
        );
        // Its own value arrives: proposed as its own, offers or not.
        let own = decision(2);
        mailbox
            .submit(own.duty.clone(), own.value.clone(), checkpoint(0))
            .await
            .expect("actor running");
        let batch = propose_within(&context, &mailbox, 2, Duration::from_millis(200))
            .await
            .expect("proposed its own value at once")
            .expect("actor running");
        assert_eq!(batch.decisions, vec![own]);
    });
}

/// A newly justified checkpoint: a follower whose own node has not answered for the slot waits
/// rather than vote for a source newer than any it saw justified, unless f+1 operators' nodes
/// answered with that source (one of them honest), which is all its own answer would show.
#[test]
fn follower_vouches_for_a_newer_source_that_f_plus_one_operators_offered() {
    deterministic::Runner::default().start(|context| async move {
        let (mut mailbox, mut peers) = start_with_peers(&context).await;
        let slots = clock(&context);
        // This operator's node last justified epoch 0 (its value for slot 0).
        let own = decision(0);
        mailbox
            .submit(own.duty.clone(), own.value.clone(), checkpoint(0))
            .await
            .expect("actor running");
        let slot = 64;
        let mut newer = decision(slot);
        let DecidedValue::Attestation(ref mut data) = newer.value else {
            unreachable!("a committee decision");
        };
        data.source = checkpoint(1);
        data.target = checkpoint(2);
        let data = *data;
        mailbox
            .expect(vec![newer.duty.clone()])
            .await
            .expect("actor running");
        context.sleep_until(slots.slot_start(slot)).await;

        // One operator offered it (perhaps the leader itself): not enough, the block waits.
        let me = Recipients::One(peers.me.clone());
        assert_eq!(
            peers.senders[0]
                .send(me.clone(), data.encode(), false)
                .len(),
            1
        );
        let block = vec![newer.clone()];
        assert_eq!(
            answer_within(
                &context,
                &mailbox,
                slot,
                block.clone(),
                Duration::from_millis(500)
            )
            .await,
            None,
            "voted for an unseen source on one operator's word"
        );
        // A second operator offered the same source (another head, even): vouched for at once.
        let mut other_head = data;
        other_head.beacon_block_root = Sha256::hash(&[b"another head"]);
        assert_eq!(
            peers.senders[2].send(me, other_head.encode(), false).len(),
            1
        );
        assert_eq!(
            answer_within(&context, &mailbox, slot, block, Duration::from_millis(200)).await,
            Some(Some(true))
        );
    });
}
