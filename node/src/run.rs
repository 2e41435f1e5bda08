//! `cohort run`: one operator on the tokio runtime, the same actors the simulation runs.
//!
//! Stopping (SIGINT or SIGTERM) first tells the scheduler to hand out no more duties, then
//! waits for the duties already running (the rest of the cluster completes any it cannot),
//! then stops the runtime. Every signature was already preceded by a synced slashing-protection
//! record and every finalized block by a synced archive write, so a node killed outright loses
//! nothing either; the graceful path only avoids leaving duties to the others.

use crate::{
    config::{BeaconSource, Config, Engine},
    keys::Loaded,
    net,
    telemetry::{self, HealthProbe, LastFinalized},
};
use cohort_actors::executor;
use cohort_beacon::{ApiSource, Settings};
use cohort_devnet::{DevnetBeacon, DevnetChain, DevnetSource, head_events};
use cohort_engine::{
    ExecutionEngine,
    embedded::EmbeddedEngine,
    remote::{RemoteConfig, RemoteEngine, load_jwt_secret},
};
use cohort_ingress::{
    CommitteeId, DutySink, DutySource, doppelganger::Guard, keys, signing::ForkInfo,
};
use commonware_runtime::{Clock as _, Runner as _, Spawner as _, Supervisor as _, tokio};
use commonware_utils::channel::mpsc;
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tracing::{error, info, warn};

/// How often a stopping node asks the runner whether duties are still running.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(250);
/// How long the runtime's tasks get to stop once every duty is done.
const TASK_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// The shortest turn a beacon node gets at a read, whatever the slot length.
const MIN_BEACON_ATTEMPT: Duration = Duration::from_millis(500);
/// How often the devnet chain's counts are copied into `/metrics`.
const CHAIN_METRICS_PERIOD: Duration = Duration::from_secs(1);

/// Runs the operator until a stop signal; the error says why it could not start.
pub fn run(config: Config, loaded: Loaded) -> Result<(), String> {
    let (_lock, storage) = open_data_dir(&config.data_dir)?;
    let runtime = tokio::Config::new()
        .with_storage_directory(storage)
        .with_catch_panics(false);
    tokio::Runner::new(runtime).start(|context| async move {
        match config.engine.clone() {
            Engine::Embedded {
                rpc_listen,
                genesis,
            } => {
                let mut engine_config = cohort_engine::embedded::Config::devnet("cohort-engine");
                if let Some(path) = genesis {
                    let text = std::fs::read_to_string(&path).map_err(|err| {
                        format!("engine.genesis {} cannot be read: {err}", path.display())
                    })?;
                    engine_config.genesis = text.into();
                }
                let engine = EmbeddedEngine::init(context.child("engine"), engine_config)
                    .await
                    .map_err(|err| format!("the embedded engine did not start: {err}"))?;
                let rpc = rpc_listen.map(|address| {
                    let engine = engine.clone();
                    let start: RpcRouter = Box::new(move |relay| crate::rpc::router(engine, relay));
                    (address, start)
                });
                operate(context, config, loaded, engine, rpc).await
            }
            Engine::Remote {
                url,
                jwt_secret,
                allow_remote_http,
            } => {
                let secret = load_jwt_secret(&jwt_secret)
                    .map_err(|err| format!("engine.jwt_secret: {err}"))?;
                let mut remote = RemoteConfig::new(secret);
                remote.url = url.clone();
                remote.allow_remote_http = allow_remote_http;
                let engine = RemoteEngine::new(remote)
                    .map_err(|err| format!("engine.url `{url}`: {err}"))?;
                operate(context, config, loaded, engine, None).await
            }
        }
    })
}

/// Checks `data_dir`, takes its lock and returns the lock with the storage directory.
///
/// The directory holds slashing protection: whoever can write it can make this operator sign
/// twice, and whoever can plant files in it can aim the node's own writes elsewhere. So it must
/// belong to this process's user and be writable by nobody else; what the node creates in it
/// only its user can even list.
pub(crate) fn open_data_dir(
    dir: &std::path::Path,
) -> Result<(std::fs::File, std::path::PathBuf), String> {
    create_private_dir(dir).map_err(|err| format!("data_dir {}: {err}", dir.display()))?;
    check_private_dir(dir)?;
    let lock = lock_data_dir(dir)?;
    let storage = dir.join("storage");
    create_private_dir(&storage)
        .map_err(|err| format!("cannot create {}: {err}", storage.display()))?;
    check_private_dir(&storage)?;
    Ok((lock, storage))
}

