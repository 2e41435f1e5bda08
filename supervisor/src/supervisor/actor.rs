//! The supervisor's state and run loop.
//!
//! Slow work never runs in the loop: calls to performers, health checks, artifact hashing,
//! process waits and durable writes run in tasks of their own and report back as [`Event`]s,
//! which the loop handles before new requests (they free workers and settle deploys).

mod management;
mod performers;
mod tasks;

use super::ingress::Message;
use crate::{
    artifact,
    config::{AvsConfig, Config, parse_address},
    metrics::Metrics,
    process::{self, HealthProtocol, Launch, MAX_PERFORMER_MESSAGE},
    proto::{
        common::AuthSignature,
        executor::{
            DeployArtifactRequest, DeployArtifactResponse, GetChallengeTokenResponse,
            ListPerformersResponse, Performer, RemovePerformerResponse, TaskResult,
        },
        performer::{TaskRequest, performer_service_client::PerformerServiceClient},
    },
    store::{PerformerRecord, Record, Store},
    validate::CheckedTask,
};
use cohort_avs_crypto::{Address, keccak256};
use prost::Message as _;
use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tokio::{
    sync::{mpsc, oneshot},
    task::AbortHandle,
};
use tonic::{Code, Status};
use tracing::{error, info, warn};

/// Outputs of this size or more are refused (Hourglass's aggregator drops them).
pub const MAX_OUTPUT: usize = 1536 * 1024;
/// How long a challenge token stays valid.
const TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// Health checks of a performer that has not yet answered once come this often.
const STARTUP_HEALTH_INTERVAL: Duration = Duration::from_millis(100);
/// A performer healthy this long has its restart count forgiven.
const RESTART_FORGIVENESS: Duration = Duration::from_secs(60);

type Reply<T> = oneshot::Sender<Result<T, Status>>;

/// What the loop's own tasks report.
enum Event {
    TaskDone {
        key: String,
        performer_id: String,
        result: Result<TaskResult, Status>,
        started: Instant,
    },
    Prepared {
        avs: String,
        result: Result<PathBuf, (Code, String)>,
    },
    Health {
        performer_id: String,
        generation: u64,
        result: Result<(), String>,
    },
    Exited {
        performer_id: String,
        generation: u64,
        exit: process::Exit,
    },
    StartDeadline {
        performer_id: String,
        generation: u64,
    },
    RestartDue {
        performer_id: String,
    },
    DrainDeadline {
        performer_id: String,
    },
    StopDeadline,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// A deployment's new performer, not serving yet.
    Staged,
    /// Serving its AVS's tasks.
    InService,
    /// Being (re)started: serving again once it answers a health check.
    Restarting,
    /// Replaced or removed: finishing its in-flight tasks, then stopped.
    Draining,
    /// Sent SIGTERM; gone at its exit.
    Stopping,
    /// Restarted too often; needs a new deployment.
    Failed,
}

impl Role {
    fn status(self) -> &'static str {
        match self {
            Role::Staged => "Staged",
            Role::InService => "InService",
            Role::Restarting => "Starting",
            Role::Draining => "Draining",
            Role::Stopping => "Stopping",
            Role::Failed => "Failed",
        }
    }
}

/// One running process of a performer.
struct Instance {
    generation: u64,
    port: u16,
    pid: u32,
    channel: tonic::transport::Channel,
    stop: Option<oneshot::Sender<Duration>>,
    health: AbortHandle,
    /// Answered a health check since it started.
    ready: bool,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.health.abort();
    }
}

struct PerformerState {
    record: PerformerRecord,
    role: Role,
    instance: Option<Instance>,
    restarts: u32,
    consecutive_failures: u32,
    app_healthy: bool,
    last_health: Option<SystemTime>,
    healthy_since: Option<Instant>,
    in_flight: usize,
}

struct Deploying {
    deployment_id: String,
    performer_id: String,
    registry_url: String,
    digest: String,
    env: Vec<(String, String)>,
    reply: Option<Reply<DeployArtifactResponse>>,
    /// Set when the AVS's performer binds a fixed port: the serving one is replaced in place.
    in_place: Option<InPlace>,
}

/// A deployment replacing a fixed-port performer in place: the previous one drains and stops,
/// then the new one starts on the port it freed.
struct InPlace {
    /// What restarts if the new one fails.
    previous: PerformerRecord,
    port: u16,
}

struct AvsState {
    config: AvsConfig,
    current: Option<String>,
    deploying: Option<Deploying>,
    running: usize,
    queue: VecDeque<String>,
    /// After a failed in-place deployment: the previous performer restarts once the process
    /// named here (which holds the port) is gone.
    restore: Option<(String, PerformerRecord)>,
}

