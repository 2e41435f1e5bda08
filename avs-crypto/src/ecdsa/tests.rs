use super::*;
use alloy_primitives::{address, hex};

fn key(hex_secret: &str) -> EcdsaKey {
    EcdsaKey::from_bytes(&hex::decode(hex_secret).unwrap()).unwrap()
}

/// Well-known key/address pairs (secret 1; the web3.js documentation's example key).
#[test]
fn known_addresses() {
    let one = key("0000000000000000000000000000000000000000000000000000000000000001");
    assert_eq!(
        one.address(),
        address!("7E5F4552091A69125d5DfCb7b8C2659029395Bdf")
    );
    let web3 = key("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318");
    assert_eq!(
        web3.address(),
        address!("2c7536E3605D9C16a7a3D7b1898e529396a65c23")
    );
}

/// The same bytes libsecp256k1 produces (computed with coincurve in Python): RFC 6979 nonces,
/// low s, v = 27 + recovery id. Equality matters: Hourglass re-signs a challenge and compares.
#[test]
fn deterministic_signature_matches_libsecp256k1() {
    let web3 = key("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318");
    let sig = web3.sign_digest(&keccak256(b"cohort"));
    assert_eq!(
        hex::encode(sig),
        "9c4664bf81132794f4ad7fbe6298e028044a58dc7c5425f3abbefb4cbe4b043e4bddad74bbca66339f684e3acd0d089e57cfeff4ca0d69f5414464f6632d7fe41c"
    );
    assert_eq!(
        recover_address(&keccak256(b"cohort"), &sig),
        Ok(web3.address())
    );
}

#[test]
fn accepts_v_0_1_27_28_refuses_others() {
    let k = key("0000000000000000000000000000000000000000000000000000000000000002");
    for i in 0..8u8 {
        let digest = keccak256([i]);
        let sig = k.sign_digest(&digest);
        assert!(sig[64] == 27 || sig[64] == 28);
        let mut raw = sig;
        raw[64] -= 27;
        assert_eq!(recover_address(&digest, &raw), Ok(k.address()));
        let mut flipped = sig;
        flipped[64] ^= 1; // 27 <-> 28: recovers some other key (or none)
        assert_ne!(recover_address(&digest, &flipped), Ok(k.address()));
        for bad in [2u8, 26, 29, 35, 255] {
            let mut v = sig;
            v[64] = bad;
            assert_eq!(recover_address(&digest, &v), Err(Error::RecoveryId(bad)));
        }
    }
}

#[test]
fn refuses_high_s_and_bad_scalars() {
    let k = key("0000000000000000000000000000000000000000000000000000000000000003");
    let digest = keccak256(b"malleable");
    let sig = k.sign_digest(&digest);
    // s' = n - s with the other recovery id is the same signature's malleable twin.
    let parsed = Signature::from_slice(&sig[..64]).unwrap();
    let (r, s) = parsed.split_scalars();
    let twin = Signature::from_scalars(r, -*s).unwrap();
    let mut high = [0u8; 65];
    high[..64].copy_from_slice(&twin.to_bytes());
    high[64] = if sig[64] == 27 { 28 } else { 27 };
    assert_eq!(recover_address(&digest, &high), Err(Error::HighS));
    let mut zero = [0u8; 65];
    zero[64] = 27;
    assert_eq!(recover_address(&digest, &zero), Err(Error::EcdsaScalars));
    let mut n = [0xffu8; 65];
    n[64] = 27;
    assert_eq!(recover_address(&digest, &n), Err(Error::EcdsaScalars));
    assert!(matches!(
        recover_address(&digest, &sig[..64]),
        Err(Error::Length {
            expected: 65,
            got: 64,
            ..
        })
    ));
}

#[test]
fn wrong_signer_names_both() {
    let a = key("0000000000000000000000000000000000000000000000000000000000000004");
    let b = key("0000000000000000000000000000000000000000000000000000000000000005");
    let digest = keccak256(b"x");
    let sig = a.sign_digest(&digest);
    assert_eq!(verify_digest(&digest, &sig, &a.address()), Ok(()));
    assert_eq!(
        verify_digest(&digest, &sig, &b.address()),
        Err(Error::WrongSigner {
            expected: b.address(),
            recovered: a.address()
        })
    );
}

#[test]
fn secret_key_bounds() {
    assert!(matches!(
        EcdsaKey::from_bytes(&[1; 31]),
        Err(Error::Length { got: 31, .. })
    ));
    assert_eq!(
        EcdsaKey::from_bytes(&[0; 32]).unwrap_err(),
        Error::SecretKey
    );
    assert_eq!(
        EcdsaKey::from_bytes(&[0xff; 32]).unwrap_err(),
        Error::SecretKey
    );
    let k = key("0000000000000000000000000000000000000000000000000000000000000001");
    assert!(!format!("{k:?}").contains("0000000001"));
}
