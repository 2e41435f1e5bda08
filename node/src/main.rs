//! `cohort`: the operator node's command line.

mod bench;

use clap::{Parser, Subcommand};
use cohort_simulation::{Crash, Report, SimConfig};
use std::{process::ExitCode, time::Duration};

#[derive(Parser)]
#[command(name = "cohort", version, about = "Cohort operator node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole cluster in the deterministic simulator from one seed.
    Simulate(SimulateArgs),
    /// Measure one operator's CPU per validator-duty (sign share, decode, recover, verify)
    /// against one plain blst sign + verify, and per slot at given validator counts.
    BenchSigning(BenchArgs),
}

#[derive(Parser)]
struct BenchArgs {
    /// Operators the keys are split among.
    #[arg(long, default_value_t = 4)]
    operators: u32,
    /// Validators measured (more gives steadier numbers).
    #[arg(long, default_value_t = 512)]
    samples: u64,
    /// Validator counts to project the per-slot cost for (one attestation and one selection
    /// proof per attester, 32 slots per epoch).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    validators: Vec<u64>,
}

#[derive(Parser)]
struct SimulateArgs {
    /// Operators in the cluster (3f+1: 4, 7, 10, 13).
    #[arg(long, default_value_t = 4)]
    operators: usize,
    /// Validators the cluster runs duties for.
    #[arg(long, default_value_t = 64)]
    validators: u64,
    /// Slots to simulate.
    #[arg(long, default_value_t = 64)]
    slots: u64,
    /// Seed of the run: the same seed and flags replay the same run bit for bit.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Mean one-way link latency in milliseconds.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Link jitter (standard deviation) in milliseconds.
    #[arg(long, default_value_t = 5)]
    jitter_ms: u64,
    /// Probability that a message is delivered (0..=1).
    #[arg(long, default_value_t = 1.0)]
    delivery: f64,
    /// Slot length in seconds.
    #[arg(long, default_value_t = 12)]
    slot_seconds: u64,
    /// Operator offline: `I` (never starts) or `I@S` (starts at slot S). Repeatable.
    #[arg(long, value_parser = parse_offline)]
    offline: Vec<(usize, Option<u64>)>,
    /// Operator crash: `I@S` (crashes during slot S, never returns) or `I@S-R` (restarts with
    /// its storage at slot R). Repeatable, one per operator.
    #[arg(long, value_parser = parse_crash)]
    crash: Vec<Crash>,
    /// Byzantine operator `I`: sends well-formed but wrong partial signatures. Repeatable.
    #[arg(long)]
    byzantine: Vec<usize>,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    json: bool,
    /// Log filter for the actors' logs (e.g. `info`, `cohort_actors=debug`); off by default.
    #[arg(long)]
    log: Option<String>,
}

fn parse_offline(value: &str) -> Result<(usize, Option<u64>), String> {
    let (index, slot) = match value.split_once('@') {
        Some((i, s)) => (i, Some(s)),
        None => (value, None),
    };
    let index = index
        .parse()
        .map_err(|_| format!("offline: '{value}' is not an operator index (I or I@SLOT)"))?;
    let slot = slot
        .map(|s| {
            s.parse()
                .map_err(|_| format!("offline: '{value}' has no valid slot after '@'"))
        })
        .transpose()?;
    Ok((index, slot))
}

fn parse_crash(value: &str) -> Result<Crash, String> {
    let bad = || format!("crash: '{value}' is not I@SLOT or I@SLOT-RESTART_SLOT");
    let (operator, slots) = value.split_once('@').ok_or_else(bad)?;
    let operator = operator.parse().map_err(|_| bad())?;
    let (slot, restart_slot) = match slots.split_once('-') {
        Some((slot, restart)) => (slot, Some(restart.parse().map_err(|_| bad())?)),
        None => (slots, None),
    };
    Ok(Crash {
        operator,
        slot: slot.parse().map_err(|_| bad())?,
        restart_slot,
    })
}

