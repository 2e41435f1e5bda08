use super::{Config, init};
use cohort_ingress::{
    DutySink, SignedAggregate, SignedAttestation, SignedBlock, SignedContributionAndProof,
    SignedSyncCommitteeMessage, SinkError, SlotClock,
    exits::{ExitPartial, ExitPartials, Mailbox, SignedVoluntaryExit},
    keys::{self, ValidatorShare},
    signing,
};
use commonware_codec::Encode as _;
use commonware_cryptography::{Signer as _, ed25519};
use commonware_p2p::{Recipients, Sender as _, simulated};
use commonware_runtime::{
    Clock as _, Metrics as _, Quota, Runner as _, Supervisor as _, deterministic,
};
use commonware_utils::{NZU32, ordered::Set};
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

const OPERATORS: usize = 4;
const THRESHOLD: u32 = 3;
const VALIDATOR: u64 = 5;
const CAPELLA: [u8; 4] = [3, 0, 0, 1];
const GENESIS_VALIDATORS_ROOT: [u8; 32] = [9; 32];

/// A beacon node that takes every voluntary exit and remembers it.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<SignedVoluntaryExit>>>);

impl DutySink for Recorder {
    async fn submit_attestations(&self, _: Vec<SignedAttestation>) -> Result<(), SinkError> {
        Ok(())
    }
    async fn submit_block(&self, _: SignedBlock) -> Result<(), SinkError> {
        Ok(())
    }
    async fn submit_aggregate(&self, _: SignedAggregate) -> Result<(), SinkError> {
        Ok(())
    }
    async fn submit_sync_committee_messages(
        &self,
        _: Vec<SignedSyncCommitteeMessage>,
    ) -> Result<(), SinkError> {
        Ok(())
    }
    async fn submit_contributions(
        &self,
        _: Vec<SignedContributionAndProof>,
    ) -> Result<(), SinkError> {
        Ok(())
    }
    async fn submit_voluntary_exit(&self, exit: SignedVoluntaryExit) -> Result<(), SinkError> {
        self.0.lock().expect("not poisoned").push(exit);
        Ok(())
    }
}

struct Cluster {
    clock: SlotClock,
    /// Operators 0, 1 and 2 run the actor; operator 3 only has a raw sender (a liar).
    mailboxes: Vec<Mailbox>,
    /// Each actor's operator id (1-based share position), in `mailboxes` order.
    ids: Vec<u64>,
    liar: simulated::Sender<ed25519::PublicKey, deterministic::Context>,
    liar_share: ValidatorShare,
    sink: Recorder,
    public_key: [u8; 48],
}

async fn start(context: &deterministic::Context) -> Cluster {
    let keys: Vec<ed25519::PrivateKey> = (0..OPERATORS as u64)
        .map(ed25519::PrivateKey::from_seed)
        .collect();
    let operators: Set<ed25519::PublicKey> =
        Set::from_iter_dedup(keys.iter().map(|key| key.public_key()));
    let split = keys::split(
        &mut commonware_utils::test_rng(),
        &keys::interop_secret(VALIDATOR),
        OPERATORS as u32,
        THRESHOLD,
    )
    .expect("valid threshold");
    let oracle =
        crate::testing::fully_connected(context, &operators, 1 << 16, Duration::from_millis(20))
            .await;
    let clock = SlotClock::minimal(context.current(), Duration::from_secs(6));
    let sink = Recorder::default();
    let quota = Quota::per_second(NZU32!(1_000));
    let mut mailboxes = Vec::new();
    let mut ids = Vec::new();
    let mut liar = None;
    for (index, key) in keys.iter().enumerate() {
        let position = operators.position(&key.public_key()).expect("an operator");
        let share = split.for_operator(position).expect("a share");
        let (sender, receiver) = oracle
            .control(key.public_key())
            .register(0, quota)
            .await
            .expect("channel registers");
        if index == 3 {
            liar = Some(sender);
            continue;
        }
        let (actor, mailbox) = init(
            context.child("exits").with_attribute("operator", index),
            Config {
                clock,
                sink: sink.clone(),
                operators: operators.clone(),
                shares: Arc::new(BTreeMap::from([(VALIDATOR, share)])),
                capella_fork_version: CAPELLA,
                genesis_validators_root: GENESIS_VALIDATORS_ROOT,
                submit_timeout: Duration::from_secs(2),
                mailbox_size: 16,
            },
        );
        actor.start(position as u32, sender, receiver);
        mailboxes.push(mailbox);
        ids.push(position as u64 + 1);
    }
    let liar_position = operators
        .position(&keys[3].public_key())
        .expect("an operator");
    let public_key: [u8; 48] = commonware_codec::Encode::encode(split.sharing.public())
        .as_ref()
        .try_into()
        .expect("48 bytes");
    Cluster {
        clock,
        mailboxes,
        ids,
        liar: liar.expect("operator 3 registered"),
        liar_share: split.for_operator(liar_position).expect("a share"),
        sink,
        public_key,
    }
}

