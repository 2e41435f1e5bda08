//! The runner's cryptography, done per handling step in batches rather than per signature.
//!
//! What one validator-duty costs is dominated by a handful of operations, each of which has a
//! cheaper batched form:
//!
//! - hashing a signing root to G2: attestations of one beacon committee share one root, every
//!   selection proof of a slot shares one, so each distinct root is hashed once per slot and
//!   shares are signed from the hashed point;
//! - Lagrange interpolation: the coefficients depend only on which operators' partials are
//!   used, so they are computed once per set of signers. For a cluster's small share indices
//!   they are small rationals: the recovered signature is one multi-scalar multiplication with
//!   integer coefficients of a few bits, times the inverse of their common denominator when it
//!   is not one;
//! - checking recovered signatures: those over one root are checked together with random
//!   linear combinations (two pairings for the whole batch); a failing batch is bisected to
//!   find the bad ones, and only those have their partials checked one by one;
//! - decoding peers' partials (decompression and subgroup check): once, and kept decoded.
//!
//! Independent items run on a [`Parallel`] strategy. Every result is a pure function of its
//! inputs (the batch scalars come from one RNG, drawn in order before any parallel work), so a
//! run gives the same results however the work was scheduled.

use super::cpu::{self, CpuMeter, CryptoWork};
use cohort_ingress::keys::Signature;
use commonware_codec::DecodeFixed as _;
use commonware_cryptography::bls12381::primitives::{
    group::{G2, Share},
    ops,
    variant::{MinPk, Variant},
};
use commonware_parallel::{Rayon, Sequential, Strategy};
use rand::rngs::StdRng;
use std::{
    collections::{BTreeMap, BTreeSet},
    num::NonZeroUsize,
    sync::Arc,
};

mod verify;
mod weights;

pub use verify::{Check, verify_same_root};
pub use weights::Weights;

/// The checks of one batch that share a (slot, signing root), with their positions.
type ChecksOnRoot = Vec<(usize, Check)>;
/// How many slots of hashed roots are kept: a key can still be recovered this long after its
/// slot (the runner's window for partials).
const HASHED_SLOTS: u64 = 8;

/// Where one step's independent cryptographic work runs.
#[derive(Clone, Debug)]
pub enum Parallel {
    /// On the actor's own thread (the simulation's choice: nothing depends on threads).
    Sequential,
    /// On a pool of this many threads.
    Rayon(Rayon, usize),
}

impl Parallel {
    /// A strategy over `threads` threads; one (or a pool that cannot be built) runs on the
    /// actor's thread.
    pub fn with_threads(threads: usize) -> Self {
        match NonZeroUsize::new(threads) {
            Some(threads) if threads.get() > 1 => match Rayon::new(threads) {
                Ok(pool) => Self::Rayon(pool, threads.get()),
                Err(err) => {
                    tracing::warn!(%err, threads, "could not start the crypto thread pool; signing and verifying on the runner's thread");
                    Self::Sequential
                }
            },
            _ => Self::Sequential,
        }
    }

    /// How many threads work runs on.
    pub fn threads(&self) -> usize {
        match self {
            Self::Sequential => 1,
            Self::Rayon(_, threads) => *threads,
        }
    }

    /// `f` over `items`, results in the items' order.
    pub fn map<T, R>(&self, items: &[T], f: impl Fn(&T) -> R + Send + Sync) -> Vec<R>
    where
        T: Sync,
        R: Send,
    {
        match self {
            Self::Sequential => Sequential.map_collect_vec(items, f),
            Self::Rayon(pool, _) => pool.map_collect_vec(items, f),
        }
    }
}

/// A signing root hashed to G2 with Ethereum's DST (nothing prepended).
pub fn hash_root(root: &[u8; 32]) -> G2 {
    ops::hash::<MinPk>(MinPk::MESSAGE, root)
}

/// `share`'s signature over the root `hashed` is the hash of.
pub fn sign_hashed(share: &Share, hashed: &G2) -> Signature {
    share.private.expose(|scalar| *hashed * scalar)
}

