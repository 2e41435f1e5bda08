//! The `[avs]` section of the node's TOML config (also the whole of what `cohort executor`
//! reads): the file as written ([`File`]) and the checked form the supervisor runs on
//! ([`Config`]). Checking collects every problem, each named by its field, so an operator
//! fixing a file sees all of it at once.

use crate::signing::{AggregatorKey, OperatorKey};
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

/// The `[avs]` table as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Where `ExecutorService`, `ExecutorManagementService` and `grpc.health.v1` are served.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// A second port for the management service only (it is also on `listen`).
    #[serde(default)]
    pub management_listen: Option<String>,
    /// Where `cohort executor` serves `/metrics` (under `cohort run` they are on the node's).
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// This operator's address (`0x` + 40 hex); tasks name it as `executor_address`.
    pub operator_address: String,
    /// The address the whole cluster is registered under as one AVS operator (`0x` + 40 hex):
    /// tasks for a cluster-run AVS (`cluster = true`) name it as `executor_address`, and their
    /// results are signed by the cluster's threshold BN254 key under it. Only `cohort run`
    /// can serve a cluster-run AVS.
    #[serde(default)]
    pub cluster_operator_address: Option<String>,
    /// The key results are signed with.
    pub operator_key: OperatorKeyFile,
    /// `ECDSACertificateVerifier` address and major version: the EIP-712 domain of ECDSA result
    /// signatures (required with an ECDSA operator key).
    #[serde(default)]
    pub ecdsa_certificate_verifier: Option<String>,
    #[serde(default = "default_verifier_version")]
    pub ecdsa_certificate_verifier_version: String,
    /// Where `DeployArtifact`'s `registry_url` names executables.
    pub artifacts_dir: PathBuf,
    /// Where processed tasks, deployments and verified artifact copies are kept.
    pub data_dir: PathBuf,
    #[serde(default)]
    pub auth: Auth,
    #[serde(default)]
    pub limits: Limits,
    /// The aggregators whose task signatures are accepted.
    #[serde(default)]
    pub aggregators: Vec<AggregatorFile>,
    /// The AVSs this executor serves.
    #[serde(default)]
    pub performers: Vec<AvsFile>,
}

fn default_listen() -> String {
    "127.0.0.1:9090".into()
}

fn default_verifier_version() -> String {
    "1".into()
}

/// The operator's signing key: a secret file (mode 0600) holding the secret scalar as hex.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorKeyFile {
    /// `ecdsa` (secp256k1) or `bn254`.
    pub kind: String,
    pub secret_file: PathBuf,
}

/// Management-API authentication (Hourglass's challenge tokens).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    #[serde(default)]
    pub enabled: bool,
}

/// Timings and limits. Defaults follow Hourglass where it has one.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub health_interval_ms: u64,
    pub health_timeout_ms: u64,
    /// Failed health checks in a row that restart a performer.
    pub health_failures: u32,
    /// How long a staged performer has to turn healthy.
    pub stage_timeout_ms: u64,
    /// SIGTERM to SIGKILL.
    pub stop_grace_ms: u64,
    /// How long a draining performer's in-flight tasks may run before it is stopped anyway.
    pub drain_timeout_ms: u64,
    pub restart_backoff_ms: u64,
    pub restart_backoff_max_ms: u64,
    /// Restarts before a performer is marked failed.
    pub max_restarts: u32,
    /// A task's deadline when the caller sends none.
    pub task_timeout_ms: u64,
    /// How long a stopping executor waits for in-flight tasks.
    pub stop_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            health_interval_ms: 5_000,
            health_timeout_ms: 1_000,
            health_failures: 3,
            stage_timeout_ms: 60_000,
            stop_grace_ms: 10_000,
            drain_timeout_ms: 300_000,
            restart_backoff_ms: 2_000,
            restart_backoff_max_ms: 30_000,
            max_restarts: 5,
            task_timeout_ms: 60_000,
            stop_timeout_ms: 30_000,
        }
    }
}

/// One accepted aggregator: an ECDSA address, or a BN254 G2 public key (128 bytes hex) under
/// the address tasks name it by.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatorFile {
    pub address: String,
    #[serde(default)]
    pub bn254_public_key: Option<String>,
}

