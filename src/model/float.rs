//! The two float types the engine computes in, and the matrix product both use.

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{AddAssign, MulAssign, SubAssign};

use faer::{Accum, MatMut, MatRef, Par};

use super::network::{Layer, Network};

/// Work above which a matrix product is split over rayon's threads.
const PARALLEL_FLOPS: usize = 1 << 22;

/// `f32` (fast inference) or `f64` (what the solvers and the gradient checks need).
pub trait Float:
    num_traits::Float
    + Copy
    + Default
    + Debug
    + Send
    + Sync
    + Sum
    + AddAssign
    + SubAssign
    + MulAssign
    + serde::Serialize
    + 'static
{
    /// `"f32"` or `"f64"`.
    const NAME: &'static str;
    /// Conversion from `f64` (rounds to nearest for `f32`).
    fn from_f64(v: f64) -> Self;
    /// Conversion to `f64` (exact).
    fn as_f64(self) -> f64;
    /// The network's layers with parameters in this type.
    fn layers(net: &Network) -> &[Layer<Self>];
    /// `C = A · B (+ C if accumulate)` for row-major `A: m×k`, `B: k×n`, `C: m×n`,
    /// where `A` (resp. `B`) is read transposed when `a_t` (resp. `b_t`) is set
    /// (then it is stored `k×m`, resp. `n×k`).
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        n: usize,
        k: usize,
        a: &[Self],
        a_t: bool,
        b: &[Self],
        b_t: bool,
        c: &mut [Self],
        accumulate: bool,
    );
}

macro_rules! impl_float {
    ($t:ty, $name:literal, $field:ident) => {
        impl Float for $t {
            const NAME: &'static str = $name;
            #[inline]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline]
            fn as_f64(self) -> f64 {
                self as f64
            }
            fn layers(net: &Network) -> &[Layer<Self>] {
                &net.$field
            }
            fn gemm(
                m: usize,
                n: usize,
                k: usize,
                a: &[Self],
                a_t: bool,
                b: &[Self],
                b_t: bool,
                c: &mut [Self],
                accumulate: bool,
            ) {
                debug_assert_eq!(a.len(), m * k);
                debug_assert_eq!(b.len(), k * n);
                debug_assert_eq!(c.len(), m * n);
                if m == 0 || n == 0 {
                    return;
                }
                let a = if a_t {
                    MatRef::from_row_major_slice(a, k, m).transpose()
                } else {
                    MatRef::from_row_major_slice(a, m, k)
                };
                let b = if b_t {
                    MatRef::from_row_major_slice(b, n, k).transpose()
                } else {
                    MatRef::from_row_major_slice(b, k, n)
                };
                let c = MatMut::from_row_major_slice_mut(c, m, n);
                let acc = if accumulate {
                    Accum::Add
                } else {
                    Accum::Replace
                };
                let par = if m * n * k >= PARALLEL_FLOPS && rayon::current_num_threads() > 1 {
                    Par::rayon(0)
                } else {
                    Par::Seq
                };
                faer::linalg::matmul::matmul(c, acc, a, b, 1.0, par);
            }
        }
    };
}

impl_float!(f32, "f32", layers32);
impl_float!(f64, "f64", layers64);

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
            }
        }
        c
    }

    fn transpose(r: usize, c: usize, x: &[f64]) -> Vec<f64> {
        let mut t = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                t[j * r + i] = x[i * c + j];
            }
        }
        t
    }

    #[test]
    fn gemm_matches_naive_in_every_transpose_combination() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.91).cos()).collect();
        let want = naive(m, n, k, &a, &b);
        let at = transpose(m, k, &a);
        let bt = transpose(k, n, &b);
        for (aa, a_t) in [(&a, false), (&at, true)] {
            for (bb, b_t) in [(&b, false), (&bt, true)] {
                let mut c = vec![1.0; m * n];
                f64::gemm(m, n, k, aa, a_t, bb, b_t, &mut c, false);
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-12);
                }
                let mut c = vec![1.0; m * n];
                f64::gemm(m, n, k, aa, a_t, bb, b_t, &mut c, true);
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - 1.0 - y).abs() < 1e-12);
                }
            }
        }
    }
}
