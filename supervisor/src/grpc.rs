//! The gRPC side: Hourglass's `ExecutorService` and `ExecutorManagementService` and the
//! standard health service on one port (the management service optionally on a second). The
//! handlers hold no state: SubmitTask's stateless checks run here (so signature checks use every
//! core), everything else goes to the supervisor actor's mailbox.

use crate::{
    config::Config,
    metrics::Metrics,
    proto::executor::{
        DeployArtifactRequest, DeployArtifactResponse, GetChallengeTokenRequest,
        GetChallengeTokenResponse, ListPerformersRequest, ListPerformersResponse,
        RemovePerformerRequest, RemovePerformerResponse, TaskResult, TaskSubmission,
        executor_management_service_server::{
            ExecutorManagementService, ExecutorManagementServiceServer,
        },
        executor_service_server::{ExecutorService, ExecutorServiceServer},
    },
    supervisor::{self, Mailbox},
    validate::{self, CheckedTask},
};
use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::{sync::watch, task::JoinHandle};
use tonic::{
    Request, Response, Status,
    metadata::MetadataMap,
    transport::{Server, server::TcpIncoming},
};
use tracing::{error, info};

/// Largest request accepted (task payloads).
const MAX_REQUEST: usize = 16 * 1024 * 1024;

/// How long before the caller's deadline a task is given up, so that the caller reads our
/// DEADLINE_EXCEEDED: tonic's server ends the call at the header's deadline itself with a bare
/// CANCELLED ("Timeout expired"), and on a loaded machine that can reach the caller before the
/// caller's own timer fires. A tenth of the timeout, at most 100 ms.
fn answer_before_caller_deadline(timeout: Duration) -> Duration {
    timeout.saturating_sub((timeout / 10).min(Duration::from_millis(100)))
}

/// The caller's `grpc-timeout` header (`<digits><H|M|S|m|u|n>`), if any.
pub fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let text = metadata.get("grpc-timeout")?.to_str().ok()?;
    if text.len() < 2 || text.len() > 9 {
        return None;
    }
    let (digits, unit) = text.split_at(text.len() - 1);
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value.saturating_mul(3600)),
        "M" => Duration::from_secs(value.saturating_mul(60)),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

/// Where a cluster-run AVS's tasks go: the node's cluster, which orders the task, agrees on an
/// output and answers with the cluster's signatures (or a status that says why not).
pub trait ClusterRoute: Send + Sync + 'static {
    fn submit(
        &self,
        task: CheckedTask,
        deadline: Instant,
    ) -> futures::future::BoxFuture<'static, Result<TaskResult, Status>>;
}

/// `ExecutorService`.
#[derive(Clone)]
pub struct Executor {
    config: Arc<Config>,
    mailbox: Mailbox,
    metrics: Metrics,
    cluster: Option<Arc<dyn ClusterRoute>>,
}

#[tonic::async_trait]
impl ExecutorService for Executor {
    async fn submit_task(
        &self,
        request: Request<TaskSubmission>,
    ) -> Result<Response<TaskResult>, Status> {
        let timeout = grpc_timeout(request.metadata())
            .map(answer_before_caller_deadline)
            .unwrap_or(self.config.limits.task_timeout);
        let deadline = Instant::now() + timeout;
        let submission = request.into_inner();
        let avs = submission.avs_address.to_ascii_lowercase();
        let task = validate::check(&self.config, submission).inspect_err(|status| {
            self.metrics.task(&avs, "refused");
            info!(avs_address = %avs, code = ?status.code(), error = status.message(), "task refused");
        })?;
        if task.cluster {
            let Some(cluster) = &self.cluster else {
                return Err(Status::failed_precondition(format!(
                    "AVS {avs} is cluster-run, and this executor is not part of a cluster \
                     (only `cohort run` serves a cluster-run AVS)"
                )));
            };
            return cluster.submit(task, deadline).await.map(Response::new);
        }
        self.mailbox.submit(task, deadline).await.map(Response::new)
    }
}

/// `ExecutorManagementService`.
#[derive(Clone)]
pub struct Management {
    mailbox: Mailbox,
}

