//! Performer processes: spawning one on its own port and in its own process group, its output
//! into the node's logs, stopping it (SIGTERM to the group, SIGKILL after a grace period), and
//! health checks over gRPC.
//!
//! No child may outlive the node: each performer leads its own process group and everything
//! in the group is killed when it is stopped, when it exits, or when its monitor task is
//! dropped (runtime shutdown); `PR_SET_PDEATHSIG` kills it if the node itself dies by SIGKILL.

use crate::proto::performer::{self, performer_service_client::PerformerServiceClient};
use prometheus_client::metrics::counter::Counter;
use std::{
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _},
    sync::oneshot,
};
use tonic::{
    Code,
    transport::{Channel, Endpoint},
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// Environment variables a performer inherits from the node; everything else it gets is
/// named in the config or the deploy request.
const PASSTHROUGH_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ"];
/// Longest log line kept from a performer; the rest of the line is dropped, so a performer
/// flooding without newlines cannot grow the node's memory.
const MAX_LOG_LINE: usize = 16 * 1024;
/// Lines a performer may log per second (each stream), after a burst of [`LOG_BURST`]; the
/// rest are counted and reported, so a flooding performer cannot take the node's logging (and
/// with it the validator duties sharing the process) down with it.
const LOG_LINES_PER_SECOND: f64 = 100.0;
const LOG_BURST: f64 = 500.0;
/// Bytes of performer output read per second (each stream), after a burst of
/// [`OUTPUT_BURST_BYTES`]. Beyond it the node stops reading and the performer's writes block:
/// a performer printing gigabytes cannot make the node spend a core reading them.
const OUTPUT_BYTES_PER_SECOND: f64 = 1024.0 * 1024.0;
const OUTPUT_BURST_BYTES: f64 = 4.0 * 1024.0 * 1024.0;
/// How long an exited performer's remaining output may take to reach the log before its exit
/// is reported (the last lines usually say why it exited).
const OUTPUT_DRAIN: Duration = Duration::from_millis(500);
/// What a performer prints when the port it binds is taken (Go, Python, Rust and C all say
/// this), compared in lowercase.
const ADDRESS_IN_USE: &str = "address already in use";
/// The largest task output a performer may send (outputs of 1.5 MiB or more are refused
/// anyway, but are read to say so precisely).
pub const MAX_PERFORMER_MESSAGE: usize = 16 * 1024 * 1024;

/// How to start one performer.
#[derive(Clone, Debug)]
pub struct Launch {
    pub executable: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub port: u16,
    pub avs: String,
    pub performer_id: String,
    pub workdir: PathBuf,
    /// Counts the output lines dropped by the rate limit.
    pub dropped_lines: Counter,
}

/// A running performer: ask it to stop through `stop` (with a grace period); `exited` tells
/// how it ended.
pub struct Running {
    pub pid: u32,
    pub channel: Channel,
    pub stop: oneshot::Sender<Duration>,
    pub exited: oneshot::Receiver<Exit>,
}

/// How a performer ended.
#[derive(Clone, Debug)]
pub struct Exit {
    pub status: String,
    /// It printed that the address it binds is in use: it listens on a port of its own
    /// choosing rather than `GRPC_PORT`, and another process (its previous version) has it.
    pub address_in_use: bool,
}

/// An unused local port (the OS picks it; a performer binds it right after).
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A channel to a performer: plain-text HTTP/2 with no keepalive pings (Go servers answer
/// frequent pings with GOAWAY), connecting on first use.
pub fn channel(port: u16) -> Result<Channel, String> {
    Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .map_err(|err| err.to_string())
        .map(|endpoint| {
            endpoint
                .connect_timeout(Duration::from_secs(1))
                .tcp_nodelay(true)
                .connect_lazy()
        })
}

/// Spawns the performer. Must be called inside a tokio runtime.
pub fn spawn(launch: &Launch) -> Result<Running, String> {
    std::fs::create_dir_all(&launch.workdir)
        .map_err(|err| format!("cannot create {}: {err}", launch.workdir.display()))?;
    let port = launch.port.to_string();
    let mut command = tokio::process::Command::new(&launch.executable);
    command
        .args(launch.args.iter().map(|arg| arg.replace("{port}", &port)))
        .env_clear()
        .envs(
            PASSTHROUGH_ENV
                .iter()
                .filter_map(|name| std::env::var_os(name).map(|value| (*name, value))),
        )
        .envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("GRPC_PORT", &port)
        .env("PORT", &port)
        .env("AVS_ADDRESS", &launch.avs)
        .env("PERFORMER_ID", &launch.performer_id)
        .current_dir(&launch.workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    // SAFETY: prctl is async-signal-safe and touches only the child being started.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // ETXTBSY: a freshly written executable may still be open in a child another thread is
    // forking at that moment (its descriptor closes at that child's exec). Rare and brief.
    let mut attempt = 0;
    let mut child = loop {
        match command.spawn() {
            Ok(child) => break child,
            Err(err) if err.raw_os_error() == Some(libc::ETXTBSY) && attempt < 20 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(err) => {
                return Err(format!(
                    "cannot start {}: {err}",
                    launch.executable.display()
                ));
            }
        }
    };
    let pid = child
        .id()
        .ok_or_else(|| "the performer exited at once".to_string())?;
    let address_in_use = Arc::new(AtomicBool::new(false));
    let mut forwarders = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        forwarders.push(tokio::spawn(forward_output(
            stdout,
            launch.clone(),
            "stdout",
            address_in_use.clone(),
        )));
    }
    if let Some(stderr) = child.stderr.take() {
        forwarders.push(tokio::spawn(forward_output(
            stderr,
            launch.clone(),
            "stderr",
            address_in_use.clone(),
        )));
    }
    let (stop, stop_rx) = oneshot::channel::<Duration>();
    let (exited_tx, exited) = oneshot::channel();
    let performer_id = launch.performer_id.clone();
    tokio::spawn(async move {
        let group = GroupGuard(pid as i32);
        let status = tokio::select! {
            status = child.wait() => status,
            grace = stop_rx => {
                let grace = grace.unwrap_or(Duration::ZERO);
                group.signal(libc::SIGTERM);
                match tokio::time::timeout(grace, child.wait()).await {
                    Ok(status) => status,
                    Err(_) => {
                        tracing::warn!(performer_id, "performer ignored SIGTERM; SIGKILL");
                        group.signal(libc::SIGKILL);
                        child.wait().await
                    }
                }
            }
        };
        // Whatever else the performer started in its group goes with it.
        drop(group);
        // Its last lines (often the reason it exited) reach the log before its exit does.
        let _ = tokio::time::timeout(OUTPUT_DRAIN, futures::future::join_all(forwarders)).await;
        let status = match status {
            Ok(status) => status.to_string(),
            Err(err) => format!("wait failed: {err}"),
        };
        let _ = exited_tx.send(Exit {
            status,
            address_in_use: address_in_use.load(Ordering::Relaxed),
        });
    });
    Ok(Running {
        pid,
        channel: channel(launch.port)?,
        stop,
        exited,
    })
}

/// Kills the whole process group when dropped.
struct GroupGuard(i32);

impl GroupGuard {
    fn signal(&self, signal: i32) {
        // SAFETY: killpg only sends a signal; a group that no longer exists gives ESRCH.
        unsafe {
            libc::killpg(self.0, signal);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

/// A token bucket over log lines.
struct LogBudget {
    tokens: f64,
    refilled: Instant,
    dropped: u64,
    reported: Instant,
}

impl LogBudget {
    fn new() -> Self {
        Self {
            tokens: LOG_BURST,
            refilled: Instant::now(),
            dropped: 0,
            reported: Instant::now(),
        }
    }

    /// Whether one more line may be logged now; a refused line is counted.
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * LOG_LINES_PER_SECOND;
        self.tokens = (self.tokens + earned).min(LOG_BURST);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }
}

/// Copies a performer's output into the logs line by line, with its AVS and id, at most
/// [`LOG_LINES_PER_SECOND`] lines a second; notes whether it said its address is in use.
async fn forward_output(
    mut pipe: impl AsyncRead + Unpin,
    launch: Launch,
    stream: &'static str,
    address_in_use: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 8192];
    let mut line: Vec<u8> = Vec::new();
    // After an over-long line was logged (cut), the rest of it is dropped up to its newline.
    let mut skipping = false;
    let mut budget = LogBudget::new();
    // Dropped lines are reported at most once a second, and at the end of the output.
    let report_dropped = |budget: &mut LogBudget, at_end: bool| {
        if budget.dropped > 0 && (at_end || budget.reported.elapsed() >= Duration::from_secs(1)) {
            budget.reported = Instant::now();
            tracing::warn!(
                target: "performer",
                avs_address = %launch.avs,
                performer_id = %launch.performer_id,
                stream,
                dropped = budget.dropped,
                "performer output over {LOG_LINES_PER_SECOND} lines/s; lines dropped"
            );
            launch.dropped_lines.inc_by(budget.dropped);
            budget.dropped = 0;
        }
    };
    let mut emit = |line: &[u8], truncated: bool| {
        if !address_in_use.load(Ordering::Relaxed)
            && line.len() < 4096
            && String::from_utf8_lossy(line)
                .to_ascii_lowercase()
                .contains(ADDRESS_IN_USE)
        {
            address_in_use.store(true, Ordering::Relaxed);
        }
        let allowed = budget.take();
        report_dropped(&mut budget, false);
        if !allowed {
            return;
        }
        let text = String::from_utf8_lossy(line);
        tracing::info!(
            target: "performer",
            avs_address = %launch.avs,
            performer_id = %launch.performer_id,
            stream,
            truncated,
            "{}",
            text.trim_end()
        );
    };
    let mut bytes_allowed = OUTPUT_BURST_BYTES;
    let mut bytes_refilled = Instant::now();
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let now = Instant::now();
        bytes_allowed = (bytes_allowed
            + now.duration_since(bytes_refilled).as_secs_f64() * OUTPUT_BYTES_PER_SECOND)
            .min(OUTPUT_BURST_BYTES)
            - n as f64;
        bytes_refilled = now;
        if bytes_allowed < 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(
                -bytes_allowed / OUTPUT_BYTES_PER_SECOND,
            ))
            .await;
        }
        for &byte in &buf[..n] {
            if byte == b'\n' {
                if !skipping {
                    emit(&line, false);
                }
                line.clear();
                skipping = false;
            } else if !skipping {
                line.push(byte);
                if line.len() >= MAX_LOG_LINE {
                    emit(&line, true);
                    line.clear();
                    skipping = true;
                }
            }
        }
    }
    if !line.is_empty() && !skipping {
        emit(&line, false);
    }
    report_dropped(&mut budget, true);
}

