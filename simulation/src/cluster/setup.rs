//! Building the cluster a run plays on: keys and shares, the simulated network and its links,
//! partitions, and each operator's lives (spawned from [`super::lifecycle`]).

use super::{
    Carried,
    lifecycle::{disk, lives, spawn_lifecycle},
    operator::{Engines, Observation, OperatorSetup},
};
use crate::{
    SimConfig,
    byzantine::Taps,
    faults::{Loss, Partition},
};
use cohort_actors::runner::{cpu::CpuMeter, slashing::Watermarks};
use cohort_devnet::{DevnetBeacon, DevnetChain};
use cohort_ingress::{
    CommitteeId, SlotClock, SyncCommitteeSpec,
    keys::{self, ValidatorShare},
    signing::ForkInfo,
};
use cohort_marshal::PublicKey;
use commonware_cryptography::{Hasher, Sha256, Signer as _, ed25519::PrivateKey};
use commonware_p2p::simulated::{self, Link, Network, Oracle};
use commonware_runtime::{Clock, Spawner as _, Supervisor as _, deterministic};
use commonware_utils::{NZUsize, channel::mpsc, ordered::Set, probability::Probability};
use std::{
    collections::BTreeMap,
    sync::{Arc, atomic::AtomicU64},
    time::{Duration, SystemTime},
};

/// The simulated chain's sync committee: 128 positions in 4 subcommittees of 32, so that a
/// selection proof selects its member about one time in two (both outcomes happen), with
/// one-epoch periods so a run of a few epochs crosses period boundaries (where the committee
/// signing in a slot is the next epoch's).
pub const SYNC_COMMITTEE: SyncCommitteeSpec = SyncCommitteeSpec {
    size: 128,
    subnet_count: 4,
    epochs_per_period: 1,
};

/// Sync committees are drawn from this many chain validators per cluster validator: the
/// cluster holds about one position in sixteen (8 of 128), as a cluster holds a few positions
/// of a real chain's committee, and a slot costs a few sync duties, not one per validator.
pub const SYNC_POPULATION_FACTOR: u64 = 16;

/// The devnet beacon node of `operator` (0 for the chain's and the checker's own view).
pub fn devnet_beacon(config: &SimConfig, operator: u64, clock: SlotClock) -> DevnetBeacon {
    DevnetBeacon::new(config.seed, operator, config.validators, clock)
        .with_sync_population(config.validators.saturating_mul(SYNC_POPULATION_FACTOR))
        .with_head_at(config.head_at)
}

/// A started cluster: what the run loop and the end-of-run checks need of it.
pub(crate) struct Cluster {
    pub keys: Vec<PrivateKey>,
    pub participants: Set<PublicKey>,
    pub committee: CommitteeId,
    pub genesis: SystemTime,
    pub clock: SlotClock,
    pub fork: ForkInfo,
    pub chain: DevnetChain,
    pub oracle: Oracle<PublicKey, deterministic::Context>,
    pub engines: Engines,
    pub relays: super::operator::Relays,
    /// The wallet sending the run's transactions.
    pub load: crate::load::TxLoad,
    /// Network messages every operator received, over every channel.
    pub received: Arc<AtomicU64>,
    pub cpu: CpuMeter,
    pub restarts: Arc<AtomicU64>,
    /// What every operator reports, tagged with its index.
    pub observations: mpsc::UnboundedReceiver<(usize, Observation)>,
    /// Operators whose life just ended in a crash, in band with their observations.
    pub crashes: mpsc::UnboundedReceiver<Crashed>,
    /// The cluster-run AVS's key (its group key checks every signed result) and what its
    /// clients saw, when the run has one.
    pub avs: Option<(
        cohort_avs_crypto::Bn254PublicKey,
        mpsc::UnboundedReceiver<crate::avs::ClientRecord>,
    )>,
}

/// An operator's life ended in a crash: what it left on its disk for the next life.
pub(crate) struct Crashed {
    pub operator: usize,
    /// The slashing-protection record the next life opens with, as the crash left it (an
    /// error when it cannot be opened).
    pub record: Result<BTreeMap<u64, Watermarks>, String>,
    /// What the crash kept of each blob's unsynced writes.
    pub cuts: Vec<crate::disk::Cut>,
}