/// Creates `dir` (and any missing parent) mode 0700; an existing directory is left as it is,
/// for [`check_private_dir`] to judge.
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Refuses a directory another user owns or that its group or others can write.
fn check_private_dir(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    let meta =
        std::fs::metadata(dir).map_err(|err| format!("data_dir {}: {err}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("data_dir {} is not a directory", dir.display()));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(format!(
            "data_dir {} is owned by uid {}, not by the user the node runs as (uid {me}); \
             another user could rewrite its slashing protection. Give it to this user (`chown`)",
            dir.display(),
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "data_dir {} can be written by other users (mode {mode:04o}); run `chmod 700 {}`",
            dir.display(),
            dir.display()
        ));
    }
    Ok(())
}

/// Holds `data_dir` for this process: two nodes on one directory would corrupt each other's
/// storage and could sign twice. The lock goes with the process, even on SIGKILL.
///
/// The lock file is opened without following a symbolic link and created 0600: a link planted
/// there would otherwise have the node (perhaps as root) truncate whatever file it names.
pub(crate) fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, String> {
    use std::{
        io::Write as _,
        os::{fd::AsRawFd as _, unix::fs::OpenOptionsExt as _},
    };
    let path = dir.join("cohort.lock");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|err| {
            if err.raw_os_error() == Some(libc::ELOOP) {
                format!(
                    "{} is a symbolic link; the lock file must be a plain file (remove the link)",
                    path.display()
                )
            } else {
                format!("{}: {err}", path.display())
            }
        })?;
    let meta = file
        .metadata()
        .map_err(|err| format!("{}: {err}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    // SAFETY: flock on a descriptor this function owns; no memory is passed.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !locked {
        let mut holder = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::Read::take(&file, 32), &mut holder);
        return Err(format!(
            "data_dir {} is in use by another cohort process (pid {}); one data directory \
             serves one node",
            dir.display(),
            holder.trim()
        ));
    }
    file.set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(|err| format!("{}: {err}", path.display()))?;
    Ok(file)
}

/// Builds the execution JSON-RPC's router once the operator's transaction relay exists.
type RpcRouter = Box<dyn FnOnce(cohort_ingress::transactions::Mailbox) -> axum::Router + Send>;

