//! Logs, `/metrics` and `/health`.
//!
//! Metrics are the runtime's registry, which every actor registers into through its context;
//! `/health` answers 200 only when this operator hears from a quorum of the cluster and its
//! finalized chain is moving, so a load balancer or supervisor can act on it.

use crate::{
    log_lines::{JsonWithOperator, Lines},
    net::Heard,
};
use axum::{
    Router,
    body::Body,
    http::{Response, StatusCode, header},
    routing::get,
};
use cohort_ingress::SlotClock;
use commonware_runtime::{Clock as _, Metrics as _, Spawner as _, Supervisor as _, tokio};
use commonware_utils::{Faults as _, N3f1};
use serde::Serialize;
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    Json,
    /// Human-readable lines.
    Pretty,
}

/// Installs the global logger: `RUST_LOG`-style directives (default `info`); every line
/// names `operator`, this process's index in the cluster.
pub fn init_logs(format: LogFormat, filter: Option<&str>, operator: usize) -> Result<(), String> {
    let directives = filter
        .map(str::to_string)
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".into());
    let filter = EnvFilter::try_new(&directives)
        .map_err(|err| format!("log filter `{directives}` is not valid: {err}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder
            .event_format(JsonWithOperator {
                inner: tracing_subscriber::fmt::format().json().flatten_event(true),
                operator,
            })
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .try_init(),
        LogFormat::Pretty => {
            use std::io::IsTerminal as _;
            builder
                .with_ansi(std::io::stderr().is_terminal())
                .event_format(Lines {
                    timer: tracing_subscriber::fmt::time::SystemTime,
                    operator: Some(operator),
                    target: false,
                })
                .try_init()
        }
    };
    result.map_err(|err| format!("could not install the logger: {err}"))
}

/// What `/health` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Health {
    pub ready: bool,
    /// Peers heard from within the last two slots.
    pub peers_connected: usize,
    /// Operators (this one included) a quorum needs.
    pub quorum: usize,
    pub current_slot: Option<u64>,
    pub finalized_height: Option<u64>,
    pub finalized_slot: Option<u64>,
    /// Each configured beacon node and whether duties can use it (absent on the devnet).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub beacon_nodes: Vec<BeaconNodeStatus>,
    /// Why the node is not ready, if it is not.
    pub reasons: Vec<String>,
}

/// The last finalized block this operator processed.
#[derive(Clone, Copy, Debug, Default)]
pub struct LastFinalized {
    pub height: u64,
    pub slot: u64,
    pub at: Option<SystemTime>,
}

#[derive(Clone)]
pub struct HealthProbe {
    pub clock: SlotClock,
    pub operators: usize,
    pub heard: Heard,
    pub finalized: Arc<Mutex<LastFinalized>>,
    /// The beacon nodes' health, when duties come from real beacon nodes.
    pub beacon: Option<BeaconHealth>,
    /// Why the slashing-protection record is unusable, while it is.
    pub slashing: cohort_actors::runner::slashing::SlashingStatus,
}

/// Reads each configured beacon node's last known health.
pub type BeaconHealth = Arc<dyn Fn() -> Vec<cohort_beacon::NodeHealth> + Send + Sync>;

/// One beacon node in `/health`.
#[derive(Clone, Debug, Serialize)]
pub struct BeaconNodeStatus {
    pub url: String,
    pub tier: &'static str,
    pub usable: bool,
}

impl HealthProbe {
    pub fn check(&self, now: SystemTime) -> Health {
        let window = self.clock.slot_duration * 2;
        let since = now.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
        let peers_connected = self.heard.since(since);
        let quorum = N3f1::quorum(self.operators) as usize;
        let finalized = self.finalized.lock().map(|last| *last).unwrap_or_default();
        let current_slot = self.clock.slot_at(now);
        let mut reasons = Vec::new();
        if peers_connected + 1 < quorum {
            reasons.push(format!(
                "hears {peers_connected} peers; a quorum needs {} besides this operator",
                quorum - 1
            ));
        }
        match finalized.at {
            None => reasons.push("has processed no finalized block yet".into()),
            Some(at)
                if now.duration_since(at).unwrap_or_default() > self.clock.slot_duration * 3 =>
            {
                reasons.push(format!(
                    "last finalized block (height {}) was processed more than 3 slots ago",
                    finalized.height
                ))
            }
            Some(_) => {}
        }
        let beacon_nodes: Vec<BeaconNodeStatus> = self
            .beacon
            .as_ref()
            .map(|health| {
                health()
                    .into_iter()
                    .map(|node| BeaconNodeStatus {
                        usable: node.tier != cohort_beacon::Tier::Unusable,
                        tier: node.tier.as_str(),
                        url: node.url,
                    })
                    .collect()
            })
            .unwrap_or_default();
        if self.beacon.is_some() && !beacon_nodes.iter().any(|node| node.usable) {
            reasons.push("no beacon node is usable".into());
        }
        // A node that cannot record what it signs signs nothing: not ready, whatever else holds.
        if let Some(reason) = self.slashing.lock().ok().and_then(|status| status.clone()) {
            reasons.push(format!("signs nothing: {reason}"));
        }
        Health {
            ready: reasons.is_empty(),
            peers_connected,
            quorum,
            current_slot,
            finalized_height: finalized.at.map(|_| finalized.height),
            finalized_slot: finalized.at.map(|_| finalized.slot),
            beacon_nodes,
            reasons,
        }
    }
}

