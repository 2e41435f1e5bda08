//! EIP-3076 slashing-protection interchange (format version 5): `cohort slashing-protection
//! export` and `import`.
//!
//! Slashing history must travel with a validator: a validator moved into a cluster from another
//! client, or out of it, is only safe if the new signer refuses what the old one signed. The
//! store ([SlashingProtection]) keeps one low watermark per validator, so an import folds every
//! entry of a file into that watermark ([Watermarks::merge]: the higher source, the higher
//! target, the higher block slot, a root only where it is certain), and an export writes the
//! watermark as one block and one attestation per validator: importing it anywhere refuses at
//! least everything this store refuses, and importing it into a fresh Cohort store refuses
//! exactly that.
//!
//! Done with the node stopped: the store has one writer, and a running node holds `data_dir`'s
//! lock file.

use cohort_actors::runner::slashing::{
    AttestationWatermark, BlockWatermark, SlashingProtection, Watermarks,
};
use commonware_runtime::{Runner as _, Supervisor as _, tokio};
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, path::Path};

/// The only interchange version this reads and writes (EIP-3076's complete and minimal formats
/// share it).
pub const FORMAT_VERSION: &str = "5";
/// The store's partition under `data_dir/storage`, as `cohort run` names it.
pub const PARTITION: &str = "cohort-slashing";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interchange {
    pub metadata: Metadata,
    pub data: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub interchange_format_version: String,
    pub genesis_validators_root: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub pubkey: String,
    pub signed_blocks: Vec<SignedBlock>,
    pub signed_attestations: Vec<SignedAttestation>,
}

/// Numbers are decimal strings, as the EIP writes them (JSON numbers lose u64 precision in
/// many parsers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedBlock {
    pub slot: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_root: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedAttestation {
    pub source_epoch: String,
    pub target_epoch: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_root: Option<String>,
}

/// Why an interchange is refused. Nothing of a refused file is imported.
#[derive(Debug, thiserror::Error)]
pub enum InterchangeError {
    #[error("not an EIP-3076 interchange: {0}")]
    Json(#[from] serde_json::Error),
    #[error("interchange_format_version {0:?} is not supported (only \"5\")")]
    Version(String),
    #[error(
        "the file is for genesis_validators_root {file}, but this cluster's chain has {ours}: it \
         is another network's slashing history"
    )]
    OtherChain { file: String, ours: String },
    #[error(
        "validator{} {} in the file {} not in this cluster's lock; import only this cluster's \
         validators (remove the others from the file)",
        if keys.len() == 1 { "" } else { "s" },
        keys.join(", "),
        if keys.len() == 1 { "is" } else { "are" }
    )]
    Foreign { keys: Vec<String> },
    #[error("validator {pubkey}: {field} {value:?} is {why}")]
    Field {
        pubkey: String,
        field: &'static str,
        value: String,
        why: &'static str,
    },
    #[error(
        "validator {pubkey}: attestation source epoch {source_epoch} is after its target epoch \
         {target_epoch}; a file claiming that was signed is wrong"
    )]
    SourceAfterTarget {
        pubkey: String,
        source_epoch: u64,
        target_epoch: u64,
    },
    #[error(
        "the store has records for validator indices {0:?} that the cluster lock does not name; \
         export with the lock they were signed under"
    )]
    Unnamed(Vec<u64>),
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    cohort_ingress::keys::decode_hex(text)?.try_into().ok()
}

fn hex(bytes: &[u8]) -> String {
    let digits: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("0x{digits}")
}

/// Lowercase hex without `0x`: the lock's spelling of a public key.
fn normal_key(key: &str) -> String {
    key.trim_start_matches("0x").to_ascii_lowercase()
}