/// One AVS and how its performer runs.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AvsFile {
    pub avs_address: String,
    /// The operator sets this operator belongs to for the AVS (empty: any).
    #[serde(default)]
    pub operator_sets: Vec<u32>,
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent_tasks: usize,
    /// Tasks waiting for a worker beyond which SubmitTask answers RESOURCE_EXHAUSTED.
    #[serde(default = "default_queue_depth")]
    pub queue_depth: usize,
    /// Arguments to the executable; `{port}` becomes the performer's port.
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The port the performer always listens on, for performers that ignore `GRPC_PORT`
    /// (Hourglass's template binds 8080). Two versions cannot then run side by side, so a
    /// deployment replaces the running one in place: drain, stop, start the new one.
    #[serde(default)]
    pub port: Option<u16>,
    /// Run by the whole cluster as one AVS operator: every operator of the cluster serves it,
    /// a task any of them receives is ordered through the cluster chain, every operator's
    /// performer runs it, and the output the cluster agrees on is signed with the cluster's
    /// key (see `cluster_operator_address`). Off: this operator signs with its own key.
    #[serde(default)]
    pub cluster: bool,
    /// The performer deployed at start when none was deployed before (both or neither).
    #[serde(default)]
    pub registry_url: Option<String>,
    #[serde(default)]
    pub digest: Option<String>,
}

fn default_max_concurrent() -> usize {
    16
}

fn default_queue_depth() -> usize {
    256
}

/// One problem with the config, named by its field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub problem: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

/// The checked config.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub management_listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    /// Lowercase `0x…`.
    pub operator_address: String,
    /// Lowercase `0x…`; set whenever an AVS is cluster-run.
    pub cluster_operator_address: Option<String>,
    pub operator_key: OperatorKey,
    pub artifacts_dir: PathBuf,
    pub data_dir: PathBuf,
    pub auth_enabled: bool,
    pub limits: Timings,
    pub aggregators: Vec<AggregatorKey>,
    pub avs: BTreeMap<String, AvsConfig>,
}

/// [`Limits`] as durations.
#[derive(Clone, Debug)]
pub struct Timings {
    pub health_interval: Duration,
    pub health_timeout: Duration,
    pub health_failures: u32,
    pub stage_timeout: Duration,
    pub stop_grace: Duration,
    pub drain_timeout: Duration,
    pub restart_backoff: Duration,
    pub restart_backoff_max: Duration,
    pub max_restarts: u32,
    pub task_timeout: Duration,
    pub stop_timeout: Duration,
}

/// One AVS, checked.
#[derive(Clone, Debug)]
pub struct AvsConfig {
    /// Lowercase `0x…`.
    pub address: String,
    pub operator_sets: Vec<u32>,
    pub max_concurrent_tasks: usize,
    pub queue_depth: usize,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Set for a performer bound to a fixed port: deployments replace it in place.
    pub fixed_port: Option<u16>,
    pub initial: Option<(String, String)>,
    /// Run by the whole cluster (see [`AvsFile::cluster`]).
    pub cluster: bool,
}

impl Config {
    /// The address tasks for `avs` must name as their executor: the cluster's for a
    /// cluster-run AVS, this operator's otherwise.
    pub fn executor_for(&self, avs: &str) -> &str {
        match (self.avs.get(avs), &self.cluster_operator_address) {
            (Some(entry), Some(cluster)) if entry.cluster => cluster,
            _ => &self.operator_address,
        }
    }

    /// Whether any AVS here is cluster-run.
    pub fn runs_cluster_avs(&self) -> bool {
        self.avs.values().any(|avs| avs.cluster)
    }
}

/// Parses the `[avs]` table of a TOML document (the node's config or an executor-only file).
pub fn parse_table(table: &toml::Table) -> Result<File, Vec<Problem>> {
    let Some(value) = table.get("avs") else {
        return Err(vec![Problem {
            field: "avs".into(),
            problem: "missing: the executor needs an [avs] table".into(),
        }]);
    };
    value.clone().try_into::<File>().map_err(|err| {
        vec![Problem {
            field: "avs".into(),
            problem: err.message().to_string(),
        }]
    })
}

