//! End to end on real processes: four `cohort run` processes on 127.0.0.1, set up by
//! `cohort cluster init`, checked only through what an operator of the node sees: `/health`,
//! `/metrics`, the JSON logs and the exit status.
//!
//! One test, in phases (each waits on the live cluster, bounded by a timeout):
//! (a) every operator becomes ready, the cluster finalizes and completes duties, and its
//!     `/metrics` exports exactly the metrics README.md's table documents;
//! (b) one operator is SIGKILLed, the other three keep finalizing, and the restarted process
//!     (same config, same data dir) becomes ready, catches up and completes duties again;
//! (c) garbage bytes on an operator's p2p port get the connection closed and nothing else;
//! (d) no conflicting signature anywhere, and one finalized chain across every log;
//! (e) SIGTERM stops every operator with exit status 0, in about a slot (within 30 s for the
//!     one whose performers misbehave).
//!
//! Throughout, operator [`UNRULY`] also supervises three AVS performers that misbehave (one
//! floods its output, one exits in a loop, one freezes), and its duties must not suffer: the
//! checks above hold for it too, its log shows each performer handled, and none outlives it.
//!
//! A second cluster runs two operators on the embedded engine and two on EthereumJS
//! (`a_mixed_cluster_…`, through `COHORT_ETHEREUMJS_INSTANCES=2 ./scripts/ethereumjs.sh`):
//! transactions sent through different operators, one execution chain with the same block
//! hashes everywhere.
//!
//! The binary is `target/<profile>/cohort` next to this test's executable (rebuilt through
//! `$CARGO` when the test runs under cargo, so it is never stale), or `$DEVNET_TEST_BIN`.
//! On failure the tail of every operator's log is printed and the cluster directory is kept
//! (set DEVNET_TEST_KEEP=1 to keep it on success too).

