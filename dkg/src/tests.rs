use super::*;
use cohort_ingress::keys;
use commonware_cryptography::ed25519::PrivateKey;
use commonware_utils::Faults as _;
use std::collections::BTreeSet;

const TIMEOUT: Duration = Duration::from_secs(10);

fn identities(from: u64, count: u64) -> Vec<PrivateKey> {
    (from..from + count).map(PrivateKey::from_seed).collect()
}

fn set(keys: &[PrivateKey]) -> Set<PublicKey> {
    operator_set(keys.iter().map(|k| k.public_key())).expect("distinct")
}

fn names(keys: &[PrivateKey]) -> BTreeMap<PublicKey, String> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| (k.public_key(), format!("op{i}")))
        .collect()
}

/// Every operator's setup for a fresh DKG of `count` keys among `operators`.
fn dkg_setups(operators: &[PrivateKey], count: u64) -> Vec<Setup> {
    let all = set(operators);
    operators
        .iter()
        .map(|me| Setup {
            namespace: b"cohort/dkg/test".to_vec(),
            me: me.clone(),
            dealers: all.clone(),
            players: all.clone(),
            keys: (0..count)
                .map(|id| KeySetup { id, previous: None })
                .collect(),
            signing_root: Box::new(root_of),
            names: names(operators),
            timeout: TIMEOUT,
            resend: Duration::from_secs(1),
            misbehave: None,
        })
        .collect()
}

/// A message that depends on the key, as the deposit message does.
fn root_of(sharing: &Sharing<MinPk>) -> [u8; 32] {
    let digest = Sha256::hash(&[b"test".as_slice(), sharing.public().encode().as_ref()]);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn all_ok(results: Vec<Option<Result<Outcome, CeremonyError>>>) -> Vec<Outcome> {
    results
        .into_iter()
        .map(|r| match r.expect("started") {
            Ok(outcome) => outcome,
            Err(err) => panic!("ceremony failed: {err}"),
        })
        .collect()
}

fn shares_of(outcomes: &[Outcome], key: usize) -> Vec<Share> {
    outcomes
        .iter()
        .map(|o| o.keys[key].share.clone().expect("a player holds a share"))
        .collect()
}

#[test]
fn four_operators_make_keys_whose_threshold_signatures_verify() {
    let operators = identities(0, 4);
    let outcomes = all_ok(local::run(
        1,
        dkg_setups(&operators, 3),
        BTreeSet::new(),
        Duration::from_millis(50),
    ));
    let first = &outcomes[0];
    for outcome in &outcomes {
        assert_eq!(outcome.digest, first.digest, "every operator agrees");
        assert_eq!(outcome.keys.len(), 3);
    }
    let publics: BTreeSet<Vec<u8>> = first
        .keys
        .iter()
        .map(|k| k.sharing.public().encode().to_vec())
        .collect();
    assert_eq!(publics.len(), 3, "three distinct keys");
    for (k, key) in first.keys.iter().enumerate() {
        assert_eq!(key.sharing.required(), 3, "t = n - f = 3");
        // The ceremony's own combined signature verifies against the group key.
        assert!(keys::verify(
            key.sharing.public(),
            &key.signing_root,
            &key.signature
        ));
        // Any three shares sign anything the group key verifies; two do not suffice.
        let shares = shares_of(&outcomes, k);
        let root = [k as u8 + 9; 32];
        for skip in 0..4 {
            let partials: Vec<_> = shares
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, s)| keys::sign_partial(s, &root))
                .collect();
            let (signature, bad) = keys::recover(&key.sharing, &root, &partials);
            assert!(bad.is_empty());
            assert!(keys::verify(
                key.sharing.public(),
                &root,
                &signature.expect("three shares recover")
            ));
            // Each share is its own operator's: at its position in the operator set, with the
            // public key the sharing gives that position.
            let position = set(&operators)
                .position(&operators[skip].public_key())
                .expect("an operator");
            assert_eq!(shares[skip].index, Participant::new(position as u32));
            assert_eq!(
                shares[skip].public::<MinPk>(),
                key.sharing
                    .partial_public(shares[skip].index)
                    .expect("in range")
            );
        }
        let two: Vec<_> = shares[..2]
            .iter()
            .map(|s| keys::sign_partial(s, &root))
            .collect();
        assert!(keys::recover(&key.sharing, &root, &two).0.is_err());
    }
}