async fn operate<X: ExecutionEngine>(
    context: tokio::Context,
    config: Config,
    loaded: Loaded,
    engine: X,
    rpc: Option<(std::net::SocketAddr, RpcRouter)>,
) -> Result<(), String> {
    match config.beacon.clone() {
        BeaconSource::Devnet { seed } => {
            // The embedded devnet beacon node: this operator's view of duties and the chain it
            // submits to (every operator runs its own, as every operator runs its own node).
            let validators = loaded.shares.len() as u64;
            let clock = config.clock;
            let beacon = DevnetBeacon::new(seed, loaded.index as u64 + 1, validators, clock);
            let chain_clock = context.child("devnet_chain");
            let chain = DevnetChain::new(
                DevnetBeacon::new(seed, 0, validators, clock),
                ForkInfo::devnet(),
                Arc::new(move || chain_clock.current()),
            )
            .accepting_blocks_built_elsewhere();
            let source = DevnetSource::new(beacon.clone(), chain.clone());
            publish_chain_metrics(&context, chain);
            let duties = Duties {
                fork: ForkInfo::devnet(),
                // The devnet has one fork.
                capella_fork_version: ForkInfo::devnet().fork_version,
                source,
                beacon_health: None,
                follow: Box::new(move |context: &tokio::Context, heads| {
                    context
                        .child("beacon_heads")
                        .spawn(move |context| head_events(context, beacon, heads));
                }),
            };
            serve(context, config, loaded, engine, duties, rpc).await
        }
        BeaconSource::Api {
            nodes,
            fee_recipient,
            fee_recipients,
            graffiti,
        } => {
            let beacon_clock = Arc::new(context.child("beacon"));
            let metrics = cohort_beacon::Metrics::register(&context, beacon_clock.clone());
            // Each node's turn at a read is a fraction of the slot, so that a dead node costs a
            // duty none of its time.
            let attempt = (config.clock.slot_duration / 4).max(MIN_BEACON_ATTEMPT);
            let nodes = cohort_beacon::Nodes::new(beacon_clock.clone(), &nodes, &metrics, attempt)?;
            let chain = cohort_beacon::chain::discover(&nodes).await?;
            check_chain_timing(&config, &chain)?;
            // The sync committee's size and period are the chain's preset, not a default.
            let mut config = config;
            config.clock.sync_committee = cohort_ingress::SyncCommitteeSpec {
                size: chain.sync_committee_size,
                // SYNC_COMMITTEE_SUBNET_COUNT is the same constant in every preset.
                subnet_count: cohort_ingress::SyncCommitteeSpec::MAINNET.subnet_count,
                epochs_per_period: chain.epochs_per_sync_committee_period,
            };
            config
                .clock
                .sync_committee
                .validate()
                .map_err(|err| format!("the beacon chain's sync committee: {err}"))?;
            let fork = ForkInfo {
                fork_version: chain.fork.current_version,
                genesis_validators_root: chain.genesis_validators_root,
                electra_epoch: chain.electra_fork_epoch,
            };
            let locked: Vec<(u64, String)> = loaded
                .shares
                .iter()
                .map(|(index, share)| (*index, keys::to_hex(share.sharing.public())))
                .collect();
            let validators = cohort_beacon::validators::check(&nodes, &locked).await?;
            info!(
                validators = validators.len(),
                locked = locked.len(),
                fork = %cohort_beacon::api::hex(&fork.fork_version),
                "beacon nodes ready: duties come from the Beacon node API"
            );
            let capella_fork_version = match chain.capella_fork_version {
                Some(version) => version,
                None => {
                    warn!(
                        "the beacon nodes' spec names no CAPELLA_FORK_VERSION; voluntary exits \
                         are signed under the current fork version"
                    );
                    fork.fork_version
                }
            };
            let source = ApiSource::new(
                beacon_clock,
                nodes.clone(),
                chain,
                config.clock,
                Settings {
                    validators,
                    fee_recipient,
                    fee_recipients,
                    graffiti,
                },
                metrics,
            );
            let follower = source.clone();
            let idle = config.clock.slot_duration * 3;
            let health = nodes.clone();
            let duties = Duties {
                fork,
                capella_fork_version,
                source,
                beacon_health: Some(Arc::new(move || health.health())),
                follow: Box::new(move |context: &tokio::Context, heads| {
                    let upkeep = follower.clone();
                    let clock = config.clock;
                    context.child("beacon_events").spawn(move |context| {
                        cohort_beacon::events::head_events(context, follower, heads, idle)
                    });
                    context
                        .child("beacon_upkeep")
                        .spawn(move |context| beacon_upkeep(context, upkeep, clock));
                }),
            };
            serve(context, config, loaded, engine, duties, rpc).await
        }
    }
}

/// Each operator's clock must be the chain's: a cluster whose slots are not the beacon chain's
/// would attest at the wrong times.
fn check_chain_timing(config: &Config, chain: &cohort_beacon::Chain) -> Result<(), String> {
    let cluster = &config.file.cluster;
    if cluster.genesis_time != chain.genesis_time
        || cluster.slot_seconds != chain.seconds_per_slot
        || cluster.slots_per_epoch != chain.slots_per_epoch
    {
        return Err(format!(
            "cluster timing (genesis {}, {} s slots, {} slots an epoch) is not the beacon \
             chain's (genesis {}, {} s slots, {} slots an epoch); set cluster.genesis_time, \
             cluster.slot_seconds and cluster.slots_per_epoch to the chain's",
            cluster.genesis_time,
            cluster.slot_seconds,
            cluster.slots_per_epoch,
            chain.genesis_time,
            chain.seconds_per_slot,
            chain.slots_per_epoch
        ));
    }
    Ok(())
}

