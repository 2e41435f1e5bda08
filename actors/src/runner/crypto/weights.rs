//! Lagrange weights at zero for a set of signers, and interpolation with them.
//!
//! For a cluster's small share indices the weights are small rationals, so a recovered
//! signature is one multi-scalar multiplication with integer coefficients of a few bits, times
//! the inverse of their common denominator when it is not one; larger index sets fall back to
//! full-width scalars.

use commonware_cryptography::bls12381::primitives::group::{G2, Scalar};
use commonware_math::algebra::{Additive as _, Field as _, Space as _};
use commonware_parallel::Sequential;

/// Lagrange coefficients at zero for one set of share indices (in ascending order).
#[derive(Clone, Debug)]
pub enum Weights {
    /// `coefficients / denominator`, the coefficients small integers (the usual case for a
    /// cluster's indices): a few doublings and additions, then one multiplication by the
    /// denominator's inverse if it is not one.
    Small {
        coefficients: Vec<i64>,
        denominator_inverse: Option<Scalar>,
    },
    /// Full-width coefficients, for index sets whose integers would not stay small.
    Full(Vec<Scalar>),
}

impl Weights {
    /// The weights of share indices `indices` (0-based; share `i` is the evaluation at `i + 1`).
    pub fn of(indices: &[u32]) -> Self {
        let xs: Vec<i128> = indices.iter().map(|i| i128::from(*i) + 1).collect();
        small_weights(&xs).unwrap_or_else(|| Self::Full(full_weights(&xs)))
    }

    /// The same weights at full width (what [`Weights::Small`] stands for).
    pub fn full(indices: &[u32]) -> Self {
        let xs: Vec<i128> = indices.iter().map(|i| i128::from(*i) + 1).collect();
        Self::Full(full_weights(&xs))
    }

    /// The point the partials interpolate to at zero: the validator's signature.
    pub fn interpolate(&self, points: &[G2]) -> G2 {
        match self {
            Self::Small {
                coefficients,
                denominator_inverse,
            } => {
                let sum = small_msm(points, coefficients);
                match denominator_inverse {
                    Some(inverse) => sum * inverse,
                    None => sum,
                }
            }
            Self::Full(scalars) => G2::msm(points, scalars, &Sequential),
        }
    }
}

fn gcd(a: i128, b: i128) -> i128 {
    let (mut a, mut b) = (a.abs(), b.abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `λ_j = Π_{k≠j} x_k / Π_{k≠j} (x_k - x_j)` over a common denominator, if every number stays
/// within 62 bits.
fn small_weights(xs: &[i128]) -> Option<Weights> {
    let mut fractions = Vec::with_capacity(xs.len());
    for (j, xj) in xs.iter().enumerate() {
        let (mut numerator, mut denominator) = (1i128, 1i128);
        for (k, xk) in xs.iter().enumerate() {
            if k != j {
                numerator = numerator.checked_mul(*xk)?;
                denominator = denominator.checked_mul(xk - xj)?;
            }
        }
        if denominator == 0 {
            return None; // Repeated index: not a valid set of signers.
        }
        let divisor = gcd(numerator, denominator);
        let sign = denominator.signum();
        fractions.push((sign * numerator / divisor, sign * denominator / divisor));
    }
    let mut common = 1i128;
    for (_, denominator) in &fractions {
        common = common.checked_mul(denominator / gcd(common, *denominator))?;
    }
    const LIMIT: i128 = 1 << 62;
    if common >= LIMIT {
        return None;
    }
    let coefficients = fractions
        .iter()
        .map(|(numerator, denominator)| {
            let coefficient = numerator.checked_mul(common / denominator)?;
            (coefficient.abs() < LIMIT).then_some(coefficient as i64)
        })
        .collect::<Option<Vec<i64>>>()?;
    let denominator_inverse = (common != 1).then(|| Scalar::from_u64(common as u64).inv());
    Some(Weights::Small {
        coefficients,
        denominator_inverse,
    })
}

fn signed_scalar(value: i128) -> Scalar {
    let magnitude = Scalar::from_u64(value.unsigned_abs() as u64);
    if value < 0 { -magnitude } else { magnitude }
}

fn full_weights(xs: &[i128]) -> Vec<Scalar> {
    xs.iter()
        .enumerate()
        .map(|(j, xj)| {
            let mut numerator = Scalar::from_u64(1);
            let mut denominator = Scalar::from_u64(1);
            for (k, xk) in xs.iter().enumerate() {
                if k != j {
                    numerator *= &signed_scalar(*xk);
                    denominator *= &signed_scalar(xk - xj);
                }
            }
            numerator * &denominator.inv()
        })
        .collect()
}

/// `Σ c_j P_j` for small signed `c_j`, doubling once per bit for all points together.
fn small_msm(points: &[G2], coefficients: &[i64]) -> G2 {
    let terms: Vec<(G2, u64)> = points
        .iter()
        .zip(coefficients)
        .map(|(point, c)| {
            if *c < 0 {
                (-*point, c.unsigned_abs())
            } else {
                (*point, c.unsigned_abs())
            }
        })
        .collect();
    let top = terms.iter().map(|(_, c)| *c).max().unwrap_or(0);
    let bits = u64::BITS - top.leading_zeros();
    let mut sum = G2::zero();
    for bit in (0..bits).rev() {
        let twice = sum;
        sum += &twice;
        for (point, c) in &terms {
            if (c >> bit) & 1 == 1 {
                sum += point;
            }
        }
    }
    sum
}
