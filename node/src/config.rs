//! The operator's configuration: one TOML file (see `operator.example.toml`), with any field
//! overridden by a `COHORT_…` environment variable, validated in full before anything starts.
//!
//! Validation collects every problem it finds rather than stopping at the first: an operator
//! fixing a config file should see all of it at once, each problem naming its field.

mod engine;
pub(crate) mod read;

pub use engine::Engine;
#[cfg(test)]
use read::parse;
pub use read::{load, load_with};

use cohort_ingress::SlotClock;
use cohort_operator::Channel;
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    num::NonZeroU32,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

/// Environment variables with this prefix override fields: `COHORT_DATA_DIR` sets `data_dir`,
/// `COHORT_ENGINE__URL` sets `engine.url` (a double underscore steps into a table).
pub const ENV_PREFIX: &str = "COHORT_";

/// The file as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// This operator's ed25519 identity (`cohort keys generate`), mode 0600.
    pub identity_key: PathBuf,
    /// Where consensus, marshal, slashing protection and the embedded engine keep their state.
    pub data_dir: PathBuf,
    /// The p2p address this operator listens on.
    pub listen: String,
    /// Where `/metrics` and `/health` are served.
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: String,
    /// How long a stopping node waits for running duties before it stops anyway.
    #[serde(default = "default_stop_timeout_seconds")]
    pub stop_timeout_seconds: u64,
    /// Threads the runner signs, recovers and verifies partial signatures on; unset: every
    /// core the machine has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crypto_threads: Option<usize>,
    /// Beacon nodes (standard Beacon node API URLs) to take duties from and submit to, best
    /// first. Empty: the embedded devnet beacon.
    #[serde(default)]
    pub beacon_nodes: Vec<String>,
    pub cluster: Cluster,
    pub shares: Shares,
    #[serde(default)]
    pub beacon: Beacon,
    #[serde(default)]
    pub engine: Engine,
    #[serde(default)]
    pub p2p: P2p,
    /// The AVS performer supervisor (Hourglass's executor API); off when absent.
    #[serde(default)]
    pub avs: Option<cohort_supervisor::config::File>,
}

fn default_metrics_listen() -> String {
    "127.0.0.1:9100".into()
}

/// More crypto threads than this is a typo, not a machine.
const MAX_CRYPTO_THREADS: usize = 1024;

fn default_stop_timeout_seconds() -> u64 {
    30
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Names the cluster; must be the lock's name. With the lock's hash it makes the p2p and
    /// consensus namespaces, so operators of another cluster or lock cannot connect.
    pub name: String,
    /// Unix time (seconds) at which slot 0 starts.
    pub genesis_time: u64,
    #[serde(default = "default_slot_seconds")]
    pub slot_seconds: u64,
    #[serde(default = "default_slots_per_epoch")]
    pub slots_per_epoch: u64,
    /// Every operator of the cluster, this one included.
    pub operators: Vec<Operator>,
}

fn default_slot_seconds() -> u64 {
    12
}

fn default_slots_per_epoch() -> u64 {
    32
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    /// Hex of the operator's ed25519 public key.
    pub public_key: String,
    /// Where the operator listens for p2p connections.
    pub address: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Shares {
    /// The cluster lock (`cohort cluster init`): every validator's public key and sharing.
    pub lock: PathBuf,
    /// One EIP-2335 keystore per validator, `share-<validator>.json`.
    pub dir: PathBuf,
    /// The keystores' password, mode 0600.
    pub password_file: PathBuf,
}

#[derive(Default, Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Beacon {
    /// `devnet` (the embedded devnet beacon) or `api` (the nodes of `beacon_nodes`). Unset: `api`
    /// when `beacon_nodes` names any node, else `devnet`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Seeds the devnet's duties; every operator of the cluster must use the same.
    #[serde(default)]
    pub seed: u64,
    /// Where the cluster's validators' execution rewards go (`0x` + 40 hex), told to the beacon
    /// nodes every epoch. Required with `api`.
    #[serde(default)]
    pub fee_recipient: Option<String>,
    /// Per-validator fee recipients, by validator index, overriding `fee_recipient`.
    #[serde(default)]
    pub fee_recipients: BTreeMap<String, String>,
    /// Up to 32 bytes of text written into every block the cluster proposes.
    #[serde(default)]
    pub graffiti: Option<String>,
    /// Doppelganger protection: after a start, sign nothing for a validator until the beacon
    /// nodes report it not live in two epochs, or this operator sees its cluster sign for it.
    /// Unset: on with beacon nodes (`api`), off on the embedded devnet.
    #[serde(default)]
    pub doppelganger_protection: Option<bool>,
}

