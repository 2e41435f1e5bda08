//! End to end against a real beacon node (issue 14): a Lodestar 1.5.1 dev chain of 16 interop
//! validators in which Lodestar's own validator client runs only 0..5 (6 of 16, short of two
//! thirds), and a 4-process Cohort cluster (`cohort cluster init --validators 6..16`, `cohort
//! run`, TCP p2p) runs 6..15. The chain can only finalize through Cohort's attestations.
//!
//! Run it with the chain `./scripts/lodestar.sh` starts (it sets the environment):
//!
//! ```text
//! ./scripts/lodestar.sh cargo test -p cohort-tests --test lodestar -- --nocapture
//! ```
//!
//! Without `COHORT_BEACON_URL` the test says why and passes (skips); `scripts/lodestar.sh`
//! always sets it, so under CI the skip cannot happen. Everything is checked through Lodestar's
//! REST API and log and the operators' `/health` and `/metrics`:
//!
//! (1) one beacon node per operator: the chain finalizes epoch 2 or later; one operator is
//!     SIGKILLed and finality still advances by 2 epochs; every slot whose proposer is one of
//!     6..15 has a canonical block by that validator, paying the `--fee-recipient` (after one
//!     epoch of warm-up once every operator is ready; a block missing in the slot of the kill or
//!     the next one is reported, not failed); the sync aggregates of the blocks set Cohort's sync
//!     committee positions (at least half of them, each validator at least once); every Cohort
//!     validator's attestation of each checked epoch is included in a block (reported only for
//!     the epoch of the kill). Proposers come from current-epoch proposer duties polled during
//!     each epoch (Lodestar 1.5.1's next-epoch duties are wrong);
//! (2) two beacon nodes per operator, the first a TCP proxy in front of the same Lodestar: the
//!     proxy is stopped in the middle of an epoch (its port refuses connections, open ones are
//!     cut) and for that epoch and the two after it no duty is missed (blocks of Cohort's
//!     proposers, attestations included, sync aggregates);
//! (3) Lodestar's log has no rejected submission (errors on the pool and publish endpoints)
//!     after the first cluster started: they are listed and fail the test. Duplicates that a
//!     second operator's copy of the same object gets (`..._ALREADY_KNOWN`) and failed reads
//!     are reported, not failed on.
//!
//! Both scenarios run with doppelganger protection on (the default with beacon nodes): no check
//! starts before every operator has cleared all of Cohort's validators through Lodestar's
//! liveness answers (about three epochs), and none may be taken for a doppelganger.
//! `COHORT_LODESTAR_DOPPELGANGER=0` turns protection off in the clusters' configs, for a quicker
//! run.
//!
//! At the end it prints the finality timeline and, per operator, what `/metrics` says about the
//! submission delay into the slot and failed duties per role, and every metric whose name
//! mentions the beacon node.
//!
//! Environment: `COHORT_BEACON_URL` (required), `COHORT_LODESTAR_LOG` (the log to grep; without
//! it the log check is skipped with a message), `COHORT_BIN` (the `cohort` binary to run;
//! default: `target/<profile>/cohort` next to this test, rebuilt through `$CARGO` under cargo),
//! `COHORT_LODESTAR_TEST_KEEP=1` (keep the cluster directories), `COHORT_LODESTAR_SCENARIOS`
//! (`1`, `2` or `1,2`, the default), `COHORT_LODESTAR_KEEP_GOING=1` (record failed block,
//! sync-aggregate and attestation checks and go on; fail at the end with all of them).
//!
//! `probe_lodestar_without_cohort` (ignored by default; `-- --ignored`) checks this test's own
//! machinery on a chain without Cohort: the committee decoding finds Lodestar's attestations,
//! and the proxy forwards and then refuses.

