//! `cohort exit request|status`: a voluntary exit through the running cluster.
//!
//! The operator asks its own node: `exit request` writes a request file into the node's data
//! directory, which the running node picks up within a slot and hands to its exits actor (which
//! signs with this operator's share and announces the partial to the other operators). The
//! file stays until the exit is submitted, so a request survives restarts of the node; the
//! node writes what it knows beside it (`<index>.status.json`: the epoch, the operators that
//! signed, and the signed exit once threshold-many did), which `exit status` prints.
//!
//! Only files the node's own user wrote in its 0700 data directory are read: asking for an
//! exit needs the same access to the machine as the keys do.

use crate::{config, exit};
use cohort_ingress::{
    SlotClock,
    exits::{ExitProgress, Mailbox},
    keys as bls,
};
use commonware_runtime::{Clock as _, tokio};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tracing::{info, warn};

/// The directory under `data_dir` that holds requests and their status.
pub const REQUESTS_DIR: &str = "exit-requests";
/// A request file is small; anything larger is not one.
const MAX_REQUEST_BYTES: u64 = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub validator_index: String,
    /// Unset: the epoch other operators already signed, or the current one.
    #[serde(default)]
    pub epoch: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    pub validator_index: String,
    pub epoch: String,
    /// Operators (1-based) whose partial signatures this node holds for this exit.
    pub signers: Vec<u64>,
    pub threshold: usize,
    pub submitted: bool,
    /// The exit as beacon nodes take it, once threshold-many operators signed it.
    pub signed_exit: Option<exit::SignedExit>,
    /// Why the node refused the request, if it did.
    pub error: Option<String>,
}

fn request_path(dir: &Path, validator: u64) -> PathBuf {
    dir.join(format!("{validator}.json"))
}

fn status_path(dir: &Path, validator: u64) -> PathBuf {
    dir.join(format!("{validator}.status.json"))
}

fn requests_dir(config: &config::Config) -> PathBuf {
    config.data_dir.join(REQUESTS_DIR)
}

/// `exit request`: records the request where the node finds it.
pub fn request(config_path: &Path, validator: &str, epoch: Option<u64>) -> Result<String, String> {
    let config = config::load(config_path, std::env::vars().collect::<Vec<_>>())
        .map_err(|e| e.to_string())?;
    let lock = exit::read_lock(&config)?;
    let index = exit::find(&lock, validator)?.index;
    let dir = requests_dir(&config);
    create_private_dir(&dir)?;
    let path = request_path(&dir, index);
    let request = Request {
        validator_index: index.to_string(),
        epoch: epoch.map(|epoch| epoch.to_string()),
    };
    let bytes = serde_json::to_vec_pretty(&request).map_err(|err| err.to_string())?;
    cohort_keystore::files::write_secret(&path, &bytes).map_err(|err| err.to_string())?;
    Ok(format!(
        "exit of validator {index} requested ({}). The running node signs it with this \
         operator's share within a slot and announces it to the cluster; it is submitted once \
         threshold-many operators asked for the same exit. `cohort exit status --config {}` \
         shows where it stands.",
        path.display(),
        config_path.display()
    ))
}

/// `exit status`: what the node wrote about each request.
pub fn status(config_path: &Path) -> Result<String, String> {
    let config = config::load(config_path, std::env::vars().collect::<Vec<_>>())
        .map_err(|e| e.to_string())?;
    let dir = requests_dir(&config);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok("no exit requested on this operator".into());
    };
    let mut lines = Vec::new();
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if let Some(index) = name.strip_suffix(".status.json") {
            match read_small(&path).and_then(|text| {
                serde_json::from_str::<Status>(&text).map_err(|err| err.to_string())
            }) {
                Ok(status) if status.error.is_some() => lines.push(format!(
                    "validator {index}: refused: {}",
                    status.error.unwrap_or_default()
                )),
                Ok(status) => lines.push(format!(
                    "validator {}: exit at epoch {}, signed by operators {:?} of the {} needed{}",
                    status.validator_index,
                    status.epoch,
                    status.signers,
                    status.threshold,
                    match (&status.signed_exit, status.submitted) {
                        (Some(_), true) => ": combined and submitted to the beacon nodes",
                        (Some(_), false) => ": combined, not yet taken by a beacon node",
                        (None, _) => ": waiting for more operators to ask",
                    }
                )),
                Err(err) => lines.push(format!("{}: {err}", path.display())),
            }
        } else if let Some(index) = name.strip_suffix(".json")
            && !path.with_file_name(format!("{index}.status.json")).exists()
        {
            lines.push(format!(
                "validator {index}: requested; the node has not picked it up yet (is it running?)"
            ));
        }
    }
    if lines.is_empty() {
        return Ok("no exit requested on this operator".into());
    }
    Ok(lines.join("\n"))
}

fn create_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|err| format!("{}: {err}", dir.display()))
}

