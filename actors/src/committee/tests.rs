use super::{Config, init};
use cohort_ingress::{
    AttestationData, BlockProposal, Checkpoint, CommitteeId, DecidedValue, Decision, DutyId, Role,
    SlotClock, committee::Mailbox,
};
use commonware_cryptography::{Hasher, Sha256};
use commonware_macros::select;
use commonware_runtime::{Clock, Runner, Supervisor as _, deterministic};
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

fn start(context: &deterministic::Context) -> Mailbox {
    let (actor, mailbox) = init(
        context.child("committee"),
        Config {
            clock: clock(context),
            committee: committee(),
            heartbeat: Duration::from_secs(12),
            verify_grace: Duration::from_secs(4),
            mailbox_size: 16,
            check_proposal: Arc::new(|_| Ok(())),
        },
    );
    actor.start();
    mailbox
}

#[test]
fn follower_refuses_values_it_can_prove_wrong() {
    deterministic::Runner::default().start(|context| async move {
        let mut mailbox = start(&context);
        context.sleep(Duration::from_secs(4)).await;
        let own = decision(0);
        mailbox
            .submit(own.duty.clone(), own.value.clone(), checkpoint(0))
            .await;

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
        mailbox.finalized(Arc::new(vec![decision(0)])).await;
        assert_eq!(
            mailbox.verify(0, Arc::new(vec![decision(0)])).await,
            Some(false)
        );
    });
}

#[test]
fn follower_waits_for_a_duty_it_has_not_started_then_refuses() {
    deterministic::Runner::default().start(|context| async move {
        let mut mailbox = start(&context);
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
            mailbox.submit(own.duty, own.value, checkpoint(0)).await;
            futures::future::pending::<()>().await;
        };
        let verdict = select! {
            verdict = pending => verdict,
            _ = submit => unreachable!(),
        };
        assert_eq!(verdict, Some(true));

        // A duty never learned is refused after its slot plus the grace period.
        let started = context.current();
        let verdict = mailbox.verify(1, Arc::new(vec![decision(1)])).await;
        assert_eq!(verdict, Some(false));
        let waited = context.current().duration_since(started).unwrap();
        assert!(
            waited >= Duration::from_secs(20),
            "gave up after {waited:?}"
        );
    });
}

#[test]
fn leader_proposes_at_once_with_work_and_waits_without() {
    deterministic::Runner::default().start(|context| async move {
        let mut mailbox = start(&context);
        let genesis = context.current();
        // The deterministic runtime advances a millisecond per scheduler cycle.
        let elapsed = |from| context.current().duration_since(from).unwrap();

        // No duty expected and no work: the empty block waits for the heartbeat (12 s).
        let batch = mailbox.propose(0, BTreeSet::new()).await.unwrap();
        assert!(batch.decisions.is_empty());
        let waited = elapsed(genesis);
        assert!(
            waited >= Duration::from_secs(12) && waited < Duration::from_millis(12_050),
            "empty block after {waited:?}"
        );

        // A duty expected in slot 1 whose value never comes: the empty block follows just
        // after its duty time (12 s + 4 s + 1 s), not earlier.
        mailbox.expect(vec![decision(1).duty]).await;
        let batch = mailbox.propose(0, BTreeSet::new()).await.unwrap();
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
            .await;
        let before = context.current();
        let batch = mailbox.propose(1, BTreeSet::new()).await.unwrap();
        assert_eq!(batch.slot, 1);
        assert_eq!(batch.decisions, vec![own.clone()]);
        assert!(context.current().duration_since(before).unwrap() < Duration::from_millis(50));

        // Already in the unfinalized ancestry: not proposed again; nothing else is due in slot 1,
        // so the empty block waits for slot 2's duty time (24 s + 4 s + 1 s).
        let included: BTreeSet<DutyId> = [own.duty.clone()].into();
        let batch = mailbox.propose(1, included).await.unwrap();
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
        let mut mailbox = start(&context);
        // The finalized checkpoint comes from an earlier duty's submission.
        let earlier = decision(0);
        mailbox
            .submit(earlier.duty, earlier.value, checkpoint(0))
            .await;
        mailbox.expect(vec![decision(1).duty]).await;
        context.sleep(Duration::from_secs(12)).await;
        let started = context.current();
        assert_eq!(
            mailbox.verify(1, Arc::new(vec![decision(1)])).await,
            Some(true)
        );
        assert!(context.current().duration_since(started).unwrap() < Duration::from_millis(50));
        // A duty outside the schedule still waits for its slot to end, then is refused.
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
        let mut mailbox = start(&context);
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
        mailbox.expect(schedule(0)).await;
        let epochs = 6;
        for slot in 0..epochs * 32 {
            context.sleep_until(clock.slot_start(slot)).await;
            let epoch = slot / 32;
            if slot % 32 == 0 {
                // As the scheduler does: the next epoch's duties, one epoch ahead.
                mailbox.expect(schedule(epoch + 1)).await;
            }
            // This operator's values for the slot: the committee duty's is decided, the
            // proposer's never is.
            let own = decision(slot);
            mailbox
                .submit(own.duty.clone(), own.value.clone(), checkpoint(0))
                .await;
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
            mailbox.submit(proposer, block, checkpoint(0)).await;
            mailbox.finalized(Arc::new(vec![own])).await;
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