use serde_json::Value;
use std::{
    collections::{BTreeMap, BTreeSet},
    fs::File,
    io::{Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

const OPERATORS: usize = 4;
/// Cohort runs validators 6..15 of the 16 interop validators (`--validators 6..16`).
const COHORT_FIRST: u64 = 6;
const COHORT_END: u64 = 16;
const VALIDATORS_ARG: &str = "6..16";
/// `cluster init --fee-recipient`: the execution payload of every block Cohort proposes pays it
/// (Lodestar's engine mock takes the fee recipient from `prepare_beacon_proposer`).
const FEE_RECIPIENT: &str = "0x000000000000000000000000000000000000c0de";
/// The operator SIGKILLed in scenario 1.
const KILLED: usize = 3;

/// Whether the run checks doppelganger protection against Lodestar (unless
/// `COHORT_LODESTAR_DOPPELGANGER=0`).
fn doppelganger_checked() -> bool {
    std::env::var("COHORT_LODESTAR_DOPPELGANGER").map_or(true, |value| value != "0")
}

fn is_cohort(index: u64) -> bool {
    (COHORT_FIRST..COHORT_END).contains(&index)
}

#[test]
fn lodestar_chain_finalizes_because_of_cohort() {
    let Some(url) = std::env::var("COHORT_BEACON_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!(
            "SKIPPED: COHORT_BEACON_URL is not set. This test needs a Lodestar dev chain: run\n  \
             ./scripts/lodestar.sh cargo test -p cohort-tests --test lodestar -- --nocapture"
        );
        return;
    };
    let scenarios = std::env::var("COHORT_LODESTAR_SCENARIOS").unwrap_or_else(|_| "1,2".into());
    let beacon = Beacon::new(&url);
    let chain = Chain::read(&beacon);
    eprintln!(
        "beacon node {url}: {}, genesis {}, {} s slots, {} slots an epoch, now slot {}",
        beacon
            .get("/eth/v1/node/version")
            .map(|v| v["data"]["version"].to_string())
            .unwrap_or_default(),
        chain.genesis_time,
        chain.seconds_per_slot,
        chain.slots_per_epoch,
        chain.current_slot()
    );
    let log_start = lodestar_log_len();
    let _log_on_failure = LodestarLogOnFailure(log_start);
    let bin = cohort_binary();
    let monitor = Monitor::start(beacon.clone(), chain.clone());
    let started = Instant::now();
    let mut report = Report::default();

    if scenarios.contains('1') {
        scenario_one(&bin, &beacon, &chain, &monitor, &mut report);
    }
    if scenarios.contains('2') {
        scenario_two(&bin, &beacon, &chain, &monitor, &mut report);
    }
    monitor.stop();

    eprintln!("\n==== finality timeline (seconds since the test started) ====");
    for line in monitor.timeline() {
        eprintln!("  {line}");
    }
    for line in &report.lines {
        eprintln!("{line}");
    }
    check_lodestar_log(log_start);
    if !report.failures.is_empty() {
        panic!(
            "{} checks failed:\n{}",
            report.failures.len(),
            report.failures.join("\n")
        );
    }
    eprintln!(
        "[{:>6.1}s] done: every check held",
        started.elapsed().as_secs_f64()
    );
}

/// The test's own machinery against the chain alone (no Cohort): the attestations of Lodestar's
/// validators 0..5 are found in the blocks (committee decoding, the 1.5.1 committee labels),
/// the proposer duty poll covers every slot, and a request through the proxy works until the
/// proxy stops. It also shows the control: Cohort's slots are empty and nothing finalizes.
/// `./scripts/lodestar.sh cargo test -p cohort-tests --test lodestar -- --ignored --nocapture`
#[test]
#[ignore = "needs a Lodestar dev chain (scripts/lodestar.sh); checks the test's own machinery"]
fn probe_lodestar_without_cohort() {
    let Some(url) = std::env::var("COHORT_BEACON_URL").ok() else {
        eprintln!("SKIPPED: COHORT_BEACON_URL is not set");
        return;
    };
    let beacon = Beacon::new(&url);
    let chain = Chain::read(&beacon);
    let monitor = Monitor::start(beacon.clone(), chain.clone());
    let first = chain.current_epoch().max(1);
    let examined = examine_epochs(&beacon, &chain, &monitor, first, first, false);
    for line in &examined.lines {
        eprintln!("{line}");
    }
    for problem in &examined.problems {
        eprintln!("  (expected without Cohort) {problem}");
    }
    let lodestar: BTreeSet<u64> = examined.attested.iter().map(|(v, _)| *v).collect();
    eprintln!("validators with an attestation included for epoch {first}: {lodestar:?}");
    // Without Cohort most slots are empty, and not every attestation of 0..5 makes it into a
    // block; those that are found must be Lodestar's.
    assert!(
        !lodestar.is_empty(),
        "no attestation of Lodestar's validators 0..5 was found: the committee decoding is wrong"
    );
    assert!(
        lodestar.iter().all(|v| !is_cohort(*v)),
        "attestations of Cohort's validators without Cohort: {lodestar:?}"
    );
    let finality = beacon.finality().expect("finality checkpoints");
    eprintln!(
        "epoch {}: justified {}, finalized {}",
        chain.current_epoch(),
        finality.justified,
        finality.finalized
    );
    let proxy = Proxy::start(&url);
    let through = Beacon::new(&format!("http://{}", proxy.address));
    through
        .get("/eth/v1/node/version")
        .expect("a request through the proxy");
    assert_eq!(proxy.stop(), 1, "connections forwarded");
    assert!(through.get("/eth/v1/node/version").is_err());
}

/// One beacon node; finality, a SIGKILL, blocks, sync committee, attestations.
fn scenario_one(
    bin: &Path,
    beacon: &Beacon,
    chain: &Chain,
    monitor: &Monitor,
    report: &mut Report,
) {
    eprintln!("\n==== scenario 1: one beacon node per operator ====");
    let started = Instant::now();
    let mut cluster = Cluster::init(bin, "one-node", std::slice::from_ref(&beacon.url));
    for i in 0..OPERATORS {
        cluster.start(i);
    }
    let first_epoch = chain.current_epoch();
    cluster.wait_all_ready(chain.epoch() * 2 + Duration::from_secs(60));
    // Doppelganger protection (on by default with beacon nodes) holds every signature until
    // Lodestar's liveness answers clear the validators.
    if doppelganger_checked() {
        let cleared_in = cluster.wait_doppelganger_cleared(chain);
        report.push(format!(
            "scenario 1: doppelganger protection cleared Cohort's validators in epoch \
             {cleared_in} (cluster started in epoch {first_epoch})"
        ));
    }
    // Warm-up: the epoch in which every operator became ready; checks start at the next one.
    let from_epoch = chain.current_epoch() + 1;
    eprintln!(
        "[{:>6.1}s] every operator ready (cluster started in epoch {first_epoch}); checks from epoch {from_epoch} on (one epoch of warm-up)",
        started.elapsed().as_secs_f64()
    );

    let finality_timeout = chain.epoch() * 12;
    let finalized = wait_until(
        "the chain finalizes epoch 2 or later",
        finality_timeout,
        || {
            let f = beacon.finality()?;
            if f.finalized >= 2 {
                Ok(f.finalized)
            } else {
                Err(format!(
                    "finalized {}, justified {} at slot {}",
                    f.finalized,
                    f.justified,
                    chain.current_slot()
                ))
            }
        },
        &cluster,
    );
    report.push(format!(
        "scenario 1: finalized epoch {finalized} {:.1} s after the cluster started ({} s slots)",
        started.elapsed().as_secs_f64(),
        chain.seconds_per_slot
    ));
    eprintln!(
        "[{:>6.1}s] finalized epoch {finalized}",
        started.elapsed().as_secs_f64()
    );
    cluster.report_metrics(report, "scenario 1, all four operators");

    // The calm epochs before the kill (those whose inclusion window has passed): proposals,
    // sync aggregates, attestations.
    let calm_last = chain.current_epoch().saturating_sub(2);
    if calm_last >= from_epoch {
        check_epochs(
            beacon, chain, monitor, from_epoch, calm_last, &cluster, report, true,
        );
    }

    cluster.sigkill(KILLED);
    let killed = Instant::now();
    let kill_slot = chain.current_slot();
    let kill_epoch = kill_slot / chain.slots_per_epoch;
    eprintln!(
        "[{:>6.1}s] operator {KILLED} SIGKILLed in epoch {kill_epoch}",
        started.elapsed().as_secs_f64()
    );
    let at_kill = beacon.finality().map(|f| f.finalized).unwrap_or(finalized);
    let target = at_kill + 2;
    let after = wait_until(
        &format!("finality advances to epoch {target} with operator {KILLED} killed"),
        chain.epoch() * 10,
        || {
            let f = beacon.finality()?;
            if f.finalized >= target {
                Ok(f.finalized)
            } else {
                Err(format!(
                    "finalized {}, justified {}",
                    f.finalized, f.justified
                ))
            }
        },
        &cluster,
    );
    report.push(format!(
        "scenario 1: finalized epoch {after} with three operators, {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    ));
    // The epoch of the kill: blocks and sync aggregates must hold (three of four operators are
    // a quorum), attestations are only reported (one may have been in flight in the killed
    // process). The two epochs after it: everything.
    // The epoch of the kill: a block missing from the slot of the kill to the epoch's end is
    // reported, not failed (a proposal in flight in the killed process, and views led by the
    // killed operator time out: at 4 s slots one cost a proposal 3 slots after the kill);
    // attestations are only reported. The two epochs after it: everything, strictly.
    check_epochs_tolerating(
        beacon,
        chain,
        monitor,
        (kill_epoch, kill_epoch),
        &cluster,
        report,
        false,
        Some((kill_slot, (kill_epoch + 1) * chain.slots_per_epoch - 1)),
    );
    check_epochs(
        beacon,
        chain,
        monitor,
        kill_epoch + 1,
        kill_epoch + 2,
        &cluster,
        report,
        true,
    );
    cluster.report_metrics(report, "scenario 1, end");
    cluster.stop();
    eprintln!(
        "[{:>6.1}s] scenario 1 done ({} failed checks recorded so far)",
        started.elapsed().as_secs_f64(),
        report.failures.len()
    );
}

/// Two beacon nodes, the first a proxy stopped mid-run: no duty missed because of it.
fn scenario_two(
    bin: &Path,
    beacon: &Beacon,
    chain: &Chain,
    monitor: &Monitor,
    report: &mut Report,
) {
    eprintln!("\n==== scenario 2: two beacon nodes per operator, the first stopped mid-run ====");
    // A new cluster for the same validators: wait for an epoch the first cluster signed nothing
    // in (it stopped in the current one).
    let begin = chain.current_epoch() + 1;
    chain.sleep_until_slot(begin * chain.slots_per_epoch);
    let started = Instant::now();
    let proxy = Proxy::start(&beacon.url);
    let proxy_url = format!("http://{}", proxy.address);
    eprintln!("proxy {proxy_url} -> {}", beacon.url);
    let mut cluster = Cluster::init(bin, "two-nodes", &[proxy_url, beacon.url.clone()]);
    for i in 0..OPERATORS {
        cluster.start(i);
    }
    cluster.wait_all_ready(chain.epoch() * 2 + Duration::from_secs(60));
    if doppelganger_checked() {
        let cleared_in = cluster.wait_doppelganger_cleared(chain);
        report.push(format!(
            "scenario 2: doppelganger protection cleared Cohort's validators in epoch \
             {cleared_in} (cluster started in epoch {begin})"
        ));
    }
    let from_epoch = chain.current_epoch() + 1;
    // A full epoch with both nodes up, then the proxy stops in the middle of the next one.
    chain.sleep_until_slot((from_epoch + 1) * chain.slots_per_epoch + chain.slots_per_epoch / 2);
    let before_stop = cluster.failed_duties();
    let forwarded = proxy.stop();
    let stop_epoch = chain.current_epoch();
    eprintln!(
        "[{:>6.1}s] proxy stopped in epoch {stop_epoch} (slot {}) after forwarding {forwarded} connections",
        started.elapsed().as_secs_f64(),
        chain.current_slot()
    );
    if forwarded == 0 {
        panic!("no operator used the first beacon node (the proxy) before it was stopped");
    }
    // Two full epochs after the stop, and their inclusion window.
    let last = stop_epoch + 2;
    chain.sleep_until_slot((last + 2) * chain.slots_per_epoch + 1);
    check_epochs(
        beacon, chain, monitor, from_epoch, last, &cluster, report, true,
    );
    let after_stop = cluster.failed_duties();
    let delta: BTreeMap<String, f64> = after_stop
        .iter()
        .map(|(role, n)| {
            (
                role.clone(),
                n - before_stop.get(role).copied().unwrap_or(0.0),
            )
        })
        .filter(|(_, n)| *n > 0.0)
        .collect();
    report.push(format!(
        "scenario 2: duties failed or missed (operator_runner_duties_failed_total, all operators) after the proxy stopped: {delta:?}"
    ));
    cluster.report_metrics(report, "scenario 2, end");
    cluster.stop();
    eprintln!(
        "[{:>6.1}s] scenario 2 done ({} failed checks recorded so far)",
        started.elapsed().as_secs_f64(),
        report.failures.len()
    );
}

/// Epochs `first..=last`: every slot with a Cohort proposer has a block, the blocks' sync
/// aggregates include Cohort's positions, and every Cohort validator's attestation of each epoch
/// is in a block. Waits until `last`'s inclusion window (the next epoch) has passed.
#[allow(clippy::too_many_arguments)]
fn check_epochs(
    beacon: &Beacon,
    chain: &Chain,
    monitor: &Monitor,
    first: u64,
    last: u64,
    cluster: &Cluster,
    report: &mut Report,
    strict: bool,
) {
    check_epochs_tolerating(
        beacon,
        chain,
        monitor,
        (first, last),
        cluster,
        report,
        strict,
        None,
    );
}

/// [`check_epochs`], with a missing block in the slots `tolerated` (first, last) reported
/// rather than failed.
#[allow(clippy::too_many_arguments)]
fn check_epochs_tolerating(
    beacon: &Beacon,
    chain: &Chain,
    monitor: &Monitor,
    (first, last): (u64, u64),
    cluster: &Cluster,
    report: &mut Report,
    strict: bool,
    tolerated: Option<(u64, u64)>,
) {
    let mut examined = examine_epochs(beacon, chain, monitor, first, last, strict);
    if let Some((from, to)) = tolerated {
        let (kept, forgiven): (Vec<String>, Vec<String>) =
            examined.problems.into_iter().partition(|problem| {
                !problem
                    .strip_prefix("slot ")
                    .and_then(|rest| rest.split(':').next()?.parse::<u64>().ok())
                    .is_some_and(|slot| (from..=to).contains(&slot))
            });
        for problem in forgiven {
            examined.lines.push(format!(
                "tolerated (the kill, slots {from}..={to}): {problem}"
            ));
        }
        examined.problems = kept;
    }
    for line in &examined.lines {
        eprintln!("  {line}");
    }
    report.lines.extend(examined.lines);
    if !examined.problems.is_empty() {
        let message = format!(
            "epochs {first}..={last}:\n  {}",
            examined.problems.join("\n  ")
        );
        if keep_going() {
            eprintln!("FAILED (COHORT_LODESTAR_KEEP_GOING: the test goes on) {message}");
            report.failures.push(message);
            return;
        }
        for line in &report.lines {
            eprintln!("{line}");
        }
        cluster.fail(&message);
    }
}

/// `COHORT_LODESTAR_KEEP_GOING=1`: a failed check of blocks, sync aggregates or attestations is
/// recorded and the test goes on to its later phases (the kill, the second scenario); it fails
/// at the end with every failure. Finality timeouts still stop it.
fn keep_going() -> bool {
    std::env::var_os("COHORT_LODESTAR_KEEP_GOING").is_some_and(|v| v == "1")
}

/// What [`examine_epochs`] found.
struct Examined {
    /// What fails the test.
    problems: Vec<String>,
    /// What the report says.
    lines: Vec<String>,
    /// (validator, epoch) of every attestation included in a block of the epochs examined.
    attested: BTreeSet<(u64, u64)>,
}

fn examine_epochs(
    beacon: &Beacon,
    chain: &Chain,
    monitor: &Monitor,
    first: u64,
    last: u64,
    strict: bool,
) -> Examined {
    chain.sleep_until_slot((last + 2) * chain.slots_per_epoch + 1);
    let mut report = Report::default();
    let spe = chain.slots_per_epoch;
    let mut problems = Vec::new();
    // Proposals in the epochs examined; the blocks of the next epoch too, for the attestations
    // they include.
    let duties = monitor.proposers();
    let (mut cohort_slots, mut cohort_blocks) = (0, 0);
    let mut blocks = BTreeMap::new();
    for slot in first * spe..(last + 2) * spe {
        let examined = slot < (last + 1) * spe;
        let header = beacon.get_status(&format!("/eth/v1/beacon/headers/{slot}"));
        let proposer = duties.get(&slot).copied();
        let cohorts = proposer.is_some_and(is_cohort);
        if examined && cohorts {
            cohort_slots += 1;
        }
        match header {
            Ok((200, h)) => {
                let by = num(&h["data"]["header"]["message"]["proposer_index"]);
                if examined && cohorts {
                    cohort_blocks += 1;
                    if by != proposer {
                        problems.push(format!(
                            "slot {slot}: the proposer duty says {proposer:?}, the block is by {by:?}"
                        ));
                    }
                }
                let root = h["data"]["root"].as_str().unwrap_or("").to_string();
                blocks.insert(slot, (root, examined));
            }
            Ok((404, _)) if examined && cohorts => problems.push(format!(
                "slot {slot}: no block, and its proposer {} is Cohort's",
                proposer.unwrap_or_default()
            )),
            Ok((404, _)) if examined && proposer.is_none() => problems.push(format!(
                "slot {slot}: no block, and no proposer duty was seen for it (the duty poll missed the epoch)"
            )),
            Ok((404, _)) => {}
            Ok((status, body)) => problems.push(format!("slot {slot}: header {status} {body}")),
            Err(err) => problems.push(format!("slot {slot}: {err}")),
        }
    }
    // Sync aggregates: positions of Cohort's validators in the sync committee of the head state.
    let committee: Vec<u64> = beacon
        .get("/eth/v1/beacon/states/head/sync_committees")
        .ok()
        .and_then(|v| {
            v["data"]["validators"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_str()?.parse().ok()).collect())
        })
        .unwrap_or_default();
    let cohort_positions: Vec<usize> = (0..committee.len())
        .filter(|p| is_cohort(committee[*p]))
        .collect();
    let (mut set, mut possible) = (0usize, 0usize);
    let mut per_validator: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
    let mut attested: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut committees: BTreeMap<u64, BTreeMap<(u64, u64), Vec<u64>>> = BTreeMap::new();
    for epoch in first..=last + 1 {
        if let Some(c) = monitor.committees(epoch) {
            committees.insert(epoch, c);
            continue;
        }
        match beacon.committees(epoch, spe) {
            Ok(c) if !c.is_empty() => {
                committees.insert(epoch, c);
            }
            Ok(_) => problems.push(format!("no committees for epoch {epoch}")),
            Err(err) => problems.push(format!("committees of epoch {epoch}: {err}")),
        }
    }
    for (slot, (root, examined)) in &blocks {
        let Ok(block) = beacon.get(&format!("/eth/v2/beacon/blocks/{root}")) else {
            problems.push(format!("slot {slot}: block {root} could not be read"));
            continue;
        };
        let body = &block["data"]["message"]["body"];
        let proposer = num(&block["data"]["message"]["proposer_index"]);
        if *examined && proposer.is_some_and(is_cohort) {
            let paid = body["execution_payload"]["fee_recipient"]
                .as_str()
                .unwrap_or("")
                .to_ascii_lowercase();
            if paid != FEE_RECIPIENT {
                problems.push(format!(
                    "slot {slot}: validator {}'s block pays {paid}, not the configured {FEE_RECIPIENT}",
                    proposer.unwrap_or_default()
                ));
            }
        }
        if let Some(bits) = body["sync_aggregate"]["sync_committee_bits"]
            .as_str()
            .and_then(hex_bytes)
            .filter(|_| *examined)
        {
            for &p in &cohort_positions {
                let on = bits.get(p / 8).is_some_and(|b| b >> (p % 8) & 1 == 1);
                possible += 1;
                let entry = per_validator.entry(committee[p]).or_default();
                entry.1 += 1;
                if on {
                    set += 1;
                    entry.0 += 1;
                }
            }
        }
        for attestation in body["attestations"].as_array().into_iter().flatten() {
            let data = &attestation["data"];
            let (Some(aslot), Some(index)) = (num(&data["slot"]), num(&data["index"])) else {
                continue;
            };
            let epoch = aslot / spe;
            let Some(members) = committees.get(&epoch).and_then(|c| c.get(&(aslot, index))) else {
                continue;
            };
            let Some(bits) = attestation["aggregation_bits"].as_str().and_then(hex_bytes) else {
                continue;
            };
            for (i, validator) in members.iter().enumerate() {
                if bits.get(i / 8).is_some_and(|b| b >> (i % 8) & 1 == 1) {
                    attested.insert((*validator, epoch));
                }
            }
        }
    }
    let rate = if possible == 0 {
        0.0
    } else {
        set as f64 / possible as f64
    };
    report.push(format!(
        "epochs {first}..={last}: {} blocks; Cohort's proposers: {cohort_blocks} blocks in {cohort_slots} slots; sync aggregates: Cohort's {} positions (of {}) set {set}/{possible} ({:.0}%), per validator (set, blocks) {per_validator:?}",
        blocks.values().filter(|(_, examined)| *examined).count(),
        cohort_positions.len(),
        committee.len(),
        rate * 100.0
    ));
    if cohort_positions.is_empty() {
        problems.push("no Cohort validator in the sync committee".into());
    } else if rate < 0.5 {
        problems.push(format!(
            "Cohort's sync committee positions are set in only {set} of {possible} cases"
        ));
    }
    for (validator, (on, of)) in &per_validator {
        if *on == 0 {
            problems.push(format!(
                "validator {validator}'s sync committee position is set in none of {of} blocks"
            ));
        }
    }
    let mut missing = Vec::new();
    for epoch in first..=last {
        for validator in COHORT_FIRST..COHORT_END {
            if !attested.contains(&(validator, epoch)) {
                missing.push(format!("{validator}@{epoch}"));
            }
        }
    }
    report.push(format!(
        "epochs {first}..={last}: Cohort attestations included {}/{} (missing: {missing:?})",
        (last - first + 1) * (COHORT_END - COHORT_FIRST) - missing.len() as u64,
        (last - first + 1) * (COHORT_END - COHORT_FIRST)
    ));
    if strict && !missing.is_empty() {
        problems.push(format!("attestations never included: {missing:?}"));
    }
    Examined {
        problems,
        lines: report.lines,
        attested,
    }
}

fn num(v: &Value) -> Option<u64> {
    v.as_str()?.parse().ok()
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    let s = s.strip_prefix("0x")?;
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

#[derive(Default)]
struct Report {
    lines: Vec<String>,
    /// Failed checks recorded under `COHORT_LODESTAR_KEEP_GOING=1`.
    failures: Vec<String>,
}

impl Report {
    fn push(&mut self, line: String) {
        self.lines.push(line);
    }
}

/// Polls `check` every second until it gives a value or `timeout` passes (then fails, with the
/// last reason and the operators' log tails).
fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
    cluster: &Cluster,
) -> T {
    let deadline = Instant::now() + timeout;
    let mut next_print = Instant::now();
    loop {
        let last = match check() {
            Ok(value) => return value,
            Err(why) => why,
        };
        if Instant::now() >= deadline {
            cluster.fail(&format!(
                "timed out after {timeout:?} waiting until {what}: {last}"
            ));
        }
        if Instant::now() >= next_print {
            eprintln!("  waiting until {what}: {last}");
            next_print = Instant::now() + Duration::from_secs(30);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

// ---- the chain's clock ----

#[derive(Clone)]
struct Chain {
    genesis_time: u64,
    seconds_per_slot: u64,
    slots_per_epoch: u64,
}

impl Chain {
    fn read(beacon: &Beacon) -> Self {
        let genesis = beacon
            .get("/eth/v1/beacon/genesis")
            .expect("GET /eth/v1/beacon/genesis");
        let spec = beacon
            .get("/eth/v1/config/spec")
            .expect("GET /eth/v1/config/spec");
        let field = |v: &Value, k: &str| -> u64 {
            num(&v["data"][k]).unwrap_or_else(|| panic!("no {k} in {v}"))
        };
        Chain {
            genesis_time: field(&genesis, "genesis_time"),
            seconds_per_slot: field(&spec, "SECONDS_PER_SLOT"),
            slots_per_epoch: field(&spec, "SLOTS_PER_EPOCH"),
        }
    }

    fn now(&self) -> f64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }

    fn current_slot(&self) -> u64 {
        ((self.now() - self.genesis_time as f64).max(0.0) / self.seconds_per_slot as f64) as u64
    }

    fn current_epoch(&self) -> u64 {
        self.current_slot() / self.slots_per_epoch
    }

    fn epoch(&self) -> Duration {
        Duration::from_secs(self.seconds_per_slot * self.slots_per_epoch)
    }

    fn sleep_until_slot(&self, slot: u64) {
        let at = (self.genesis_time + slot * self.seconds_per_slot) as f64;
        let left = at - self.now();
        if left > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(left));
        }
    }
}

// ---- the monitor: proposer duties and the finality timeline ----

#[derive(Default)]
struct Seen {
    /// slot -> proposer, from current-epoch proposer duties fetched during that epoch (Lodestar
    /// 1.5.1 answers the next epoch's request with the current epoch's slots).
    proposers: BTreeMap<u64, u64>,
    /// epoch -> its committees, fetched during that epoch: Lodestar 1.5.1 answers committees
    /// only for the head state's previous, current and next epoch, and keeps no older states
    /// once they are finalized.
    committees: BTreeMap<u64, BTreeMap<(u64, u64), Vec<u64>>>,
    timeline: Vec<String>,
    last: Option<(u64, u64)>,
}

struct Monitor {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Monitor {
    fn start(beacon: Beacon, chain: Chain) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let epoch = chain.current_epoch();
                    // Lodestar's clock turns the epoch up to 0.5 s early and then refuses the
                    // old one: no poll in the epoch's last second (it would only add errors to
                    // its log).
                    let epoch_ends = (chain.genesis_time
                        + (epoch + 1) * chain.slots_per_epoch * chain.seconds_per_slot)
                        as f64;
                    if epoch_ends - chain.now() > 1.0
                        && let Ok(duties) =
                            beacon.get(&format!("/eth/v1/validator/duties/proposer/{epoch}"))
                        && chain.current_epoch() == epoch
                    {
                        let mut seen = seen.lock().unwrap();
                        for duty in duties["data"].as_array().into_iter().flatten() {
                            if let (Some(slot), Some(index)) =
                                (num(&duty["slot"]), num(&duty["validator_index"]))
                                && slot / chain.slots_per_epoch == epoch
                            {
                                seen.proposers.insert(slot, index);
                            }
                        }
                    }
                    let known = seen.lock().unwrap().committees.contains_key(&epoch);
                    if !known
                        && let Ok(committees) = beacon.committees(epoch, chain.slots_per_epoch)
                        && !committees.is_empty()
                    {
                        seen.lock().unwrap().committees.insert(epoch, committees);
                    }
                    if let Ok(f) = beacon.finality() {
                        let mut seen = seen.lock().unwrap();
                        if seen.last != Some((f.justified, f.finalized)) {
                            seen.last = Some((f.justified, f.finalized));
                            let line = format!(
                                "{:>6.1}s  slot {:>4} (epoch {:>3}): justified {:>3}, finalized {:>3}",
                                started.elapsed().as_secs_f64(),
                                chain.current_slot(),
                                chain.current_epoch(),
                                f.justified,
                                f.finalized
                            );
                            eprintln!("  finality: {line}");
                            seen.timeline.push(line);
                        }
                    }
                    std::thread::sleep(Duration::from_secs(chain.seconds_per_slot.max(1)) / 2);
                }
            })
        };
        Monitor {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn proposers(&self) -> BTreeMap<u64, u64> {
        self.seen.lock().unwrap().proposers.clone()
    }

    fn committees(&self, epoch: u64) -> Option<BTreeMap<(u64, u64), Vec<u64>>> {
        self.seen.lock().unwrap().committees.get(&epoch).cloned()
    }

    fn timeline(&self) -> Vec<String> {
        self.seen.lock().unwrap().timeline.clone()
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---- Lodestar's REST API ----

#[derive(Clone)]
struct Beacon {
    url: String,
    address: SocketAddr,
}

struct Finality {
    justified: u64,
    finalized: u64,
}

impl Beacon {
    fn new(url: &str) -> Self {
        let hostport = url
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("COHORT_BEACON_URL must be http://HOST:PORT, not {url}"))
            .trim_end_matches('/');
        let address = hostport
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| panic!("cannot resolve {hostport}"));
        Beacon {
            url: url.trim_end_matches('/').to_string(),
            address,
        }
    }

    fn get_status(&self, path: &str) -> Result<(u16, Value), String> {
        let (status, body) = http(self.address, "GET", path, None)?;
        let json = serde_json::from_str(&body).unwrap_or(Value::String(body));
        Ok((status, json))
    }

    fn get(&self, path: &str) -> Result<Value, String> {
        match self.get_status(path)? {
            (200, json) => Ok(json),
            (status, json) => Err(format!("GET {path}: {status} {json}")),
        }
    }

    fn finality(&self) -> Result<Finality, String> {
        let v = self.get("/eth/v1/beacon/states/head/finality_checkpoints")?;
        let epoch = |k: &str| num(&v["data"][k]["epoch"]).ok_or(format!("no {k} in {v}"));
        Ok(Finality {
            justified: epoch("current_justified")?,
            finalized: epoch("finalized")?,
        })
    }

    /// (slot, committee index) -> validators of `epoch`'s committees, from the head state (or the
    /// state at the epoch's first slot, which Lodestar no longer has once it is finalized).
    fn committees(
        &self,
        epoch: u64,
        slots_per_epoch: u64,
    ) -> Result<BTreeMap<(u64, u64), Vec<u64>>, String> {
        let slot = epoch * slots_per_epoch;
        let v = self
            .get(&format!(
                "/eth/v1/beacon/states/head/committees?epoch={epoch}"
            ))
            .or_else(|_| {
                self.get(&format!(
                    "/eth/v1/beacon/states/{slot}/committees?epoch={epoch}"
                ))
            })?;
        let entries: Vec<(u64, u64, Vec<u64>)> = v["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                let members = c["validators"].as_array()?.iter().filter_map(num).collect();
                Some((num(&c["slot"])?, num(&c["index"])?, members))
            })
            .collect();
        // Lodestar 1.5.1 labels them the wrong way round: its "index" is the slot's position in
        // the epoch and its "slot" the committee index. For an epoch after 0 every real slot is
        // at least SLOTS_PER_EPOCH, so that form is recognised (and a fixed release still works).
        let swapped = epoch > 0 && entries.iter().all(|(slot, _, _)| *slot < slots_per_epoch);
        Ok(entries
            .into_iter()
            .map(|(slot, index, members)| {
                if swapped {
                    ((epoch * slots_per_epoch + index, slot), members)
                } else {
                    ((slot, index), members)
                }
            })
            .collect())
    }
}

