use super::{Config, FinalizedBlocks, Observed, init};
use crate::executor::BuildOutcome;
use cohort_engine::{
    Address, B256, BlockTag, EngineError, ExecutionEngine, ExecutionPayloadV3, ExecutionTip,
    ForkchoiceState, ForkchoiceUpdated, PayloadAttributes, PayloadId, PayloadStatus,
    PayloadStatusEnum, U256,
    embedded::{self, EmbeddedEngine},
};
use cohort_ingress::{SlotClock, committee, executor::Mailbox, runner};
use cohort_marshal::Block;
use commonware_runtime::{Clock, Runner as _, Spawner as _, Supervisor as _, deterministic};
use commonware_utils::channel::mpsc;
use std::{collections::BTreeMap, sync::Arc, time::Duration};

type Engine = EmbeddedEngine<deterministic::Context>;

/// Finalized blocks by height, as marshal would serve them.
struct Blocks(BTreeMap<u64, Arc<Block>>);

impl FinalizedBlocks for Blocks {
    async fn block(&self, height: u64) -> Option<Arc<Block>> {
        self.0.get(&height).cloned()
    }
}

fn genesis() -> ExecutionTip {
    embedded::devnet_genesis()
}

async fn engine(context: &deterministic::Context, name: &'static str) -> Engine {
    EmbeddedEngine::init(
        context.child(name),
        embedded::Config::devnet(format!("{name}-engine")),
    )
    .await
    .expect("engine opens")
}

type Started = (
    Mailbox<Block>,
    mpsc::UnboundedReceiver<Observed>,
    SlotClock,
    commonware_runtime::Handle<()>,
);

/// Starts an executor on `engine`; returns its mailbox, observer and slot clock.
fn start<X: ExecutionEngine>(
    context: &deterministic::Context,
    engine: X,
    processed: Option<u64>,
    blocks: Blocks,
) -> Started {
    // Most tests do not read what the runner is told, but it must be running: a send to a
    // stopped actor stops the executor.
    let (runner_sender, mut runner_inbox) = mpsc::channel::<runner::Message>(1024);
    context
        .child("runner")
        .spawn(move |_| async move { while runner_inbox.recv().await.is_some() {} });
    start_with_runner(context, engine, processed, blocks, runner_sender)
}

/// [`start`], with the runner's messages going to `runner_sender`.
fn start_with_runner<X: ExecutionEngine>(
    context: &deterministic::Context,
    engine: X,
    processed: Option<u64>,
    blocks: Blocks,
    runner_sender: mpsc::Sender<runner::Message>,
) -> Started {
    let clock = SlotClock::mainnet(context.current() + Duration::from_secs(12));
    let (committee_sender, mut committee_inbox) = mpsc::channel::<committee::Message>(1024);
    context
        .child("committee")
        .spawn(move |_| async move { while committee_inbox.recv().await.is_some() {} });
    let (observer, observed) = mpsc::unbounded_channel();
    let (actor, mailbox) = init(
        context.child("executor"),
        Config {
            marshal: blocks,
            processed_height: processed,
            runner: runner::Mailbox::new(runner_sender),
            committee: committee::Mailbox::new(committee_sender),
            avs: None,
            observer: Some(observer),
            engine,
            clock,
            operator: 0,
            fee_recipient: Address::repeat_byte(1),
            execution_genesis: genesis(),
            partition: "executor-proposals".into(),
            engine_timeout: Duration::from_secs(1),
            retry_delay: Duration::from_millis(100),
            heartbeat: Duration::from_secs(4),
        },
    );
    let handle = actor.start();
    (mailbox, observed, clock, handle)
}

