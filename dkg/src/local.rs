//! Ceremonies among operators in one process, over commonware's simulated network on the
//! deterministic runtime: what tests (and the simulation's reshare test) run, on the same
//! protocol code the `cohort dkg` processes run over the authenticated network.

use crate::{CHANNEL, CeremonyError, Outcome, PublicKey, Setup};
use commonware_cryptography::Signer as _;
use commonware_p2p::simulated::{self, Link, Network};
use commonware_runtime::{
    Clock as _, Quota, Runner as _, Spawner as _, Supervisor as _, deterministic,
};
use commonware_utils::{NZU32, NZUsize};
use std::{collections::BTreeSet, time::Duration};

/// Runs one ceremony per setup (one operator each) on a simulated network with `latency`
/// links, operators in `offline` never starting; returns each started operator's result in
/// `setups` order (`None` for an offline one).
pub fn run(
    seed: u64,
    setups: Vec<Setup>,
    offline: BTreeSet<PublicKey>,
    latency: Duration,
) -> Vec<Option<Result<Outcome, CeremonyError>>> {
    run_with_late(
        seed,
        setups,
        offline,
        BTreeSet::new(),
        Duration::ZERO,
        latency,
    )
}

/// As [`run`], but the operators in `late` start with everyone else and are reachable only
/// after `reachable_after` (a process that is slow to come up, or a connection slow to form):
/// whatever is sent to them or by them before is lost.
pub fn run_with_late(
    seed: u64,
    setups: Vec<Setup>,
    offline: BTreeSet<PublicKey>,
    late: BTreeSet<PublicKey>,
    reachable_after: Duration,
    latency: Duration,
) -> Vec<Option<Result<Outcome, CeremonyError>>> {
    let runtime = deterministic::Config::new()
        .with_seed(seed)
        .with_timeout(Some(Duration::from_secs(3600)));
    deterministic::Runner::new(runtime).start(|context| async move {
        let everyone: BTreeSet<PublicKey> = setups
            .iter()
            .flat_map(|s| s.dealers.iter().chain(s.players.iter()).cloned())
            .collect();
        let max = setups
            .iter()
            .map(|s| {
                crate::wire::max_message_size(s.keys.len(), NZU32!(s.players.len().max(1) as u32))
            })
            .max()
            .unwrap_or(1 << 20);
        let (network, oracle) = Network::new_with_peers(
            context.child("network"),
            simulated::Config {
                max_size: max as u32,
                max_peers_per_set: NZUsize!(everyone.len().max(1)),
                disconnect_on_block: true,
                tracked_peer_sets: NZUsize!(1),
            },
            everyone.iter().cloned(),
        )
        .await;
        network.start();
        let link = Link {
            latency,
            jitter: Duration::ZERO,
            success_rate: commonware_utils::probability::Probability::from_f64(1.0)
                .expect("1 is a probability"),
        };
        let mut late_links = Vec::new();
        for a in &everyone {
            for b in &everyone {
                if a == b {
                    continue;
                }
                if late.contains(a) || late.contains(b) {
                    late_links.push((a.clone(), b.clone()));
                    continue;
                }
                oracle
                    .add_link(a.clone(), b.clone(), link.clone())
                    .await
                    .expect("links between distinct peers are accepted");
            }
        }
        if !late_links.is_empty() {
            let oracle = oracle.clone();
            let link = link.clone();
            context
                .child("late_links")
                .spawn(move |context| async move {
                    context.sleep(reachable_after).await;
                    for (a, b) in late_links {
                        oracle
                            .add_link(a, b, link.clone())
                            .await
                            .expect("links between distinct peers are accepted");
                    }
                });
        }
        let mut handles = Vec::new();
        for setup in setups {
            let me = setup.me.public_key();
            if offline.contains(&me) {
                handles.push(None);
                continue;
            }
            let (sender, receiver) = oracle
                .control(me.clone())
                .register(CHANNEL, Quota::per_second(NZU32!(10_000)))
                .await
                .expect("simulated network refused a channel registration");
            let handle = context
                .child("operator")
                .spawn(move |context| crate::run(context, sender, receiver, setup));
            handles.push(Some(handle));
        }
        let mut results = Vec::new();
        for handle in handles {
            match handle {
                None => results.push(None),
                Some(handle) => results.push(Some(
                    handle.await.unwrap_or_else(|_| Err(CeremonyError::Network)),
                )),
            }
        }
        results
    })
}