impl AvsState {
    /// A fixed-port performer is being swapped: tasks wait in the queue instead of failing.
    fn swapping(&self) -> bool {
        self.restore.is_some()
            || self
                .deploying
                .as_ref()
                .is_some_and(|deploying| deploying.in_place.is_some())
    }
}

struct InFlight {
    task: Box<CheckedTask>,
    deadline: Instant,
    submitted: Instant,
    waiters: Vec<Reply<TaskResult>>,
}

struct Processed {
    request_hash: String,
    result: TaskResult,
}

pub struct Actor {
    config: Arc<Config>,
    metrics: Metrics,
    store: Store,
    mailbox: mpsc::Receiver<Message>,
    events_tx: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
    avs: BTreeMap<String, AvsState>,
    performers: BTreeMap<String, PerformerState>,
    tasks: HashMap<String, InFlight>,
    processed: HashMap<String, Processed>,
    tokens: HashMap<String, Instant>,
    stopping: Option<Vec<oneshot::Sender<()>>>,
    performers_stopped: bool,
    next_generation: u64,
    operator: Address,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if let Err(err) = getrandom::fill(&mut buf) {
        // Ids only need to be unique; fall back to the clock.
        warn!(%err, "no OS randomness for an id; using the clock");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        return format!("{nanos:0width$x}", width = bytes * 2);
    }
    hex::encode(buf)
}

