//! What the `cohort` binary's `executor` and `performers` commands run: the supervisor alone
//! (like Hourglass's executor, for AVS-only operators and tests) and a small client of the
//! management API.

use crate::{
    config,
    metrics::Metrics,
    proto::{
        common::AuthSignature,
        executor::{
            DeployArtifactRequest, GetChallengeTokenRequest, ListPerformersRequest, PerformerEnv,
            RemovePerformerRequest,
            executor_management_service_client::ExecutorManagementServiceClient,
        },
    },
    signing::OperatorKey,
};
use commonware_runtime::{Runner as _, Supervisor as _};
use prometheus_client::registry::Registry;
use std::{path::Path, sync::Arc};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::transport::Channel;
use tracing::{error, info};

/// Runs the supervisor from an executor config until SIGINT or SIGTERM, then stops it
/// gracefully (no performer process is left when this returns).
pub fn run_executor(path: &Path) -> Result<(), String> {
    let config = config::load(path).map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
        format!("{}:\n{}", path.display(), lines.join("\n"))
    })?;
    if let Some(avs) = config.avs.values().find(|avs| avs.cluster) {
        return Err(format!(
            "{}: AVS {} is cluster-run (cluster = true): only `cohort run`, as part of its \
             cluster, serves it; `cohort executor` runs per-operator AVSs",
            path.display(),
            avs.address
        ));
    }
    // A commonware runtime (tokio underneath): the records live in its storage, under the
    // AVS data directory.
    let runtime = commonware_runtime::tokio::Config::default()
        .with_storage_directory(config.data_dir.join("storage"));
    commonware_runtime::tokio::Runner::new(runtime).start(|context| async move {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let metrics_listen = config.metrics_listen;
        let running = crate::start(config, metrics, context.child("supervisor"), None).await?;
        if let Some(addr) = metrics_listen {
            serve_metrics(addr, Arc::new(registry)).await?;
        }
        wait_for_signal().await;
        info!("stop signal: finishing in-flight tasks and stopping performers");
        running.stop().await;
        info!("executor stopped");
        Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot listen for stop signals; stopping now");
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

/// A minimal `/metrics` endpoint (any path answers) for the standalone executor.
async fn serve_metrics(addr: std::net::SocketAddr, registry: Arc<Registry>) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|err| format!("avs.metrics_listen {addr}: {err}"))?;
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = stream.read(&mut buf).await;
                let mut body = String::new();
                if prometheus_client::encoding::text::encode(&mut body, &registry).is_err() {
                    body = "# encoding failed\n".into();
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
            });
        }
    });
    Ok(())
}

/// What `cohort performers` does.
pub enum PerformersCommand {
    List {
        avs: Option<String>,
    },
    Deploy {
        avs: String,
        registry_url: String,
        digest: String,
        env: Vec<(String, String)>,
    },
    Remove {
        performer_id: String,
    },
}

/// Runs one management call against `executor` (`host:port`) and prints the answer. With
/// `auth` (the operator address and key file, `kind:path`), signs a fresh challenge token.
pub fn performers(
    executor: &str,
    auth: Option<(&str, &str, &Path)>,
    command: PerformersCommand,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start the runtime: {err}"))?;
    runtime.block_on(async move {
        let url = if executor.starts_with("http") {
            executor.to_string()
        } else {
            format!("http://{executor}")
        };
        let channel = Channel::from_shared(url)
            .map_err(|err| format!("--executor `{executor}`: {err}"))?
            .connect()
            .await
            .map_err(|err| format!("cannot reach {executor}: {err}"))?;
        let mut client = ExecutorManagementServiceClient::new(channel);
        let mut sign = async || -> Result<Option<AuthSignature>, String> {
            let Some((operator, kind, key_file)) = auth else {
                return Ok(None);
            };
            let key =
                OperatorKey::load(kind, key_file, Some(&format!("0x{}", "0".repeat(40))), "1")?;
            let token = client
                .get_challenge_token(GetChallengeTokenRequest {
                    operator_address: operator.to_string(),
                })
                .await
                .map_err(|status| format!("GetChallengeToken: {}", status.message()))?
                .into_inner()
                .challenge_token;
            let signature = key.sign_challenge(&token);
            Ok(Some(AuthSignature {
                challenge_token: token,
                signature,
            }))
        };
        match command {
            PerformersCommand::List { avs } => {
                let auth = sign().await?;
                let answer = client
                    .list_performers(ListPerformersRequest {
                        avs_address: avs.unwrap_or_default(),
                        auth,
                    })
                    .await
                    .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?
                    .into_inner();
                println!(
                    "{:<28} {:<44} {:<10} {:<8} {:<8} {:<8} artifact",
                    "performer", "avs", "status", "running", "healthy", "pid"
                );
                for p in answer.performers {
                    println!(
                        "{:<28} {:<44} {:<10} {:<8} {:<8} {:<8} {} {}",
                        p.performer_id,
                        p.avs_address,
                        p.status,
                        p.resource_healthy,
                        p.application_healthy,
                        p.container_id,
                        p.artifact_registry,
                        p.artifact_digest
                    );
                }
            }
            PerformersCommand::Deploy {
                avs,
                registry_url,
                digest,
                env,
            } => {
                let auth = sign().await?;
                let answer = client
                    .deploy_artifact(DeployArtifactRequest {
                        avs_address: avs,
                        digest,
                        registry_url,
                        env: env
                            .into_iter()
                            .map(|(name, value)| PerformerEnv {
                                name,
                                value,
                                ..Default::default()
                            })
                            .collect(),
                        kubernetes: None,
                        auth,
                    })
                    .await
                    .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?
                    .into_inner();
                println!("{} {}", answer.deployment_id, answer.message);
            }
            PerformersCommand::Remove { performer_id } => {
                let auth = sign().await?;
                let answer = client
                    .remove_performer(RemovePerformerRequest { performer_id, auth })
                    .await
                    .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?
                    .into_inner();
                println!("{}", answer.message);
            }
        }
        Ok(())
    })
}
