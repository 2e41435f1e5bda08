//! `cohort`: the operator node's command line.

mod avs_cli;
mod beacon_cli;
mod bench;
mod bench_hops;
mod campaign_cli;
mod cluster_avs;
mod config;
mod dkg_cli;
mod exit;
mod exit_requests;
mod import;
mod interchange;
mod keys;
mod log_lines;
mod net;
mod operator_cli;
mod rpc;
mod run;
mod slashing_cli;
mod telemetry;

use clap::{Parser, Subcommand};
use cohort_simulation::{
    FaultArgs, InjectedBug, SimConfig,
    campaign::{self, Plan},
};
use std::{process::ExitCode, time::Duration};

#[derive(Parser)]
#[command(name = "cohort", version, about = "Cohort operator node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run this operator: p2p with the cluster, duties from the beacon node, the execution
    /// engine, /metrics and /health; SIGINT or SIGTERM stops it gracefully.
    Run(operator_cli::RunArgs),
    /// Run only the AVS performer supervisor (Hourglass's executor API) from a config's
    /// `[avs]` table; SIGINT or SIGTERM stops it gracefully, with no performer left.
    Executor(avs_cli::ExecutorArgs),
    /// Manage the performers of a running executor (list, deploy, remove).
    Performers(avs_cli::PerformersArgs),
    /// Check an operator config.
    #[command(subcommand)]
    Config(operator_cli::ConfigCommand),
    /// Operator identity keys.
    #[command(subcommand)]
    Keys(operator_cli::KeysCommand),
    /// Set up a cluster.
    #[command(subcommand)]
    Cluster(operator_cli::ClusterCommand),
    /// Create new validator keys with the cluster's other operators (distributed key
    /// generation: no party ever holds a whole key) and their deposit data; writes this
    /// operator's lock and share keystores as `cluster init` does.
    Dkg(Box<dkg_cli::DkgArgs>),
    /// Move the cluster's validators to a new operator set (add, remove or replace operators)
    /// with commonware's resharing: every validator keeps its public key, and the outgoing
    /// operators' shares stop counting.
    Reshare(Box<dkg_cli::ReshareArgs>),
    /// Export or import this operator's slashing-protection records as an EIP-3076
    /// interchange, with the node stopped.
    #[command(subcommand)]
    SlashingProtection(slashing_cli::SlashingCommand),
    /// Exit a validator: each operator signs with its share, then threshold-many partial
    /// signatures are combined and published.
    #[command(subcommand)]
    Exit(exit::ExitCommand),
    /// Run a whole cluster in the deterministic simulator from one seed.
    Simulate(Box<SimulateArgs>),
    /// Measure one operator's CPU per validator-duty (sign share, decode, recover, verify)
    /// against one plain blst sign + verify, and per slot at given validator counts.
    BenchSigning(BenchArgs),
    /// Measure one hop between two actors on the node's runtime (a mailbox send and a oneshot
    /// answer), to weigh the simulation's executor cycle (`simulate --cycle-us`) against.
    BenchHops(bench_hops::Args),
    /// Run many seeds of fault plans and report violations by invariant, with the command that
    /// replays each failing seed.
    Campaign(campaign_cli::CampaignArgs),
    /// Replay one seed of a fault plan bit for bit (the command a campaign prints).
    Replay(ReplayArgs),
    /// Shrink a failing seed of a fault plan to the fewest faults and slots that still fail.
    Minimize(ReplayArgs),
}

/// The cluster shape a plan runs on.
#[derive(clap::Args, Clone)]
struct ShapeArgs {
    /// Operators in the cluster (3f+1: 4, 7, 10, 13).
    #[arg(long, default_value_t = 4)]
    operators: usize,
    /// Validators the cluster runs duties for.
    #[arg(long, default_value_t = 64)]
    validators: u64,
    /// Slots each run simulates.
    #[arg(long, default_value_t = 64)]
    slots: u64,
    /// Inject a known bug on purpose (`decide-on-verify`, `unsynced-slashing`), to see the
    /// invariants catch it.
    #[arg(long, value_parser = InjectedBug::parse)]
    inject_bug: Option<InjectedBug>,
}

impl ShapeArgs {
    fn base(&self) -> SimConfig {
        SimConfig {
            operators: self.operators,
            validators: self.validators,
            slots: self.slots,
            injected_bug: self.inject_bug,
            ..SimConfig::default()
        }
    }
}

#[derive(Parser)]
struct ReplayArgs {
    /// The fault plan: calm, network, crash, partition, byzantine, clock, engine, source, avs,
    /// mixed.
    #[arg(long, value_parser = Plan::parse)]
    plan: Plan,
    #[arg(long)]
    seed: u64,
    #[command(flatten)]
    shape: ShapeArgs,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    json: bool,
    /// Log filter for the actors' logs (e.g. `info`, `cohort_actors=debug`); off by default.
    #[arg(long)]
    log: Option<String>,
}

