//! The Carlini–Wagner ℓ2 attack (Carlini & Wagner 2017, "Towards Evaluating
//! the Robustness of Neural Networks").
//!
//! With the change of variables `x = l + (u − l) (tanh w + 1) / 2` (which keeps
//! `x` in the box `[l, u]` for every `w`), Adam minimises
//!
//! `‖x(w) − x₀‖₂² + c · max(m(x(w)), −κ)`
//!
//! where `m` is the goal's margin (`f_l − max_{j≠l} f_j` untargeted,
//! `max_{j≠t} f_j − f_t` targeted; the paper's f₆ on logits). A binary search
//! on `c` per sample follows each run: after a run that met the goal the upper
//! end becomes `c`, otherwise the lower end does, and `c` moves to the middle
//! (or grows ten-fold while no upper end is known). The result is the closest
//! iterate, over all runs, that met the goal (and lies within `eps` when one
//! is given). Elements whose box is unbounded are optimised directly (`x = w`);
//! elements whose box is a single point stay fixed.

use ndarray::{Array2, ArrayView2};
use serde::Serialize;

use super::{
    check_args, chunk_samples, finish, forward_batched, l2, loss_and_grad, AttackResult, Best,
    Clip, Goal, Norm,
};
use crate::model::Network;
use crate::{Error, Result};

/// Options of [`carlini_wagner`].
#[derive(Clone, Debug, Serialize)]
pub struct CwOptions {
    /// Adam steps per value of `c`.
    pub steps: usize,
    /// Values of `c` tried per sample (binary search steps).
    pub binary_steps: usize,
    /// The first `c`.
    pub initial_const: f64,
    /// Adam's learning rate (in `w` space).
    pub lr: f64,
    /// Confidence `κ ≥ 0`: the margin is pushed down to `−κ`.
    pub kappa: f64,
    /// The box (bounded for the tanh change of variables).
    pub clip: Clip,
    /// Only points with `‖x − x₀‖₂ ≤ eps` are accepted, when given.
    pub eps: Option<f64>,
    /// Samples run through the network at once.
    pub batch: usize,
}

impl Default for CwOptions {
    fn default() -> Self {
        CwOptions {
            steps: 100,
            binary_steps: 9,
            initial_const: 1e-2,
            lr: 1e-2,
            kappa: 0.0,
            clip: Clip::None,
            eps: None,
            batch: 256,
        }
    }
}

/// How element `i` is parametrised.
#[derive(Clone, Copy)]
enum Param {
    /// `x = lo + half (tanh w + 1)`, `half = (hi − lo)/2`.
    Tanh { lo: f64, half: f64 },
    /// `x = w`, clamped into `[lo, hi]`.
    Direct { lo: f64, hi: f64 },
    /// `x = lo`.
    Fixed(f64),
}

impl Param {
    fn of(clip: &Clip, i: usize) -> Param {
        let (lo, hi) = clip.bounds(i);
        if lo == hi {
            Param::Fixed(lo)
        } else if lo.is_finite() && hi.is_finite() {
            Param::Tanh {
                lo,
                half: 0.5 * (hi - lo),
            }
        } else {
            Param::Direct { lo, hi }
        }
    }
    fn x(self, w: f64) -> f64 {
        match self {
            Param::Tanh { lo, half } => lo + half * (w.tanh() + 1.0),
            Param::Direct { lo, hi } => w.clamp(lo, hi),
            Param::Fixed(v) => v,
        }
    }
    fn dx_dw(self, w: f64) -> f64 {
        match self {
            Param::Tanh { half, .. } => {
                let t = w.tanh();
                half * (1.0 - t * t)
            }
            Param::Direct { .. } => 1.0,
            Param::Fixed(_) => 0.0,
        }
    }
    fn w(self, x: f64) -> f64 {
        match self {
            Param::Tanh { lo, half } => {
                let t = ((x - lo) / half - 1.0).clamp(-1.0 + 1e-9, 1.0 - 1e-9);
                t.atanh()
            }
            Param::Direct { .. } => x,
            Param::Fixed(_) => 0.0,
        }
    }
}

