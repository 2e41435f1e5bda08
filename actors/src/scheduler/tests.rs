use super::{Config, init};
use cohort_ingress::{
    Aggregate, AttestationData, AttesterDuty, BlockProposal, Checkpoint, CommitteeId, DutySource,
    DutyTarget, ProposerDuty, Role, Root, SlotClock, SourceError, SyncCommitteeContribution,
    SyncDuty, keys::Signature, runner,
};
use commonware_cryptography::{Hasher, Sha256};
use commonware_macros::select;
use commonware_runtime::{Clock, Runner, Spawner as _, Supervisor as _, deterministic};
use commonware_utils::channel::mpsc;
use std::{sync::Arc, time::Duration};

/// Slot 1 has two attesters, slot 2 one, validator 11 proposes slot 1, and validator 20 is in
/// epoch 1's sync committee; every duty answer comes after `delay`.
struct Source<E: Clock + Send + Sync + 'static> {
    context: Arc<E>,
    delay: Duration,
}

impl<E: Clock + Send + Sync + 'static> Clone for Source<E> {
    fn clone(&self) -> Self {
        Self {
            context: self.context.clone(),
            delay: self.delay,
        }
    }
}

impl<E: Clock + Send + Sync + 'static> DutySource for Source<E> {
    async fn attester_duties(&self, epoch: u64) -> Result<Vec<AttesterDuty>, SourceError> {
        self.context.sleep(self.delay).await;
        if epoch != 0 {
            return Ok(Vec::new());
        }
        let duty = |slot, validator_index| AttesterDuty {
            slot,
            validator_index,
            committee_index: 0,
            committee_length: 1,
            validator_committee_index: 0,
        };
        Ok(vec![duty(1, 10), duty(1, 11), duty(2, 12)])
    }
    async fn attestation_data(&self, _slot: u64) -> Result<AttestationData, SourceError> {
        Err(SourceError::NotYet {
            what: "attestation data",
        })
    }
    async fn finalized_checkpoint(&self) -> Result<Checkpoint, SourceError> {
        Err(SourceError::NotYet { what: "checkpoint" })
    }
    async fn proposer_duties(&self, epoch: u64) -> Result<Vec<ProposerDuty>, SourceError> {
        if epoch != 0 {
            return Ok(Vec::new());
        }
        Ok(vec![ProposerDuty {
            slot: 1,
            validator_index: 11,
        }])
    }
    async fn block_proposal(
        &self,
        _slot: u64,
        _proposer_index: u64,
        _randao_reveal: Signature,
    ) -> Result<BlockProposal, SourceError> {
        Err(SourceError::NotYet { what: "block" })
    }
    fn check_proposal(&self, _: &BlockProposal) -> Result<(), String> {
        Ok(())
    }
    async fn aggregate_attestation(
        &self,
        _data: AttestationData,
        _committee_index: u64,
    ) -> Result<Aggregate, SourceError> {
        Err(SourceError::NotYet { what: "aggregate" })
    }
    /// Validator 20 is in epoch 1's sync committee (positions in subcommittees 0 and 1, one
    /// answer repeating it with a position out of range); validator 21 only out of range.
    async fn sync_duties(&self, epoch: u64) -> Result<Vec<SyncDuty>, SourceError> {
        if epoch != 1 {
            return Ok(Vec::new());
        }
        let duty = |validator_index, validator_sync_committee_indices| SyncDuty {
            validator_index,
            validator_sync_committee_indices,
        };
        Ok(vec![
            duty(20, vec![200, 0]),
            duty(21, vec![512]),
            duty(20, vec![511, 600]),
        ])
    }
    async fn sync_committee_contribution(
        &self,
        _slot: u64,
        _subcommittee_index: u64,
        _beacon_block_root: Root,
    ) -> Result<SyncCommitteeContribution, SourceError> {
        Err(SourceError::NotYet {
            what: "contribution",
        })
    }
}

/// Starts a scheduler and returns (its mailbox, the runner's inbox, genesis).
fn start(
    context: &deterministic::Context,
    delay: Duration,
) -> (
    cohort_ingress::scheduler::Mailbox,
    mpsc::Receiver<runner::Message>,
    SlotClock,
) {
    start_with_executor(context, delay, None)
}

fn start_with_executor(
    context: &deterministic::Context,
    delay: Duration,
    executor: Option<cohort_ingress::executor::Mailbox<cohort_marshal::Block>>,
) -> (
    cohort_ingress::scheduler::Mailbox,
    mpsc::Receiver<runner::Message>,
    SlotClock,
) {
    let clock = SlotClock::mainnet(context.current());
    let (sender, receiver) = mpsc::channel(16);
    // What the committee is told is not under test here, but it must be running: a send to a
    // stopped actor stops the scheduler.
    let (committee_sender, mut committee_inbox) =
        mpsc::channel::<cohort_ingress::committee::Message>(16);
    context
        .child("committee")
        .spawn(move |_| async move { while committee_inbox.recv().await.is_some() {} });
    let committee_mailbox = cohort_ingress::committee::Mailbox::new(committee_sender);
    let (actor, mailbox) = init(
        context.child("scheduler"),
        Config {
            clock,
            committee_id: CommitteeId::new(vec![1, 2, 3, 4]).unwrap(),
            committee: committee_mailbox,
            source: Source {
                context: Arc::new(context.child("source")),
                delay,
            },
            runner: runner::Mailbox::new(sender),
            fetch_timeout: Duration::from_secs(30),
            late_threshold: Duration::from_millis(500),
            mailbox_size: 16,
            executor,
        },
    );
    actor.start();
    (mailbox, receiver, clock)
}

