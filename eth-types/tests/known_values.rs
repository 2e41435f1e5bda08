//! Roots known from public networks, and the response shapes the produce-block endpoints wrap
//! a block in.

use cohort_eth_types::{Fork, PresetKind, block_header, block_root, body_root};
use serde_json::{Value, json};

fn hex(bytes: &[u8]) -> String {
    let mut out = String::from("0x");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Mainnet's genesis block: slot 0, an empty phase0 body, the genesis state root. Its root is
/// the well-known `0x4d611d5b…` (the genesis block every mainnet node starts from).
#[test]
fn mainnet_genesis_block_root() {
    let zero = format!("0x{}", "00".repeat(32));
    let block = json!({
        "slot": "0",
        "proposer_index": "0",
        "parent_root": zero,
        "state_root": "0x7e76880eb67bbdc86250aa578958e9d0675e64e714337855204fb5abaaf82c2b",
        "body": {
            "randao_reveal": format!("0x{}", "00".repeat(96)),
            "eth1_data": {"deposit_root": zero, "deposit_count": "0", "block_hash": zero},
            "graffiti": zero,
            "proposer_slashings": [],
            "attester_slashings": [],
            "attestations": [],
            "deposits": [],
            "voluntary_exits": []
        }
    });
    assert_eq!(
        hex(&block_root(Fork::Phase0, PresetKind::Mainnet, &block).expect("parses")),
        "0x4d611d5b93fdab69013a7f0a2f961caca0c853f87cfe9595fe50038163079360"
    );
}

fn vector_block(preset: &str, fork: &str) -> (Value, String) {
    let vectors: Value =
        serde_json::from_str(include_str!("vectors/roots.json")).expect("fixture is JSON");
    let case = vectors["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| {
            c["preset"] == preset
                && c["name"] == format!("BeaconBlock/{fork}")
                && c["instance"] == "sample-2"
        })
        .expect("case present")
        .clone();
    (
        case["json"].clone(),
        case["body_root"].as_str().expect("body_root").to_string(),
    )
}

/// From Deneb on, `GET /eth/v3/validator/blocks` (and v2) answer `BlockContents`:
/// `{block, kzg_proofs, blobs}` inside `data`. The body root is the block's, whichever of the
/// shapes is passed.
#[test]
fn block_contents_and_whole_responses_are_unwrapped() {
    for (fork, name) in [
        (Fork::Deneb, "deneb"),
        (Fork::Electra, "electra"),
        (Fork::Fulu, "fulu"),
    ] {
        for preset in [PresetKind::Mainnet, PresetKind::Minimal] {
            let (block, expected) = vector_block(preset.as_str(), name);
            let contents = json!({"block": block, "kzg_proofs": [], "blobs": []});
            let v3 = json!({
                "version": name,
                "execution_payload_blinded": false,
                "execution_payload_value": "1",
                "consensus_block_value": "2",
                "data": contents,
            });
            for shape in [&block, &contents, &v3] {
                let root = body_root(fork, preset, shape).expect("parses");
                assert_eq!(hex(&root), expected, "{name} {preset}");
            }
            let header = block_header(fork, preset, &v3).expect("parses");
            assert_eq!(
                header.slot,
                block["slot"]
                    .as_str()
                    .and_then(|s| s.parse::<u64>().ok())
                    .expect("slot")
            );
        }
    }
}

/// A block of one preset does not pass as the other where sizes differ: the minimal sync
/// aggregate has 32 bits, mainnet's 512.
#[test]
fn presets_are_not_interchangeable() {
    for fork in ["altair", "capella", "electra"] {
        let (block, _) = vector_block("minimal", fork);
        let parsed: Fork = fork.parse().expect("fork");
        assert!(body_root(parsed, PresetKind::Mainnet, &block).is_err());
        let (block, _) = vector_block("mainnet", fork);
        assert!(body_root(parsed, PresetKind::Minimal, &block).is_err());
    }
}
