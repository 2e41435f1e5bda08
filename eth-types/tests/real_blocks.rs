//! Body roots of real blocks: capella blocks of a Lodestar 1.5.1 dev chain (minimal preset),
//! each with the header the node itself reports (`/eth/v1/beacon/headers/{slot}`), against the
//! block JSON (`/eth/v2/beacon/blocks/{slot}`). The node computed those roots with its own SSZ
//! implementation, so agreement here checks this crate's containers, sizes and JSON reading.
//!
//! Then malformed variants of the same blocks, which must be errors (never panics).

use cohort_eth_types::{
    Fork, PresetKind, block_header, block_header_from_slice, block_root, body_root,
};
use serde_json::Value;

fn fixtures() -> Vec<Value> {
    let text = include_str!("fixtures/lodestar-capella-minimal.json");
    let value: Value = serde_json::from_str(text).expect("fixture is JSON");
    value.as_array().expect("fixture is an array").clone()
}

fn root_hex(bytes: &[u8; 32]) -> String {
    let mut out = String::from("0x");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[test]
fn lodestar_capella_minimal_body_roots_match_the_headers() {
    let blocks = fixtures();
    assert!(blocks.len() >= 3);
    for entry in &blocks {
        let fork: Fork = entry["version"]
            .as_str()
            .expect("version")
            .parse()
            .expect("known fork");
        assert_eq!(fork, Fork::Capella);
        let block = &entry["block"];
        let header = &entry["header"];
        let root = body_root(fork, PresetKind::Minimal, block).expect("block parses");
        assert_eq!(
            root_hex(&root),
            header["body_root"].as_str().expect("body_root"),
            "slot {}",
            header["slot"]
        );
        let parsed = block_header(fork, PresetKind::Minimal, block).expect("block parses");
        let expected: cohort_eth_types::BeaconBlockHeader =
            serde_json::from_value(header.clone()).expect("header parses");
        assert_eq!(parsed, expected);
        assert_eq!(
            root_hex(&block_root(fork, PresetKind::Minimal, block).expect("block parses")),
            entry["root"].as_str().expect("root")
        );
        // The whole response shape (`{"version", "data": block}`) and raw bytes work too.
        let response = serde_json::json!({"version": "capella", "data": block});
        assert_eq!(body_root(fork, PresetKind::Minimal, &response), Ok(root));
        let bytes = serde_json::to_vec(block).expect("serializes");
        assert_eq!(
            block_header_from_slice(fork, PresetKind::Minimal, &bytes),
            Ok(parsed)
        );
        // The JSON round-trips through the typed block with the same root.
        let typed: cohort_eth_types::BeaconBlock<
            cohort_eth_types::BeaconBlockBodyCapella<cohort_eth_types::Minimal>,
        > = serde_json::from_value(block.clone()).expect("typed parse");
        let again = serde_json::to_value(&typed).expect("serializes");
        assert_eq!(body_root(fork, PresetKind::Minimal, &again), Ok(root));
    }
}

#[test]
fn a_block_with_transactions_and_attestations_is_among_the_fixtures() {
    let blocks = fixtures();
    assert!(blocks.iter().any(|b| {
        b["block"]["body"]["execution_payload"]["transactions"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
    }));
    assert!(blocks.iter().any(|b| {
        b["block"]["body"]["attestations"]
            .as_array()
            .is_some_and(|a| a.len() > 1)
    }));
}

#[test]
fn wrong_fork_or_preset_is_an_error_or_another_root() {
    let entry = &fixtures()[0];
    let block = &entry["block"];
    let expected = entry["header"]["body_root"].as_str().expect("body_root");
    // Mainnet wants 512 sync committee bits: 32 bits do not parse.
    assert!(body_root(Fork::Capella, PresetKind::Mainnet, block).is_err());
    // Bellatrix ignores `bls_to_execution_changes` and `withdrawals` (unknown fields are
    // ignored), so it parses, to another root.
    let bellatrix = body_root(Fork::Bellatrix, PresetKind::Minimal, block).expect("parses");
    assert_ne!(root_hex(&bellatrix), expected);
    // Deneb needs fields a capella block lacks.
    assert!(body_root(Fork::Deneb, PresetKind::Minimal, block).is_err());
    assert!(body_root(Fork::Electra, PresetKind::Minimal, block).is_err());
}

fn mutated(edit: impl FnOnce(&mut Value)) -> Value {
    let mut block = fixtures()[0]["block"].clone();
    edit(&mut block);
    block
}

#[test]
fn malformed_blocks_are_errors() {
    let cases: Vec<(&str, Value)> = vec![
        (
            "missing body",
            mutated(|b| {
                b.as_object_mut().expect("object").remove("body");
            }),
        ),
        (
            "short randao reveal",
            mutated(|b| b["body"]["randao_reveal"] = Value::from("0x1234")),
        ),
        (
            "not hex",
            mutated(|b| b["body"]["graffiti"] = Value::from(format!("0x{}", "zz".repeat(32)))),
        ),
        (
            "slot not a number",
            mutated(|b| b["slot"] = Value::from("sixty")),
        ),
        ("negative slot", mutated(|b| b["slot"] = Value::from("-1"))),
        (
            "slot overflows u64",
            mutated(|b| b["slot"] = Value::from("18446744073709551616")),
        ),
        (
            "sync bits one byte long",
            mutated(|b| {
                b["body"]["sync_aggregate"]["sync_committee_bits"] = Value::from("0xff00ff")
            }),
        ),
        (
            "withdrawals over MAX_WITHDRAWALS_PER_PAYLOAD (4 on minimal)",
            mutated(|b| {
                let withdrawal = serde_json::json!({
                    "index": "1", "validator_index": "2",
                    "address": "0x0000000000000000000000000000000000000001", "amount": "3"
                });
                b["body"]["execution_payload"]["withdrawals"] = Value::Array(vec![withdrawal; 5]);
            }),
        ),
        (
            "extra data over 32 bytes",
            mutated(|b| {
                b["body"]["execution_payload"]["extra_data"] =
                    Value::from(format!("0x{}", "ab".repeat(33)))
            }),
        ),
        (
            "logs bloom of 255 bytes",
            mutated(|b| {
                b["body"]["execution_payload"]["logs_bloom"] =
                    Value::from(format!("0x{}", "00".repeat(255)))
            }),
        ),
        (
            "aggregation bits without the length bit",
            mutated(|b| b["body"]["attestations"][0]["aggregation_bits"] = Value::from("0x0000")),
        ),
        (
            "body is an array",
            mutated(|b| b["body"] = Value::Array(vec![])),
        ),
        (
            "a full payload where the blinded header belongs",
            mutated(|b| {
                let payload = b["body"]["execution_payload"].take();
                let body = b["body"].as_object_mut().expect("object");
                body.remove("execution_payload");
                body.insert("execution_payload_header".into(), payload);
            }),
        ),
    ];
    for (name, block) in cases {
        assert!(
            body_root(Fork::Capella, PresetKind::Minimal, &block).is_err(),
            "{name} must not parse"
        );
    }
    assert!(body_root(Fork::Capella, PresetKind::Minimal, &Value::Null).is_err());
    assert!(block_header_from_slice(Fork::Capella, PresetKind::Minimal, b"{\"slot\": ").is_err());
    assert!(block_header_from_slice(Fork::Capella, PresetKind::Minimal, &[0xff, 0xfe]).is_err());
}

#[test]
fn more_attestations_than_max_attestations_is_an_error() {
    let block = mutated(|b| {
        let attestation = b["body"]["attestations"][0].clone();
        b["body"]["attestations"] = Value::Array(vec![attestation; 129]);
    });
    assert!(body_root(Fork::Capella, PresetKind::Minimal, &block).is_err());
    let block = mutated(|b| {
        let attestation = b["body"]["attestations"][0].clone();
        b["body"]["attestations"] = Value::Array(vec![attestation; 128]);
    });
    assert!(body_root(Fork::Capella, PresetKind::Minimal, &block).is_ok());
}

/// The same real blocks blinded (the payload replaced by its header, as a builder's block comes
/// back from v3): the body root must still be the one in the node's header.
#[test]
fn blinded_real_blocks_have_the_same_body_root() {
    use cohort_eth_types::{ExecutionPayloadCapella, Minimal};
    use tree_hash::TreeHash;
    for entry in fixtures() {
        let mut block = entry["block"].clone();
        let payload: ExecutionPayloadCapella<Minimal> =
            serde_json::from_value(block["body"]["execution_payload"].clone()).expect("payload");
        let mut header = block["body"]["execution_payload"].take();
        let fields = header.as_object_mut().expect("object");
        fields.remove("transactions");
        fields.remove("withdrawals");
        fields.insert(
            "transactions_root".into(),
            Value::from(root_hex(&payload.transactions.tree_hash_root().0)),
        );
        fields.insert(
            "withdrawals_root".into(),
            Value::from(root_hex(&payload.withdrawals.tree_hash_root().0)),
        );
        let body = block["body"].as_object_mut().expect("object");
        body.remove("execution_payload");
        body.insert("execution_payload_header".into(), header);
        let root = body_root(Fork::Capella, PresetKind::Minimal, &block).expect("blinded parses");
        assert_eq!(
            root_hex(&root),
            entry["header"]["body_root"].as_str().expect("body_root")
        );
    }
}
