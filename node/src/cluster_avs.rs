//! A cluster-run AVS in the node: the seam between the performer supervisor (Hourglass's gRPC
//! executor, the child-process performers) and the cluster's AVS actor.
//!
//! - A `SubmitTask` for an AVS marked `cluster = true` is checked by the supervisor as any task
//!   is (formats, executor = the cluster's address, operator set, aggregator signature), then
//!   handed to the AVS actor ([`ClusterTasks`]), which orders it through the cluster chain and
//!   answers with the cluster's signatures, or with why there are none.
//! - Every operator's AVS actor runs the ordered task on its own performer through the
//!   supervisor's worker pool ([`SupervisorPerformer`]); nothing is signed with this operator's
//!   own key.
//! - A follower checks a task another operator ordered with the same supervisor checks
//!   ([`task_check`]) before it vouches for it.

use crate::keys::AvsShare;
use bytes::Bytes;
use cohort_actors::avs::{Performer, TaskCheck};
use cohort_avs_crypto::{Address, B256, TaskFields, aggregator_digest};
use cohort_ingress::avs::{self as ingress_avs, ClusterTask, SignedTask, TaskError};
use cohort_operator::AvsSetup;
use cohort_supervisor::{
    config::Config as SupervisorConfig,
    grpc::ClusterRoute,
    proto::executor::TaskResult,
    supervisor::Mailbox as SupervisorMailbox,
    validate::{CheckedTask, OrderedTask, check_ordered},
};
use futures::future::BoxFuture;
use std::{
    sync::{Arc, OnceLock},
    time::{Duration, Instant, SystemTime},
};
use tonic::Status;

/// What the node needs to run a cluster-run AVS: the key share, the cluster's address, the
/// supervisor's config (for followers' checks) and the route the supervisor sends tasks on.
pub struct ClusterAvs {
    share: AvsShare,
    address: [u8; 20],
    config: Arc<SupervisorConfig>,
    route: ClusterTasks,
}

impl ClusterAvs {
    /// `None` unless an AVS of `config` is cluster-run. Loading the config already refused a
    /// cluster-run AVS without the lock's AVS key (`share`).
    pub fn of(
        config: Option<&SupervisorConfig>,
        share: Option<&AvsShare>,
    ) -> Result<Option<Self>, String> {
        let Some(config) = config.filter(|config| config.runs_cluster_avs()) else {
            return Ok(None);
        };
        let share = share.ok_or("a cluster-run AVS needs the cluster lock's AVS key")?;
        let address = cluster_address(config)?;
        Ok(Some(Self {
            share: share.clone(),
            address,
            config: Arc::new(config.clone()),
            route: ClusterTasks::new(address),
        }))
    }

    /// The supervisor's route for cluster-run tasks.
    pub fn route(&self) -> Arc<dyn ClusterRoute> {
        Arc::new(self.route.clone())
    }

    /// The operator's AVS actor setup, its performers those of `supervisor`.
    pub fn setup(&self, supervisor: SupervisorMailbox) -> AvsSetup {
        AvsSetup {
            sharing: (*self.share.sharing).clone(),
            share: self.share.share.clone(),
            operator_address: self.address,
            performer: Arc::new(SupervisorPerformer::new(supervisor, self.address)),
            check: task_check(self.config.clone()),
            events: None,
        }
    }

    /// The started AVS actor: the route answers with it from now on.
    pub fn attach(&self, avs: ingress_avs::Mailbox) {
        self.route.attach(avs);
    }
}

/// The address the cluster is registered under, from `avs.cluster_operator_address`.
fn cluster_address(config: &SupervisorConfig) -> Result<[u8; 20], String> {
    let text = config
        .cluster_operator_address
        .as_deref()
        .ok_or("avs.cluster_operator_address is required with a cluster-run AVS")?;
    let address: Address = text
        .parse()
        .map_err(|_| format!("avs.cluster_operator_address `{text}` is not an address"))?;
    Ok(address.0.0)
}

/// The supervisor's form of an ordered task: what its worker pool and performers take.
fn checked(task: &ClusterTask, cluster: [u8; 20]) -> CheckedTask {
    let task_hash = B256::from(task.task_id);
    let avs = Address::from(task.avs);
    let request_hash = aggregator_digest(&TaskFields {
        task_id: task_hash,
        avs,
        executor: Address::from(cluster),
        operator_set_id: task.operator_set_id,
        reference_timestamp: task.reference_timestamp,
        task_block_number: task.task_block_number,
        payload: &task.payload,
    });
    let task_id = format!("{task_hash:#x}");
    CheckedTask {
        key: task_id.clone(),
        task_id,
        task_hash,
        avs: format!("{avs:#x}"),
        avs_bytes: avs,
        operator_set_id: task.operator_set_id,
        reference_timestamp: task.reference_timestamp,
        task_block_number: task.task_block_number,
        aggregator: Address::from(task.aggregator),
        aggregator_signature: task.aggregator_signature.to_vec(),
        cluster: true,
        payload: task.payload.to_vec(),
        request_hash: alloy_primitives::hex::encode(request_hash),
    }
}

