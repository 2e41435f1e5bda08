//! The supervisor's state and run loop.
//!
//! Slow work never runs in the loop: calls to performers, health checks, artifact hashing,
//! process waits and durable writes run in tasks of their own and report back as [`Event`]s,
//! which the loop handles before new requests (they free workers and settle deploys).

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
        status: String,
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
}

struct AvsState {
    config: AvsConfig,
    current: Option<String>,
    deploying: Option<Deploying>,
    running: usize,
    queue: VecDeque<String>,
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

    // ---------------------------------------------------------------- tasks

    fn submit(&mut self, task: Box<CheckedTask>, deadline: Instant, reply: Reply<TaskResult>) {
        let avs = task.avs.clone();
        if let Some(done) = self.processed.get(&task.key) {
            let answer = if done.request_hash == task.request_hash {
                self.metrics.task(&avs, "replayed");
                Ok(done.result.clone())
            } else {
                self.metrics.task(&avs, "conflict");
                Err(Status::already_exists(format!(
                    "task {} was already answered for a different task",
                    task.task_id
                )))
            };
            let _ = reply.send(answer);
            return;
        }
        if let Some(running) = self.tasks.get_mut(&task.key) {
            if running.task.request_hash == task.request_hash {
                self.metrics.task(&avs, "joined");
                running.waiters.push(reply);
            } else {
                self.metrics.task(&avs, "conflict");
                let _ = reply.send(Err(Status::already_exists(format!(
                    "task {} is already running for a different task",
                    task.task_id
                ))));
            }
            return;
        }
        if let Err(status) = self.refuse_if_stopping() {
            let _ = reply.send(Err(status));
            return;
        }
        let Some(state) = self.avs.get_mut(&avs) else {
            let _ = reply.send(Err(Status::not_found(format!(
                "AVS {avs} is not served by this executor"
            ))));
            return;
        };
        // 5. The AVS's performer.
        if let Err(status) = serving_performer(state, &self.performers) {
            self.metrics.task(&avs, "no_performer");
            let _ = reply.send(Err(status));
            return;
        }
        let start_now = state.running < state.config.max_concurrent_tasks;
        if !start_now && state.queue.len() >= state.config.queue_depth {
            self.metrics.task(&avs, "pool_full");
            let _ = reply.send(Err(Status::resource_exhausted(format!(
                "AVS {avs}: {} tasks running and {} waiting (the limit)",
                state.running,
                state.queue.len()
            ))));
            return;
        }
        let key = task.key.clone();
        self.tasks.insert(
            key.clone(),
            InFlight {
                task,
                deadline,
                submitted: Instant::now(),
                waiters: vec![reply],
            },
        );
        if start_now {
            self.start_task(&key);
        } else {
            state.queue.push_back(key);
            self.metrics
                .queue_depth
                .get_or_create(&Metrics::avs(&avs))
                .set(state.queue.len() as i64);
        }
    }

    /// Sends a task to its AVS's serving performer, in a task of its own.
    fn start_task(&mut self, key: &str) {
        let Some(flight) = self.tasks.get(key) else {
            return;
        };
        let avs = flight.task.avs.clone();
        let Some(state) = self.avs.get_mut(&avs) else {
            return;
        };
        let performer_id = match serving_performer(state, &self.performers) {
            Ok(id) => id,
            Err(status) => {
                self.fail_task(key, status, "no_performer");
                return;
            }
        };
        if flight.deadline <= Instant::now() {
            self.fail_task(
                key,
                Status::deadline_exceeded(
                    "the task's deadline passed while it waited for a worker",
                ),
                "deadline",
            );
            return;
        }
        let Some(performer) = self.performers.get_mut(&performer_id) else {
            return;
        };
        let Some(instance) = &performer.instance else {
            return;
        };
        performer.in_flight += 1;
        state.running += 1;
        self.metrics
            .in_flight
            .get_or_create(&Metrics::avs(&avs))
            .set(state.running as i64);
        let channel = instance.channel.clone();
        let task = flight.task.clone();
        let deadline = flight.deadline;
        let key = key.to_string();
        let events = self.events_tx.clone();
        let store = self.store.clone();
        let config = self.config.clone();
        let operator = self.operator;
        tokio::spawn(async move {
            let started = Instant::now();
            let result = execute(channel, &task, deadline, &config, operator, &store).await;
            let _ = events.send(Event::TaskDone {
                key,
                performer_id,
                result,
                started,
            });
        });
    }