/// Per slot: the nodes' health (a node that comes back is told the fee recipients again, as a
/// restarted node forgets them). Per epoch: the fee recipients to every node.
async fn beacon_upkeep(
    context: tokio::Context,
    source: ApiSource<tokio::Context>,
    clock: cohort_ingress::SlotClock,
) {
    let mut prepared_epoch = None;
    let mut checked_epoch = None;
    loop {
        let health = source.nodes().poll_health().await;
        let now = context.current();
        let epoch = clock.slot_at(now).map(|slot| clock.epoch_of(slot));
        let came_back = health.iter().any(|node| node.came_back);
        if came_back || prepared_epoch != Some(epoch) {
            source.prepare_proposers().await;
            prepared_epoch = Some(epoch);
        }
        // An epoch's attestations can be included until the end of the next one: check them
        // once the epoch after that has started.
        if let Some(done) = epoch.and_then(|epoch| epoch.checked_sub(2))
            && checked_epoch != Some(done)
        {
            checked_epoch = Some(done);
            cohort_beacon::effectiveness::check_epoch(&source, done).await;
        }
        let next = clock.slot_start(clock.current_slot(now) + 1);
        context.sleep_until(next).await;
    }
}

/// Starts the tasks that follow the beacon node, given the scheduler to tell.
type Follow = Box<dyn FnOnce(&tokio::Context, cohort_ingress::scheduler::Mailbox) + Send>;

/// Where an operator's duties come from, with what the node wires around it.
struct Duties<S> {
    fork: ForkInfo,
    /// What voluntary exits are signed under (EIP-7044).
    capella_fork_version: [u8; 4],
    source: S,
    beacon_health: Option<telemetry::BeaconHealth>,
    /// Starts whatever follows the beacon node's head once the scheduler exists.
    follow: Follow,
}

