//! `cohort exit sign|submit`: a validator's voluntary exit, threshold-signed by the cluster.
//!
//! An exit is for good, so no single operator can make one: each operator who intends it runs
//! `exit sign` and signs the exit with its own share, and `exit submit` combines threshold-many
//! such partial signatures (every one checked against the lock's public polynomial), checks the
//! result against the validator's public key, and publishes it to the beacon nodes. Fewer than
//! threshold operators agreeing yields nothing that verifies.
//!
//! The signature's domain is `DOMAIN_VOLUNTARY_EXIT` with the Capella fork version for every
//! later fork (EIP-7044), so a signed exit stays valid across forks.

use crate::{config, keys};
use clap::{Args, Subcommand};
use cohort_ingress::keys::{self as bls, Partial, Signature};
use commonware_codec::{Copying, DecodeExt as _};
use commonware_cryptography::bls12381::primitives::variant::PartialSignature;
use commonware_utils::Participant;
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::ExitCode,
};

/// `compute_signing_root(VoluntaryExit(epoch, validator_index), domain)` with the Capella fork's
/// domain (EIP-7044).
pub fn signing_root(
    validator_index: u64,
    epoch: u64,
    capella_fork_version: [u8; 4],
    genesis_validators_root: [u8; 32],
) -> [u8; 32] {
    cohort_ingress::signing::voluntary_exit_signing_root(
        validator_index,
        epoch,
        capella_fork_version,
        genesis_validators_root,
    )
}

/// One operator's signature share of an exit, as `exit sign` writes it and `exit submit` reads
/// it. Everything that goes into the signing root travels with it, so operators who signed
/// different exits are caught before combining.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialExit {
    pub validator_index: String,
    pub epoch: String,
    pub public_key: String,
    pub capella_fork_version: String,
    pub genesis_validators_root: String,
    /// The share's position in the cluster (0-based).
    pub share: u32,
    pub partial_signature: String,
}

#[derive(Subcommand)]
pub enum ExitCommand {
    /// Sign a validator's voluntary exit with this operator's share and write the partial
    /// signature to a file. Threshold-many operators must each do so before `exit submit` can
    /// produce an exit: no single operator can exit a validator.
    Sign {
        #[command(flatten)]
        chain: ChainArgs,
        /// The validator: its index, or its public key (0x + 96 hex).
        #[arg(long)]
        validator: String,
        /// The exit's epoch: the validator may exit from this epoch on (usually the current one).
        #[arg(long)]
        epoch: u64,
        /// Where to write the partial signature; refuses to overwrite a file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Ask the running node to exit a validator through the cluster: it signs the exit with
    /// this operator's share and announces it to the other operators; the exit is submitted
    /// once threshold-many operators asked for the same one. Survives node restarts until
    /// submitted.
    Request {
        /// The operator's config: its data directory and cluster lock.
        #[arg(long)]
        config: PathBuf,
        /// The validator: its index, or its public key (0x + 96 hex).
        #[arg(long)]
        validator: String,
        /// The exit's epoch. Unset: the epoch other operators already signed, else the current
        /// one (so operators asking at different times agree).
        #[arg(long)]
        epoch: Option<u64>,
    },
    /// Where this operator's exit requests stand: the epoch, the operators that signed, and
    /// whether the exit was combined and submitted.
    Status {
        /// The operator's config.
        #[arg(long)]
        config: PathBuf,
    },
    /// Combine the operators' partial signatures of one exit (threshold-many, each checked
    /// against the cluster lock), verify the exit against the validator's key and publish it to
    /// the config's beacon nodes.
    Submit {
        /// The operator's config: its cluster lock and beacon nodes.
        #[arg(long)]
        config: PathBuf,
        /// A partial signature file written by `exit sign`; repeat for each operator's.
        #[arg(long = "partial", required = true)]
        partials: Vec<PathBuf>,
        /// Check and combine, print the signed exit, but publish nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Args)]
pub struct ChainArgs {
    /// The operator's config: its keys, cluster lock and beacon nodes.
    #[arg(long)]
    config: PathBuf,
    /// The chain's CAPELLA_FORK_VERSION (0x + 8 hex), instead of asking the beacon nodes.
    #[arg(long, value_name = "VERSION")]
    capella_fork_version: Option<String>,
    /// The chain's genesis_validators_root (0x + 64 hex), instead of asking the beacon nodes.
    #[arg(long, value_name = "ROOT")]
    genesis_validators_root: Option<String>,
}

fn hex(bytes: &[u8]) -> String {
    let digits: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("0x{digits}")
}

fn fixed<const N: usize>(what: &str, text: &str) -> Result<[u8; N], String> {
    bls::decode_hex(text)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| format!("{what} {text:?} is not {N} bytes of hex"))
}

/// The Capella fork version and genesis validators root: from the flags, else the beacon nodes.
fn chain(args: &ChainArgs, config: &config::Config) -> Result<([u8; 4], [u8; 32]), String> {
    let nodes = match &config.beacon {
        config::BeaconSource::Api { nodes, .. } => nodes.clone(),
        config::BeaconSource::Devnet { .. } => Vec::new(),
    };
    let need_nodes = || {
        if nodes.is_empty() {
            Err(
                "the config names no beacon node (the embedded devnet has no exits): give \
                 --capella-fork-version and --genesis-validators-root"
                    .to_string(),
            )
        } else {
            Ok(())
        }
    };
    let version = match &args.capella_fork_version {
        Some(text) => fixed("--capella-fork-version", text)?,
        None => {
            need_nodes()?;
            crate::beacon_cli::capella_fork_version(&nodes)?
        }
    };
    let root = match &args.genesis_validators_root {
        Some(text) => fixed("--genesis-validators-root", text)?,
        None => {
            need_nodes()?;
            crate::beacon_cli::chain_of(&nodes)?.genesis_validators_root
        }
    };
    Ok((version, root))
}

pub(crate) fn read_lock(config: &config::Config) -> Result<keys::Lock, String> {
    let text = std::fs::read_to_string(&config.lock)
        .map_err(|err| format!("shares.lock {}: {err}", config.lock.display()))?;
    serde_json::from_str(&text).map_err(|err| {
        format!(
            "shares.lock {}: not a cluster lock: {err}",
            config.lock.display()
        )
    })
}

/// The lock's entry for `validator` (an index or a public key).
pub(crate) fn find<'a>(
    lock: &'a keys::Lock,
    validator: &str,
) -> Result<&'a keys::LockedValidator, String> {
    let wanted = validator.trim_start_matches("0x").to_ascii_lowercase();
    let by_index = validator.parse::<u64>().ok();
    lock.validators
        .iter()
        .find(|v| {
            Some(v.index) == by_index
                || v.public_key.trim_start_matches("0x").to_ascii_lowercase() == wanted
        })
        .ok_or_else(|| format!("validator {validator} is not in this cluster's lock"))
}