/// Which health protocol a performer answered last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthProtocol {
    /// `grpc.health.v1.Health/Check`.
    Standard,
    /// `PerformerService/HealthCheck` (protocol-apis v1.14 to v1.16).
    Legacy,
}

/// One health check: the standard service first, the old `PerformerService/HealthCheck` when
/// that answers UNIMPLEMENTED (remembered in `protocol`).
pub async fn check_health(
    channel: &Channel,
    timeout: Duration,
    protocol: &mut HealthProtocol,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    if *protocol == HealthProtocol::Standard {
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        });
        request.set_timeout(timeout);
        let answer =
            tokio::time::timeout(timeout, HealthClient::new(channel.clone()).check(request)).await;
        match answer {
            Err(_) => return Err("health check timed out".into()),
            Ok(Ok(response)) => {
                let status = response.into_inner().status;
                return if status == ServingStatus::Serving as i32 {
                    Ok(())
                } else {
                    Err(format!("health status {status} is not SERVING"))
                };
            }
            Ok(Err(status)) if status.code() == Code::Unimplemented => {
                *protocol = HealthProtocol::Legacy;
            }
            Ok(Err(status)) => return Err(format!("health check: {status}")),
        }
    }
    let remaining = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(50));
    let mut request = tonic::Request::new(performer::HealthCheckRequest {});
    request.set_timeout(remaining);
    let answer = tokio::time::timeout(
        remaining,
        PerformerServiceClient::new(channel.clone()).health_check(request),
    )
    .await;
    match answer {
        Err(_) => Err("legacy health check timed out".into()),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) if status.code() == Code::Unimplemented => {
            // Neither protocol: try the standard one again next time.
            *protocol = HealthProtocol::Standard;
            Err("performer answers neither grpc.health.v1 nor PerformerService/HealthCheck".into())
        }
        Ok(Err(status)) => Err(format!("legacy health check: {status}")),
    }
}