/// A plain HTTP/1.1 request with `Connection: close`; the status and body.
fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    let fail = |err: std::io::Error| format!("{method} http://{address}{path}: {err}");
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).map_err(fail)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(fail)?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(fail)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(fail)?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} {path}: no header end"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("{method} {path}: bad status line in {head:?}"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    Ok((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    ))
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

// ---- Lodestar's log ----

fn lodestar_log_len() -> usize {
    std::env::var_os("COHORT_LODESTAR_LOG")
        .and_then(|p| std::fs::read(p).ok())
        .map(|b| b.len())
        .unwrap_or(0)
}

/// The REST API's operations that take a submission from a validator client.
const SUBMISSIONS: [&str; 10] = [
    "submitPoolAttestations",
    "publishAggregateAndProofs",
    "publishContributionAndProofs",
    "submitPoolSyncCommitteeSignatures",
    "publishBlock",
    "publishBlindedBlock",
    "prepareBeaconProposer",
    "prepareBeaconCommitteeSubnet",
    "prepareSyncCommitteeSubnets",
    "registerValidator",
];

/// Fails on every error line of Lodestar's log (since `from`) about a submission, except
/// duplicates; reports the duplicates and the other failed REST requests.
fn check_lodestar_log(from: usize) {
    let Some(rejected) = summarize_lodestar_log(from) else {
        return;
    };
    if !rejected.is_empty() {
        panic!(
            "Lodestar rejected {} submissions:\n  {}",
            rejected.len(),
            rejected.join("\n  ")
        );
    }
    eprintln!("  rejected submissions: none");
}

