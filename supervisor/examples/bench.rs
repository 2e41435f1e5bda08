//! Throughput and latency of `SubmitTask` through the supervisor, next to the same trivial
//! performer called directly. Run in release (`scripts/bench-supervisor.sh`):
//!
//! ```text
//! cargo run --release -p cohort-supervisor --example bench -- [TASKS] [CONCURRENCY]
//! ```
//!
//! The performer is this binary again (`--performer`): an echo over tonic, so the numbers are
//! the supervisor's own cost (checks, aggregator signature, pool, the call, two signatures and
//! the durable record) rather than a performer's.

use cohort_avs_crypto::{Address, B256, EcdsaKey, TaskFields, sign_aggregator_ecdsa};
use cohort_supervisor::{
    config::{self, AvsFile, File, Limits, OperatorKeyFile},
    metrics::Metrics,
    process,
    proto::{
        executor::{TaskSubmission, executor_service_client::ExecutorServiceClient},
        performer::{
            HealthCheckRequest, HealthCheckResponse, StartSyncRequest, StartSyncResponse,
            TaskRequest, TaskResponse,
            performer_service_client::PerformerServiceClient,
            performer_service_server::{PerformerService, PerformerServiceServer},
        },
    },
};
use commonware_runtime::Runner as _;
use futures::StreamExt as _;
use sha2::{Digest as _, Sha256};
use std::{
    os::unix::fs::PermissionsExt as _,
    time::{Duration, Instant},
};
use tonic::{Request, Response, Status, transport::Channel};

struct Echo;

#[tonic::async_trait]
impl PerformerService for Echo {
    async fn health_check(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(HealthCheckResponse { status: 1 }))
    }
    async fn start_sync(
        &self,
        _: Request<StartSyncRequest>,
    ) -> Result<Response<StartSyncResponse>, Status> {
        Ok(Response::new(StartSyncResponse {}))
    }
    async fn execute_task(
        &self,
        request: Request<TaskRequest>,
    ) -> Result<Response<TaskResponse>, Status> {
        let request = request.into_inner();
        Ok(Response::new(TaskResponse {
            task_id: request.task_id,
            result: request.payload,
        }))
    }
}