impl ReplayArgs {
    /// Checks the shape, starts the logs and draws the plan's run for the seed.
    fn prepare(&self) -> Result<SimConfig, ExitCode> {
        check_shape(&self.shape)?;
        init_logs(self.log.as_deref())?;
        Ok(self.plan.config(self.seed, &self.shape.base()))
    }
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
    /// Validators sharing one attestation signing root (a beacon committee: about 49 at
    /// 100,000 validators, 3,125 attesters a slot in 64 committees).
    #[arg(long, default_value_t = 49)]
    per_root: u64,
    /// Threads of the parallel run (default: every core).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Parser)]
struct SimulateArgs {
    #[command(flatten)]
    shape: ShapeArgs,
    /// Seed of the run: the same seed and flags replay the same run bit for bit.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[command(flatten)]
    faults: FaultArgs,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    json: bool,
    /// Log filter for the actors' logs (e.g. `info`, `cohort_actors=debug`); off by default.
    #[arg(long)]
    log: Option<String>,
}

fn bench_signing(args: BenchArgs) -> ExitCode {
    if !(4..=13).contains(&args.operators)
        || args.samples == 0
        || args.per_root == 0
        || args.threads == Some(0)
    {
        eprintln!(
            "error: --operators must be within 4..=13, and --samples, --per-root and --threads at least 1"
        );
        return ExitCode::from(2);
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let costs = bench::measure(args.operators, args.samples, args.per_root, threads);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "cohort bench-signing: {} operators, {} validators sampled ({} validator-duties: a selection proof and an attestation each, {} per attestation root), the runner's batch path",
        args.operators, args.samples, costs.duties, args.per_root
    );
    println!(
        "  one core, per validator-duty: sign share {:.0} us + decode {} peer partials {:.0} us + recover and verify {:.0} us = {:.0} us",
        us(costs.sign_share),
        args.operators - (args.operators - 1) / 3 - 1,
        us(costs.decode_partials),
        us(costs.recover_and_verify),
        us(costs.per_duty())
    );
    let ratio = costs.per_duty().as_secs_f64() / costs.floor().as_secs_f64();
    println!(
        "  floor (plain blst sign + verify, this run): {:.0} us + {:.0} us = {:.0} us; ratio {:.2}x (target at most 0.60x: {})",
        us(costs.floor_sign),
        us(costs.floor_verify),
        us(costs.floor()),
        ratio,
        if ratio <= 0.6 { "met" } else { "NOT met" }
    );
    println!(
        "  {} threads, per validator-duty: {:.0} us wall, {:.0} us CPU of the process",
        costs.threads,
        us(costs.parallel_wall),
        us(costs.parallel_cpu)
    );
    for validators in args.validators {
        let duties = 2 * validators.div_ceil(32);
        let per_slot = costs.per_duty() * duties as u32;
        let wall = costs.parallel_wall * duties as u32;
        println!(
            "  {validators} validators: {duties} validator-duties per slot -> {:.2} s of one core per slot (target under 4 s: {}); {:.2} s wall on {} threads",
            per_slot.as_secs_f64(),
            if per_slot < Duration::from_secs(4) {
                "met"
            } else {
                "NOT met"
            },
            wall.as_secs_f64(),
            costs.threads
        );
    }
    ExitCode::SUCCESS
}

/// Stamps a simulation's lines with its simulated time (seconds since its runtime started;
/// genesis is one slot later), and other lines with the wall clock.
struct SimulatedTime;

impl tracing_subscriber::fmt::time::FormatTime for SimulatedTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        match cohort_simulation::logs::simulated_now() {
            Some(now) => {
                let since = now
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                write!(
                    w,
                    "sim {:>5}.{:03}s",
                    since.as_secs(),
                    since.subsec_millis()
                )
            }
            None => tracing_subscriber::fmt::time::SystemTime.format_time(w),
        }
    }
}

fn init_logs(filter: Option<&str>) -> Result<(), ExitCode> {
    let Some(filter) = filter else {
        return Ok(());
    };
    let parsed = match tracing_subscriber::EnvFilter::try_new(filter) {
        Ok(parsed) => parsed,
        Err(err) => {
            eprintln!("error: --log '{filter}' is not a valid filter: {err}");
            return Err(ExitCode::from(2));
        }
    };
    use std::io::IsTerminal as _;
    use tracing_subscriber::{Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _};
    // The deterministic runtime traces its clock moving while it holds the clock that stamps
    // every line: formatting those lines would wait on itself.
    let clock_safe = tracing_subscriber::filter::filter_fn(|metadata| {
        *metadata.level() != tracing::Level::TRACE
            || !metadata.target().starts_with("commonware_runtime")
    });
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .event_format(log_lines::Lines {
            timer: SimulatedTime,
            operator: None,
            target: true,
        })
        .with_filter(parsed)
        .with_filter(clock_safe);
    tracing_subscriber::registry().with(lines).init();
    Ok(())
}