async fn serve<X, S>(
    context: tokio::Context,
    config: Config,
    loaded: Loaded,
    engine: X,
    duties: Duties<S>,
    rpc: Option<(std::net::SocketAddr, RpcRouter)>,
) -> Result<(), String>
where
    X: ExecutionEngine,
    S: DutySource + DutySink,
{
    let validators = loaded.shares.len() as u64;
    // The cluster's genesis block names the execution genesis: take it from the engine, so an
    // external client's own genesis works as the embedded engine's does.
    let execution_genesis = engine
        .block_by_number(cohort_engine::BlockTag::Number(0))
        .await
        .map_err(|err| format!("the execution engine did not answer for its genesis block: {err}"))?
        .ok_or("the execution engine has no genesis block")?;
    info!(
        operator = loaded.index,
        operators = loaded.participants.len(),
        validators,
        listen = %config.listen,
        data_dir = %config.data_dir.display(),
        cluster = %loaded.cluster.name,
        lock_hash = %loaded.cluster.lock_hash,
        "operator starting"
    );

    let net::Started {
        network,
        heard,
        oversized,
    } = net::start(
        &context,
        &config,
        loaded.key.clone(),
        &loaded.cluster.p2p_namespace(),
        validators as usize,
    );

    let clock = config.clock;
    let doppelganger = if config.doppelganger_protection {
        let start_epoch = clock.epoch_of(clock.current_slot(context.current()));
        info!(
            start_epoch,
            "doppelganger protection on: no signature for a validator until two epochs after \
             this one show it not live elsewhere, or the cluster is seen signing for it \
             (beacon.doppelganger_protection = false turns it off)"
        );
        Guard::watching(loaded.shares.keys().copied(), start_epoch)
    } else {
        Guard::off()
    };
    let (finalized_sender, mut finalized_receiver) = mpsc::unbounded_channel();
    let operators = loaded.participants.len();
    let committee = CommitteeId::new((1..=operators as u64).collect())
        .map_err(|err| format!("cluster.operators: {err}"))?;
    // The AVS performer supervisor, when configured: on this runtime's tokio threads, its
    // metrics on this node's /metrics. Started before the operator, whose AVS actor (for a
    // cluster-run AVS) runs tasks on the supervisor's performers; the supervisor's route to
    // that actor is attached once the operator is up, and answers UNAVAILABLE until then.
    let cluster_avs = crate::cluster_avs::ClusterAvs::of(config.avs.as_ref(), loaded.avs.as_ref())?;
    let (supervisor, _supervisor_metrics) = match config.avs.clone() {
        None => (None, Vec::new()),
        Some(avs) => {
            let (metrics, guards) = supervisor_metrics(&context);
            let route = cluster_avs.as_ref().map(|cluster| cluster.route());
            let running =
                cohort_supervisor::start(avs, metrics, context.child("supervisor"), route)
                    .await
                    .map_err(|err| format!("the AVS supervisor did not start: {err}"))?;
            (Some(running), guards)
        }
    };
    let avs_setup = cluster_avs
        .as_ref()
        .zip(supervisor.as_ref())
        .map(|(cluster, running)| cluster.setup(running.mailbox.clone()));
    let pacing = cohort_operator::Pacing::of(&clock);
    let operator = cohort_operator::start(
        context.child("operator"),
        cohort_operator::Setup {
            index: loaded.index,
            key: loaded.key,
            participants: loaded.participants,
            namespace: loaded.cluster.consensus_namespace(),
            committee,
            clock,
            heartbeat: pacing.heartbeat,
            leader_timeout: pacing.leader_timeout,
            shares: loaded.shares,
            crypto_threads: config.crypto_threads,
            fork: duties.fork,
            capella_fork_version: duties.capella_fork_version,
            beacon: duties.source,
            engine,
            execution_genesis,
            partition_prefix: "cohort".into(),
            doppelganger,
            // A cluster-run AVS's actor; per-operator AVSs stay the supervisor's alone.
            avs: avs_setup,
            hooks: cohort_operator::Hooks::default(),
            observers: cohort_operator::Observers {
                duties: None,
                executor: Some(finalized_sender),
                proposals: None,
                consensus_faults: None,
            },
        },
        network,
    )
    .await;

    if let Some((address, router)) = rpc {
        telemetry::serve_app(
            &context,
            address,
            "the execution JSON-RPC",
            router(operator.transactions.clone()),
        );
    }
    if let (Some(cluster), Some(avs)) = (&cluster_avs, &operator.avs) {
        cluster.attach(avs.clone());
    }
    (duties.follow)(&context, operator.scheduler.clone());
    // Exit requests the operator leaves in the data directory (`cohort exit request`).
    {
        let exits = operator.exits.clone();
        let data_dir = config.data_dir.clone();
        context
            .child("exit_requests")
            .spawn(move |context| crate::exit_requests::watch(context, data_dir, exits, clock));
    }

    // What `/health` needs of the finalized chain.
    let last = Arc::new(Mutex::new(LastFinalized::default()));
    let recorded = last.clone();
    context.child("finalized").spawn(move |_| async move {
        while let Some(observed) = finalized_receiver.recv().await {
            // The genesis block is "processed" at every start: it says nothing of progress.
            if let executor::Observed::Finalized(finalized) = observed
                && finalized.block.height > 0
                && let Ok(mut last) = recorded.lock()
            {
                *last = LastFinalized {
                    height: finalized.block.height,
                    slot: finalized.block.slot,
                    at: Some(finalized.at),
                };
            }
        }
    });
    telemetry::serve(
        &context,
        config.metrics_listen,
        HealthProbe {
            clock,
            operators,
            heard,
            finalized: last,
            beacon: duties.beacon_health,
            slashing: operator.slashing.clone(),
        },
    );
    info!(
        metrics = %format!("http://{}/metrics", config.metrics_listen),
        health = %format!("http://{}/health", config.metrics_listen),
        "operator started; stop it with SIGINT or SIGTERM"
    );

    // Every actor runs until the node stops; one that ends first (it found an actor it hands
    // work to stopped, or failed) leaves the node unable to do its duties: stop it cleanly,
    // through the same drain as a signal, and exit with an error.
    let mut actors = futures::future::select_all(operator.handles.into_iter().map(Box::pin));
    let failure = ::tokio::select! {
        signal = wait_for_stop_signal() => {
            info!(
                signal = signal?,
                "stop requested: handing out no more duties, then waiting for running duties"
            );
            None
        }
        (result, index, _) = &mut actors => {
            let failure = format!(
                "operator task {index} (in wiring order) stopped on its own ({})",
                match result {
                    Ok(()) => "returned".to_string(),
                    Err(err) => format!("{err:?}"),
                }
            );
            error!(
                %failure,
                "the operator cannot do its duties any more: stopping the node (handing out no \
                 more duties, waiting for running ones), then exiting with an error"
            );
            Some(failure)
        }
    };
    // The supervisor stops alongside: it refuses new tasks now, finishes those in flight and
    // stops its performers while the duties drain.
    let supervisor_stopped = supervisor.map(|supervisor| {
        info!("stopping the AVS supervisor: in-flight tasks finish, performers stop");
        ::tokio::spawn(supervisor.stop())
    });
    let mut scheduler = operator.scheduler;
    scheduler.drain().await;
    let mut runner = operator.runner;
    // Undecided duties are cancelled here (the rest of the cluster, if running, carries them);
    // decided ones get about a slot for their post-consensus quorum, so a whole-cluster stop
    // takes about a slot rather than the stop timeout.
    if let Some(running) = runner.drain().await {
        info!(
            running,
            "waiting for the decided duties' post-consensus signatures"
        );
    }
    let deadline = context.current() + config.stop_timeout;
    loop {
        match runner.in_flight().await {
            Some(0) | None => {
                info!("no duty running; stopping");
                break;
            }
            Some(running) if context.current() >= deadline => {
                warn!(
                    running,
                    timeout_seconds = config.stop_timeout.as_secs(),
                    "duties still running at the stop timeout; stopping anyway (operators still \
                     running complete them; a duty whose slot no operator reaches is missed)"
                );
                break;
            }
            Some(_) => context.sleep(IN_FLIGHT_POLL).await,
        }
    }
    if let Some(stopped) = supervisor_stopped {
        let _ = stopped.await;
    }
    drop(oversized);
    if let Err(err) = context.stop(0, Some(TASK_STOP_TIMEOUT)).await {
        warn!(?err, timeout = ?TASK_STOP_TIMEOUT, "some tasks did not stop in time");
    }
    info!("operator stopped");
    match failure {
        None => Ok(()),
        Some(failure) => Err(format!("the node stopped because {failure}")),
    }
}

