use super::*;
use alloy_primitives::{address, b256, hex};

fn task(payload: &[u8]) -> TaskFields<'_> {
    TaskFields {
        task_id: b256!("0101010101010101010101010101010101010101010101010101010101010101"),
        avs: address!("a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0"),
        executor: address!("e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0"),
        operator_set_id: 0x0a0b0c0d,
        reference_timestamp: 0xfffffffe,
        task_block_number: 0x0102030405060708,
        payload,
    }
}

/// Every field in its own 32-byte word, left-padded, in Hourglass's order (operator set,
/// then reference timestamp, then block number), payload hashed last.
#[test]
fn aggregator_message_layout() {
    let m = aggregator_message(&task(b"payload"));
    assert_eq!(&m[0..32], &[1u8; 32]);
    assert_eq!(&m[32..44], &[0u8; 12]);
    assert_eq!(&m[44..64], &[0xa0u8; 20]);
    assert_eq!(&m[64..76], &[0u8; 12]);
    assert_eq!(&m[76..96], &[0xe0u8; 20]);
    assert_eq!(
        &m[96..128],
        &hex!("000000000000000000000000000000000000000000000000000000000a0b0c0d")
    );
    assert_eq!(
        &m[128..160],
        &hex!("00000000000000000000000000000000000000000000000000000000fffffffe")
    );
    assert_eq!(
        &m[160..192],
        &hex!("0000000000000000000000000000000000000000000000000102030405060708")
    );
    assert_eq!(&m[192..224], keccak256(b"payload").as_slice());
    assert_eq!(aggregator_digest(&task(b"payload")), keccak256(m));
}

/// Fixed values computed by the Python implementation, plus the EIP-712 domain typehash without
/// chain id, whose value (0x91ab3d17…) is widely published.
#[test]
fn typehashes() {
    assert_eq!(
        keccak256(BN254_CERTIFICATE_TYPE),
        b256!("d9f77a423768f4b0526fa60a7c732334516a93f1d228dce50ad804ea74ced36e")
    );
    assert_eq!(
        keccak256(ECDSA_CERTIFICATE_TYPE),
        b256!("da346acb3ce99e7c5132bf8cafb159ad8085970ebfdba78007ef0fe163063d14")
    );
    assert_eq!(
        keccak256(EIP712_DOMAIN_NO_CHAIN_ID_TYPE),
        b256!("91ab3d17e3a50a9d89e63fd30b92be7f5336b03b287bb946787a83a9d62a2766")
    );
    let domain =
        Eip712Domain::eigenlayer("1", address!("0000000000000000000000000000000000000001"));
    assert_eq!(
        domain.separator(),
        b256!("fb4a6edb05c6b308e23327eedc1d26932d5f0aafd1c54cf57d1f9dd85819ecbf")
    );
}

/// `abi.encode(bytes32, bytes)`: offset word 0x40, length word, data padded to 32. Fixed values
/// from the Python implementation; the lengths around a word boundary are where a padding bug
/// would show.
#[test]
fn message_hash_abi_encoding() {
    let id = B256::repeat_byte(0x11);
    assert_eq!(
        message_hash(&id, b""),
        b256!("2a7e932887846f8e38be9756341abbad7c7a20aaebf190fd1783e86f680d65bc")
    );
    let data: Vec<u8> = (0..33).collect();
    assert_eq!(
        message_hash(&id, &data),
        b256!("1678bf5b73fb32931bbe03bfac5eabb4357061e20dcd3c54350ed3d58ccb89cc")
    );
    for len in [0usize, 1, 31, 32, 33, 64, 65] {
        let out = vec![0xab; len];
        let mut expected = Vec::new();
        expected.extend_from_slice(id.as_slice());
        expected.extend_from_slice(&u64_word(0x40));
        expected.extend_from_slice(&u64_word(len as u64));
        expected.extend_from_slice(&out);
        while expected.len() % 32 != 0 {
            expected.push(0);
        }
        assert_eq!(expected.len(), 96 + len.div_ceil(32) * 32);
        assert_eq!(message_hash(&id, &out), keccak256(&expected), "len {len}");
    }
    // Trailing zeros are not the same output: the length word tells them apart.
    assert_ne!(message_hash(&id, &[1]), message_hash(&id, &[1, 0]));
}

#[test]
fn certificate_digests_differ_by_type_and_domain() {
    let mh = B256::repeat_byte(0x22);
    let a = Eip712Domain::eigenlayer("1", address!("0000000000000000000000000000000000000001"));
    let b = Eip712Domain::eigenlayer("2", a.verifying_contract);
    let c = Eip712Domain::eigenlayer("1", address!("0000000000000000000000000000000000000002"));
    assert_ne!(
        ecdsa_certificate_digest(&a, 5, &mh),
        ecdsa_certificate_digest(&b, 5, &mh)
    );
    assert_ne!(
        ecdsa_certificate_digest(&a, 5, &mh),
        ecdsa_certificate_digest(&c, 5, &mh)
    );
    assert_ne!(
        ecdsa_certificate_digest(&a, 5, &mh),
        ecdsa_certificate_digest(&a, 6, &mh)
    );
    assert_ne!(
        bn254_certificate_digest(5, &mh),
        bn254_certificate_digest(6, &mh)
    );
    let mut buf = [0u8; 96];
    buf[..32].copy_from_slice(keccak256(BN254_CERTIFICATE_TYPE).as_slice());
    buf[60..64].copy_from_slice(&5u32.to_be_bytes());
    buf[64..].copy_from_slice(mh.as_slice());
    assert_eq!(bn254_certificate_digest(5, &mh), keccak256(buf));
}

#[test]
fn auth_bytes_layout() {
    let sig = [7u8; 64];
    let auth = AuthFields {
        task_id: B256::repeat_byte(3),
        avs: address!("a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0"),
        operator: address!("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"),
        operator_set_id: 9,
        result_signature: &sig,
    };
    let bytes = auth_bytes(&auth);
    assert_eq!(&bytes[..32], &[3u8; 32]);
    assert_eq!(&bytes[44..64], &[0xa0u8; 20]);
    assert_eq!(&bytes[76..96], &[0x0bu8; 20]);
    assert_eq!(bytes[127], 9);
    assert_eq!(&bytes[128..], keccak256(sig).as_slice());
    assert_eq!(auth_digest(&auth), keccak256(bytes));
}

#[test]
fn challenge_digest_hashes_twice() {
    let token = "5f0c1f1e9d3c4b2a";
    assert_eq!(
        challenge_digest(token),
        keccak256(keccak256(token.as_bytes()))
    );
}