fn print_summary(report: &Report) {
    println!(
        "cohort simulation: seed {} | {} operators | {} validators | {} slots",
        report.seed, report.operators, report.validators, report.slots
    );
    println!(
        "  finalized height {} ({} empty heartbeat blocks, {} of {} slots with a block)",
        report.finalized_height, report.empty_blocks, report.slots_with_block, report.slots
    );
    println!(
        "  attestation duties: {} scheduled, {} decided, {} missed ({} of {} committee duties decided)",
        report.duties.scheduled,
        report.duties.decided,
        report.duties.missed,
        report.duties.committee_decided,
        report.duties.committee_scheduled
    );
    println!(
        "  decide latency (simulated): p50 {} ms, p99 {} ms",
        report.decide_latency_ms.p50, report.decide_latency_ms.p99
    );
    println!(
        "    of which waiting for a block: p50 {} ms, p99 {} ms; consensus: p50 {} ms, p99 {} ms",
        report.block_wait_ms.p50,
        report.block_wait_ms.p99,
        report.consensus_ms.p50,
        report.consensus_ms.p99
    );
    let role = |map: &std::collections::BTreeMap<String, u64>, kind: &str| {
        map.get(kind).copied().unwrap_or(0)
    };
    for kind in ["attestation", "proposal", "aggregate"] {
        println!(
            "  {kind}s: {} expected, {} submitted, {} accepted by the beacon chain, {} rejected",
            role(&report.expected, kind),
            role(&report.submitted, kind),
            role(&report.accepted, kind),
            role(&report.rejected, kind),
        );
    }
    for (role, latency) in &report.submit_latency_ms_by_role {
        println!(
            "  {role} submission from slot start (simulated): p50 {} ms, p99 {} ms, max {} ms",
            latency.p50, latency.p99, latency.max
        );
    }
    for rejection in &report.rejections {
        println!("    rejected: {rejection}");
    }
    for (operator, count) in &report.invalid_partials_by_operator {
        println!(
            "  invalid partial signatures from operator {operator}: {count} (dropped by the others)"
        );
    }
    if report.restarts > 0 {
        println!("  operator restarts: {}", report.restarts);
    }
    println!(
        "  messages per operator per slot: {:.1}",
        report.messages_per_operator_per_slot
    );
    let cpu = &report.crypto_cpu_ms_per_operator_slot;
    println!(
        "  crypto CPU per operator per slot (real, thread time): {:.1} ms (sign {:.1}, decode {:.1}, recover+verify {:.1})",
        cpu.total, cpu.sign, cpu.decode, cpu.recover_and_verify
    );
    println!("  outcome digest: {}", report.outcome_digest);
    println!("  wall time: {} ms", report.wall_ms);
    if report.violations.is_empty() {
        println!("  invariants: all held");
    } else {
        println!("  invariants: {} violations", report.violations.len());
        for v in &report.violations {
            println!("    [{}] slot {}: {}", v.invariant, v.slot, v.detail);
        }
    }
}

fn bench_signing(args: BenchArgs) -> ExitCode {
    if !(4..=13).contains(&args.operators) || args.samples == 0 {
        eprintln!("error: --operators must be within 4..=13 and --samples at least 1");
        return ExitCode::from(2);
    }
    let costs = bench::measure(args.operators, args.samples);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "cohort bench-signing: {} operators, {} validators sampled, one operator's CPU",
        args.operators, args.samples
    );
    println!(
        "  per validator-duty: sign share {:.0} us + decode {} peer partials {:.0} us + recover {:.0} us + verify {:.0} us = {:.0} us",
        us(costs.sign_share),
        args.operators - (args.operators - 1) / 3 - 1,
        us(costs.decode_partials),
        us(costs.recover),
        us(costs.verify),
        us(costs.per_duty())
    );
    println!(
        "  floor (plain blst sign + verify): {:.0} us + {:.0} us = {:.0} us; ratio {:.2}x",
        us(costs.floor_sign),
        us(costs.floor_verify),
        us(costs.floor()),
        costs.per_duty().as_secs_f64() / costs.floor().as_secs_f64()
    );
    for validators in args.validators {
        let duties = 2 * validators.div_ceil(32);
        let per_slot = costs.per_duty() * duties as u32;
        println!(
            "  {validators} validators: {duties} validator-duties per slot -> {:.2} s of one core per slot (one third of a 12 s slot is 4 s)",
            per_slot.as_secs_f64()
        );
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::BenchSigning(args) => bench_signing(args),
        Command::Simulate(args) => {
            if let Some(filter) = &args.log {
                let filter = match tracing_subscriber::EnvFilter::try_new(filter) {
                    Ok(filter) => filter,
                    Err(err) => {
                        eprintln!("error: --log '{filter}' is not a valid filter: {err}");
                        return ExitCode::from(2);
                    }
                };
                tracing_subscriber::fmt()
                    .with_env_filter(filter)
                    .with_writer(std::io::stderr)
                    .init();
            }
            let config = SimConfig {
                seed: args.seed,
                operators: args.operators,
                validators: args.validators,
                slots: args.slots,
                latency: Duration::from_millis(args.latency_ms),
                jitter: Duration::from_millis(args.jitter_ms),
                delivery: args.delivery,
                slot_duration: Duration::from_secs(args.slot_seconds),
                offline: args.offline,
                crashes: args.crash,
                byzantine: args.byzantine,
            };
            if let Err(err) = config.validate() {
                eprintln!("error: {err}");
                return ExitCode::from(2);
            }
            let report = cohort_simulation::run(&config);
            if args.json {
                match serde_json::to_string(&report) {
                    Ok(json) => println!("{json}"),
                    Err(err) => {
                        eprintln!("error: cannot encode the report: {err}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print_summary(&report);
            }
            if report.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "simulation violated invariants; replay it with:\n  {}",
                    report.replay
                );
                ExitCode::FAILURE
            }
        }
    }
}
