//! A falsifier: projected gradient ascent (PGD, Madry et al. 2018) on the
//! property's margin, with seeded random restarts. It can only answer "a
//! counterexample exists"; not finding one proves nothing.
//!
//! For a conjunction of atoms `h_k(x, f(x)) ≥ 0`, each step moves every
//! restart along the sign of `∇ₓ min_k h_k` (the most violated atom) and
//! projects back onto the box: `x ← Π_box(x + α · sign ∇ₓ h_k*(x))`, with the
//! step `α` shrinking from a quarter of the box width.
//!
//! Sign steps stall where the counterexample region is far smaller than the
//! step (ACAS Xu 5_3 φ2's best margin is below 1e-4 in a box of width ~0.1),
//! so the best endpoints are then refined by [`local_search`], a
//! derivative-free (1+λ) evolution strategy with step-size adaptation
//! (Rechenberg 1973; Beyer & Schwefel 2002, "Evolution strategies", §4).

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
    /// Best PGD endpoints refined by [`local_search`] (0: none).
    pub refine_starts: usize,
    /// Margin evaluations each refinement may spend.
    pub refine_evals: usize,
}

impl Default for AttackOptions {
    fn default() -> Self {
        AttackOptions {
            restarts: 16,
            steps: 50,
            seed: 0,
            refine_starts: 8,
            refine_evals: 100_000,
        }
    }
}

/// xorshift64* in [0, 1): small, seeded, reproducible.
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    /// A generator whose stream is fixed by `seed`.
    pub(crate) fn seeded(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Candidates drawn per generation of [`local_search`].
const LAMBDA: usize = 32;

/// Maximises `margin` over the box `[lo, hi]` from `x0` with a (1+λ)
/// evolution strategy: each generation draws λ points
/// `x + σ (hi − lo) ⊙ u`, `u ~ U[−1, 1]ⁿ`, clamped to the box; the parent
/// moves to the best of them when it improves on it (then `σ ← 1.5σ`),
/// otherwise `σ ← 0.99σ`. Returns the first point whose margin is `≥ 0`;
/// `None` after `evals` evaluations, once `σ < 1e-10`, or when `stop()`.
///
/// `margin` evaluates a batch (one point per row) and returns one value per
/// row, `min_k h_k(x, f(x))` over the property's atoms.
pub(crate) fn local_search(
    margin: &mut dyn FnMut(&Array2<f64>) -> Result<Vec<f64>>,
    lo: &[f64],
    hi: &[f64],
    x0: &[f64],
    evals: usize,
    rng: &mut Rng,
    stop: &dyn Fn() -> bool,
) -> Result<Option<Vec<f64>>> {
    let n = lo.len();
    let mut x = x0.to_vec();
    let mut best = margin(&Array2::from_shape_vec((1, n), x.clone()).map_err(shape)?)?[0];
    if best >= 0.0 {
        return Ok(Some(x));
    }
    let mut sigma = 0.05;
    let mut spent = 1;
    let mut cand = Array2::<f64>::zeros((LAMBDA, n));
    while spent < evals && sigma >= 1e-10 && !stop() {
        for mut row in cand.rows_mut() {
            for i in 0..n {
                let u = 2.0 * rng.next() - 1.0;
                row[i] = (x[i] + sigma * (hi[i] - lo[i]) * u).clamp(lo[i], hi[i]);
            }
        }
        let m = margin(&cand)?;
        spent += LAMBDA;
        let (k, mk) = m
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(k, v)| (k, *v))
            .unwrap_or((0, f64::NEG_INFINITY));
        if mk > best {
            best = mk;
            x = cand.row(k).to_vec();
            if best >= 0.0 {
                return Ok(Some(x));
            }
            sigma = (sigma * 1.5).min(0.5);
        } else {
            sigma *= 0.99;
        }
    }
    Ok(None)
}

fn shape(e: ndarray::ShapeError) -> Error {
    Error::InvalidArgument(format!("local search batch: {e}"))
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
    let mut rng = Rng::seeded(opts.seed);
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
    // The best point each row has visited, and its margin.
    let mut best: Vec<(f64, Vec<f64>)> = vec![(f64::NEG_INFINITY, Vec::new()); rows];
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
            if v > best[r].0 {
                best[r] = (v, xr);
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
    best.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut margin = |pts: &Array2<f64>| -> Result<Vec<f64>> {
        let y = net.forward::<f64>(pts.view())?;
        Ok((0..pts.nrows())
            .map(|r| {
                let (xr, yr) = (pts.row(r).to_vec(), y.row(r).to_vec());
                let out = atoms.iter().map(|a| value(a, &xr, &yr));
                let inp = inputs.iter().map(|a| value(a, &xr, &[]));
                out.chain(inp).fold(f64::INFINITY, f64::min)
            })
            .collect())
    };
    let stop = || deadline.should_stop(cancel);
    for (_, x0) in best.iter().take(opts.refine_starts) {
        if x0.is_empty() {
            continue;
        }
        let found = local_search(&mut margin, lo, hi, x0, opts.refine_evals, &mut rng, &stop)?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A needle: the margin is positive only within 1e-6 (∞-norm) of `c`, a
    /// region that sign steps of a quarter of the box never land in.
    fn needle(pts: &Array2<f64>) -> Result<Vec<f64>> {
        let c = [0.3141, -0.2718, 0.5772];
        Ok(pts
            .outer_iter()
            .map(|r| {
                let d = r
                    .iter()
                    .zip(&c)
                    .fold(0.0f64, |m, (x, c)| m.max((x - c).abs()));
                1e-6 - d
            })
            .collect())
    }

    #[test]
    fn local_search_finds_a_needle_and_stops_when_asked() {
        let (lo, hi) = (vec![-1.0; 3], vec![1.0; 3]);
        let mut rng = Rng::seeded(7);
        let found = local_search(&mut needle, &lo, &hi, &[0.0; 3], 200_000, &mut rng, &|| {
            false
        })
        .unwrap()
        .expect("the needle is found");
        assert!(needle(&Array2::from_shape_vec((1, 3), found).unwrap()).unwrap()[0] >= 0.0);
        let none = local_search(&mut needle, &lo, &hi, &[0.0; 3], 200_000, &mut rng, &|| {
            true
        });
        assert!(none.unwrap().is_none());
    }

    #[test]
    fn local_search_respects_its_evaluation_budget() {
        let (lo, hi) = (vec![-1.0; 3], vec![1.0; 3]);
        let mut calls = 0usize;
        let mut never = |pts: &Array2<f64>| -> Result<Vec<f64>> {
            calls += pts.nrows();
            Ok(vec![-1.0; pts.nrows()])
        };
        let mut rng = Rng::seeded(1);
        let r = local_search(&mut never, &lo, &hi, &[0.0; 3], 1000, &mut rng, &|| false).unwrap();
        assert!(r.is_none());
        assert!(calls <= 1000 + LAMBDA, "{calls} evaluations");
    }
}