/// What one client of `/metrics` and `/health` may cost the node. The listener shares the
/// process's file descriptors with p2p and storage: unbounded, a few thousand idle connections
/// exhaust them and the node stops accepting its peers.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Connections served at once; one past it is closed as soon as it is accepted.
    pub max_connections: usize,
    /// A request's headers must arrive within this long of the connection opening.
    pub header_timeout: Duration,
    /// No connection lives longer than this, whatever it is doing (one request each).
    pub connection_timeout: Duration,
}

impl HttpLimits {
    /// A scraper and a health check or two need a handful of connections, each a few
    /// milliseconds long.
    pub const DEFAULT: Self = Self {
        max_connections: 64,
        header_timeout: Duration::from_secs(5),
        connection_timeout: Duration::from_secs(30),
    };
}

/// hyper's smallest read buffer: a `/health` or `/metrics` request is a few hundred bytes.
const MAX_REQUEST_BUFFER: usize = 8192;
/// How long accepting pauses after it fails (out of descriptors): failing again at once would
/// spin a core.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// What the metrics listener serves, for its log lines.
const METRICS_AND_HEALTH: &str = "/metrics and /health";

/// Serves `/metrics` (the runtime's registry) and `/health` on `address`.
pub fn serve(context: &tokio::Context, address: SocketAddr, probe: HealthProbe) {
    let app = router(context.child("metrics"), probe);
    serve_app(context, address, METRICS_AND_HEALTH, app);
}

/// Serves `app` on `address` within [`HttpLimits::DEFAULT`], until the runtime stops; `what`
/// names it in log lines. A listener that cannot bind is logged, and the node runs without it.
pub fn serve_app(context: &tokio::Context, address: SocketAddr, what: &'static str, app: Router) {
    context.child("http").spawn(move |_| async move {
        // A tokio listener, not the runtime's: the runtime's network applies p2p timeouts and
        // counts bandwidth, neither of which suits an HTTP endpoint.
        let listener = match ::tokio::net::TcpListener::bind(address).await {
            Ok(listener) => listener,
            Err(err) => {
                error!(%address, %err, what, "cannot bind the listener; the node runs without it");
                return;
            }
        };
        info!(%address, what, "serving");
        serve_router(listener, app, HttpLimits::DEFAULT, what).await;
    });
}

/// Serves `/metrics` and `/health` on `listener` within `limits`, until the runtime stops.
#[cfg(test)]
pub async fn serve_listener(
    context: tokio::Context,
    listener: ::tokio::net::TcpListener,
    probe: HealthProbe,
    limits: HttpLimits,
) {
    serve_router(listener, router(context, probe), limits, METRICS_AND_HEALTH).await
}

/// Serves `app` on `listener` within `limits`, one request per connection.
async fn serve_router(
    listener: ::tokio::net::TcpListener,
    app: Router,
    limits: HttpLimits,
    what: &'static str,
) {
    let permits = Arc::new(::tokio::sync::Semaphore::new(limits.max_connections));
    let mut refused: u64 = 0;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                warn!(%err, what, "the listener cannot accept; retrying");
                ::tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Dropped at once: the descriptor comes straight back.
            refused += 1;
            if refused.is_power_of_two() {
                warn!(
                    refused,
                    limit = limits.max_connections,
                    what,
                    "the listener is at its connection limit; closing new connections"
                );
            }
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        // A plain tokio task per connection: it is bounded by the permit and the timeout, and
        // needs none of the runtime's supervision.
        ::tokio::spawn(async move {
            let _permit = permit;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(false)
                .max_buf_size(MAX_REQUEST_BUFFER)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = ::tokio::time::timeout(limits.connection_timeout, connection).await;
        });
    }
}