fn performer() -> Result<(), String> {
    let port: u16 = std::env::var("GRPC_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .ok_or("GRPC_PORT is not set")?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter.set_serving::<PerformerServiceServer<Echo>>().await;
        tonic::transport::Server::builder()
            .add_service(PerformerServiceServer::new(Echo))
            .add_service(health)
            .serve(([127, 0, 0, 1], port).into())
            .await
            .map_err(|e| e.to_string())
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn report(name: &str, elapsed: Duration, mut latencies: Vec<Duration>) {
    latencies.sort();
    println!(
        "{name:<24} {:>8.0} tasks/s   p50 {:>8.3} ms   p99 {:>8.3} ms   ({} tasks)",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.len()
    );
}

async fn drive<F, Fut>(count: usize, concurrency: usize, call: F) -> (Duration, Vec<Duration>)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    let latencies: Vec<Duration> = futures::stream::iter(0..count)
        .map(|i| {
            let call = call(i);
            async move {
                let t = Instant::now();
                if let Err(err) = call.await {
                    eprintln!("task {i}: {err}");
                }
                t.elapsed()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    (started.elapsed(), latencies)
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--performer") {
        return performer();
    }
    let tasks: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let concurrency: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(64);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let artifacts = dir.path().join("artifacts");
    std::fs::create_dir_all(&artifacts).map_err(|e| e.to_string())?;
    // The performer artifact: a script running this binary as the echo performer.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let script = format!("#!/bin/sh\nexec '{}' --performer\n", exe.display());
    std::fs::write(artifacts.join("echo"), &script).map_err(|e| e.to_string())?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(script.as_bytes())));
    let key_path = dir.path().join("operator.key");
    std::fs::write(&key_path, format!("0x{}", "01".repeat(32))).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    let operator = EcdsaKey::from_bytes(&[1; 32]).map_err(|e| e.to_string())?;
    let aggregator = EcdsaKey::from_bytes(&[2; 32]).map_err(|e| e.to_string())?;
    let avs = Address::repeat_byte(0xa1);
    let file = File {
        listen: "127.0.0.1:0".into(),
        management_listen: None,
        metrics_listen: None,
        operator_address: format!("{:#x}", operator.address()),
        cluster_operator_address: None,
        operator_key: OperatorKeyFile {
            kind: "ecdsa".into(),
            secret_file: key_path,
        },
        ecdsa_certificate_verifier: Some(format!("{:#x}", Address::repeat_byte(0x11))),
        ecdsa_certificate_verifier_version: "1".into(),
        artifacts_dir: artifacts,
        data_dir: dir.path().join("data"),
        auth: Default::default(),
        limits: Limits {
            health_interval_ms: 1000,
            ..Limits::default()
        },
        aggregators: vec![config::AggregatorFile {
            address: format!("{:#x}", aggregator.address()),
            bn254_public_key: None,
        }],
        performers: vec![AvsFile {
            avs_address: format!("{avs:#x}"),
            operator_sets: vec![],
            max_concurrent_tasks: concurrency,
            queue_depth: concurrency * 4,
            args: vec![],
            env: Default::default(),
            port: None,
            cluster: false,
            registry_url: Some("echo".into()),
            digest: Some(digest),
        }],
    };
    let config = config::validate(file, dir.path()).map_err(|problems| format!("{problems:?}"))?;
    let operator_address = config.operator_address.clone();
    let storage = dir.path().join("storage");
    let runtime = commonware_runtime::tokio::Config::default().with_storage_directory(storage);
    commonware_runtime::tokio::Runner::new(runtime).start(|context| async move {
        let running = cohort_supervisor::start(config, Metrics::default(), context, None).await?;
        let addr = running.local_addr;
        // Wait for the performer to serve.
        let mut ready = false;
        for _ in 0..200 {
            let list = running
                .mailbox
                .list(Default::default())
                .await
                .map_err(|s| s.to_string())?;
            if list.performers.iter().any(|p| p.status == "InService") {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !ready {
            return Err("the echo performer never served".to_string());
        }
        let submissions: Vec<TaskSubmission> = (0..tasks)
            .map(|i| {
                let task_id = B256::from(Sha256::digest(i.to_be_bytes()).0);
                let payload = format!("{i}").into_bytes();
                let fields = TaskFields {
                    task_id,
                    avs,
                    executor: operator.address(),
                    operator_set_id: 0,
                    reference_timestamp: 1,
                    task_block_number: 1,
                    payload: &payload,
                };
                TaskSubmission {
                    task_id: format!("{task_id:#x}"),
                    aggregator_address: format!("{:#x}", aggregator.address()),
                    avs_address: format!("{avs:#x}"),
                    signature: sign_aggregator_ecdsa(&aggregator, &fields).to_vec(),
                    payload,
                    operator_set_id: 0,
                    reference_timestamp: 1,
                    executor_address: operator_address.clone(),
                    task_block_number: 1,
                    version: 1,
                }
            })
            .collect();
        let channel = Channel::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        let client = ExecutorServiceClient::new(channel);
        let sample = 500.min(tasks / 2);
        let submit = |offset: usize| {
            let client = client.clone();
            let submissions = &submissions;
            move |i: usize| {
                let mut client = client.clone();
                let submission = submissions[offset + i].clone();
                async move {
                    client
                        .submit_task(submission)
                        .await
                        .map(|_| ())
                        .map_err(|s| s.to_string())
                }
            }
        };
        let (elapsed, latencies) = drive(sample, 1, submit(0)).await;
        report("supervisor, 1 at a time", elapsed, latencies);
        let (elapsed, latencies) = drive(tasks - sample, concurrency, submit(sample)).await;
        report(
            &format!("supervisor, {concurrency} at once"),
            elapsed,
            latencies,
        );

        // The same performer, called directly.
        let port = process::free_port().map_err(|e| e.to_string())?;
        let mut direct = tokio::process::Command::new(&exe)
            .arg("--performer")
            .env("GRPC_PORT", port.to_string())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| e.to_string())?;
        let channel = process::channel(port)?;
        let client = PerformerServiceClient::new(channel);
        for _ in 0..100 {
            let mut probe = client.clone();
            if probe.execute_task(TaskRequest::default()).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let call = |i: usize| {
            let mut client = client.clone();
            let request = TaskRequest {
                task_id: submissions[i].task_id.as_bytes().to_vec(),
                payload: submissions[i].payload.clone(),
            };
            async move {
                client
                    .execute_task(request)
                    .await
                    .map(|_| ())
                    .map_err(|s| s.to_string())
            }
        };
        let (elapsed, latencies) = drive(sample, 1, call).await;
        report("directly, 1 at a time", elapsed, latencies);
        let (elapsed, latencies) = drive(tasks - sample, concurrency, call).await;
        report(
            &format!("directly, {concurrency} at once"),
            elapsed,
            latencies,
        );
        let _ = direct.kill().await;
        running.stop().await;
        Ok(())
    })
}
