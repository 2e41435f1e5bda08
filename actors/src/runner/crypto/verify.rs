//! Batch verification of signatures over one hashed root with random linear combinations, and
//! bisection to find the bad ones when a batch fails.

use super::Parallel;
use blst::{
    blst_fp12, blst_fp12_finalverify, blst_miller_loop, blst_p1, blst_p1_add_or_double,
    blst_p1_affine, blst_p1_affine_generator, blst_p1_is_inf, blst_p1_to_affine,
    blst_p1s_mult_pippenger, blst_p1s_mult_pippenger_scratch_sizeof, blst_p2,
    blst_p2_add_or_double, blst_p2_affine, blst_p2_is_inf, blst_p2_to_affine,
    blst_p2s_mult_pippenger, blst_p2s_mult_pippenger_scratch_sizeof, limb_t,
};
use cohort_ingress::keys::{Signature, ValidatorPublicKey};
use commonware_cryptography::bls12381::primitives::{
    group::{G1, G2},
    variant::{MinPk, Variant},
};
use commonware_math::algebra::Additive as _;
use rand::{Rng as _, rngs::StdRng};

/// One signature to check against a public key, over a root already hashed.
#[derive(Clone, Copy)]
pub struct Check {
    pub public: ValidatorPublicKey,
    pub signature: Signature,
}

/// Bits of each random scalar of a batch check: a batch with a bad signature passes with
/// probability at most 2^-64 (the width Ethereum consensus clients batch gossip signatures with).
const BATCH_SCALAR_BITS: usize = 64;

/// Below this many points a multi-scalar multiplication is not split over threads.
const MIN_POINTS_PER_THREAD: usize = 32;

/// blst's `*s_mult_pippenger`: the sum, the points, how many, the scalars, their bits, scratch.
type MultFn<Affine, Sum> = unsafe extern "C" fn(
    *mut Sum,
    *const *const Affine,
    usize,
    *const *const u8,
    usize,
    *mut limb_t,
);
/// blst's `*_add_or_double`: the sum, then the two points added.
type AddFn<Sum> = unsafe extern "C" fn(*mut Sum, *const Sum, *const Sum);

/// The blst calls a multi-scalar multiplication makes in one group, so one piece of code serves
/// G1 (public keys) and G2 (signatures). Implemented on the group's affine point type.
trait Pippenger: Sized + Sync {
    /// A projective point: the sum.
    type Sum: Default + Send + Sync;
    const SCRATCH_SIZEOF: unsafe extern "C" fn(usize) -> usize;
    const MULT: MultFn<Self, Self::Sum>;
    const ADD_OR_DOUBLE: AddFn<Self::Sum>;
}

impl Pippenger for blst_p1_affine {
    type Sum = blst_p1;
    const SCRATCH_SIZEOF: unsafe extern "C" fn(usize) -> usize =
        blst_p1s_mult_pippenger_scratch_sizeof;
    const MULT: MultFn<Self, blst_p1> = blst_p1s_mult_pippenger;
    const ADD_OR_DOUBLE: AddFn<blst_p1> = blst_p1_add_or_double;
}

impl Pippenger for blst_p2_affine {
    type Sum = blst_p2;
    const SCRATCH_SIZEOF: unsafe extern "C" fn(usize) -> usize =
        blst_p2s_mult_pippenger_scratch_sizeof;
    const MULT: MultFn<Self, blst_p2> = blst_p2s_mult_pippenger;
    const ADD_OR_DOUBLE: AddFn<blst_p2> = blst_p2_add_or_double;
}

/// `Σ s_i P_i` for affine points and 64-bit little-endian scalars, by Pippenger's method.
fn msm_64<P: Pippenger>(points: &[P], scalars: &[[u8; 8]]) -> P::Sum {
    let mut sum = P::Sum::default();
    if points.is_empty() {
        return sum;
    }
    let bytes: Vec<u8> = scalars.iter().flatten().copied().collect();
    let points_at: [*const P; 2] = [points.as_ptr(), std::ptr::null()];
    let scalars_at: [*const u8; 2] = [bytes.as_ptr(), std::ptr::null()];
    // SAFETY: `points` and `bytes` are contiguous arrays of `points.len()` points and scalars
    // of 8 bytes (a null second pointer tells blst so); `scratch` has the size blst asks for.
    unsafe {
        let words = (P::SCRATCH_SIZEOF)(points.len()).div_ceil(8);
        let mut scratch: Vec<limb_t> = vec![0; words.max(1)];
        (P::MULT)(
            &mut sum,
            points_at.as_ptr(),
            points.len(),
            scalars_at.as_ptr(),
            BATCH_SCALAR_BITS,
            scratch.as_mut_ptr(),
        );
    }
    sum
}

