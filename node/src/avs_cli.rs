//! `cohort executor` (the AVS performer supervisor alone, like Hourglass's executor) and
//! `cohort performers` (a small client of its management API). The work is in
//! `cohort-supervisor`; this is only the command line.

use crate::telemetry;
use clap::{Args, Subcommand};
use cohort_supervisor::cli::PerformersCommand;
use std::{path::PathBuf, process::ExitCode};

#[derive(Args)]
pub struct ExecutorArgs {
    /// A config file with an `[avs]` table (the node's own config works: only `[avs]` is read).
    #[arg(long)]
    pub config: PathBuf,
    #[arg(long, value_enum, default_value_t = telemetry::LogFormat::Pretty)]
    pub log_format: telemetry::LogFormat,
    /// Log filter directives (`info`, `cohort_supervisor=debug`); defaults to RUST_LOG, then info.
    #[arg(long)]
    pub log: Option<String>,
}

#[derive(Args)]
pub struct PerformersArgs {
    /// The executor's management API, `host:port`.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub executor: String,
    /// With management auth on: the operator's address ...
    #[arg(long, requires = "key_file")]
    pub operator: Option<String>,
    /// ... and its key's secret file (mode 0600) ...
    #[arg(long, requires = "operator")]
    pub key_file: Option<PathBuf>,
    /// ... of this kind (`ecdsa` or `bn254`).
    #[arg(long, default_value = "ecdsa")]
    pub key_kind: String,
    #[command(subcommand)]
    pub command: PerformersSub,
}

#[derive(Subcommand)]
pub enum PerformersSub {
    /// List performers (of one AVS, or all).
    List {
        #[arg(long)]
        avs: Option<String>,
    },
    /// Deploy an executable from the executor's artifacts directory (blue-green).
    Deploy {
        #[arg(long)]
        avs: String,
        /// The executable's file name in the artifacts directory.
        #[arg(long)]
        registry_url: String,
        /// `sha256:<hex>` of the executable.
        #[arg(long)]
        digest: String,
        /// `NAME=VALUE`, repeatable.
        #[arg(long = "env")]
        env: Vec<String>,
    },
    /// Remove a performer (its in-flight tasks finish first).
    Remove {
        #[arg(long)]
        performer_id: String,
    },
}

pub fn executor(args: ExecutorArgs) -> ExitCode {
    if let Err(err) = telemetry::init_logs(args.log_format, args.log.as_deref(), 0) {
        eprintln!("error: {err}");
        return ExitCode::from(2);
    }
    match cohort_supervisor::cli::run_executor(&args.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

pub fn performers(args: PerformersArgs) -> ExitCode {
    let command = match args.command {
        PerformersSub::List { avs } => PerformersCommand::List { avs },
        PerformersSub::Remove { performer_id } => PerformersCommand::Remove { performer_id },
        PerformersSub::Deploy {
            avs,
            registry_url,
            digest,
            env,
        } => {
            let mut pairs = Vec::new();
            for entry in env {
                let Some((name, value)) = entry.split_once('=') else {
                    eprintln!("error: --env `{entry}` is not NAME=VALUE");
                    return ExitCode::from(2);
                };
                pairs.push((name.to_string(), value.to_string()));
            }
            PerformersCommand::Deploy {
                avs,
                registry_url,
                digest,
                env: pairs,
            }
        }
    };
    let auth = match (&args.operator, &args.key_file) {
        (Some(operator), Some(key)) => {
            Some((operator.as_str(), args.key_kind.as_str(), key.as_path()))
        }
        _ => None,
    };
    match cohort_supervisor::cli::performers(&args.executor, auth, command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
