//! The executor: keeps an execution engine on the cluster chain through the Engine API.
//!
//! It consumes finalized cluster blocks from marshal in order: each block's payload goes to the
//! engine (`newPayload`), then forkchoice moves (head, safe, finalized, never finalized ahead
//! of head), and only then is the block acknowledged to marshal, so an acknowledged block is
//! one the engine has. The runner, the committee and an optional observer get each block's
//! decisions once it is processed.
//!
//! For consensus it builds the slot's payload for a leader (`CanonicalizeAndBuild`, using the
//! payload pre-built at the previous slot's last interval when it is still on the same head),
//! checks a follower's payload (`Verify`), and moves the engine's head to the block being voted
//! for (`CanonicalizeHead`). A forkchoice heartbeat repeats the last update when nothing moved.
//!
//! Engine calls never run inside the loop: each is a future the loop polls beside its mailbox
//! (as a consensus client drives its execution client), so a syncing, slow or hanging engine
//! costs a leader or a follower at most its own call, never the calls queued before it.
//! Forkchoice updates go one at a time (the engine must see them in order), highest priority
//! first: a leader's build, the finalized block's update, the voted head, a pre-build, the
//! heartbeat. Finalized payloads go one at a time in height order; one the engine cannot take
//! yet (unreachable, SYNCING) waits out a retry delay without holding anything else back.
//!
//! Failure policy: an engine that cannot be reached or times out is retried and logged at warn
//! (the operator slows, the cluster does not wait for it); an engine that calls a finalized
//! payload INVALID stops the executor with an error, because consensus and execution would
//! otherwise diverge silently.

mod actor;
mod error;
#[cfg(test)]
mod tests;

pub use actor::{Actor, BuildOutcome, Finalized, Observed};

use cohort_engine::{Address, ExecutionEngine, ExecutionTip};
use cohort_ingress::{
    SlotClock, committee,
    executor::{self, Mailbox},
    runner,
};
use cohort_marshal::Block;
use commonware_consensus::types::Height;
use commonware_runtime::{Clock, Metrics, Spawner, Storage};
use commonware_utils::channel::mpsc;

/// Payload checks in flight at once: consensus asks one per view, and each ends within the
/// engine timeout; more than this means the engine stopped answering, and a check beyond it
/// is answered `Unknown` at once.
pub const MAX_VERIFICATIONS: usize = 8;

/// Leader builds in flight at once (one per view this operator leads); beyond it, a build
/// request gets no payload at once.
pub const MAX_BUILDS: usize = 4;

/// Engine calls in flight at once: a finalized payload, one forkchoice update, the payload
/// checks and the builds (each build one call at a time).
pub const MAX_ENGINE_CALLS: usize = 2 + MAX_VERIFICATIONS + MAX_BUILDS;
use std::{future::Future, sync::Arc, time::Duration};

/// Where a backfill reads finalized blocks by height: marshal in an operator, a map in tests.
pub trait FinalizedBlocks: Send + Sync + 'static {
    fn block(&self, height: u64) -> impl Future<Output = Option<Arc<Block>>> + Send;
}

impl FinalizedBlocks for cohort_marshal::Mailbox {
    async fn block(&self, height: u64) -> Option<Arc<Block>> {
        self.get_block(Height::new(height))
            .await
            .map(|block| block.inner_shared())
    }
}

pub struct Config<X: ExecutionEngine, M: FinalizedBlocks> {
    /// Serves the finalized blocks a backfill after a restart re-sends to the engine.
    pub marshal: M,
    /// The height marshal reports as already processed before this start: redeliveries at or
    /// below it are acknowledged and skipped.
    pub processed_height: Option<u64>,
    pub runner: runner::Mailbox,
    pub committee: committee::Mailbox,
    /// The cluster-run AVS, if any: gets each finalized block's task decisions.
    pub avs: Option<cohort_ingress::avs::Mailbox>,
    /// Receives every finalized block once processed (duplicates after a restart removed) and
    /// every payload this operator handed to consensus.
    pub observer: Option<mpsc::UnboundedSender<Observed>>,
    pub engine: X,
    pub clock: SlotClock,
    /// This operator's index in the cluster: blocks it proposed are counted when finalized.
    pub operator: u32,
    /// Where the payloads this operator builds pay their fees.
    pub fee_recipient: Address,
    /// The execution genesis the cluster's genesis block names; the engine must agree.
    pub execution_genesis: ExecutionTip,
    /// Storage partition of the record of payloads this operator handed to consensus.
    pub partition: String,
    /// How long one engine call may take before it counts as failed.
    pub engine_timeout: Duration,
    /// Wait between attempts of a call that must succeed (a finalized payload).
    pub retry_delay: Duration,
    /// Repeat the last forkchoice update after this long without one.
    pub heartbeat: Duration,
}

pub fn init<E: Clock + Spawner + Metrics + Storage, X: ExecutionEngine, M: FinalizedBlocks>(
    context: E,
    config: Config<X, M>,
) -> (Actor<E, X, M>, Mailbox<Block>) {
    let (mailbox, receivers) = executor::channels(executor::REQUESTS_CAPACITY);
    (Actor::new(context, config, receivers), mailbox)
}