    fn fail_task(&mut self, key: &str, status: Status, outcome: &str) {
        if let Some(flight) = self.tasks.remove(key) {
            self.metrics.task(&flight.task.avs, outcome);
            for waiter in flight.waiters {
                let _ = waiter.send(Err(status.clone()));
            }
        }
    }

    fn task_done(
        &mut self,
        key: String,
        performer_id: String,
        result: Result<TaskResult, Status>,
        started: Instant,
    ) {
        let Some(flight) = self.tasks.remove(&key) else {
            return;
        };
        let avs = flight.task.avs.clone();
        let outcome = match &result {
            Ok(_) => "success",
            Err(status) => match status.code() {
                Code::DeadlineExceeded => "deadline",
                Code::FailedPrecondition => "output_too_large",
                Code::Unavailable => "performer_unreachable",
                _ => "performer_error",
            },
        };
        self.metrics.task(&avs, outcome);
        self.metrics
            .task_duration
            .get_or_create(&Metrics::avs(&avs))
            .observe(flight.submitted.elapsed().as_secs_f64());
        match &result {
            Ok(answer) => {
                info!(
                    avs_address = %avs,
                    task_id = %flight.task.task_id,
                    performer_id,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "task answered"
                );
                self.processed.insert(
                    key.clone(),
                    Processed {
                        request_hash: flight.task.request_hash.clone(),
                        result: answer.clone(),
                    },
                );
            }
            Err(status) => warn!(
                avs_address = %avs,
                task_id = %flight.task.task_id,
                performer_id,
                code = ?status.code(),
                error = status.message(),
                "task failed"
            ),
        }
        for waiter in flight.waiters {
            let _ = waiter.send(result.clone());
        }
        if let Some(performer) = self.performers.get_mut(&performer_id) {
            performer.in_flight = performer.in_flight.saturating_sub(1);
            if performer.role == Role::Draining && performer.in_flight == 0 {
                self.stop_performer(&performer_id);
            }
        }
        if let Some(state) = self.avs.get_mut(&avs) {
            state.running = state.running.saturating_sub(1);
        }
        self.pump(&avs);
    }

    /// Starts queued tasks while workers are free.
    fn pump(&mut self, avs: &str) {
        loop {
            let Some(state) = self.avs.get_mut(avs) else {
                return;
            };
            if state.running >= state.config.max_concurrent_tasks {
                break;
            }
            let Some(key) = state.queue.pop_front() else {
                break;
            };
            self.start_task(&key);
        }
        if let Some(state) = self.avs.get(avs) {
            let labels = Metrics::avs(avs);
            self.metrics
                .queue_depth
                .get_or_create(&labels)
                .set(state.queue.len() as i64);
            self.metrics
                .in_flight
                .get_or_create(&labels)
                .set(state.running as i64);
        }
    }

    // ---------------------------------------------------------------- management auth

    fn check_auth(&mut self, auth: Option<&AuthSignature>) -> Result<(), Status> {
        if !self.config.auth_enabled {
            return match auth {
                Some(_) => Err(Status::unimplemented(
                    "authentication is not enabled on this executor",
                )),
                None => Ok(()),
            };
        }
        let Some(auth) = auth else {
            return Err(Status::unauthenticated(
                "authentication is enabled: call GetChallengeToken and sign it",
            ));
        };
        let now = Instant::now();
        match self.tokens.remove(&auth.challenge_token) {
            Some(expiry) if expiry > now => {}
            _ => {
                return Err(Status::unauthenticated(
                    "unknown, used or expired challenge token",
                ));
            }
        }
        if !self
            .config
            .operator_key
            .challenge_matches(&auth.challenge_token, &auth.signature)
        {
            return Err(Status::unauthenticated(
                "the challenge signature is not the operator's",
            ));
        }
        Ok(())
    }