/// Prints what Lodestar's log says since `from` (duplicates and failed reads counted by
/// operation, with an example each) and returns the rejected submissions; None without a log.
fn summarize_lodestar_log(from: usize) -> Option<Vec<String>> {
    let Some(path) = std::env::var_os("COHORT_LODESTAR_LOG") else {
        eprintln!("COHORT_LODESTAR_LOG is not set: Lodestar's log is not checked");
        return None;
    };
    let bytes = std::fs::read(&path).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes[from.min(bytes.len())..]).into_owned();
    let (rejected, duplicates, other) = classify_log(&text);
    eprintln!(
        "\n==== Lodestar's log ({}) ====",
        PathBuf::from(&path).display()
    );
    for (what, entries) in [
        (
            "duplicate submissions (a copy of an object the node already has)",
            &duplicates,
        ),
        ("other failed REST requests", &other),
    ] {
        let mut by_operation: BTreeMap<String, (usize, &String)> = BTreeMap::new();
        for entry in entries {
            // "Req req-1 submitPoolAttestations error ..." or "Error on submitPoolAttestations [0]".
            let operation = entry
                .split_once("Req ")
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .or_else(|| {
                    entry
                        .split_once("Error on ")
                        .and_then(|(_, rest)| rest.split_whitespace().next())
                })
                .unwrap_or("?")
                .to_string();
            by_operation.entry(operation).or_insert((0, entry)).0 += 1;
        }
        eprintln!("  {what}: {}", entries.len());
        for (operation, (count, example)) in by_operation {
            eprintln!("    {operation}: {count}, e.g. {example}");
        }
    }
    Some(rejected)
}