/// Where duties come from, as validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BeaconSource {
    /// The embedded devnet beacon, seeded.
    Devnet { seed: u64 },
    /// Real beacon nodes over the standard Beacon node API.
    Api {
        nodes: Vec<String>,
        fee_recipient: String,
        fee_recipients: BTreeMap<u64, String>,
        graffiti: [u8; 32],
    },
}

fn is_address(text: &str) -> bool {
    text.len() == 42 && text.starts_with("0x") && text[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

fn validate_beacon(p: &mut Vec<Problem>, file: &File) -> BeaconSource {
    let beacon = &file.beacon;
    let kind = beacon.kind.clone().unwrap_or_else(|| {
        if file.beacon_nodes.is_empty() {
            "devnet".into()
        } else {
            "api".into()
        }
    });
    match kind.as_str() {
        "devnet" => {
            if !file.beacon_nodes.is_empty() {
                problem(
                    p,
                    "beacon_nodes",
                    "names beacon nodes, but beacon.kind is `devnet`; remove one of the two",
                );
            }
            BeaconSource::Devnet { seed: beacon.seed }
        }
        "api" => {
            if file.beacon_nodes.is_empty() {
                problem(
                    p,
                    "beacon_nodes",
                    "must name at least one beacon node with `api`",
                );
            }
            for (i, url) in file.beacon_nodes.iter().enumerate() {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    problem(
                        p,
                        format!("beacon_nodes[{i}]"),
                        format!("`{url}` is not an http:// or https:// URL"),
                    );
                }
                if file.beacon_nodes[..i].contains(url) {
                    problem(p, format!("beacon_nodes[{i}]"), "appears twice");
                }
            }
            let fee_recipient = match &beacon.fee_recipient {
                Some(address) if is_address(address) => address.clone(),
                Some(address) => {
                    problem(
                        p,
                        "beacon.fee_recipient",
                        format!("`{address}` is not an address (0x + 40 hex)"),
                    );
                    String::new()
                }
                None => {
                    problem(
                        p,
                        "beacon.fee_recipient",
                        "is required with beacon nodes: proposals would otherwise pay nobody \
                         the operators chose",
                    );
                    String::new()
                }
            };
            let mut fee_recipients = BTreeMap::new();
            for (index, address) in &beacon.fee_recipients {
                let field = format!("beacon.fee_recipients.{index}");
                match index.parse::<u64>() {
                    Ok(index) if is_address(address) => {
                        fee_recipients.insert(index, address.clone());
                    }
                    Ok(_) => problem(p, field, format!("`{address}` is not an address")),
                    Err(_) => problem(p, field, "keys are validator indices"),
                }
            }
            let mut graffiti = [0u8; 32];
            if let Some(text) = &beacon.graffiti {
                if text.len() > 32 {
                    problem(p, "beacon.graffiti", "is longer than 32 bytes");
                } else {
                    graffiti[..text.len()].copy_from_slice(text.as_bytes());
                }
            }
            BeaconSource::Api {
                nodes: file.beacon_nodes.clone(),
                fee_recipient,
                fee_recipients,
                graffiti,
            }
        }
        other => {
            problem(
                p,
                "beacon.kind",
                format!("`{other}` is neither `devnet` nor `api`"),
            );
            BeaconSource::Devnet { seed: beacon.seed }
        }
    }
}

/// Per-channel limits, by channel name (`votes`, `certificates`, `resolver`, `backfill`,
/// `blocks`, `partials`); unnamed channels keep their defaults.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct P2p {
    #[serde(default)]
    pub rate_per_second: BTreeMap<String, u32>,
    #[serde(default)]
    pub max_message_bytes: BTreeMap<String, usize>,
}

/// Whether `n` operators make a cluster: 3f+1 with f >= 1, within what a committee id holds.
pub fn is_cluster_size(n: usize) -> bool {
    n >= 4 && (n - 1).is_multiple_of(3) && n <= cohort_ingress::MAX_OPERATORS
}

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub problem: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.field, self.problem)
    }
}