impl Cluster {
    /// Builds the cluster and starts every operator's lives. After a power cut (`carried`),
    /// the world outside the cluster comes back as it was and every life starts from storage.
    pub async fn start(
        context: &deterministic::Context,
        config: &SimConfig,
        carried: Option<&Carried>,
        given: Option<&super::ClusterKeys>,
    ) -> Self {
        let n = config.operators;
        let keys: Vec<PrivateKey> = match given {
            Some(given) => given.operators.clone(),
            None => (0..n).map(|i| PrivateKey::from_seed(i as u64)).collect(),
        };
        let participants: Set<PublicKey> =
            Set::from_iter_dedup(keys.iter().map(|k| k.public_key()));
        let committee = CommitteeId::new((1..=n as u64).collect()).expect("3f+1 operators fit");
        // Operators boot one slot before genesis, as a real cluster starts before its chain
        // does: the first views (and any dead first leader's timeout) pass before slot 0's
        // duties.
        let genesis = carried.map_or(context.current() + config.slot_duration, |c| c.genesis);
        let clock = SlotClock {
            genesis,
            slot_duration: config.slot_duration,
            intervals_per_slot: 3,
            slots_per_epoch: 32,
            sync_committee: SYNC_COMMITTEE,
            skew_ms: 0,
        };
        let max_size = cohort_operator::max_message_size(n as u32, config.validators as usize);
        let shares = match given {
            Some(given) => given.shares.clone(),
            None => split_shares(config, &participants, &keys),
        };
        let fork = ForkInfo::devnet();
        let chain_clock = Arc::new(context.child("chain"));
        let chain_now = Arc::new(move || chain_clock.current());
        let chain = match carried {
            Some(carried) => {
                carried.chain.set_clock(chain_now);
                carried.chain.clone()
            }
            None => DevnetChain::new(devnet_beacon(config, 0, clock), fork, chain_now),
        };
        let (network, oracle) = Network::new_with_peers(
            context.child("network"),
            simulated::Config {
                max_size: max_size as u32,
                max_peers_per_set: NZUsize!(n),
                disconnect_on_block: true,
                tracked_peer_sets: NZUsize!(1),
            },
            participants.iter().cloned(),
        )
        .await;
        network.start();
        let link = Link {
            latency: config.latency,
            jitter: config.jitter,
            success_rate: Probability::from_f64(config.delivery)
                .unwrap_or(Probability::from_f64(1.0).expect("1.0 is a probability")),
        };
        for a in participants.iter() {
            for b in participants.iter() {
                if a != b {
                    oracle
                        .add_link(a.clone(), b.clone(), link.clone())
                        .await
                        .expect("links between distinct peers are accepted");
                }
            }
        }
        spawn_link_schedule(context, config, &oracle, &link, &keys, clock);

        let (observations_sender, observations) = mpsc::unbounded_channel();
        let received = carried.map_or_else(|| Arc::new(AtomicU64::new(0)), |c| c.received.clone());
        let cpu = carried.map_or_else(
            || {
                let meter = CpuMeter::new(Arc::new(thread_cpu_time));
                match config.crypto_cost {
                    Some(cost) => meter.with_cost(cost),
                    None => meter,
                }
            },
            |c| c.cpu.clone(),
        );
        let cohort_operator::Pacing {
            heartbeat,
            leader_timeout,
        } = cohort_operator::Pacing::of(&clock);
        // The checker learns of crashes in band, so it never waits on a crashed runner's duties.
        let (crash_sender, crashes) = mpsc::unbounded_channel::<Crashed>();
        let restarts = Arc::new(AtomicU64::new(carried.map_or(0, |c| c.restarts)));
        // After a power cut every life starts from storage, and none before power is back.
        let back = carried
            .and(config.power_cut())
            .map(|cut| clock.slot_start(cut.restart_slot));
        let engines: Engines = Default::default();
        let relays: super::operator::Relays = Default::default();
        let noisy = (0..n).filter(|i| config.is_noisy(*i));
        let taps = Taps::new(noisy.map(|i| keys[i].public_key()));
        let avs_key = config.avs.as_ref().map(|_| avs_key(config.seed, n));
        let mailboxes = crate::avs::Mailboxes::default();
        let indices: Arc<Vec<usize>> = Arc::new(
            participants
                .iter()
                .map(|key| {
                    keys.iter()
                        .position(|k| k.public_key() == *key)
                        .expect("every participant has a key")
                })
                .collect(),
        );
        let avs = match (&config.avs, &avs_key) {
            (Some(load), Some(key)) => {
                let (records_sender, records) = mpsc::unbounded_channel();
                // After a power cut the clients start again from the restart slot.
                let first = back.map_or(0, |_| config.power_cut().map_or(0, |c| c.restart_slot));
                crate::avs::spawn_load(
                    context,
                    crate::avs::LoadSchedule {
                        load: load.clone(),
                        seed: config.seed,
                        clock,
                        slots: (first, config.slots),
                        operators: n,
                    },
                    mailboxes.clone(),
                    records_sender,
                );
                Some((*key.sharing.group_public_key(), records))
            }
            _ => None,
        };
        for (index, key) in keys.iter().enumerate() {
            let setup = OperatorSetup {
                index,
                key: key.clone(),
                participants: participants.clone(),
                committee: committee.clone(),
                clock: SlotClock {
                    skew_ms: config
                        .skews()
                        .filter(|s| s.operator == index)
                        .map(|s| s.millis)
                        .sum(),
                    ..clock
                },
                seed: config.seed,
                validators: config.validators,
                head_at: config.head_at,
                heartbeat,
                leader_timeout,
                observations: observations_sender.clone(),
                received: received.clone(),
                shares: shares[participants
                    .position(&key.public_key())
                    .expect("every operator is a participant")]
                .clone(),
                chain: chain.clone(),
                fork,
                fault: config
                    .sends_wrong_partials(index)
                    .then_some(cohort_actors::runner::Fault::WrongPartials),
                cpu: cpu.clone(),
                injected_bug: config.injected_bug,
                engines: engines.clone(),
                relays: relays.clone(),
                engine_faults: config
                    .engine_faults()
                    .filter(|f| f.operator == index)
                    .copied()
                    .collect(),
                source_faults: config
                    .source_faults()
                    .filter(|f| f.operator == index)
                    .copied()
                    .collect(),
                noisy: config.is_noisy(index),
                equivocates: config.equivocates(index),
                harmful_leader: config.leads_harmfully(index),
                floods_partials: config.floods_partials(index),
                lies_in_offers: config.sends_wrong_partials(index),
                taps: taps.clone(),
                max_message_size: max_size,
                disk: disk(config, index),
                avs: avs_key.as_ref().map(|key| super::operator::SimAvs {
                    key: key.clone(),
                    fault: config
                        .avs
                        .as_ref()
                        .and_then(|load| load.performer_faults.get(&index).copied()),
                    mailboxes: mailboxes.clone(),
                    indices: indices.clone(),
                }),
            };
            let mut lives = lives(config, index, genesis, clock);
            if lives.is_empty() {
                continue;
            }
            if let Some(back) = back {
                lives.retain(|(_, crash_at)| crash_at.is_none_or(|at| at > back));
                for (start, _) in lives.iter_mut() {
                    *start = (*start).max(back);
                }
            }
            spawn_lifecycle(
                context,
                setup,
                lives,
                back.is_some(),
                &oracle,
                &crash_sender,
                &restarts,
                &engines,
            );
        }
        Self {
            keys,
            participants,
            committee,
            genesis,
            clock,
            fork,
            chain,
            oracle,
            engines,
            relays,
            load: carried.map_or_else(
                || crate::load::TxLoad::new(config.seed, config.transactions_per_slot),
                |carried| carried.load.clone(),
            ),
            received,
            cpu,
            restarts,
            observations,
            crashes,
            avs,
        }
    }