/// One key at threshold, as the quorum hands it over: the validator's key, the sharing's
/// per-share keys (for the fallback), and the partials, decoded or still compressed.
pub struct Candidate<'a> {
    pub slot: u64,
    pub root: [u8; 32],
    pub sharing: &'a commonware_cryptography::bls12381::primitives::sharing::Sharing<MinPk>,
    /// Partials already decoded (or this operator's own), by share index.
    pub decoded: Vec<(u32, Signature)>,
    /// Peers' partials as received, by share index.
    pub compressed: Vec<(u32, [u8; 96])>,
}

/// What the batch made of one candidate.
#[derive(Debug, Default)]
pub struct Settled {
    /// The recovered signature, verified against the validator's key.
    pub signature: Option<Signature>,
    /// Partials that decoded and were not found invalid, by share index (kept by the quorum
    /// so nothing is decoded twice).
    pub decoded: Vec<(u32, Signature)>,
    /// Operators whose partial did not decode or did not verify.
    pub invalid: Vec<u32>,
}

/// The runner's batch cryptography: the parallel strategy, the batch RNG, and what is worth
/// keeping between steps (hashed roots per slot, weights per set of signers).
pub struct Crypto {
    parallel: Parallel,
    rng: StdRng,
    threshold: usize,
    hashed: BTreeMap<(u64, [u8; 32]), G2>,
    weights: BTreeMap<Vec<u32>, Arc<Weights>>,
}

impl Crypto {
    /// `rng` draws the batch-verification scalars: take it from the runtime's RNG, so a
    /// simulation replays and a node's scalars cannot be predicted.
    pub fn new(parallel: Parallel, rng: StdRng) -> Self {
        Self {
            parallel,
            rng,
            threshold: 1,
            hashed: BTreeMap::new(),
            weights: BTreeMap::new(),
        }
    }

    pub(super) fn set_threshold(&mut self, threshold: u32) {
        self.threshold = threshold.max(1) as usize;
    }

    pub fn parallel(&self) -> &Parallel {
        &self.parallel
    }

    /// Hashes the roots not hashed yet (in parallel) and forgets slots past the window.
    fn hash(&mut self, roots: impl IntoIterator<Item = (u64, [u8; 32])>) {
        let missing: Vec<(u64, [u8; 32])> = roots
            .into_iter()
            .filter(|key| !self.hashed.contains_key(key))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if missing.is_empty() {
            return;
        }
        let points = self.parallel.map(&missing, |(_, root)| hash_root(root));
        self.hashed.extend(missing.into_iter().zip(points));
        if let Some(((newest, _), _)) = self.hashed.last_key_value() {
            let keep = newest.saturating_sub(HASHED_SLOTS);
            self.hashed = self.hashed.split_off(&(keep, [0u8; 32]));
        }
    }

    fn hashed(&mut self, slot: u64, root: &[u8; 32]) -> G2 {
        if let Some(point) = self.hashed.get(&(slot, *root)) {
            return *point;
        }
        self.hash([(slot, *root)]);
        self.hashed
            .get(&(slot, *root))
            .copied()
            .unwrap_or_else(|| hash_root(root))
    }

    /// Forgets hashed roots of slots before `slot`.
    pub fn prune(&mut self, slot: u64) {
        self.hashed = self.hashed.split_off(&(slot, [0u8; 32]));
    }

    /// Signs each `(slot, share, root)`, hashing each distinct root once.
    pub fn sign(
        &mut self,
        requests: &[(u64, &Share, [u8; 32])],
        meter: &Option<CpuMeter>,
    ) -> Vec<Signature> {
        cpu::measure_items(meter, CryptoWork::Sign, requests.len(), || {
            self.hash(requests.iter().map(|(slot, _, root)| (*slot, *root)));
            let jobs: Vec<(&Share, G2)> = requests
                .iter()
                .map(|(slot, share, root)| {
                    let hashed = self.hashed.get(&(*slot, *root)).copied();
                    (*share, hashed.unwrap_or_else(|| hash_root(root)))
                })
                .collect();
            self.parallel
                .map(&jobs, |(share, hashed)| sign_hashed(share, hashed))
        })
    }