/// Everything wrong with a config, or why it could not be read at all.
#[derive(Debug)]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} has {} problem{}:",
            self.path.display(),
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A config that passed every check, with paths resolved against the file's directory.
#[derive(Clone, Debug)]
pub struct Config {
    pub file: File,
    pub identity_key: PathBuf,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub stop_timeout: Duration,
    /// Threads of the runner's cryptography (`crypto_threads`, or every core).
    pub crypto_threads: usize,
    pub clock: SlotClock,
    /// Operators in the file's order, parsed.
    pub operators: Vec<(commonware_cryptography::ed25519::PublicKey, SocketAddr)>,
    pub lock: PathBuf,
    pub shares_dir: PathBuf,
    pub password_file: PathBuf,
    pub engine: Engine,
    /// Where duties come from: the embedded devnet beacon or real beacon nodes.
    pub beacon: BeaconSource,
    /// Whether doppelganger protection holds signatures after a start (see [`Beacon`]).
    pub doppelganger_protection: bool,
    /// Rate and size limit of every channel, in [`Channel::ALL`] order.
    pub channels: Vec<ChannelLimits>,
    /// The AVS performer supervisor, when `[avs]` is configured (its operator key loaded).
    pub avs: Option<cohort_supervisor::config::Config>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelLimits {
    pub channel: Channel,
    pub rate_per_second: NonZeroU32,
    /// The configured size limit; unset, it is the largest message an honest operator sends,
    /// which depends on the validator count the lock holds ([`ChannelLimits::max_bytes`]).
    pub max_message_bytes: Option<usize>,
}

impl ChannelLimits {
    /// The size limit for a cluster of `operators` running duties for `validators`.
    pub fn max_bytes(&self, operators: u32, validators: usize) -> usize {
        self.max_message_bytes
            .unwrap_or_else(|| self.channel.max_size(operators, validators))
    }
}

fn problem(problems: &mut Vec<Problem>, field: impl Into<String>, text: impl Into<String>) {
    problems.push(Problem {
        field: field.into(),
        problem: text.into(),
    });
}

fn socket(problems: &mut Vec<Problem>, field: &str, text: &str) -> Option<SocketAddr> {
    match text.parse() {
        Ok(address) => Some(address),
        Err(_) => {
            problem(
                problems,
                field,
                format!("`{text}` is not an address (expected IP:PORT, like 127.0.0.1:9000)"),
            );
            None
        }
    }
}

fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

fn existing_file(problems: &mut Vec<Problem>, field: &str, path: &Path) {
    if !path.is_file() {
        problem(
            problems,
            field,
            format!("{} does not exist or is not a file", path.display()),
        );
    }
}

/// Checks every field; relative paths are taken from `base`, the config file's directory.
#[cfg(test)]
pub fn validate(file: File, base: &Path) -> Result<Config, Vec<Problem>> {
    validate_with(file, base, true)
}

/// As `validate`; without `lock_required` the cluster lock, the shares directory and the
/// password file need not exist yet (a key ceremony writes them).
pub fn validate_with(file: File, base: &Path, lock_required: bool) -> Result<Config, Vec<Problem>> {
    let mut problems = Vec::new();
    let p = &mut problems;

    let identity_key = resolve(base, &file.identity_key);
    existing_file(p, "identity_key", &identity_key);
    let data_dir = resolve(base, &file.data_dir);
    if file.data_dir.as_os_str().is_empty() {
        problem(p, "data_dir", "is empty");
    } else if data_dir.exists() && !data_dir.is_dir() {
        problem(
            p,
            "data_dir",
            format!("{} exists and is not a directory", data_dir.display()),
        );
    }
    let listen = socket(p, "listen", &file.listen);
    let metrics_listen = socket(p, "metrics_listen", &file.metrics_listen);
    if listen.is_some() && listen == metrics_listen {
        problem(p, "metrics_listen", "is the same address as `listen`");
    }
    if let Engine::Embedded {
        rpc_listen: Some(rpc),
        ..
    } = &file.engine
        && [listen, metrics_listen].contains(&Some(*rpc))
    {
        problem(
            p,
            "engine.rpc_listen",
            "is the same address as `listen` or `metrics_listen`",
        );
    }
    if !(1..=600).contains(&file.stop_timeout_seconds) {
        problem(p, "stop_timeout_seconds", "must be within 1..=600");
    }
    if let Some(threads) = file.crypto_threads
        && !(1..=MAX_CRYPTO_THREADS).contains(&threads)
    {
        problem(
            p,
            "crypto_threads",
            format!("must be within 1..={MAX_CRYPTO_THREADS}"),
        );
    }

    // The cluster.
    let cluster = &file.cluster;
    let name_ok = !cluster.name.is_empty()
        && cluster.name.len() <= 64
        && cluster
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !name_ok {
        problem(
            p,
            "cluster.name",
            "must be 1 to 64 characters of a-z, 0-9 and -",
        );
    }
    if cluster.genesis_time == 0 {
        problem(p, "cluster.genesis_time", "must be a unix time in seconds");
    }
    if !(1..=3_600).contains(&cluster.slot_seconds) {
        problem(p, "cluster.slot_seconds", "must be within 1..=3600");
    }
    if !(1..=1_024).contains(&cluster.slots_per_epoch) {
        problem(p, "cluster.slots_per_epoch", "must be within 1..=1024");
    }
    let n = cluster.operators.len();
    if !is_cluster_size(n) {
        problem(
            p,
            "cluster.operators",
            format!(
                "has {n} operators; a cluster has 3f+1 (4, 7, 10, 13) of at most {}",
                cohort_ingress::MAX_OPERATORS
            ),
        );
    }
    let mut operators = Vec::new();
    for (i, operator) in cluster.operators.iter().enumerate() {
        let key = cohort_keystore::identity::parse_public_key(&operator.public_key)
            .map_err(|err| {
                problem(
                    p,
                    format!("cluster.operators[{i}].public_key"),
                    format!("not an ed25519 public key: {err}"),
                )
            })
            .ok();
        let address = socket(
            p,
            &format!("cluster.operators[{i}].address"),
            &operator.address,
        );
        if let (Some(key), Some(address)) = (key, address) {
            if operators.iter().any(|(k, _)| *k == key) {
                problem(
                    p,
                    format!("cluster.operators[{i}].public_key"),
                    "appears twice",
                );
            }
            if operators.iter().any(|(_, a)| *a == address) {
                problem(
                    p,
                    format!("cluster.operators[{i}].address"),
                    "appears twice",
                );
            }
            operators.push((key, address));
        }
    }

    // Keys.
    let lock = resolve(base, &file.shares.lock);
    if lock_required {
        existing_file(p, "shares.lock", &lock);
    }
    let shares_dir = resolve(base, &file.shares.dir);
    let password_file = resolve(base, &file.shares.password_file);
    // A key ceremony creates the shares directory and password file along with the lock.
    if lock_required {
        if !shares_dir.is_dir() {
            problem(
                p,
                "shares.dir",
                format!("{} is not a directory", shares_dir.display()),
            );
        }
        existing_file(p, "shares.password_file", &password_file);
    }

    let beacon = validate_beacon(p, &file);
    let doppelganger_protection = file
        .beacon
        .doppelganger_protection
        .unwrap_or(matches!(beacon, BeaconSource::Api { .. }));

    let engine = engine::validate(p, base, &file.engine);

    // Channel limits: names must be channels, sizes must fit what honest peers send.
    let known: Vec<&str> = Channel::ALL.iter().map(|c| c.name()).collect();
    let rate_names = file.p2p.rate_per_second.keys();
    let size_names = file.p2p.max_message_bytes.keys();
    for (table, names) in [
        ("p2p.rate_per_second", rate_names.collect::<Vec<_>>()),
        ("p2p.max_message_bytes", size_names.collect::<Vec<_>>()),
    ] {
        for name in names {
            if Channel::from_name(name).is_none() {
                problem(
                    p,
                    format!("{table}.{name}"),
                    format!("no such channel (channels: {})", known.join(", ")),
                );
            }
        }
    }
    let mut channels = Vec::new();
    for channel in Channel::ALL {
        let name = channel.name();
        let rate = match file.p2p.rate_per_second.get(name) {
            None => channel.default_rate(),
            Some(rate) => NonZeroU32::new(*rate).unwrap_or_else(|| {
                problem(p, format!("p2p.rate_per_second.{name}"), "must be above 0");
                NonZeroU32::MIN
            }),
        };
        // Validators are known only from the lock; the size check there uses the real count.
        channels.push(ChannelLimits {
            channel,
            rate_per_second: rate,
            max_message_bytes: file.p2p.max_message_bytes.get(name).copied(),
        });
    }

    let clock = SlotClock {
        genesis: SystemTime::UNIX_EPOCH + Duration::from_secs(cluster.genesis_time),
        slot_duration: Duration::from_secs(cluster.slot_seconds.max(1)),
        intervals_per_slot: 3,
        slots_per_epoch: cluster.slots_per_epoch.max(1),
        // The embedded devnet beacon signs mainnet-shaped sync committees; a beacon node's
        // `config/spec` decides it once the node talks to one.
        sync_committee: cohort_ingress::SyncCommitteeSpec::MAINNET,
        skew_ms: 0,
    };

    // The AVS supervisor's section: its own checks, each problem already named `avs.…`.
    let avs = match &file.avs {
        None => None,
        Some(section) => match cohort_supervisor::config::validate(section.clone(), base) {
            Ok(avs) => Some(avs),
            Err(found) => {
                for found in found {
                    problem(p, found.field, found.problem);
                }
                None
            }
        },
    };
    match (problems.is_empty(), listen, metrics_listen, engine) {
        (true, Some(listen), Some(metrics_listen), Some(engine)) => Ok(Config {
            avs,
            stop_timeout: Duration::from_secs(file.stop_timeout_seconds),
            crypto_threads: file.crypto_threads.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            }),
            file,
            identity_key,
            data_dir,
            listen,
            metrics_listen,
            clock,
            operators,
            lock,
            shares_dir,
            password_file,
            engine,
            beacon,
            doppelganger_protection,
            channels,
        }),
        _ => Err(problems),
    }
}