/// Carlini–Wagner ℓ2 on every sample (row of `x0`); see the module docs.
pub fn carlini_wagner(
    net: &Network,
    x0: ArrayView2<f64>,
    goals: &[Goal],
    opts: &CwOptions,
) -> Result<Vec<AttackResult>> {
    check_args(net, x0, goals, opts.eps, &opts.clip)?;
    if !(opts.initial_const.is_finite() && opts.initial_const > 0.0) {
        return Err(Error::InvalidArgument(format!(
            "the initial constant must be positive, got {}",
            opts.initial_const
        )));
    }
    if !(opts.lr.is_finite() && opts.lr > 0.0 && opts.kappa >= 0.0 && opts.kappa.is_finite()) {
        return Err(Error::InvalidArgument(
            "the learning rate must be positive and κ finite and ≥ 0".into(),
        ));
    }
    let n = x0.nrows();
    let n_in = net.input_len();
    let params: Vec<Param> = (0..n_in).map(|i| Param::of(&opts.clip, i)).collect();
    let y0 = forward_batched(net, x0, opts.batch)?;
    let mut best: Vec<Best> = (0..n)
        .map(|s| Best::start(&x0.row(s).to_vec(), goals[s].margin(&y0.row(s).to_vec())))
        .collect();
    let per = chunk_samples(opts.batch, 1);
    let (b1, b2, adam_eps) = (0.9f64, 0.999f64, 1e-8);
    let mut start = 0;
    while start < n {
        let end = (start + per).min(n);
        let rows = end - start;
        let origin: Vec<Vec<f64>> = (start..end).map(|s| x0.row(s).to_vec()).collect();
        let w0: Vec<Vec<f64>> = origin
            .iter()
            .map(|o| o.iter().zip(&params).map(|(&v, p)| p.w(v)).collect())
            .collect();
        let mut c = vec![opts.initial_const; rows];
        let mut lower = vec![0.0f64; rows];
        let mut upper = vec![f64::INFINITY; rows];
        for _ in 0..opts.binary_steps.max(1) {
            let mut w = w0.clone();
            let mut m1 = vec![vec![0.0; n_in]; rows];
            let mut m2 = vec![vec![0.0; n_in]; rows];
            let mut met = vec![false; rows];
            let mut x = Array2::<f64>::zeros((rows, n_in));
            for it in 0..=opts.steps {
                for (r, wr) in w.iter().enumerate() {
                    for (i, (&wi, p)) in wr.iter().zip(&params).enumerate() {
                        x[[r, i]] = p.x(wi);
                    }
                }
                let cc = &c;
                let kappa = opts.kappa;
                let loss = |r: usize, y: &[f64], g: &mut [f64]| {
                    let goal = goals[start + r];
                    let m = goal.margin(y);
                    if m > -kappa {
                        goal.margin_grad(y, g);
                        g.iter_mut().for_each(|v| *v *= cc[r]);
                    } else {
                        g.iter_mut().for_each(|v| *v = 0.0);
                    }
                    m
                };
                let (_, margins, grad) = loss_and_grad::<f64>(net, x.view(), &loss)?;
                for r in 0..rows {
                    let xr = x.row(r).to_vec();
                    let d = l2(&xr, &origin[r]);
                    if margins[r] < 0.0 {
                        met[r] = true;
                    }
                    if opts.eps.is_none_or(|e| d <= e) {
                        best[start + r].offer(&xr, d, margins[r]);
                    }
                }
                if it == opts.steps {
                    break;
                }
                let t = (it + 1) as i32;
                let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
                for r in 0..rows {
                    for i in 0..n_in {
                        let gx = grad[[r, i]] + 2.0 * (x[[r, i]] - origin[r][i]);
                        let g = gx * params[i].dx_dw(w[r][i]);
                        m1[r][i] = b1 * m1[r][i] + (1.0 - b1) * g;
                        m2[r][i] = b2 * m2[r][i] + (1.0 - b2) * g * g;
                        let step = opts.lr * (m1[r][i] / c1) / ((m2[r][i] / c2).sqrt() + adam_eps);
                        w[r][i] -= step;
                    }
                }
            }
            for r in 0..rows {
                if met[r] {
                    upper[r] = upper[r].min(c[r]);
                    c[r] = 0.5 * (lower[r] + upper[r]);
                } else {
                    lower[r] = lower[r].max(c[r]);
                    c[r] = if upper[r].is_finite() {
                        0.5 * (lower[r] + upper[r])
                    } else {
                        c[r] * 10.0
                    };
                }
            }
        }
        start = end;
    }
    let grads = vec![(opts.steps + 1) * opts.binary_steps.max(1); n];
    finish(net, x0, goals, best, Norm::L2, &grads)
}

#[cfg(test)]
mod tests {
    use super::super::tests::linear_net;
    use super::*;
    use ndarray::array;

    #[test]
    fn reaches_the_closest_point_of_a_linear_boundary() {
        // Margin of class 0: 2 x₀ − x₁ − 0.5 (> 0 at x₀). The closest boundary
        // point is x₀ − m (2, −1) / 5, at distance m / √5.
        let net = linear_net(array![[2.0, -1.0], [0.0, 0.0]], array![-0.5, 0.0]);
        let x0 = Array2::from_shape_vec((1, 2), vec![0.6, 0.3]).unwrap();
        let m = 2.0 * 0.6 - 0.3 - 0.5;
        let r = carlini_wagner(
            &net,
            x0.view(),
            &[Goal::Untargeted { label: 0 }],
            &CwOptions {
                clip: Clip::Range { min: 0.0, max: 1.0 },
                steps: 200,
                lr: 0.05,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(r[0].success);
        let d = m / 5f64.sqrt();
        assert!(
            r[0].l2 < d * 1.02 && r[0].l2 >= d - 1e-9,
            "{} vs {d}",
            r[0].l2
        );
        assert!(r[0].x.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn respects_the_radius() {
        let net = linear_net(array![[2.0, -1.0], [0.0, 0.0]], array![-0.5, 0.0]);
        let x0 = Array2::from_shape_vec((1, 2), vec![0.6, 0.3]).unwrap();
        let r = carlini_wagner(
            &net,
            x0.view(),
            &[Goal::Untargeted { label: 0 }],
            &CwOptions {
                eps: Some(0.1),
                steps: 50,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(!r[0].success && r[0].l2 <= 0.1);
    }
}
