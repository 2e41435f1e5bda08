//! Issue 19, item 11: the files a user hands `cohort` (its TOML config, the cluster lock, the
//! public polynomials in it, an EIP-3076 slashing-protection interchange), fed random and
//! mutated bytes: a fixed number of seeded cases per run, each ending in an error or a value,
//! never in a panic or an allocation the input does not justify. (Keystores and public keys
//! are covered in `keystore/tests/malformed.rs`, blocks and p2p messages where they live.)

#[path = "../../ingress/tests/support/malformed.rs"]
mod support;

use crate::{config, interchange, keys};
use std::collections::BTreeMap;

crate::counting_allocator!();

const CASES: usize = 1_500;

fn budget(len: usize) -> usize {
    32 * len + 64 * 1024
}

/// A fresh 4-operator cluster on disk, as `cohort cluster init` writes it.
fn cluster(name: &str) -> std::path::PathBuf {
    let out = std::env::temp_dir().join(format!(
        "cohort-malformed-{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&out);
    keys::init_cluster(&keys::tests::plan(out.clone())).expect("cluster init");
    out
}

#[test]
fn configs_refuse_malformed_text() {
    let out = cluster("config");
    let path = out.join("operator-0/operator.toml");
    let text = std::fs::read_to_string(&path).expect("config written");
    let example = include_str!("../../operator.example.toml").to_string();
    assert!(config::read::parse(&text, Vec::new()).is_ok());
    let valid = vec![text.into_bytes(), example.into_bytes()];
    let base = path.parent().expect("a directory").to_path_buf();
    let outcome = support::fuzz("config", 31, CASES, &valid, budget, |bytes| {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return false;
        };
        match config::read::parse(text, Vec::new()) {
            Ok(file) => config::validate(file, &base).is_ok(),
            Err(problems) => {
                assert!(!problems.is_empty(), "an error names its problem");
                false
            }
        }
    });
    assert!(outcome.accepted < outcome.cases, "{outcome:?}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn cluster_locks_refuse_malformed_text() {
    let out = cluster("lock");
    let text = std::fs::read_to_string(out.join("cluster-lock.json")).expect("lock written");
    let lock: keys::Lock = serde_json::from_str(&text).expect("the lock parses");
    let sharing = lock.validators[0].sharing.clone();
    assert!(keys::decode_sharing(&sharing, 4).is_ok());
    let outcome = support::fuzz(
        "cluster lock",
        32,
        CASES,
        &[text.into_bytes()],
        budget,
        |bytes| {
            let Ok(text) = std::str::from_utf8(bytes) else {
                return false;
            };
            match serde_json::from_str::<keys::Lock>(text) {
                Ok(lock) => lock
                    .validators
                    .iter()
                    .all(|v| keys::decode_sharing(&v.sharing, lock.operators.len() as u32).is_ok()),
                Err(_) => false,
            }
        },
    );
    assert!(outcome.accepted < outcome.cases, "{outcome:?}");
    // The public polynomial alone (hex of commonware's encoding, decoded point by point).
    support::fuzz(
        "sharing",
        33,
        CASES,
        &[sharing.into_bytes()],
        budget,
        |bytes| std::str::from_utf8(bytes).is_ok_and(|text| keys::decode_sharing(text, 4).is_ok()),
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn slashing_protection_interchanges_refuse_malformed_text() {
    let key = "a99a76ed7796f7be22d5b7e85deeb7c5677e88e511e0b337618f8c4eb61349b4bf2d153f649f7b53359fe8b94a38e44c";
    let root = [3u8; 32];
    let root_hex = |byte: u8| format!("0x{}", "0".repeat(62) + &format!("{byte:02x}"));
    let text = serde_json::json!({
        "metadata": {
            "interchange_format_version": "5",
            "genesis_validators_root": format!("0x{}", "03".repeat(32)),
        },
        "data": [{
            "pubkey": format!("0x{key}"),
            "signed_blocks": [ { "slot": "81952", "signing_root": root_hex(1) }, { "slot": "81951" } ],
            "signed_attestations": [
                { "source_epoch": "2290", "target_epoch": "3007", "signing_root": root_hex(2) },
                { "source_epoch": "2289", "target_epoch": "3006" }
            ]
        }]
    })
    .to_string();
    let index_of: BTreeMap<String, u64> = [(key.to_string(), 0)].into();
    assert!(interchange::watermarks_of(&text, &root, &index_of).is_ok());
    support::fuzz(
        "interchange",
        34,
        CASES,
        &[text.into_bytes()],
        budget,
        |bytes| {
            std::str::from_utf8(bytes)
                .is_ok_and(|text| interchange::watermarks_of(text, &root, &index_of).is_ok())
        },
    );
}
