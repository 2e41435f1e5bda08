//! Key ceremonies on real processes: four `cohort dkg` processes on 127.0.0.1 over the
//! authenticated p2p, set up as operators would be (each with its own identity and config).
//!
//! One test, in phases:
//! (a) the DKG succeeds: every operator writes the same cluster lock and deposit data, and
//!     `cohort config check` loads every operator's new keys (what `cohort run` does first);
//!     each deposit's signature (combined from the operators' partial signatures) verifies with
//!     zkcrypto's independent BLS12-381 against the validator's key, and its
//!     `deposit_message_root`, `deposit_data_root` and signing root are recomputed here with
//!     plain SHA-256 merkleization (no Cohort code);
//! (b) one operator down: the others fail within the timeout, naming it, and write nothing;
//! (c) a byzantine dealer (the hidden test flag `--byzantine-bad-dealing-to`): every honest
//!     operator fails naming it;
//! (d) a reshare through the CLI replacing one operator: the new lock has the same validator
//!     keys, every new operator's keys load, and the replaced operator writes nothing.

use bls12_381::{
    G1Affine, G2Affine, G2Projective,
    hash_to_curve::{ExpandMsgXmd, HashToCurve},
    pairing,
};
use serde_json::Value;
use sha2_010::{Digest, Sha256};
use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

const OPERATORS: usize = 4;
const VALIDATORS: u64 = 2;
const WITHDRAWAL: &str = "0x00000000219ab540356cbb839cbe05303d7705fa";