/// The supervisor's metrics, registered in this node's registry (served on `/metrics`); the
/// registrations last as long as the returned guards.
fn supervisor_metrics(
    context: &tokio::Context,
) -> (
    cohort_supervisor::metrics::Metrics,
    Vec<Box<dyn std::any::Any + Send>>,
) {
    use commonware_runtime::Metrics as _;
    let metrics = cohort_supervisor::metrics::Metrics::default();
    let m = metrics.clone();
    let guards: Vec<Box<dyn std::any::Any + Send>> = vec![
        Box::new(context.register(
            "supervisor_tasks",
            "AVS tasks answered, by AVS and outcome",
            m.tasks,
        )),
        Box::new(context.register(
            "supervisor_task_duration_seconds",
            "AVS task time from submission to answer",
            m.task_duration,
        )),
        Box::new(context.register(
            "supervisor_tasks_in_flight",
            "AVS tasks running",
            m.in_flight,
        )),
        Box::new(context.register(
            "supervisor_queue_depth",
            "AVS tasks waiting for a worker",
            m.queue_depth,
        )),
        Box::new(context.register(
            "supervisor_performer_restarts",
            "performer restarts",
            m.restarts,
        )),
        Box::new(context.register(
            "supervisor_health_failures",
            "failed performer health checks",
            m.health_failures,
        )),
        Box::new(context.register(
            "supervisor_deployments",
            "deployments by outcome",
            m.deployments,
        )),
    ];
    (metrics, guards)
}

