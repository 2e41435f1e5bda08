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
    /// or existing validators' keystores with --import-keystores, split t-of-n afresh), and the
    /// cluster lock every operator shares.
    Init(InitArgs),
}

#[derive(Args)]
pub struct InitArgs {
    /// Operators in the cluster (3f+1: 4, 7, 10, 13).
    #[arg(long, default_value_t = 4)]
    pub operators: usize,
    /// Validators the cluster runs duties for: `N` (interop validators 0..N) or `A..B` (A to
    /// B-1, as on a dev chain whose first validators others run).
    #[arg(long, default_value = "64", value_parser = parse_validators)]
    pub validators: std::ops::Range<u64>,
    /// Directory to write into; must not exist or be empty.
    #[arg(long, default_value = "cluster")]
    pub out: PathBuf,
    /// The cluster's name (its p2p namespace).
    #[arg(long, default_value = "devnet")]
    pub name: String,
    /// Host every operator listens on for p2p.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Host every operator serves /metrics and /health on: loopback unless chosen, since they
    /// tell anyone who can reach them how the operator is doing (and are not authenticated).
    #[arg(long, default_value = "127.0.0.1")]
    pub metrics_host: String,
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
    /// A beacon node (standard Beacon node API) the operators take duties from; repeat for
    /// several. With it, genesis and slot timing come from the node (not --genesis-delay and
    /// --slot-seconds) and the embedded devnet beacon is not used.
    #[arg(long = "beacon-node")]
    pub beacon_nodes: Vec<String>,
    /// Where the validators' execution rewards go (0x + 40 hex); required with --beacon-node.
    #[arg(long)]
    pub fee_recipient: Option<String>,
    /// Split existing validators instead of interop keys: every EIP-2335 keystore (`*.json`,
    /// except `deposit_data-*.json`) in this directory, as the deposit tools write them. Each
    /// decrypted key must match its keystore's `pubkey`. With --beacon-node each validator takes
    /// the index the chain gives it; without, it must be one of the devnet's interop validators
    /// in --validators.
    #[arg(long, value_name = "DIR")]
    pub import_keystores: Option<PathBuf>,
    /// File holding the imported keystores' password (one for all, mode 0600; one trailing
    /// newline is ignored). Without it the password is asked on the terminal.
    #[arg(long, requires = "import_keystores", value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Also create a fresh cluster BN254 AVS operator key, split t-of-n like the validator keys
    /// (no operator ever holds it whole): its public keys go into the lock's `avs` section,
    /// each operator's share into `shares/avs-share.json`.
    #[arg(long, conflicts_with = "avs_key_file")]
    pub new_avs_key: bool,
    /// Split an existing BN254 AVS operator key instead: a file the supervisor reads as
    /// `avs.operator_key` (mode 0600; the secret scalar as hex, or an EIP-2335 keystore when the
    /// name ends in `.json`, its password in `<file>.password`). The lock's AVS public key is
    /// then that key's, so the operator's existing registration stays valid.
    #[arg(long, value_name = "FILE")]
    pub avs_key_file: Option<PathBuf>,
}

fn parse_validators(text: &str) -> Result<std::ops::Range<u64>, String> {
    let range = match text.split_once("..") {
        Some((first, end)) => {
            let first: u64 = first
                .parse()
                .map_err(|_| format!("`{first}` is not an index"))?;
            let end: u64 = end
                .parse()
                .map_err(|_| format!("`{end}` is not an index"))?;
            first..end
        }
        None => {
            0..text
                .parse()
                .map_err(|_| format!("`{text}` is neither N nor A..B"))?
        }
    };
    if range.is_empty() {
        return Err(format!("`{text}` names no validator"));
    }
    Ok(range)
}

pub(crate) fn parse_kdf(text: &str) -> Result<Kdf, String> {
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
        .and_then(|()| config.check_cluster_avs(loaded.avs.is_some()))
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
                println!("{}", check_summary(&path, &config, &loaded));
                if let config::BeaconSource::Api { nodes, .. } = &config.beacon {
                    return check_beacon_nodes(nodes);
                }
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::from(2)
            }
        },
    }
}

