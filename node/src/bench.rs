//! `cohort bench-signing`: what one operator's CPU spends per validator-duty (sign its share,
//! decode the peers' partials, recover, verify the recovered signature), next to the physical
//! floor of one plain blst sign and verify, and what that makes per slot at a validator count.
//!
//! The work runs through the runner's own code ([`Quorum`] and its batch cryptography), fed
//! as the runner feeds it: per phase, this operator's partials signed in one batch, then one
//! message per peer, read as the runner reads it, its partials added and the keys it completes
//! recovered together. The duties are a slot's attesters': a selection proof each (one root for
//! the slot) and an attestation each (one root per beacon committee of `per_root` members).
//! Which peers' partials complete a key rotates through every set of signers the operator can
//! be in, so recovery is measured over all of them, not only the cheapest.
//!
//! Wall-clock and CPU timing belong here, outside the actors: simulated time cannot measure CPU.

use cohort_actors::runner::{
    cpu::{CpuMeter, CryptoWork},
    crypto::{Crypto, Parallel},
    quorum::{Key, Quorum, Recovery},
};
use cohort_ingress::{
    keys::{self, SplitKey},
    partial::{PartialSignature, PartialSignatures, Phase, UncheckedPartials},
    signing::{self, ForkInfo},
};
use commonware_codec::Encode;
use commonware_cryptography::sha256::Digest;
use rand::SeedableRng as _;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

pub struct Costs {
    /// Validator-duties measured (two per sampled validator).
    pub duties: u64,
    pub sign_share: Duration,
    pub decode_partials: Duration,
    /// Interpolation and verification of the recovered signature (batched per root).
    pub recover_and_verify: Duration,
    pub floor_sign: Duration,
    pub floor_verify: Duration,
    /// Threads of the parallel run.
    pub threads: usize,
    /// Per validator-duty, with `threads` threads: wall time and CPU of the whole process.
    pub parallel_wall: Duration,
    pub parallel_cpu: Duration,
}

impl Costs {
    pub fn per_duty(&self) -> Duration {
        self.sign_share + self.decode_partials + self.recover_and_verify
    }

    pub fn floor(&self) -> Duration {
        self.floor_sign + self.floor_verify
    }
}

