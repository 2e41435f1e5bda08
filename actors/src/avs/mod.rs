//! The AVS actor: one AVS operator run by the whole cluster.
//!
//! A task that reaches any operator is checked there and shared with the others; whoever leads
//! orders it in a cluster block. Once that block is finalized every operator runs its own
//! performer on it and tells the others the digest of what it got. A leader proposes an output
//! only when threshold-many operators reported it, and a follower vouches for it only if its own
//! performer gave the same, or (while its own performer has not answered) threshold-many
//! operators reported it. So with at most f liars no output that only liars computed is ever
//! decided. A finalized output is recorded in the [`TaskRecord`]
//! before this operator's partial signature leaves it, and never a second output for one task.
//! Partials travel on the cluster's task channel; any threshold of them combine into the
//! result signature, then a second round signs the auth over it (see
//! `cohort_avs_crypto::cluster_result`). The operator that received the task answers its caller
//! with the combined signatures, or with why there are none by the task's deadline.

mod actor;
mod task;
#[cfg(test)]
mod tests;

pub use actor::Actor;

use crate::task_record::{self, RecordError, TaskRecord};
use bytes::Bytes;
use cohort_avs_crypto::{Bn254SecretShare, Bn254Sharing};
use cohort_ingress::avs::{ClusterTask, Mailbox, SignedTask, TaskError, TaskId};
use commonware_cryptography::PublicKey;
use commonware_runtime::{Clock, Metrics, Spawner, Storage};
use commonware_utils::{channel::mpsc, ordered::Set};
use futures::future::BoxFuture;
use std::{sync::Arc, time::Duration};

/// Runs a task on this operator's performer. The child-process performer of the node is one
/// implementation; a simulation's deterministic in-process performers are others.
pub trait Performer: Send + Sync + 'static {
    /// The performer's output for `task`. The actor bounds the call by the task's deadline.
    fn execute(&self, task: &ClusterTask) -> BoxFuture<'static, Result<Bytes, String>>;
}

/// Checks a task beyond its encoding (the AVS is cluster-run here, the aggregator's signature
/// is valid): run by the operator that receives it and by every follower that sees it ordered.
pub type TaskCheck = Arc<dyn Fn(&ClusterTask) -> Result<(), String> + Send + Sync>;

/// What the actor reports as it goes, for a simulation's checker or a dashboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskEvent {
    /// The first finalized order of a task.
    Ordered { height: u64, task_id: TaskId },
    /// The first finalized output of a task, by its message-hash digest.
    Decided { task_id: TaskId, digest: [u8; 32] },
    /// This operator's partial for a decided output left it.
    PartialSigned { task_id: TaskId, digest: [u8; 32] },
    /// Both signatures combined on this operator.
    Signed(SignedTask),
    /// A caller of this operator was answered with an error.
    Failed { task_id: TaskId, error: TaskError },
    /// An operator's partial signature did not verify.
    BadPartial { task_id: TaskId, operator: u32 },
    /// An operator's performer reported another output than the one decided.
    Disagreed { task_id: TaskId, operator: u32 },
}

pub struct Config<P: PublicKey> {
    /// The cluster's operators in share order: a peer's position is its share index.
    pub operators: Set<P>,
    /// The public half of the cluster's BN254 operator key.
    pub sharing: Bn254Sharing,
    /// This operator's share of it.
    pub share: Bn254SecretShare,
    /// The address the cluster is registered under as one AVS operator: every auth names it.
    pub operator_address: [u8; 20],
    pub performer: Arc<dyn Performer>,
    pub check: TaskCheck,
    /// Where the once-only record of signed outputs lives.
    pub record_partition: String,
    pub events: Option<mpsc::UnboundedSender<TaskEvent>>,
    /// Told whether task decisions wait for a block, so an idle leader proposes at once.
    pub committee: Option<cohort_ingress::committee::Mailbox>,
    pub mailbox_size: usize,
    /// Most tasks waiting to be ordered; more are refused as busy.
    pub max_pending: usize,
    /// Most tasks tracked at all (waiting, in flight, or answered and kept for retries until
    /// shortly after their deadline); more are refused as busy. What bounds the actor's memory.
    pub max_tracked: usize,
    /// How long a follower waits for its performer (or peers' reports) before refusing to vouch
    /// for an output.
    pub verify_wait: Duration,
}

/// Opens the task record and builds the actor and its mailbox.
pub async fn init<E, P>(
    context: E,
    config: Config<P>,
) -> Result<(Actor<E, P>, Mailbox), RecordError>
where
    E: Clock + Spawner + Metrics + Storage,
    P: PublicKey,
{
    let record = TaskRecord::init(
        context.child("record"),
        task_record::Config {
            partition: config.record_partition.clone(),
        },
    )
    .await?;
    let (sender, receiver) = mpsc::channel(config.mailbox_size.max(1));
    Ok((
        Actor::new(context, config, record, receiver),
        Mailbox::new(sender),
    ))
}
