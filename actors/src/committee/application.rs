//! The consensus-facing side of the committee: builds and checks cluster blocks.
//!
//! Marshal's `Inline` wrapper calls this with each block's ancestry; height and parent linkage
//! are already checked there. What this adds is what only Cohort knows: which duty values go
//! into a block, and whether this operator can vouch for the values in someone else's.

use cohort_engine::ExecutionTip;
use cohort_ingress::{
    DutyId, SlotClock, committee,
    executor::{self, PayloadVerdict, slot_randao},
};
use cohort_marshal::{Block, ConsensusContext, Digest, PublicKey, Scheme};
use commonware_consensus::marshal::ancestry::Ancestry;
use commonware_cryptography::{Digested, Digestible};
use commonware_runtime::Clock;
use commonware_utils::channel::mpsc;
use commonware_utils::ordered::{Quorum as _, Set};
use futures::StreamExt;
use std::time::SystemTime;
use std::{collections::BTreeSet, sync::Arc};
use tracing::{debug, error, warn};

/// Most ancestors read to find duties already decided in unfinalized blocks of a slot.
const MAX_ANCESTRY_WALK: usize = 64;

/// When this operator, as leader, built a block: for latency reports.
pub type ProposalObserver = mpsc::UnboundedSender<(Digest, SystemTime)>;

/// What a leader knows when it fills a block: the view, its current slot and the parent's.
#[derive(Clone, Copy, Debug)]
pub struct LeaderView {
    pub view: u64,
    pub current_slot: u64,
    pub parent_slot: u64,
}

/// Rewrites the batch this operator, as leader, is about to propose: how a simulation makes a
/// byzantine leader (well-formed blocks with harmful values) out of otherwise honest code.
/// Never set by a node.
pub type ProposalTamper =
    Arc<dyn Fn(&LeaderView, committee::Batch) -> committee::Batch + Send + Sync>;

#[derive(Clone)]
pub struct Application {
    committee: committee::Mailbox,
    executor: executor::Mailbox<Block>,
    clock: SlotClock,
    participants: Set<PublicKey>,
    proposals: Option<ProposalObserver>,
    /// A byzantine leader's rewrite of its batches (simulation only; see [`ProposalTamper`]).
    tamper: Option<ProposalTamper>,
    /// The cluster-run AVS, if this cluster runs one: its tasks and outputs ride in blocks.
    avs: Option<cohort_ingress::avs::Mailbox>,
    /// A deliberately injected bug, for proving that simulation campaigns catch it: hands
    /// every block this follower votes for to the runner as if it were finalized. Compiled
    /// only with the `test-hooks` feature, never into a release node.
    #[cfg(feature = "test-hooks")]
    decide_on_verify: Option<cohort_ingress::runner::Mailbox>,
}

impl Application {
    pub fn new(
        committee: committee::Mailbox,
        executor: executor::Mailbox<Block>,
        clock: SlotClock,
        participants: Set<PublicKey>,
        proposals: Option<ProposalObserver>,
    ) -> Self {
        Self {
            committee,
            executor,
            clock,
            participants,
            proposals,
            tamper: None,
            avs: None,
            #[cfg(feature = "test-hooks")]
            decide_on_verify: None,
        }
    }

    /// Makes this operator a byzantine leader (simulation only): `tamper` rewrites every batch
    /// it proposes.
    pub fn with_proposal_tamper(mut self, tamper: ProposalTamper) -> Self {
        self.tamper = Some(tamper);
        self
    }

    /// Orders the tasks of a cluster-run AVS and decides their outputs in this cluster's blocks.
    pub fn with_avs(mut self, avs: cohort_ingress::avs::Mailbox) -> Self {
        self.avs = Some(avs);
        self
    }

    /// Injects the "sign on a vote, not on finalization" bug (simulation campaigns only):
    /// the runner signs values the cluster may later replace.
    #[cfg(feature = "test-hooks")]
    pub fn with_injected_decide_on_verify(
        mut self,
        runner: cohort_ingress::runner::Mailbox,
    ) -> Self {
        self.decide_on_verify = Some(runner);
        self
    }

    fn proposer_index(&self, leader: &PublicKey) -> Option<u32> {
        self.participants.index(leader).map(|p| p.get())
    }