/// On a failing test, what Lodestar's log says (rejected submissions listed, not failed on).
struct LodestarLogOnFailure(usize);

impl Drop for LodestarLogOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(rejected) = summarize_lodestar_log(self.0)
        {
            eprintln!("  rejected submissions: {}", rejected.len());
            for line in rejected.iter().take(30) {
                eprintln!("    {line}");
            }
        }
    }
}

/// (rejected submissions, duplicates, other REST errors) among the error entries of a Lodestar
/// log (ANSI colours removed). An entry is a line that starts with `Eph ` and the lines after it
/// that do not (an error's further messages and stack). A submission entry is a duplicate when
/// every error code in it says the node already has the object (`..._ALREADY_KNOWN`,
/// `PRIOR_ATTESTATION_KNOWN`, gossip's `Duplicate`).
fn classify_log(text: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut rejected, mut duplicates, mut other) = (Vec::new(), Vec::new(), Vec::new());
    let mut entries: Vec<Vec<String>> = Vec::new();
    for raw in text.lines() {
        let line = strip_ansi(raw);
        if line.starts_with("Eph ") || entries.is_empty() {
            entries.push(vec![line]);
        } else if let Some(entry) = entries.last_mut()
            && !line.trim_start().starts_with("at ")
        {
            entry.push(line);
        }
    }
    for entry in entries {
        let head = &entry[0];
        if !head.contains("error:") {
            continue;
        }
        // The event stream logs errors for each client disconnect: harmless.
        if head.contains("eventstream error") || head.contains("Cannot write headers") {
            continue;
        }
        let text = entry.join(" | ");
        let submission = SUBMISSIONS.iter().any(|op| head.contains(op));
        let codes: Vec<&str> = text
            .split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .filter(|word| word.contains("_ERROR_"))
            .collect();
        let is_duplicate = |code: &str| {
            code.ends_with("ALREADY_KNOWN") || code.ends_with("PRIOR_ATTESTATION_KNOWN")
        };
        let duplicate = if codes.is_empty() {
            text.contains("Duplicate")
        } else {
            codes.iter().all(|code| is_duplicate(code))
        };
        let short: String = text.chars().take(500).collect();
        if submission && duplicate {
            duplicates.push(short);
        } else if submission {
            rejected.push(short);
        } else if head.contains("[rest]") {
            other.push(short);
        }
    }
    (rejected, duplicates, other)
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The upper bound of the first bucket holding the `q` quantile of a histogram's (bound,
/// cumulative count) buckets in ascending bounds; `None` if it has no observations.
fn bucket_quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    buckets
        .iter()
        .find(|(_, cumulative)| *cumulative >= q * total)
        .map(|(bound, _)| *bound)
}