    /// The operator's index (its position in the run's keys) for a network peer.
    pub fn index_of(&self, key: &PublicKey) -> Option<usize> {
        self.keys.iter().position(|k| k.public_key() == *key)
    }
}

/// Every validator's interop key split t-of-n; operator i holds the share at its position in
/// the participant set (the order consensus and the runner use).
fn split_shares(
    config: &SimConfig,
    participants: &Set<PublicKey>,
    keys: &[PrivateKey],
) -> Vec<Arc<BTreeMap<u64, ValidatorShare>>> {
    let n = keys.len();
    debug_assert_eq!(participants.len(), n);
    let mut rng = commonware_utils::TestRng::new(config.seed);
    let mut per_operator: Vec<BTreeMap<u64, ValidatorShare>> = vec![BTreeMap::new(); n];
    for validator in 0..config.validators {
        let split = keys::split_interop(&mut rng, validator, n as u32)
            .expect("interop keys are non-zero and 1 <= t <= n");
        for (position, shares) in per_operator.iter_mut().enumerate() {
            if let Some(share) = split.for_operator(position) {
                shares.insert(validator, share);
            }
        }
    }
    per_operator.into_iter().map(Arc::new).collect()
}

/// The simulated cluster's BN254 AVS operator key, split t-of-n (t = n - f) among its
/// `operators`, operator i holding share i as for validator shares: a function of the run's
/// seed alone. It draws from its own stream (SHA-256 of a label and the seed), so the
/// validators' shares, drawn from the seed's stream, stay what they were.
pub fn avs_key(seed: u64, operators: usize) -> cohort_avs_crypto::SplitBn254Key {
    use rand::SeedableRng as _;
    let digest = Sha256::hash(&[b"cohort/simulation/avs-key".as_slice(), &seed.to_be_bytes()]);
    let mut stream = [0u8; 32];
    stream.copy_from_slice(digest.as_ref());
    let mut rng = rand::rngs::StdRng::from_seed(stream);
    let key = cohort_avs_crypto::Bn254Key::generate(&mut rng);
    cohort_avs_crypto::bn254::threshold::split(&mut rng, &key, operators as u32)
        .expect("a simulated cluster has at least one operator")
}