/// Reads an executor-only config file (`cohort executor --config F`): its `[avs]` table.
pub fn load(path: &Path) -> Result<Config, Vec<Problem>> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        vec![Problem {
            field: "(file)".into(),
            problem: format!("cannot read {}: {err}", path.display()),
        }]
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|err| {
        vec![Problem {
            field: "(syntax)".into(),
            problem: err.to_string().trim().replace('\n', " "),
        }]
    })?;
    let file = parse_table(&table)?;
    validate(file, path.parent().unwrap_or(Path::new(".")))
}

/// `0x` + 40 hex, lowercased.
pub fn parse_address(text: &str) -> Option<String> {
    let hex = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))?;
    (hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("0x{}", hex.to_ascii_lowercase()))
}

/// Checks every field; relative paths are taken from `base` (the config file's directory).
/// Loads the operator key from its secret file.
pub fn validate(file: File, base: &Path) -> Result<Config, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut problem = |field: &str, text: String| {
        problems.push(Problem {
            field: format!("avs.{field}"),
            problem: text,
        })
    };
    let listen = file
        .listen
        .parse::<SocketAddr>()
        .map_err(|err| problem("listen", format!("`{}`: {err}", file.listen)))
        .ok();
    let management_listen = match &file.management_listen {
        None => None,
        Some(text) => text
            .parse::<SocketAddr>()
            .map_err(|err| problem("management_listen", format!("`{text}`: {err}")))
            .ok(),
    };
    let metrics_listen = match &file.metrics_listen {
        None => None,
        Some(text) => text
            .parse::<SocketAddr>()
            .map_err(|err| problem("metrics_listen", format!("`{text}`: {err}")))
            .ok(),
    };
    let operator_address = parse_address(&file.operator_address);
    if operator_address.is_none() {
        problem(
            "operator_address",
            format!("`{}` is not 0x + 40 hex", file.operator_address),
        );
    }
    let resolve = |path: &Path| {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            base.join(path)
        }
    };
    // Optional addresses: absent is fine, present must parse.
    let mut optional_address = |field: &str, value: &Option<String>| {
        let text = value.as_ref()?;
        let parsed = parse_address(text);
        if parsed.is_none() {
            problem(field, format!("`{text}` is not 0x + 40 hex"));
        }
        parsed
    };
    let cluster_operator_address =
        optional_address("cluster_operator_address", &file.cluster_operator_address);
    let verifier = optional_address(
        "ecdsa_certificate_verifier",
        &file.ecdsa_certificate_verifier,
    );
    let secret_file = resolve(&file.operator_key.secret_file);
    let operator_key = match OperatorKey::load(
        &file.operator_key.kind,
        &secret_file,
        verifier.as_deref(),
        &file.ecdsa_certificate_verifier_version,
    ) {
        Ok(key) => Some(key),
        Err(err) => {
            problem("operator_key", err);
            None
        }
    };
    if let (Some(key), Some(address)) = (&operator_key, &operator_address)
        && let Some(derived) = key.address()
        && &derived != address
    {
        problem(
            "operator_address",
            format!("{address} is not the ECDSA key's address ({derived})"),
        );
    }
    let artifacts_dir = resolve(&file.artifacts_dir);
    if !artifacts_dir.is_dir() {
        problem(
            "artifacts_dir",
            format!("{} is not a directory", artifacts_dir.display()),
        );
    }
    let data_dir = resolve(&file.data_dir);
    let limits = &file.limits;
    let ms = Duration::from_millis;
    for (field, value) in [
        ("limits.health_interval_ms", limits.health_interval_ms),
        ("limits.health_timeout_ms", limits.health_timeout_ms),
        ("limits.stage_timeout_ms", limits.stage_timeout_ms),
        ("limits.task_timeout_ms", limits.task_timeout_ms),
        ("limits.restart_backoff_ms", limits.restart_backoff_ms),
    ] {
        if value == 0 {
            problem(field, "must be above 0".into());
        }
    }
    if limits.health_failures == 0 {
        problem("limits.health_failures", "must be at least 1".into());
    }
    let timings = Timings {
        health_interval: ms(limits.health_interval_ms),
        health_timeout: ms(limits.health_timeout_ms),
        health_failures: limits.health_failures,
        stage_timeout: ms(limits.stage_timeout_ms),
        stop_grace: ms(limits.stop_grace_ms),
        drain_timeout: ms(limits.drain_timeout_ms),
        restart_backoff: ms(limits.restart_backoff_ms),
        restart_backoff_max: ms(limits.restart_backoff_max_ms.max(limits.restart_backoff_ms)),
        max_restarts: limits.max_restarts,
        task_timeout: ms(limits.task_timeout_ms),
        stop_timeout: ms(limits.stop_timeout_ms),
    };
    let mut aggregators = Vec::new();
    for (i, aggregator) in file.aggregators.iter().enumerate() {
        match AggregatorKey::parse(&aggregator.address, aggregator.bn254_public_key.as_deref()) {
            Ok(key) => aggregators.push(key),
            Err(err) => problem(&format!("aggregators[{i}]"), err),
        }
    }
    let mut avs = BTreeMap::new();
    for (i, entry) in file.performers.iter().enumerate() {
        let field = |name: &str| format!("performers[{i}].{name}");
        let Some(address) = parse_address(&entry.avs_address) else {
            problem(
                &field("avs_address"),
                format!("`{}` is not 0x + 40 hex", entry.avs_address),
            );
            continue;
        };
        if avs.contains_key(&address) {
            problem(&field("avs_address"), format!("{address} appears twice"));
            continue;
        }
        if entry.max_concurrent_tasks == 0 {
            problem(&field("max_concurrent_tasks"), "must be at least 1".into());
        }
        if entry.cluster && file.cluster_operator_address.is_none() {
            problem(
                &field("cluster"),
                "a cluster-run AVS needs avs.cluster_operator_address: the address the cluster \
                 is registered under as one AVS operator"
                    .into(),
            );
        }
        if entry.port == Some(0) {
            problem(
                &field("port"),
                "0 is not a port; leave it out to give the performer a free port".into(),
            );
        }
        let initial = match (&entry.registry_url, &entry.digest) {
            (None, None) => None,
            (Some(url), Some(digest)) => {
                if let Err(err) = crate::artifact::check_name(url) {
                    problem(&field("registry_url"), err);
                }
                if let Err(err) = crate::artifact::parse_digest(digest) {
                    problem(&field("digest"), err);
                }
                Some((url.clone(), digest.clone()))
            }
            _ => {
                problem(
                    &field("registry_url"),
                    "registry_url and digest go together (both or neither)".into(),
                );
                None
            }
        };
        avs.insert(
            address.clone(),
            AvsConfig {
                address,
                operator_sets: entry.operator_sets.clone(),
                max_concurrent_tasks: entry.max_concurrent_tasks,
                queue_depth: entry.queue_depth,
                args: entry.args.clone(),
                env: entry.env.clone(),
                fixed_port: entry.port,
                initial,
                cluster: entry.cluster,
            },
        );
    }
    match (problems.is_empty(), listen, operator_address, operator_key) {
        (true, Some(listen), Some(operator_address), Some(operator_key)) => Ok(Config {
            listen,
            management_listen,
            metrics_listen,
            operator_address,
            cluster_operator_address,
            operator_key,
            artifacts_dir,
            data_dir,
            auth_enabled: file.auth.enabled,
            limits: timings,
            aggregators,
            avs,
        }),
        _ => Err(problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).expect("toml")
    }

    fn write_key(dir: &Path, mode: u32) -> PathBuf {
        let path = dir.join("op.key");
        std::fs::write(&path, format!("0x{}\n", "01".repeat(32))).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn a_full_config_validates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = write_key(dir.path(), 0o600);
        let address = format!(
            "{:#x}",
            cohort_avs_crypto::EcdsaKey::from_bytes(&[1; 32])
                .expect("key")
                .address()
        );
        let text = format!(
            r#"
            [avs]
            listen = "127.0.0.1:0"
            operator_address = "{address}"
            ecdsa_certificate_verifier = "0x{v}"
            artifacts_dir = "."
            data_dir = "data"
            [avs.operator_key]
            kind = "ecdsa"
            secret_file = "{key}"
            [[avs.aggregators]]
            address = "0x{a}"
            [[avs.performers]]
            avs_address = "0x{A}"
            registry_url = "square"
            digest = "sha256:{d}"
            "#,
            key = key.display(),
            v = "11".repeat(20),
            a = "22".repeat(20),
            A = "AB".repeat(20),
            d = "00".repeat(32),
        );
        let file = parse_table(&table(&text)).expect("parses");
        let config = validate(file, dir.path()).expect("valid");
        assert!(config.avs.contains_key(&format!("0x{}", "ab".repeat(20))));
        assert_eq!(config.data_dir, dir.path().join("data"));
        assert!(!config.auth_enabled);
    }

    /// A cluster-run AVS needs the cluster's address, and its tasks name that address as
    /// executor; the other AVSs keep this operator's.
    #[test]
    fn a_cluster_run_avs_needs_and_uses_the_cluster_address() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = write_key(dir.path(), 0o600);
        let address = format!(
            "{:#x}",
            cohort_avs_crypto::EcdsaKey::from_bytes(&[1; 32])
                .expect("key")
                .address()
        );
        let text = |cluster_address: &str| {
            format!(
                r#"
                [avs]
                operator_address = "{address}"
                {cluster_address}
                ecdsa_certificate_verifier = "0x{v}"
                artifacts_dir = "."
                data_dir = "data"
                [avs.operator_key]
                kind = "ecdsa"
                secret_file = "{key}"
                [[avs.performers]]
                avs_address = "0x{A}"
                cluster = true
                [[avs.performers]]
                avs_address = "0x{B}"
                "#,
                key = key.display(),
                v = "11".repeat(20),
                A = "aa".repeat(20),
                B = "bb".repeat(20),
            )
        };
        let file = parse_table(&table(&text(""))).expect("parses");
        let problems = validate(file, dir.path()).expect_err("no cluster address");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, "avs.performers[0].cluster");
        let file = parse_table(&table(&text(&format!(
            "cluster_operator_address = \"0x{}\"",
            "C1".repeat(20)
        ))))
        .expect("parses");
        let config = validate(file, dir.path()).expect("valid");
        assert!(config.runs_cluster_avs());
        let cluster = format!("0x{}", "c1".repeat(20));
        assert_eq!(
            config.executor_for(&format!("0x{}", "aa".repeat(20))),
            cluster
        );
        assert_eq!(
            config.executor_for(&format!("0x{}", "bb".repeat(20))),
            address
        );
    }

    #[test]
    fn every_problem_is_named_by_its_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = write_key(dir.path(), 0o644);
        let text = format!(
            r#"
            [avs]
            listen = "nowhere"
            operator_address = "0x12"
            artifacts_dir = "missing-dir"
            data_dir = "data"
            [avs.operator_key]
            kind = "ecdsa"
            secret_file = "{key}"
            [avs.limits]
            health_failures = 0
            [[avs.aggregators]]
            address = "bad"
            [[avs.performers]]
            avs_address = "0x{A}"
            registry_url = "../escape"
            [[avs.performers]]
            avs_address = "0x{A}"
            "#,
            key = key.display(),
            A = "ab".repeat(20),
        );
        let file = parse_table(&table(&text)).expect("parses");
        let problems = validate(file, dir.path()).expect_err("invalid");
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        for expected in [
            "avs.listen",
            "avs.operator_address",
            "avs.operator_key",
            "avs.artifacts_dir",
            "avs.limits.health_failures",
            "avs.aggregators[0]",
            "avs.performers[0].registry_url",
            "avs.performers[1].avs_address",
        ] {
            assert!(
                fields.contains(&expected),
                "{expected} missing from {problems:?}"
            );
        }
        // The exposed key file is refused with the reason.
        assert!(
            problems.iter().any(|p| p.problem.contains("chmod 600")),
            "{problems:?}"
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let problems =
            parse_table(&table("[avs]\nlisten = \"x\"\nbogus = 1\n")).expect_err("refused");
        assert!(problems[0].problem.contains("bogus"), "{problems:?}");
    }
}