#[test]
fn a_histograms_quantile_is_the_bound_of_the_bucket_that_holds_it() {
    let buckets = [(0.1, 2.0), (0.2, 6.0), (0.4, 9.0), (f64::INFINITY, 10.0)];
    assert_eq!(bucket_quantile(&buckets, 0.5), Some(0.2));
    assert_eq!(bucket_quantile(&buckets, 0.9), Some(0.4));
    assert_eq!(bucket_quantile(&buckets, 1.0), Some(f64::INFINITY));
    assert_eq!(bucket_quantile(&buckets, 0.1), Some(0.1));
    assert_eq!(
        bucket_quantile(&[(0.1, 0.0), (f64::INFINITY, 0.0)], 0.5),
        None
    );
}

#[test]
fn lodestar_log_lines_are_classified() {
    let log = "\
Eph 4/0 1.524[rest]            \u{1b}[31merror\u{1b}[39m: Req req-f8 eventstream error  aborted
Eph 5/1 1.2[api]               error: Error on submitPoolAttestations [0] slot=41, index=0 ATTESTATION_ERROR_INVALID_SIGNATURE
Eph 5/1 1.2[rest]              error: Req req-1 submitPoolAttestations error  ATTESTATION_ERROR_INVALID_SIGNATURE
Eph 5/1 1.3[api]               error: Error on submitPoolAttestations [0] slot=41, index=0 ATTESTATION_ERROR_PRIOR_ATTESTATION_KNOWN
Eph 5/2 0.1[rest]              error: Req req-2 getAggregatedAttestation error  No attestation for slot=41
Eph 5/2 0.1[]                  info: Published block slot=42
Eph 5/3 0.2[rest]              error: Req req-3 submitPoolAttestations error  Multiple errors on submitPoolAttestations
ATTESTATION_ERROR_ATTESTATION_ALREADY_KNOWN
ATTESTATION_ERROR_ATTESTATION_ALREADY_KNOWN
Error: Multiple errors on submitPoolAttestations
    at Object.submitPoolAttestations (file:///x/pool/index.ts:51:7)
Eph 5/3 0.3[rest]              error: Req req-4 submitPoolAttestations error  Multiple errors on submitPoolAttestations
ATTESTATION_ERROR_ATTESTATION_ALREADY_KNOWN
ATTESTATION_ERROR_INVALID_SIGNATURE
Eph 5/3 0.4[rest]              error: Req req-5 submitPoolAttestations error  code=ATTESTATION_ERROR_ATTESTATION_ALREADY_KNOWN, targetEpoch=10, validatorIndex=5
    at Object.submitPoolAttestations (file:///x/pool/index.ts:51:7)
";
    let (rejected, duplicates, other) = classify_log(log);
    assert_eq!(rejected.len(), 3, "{rejected:?}");
    assert!(rejected[2].contains("INVALID_SIGNATURE"), "{rejected:?}");
    assert_eq!(duplicates.len(), 3, "{duplicates:?}");
    assert_eq!(other.len(), 1, "{other:?}");
    assert!(other[0].contains("getAggregatedAttestation"));
}

// ---- a TCP proxy: a second "beacon node" that can be stopped ----

struct Proxy {
    address: SocketAddr,
    stopped: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
    forwarded: Arc<Mutex<usize>>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `url`'s address.
    fn start(url: &str) -> Self {
        let upstream = Beacon::new(url).address;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let address = listener.local_addr().expect("the proxy's address");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let stopped = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let forwarded = Arc::new(Mutex::new(0));
        let thread = {
            let (stopped, connections, forwarded) =
                (stopped.clone(), connections.clone(), forwarded.clone());
            std::thread::spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    let client = match listener.accept() {
                        Ok((client, _)) => client,
                        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10));
                            continue;
                        }
                        Err(_) => continue,
                    };
                    let _ = client.set_nonblocking(false);
                    let Ok(server) = TcpStream::connect(upstream) else {
                        continue;
                    };
                    *forwarded.lock().unwrap() += 1;
                    if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) {
                        let mut open = connections.lock().unwrap();
                        open.retain(|s: &TcpStream| s.peer_addr().is_ok());
                        open.push(c);
                        open.push(s);
                    }
                    pipe(&client, &server);
                    pipe(&server, &client);
                }
                // Dropping the listener closes the port: connections are refused from now on.
            })
        };
        Proxy {
            address,
            stopped,
            connections,
            forwarded,
            thread: Some(thread),
        }
    }

    /// Closes the port and every open connection; the connections forwarded so far.
    fn stop(mut self) -> usize {
        self.stopped.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        for stream in self.connections.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let n = *self.forwarded.lock().unwrap();
        // The port must refuse connections now.
        assert!(
            TcpStream::connect_timeout(&self.address, Duration::from_secs(1)).is_err(),
            "the stopped proxy still accepts connections"
        );
        n
    }
}

/// Copies `from` to `to` on a thread until either side closes.
fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}

// ---- the binary ----

