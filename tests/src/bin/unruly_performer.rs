//! A performer that misbehaves on purpose, for tests that check a node survives one: it serves
//! Hourglass's performer API on `GRPC_PORT` (health SERVING, tasks echoed) and, by its first
//! argument, floods its output with lines (`flood`), exits after a while (`exit-after-ms N`,
//! which the supervisor restarts until it gives up), or freezes its whole process group
//! (`freeze-after-ms N`: SIGSTOP, so that nothing answers, not even health checks). With
//! `echo` it behaves: the well-behaved performer of a test that needs one.

use cohort_supervisor::proto::performer::{
    HealthCheckRequest, HealthCheckResponse, StartSyncRequest, StartSyncResponse, TaskRequest,
    TaskResponse,
    performer_service_server::{PerformerService, PerformerServiceServer},
};
use std::{io::Write as _, time::Duration};
use tonic::{Request, Response, Status};

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

enum Mode {
    Echo,
    Flood,
    ExitAfter(Duration),
    FreezeAfter(Duration),
}

fn mode() -> Result<Mode, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let millis = |i: usize| {
        args.get(i)
            .and_then(|ms| ms.parse().ok())
            .map(Duration::from_millis)
            .ok_or_else(|| format!("{} needs milliseconds", args[0]))
    };
    match args.first().map(String::as_str) {
        Some("echo") => Ok(Mode::Echo),
        Some("flood") => Ok(Mode::Flood),
        Some("exit-after-ms") => millis(1).map(Mode::ExitAfter),
        Some("freeze-after-ms") => millis(1).map(Mode::FreezeAfter),
        _ => {
            Err("usage: unruly_performer echo | flood | exit-after-ms N | freeze-after-ms N".into())
        }
    }
}

fn main() {
    let mode = match mode() {
        Ok(mode) => mode,
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(2);
        }
    };
    let Some(port) = std::env::var("GRPC_PORT")
        .ok()
        .and_then(|port| port.parse::<u16>().ok())
    else {
        eprintln!("GRPC_PORT is not set");
        std::process::exit(2);
    };
    match mode {
        Mode::Echo => {}
        Mode::Flood => {
            std::thread::spawn(|| {
                let mut out = std::io::stdout().lock();
                loop {
                    if writeln!(out, "an unruly performer floods its output").is_err() {
                        return;
                    }
                }
            });
        }
        Mode::ExitAfter(after) => {
            std::thread::spawn(move || {
                std::thread::sleep(after);
                println!("exiting on purpose");
                std::process::exit(7);
            });
        }
        Mode::FreezeAfter(after) => {
            std::thread::spawn(move || {
                std::thread::sleep(after);
                println!("freezing on purpose");
                // SAFETY: sends a signal to this process's own group.
                unsafe {
                    libc::killpg(0, libc::SIGSTOP);
                }
            });
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("no runtime: {err}");
            std::process::exit(1);
        }
    };
    let served = runtime.block_on(async move {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter.set_serving::<PerformerServiceServer<Echo>>().await;
        tonic::transport::Server::builder()
            .add_service(PerformerServiceServer::new(Echo))
            .add_service(health)
            .serve(([127, 0, 0, 1], port).into())
            .await
    });
    if let Err(err) = served {
        eprintln!("serving failed: {err}");
        std::process::exit(1);
    }
}