fn router(context: tokio::Context, probe: HealthProbe) -> Router {
    let context = Arc::new(context);
    let metrics_context = context.clone();
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let context = metrics_context.clone();
                async move {
                    Response::builder()
                        .status(StatusCode::OK)
                        .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
                        .body(Body::from(context.encode()))
                        .unwrap_or_default()
                }
            }),
        )
        .route(
            "/health",
            get(move || {
                let health = probe.check(context.current());
                async move {
                    let status = if health.ready {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    let body = serde_json::to_string(&health).unwrap_or_default();
                    Response::builder()
                        .status(status)
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Body::from(body))
                        .unwrap_or_default()
                }
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::TcpStream,
        time::{Instant, timeout},
    };
    use commonware_runtime::Runner as _;

    fn probe() -> HealthProbe {
        HealthProbe {
            clock: SlotClock {
                genesis: SystemTime::UNIX_EPOCH,
                slot_duration: Duration::from_secs(12),
                intervals_per_slot: 3,
                slots_per_epoch: 32,
                sync_committee: cohort_ingress::SyncCommitteeSpec::MAINNET,
                skew_ms: 0,
            },
            operators: 4,
            heard: Heard::default(),
            finalized: Arc::new(Mutex::new(LastFinalized::default())),
            beacon: None,
            slashing: Default::default(),
        }
    }

    /// Waits until the server closes `stream` (or `within` passes); returns when it did.
    async fn closed_after(mut stream: TcpStream, within: Duration) -> Option<Duration> {
        let start = Instant::now();
        let mut buf = [0u8; 256];
        loop {
            match timeout(
                within.saturating_sub(start.elapsed()),
                stream.read(&mut buf),
            )
            .await
            {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Clients that open connections and never finish their headers cannot hold them: those
    /// over the cap are closed at once, the rest at the header timeout, and `/health` answers
    /// again right after. (Unbounded, 3,000 such clients held 3,000 descriptors for 40 s.)
    #[test]
    fn half_open_connections_are_capped_and_timed_out() {
        let limits = HttpLimits {
            max_connections: 8,
            header_timeout: Duration::from_secs(2),
            connection_timeout: Duration::from_secs(4),
        };
        let attackers = 40;
        let runner =
            commonware_runtime::tokio::Runner::new(commonware_runtime::tokio::Config::new());
        runner.start(|context| async move {
            let listener = ::tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let address = listener.local_addr().expect("address");
            let server = context.child("http");
            let _server = ::tokio::spawn(serve_listener(server, listener, probe(), limits));

            let mut waits = Vec::new();
            for _ in 0..attackers {
                let mut stream = TcpStream::connect(address).await.expect("connect");
                // Headers begun, never finished.
                let _ = stream
                    .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                    .await;
                waits.push(::tokio::spawn(closed_after(stream, Duration::from_secs(8))));
            }
            let mut closed = Vec::new();
            for wait in waits {
                closed.push(wait.await.expect("waiter"));
            }
            let open = closed.iter().filter(|at| at.is_none()).count();
            assert_eq!(open, 0, "connections still open after 8 s: {closed:?}");
            let early = closed
                .iter()
                .flatten()
                .filter(|at| **at < Duration::from_secs(1))
                .count();
            assert!(
                early >= attackers - limits.max_connections,
                "only {early} of {attackers} closed at once; the cap is {}: {closed:?}",
                limits.max_connections
            );

            // Once they are gone, /health answers.
            let mut stream = TcpStream::connect(address).await.expect("connect");
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .expect("request");
            let mut answer = Vec::new();
            timeout(Duration::from_secs(2), stream.read_to_end(&mut answer))
                .await
                .expect("/health answers in time")
                .expect("read");
            let answer = String::from_utf8_lossy(&answer);
            assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
            assert!(answer.contains("peers_connected"), "{answer}");
        });
    }

    /// Item 5 of issue 21: a node whose slashing-protection record is unusable signs nothing,
    /// and `/health` must say so (it used to stay ready).
    #[test]
    fn an_unusable_slashing_record_makes_the_node_not_ready() {
        let genesis = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let clock = SlotClock::mainnet(genesis);
        let now = genesis + Duration::from_secs(120);
        let probe = HealthProbe {
            clock,
            // Alone: a quorum of one, so only the slashing record decides.
            operators: 1,
            heard: Heard::default(),
            finalized: Arc::new(Mutex::new(LastFinalized {
                height: 9,
                slot: 9,
                at: Some(now),
            })),
            beacon: None,
            slashing: Default::default(),
        };
        let health = probe.check(now);
        assert!(health.ready, "{:?}", health.reasons);
        *probe.slashing.lock().unwrap() = Some("the disk is full".into());
        let health = probe.check(now);
        assert!(!health.ready);
        assert!(
            health
                .reasons
                .iter()
                .any(|r| r.contains("the disk is full")),
            "{:?}",
            health.reasons
        );
    }
}