async fn next_any_duty(receiver: &mut mpsc::Receiver<runner::Message>) -> cohort_ingress::Duty {
    match receiver.recv().await {
        Some(runner::Message::StartDuty(duty)) => duty,
        other => panic!("expected a duty, got {other:?}"),
    }
}

/// The next committee duty (validator duties of the slot come first, at its start).
async fn next_duty(receiver: &mut mpsc::Receiver<runner::Message>) -> cohort_ingress::Duty {
    loop {
        let duty = next_any_duty(receiver).await;
        if duty.id.role == Role::Committee {
            return duty;
        }
    }
}

#[test]
fn the_next_slot_is_pre_built_at_the_last_interval_only() {
    deterministic::Runner::default().start(|context| async move {
        let (mailbox, receivers) = cohort_ingress::executor::channels::<cohort_marshal::Block>(8);
        let mut executor = receivers.requests;
        let (_mailbox, _receiver, clock) =
            start_with_executor(&context, Duration::ZERO, Some(mailbox));
        for slot in 1..4u64 {
            let Some(cohort_ingress::executor::Message::Prebuild { slot: asked }) =
                executor.recv().await
            else {
                panic!("expected a pre-build request");
            };
            assert_eq!(asked, slot);
            // Asked at the start of the previous slot's last interval, once.
            let due = clock.interval_start(slot - 1, 2);
            assert!(context.current() >= due);
            assert!(context.current() < due + Duration::from_millis(50));
        }
    });
}

#[test]
fn proposer_and_aggregator_duties_start_at_their_slot_start() {
    deterministic::Runner::default().start(|context| async move {
        let (_mailbox, mut receiver, clock) = start(&context, Duration::ZERO);
        let mut ids = Vec::new();
        for _ in 0..3 {
            let duty = next_any_duty(&mut receiver).await;
            let at = context.current();
            assert!(at >= clock.slot_start(1));
            assert!(at < clock.slot_start(1) + Duration::from_millis(50));
            if duty.id.role == Role::Aggregator {
                assert_eq!(
                    duty.attesters.len(),
                    1,
                    "an aggregator carries its attester duty"
                );
            }
            ids.push(duty.id.to_string());
        }
        ids.sort();
        assert_eq!(
            ids,
            vec![
                "AGGREGATOR-e0-s1-v10",
                "AGGREGATOR-e0-s1-v11",
                "PROPOSER-e0-s1-v11"
            ]
        );
        let duty = next_any_duty(&mut receiver).await;
        assert_eq!(duty.id.to_string(), "COMMITTEE-1_2_3_4-e0-s1");
    });
}

#[test]
fn committee_duty_starts_at_one_third_of_its_slot() {
    deterministic::Runner::default().start(|context| async move {
        let (_mailbox, mut receiver, clock) = start(&context, Duration::ZERO);
        let duty = next_duty(&mut receiver).await;
        assert_eq!(duty.id.to_string(), "COMMITTEE-1_2_3_4-e0-s1");
        assert_eq!(duty.id.role, Role::Committee);
        assert_eq!(duty.attesters.len(), 2);
        let at = context.current();
        assert!(at >= clock.interval_start(1, 1));
        assert!(at < clock.interval_start(1, 1) + Duration::from_millis(50));
        let duty = next_duty(&mut receiver).await;
        assert_eq!(duty.id.slot, 2);
        assert_eq!(duty.attesters.len(), 1);
    });
}

#[test]
fn a_head_event_starts_the_duty_early() {
    deterministic::Runner::default().start(|context| async move {
        let (mut mailbox, mut receiver, clock) = start(&context, Duration::ZERO);
        context
            .sleep_until(clock.slot_start(1) + Duration::from_secs(1))
            .await;
        // A head for an old slot is not a trigger; one for the current slot is.
        mailbox
            .head(0, Sha256::hash(&[b"head"]))
            .await
            .expect("actor running");
        mailbox
            .head(1, Sha256::hash(&[b"head"]))
            .await
            .expect("actor running");
        let duty = next_duty(&mut receiver).await;
        assert_eq!(duty.id.slot, 1);
        let at = context.current();
        assert!(
            at < clock.slot_start(1) + Duration::from_millis(1_100),
            "not early"
        );
    });
}