/// Every operator but `byzantine` failed and blames it; their errors, by position.
fn all_blame(
    results: Vec<Option<Result<Outcome, CeremonyError>>>,
    byzantine: usize,
) -> Vec<(usize, CeremonyError)> {
    let name = format!("op{byzantine}");
    results
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != byzantine)
        .map(|(i, result)| {
            let err = result
                .expect("started")
                .expect_err("no keys from a bad dealing");
            let culprit = err.culprit().map(|c| c.name.clone());
            assert_eq!(culprit.as_deref(), Some(name.as_str()), "op{i}: {err}");
            (i, err)
        })
        .collect()
}

#[test]
fn a_byzantine_dealer_is_named_by_every_operator() {
    let operators = identities(0, 4);
    let mut setups = dkg_setups(&operators, 2);
    // op2 deals op1 a share that does not match its commitment.
    setups[2].misbehave = Some(Misbehavior::CorruptDealingTo(operators[1].public_key()));
    let results = local::run(2, setups, BTreeSet::new(), Duration::from_millis(50));
    for (i, err) in all_blame(results, 2) {
        assert!(err.to_string().contains("op2"), "{err}");
        if i == 1 {
            assert!(
                matches!(err, CeremonyError::BadDealing { .. }),
                "the victim saw the bad dealing itself: {err}"
            );
        }
    }
}

/// An operator that becomes reachable only after the first failure has been told (and its
/// few resends are over) still learns who is at fault, rather than timing out and blaming
/// whoever it heard nothing from. Seen in CI: a `cohort dkg` process that connected late
/// named the victim of a bad dealing, which had aborted and exited before it connected.
#[test]
fn an_operator_reachable_late_still_learns_who_is_at_fault() {
    let operators = identities(0, 4);
    let mut setups = dkg_setups(&operators, 1);
    setups[2].misbehave = Some(Misbehavior::CorruptDealingTo(operators[1].public_key()));
    let late: BTreeSet<PublicKey> = [operators[3].public_key()].into();
    let results = local::run_with_late(
        4,
        setups,
        BTreeSet::new(),
        late,
        Duration::from_secs(6),
        Duration::from_millis(50),
    );
    all_blame(results, 2);
}

#[test]
fn an_offline_operator_is_named_within_the_timeout() {
    let operators = identities(0, 4);
    let offline: BTreeSet<PublicKey> = [operators[3].public_key()].into();
    let results = local::run(
        3,
        dkg_setups(&operators, 1),
        offline,
        Duration::from_millis(50),
    );
    for result in results.into_iter().take(3) {
        let err = result.expect("started").expect_err("no keys without op3");
        match &err {
            CeremonyError::Timeout { missing, after, .. } => {
                let missing: Vec<&str> = missing.iter().map(|m| m.name.as_str()).collect();
                assert_eq!(missing, vec!["op3"], "{err}");
                assert_eq!(*after, TIMEOUT);
            }
            other => panic!("expected a timeout naming op3, got {other}"),
        }
    }
}

/// The setups of a reshare of `outcomes` (made by `old`) to `new`.
fn reshare_setups(
    old: &[PrivateKey],
    new: &[PrivateKey],
    sharings: &[Sharing<MinPk>],
    shares: &BTreeMap<PublicKey, Vec<Share>>,
) -> Vec<Setup> {
    let dealers = set(old);
    let players = set(new);
    let everyone: Vec<PrivateKey> = {
        let mut all: Vec<PrivateKey> = old.to_vec();
        for key in new {
            if !all.iter().any(|k| k.public_key() == key.public_key()) {
                all.push(key.clone());
            }
        }
        all
    };
    everyone
        .iter()
        .map(|me| Setup {
            namespace: b"cohort/dkg/test".to_vec(),
            me: me.clone(),
            dealers: dealers.clone(),
            players: players.clone(),
            keys: sharings
                .iter()
                .enumerate()
                .map(|(k, sharing)| KeySetup {
                    id: k as u64,
                    previous: Some((
                        previous_output([7; 32], sharing, &dealers).expect("output"),
                        shares.get(&me.public_key()).map(|s| s[k].clone()),
                    )),
                })
                .collect(),
            signing_root: Box::new(root_of),
            names: names(&everyone),
            timeout: TIMEOUT,
            resend: Duration::from_secs(1),
            misbehave: None,
        })
        .collect()
}

