//! The operator's commands: `run`, `config check`, `keys generate`, `cluster init`.

use crate::{config, keys, run, telemetry};
use clap::{Args, Subcommand};
use cohort_keystore::{eip2335::Kdf, identity};
use commonware_cryptography::Signer as _;
use std::{path::PathBuf, process::ExitCode, time::Duration};

#[derive(Args)]
pub struct RunArgs {
    /// The operator's config file (see operator.example.toml). Any field can be overridden by
    /// an environment variable: COHORT_DATA_DIR, COHORT_ENGINE__URL (`__` steps into a table).
    #[arg(long)]
    pub config: PathBuf,
    /// Log lines as JSON objects (for collectors) or human-readable.
    #[arg(long, value_enum, default_value_t = telemetry::LogFormat::Pretty)]
    pub log_format: telemetry::LogFormat,
    /// Log filter directives, as RUST_LOG takes them (`info`, `cohort_actors=debug,info`).
    /// Defaults to RUST_LOG, then `info`.
    #[arg(long)]
    pub log: Option<String>,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate a config and every key it names without starting the node: the identity, the
    /// cluster lock, and every share keystore (decrypted with the password file).
    Check {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Generate an operator's ed25519 identity into a new file (mode 0600) and print its
    /// public key, for the cluster's `cluster.operators` list.
    Generate {
        /// Where to write the key; refuses to overwrite an existing file.
        #[arg(long, default_value = "identity.key")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Write a whole local cluster: each operator's identity, config, password file and
    /// EIP-2335 keystores of its share of every validator (the devnet's interop validators,
    /// split t-of-n afresh), and the cluster lock every operator shares.
    Init(InitArgs),
}

#[derive(Args)]
pub struct InitArgs {
    /// Operators in the cluster (3f+1: 4, 7, 10, 13).
    #[arg(long, default_value_t = 4)]
    pub operators: usize,
    /// Validators the cluster runs duties for.
    #[arg(long, default_value_t = 64)]
    pub validators: u64,
    /// Directory to write into; must not exist or be empty.
    #[arg(long, default_value = "cluster")]
    pub out: PathBuf,
    /// The cluster's name (its p2p namespace).
    #[arg(long, default_value = "devnet")]
    pub name: String,
    /// Host every operator listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Operator i listens for p2p on this port + i.
    #[arg(long, default_value_t = 9000)]
    pub base_port: u16,
    /// Operator i serves /metrics and /health on this port + i.
    #[arg(long, default_value_t = 9100)]
    pub metrics_base_port: u16,
    /// Slot 0 starts this many seconds from now.
    #[arg(long, default_value_t = 30)]
    pub genesis_delay: u64,
    #[arg(long, default_value_t = 12)]
    pub slot_seconds: u64,
    /// Keystore key derivation: `standard` (scrypt n=2^18, about a second per keystore) or
    /// `light` (n=2^12, for local test clusters only).
    #[arg(long, default_value = "standard", value_parser = parse_kdf)]
    pub kdf: Kdf,
    /// Seeds the devnet beacon's duties.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

fn parse_kdf(text: &str) -> Result<Kdf, String> {
    match text {
        "standard" => Ok(Kdf::standard()),
        "light" => Ok(Kdf::light()),
        other => Err(format!("`{other}` is neither `standard` nor `light`")),
    }
}

fn env() -> Vec<(String, String)> {
    std::env::vars().collect()
}

/// Why `run` or `config check` stops before starting anything.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Keys(#[from] keys::KeysError),
}

/// Loads the config and every key it names; the error lists everything wrong.
fn load(path: &std::path::Path) -> Result<(config::Config, keys::Loaded), LoadError> {
    let config = config::load(path, env())?;
    let loaded = keys::load(&config)?;
    config
        .check_channel_sizes(loaded.shares.len())
        .map_err(|problems| config::ConfigError {
            path: path.to_path_buf(),
            problems,
        })?;
    Ok((config, loaded))
}

pub fn run(args: RunArgs) -> ExitCode {
    let (config, loaded) = match load(&args.config) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    // After loading: every line names this operator's index.
    if let Err(err) = telemetry::init_logs(args.log_format, args.log.as_deref(), loaded.index) {
        eprintln!("error: {err}");
        return ExitCode::from(2);
    }
    match run::run(config, loaded) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(%err, "operator stopped with an error");
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

pub fn config(command: ConfigCommand) -> ExitCode {
    match command {
        ConfigCommand::Check { config: path } => match load(&path) {
            Ok((config, loaded)) => {
                println!(
                    "{}: valid. Operator {} of {} ({}), {} validator shares, p2p on {}, \
                     metrics on {}, engine {:?}",
                    path.display(),
                    loaded.index,
                    loaded.participants.len(),
                    identity::public_key_hex(&loaded.key.public_key()),
                    loaded.shares.len(),
                    config.listen,
                    config.metrics_listen,
                    config.engine,
                );
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::from(2)
            }
        },
    }
}

pub fn keys(command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::Generate { out } => {
            if out.exists() {
                eprintln!(
                    "error: {} exists; refusing to overwrite an identity",
                    out.display()
                );
                return ExitCode::from(2);
            }
            let key = identity::generate(&mut cohort_keystore::os_rng());
            if let Err(err) = identity::save(&out, &key) {
                eprintln!("error: {}: {err}", out.display());
                return ExitCode::FAILURE;
            }
            println!("{}", identity::public_key_hex(&key.public_key()));
            eprintln!(
                "wrote {} (mode 0600); the line above is its public key for cluster.operators",
                out.display()
            );
            ExitCode::SUCCESS
        }
    }
}

pub fn cluster(command: ClusterCommand) -> ExitCode {
    match command {
        ClusterCommand::Init(args) => {
            let plan = keys::InitPlan {
                out: args.out.clone(),
                name: args.name,
                operators: args.operators,
                validators: args.validators,
                host: args.host,
                base_port: args.base_port,
                metrics_base_port: args.metrics_base_port,
                genesis_time: keys::genesis_after(Duration::from_secs(args.genesis_delay)),
                slot_seconds: args.slot_seconds,
                kdf: args.kdf,
                seed: args.seed,
            };
            match keys::init_cluster(&plan) {
                Ok(configs) => {
                    for path in &configs {
                        println!("{}", path.display());
                    }
                    eprintln!(
                        "wrote {} operators' configs (printed on stdout), keys and {} validator shares each \
                         under {}; start one with `cohort run --config <config>`",
                        configs.len(),
                        args.validators,
                        args.out.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("error: {err}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