use serde_json::{Value, json};
use std::{
    collections::{BTreeMap, HashMap},
    fs::File,
    io::{BufRead as _, BufReader, ErrorKind, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

const OPERATORS: usize = 4;
/// 32 validators give about one attestation duty per slot (each validator attests once per
/// 32-slot epoch), so COMMITTEE duties show up every slot or two.
const VALIDATORS: u64 = 32;
const SLOT_SECONDS: u64 = 4;
const GENESIS_DELAY: u64 = 8;
const SLOT: Duration = Duration::from_secs(SLOT_SECONDS);
/// The operator that gets killed and restarted.
const CRASHED: usize = 3;
/// The operator whose p2p port gets garbage.
const ATTACKED: usize = 0;
/// The operator whose AVS performers misbehave.
const UNRULY: usize = 2;
/// A test-only ECDSA operator key (the well-known example key) and its address.
const AVS_OPERATOR_KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const AVS_OPERATOR_ADDRESS: &str = "0x2c7536e3605d9c16a7a3d7b1898e529396a65c23";

/// The devnet tests each run four node processes with timing checks: one at a time.
static ONE_CLUSTER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn devnet_of_four_processes_survives_crash_and_garbage_and_stops_cleanly() {
    let _alone = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let started = Instant::now();
    let bin = cohort_binary();
    let mut cluster = Cluster::init(&bin);
    let unruly_tag = add_unruly_performers(&cluster.operators[UNRULY].config, &cluster.dir);
    for i in 0..OPERATORS {
        cluster.start(i);
    }

    // (a) Ready, finalizing, completing duties.
    cluster.wait_all_ready(SLOT * 2 + Duration::from_secs(GENESIS_DELAY + 40));
    let before = cluster.snapshot_all();
    cluster.wait(
        "every operator finalizes blocks and completes COMMITTEE duties",
        SLOT * 8,
        |c| {
            for (i, was) in before.iter().enumerate() {
                let now = c.snapshot(i)?;
                if now.committee_succeeded <= was.committee_succeeded {
                    return Err(format!(
                        "operator {i}: COMMITTEE succeeded still {}",
                        now.committee_succeeded
                    ));
                }
                if now.finalized_height <= was.finalized_height {
                    return Err(format!(
                        "operator {i}: finalized height still {}",
                        now.finalized_height
                    ));
                }
                if now.attestations_accepted == 0 {
                    return Err(format!(
                        "operator {i}: its chain accepted no attestation yet"
                    ));
                }
                if now.aggregates_accepted <= was.aggregates_accepted {
                    return Err(format!(
                        "operator {i}: its chain accepted no aggregate since all were ready"
                    ));
                }
            }
            Ok(())
        },
    );
    // A calm cluster fails no attestation and no proposal, and once every operator is ready,
    // no aggregation either: an aggregator whose slot's attestation data is decided late asks
    // its beacon node again until the attestations have reached it (before, it asked once and
    // the whole cluster missed the aggregate).
    for (i, (snapshot, was)) in cluster.snapshot_all().iter().zip(&before).enumerate() {
        if snapshot.failed_committee_or_proposer != 0 {
            cluster.fail(&format!(
                "operator {i} failed COMMITTEE or PROPOSER duties in a calm cluster: {snapshot}"
            ));
        }
        if snapshot.failed_aggregations != was.failed_aggregations {
            cluster.fail(&format!(
                "operator {i} failed {} AGGREGATOR or SYNC_COMMITTEE_CONTRIBUTION duties in a \
                 calm cluster: {snapshot}",
                snapshot.failed_aggregations - was.failed_aggregations
            ));
        }
    }
    cluster.check_second_process_is_refused(1);
    let exported = cluster
        .metric_types(0)
        .unwrap_or_else(|err| cluster.fail(&err));
    if let Err(err) = check_documented_metrics(&documented_metrics(), &exported) {
        cluster.fail(&err);
    }
    // Each object submitted is timed from its duty's start (for attestations: the head event).
    let metrics = cluster.metrics(0).unwrap_or_else(|err| cluster.fail(&err));
    for kind in [
        "attestation",
        "sync_message",
        "proposal",
        "aggregate",
        "contribution",
    ] {
        let submitted = metrics.get(&format!(
            "operator_runner_objects_submitted_total{{kind=\"{kind}\"}}"
        ));
        let timed = metrics.get(&format!(
            "operator_runner_submitted_after_start_seconds_count{{kind=\"{kind}\"}}"
        ));
        if submitted != timed || (kind == "attestation" && timed == 0.0) {
            cluster.fail(&format!(
                "operator 0 submitted {submitted} {kind} objects and timed {timed} of them after \
                 their duty's start"
            ));
        }
    }
    eprintln!(
        "[{:>5.1}s] (a) cluster ready, finalizing, completing duties, metrics as documented",
        secs(started)
    );

    // (b) SIGKILL one operator; the rest keep finalizing; the restarted one catches up.
    cluster.sigkill(CRASHED);
    let killed = Instant::now();
    let at_kill = cluster.max_height_except(CRASHED);
    cluster.wait(
        "the three remaining operators keep finalizing",
        SLOT * 6,
        |c| {
            for i in (0..OPERATORS).filter(|i| *i != CRASHED) {
                let height = c.snapshot(i)?.finalized_height;
                if height < at_kill + 3 {
                    return Err(format!(
                        "operator {i} at height {height}, was {at_kill} at the kill"
                    ));
                }
            }
            Ok(())
        },
    );
    // Down for at least two slots.
    std::thread::sleep((SLOT * 2).saturating_sub(killed.elapsed()));
    let at_restart = cluster.max_height_except(CRASHED);
    // It comes back with doppelganger protection on: its validators are live (the other three
    // kept signing), so only seeing its own cluster sign for them may clear them, within the
    // window below (the clean-epoch path takes two 32-slot epochs).
    cluster.enable_doppelganger_protection(CRASHED);
    cluster.start(CRASHED);
    cluster.wait("the restarted operator is ready again", SLOT * 8, |c| {
        c.ready(CRASHED).map(|_| ())
    });
    cluster.wait(
        "the restarted operator catches up and completes duties",
        SLOT * 10,
        |c| {
            let restarted = c.snapshot(CRASHED)?;
            let others = c.max_height_except(CRASHED);
            if restarted.finalized_height < at_restart || restarted.finalized_height + 3 < others {
                return Err(format!(
                    "restarted operator at height {}, others at {others} (at restart: {at_restart})",
                    restarted.finalized_height
                ));
            }
            if restarted.committee_succeeded == 0 || restarted.succeeded == 0 {
                return Err(format!(
                    "restarted operator: COMMITTEE succeeded {}, all roles {}",
                    restarted.committee_succeeded, restarted.succeeded
                ));
            }
            let log: String = c.operators[CRASHED]
                .logs
                .iter()
                .filter_map(|log| std::fs::read_to_string(log).ok())
                .collect();
            if log.contains("doppelganger detected") {
                return Err(
                    "restarted operator took its own cluster's validators for doppelgangers".into(),
                );
            }
            if !log.contains("this operator's cluster signs for the validator") {
                return Err(
                    "restarted operator: doppelganger protection cleared no validator yet".into(),
                );
            }
            // The gauge follows the clears within a slot.
            let metrics = c.metrics(CRASHED)?;
            let gauge = |status: &str| {
                metrics.get(&format!(
                    "operator_doppelganger_validators{{status=\"{status}\"}}"
                )) as u64
            };
            if gauge("cleared") == 0 || gauge("detected") != 0 {
                return Err(format!(
                    "restarted operator's doppelganger gauges: cleared {}, detected {}",
                    gauge("cleared"),
                    gauge("detected")
                ));
            }
            Ok(())
        },
    );

    eprintln!(
        "[{:>5.1}s] (b) operator {CRASHED} killed at height {at_kill}, restarted at {at_restart}, caught up",
        secs(started)
    );

    // (c) Garbage on a p2p port: the connection is closed, and nothing else changes. The node
    // admits a few handshakes per second from one address (`node/src/net.rs`), so the probes are
    // spaced out: each must reach the handshake reader, not the rate limiter.
    let before = cluster.snapshot_all();
    let target = cluster.p2p_address(ATTACKED);
    let silent = TcpStream::connect_timeout(&target, Duration::from_secs(2))
        .expect("connect to the p2p port");
    let mut rng = XorShift::seeded();
    let mut random = vec![0u8; 4096];
    rng.fill(&mut random);
    for (what, bytes) in [
        ("4 KiB of 0xFF", vec![0xFF; 4096]),
        ("4 KiB of random bytes", random),
        ("a short frame of zeros", vec![0; 64]),
    ] {
        std::thread::sleep(HANDSHAKE_SPACING);
        let closed_in = send_and_expect_close(target, &bytes, Duration::from_secs(5))
            .unwrap_or_else(|err| cluster.fail(&format!("after {what}: {err}")));
        eprintln!("  {what}: closed by the node after {closed_in:?}");
    }
    std::thread::sleep(HANDSHAKE_SPACING);
    let (sent, closed_in) = stream_until_closed(target, &mut rng, Duration::from_secs(10))
        .unwrap_or_else(|err| cluster.fail(&format!("long random stream: {err}")));
    eprintln!("  a long random stream: closed after {sent} bytes, {closed_in:?}");
    let closed_in = expect_closed(silent, Duration::from_secs(15))
        .unwrap_or_else(|err| cluster.fail(&format!("a connection that sends nothing: {err}")));
    eprintln!("  a connection that sends nothing: closed after {closed_in:?}");
    cluster.wait(
        "the cluster keeps finalizing and completing duties after the garbage",
        SLOT * 8,
        |c| {
            for (i, was) in before.iter().enumerate() {
                let now = c.snapshot(i)?;
                if now.finalized_height < was.finalized_height + 3 {
                    return Err(format!(
                        "operator {i} at height {}, was {}",
                        now.finalized_height, was.finalized_height
                    ));
                }
                if now.succeeded <= was.succeeded
                    || now.committee_succeeded <= was.committee_succeeded
                {
                    return Err(format!(
                        "operator {i}: duties succeeded {} (COMMITTEE {}), was {} ({})",
                        now.succeeded,
                        now.committee_succeeded,
                        was.succeeded,
                        was.committee_succeeded
                    ));
                }
                let health = c.ready(i)?;
                let peers = health["peers_connected"].as_u64().unwrap_or(0);
                if peers != OPERATORS as u64 - 1 {
                    return Err(format!("operator {i} hears {peers} peers"));
                }
            }
            Ok(())
        },
    );
    eprintln!(
        "[{:>5.1}s] (c) garbage connections closed, cluster unaffected",
        secs(started)
    );

    // (c2) A voluntary exit through the cluster: two operators asking is not enough (the
    // threshold is three); the third makes it, and every operator's chain takes the same exit.
    const EXITED: u64 = 3;
    for i in [0, 1] {
        cluster.exit_request(i, EXITED);
    }
    std::thread::sleep(SLOT * 4);
    for i in 0..OPERATORS {
        let exits = cluster
            .metrics(i)
            .map(|m| m.get("devnet_chain_voluntary_exits"))
            .unwrap_or_else(|err| cluster.fail(&err));
        if exits != 0.0 {
            cluster.fail(&format!(
                "operator {i}'s chain took an exit only two operators asked for"
            ));
        }
    }
    cluster.exit_request(2, EXITED);
    cluster.wait(
        "the exit three operators asked for reaches every operator's chain",
        SLOT * 6,
        |c| {
            for i in 0..OPERATORS {
                let exits = c.metrics(i)?.get("devnet_chain_voluntary_exits");
                if exits != 1.0 {
                    return Err(format!("operator {i}'s chain has {exits} exits"));
                }
            }
            Ok(())
        },
    );
    // The node rewrites a request's status file once a slot.
    cluster.wait(
        "`cohort exit status` says the exit was combined and submitted",
        SLOT * 3,
        |c| {
            let status = c.exit_status(0);
            if status.contains("combined and submitted") {
                Ok(())
            } else {
                Err(status)
            }
        },
    );
    eprintln!(
        "[{:>5.1}s] (c2) an exit two operators asked for was not made; the third made it, on every chain",
        secs(started)
    );

    // (d) No double signature, one finalized chain.
    for i in 0..OPERATORS {
        let snapshot = cluster.snapshot(i).unwrap_or_else(|err| cluster.fail(&err));
        if snapshot.conflicts != 0 {
            cluster.fail(&format!(
                "operator {i}: devnet_chain_conflicts is {}",
                snapshot.conflicts
            ));
        }
        eprintln!("  operator {i}: {snapshot}");
    }
    let (checked, common) = cluster.check_one_finalized_chain();
    eprintln!(
        "[{:>5.1}s] (d) no conflicts; {checked} finalized heights agree across every log ({common} seen by all four)",
        secs(started)
    );

    // The unruly performers were each handled, without costing their operator its duties.
    let unruly_log: String = cluster.operators[UNRULY]
        .logs
        .iter()
        .map(|log| std::fs::read_to_string(log).unwrap_or_default())
        .collect();
    for (what, line) in [
        ("the flood was rate-limited", "lines dropped"),
        (
            "the performer exiting in a loop was given up on",
            "performer restarted too often; marked failed",
        ),
        (
            "the frozen performer failed its health checks",
            "performer health check failed",
        ),
    ] {
        if !unruly_log.contains(line) {
            cluster.fail(&format!(
                "operator {UNRULY}: {what}: no \"{line}\" in its log"
            ));
        }
    }
    eprintln!(
        "[{:>5.1}s] unruly performers handled on operator {UNRULY} (flood rate-limited, crash loop failed, freeze restarted)",
        secs(started)
    );

    // (e) SIGTERM: every operator exits 0 within 30 s (the stop timeout), and a whole-cluster
    // stop takes about a slot, not the stop timeout: undecided duties are cancelled at once,
    // decided ones get a slot for their signatures, the runtime's tasks up to 5 s to stop.
    let stop_bound = SLOT * 2 + Duration::from_secs(5);
    for (i, status, took) in cluster.sigterm_all(Duration::from_secs(30)) {
        match status {
            Some(status) if status.success() && took > stop_bound && i != UNRULY => cluster.fail(
                &format!("operator {i} took {took:?} to stop after SIGTERM, over {stop_bound:?}"),
            ),
            Some(status) if status.success() => {
                eprintln!("  operator {i}: exited 0 {took:?} after SIGTERM")
            }
            Some(status) => {
                cluster.fail(&format!("operator {i} exited with {status} after SIGTERM"))
            }
            None => cluster.fail(&format!("operator {i} still running 30 s after SIGTERM")),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_tagged(&unruly_tag).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = processes_tagged(&unruly_tag);
    if !left.is_empty() {
        cluster.fail(&format!(
            "performer processes outlived operator {UNRULY}: {left:?}"
        ));
    }
    eprintln!(
        "[{:>5.1}s] (e) every operator stopped cleanly, no performer left",
        secs(started)
    );
}

fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

// ---- unruly AVS performers ----

/// Adds an `[avs]` table to one operator's config with three performers that misbehave, each
/// a small script around `unruly_performer` carrying `tag` (to find leftover processes).
fn add_unruly_performers(config: &Path, dir: &Path) -> String {
    let tag = format!("unruly{}", now_nanos() % 1_000_000_000);
    let avs_dir = dir.join("avs");
    let (artifacts, key) = prepare_avs_dir(&avs_dir);
    let listen = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port for the AVS listener");
    let mut table = format!(
        "\n[avs]\nlisten = \"{listen}\"\noperator_address = \"{AVS_OPERATOR_ADDRESS}\"\n\
         ecdsa_certificate_verifier = \"0x{verifier}\"\nartifacts_dir = \"{artifacts}\"\n\
         data_dir = \"{data}\"\n[avs.operator_key]\nkind = \"ecdsa\"\nsecret_file = \"{key}\"\n\
         [avs.limits]\nhealth_interval_ms = 500\nhealth_failures = 2\nstop_grace_ms = 2000\n\
         restart_backoff_ms = 500\nrestart_backoff_max_ms = 2000\nmax_restarts = 4\n\
         [[avs.aggregators]]\naddress = \"0x{aggregator}\"\n",
        verifier = "ad".repeat(20),
        artifacts = artifacts.display(),
        data = avs_dir.join("data").display(),
        key = key.display(),
        aggregator = "bb".repeat(20),
    );
    for (n, mode) in ["flood", "exit-after-ms 1500", "freeze-after-ms 3000"]
        .iter()
        .enumerate()
    {
        let name = format!("unruly-{n}");
        let digest = write_performer(&artifacts, &name, mode, &tag);
        table.push_str(&format!(
            "[[avs.performers]]\navs_address = \"0x{:040x}\"\nregistry_url = \"{name}\"\n\
             digest = \"sha256:{digest}\"\n",
            0xa0 + n
        ));
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(config)
        .expect("open the operator's config");
    file.write_all(table.as_bytes())
        .expect("append the [avs] table");
    tag
}

// ---- a cluster-run AVS ----

/// The address the test cluster is registered under as one AVS operator.
const CLUSTER_AVS_ADDRESS: [u8; 20] = [0xc1; 20];
/// The cluster-run AVS.
const CLUSTER_AVS: [u8; 20] = [0xa7; 20];
/// The aggregator's ECDSA secret: the test signs tasks as the aggregator.
const AGGREGATOR_SECRET: [u8; 32] = [0x22; 32];

/// Adds an `[avs]` table to operator `i`'s config serving [`CLUSTER_AVS`] as cluster-run with a
/// well-behaved performer; returns where its executor API listens.
fn add_cluster_avs(config: &Path, dir: &Path, i: usize, tag: &str) -> SocketAddr {
    let avs_dir = dir.join(format!("avs-{i}"));
    let (artifacts, key) = prepare_avs_dir(&avs_dir);
    let digest = write_performer(&artifacts, "echo", "echo", tag);
    let listen = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port for the AVS listener");
    let aggregator = cohort_avs_crypto::EcdsaKey::from_bytes(&AGGREGATOR_SECRET)
        .expect("aggregator key")
        .address();
    let table = format!(
        "\n[avs]\nlisten = \"{listen}\"\noperator_address = \"{AVS_OPERATOR_ADDRESS}\"\n\
         cluster_operator_address = \"0x{cluster}\"\n\
         ecdsa_certificate_verifier = \"0x{verifier}\"\nartifacts_dir = \"{artifacts}\"\n\
         data_dir = \"{data}\"\n[avs.operator_key]\nkind = \"ecdsa\"\nsecret_file = \"{key}\"\n\
         [avs.limits]\nhealth_interval_ms = 500\n\
         [[avs.aggregators]]\naddress = \"{aggregator:#x}\"\n\
         [[avs.performers]]\navs_address = \"0x{avs}\"\ncluster = true\n\
         registry_url = \"echo\"\ndigest = \"sha256:{digest}\"\n",
        cluster = hex_lower(&CLUSTER_AVS_ADDRESS),
        verifier = "ad".repeat(20),
        artifacts = artifacts.display(),
        data = avs_dir.join("data").display(),
        key = key.display(),
        avs = hex_lower(&CLUSTER_AVS),
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(config)
        .and_then(|mut file| file.write_all(table.as_bytes()))
        .expect("append the [avs] table");
    listen
}

/// Runs `cohort <args> <config>`, which must refuse; returns what it said on stderr.
fn refused(bin: &Path, args: &[&str], config: &Path) -> String {
    let output = Command::new(bin)
        .args(args)
        .arg(config)
        .output()
        .expect("run cohort");
    assert!(
        !output.status.success(),
        "cohort {args:?} {} was accepted",
        config.display()
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A task for [`CLUSTER_AVS`], signed by the aggregator for the cluster's address.
fn cluster_task(id: u8, payload: &[u8]) -> cohort_supervisor::proto::executor::TaskSubmission {
    use cohort_avs_crypto::{Address, B256, EcdsaKey, TaskFields, sign_aggregator_ecdsa};
    let aggregator = EcdsaKey::from_bytes(&AGGREGATOR_SECRET).expect("aggregator key");
    let task_id = B256::repeat_byte(id);
    let reference_timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs() as u32)
        .unwrap_or(1);
    let fields = TaskFields {
        task_id,
        avs: Address::from(CLUSTER_AVS),
        executor: Address::from(CLUSTER_AVS_ADDRESS),
        operator_set_id: 0,
        reference_timestamp,
        task_block_number: 1,
        payload,
    };
    cohort_supervisor::proto::executor::TaskSubmission {
        task_id: format!("{task_id:#x}"),
        aggregator_address: format!("{:#x}", aggregator.address()),
        avs_address: format!("{:#x}", Address::from(CLUSTER_AVS)),
        payload: payload.to_vec(),
        signature: sign_aggregator_ecdsa(&aggregator, &fields).to_vec(),
        operator_set_id: 0,
        reference_timestamp,
        executor_address: format!("{:#x}", Address::from(CLUSTER_AVS_ADDRESS)),
        task_block_number: 1,
        version: 1,
    }
}

/// SubmitTask to the executor at `listen`, with a 20 s deadline.
async fn submit(
    listen: SocketAddr,
    task: cohort_supervisor::proto::executor::TaskSubmission,
) -> Result<cohort_supervisor::proto::executor::TaskResult, tonic::Status> {
    use cohort_supervisor::proto::executor::executor_service_client::ExecutorServiceClient;
    let mut client = ExecutorServiceClient::connect(format!("http://{listen}"))
        .await
        .map_err(|err| tonic::Status::unavailable(err.to_string()))?;
    let mut request = tonic::Request::new(task);
    request.set_timeout(Duration::from_secs(20));
    client
        .submit_task(request)
        .await
        .map(|answer| answer.into_inner())
}

/// Issue 16 through the node: four `cohort run` processes share a BN254 key split by `cluster
/// init --new-avs-key`, and serve one AVS marked `cluster = true`. A task the aggregator signs
/// for the cluster's address, submitted over gRPC to one operator, is ordered through the
/// cluster chain, run by every operator's performer, and answered with the echoed output and a
/// result and an auth signature that verify against the lock's group key under the cluster's
/// address, as an aggregator checks them; another operator asked for the same task answers
/// the same signatures; a task whose aggregator signature does not verify is refused; and
/// `cohort executor` refuses to serve a cluster-run AVS alone, as `config check` refuses one
/// whose lock has no AVS key.
#[test]
fn a_cluster_run_avs_answers_tasks_with_the_cluster_key() {
    use cohort_avs_crypto::{
        Address, AuthFields, B256, Bn254PublicKey, message_hash, verify_auth_bn254,
        verify_result_bn254,
    };
    let _alone = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let started = Instant::now();
    let bin = cohort_binary();
    let mut cluster = Cluster::init_with(&bin, &["--new-avs-key"]);
    let lock: Value = serde_json::from_str(
        &std::fs::read_to_string(cluster.dir.join("cluster-lock.json")).expect("read the lock"),
    )
    .expect("the lock is JSON");
    let group_hex = lock["avs"]["public_key"]
        .as_str()
        .expect("the lock carries the cluster's AVS key");
    let group_bytes: Vec<u8> = (0..group_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&group_hex[i..i + 2], 16).expect("hex"))
        .collect();
    let group = Bn254PublicKey::from_bytes(&group_bytes).expect("a G2 key");
    let tag = format!("clusteravs{}", now_nanos() % 1_000_000_000);
    let listens: Vec<SocketAddr> = (0..OPERATORS)
        .map(|i| {
            let config = cluster.operators[i].config.clone();
            add_cluster_avs(&config, &cluster.dir, i, &tag)
        })
        .collect();

    // A cluster whose lock has no AVS key cannot run one: `config check` says so.
    let keyless = Cluster::init(&bin);
    add_cluster_avs(&keyless.operators[0].config, &keyless.dir, 0, &tag);
    let said = refused(
        &bin,
        &["config", "check", "--config"],
        &keyless.operators[0].config,
    );
    assert!(said.contains("no AVS key"), "config check: {said}");
    drop(keyless);

    // `cohort executor` alone cannot serve it.
    let said = refused(
        &bin,
        &["executor", "--config"],
        &cluster.operators[0].config,
    );
    assert!(said.contains("cluster-run"), "cohort executor: {said}");

    for i in 0..OPERATORS {
        cluster.start(i);
    }
    cluster.wait_all_ready(SLOT * 2 + Duration::from_secs(GENESIS_DELAY + 40));
    eprintln!("[{:>5.1}s] cluster ready", secs(started));

    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let payload = b"one operator, four machines".to_vec();
    // Performers deploy in the background: until every operator's serves, a task may find no
    // agreement; each attempt is a new task.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (task, answer) = (1u8..)
        .find_map(|id| {
            let task = cluster_task(id, &payload);
            match runtime.block_on(submit(listens[0], task.clone())) {
                Ok(answer) => Some((task, answer)),
                Err(status) if Instant::now() < deadline => {
                    eprintln!(
                        "  task {id}: {:?} {}; trying again",
                        status.code(),
                        status.message()
                    );
                    std::thread::sleep(Duration::from_secs(2));
                    None
                }
                Err(status) => cluster.fail(&format!(
                    "no cluster-signed answer within 120 s: {:?} {}",
                    status.code(),
                    status.message()
                )),
            }
        })
        .expect("an answer or a failure");
    eprintln!(
        "[{:>5.1}s] task {} signed by the cluster",
        secs(started),
        task.task_id
    );
    assert_eq!(answer.output, payload, "the performer's output");
    assert_eq!(
        answer.operator_address,
        format!("{:#x}", Address::from(CLUSTER_AVS_ADDRESS)),
        "the result names the cluster as its operator"
    );
    let task_id: B256 = task.task_id.parse().expect("a task id");
    let hash = message_hash(&task_id, &answer.output);
    if let Err(err) = verify_result_bn254(
        &group,
        task.reference_timestamp,
        &hash,
        &answer.result_signature,
    ) {
        cluster.fail(&format!("the result signature does not verify: {err}"));
    }
    let auth = AuthFields {
        task_id,
        avs: Address::from(CLUSTER_AVS),
        operator: Address::from(CLUSTER_AVS_ADDRESS),
        operator_set_id: 0,
        result_signature: &answer.result_signature,
    };
    if let Err(err) = verify_auth_bn254(&group, &auth, &answer.auth_signature) {
        cluster.fail(&format!("the auth signature does not verify: {err}"));
    }

    // Another operator asked for the same task answers what the cluster signed.
    let again = runtime
        .block_on(submit(listens[2], task.clone()))
        .unwrap_or_else(|status| {
            cluster.fail(&format!(
                "operator 2 did not answer the signed task: {:?} {}",
                status.code(),
                status.message()
            ))
        });
    assert_eq!(again.result_signature, answer.result_signature);
    assert_eq!(again.auth_signature, answer.auth_signature);

    // A task whose aggregator signature does not verify is refused where it arrives.
    let mut forged = cluster_task(0xf0, b"forged");
    forged.payload = b"not what was signed".to_vec();
    match runtime.block_on(submit(listens[1], forged)) {
        Err(status) if status.code() == tonic::Code::Unauthenticated => {}
        other => cluster.fail(&format!("a forged task was not refused: {other:?}")),
    }

    for (i, status, took) in cluster.sigterm_all(Duration::from_secs(30)) {
        if !status.is_some_and(|status| status.success()) {
            cluster.fail(&format!(
                "operator {i} did not stop cleanly on SIGTERM ({status:?} after {took:?})"
            ));
        }
    }
    let left = processes_tagged(&tag);
    assert!(left.is_empty(), "performers outlived their nodes: {left:?}");
    eprintln!("[{:>5.1}s] stopped; no performer left", secs(started));
}

/// Makes `avs_dir`'s artifacts directory and writes the AVS operator key (mode 0600) beside
/// it; returns both paths.
fn prepare_avs_dir(avs_dir: &Path) -> (PathBuf, PathBuf) {
    let artifacts = avs_dir.join("artifacts");
    std::fs::create_dir_all(&artifacts).expect("create the artifacts directory");
    let key = avs_dir.join("operator.key");
    std::fs::write(&key, format!("{AVS_OPERATOR_KEY}\n")).expect("write the AVS operator key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod the AVS operator key");
    (artifacts, key)
}

/// Writes artifact `name`: a script running `unruly_performer` in `mode`, carrying `tag` (to
/// find leftover processes). Returns its sha256, as a deployment names it.
fn write_performer(artifacts: &Path, name: &str, mode: &str, tag: &str) -> String {
    use sha2::Digest as _;
    let performer = env!("CARGO_BIN_EXE_unruly_performer");
    let script = format!("#!/bin/sh\n# {tag}\nexec '{performer}' {mode} {tag}\n");
    let path = artifacts.join(name);
    std::fs::write(&path, &script).expect("write a performer script");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod a performer script");
    hex_lower(&sha2::Sha256::digest(script.as_bytes()))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Live processes whose command line carries `tag`.
fn processes_tagged(tag: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            cmdline
                .windows(tag.len())
                .any(|window| window == tag.as_bytes())
                && !stat.contains(") Z ")
        })
        .collect()
}

// ---- the binary ----

/// `target/<profile>/cohort` next to this test's executable (`target/<profile>/deps/…`),
/// built first when the test runs under cargo (a no-op when it is up to date), or `$DEVNET_TEST_BIN`.
fn cohort_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("DEVNET_TEST_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    let deps = exe.parent().expect("the test executable's directory");
    let profile_dir = if deps.file_name().is_some_and(|name| name == "deps") {
        deps.parent().expect("target/<profile>")
    } else {
        deps
    };
    let bin = profile_dir.join("cohort");
    // Under `cargo test`, CARGO names the cargo running us; rebuild so the binary is never older
    // than the source (cargo does not build other packages' binaries for this crate's tests).
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "cohort-node", "--bin", "cohort"]);
        match profile_dir.file_name().and_then(|name| name.to_str()) {
            Some("debug") | None => {}
            Some("release") => {
                build.arg("--release");
            }
            Some(profile) => {
                build.args(["--profile", profile]);
            }
        }
        // The target directory is the one this test was built in.
        if let Some(target) = profile_dir.parent() {
            build.env("CARGO_TARGET_DIR", target);
        }
        // Cargo runs this test with this package's CARGO_PKG_*, CARGO_MANIFEST_DIR, ... set. A
        // build script that declares `rerun-if-env-changed` on one of them (ring does) would
        // see them change and rebuild, and rebuild again in the next plain `cargo build`.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_BIN_")
                || matches!(
                    key.as_str(),
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_MANIFEST_LINKS"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "CARGO_RUSTC_CURRENT_DIR"
                        | "OUT_DIR"
                )
            {
                build.env_remove(key);
            }
        }
        build.current_dir(env!("CARGO_MANIFEST_DIR"));
        let status = build
            .status()
            .expect("run cargo build for the cohort binary");
        assert!(
            status.success(),
            "cargo build -p cohort-node --bin cohort failed: {status}"
        );
    }
    assert!(
        bin.is_file(),
        "{} does not exist: build it with `cargo build -p cohort-node --bin cohort` or set DEVNET_TEST_BIN",
        bin.display()
    );
    bin
}

// ---- ports ----

/// A base port P with P..P+2n all free on 127.0.0.1: p2p on P+i, metrics on P+n+i. Drawn
/// below the usual ephemeral range so outgoing connections do not take them meanwhile.
fn free_port_block(n: u16) -> (u16, u16) {
    let seed = std::process::id() as u64 ^ now_nanos();
    for attempt in 0..500u64 {
        let base = 20_000 + ((seed.wrapping_add(attempt * 7919)) % 1_200) as u16 * 10;
        let listeners: Vec<_> = (base..base + 2 * n)
            .map_while(|port| TcpListener::bind(("127.0.0.1", port)).ok())
            .collect();
        if listeners.len() == 2 * n as usize {
            return (base, base + n);
        }
    }
    panic!("found no {} consecutive free ports on 127.0.0.1", 2 * n);
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

// ---- the cluster ----

struct Operator {
    config: PathBuf,
    child: Option<Child>,
    /// One log file per start, in order.
    logs: Vec<PathBuf>,
}

struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    p2p_base: u16,
    metrics_base: u16,
    operators: Vec<Operator>,
}

/// What the tests read of one operator at one moment.
#[derive(Clone, Debug, Default)]
struct Snapshot {
    finalized_height: u64,
    committee_succeeded: u64,
    succeeded: u64,
    failed: u64,
    failed_committee_or_proposer: u64,
    /// AGGREGATOR and SYNC_COMMITTEE_CONTRIBUTION duties failed or missed.
    failed_aggregations: u64,
    attestations_accepted: u64,
    aggregates_accepted: u64,
    contributions_accepted: u64,
    rejected: u64,
    conflicts: u64,
}

impl std::fmt::Display for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "finalized height {}, duties succeeded {} (COMMITTEE {}), failed or missed {} (aggregations {}), attestations accepted {}, aggregates {}, contributions {}, chain rejected {}, conflicts {}",
            self.finalized_height,
            self.succeeded,
            self.committee_succeeded,
            self.failed,
            self.failed_aggregations,
            self.attestations_accepted,
            self.aggregates_accepted,
            self.contributions_accepted,
            self.rejected,
            self.conflicts
        )
    }
}

