//! The consensus-facing side of the committee: builds and checks cluster blocks.
//!
//! Marshal's `Inline` wrapper calls this with each block's ancestry; height and parent linkage
//! are already checked there. What this adds is what only Cohort knows: which duty values go
//! into a block, and whether this operator can vouch for the values in someone else's.

use cohort_ingress::{DutyId, committee, runner};
use cohort_marshal::{Block, ConsensusContext, Digest, PublicKey, Scheme};
use commonware_consensus::marshal::ancestry::Ancestry;
use commonware_cryptography::{Digested, Digestible};
use commonware_runtime::Clock;
use commonware_utils::channel::mpsc;
use commonware_utils::ordered::{Quorum as _, Set};
use futures::StreamExt;
use std::time::SystemTime;
use std::{collections::BTreeSet, sync::Arc};
use tracing::{debug, warn};

/// Most ancestors read to find duties already decided in unfinalized blocks of a slot.
const MAX_ANCESTRY_WALK: usize = 64;

/// When this operator, as leader, built a block: for latency reports.
pub type ProposalObserver = mpsc::UnboundedSender<(Digest, SystemTime)>;

#[derive(Clone)]
pub struct Application {
    committee: committee::Mailbox,
    participants: Set<PublicKey>,
    proposals: Option<ProposalObserver>,
    /// A deliberately injected bug, for proving that simulation campaigns catch it: hands
    /// every block this follower votes for to the runner as if it were finalized.
    decide_on_verify: Option<runner::Mailbox>,
}

impl Application {
    pub fn new(
        committee: committee::Mailbox,
        participants: Set<PublicKey>,
        proposals: Option<ProposalObserver>,
    ) -> Self {
        Self {
            committee,
            participants,
            proposals,
            decide_on_verify: None,
        }
    }

    /// Injects the "sign on a vote, not on finalization" bug (simulation campaigns only):
    /// the runner signs values the cluster may later replace.
    pub fn with_injected_decide_on_verify(mut self, runner: runner::Mailbox) -> Self {
        self.decide_on_verify = Some(runner);
        self
    }

    fn proposer_index(&self, leader: &PublicKey) -> Option<u32> {
        self.participants.index(leader).map(|p| p.get())
    }
}

/// Duties decided by the blocks the stream yields while they are in `slot`.
async fn decided_in_slot(ancestry: &mut impl Ancestry<Block>, slot: u64) -> BTreeSet<DutyId> {
    let mut included = BTreeSet::new();
    for _ in 0..MAX_ANCESTRY_WALK {
        let Some(block) = ancestry.next().await else {
            break;
        };
        let block = block.inner();
        if block.slot != slot || block.height == 0 {
            break;
        }
        included.extend(block.decisions.iter().map(|d| d.duty.clone()));
    }
    included
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
        let included = decided_in_slot(&mut ancestry, parent.slot).await;
        let batch = self.committee.propose(parent.slot, included).await?;
        let block = Block::new(
            parent.digest(),
            parent.height + 1,
            batch.slot,
            proposer,
            batch.decisions,
            bytes::Bytes::new(),
        );
        let digest = block.digest();
        debug!(
            height = block.height,
            slot = block.slot,
            decisions = block.decisions.len(),
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
        if !block.payload.is_empty() {
            warn!(
                height = block.height,
                "block carries an execution payload this node cannot execute"
            );
            return false;
        }
        // No duty may be decided twice along one chain.
        let mut ancestry = ancestry;
        let included = decided_in_slot(&mut ancestry, block.slot).await;
        if block.decisions.iter().any(|d| included.contains(&d.duty)) {
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
        if valid && let Some(runner) = &mut self.decide_on_verify {
            runner.finalized(block.height, block.slot, decisions).await;
        }
        valid
    }
}