impl Parallel {
    /// Splits `0..len` into one range per thread (one range when small or sequential).
    fn ranges(&self, len: usize) -> Vec<std::ops::Range<usize>> {
        let parts = self.threads().min(len / MIN_POINTS_PER_THREAD).max(1);
        let size = len.div_ceil(parts);
        (0..parts)
            .map(|part| part * size..((part + 1) * size).min(len))
            .filter(|range| !range.is_empty())
            .collect()
    }

    /// [`msm_64`] with one share of the points per thread, the shares' sums added at the end.
    fn msm_64<P: Pippenger>(&self, points: &[P], scalars: &[[u8; 8]]) -> P::Sum {
        let parts = self.map(&self.ranges(points.len()), |range| {
            msm_64(&points[range.clone()], &scalars[range.clone()])
        });
        let mut sum = P::Sum::default();
        for part in &parts {
            // SAFETY: valid points; blst allows the output to alias the first input.
            unsafe {
                let at = &raw mut sum;
                (P::ADD_OR_DOUBLE)(at, at, part)
            };
        }
        sum
    }
}

/// Whether every signature in `checks` verifies over `hashed`, in one random linear
/// combination: `e(Σ r_i pk_i, H) = e(g1, Σ r_i σ_i)` with 64-bit `r_i` from `rng` (two
/// multi-scalar multiplications and two Miller loops sharing one final exponentiation).
/// Every public key is a validator's (trusted) and every signature a subgroup-checked point.
pub(super) fn batch_holds(
    rng: &mut StdRng,
    parallel: &Parallel,
    hashed: &G2,
    checks: &[Check],
) -> bool {
    if let [single] = checks {
        return MinPk::verify(&single.public, hashed, &single.signature).is_ok();
    }
    // The identity would drop out of the combination; alone it never verifies.
    if checks.is_empty() || checks.iter().any(|check| check.signature == G2::zero()) {
        return false;
    }
    let scalars: Vec<[u8; 8]> = checks
        .iter()
        .map(|_| {
            let mut scalar = [0u8; 8];
            rng.fill_bytes(&mut scalar);
            scalar
        })
        .collect();
    let publics: Vec<G1> = checks.iter().map(|check| check.public).collect();
    let signatures: Vec<G2> = checks.iter().map(|check| check.signature).collect();
    let publics = G1::batch_to_affine(&publics);
    let signatures = G2::batch_to_affine(&signatures);
    let public = parallel.msm_64(&publics, &scalars);
    let signature = parallel.msm_64(&signatures, &scalars);
    let hashed = G2::batch_to_affine(&[*hashed]);
    // SAFETY: every pointer is to a valid, initialised point or field element of the right
    // type; blst reads its inputs and writes only the outputs given.
    unsafe {
        if blst_p1_is_inf(&public) || blst_p2_is_inf(&signature) {
            return false;
        }
        let mut public_affine = blst_p1_affine::default();
        let mut signature_affine = blst_p2_affine::default();
        blst_p1_to_affine(&mut public_affine, &public);
        blst_p2_to_affine(&mut signature_affine, &signature);
        let mut left = blst_fp12::default();
        let mut right = blst_fp12::default();
        blst_miller_loop(&mut left, &hashed[0], &public_affine);
        blst_miller_loop(&mut right, &signature_affine, blst_p1_affine_generator());
        blst_fp12_finalverify(&left, &right)
    }
}

/// Positions (ascending) of the signatures in `checks` that do not verify over `hashed`: one
/// batch when all do; otherwise halves are checked the same way down to the bad ones.
pub fn verify_same_root(
    rng: &mut StdRng,
    parallel: &Parallel,
    hashed: &G2,
    checks: &[Check],
) -> Vec<usize> {
    let mut bad = Vec::new();
    if !checks.is_empty() && !batch_holds(rng, parallel, hashed, checks) {
        bisect(rng, parallel, hashed, checks, 0, &mut bad);
    }
    bad
}

/// `checks` failed as a whole: finds its bad members.
fn bisect(
    rng: &mut StdRng,
    parallel: &Parallel,
    hashed: &G2,
    checks: &[Check],
    offset: usize,
    bad: &mut Vec<usize>,
) {
    if checks.len() == 1 {
        bad.push(offset);
        return;
    }
    let (left, right) = checks.split_at(checks.len() / 2);
    for (half, at) in [(left, offset), (right, offset + left.len())] {
        if !batch_holds(rng, parallel, hashed, half) {
            bisect(rng, parallel, hashed, half, at, bad);
        }
    }
}