/// RFC 3339 (UTC, seconds) without a date crate.
fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Actor {
    pub(super) fn new(
        config: Arc<Config>,
        metrics: Metrics,
        store: Store,
        records: Vec<Record>,
        mailbox: mpsc::Receiver<Message>,
    ) -> Self {
        let (events_tx, events) = mpsc::unbounded_channel();
        let operator = config.operator_address.parse().unwrap_or(Address::ZERO);
        let avs = config
            .avs
            .values()
            .map(|cfg| {
                (
                    cfg.address.clone(),
                    AvsState {
                        config: cfg.clone(),
                        current: None,
                        deploying: None,
                        running: 0,
                        queue: VecDeque::new(),
                        restore: None,
                    },
                )
            })
            .collect();
        let mut actor = Self {
            config,
            metrics,
            store,
            mailbox,
            events_tx,
            events,
            avs,
            performers: BTreeMap::new(),
            tasks: HashMap::new(),
            processed: HashMap::new(),
            tokens: HashMap::new(),
            stopping: None,
            performers_stopped: false,
            next_generation: 0,
            operator,
        };
        actor.replay(records);
        actor
    }

    /// Rebuilds processed tasks and each AVS's serving performer from the durable records.
    fn replay(&mut self, records: Vec<Record>) {
        let mut serving: BTreeMap<String, PerformerRecord> = BTreeMap::new();
        for record in records {
            match record {
                Record::Task {
                    task_id,
                    request,
                    result,
                } => {
                    let Some(result) = hex::decode(&result)
                        .ok()
                        .and_then(|bytes| TaskResult::decode(bytes.as_slice()).ok())
                    else {
                        warn!(task_id, "stored task result does not decode; skipped");
                        continue;
                    };
                    self.processed.insert(
                        task_id,
                        Processed {
                            request_hash: request,
                            result,
                        },
                    );
                }
                Record::Serving(record) => {
                    serving.insert(record.avs.clone(), record);
                }
                Record::Removed { avs, performer_id } => {
                    if serving
                        .get(&avs)
                        .is_some_and(|r| r.performer_id == performer_id)
                    {
                        serving.remove(&avs);
                    }
                }
                Record::Deployment { .. } => {}
            }
        }
        for (avs, record) in serving {
            if !self.avs.contains_key(&avs) {
                warn!(avs_address = %avs, "a stored performer's AVS is no longer configured");
                continue;
            }
            info!(avs_address = %avs, performer_id = %record.performer_id, "restoring performer");
            self.adopt(record, Role::Restarting);
        }
    }

    /// Runs until stopped.
    pub async fn run(mut self) {
        // Configured first deployments for AVSs that have never had one.
        let initial: Vec<(String, String, String)> = self
            .avs
            .values()
            .filter(|state| state.current.is_none())
            .filter_map(|state| {
                let (url, digest) = state.config.initial.clone()?;
                Some((state.config.address.clone(), url, digest))
            })
            .collect();
        for (avs, registry_url, digest) in initial {
            let request = DeployArtifactRequest {
                avs_address: avs,
                digest,
                registry_url,
                ..Default::default()
            };
            self.begin_deploy(request, None);
        }
        // Restored performers start now.
        let restoring: Vec<String> = self
            .performers
            .iter()
            .filter(|(_, p)| p.instance.is_none() && p.role == Role::Restarting)
            .map(|(id, _)| id.clone())
            .collect();
        for id in restoring {
            self.launch(&id);
        }
        loop {
            tokio::select! {
                biased;
                Some(event) = self.events.recv() => self.on_event(event),
                message = self.mailbox.recv() => match message {
                    Some(message) => self.on_message(message),
                    None => {
                        if self.stopping.is_none() {
                            self.begin_stop(None);
                        }
                    }
                },
            }
            if self.finish_stop_if_done() {
                return;
            }
        }
    }

    fn send_later(&self, after: Duration, event: Event) {
        let tx = self.events_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = tx.send(event);
        });
    }

    // ---------------------------------------------------------------- messages

    fn on_message(&mut self, message: Message) {
        match message {
            Message::Submit {
                task,
                deadline,
                reply,
            } => self.submit(task, deadline, reply),
            Message::Deploy { request, reply } => {
                let refused = self
                    .check_auth(request.auth.as_ref())
                    .and_then(|()| self.refuse_if_stopping());
                match refused {
                    Err(status) => {
                        let _ = reply.send(Err(status));
                    }
                    Ok(()) => self.begin_deploy(request, Some(reply)),
                }
            }
            Message::List { request, reply } => {
                let result = self
                    .check_auth(request.auth.as_ref())
                    .map(|()| self.list(&request.avs_address));
                let _ = reply.send(result);
            }
            Message::Remove { request, reply } => {
                let result = self
                    .check_auth(request.auth.as_ref())
                    .and_then(|()| self.remove(&request.performer_id));
                let _ = reply.send(result);
            }
            Message::ChallengeToken {
                operator_address,
                reply,
            } => {
                let _ = reply.send(self.challenge_token(&operator_address));
            }
            Message::Stop { reply } => self.begin_stop(Some(reply)),
        }
    }

    fn refuse_if_stopping(&self) -> Result<(), Status> {
        if self.stopping.is_some() {
            return Err(Status::unavailable("the executor is stopping"));
        }
        Ok(())
    }

    // ---------------------------------------------------------------- stopping

    fn begin_stop(&mut self, reply: Option<oneshot::Sender<()>>) {
        match &mut self.stopping {
            Some(waiters) => waiters.extend(reply),
            None => {
                info!(in_flight = self.tasks.len(), "supervisor stopping");
                self.stopping = Some(reply.into_iter().collect());
                let avss: Vec<String> = self.avs.keys().cloned().collect();
                for avs in avss {
                    self.finish_deploy(&avs, Err(Status::unavailable("the executor is stopping")));
                }
                self.send_later(self.config.limits.stop_timeout, Event::StopDeadline);
            }
        }
    }

    fn stop_all_performers(&mut self) {
        if self.performers_stopped {
            return;
        }
        self.performers_stopped = true;
        let ids: Vec<String> = self.performers.keys().cloned().collect();
        for id in ids {
            if let Some(performer) = self.performers.get_mut(&id) {
                performer.role = Role::Stopping;
            }
            self.stop_performer(&id);
        }
    }

    /// True once stopping and nothing is left.
    fn finish_stop_if_done(&mut self) -> bool {
        if self.stopping.is_none() {
            return false;
        }
        if self.tasks.is_empty() {
            self.stop_all_performers();
        }
        if !self.performers_stopped || self.performers.values().any(|p| p.instance.is_some()) {
            return false;
        }
        info!("supervisor stopped; no performer left");
        for waiter in self.stopping.take().into_iter().flatten() {
            let _ = waiter.send(());
        }
        true
    }

    // ---------------------------------------------------------------- events

    fn on_event(&mut self, event: Event) {
        match event {
            Event::TaskDone {
                key,
                performer_id,
                result,
                started,
            } => self.task_done(key, performer_id, result, started),
            Event::Prepared { avs, result } => self.prepared(avs, result),
            Event::Health {
                performer_id,
                generation,
                result,
            } => self.on_health(performer_id, generation, result),
            Event::Exited {
                performer_id,
                generation,
                exit,
            } => self.on_exit(performer_id, generation, exit),
            Event::StartDeadline {
                performer_id,
                generation,
            } => self.on_start_deadline(performer_id, generation),
            Event::RestartDue { performer_id } => self.on_restart_due(performer_id),
            Event::DrainDeadline { performer_id } => {
                if self
                    .performers
                    .get(&performer_id)
                    .is_some_and(|p| p.role == Role::Draining)
                {
                    warn!(performer_id, "drain timed out; stopping the performer");
                    self.stop_performer(&performer_id);
                }
            }
            Event::StopDeadline => {
                if !self.tasks.is_empty() {
                    warn!(
                        in_flight = self.tasks.len(),
                        "stop timeout: stopping performers with tasks in flight"
                    );
                }
                self.stop_all_performers();
            }
        }
    }
}