    fn challenge_token(
        &mut self,
        operator_address: &str,
    ) -> Result<GetChallengeTokenResponse, Status> {
        if !self.config.auth_enabled {
            return Err(Status::unimplemented(
                "authentication is not enabled on this executor",
            ));
        }
        if operator_address.is_empty() {
            return Err(Status::invalid_argument("operator_address is empty"));
        }
        if parse_address(operator_address).as_deref() != Some(self.config.operator_address.as_str())
        {
            return Err(Status::permission_denied(format!(
                "{operator_address} is not this executor's operator"
            )));
        }
        let now = Instant::now();
        self.tokens.retain(|_, expiry| *expiry > now);
        let mut random = [0u8; 32];
        getrandom::fill(&mut random)
            .map_err(|err| Status::internal(format!("no OS randomness: {err}")))?;
        let token = hex::encode(keccak256(random));
        self.tokens.insert(token.clone(), now + TOKEN_LIFETIME);
        let expires_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            + TOKEN_LIFETIME.as_secs();
        Ok(GetChallengeTokenResponse {
            challenge_token: token,
            expires_at: expires_at as i64,
        })
    }

    // ---------------------------------------------------------------- deployments

    /// Checks a deploy request and starts preparing its artifact; the reply waits in the
    /// deployment's record until its outcome. A refusal is answered at once.
    fn begin_deploy(
        &mut self,
        request: DeployArtifactRequest,
        reply: Option<Reply<DeployArtifactResponse>>,
    ) {
        let avs = request.avs_address.clone();
        let Err(status) = self.check_deploy(request) else {
            if let Some(state) = parse_address(&avs).and_then(|avs| self.avs.get_mut(&avs))
                && let Some(deploying) = &mut state.deploying
            {
                deploying.reply = reply;
            }
            return;
        };
        warn!(avs_address = %avs, error = status.message(), "deployment refused");
        self.metrics
            .deployments
            .get_or_create(&crate::metrics::OutcomeLabel {
                outcome: "refused".into(),
            })
            .inc();
        if let Some(reply) = reply {
            let _ = reply.send(Err(status));
        }
    }

    /// The checks of [`Self::begin_deploy`]; on success the deployment is recorded (without
    /// its reply) and its artifact is being prepared.
    fn check_deploy(&mut self, request: DeployArtifactRequest) -> Result<(), Status> {
        let Some(avs) = parse_address(&request.avs_address) else {
            return Err(Status::invalid_argument(format!(
                "avs_address `{}` is not 0x + 40 hex",
                request.avs_address
            )));
        };
        let Some(state) = self.avs.get_mut(&avs) else {
            return Err(Status::not_found(format!(
                "AVS {avs} is not configured on this executor"
            )));
        };
        if let Some(deploying) = &state.deploying {
            return Err(Status::already_exists(format!(
                "deployment {} for AVS {avs} is in progress",
                deploying.deployment_id
            )));
        }
        artifact::check_name(&request.registry_url).map_err(Status::invalid_argument)?;
        let digest_hex =
            artifact::parse_digest(&request.digest).map_err(Status::invalid_argument)?;
        let mut env = Vec::new();
        for (i, entry) in request.env.iter().enumerate() {
            if entry.name.is_empty() {
                return Err(Status::invalid_argument(format!("env[{i}].name is empty")));
            }
            if entry.kubernetes_env.is_some() {
                return Err(Status::invalid_argument(format!(
                    "env[{i}] ({}): kubernetes_env is not supported by a process executor",
                    entry.name
                )));
            }
            let value = if entry.value_from_env.is_empty() {
                entry.value.clone()
            } else {
                std::env::var(&entry.value_from_env).map_err(|_| {
                    Status::failed_precondition(format!(
                        "env[{i}] ({}): the executor has no variable {}",
                        entry.name, entry.value_from_env
                    ))
                })?
            };
            env.push((entry.name.clone(), value));
        }
        let deployment_id = format!("deployment-{}", random_hex(8));
        let performer_id = format!("performer-{}", random_hex(8));
        info!(
            avs_address = %avs,
            deployment_id,
            performer_id,
            registry_url = request.registry_url,
            digest = request.digest,
            "deployment started"
        );
        state.deploying = Some(Deploying {
            deployment_id,
            performer_id,
            registry_url: request.registry_url.clone(),
            digest: request.digest.clone(),
            env,
            reply: None,
        });
        let artifacts = self.config.artifacts_dir.clone();
        let store = self.config.data_dir.join("artifacts");
        let events = self.events_tx.clone();
        let name = request.registry_url;
        tokio::spawn(async move {
            let result = tokio::task::spawn_blocking(move || {
                artifact::prepare(&artifacts, &store, &name, &digest_hex)
            })
            .await;
            let result = match result {
                Ok(Ok(path)) => Ok(path),
                Ok(Err(err @ artifact::ArtifactError::Missing(_))) => {
                    Err((Code::NotFound, err.to_string()))
                }
                Ok(Err(err @ artifact::ArtifactError::Digest { .. })) => {
                    Err((Code::FailedPrecondition, err.to_string()))
                }
                Ok(Err(err)) => Err((Code::FailedPrecondition, err.to_string())),
                Err(err) => Err((Code::Internal, format!("artifact check failed: {err}"))),
            };
            let _ = events.send(Event::Prepared { avs, result });
        });
        Ok(())
    }