/// Reads an interchange and folds it into watermarks by validator index, checking everything
/// first: version, chain, that every validator is the cluster's (`index_of`, by public key in
/// lowercase hex without `0x`), and every number and root.
pub fn watermarks_of(
    text: &str,
    genesis_validators_root: &[u8; 32],
    index_of: &BTreeMap<String, u64>,
) -> Result<BTreeMap<u64, Watermarks>, InterchangeError> {
    let interchange: Interchange = serde_json::from_str(text)?;
    if interchange.metadata.interchange_format_version != FORMAT_VERSION {
        return Err(InterchangeError::Version(
            interchange.metadata.interchange_format_version,
        ));
    }
    let ours = hex(genesis_validators_root);
    if hex32(&interchange.metadata.genesis_validators_root) != Some(*genesis_validators_root) {
        return Err(InterchangeError::OtherChain {
            file: interchange.metadata.genesis_validators_root,
            ours,
        });
    }
    let foreign: Vec<String> = interchange
        .data
        .iter()
        .filter(|entry| !index_of.contains_key(&normal_key(&entry.pubkey)))
        .map(|entry| entry.pubkey.clone())
        .collect();
    if !foreign.is_empty() {
        return Err(InterchangeError::Foreign { keys: foreign });
    }

    let mut all: BTreeMap<u64, Watermarks> = BTreeMap::new();
    for entry in &interchange.data {
        let field = |field: &'static str, value: &str, why: &'static str| InterchangeError::Field {
            pubkey: entry.pubkey.clone(),
            field,
            value: value.to_string(),
            why,
        };
        let number = |name: &'static str, value: &str| {
            value
                .parse::<u64>()
                .map_err(|_| field(name, value, "not a decimal u64"))
        };
        let root = |name: &'static str, value: &Option<String>| match value {
            None => Ok(None),
            Some(text) => hex32(text)
                .map(Some)
                .ok_or_else(|| field(name, text, "not 32 bytes of hex")),
        };
        let index = index_of[&normal_key(&entry.pubkey)];
        let mut watermarks = all.get(&index).copied().unwrap_or_default();
        for block in &entry.signed_blocks {
            let incoming = Watermarks {
                attestation: None,
                block: Some(BlockWatermark {
                    slot: number("signed_blocks.slot", &block.slot)?,
                    signing_root: root("signed_blocks.signing_root", &block.signing_root)?,
                }),
            };
            watermarks = watermarks.merge(incoming);
        }
        for attestation in &entry.signed_attestations {
            let source_epoch = number(
                "signed_attestations.source_epoch",
                &attestation.source_epoch,
            )?;
            let target_epoch = number(
                "signed_attestations.target_epoch",
                &attestation.target_epoch,
            )?;
            if source_epoch > target_epoch {
                return Err(InterchangeError::SourceAfterTarget {
                    pubkey: entry.pubkey.clone(),
                    source_epoch,
                    target_epoch,
                });
            }
            let incoming = Watermarks {
                attestation: Some(AttestationWatermark {
                    source_epoch,
                    target_epoch,
                    signing_root: root(
                        "signed_attestations.signing_root",
                        &attestation.signing_root,
                    )?,
                }),
                block: None,
            };
            watermarks = watermarks.merge(incoming);
        }
        all.insert(index, watermarks);
    }
    Ok(all)
}

/// Writes the store's watermarks as an interchange: one block and one attestation per
/// validator (its watermark), a root only where the store knows it.
pub fn interchange_of(
    watermarks: &BTreeMap<u64, Watermarks>,
    genesis_validators_root: &[u8; 32],
    key_of: &BTreeMap<u64, String>,
) -> Result<Interchange, InterchangeError> {
    let unnamed: Vec<u64> = watermarks
        .keys()
        .filter(|index| !key_of.contains_key(index))
        .copied()
        .collect();
    if !unnamed.is_empty() {
        return Err(InterchangeError::Unnamed(unnamed));
    }
    let data = watermarks
        .iter()
        .map(|(index, marks)| Entry {
            pubkey: format!("0x{}", normal_key(&key_of[index])),
            signed_blocks: marks
                .block
                .iter()
                .map(|block| SignedBlock {
                    slot: block.slot.to_string(),
                    signing_root: block.signing_root.map(|root| hex(&root)),
                })
                .collect(),
            signed_attestations: marks
                .attestation
                .iter()
                .map(|attestation| SignedAttestation {
                    source_epoch: attestation.source_epoch.to_string(),
                    target_epoch: attestation.target_epoch.to_string(),
                    signing_root: attestation.signing_root.map(|root| hex(&root)),
                })
                .collect(),
        })
        .collect();
    Ok(Interchange {
        metadata: Metadata {
            interchange_format_version: FORMAT_VERSION.into(),
            genesis_validators_root: hex(genesis_validators_root),
        },
        data,
    })
}

fn runtime(data_dir: &Path) -> tokio::Runner {
    let storage = data_dir.join("storage");
    tokio::Runner::new(
        tokio::Config::new()
            .with_storage_directory(storage)
            .with_catch_panics(false),
    )
}

