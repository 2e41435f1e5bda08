//! One task as one operator sees it, and the rules that decide what it may propose and vouch
//! for. Pure state: the actor does the I/O.

use bytes::Bytes;
use cohort_avs_crypto::{B256, Bn254Partial, cluster_result::ResultSigning, message_hash};
use cohort_ingress::{
    avs::{ClusterTask, SignatureRound, SignedTask, TaskError, TaskId},
    keys::to_hex,
};
use commonware_utils::channel::oneshot;
use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

/// Most partials held for a task whose output this operator has not seen decided yet.
const MAX_EARLY_PARTIALS: usize = 64;

/// The digest operators compare outputs by, and the record keeps: Hourglass's message hash,
/// which binds the output to its task.
pub(super) fn digest(task_id: &TaskId, output: &[u8]) -> [u8; 32] {
    message_hash(&B256::from(*task_id), output).0
}

pub(super) struct Tracked {
    pub task: ClusterTask,
    /// Height of the block whose finalization ordered it.
    pub ordered_at: Option<u64>,
    /// When a block proposing to order it was last built or seen here.
    pub order_proposed: Option<SystemTime>,
    /// When a block proposing its output was last built or seen here.
    pub output_proposed: Option<SystemTime>,
    /// What this operator's performer gave (or why it gave nothing).
    pub own: Option<Result<Bytes, String>>,
    /// Output digests reported by operators (this one included), by share index.
    pub reports: BTreeMap<u32, [u8; 32]>,
    pub decided: Option<Bytes>,
    pub signing: Option<ResultSigning>,
    /// Partials that arrived before the output was decided here.
    pub early: Vec<(SignatureRound, Bn254Partial)>,
    pub auth_sent: bool,
    pub signed: Option<SignedTask>,
    /// Why this operator will not sign (a conflicting record, a failed write).
    pub refused: Option<TaskError>,
    /// Callers of this operator waiting for the result.
    pub waiters: Vec<oneshot::Sender<Result<SignedTask, TaskError>>>,
    /// Whether the callers have been told the deadline passed.
    pub expired: bool,
}

impl Tracked {
    pub fn new(task: ClusterTask) -> Self {
        Self {
            task,
            ordered_at: None,
            order_proposed: None,
            output_proposed: None,
            own: None,
            reports: BTreeMap::new(),
            decided: None,
            signing: None,
            early: Vec::new(),
            auth_sent: false,
            signed: None,
            refused: None,
            waiters: Vec::new(),
            expired: false,
        }
    }

    /// Whether this operator, as leader, would propose to order it now.
    pub fn orderable(&self, now: SystemTime, window: Duration, margin: Duration) -> bool {
        let recently = self.order_proposed.is_some_and(|at| now < at + window);
        self.ordered_at.is_none() && !recently && self.deadline() >= now + margin
    }

    pub fn deadline(&self) -> SystemTime {
        self.task.deadline()
    }

    fn reported(&self, digest: &[u8; 32]) -> usize {
        self.reports.values().filter(|d| *d == digest).count()
    }

    /// The output this operator, as leader, may propose: its own, once threshold-many operators
    /// (itself included) reported the same.
    pub fn proposable_output(
        &self,
        threshold: usize,
        now: SystemTime,
        window: Duration,
    ) -> Option<Bytes> {
        let recently = self.output_proposed.is_some_and(|at| now < at + window);
        if self.ordered_at.is_none() || self.decided.is_some() || recently {
            return None;
        }
        let Some(Ok(own)) = &self.own else {
            return None;
        };
        (self.reported(&digest(&self.task.task_id, own)) >= threshold).then(|| own.clone())
    }

    /// Whether this operator vouches for `output` as the task's: `None` while it cannot tell.
    pub fn vouch(&self, output: &[u8], threshold: usize) -> Option<bool> {
        if let Some(decided) = &self.decided {
            // Already finalized here: a repeat of the same output is harmless.
            return Some(decided.as_ref() == output);
        }
        // Not finalized here yet is no reason to wait: threshold-many matching reports hold
        // f + 1 honest ones, and an honest performer runs a task only once its order is
        // finalized, so the order precedes this output on the chain.
        let asked = digest(&self.task.task_id, output);
        if let Some(Ok(own)) = &self.own {
            return Some(digest(&self.task.task_id, own) == asked);
        }
        // Own performer slow or failed: threshold-many matching reports hold at least f + 1
        // from honest operators.
        if self.reported(&asked) >= threshold {
            return Some(true);
        }
        None
    }

    /// Drops what only signing needs (partials, reports, the performer's output): once a task
    /// is signed only its answer (and the decided output, which a late block may repeat) is
    /// kept, for a caller that asks again.
    pub fn compact(&mut self) {
        self.signing = None;
        self.reports = BTreeMap::new();
        self.early = Vec::new();
        self.own = None;
    }

    /// Keeps a partial that arrived before the decision, within a bound.
    pub fn hold_early(&mut self, round: SignatureRound, partial: Bn254Partial) {
        if self.early.len() < MAX_EARLY_PARTIALS {
            self.early.push((round, partial));
        }
    }

    /// Where the task stands, for the error a caller gets at the deadline.
    pub fn stage(&self, threshold: usize) -> String {
        let Some(height) = self.ordered_at else {
            return "the cluster did not order it in time".into();
        };
        if self.decided.is_none() {
            let mut counts: BTreeMap<[u8; 32], usize> = BTreeMap::new();
            for digest in self.reports.values() {
                *counts.entry(*digest).or_default() += 1;
            }
            let best = counts.values().max().copied().unwrap_or(0);
            return format!(
                "ordered at height {height}, but no output was agreed: {} operators reported, \
                 {} distinct outputs, at most {best} the same (agreement needs {threshold})",
                self.reports.len(),
                counts.len(),
            );
        }
        let Some(signing) = &self.signing else {
            return "output decided, but this operator did not sign it".into();
        };
        let result = signing.received(cohort_avs_crypto::cluster_result::Round::Result);
        let auth = signing.received(cohort_avs_crypto::cluster_result::Round::Auth);
        format!(
            "output 0x{} decided, but too few valid partial signatures arrived (result round \
             {}, auth round {}, need {threshold})",
            to_hex(&digest(
                &self.task.task_id,
                self.decided.as_deref().unwrap_or_default()
            )),
            result.len(),
            auth.len()
        )
    }
}