    /// Whether a block of `slot` on a parent with execution head `parent` should carry the
    /// slot's payload: only the first block of a slot on a chain does.
    fn wants_payload(&self, slot: u64, parent: &ExecutionTip) -> bool {
        self.clock.slot_timestamp(slot) > parent.timestamp
    }

    /// Checks a payload's place in the chain (what only the cluster block knows) before the
    /// engine executes it.
    fn check_payload_linkage(
        &self,
        block: &Block,
        parent: &ExecutionTip,
    ) -> Result<(), &'static str> {
        let Some(payload) = &block.payload else {
            return if block.execution == *parent {
                Ok(())
            } else {
                Err("block without a payload moves the execution head")
            };
        };
        let inner = &payload.payload_inner.payload_inner;
        if !self.wants_payload(block.slot, parent) {
            return Err("a payload for a slot whose payload the chain already has");
        }
        if inner.parent_hash != parent.hash || inner.block_number != parent.number + 1 {
            return Err("payload does not extend the parent's execution head");
        }
        if inner.timestamp != self.clock.slot_timestamp(block.slot) {
            return Err("payload timestamp is not its slot's start");
        }
        if inner.prev_randao != slot_randao(block.slot) {
            return Err("payload prev_randao is not its slot's");
        }
        Ok(())
    }
}

/// Ancestors pulled from a consensus ancestry stream, kept so one walk serves every check.
#[derive(Default)]
struct Walked {
    /// Duties decided by the blocks still in the slot being checked.
    included: BTreeSet<DutyId>,
    /// Payloads of every block pulled, newest first, with their slots.
    payloads: Vec<(u64, Arc<cohort_engine::ExecutionPayloadV3>)>,
}

impl Walked {
    fn pull(&mut self, block: &Block) {
        if let Some(payload) = &block.payload {
            self.payloads.push((block.slot, payload.clone()));
        }
    }
}

/// Walks the stream while its blocks are in `slot`, collecting the duties they decided.
async fn decided_in_slot(ancestry: &mut impl Ancestry<Block>, slot: u64) -> Walked {
    let mut walked = Walked::default();
    for _ in 0..MAX_ANCESTRY_WALK {
        let Some(block) = ancestry.next().await else {
            break;
        };
        let block = block.inner();
        walked.pull(block);
        if block.slot != slot || block.height == 0 {
            break;
        }
        walked
            .included
            .extend(block.decisions.iter().map(|d| d.duty.clone()));
    }
    walked
}

/// Continues `walked` further back (bounded) and returns every payload seen, oldest first.
async fn payloads_behind(
    mut ancestry: impl Ancestry<Block>,
    mut walked: Walked,
) -> Vec<(u64, Arc<cohort_engine::ExecutionPayloadV3>)> {
    for _ in 0..MAX_ANCESTRY_WALK {
        let Some(block) = ancestry.next().await else {
            break;
        };
        walked.pull(block.inner());
    }
    walked.payloads.reverse();
    walked.payloads
}

impl<E: Clock> commonware_consensus::Application<E> for Application {
    type SigningScheme = Scheme;
    type Context = ConsensusContext;
    type Block = Block;
    type Input = ();

    async fn propose(
        &mut self,
        (runtime, context): (E, ConsensusContext),
        mut ancestry: impl Ancestry<Block>,
        _input: (),
    ) -> Option<Digested<Block>> {
        let parent = ancestry.peek()?.inner().clone();
        let proposer = self.proposer_index(&context.leader)?;
        // Duties already decided by not-yet-finalized blocks of the parent's slot must not be
        // decided again; the committee adds what is already finalized.
        let included = decided_in_slot(&mut ancestry, parent.slot).await.included;
        let mut batch = self
            .committee
            .propose(context.round.view().get(), parent.slot, included)
            .await?;
        if let Some(tamper) = &self.tamper {
            let view = LeaderView {
                view: context.round.view().get(),
                current_slot: self.clock.current_slot(runtime.current()),
                parent_slot: parent.slot,
            };
            batch = tamper(&view, batch);
        }
        // The first block of a slot carries the slot's execution payload; if none can be had
        // in time the block still decides its duties, and the slot has no execution block.
        let payload = if self.wants_payload(batch.slot, &parent.execution) {
            self.executor
                .canonicalize_and_build(batch.slot, parent.execution)
                .await
        } else {
            None
        };
        let block = Block::new(
            parent.digest(),
            parent.height + 1,
            batch.slot,
            proposer,
            batch.decisions,
            parent.execution,
            payload,
        );
        let block = match &mut self.avs {
            Some(avs) => block.with_tasks(avs.propose().await),
            None => block,
        };
        let digest = block.digest();
        debug!(
            height = block.height,
            slot = block.slot,
            decisions = block.decisions.len(),
            tasks = block.tasks.len(),
            execution = block.execution.number,
            view = context.round.view().get(),
            "built cluster block"
        );
        if let Some(proposals) = &self.proposals {
            let _ = proposals.send((digest, runtime.current()));
        }
        Some(Digested::precomputed(block, digest))
    }

