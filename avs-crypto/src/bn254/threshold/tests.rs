use super::*;
use alloy_primitives::{b256, keccak256};
use rand::{SeedableRng as _, rngs::StdRng};

fn key() -> Bn254Key {
    // 31 bytes: below the group order.
    Bn254Key::from_be_bytes(&keccak256(b"cohort cluster operator key").0[1..]).expect("valid key")
}

fn digest() -> B256 {
    bn254_certificate_digest(
        1_760_000_000,
        &b256!("4f1c7e0b0a8f5c7c1f6e3d9d2a6b1e0f3c2a1b0d9e8f7a6b5c4d3e2f1a0b9c8d"),
    )
}

/// Every subset of `size` elements of `0..n`, in lexicographic order.
fn subsets(n: u32, size: u32) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    for mask in 0u32..(1 << n) {
        if mask.count_ones() == size {
            out.push((0..n).filter(|i| mask & (1 << i) != 0).collect());
        }
    }
    out
}

#[test]
fn threshold_is_n_minus_f() {
    assert_eq!(
        [1, 4, 7, 10, 13].map(threshold_of),
        [1, 3, 5, 7, 9],
        "t = n - floor((n-1)/3)"
    );
}

#[test]
fn any_t_partials_give_exactly_the_whole_keys_signature() {
    let key = key();
    for n in [4u32, 7] {
        let split = split(&mut StdRng::seed_from_u64(n.into()), &key, n).expect("split");
        let t = split.sharing.threshold();
        assert_eq!(t, threshold_of(n));
        assert_eq!(split.sharing.group_public_key(), key.public_key());
        assert_eq!(split.sharing.group_g1_public_key(), &key.g1_public_key());

        // The result signature (try-and-increment) and the auth signature (gnark's hash).
        let digest = digest();
        let auth = keccak256(b"auth bytes");
        let cases = [
            (HashedMessage::solidity(&digest), key.sign_solidity(&digest)),
            (
                HashedMessage::gnark(auth.as_slice()),
                key.sign_gnark(auth.as_slice()),
            ),
        ];
        for (message, whole) in cases {
            let partials: Vec<Bn254Partial> = split
                .shares
                .iter()
                .map(|share| share.sign(&message))
                .collect();
            for partial in &partials {
                split
                    .sharing
                    .verify_partial(&message, partial)
                    .expect("an honest partial verifies against its share key");
            }
            for subset in subsets(n, t) {
                let chosen: Vec<Bn254Partial> =
                    subset.iter().map(|i| partials[*i as usize]).collect();
                assert_eq!(
                    split.sharing.combine(&chosen).expect("t partials combine"),
                    whole,
                    "n={n}, operators {subset:?}"
                );
            }
            // More than t, in any order: the same signature, and nobody blamed.
            let mut all = partials.clone();
            all.reverse();
            let combined = split
                .sharing
                .combine_verified(&message, &all)
                .expect("combines");
            assert_eq!(combined.signature, whole);
            assert!(combined.bad.is_empty());
            split
                .sharing
                .verify(&message, &whole)
                .expect("whole key's signature verifies against the group key");
        }
    }
}

#[test]
fn t_minus_one_partials_do_not_verify() {
    let key = key();
    let split = split(&mut StdRng::seed_from_u64(1), &key, 7).expect("split");
    let message = HashedMessage::solidity(&digest());
    let partials: Vec<Bn254Partial> = split
        .shares
        .iter()
        .take(4)
        .map(|share| share.sign(&message))
        .collect();
    let err = split.sharing.combine(&partials).expect_err("4 of 5");
    assert_eq!(
        err,
        ThresholdError::NotEnoughPartials {
            valid: 4,
            need: 5,
            bad: Vec::new()
        }
    );
    let err = split
        .sharing
        .combine_verified(&message, &partials)
        .expect_err("4 of 5");
    assert!(
        matches!(err, ThresholdError::NotEnoughPartials { .. }),
        "{err}"
    );
    // Interpolating the 4 anyway gives a point that is not the signature and does not verify.
    let points: Vec<(u32, G1Affine)> = partials
        .iter()
        .map(|p| (p.operator, g1_from_bytes(&p.signature, "p").expect("point")))
        .collect();
    let guess = interpolate_g1(&points).expect("not infinity");
    assert_ne!(guess, key.sign_solidity(&digest()));
    assert_eq!(
        split.sharing.verify(&message, &guess),
        Err(ThresholdError::CombinedVerification)
    );
}