pub fn exit(command: ExitCommand) -> ExitCode {
    let result = match command {
        ExitCommand::Sign {
            chain,
            validator,
            epoch,
            out,
        } => sign(&chain, &validator, epoch, &out),
        ExitCommand::Submit {
            config,
            partials,
            dry_run,
        } => submit(&config, &partials, dry_run),
        ExitCommand::Request {
            config,
            validator,
            epoch,
        } => crate::exit_requests::request(&config, &validator, epoch),
        ExitCommand::Status { config } => crate::exit_requests::status(&config),
    };
    match result {
        Ok(done) => {
            eprintln!("{done}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}

fn sign(args: &ChainArgs, validator: &str, epoch: u64, out: &Path) -> Result<String, String> {
    if out.exists() {
        return Err(format!(
            "{} exists; refusing to overwrite it",
            out.display()
        ));
    }
    let config = config::load(&args.config, std::env::vars().collect::<Vec<_>>())
        .map_err(|e| e.to_string())?;
    let lock = read_lock(&config)?;
    let locked = find(&lock, validator)?;
    let loaded = keys::load(&config).map_err(|err| err.to_string())?;
    let share = loaded
        .shares
        .get(&locked.index)
        .ok_or_else(|| format!("this operator holds no share of validator {}", locked.index))?;
    let (capella, root) = chain(args, &config)?;
    let partial = bls::sign_partial(
        &share.share,
        &signing_root(locked.index, epoch, capella, root),
    );
    let file = PartialExit {
        validator_index: locked.index.to_string(),
        epoch: epoch.to_string(),
        public_key: locked
            .public_key
            .trim_start_matches("0x")
            .to_ascii_lowercase(),
        capella_fork_version: hex(&capella),
        genesis_validators_root: hex(&root),
        share: loaded.index as u32,
        partial_signature: bls::to_hex(&partial.value),
    };
    let text = serde_json::to_string_pretty(&file).map_err(|err| err.to_string())?;
    std::fs::write(out, text + "\n").map_err(|err| format!("{}: {err}", out.display()))?;
    Ok(format!(
        "operator {} signed the exit of validator {} at epoch {epoch} into {}; `cohort exit \
         submit` needs {} operators' files",
        loaded.index,
        locked.index,
        out.display(),
        lock.threshold
    ))
}

/// The signed exit, ready to publish: `SignedVoluntaryExit` as the Beacon API takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedExit {
    pub message: ExitMessage,
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitMessage {
    pub epoch: String,
    pub validator_index: String,
}

/// Checks and combines partial exits against the lock; the error names the file at fault.
pub fn combine(lock: &keys::Lock, files: &[(PathBuf, PartialExit)]) -> Result<SignedExit, String> {
    let Some((first_path, first)) = files.first() else {
        return Err("no partial signature given".into());
    };
    let locked = find(lock, &first.validator_index)?;
    let operators = lock.operators.len() as u32;
    let sharing = keys::decode_sharing(&locked.sharing, operators)
        .map_err(|err| format!("validator {} in the lock: sharing {err}", locked.index))?;
    let index = locked.index;
    let epoch: u64 = first.epoch.parse().map_err(|_| {
        format!(
            "{}: epoch {:?} is not a number",
            first_path.display(),
            first.epoch
        )
    })?;
    let capella = fixed::<4>("capella_fork_version", &first.capella_fork_version)?;
    let root = fixed::<32>("genesis_validators_root", &first.genesis_validators_root)?;
    let message = signing_root(index, epoch, capella, root);
    let mut seen = BTreeSet::new();
    let mut partials: Vec<Partial> = Vec::new();
    for (path, file) in files {
        let at = |why: String| format!("{}: {why}", path.display());
        let same = file.validator_index == first.validator_index
            && file.epoch == first.epoch
            && file
                .capella_fork_version
                .eq_ignore_ascii_case(&first.capella_fork_version)
            && file
                .genesis_validators_root
                .eq_ignore_ascii_case(&first.genesis_validators_root);
        if !same {
            return Err(at(format!(
                "signs another exit than {} (validator, epoch, fork version or chain differ)",
                first_path.display()
            )));
        }
        if !file
            .public_key
            .trim_start_matches("0x")
            .eq_ignore_ascii_case(locked.public_key.trim_start_matches("0x"))
        {
            return Err(at(format!(
                "its public key is not validator {index}'s in this cluster's lock"
            )));
        }
        if !seen.insert(file.share) {
            return Err(at(format!("share {} was given twice", file.share)));
        }
        let value = bls::decode_hex(&file.partial_signature)
            .and_then(|bytes| Signature::decode(Copying(bytes.as_slice())).ok())
            .ok_or_else(|| at("partial_signature is not a BLS signature".into()))?;
        let partial = PartialSignature {
            index: Participant::new(file.share),
            value,
        };
        if !bls::verify_partial(&sharing, &message, &partial) {
            return Err(at(format!(
                "operator {}'s partial signature does not verify for this exit against the lock",
                file.share
            )));
        }
        partials.push(partial);
    }
    if (partials.len() as u32) < lock.threshold {
        return Err(format!(
            "{} operators signed the exit of validator {index}; {} must agree before it can be made",
            partials.len(),
            lock.threshold
        ));
    }
    let signature = bls::recover(&sharing, &message, &partials)
        .0
        .map_err(|err| format!("combining the partial signatures: {err}"))?;
    if !bls::verify(sharing.public(), &message, &signature) {
        return Err("the combined exit does not verify against the validator's key".into());
    }
    Ok(SignedExit {
        message: ExitMessage {
            epoch: epoch.to_string(),
            validator_index: index.to_string(),
        },
        signature: format!("0x{}", bls::to_hex(&signature)),
    })
}

fn submit(config: &Path, paths: &[PathBuf], dry_run: bool) -> Result<String, String> {
    let config =
        config::load(config, std::env::vars().collect::<Vec<_>>()).map_err(|e| e.to_string())?;
    let lock = read_lock(&config)?;
    let mut files = Vec::new();
    for path in paths {
        let text =
            std::fs::read_to_string(path).map_err(|err| format!("{}: {err}", path.display()))?;
        let file: PartialExit = serde_json::from_str(&text)
            .map_err(|err| format!("{}: not a partial exit: {err}", path.display()))?;
        files.push((path.clone(), file));
    }
    let signed = combine(&lock, &files)?;
    let text = serde_json::to_string(&signed).map_err(|err| err.to_string())?;
    if dry_run {
        println!("{text}");
        return Ok("checked and combined; not published (--dry-run)".into());
    }
    let nodes = match &config.beacon {
        config::BeaconSource::Api { nodes, .. } => nodes.clone(),
        config::BeaconSource::Devnet { .. } => {
            return Err("the config names no beacon node to publish the exit to".into());
        }
    };
    let accepted = crate::beacon_cli::publish_exit(&nodes, &signed)?;
    println!("{text}");
    Ok(format!(
        "published the exit of validator {} to {accepted} beacon node(s)",
        signed.message.validator_index
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import;

    /// ethstaker-deposit 1.3.1's `Credential.save_exit_transaction(validator_index=1234,
    /// epoch=5678)` for the fixture's validator 0 on Hoodi (Capella version 0x40000910): the
    /// same exit signed with the whole key by the standard tool.
    const TOOL_SIGNATURE: &str = "0xad24286232e3a885fa6c34e40a4a5c9a802014efd4312f37f6b2b27237ca8a5a7fa92c3c7c2fc73082e3f1ef5d45c3d40154563b612c9332b588b31002f2a1f69ce621e65dfffd61d8093f5f6bde2c90e7c8b594ac0474a813297bb84581ded6";
    const HOODI_CAPELLA: [u8; 4] = [0x40, 0x00, 0x09, 0x10];
    const HOODI_ROOT: &str = "212f13fc4df078b6cb7db228f1c8307566dcecf900867401a92023d7ba99cb5f";

    #[test]
    fn threshold_of_operators_make_the_exit_the_deposit_tool_makes() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deposit-tool");
        let imported = import::read_dir(&dir, "cohort-import-test").expect("fixture keystores");
        let key = imported
            .into_iter()
            .find(|k| k.file.to_string_lossy().contains("3600_0_0_0"))
            .expect("validator 0 of the mnemonic");
        let public = bls::to_hex(&key.public_key);
        let chain = [(public.clone(), 1234u64)].into();
        let placed = import::place(vec![key], Some(&chain), 0..0).expect("placed");

        let out = std::env::temp_dir().join(format!("cohort-exit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let mut plan = keys::tests::plan(out.clone());
        plan.validators = keys::Validators::Imported(placed);
        let configs = keys::init_cluster(&plan).expect("cluster");
        drop(plan);

        let root = fixed::<32>("root", HOODI_ROOT).expect("hex");
        let args = |i: usize| ChainArgs {
            config: configs[i].clone(),
            capella_fork_version: Some(hex(&HOODI_CAPELLA)),
            genesis_validators_root: Some(hex(&root)),
        };
        let mut files = Vec::new();
        for i in [3, 0, 2, 1] {
            let path = out.join(format!("exit-{i}.json"));
            let validator = if i % 2 == 0 {
                "1234".to_string()
            } else {
                format!("0x{public}")
            };
            sign(&args(i), &validator, 5678, &path).expect("operator signs");
            let file: PartialExit =
                serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
            files.push((path, file));
        }
        let lock: keys::Lock = serde_json::from_str(
            &std::fs::read_to_string(out.join("cluster-lock.json")).expect("lock"),
        )
        .expect("lock parses");

        // Any three operators make exactly the tool's signature; two make nothing.
        for chosen in [&files[..3], &files[1..]] {
            let signed = combine(&lock, chosen).expect("threshold agrees");
            assert_eq!(signed.signature, TOOL_SIGNATURE);
            assert_eq!(signed.message.epoch, "5678");
            assert_eq!(signed.message.validator_index, "1234");
        }
        let err = combine(&lock, &files[..2]).expect_err("two of four");
        assert!(err.contains("3 must agree"), "{err}");

        // The same operator twice does not count twice.
        let twice = [files[0].clone(), files[1].clone(), files[0].clone()];
        let err = combine(&lock, &twice).expect_err("duplicate");
        assert!(err.contains("given twice"), "{err}");

        // A share of another exit (another epoch) is caught, naming its file.
        let other = out.join("exit-other.json");
        sign(&args(1), "1234", 5679, &other).expect("signs another epoch");
        let file: PartialExit =
            serde_json::from_str(&std::fs::read_to_string(&other).expect("read")).expect("json");
        let err = combine(
            &lock,
            &[
                files[0].clone(),
                files[2].clone(),
                (other.clone(), file.clone()),
            ],
        )
        .expect_err("another exit");
        assert!(
            err.contains("exit-other.json") && err.contains("another exit"),
            "{err}"
        );

        // A file that claims this exit but carries that other signature does not verify.
        let forged = PartialExit {
            epoch: "5678".into(),
            ..file
        };
        let err = combine(
            &lock,
            &[files[0].clone(), files[2].clone(), (other, forged)],
        )
        .expect_err("forged");
        assert!(err.contains("does not verify"), "{err}");

        assert!(
            sign(&args(0), "99", 5678, &out.join("x.json")).is_err(),
            "not in the lock"
        );
        let _ = std::fs::remove_dir_all(&out);
    }
}