/// Hands `block` to the executor as marshal does once it is finalized.
fn deliver(mailbox: &mut Mailbox<Block>, block: Arc<Block>) {
    use commonware_consensus::{Reporter as _, marshal::Update};
    use commonware_cryptography::Digested;
    use commonware_utils::{Acknowledgement as _, acknowledgement::Exact};
    let digest = commonware_cryptography::Digestible::digest(block.as_ref());
    let (ack, _acknowledged) = Exact::handle();
    let _ = mailbox.report(Update::Block(Digested::precomputed(block, digest), ack));
}

fn build_outcome(observed: &mut mpsc::UnboundedReceiver<Observed>) -> Option<BuildOutcome> {
    while let Ok(event) = observed.try_recv() {
        if let Observed::Built { outcome, .. } = event {
            return Some(outcome);
        }
    }
    None
}

fn tip(payload: &ExecutionPayloadV3) -> ExecutionTip {
    ExecutionTip::of(payload)
}

#[test]
fn a_pre_build_is_used_while_the_head_holds_and_a_slot_never_gets_two_payloads() {
    deterministic::Runner::default().start(|context| async move {
        let engine = engine(&context, "a").await;
        let (mailbox, mut observed, _, _handle) =
            start(&context, engine.clone(), None, Blocks(BTreeMap::new()));

        // Pre-built on genesis, asked for on genesis: the pre-built payload is used.
        mailbox.prebuild(0).expect("executor running");
        let first = mailbox
            .canonicalize_and_build(0, genesis())
            .await
            .expect("a payload for slot 0");
        assert_eq!(
            first.payload_inner.payload_inner.parent_hash,
            genesis().hash
        );
        assert_eq!(build_outcome(&mut observed), Some(BuildOutcome::Hit));

        // A later view of the same slot on the same parent gets the same payload back.
        let again = mailbox.canonicalize_and_build(0, genesis()).await;
        assert_eq!(again.as_ref(), Some(&first));
        assert_eq!(build_outcome(&mut observed), Some(BuildOutcome::Repeat));

        // Pre-built for slot 1 on genesis, then the head moves to slot 0's payload: the
        // leader of slot 1 builds again on the new head.
        mailbox.prebuild(1).expect("executor running");
        mailbox
            .canonicalize_head(tip(&first))
            .expect("executor running");
        let second = mailbox
            .canonicalize_and_build(1, tip(&first))
            .await
            .expect("a payload for slot 1");
        assert_eq!(
            second.payload_inner.payload_inner.parent_hash,
            tip(&first).hash
        );
        assert_eq!(build_outcome(&mut observed), Some(BuildOutcome::Fallback));

        // Slot 1 on another parent would be a second, different payload for the slot.
        assert_eq!(mailbox.canonicalize_and_build(1, genesis()).await, None);
        // A slot whose payload the parent already carries gets none.
        assert_eq!(mailbox.canonicalize_and_build(1, tip(&second)).await, None);
        // The engine knows both builds: a follower of them can be checked here.
        assert_eq!(
            engine.block_by_number(BlockTag::Latest).await.unwrap(),
            Some(tip(&first))
        );
    });
}

/// Builds `count` finalized blocks with payloads on `builder`, as a cluster would.
async fn chain(builder: &Engine, count: u64) -> BTreeMap<u64, Arc<Block>> {
    let mut blocks = BTreeMap::new();
    let mut parent = Arc::new(Block::genesis(genesis()));
    blocks.insert(0, parent.clone());
    for height in 1..=count {
        let slot = height;
        let root = cohort_ingress::executor::slot_root(slot);
        let update = builder
            .forkchoice_updated(
                ForkchoiceState {
                    head_block_hash: parent.execution.hash,
                    safe_block_hash: B256::ZERO,
                    finalized_block_hash: B256::ZERO,
                },
                Some(PayloadAttributes {
                    timestamp: 12 * (slot + 1),
                    prev_randao: B256::ZERO,
                    suggested_fee_recipient: Address::ZERO,
                    withdrawals: Some(Vec::new()),
                    parent_beacon_block_root: Some(root),
                    ..Default::default()
                }),
            )
            .await
            .unwrap();
        let payload = builder
            .get_payload(update.payload_id.unwrap())
            .await
            .unwrap();
        builder.new_payload(payload.clone(), root).await.unwrap();
        let block = Arc::new(Block::new(
            commonware_cryptography::Digestible::digest(parent.as_ref()),
            height,
            slot,
            0,
            Vec::new(),
            parent.execution,
            Some(payload),
        ));
        blocks.insert(height, block.clone());
        parent = block;
    }
    blocks
}