#[test]
fn bad_partials_are_found_dropped_and_reported() {
    let key = key();
    let split = split(&mut StdRng::seed_from_u64(2), &key, 7).expect("split");
    let message = HashedMessage::solidity(&digest());
    let whole = key.sign_solidity(&digest());
    let mut partials: Vec<Bn254Partial> = split
        .shares
        .iter()
        .map(|share| share.sign(&message))
        .collect();
    // Operator 1 signs another message (a valid point), operator 4 sends bytes that are no
    // point at all: both among the first t, so the fast path fails and the fallback runs.
    partials[1] = split.shares[1].sign(&HashedMessage::solidity(&keccak256(b"other")));
    partials[4].signature = [0xff; 64];
    let combined = split
        .sharing
        .combine_verified(&message, &partials)
        .expect("5 honest of 7 suffice");
    assert_eq!(combined.signature, whole);
    assert_eq!(combined.bad, vec![1, 4]);
    assert!(
        split
            .sharing
            .verify_partial(&message, &partials[1])
            .is_err()
    );
    assert!(matches!(
        split.sharing.verify_partial(&message, &partials[4]),
        Err(ThresholdError::Encoding { operator: 4, .. })
    ));
    // Plain combine (no verification) refuses the undecodable one and names its operator.
    assert!(matches!(
        split.sharing.combine(&partials),
        Err(ThresholdError::Encoding { operator: 4, .. })
    ));

    // A third bad one leaves 4 valid of the 5 needed: refused, and all three are named.
    partials[6] = split.shares[5].sign(&message);
    partials[6].operator = 6;
    let err = split
        .sharing
        .combine_verified(&message, &partials)
        .expect_err("4 valid of 5");
    assert_eq!(
        err,
        ThresholdError::NotEnoughPartials {
            valid: 4,
            need: 5,
            bad: vec![1, 4, 6]
        }
    );
    assert!(err.to_string().contains("[1, 4, 6]"), "{err}");
}

#[test]
fn repeated_or_unknown_operators_are_refused() {
    let key = key();
    let split = split(&mut StdRng::seed_from_u64(3), &key, 4).expect("split");
    let message = HashedMessage::solidity(&digest());
    let mut partials: Vec<Bn254Partial> = split
        .shares
        .iter()
        .map(|share| share.sign(&message))
        .collect();
    partials.push(partials[2]);
    assert_eq!(
        split.sharing.combine_verified(&message, &partials),
        Err(ThresholdError::DuplicateOperator(2))
    );
    assert_eq!(
        split.sharing.combine(&partials),
        Err(ThresholdError::DuplicateOperator(2))
    );
    partials.pop();
    partials[0].operator = 9;
    assert_eq!(
        split.sharing.combine(&partials),
        Err(ThresholdError::UnknownOperator {
            operator: 9,
            operators: 4
        })
    );
    assert!(matches!(
        split.sharing.verify_partial(&message, &partials[0]),
        Err(ThresholdError::UnknownOperator { operator: 9, .. })
    ));
}

#[test]
fn a_sharing_with_a_tampered_key_is_refused() {
    let key = key();
    let split = split(&mut StdRng::seed_from_u64(4), &key, 7).expect("split");
    let sharing = &split.sharing;
    let rebuild = |group: Bn254PublicKey, g1: Bn254G1PublicKey, shares: Vec<Bn254PublicKey>| {
        Bn254Sharing::new(sharing.threshold(), group, g1, shares)
    };
    assert_eq!(
        rebuild(
            *sharing.group_public_key(),
            *sharing.group_g1_public_key(),
            sharing.share_public_keys().to_vec()
        )
        .as_ref(),
        Ok(sharing)
    );
    let other = Bn254Key::from_be_bytes(&[7]).expect("key");
    // A share key among the first t, and one after them.
    for position in [0, 6] {
        let mut shares = sharing.share_public_keys().to_vec();
        shares[position] = *other.public_key();
        let err = rebuild(
            *sharing.group_public_key(),
            *sharing.group_g1_public_key(),
            shares,
        )
        .expect_err("tampered share key");
        assert!(matches!(err, ThresholdError::Sharing(_)), "{err}");
    }
    // Another group key with its own G1: the shares no longer interpolate to it.
    let err = rebuild(
        *other.public_key(),
        other.g1_public_key(),
        sharing.share_public_keys().to_vec(),
    )
    .expect_err("another group key");
    assert!(err.to_string().contains("interpolate"), "{err}");
    // A G1 key of another scalar.
    let err = rebuild(
        *sharing.group_public_key(),
        other.g1_public_key(),
        sharing.share_public_keys().to_vec(),
    )
    .expect_err("G1 of another key");
    assert!(err.to_string().contains("G1"), "{err}");
    // Thresholds outside 1..=n.
    for threshold in [0, 8] {
        assert_eq!(
            Bn254Sharing::new(
                threshold,
                *sharing.group_public_key(),
                *sharing.group_g1_public_key(),
                sharing.share_public_keys().to_vec()
            ),
            Err(ThresholdError::Threshold {
                threshold,
                operators: 7
            })
        );
    }
    assert!(matches!(
        split_with_threshold(&mut StdRng::seed_from_u64(0), &key, 4, 5),
        Err(ThresholdError::Threshold { .. })
    ));
}