fn read_small(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|err| format!("{}: {err}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_REQUEST_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|err| format!("{}: {err}", path.display()))?;
    if text.len() as u64 > MAX_REQUEST_BYTES {
        return Err(format!("{}: larger than a request", path.display()));
    }
    Ok(text)
}

/// Reads the request files: `(validator, epoch)` per valid one; a malformed one is logged and
/// answered in its status file.
fn pending_requests(dir: &Path) -> Vec<(u64, Option<u64>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut requests = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".status.json") || !name.ends_with(".json") {
            continue;
        }
        let parsed = read_small(&path).and_then(|text| {
            let request: Request =
                serde_json::from_str(&text).map_err(|err| format!("{}: {err}", path.display()))?;
            let validator = request
                .validator_index
                .parse::<u64>()
                .map_err(|_| format!("{}: validator_index is not a number", path.display()))?;
            let epoch = match request.epoch {
                Some(epoch) => Some(
                    epoch
                        .parse::<u64>()
                        .map_err(|_| format!("{}: epoch is not a number", path.display()))?,
                ),
                None => None,
            };
            Ok((validator, epoch))
        });
        match parsed {
            Ok(request) => requests.push(request),
            Err(err) => warn!(%err, "unreadable exit request; ignored until it is fixed"),
        }
    }
    requests.sort_unstable();
    requests
}

fn write_status(dir: &Path, validator: u64, status: &Status) {
    let result = serde_json::to_vec_pretty(status)
        .map_err(|err| err.to_string())
        .and_then(|bytes| {
            cohort_keystore::files::write_secret(&status_path(dir, validator), &bytes)
                .map_err(|err| err.to_string())
        });
    if let Err(err) = result {
        warn!(validator, %err, "could not write the exit's status file");
    }
}

fn status_of(progress: &ExitProgress) -> Status {
    Status {
        validator_index: progress.validator_index.to_string(),
        epoch: progress.epoch.to_string(),
        signers: progress.signers.clone(),
        threshold: progress.threshold,
        submitted: progress.submitted,
        signed_exit: progress.signed.as_ref().map(|signed| exit::SignedExit {
            message: exit::ExitMessage {
                epoch: signed.epoch.to_string(),
                validator_index: signed.validator_index.to_string(),
            },
            signature: bls::to_hex(&signed.signature),
        }),
        error: None,
    }
}

/// The node's side: every slot, hands new request files to the exits actor and writes each
/// request's status beside it. A request whose exit was submitted is removed (its status file
/// keeps the signed exit).
pub async fn watch(
    context: tokio::Context,
    data_dir: PathBuf,
    mut exits: Mailbox,
    clock: SlotClock,
) {
    let dir = data_dir.join(REQUESTS_DIR);
    loop {
        for (validator, epoch) in pending_requests(&dir) {
            match exits.request(validator, epoch).await {
                Ok(progress) => {
                    write_status(&dir, validator, &status_of(&progress));
                    if progress.submitted {
                        info!(
                            validator,
                            epoch = progress.epoch,
                            "exit submitted; its request is done"
                        );
                        if let Err(err) = std::fs::remove_file(request_path(&dir, validator)) {
                            warn!(validator, %err, "could not remove the done exit request");
                        }
                    }
                }
                Err(err) => {
                    warn!(validator, %err, "exit request refused; fix or remove the request file");
                    write_status(
                        &dir,
                        validator,
                        &Status {
                            validator_index: validator.to_string(),
                            epoch: epoch.map(|e| e.to_string()).unwrap_or_default(),
                            signers: Vec::new(),
                            threshold: 0,
                            submitted: false,
                            signed_exit: None,
                            error: Some(err),
                        },
                    );
                }
            }
        }
        let now = context.current();
        context
            .sleep_until(clock.slot_start(clock.current_slot(now) + 1))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_files_parse_and_junk_is_skipped() {
        let root = std::env::temp_dir().join(format!(
            "cohort-exit-requests-{}-{}",
            std::process::id(),
            line!()
        ));
        std::fs::create_dir_all(&root).expect("a temporary directory");
        struct Gone(PathBuf);
        impl Drop for Gone {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let dir = Gone(root);
        let dir = &dir.0;
        std::fs::write(
            dir.join("5.json"),
            r#"{"validator_index": "5", "epoch": "12"}"#,
        )
        .expect("write");
        std::fs::write(dir.join("7.json"), r#"{"validator_index": "7"}"#).expect("write");
        std::fs::write(dir.join("8.json"), r#"{"validator_index": "x"}"#).expect("write");
        std::fs::write(dir.join("9.json"), r#"{"surprise": 1}"#).expect("write");
        std::fs::write(dir.join("5.status.json"), "{}").expect("write");
        std::fs::write(dir.join("10.json"), vec![b' '; 5000]).expect("write");
        assert_eq!(pending_requests(dir), vec![(5, Some(12)), (7, None)]);
    }
}
