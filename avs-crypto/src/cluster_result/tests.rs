use super::*;
use crate::bn254::threshold::{SplitBn254Key, split};
use crate::{Bn254Key, OperatorKey, keccak256, verify_auth_bn254, verify_result_bn254};
use rand::{SeedableRng as _, rngs::StdRng};

const OUTPUT: &[u8] = b"the performer's output";

fn key() -> Bn254Key {
    Bn254Key::from_be_bytes(&keccak256(b"cohort cluster result key").0[1..]).expect("valid key")
}

fn fields(output: &[u8]) -> ResultFields<'_> {
    ResultFields {
        task_id: keccak256(b"task 7"),
        avs: Address::repeat_byte(0xa5),
        operator: Address::repeat_byte(0x0c),
        operator_set_id: 3,
        reference_timestamp: 1_760_000_000,
        output,
    }
}

fn cluster(operators: u32) -> SplitBn254Key {
    split(&mut StdRng::seed_from_u64(7), &key(), operators).expect("split")
}

/// Runs both rounds among `split`'s operators, `honest(i)` deciding who signs what it should;
/// the others sign a result with another output (a lying performer's). Every operator's view
/// gets every partial. Returns each operator's view.
fn run(split: &SplitBn254Key, liars: &[u32], down: &[u32]) -> Vec<ResultSigning> {
    let fields = fields(OUTPUT);
    let lie = self::fields(b"a lie");
    let mut views: Vec<ResultSigning> = split
        .shares
        .iter()
        .map(|_| ResultSigning::new(split.sharing.clone(), &fields))
        .collect();
    let liar_view = ResultSigning::new(split.sharing.clone(), &lie);
    let up: Vec<&Bn254SecretShare> = split
        .shares
        .iter()
        .filter(|s| !down.contains(&s.operator()))
        .collect();
    for share in &up {
        let partial = if liars.contains(&share.operator()) {
            liar_view.result_partial(share)
        } else {
            views[share.operator() as usize].result_partial(share)
        };
        for view in views.iter_mut() {
            view.add(Round::Result, partial).expect("a known operator");
        }
    }
    for view in views.iter_mut() {
        view.advance();
    }
    for share in &up {
        let own = &views[share.operator() as usize];
        let Some(partial) = own.auth_partial(share) else {
            continue;
        };
        // A liar signs the auth over its own lie's digest: not what the others combined.
        let partial = if liars.contains(&share.operator()) {
            let mut other = liar_view.clone();
            for s in &split.shares {
                other
                    .add(Round::Result, other.result_partial(s))
                    .expect("known");
            }
            other.advance();
            other
                .auth_partial(share)
                .expect("the lie's result is combined")
        } else {
            partial
        };
        for view in views.iter_mut() {
            view.add(Round::Auth, partial).expect("a known operator");
        }
    }
    for view in views.iter_mut() {
        view.advance();
    }
    views
}

#[test]
fn two_rounds_give_exactly_the_whole_keys_result_and_auth() {
    let split = cluster(4);
    let whole = OperatorKey::Bn254(key()).sign_result(&fields(OUTPUT));
    for view in run(&split, &[], &[]) {
        assert_eq!(view.signatures(), Some(whole.clone()));
        assert!(view.bad().is_empty());
    }
    // And they verify as an aggregator checks them, against the cluster's one key.
    let f = fields(OUTPUT);
    let hash = message_hash(&f.task_id, f.output);
    let public = split.sharing.group_public_key();
    verify_result_bn254(
        public,
        f.reference_timestamp,
        &hash,
        &whole.result_signature,
    )
    .expect("result verifies");
    let auth = AuthFields {
        task_id: f.task_id,
        avs: f.avs,
        operator: f.operator,
        operator_set_id: f.operator_set_id,
        result_signature: &whole.result_signature,
    };
    verify_auth_bn254(public, &auth, &whole.auth_signature).expect("auth verifies");
}

#[test]
fn a_lying_operator_is_named_and_the_rest_still_sign() {
    let split = cluster(4);
    let whole = OperatorKey::Bn254(key()).sign_result(&fields(OUTPUT));
    for (i, view) in run(&split, &[2], &[]).into_iter().enumerate() {
        assert_eq!(view.signatures(), Some(whole.clone()), "operator {i}");
        // The liar's partial is among the first t, so the fast path (t partials combined and
        // verified at once) fails and every partial is checked: the liar is found and named.
        assert!(
            view.bad().keys().all(|&op| op == 2),
            "only the liar is named: {:?}",
            view.bad()
        );
        assert_eq!(view.bad().get(&2), Some(&Round::Result), "operator {i}");
    }
}

#[test]
fn a_liar_and_a_crashed_operator_leave_too_few_to_sign() {
    let split = cluster(4);
    for view in run(&split, &[1], &[3]) {
        assert_eq!(
            view.signatures(),
            None,
            "2 honest partials of 3 needed sign nothing"
        );
        assert_eq!(view.result_signature(), None);
        assert_eq!(view.bad().get(&1), Some(&Round::Result));
        // The liar's partial is dropped: a third honest one can still complete the round.
        assert_eq!(view.received(Round::Result), [0, 2].into());
    }
}

#[test]
fn auth_partials_that_arrive_first_are_kept_and_used() {
    let split = cluster(4);
    let fields = fields(OUTPUT);
    let mut fast = ResultSigning::new(split.sharing.clone(), &fields);
    for share in &split.shares {
        fast.add(Round::Result, fast.result_partial(share))
            .expect("known");
    }
    fast.advance();
    let auth: Vec<Bn254Partial> = split
        .shares
        .iter()
        .map(|s| fast.auth_partial(s).expect("result combined"))
        .collect();

    let mut slow = ResultSigning::new(split.sharing.clone(), &fields);
    for partial in &auth {
        assert_eq!(slow.add(Round::Auth, *partial), Ok(Added::Kept));
    }
    assert_eq!(
        slow.advance(),
        None,
        "no auth before the result is combined"
    );
    for share in &split.shares[..3] {
        slow.add(Round::Result, slow.result_partial(share))
            .expect("known");
    }
    let whole = OperatorKey::Bn254(key()).sign_result(&fields);
    assert_eq!(slow.advance(), Some(whole));
    // Anything more is late.
    assert_eq!(
        slow.add(Round::Result, slow.result_partial(&split.shares[3])),
        Ok(Added::Late)
    );
}

#[test]
fn an_unknown_operator_or_a_second_partial_is_not_counted() {
    let split = cluster(4);
    let mut view = ResultSigning::new(split.sharing.clone(), &fields(OUTPUT));
    let partial = view.result_partial(&split.shares[0]);
    assert_eq!(view.add(Round::Result, partial), Ok(Added::Kept));
    assert_eq!(view.add(Round::Result, partial), Ok(Added::Duplicate));
    let stranger = Bn254Partial {
        operator: 4,
        ..partial
    };
    assert!(matches!(
        view.add(Round::Result, stranger),
        Err(ThresholdError::UnknownOperator { operator: 4, .. })
    ));
    assert_eq!(view.received(Round::Result), [0].into());
}