/// Partitions and loss windows over time: at each slot one of them starts or heals, every
/// link between two operators is set to what the faults in force then make it (cut, lossy or
/// as configured). One task owns every change, so a partition healing inside a loss window
/// comes back lossy, and a loss window never reconnects a partitioned pair.
fn spawn_link_schedule(
    context: &deterministic::Context,
    config: &SimConfig,
    oracle: &Oracle<PublicKey, deterministic::Context>,
    link: &Link,
    keys: &[PrivateKey],
    clock: SlotClock,
) {
    let partitions: Vec<Partition> = config.partitions().cloned().collect();
    let losses: Vec<Loss> = config.losses().copied().collect();
    let mut changes: Vec<u64> = partitions
        .iter()
        .flat_map(|p| [p.from_slot, p.heal_slot])
        .chain(losses.iter().flat_map(|l| [l.from_slot, l.heal_slot]))
        .collect();
    if changes.is_empty() {
        return;
    }
    changes.sort_unstable();
    changes.dedup();
    let keys: Vec<PublicKey> = keys.iter().map(|k| k.public_key()).collect();
    let oracle = oracle.clone();
    let base = link.clone();
    let delivery = config.delivery;
    context.child("links").spawn(move |context| async move {
        let n = keys.len();
        // What each directed link is now: `None` while cut, else its delivery rate in ppm.
        let mut current: BTreeMap<(usize, usize), Option<u64>> = BTreeMap::new();
        for a in 0..n {
            for b in (0..n).filter(|b| *b != a) {
                current.insert((a, b), Some(ppm(delivery)));
            }
        }
        for slot in changes {
            context.sleep_until(clock.slot_start(slot)).await;
            let cut = partitions
                .iter()
                .find(|p| p.from_slot <= slot && slot < p.heal_slot);
            let lost = losses
                .iter()
                .find(|l| l.covers(slot))
                .map_or(0, |l| l.percent);
            let rate = delivery * (100 - lost.min(100)) as f64 / 100.0;
            for ((a, b), now) in current.iter_mut() {
                let crosses =
                    cut.is_some_and(|p| p.operators.contains(a) != p.operators.contains(b));
                let wanted = (!crosses).then(|| ppm(rate));
                if wanted == *now {
                    continue;
                }
                // A link that is already down stays down; nothing to undo.
                let _ = oracle.remove_link(keys[*a].clone(), keys[*b].clone()).await;
                if wanted.is_some() {
                    let link = Link {
                        success_rate: Probability::from_f64(rate).unwrap_or(base.success_rate),
                        ..base.clone()
                    };
                    let _ = oracle
                        .add_link(keys[*a].clone(), keys[*b].clone(), link)
                        .await;
                }
                *now = wanted;
            }
        }
    });
}

/// A delivery rate in parts per million, to compare rates exactly.
fn ppm(rate: f64) -> u64 {
    (rate * 1_000_000.0).round() as u64
}

/// CPU time of the calling thread: the deterministic runtime runs every actor on it, so this is
/// what the cryptography costs, whatever else the machine is doing.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; the call only writes into it.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if result != 0 {
        return Duration::ZERO;
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use cohort_avs_crypto::{B256, HashedMessage, keccak256};

    #[test]
    fn the_avs_key_is_a_function_of_the_seed_and_any_quorum_signs_with_it() {
        let a = super::avs_key(7, 4);
        assert_eq!(a.sharing, super::avs_key(7, 4).sharing);
        assert_ne!(
            a.sharing.group_public_key(),
            super::avs_key(8, 4).sharing.group_public_key()
        );
        assert_eq!(a.sharing.threshold(), 3);
        let message = HashedMessage::certificate(1, &B256::from(keccak256(b"task")));
        let partials: Vec<_> = a.shares[1..].iter().map(|s| s.sign(&message)).collect();
        let combined = a
            .sharing
            .combine_verified(&message, &partials)
            .expect("3 of 4 sign");
        a.sharing
            .verify(&message, &combined.signature)
            .expect("verifies against the cluster key");
    }
}