    fn weights(&mut self, indices: &[u32]) -> Arc<Weights> {
        self.weights
            .entry(indices.to_vec())
            .or_insert_with(|| Arc::new(Weights::of(indices)))
            .clone()
    }

    /// Recovers and verifies every candidate: decodes what is still compressed (once), picks
    /// a threshold of partials, interpolates with the weights of that set of signers, checks
    /// the results in batches per root, and for each that fails, checks its partials one by
    /// one, drops the bad ones and recovers again from the rest.
    pub fn recover(
        &mut self,
        candidates: Vec<Candidate<'_>>,
        meter: &Option<CpuMeter>,
    ) -> Vec<Settled> {
        // Decode every compressed partial of the batch together.
        let compressed: Vec<(usize, u32, [u8; 96])> = candidates
            .iter()
            .enumerate()
            .flat_map(|(at, candidate)| {
                candidate
                    .compressed
                    .iter()
                    .map(move |(operator, bytes)| (at, *operator, *bytes))
            })
            .collect();
        let points = cpu::measure_items(meter, CryptoWork::Decode, compressed.len(), || {
            self.parallel.map(&compressed, |(_, _, bytes)| {
                Signature::decode_fixed(*bytes).ok()
            })
        });
        let mut settled: Vec<Settled> = candidates
            .iter()
            .map(|candidate| Settled {
                signature: None,
                decoded: candidate.decoded.clone(),
                invalid: Vec::new(),
            })
            .collect();
        for ((at, operator, _), point) in compressed.into_iter().zip(points) {
            match point {
                Some(point) => settled[at].decoded.push((operator, point)),
                None => settled[at].invalid.push(operator),
            }
        }
        for one in &mut settled {
            one.decoded.sort_by_key(|(operator, _)| *operator);
        }
        cpu::measure_items(meter, CryptoWork::Recover, candidates.len(), || {
            self.interpolate_and_verify(&candidates, &mut settled)
        });
        for one in &mut settled {
            one.invalid.sort_unstable();
        }
        settled
    }