#[test]
fn a_start_backfills_what_the_engine_is_missing() {
    deterministic::Runner::default().start(|context| async move {
        let builder = engine(&context, "builder").await;
        let mut wallet = cohort_evm::Wallet::new(&cohort_evm::DEVNET_FUNDED_KEY, 1337, 0)
            .expect("the devnet key");
        let transfer = wallet
            .transfer(Address::repeat_byte(0xbe), U256::from(1), 10_000_000_000, 1)
            .expect("signs");
        builder.pool_transaction(transfer).await.expect("pooled");
        let blocks = chain(&builder, 3).await;
        let expected = blocks[&3].execution;
        // A fresh engine under an operator whose marshal already processed height 3.
        let fresh = engine(&context, "fresh").await;
        let (_mailbox, _observed, _, _handle) =
            start(&context, fresh.clone(), Some(3), Blocks(blocks.clone()));
        context.sleep(Duration::from_secs(1)).await;
        let (finalized, root) = fresh.finalized().await;
        assert_eq!(finalized, expected);
        let payload = blocks[&3].payload.clone().unwrap();
        assert_eq!(root, payload.payload_inner.payload_inner.state_root);
    });
}

/// An engine that answers `beyond` (INVALID, SYNCING) to every payload numbered above
/// `reachable`, and is the embedded engine for the rest.
#[derive(Clone)]
struct Gated {
    engine: Engine,
    reachable: Arc<std::sync::atomic::AtomicU64>,
    beyond: PayloadStatusEnum,
}

impl Gated {
    fn new(engine: Engine, reachable: u64, beyond: PayloadStatusEnum) -> Self {
        Self {
            engine,
            reachable: Arc::new(std::sync::atomic::AtomicU64::new(reachable)),
            beyond,
        }
    }
}

impl ExecutionEngine for Gated {
    async fn new_payload(
        &self,
        payload: ExecutionPayloadV3,
        root: B256,
    ) -> Result<PayloadStatus, EngineError> {
        let number = payload.payload_inner.payload_inner.block_number;
        if number > self.reachable.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(PayloadStatus::from_status(self.beyond.clone()));
        }
        self.engine.new_payload(payload, root).await
    }
    async fn forkchoice_updated(
        &self,
        state: ForkchoiceState,
        attributes: Option<PayloadAttributes>,
    ) -> Result<ForkchoiceUpdated, EngineError> {
        self.engine.forkchoice_updated(state, attributes).await
    }
    async fn get_payload(&self, id: PayloadId) -> Result<ExecutionPayloadV3, EngineError> {
        self.engine.get_payload(id).await
    }
    async fn block_by_number(&self, tag: BlockTag) -> Result<Option<ExecutionTip>, EngineError> {
        self.engine.block_by_number(tag).await
    }
}

#[test]
fn an_invalid_finalized_payload_stops_the_executor() {
    deterministic::Runner::default().start(|context| async move {
        let builder = engine(&context, "builder").await;
        let blocks = chain(&builder, 2).await;
        // Every payload is numbered 1 or more: all are refused.
        let refusing = Gated::new(
            engine(&context, "refusing").await,
            0,
            PayloadStatusEnum::Invalid {
                validation_error: "refused by the test".into(),
            },
        );
        let (mailbox, _observed, _, handle) =
            start(&context, refusing.clone(), Some(2), Blocks(blocks));
        // The executor stops instead of going on past a finalized payload it cannot execute.
        assert!(handle.await.is_ok());
        assert_eq!(mailbox.canonicalize_and_build(5, genesis()).await, None);
        assert_eq!(refusing.engine.finalized().await.0, genesis());
    });
}

