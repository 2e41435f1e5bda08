use super::*;
use crate::encoding::{aggregator_digest, auth_bytes, auth_digest};
use alloy_primitives::{address, b256, keccak256};

fn ecdsa_key(seed: &[u8]) -> EcdsaKey {
    EcdsaKey::from_bytes(keccak256(seed).as_slice()).unwrap()
}

fn bn254_key(seed: &[u8]) -> Bn254Key {
    Bn254Key::from_be_bytes(&keccak256(seed)[1..]).unwrap()
}

fn task<'a>(executor: Address, payload: &'a [u8]) -> TaskFields<'a> {
    TaskFields {
        task_id: b256!("00000000000000000000000000000000000000000000000000000000000000aa"),
        avs: address!("1111111111111111111111111111111111111111"),
        executor,
        operator_set_id: 1,
        reference_timestamp: 1_700_000_000,
        task_block_number: 123,
        payload,
    }
}

#[test]
fn aggregator_signatures_bind_every_field() {
    let agg = ecdsa_key(b"agg");
    let agg_bn = bn254_key(b"agg-bn");
    let me = address!("2222222222222222222222222222222222222222");
    let t = task(me, b"square 7");
    let sig = sign_aggregator_ecdsa(&agg, &t);
    let sig_bn = sign_aggregator_bn254(&agg_bn, &t);
    verify_aggregator_ecdsa(&t, &sig, &agg.address()).unwrap();
    verify_aggregator_bn254(&t, &sig_bn, agg_bn.public_key()).unwrap();

    let variants = [
        TaskFields {
            executor: address!("3333333333333333333333333333333333333333"),
            ..t
        },
        TaskFields {
            avs: address!("4444444444444444444444444444444444444444"),
            ..t
        },
        TaskFields {
            operator_set_id: 2,
            ..t
        },
        TaskFields {
            reference_timestamp: 1,
            ..t
        },
        TaskFields {
            task_block_number: 124,
            ..t
        },
        TaskFields {
            payload: b"square 8",
            ..t
        },
        TaskFields {
            task_id: B256::repeat_byte(1),
            ..t
        },
    ];
    for v in &variants {
        assert_ne!(aggregator_digest(v), aggregator_digest(&t));
        assert!(matches!(
            verify_aggregator_ecdsa(v, &sig, &agg.address()),
            Err(Error::WrongSigner { .. })
        ));
        assert_eq!(
            verify_aggregator_bn254(v, &sig_bn, agg_bn.public_key()),
            Err(Error::Bn254Verification)
        );
    }
    // A BN254 aggregator signature made with try-and-increment (the result-signature hash)
    // is not what Hourglass's aggregator sends, and does not verify.
    let wrong_hash = agg_bn.sign_solidity(&aggregator_digest(&t));
    assert_eq!(
        verify_aggregator_bn254(&t, &wrong_hash, agg_bn.public_key()),
        Err(Error::Bn254Verification)
    );
}