fn print_json(value: &impl serde::Serialize) -> Result<(), ExitCode> {
    match serde_json::to_string(value) {
        Ok(json) => {
            println!("{json}");
            Ok(())
        }
        Err(err) => {
            eprintln!("error: cannot encode the report: {err}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// Runs one simulation and prints it; exits 1 with the replay command on a violation.
fn simulate(config: SimConfig, json: bool, replay: Option<String>) -> ExitCode {
    if let Err(err) = config.validate() {
        eprintln!("error: {err}");
        return ExitCode::from(2);
    }
    let report = cohort_simulation::run(&config);
    if json {
        if let Err(code) = print_json(&report) {
            return code;
        }
    } else {
        print!("{report}");
    }
    if report.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "simulation violated invariants; replay it with:\n  {}",
            replay.unwrap_or(report.replay)
        );
        ExitCode::FAILURE
    }
}

fn check_shape(shape: &ShapeArgs) -> Result<(), ExitCode> {
    shape.base().validate().map_err(|err| {
        eprintln!("error: {err}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => operator_cli::run(args),
        Command::Executor(args) => avs_cli::executor(args),
        Command::Performers(args) => avs_cli::performers(args),
        Command::Config(command) => operator_cli::config(command),
        Command::Keys(command) => operator_cli::keys(command),
        Command::Cluster(command) => operator_cli::cluster(command),
        Command::Dkg(args) => dkg_cli::dkg(*args),
        Command::Reshare(args) => dkg_cli::reshare(*args),
        Command::SlashingProtection(command) => slashing_cli::slashing_protection(command),
        Command::Exit(command) => exit::exit(command),
        Command::BenchSigning(args) => bench_signing(args),
        Command::BenchHops(args) => bench_hops::run(args),
        Command::Campaign(args) => campaign_cli::run(args),
        Command::Replay(args) => {
            let config = match args.prepare() {
                Ok(config) => config,
                Err(code) => return code,
            };
            let base = args.shape.base();
            eprintln!(
                "plan {} seed {} draws: {}",
                args.plan,
                args.seed,
                config.replay_command()
            );
            let replay = campaign::replay_command(args.plan, args.seed, &base);
            simulate(config, args.json, Some(replay))
        }
        Command::Minimize(args) => {
            let config = match args.prepare() {
                Ok(config) => config,
                Err(code) => return code,
            };
            let found = campaign::minimize(&config, |candidate, fails| {
                eprintln!(
                    "  {} {}",
                    if fails {
                        "still fails:"
                    } else {
                        "passes:     "
                    },
                    candidate.replay_command()
                );
            });
            match found {
                None => {
                    println!(
                        "{} seed {} does not fail: nothing to shrink",
                        args.plan, args.seed
                    );
                    ExitCode::SUCCESS
                }
                Some(found) => {
                    if args.json {
                        if let Err(code) = print_json(&found) {
                            return code;
                        }
                    } else {
                        println!(
                            "smallest reproduction ({} violated after {} runs): {}\n  first violation at slot {}: {}\n  {}",
                            found.invariant,
                            found.attempts,
                            args.plan,
                            found.first_violation.slot,
                            found.first_violation.detail,
                            found.config_flags
                        );
                    }
                    ExitCode::FAILURE
                }
            }
        }
        Command::Simulate(args) => {
            if let Err(code) = init_logs(args.log.as_deref()) {
                return code;
            }
            let config = args.faults.apply(SimConfig {
                seed: args.seed,
                ..args.shape.base()
            });
            simulate(config, args.json, None)
        }
    }
}

#[cfg(test)]
mod malformed_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign_cli::{parse_plan_list, parse_seed_list};
    use clap::CommandFactory;
    use cohort_simulation::Partition;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "cohort",
            "campaign",
            "--seeds",
            "3..5",
            "--plan",
            "crash,mixed",
            "--slots",
            "16",
        ])
        .expect("a campaign command line parses");
        let Command::Campaign(args) = cli.command else {
            panic!("parsed as another command");
        };
        assert_eq!(args.seeds.0, vec![3, 4, 5]);
        assert_eq!(args.plan.0, vec![Plan::Crash, Plan::Mixed]);
        assert_eq!(args.shape.slots, 16);
    }

    #[test]
    fn bad_seeds_and_plans_are_refused_with_the_flag_named() {
        assert!(parse_seed_list("9..3").unwrap_err().contains("empty range"));
        assert!(parse_seed_list("x").unwrap_err().starts_with("seeds:"));
        assert_eq!(parse_seed_list("1,4").unwrap(), vec![1, 4]);
        assert_eq!(parse_plan_list("all").unwrap().len(), Plan::ALL.len());
        assert!(
            parse_plan_list("crash,chaos")
                .unwrap_err()
                .starts_with("plan:")
        );
        assert!(
            Partition::parse("0,1@5")
                .unwrap_err()
                .starts_with("partition:")
        );
        assert_eq!(
            Partition::parse("0,1@5-9").unwrap(),
            Partition {
                operators: vec![0, 1],
                from_slot: 5,
                heal_slot: 9
            }
        );
    }
}