    async fn verify(
        &mut self,
        (_, context): (E, ConsensusContext),
        mut ancestry: impl Ancestry<Block>,
    ) -> bool {
        let Some(block) = ancestry.next().await else {
            return false;
        };
        let block = block.inner().clone();
        let Some(parent) = ancestry.peek().map(|p| p.inner().clone()) else {
            return false;
        };
        if self.proposer_index(&context.leader) != Some(block.proposer) {
            warn!(
                height = block.height,
                "block names another proposer than the view's leader"
            );
            return false;
        }
        if block.slot < parent.slot {
            warn!(height = block.height, "block slot goes backwards");
            return false;
        }
        if let Err(reason) = self.check_payload_linkage(&block, &parent.execution) {
            warn!(
                height = block.height,
                slot = block.slot,
                reason,
                "refusing block"
            );
            return false;
        }
        // No duty may be decided twice along one chain.
        let walked = decided_in_slot(&mut ancestry, block.slot).await;
        if block
            .decisions
            .iter()
            .any(|d| walked.included.contains(&d.duty))
        {
            warn!(
                height = block.height,
                "block decides a duty its ancestry already decided"
            );
            return false;
        }
        let decisions = Arc::new(block.decisions.clone());
        let valid = self
            .committee
            .verify(block.slot, decisions.clone())
            .await
            .unwrap_or(false);
        if !valid {
            return false;
        }
        if !block.tasks.is_empty() {
            let vouched = match &mut self.avs {
                Some(avs) => avs.verify(Arc::new(block.tasks.clone())).await,
                None => {
                    warn!(
                        height = block.height,
                        "refusing block: it carries AVS tasks and this cluster runs no AVS"
                    );
                    false
                }
            };
            if !vouched {
                return false;
            }
        }
        if let Some(payload) = &block.payload {
            let mut verdict = self.executor.verify(block.slot, payload.clone()).await;
            if verdict == PayloadVerdict::Unknown {
                // The engine lacks an ancestor (a restart, or blocks this operator never voted
                // on): hand it the unfinalized ancestors' payloads, oldest first, and ask again.
                for (slot, ancestor) in payloads_behind(ancestry, walked).await {
                    let _ = self.executor.verify(slot, ancestor).await;
                }
                verdict = self.executor.verify(block.slot, payload.clone()).await;
            }
            match verdict {
                PayloadVerdict::Valid => {}
                PayloadVerdict::Invalid(reason) => {
                    warn!(height = block.height, slot = block.slot, %reason, "refusing block: its payload is invalid");
                    return false;
                }
                PayloadVerdict::Unknown => {
                    warn!(
                        height = block.height,
                        slot = block.slot,
                        "cannot check the block's payload yet; not voting"
                    );
                    return false;
                }
            }
        }
        if let Err(stopped) = self.executor.canonicalize_head(block.execution) {
            error!(
                height = block.height,
                %stopped,
                "not voting for the block: the executor cannot follow it (the node is shutting \
                 down)"
            );
            return false;
        }
        #[cfg(feature = "test-hooks")]
        if let Some(runner) = &mut self.decide_on_verify
            && let Err(stopped) = runner.finalized(block.height, block.slot, decisions).await
        {
            error!(%stopped, "injected bug: the runner stopped; not voting for the block");
            return false;
        }
        true
    }
}