fn clock(id: libc::clockid_t) -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; the call only writes into it.
    if unsafe { libc::clock_gettime(id, &mut now) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// One phase of the slot: every sampled validator's root, and each peer's message.
struct PhaseInput {
    roots: Vec<[u8; 32]>,
    messages: Vec<(u32, bytes::Bytes)>,
}

/// Every `size`-subset of `1..operators` (the peers of operator 0), in a fixed order.
fn peer_sets(operators: u32, size: usize) -> Vec<Vec<u32>> {
    (0u32..(1 << (operators - 1)))
        .filter(|mask| mask.count_ones() as usize == size)
        .map(|mask| {
            (1..operators)
                .filter(|p| mask & (1 << (p - 1)) != 0)
                .collect()
        })
        .collect()
}

fn phase_input(
    splits: &[SplitKey],
    operators: u32,
    threshold: u32,
    roots: Vec<[u8; 32]>,
    slot: u64,
    phase: Phase,
) -> PhaseInput {
    let sets = peer_sets(operators, threshold as usize - 1);
    let messages = (1..operators)
        .map(|peer| {
            let signatures: Vec<PartialSignature> = splits
                .iter()
                .enumerate()
                .filter(|(v, _)| sets[v % sets.len()].contains(&peer))
                .map(|(v, split)| PartialSignature {
                    validator_index: v as u64,
                    signing_root: Digest(roots[v]),
                    signature: keys::sign_partial(&split.shares[peer as usize], &roots[v]).value,
                })
                .collect();
            let bytes = PartialSignatures {
                slot,
                phase,
                signatures,
            }
            .encode();
            (peer, bytes)
        })
        .collect();
    PhaseInput { roots, messages }
}

/// Runs both phases through a quorum of operator 0; returns how many keys it recovered.
fn run(
    splits: &[SplitKey],
    threshold: u32,
    slot: u64,
    phases: &[PhaseInput],
    parallel: Parallel,
    meter: &Option<CpuMeter>,
) -> usize {
    let mut quorum = Quorum::new(
        threshold,
        Crypto::new(parallel, rand::rngs::StdRng::seed_from_u64(1)),
    );
    let mut recovered = 0;
    for phase in phases {
        let key = |v: usize| Key {
            slot,
            validator_index: v as u64,
            signing_root: Digest(phase.roots[v]),
        };
        let requests: Vec<_> = splits
            .iter()
            .zip(&phase.roots)
            .map(|(split, root)| (slot, &split.shares[0], *root))
            .collect();
        let own = quorum.sign(&requests, meter);
        for (v, signature) in own.into_iter().enumerate() {
            quorum.add_own(key(v), 0, signature);
        }
        for (peer, bytes) in &phase.messages {
            let read = || UncheckedPartials::read(bytes.clone(), splits.len());
            let message = match meter {
                Some(meter) => meter.measure(CryptoWork::Decode, read),
                None => read(),
            }
            .expect("own encoding reads");
            let mut added = Vec::new();
            for partial in message.iter() {
                let v = partial.validator_index as usize;
                if quorum.add_compressed(key(v), *peer, partial.signature) {
                    added.push((key(v), &splits[v].sharing));
                }
            }
            recovered += quorum
                .try_recover_many(&added, meter)
                .into_iter()
                .filter(|recovery| matches!(recovery, Recovery::Recovered { .. }))
                .count();
        }
    }
    recovered
}

/// Measures each step over `samples` validators split t-of-n among `operators`, attestation
/// roots shared by `per_root` validators, and the same work again on `threads` threads.
pub fn measure(operators: u32, samples: u64, per_root: u64, threads: usize) -> Costs {
    let threshold = operators - (operators - 1) / 3;
    let mut rng = commonware_utils::TestRng::new(1);
    let fork = ForkInfo::devnet();
    let slot = 1;
    let splits: Vec<SplitKey> = (0..samples)
        .map(|v| {
            keys::split(&mut rng, &keys::interop_secret(v), operators, threshold)
                .expect("interop keys split")
        })
        .collect();
    let selection = signing::compute_signing_root(
        signing::slot_root(slot),
        fork.domain(signing::DOMAIN_SELECTION_PROOF),
    );
    let attestation = |committee: u64| {
        let mut object = [0u8; 32];
        object[..8].copy_from_slice(&committee.to_le_bytes());
        signing::compute_signing_root(object, fork.domain(signing::DOMAIN_BEACON_ATTESTER))
    };
    let phases = [
        phase_input(
            &splits,
            operators,
            threshold,
            vec![selection; samples as usize],
            slot,
            Phase::PreConsensus,
        ),
        phase_input(
            &splits,
            operators,
            threshold,
            (0..samples).map(|v| attestation(v / per_root)).collect(),
            slot,
            Phase::PostConsensus,
        ),
    ];
    let duties = 2 * samples;

    // One core: the runner on its own thread, each step charged to its kind.
    let meter = CpuMeter::new(Arc::new(|| clock(libc::CLOCK_THREAD_CPUTIME_ID)));
    let recovered = run(
        &splits,
        threshold,
        slot,
        &phases,
        Parallel::Sequential,
        &Some(meter.clone()),
    );
    assert_eq!(recovered as u64, duties, "every key recovers");

    // Both cores (or as many as asked): the same work, wall time and the process's CPU.
    let wall = Instant::now();
    let cpu = clock(libc::CLOCK_PROCESS_CPUTIME_ID);
    let recovered = run(
        &splits,
        threshold,
        slot,
        &phases,
        Parallel::with_threads(threads),
        &None,
    );
    let parallel_cpu = clock(libc::CLOCK_PROCESS_CPUTIME_ID).saturating_sub(cpu);
    let parallel_wall = wall.elapsed();
    assert_eq!(recovered as u64, duties, "every key recovers");

    // The floor: one blst sign and one blst verify per validator-duty, nothing else.
    let secrets: Vec<blst::min_pk::SecretKey> = (0..duties)
        .map(|v| {
            let mut ikm = [0u8; 32];
            ikm[..8].copy_from_slice(&v.to_le_bytes());
            blst::min_pk::SecretKey::key_gen(&ikm, &[]).expect("32 bytes of key material")
        })
        .collect();
    let publics: Vec<_> = secrets.iter().map(|s| s.sk_to_pk()).collect();
    let dst = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";
    let root = attestation(0);
    let started = clock(libc::CLOCK_THREAD_CPUTIME_ID);
    let signatures: Vec<_> = secrets.iter().map(|s| s.sign(&root, dst, &[])).collect();
    let floor_sign = clock(libc::CLOCK_THREAD_CPUTIME_ID).saturating_sub(started);
    let started = clock(libc::CLOCK_THREAD_CPUTIME_ID);
    for (signature, public) in signatures.iter().zip(&publics) {
        assert_eq!(
            signature.verify(true, &root, dst, &[], public, true),
            blst::BLST_ERROR::BLST_SUCCESS
        );
    }
    let floor_verify = clock(libc::CLOCK_THREAD_CPUTIME_ID).saturating_sub(started);

    let per = |d: Duration| d / duties as u32;
    Costs {
        duties,
        sign_share: per(meter.spent(CryptoWork::Sign)),
        decode_partials: per(meter.spent(CryptoWork::Decode)),
        recover_and_verify: per(meter.spent(CryptoWork::Recover)),
        floor_sign: per(floor_sign),
        floor_verify: per(floor_verify),
        threads,
        parallel_wall: per(parallel_wall),
        parallel_cpu: per(parallel_cpu),
    }
}