/// Issue 17, item 3: the cluster finalizing the slot's attestation data before this operator's
/// beacon node reports the head starts the duty as a head event would (only for the current
/// slot).
#[test]
fn the_cluster_deciding_the_slot_starts_the_duty_early() {
    deterministic::Runner::default().start(|context| async move {
        let (mut mailbox, mut receiver, clock) = start(&context, Duration::ZERO);
        context
            .sleep_until(clock.slot_start(1) + Duration::from_secs(2))
            .await;
        assert!(mailbox.decided(0), "mailbox has room");
        assert!(mailbox.decided(1), "mailbox has room");
        let duty = next_duty(&mut receiver).await;
        assert_eq!(duty.id.slot, 1);
        let at = context.current();
        assert!(
            at < clock.slot_start(1) + Duration::from_millis(2_100),
            "not early"
        );
    });
}

#[test]
fn late_duties_still_start_within_their_slot() {
    deterministic::Runner::default().start(|context| async move {
        // The duty source takes 17 s: slot 1's duty is due at 16 s.
        let (_mailbox, mut receiver, clock) = start(&context, Duration::from_secs(17));
        let duty = next_duty(&mut receiver).await;
        assert_eq!(duty.id.slot, 1);
        let at = context.current();
        assert!(at >= clock.slot_start(1) + Duration::from_secs(5));
        assert!(at < clock.slot_start(2));
    });
}

/// The value of the scheduler's gauge `name` in the runtime's metrics.
fn held(context: &deterministic::Context, name: &str) -> i64 {
    crate::testing::gauge(context, &format!("scheduler_{name}"))
}

#[test]
fn what_the_scheduler_holds_stays_bounded_over_many_epochs() {
    deterministic::Runner::default().start(|context| async move {
        let (mut mailbox, mut receiver, clock) = start(&context, Duration::from_millis(10));
        // The runner takes every duty handed to it.
        context
            .child("runner")
            .spawn(move |_| async move { while receiver.recv().await.is_some() {} });
        for slot in 0..4 * 32 {
            context.sleep_until(clock.slot_start(slot)).await;
            mailbox
                .head(slot, Sha256::hash(&[b"head"]))
                .await
                .expect("actor running");
            context.sleep(Duration::from_secs(5)).await;
            let checks = [
                ("duty_epochs_held", 3),
                ("duty_fetches_held", 5),
                ("dispatched_slots_held", 4),
                ("head_slots_held", 2),
            ];
            for (name, bound) in checks {
                let value = held(&context, name);
                assert!(value <= bound, "slot {slot}: {name} = {value} > {bound}");
            }
        }
        assert!(held(&context, "duty_epochs_held") >= 2);
        assert!(held(&context, "dispatched_slots_held") >= 2);
    });
}

#[test]
fn sync_committee_members_sign_from_the_slot_before_their_epoch() {
    deterministic::Runner::default().start(|context| async move {
        let (_mailbox, mut receiver, clock) = start(&context, Duration::ZERO);
        let mut seen = Vec::new();
        loop {
            select! {
                duty = next_any_duty(&mut receiver) => seen.push(duty),
                _ = context.sleep_until(clock.slot_start(64)) => break,
            }
        }
        let member = SyncDuty {
            validator_index: 20,
            validator_sync_committee_indices: vec![0, 200, 511],
        };
        // Epoch 1's committee signs in slots 31..=62: the one before the epoch, up to its
        // second-to-last. Each of those slots has a committee duty carrying the member (slot
        // 31 has no attester, and is still a duty) and a contribution duty of the member.
        let contributions: Vec<u64> = seen
            .iter()
            .filter(|duty| duty.id.role == Role::SyncCommitteeContribution)
            .map(|duty| {
                assert_eq!(duty.id.target, DutyTarget::Validator(20));
                assert_eq!(duty.sync, vec![member.clone()]);
                assert!(duty.attesters.is_empty());
                duty.id.slot
            })
            .collect();
        assert_eq!(contributions, (31..=62).collect::<Vec<_>>());
        let with_sync: Vec<u64> = seen
            .iter()
            .filter(|duty| duty.id.role == Role::Committee && !duty.sync.is_empty())
            .map(|duty| {
                assert_eq!(duty.sync, vec![member.clone()]);
                duty.id.slot
            })
            .collect();
        assert_eq!(with_sync, (31..=62).collect::<Vec<_>>());
        let slot_31 = seen
            .iter()
            .find(|duty| duty.id.role == Role::Committee && duty.id.slot == 31)
            .map(|duty| duty.id.to_string());
        assert_eq!(slot_31.as_deref(), Some("COMMITTEE-1_2_3_4-e0-s31"));
        // Slots 1 and 2 attest without sync committee members.
        assert!(
            seen.iter()
                .filter(|duty| duty.id.role == Role::Committee && duty.id.slot < 3)
                .all(|duty| duty.sync.is_empty() && !duty.attesters.is_empty())
        );
    });
}
