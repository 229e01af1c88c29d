//! A falsifier: projected gradient ascent (PGD, Madry et al. 2018) on the
//! property's margin, with seeded random restarts. It can only answer "a
//! counterexample exists"; not finding one proves nothing.
//!
//! For a conjunction of atoms `h_k(x, f(x)) ≥ 0`, each step moves every
//! restart along the sign of `∇ₓ min_k h_k` (the most violated atom) and
//! projects back onto the box: `x ← Π_box(x + α · sign ∇ₓ h_k*(x))`, with the
//! step `α` shrinking from a quarter of the box width.

use ndarray::Array2;
use serde::Serialize;

use super::bab::{atoms, value};
use super::{CancelToken, Deadline};
use crate::model::{Network, Objective};
use crate::property::{LinearConstraint, Region};
use crate::{Error, Result};

/// Restarts and steps of an attack.
#[derive(Clone, Debug, Serialize)]
pub struct AttackOptions {
    /// Random starting points (plus the box centre).
    pub restarts: usize,
    /// Gradient steps per start.
    pub steps: usize,
    /// Seed of the starting points.
    pub seed: u64,
}

impl Default for AttackOptions {
    fn default() -> Self {
        AttackOptions {
            restarts: 16,
            steps: 50,
            seed: 0,
        }
    }
}

/// xorshift64* in [0, 1): small, seeded, reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Searches `region` for an input whose output satisfies every atom of `conj`;
/// `None` when none was found within the steps, the deadline or a cancel.
pub fn pgd(
    net: &Network,
    region: &Region,
    conj: &[LinearConstraint],
    opts: &AttackOptions,
    deadline: &Deadline,
    cancel: &CancelToken,
) -> Result<Option<Vec<f64>>> {
    let n_in = net.input_len();
    let n_out = net.output_len();
    let inputs = atoms(&region.input_constraints, n_in, n_out);
    let atoms = atoms(conj, n_in, n_out);
    if atoms.is_empty() {
        return Ok(None);
    }
    let (lo, hi) = (&region.input.lower, &region.input.upper);
    let mut rng = Rng(opts.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let rows = opts.restarts + 1;
    let mut x = Array2::<f64>::zeros((rows, n_in));
    for r in 0..rows {
        for i in 0..n_in {
            x[[r, i]] = if r == 0 {
                0.5 * (lo[i] + hi[i])
            } else {
                lo[i] + rng.next() * (hi[i] - lo[i])
            };
        }
    }
    for step in 0..=opts.steps {
        if deadline.should_stop(cancel) {
            return Ok(None);
        }
        let y = net.forward::<f64>(x.view())?;
        // Which atom is the most violated, per row; a row where none is, is a counterexample.
        let mut worst = vec![0usize; rows];
        for (r, w) in worst.iter_mut().enumerate() {
            let xr = x.row(r).to_vec();
            let yr = y.row(r).to_vec();
            let vals: Vec<f64> = atoms.iter().map(|a| value(a, &xr, &yr)).collect();
            let (k, v) = vals
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(b.1))
                .map(|(k, v)| (k, *v))
                .unwrap_or((0, 0.0));
            if v >= 0.0 && inputs.iter().all(|a| value(a, &xr, &[]) >= 0.0) {
                return Ok(Some(xr));
            }
            *w = k;
        }
        if step == opts.steps {
            break;
        }
        // ∇ₓ h_k for every atom on the whole batch, then each row takes its worst atom's.
        let mut grads = Vec::with_capacity(atoms.len());
        for a in &atoms {
            let g = net.gradient::<f64>(x.view(), &Objective::Linear(a.cy.clone()), 0)?;
            grads.push(g.grad);
        }
        let alpha = 0.25 * (1.0 - step as f64 / opts.steps.max(1) as f64).max(0.05);
        for r in 0..rows {
            let k = worst[r];
            for i in 0..n_in {
                let g = grads[k][[r, i]] + atoms[k].cx[i];
                let v = x[[r, i]] + alpha * (hi[i] - lo[i]) * g.signum();
                x[[r, i]] = v.clamp(lo[i], hi[i]);
            }
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(
                "the attack produced a non-finite point".into(),
            ));
        }
    }
    Ok(None)
}
