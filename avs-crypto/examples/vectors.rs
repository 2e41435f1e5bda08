//! Prints a vector document signed by this crate, as JSON on stdout, for the independent
//! Python implementation to check (tests/python/test_crypto_vectors.py runs this).
//!
//! `cargo run -q -p cohort-avs-crypto --example vectors`
//!
//! The inputs are chosen to reach the edges: outputs of 0, 1, 31, 32, 33 and 100 bytes (the ABI
//! padding of `bytes`), an empty payload, every integer field at its width's top, a task id
//! with high bits set.

#[path = "../tests/common/vectors.rs"]
mod vectors;

use alloy_primitives::{Address, B256, keccak256};
use vectors::{Inputs, TaskInput, build};

fn main() {
    let key = |seed: &str| keccak256(seed.as_bytes()).to_vec();
    let bn254 = |seed: &str| keccak256(seed.as_bytes())[1..].to_vec(); // below r
    let outputs: [&[u8]; 6] = [
        b"",
        b"\x31",
        &[0x5a; 31],
        &[0xa5; 32],
        &[0x7f; 33],
        &[0xee; 100],
    ];
    let tasks = outputs
        .iter()
        .enumerate()
        .map(|(i, output)| TaskInput {
            task_id: keccak256(format!("rust task {i}")),
            avs: Address::from_slice(&keccak256(format!("rust avs {}", i % 2))[12..]),
            operator_set_id: [0, 1, 7, u32::MAX, 42, 3][i],
            reference_timestamp: [1, 1_760_000_000, u32::MAX, 2, 1_700_000_000, 5][i],
            task_block_number: [0, 23_456_789, u64::MAX, 1, 99, 1 << 40][i],
            payload: if i == 0 {
                Vec::new()
            } else {
                format!("{{\"n\":{i}}}").into_bytes()
            },
            output: output.to_vec(),
        })
        .chain(std::iter::once(TaskInput {
            task_id: B256::repeat_byte(0xff),
            avs: Address::repeat_byte(0xfe),
            operator_set_id: 5,
            reference_timestamp: 9,
            task_block_number: 10,
            payload: vec![0; 1000],
            output: vec![1; 64],
        }))
        .collect();
    let inputs = Inputs {
        source: "cohort-avs-crypto: cargo run -p cohort-avs-crypto --example vectors".into(),
        operator_ecdsa_secret: key("rust operator ecdsa"),
        operator_bn254_secret: bn254("rust operator bn254"),
        aggregator_ecdsa_secret: key("rust aggregator ecdsa"),
        aggregator_bn254_secret: bn254("rust aggregator bn254"),
        domain_name: "EigenLayer".into(),
        domain_version: "1".into(),
        verifying_contract: Address::from_slice(&keccak256("rust verifier")[12..]),
        tasks,
        tokens: vec![
            hex_token(&keccak256("rust token 1")),
            hex_token(&keccak256("rust token 2")),
        ],
    };
    let doc = build(&inputs);
    println!("{}", serde_json::to_string_pretty(&doc).expect("serialize"));
}

/// A challenge token as Hourglass makes one: 64 hex characters, no `0x`.
fn hex_token(bytes: &B256) -> String {
    alloy_primitives::hex::encode(bytes)
}