/// The cluster's form of a task the supervisor checked.
fn ordered(task: &CheckedTask, deadline: Instant) -> ClusterTask {
    // The caller's deadline as wall-clock time: every operator bounds its performer by it.
    let remaining = deadline.saturating_duration_since(Instant::now());
    let deadline_ms = (SystemTime::now() + remaining)
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64;
    ClusterTask {
        task_id: task.task_hash.0,
        avs: task.avs_bytes.0.0,
        aggregator: task.aggregator.0.0,
        operator_set_id: task.operator_set_id,
        reference_timestamp: task.reference_timestamp,
        task_block_number: task.task_block_number,
        deadline_ms,
        payload: Bytes::from(task.payload.clone()),
        aggregator_signature: Bytes::from(task.aggregator_signature.clone()),
    }
}

/// What the gRPC caller gets for a task the cluster signed.
fn result(task: &CheckedTask, cluster: [u8; 20], signed: SignedTask) -> TaskResult {
    TaskResult {
        task_id: task.task_id.clone(),
        operator_address: format!("{:#x}", Address::from(cluster)),
        output: signed.output.to_vec(),
        result_signature: signed.result_signature,
        avs_address: task.avs.clone(),
        operator_set_id: task.operator_set_id,
        auth_signature: signed.auth_signature,
        version: 1,
    }
}

/// Why the cluster gave no signed result, as a gRPC status. Hourglass's clients retry
/// UNAVAILABLE and RESOURCE_EXHAUSTED; a retry of a task the cluster already signed gets the
/// same result.
fn status(error: TaskError) -> Status {
    match error {
        TaskError::Invalid(why) => Status::invalid_argument(why),
        TaskError::Busy(why) => Status::resource_exhausted(why),
        TaskError::NoAgreement(why) => Status::deadline_exceeded(format!(
            "the cluster signed no output by the task's deadline: {why}"
        )),
        TaskError::Refused(why) => Status::failed_precondition(format!(
            "this operator will not sign the cluster's output: {why}"
        )),
        TaskError::Stopped => Status::unavailable("the node is stopping"),
    }
}

/// The supervisor's route for cluster-run AVSs: to the AVS actor, once the cluster started.
#[derive(Clone)]
pub struct ClusterTasks {
    avs: Arc<OnceLock<ingress_avs::Mailbox>>,
    cluster: [u8; 20],
}

impl ClusterTasks {
    /// A route whose actor is attached once the operator has started ([`Self::attach`]).
    pub fn new(cluster: [u8; 20]) -> Self {
        Self {
            avs: Arc::new(OnceLock::new()),
            cluster,
        }
    }

    pub fn attach(&self, avs: ingress_avs::Mailbox) {
        let _ = self.avs.set(avs);
    }
}

impl ClusterRoute for ClusterTasks {
    fn submit(
        &self,
        task: CheckedTask,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<TaskResult, Status>> {
        let avs = self.avs.get().cloned();
        let cluster = self.cluster;
        Box::pin(async move {
            let Some(mut avs) = avs else {
                return Err(Status::unavailable(
                    "the cluster's AVS actor has not started yet; retry shortly",
                ));
            };
            let signed = avs.submit(ordered(&task, deadline)).await.map_err(status)?;
            Ok(result(&task, cluster, signed))
        })
    }
}

/// The AVS actor's performer: the supervisor's child-process performer for the task's AVS,
/// through its worker pool and deadlines; the output comes back unsigned.
pub struct SupervisorPerformer {
    supervisor: SupervisorMailbox,
    cluster: [u8; 20],
}

impl SupervisorPerformer {
    pub fn new(supervisor: SupervisorMailbox, cluster: [u8; 20]) -> Self {
        Self {
            supervisor,
            cluster,
        }
    }
}

impl Performer for SupervisorPerformer {
    fn execute(&self, task: &ClusterTask) -> BoxFuture<'static, Result<Bytes, String>> {
        let supervisor = self.supervisor.clone();
        let remaining = task
            .deadline()
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let deadline = Instant::now() + remaining;
        let checked = checked(task, self.cluster);
        Box::pin(async move {
            supervisor
                .perform(checked, deadline)
                .await
                .map(Bytes::from)
                .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
        })
    }
}

/// A follower's check of an ordered task: the supervisor's own checks, with the cluster as the
/// executor the aggregator signed for.
pub fn task_check(config: Arc<SupervisorConfig>) -> TaskCheck {
    Arc::new(move |task: &ClusterTask| {
        check_ordered(
            &config,
            &OrderedTask {
                task_id: B256::from(task.task_id),
                avs: Address::from(task.avs),
                aggregator: Address::from(task.aggregator),
                operator_set_id: task.operator_set_id,
                reference_timestamp: task.reference_timestamp,
                task_block_number: task.task_block_number,
                payload: &task.payload,
                signature: &task.aggregator_signature,
            },
        )
    })
}