#[tonic::async_trait]
impl ExecutorManagementService for Management {
    async fn deploy_artifact(
        &self,
        request: Request<DeployArtifactRequest>,
    ) -> Result<Response<DeployArtifactResponse>, Status> {
        self.mailbox
            .deploy(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_performers(
        &self,
        request: Request<ListPerformersRequest>,
    ) -> Result<Response<ListPerformersResponse>, Status> {
        self.mailbox
            .list(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn remove_performer(
        &self,
        request: Request<RemovePerformerRequest>,
    ) -> Result<Response<RemovePerformerResponse>, Status> {
        self.mailbox
            .remove(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_challenge_token(
        &self,
        request: Request<GetChallengeTokenRequest>,
    ) -> Result<Response<GetChallengeTokenResponse>, Status> {
        self.mailbox
            .challenge_token(request.into_inner().operator_address)
            .await
            .map(Response::new)
    }
}

/// A started supervisor: its actor and servers.
pub struct Running {
    pub mailbox: Mailbox,
    /// Where the executor API listens (the port the OS chose when configured as 0).
    pub local_addr: SocketAddr,
    pub management_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    actor: JoinHandle<()>,
}

impl Running {
    /// Graceful stop: the actor stops taking tasks, finishes those in flight (up to the stop
    /// timeout) and stops every performer; then the servers close.
    pub async fn stop(self) {
        self.mailbox.stop().await;
        let _ = self.shutdown.send(true);
        for server in self.servers {
            // Handlers were all answered by the actor; a stuck connection does not hold us.
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        }
        let _ = self.actor.await;
    }
}

/// Starts the supervisor on the current tokio runtime: opens its records in `storage` (a
/// commonware runtime context), binds its ports, starts the actor (performers start in the
/// background) and serves. A cluster-run AVS's tasks go to `cluster`.
pub async fn start<E>(
    config: Config,
    metrics: Metrics,
    storage: E,
    cluster: Option<Arc<dyn ClusterRoute>>,
) -> Result<Running, String>
where
    E: commonware_runtime::Storage
        + commonware_runtime::Clock
        + commonware_runtime::Metrics
        + commonware_runtime::Spawner,
{
    let config = Arc::new(config);
    let (actor, mailbox) = supervisor::init(
        supervisor::Config {
            config: config.clone(),
            metrics: metrics.clone(),
            mailbox_size: 4096,
        },
        storage,
    )
    .await?;
    let bind = |addr: SocketAddr, field: &str| {
        TcpIncoming::bind(addr)
            .map(|incoming| incoming.with_nodelay(Some(true)))
            .map_err(|err| format!("avs.{field} {addr}: {err}"))
    };
    let incoming = bind(config.listen, "listen")?;
    let local_addr = incoming
        .local_addr()
        .map_err(|err| format!("avs.listen: {err}"))?;
    let management_incoming = match config.management_listen {
        Some(addr) => Some(bind(addr, "management_listen")?),
        None => None,
    };
    let management_addr = match &management_incoming {
        Some(incoming) => Some(
            incoming
                .local_addr()
                .map_err(|err| format!("avs.management_listen: {err}"))?,
        ),
        None => None,
    };
    let actor = tokio::spawn(actor.run());
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ExecutorServiceServer<Executor>>()
        .await;
    let executor = Executor {
        config: config.clone(),
        mailbox: mailbox.clone(),
        metrics,
        cluster,
    };
    let management = Management {
        mailbox: mailbox.clone(),
    };
    let (shutdown, shutdown_rx) = watch::channel(false);
    let signal = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let main = Server::builder()
        .add_service(ExecutorServiceServer::new(executor).max_decoding_message_size(MAX_REQUEST))
        .add_service(ExecutorManagementServiceServer::new(management.clone()))
        .add_service(health_service.clone())
        .serve_with_incoming_shutdown(incoming, signal(shutdown_rx.clone()));
    let mut servers = vec![tokio::spawn(async move {
        if let Err(err) = main.await {
            error!(%err, "executor gRPC server failed");
        }
    })];
    if let Some(incoming) = management_incoming {
        let server = Server::builder()
            .add_service(ExecutorManagementServiceServer::new(management))
            .add_service(health_service)
            .serve_with_incoming_shutdown(incoming, signal(shutdown_rx));
        servers.push(tokio::spawn(async move {
            if let Err(err) = server.await {
                error!(%err, "management gRPC server failed");
            }
        }));
    }
    info!(%local_addr, ?management_addr, "executor API listening");
    Ok(Running {
        mailbox,
        local_addr,
        management_addr,
        shutdown,
        servers,
        actor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        let mut metadata = MetadataMap::new();
        assert_eq!(grpc_timeout(&metadata), None);
        for (text, expected) in [
            ("100m", Duration::from_millis(100)),
            ("5S", Duration::from_secs(5)),
            ("2M", Duration::from_secs(120)),
            ("7u", Duration::from_micros(7)),
        ] {
            metadata.insert("grpc-timeout", text.parse().expect("ascii"));
            assert_eq!(grpc_timeout(&metadata), Some(expected), "{text}");
        }
        metadata.insert("grpc-timeout", "5x".parse().expect("ascii"));
        assert_eq!(grpc_timeout(&metadata), None);
    }

    #[test]
    fn a_task_is_given_up_before_the_caller_deadline_that_tonic_enforces() {
        let ms = Duration::from_millis;
        assert_eq!(answer_before_caller_deadline(ms(1_000)), ms(900));
        assert_eq!(answer_before_caller_deadline(ms(30_000)), ms(29_900));
        assert_eq!(answer_before_caller_deadline(ms(50)), ms(45));
        assert_eq!(
            answer_before_caller_deadline(Duration::ZERO),
            Duration::ZERO
        );
    }
}
