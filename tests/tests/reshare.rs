//! Resharing in-process (commonware's resharing, over the simulated network on the
//! deterministic runtime, the same protocol code `cohort reshare` runs), then the deterministic
//! simulation run on the new operators and their new shares: every validator keeps its public
//! key (the devnet chain checks every signature against the interop keys), so every duty the
//! run's slots owe must be accepted.

use cohort_dkg::{KeySetup, Outcome, Setup, previous_output};
use cohort_ingress::keys::{self, ValidatorShare};
use cohort_simulation::{ClusterKeys, Kind, SimConfig, run_with_keys};
use cohort_tests::assert_clean;
use commonware_cryptography::{Signer as _, ed25519::PrivateKey};
use commonware_utils::ordered::Set;
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

const VALIDATORS: u64 = 16;

/// The simulation's own cluster: operators `from_seed(0..4)`, operator i holding share i of
/// every interop validator.
fn original(seed: u64) -> (Vec<PrivateKey>, Vec<keys::SplitKey>) {
    let operators: Vec<PrivateKey> = (0..4).map(PrivateKey::from_seed).collect();
    let mut rng = commonware_utils::TestRng::new(seed);
    let splits = (0..VALIDATORS)
        .map(|v| keys::split_interop(&mut rng, v, 4).expect("split"))
        .collect();
    (operators, splits)
}

/// Reshares the original cluster to `new` and returns every new operator's shares.
fn reshare(new: &[PrivateKey]) -> ClusterKeys {
    let (old, splits) = original(11);
    // The previous output names the operators in share order: share i is operator i's.
    let old_positions: Vec<PrivateKey> = old.clone();
    let dealers: Set<_> =
        cohort_dkg::operator_set(old.iter().map(|k| k.public_key())).expect("distinct");
    // Share order is the set's (sorted) order; give each dealer the share at its position.
    let share_of = |key: &PrivateKey, v: usize| -> keys::ValidatorShare {
        let position = dealers.position(&key.public_key()).expect("a dealer");
        splits[v].for_operator(position).expect("share")
    };
    let players: Set<_> =
        cohort_dkg::operator_set(new.iter().map(|k| k.public_key())).expect("distinct");
    let mut everyone: Vec<PrivateKey> = old_positions.clone();
    for key in new {
        if !everyone.iter().any(|k| k.public_key() == key.public_key()) {
            everyone.push(key.clone());
        }
    }
    let setups: Vec<Setup> = everyone
        .iter()
        .map(|me| Setup {
            namespace: b"cohort/dkg/sim".to_vec(),
            me: me.clone(),
            dealers: dealers.clone(),
            players: players.clone(),
            keys: (0..VALIDATORS as usize)
                .map(|v| KeySetup {
                    id: v as u64,
                    previous: Some((
                        previous_output([1; 32], &splits[v].sharing, &dealers).expect("output"),
                        dealers
                            .position(&me.public_key())
                            .map(|_| share_of(me, v).share),
                    )),
                })
                .collect(),
            signing_root: Box::new(|sharing| {
                let mut root = [0u8; 32];
                root[..8].copy_from_slice(&sharing.required().to_be_bytes().repeat(2));
                root
            }),
            names: BTreeMap::new(),
            timeout: Duration::from_secs(60),
            resend: Duration::from_secs(1),
            misbehave: None,
        })
        .collect();
    let order: Vec<_> = everyone.iter().map(|k| k.public_key()).collect();
    let results = cohort_dkg::local::run(3, setups, BTreeSet::new(), Duration::from_millis(20));
    let outcomes: Vec<Outcome> = results
        .into_iter()
        .map(|r| r.expect("started").expect("the reshare succeeds"))
        .collect();
    // Every key unchanged.
    for (v, split) in splits.iter().enumerate() {
        assert_eq!(outcomes[0].keys[v].sharing.public(), split.sharing.public());
        assert_eq!(
            outcomes[0].keys[v].sharing.total().get() as usize,
            new.len()
        );
    }
    // Operator i of the run holds share index i: the operators in share (set) order.
    let new: Vec<PrivateKey> = players
        .iter()
        .map(|key| {
            new.iter()
                .find(|k| k.public_key() == *key)
                .expect("a new operator")
                .clone()
        })
        .collect();
    let shares = new
        .iter()
        .map(|key| {
            let at = order
                .iter()
                .position(|k| *k == key.public_key())
                .expect("ran");
            let map: BTreeMap<u64, ValidatorShare> = outcomes[at]
                .keys
                .iter()
                .map(|k| {
                    (
                        k.id,
                        ValidatorShare {
                            sharing: k.sharing.clone(),
                            share: k.share.clone().expect("a new operator's share"),
                        },
                    )
                })
                .collect();
            Arc::new(map)
        })
        .collect();
    // Old shares are useless against the new sharing.
    for (v, split) in splits.iter().enumerate() {
        let root = [v as u8; 32];
        for old_share in &split.shares {
            let partial = keys::sign_partial(old_share, &root);
            assert!(!keys::verify_partial(
                &outcomes[0].keys[v].sharing,
                &root,
                &partial
            ));
        }
    }
    ClusterKeys {
        operators: new,
        shares,
    }
}

fn assert_every_duty_accepted(operators: &[PrivateKey]) {
    let keys = reshare(operators);
    let config = SimConfig {
        seed: 5,
        operators: operators.len(),
        validators: VALIDATORS,
        slots: 40,
        ..SimConfig::default()
    };
    let report = run_with_keys(&config, Some(keys));
    assert_clean(&report);
    for kind in [Kind::Attestation, Kind::Proposal] {
        let expected = report.expected.get(&kind).copied().unwrap_or(0);
        assert!(expected > 0, "no {kind} scheduled");
        assert_eq!(
            report.accepted.get(&kind).copied().unwrap_or(0),
            expected,
            "{kind}s accepted vs expected; rejections: {:?}",
            report.rejections
        );
        assert_eq!(report.rejected.get(&kind).copied().unwrap_or(0), 0);
    }
}

#[test]
fn after_a_reshare_from_four_to_seven_operators_every_duty_succeeds_with_the_same_keys() {
    let mut new: Vec<PrivateKey> = (0..4).map(PrivateKey::from_seed).collect();
    new.extend((100..103).map(PrivateKey::from_seed));
    assert_every_duty_accepted(&new);
}

#[test]
fn after_replacing_one_of_four_operators_every_duty_succeeds_with_the_same_keys() {
    let mut new: Vec<PrivateKey> = (0..3).map(PrivateKey::from_seed).collect();
    new.push(PrivateKey::from_seed(200));
    assert_every_duty_accepted(&new);
}