impl Config {
    /// Checks each configured size limit against `validators`: a limit below the largest
    /// message an honest operator sends would cut honest peers off.
    /// A cluster-run AVS is signed with the cluster's AVS key: the lock must carry one.
    pub fn check_cluster_avs(&self, lock_has_avs_key: bool) -> Result<(), Vec<Problem>> {
        let mut problems = Vec::new();
        if let Some(avs) = &self.avs
            && !lock_has_avs_key
        {
            for entry in avs.avs.values().filter(|entry| entry.cluster) {
                problem(
                    &mut problems,
                    "avs.performers",
                    format!(
                        "AVS {} is cluster-run (cluster = true), but the cluster lock has no \
                         AVS key to sign it with (`cluster init --new-avs-key` or \
                         `--avs-key-file`)",
                        entry.address
                    ),
                );
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    pub fn check_channel_sizes(&self, validators: usize) -> Result<(), Vec<Problem>> {
        let operators = self.operators.len() as u32;
        let mut problems = Vec::new();
        for limits in &self.channels {
            let honest = limits.channel.max_size(operators, validators);
            if let Some(configured) = limits.max_message_bytes
                && configured < honest
            {
                problem(
                    &mut problems,
                    format!("p2p.max_message_bytes.{}", limits.channel),
                    format!(
                        "{configured} is below {honest}, the largest message an honest operator \
                         sends on this channel with {operators} operators and {validators} \
                         validators"
                    ),
                );
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The limits of `channel`: as configured, or its defaults.
    pub fn limits(&self, channel: Channel) -> ChannelLimits {
        self.channels
            .iter()
            .find(|limits| limits.channel == channel)
            .copied()
            .unwrap_or(ChannelLimits {
                channel,
                rate_per_second: channel.default_rate(),
                max_message_bytes: None,
            })
    }

    /// The network's own limit for `validators`: the largest channel's.
    pub fn max_message_size(&self, validators: usize) -> usize {
        let operators = self.operators.len() as u32;
        self.channels
            .iter()
            .map(|limits| limits.max_bytes(operators, validators))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../operator.example.toml");

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn the_example_parses() {
        let file = parse(EXAMPLE, no_env()).expect("example parses");
        assert_eq!(file.cluster.operators.len(), 4);
        assert_eq!(file.engine, Engine::default());
    }

    #[test]
    fn environment_overrides_fields_and_nested_fields() {
        let env = vec![
            ("COHORT_LISTEN".to_string(), "127.0.0.1:7777".to_string()),
            ("COHORT_CLUSTER__SLOT_SECONDS".to_string(), "6".to_string()),
            ("COHORT_ENGINE__KIND".to_string(), "remote".to_string()),
            (
                "COHORT_ENGINE__URL".to_string(),
                "http://10.0.0.9:8551".to_string(),
            ),
            (
                "COHORT_ENGINE__JWT_SECRET".to_string(),
                "jwt.hex".to_string(),
            ),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let file = parse(EXAMPLE, env).expect("overrides apply");
        assert_eq!(file.listen, "127.0.0.1:7777");
        assert_eq!(file.cluster.slot_seconds, 6);
        assert_eq!(
            file.engine,
            Engine::Remote {
                url: "http://10.0.0.9:8551".into(),
                jwt_secret: "jwt.hex".into(),
                allow_remote_http: false,
            }
        );
    }

    #[test]
    fn beacon_nodes_are_checked_field_by_field() {
        let mut p = Vec::new();
        let mut file = parse(EXAMPLE, no_env()).expect("example parses");
        assert_eq!(
            validate_beacon(&mut p, &file),
            BeaconSource::Devnet { seed: 1 }
        );
        assert!(p.is_empty(), "{p:?}");

        // Nodes named: `api` is implied, and it needs a fee recipient and real URLs.
        file.beacon.kind = None;
        file.beacon_nodes = vec![
            "http://127.0.0.1:5052".into(),
            "127.0.0.1:5053".into(),
            "http://127.0.0.1:5052".into(),
        ];
        file.beacon
            .fee_recipients
            .insert("six".into(), "0x00".into());
        file.beacon.graffiti = Some("x".repeat(33));
        validate_beacon(&mut p, &file);
        let fields: Vec<&str> = p.iter().map(|problem| problem.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "beacon_nodes[1]",
                "beacon_nodes[2]",
                "beacon.fee_recipient",
                "beacon.fee_recipients.six",
                "beacon.graffiti"
            ],
            "{p:?}"
        );

        let mut p = Vec::new();
        file.beacon_nodes.truncate(1);
        file.beacon.fee_recipients.clear();
        file.beacon.graffiti = Some("cohort".into());
        file.beacon.fee_recipient = Some(format!("0x{}", "ab".repeat(20)));
        let BeaconSource::Api {
            nodes, graffiti, ..
        } = validate_beacon(&mut p, &file)
        else {
            panic!("beacon nodes mean the API: {p:?}");
        };
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(nodes, ["http://127.0.0.1:5052"]);
        assert_eq!(&graffiti[..6], b"cohort");

        // Naming nodes while asking for the devnet is a contradiction, not a silent choice.
        let mut p = Vec::new();
        file.beacon.kind = Some("devnet".into());
        validate_beacon(&mut p, &file);
        assert_eq!(p[0].field, "beacon_nodes", "{p:?}");
    }

    #[test]
    fn each_engine_kind_takes_only_its_own_fields() {
        let remote = vec![("COHORT_ENGINE__KIND".to_string(), "remote".to_string())];
        let problems = parse(EXAMPLE, remote).expect_err("remote without url or secret");
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["engine.url", "engine.jwt_secret"], "{problems:?}");
        assert!(
            problems[0]
                .problem
                .contains("is required with engine.kind = \"remote\""),
            "{}",
            problems[0]
        );

        let text = EXAMPLE.replace(
            "kind = \"embedded\"",
            "kind = \"embedded\"\nurl = \"http://127.0.0.1:8551\"",
        );
        let problems = parse(&text, no_env()).expect_err("a url for the embedded engine");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, "engine.url");
        assert!(
            problems[0]
                .problem
                .contains("only used with engine.kind = \"remote\""),
            "{}",
            problems[0]
        );

        let text = EXAMPLE.replace("kind = \"embedded\"", "kind = \"external\"");
        let problems = parse(&text, no_env()).expect_err("unknown kind");
        assert_eq!(problems[0].field, "engine.kind", "{}", problems[0]);
        assert!(
            problems[0].problem.contains("`external`"),
            "{}",
            problems[0]
        );

        // A table without `kind` is the embedded engine, as a missing table is.
        let text = EXAMPLE.replace("kind = \"embedded\"", "");
        assert_eq!(
            parse(&text, no_env()).expect("default kind").engine,
            Engine::default()
        );
        let text = EXAMPLE
            .replace("[engine]", "")
            .replace("kind = \"embedded\"", "");
        assert_eq!(
            parse(&text, no_env()).expect("no table").engine,
            Engine::default()
        );
    }

    #[test]
    fn the_embedded_engine_takes_a_genesis_file_and_refuses_one_it_cannot_use() {
        let dir = std::env::temp_dir().join(format!("cohort-genesis-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        std::fs::write(dir.join("chain.json"), cohort_evm::DEVNET_GENESIS).expect("written");
        std::fs::write(dir.join("broken.json"), "{\"config\": 1}").expect("written");
        let with = |line: &str| EXAMPLE.replace("kind = \"embedded\"", line);
        let engine_of = |line: &str| {
            let file = parse(&with(line), no_env()).expect("parses");
            let problems = match validate(file, &dir) {
                Ok(config) => return Ok(config.engine),
                Err(problems) => problems,
            };
            let genesis: Vec<_> = problems
                .into_iter()
                .filter(|p| p.field == "engine.genesis")
                .collect();
            Err(genesis)
        };
        // Other fields of the example fail validation here (no keys in `dir`); only the
        // genesis problems are looked at.
        let good = engine_of("kind = \"embedded\"\ngenesis = \"chain.json\"");
        assert!(
            good.is_ok() || matches!(&good, Err(p) if p.is_empty()),
            "{good:?}"
        );
        let missing = engine_of("kind = \"embedded\"\ngenesis = \"nowhere.json\"");
        assert!(
            matches!(&missing, Err(p) if p.len() == 1 && p[0].problem.contains("cannot be read")),
            "{missing:?}"
        );
        let broken = engine_of("kind = \"embedded\"\ngenesis = \"broken.json\"");
        assert!(
            matches!(&broken, Err(p) if p.len() == 1 && p[0].problem.contains("broken.json")),
            "{broken:?}"
        );
        let problems =
            parse(&with("kind = \"embedded\"\ngenesis = 5"), no_env()).expect_err("a number");
        assert_eq!(problems[0].field, "engine.genesis", "{}", problems[0]);
        let problems = parse(
            &with(
                "kind = \"remote\"\nurl = \"http://127.0.0.1:8551\"\njwt_secret = \"jwt.hex\"\n\
                 genesis = \"chain.json\"",
            ),
            no_env(),
        )
        .expect_err("a genesis for an external client");
        assert!(
            problems.iter().any(|p| p.field == "engine.genesis"
                && p.problem
                    .contains("only used with engine.kind = \"embedded\"")),
            "{problems:?}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_execution_rpc_address_is_checked_and_belongs_to_the_embedded_engine() {
        let with = |line: &str| EXAMPLE.replace("kind = \"embedded\"", line);
        let config = parse(
            &with("kind = \"embedded\"\nrpc_listen = \"127.0.0.1:8545\""),
            no_env(),
        )
        .expect("an rpc address");
        assert_eq!(
            config.engine,
            Engine::Embedded {
                rpc_listen: Some("127.0.0.1:8545".parse().expect("an address")),
                genesis: None,
            }
        );
        let problems = parse(
            &with("kind = \"embedded\"\nrpc_listen = \"localhost\""),
            no_env(),
        )
        .expect_err("no port");
        assert_eq!(problems[0].field, "engine.rpc_listen", "{}", problems[0]);
        // The metrics address again: parses, and validation names the clash.
        let file = parse(
            &with("kind = \"embedded\"\nrpc_listen = \"127.0.0.1:9100\""),
            no_env(),
        )
        .expect("parses");
        let problems = validate(file, Path::new("/nonexistent")).expect_err("the metrics address");
        assert!(
            problems
                .iter()
                .any(|p| p.field == "engine.rpc_listen" && p.problem.contains("same address")),
            "{problems:?}"
        );
        let problems = parse(
            &with(
                "kind = \"remote\"\nurl = \"http://127.0.0.1:8551\"\njwt_secret = \"jwt.hex\"\n\
                 rpc_listen = \"127.0.0.1:8545\"",
            ),
            no_env(),
        )
        .expect_err("an rpc address for an external client");
        let named: Vec<_> = problems.iter().map(|p| p.to_string()).collect();
        assert!(
            named.iter().any(|p| p.contains("engine.rpc_listen")
                && p.contains("only used with engine.kind = \"embedded\"")),
            "{named:?}"
        );
    }

    #[test]
    fn a_wrongly_typed_engine_field_is_named() {
        let text = EXAMPLE.replace(
            "kind = \"embedded\"",
            "kind = \"remote\"\nurl = 8551\njwt_secret = \"jwt.hex\"",
        );
        let problems = parse(&text, no_env()).expect_err("wrong type");
        assert_eq!(problems[0].field, "engine.url", "{}", problems[0]);
        assert!(problems[0].problem.contains("string"), "{}", problems[0]);

        // Serde's own errors inside the table name the table, not the one above it.
        let text = EXAMPLE.replace("kind = \"embedded\"", "kind = \"embedded\"\nport = 8551");
        let problems = parse(&text, no_env()).expect_err("unknown field");
        assert_eq!(problems[0].field, "engine", "{}", problems[0]);
        let text = problems[0].to_string();
        assert!(text.contains("port") && text.contains("line"), "{text}");
    }

    #[test]
    fn an_override_value_is_never_echoed() {
        let dir = std::env::temp_dir().join(format!("cohort-config-redact-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("operator.toml");
        std::fs::write(&path, EXAMPLE).expect("write config");
        let secret = "f2b31bcbaa7c0e5a3d0f6f4d58b0f3d6ab3b1f4ac6a3f0c1f6f1c5e2e6b3d4a1";
        let env = vec![
            ("COHORT_ENGINE__KIND".to_string(), "remote".to_string()),
            (
                "COHORT_ENGINE__URL".to_string(),
                "http://127.0.0.1:8551".to_string(),
            ),
            // A secret put where a path belongs: the file does not exist, and says so.
            ("COHORT_ENGINE__JWT_SECRET".to_string(), secret.to_string()),
            // And a value serde refuses, quoting it in its own message.
            (
                "COHORT_STOP_TIMEOUT_SECONDS".to_string(),
                "hunter2-pw".to_string(),
            ),
        ];
        let err = load(&path, env.clone()).expect_err("invalid").to_string();
        assert!(!err.contains("hunter2-pw"), "{err}");
        assert!(err.contains("COHORT_STOP_TIMEOUT_SECONDS"), "{err}");
        let err = load(&path, env[..3].to_vec())
            .expect_err("invalid")
            .to_string();
        assert!(!err.contains(secret), "{err}");
        assert!(err.contains("COHORT_ENGINE__JWT_SECRET"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_engine_off_this_machine_needs_an_opt_in() {
        let mut file = parse(EXAMPLE, no_env()).expect("example parses");
        file.engine = Engine::Remote {
            url: "http://10.0.0.9:8551".into(),
            jwt_secret: "jwt.hex".into(),
            allow_remote_http: false,
        };
        let problems = validate(file.clone(), Path::new("/nonexistent")).expect_err("invalid");
        let url = problems
            .iter()
            .find(|p| p.field == "engine.url")
            .expect("engine.url named");
        assert!(url.problem.contains("allow_remote_http"), "{url}");
        file.engine = Engine::Remote {
            url: "http://10.0.0.9:8551".into(),
            jwt_secret: "jwt.hex".into(),
            allow_remote_http: true,
        };
        let problems = validate(file, Path::new("/nonexistent")).expect_err("files missing");
        assert!(
            !problems.iter().any(|p| p.field == "engine.url"),
            "{problems:?}"
        );
    }

    #[test]
    fn an_unknown_override_names_the_variable() {
        let env = vec![("COHORT_LISTN".to_string(), "x".to_string())];
        let problems = parse(EXAMPLE, env).expect_err("unknown field");
        let text = problems[0].to_string();
        assert!(
            text.contains("listn") && text.contains("COHORT_LISTN"),
            "{text}"
        );
    }

    #[test]
    fn an_unknown_field_in_the_file_is_refused_with_its_line() {
        let text = format!("{EXAMPLE}\n[engine2]\nkind = 1\n");
        let problems = parse(&text, no_env()).expect_err("unknown table");
        let text = problems[0].to_string();
        assert!(text.contains("engine2") && text.contains("line"), "{text}");
    }

    #[test]
    fn a_wrongly_typed_field_is_named_with_its_table() {
        let text = EXAMPLE.replace("slot_seconds = 12", "slot_seconds = \"twelve\"");
        let problems = parse(&text, no_env()).expect_err("wrong type");
        assert_eq!(problems[0].field, "cluster.slot_seconds", "{}", problems[0]);
        assert!(problems[0].problem.starts_with("line "), "{}", problems[0]);
    }

    #[test]
    fn every_bad_field_is_named_at_once() {
        let mut file = parse(EXAMPLE, no_env()).expect("example parses");
        file.listen = "nowhere".into();
        file.cluster.name = "Bad Name".into();
        file.cluster.operators.truncate(3);
        file.engine = Engine::Remote {
            url: "https://127.0.0.1:8551".into(),
            jwt_secret: "jwt.hex".into(),
            allow_remote_http: false,
        };
        file.p2p.rate_per_second.insert("votes".into(), 0);
        file.p2p.max_message_bytes.insert("gossip".into(), 10);
        let problems = validate(file, Path::new("/nonexistent")).expect_err("invalid");
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        for field in [
            "listen",
            "cluster.name",
            "cluster.operators",
            "engine.url",
            "engine.jwt_secret",
            "p2p.rate_per_second.votes",
            "p2p.max_message_bytes.gossip",
            "identity_key",
            "shares.lock",
        ] {
            assert!(fields.contains(&field), "{field} missing from {fields:?}");
        }
    }
}