/// `$COHORT_BIN`, or `target/<profile>/cohort` next to this test's executable, built first when
/// the test runs under cargo (a no-op when it is up to date).
fn cohort_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("COHORT_BIN") {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "COHORT_BIN={} does not exist", bin.display());
        return bin;
    }
    let exe = std::env::current_exe().expect("the test's own path");
    let deps = exe.parent().expect("the test executable's directory");
    let profile_dir = if deps.file_name().is_some_and(|name| name == "deps") {
        deps.parent().expect("target/<profile>")
    } else {
        deps
    };
    let bin = profile_dir.join("cohort");
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
        if let Some(target) = profile_dir.parent() {
            build.env("CARGO_TARGET_DIR", target);
        }
        // As in devnet.rs: without this package's CARGO_* variables, so that build scripts that
        // watch them do not rebuild.
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
        "{} does not exist: build it with `cargo build -p cohort-node --bin cohort` or set COHORT_BIN",
        bin.display()
    );
    bin
}

// ---- the cluster ----

/// A base port P with P..P+2n all free on 127.0.0.1: p2p on P+i, metrics on P+n+i.
fn free_port_block(n: u16) -> (u16, u16) {
    let seed = std::process::id() as u64 ^ now_nanos();
    for attempt in 0..500u64 {
        let base = 21_000 + ((seed.wrapping_add(attempt * 7919)) % 1_100) as u16 * 10;
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

struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    metrics_base: u16,
    configs: Vec<PathBuf>,
    children: Vec<Option<Child>>,
    logs: Vec<PathBuf>,
}

impl Cluster {
    /// `cohort cluster init` for validators 6..15 with `beacon_nodes` (in order).
    fn init(bin: &Path, name: &str, beacon_nodes: &[String]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "cohort-lodestar-test-{name}-{}-{}",
            std::process::id(),
            now_nanos() % 1_000_000_000
        ));
        let (p2p_base, metrics_base) = free_port_block(OPERATORS as u16);
        let mut init = Command::new(bin);
        init.args(["cluster", "init", "--out"])
            .arg(&dir)
            .args(["--operators", &OPERATORS.to_string()])
            .args(["--validators", VALIDATORS_ARG])
            .args(["--kdf", "light"])
            .args(["--fee-recipient", FEE_RECIPIENT])
            .args(["--base-port", &p2p_base.to_string()])
            .args(["--metrics-base-port", &metrics_base.to_string()]);
        for node in beacon_nodes {
            init.args(["--beacon-node", node]);
        }
        let output = init.output().expect("run cohort cluster init");
        assert!(
            output.status.success(),
            "cohort cluster init --validators {VALIDATORS_ARG} --beacon-node .. failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let configs: Vec<PathBuf> = (0..OPERATORS)
            .map(|i| dir.join(format!("operator-{i}")).join("operator.toml"))
            .collect();
        // Doppelganger protection (on by default with beacon nodes) is turned off only with
        // COHORT_LODESTAR_DOPPELGANGER=0: its check costs three epochs per scenario.
        if !doppelganger_checked() {
            for config in &configs {
                let text = std::fs::read_to_string(config)
                    .unwrap_or_else(|err| panic!("{}: {err}", config.display()));
                assert!(
                    text.contains("\n[beacon]\n"),
                    "{} has a [beacon] table",
                    config.display()
                );
                let text = text.replacen(
                    "\n[beacon]\n",
                    "\n[beacon]\ndoppelganger_protection = false\n",
                    1,
                );
                std::fs::write(config, text)
                    .unwrap_or_else(|err| panic!("{}: {err}", config.display()));
            }
        }
        // The config names the beacon nodes, in order, at the top level.
        for config in &configs {
            let text = std::fs::read_to_string(config)
                .unwrap_or_else(|err| panic!("{}: {err}", config.display()));
            // Top level: before the first [table] header.
            let top = text
                .lines()
                .take_while(|l| !l.trim_start().starts_with('['))
                .collect::<Vec<_>>()
                .join("\n");
            let array = top
                .find("beacon_nodes")
                .and_then(|at| {
                    let rest = &top[at..];
                    Some(&rest[..=rest.find(']')?])
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{} has no top-level beacon_nodes = [..]:\n{text}",
                        config.display()
                    )
                });
            let mut at = 0;
            for node in beacon_nodes {
                let found = array[at..].find(&format!("\"{node}\"")).unwrap_or_else(|| {
                    panic!(
                        "{}: `{array}` does not list {node} (in the order given)",
                        config.display()
                    )
                });
                at += found + node.len();
            }
        }
        std::fs::create_dir_all(dir.join("logs")).expect("create the logs directory");
        eprintln!(
            "cluster {name} in {} (p2p ports {p2p_base}.., metrics ports {metrics_base}..), beacon nodes {beacon_nodes:?}",
            dir.display()
        );
        Cluster {
            bin: bin.to_path_buf(),
            dir,
            metrics_base,
            configs,
            children: (0..OPERATORS).map(|_| None).collect(),
            logs: Vec::new(),
        }
    }

    fn start(&mut self, i: usize) {
        let log = self.dir.join("logs").join(format!("operator-{i}.log"));
        let file = File::create(&log).expect("create a log file");
        let mut command = Command::new(&self.bin);
        command
            .args(["run", "--config"])
            .arg(&self.configs[i])
            .args(["--log-format", "json", "--log", "info"])
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone a log file handle"))
            .stderr(file);
        // The config's fields can be overridden from the environment: keep the config's own
        // (COHORT_BEACON_URL and friends are this test's, not the operators').
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("COHORT_") {
                command.env_remove(key);
            }
        }
        self.children[i] = Some(command.spawn().expect("spawn cohort run"));
        self.logs.push(log);
    }

    fn sigkill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            child.kill().expect("SIGKILL");
            let _ = child.wait();
        }
    }

    /// SIGTERM every operator and waits up to 30 s each (then SIGKILL).
    fn stop(&mut self) {
        for child in self.children.iter().flatten() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for (i, slot) in self.children.iter_mut().enumerate() {
            if let Some(child) = slot.as_mut() {
                loop {
                    match child.try_wait() {
                        Ok(Some(status)) => {
                            if !status.success() {
                                eprintln!("  operator {i} exited with {status} after SIGTERM");
                            }
                            break;
                        }
                        Ok(None) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(50))
                        }
                        _ => {
                            eprintln!("  operator {i} still running 30 s after SIGTERM: killed");
                            let _ = child.kill();
                            let _ = child.wait();
                            break;
                        }
                    }
                }
            }
            *slot = None;
        }
    }

    fn metrics_address(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.metrics_base + i as u16))
    }

    fn get(&self, i: usize, path: &str) -> Result<(u16, String), String> {
        http(self.metrics_address(i), "GET", path, None)
    }

    /// Doppelganger protection is on by default with beacon nodes: waits until every operator
    /// has cleared all of Cohort's validators (two epochs Lodestar reports them not live, after
    /// the start epoch) and none was taken for a doppelganger. Returns the epoch it ended in.
    fn wait_doppelganger_cleared(&self, chain: &Chain) -> u64 {
        let validators = COHORT_END - COHORT_FIRST;
        wait_until(
            "every operator's doppelganger protection clears Cohort's validators",
            chain.epoch() * 5,
            || {
                for i in 0..OPERATORS {
                    let series = |status: &str| {
                        self.series(&format!(
                            "operator_doppelganger_validators{{status=\"{status}\"}}"
                        ))
                        .into_iter()
                        .filter(|(operator, _, _)| *operator == i)
                        .map(|(_, _, value)| value as u64)
                        .sum::<u64>()
                    };
                    let (cleared, detected) = (series("cleared"), series("detected"));
                    if detected != 0 {
                        panic!(
                            "operator {i} took {detected} of Cohort's validators for doppelgangers"
                        );
                    }
                    if cleared != validators {
                        return Err(format!(
                            "operator {i}: {cleared} of {validators} cleared in epoch {}",
                            chain.current_epoch()
                        ));
                    }
                }
                Ok(())
            },
            self,
        );
        chain.current_epoch()
    }

    fn wait_all_ready(&self, timeout: Duration) {
        wait_until(
            "every operator's /health says ready",
            timeout,
            || {
                for i in 0..OPERATORS {
                    let (status, body) = self.get(i, "/health")?;
                    let health: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    if status != 200 || health["ready"] != Value::Bool(true) {
                        return Err(format!("operator {i}: {status} {body}"));
                    }
                }
                Ok(())
            },
            self,
        );
    }

    /// Every series of every running operator's /metrics whose name starts with `prefix`.
    fn series(&self, prefix: &str) -> Vec<(usize, String, f64)> {
        let mut out = Vec::new();
        for i in 0..OPERATORS {
            if self.children[i].is_none() {
                continue;
            }
            let Ok((200, body)) = self.get(i, "/metrics") else {
                continue;
            };
            for line in body.lines().filter(|l| !l.starts_with('#')) {
                if let Some((series, value)) = line.rsplit_once(' ')
                    && series.starts_with(prefix)
                    && let Ok(value) = value.trim().parse::<f64>()
                {
                    out.push((i, series.to_string(), value));
                }
            }
        }
        out
    }

    /// Role -> `delay_ms` of every "successfully submitted ..." line in the operators' logs (the
    /// runner logs the delay into the slot with each submission; the histogram
    /// `operator_runner_submission_delay_seconds` has no role label).
    fn submission_delays_from_logs(&self) -> BTreeMap<String, Vec<u64>> {
        let mut delays: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for log in &self.logs {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            for line in text.lines() {
                let Ok(entry) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                if !entry["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("successfully submitted"))
                {
                    continue;
                }
                if let (Some(role), Some(delay)) = (
                    entry["span"]["runner_role"].as_str(),
                    entry["delay_ms"].as_u64(),
                ) {
                    delays.entry(role.to_string()).or_default().push(delay);
                }
            }
        }
        delays
    }

    /// operator_runner_duties_failed_total summed over the running operators, by label set.
    fn failed_duties(&self) -> BTreeMap<String, f64> {
        let mut sum = BTreeMap::new();
        for (_, series, value) in self.series("operator_runner_duties_failed_total") {
            *sum.entry(series).or_insert(0.0) += value;
        }
        sum
    }

    /// Label set (without `le`) -> (mean, count) of histogram `name` in `rows` (one scrape of
    /// [`Cluster::series`]), summed over the operators; label sets with no observation are left
    /// out.
    fn histogram_means(rows: &[(usize, String, f64)], name: &str) -> BTreeMap<String, (f64, f64)> {
        let mut by_labels: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        let sum_prefix = format!("{name}_sum");
        let count_prefix = format!("{name}_count");
        for (_, series, value) in rows {
            if let Some(labels) = series.strip_prefix(&sum_prefix) {
                by_labels.entry(labels.to_string()).or_default().0 += value;
            } else if let Some(labels) = series.strip_prefix(&count_prefix) {
                by_labels.entry(labels.to_string()).or_default().1 += value;
            }
        }
        by_labels
            .into_iter()
            .filter(|(_, (_, count))| *count > 0.0)
            .map(|(labels, (sum, count))| (labels, (sum / count, count)))
            .collect()
    }

    /// Label set (without `le`) -> (bucket bound, cumulative count) of histogram `name` in
    /// `rows` (one scrape of [`Cluster::series`]), summed over the operators, in ascending
    /// bounds (`+Inf` last).
    fn histogram_buckets(
        rows: &[(usize, String, f64)],
        name: &str,
    ) -> BTreeMap<String, Vec<(f64, f64)>> {
        let mut by_labels: BTreeMap<String, BTreeMap<u64, (f64, f64)>> = BTreeMap::new();
        let prefix = format!("{name}_bucket{{");
        for (_, series, value) in rows {
            let Some(labels) = series.strip_prefix(&prefix) else {
                continue;
            };
            // `le` may come before or after the other labels; their values hold no commas.
            let labels = labels.trim_end_matches('}');
            let (le, rest): (Vec<&str>, Vec<&str>) = labels
                .split(',')
                .partition(|label| label.starts_with("le=\""));
            let Some(le) = le
                .first()
                .map(|le| le.trim_start_matches("le=\"").trim_end_matches('"'))
            else {
                continue;
            };
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                let Ok(bound) = le.parse::<f64>() else {
                    continue;
                };
                bound
            };
            let key = format!("{{{}}}", rest.join(","));
            let entry = by_labels
                .entry(key)
                .or_default()
                .entry(bound.to_bits())
                .or_insert((bound, 0.0));
            entry.1 += value;
        }
        by_labels
            .into_iter()
            .map(|(labels, buckets)| {
                let mut buckets: Vec<(f64, f64)> = buckets.into_values().collect();
                buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                (labels, buckets)
            })
            .collect()
    }

    /// Submission delay (mean, count per label set), failed duties, and the beacon-node metrics
    /// that exist, into the report.
    fn report_metrics(&self, report: &mut Report, when: &str) {
        report.push(format!("---- metrics, {when} ----"));
        let into_slot_rows = self.series("operator_runner_submission_delay_seconds");
        let into_slot =
            Self::histogram_means(&into_slot_rows, "operator_runner_submission_delay_seconds");
        if into_slot_rows.is_empty() {
            report.push("  operator_runner_submission_delay_seconds: not exported".into());
        }
        for (labels, (mean, count)) in &into_slot {
            report.push(format!(
                "  submission delay into the slot {}: mean {mean:.3} s over {count} submissions",
                if labels.is_empty() {
                    "(all roles)"
                } else {
                    labels
                },
            ));
        }
        // A committee duty starts on the head event, so for attestations and sync messages
        // this is the delay after Lodestar's head event.
        let after_start = "operator_runner_submitted_after_start_seconds";
        let after_start_rows = self.series(after_start);
        let buckets = Self::histogram_buckets(&after_start_rows, after_start);
        for (labels, (mean, count)) in Self::histogram_means(&after_start_rows, after_start) {
            let at = |q: f64| {
                buckets
                    .get(&labels)
                    .and_then(|buckets| bucket_quantile(buckets, q))
                    .map_or("?".to_string(), |le| format!("{le}"))
            };
            report.push(format!(
                "  submitted after the duty's start {labels}: mean {mean:.3} s over {count} \
                 objects, p50 <= {} s, p90 <= {} s",
                at(0.5),
                at(0.9)
            ));
        }
        for (role, mut delays) in self.submission_delays_from_logs() {
            delays.sort_unstable();
            let at = |q: f64| delays[((delays.len() - 1) as f64 * q).round() as usize];
            let mean = delays.iter().sum::<u64>() as f64 / delays.len() as f64;
            report.push(format!(
                "  {role}: submitted {} times (every operator's submissions), delay into the slot (ms): mean {mean:.0}, p50 {}, p90 {}, max {}",
                delays.len(),
                at(0.5),
                at(0.9),
                at(1.0)
            ));
        }
        for (series, value) in self.failed_duties() {
            report.push(format!("  {series} = {value} (all operators)"));
        }
        let mut beacon_metrics = BTreeSet::new();
        for (_, series, _) in self.series("") {
            let name = series.split('{').next().unwrap_or("").to_string();
            if name.contains("beacon") {
                beacon_metrics.insert(name);
            }
        }
        report.push(format!(
            "  beacon-node metrics exported: {beacon_metrics:?}"
        ));
    }

    fn fail(&self, message: &str) -> ! {
        panic!("{message}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed {
            for log in &self.logs {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!("----- last lines of {} -----", log.display());
                for line in &lines[lines.len().saturating_sub(30)..] {
                    eprintln!("{}", line.chars().take(600).collect::<String>());
                }
            }
        }
        for child in self.children.iter_mut() {
            if let Some(mut child) = child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if failed || std::env::var_os("COHORT_LODESTAR_TEST_KEEP").is_some() {
            eprintln!("kept the cluster directory {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