/// What `config check` prints of a valid config: who this operator is, and the cluster lock's
/// hash, which every operator of the cluster must see the same (compare it out of band: a lock
/// someone changed on one machine shows here first).
fn check_summary(path: &std::path::Path, config: &config::Config, loaded: &keys::Loaded) -> String {
    format!(
        "{}: valid. Operator {} of {} ({}), {} validator shares, p2p on {}, metrics on {}, \
         engine {:?}\ncluster `{}`, lock hash {} (every operator of the cluster must print the \
         same)",
        path.display(),
        loaded.index,
        loaded.participants.len(),
        identity::public_key_hex(&loaded.key.public_key()),
        loaded.shares.len(),
        config.listen,
        config.metrics_listen,
        config.engine,
        loaded.cluster.name,
        loaded.cluster.lock_hash,
    ) + &match &loaded.avs {
        None => String::new(),
        Some(avs) => format!(
            "\ncluster AVS key (BN254, {}-of-{}): {:?}; this operator's share {:?}",
            avs.sharing.threshold(),
            avs.sharing.operators(),
            avs.sharing.group_public_key(),
            avs.share.public_key(),
        ),
    }
}

/// Reaches every beacon node and reports its version, genesis and sync state; fails if none
/// answers (a node that does not answer is reported, and tolerated while another does).
fn check_beacon_nodes(urls: &[String]) -> ExitCode {
    let reports = match crate::beacon_cli::describe(urls) {
        Ok(reports) => reports,
        Err(err) => {
            eprintln!("error: beacon_nodes: {err}");
            return ExitCode::from(2);
        }
    };
    let mut reachable = 0;
    for report in &reports {
        match &report.outcome {
            Ok(facts) => {
                reachable += 1;
                println!(
                    "beacon node {}: {}, genesis {} (fork version {}, validators root {}), head \
                     slot {}, {}",
                    report.url,
                    facts.version,
                    facts.genesis_time,
                    cohort_beacon::api::hex(&facts.genesis_fork_version),
                    cohort_beacon::api::hex(&facts.genesis_validators_root),
                    facts.head_slot,
                    if facts.is_syncing {
                        format!("syncing ({} slots behind)", facts.sync_distance)
                    } else {
                        "synced".to_string()
                    }
                );
            }
            Err(err) => println!("beacon node {}: does not answer: {err}", report.url),
        }
    }
    let genesis: std::collections::BTreeSet<_> = reports
        .iter()
        .filter_map(|report| report.outcome.as_ref().ok())
        .map(|facts| (facts.genesis_validators_root, facts.genesis_fork_version))
        .collect();
    if genesis.len() > 1 {
        eprintln!("error: beacon_nodes: the nodes are on different chains (see above)");
        return ExitCode::from(2);
    }
    if reachable == 0 {
        eprintln!("error: beacon_nodes: no beacon node answers");
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}

pub fn keys(command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::Generate { out } => match generate_identity(&out) {
            Ok(public) => {
                println!("{public}");
                eprintln!(
                    "wrote {} (mode 0600); the line above is its public key for cluster.operators",
                    out.display()
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

/// Writes a fresh identity to `out` and returns its public key (hex). The file is created
/// exclusively: nothing already at `out` (a file, a link) is replaced, with no window between
/// a check and the write.
fn generate_identity(out: &std::path::Path) -> Result<String, String> {
    let key = identity::generate(&mut cohort_keystore::os_rng());
    identity::save_new(out, &key).map_err(|err| {
        if err.kind() == std::io::ErrorKind::AlreadyExists {
            format!(
                "{} exists; refusing to overwrite an identity",
                out.display()
            )
        } else {
            format!("{}: {err}", out.display())
        }
    })?;
    Ok(identity::public_key_hex(&key.public_key()))
}

pub fn cluster(command: ClusterCommand) -> ExitCode {
    match command {
        ClusterCommand::Init(args) => {
            let (genesis_time, slot_seconds, slots_per_epoch, beacon) =
                if args.beacon_nodes.is_empty() {
                    (
                        keys::genesis_after(Duration::from_secs(args.genesis_delay)),
                        args.slot_seconds,
                        32,
                        config::Beacon {
                            seed: args.seed,
                            ..Default::default()
                        },
                    )
                } else {
                    let Some(fee_recipient) = args.fee_recipient.clone() else {
                        eprintln!("error: --fee-recipient is required with --beacon-node");
                        return ExitCode::from(2);
                    };
                    match crate::beacon_cli::chain_of(&args.beacon_nodes) {
                        Ok(chain) => (
                            chain.genesis_time,
                            chain.seconds_per_slot,
                            chain.slots_per_epoch,
                            config::Beacon {
                                kind: Some("api".into()),
                                fee_recipient: Some(fee_recipient),
                                ..Default::default()
                            },
                        ),
                        Err(err) => {
                            eprintln!("error: {err}");
                            return ExitCode::from(2);
                        }
                    }
                };
            let validators = match &args.import_keystores {
                None => keys::Validators::Interop(args.validators.clone()),
                Some(dir) => match import_keystores(dir, &args) {
                    Ok(keys) => keys::Validators::Imported(keys),
                    Err(err) => {
                        eprintln!("error: {err}");
                        return ExitCode::from(2);
                    }
                },
            };
            let avs = match (&args.avs_key_file, args.new_avs_key) {
                (Some(path), _) => match read_avs_key(path) {
                    Ok(key) => Some(keys::AvsKey::Existing(key)),
                    Err(err) => {
                        eprintln!("error: --avs-key-file {err}");
                        return ExitCode::from(2);
                    }
                },
                (None, true) => Some(keys::AvsKey::Fresh),
                (None, false) => None,
            };
            let count = match &validators {
                keys::Validators::Interop(range) => range.end - range.start,
                keys::Validators::Imported(keys) => keys.len() as u64,
            };
            let plan = keys::InitPlan {
                out: args.out.clone(),
                name: args.name,
                operators: args.operators,
                validators,
                host: args.host,
                metrics_host: args.metrics_host,
                base_port: args.base_port,
                metrics_base_port: args.metrics_base_port,
                genesis_time,
                slot_seconds,
                slots_per_epoch,
                kdf: args.kdf,
                beacon,
                beacon_nodes: args.beacon_nodes.clone(),
                avs,
            };
            let written = keys::init_cluster(&plan);
            // The imported secrets are wiped here, before anything else runs.
            drop(plan);
            match written {
                Ok(configs) => {
                    for path in &configs {
                        println!("{}", path.display());
                    }
                    eprintln!(
                        "wrote {} operators' configs (printed on stdout), keys and {} validator shares each \
                         under {}; start one with `cohort run --config <config>`",
                        configs.len(),
                        count,
                        args.out.display()
                    );
                    if let Some(avs) = avs_key_of(&args.out) {
                        eprintln!(
                            "cluster AVS key (BN254, split {}-of-{}): G2 0x{}, G1 0x{}",
                            avs.1,
                            configs.len(),
                            avs.0.public_key,
                            avs.0.public_key_g1
                        );
                    }
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

/// The AVS section of the lock just written under `out`, with the lock's threshold.
fn avs_key_of(out: &std::path::Path) -> Option<(keys::LockedAvsKey, u32)> {
    let text = std::fs::read_to_string(out.join("cluster-lock.json")).ok()?;
    let lock: keys::Lock = serde_json::from_str(&text).ok()?;
    Some((lock.avs?, lock.threshold))
}

/// The BN254 key of `--avs-key-file`, read exactly as the supervisor reads its operator key.
fn read_avs_key(path: &std::path::Path) -> Result<cohort_avs_crypto::Bn254Key, String> {
    let key = cohort_supervisor::signing::OperatorKey::load("bn254", path, None, "1")?;
    match key.0 {
        cohort_avs_crypto::OperatorKey::Bn254(key) => Ok(key),
        cohort_avs_crypto::OperatorKey::Ecdsa { .. } => {
            Err(format!("{}: not a BN254 key", path.display()))
        }
    }
}

/// Reads, checks and places the keystores of `--import-keystores`; the error names the file.
fn import_keystores(
    dir: &std::path::Path,
    args: &InitArgs,
) -> Result<Vec<crate::import::IndexedKey>, String> {
    use crate::import;
    let password = import::password(args.password_file.as_deref()).map_err(|e| e.to_string())?;
    let imported = import::read_dir(dir, &password).map_err(|err| err.to_string())?;
    drop(password);
    let chain = if args.beacon_nodes.is_empty() {
        None
    } else {
        let keys: Vec<String> = imported
            .iter()
            .map(|key| cohort_ingress::keys::to_hex(&key.public_key))
            .collect();
        Some(crate::beacon_cli::indices_of(&args.beacon_nodes, &keys)?)
    };
    let placed = import::place(imported, chain.as_ref(), args.validators.clone())
        .map_err(|e| e.to_string())?;
    for key in &placed {
        eprintln!(
            "imported validator {} (0x{}) from {}",
            key.index,
            cohort_ingress::keys::to_hex(&key.key.public_key),
            key.key.file.display()
        );
    }
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "cohort-cli-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn keys_generate_replaces_nothing() {
        let dir = temp("generate");
        let out = dir.join("identity.key");
        let public = generate_identity(&out).expect("fresh file");
        let first = std::fs::read(&out).expect("written");
        let err = generate_identity(&out).expect_err("existing file");
        assert!(err.contains("exists"), "{err}");
        assert_eq!(std::fs::read(&out).expect("kept"), first);
        assert_eq!(
            identity::public_key_hex(&identity::load(&out).expect("loads").public_key()),
            public
        );
        // A dangling link: a check with `exists()` sees nothing there, and the key would then
        // replace the link. Created exclusively, nothing is replaced.
        let link = dir.join("link.key");
        std::os::unix::fs::symlink(dir.join("nowhere"), &link).expect("symlink");
        assert!(generate_identity(&link).is_err());
        assert!(std::fs::symlink_metadata(&link).expect("link").is_symlink());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn config_check_prints_the_lock_hash_and_metrics_stay_on_loopback() {
        let dir = temp("check");
        let plan = keys::InitPlan {
            out: dir.join("cluster"),
            name: "check".into(),
            operators: 4,
            validators: keys::Validators::Interop(0..2),
            host: "10.1.2.3".into(),
            metrics_host: "127.0.0.1".into(),
            base_port: 19000,
            metrics_base_port: 19100,
            genesis_time: 1_800_000_000,
            slot_seconds: 12,
            slots_per_epoch: 32,
            kdf: Kdf::light(),
            beacon: config::Beacon {
                seed: 1,
                ..Default::default()
            },
            beacon_nodes: Vec::new(),
            avs: None,
        };
        let configs = keys::init_cluster(&plan).expect("cluster init");
        let mut summaries = Vec::new();
        for path in &configs {
            let (config, loaded) = load(path).expect("valid");
            assert!(
                config.metrics_listen.ip().is_loopback(),
                "{}",
                config.metrics_listen
            );
            assert_eq!(config.listen.ip().to_string(), "10.1.2.3");
            let summary = check_summary(path, &config, &loaded);
            assert!(
                summary.contains(&loaded.cluster.lock_hash.to_string()),
                "{summary}"
            );
            summaries.push(loaded.cluster.lock_hash);
        }
        assert!(summaries.windows(2).all(|w| w[0] == w[1]), "{summaries:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
    #[test]
    fn avs_key_file_reads_what_the_supervisor_reads() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = temp("avs-key");
        let key = cohort_avs_crypto::Bn254Key::from_be_bytes(&[0x42; 31]).expect("key");
        let secret = alloy_primitives::hex::encode(*key.to_be_bytes());

        let hex_file = dir.join("operator.bn254");
        cohort_keystore::files::write_secret(&hex_file, format!("0x{secret}\n").as_bytes())
            .expect("write");
        assert_eq!(
            read_avs_key(&hex_file).expect("hex secret").public_key(),
            key.public_key()
        );

        let keystore_file = dir.join("operator-bn254.json");
        let keystore = cohort_keystore::eip2335::encrypt(
            &*key.to_be_bytes(),
            "pass",
            &alloy_primitives::hex::encode(key.public_key().to_bytes()),
            "",
            Kdf::light(),
            &mut cohort_keystore::os_rng(),
        )
        .expect("encrypt");
        cohort_keystore::files::write_secret(&keystore_file, keystore.to_json_pretty().as_bytes())
            .expect("write");
        cohort_keystore::files::write_secret(&dir.join("operator-bn254.json.password"), b"pass\n")
            .expect("write");
        assert_eq!(
            read_avs_key(&keystore_file).expect("keystore").public_key(),
            key.public_key()
        );

        // What the supervisor refuses, init refuses: a key others can read, a zero key.
        std::fs::set_permissions(&hex_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(read_avs_key(&hex_file).is_err());
        let zero = dir.join("zero.bn254");
        cohort_keystore::files::write_secret(&zero, b"00").expect("write");
        let err = read_avs_key(&zero).expect_err("zero key");
        assert!(err.contains("zero.bn254"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
