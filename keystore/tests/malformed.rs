//! Issue 19, item 11: what a user hands this crate (EIP-2335 keystore files, public keys on the
//! command line and in configs), fed random and mutated bytes: a fixed number of seeded cases
//! per run, each ending in an error or a value, never in a panic or an allocation the input
//! does not justify. A keystore that parses is then decrypted with a wrong password, which must
//! fail cleanly whatever its mutated parameters say (costs are capped before any work).

#[path = "../../ingress/tests/support/malformed.rs"]
mod support;

use cohort_keystore::{
    eip2335::{Kdf, Keystore, decrypt, encrypt_with},
    identity::parse_public_key,
};

counting_allocator!();

const CASES: usize = 2_000;

fn budget(len: usize) -> usize {
    16 * len + 16 * 1024
}

#[test]
fn keystores_refuse_malformed_files() {
    let keystore = encrypt_with(
        &[7u8; 32],
        "correct horse",
        "a99a76ed7796f7be22d5b7e85deeb7c5677e88e511e0b337618f8c4eb61349b4bf2d153f649f7b53359fe8b94a38e44c",
        "m/12381/3600/0/0/0",
        Kdf::Pbkdf2 { c: 2 },
        &[1u8; 32],
        &[2u8; 16],
        "1d85ae20-35c5-4611-98e8-aa14a633906f",
    )
    .expect("a keystore");
    let pretty = keystore.to_json_pretty();
    let compact = serde_json::from_str::<serde_json::Value>(&pretty)
        .expect("its own JSON parses")
        .to_string();
    let valid = vec![pretty.clone().into_bytes(), compact.into_bytes()];
    assert!(Keystore::from_json(&pretty).is_ok());
    let mut decrypted = 0;
    let outcome = support::fuzz("Keystore", 21, CASES, &valid, budget, |bytes| {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return false;
        };
        match Keystore::from_json(text) {
            Ok(parsed) => {
                // A wrong password never decrypts, and a mutated cost is refused or cheap.
                if let Ok(secret) = decrypt(&parsed, "wrong password") {
                    decrypted += secret.len();
                }
                true
            }
            Err(_) => false,
        }
    });
    assert_eq!(decrypted, 0, "a wrong password decrypted something");
    assert!(outcome.accepted < outcome.cases, "{outcome:?}");
}

#[test]
fn public_keys_refuse_malformed_text() {
    let valid = vec![
        b"0x2bee1b9da46e9b0e4b0e1b0e7d1c4a1f0d1b3c4a5e6f708192a3b4c5d6e7f801".to_vec(),
        b"2bee1b9da46e9b0e4b0e1b0e7d1c4a1f0d1b3c4a5e6f708192a3b4c5d6e7f801".to_vec(),
    ];
    support::fuzz("public key", 22, CASES, &valid, budget, |bytes| {
        std::str::from_utf8(bytes).is_ok_and(|text| parse_public_key(text).is_ok())
    });
}