/// The exit verifies under the validator's whole public key with an independent BLS library.
fn verifies(exit: &SignedVoluntaryExit, public_key: &[u8; 48]) -> bool {
    let root = signing::voluntary_exit_signing_root(
        exit.validator_index,
        exit.epoch,
        CAPELLA,
        GENESIS_VALIDATORS_ROOT,
    );
    let Ok(key) = blst::min_pk::PublicKey::key_validate(public_key) else {
        return false;
    };
    let Ok(signature) =
        blst::min_pk::Signature::sig_validate(&keys::signature_bytes(&exit.signature), true)
    else {
        return false;
    };
    signature.verify(
        true,
        &root,
        b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_",
        &[],
        &key,
        true,
    ) == blst::BLST_ERROR::BLST_SUCCESS
}

fn counter(context: &deterministic::Context, suffix: &str) -> u64 {
    context
        .encode()
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let name = series.split('{').next()?;
            name.ends_with(suffix).then(|| value.parse::<f64>().ok())?
        })
        .sum::<f64>() as u64
}

#[test]
fn an_exit_needs_threshold_operators_who_each_asked_for_it_and_a_liar_changes_nothing() {
    deterministic::Runner::default().start(|context| async move {
        let mut cluster = start(&context).await;
        let clock = cluster.clock;
        context
            .sleep_until(clock.slot_start(clock.first_slot(2)))
            .await;

        // Operator 0 asks first: the current epoch, its own partial only.
        let progress = cluster.mailboxes[0]
            .request(VALIDATOR, None)
            .await
            .expect("the request is taken");
        assert_eq!(
            (progress.epoch, progress.signers.len(), progress.threshold),
            (2, 1, 3)
        );
        // A future epoch and a validator the cluster does not run are refused.
        assert!(
            cluster.mailboxes[1]
                .request(VALIDATOR, Some(9))
                .await
                .is_err()
        );
        assert!(cluster.mailboxes[1].request(77, None).await.is_err());

        // The liar announces a partial made with its share over another root, and one for an
        // epoch nobody chose, signed properly: the first is dropped, the second counts for
        // nothing unless others join it.
        let wrong = keys::sign_partial(&cluster.liar_share.share, &[1; 32]).value;
        let message = ExitPartials(vec![ExitPartial {
            validator_index: VALIDATOR,
            epoch: 2,
            signature: wrong,
        }]);
        let _ = cluster.liar.send(Recipients::All, message.encode(), false);

        // An epoch later operator 1 asks without an epoch: it joins operator 0's epoch 2.
        context
            .sleep_until(clock.slot_start(clock.first_slot(3)))
            .await;
        let progress = cluster.mailboxes[1]
            .request(VALIDATOR, None)
            .await
            .expect("the request is taken");
        assert_eq!(
            progress.epoch, 2,
            "a later request joins the epoch already signed"
        );
        context.sleep(clock.slot_duration * 4).await;
        assert!(
            cluster.sink.0.lock().expect("not poisoned").is_empty(),
            "two operators and a liar exited a validator"
        );
        assert!(
            counter(&context, "exits_partials_invalid_total") >= 1,
            "the liar's partial was not counted invalid"
        );
        let status = cluster.mailboxes[2].status().await.expect("running");
        assert_eq!(status.len(), 1);
        assert!(!status[0].intended_here && status[0].signed.is_none());
        let mut expected = vec![cluster.ids[0], cluster.ids[1]];
        expected.sort_unstable();
        assert_eq!(status[0].signers, expected);

        // The third operator asks: threshold reached, combined, verified, submitted.
        let progress = cluster.mailboxes[2]
            .request(VALIDATOR, None)
            .await
            .expect("the request is taken");
        assert_eq!(progress.epoch, 2);
        context.sleep(clock.slot_duration).await;
        let exits = cluster.sink.0.lock().expect("not poisoned").clone();
        assert!(!exits.is_empty(), "no exit submitted");
        for exit in &exits {
            assert_eq!((exit.validator_index, exit.epoch), (VALIDATOR, 2));
            assert!(
                verifies(exit, &cluster.public_key),
                "the combined exit does not verify"
            );
        }
        for mailbox in &mut cluster.mailboxes {
            let status = mailbox.status().await.expect("running");
            assert!(
                status.iter().any(|p| p.submitted),
                "every operator combined and submitted"
            );
        }
        // Once submitted, nothing more is announced or submitted.
        let submitted = exits.len();
        context.sleep(clock.slot_duration * 6).await;
        assert_eq!(
            cluster.sink.0.lock().expect("not poisoned").len(),
            submitted
        );
    });
}
