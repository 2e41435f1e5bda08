//! `cohort campaign`: many seeded simulations over fault plans, in parallel, with the failing
//! seeds' replay commands (and, on request, their smallest reproductions).

use crate::{ShapeArgs, check_shape, print_json};
use clap::Parser;
use cohort_simulation::campaign::{self, CampaignReport, Plan};
use std::process::ExitCode;

#[derive(Parser)]
pub(crate) struct CampaignArgs {
    /// Seeds to run: `A..B` (inclusive), `N`, or a comma-separated list.
    #[arg(long, default_value = "1..100", value_parser = parse_seeds)]
    pub(crate) seeds: Seeds,
    /// Fault plans, comma-separated, or `all`: calm, network, crash, partition, byzantine,
    /// clock, engine, source, avs, mixed.
    #[arg(long, default_value = "mixed", value_parser = parse_plans)]
    pub(crate) plan: Plans,
    #[command(flatten)]
    pub(crate) shape: ShapeArgs,
    /// Runs at once (each on its own thread); defaults to the machine's cores.
    #[arg(long)]
    jobs: Option<usize>,
    /// Shrink each failing seed to its smallest reproduction (slow: one run per attempt).
    #[arg(long)]
    minimize: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// One flag's list of seeds (a newtype, so clap takes the flag once rather than repeated).
#[derive(Clone, Debug)]
pub(crate) struct Seeds(pub(crate) Vec<u64>);

#[derive(Clone, Debug)]
pub(crate) struct Plans(pub(crate) Vec<Plan>);

fn parse_seeds(value: &str) -> Result<Seeds, String> {
    parse_seed_list(value).map(Seeds)
}

fn parse_plans(value: &str) -> Result<Plans, String> {
    parse_plan_list(value).map(Plans)
}

pub(crate) fn parse_seed_list(value: &str) -> Result<Vec<u64>, String> {
    let bad = || format!("seeds: '{value}' is not A..B, N or a comma-separated list");
    if let Some((from, to)) = value.split_once("..") {
        let from: u64 = from.trim().parse().map_err(|_| bad())?;
        let to: u64 = to
            .trim_start_matches('=')
            .trim()
            .parse()
            .map_err(|_| bad())?;
        if to < from {
            return Err(format!("seeds: '{value}' is an empty range"));
        }
        return Ok((from..=to).collect());
    }
    value
        .split(',')
        .map(|seed| seed.trim().parse().map_err(|_| bad()))
        .collect()
}

pub(crate) fn parse_plan_list(value: &str) -> Result<Vec<Plan>, String> {
    if value == "all" {
        return Ok(Plan::ALL.to_vec());
    }
    value.split(',').map(|p| Plan::parse(p.trim())).collect()
}

fn print_campaign(report: &CampaignReport) {
    println!(
        "cohort campaign: {} operators | {} validators | {} slots per run | {:.1} s wall, {:.1} seeds per minute",
        report.operators,
        report.validators,
        report.slots,
        report.wall_ms as f64 / 1000.0,
        report.seeds_per_minute
    );
    println!(
        "  {:<10} {:>6} {:>7} {:>22} {:>18}  violations by invariant",
        "plan", "seeds", "failed", "attestations accepted", "AVS tasks signed"
    );
    for (plan, summary) in &report.plans {
        let violations = if summary.violations_by_invariant.is_empty() {
            "none".to_string()
        } else {
            summary
                .violations_by_invariant
                .iter()
                .map(|(invariant, seeds)| format!("{invariant}: {seeds} seeds"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let accepted = format!(
            "{} of {}",
            summary.attestations_accepted, summary.attestations_expected
        );
        let signed = if summary.tasks_submitted == 0 {
            "-".to_string()
        } else {
            format!("{} of {}", summary.tasks_signed, summary.tasks_submitted)
        };
        println!(
            "  {:<10} {:>6} {:>7} {:>22} {:>18}  {violations}",
            plan.name(),
            summary.seeds_run,
            summary.seeds_failed,
            accepted,
            signed
        );
    }
    for failure in &report.failures {
        let first = failure
            .first_violation
            .as_ref()
            .map(|v| format!("{} at slot {}: {}", v.invariant, v.slot, v.detail))
            .unwrap_or_default();
        println!("  FAILED {} seed {}: {first}", failure.plan, failure.seed);
        println!("    replay: {}", failure.replay);
    }
}

/// `cohort campaign`: runs every plan over every seed, prints the table or JSON, and fails when
/// a seed broke an invariant.
pub(crate) fn run(args: CampaignArgs) -> ExitCode {
    if let Err(code) = check_shape(&args.shape) {
        return code;
    }
    let base = args.shape.base();
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let json = args.json;
    let report = campaign::campaign(&args.plan.0, &args.seeds.0, &base, jobs, |outcome| {
        if !json && outcome.failed() {
            eprintln!(
                "  seed {} of {} failed ({} violations); replay: {}",
                outcome.seed, outcome.plan, outcome.violations, outcome.replay
            );
        }
    });
    let mut minimized = Vec::new();
    if args.minimize {
        for failure in &report.failures {
            let config = failure.plan.config(failure.seed, &base);
            if let Some(found) = campaign::minimize(&config, |_, _| {}) {
                minimized.push((failure.plan, failure.seed, found));
            }
        }
    }
    if json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            report: &'a CampaignReport,
            minimized: Vec<(Plan, u64, campaign::Minimized)>,
        }
        if let Err(code) = print_json(&Out {
            report: &report,
            minimized,
        }) {
            return code;
        }
    } else {
        print_campaign(&report);
        for (plan, seed, found) in &minimized {
            println!(
                "  smallest reproduction of {plan} seed {seed} ({} violated, {} runs tried):\n    {}",
                found.invariant, found.attempts, found.config_flags
            );
        }
    }
    if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