/// Publishes what the embedded devnet chain accepted, so `/metrics` shows duties reaching the
/// beacon chain (not only leaving the runner) and any conflicting signature it ever saw.
fn publish_chain_metrics(context: &tokio::Context, chain: DevnetChain) {
    use commonware_runtime::Metrics as _;
    use prometheus_client::metrics::{family::Family, gauge::Gauge};
    type ByKind = Family<Vec<(String, String)>, Gauge>;
    let accepted = context.register(
        "devnet_chain_accepted",
        "signed objects the embedded devnet beacon chain accepted, by kind",
        ByKind::default(),
    );
    let rejected = context.register(
        "devnet_chain_rejected",
        "signed objects the embedded devnet beacon chain refused, by kind",
        ByKind::default(),
    );
    let exits = context.register(
        "devnet_chain_voluntary_exits",
        "voluntary exits the embedded devnet beacon chain took (each verified under the \
         validator's key)",
        Gauge::<i64>::default(),
    );
    let conflicts = context.register(
        "devnet_chain_conflicts",
        "objects the embedded devnet beacon chain saw signed twice with different contents \
         (a slashable double signature); must stay 0",
        Gauge::<i64>::default(),
    );
    context
        .child("chain_metrics")
        .spawn(move |context| async move {
            loop {
                let report = chain.report();
                for (kind, stats) in &report.stats {
                    let label = vec![("kind".to_string(), kind.as_str().to_string())];
                    accepted.get_or_create(&label).set(stats.accepted as i64);
                    rejected.get_or_create(&label).set(stats.rejected as i64);
                }
                let seen = conflicts.get() as usize;
                for conflict in report.conflicts.iter().skip(seen) {
                    tracing::error!(conflict, "the devnet chain saw a conflicting signature");
                }
                conflicts.set(report.conflicts.len() as i64);
                exits.set(chain.exits().len() as i64);
                context.sleep(CHAIN_METRICS_PERIOD).await;
            }
        });
}

/// Waits for SIGINT or SIGTERM and names the one that came.
async fn wait_for_stop_signal() -> Result<&'static str, String> {
    use ::tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|err| format!("cannot listen for SIGTERM: {err}"))?;
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|err| format!("cannot listen for SIGINT: {err}"))?;
    ::tokio::select! {
        _ = terminate.recv() => Ok("SIGTERM"),
        _ = interrupt.recv() => Ok("SIGINT"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "cohort-run-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).expect("exists").mode() & 0o777
    }

    #[test]
    fn a_fresh_data_dir_is_private_and_locked() {
        let root = temp("fresh");
        let dir = root.join("data");
        let (_lock, storage) = open_data_dir(&dir).expect("fresh data dir");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&storage), 0o700);
        assert_eq!(mode(&dir.join("cohort.lock")), 0o600);
        // A second node on the same directory is refused, naming this one.
        let err = open_data_dir(&dir).expect_err("second node");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_data_dir_others_can_write_is_refused() {
        let dir = temp("open");
        std::fs::create_dir_all(&dir).expect("mkdir");
        for loose in [0o777, 0o770, 0o702] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(loose)).expect("chmod");
            let err = open_data_dir(&dir).expect_err("writable by others");
            assert!(err.contains("chmod 700"), "{loose:o}: {err}");
        }
        assert!(!dir.join("cohort.lock").exists(), "nothing written into it");
        // Readable by the group is the operator's choice.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).expect("chmod");
        open_data_dir(&dir).expect("0750 is accepted");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_data_dir_of_another_user_is_refused() {
        let dir = temp("theirs");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        // Only root can give a directory away; for anyone else this cannot be staged.
        if std::os::unix::fs::chown(&dir, Some(4242), Some(4242)).is_err() {
            eprintln!("not root: cannot stage a directory owned by another user");
            return;
        }
        let err = open_data_dir(&dir).expect_err("another user's");
        assert!(err.contains("uid 4242"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_planted_lock_symlink_is_not_followed() {
        let root = temp("symlink");
        let dir = root.join("data");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let victim = root.join("victim");
        std::fs::write(&victim, "precious\n").expect("victim");
        std::os::unix::fs::symlink(&victim, dir.join("cohort.lock")).expect("symlink");
        let err = open_data_dir(&dir).expect_err("symlinked lock");
        assert!(err.contains("symbolic link"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&victim).expect("victim"),
            "precious\n",
            "the link's target was written"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn an_existing_loose_storage_dir_is_refused() {
        let dir = temp("storage");
        std::fs::create_dir_all(dir.join("storage")).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        std::fs::set_permissions(dir.join("storage"), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let err = open_data_dir(&dir).expect_err("storage writable by all");
        assert!(err.contains("storage"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