    fn prepared(&mut self, avs: String, result: Result<PathBuf, (Code, String)>) {
        let Some(state) = self.avs.get_mut(&avs) else {
            return;
        };
        let Some(deploying) = &state.deploying else {
            return;
        };
        let path = match result {
            Ok(path) => path,
            Err((code, message)) => {
                self.finish_deploy(&avs, Err(Status::new(code, message)));
                return;
            }
        };
        let record = PerformerRecord {
            performer_id: deploying.performer_id.clone(),
            avs: avs.clone(),
            registry_url: deploying.registry_url.clone(),
            digest: deploying.digest.clone(),
            env: deploying.env.clone(),
            deployment_id: deploying.deployment_id.clone(),
            executable: path.to_string_lossy().into_owned(),
        };
        let id = record.performer_id.clone();
        self.adopt(record, Role::Staged);
        if !self.launch(&id) {
            self.performers.remove(&id);
            self.finish_deploy(
                &avs,
                Err(Status::failed_precondition(
                    "the performer could not be started",
                )),
            );
        }
    }

    /// Answers the AVS's deployment. On success the staged performer was promoted already.
    fn finish_deploy(&mut self, avs: &str, result: Result<String, Status>) {
        let Some(state) = self.avs.get_mut(avs) else {
            return;
        };
        let Some(mut deploying) = state.deploying.take() else {
            return;
        };
        let (outcome, message) = match &result {
            Ok(message) => ("success", message.clone()),
            Err(status) => ("failed", status.message().to_string()),
        };
        self.metrics
            .deployments
            .get_or_create(&crate::metrics::OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
        if result.is_err() {
            warn!(avs_address = %avs, deployment_id = deploying.deployment_id, message, "deployment failed");
            // The staged performer, if it started, goes.
            if let Some(performer) = self.performers.get_mut(&deploying.performer_id)
                && performer.role == Role::Staged
            {
                performer.role = Role::Draining;
                self.stop_performer(&deploying.performer_id);
            }
        } else {
            info!(avs_address = %avs, deployment_id = deploying.deployment_id, message, "deployment succeeded");
        }
        let record = Record::Deployment {
            deployment_id: deploying.deployment_id.clone(),
            avs: avs.to_string(),
            performer_id: deploying.performer_id.clone(),
            digest: deploying.digest.clone(),
            outcome: outcome.into(),
            message: message.clone(),
        };
        let serving = self
            .performers
            .get(&deploying.performer_id)
            .filter(|_| result.is_ok())
            .map(|p| Record::Serving(p.record.clone()));
        let store = self.store.clone();
        let reply = deploying.reply.take();
        let deployment_id = deploying.deployment_id.clone();
        tokio::spawn(async move {
            // The promotion is durable before the deployer hears of it.
            let mut stored = Ok(());
            if let Some(serving) = serving {
                stored = store.append(&serving).await;
            }
            if stored.is_ok() {
                stored = store.append(&record).await;
            }
            if let Some(reply) = reply {
                let answer = match (result, stored) {
                    (Ok(message), Ok(())) => Ok(DeployArtifactResponse {
                        success: true,
                        message,
                        deployment_id,
                    }),
                    (Ok(_), Err(err)) => Err(Status::internal(err)),
                    (Err(status), _) => Err(Status::new(
                        status.code(),
                        format!("deployment {deployment_id} failed: {}", status.message()),
                    )),
                };
                let _ = reply.send(answer);
            }
        });
    }

    /// The staged performer answered: it serves from now on, and the one before drains.
    fn promote(&mut self, performer_id: &str) {
        let Some(performer) = self.performers.get_mut(performer_id) else {
            return;
        };
        performer.role = Role::InService;
        let avs = performer.record.avs.clone();
        let Some(state) = self.avs.get_mut(&avs) else {
            return;
        };
        let previous = state.current.replace(performer_id.to_string());
        let mut message = format!("performer {performer_id} is serving AVS {avs}");
        if let Some(previous) = previous {
            message.push_str(&format!("; performer {previous} drains and stops"));
            self.retire(&previous);
        }
        self.finish_deploy(&avs, Ok(message));
        self.pump(&avs);
    }

    /// Takes a performer out of service: it finishes its in-flight tasks, then stops.
    fn retire(&mut self, performer_id: &str) {
        let drain_timeout = self.config.limits.drain_timeout;
        let Some(performer) = self.performers.get_mut(performer_id) else {
            return;
        };
        if matches!(performer.role, Role::Stopping | Role::Draining) {
            return;
        }
        performer.role = Role::Draining;
        if performer.in_flight == 0 || performer.instance.is_none() {
            self.stop_performer(performer_id);
        } else {
            info!(
                performer_id,
                in_flight = performer.in_flight,
                "draining performer"
            );
            self.send_later(
                drain_timeout,
                Event::DrainDeadline {
                    performer_id: performer_id.to_string(),
                },
            );
        }
    }

    // ---------------------------------------------------------------- performers

    fn adopt(&mut self, record: PerformerRecord, role: Role) {
        let id = record.performer_id.clone();
        let avs = record.avs.clone();
        if role != Role::Staged
            && let Some(state) = self.avs.get_mut(&avs)
        {
            state.current = Some(id.clone());
        }
        self.performers.insert(
            id,
            PerformerState {
                record,
                role,
                instance: None,
                restarts: 0,
                consecutive_failures: 0,
                app_healthy: false,
                last_health: None,
                healthy_since: None,
                in_flight: 0,
            },
        );
    }

    /// Starts a process for the performer; false if it could not start.
    fn launch(&mut self, performer_id: &str) -> bool {
        let Some(performer) = self.performers.get(performer_id) else {
            return false;
        };
        let avs_config = self
            .avs
            .get(&performer.record.avs)
            .map(|s| s.config.clone());
        let Some(avs_config) = avs_config else {
            return false;
        };
        let port = match process::free_port() {
            Ok(port) => port,
            Err(err) => {
                error!(performer_id, %err, "no free port for a performer");
                return false;
            }
        };
        let mut env: Vec<(String, String)> = avs_config.env.into_iter().collect();
        env.extend(performer.record.env.iter().cloned());
        let launch = Launch {
            executable: PathBuf::from(&performer.record.executable),
            args: avs_config.args,
            env,
            port,
            avs: performer.record.avs.clone(),
            performer_id: performer_id.to_string(),
            workdir: self.config.data_dir.join("performers").join(performer_id),
        };
        let running = match process::spawn(&launch) {
            Ok(running) => running,
            Err(err) => {
                error!(performer_id, avs_address = %launch.avs, err, "performer did not start");
                return false;
            }
        };
        self.next_generation += 1;
        let generation = self.next_generation;
        info!(
            performer_id,
            avs_address = %launch.avs,
            pid = running.pid,
            port,
            role = performer.role.status(),
            "performer started"
        );
        let health = self.spawn_health(performer_id, generation, running.channel.clone());
        let events = self.events_tx.clone();
        let id = performer_id.to_string();
        let exited = running.exited;
        tokio::spawn(async move {
            let status = exited
                .await
                .unwrap_or_else(|_| "monitor stopped".to_string());
            let _ = events.send(Event::Exited {
                performer_id: id,
                generation,
                status,
            });
        });
        let Some(performer) = self.performers.get_mut(performer_id) else {
            return false;
        };
        performer.instance = Some(Instance {
            generation,
            pid: running.pid,
            channel: running.channel,
            stop: Some(running.stop),
            health,
            ready: false,
        });
        self.send_later(
            self.config.limits.stage_timeout,
            Event::StartDeadline {
                performer_id: performer_id.to_string(),
                generation,
            },
        );
        true
    }

    fn spawn_health(
        &self,
        performer_id: &str,
        generation: u64,
        channel: tonic::transport::Channel,
    ) -> AbortHandle {
        let events = self.events_tx.clone();
        let id = performer_id.to_string();
        let interval = self.config.limits.health_interval;
        let timeout = self.config.limits.health_timeout;
        tokio::spawn(async move {
            let mut protocol = HealthProtocol::Standard;
            let mut wait = STARTUP_HEALTH_INTERVAL.min(interval);
            loop {
                tokio::time::sleep(wait).await;
                let result = process::check_health(&channel, timeout, &mut protocol).await;
                if result.is_ok() {
                    wait = interval;
                }
                let event = Event::Health {
                    performer_id: id.clone(),
                    generation,
                    result,
                };
                if events.send(event).is_err() {
                    return;
                }
            }
        })
        .abort_handle()
    }

    /// SIGTERM now, SIGKILL after the grace period; the performer is forgotten at its exit.
    fn stop_performer(&mut self, performer_id: &str) {
        let grace = self.config.limits.stop_grace;
        let Some(performer) = self.performers.get_mut(performer_id) else {
            return;
        };
        if performer.role != Role::Restarting {
            performer.role = Role::Stopping;
        }
        performer.app_healthy = false;
        match &mut performer.instance {
            Some(instance) => {
                instance.health.abort();
                if let Some(stop) = instance.stop.take() {
                    info!(performer_id, pid = instance.pid, "stopping performer");
                    let _ = stop.send(grace);
                }
            }
            None => {
                if performer.role == Role::Stopping {
                    self.performers.remove(performer_id);
                }
            }
        }
    }

    fn on_health(&mut self, performer_id: String, generation: u64, result: Result<(), String>) {
        let failures = self.config.limits.health_failures;
        let Some(performer) = self.performers.get_mut(&performer_id) else {
            return;
        };
        let Some(instance) = &mut performer.instance else {
            return;
        };
        if instance.generation != generation || instance.stop.is_none() {
            return;
        }
        let avs = performer.record.avs.clone();
        match result {
            Ok(()) => {
                performer.consecutive_failures = 0;
                performer.app_healthy = true;
                performer.last_health = Some(SystemTime::now());
                let first = !instance.ready;
                instance.ready = true;
                let since = *performer.healthy_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= RESTART_FORGIVENESS {
                    performer.restarts = 0;
                }
                if first {
                    info!(performer_id, avs_address = %avs, "performer is healthy");
                    match performer.role {
                        Role::Staged => self.promote(&performer_id),
                        Role::Restarting => {
                            performer.role = Role::InService;
                            self.pump(&avs);
                        }
                        _ => {}
                    }
                }
            }
            Err(err) => {
                if !instance.ready {
                    // Still starting: the start deadline judges it.
                    return;
                }
                performer.consecutive_failures += 1;
                performer.app_healthy = false;
                performer.healthy_since = None;
                performer.last_health = Some(SystemTime::now());
                self.metrics
                    .health_failures
                    .get_or_create(&Metrics::avs(&avs))
                    .inc();
                warn!(
                    performer_id,
                    avs_address = %avs,
                    failures = performer.consecutive_failures,
                    err,
                    "performer health check failed"
                );
                if performer.consecutive_failures >= failures && performer.role == Role::InService {
                    warn!(performer_id, "performer unhealthy; restarting it");
                    performer.role = Role::Restarting;
                    self.stop_performer(&performer_id);
                }
            }
        }
    }

    fn on_start_deadline(&mut self, performer_id: String, generation: u64) {
        let Some(performer) = self.performers.get_mut(&performer_id) else {
            return;
        };
        let Some(instance) = &performer.instance else {
            return;
        };
        if instance.generation != generation || instance.ready {
            return;
        }
        let avs = performer.record.avs.clone();
        match performer.role {
            Role::Staged => self.finish_deploy(
                &avs,
                Err(Status::deadline_exceeded(format!(
                    "performer {performer_id} did not turn healthy within {:?}; the current \
                     performer keeps serving",
                    self.config.limits.stage_timeout
                ))),
            ),
            Role::Restarting => {
                warn!(
                    performer_id,
                    "performer did not turn healthy after starting; restarting it"
                );
                self.stop_performer(&performer_id);
            }
            _ => {}
        }
    }

    fn on_exit(&mut self, performer_id: String, generation: u64, status: String) {
        let Some(performer) = self.performers.get_mut(&performer_id) else {
            return;
        };
        if performer
            .instance
            .as_ref()
            .is_none_or(|instance| instance.generation != generation)
        {
            return;
        }
        performer.instance = None;
        performer.app_healthy = false;
        performer.healthy_since = None;
        let avs = performer.record.avs.clone();
        info!(performer_id, avs_address = %avs, status, role = performer.role.status(), "performer exited");
        match performer.role {
            Role::Staged => self.finish_deploy(
                &avs,
                Err(Status::failed_precondition(format!(
                    "performer {performer_id} exited while staged ({status}); the current \
                     performer keeps serving"
                ))),
            ),
            Role::InService | Role::Restarting => {
                performer.role = Role::Restarting;
                performer.restarts += 1;
                self.metrics
                    .restarts
                    .get_or_create(&Metrics::avs(&avs))
                    .inc();
                if self.stopping.is_some() {
                    self.performers.remove(&performer_id);
                    return;
                }
                if performer.restarts > self.config.limits.max_restarts {
                    error!(performer_id, avs_address = %avs, "performer restarted too often; marked failed");
                    performer.role = Role::Failed;
                    return;
                }
                let exponent = performer.restarts.saturating_sub(1).min(16);
                let backoff = self
                    .config
                    .limits
                    .restart_backoff
                    .saturating_mul(1 << exponent)
                    .min(self.config.limits.restart_backoff_max);
                warn!(performer_id, avs_address = %avs, ?backoff, restarts = performer.restarts, "restarting performer");
                self.send_later(
                    backoff,
                    Event::RestartDue {
                        performer_id: performer_id.clone(),
                    },
                );
            }
            Role::Draining | Role::Stopping | Role::Failed => {
                if performer.in_flight == 0 || performer.role != Role::Draining {
                    self.performers.remove(&performer_id);
                }
            }
        }
    }

    fn on_restart_due(&mut self, performer_id: String) {
        let due = self
            .performers
            .get(&performer_id)
            .is_some_and(|p| p.role == Role::Restarting && p.instance.is_none());
        if due && self.stopping.is_none() && !self.launch(&performer_id) {
            // Could not even start: count it as a failed start.
            if let Some(performer) = self.performers.get_mut(&performer_id) {
                performer.restarts += 1;
                if performer.restarts > self.config.limits.max_restarts {
                    performer.role = Role::Failed;
                } else {
                    let backoff = self.config.limits.restart_backoff_max;
                    self.send_later(backoff, Event::RestartDue { performer_id });
                }
            }
        }
    }

    // ---------------------------------------------------------------- list and remove

    fn list(&self, avs_filter: &str) -> ListPerformersResponse {
        let filter = avs_filter.to_ascii_lowercase();
        let performers = self
            .performers
            .values()
            .filter(|p| filter.is_empty() || p.record.avs == filter)
            .map(|p| Performer {
                performer_id: p.record.performer_id.clone(),
                avs_address: p.record.avs.clone(),
                status: p.role.status().to_string(),
                artifact_registry: p.record.registry_url.clone(),
                artifact_digest: p.record.digest.clone(),
                resource_healthy: p.instance.is_some(),
                application_healthy: p.app_healthy,
                last_health_check: p.last_health.map(rfc3339).unwrap_or_default(),
                container_id: p
                    .instance
                    .as_ref()
                    .map(|i| i.pid.to_string())
                    .unwrap_or_default(),
                artifact_tag: p.record.deployment_id.clone(),
            })
            .collect();
        ListPerformersResponse { performers }
    }

    fn remove(&mut self, performer_id: &str) -> Result<RemovePerformerResponse, Status> {
        let Some(performer) = self.performers.get(performer_id) else {
            return Err(Status::not_found(format!(
                "performer {performer_id} not found"
            )));
        };
        let avs = performer.record.avs.clone();
        let role = performer.role;
        if role == Role::Staged {
            self.finish_deploy(
                &avs,
                Err(Status::aborted(format!(
                    "performer {performer_id} was removed while staged"
                ))),
            );
            return Ok(RemovePerformerResponse {
                success: true,
                message: format!("staged performer {performer_id} removed; its deployment failed"),
            });
        }
        let mut message = format!("performer {performer_id} removed");
        if let Some(state) = self.avs.get_mut(&avs)
            && state.current.as_deref() == Some(performer_id)
        {
            state.current = None;
            message.push_str(&format!("; AVS {avs} has no performer now"));
            let store = self.store.clone();
            let record = Record::Removed {
                avs: avs.clone(),
                performer_id: performer_id.to_string(),
            };
            tokio::spawn(async move {
                if let Err(err) = store.append(&record).await {
                    error!(err, "could not record a removal");
                }
            });
        }
        info!(performer_id, avs_address = %avs, "performer removed");
        if role == Role::Failed
            || self
                .performers
                .get(performer_id)
                .is_some_and(|p| p.instance.is_none())
        {
            self.performers.remove(performer_id);
        } else {
            self.retire(performer_id);
        }
        Ok(RemovePerformerResponse {
            success: true,
            message,
        })
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
                status,
            } => self.on_exit(performer_id, generation, status),
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

/// The AVS's performer that takes tasks now, or why there is none.
fn serving_performer(
    state: &AvsState,
    performers: &BTreeMap<String, PerformerState>,
) -> Result<String, Status> {
    let Some(id) = &state.current else {
        return Err(Status::failed_precondition(format!(
            "AVS performer not found: no performer is deployed for AVS {}",
            state.config.address
        )));
    };
    match performers.get(id) {
        Some(p) if p.role == Role::InService && p.instance.is_some() => Ok(id.clone()),
        Some(p) if p.role == Role::Failed => Err(Status::failed_precondition(format!(
            "performer {id} of AVS {} failed; deploy it again",
            state.config.address
        ))),
        _ => Err(Status::unavailable(format!(
            "performer {id} of AVS {} is restarting",
            state.config.address
        ))),
    }
}

/// Runs one task on a performer and signs the result; the record is durable before it returns.
async fn execute(
    channel: tonic::transport::Channel,
    task: &CheckedTask,
    deadline: Instant,
    config: &Config,
    operator: Address,
    store: &Store,
) -> Result<TaskResult, Status> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(Status::deadline_exceeded("the task's deadline passed"));
    }
    let mut request = tonic::Request::new(TaskRequest {
        task_id: task.task_id.as_bytes().to_vec(),
        payload: task.payload.clone(),
    });
    request.set_timeout(remaining);
    let mut client = PerformerServiceClient::new(channel)
        .max_decoding_message_size(MAX_PERFORMER_MESSAGE)
        .max_encoding_message_size(MAX_PERFORMER_MESSAGE);
    // Dropping the call at the deadline resets the stream: the performer sees it cancelled.
    let response = match tokio::time::timeout(remaining, client.execute_task(request)).await {
        Err(_) => {
            return Err(Status::deadline_exceeded(
                "the task's deadline passed; the performer's call was cancelled",
            ));
        }
        Ok(Err(status)) if status.code() == Code::DeadlineExceeded => {
            return Err(Status::deadline_exceeded(format!(
                "the task's deadline passed: {}",
                status.message()
            )));
        }
        // The performer could not be reached (it just exited, or is restarting): a transient
        // condition the caller may retry, not a performer answer.
        // (tonic gives a failed connection a source error; a performer's own answer has none).
        Ok(Err(status))
            if status.code() == Code::Unavailable
                || std::error::Error::source(&status).is_some() =>
        {
            return Err(Status::unavailable(format!(
                "the performer is unreachable: {}",
                status.message()
            )));
        }
        Ok(Err(status)) => {
            return Err(Status::internal(format!(
                "performer error ({:?}): {}",
                status.code(),
                status.message()
            )));
        }
        Ok(Ok(response)) => response.into_inner(),
    };
    if response.result.len() >= MAX_OUTPUT {
        return Err(Status::failed_precondition(format!(
            "the performer's output is {} bytes, at or above the 1.5 MiB limit",
            response.result.len()
        )));
    }
    if response.task_id != task.task_id.as_bytes() {
        warn!(
            task_id = task.task_id,
            echoed = %String::from_utf8_lossy(&response.task_id),
            "performer echoed another task id; answering with the submitted one"
        );
    }
    let signatures = config.operator_key.sign_result(
        &task.task_hash,
        &task.avs_bytes,
        &operator,
        task.operator_set_id,
        task.reference_timestamp,
        &response.result,
    );
    let result = TaskResult {
        task_id: task.task_id.clone(),
        operator_address: config.operator_address.clone(),
        output: response.result,
        result_signature: signatures.result_signature,
        avs_address: task.avs.clone(),
        operator_set_id: task.operator_set_id,
        auth_signature: signatures.auth_signature,
        version: 1,
    };
    store
        .append(&Record::Task {
            task_id: task.key.clone(),
            request: task.request_hash.clone(),
            result: hex::encode(result.encode_to_vec()),
        })
        .await
        .map_err(|err| Status::internal(format!("the result could not be stored: {err}")))?;
    Ok(result)
}