    fn interpolate_and_verify(&mut self, candidates: &[Candidate<'_>], settled: &mut [Settled]) {
        let threshold = self.threshold;
        // Interpolate each candidate with a threshold of partials (lowest share indices).
        let ready: Vec<usize> = (0..candidates.len())
            .filter(|at| settled[*at].decoded.len() >= threshold)
            .collect();
        let jobs: Vec<(Arc<Weights>, Vec<G2>)> = ready
            .iter()
            .map(|at| {
                let used = &settled[*at].decoded[..threshold];
                let indices: Vec<u32> = used.iter().map(|(operator, _)| *operator).collect();
                let points = used.iter().map(|(_, point)| *point).collect();
                (self.weights(&indices), points)
            })
            .collect();
        let recovered = self
            .parallel
            .map(&jobs, |(weights, points)| weights.interpolate(points));

        // Check the recovered signatures in one batch per root.
        self.hash(
            ready
                .iter()
                .map(|at| (candidates[*at].slot, candidates[*at].root)),
        );
        let mut by_root: BTreeMap<(u64, [u8; 32]), ChecksOnRoot> = BTreeMap::new();
        for (at, signature) in ready.iter().zip(recovered) {
            let candidate = &candidates[*at];
            by_root
                .entry((candidate.slot, candidate.root))
                .or_default()
                .push((
                    *at,
                    Check {
                        public: *candidate.sharing.public(),
                        signature,
                    },
                ));
        }
        let mut failed = Vec::new();
        for ((slot, root), items) in by_root {
            let hashed = self.hashed(slot, &root);
            let checks: Vec<Check> = items.iter().map(|(_, check)| *check).collect();
            let bad: BTreeSet<usize> =
                verify_same_root(&mut self.rng, &self.parallel, &hashed, &checks)
                    .into_iter()
                    .collect();
            for (position, (at, check)) in items.into_iter().enumerate() {
                if bad.contains(&position) {
                    failed.push(at);
                } else {
                    settled[at].signature = Some(check.signature);
                }
            }
        }

        // A recovered signature that fails: some partial is bad. Check each one alone.
        for at in failed {
            let candidate = &candidates[at];
            let hashed = self.hashed(candidate.slot, &candidate.root);
            let partials = std::mem::take(&mut settled[at].decoded);
            let valid = self.parallel.map(&partials, |(operator, point)| {
                candidate
                    .sharing
                    .partial_public(commonware_utils::Participant::new(*operator))
                    .is_ok_and(|public| MinPk::verify(&public, &hashed, point).is_ok())
            });
            let mut good = Vec::with_capacity(partials.len());
            for (partial, valid) in partials.into_iter().zip(valid) {
                if valid {
                    good.push(partial);
                } else {
                    settled[at].invalid.push(partial.0);
                }
            }
            if good.len() >= threshold {
                let used = &good[..threshold];
                let indices: Vec<u32> = used.iter().map(|(operator, _)| *operator).collect();
                let points: Vec<G2> = used.iter().map(|(_, point)| *point).collect();
                let signature = self.weights(&indices).interpolate(&points);
                // Every partial used checked out alone, so this holds unless indices repeat;
                // checked all the same, as nothing unverified leaves the runner.
                if MinPk::verify(candidate.sharing.public(), &hashed, &signature).is_ok() {
                    settled[at].signature = Some(signature);
                }
            }
            settled[at].decoded = good;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{verify::batch_holds, *};
    use cohort_ingress::keys::{self, Partial, interop_secret, sign, split};
    use commonware_cryptography::bls12381::primitives::ops::threshold;
    use commonware_math::algebra::Additive as _;
    use commonware_utils::Participant;
    use rand::SeedableRng as _;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(9)
    }

    /// Every `size`-subset of `0..n`, ascending.
    fn subsets(n: u32, size: usize) -> Vec<Vec<u32>> {
        let mut all = Vec::new();
        for mask in 0u32..(1 << n) {
            if mask.count_ones() as usize == size {
                all.push((0..n).filter(|i| mask & (1 << i) != 0).collect());
            }
        }
        all
    }

    #[test]
    fn signing_from_the_hashed_root_equals_signing_the_root() {
        let split = split(&mut commonware_utils::test_rng(), &interop_secret(3), 4, 3).unwrap();
        let root = [5u8; 32];
        let hashed = hash_root(&root);
        for share in &split.shares {
            assert_eq!(
                sign_hashed(share, &hashed),
                keys::sign_partial(share, &root).value
            );
        }
    }

    #[test]
    fn recovery_with_precomputed_weights_equals_commonwares_for_every_set_of_signers() {
        let mut test_rng = commonware_utils::test_rng();
        for (n, t) in [(4u32, 3usize), (7, 5), (10, 7), (13, 9)] {
            let split = split(&mut test_rng, &interop_secret(11), n, t as u32).unwrap();
            let root = [n as u8; 32];
            let partials: Vec<Partial> = split
                .shares
                .iter()
                .map(|share| keys::sign_partial(share, &root))
                .collect();
            let expected = sign(&interop_secret(11), &root);
            let mut small = 0;
            for set in subsets(n, t) {
                let chosen: Vec<Partial> =
                    set.iter().map(|i| partials[*i as usize].clone()).collect();
                let theirs =
                    threshold::recover::<MinPk, _>(&split.sharing, &chosen, &Sequential).unwrap();
                let points: Vec<G2> = chosen.iter().map(|p| p.value).collect();
                let weights = Weights::of(&set);
                small += usize::from(matches!(weights, Weights::Small { .. }));
                assert_eq!(weights.interpolate(&points), theirs, "{n} of {set:?}");
                assert_eq!(Weights::full(&set).interpolate(&points), theirs);
                assert_eq!(theirs, expected);
            }
            assert!(small > 0, "no small weights for {n} operators");
        }
    }

    fn checks(count: u64, root: &[u8; 32]) -> Vec<Check> {
        (0..count)
            .map(|v| {
                let secret = interop_secret(v);
                Check {
                    public: commonware_cryptography::bls12381::primitives::ops::compute_public::<
                        MinPk,
                    >(&secret),
                    signature: sign(&secret, root),
                }
            })
            .collect()
    }

    #[test]
    fn a_batch_of_valid_signatures_verifies() {
        let root = [1u8; 32];
        let hashed = hash_root(&root);
        for count in [1, 2, 7, 32] {
            let checks = checks(count, &root);
            assert!(
                verify_same_root(&mut rng(), &Parallel::Sequential, &hashed, &checks).is_empty()
            );
            assert!(
                verify_same_root(&mut rng(), &Parallel::with_threads(2), &hashed, &checks)
                    .is_empty()
            );
        }
    }

    #[test]
    fn one_bad_signature_fails_the_batch_and_bisection_finds_exactly_the_bad_ones() {
        let root = [1u8; 32];
        let hashed = hash_root(&root);
        let valid = checks(20, &root);
        let other = sign(&interop_secret(0), &[2u8; 32]);
        // Every single position, then a few sets, bad in different ways.
        let mut cases: Vec<Vec<usize>> = (0..20).map(|i| vec![i]).collect();
        cases.extend([
            vec![0, 19],
            vec![3, 4, 5],
            vec![1, 7, 8, 15],
            (0..20).collect(),
        ]);
        for bad in cases {
            let mut batch = valid.clone();
            for (n, at) in bad.iter().enumerate() {
                batch[*at].signature = match n % 3 {
                    0 => other,                          // over another root
                    1 => valid[(at + 1) % 20].signature, // another validator's
                    _ => G2::zero(),                     // the identity
                };
            }
            assert!(!batch_holds(
                &mut rng(),
                &Parallel::Sequential,
                &hashed,
                &batch
            ));
            assert_eq!(
                verify_same_root(&mut rng(), &Parallel::Sequential, &hashed, &batch),
                bad
            );
            assert_eq!(
                verify_same_root(&mut rng(), &Parallel::with_threads(2), &hashed, &batch),
                bad
            );
        }
    }

    #[test]
    fn a_batch_names_undecodable_and_wrong_partials_and_still_recovers() {
        let mut test_rng = commonware_utils::test_rng();
        let root = [4u8; 32];
        let splits: Vec<_> = (0..6u64)
            .map(|v| split(&mut test_rng, &interop_secret(v), 4, 3).unwrap())
            .collect();
        let mut crypto = Crypto::new(Parallel::Sequential, rng());
        crypto.set_threshold(3);
        let candidates: Vec<Candidate<'_>> = splits
            .iter()
            .enumerate()
            .map(|(v, split)| {
                let partial =
                    |i: usize, root: &[u8; 32]| keys::sign_partial(&split.shares[i], root);
                let mut compressed: Vec<(u32, [u8; 96])> = (1..4)
                    .map(|i| (i as u32, keys::signature_bytes(&partial(i, &root).value)))
                    .collect();
                match v {
                    // Operator 1 signs another root; operator 3 sends bytes that are no point.
                    2 => compressed[0].1 = keys::signature_bytes(&partial(1, &[9; 32]).value),
                    4 => compressed[2].1 = [0xab; 96],
                    _ => {}
                }
                Candidate {
                    slot: 1,
                    root,
                    sharing: &split.sharing,
                    decoded: vec![(0, partial(0, &root).value)],
                    compressed,
                }
            })
            .collect();
        let settled = crypto.recover(candidates, &None);
        for (v, one) in settled.iter().enumerate() {
            let expected_invalid = match v {
                2 => vec![1],
                4 => vec![3],
                _ => vec![],
            };
            assert_eq!(one.invalid, expected_invalid, "validator {v}");
            assert_eq!(
                one.signature,
                Some(sign(&interop_secret(v as u64), &root)),
                "validator {v}"
            );
            assert!(
                one.decoded
                    .iter()
                    .all(|(o, _)| !expected_invalid.contains(o))
            );
        }
        let _ = Participant::new(0);
    }
}
