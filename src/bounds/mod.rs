//! Sound bounds on every activation of a network over an input box.
//!
//! * [`interval`]: interval bound propagation (IBP), layer by layer.
//! * [`crown`]: symbolic linear bounds by back-substitution (CROWN /
//!   DeepPoly), intersected with IBP; much tighter on deep ReLU networks.
//! * [`mlp`]: the same for plain ReLU MLPs with tight loops, plus optimised
//!   slopes and split multipliers (alpha-/beta-CROWN), for branch and bound.
//!
//! Bounds are computed in `f64` and widened by an explicit margin for the
//! rounding of each floating-point operation (see [`FP_REL`]), so that every
//! point the network computes for an input in the box lies inside them. Tight
//! pre-activation bounds are the main lever on MILP speed: a ReLU whose input
//! bounds do not straddle zero is *stable* and needs no binary variable.

pub mod crown;
pub mod interval;
pub mod mlp;

pub use crown::{bound_linear, crown, crown_intermediate};
pub use interval::interval;
pub use mlp::Mlp;

use serde::Serialize;

use crate::model::{Layer, Network};

/// Relative rounding allowance per accumulated term: a dot product of `n`
/// terms in `f64` is off by at most `γ_n · Σ|aᵢbᵢ|` with `γ_n = n·u / (1 − n·u)`,
/// `u = 2⁻⁵³` (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1).
/// The bounds add `(n + 2) · FP_REL · magnitude` on each side; `FP_REL` is
/// `f64::EPSILON` (= 2u), twice the unit round-off, for headroom.
pub const FP_REL: f64 = f64::EPSILON;

/// Absolute allowance added to every bound (covers underflow near zero).
pub const FP_ABS: f64 = 1e-300;

/// Lower and upper bounds of one activation (flattened).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bounds {
    /// Element-wise lower bounds.
    pub lower: Vec<f64>,
    /// Element-wise upper bounds.
    pub upper: Vec<f64>,
}

impl Bounds {
    /// Bounds of `n` elements from two vectors (lengths must agree).
    pub fn new(lower: Vec<f64>, upper: Vec<f64>) -> Bounds {
        debug_assert_eq!(lower.len(), upper.len());
        Bounds { lower, upper }
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.lower.len()
    }
    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.lower.is_empty()
    }
    /// Whether `x` lies inside (with slack `tol`).
    pub fn contains(&self, x: &[f64], tol: f64) -> bool {
        x.len() == self.len()
            && x.iter()
                .zip(self.lower.iter().zip(&self.upper))
                .all(|(v, (l, u))| *v >= l - tol && *v <= u + tol)
    }
    /// Mean width `mean(u − l)`.
    pub fn mean_width(&self) -> f64 {
        if self.is_empty() {
            return 0.0;
        }
        self.lower
            .iter()
            .zip(&self.upper)
            .map(|(l, u)| u - l)
            .sum::<f64>()
            / self.len() as f64
    }
    /// Keeps, element-wise, the tighter of two sound bounds.
    pub fn intersect(&mut self, other: &Bounds) {
        for (l, o) in self.lower.iter_mut().zip(&other.lower) {
            *l = l.max(*o);
        }
        for (u, o) in self.upper.iter_mut().zip(&other.upper) {
            *u = u.min(*o);
        }
    }
}

/// Bounds on every activation: `activations[0]` is the input box and
/// `activations[i + 1]` bounds the output of layer `i`.
#[derive(Clone, Debug, Serialize)]
pub struct NetworkBounds {
    /// One entry per activation.
    pub activations: Vec<Bounds>,
}

impl NetworkBounds {
    /// Bounds on the network's output.
    pub fn output(&self) -> &Bounds {
        &self.activations[self.activations.len() - 1]
    }

    /// Counts of (stable active, stable inactive, unstable) ReLU neurons: a ReLU
    /// in layer `i` is unstable when its input bounds `l < 0 < u`.
    pub fn relu_stability(&self, net: &Network) -> (usize, usize, usize) {
        let (mut active, mut inactive, mut unstable) = (0, 0, 0);
        for (i, layer) in net.layers().iter().enumerate() {
            if !matches!(layer, Layer::Relu) {
                continue;
            }
            let b = &self.activations[i];
            for (l, u) in b.lower.iter().zip(&b.upper) {
                if *l >= 0.0 {
                    active += 1;
                } else if *u <= 0.0 {
                    inactive += 1;
                } else {
                    unstable += 1;
                }
            }
        }
        (active, inactive, unstable)
    }
}
