use super::{Config, init};
use cohort_ingress::{
    Aggregate, AttestationData, AttesterDuty, BlockProposal, Checkpoint, DutySource, ProposerDuty,
    Root, SlotClock, SourceError, SyncCommitteeContribution, SyncDuty,
    doppelganger::{Clearance, Guard, Status},
    keys::Signature,
};
use commonware_runtime::{Clock as _, Runner as _, Supervisor as _, deterministic};
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

/// Every liveness question asked: the epoch and the validators.
type Asked = Arc<Mutex<Vec<(u64, Vec<u64>)>>>;

/// A beacon node that answers only liveness, from a table: `None` for an epoch it fails on.
#[derive(Clone, Default)]
struct Liveness {
    answers: Arc<Mutex<BTreeMap<u64, Option<Vec<u64>>>>>,
    asked: Asked,
}

fn unavailable() -> SourceError {
    SourceError::Unavailable("only liveness here".into())
}

impl DutySource for Liveness {
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
    async fn aggregate_attestation(
        &self,
        _: AttestationData,
        _: u64,
    ) -> Result<Aggregate, SourceError> {
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
    async fn liveness(&self, epoch: u64, validators: Vec<u64>) -> Result<Vec<u64>, SourceError> {
        self.asked
            .lock()
            .expect("not poisoned")
            .push((epoch, validators.clone()));
        match self.answers.lock().expect("not poisoned").get(&epoch) {
            Some(Some(live)) => Ok(validators
                .into_iter()
                .filter(|v| live.contains(v))
                .collect()),
            _ => Err(SourceError::Unavailable(format!(
                "no answer for epoch {epoch}"
            ))),
        }
    }
}

fn gauge(context: &deterministic::Context, status: &str) -> i64 {
    use commonware_runtime::Metrics as _;
    // The full name the node exports under its `operator` context is
    // `operator_doppelganger_validators`; here the actor's parent is the root context.
    let wanted = format!("doppelganger_validators{{status=\"{status}\"}}");
    context
        .encode()
        .lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == wanted).then(|| value.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no gauge for {status}"))
}

#[test]
fn clears_after_two_clean_epochs_detects_a_live_one_and_skips_an_unanswered_epoch() {
    deterministic::Runner::default().start(|context| async move {
        let clock = SlotClock::minimal(context.current(), Duration::from_secs(6));
        let source = Liveness::default();
        {
            let mut answers = source.answers.lock().expect("not poisoned");
            // Epoch 1: validator 3 is live elsewhere. Epoch 2: the node fails. Epoch 3: clean.
            answers.insert(1, Some(vec![3]));
            answers.insert(2, None);
            answers.insert(3, Some(vec![]));
            answers.insert(4, Some(vec![]));
        }
        let guard = Guard::watching([1, 2, 3], 0);
        init(
            context.child("doppelganger"),
            Config {
                clock,
                source: source.clone(),
                guard: guard.clone(),
                fetch_timeout: Duration::from_secs(1),
            },
        )
        .start();

        // Before epoch 1 has ended nothing is asked and nothing is signed for.
        context
            .sleep_until(clock.slot_start(clock.first_slot(2)))
            .await;
        assert!(source.asked.lock().expect("not poisoned").is_empty());
        assert!(!guard.may_sign(1));

        // Epoch 1 answered: 3 is detected; 1 and 2 have one clean epoch.
        context
            .sleep_until(clock.slot_start(clock.first_slot(2) + 1))
            .await;
        assert_eq!(guard.status(3), Some(Status::Detected { epoch: 1 }));
        assert!(!guard.may_sign(1) && !guard.may_sign(2));
        assert_eq!(gauge(&context, "detected"), 1);

        // Epoch 2 unanswered (retried through epoch 3, then given up): still not cleared.
        context
            .sleep_until(clock.slot_start(clock.first_slot(3) + 1))
            .await;
        assert!(!guard.may_sign(1));
        let asked_epoch_2 = source
            .asked
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|(epoch, _)| *epoch == 2)
            .count();
        assert!(asked_epoch_2 > 1, "a failed epoch is asked again");

        // Epoch 3 clean: 1 and 2 cleared, and only they were asked about.
        context
            .sleep_until(clock.slot_start(clock.first_slot(4) + 1))
            .await;
        assert_eq!(guard.status(1), Some(Status::Cleared(Clearance::NotLive)));
        assert_eq!(guard.status(2), Some(Status::Cleared(Clearance::NotLive)));
        assert!(!guard.may_sign(3), "a detected validator stays detected");
        assert_eq!(gauge(&context, "cleared"), 2);
        assert_eq!(gauge(&context, "watching"), 0);
        let last = source
            .asked
            .lock()
            .expect("not poisoned")
            .last()
            .cloned()
            .expect("asked");
        assert_eq!(last, (3, vec![1, 2]));
        // With nobody left to watch the checker ends: epoch 4 is never asked.
        context
            .sleep_until(clock.slot_start(clock.first_slot(6)))
            .await;
        assert!(
            source
                .asked
                .lock()
                .expect("not poisoned")
                .iter()
                .all(|(epoch, _)| *epoch <= 3)
        );
    });
}
