//! Aggregator messages, results and auths signed by the independent Python implementation
//! (tests/python/hourglass_crypto.py: coincurve/libsecp256k1, py_ecc), verified here. The
//! fixture is written by `tests/python/test_crypto_vectors.py --write-python-vectors` and checked
//! against a fresh Python run by that same test, so it cannot silently drift.

mod common;

use common::vectors::{Doc, differences, verify_signatures};

const FIXTURE: &str = include_str!("vectors/python_vectors.json");

fn fixture() -> Doc {
    serde_json::from_str(FIXTURE).expect("python_vectors.json parses")
}

#[test]
fn python_signatures_verify_in_rust() {
    let doc = fixture();
    assert!(doc.source.contains("python"), "fixture is not Python's");
    assert!(doc.tasks.len() >= 5 && !doc.challenges.is_empty());
    let verified = verify_signatures(&doc);
    assert_eq!(verified, doc.tasks.len() * 6 + doc.challenges.len() * 2);
}

/// Every message, digest, key and signature Python derived equals what this crate derives from
/// the same inputs (signatures are deterministic on both sides: RFC 6979 and BLS).
#[test]
fn python_derivations_match_rust_byte_for_byte() {
    let diffs = differences(&fixture());
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// The check is not vacuous: a fixture with one signature or one digest changed is caught.
#[test]
fn a_changed_fixture_is_caught() {
    let mut doc = fixture();
    let sig = &mut doc.tasks[0].aggregator_signature_ecdsa;
    let last = sig.pop().unwrap();
    sig.push(if last == '0' { '1' } else { '0' });
    assert!(!differences(&doc).is_empty());
    let caught = std::panic::catch_unwind(|| verify_signatures(&doc));
    assert!(caught.is_err(), "a changed aggregator signature verified");

    let mut doc = fixture();
    doc.tasks[1].message_hash = format!("0x{}", "00".repeat(32));
    assert!(differences(&doc).iter().any(|d| d.contains("message_hash")));
}
