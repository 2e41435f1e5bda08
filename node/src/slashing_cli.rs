//! `cohort slashing-protection export|import`: this operator's slashing history as an EIP-3076
//! interchange, read or merged with the node stopped.

use crate::{config, interchange, keys};
use clap::{Args, Subcommand};
use std::{collections::BTreeMap, path::PathBuf, process::ExitCode};

#[derive(Subcommand)]
pub enum SlashingCommand {
    /// Write this operator's slashing-protection records as an EIP-3076 interchange (format
    /// version 5): per validator, the highest block slot and attestation source and target it
    /// has signed. The node must be stopped.
    Export {
        #[command(flatten)]
        target: Target,
        /// The file to write; refuses to overwrite one.
        #[arg(long)]
        out: PathBuf,
    },
    /// Merge an EIP-3076 interchange (format version 5) into this operator's records, keeping
    /// for each validator the safest of both. A file for another chain or naming a validator
    /// outside the cluster is refused whole; importing a file again changes nothing. The node
    /// must be stopped.
    Import {
        #[command(flatten)]
        target: Target,
        /// The interchange file to import.
        #[arg(long)]
        file: PathBuf,
    },
}

#[derive(Args)]
pub struct Target {
    /// The operator's config: its data_dir holds the records, its cluster lock names the
    /// validators.
    #[arg(long)]
    config: PathBuf,
    /// The chain's genesis_validators_root (0x + 64 hex), instead of asking the config's beacon
    /// nodes (or, on the embedded devnet, the devnet's own).
    #[arg(long, value_name = "ROOT")]
    genesis_validators_root: Option<String>,
}

/// What both commands start from: the data directory (locked), the chain and the validators.
struct Opened {
    data_dir: PathBuf,
    _lock: std::fs::File,
    genesis_validators_root: [u8; 32],
    /// Lock public key (lowercase hex, no `0x`) by validator index.
    key_of: BTreeMap<u64, String>,
}

fn open(target: &Target) -> Result<Opened, String> {
    let config = config::load(&target.config, std::env::vars().collect::<Vec<_>>())
        .map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(&config.lock)
        .map_err(|err| format!("shares.lock {}: {err}", config.lock.display()))?;
    let lock: keys::Lock = serde_json::from_str(&text).map_err(|err| {
        format!(
            "shares.lock {}: not a cluster lock: {err}",
            config.lock.display()
        )
    })?;
    let key_of = lock
        .validators
        .iter()
        .map(|v| {
            (
                v.index,
                v.public_key.trim_start_matches("0x").to_ascii_lowercase(),
            )
        })
        .collect();
    let genesis_validators_root = match &target.genesis_validators_root {
        Some(text) => cohort_ingress::keys::decode_hex(text)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| format!("--genesis-validators-root {text:?} is not 32 bytes of hex"))?,
        None => match &config.beacon {
            config::BeaconSource::Devnet { .. } => {
                cohort_ingress::signing::ForkInfo::devnet().genesis_validators_root
            }
            config::BeaconSource::Api { nodes, .. } => {
                crate::beacon_cli::chain_of(nodes)
                    .map_err(|err| {
                        format!(
                            "{err} (the chain's genesis_validators_root comes from the beacon \
                             nodes; give it with --genesis-validators-root when none answers)"
                        )
                    })?
                    .genesis_validators_root
            }
        },
    };
    let (lock, _storage) = crate::run::open_data_dir(&config.data_dir).map_err(|err| {
        if err.contains("in use") {
            format!("{err}; stop the node first: its slashing-protection records have one writer")
        } else {
            err
        }
    })?;
    Ok(Opened {
        data_dir: config.data_dir,
        _lock: lock,
        genesis_validators_root,
        key_of,
    })
}