impl Cluster {
    fn init(bin: &Path) -> Self {
        Self::init_with(bin, &[])
    }

    /// `cohort cluster init` with `extra` arguments.
    fn init_with(bin: &Path, extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "cohort-devnet-test-{}-{}",
            std::process::id(),
            now_nanos() % 1_000_000_000
        ));
        let (p2p_base, metrics_base) = free_port_block(OPERATORS as u16);
        let output = Command::new(bin)
            .args(["cluster", "init", "--out"])
            .arg(&dir)
            .args(["--operators", &OPERATORS.to_string()])
            .args(["--validators", &VALIDATORS.to_string()])
            .args(["--kdf", "light"])
            .args(["--genesis-delay", &GENESIS_DELAY.to_string()])
            .args(["--slot-seconds", &SLOT_SECONDS.to_string()])
            .args(["--base-port", &p2p_base.to_string()])
            .args(["--metrics-base-port", &metrics_base.to_string()])
            .args(extra)
            .output()
            .expect("run cohort cluster init");
        assert!(
            output.status.success(),
            "cohort cluster init failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let configs: Vec<PathBuf> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(PathBuf::from)
            .collect();
        assert_eq!(configs.len(), OPERATORS, "cluster init printed {configs:?}");
        for (i, config) in configs.iter().enumerate() {
            assert_eq!(
                config,
                &dir.join(format!("operator-{i}")).join("operator.toml"),
                "cluster init's config paths"
            );
        }
        std::fs::create_dir_all(dir.join("logs")).expect("create the logs directory");
        eprintln!(
            "cluster in {} (p2p ports {p2p_base}.., metrics ports {metrics_base}..)",
            dir.display()
        );
        Cluster {
            bin: bin.to_path_buf(),
            dir,
            p2p_base,
            metrics_base,
            operators: configs
                .into_iter()
                .map(|config| Operator {
                    config,
                    child: None,
                    logs: Vec::new(),
                })
                .collect(),
        }
    }

    /// `cohort exit request` on operator `i` for `validator`.
    fn exit_request(&self, i: usize, validator: u64) {
        let output = Command::new(&self.bin)
            .args(["exit", "request", "--config"])
            .arg(&self.operators[i].config)
            .args(["--validator", &validator.to_string()])
            .output()
            .expect("run cohort exit request");
        if !output.status.success() {
            self.fail(&format!(
                "cohort exit request on operator {i}: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }

    /// What `cohort exit status` says on operator `i`.
    fn exit_status(&self, i: usize) -> String {
        let output = Command::new(&self.bin)
            .args(["exit", "status", "--config"])
            .arg(&self.operators[i].config)
            .output()
            .expect("run cohort exit status");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// Sets `beacon.doppelganger_protection = true` in operator `i`'s config.
    fn enable_doppelganger_protection(&self, i: usize) {
        let path = &self.operators[i].config;
        let text = std::fs::read_to_string(path).expect("read the operator's config");
        assert!(
            text.contains("\n[beacon]\n"),
            "the config has a [beacon] table"
        );
        let text = text.replacen(
            "\n[beacon]\n",
            "\n[beacon]\ndoppelganger_protection = true\n",
            1,
        );
        std::fs::write(path, text).expect("write the operator's config");
    }

    /// Replaces operator `i`'s `[engine]` table (cluster init writes the embedded engine's)
    /// with `body`.
    fn set_engine(&self, i: usize, body: &str) {
        let path = &self.operators[i].config;
        let text = std::fs::read_to_string(path).expect("read the operator's config");
        let embedded = "\n[engine]\nkind = \"embedded\"\n";
        assert!(
            text.contains(embedded),
            "the config has cluster init's [engine] table"
        );
        let text = text.replacen(embedded, &format!("\n[engine]\n{body}"), 1);
        std::fs::write(path, text).expect("write the operator's config");
    }

    fn command(&self, i: usize) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .args(["run", "--config"])
            .arg(&self.operators[i].config)
            .args(["--log-format", "json", "--log", "info"])
            .stdin(Stdio::null());
        // The config's fields can be overridden from the environment: keep the test's own.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("COHORT_") {
                command.env_remove(key);
            }
        }
        command
    }

    fn start(&mut self, i: usize) {
        assert!(self.operators[i].child.is_none(), "operator {i} is running");
        let log = self
            .dir
            .join("logs")
            .join(format!("operator-{i}.{}.log", self.operators[i].logs.len()));
        let file = File::create(&log).expect("create a log file");
        let child = self
            .command(i)
            .stdout(file.try_clone().expect("clone a log file handle"))
            .stderr(file)
            .spawn()
            .expect("spawn cohort run");
        self.operators[i].logs.push(log);
        self.operators[i].child = Some(child);
    }

    fn sigkill(&mut self, i: usize) {
        let mut child = self.operators[i].child.take().expect("operator is running");
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("reap the killed operator");
        assert!(!status.success(), "operator {i} after SIGKILL: {status}");
    }

    /// A second process on a running operator's config (its data directory) is refused.
    fn check_second_process_is_refused(&self, i: usize) {
        let mut child = self
            .command(i)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn a second cohort run");
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = child.try_wait().expect("poll the second process") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.fail(&format!(
                    "a second process on operator {i}'s data directory is still running after 15 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        if status.success() || !stderr.contains("in use") {
            self.fail(&format!(
                "a second process on operator {i}'s data directory: {status}, stderr: {stderr}"
            ));
        }
    }

    /// SIGTERM every running operator, then waits up to `timeout` for each: (index, exit status
    /// or None if still running, time to exit).
    fn sigterm_all(&mut self, timeout: Duration) -> Vec<(usize, Option<ExitStatus>, Duration)> {
        let sent = Instant::now();
        for (i, operator) in self.operators.iter().enumerate() {
            if let Some(child) = &operator.child {
                let status = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status()
                    .expect("run kill");
                assert!(status.success(), "kill -TERM operator {i}: {status}");
            }
        }
        let mut results = Vec::new();
        for (i, operator) in self.operators.iter_mut().enumerate() {
            let Some(child) = operator.child.as_mut() else {
                continue;
            };
            let deadline = sent + timeout;
            let status = loop {
                match child.try_wait() {
                    Ok(Some(status)) => break Some(status),
                    Ok(None) if Instant::now() >= deadline => break None,
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                    Err(err) => panic!("wait for operator {i}: {err}"),
                }
            };
            if status.is_some() {
                operator.child = None;
            }
            results.push((i, status, sent.elapsed()));
        }
        results
    }

    fn p2p_address(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.p2p_base + i as u16))
    }

    fn metrics_address(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.metrics_base + i as u16))
    }

    /// `/health` of operator i: its status and body.
    fn health(&self, i: usize) -> Result<(u16, Value), String> {
        let (status, body) = http_get(self.metrics_address(i), "/health")?;
        let json = serde_json::from_str(&body)
            .map_err(|err| format!("operator {i}: /health is not JSON ({err}): {body}"))?;
        Ok((status, json))
    }

    /// The health JSON if operator i is ready, else why not.
    fn ready(&self, i: usize) -> Result<Value, String> {
        let (status, health) = self.health(i)?;
        if status == 200 && health["ready"] == Value::Bool(true) {
            Ok(health)
        } else {
            Err(format!("operator {i} not ready ({status}): {health}"))
        }
    }

    fn metrics(&self, i: usize) -> Result<Metrics, String> {
        let (status, body) = http_get(self.metrics_address(i), "/metrics")?;
        if status != 200 {
            return Err(format!("operator {i}: /metrics answered {status}"));
        }
        Ok(Metrics::parse(&body))
    }

    /// Every metric operator `i` exports, as queried (a counter with its `_total`), and its type.
    fn metric_types(&self, i: usize) -> Result<BTreeMap<String, String>, String> {
        let (status, body) = http_get(self.metrics_address(i), "/metrics")?;
        if status != 200 {
            return Err(format!("operator {i}: /metrics answered {status}"));
        }
        Ok(body
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|rest| rest.split_once(' '))
            .map(|(name, kind)| {
                let name = match kind {
                    "counter" => format!("{name}_total"),
                    _ => name.to_string(),
                };
                (name, kind.trim().to_string())
            })
            .collect())
    }

    fn snapshot(&self, i: usize) -> Result<Snapshot, String> {
        let metrics = self.metrics(i)?;
        Ok(Snapshot {
            finalized_height: metrics.get("operator_executor_finalized_height") as u64,
            committee_succeeded: metrics
                .get(r#"operator_runner_duties_succeeded_total{role="COMMITTEE"}"#)
                as u64,
            succeeded: metrics.sum("operator_runner_duties_succeeded_total") as u64,
            failed: metrics.sum("operator_runner_duties_failed_total") as u64,
            failed_committee_or_proposer: (metrics
                .get(r#"operator_runner_duties_failed_total{role="COMMITTEE"}"#)
                + metrics.get(r#"operator_runner_duties_failed_total{role="PROPOSER"}"#))
                as u64,
            failed_aggregations: (metrics
                .get(r#"operator_runner_duties_failed_total{role="AGGREGATOR"}"#)
                + metrics.get(
                    r#"operator_runner_duties_failed_total{role="SYNC_COMMITTEE_CONTRIBUTION"}"#,
                )) as u64,
            attestations_accepted: metrics.get(r#"devnet_chain_accepted{kind="attestation"}"#)
                as u64,
            aggregates_accepted: metrics.get(r#"devnet_chain_accepted{kind="aggregate"}"#) as u64,
            contributions_accepted: metrics.get(r#"devnet_chain_accepted{kind="contribution"}"#)
                as u64,
            rejected: metrics.sum("devnet_chain_rejected") as u64,
            conflicts: metrics.get("devnet_chain_conflicts") as u64,
        })
    }

    fn snapshot_all(&self) -> Vec<Snapshot> {
        (0..OPERATORS)
            .map(|i| self.snapshot(i).unwrap_or_else(|err| self.fail(&err)))
            .collect()
    }

    fn max_height_except(&self, except: usize) -> u64 {
        (0..OPERATORS)
            .filter(|i| *i != except)
            .filter_map(|i| self.snapshot(i).ok())
            .map(|s| s.finalized_height)
            .max()
            .unwrap_or_else(|| self.fail("no operator answers /metrics"))
    }

    fn wait_all_ready(&self, timeout: Duration) {
        self.wait("every operator is ready", timeout, |c| {
            let not_ready: Vec<String> = (0..OPERATORS).filter_map(|i| c.ready(i).err()).collect();
            if not_ready.is_empty() {
                Ok(())
            } else {
                Err(not_ready.join("; "))
            }
        });
    }

    /// Polls `check` until it passes; fails the test with its last complaint at `timeout`.
    /// Also fails at once if an operator that should be running has exited.
    fn wait(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Self) -> Result<(), String>,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running();
            match check(self) {
                Ok(()) => return,
                Err(err) if Instant::now() >= deadline => self.fail(&format!(
                    "timed out after {timeout:?} waiting until {what}: {err}"
                )),
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    fn check_running(&self) {
        for (i, operator) in self.operators.iter().enumerate() {
            if let Some(child) = &operator.child {
                // try_wait needs &mut; /proc tells whether the process is still alive.
                let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
                    .unwrap_or_default();
                let state = stat
                    .rsplit(") ")
                    .next()
                    .and_then(|rest| rest.chars().next());
                if matches!(state, None | Some('Z' | 'X')) {
                    self.fail(&format!("operator {i} exited unexpectedly"));
                }
            }
        }
    }

    /// Every log's finalized blocks (height → digest): no height has two digests across
    /// operators and restarts. Returns (heights checked, heights every operator logged).
    fn check_one_finalized_chain(&self) -> (usize, usize) {
        let mut chain: BTreeMap<u64, (String, String)> = BTreeMap::new();
        let mut per_operator: Vec<BTreeMap<u64, String>> = Vec::new();
        let mut problems = Vec::new();
        for (i, operator) in self.operators.iter().enumerate() {
            let mut mine = BTreeMap::new();
            for log in &operator.logs {
                let name = log
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string();
                let blocks = finalized_blocks(log).unwrap_or_else(|err| self.fail(&err));
                if blocks.is_empty() {
                    problems.push(format!("{name} logs no finalized block"));
                }
                for (height, digest) in blocks {
                    match chain.get(&height) {
                        Some((known, from)) if *known != digest => problems.push(format!(
                            "height {height}: {from} finalized {known}, {name} finalized {digest}"
                        )),
                        Some(_) => {}
                        None => {
                            chain.insert(height, (digest.clone(), name.clone()));
                        }
                    }
                    mine.insert(height, digest);
                }
            }
            // Each operator's own record has no gap: it processes every finalized height.
            if let (Some(first), Some(last)) = (mine.keys().next(), mine.keys().last())
                && (last - first + 1) as usize != mine.len()
            {
                let missing: Vec<u64> =
                    (*first..=*last).filter(|h| !mine.contains_key(h)).collect();
                problems.push(format!(
                    "operator {i}'s logs skip finalized heights {missing:?}"
                ));
            }
            per_operator.push(mine);
        }
        if !problems.is_empty() {
            self.fail(&format!(
                "the finalized chains differ:\n  {}",
                problems.join("\n  ")
            ));
        }
        let common = chain
            .keys()
            .filter(|h| per_operator.iter().all(|mine| mine.contains_key(h)))
            .count();
        if common < 10 {
            self.fail(&format!(
                "only {common} finalized heights are in every operator's log"
            ));
        }
        (chain.len(), common)
    }

    /// Fails the test (the guard prints the logs).
    fn fail(&self, message: &str) -> ! {
        panic!("{message}");
    }

    fn print_log_tails(&self, lines: usize) {
        for operator in &self.operators {
            for log in &operator.logs {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let all: Vec<&str> = text.lines().collect();
                let tail = &all[all.len().saturating_sub(lines)..];
                eprintln!("----- last {} lines of {} -----", tail.len(), log.display());
                for line in tail {
                    let line: String = line.chars().take(600).collect();
                    eprintln!("{line}");
                }
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed {
            self.print_log_tails(40);
        }
        for operator in &mut self.operators {
            if let Some(mut child) = operator.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if failed || std::env::var_os("DEVNET_TEST_KEEP").is_some() {
            eprintln!("kept the cluster directory {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// (height, digest) of every `processed finalized block` line of a JSON log. A line cut short
/// by SIGKILL is skipped; any other line that is not JSON fails.
fn finalized_blocks(log: &Path) -> Result<Vec<(u64, String)>, String> {
    let file = File::open(log).map_err(|err| format!("{}: {err}", log.display()))?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|err| format!("{}: {err}", log.display()))?;
    let mut blocks = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            if n + 1 == lines.len() || line.starts_with("error:") {
                continue;
            }
            return Err(format!(
                "{} line {}: not JSON: {line}",
                log.display(),
                n + 1
            ));
        };
        if entry["message"] != "processed finalized block" {
            continue;
        }
        let height = entry["height"].as_u64();
        let digest = entry["digest"].as_str();
        match (height, digest) {
            (Some(height), Some(digest)) => blocks.push((height, digest.to_string())),
            _ => {
                return Err(format!(
                    "{} line {}: no height or digest: {line}",
                    log.display(),
                    n + 1
                ));
            }
        }
    }
    Ok(blocks)
}

// ---- HTTP and Prometheus text ----

/// A plain HTTP/1.1 GET; the status and body.
fn http_get(address: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    http_exchange(
        address,
        &request,
        Duration::from_secs(5),
        &format!("GET http://{address}{path}"),
    )
}

/// Sends one whole HTTP/1.1 request (`Connection: close`) and reads the answer to its end: the
/// status and the body (de-chunked). `what` names the request in errors.
fn http_exchange(
    address: SocketAddr,
    request: &str,
    read_timeout: Duration,
    what: &str,
) -> Result<(u16, String), String> {
    let fail = |err: std::io::Error| format!("{what}: {err}");
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).map_err(fail)?;
    stream.set_read_timeout(Some(read_timeout)).map_err(fail)?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(fail)?;
    stream.write_all(request.as_bytes()).map_err(fail)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(fail)?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{what}: no header end in {response:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("{what}: bad status line in {head:?}"))?;
    let chunked = head.lines().any(|line| {
        line.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size =
            usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Prometheus text exposition: series (name with labels, as printed) → value.
struct Metrics(HashMap<String, f64>);

impl Metrics {
    fn parse(text: &str) -> Self {
        Metrics(
            text.lines()
                .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
                .filter_map(|line| {
                    let (series, value) = line.rsplit_once(' ')?;
                    Some((series.to_string(), value.trim().parse().ok()?))
                })
                .collect(),
        )
    }

    /// One series' value; an absent series (a family nothing was recorded in) is 0.
    fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    /// The sum over every label set of a metric.
    fn sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(series, _)| {
                series
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
            })
            .map(|(_, value)| value)
            .sum()
    }
}

// ---- a mixed cluster: two embedded engines, two EthereumJS clients ----

/// Operators on the embedded engine, each serving the chain's JSON-RPC (`engine.rpc_listen`).
const ON_EMBEDDED: [usize; 2] = [0, 1];
/// Operators on EthereumJS through the Engine API: the script's client 1, then client 2.
const ON_ETHEREUMJS: [usize; 2] = [2, 3];
const CHAIN_ID: u64 = 1337;
const MAX_FEE_PER_GAS: u128 = 100_000_000_000;
const PRIORITY_FEE_PER_GAS: u128 = 1_000_000_000;
/// What the funded key gives the second account, in wei (10 ETH).
const FUNDING: u64 = 10_000_000_000_000_000_000;
/// Transfers per route, each to a recipient of its own.
const TRANSFERS_PER_ROUTE: usize = 3;
/// Init code of a contract whose constructor stores 42 in slot 0 and logs topic 1 (its runtime
/// code returns slot 0): a receipt with a log and a contract address.
const LOGGING_CONTRACT: &[u8] = &[
    0x60, 0x2a, 0x60, 0x00, 0x55, 0x60, 0x01, 0x60, 0x00, 0x60, 0x00, 0xa1, 0x60, 0x0b, 0x60, 0x18,
    0x60, 0x00, 0x39, 0x60, 0x0b, 0x60, 0x00, 0xf3, 0x60, 0x00, 0x54, 0x60, 0x00, 0x52, 0x60, 0x20,
    0x60, 0x00, 0xf3,
];
/// Extra rounds, each one transfer, while one kind of engine has built no block with transactions.
const MAX_EXTRA_ROUNDS: usize = 10;

/// Four `cohort run` processes, operators 0 and 1 on the embedded engine and 2 and 3 on
/// EthereumJS (one client each, started by the script with COHORT_ETHEREUMJS_INSTANCES=2):
/// transactions go in through different operators (operator 0's and operator 1's JSON-RPC,
/// and operator 3's EthereumJS client directly), and every operator finalizes one chain whose
/// execution blocks have the same hashes in both embedded engines and both clients, with every
/// transaction in it, and with blocks carrying transactions built by both kinds of engine.
///
/// ```text
/// COHORT_ETHEREUMJS_INSTANCES=2 ./scripts/ethereumjs.sh \
///     cargo test -p cohort-tests --test devnet a_mixed_cluster -- --nocapture
/// ```
///
/// Without two clients in the script's variables the test says it was skipped and passes.
#[test]
fn a_mixed_cluster_of_embedded_and_ethereumjs_engines_finalizes_one_execution_chain() {
    use cohort_engine::{Address, B256, U256};
    use cohort_evm::{DEVNET_FUNDED_KEY, Wallet};

    let list = |name: &str| -> Vec<String> {
        std::env::var(name)
            .unwrap_or_default()
            .split(',')
            .filter(|item| !item.is_empty())
            .map(str::to_string)
            .collect()
    };
    let (engine_urls, jwts, client_rpcs) = (
        list("COHORT_ENGINE_URLS"),
        list("COHORT_ENGINE_JWTS"),
        list("COHORT_ETHEREUMJS_RPC_URLS"),
    );
    if engine_urls.len() < 2 || jwts.len() < 2 || client_rpcs.len() < 2 {
        eprintln!(
            "SKIPPED a_mixed_cluster_of_embedded_and_ethereumjs_engines_finalizes_one_execution_chain: \
             COHORT_ENGINE_URLS, COHORT_ENGINE_JWTS and COHORT_ETHEREUMJS_RPC_URLS do not name two \
             EthereumJS clients. Run it through COHORT_ETHEREUMJS_INSTANCES=2 ./scripts/ethereumjs.sh \
             cargo test -p cohort-tests --test devnet a_mixed_cluster -- --nocapture"
        );
        return;
    }
    let _alone = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let started = Instant::now();
    let bin = cohort_binary();
    let mut cluster = Cluster::init(&bin);

    // Where the test reads the execution chain: each embedded operator's JSON-RPC, each
    // EthereumJS client's own. (name, URL)
    let mut sources: Vec<(String, String)> = Vec::new();
    for i in ON_EMBEDDED {
        let port = free_port();
        cluster.set_engine(
            i,
            &format!("kind = \"embedded\"\nrpc_listen = \"127.0.0.1:{port}\"\n"),
        );
        sources.push((
            format!("operator {i} (embedded)"),
            format!("http://127.0.0.1:{port}"),
        ));
    }
    for (client, i) in ON_ETHEREUMJS.into_iter().enumerate() {
        cluster.set_engine(
            i,
            &format!(
                "kind = \"remote\"\nurl = {}\njwt_secret = {}\n",
                toml::Value::String(engine_urls[client].clone()),
                toml::Value::String(jwts[client].clone()),
            ),
        );
        sources.push((
            format!("EthereumJS {} (operator {i})", client + 1),
            client_rpcs[client].clone(),
        ));
    }
    let operator_rpc = |i: usize| sources[i].1.clone();
    // The client behind operator 3: transactions sent to it reach no other operator.
    let client_of_operator_3 = client_rpcs[1].clone();

    for i in 0..OPERATORS {
        cluster.start(i);
    }
    cluster.wait_all_ready(SLOT * 2 + Duration::from_secs(GENESIS_DELAY + 40));
    let before = cluster.snapshot_all();
    cluster.wait("every operator finalizes blocks", SLOT * 8, |c| {
        for (i, was) in before.iter().enumerate() {
            let now = c.snapshot(i)?.finalized_height;
            if now < was.finalized_height + 2 {
                return Err(format!("operator {i}: finalized height still {now}"));
            }
        }
        Ok(())
    });
    eprintln!(
        "[{:>5.1}s] mixed cluster ready and finalizing (operators {ON_EMBEDDED:?} embedded, {ON_ETHEREUMJS:?} on EthereumJS)",
        secs(started)
    );

    // What every source must end up showing: recipients' balances, senders' nonces.
    let mut balances: BTreeMap<Address, U256> = BTreeMap::new();
    let mut nonces: BTreeMap<Address, u64> = BTreeMap::new();
    let mut sent: Vec<String> = Vec::new();
    let mut next_recipient = 0u8;
    let mut recipient = || {
        next_recipient += 1;
        Address::repeat_byte(0x60 + next_recipient)
    };
    let mut funded = Wallet::new(&DEVNET_FUNDED_KEY, CHAIN_ID, 0).expect("the devnet key");
    let mut second =
        Wallet::new(&B256::repeat_byte(0x5e), CHAIN_ID, 0).expect("a second account's key");
    // Signs a transfer, sends it to `url` and records what it must change.
    // Signs a transfer (or, without a recipient, the creation of a contract that stores and
    // logs: receipts with a contract address and a log to compare), sends it to `url` and
    // records what it must change.
    let mut send = |wallet: &mut Wallet,
                    to: Option<Address>,
                    value: U256,
                    url: &str,
                    route: &str,
                    balances: &mut BTreeMap<Address, U256>,
                    nonces: &mut BTreeMap<Address, u64>| {
        let raw = match to {
            Some(to) => wallet.transfer(to, value, MAX_FEE_PER_GAS, PRIORITY_FEE_PER_GAS),
            None => wallet.sign(
                cohort_engine::TxKind::Create,
                U256::ZERO,
                LOGGING_CONTRACT.to_vec().into(),
                200_000,
                MAX_FEE_PER_GAS,
                PRIORITY_FEE_PER_GAS,
            ),
        }
        .expect("signs a transaction");
        let hash = rpc_call(
            url,
            "eth_sendRawTransaction",
            json_array([format!("0x{}", hex_lower(&raw))]),
        )
        .unwrap_or_else(|err| cluster.fail(&format!("sending a transfer through {route}: {err}")));
        if hash.as_str().is_none_or(|hash| hash.len() != 66) {
            cluster.fail(&format!(
                "eth_sendRawTransaction through {route} answered {hash}, not a transaction hash"
            ));
        }
        if let Some(to) = to {
            *balances.entry(to).or_default() += value;
        }
        nonces.insert(wallet.address(), wallet.nonce());
        sent.push(route.to_string());
    };
    let landed = |what: &str,
                  timeout: Duration,
                  balances: &BTreeMap<Address, U256>,
                  nonces: &BTreeMap<Address, u64>|
     -> Duration {
        let from = Instant::now();
        cluster.wait(what, timeout, |_| {
            check_accounts(&sources, balances, nonces)
        });
        from.elapsed()
    };

    // (1) The funded key, through operator 0's JSON-RPC: the second account's funding and
    // transfers; the relay takes them to every operator, and whoever leads builds with them.
    let route_0 = "operator 0's JSON-RPC";
    send(
        &mut funded,
        Some(second.address()),
        U256::from(FUNDING),
        &operator_rpc(0),
        route_0,
        &mut balances,
        &mut nonces,
    );
    for k in 0..TRANSFERS_PER_ROUTE {
        send(
            &mut funded,
            Some(recipient()),
            U256::from(1_000 + k as u64),
            &operator_rpc(0),
            route_0,
            &mut balances,
            &mut nonces,
        );
    }
    send(
        &mut funded,
        None,
        U256::ZERO,
        &operator_rpc(0),
        route_0,
        &mut balances,
        &mut nonces,
    );
    let took_0 = landed(
        "the funded key's transfers through operator 0 land on every source",
        SLOT * 15,
        &balances,
        &nonces,
    );
    eprintln!(
        "[{:>5.1}s] (1) {} transfers through {route_0} finalized everywhere in {took_0:.1?}",
        secs(started),
        TRANSFERS_PER_ROUTE + 1
    );
    // The second account's balance is not tracked from here on (fees vary with the base fee).
    balances.remove(&second.address());

    // (2) The second account, through operator 3's EthereumJS client directly: only that
    // client has these, so they land only in a block operator 3 leads and EthereumJS builds.
    let route_3 = "operator 3's EthereumJS client";
    for k in 0..TRANSFERS_PER_ROUTE {
        send(
            &mut second,
            Some(recipient()),
            U256::from(2_000 + k as u64),
            &client_of_operator_3,
            route_3,
            &mut balances,
            &mut nonces,
        );
    }
    send(
        &mut second,
        None,
        U256::ZERO,
        &client_of_operator_3,
        route_3,
        &mut balances,
        &mut nonces,
    );
    let took_3 = landed(
        "the second account's transfers through operator 3's client land on every source",
        SLOT * 30,
        &balances,
        &nonces,
    );
    eprintln!(
        "[{:>5.1}s] (2) {TRANSFERS_PER_ROUTE} transfers through {route_3} finalized everywhere in {took_3:.1?}",
        secs(started)
    );

    // (3) The second account, through operator 1's JSON-RPC.
    let route_1 = "operator 1's JSON-RPC";
    for k in 0..TRANSFERS_PER_ROUTE {
        send(
            &mut second,
            Some(recipient()),
            U256::from(3_000 + k as u64),
            &operator_rpc(1),
            route_1,
            &mut balances,
            &mut nonces,
        );
    }
    let took_1 = landed(
        "the second account's transfers through operator 1 land on every source",
        SLOT * 15,
        &balances,
        &nonces,
    );
    eprintln!(
        "[{:>5.1}s] (3) {TRANSFERS_PER_ROUTE} transfers through {route_1} finalized everywhere in {took_1:.1?}",
        secs(started)
    );

    // (4) Both kinds of engine built finalized blocks with transactions: while one has not,
    // one more transfer at a time through operators 0 and 1 (whoever leads next builds it).
    let mut extra = 0;
    let builders = loop {
        let lowest = lowest_finalized(&sources).unwrap_or_else(|err| cluster.fail(&err));
        let blocks = compare_blocks(&sources, lowest).unwrap_or_else(|err| cluster.fail(&err));
        let embedded_built = blocks.iter().any(|b| b.transactions > 0 && b.on_embedded());
        let ethereumjs_built = blocks
            .iter()
            .any(|b| b.transactions > 0 && !b.on_embedded());
        if embedded_built && ethereumjs_built {
            break blocks;
        }
        if extra == MAX_EXTRA_ROUNDS {
            cluster.fail(&format!(
                "after {extra} extra transfers, no finalized block with transactions was built by \
                 {}: {blocks:?}",
                if embedded_built {
                    "an EthereumJS-backed operator"
                } else {
                    "an embedded-engine operator"
                }
            ));
        }
        let route = ON_EMBEDDED[extra % 2];
        send(
            &mut funded,
            Some(recipient()),
            U256::from(4_000 + extra as u64),
            &operator_rpc(route),
            &format!("operator {route}'s JSON-RPC (extra)"),
            &mut balances,
            &mut nonces,
        );
        extra += 1;
        landed(
            "an extra transfer lands on every source",
            SLOT * 15,
            &balances,
            &nonces,
        );
    };

    eprintln!(
        "[{:>5.1}s] (4) finalized blocks with transactions built by both kinds of engine \
         ({extra} extra transfers needed)",
        secs(started)
    );

    // (5) Every operator has built finalized blocks: each leads in turn, whatever its engine.
    let mut builders = builders;
    let took = Instant::now();
    cluster.wait(
        "every operator has built a finalized execution block",
        SLOT * 40,
        |_| {
            let lowest = lowest_finalized(&sources)?;
            builders = compare_blocks(&sources, lowest)?;
            let idle: Vec<usize> = (0..OPERATORS)
                .filter(|i| !builders.iter().any(|b| b.builder() == Some(*i)))
                .collect();
            if idle.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "operators {idle:?} built none of execution blocks 1..={lowest}"
                ))
            }
        },
    );
    eprintln!(
        "[{:>5.1}s] (5) every operator built finalized execution blocks (waited {:.1?})",
        secs(started),
        took.elapsed()
    );

    // Every finalized block was built by the operator its fee recipient names (operator i's
    // is 0x(i+1) repeated), and that operator's own log says it built it, with as many
    // transactions.
    let mut by_kind = [0usize; 2];
    let mut transactions_by_kind = [0usize; 2];
    let mut per_operator = [0usize; OPERATORS];
    for block in &builders {
        let Some(builder) = block.builder() else {
            cluster.fail(&format!(
                "execution block {} has fee recipient {}, no operator's",
                block.number, block.miner
            ));
        };
        let built = cluster.operators[builder]
            .logs
            .iter()
            .flat_map(|log| built_payloads(log).unwrap_or_else(|err| cluster.fail(&err)))
            .any(|(number, transactions)| {
                number == block.number && transactions == block.transactions
            });
        if !built {
            cluster.fail(&format!(
                "execution block {} ({} transactions) names operator {builder} as fee recipient, \
                 but its log has no such built payload",
                block.number, block.transactions
            ));
        }
        per_operator[builder] += 1;
        if block.transactions > 0 {
            let kind = usize::from(!block.on_embedded());
            by_kind[kind] += 1;
            transactions_by_kind[kind] += block.transactions;
        }
    }
    let total: usize = builders.iter().map(|b| b.transactions).sum();
    if total != sent.len() {
        cluster.fail(&format!(
            "{total} transactions in the finalized execution blocks, {} sent",
            sent.len()
        ));
    }
    check_accounts(&sources, &balances, &nonces).unwrap_or_else(|err| cluster.fail(&err));
    // No engine found another's payload invalid; a payload an engine could not check in time
    // (EthereumJS answers SYNCING while busy) only cost that operator its vote, and is counted.
    let mut withheld = [0usize; OPERATORS];
    for (i, operator) in cluster.operators.iter().enumerate() {
        for log in &operator.logs {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(line) = text
                .lines()
                .find(|line| line.contains("refusing block: its payload is invalid"))
            {
                cluster.fail(&format!("operator {i} refused a payload: {line}"));
            }
            withheld[i] += text
                .matches("cannot check the block's payload yet; not voting")
                .count();
        }
    }

    // One finalized consensus chain in every log, every operator still finalizing.
    let before = cluster.snapshot_all();
    cluster.wait("every operator keeps finalizing", SLOT * 8, |c| {
        for (i, was) in before.iter().enumerate() {
            let now = c.snapshot(i)?.finalized_height;
            if now < was.finalized_height + 2 {
                return Err(format!(
                    "operator {i}: finalized height {now}, was {}",
                    was.finalized_height
                ));
            }
        }
        Ok(())
    });
    let (checked, common) = cluster.check_one_finalized_chain();
    // And the execution chain, compared once more up to where every source is now.
    let lowest = lowest_finalized(&sources).unwrap_or_else(|err| cluster.fail(&err));
    let compared = compare_blocks(&sources, lowest).unwrap_or_else(|err| cluster.fail(&err));
    let logged: usize = compared.iter().map(|block| block.logged).sum();
    let created: usize = compared.iter().map(|block| block.created).sum();
    // Both contract creations (one through a relay, one built by EthereumJS) were compared.
    if logged < 2 || created < 2 {
        cluster.fail(&format!(
            "{created} contract creations and {logged} receipts with logs compared, expected 2"
        ));
    }
    let compared = compared.len();
    for (i, snapshot) in cluster.snapshot_all().iter().enumerate() {
        eprintln!("  operator {i}: {snapshot}");
    }
    let mut routes: BTreeMap<&str, usize> = BTreeMap::new();
    for route in &sent {
        *routes.entry(route.as_str()).or_default() += 1;
    }
    eprintln!(
        "[{:>5.1}s] one finalized chain: {checked} consensus heights agree across every log \
         ({common} seen by all four); execution blocks 1..={lowest} ({compared} blocks, built \
         {per_operator:?} by operators 0..3) are the same, field by field with their \
         transactions and receipts ({created} contract creations, {logged} receipts with logs), \
         on {}",
        secs(started),
        sources
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    eprintln!(
        "  {} transactions sent ({routes:?}), all finalized: {} in {} blocks built by embedded \
         engines, {} in {} blocks built by EthereumJS; {} recipients' balances and {} senders' \
         nonces equal on all four sources",
        sent.len(),
        transactions_by_kind[0],
        by_kind[0],
        transactions_by_kind[1],
        by_kind[1],
        balances.len(),
        nonces.len()
    );
    eprintln!(
        "  votes withheld for a payload the engine could not check yet, by operator: {withheld:?}"
    );

    for (i, status, took) in cluster.sigterm_all(Duration::from_secs(30)) {
        match status {
            Some(status) if status.success() => {}
            Some(status) => {
                cluster.fail(&format!("operator {i} exited with {status} after SIGTERM"))
            }
            None => cluster.fail(&format!("operator {i} still running 30 s after SIGTERM")),
        }
        eprintln!("  operator {i}: exited 0 {took:?} after SIGTERM");
    }
    eprintln!("[{:>5.1}s] mixed cluster stopped cleanly", secs(started));
}

/// A free port on 127.0.0.1, chosen by the kernel.
fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

fn json_array<const N: usize>(items: [String; N]) -> Value {
    Value::Array(items.into_iter().map(Value::String).collect())
}

fn address_hex(address: &cohort_engine::Address) -> String {
    format!("0x{}", hex_lower(address.as_slice()))
}

fn quantity(value: &Value, what: &str) -> Result<cohort_engine::U256, String> {
    value
        .as_str()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| format!("{what}: {value} is not a quantity"))
}

/// Every source shows each recipient's balance and each sender's nonce as expected.
fn check_accounts(
    sources: &[(String, String)],
    balances: &BTreeMap<cohort_engine::Address, cohort_engine::U256>,
    nonces: &BTreeMap<cohort_engine::Address, u64>,
) -> Result<(), String> {
    let nonces = nonces
        .iter()
        .map(|(address, nonce)| (*address, cohort_engine::U256::from(*nonce)));
    let expected: Vec<_> = balances
        .iter()
        .map(|(address, balance)| ("eth_getBalance", *address, *balance))
        .chain(nonces.map(|(address, nonce)| ("eth_getTransactionCount", address, nonce)))
        .collect();
    for (name, url) in sources {
        for (method, address, want) in &expected {
            let what = format!("{name}: {method}({address})");
            let got = quantity(
                &rpc_call(
                    url,
                    method,
                    json_array([address_hex(address), "latest".into()]),
                )
                .map_err(|err| format!("{what}: {err}"))?,
                &what,
            )?;
            if got != *want {
                return Err(format!("{what} is {got}, expected {want}"));
            }
        }
    }
    Ok(())
}

/// The lowest finalized execution block number over every source: the node's JSON-RPC serves
/// the finalized state (`eth_blockNumber`), EthereumJS names its finalized block.
fn lowest_finalized(sources: &[(String, String)]) -> Result<u64, String> {
    let mut lowest = u64::MAX;
    for (name, url) in sources {
        let number = if name.contains("EthereumJS") {
            let block = rpc_call(url, "eth_getBlockByNumber", json!(["finalized", false]))
                .map_err(|err| format!("{name}: {err}"))?;
            quantity(
                &block["number"],
                &format!("{name}: the finalized block's number"),
            )?
        } else {
            let number = rpc_call(url, "eth_blockNumber", json!([]))
                .map_err(|err| format!("{name}: {err}"))?;
            quantity(&number, &format!("{name}: eth_blockNumber"))?
        };
        lowest = lowest.min(u64::try_from(number).map_err(|_| format!("{name}: {number}"))?);
    }
    Ok(lowest)
}

/// One finalized execution block as every source agrees on it.
#[derive(Debug)]
struct ExecutionBlock {
    number: u64,
    miner: String,
    transactions: usize,
    /// Receipts with logs, and contract creations (compared field by field like the rest).
    logged: usize,
    created: usize,
}

impl ExecutionBlock {
    /// The operator whose fee recipient (0x(i+1) repeated) the block pays.
    fn builder(&self) -> Option<usize> {
        (0..OPERATORS).find(|i| self.miner == format!("0x{}", format!("{:02x}", i + 1).repeat(20)))
    }

    fn on_embedded(&self) -> bool {
        self.builder().is_some_and(|i| ON_EMBEDDED.contains(&i))
    }
}

/// The fields of a block, a transaction and a receipt that every source must answer alike
/// (EthereumJS's answers name them; `totalDifficulty` and `size` are left out: post-merge
/// clients disagree on the first, and the second is advisory).
const BLOCK_FIELDS: &[&str] = &[
    "hash",
    "parentHash",
    "number",
    "timestamp",
    "miner",
    "stateRoot",
    "transactionsRoot",
    "receiptsRoot",
    "logsBloom",
    "gasLimit",
    "gasUsed",
    "baseFeePerGas",
    "extraData",
    "mixHash",
    "nonce",
    "difficulty",
    "sha3Uncles",
    "uncles",
    "withdrawalsRoot",
    "withdrawals",
    "blobGasUsed",
    "excessBlobGas",
    "parentBeaconBlockRoot",
    "transactions",
];
const TRANSACTION_FIELDS: &[&str] = &[
    "hash",
    "type",
    "chainId",
    "nonce",
    "from",
    "to",
    "value",
    "gas",
    // Not `gasPrice`: for an included EIP-1559 transaction the execution API (and geth, and
    // the embedded engine) answer the effective price paid, EthereumJS 0.10.5 the fee cap.
    "maxFeePerGas",
    "maxPriorityFeePerGas",
    "input",
    "accessList",
    "v",
    "r",
    "s",
    "blockHash",
    "blockNumber",
    "transactionIndex",
];
const RECEIPT_FIELDS: &[&str] = &[
    "transactionHash",
    "transactionIndex",
    "blockHash",
    "blockNumber",
    "from",
    "to",
    "cumulativeGasUsed",
    "gasUsed",
    // Not `effectiveGasPrice`: EthereumJS 0.10.5 answers the priority fee alone; the execution
    // API's base fee + tip is checked on the embedded operators instead (`paid_price`).
    "contractAddress",
    "logs",
    "logsBloom",
    "type",
    "status",
];

/// A receipt's `effectiveGasPrice` (and its transaction's `gasPrice`) is what the execution API
/// says an EIP-1559 transaction pays: the base fee plus the tip its fee cap leaves room for.
fn paid_price(block: &Value, transaction: &Value, receipt: &Value) -> Result<(), String> {
    let base_fee = quantity(&block["baseFeePerGas"], "baseFeePerGas")?;
    let cap = quantity(&transaction["maxFeePerGas"], "maxFeePerGas")?;
    let tip = quantity(&transaction["maxPriorityFeePerGas"], "maxPriorityFeePerGas")?;
    let expected = base_fee + tip.min(cap - base_fee);
    let effective = quantity(&receipt["effectiveGasPrice"], "effectiveGasPrice")?;
    let price = quantity(&transaction["gasPrice"], "gasPrice")?;
    if effective != expected || price != expected {
        return Err(format!(
            "effectiveGasPrice {effective} and gasPrice {price}, the base fee {base_fee} plus \
             the tip make {expected}"
        ));
    }
    Ok(())
}

/// The fields of `fields` on which `a` and `b` differ (addresses and hex compared without
/// case), each as "field: a vs b".
fn differing(a: &Value, b: &Value, fields: &[&str]) -> Vec<String> {
    fn normal(value: &Value) -> Value {
        match value {
            Value::String(text) => Value::String(text.to_ascii_lowercase()),
            Value::Array(items) => Value::Array(items.iter().map(normal).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(key, value)| (key.clone(), normal(value)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    fields
        .iter()
        .filter(|field| normal(&a[**field]) != normal(&b[**field]))
        .map(|field| format!("{field}: {} vs {}", a[*field], b[*field]))
        .collect()
}

/// Blocks 1..=`up_to` on every source: the same block, field by field, and the same
/// transactions and receipts.
fn compare_blocks(sources: &[(String, String)], up_to: u64) -> Result<Vec<ExecutionBlock>, String> {
    let mut blocks = Vec::new();
    for number in 1..=up_to {
        let mut first: Option<(&str, Value)> = None;
        for (name, url) in sources {
            let block = rpc_call(
                url,
                "eth_getBlockByNumber",
                json!([format!("{number:#x}"), false]),
            )
            .map_err(|err| format!("{name}: block {number}: {err}"))?;
            if block.is_null() {
                return Err(format!("{name} has no block {number}"));
            }
            let Some((first_name, first)) = &first else {
                first = Some((name, block));
                continue;
            };
            // Every field a client answers with: the embedded engine's JSON-RPC must say what
            // EthereumJS says, not only agree on the hash.
            let differ = differing(first, &block, BLOCK_FIELDS);
            if !differ.is_empty() {
                return Err(format!(
                    "execution block {number} differs between {first_name} and {name}: {}",
                    differ.join("; ")
                ));
            }
        }
        // And each of its transactions and receipts.
        let (first_name, first_block) = first.as_ref().ok_or("no source")?;
        let (mut logged, mut created) = (0, 0);
        for hash in first_block["transactions"].as_array().into_iter().flatten() {
            for (method, fields) in [
                ("eth_getTransactionByHash", TRANSACTION_FIELDS),
                ("eth_getTransactionReceipt", RECEIPT_FIELDS),
            ] {
                let mut reference: Option<(&str, Value)> = None;
                for (name, url) in sources {
                    let answer = rpc_call(url, method, json!([hash]))
                        .map_err(|err| format!("{name}: {method} {hash}: {err}"))?;
                    if answer.is_null() {
                        return Err(format!("{name}: {method} {hash} is null"));
                    }
                    if method == "eth_getTransactionReceipt" && !name.contains("EthereumJS") {
                        let transaction = rpc_call(url, "eth_getTransactionByHash", json!([hash]))
                            .map_err(|err| format!("{name}: {hash}: {err}"))?;
                        paid_price(first_block, &transaction, &answer)
                            .map_err(|err| format!("{name}: {hash}: {err}"))?;
                    }
                    let Some((reference_name, reference)) = &reference else {
                        if method == "eth_getTransactionReceipt" {
                            logged += usize::from(
                                answer["logs"]
                                    .as_array()
                                    .is_some_and(|logs| !logs.is_empty()),
                            );
                            created += usize::from(answer["contractAddress"].is_string());
                        }
                        reference = Some((name, answer));
                        continue;
                    };
                    let differ = differing(reference, &answer, fields);
                    if !differ.is_empty() {
                        return Err(format!(
                            "{method} {hash} (block {number} on {first_name}) differs between \
                             {reference_name} and {name}: {}",
                            differ.join("; ")
                        ));
                    }
                }
            }
        }
        let Some((name, block)) = first else {
            return Err("no source".into());
        };
        if !block["hash"].is_string() {
            return Err(format!("{name}: block {number} has no hash: {block}"));
        }
        blocks.push(ExecutionBlock {
            number,
            miner: block["miner"]
                .as_str()
                .ok_or_else(|| format!("{name}: block {number} has no miner"))?
                .to_ascii_lowercase(),
            transactions: block["transactions"]
                .as_array()
                .ok_or_else(|| format!("{name}: block {number} has no transactions"))?
                .len(),
            logged,
            created,
        });
    }
    Ok(blocks)
}

/// (execution number, transactions) of every `built the slot's payload` line of a JSON log.
fn built_payloads(log: &Path) -> Result<Vec<(u64, usize)>, String> {
    let text = std::fs::read_to_string(log).map_err(|err| format!("{}: {err}", log.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["message"] == "built the slot's payload")
        .filter_map(|entry| {
            Some((
                entry["number"].as_u64()?,
                entry["transactions"].as_u64()? as usize,
            ))
        })
        .collect())
}

/// One JSON-RPC 2.0 call over HTTP POST to `url` (`http://ip:port`): its result, or why not.
fn rpc_call(url: &str, method: &str, params: Value) -> Result<Value, String> {
    let address: SocketAddr = url
        .strip_prefix("http://")
        .and_then(|rest| rest.trim_end_matches('/').parse().ok())
        .ok_or_else(|| format!("{url} is not http://ip:port"))?;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, body) = http_exchange(
        address,
        &request,
        Duration::from_secs(10),
        &format!("{method} on {url}"),
    )?;
    let reply: Value = serde_json::from_str(&body)
        .map_err(|err| format!("{method} on {url}: not JSON ({err}): HTTP {status} {body}"))?;
    if let Some(error) = reply.get("error") {
        return Err(format!("{method} on {url}: {error}"));
    }
    reply
        .get("result")
        .cloned()
        .ok_or_else(|| format!("{method} on {url}: no result in {reply}"))
}

// ---- garbage peers ----

/// Connects, writes `bytes`, then waits for the node to close the connection (EOF or reset);
/// returns how long that took after the write.
/// Time between probe connections, so that each stays inside the node's per-address handshake
/// budget (operators-many per second) even with an operator's own redial in the same second.
const HANDSHAKE_SPACING: Duration = Duration::from_millis(1_100);

/// Connects to `target`; a connection the node drops at accept (its handshake rate limit, when
/// another connection from this address came just before) is retried for a few seconds.
fn connect_admitted(target: SocketAddr) -> Result<TcpStream, String> {
    let give_up = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
            Ok(stream) => return Ok(stream),
            Err(err) if is_closed(&err) && Instant::now() < give_up => {
                std::thread::sleep(Duration::from_millis(300));
            }
            Err(err) => return Err(format!("connect: {err}")),
        }
    }
}

fn send_and_expect_close(
    target: SocketAddr,
    bytes: &[u8],
    within: Duration,
) -> Result<Duration, String> {
    let mut stream = connect_admitted(target)?;
    let sent = Instant::now();
    match stream.write_all(bytes) {
        Ok(()) => {}
        // Already closed while we wrote.
        Err(err) if is_closed(&err) => return Ok(sent.elapsed()),
        Err(err) => return Err(format!("write: {err}")),
    }
    expect_closed(stream, within).map(|_| sent.elapsed())
}

/// Waits until the peer closes `stream` (reads EOF or a reset), ignoring any bytes it sends.
fn expect_closed(mut stream: TcpStream, within: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let deadline = start + within;
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("the node kept the connection open for {within:?}"));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|err| format!("set_read_timeout: {err}"))?;
        match stream.read(&mut buffer) {
            Ok(0) => return Ok(start.elapsed()),
            Ok(_) => continue,
            Err(err) if is_closed(&err) => return Ok(start.elapsed()),
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                continue;
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(err) => return Err(format!("read: {err}")),
        }
    }
}

/// Streams random bytes in 64 KiB writes until the node closes the connection; returns the
/// bytes written and the time it took.
fn stream_until_closed(
    target: SocketAddr,
    rng: &mut XorShift,
    within: Duration,
) -> Result<(usize, Duration), String> {
    let mut stream = connect_admitted(target)?;
    stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .map_err(|err| format!("set_write_timeout: {err}"))?;
    let start = Instant::now();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut sent = 0usize;
    while start.elapsed() < within {
        rng.fill(&mut chunk);
        match stream.write(&chunk) {
            Ok(0) => return Ok((sent, start.elapsed())),
            Ok(n) => sent += n,
            Err(err) if is_closed(&err) => return Ok((sent, start.elapsed())),
            // The node stopped reading but has not closed (yet): keep pushing until the deadline.
            Err(err)
                if matches!(
                    err.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(err) => return Err(format!("write: {err}")),
        }
    }
    Err(format!(
        "the node kept the connection open for {within:?} ({sent} bytes written)"
    ))
}

fn is_closed(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::BrokenPipe
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::UnexpectedEof
    )
}

struct XorShift(u64);

impl XorShift {
    fn seeded() -> Self {
        XorShift(now_nanos() | 1)
    }

    fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
    }
}

// ---- the README's metric table ----

/// Prefixes of the metrics cohort itself defines: every exported metric under one of them must
/// be in the README's table (the rest come from the commonware libraries).
const OWN_PREFIXES: [&str; 9] = [
    "operator_consensus_",
    "operator_doppelganger_",
    "operator_exits_",
    "operator_committee_",
    "operator_executor_",
    "operator_runner_",
    "operator_scheduler_",
    "devnet_chain_",
    "p2p_oversized_",
];

/// One row of the README's metric table.
#[derive(Debug)]
struct Documented {
    name: String,
    kind: String,
    /// Labelled: exported only once a first series is counted.
    labelled: bool,
}

/// The rows between `<!-- metrics -->` and `<!-- /metrics -->` in README.md.
fn documented_metrics() -> Vec<Documented> {
    let readme = include_str!("../../README.md");
    let table = readme
        .split_once("<!-- metrics -->")
        .and_then(|(_, rest)| rest.split_once("<!-- /metrics -->"))
        .map(|(table, _)| table)
        .expect("README.md has a metric table between <!-- metrics --> and <!-- /metrics -->");
    table
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let metric = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let (name, labelled) = match metric.split_once('{') {
                Some((name, _)) => (name, true),
                None => (metric, false),
            };
            Some(Documented {
                name: name.to_string(),
                kind: cells.get(2)?.to_string(),
                labelled,
            })
        })
        .collect()
}

/// Every documented metric is exported with its type (a labelled one once it has a series),
/// and every exported metric under [`OWN_PREFIXES`] is documented.
fn check_documented_metrics(
    documented: &[Documented],
    exported: &BTreeMap<String, String>,
) -> Result<(), String> {
    let mut problems = Vec::new();
    for metric in documented {
        match exported.get(&metric.name) {
            Some(kind) if *kind == metric.kind => {}
            Some(kind) => problems.push(format!(
                "{} is a {kind}, the README says {}",
                metric.name, metric.kind
            )),
            None if metric.labelled => {}
            None => problems.push(format!("{} is documented but not exported", metric.name)),
        }
    }
    for name in exported.keys() {
        if OWN_PREFIXES.iter().any(|prefix| name.starts_with(prefix))
            && !documented.iter().any(|metric| metric.name == *name)
        {
            problems.push(format!("{name} is exported but not in README.md's table"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "/metrics and README.md disagree:\n  {}",
            problems.join("\n  ")
        ))
    }
}

#[test]
fn the_readme_metric_table_is_well_formed() {
    let documented = documented_metrics();
    assert!(documented.len() > 40, "{} rows", documented.len());
    for metric in &documented {
        assert!(
            ["counter", "gauge", "histogram"].contains(&metric.kind.as_str()),
            "{metric:?}"
        );
        assert_eq!(
            metric.kind == "counter",
            metric.name.ends_with("_total"),
            "a counter is queried with its _total: {metric:?}"
        );
        assert!(
            OWN_PREFIXES
                .iter()
                .any(|prefix| metric.name.starts_with(prefix)),
            "{metric:?} is not under a prefix cohort owns"
        );
    }
    let mut names: Vec<&str> = documented.iter().map(|m| m.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), documented.len(), "a metric is listed twice");
}