/// Decisions are final once marshal delivers their block: the runner gets them at once, even
/// while the engine is still syncing the block's payload (before, the runner heard of them only
/// after newPayload and forkchoice, so a syncing engine held back every post-consensus
/// signature of the cluster's decisions).
#[test]
fn decisions_reach_the_runner_while_the_engine_syncs_their_payload() {
    deterministic::Runner::default().start(|context| async move {
        let builder = engine(&context, "builder").await;
        let blocks = chain(&builder, 1).await;
        let block = blocks[&1].clone();
        let syncing = Gated::new(
            engine(&context, "syncing").await,
            0,
            PayloadStatusEnum::Syncing,
        );
        let (runner_sender, mut runner_inbox) = mpsc::channel::<runner::Message>(16);
        let (mut mailbox, _observed, _, _handle) = start_with_runner(
            &context,
            syncing.clone(),
            None,
            Blocks(BTreeMap::new()),
            runner_sender,
        );
        deliver(&mut mailbox, block);

        let told = commonware_macros::select! {
            message = runner_inbox.recv() => message,
            _ = context.sleep(Duration::from_secs(5)) => None,
        };
        assert!(
            matches!(
                told,
                Some(runner::Message::Finalized {
                    height: 1,
                    block_slot: 1,
                    ..
                })
            ),
            "the runner was not told of the finalized block while the engine synced"
        );
        // The engine still has not taken the payload: the runner did not wait for it.
        assert_eq!(syncing.engine.finalized().await.0, genesis());
    });
}

/// A send to a stopped actor is an error that stops the sender (issue 19, item 7): with the
/// runner gone, the executor cannot hand on a finalized block's decisions and stops instead of
/// going on as if the runner had heard them (before, the hand-off's failure was dropped and the
/// executor kept finalizing blocks whose decisions nobody would sign).
#[test]
fn a_stopped_runner_stops_the_executor_at_its_next_hand_off() {
    deterministic::Runner::default().start(|context| async move {
        let builder = engine(&context, "builder").await;
        let blocks = chain(&builder, 1).await;
        let block = blocks[&1].clone();
        let follower = engine(&context, "follower").await;
        let (runner_sender, runner_inbox) = mpsc::channel::<runner::Message>(16);
        let (mut mailbox, _observed, _, handle) = start_with_runner(
            &context,
            follower.clone(),
            None,
            Blocks(BTreeMap::new()),
            runner_sender,
        );
        drop(runner_inbox);
        deliver(&mut mailbox, block);

        let stopped = commonware_macros::select! {
            result = handle => result.is_ok(),
            _ = context.sleep(Duration::from_secs(30)) => false,
        };
        assert!(stopped, "the executor went on after the runner stopped");
        // Nothing past the failed hand-off reached the engine.
        assert_eq!(follower.finalized().await.0, genesis());
        assert_eq!(mailbox.canonicalize_and_build(5, genesis()).await, None);
    });
}

/// The value of the executor's gauge `name` in the runtime's metrics.
fn held(context: &deterministic::Context, name: &str) -> i64 {
    crate::testing::gauge(context, &format!("executor_{name}"))
}