pub fn slashing_protection(command: SlashingCommand) -> ExitCode {
    let result = match command {
        SlashingCommand::Export { target, out } => export(&target, &out),
        SlashingCommand::Import { target, file } => import(&target, &file),
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

fn export(target: &Target, out: &std::path::Path) -> Result<String, String> {
    if out.exists() {
        return Err(format!(
            "{} exists; refusing to overwrite it",
            out.display()
        ));
    }
    let opened = open(target)?;
    let watermarks = interchange::read_store(&opened.data_dir)?;
    let file =
        interchange::interchange_of(&watermarks, &opened.genesis_validators_root, &opened.key_of)
            .map_err(|err| err.to_string())?;
    let text = serde_json::to_string_pretty(&file).map_err(|err| err.to_string())?;
    std::fs::write(out, text + "\n").map_err(|err| format!("{}: {err}", out.display()))?;
    Ok(format!(
        "wrote the slashing-protection records of {} validators to {}",
        file.data.len(),
        out.display()
    ))
}

fn import(target: &Target, file: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|err| format!("{}: {err}", file.display()))?;
    let opened = open(target)?;
    let index_of: BTreeMap<String, u64> = opened
        .key_of
        .iter()
        .map(|(index, key)| (key.clone(), *index))
        .collect();
    let incoming = interchange::watermarks_of(&text, &opened.genesis_validators_root, &index_of)
        .map_err(|err| format!("{}: {err}", file.display()))?;
    let validators = incoming.len();
    let changed = interchange::merge_into_store(&opened.data_dir, incoming)?;
    Ok(format!(
        "imported {}: {validators} validators, {changed} of whose records changed",
        file.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh devnet cluster (light keystores) and operator 0's config.
    fn cluster(name: &str) -> (PathBuf, PathBuf) {
        let out = std::env::temp_dir().join(format!(
            "cohort-slashing-cli-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&out);
        let configs = keys::init_cluster(&keys::tests::plan(out.clone())).expect("cluster init");
        (out, configs[0].clone())
    }

    fn target(config: &std::path::Path) -> Target {
        Target {
            config: config.to_path_buf(),
            genesis_validators_root: None,
        }
    }

    #[test]
    fn import_then_export_through_the_commands() {
        let (out, config) = cluster("round-trip");
        let lock: keys::Lock = serde_json::from_str(
            &std::fs::read_to_string(out.join("cluster-lock.json")).expect("lock"),
        )
        .expect("parses");
        let devnet = cohort_ingress::signing::ForkInfo::devnet().genesis_validators_root;
        let gvr: String = devnet.iter().map(|b| format!("{b:02x}")).collect();
        let file = out.join("history.json");
        let history = serde_json::json!({
            "metadata": { "interchange_format_version": "5", "genesis_validators_root": format!("0x{gvr}") },
            "data": [ {
                "pubkey": format!("0x{}", lock.validators[1].public_key),
                "signed_blocks": [ { "slot": "12" } ],
                "signed_attestations": [ { "source_epoch": "1", "target_epoch": "2" } ]
            } ]
        });
        std::fs::write(&file, history.to_string()).expect("write");
        let done = import(&target(&config), &file).expect("imports");
        assert!(
            done.contains("1 validators, 1 of whose records changed"),
            "{done}"
        );
        let done = import(&target(&config), &file).expect("imports again");
        assert!(done.contains("0 of whose records changed"), "{done}");

        // The same file for another chain is refused, and says which root it expected.
        let other = Target {
            config: config.clone(),
            genesis_validators_root: Some(format!("0x{}", "11".repeat(32))),
        };
        let err = import(&other, &file).expect_err("another chain");
        assert!(
            err.contains("history.json") && err.contains("another network"),
            "{err}"
        );

        let exported = out.join("exported.json");
        export(&target(&config), &exported).expect("exports");
        let written: interchange::Interchange =
            serde_json::from_str(&std::fs::read_to_string(&exported).expect("read"))
                .expect("parses");
        assert_eq!(written.data.len(), 1);
        assert_eq!(written.data[0].signed_blocks[0].slot, "12");
        assert_eq!(written.data[0].signed_blocks[0].signing_root, None);
        assert_eq!(written.data[0].signed_attestations[0].target_epoch, "2");
        assert!(export(&target(&config), &exported).is_err(), "no overwrite");
        let _ = std::fs::remove_dir_all(&out);
    }

    #[test]
    fn a_running_node_is_not_touched() {
        let (out, config) = cluster("running");
        let loaded = config::load(&config, Vec::new()).expect("valid");
        // As `cohort run` holds it.
        let _node = crate::run::open_data_dir(&loaded.data_dir).expect("node's lock");
        let err = export(&target(&config), &out.join("x.json")).expect_err("refused");
        assert!(err.contains("stop the node first"), "{err}");
        std::fs::write(out.join("in.json"), "{}").expect("write");
        let err = import(&target(&config), &out.join("in.json")).expect_err("refused");
        assert!(err.contains("stop the node first"), "{err}");
        let _ = std::fs::remove_dir_all(&out);
    }
}