/// Every watermark of the store under `data_dir/storage`. The caller holds `data_dir`'s lock.
pub fn read_store(data_dir: &Path) -> Result<BTreeMap<u64, Watermarks>, String> {
    runtime(data_dir).start(|context| async move {
        let store = SlashingProtection::init(context.child("slashing"), PARTITION.into())
            .await
            .map_err(|err| err.to_string())?;
        store.watermarks().map_err(|err| err.to_string())
    })
}

/// Merges `incoming` into the store under `data_dir/storage` (creating it if need be); returns
/// how many validators' records changed. The caller holds `data_dir`'s lock.
pub fn merge_into_store(
    data_dir: &Path,
    incoming: BTreeMap<u64, Watermarks>,
) -> Result<usize, String> {
    runtime(data_dir).start(|context| async move {
        let mut store = SlashingProtection::init(context.child("slashing"), PARTITION.into())
            .await
            .map_err(|err| err.to_string())?;
        store.merge(&incoming).await.map_err(|err| err.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_actors::runner::slashing::{Refusal, SignRequest};

    const GVR: [u8; 32] = [0x04; 32];
    /// Two validators of the cluster, by the lock's spelling of their keys.
    const KEY_A: &str = "b845089a1457f811bfc000588fbb4e713669be8ce060ea6be3c6ece09afc3794106c91ca73acda5e5457122d58723bed";
    const KEY_B: &str = "a3a32b0f8b4ddb83f1a0a853d81dd725dfe577d4f4c3db8ece52ce2b026eca84815c1a7e8e92a4de3d755733bf7e4a9b";

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "cohort-interchange-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn index_of() -> BTreeMap<String, u64> {
        [(KEY_A.to_string(), 3), (KEY_B.to_string(), 8)].into()
    }

    fn key_of() -> BTreeMap<u64, String> {
        index_of().into_iter().map(|(k, i)| (i, k)).collect()
    }

    fn root(tag: u8) -> [u8; 32] {
        [tag; 32]
    }

    fn root_hex(tag: u8) -> String {
        hex(&root(tag))
    }

    fn attestation(validator_index: u64, source: u64, target: u64, tag: u8) -> SignRequest {
        SignRequest::Attestation {
            validator_index,
            source_epoch: source,
            target_epoch: target,
            signing_root: root(tag),
        }
    }

    fn block(validator_index: u64, slot: u64, tag: u8) -> SignRequest {
        SignRequest::Block {
            validator_index,
            slot,
            signing_root: root(tag),
        }
    }

    /// Asks the store under `data_dir` to sign each request, one at a time, as the runner would.
    fn probe(data_dir: &Path, requests: Vec<SignRequest>) -> Vec<Result<(), Refusal>> {
        runtime(data_dir).start(|context| async move {
            let mut store = SlashingProtection::init(context.child("slashing"), PARTITION.into())
                .await
                .expect("store opens");
            let mut verdicts = Vec::new();
            for request in requests {
                let mut verdict = store
                    .check_and_record(&[request])
                    .await
                    .expect("store works");
                verdicts.push(verdict.remove(0));
            }
            verdicts
        })
    }

    /// The EIP's example shape: validator A signed block 81952 and two attestations, B a block
    /// with no root and an attestation with no root.
    fn example() -> String {
        serde_json::json!({
            "metadata": {
                "interchange_format_version": "5",
                "genesis_validators_root": hex(&GVR),
            },
            "data": [
                {
                    "pubkey": format!("0x{KEY_A}"),
                    "signed_blocks": [
                        { "slot": "81952", "signing_root": root_hex(1) },
                        { "slot": "81951" }
                    ],
                    "signed_attestations": [
                        { "source_epoch": "2290", "target_epoch": "3007", "signing_root": root_hex(2) },
                        { "source_epoch": "2289", "target_epoch": "3006" }
                    ]
                },
                {
                    "pubkey": format!("0x{}", KEY_B.to_ascii_uppercase()),
                    "signed_blocks": [ { "slot": "100" } ],
                    "signed_attestations": [ { "source_epoch": "10", "target_epoch": "11" } ]
                }
            ]
        })
        .to_string()
    }

    #[test]
    fn imported_history_refuses_by_the_eips_rules() {
        let dir = temp("rules");
        let incoming = watermarks_of(&example(), &GVR, &index_of()).expect("valid interchange");
        assert_eq!(merge_into_store(&dir, incoming).expect("merges"), 2);
        let verdicts = probe(
            &dir,
            vec![
                // Double vote: another attestation for target 3007.
                attestation(3, 2290, 3007, 9),
                // The very attestation the file says was signed: same data, safe to sign again.
                attestation(3, 2290, 3007, 2),
                // Surround vote: 2000 -> 3010 surrounds 2290 -> 3007.
                attestation(3, 2000, 3010, 9),
                // Older than the watermark: target 3006 is below 3007.
                attestation(3, 2289, 3006, 9),
                // Same slot, another block.
                block(3, 81952, 9),
                // Below the block watermark.
                block(3, 81000, 9),
                // Past every watermark.
                attestation(3, 3007, 3008, 9),
                block(3, 81953, 9),
                // No root in the file: nothing at that target or slot, not even a request whose
                // root is the zeros the store keeps for "unknown".
                attestation(8, 10, 11, 0),
                block(8, 100, 0),
                attestation(8, 11, 12, 5),
                block(8, 101, 5),
            ],
        );
        assert!(
            matches!(verdicts[0], Err(Refusal::DoubleVote { .. })),
            "{verdicts:?}"
        );
        assert_eq!(verdicts[1], Ok(()));
        assert!(
            matches!(verdicts[2], Err(Refusal::SurroundVote { .. })),
            "{verdicts:?}"
        );
        assert!(
            matches!(verdicts[3], Err(Refusal::OlderTarget { .. })),
            "{verdicts:?}"
        );
        assert!(
            matches!(verdicts[4], Err(Refusal::DoubleBlock { .. })),
            "{verdicts:?}"
        );
        assert!(
            matches!(verdicts[5], Err(Refusal::OlderBlock { .. })),
            "{verdicts:?}"
        );
        assert_eq!(verdicts[6], Ok(()));
        assert_eq!(verdicts[7], Ok(()));
        assert!(
            matches!(verdicts[8], Err(Refusal::DoubleVote { .. })),
            "{verdicts:?}"
        );
        assert!(
            matches!(verdicts[9], Err(Refusal::DoubleBlock { .. })),
            "{verdicts:?}"
        );
        assert_eq!(verdicts[10], Ok(()));
        assert_eq!(verdicts[11], Ok(()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn importing_merges_safest_and_twice_changes_nothing() {
        let dir = temp("merge");
        // The store signed further than the file for A, less far for B.
        let verdicts = probe(
            &dir,
            vec![
                attestation(3, 3000, 3100, 7),
                block(3, 90000, 7),
                block(8, 50, 7),
            ],
        );
        assert!(verdicts.iter().all(Result::is_ok));
        let before = read_store(&dir).expect("reads");

        let incoming = watermarks_of(&example(), &GVR, &index_of()).expect("valid");
        assert_eq!(merge_into_store(&dir, incoming.clone()).expect("merges"), 1);
        let once = read_store(&dir).expect("reads");
        assert_eq!(
            once[&3], before[&3],
            "A's own watermarks were already safer"
        );
        assert_eq!(
            once[&8].block.expect("block").slot,
            100,
            "B's rose to the file's"
        );
        assert_eq!(once[&8].attestation.expect("attestation").target_epoch, 11);

        assert_eq!(merge_into_store(&dir, incoming).expect("merges"), 0);
        assert_eq!(
            read_store(&dir).expect("reads"),
            once,
            "the same file twice changes nothing"
        );

        // A file whose higher source and higher target come from different attestations: both
        // rise, and the root of the higher target stays (signing that very message is safe).
        let text = example()
            .replace("\"2290\"", "\"3050\"")
            .replace("\"3007\"", "\"3200\"");
        let incoming = watermarks_of(&text, &GVR, &index_of()).expect("valid");
        merge_into_store(&dir, incoming).expect("merges");
        let marks = read_store(&dir).expect("reads")[&3]
            .attestation
            .expect("attestation");
        assert_eq!((marks.source_epoch, marks.target_epoch), (3050, 3200));
        assert_eq!(marks.signing_root, Some(root(2)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn export_then_import_into_a_fresh_store_refuses_exactly_the_same() {
        let original = temp("export-original");
        let fresh = temp("export-fresh");
        let history = vec![
            attestation(3, 1, 2, 1),
            attestation(3, 2, 3, 2),
            block(3, 17, 3),
            attestation(8, 5, 9, 4),
        ];
        assert!(probe(&original, history).iter().all(Result::is_ok));
        // One root unknown, as after importing a file without roots.
        let rootless = serde_json::json!({
            "metadata": { "interchange_format_version": "5", "genesis_validators_root": hex(&GVR) },
            "data": [ { "pubkey": KEY_B, "signed_blocks": [ { "slot": "40" } ], "signed_attestations": [] } ]
        });
        let incoming = watermarks_of(&rootless.to_string(), &GVR, &index_of()).expect("valid");
        merge_into_store(&original, incoming).expect("merges");

        let exported = interchange_of(&read_store(&original).expect("reads"), &GVR, &key_of())
            .expect("every validator is named");
        let text = serde_json::to_string_pretty(&exported).expect("serialises");
        let parsed: Interchange = serde_json::from_str(&text).expect("parses back");
        assert_eq!(parsed, exported);
        let incoming = watermarks_of(&text, &GVR, &index_of()).expect("our own export imports");
        merge_into_store(&fresh, incoming).expect("merges");
        assert_eq!(
            read_store(&fresh).expect("reads"),
            read_store(&original).expect("reads")
        );

        let probes = || {
            let mut probes = Vec::new();
            for validator in [3, 8] {
                for (source, target) in [
                    (0, 2),
                    (1, 2),
                    (2, 3),
                    (1, 4),
                    (3, 4),
                    (5, 9),
                    (4, 10),
                    (9, 10),
                ] {
                    for tag in [1, 2, 4, 6] {
                        probes.push(attestation(validator, source, target, tag));
                    }
                }
                for slot in [16, 17, 18, 39, 40, 41] {
                    for tag in [3, 6] {
                        probes.push(block(validator, slot, tag));
                    }
                }
            }
            probes
        };
        // Each probe alone against both stores, so that one accepted probe does not change
        // what the next is judged against.
        for request in probes() {
            let a = probe_without_recording(&original, request);
            let b = probe_without_recording(&fresh, request);
            assert_eq!(a.is_ok(), b.is_ok(), "{request:?}: {a:?} vs {b:?}");
            assert_eq!(a, b, "{request:?}");
        }
        let _ = std::fs::remove_dir_all(&original);
        let _ = std::fs::remove_dir_all(&fresh);
    }

    /// The verdict on `request` without keeping it: checked on a copy of the store.
    fn probe_without_recording(data_dir: &Path, request: SignRequest) -> Result<(), Refusal> {
        let copy = temp("probe-copy");
        copy_dir(data_dir, &copy);
        let verdict = probe(&copy, vec![request]).remove(0);
        let _ = std::fs::remove_dir_all(&copy);
        verdict
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read dir") {
            let entry = entry.expect("entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("type").is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).expect("copy");
            }
        }
    }

    #[test]
    fn refused_files_say_why_and_change_nothing() {
        let with = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut value: serde_json::Value = serde_json::from_str(&example()).expect("json");
            edit(&mut value);
            watermarks_of(&value.to_string(), &GVR, &index_of())
                .expect_err("refused")
                .to_string()
        };
        let err = with(&|v| v["metadata"]["genesis_validators_root"] = hex(&[5; 32]).into());
        assert!(err.contains("another network"), "{err}");
        let err = with(&|v| v["metadata"]["interchange_format_version"] = "4".into());
        assert!(err.contains("not supported"), "{err}");
        let stranger = "8".repeat(96);
        let err = with(&|v| v["data"][1]["pubkey"] = format!("0x{stranger}").into());
        assert!(
            err.contains(&stranger) && err.contains("not in this cluster's lock"),
            "{err}"
        );
        let err = with(&|v| v["data"][0]["signed_attestations"][0]["source_epoch"] = "4000".into());
        assert!(err.contains("after its target"), "{err}");
        let err = with(&|v| v["data"][0]["signed_blocks"][0]["slot"] = "-1".into());
        assert!(err.contains("signed_blocks.slot"), "{err}");
        let err = with(&|v| v["data"][0]["signed_blocks"][0]["signing_root"] = "0x12".into());
        assert!(err.contains("32 bytes"), "{err}");
        let err = with(&|v| v["data"][0]["signed_blocks"][0]["slot"] = 5.into());
        assert!(err.contains("not an EIP-3076 interchange"), "{err}");
    }

    #[test]
    fn store_records_the_lock_does_not_name_are_not_exported_silently() {
        let marks = Watermarks {
            attestation: None,
            block: Some(BlockWatermark {
                slot: 1,
                signing_root: None,
            }),
        };
        let err = interchange_of(&[(99, marks)].into(), &GVR, &key_of()).expect_err("refused");
        assert!(err.to_string().contains("[99]"), "{err}");
    }
}