#[test]
fn tips_reported_during_a_long_backfill_are_not_kept() {
    use commonware_consensus::{
        Reporter as _,
        marshal::Update,
        types::{Epoch, Height, Round, View},
    };
    use std::sync::atomic::Ordering;
    deterministic::Runner::default().start(|context| async move {
        let builder = engine(&context, "builder").await;
        let blocks = chain(&builder, 3).await;
        let expected = blocks[&3].execution;
        let lagging = Gated::new(
            engine(&context, "lagging").await,
            1,
            PayloadStatusEnum::Syncing,
        );
        let reachable = lagging.reachable.clone();
        let (mut mailbox, _observed, _, _handle) =
            start(&context, lagging.clone(), Some(3), Blocks(blocks.clone()));
        // The engine syncs for a long time on the second payload while the cluster goes on
        // finalizing: marshal reports a new tip with every finalization.
        let digest = commonware_cryptography::Digestible::digest(blocks[&3].as_ref());
        for height in 4..1_000u64 {
            let round = Round::new(Epoch::zero(), View::new(height));
            let _ = mailbox.report(Update::Tip(round, Height::new(height), digest));
            context.sleep(Duration::from_millis(50)).await;
        }
        // The backfill takes in what arrived before the third payload, which then syncs too.
        reachable.store(2, Ordering::Relaxed);
        context.sleep(Duration::from_secs(1)).await;
        assert_eq!(lagging.engine.finalized().await.0, blocks[&2].execution);
        assert_eq!(held(&context, "finalized_blocks_held"), 0);
        reachable.store(3, Ordering::Relaxed);
        context.sleep(Duration::from_secs(1)).await;
        assert_eq!(lagging.engine.finalized().await.0, expected);
    });
}

#[test]
fn payloads_handed_out_are_remembered_for_a_window_of_slots() {
    deterministic::Runner::default().start(|context| async move {
        let engine = engine(&context, "a").await;
        let (mailbox, _observed, _, _handle) =
            start(&context, engine, None, Blocks(BTreeMap::new()));
        let mut parent = genesis();
        for slot in 0..100 {
            let payload = mailbox
                .canonicalize_and_build(slot, parent)
                .await
                .expect("a payload for the slot");
            parent = tip(&payload);
            let held = held(&context, "proposed_payloads_held");
            assert_eq!(held, (slot as i64 + 1).min(65), "slot {slot}");
        }
    });
}

/// A [`FaultyForkchoice`] fault (0, the default, answers): a forkchoice update never answers
/// (a stuck execution client, or one busy reorganising), and only the executor's timeout ends
/// the call.
const HANG: u8 = 1;
/// Answer the storage error, as the embedded engine does once a write is lost.
const STORAGE_FAILED: u8 = 2;

/// The embedded engine, except for forkchoice updates while `fault` is set (to [`HANG`] or
/// [`STORAGE_FAILED`]).
#[derive(Clone)]
struct FaultyForkchoice {
    engine: Engine,
    fault: Arc<std::sync::atomic::AtomicU8>,
}

impl FaultyForkchoice {
    async fn new(context: &deterministic::Context, name: &'static str) -> Self {
        Self {
            engine: engine(context, name).await,
            fault: Default::default(),
        }
    }

    fn set(&self, fault: u8) {
        self.fault
            .store(fault, std::sync::atomic::Ordering::Relaxed);
    }
}

impl ExecutionEngine for FaultyForkchoice {
    async fn new_payload(
        &self,
        payload: ExecutionPayloadV3,
        root: B256,
    ) -> Result<PayloadStatus, EngineError> {
        self.engine.new_payload(payload, root).await
    }
    async fn forkchoice_updated(
        &self,
        state: ForkchoiceState,
        attributes: Option<PayloadAttributes>,
    ) -> Result<ForkchoiceUpdated, EngineError> {
        match self.fault.load(std::sync::atomic::Ordering::Relaxed) {
            HANG => futures::future::pending::<()>().await,
            STORAGE_FAILED => {
                return Err(EngineError::Storage("injected by the test".into()));
            }
            _ => {}
        }
        self.engine.forkchoice_updated(state, attributes).await
    }
    async fn get_payload(&self, id: PayloadId) -> Result<ExecutionPayloadV3, EngineError> {
        self.engine.get_payload(id).await
    }
    async fn block_by_number(&self, tag: BlockTag) -> Result<Option<ExecutionTip>, EngineError> {
        self.engine.block_by_number(tag).await
    }
}