/// Reshares interop keys split 4 ways to `new`: keys unchanged, old shares useless.
fn reshare_keeps_keys_and_retires_old_shares(new: Vec<PrivateKey>) {
    let old = identities(0, 4);
    let old_set = set(&old);
    let mut rng = commonware_utils::TestRng::new(5);
    let splits: Vec<keys::SplitKey> = (0..2)
        .map(|v| keys::split_interop(&mut rng, v, 4).expect("split"))
        .collect();
    // Share i belongs to the operator at position i of the set.
    let mut shares: BTreeMap<PublicKey, Vec<Share>> = BTreeMap::new();
    for (position, key) in old_set.iter().enumerate() {
        shares.insert(
            key.clone(),
            splits.iter().map(|s| s.shares[position].clone()).collect(),
        );
    }
    let sharings: Vec<Sharing<MinPk>> = splits.iter().map(|s| s.sharing.clone()).collect();
    let setups = reshare_setups(&old, &new, &sharings, &shares);
    let me_order: Vec<PublicKey> = setups.iter().map(|s| s.me.public_key()).collect();
    let results = all_ok(local::run(
        4,
        setups,
        BTreeSet::new(),
        Duration::from_millis(50),
    ));
    let new_set = set(&new);
    let n = new.len();
    let t = N3f1::quorum(n as u32);
    for (k, split) in splits.iter().enumerate() {
        let sharing = &results[0].keys[k].sharing;
        assert_eq!(
            sharing.public(),
            split.sharing.public(),
            "the validator keeps its key"
        );
        assert_eq!(sharing.public(), &ops_public(k as u64));
        assert_eq!(sharing.required(), t);
        assert_eq!(sharing.total().get() as usize, n);
        // New shares: t of them sign for the unchanged key.
        let root = [42u8; 32];
        let new_partials: Vec<_> = new_set
            .iter()
            .map(|key| {
                let at = me_order.iter().position(|m| m == key).expect("ran");
                let share = results[at].keys[k].share.clone().expect("a new player");
                keys::sign_partial(&share, &root)
            })
            .collect();
        let (signature, _) = keys::recover(sharing, &root, &new_partials[..t as usize]);
        assert!(keys::verify(
            split.sharing.public(),
            &root,
            &signature.expect("t new shares recover")
        ));
        // Old shares: none verifies against the new lock's share keys, and with new ones
        // they combine to nothing valid.
        for (position, old_share) in split.shares.iter().enumerate() {
            let partial = keys::sign_partial(old_share, &root);
            assert!(
                !keys::verify_partial(sharing, &root, &partial),
                "old share {position} still verifies against the new sharing"
            );
        }
        // One old share with new ones from the other positions combines into nothing valid.
        // (Old shares of a threshold of the old operators together still sign for the same key:
        // a reshare keeps the key, so retiring them is up to their holders deleting them.)
        for old_share in &split.shares {
            let mut mixed = vec![keys::sign_partial(old_share, &root)];
            mixed.extend(
                new_partials
                    .iter()
                    .filter(|p| p.index != old_share.index)
                    .take(t as usize - 1)
                    .cloned(),
            );
            let (recovered, _) = keys::recover(sharing, &root, &mixed);
            assert!(recovered.is_err(), "an old share combined with new ones");
        }
    }
    // Outgoing operators know the result (keys unchanged) but hold nothing new.
    for (at, me) in me_order.iter().enumerate() {
        if new_set.position(me).is_none() {
            assert!(results[at].keys.iter().all(|k| k.share.is_none()));
        }
    }
}

fn ops_public(v: u64) -> ValidatorPublicKey {
    commonware_cryptography::bls12381::primitives::ops::compute_public::<MinPk>(
        &keys::interop_secret(v),
    )
}

#[test]
fn reshare_four_to_seven_keeps_keys_and_retires_old_shares() {
    let mut new = identities(0, 4);
    new.extend(identities(10, 3));
    reshare_keeps_keys_and_retires_old_shares(new);
}

#[test]
fn reshare_replacing_one_operator_keeps_keys_and_retires_old_shares() {
    let mut new = identities(0, 3);
    new.extend(identities(20, 1));
    reshare_keeps_keys_and_retires_old_shares(new);
}