#[test]
fn result_and_auth_round_trip() {
    let op = ecdsa_key(b"op");
    let op_bn = bn254_key(b"op-bn");
    let domain =
        Eip712Domain::eigenlayer("1", address!("5555555555555555555555555555555555555555"));
    let task_id = B256::repeat_byte(0xaa);
    let mh = crate::message_hash(&task_id, b"49");

    let r_bn = sign_result_bn254(&op_bn, 77, &mh);
    verify_result_bn254(op_bn.public_key(), 77, &mh, &r_bn).unwrap();
    assert!(verify_result_bn254(op_bn.public_key(), 78, &mh, &r_bn).is_err());

    let r_ec = sign_result_ecdsa(&op, &domain, 77, &mh);
    verify_result_ecdsa(&op.address(), &domain, 77, &mh, &r_ec).unwrap();
    let other_domain = Eip712Domain::eigenlayer("2", domain.verifying_contract);
    assert!(verify_result_ecdsa(&op.address(), &other_domain, 77, &mh, &r_ec).is_err());

    for (sig, is_bn) in [(&r_bn[..], true), (&r_ec[..], false)] {
        let auth = AuthFields {
            task_id,
            avs: address!("1111111111111111111111111111111111111111"),
            operator: op.address(),
            operator_set_id: 1,
            result_signature: sig,
        };
        if is_bn {
            let a = sign_auth_bn254(&op_bn, &auth);
            verify_auth_bn254(op_bn.public_key(), &auth, &a).unwrap();
            let moved = AuthFields {
                operator_set_id: 2,
                ..auth
            };
            assert!(verify_auth_bn254(op_bn.public_key(), &moved, &a).is_err());
            // The auth hash is gnark's, over keccak256(auth bytes), not over the raw bytes.
            assert!(
                op_bn
                    .public_key()
                    .verify_gnark(&auth_bytes(&auth), &a)
                    .is_err()
            );
        } else {
            let a = sign_auth_ecdsa(&op, &auth);
            verify_auth_ecdsa(&auth, &a).unwrap();
            let someone_else = AuthFields {
                operator: address!("6666666666666666666666666666666666666666"),
                ..auth
            };
            assert!(verify_auth_ecdsa(&someone_else, &a).is_err());
        }
    }
}

#[test]
fn challenge_round_trip() {
    let op = ecdsa_key(b"op");
    let token = "a3f1c2d4e5b60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
    let sig = sign_challenge_ecdsa(&op, token);
    // Deterministic: Hourglass compares the bytes of a re-signature.
    assert_eq!(sig, sign_challenge_ecdsa(&op, token));
    verify_challenge_ecdsa(token, &sig, &op.address()).unwrap();
    assert!(verify_challenge_ecdsa("another", &sig, &op.address()).is_err());
    // Signing keccak256(token) once (a client that forgot the signer's own hash) is refused.
    let once = op.sign_digest(&keccak256(token.as_bytes()));
    assert!(verify_challenge_ecdsa(token, &once, &op.address()).is_err());

    let op_bn = bn254_key(b"op-bn");
    let sig = sign_challenge_bn254(&op_bn, token);
    verify_challenge_bn254(token, &sig, op_bn.public_key()).unwrap();
    assert!(verify_challenge_bn254("another", &sig, op_bn.public_key()).is_err());
}

#[test]
fn operator_key_signs_like_the_pieces() {
    let op = ecdsa_key(b"op");
    let op_bn = bn254_key(b"op-bn");
    let domain =
        Eip712Domain::eigenlayer("1", address!("5555555555555555555555555555555555555555"));
    let fields = ResultFields {
        task_id: B256::repeat_byte(0xab),
        avs: address!("1111111111111111111111111111111111111111"),
        operator: op.address(),
        operator_set_id: 3,
        reference_timestamp: 44,
        output: b"output",
    };
    let mh = crate::message_hash(&fields.task_id, fields.output);
    let auth = |sig: &[u8]| {
        auth_digest(&AuthFields {
            task_id: fields.task_id,
            avs: fields.avs,
            operator: fields.operator,
            operator_set_id: fields.operator_set_id,
            result_signature: sig,
        })
    };

    let ec = OperatorKey::Ecdsa {
        key: op.clone(),
        domain: domain.clone(),
    }
    .sign_result(&fields);
    assert_eq!(
        ec.result_signature,
        sign_result_ecdsa(&op, &domain, 44, &mh).to_vec()
    );
    assert_eq!(
        ec.auth_signature,
        op.sign_digest(&auth(&ec.result_signature)).to_vec()
    );
    verify_result_ecdsa(&op.address(), &domain, 44, &mh, &ec.result_signature).unwrap();

    let bn = OperatorKey::Bn254(op_bn.clone()).sign_result(&fields);
    assert_eq!(
        bn.result_signature,
        sign_result_bn254(&op_bn, 44, &mh).to_vec()
    );
    assert_eq!(
        bn.auth_signature,
        op_bn
            .sign_gnark(auth(&bn.result_signature).as_slice())
            .to_vec()
    );
    verify_result_bn254(op_bn.public_key(), 44, &mh, &bn.result_signature).unwrap();
}