/// Issue 19, item 6: a forkchoice update the engine never answers costs the executor's other
/// callers nothing. Before, every engine call ran inside the executor's loop, so a follower's
/// payload check and a leader's build (from its pre-built payload, which needs no forkchoice
/// update) both waited out the hanging update's timeout (1 s here, 2 s in a node), and each
/// head update queued behind it cost as much again.
#[test]
fn a_hanging_forkchoice_update_delays_no_check_and_no_build() {
    deterministic::Runner::default().start(|context| async move {
        let builder = engine(&context, "builder").await;
        let blocks = chain(&builder, 1).await;
        let foreign = blocks[&1]
            .payload
            .clone()
            .expect("block 1 carries a payload");
        let hanging = FaultyForkchoice::new(&context, "hanging").await;
        let (mailbox, mut observed, _, _handle) =
            start(&context, hanging.clone(), None, Blocks(BTreeMap::new()));
        // Slot 0's payload is pre-built while the engine still answers.
        mailbox.prebuild(0).expect("executor running");
        context.sleep(Duration::from_millis(10)).await;

        // From now on forkchoice updates hang: consensus votes for two heads in a row.
        hanging.set(HANG);
        mailbox
            .canonicalize_head(tip(&foreign))
            .expect("executor running");
        mailbox
            .canonicalize_head(ExecutionTip {
                number: 2,
                hash: B256::repeat_byte(2),
                timestamp: 36,
            })
            .expect("executor running");
        context.sleep(Duration::from_millis(1)).await;

        // A follower's check is answered at once.
        let asked = context.current();
        let verdict = mailbox.verify(1, foreign.clone()).await;
        assert_eq!(verdict, cohort_ingress::executor::PayloadVerdict::Valid);
        let waited = context.current().duration_since(asked).unwrap();
        assert!(
            waited < Duration::from_millis(50),
            "the check waited {waited:?}"
        );

        // So is the leader's build from its pre-built payload.
        let asked = context.current();
        let payload = mailbox
            .canonicalize_and_build(0, genesis())
            .await
            .expect("the pre-built payload");
        let waited = context.current().duration_since(asked).unwrap();
        assert!(
            waited < Duration::from_millis(50),
            "the build waited {waited:?}"
        );
        assert_eq!(
            payload.payload_inner.payload_inner.parent_hash,
            genesis().hash
        );
        assert_eq!(build_outcome(&mut observed), Some(BuildOutcome::Hit));

        // The mailbox never held a backlog, and the engine calls in flight stay bounded.
        assert_eq!(held(&context, "requests_held"), 0);
        assert!(held(&context, "engine_calls_held") <= super::MAX_ENGINE_CALLS as i64);
    });
}

/// Issue 19: a storage failure heard by the head lane (not only the finalized one) stops the
/// executor. Before, the head and prebuild lanes only logged it, and an operator whose engine
/// had lost its store kept running, answering every build and check with errors.
#[test]
fn a_storage_failure_on_a_head_update_stops_the_executor() {
    deterministic::Runner::default().start(|context| async move {
        let builder = engine(&context, "builder").await;
        let blocks = chain(&builder, 1).await;
        let head = tip(blocks[&1]
            .payload
            .as_ref()
            .expect("block 1 carries a payload"));
        let broken = FaultyForkchoice::new(&context, "broken").await;
        let (mailbox, _observed, _, handle) =
            start(&context, broken.clone(), None, Blocks(BTreeMap::new()));
        context.sleep(Duration::from_millis(10)).await;
        broken.set(STORAGE_FAILED);
        mailbox.canonicalize_head(head).expect("executor running");
        let stopped = commonware_macros::select! {
            _ = handle => true,
            _ = context.sleep(Duration::from_secs(30)) => false,
        };
        assert!(
            stopped,
            "the executor kept running on a failed engine store"
        );
    });
}