#[test]
fn dkg_among_four_processes_then_failures_named_then_reshare() {
    let bin = cohort_binary();
    let dir = std::env::temp_dir().join(format!("cohort-dkg-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let base = free_port_block(16);
    // Operators as `cluster init` sets them up (identity, config, password); the DKG then
    // replaces what init split with keys nobody ever held whole.
    let init = Command::new(&bin)
        .args(["cluster", "init", "--operators", "4", "--validators", "1"])
        .args(["--kdf", "light", "--name", "dkgtest", "--out"])
        .arg(&dir)
        .args(["--base-port", &base.to_string()])
        .args(["--metrics-base-port", &(base + 8).to_string()])
        .output()
        .expect("run cluster init");
    assert!(init.status.success(), "{}", text(&init.stderr));
    let configs: Vec<PathBuf> = (0..OPERATORS)
        .map(|i| dir.join(format!("operator-{i}/operator.toml")))
        .collect();
    for i in 0..OPERATORS {
        let op = dir.join(format!("operator-{i}"));
        std::fs::remove_file(op.join("cluster-lock.json")).expect("remove init's lock");
        std::fs::remove_dir_all(op.join("shares")).expect("remove init's shares");
    }
    let keys: Vec<String> = configs.iter().map(|c| own_key(c)).collect();

    // (a) The DKG.
    let started = Instant::now();
    let outputs = run_all(&bin, &configs, &[], &[], 90);
    for (i, output) in outputs.iter().enumerate() {
        let output = output.as_ref().expect("started");
        assert!(
            output.status.success(),
            "operator {i} failed: {}",
            text(&output.stderr)
        );
    }
    eprintln!("DKG among 4 processes took {:?}", started.elapsed());
    let lock = std::fs::read_to_string(dir.join("operator-0/cluster-lock.json")).expect("lock");
    let deposit =
        std::fs::read_to_string(dir.join("operator-0/deposit-data.json")).expect("deposit data");
    for i in 1..OPERATORS {
        let op = dir.join(format!("operator-{i}"));
        assert_eq!(
            std::fs::read_to_string(op.join("cluster-lock.json")).expect("lock"),
            lock,
            "operator {i}'s lock"
        );
        assert_eq!(
            std::fs::read_to_string(op.join("deposit-data.json")).expect("deposit"),
            deposit,
            "operator {i}'s deposit data"
        );
    }
    for config in &configs {
        let check = Command::new(&bin)
            .args(["config", "check", "--config"])
            .arg(config)
            .output()
            .expect("config check");
        assert!(check.status.success(), "{}", text(&check.stderr));
    }
    let lock: Value = serde_json::from_str(&lock).expect("lock json");
    assert_eq!(lock["threshold"], 3);
    let entries: Vec<Value> = serde_json::from_str(&deposit).expect("deposit json");
    assert_eq!(entries.len(), VALIDATORS as usize);
    for (v, entry) in entries.iter().enumerate() {
        check_deposit(entry);
        assert_eq!(
            entry["pubkey"].as_str(),
            lock["validators"][v]["public_key"].as_str(),
            "the deposit is for the lock's validator"
        );
    }
    let mut pubkeys: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["pubkey"].as_str())
        .collect();
    pubkeys.dedup();
    assert_eq!(pubkeys.len(), VALIDATORS as usize, "distinct keys");
    let lock_bytes = std::fs::read(dir.join("operator-0/cluster-lock.json")).expect("lock");

    // (b) Operator 3 down: a rerun (with --force, the lock exists) fails, naming it, in time.
    let started = Instant::now();
    // 20 s: on a loaded 2-core machine a live operator's process and connections can take
    // several seconds to come up, and one that is merely slow would be named too.
    let outputs = run_all(&bin, &configs[..3], &["--force"], &[], 20);
    let elapsed = started.elapsed();
    let op3_named = format!("3 (127.0.0.1:{}, ", base + 3);
    let stderrs: Vec<String> = outputs
        .iter()
        .map(|output| text(&output.as_ref().expect("started").stderr))
        .collect();
    for (i, output) in outputs.iter().enumerate() {
        let output = output.as_ref().expect("started");
        assert!(
            !output.status.success(),
            "operator {i} succeeded without operator 3"
        );
        let err = &stderrs[i];
        assert!(
            err.contains("no answer from ") && err.contains(&op3_named),
            "operator {i} does not name operator 3; every operator's output:\n{}",
            stderrs.join("\n---\n")
        );
    }
    assert!(
        elapsed < Duration::from_secs(60),
        "failing took {elapsed:?} with a 20 s timeout"
    );
    assert_eq!(
        std::fs::read(dir.join("operator-0/cluster-lock.json")).expect("lock"),
        lock_bytes,
        "a failed ceremony leaves the lock alone"
    );

    // (c) Operator 2 deals operator 1 a bad share: everyone honest names operator 2.
    let outputs = run_all(
        &bin,
        &configs,
        &["--force"],
        &[(
            2,
            vec!["--byzantine-bad-dealing-to".into(), keys[1].clone()],
        )],
        30,
    );
    for (i, output) in outputs.iter().enumerate() {
        if i == 2 {
            continue;
        }
        let output = output.as_ref().expect("started");
        let err = text(&output.stderr);
        assert!(
            !output.status.success(),
            "operator {i} made keys from a bad dealing"
        );
        let named = format!("127.0.0.1:{}", base + 2);
        assert!(
            err.contains("bad dealing") && err.contains(&named),
            "operator {i} does not name operator 2 ({named}): {err}"
        );
    }
    assert_eq!(
        std::fs::read(dir.join("operator-0/cluster-lock.json")).expect("lock"),
        lock_bytes
    );

    // (d) Reshare, replacing operator 3 with a new operator.
    let new_dir = dir.join("new-operator");
    std::fs::create_dir_all(&new_dir).expect("mkdir");
    let generated = Command::new(&bin)
        .args(["keys", "generate", "--out"])
        .arg(new_dir.join("identity.key"))
        .output()
        .expect("keys generate");
    assert!(generated.status.success());
    let new_key = text(&generated.stdout).trim().to_string();
    let new_address = format!("127.0.0.1:{}", base + 4);
    let mut reshare_configs = Vec::new();
    let mut new_set: Vec<(String, String)> = (0..3)
        .map(|i| {
            (
                keys[i].clone(),
                format!("127.0.0.1:{}", base + 10 + i as u16),
            )
        })
        .collect();
    new_set.push((new_key.clone(), new_address.clone()));
    for i in 0..=OPERATORS {
        let (config_dir, identity, listen) = if i < OPERATORS {
            let op = dir.join(format!("operator-{i}"));
            let listen = if i < 3 {
                format!("127.0.0.1:{}", base + 10 + i as u16)
            } else {
                format!("127.0.0.1:{}", base + 3)
            };
            (op.clone(), op.join("identity.key"), listen)
        } else {
            (
                new_dir.clone(),
                new_dir.join("identity.key"),
                new_address.clone(),
            )
        };
        let path = config_dir.join("reshared.toml");
        write_config(
            &configs[0],
            &path,
            &identity,
            &listen,
            &new_set,
            base + 20 + i as u16,
        );
        reshare_configs.push(path);
    }
    let mut children: Vec<Child> = Vec::new();
    for (i, path) in reshare_configs.iter().enumerate() {
        let mut command = Command::new(&bin);
        command.args(["reshare", "--config"]).arg(path).args([
            "--kdf",
            "light",
            "--timeout-seconds",
            "90",
        ]);
        if i < OPERATORS {
            command.arg("--old-config").arg(&configs[i]);
        } else {
            command
                .arg("--old-lock")
                .arg(dir.join("operator-0/cluster-lock.json"))
                .arg("--peer")
                .arg(format!("{}@127.0.0.1:{}", keys[3], base + 3));
        }
        children.push(spawn(command));
    }
    let outputs = wait_all(children, Duration::from_secs(120));
    for (i, output) in outputs.iter().enumerate() {
        assert!(
            output.status.success(),
            "reshare: operator {i} failed: {}",
            text(&output.stderr)
        );
    }
    let new_lock_path = |i: usize| {
        if i < OPERATORS {
            dir.join(format!("operator-{i}/reshared/cluster-lock.json"))
        } else {
            new_dir.join("reshared/cluster-lock.json")
        }
    };
    assert!(
        !new_lock_path(3).exists(),
        "the replaced operator writes no lock"
    );
    let new_lock: Value =
        serde_json::from_str(&std::fs::read_to_string(new_lock_path(0)).expect("new lock"))
            .expect("json");
    for i in [1, 2, 4] {
        let other: Value =
            serde_json::from_str(&std::fs::read_to_string(new_lock_path(i)).expect("new lock"))
                .expect("json");
        assert_eq!(other, new_lock, "operator {i}'s new lock");
    }
    for v in 0..VALIDATORS as usize {
        assert_eq!(
            new_lock["validators"][v]["public_key"], lock["validators"][v]["public_key"],
            "validator {v} keeps its key"
        );
        assert_ne!(
            new_lock["validators"][v]["sharing"], lock["validators"][v]["sharing"],
            "validator {v} has a new sharing"
        );
    }
    let operators: Vec<&str> = new_lock["operators"]
        .as_array()
        .expect("operators")
        .iter()
        .filter_map(|o| o.as_str())
        .collect();
    assert!(operators.contains(&new_key.as_str()));
    assert!(!operators.contains(&keys[3].as_str()));
    for i in [0, 1, 2, 4] {
        let check = Command::new(&bin)
            .args(["config", "check", "--config"])
            .arg(&reshare_configs[i])
            .output()
            .expect("config check");
        assert!(
            check.status.success(),
            "operator {i}: {}",
            text(&check.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes a config for the reshared cluster from an existing one: the new operator set, this
/// operator's identity and listen address, and the new lock and shares in `reshared/`.
fn write_config(
    template: &Path,
    path: &Path,
    identity: &Path,
    listen: &str,
    operators: &[(String, String)],
    metrics_port: u16,
) {
    let text = std::fs::read_to_string(template).expect("template");
    let mut table: toml::Table = toml::from_str(&text).expect("toml");
    table.insert("identity_key".into(), identity.display().to_string().into());
    table.insert("listen".into(), listen.into());
    table.insert(
        "metrics_listen".into(),
        format!("127.0.0.1:{metrics_port}").into(),
    );
    table.insert("data_dir".into(), "reshared/data".into());
    let shares = table
        .get_mut("shares")
        .and_then(|s| s.as_table_mut())
        .expect("[shares]");
    shares.insert("lock".into(), "reshared/cluster-lock.json".into());
    shares.insert("dir".into(), "reshared/shares".into());
    shares.insert("password_file".into(), "reshared/password.txt".into());
    let cluster = table
        .get_mut("cluster")
        .and_then(|c| c.as_table_mut())
        .expect("[cluster]");
    let list: Vec<toml::Value> = operators
        .iter()
        .map(|(key, address)| {
            let mut entry = toml::Table::new();
            entry.insert("public_key".into(), key.clone().into());
            entry.insert("address".into(), address.clone().into());
            toml::Value::Table(entry)
        })
        .collect();
    cluster.insert("operators".into(), toml::Value::Array(list));
    let dir = path.parent().expect("dir").join("reshared");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(path, toml::to_string(&table).expect("toml")).expect("write config");
}

fn own_key(config: &Path) -> String {
    let text = std::fs::read_to_string(config).expect("config");
    let table: toml::Table = toml::from_str(&text).expect("toml");
    let listen = table["listen"].as_str().expect("listen").to_string();
    table["cluster"]["operators"]
        .as_array()
        .expect("operators")
        .iter()
        .find(|o| o["address"].as_str() == Some(listen.as_str()))
        .and_then(|o| o["public_key"].as_str())
        .expect("own entry")
        .to_string()
}

fn dkg_command(bin: &Path, config: &Path, extra: &[&str], timeout: u64) -> Command {
    let mut command = Command::new(bin);
    command
        .args(["dkg", "--config"])
        .arg(config)
        .args([
            "--validators",
            &VALIDATORS.to_string(),
            "--first-index",
            "0",
        ])
        .args(["--withdrawal-address", WITHDRAWAL, "--network", "hoodi"])
        .args(["--kdf", "light", "--timeout-seconds", &timeout.to_string()])
        .args(extra);
    command
}

fn spawn(mut command: Command) -> Child {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cohort")
}

/// Starts one `cohort dkg` per config and waits for every one.
fn run_all(
    bin: &Path,
    configs: &[PathBuf],
    extra: &[&str],
    per_operator: &[(usize, Vec<String>)],
    timeout: u64,
) -> Vec<Option<Output>> {
    let children: Vec<Child> = configs
        .iter()
        .enumerate()
        .map(|(i, config)| {
            let mut command = dkg_command(bin, config, extra, timeout);
            for (at, args) in per_operator {
                if *at == i {
                    command.args(args);
                }
            }
            spawn(command)
        })
        .collect();
    wait_all(children, Duration::from_secs(timeout + 60))
        .into_iter()
        .map(Some)
        .collect()
}

fn wait_all(children: Vec<Child>, limit: Duration) -> Vec<Output> {
    let deadline = Instant::now() + limit;
    let mut children: Vec<Option<Child>> = children.into_iter().map(Some).collect();
    loop {
        let mut running = 0;
        for child in children.iter_mut().flatten() {
            if matches!(child.try_wait(), Ok(None)) {
                running += 1;
            }
        }
        if running == 0 {
            break;
        }
        if Instant::now() > deadline {
            for child in children.iter_mut().flatten() {
                let _ = child.kill();
            }
            panic!("a ceremony process did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    children
        .iter_mut()
        .map(|c| c.take().expect("child").wait_with_output().expect("output"))
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---- deposit data, checked without Cohort's code ----

fn unhex(text: &str) -> Vec<u8> {
    let text = text.trim_start_matches("0x");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn sha(a: &[u8], b: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(a);
    hasher.update(b);
    hasher.finalize().into()
}

/// SSZ merkleization of `chunks` (32 bytes each), padded to a power of two with zero chunks.
fn merkleize(mut chunks: Vec<[u8; 32]>) -> [u8; 32] {
    let size = chunks.len().next_power_of_two();
    chunks.resize(size, [0u8; 32]);
    while chunks.len() > 1 {
        chunks = chunks
            .chunks(2)
            .map(|pair| sha(&pair[0], &pair[1]))
            .collect();
    }
    chunks[0]
}

/// `hash_tree_root` of a fixed byte vector longer than 32 bytes.
fn bytes_root(bytes: &[u8]) -> [u8; 32] {
    let chunks = bytes
        .chunks(32)
        .map(|chunk| {
            let mut padded = [0u8; 32];
            padded[..chunk.len()].copy_from_slice(chunk);
            padded
        })
        .collect();
    merkleize(chunks)
}

fn u64_chunk(value: u64) -> [u8; 32] {
    let mut chunk = [0u8; 32];
    chunk[..8].copy_from_slice(&value.to_le_bytes());
    chunk
}

fn check_deposit(entry: &Value) {
    let field = |name: &str| entry[name].as_str().unwrap_or_else(|| panic!("{name}"));
    let pubkey = unhex(field("pubkey"));
    let credentials = unhex(field("withdrawal_credentials"));
    let signature = unhex(field("signature"));
    let amount = entry["amount"].as_u64().expect("amount is a number");
    assert_eq!(amount, 32_000_000_000);
    assert_eq!(
        field("withdrawal_credentials"),
        format!("01{}{}", "00".repeat(11), &WITHDRAWAL[2..])
    );
    assert_eq!(
        field("fork_version"),
        "10000910",
        "hoodi's genesis fork version"
    );
    assert_eq!(field("network_name"), "hoodi");
    assert!(!field("deposit_cli_version").is_empty());
    let mut credentials_chunk = [0u8; 32];
    credentials_chunk.copy_from_slice(&credentials);
    // DepositMessage(pubkey, withdrawal_credentials, amount).
    let message_root = merkleize(vec![
        bytes_root(&pubkey),
        credentials_chunk,
        u64_chunk(amount),
    ]);
    assert_eq!(unhex(field("deposit_message_root")), message_root);
    // DepositData(pubkey, withdrawal_credentials, amount, signature).
    let data_root = merkleize(vec![
        bytes_root(&pubkey),
        credentials_chunk,
        u64_chunk(amount),
        bytes_root(&signature),
    ]);
    assert_eq!(unhex(field("deposit_data_root")), data_root);
    // compute_domain(DOMAIN_DEPOSIT, fork_version, zero genesis_validators_root).
    let mut version_chunk = [0u8; 32];
    version_chunk[..4].copy_from_slice(&unhex(field("fork_version")));
    let fork_data_root = merkleize(vec![version_chunk, [0u8; 32]]);
    let mut domain = [0u8; 32];
    domain[..4].copy_from_slice(&[3, 0, 0, 0]);
    domain[4..].copy_from_slice(&fork_data_root[..28]);
    let signing_root = merkleize(vec![message_root, domain]);
    assert!(
        zk_verify(&pubkey, &signing_root, &signature),
        "the deposit signature does not verify with zkcrypto's BLS"
    );
    // And not for another message: the check can fail.
    assert!(!zk_verify(&pubkey, &message_root, &signature));
}

const ETH_DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";

fn zk_verify(public: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let public: [u8; 48] = public.try_into().expect("48-byte key");
    let signature: [u8; 96] = signature.try_into().expect("96-byte signature");
    let Some(public) = Option::<G1Affine>::from(G1Affine::from_compressed(&public)) else {
        return false;
    };
    let Some(signature) = Option::<G2Affine>::from(G2Affine::from_compressed(&signature)) else {
        return false;
    };
    if bool::from(public.is_identity()) {
        return false;
    }
    let hashed = G2Affine::from(
        <G2Projective as HashToCurve<ExpandMsgXmd<Sha256>>>::hash_to_curve([message], ETH_DST),
    );
    pairing(&public, &hashed) == pairing(&G1Affine::generator(), &signature)
}

// ---- the binary and ports ----

/// `target/<profile>/cohort` next to this test's executable, built first under cargo (as
/// `devnet.rs` does), or `$DEVNET_TEST_BIN`.
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
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "cohort-node", "--bin", "cohort"]);
        if profile_dir.file_name().and_then(|n| n.to_str()) == Some("release") {
            build.arg("--release");
        }
        if let Some(target) = profile_dir.parent() {
            build.env("CARGO_TARGET_DIR", target);
        }
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
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "cargo build of cohort failed: {status}");
    }
    assert!(bin.is_file(), "{} does not exist", bin.display());
    bin
}

/// A base port P with P..P+n free on 127.0.0.1.
fn free_port_block(n: u16) -> u16 {
    let mut candidate = 20_000 + (std::process::id() % 2_000) as u16 * 10;
    loop {
        if (0..n).all(|i| TcpListener::bind(("127.0.0.1", candidate + i)).is_ok()) {
            return candidate;
        }
        candidate = candidate.wrapping_add(n).max(20_000);
    }
}