#[test]
fn a_split_is_a_function_of_its_randomness_and_shares_round_trip() {
    let key = key();
    let a = split(&mut StdRng::seed_from_u64(5), &key, 4).expect("split");
    let b = split(&mut StdRng::seed_from_u64(5), &key, 4).expect("split");
    let c = split(&mut StdRng::seed_from_u64(6), &key, 4).expect("split");
    assert_eq!(a.sharing, b.sharing);
    assert_ne!(a.sharing, c.sharing, "fresh randomness, fresh shares");
    assert_eq!(a.sharing.group_public_key(), c.sharing.group_public_key());
    for share in &a.shares {
        let bytes = share.to_be_bytes();
        let back = Bn254SecretShare::from_be_bytes(share.operator(), &*bytes).expect("valid");
        assert_eq!(back.public_key(), share.public_key());
        assert_eq!(
            a.sharing.share_public_key(share.operator()),
            Some(&share.public_key())
        );
        // A share never looks like the whole key.
        assert_ne!(share.public_key(), *key.public_key());
        assert!(!format!("{share:?}").contains(&alloy_primitives::hex::encode(*bytes)));
    }
    let fresh = Bn254Key::generate(&mut StdRng::seed_from_u64(7));
    let again = Bn254Key::from_be_bytes(&*fresh.to_be_bytes()).expect("round trip");
    assert_eq!(fresh.public_key(), again.public_key());
    assert_eq!(
        Bn254G1PublicKey::from_bytes(&fresh.g1_public_key().to_bytes()),
        Ok(fresh.g1_public_key())
    );
}

#[test]
fn partials_round_trip_through_bytes() {
    let split = split(&mut StdRng::seed_from_u64(8), &key(), 4).expect("split");
    let partial = split.shares[3].sign(&HashedMessage::certificate(9, &keccak256(b"m")));
    assert_eq!(Bn254Partial::from_bytes(&partial.to_bytes()), Ok(partial));
    assert_eq!(&partial.to_bytes()[..4], &[0, 0, 0, 3]);
    assert!(matches!(
        Bn254Partial::from_bytes(&[0u8; 67]),
        Err(Error::Length { expected: 68, .. })
    ));
}

#[test]
fn a_batch_combines_exactly_what_one_by_one_does_and_names_a_liar_in_it() {
    let key = key();
    let split = split(&mut StdRng::seed_from_u64(4), &key, 4).expect("split");
    let digests: Vec<B256> = (0u8..9).map(|i| keccak256([i])).collect();
    let mut items = Vec::new();
    for (i, digest) in digests.iter().enumerate() {
        let message = HashedMessage::solidity(digest);
        let mut partials: Vec<Bn254Partial> = split
            .shares
            .iter()
            .map(|share| share.sign(&message))
            .collect();
        if i % 3 == 1 {
            // Operator 1 lies on every third message: it signs something else.
            partials[1] = split.shares[1].sign(&HashedMessage::solidity(&keccak256(b"lie")));
        }
        if i == 4 {
            // Too few for this one: only operators 0 and 2.
            partials = vec![partials[0], partials[2]];
        }
        items.push((message, partials));
    }
    let batch = split.sharing.combine_verified_batch(&items);
    assert_eq!(batch.len(), items.len());
    for (i, ((message, partials), answer)) in items.iter().zip(&batch).enumerate() {
        let alone = split.sharing.combine_verified(message, partials);
        assert_eq!(
            answer, &alone,
            "item {i}: the batch answers as one by one does"
        );
        match i {
            4 => assert!(matches!(
                answer,
                Err(ThresholdError::NotEnoughPartials { .. })
            )),
            1 | 7 => {
                let combined = answer.as_ref().expect("three honest partials remain");
                assert_eq!(combined.bad, vec![1], "item {i}: the liar is named");
                assert_eq!(combined.signature, key.sign_solidity(&digests[i]));
            }
            _ => {
                let combined = answer.as_ref().expect("combines");
                assert_eq!(combined.signature, key.sign_solidity(&digests[i]));
            }
        }
    }
}

#[test]
fn batch_verification_names_each_bad_signature() {
    let key = key();
    let digests: Vec<B256> = (0u8..16).map(|i| keccak256([i, 1])).collect();
    let mut signatures: Vec<Vec<u8>> = digests
        .iter()
        .map(|digest| key.sign_solidity(digest).to_vec())
        .collect();
    // A valid signature on another message, a swapped pair, and bytes that are no point.
    signatures[3] = key.sign_solidity(&keccak256(b"other")).to_vec();
    signatures.swap(8, 9);
    signatures[12] = vec![0u8; 64];
    let messages: Vec<HashedMessage> = digests.iter().map(HashedMessage::solidity).collect();
    let items: Vec<(HashedMessage, &[u8])> = messages
        .iter()
        .copied()
        .zip(signatures.iter().map(Vec::as_slice))
        .collect();
    let valid = verify_batch(key.public_key(), &items);
    let bad: Vec<usize> = (0..16).filter(|i| !valid[*i]).collect();
    assert_eq!(bad, vec![3, 8, 9, 12]);
    assert!(
        verify_batch(key.public_key(), &items[..3])
            .iter()
            .all(|v| *v)
    );
    assert!(verify_batch(key.public_key(), &[]).is_empty());
}
