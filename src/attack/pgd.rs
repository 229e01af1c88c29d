//! Projected gradient descent (Madry et al. 2018, "Towards Deep Learning
//! Models Resistant to Adversarial Attacks").
//!
//! For a loss `L` to be increased (cross-entropy or the negative margin), an
//! ε-ball `B_p(x₀, ε)` and a box `[l, u]`,
//!
//! `x^{k+1} = Π_{B_p(x₀, ε) ∩ [l, u]} ( x^k + η_k · s(∇ₓ L(x^k)) )`,
//!
//! with `s(g) = sign(g)` for ℓ∞ and `s(g) = g / ‖g‖₂` for ℓ2. Each restart
//! starts from a uniform random point of the ball (restart 0 from `x₀` itself
//! unless `random_start` is set); the step `η_k` follows a [`Schedule`] from
//! `η₀` (default `2.5 ε / steps`, Madry et al.'s choice). Every iterate of
//! every restart is a candidate: the result is the closest one that meets the
//! goal, or the one with the lowest margin when none does.

use ndarray::ArrayView2;
use serde::Serialize;

use super::restricted::Precision;
use super::{
    ascent_direction, check_args, chunk_samples, finish, forward_batched, loss_and_grad, project,
    starting_points, AttackResult, Best, Clip, Goal, Norm,
};
use crate::model::Network;
use crate::{Error, Result};

/// The loss an attack ascends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Cross-entropy: `−log softmax(f(x))_l` untargeted, `log softmax(f(x))_t` targeted.
    #[default]
    CrossEntropy,
    /// The negative margin `−m(x)` (Carlini & Wagner's f₆ without the clamp).
    Margin,
}

impl Loss {
    /// The loss to be increased at output `y` for `goal`, and `∂/∂y` into `g`.
    pub fn value_and_grad(self, goal: Goal, y: &[f64], g: &mut [f64]) -> f64 {
        match self {
            Loss::Margin => {
                goal.margin_grad(y, g);
                g.iter_mut().for_each(|v| *v = -*v);
                -goal.margin(y)
            }
            Loss::CrossEntropy => {
                let m = y.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
                let s: f64 = y.iter().map(|&v| (v - m).exp()).sum();
                let lse = m + s.ln();
                for (gj, &v) in g.iter_mut().zip(y) {
                    *gj = (v - lse).exp();
                }
                match goal {
                    Goal::Untargeted { label } => {
                        g[label] -= 1.0;
                        lse - y[label]
                    }
                    Goal::Targeted { target } => {
                        g.iter_mut().for_each(|v| *v = -*v);
                        g[target] += 1.0;
                        y[target] - lse
                    }
                }
            }
        }
    }
}

/// How the step size changes over the steps of a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// `η_k = η₀`.
    #[default]
    Constant,
    /// `η_k = η₀ (1 − k / K)`.
    Linear,
    /// `η_k = η₀ (1 + cos(π k / K)) / 2`.
    Cosine,
}

impl Schedule {
    /// The step at iteration `k` of `steps`.
    pub fn at(self, eta0: f64, k: usize, steps: usize) -> f64 {
        let t = k as f64 / steps.max(1) as f64;
        match self {
            Schedule::Constant => eta0,
            Schedule::Linear => eta0 * (1.0 - t),
            Schedule::Cosine => eta0 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()),
        }
    }
}

/// Options of [`pgd`].
#[derive(Clone, Debug, Serialize)]
pub struct PgdOptions {
    /// The threat model's norm.
    pub norm: Norm,
    /// The ball's radius ε.
    pub eps: f64,
    /// Gradient steps per restart.
    pub steps: usize,
    /// Restarts per sample (at least one).
    pub restarts: usize,
    /// The first step `η₀`; `None`: `2.5 ε / steps`.
    pub step_size: Option<f64>,
    /// How the step shrinks.
    pub schedule: Schedule,
    /// Start restart 0 from a random point too (otherwise it starts at `x₀`).
    pub random_start: bool,
    /// The loss ascended.
    pub loss: Loss,
    /// The box the points stay in.
    pub clip: Clip,
    /// Seed of the random starts.
    pub seed: u64,
    /// Rows (samples × restarts) run through the network at once.
    pub batch: usize,
    /// The features the perturbation may touch (`None`: all): the gradient
    /// is zeroed elsewhere and random starts leave the others at `x₀`
    /// (subset-restricted PGD, Hsieh et al. 2021 §3).
    pub free: Option<Vec<bool>>,
    /// Precision of the forward and backward passes of the steps. The
    /// bookkeeping, the projection and the final re-check of the point
    /// returned are in `f64` either way, so `F32` never reports a success
    /// that `f64` does not confirm.
    pub precision: Precision,
}

impl Default for PgdOptions {
    fn default() -> Self {
        PgdOptions {
            norm: Norm::Linf,
            eps: 0.1,
            steps: 100,
            restarts: 1,
            step_size: None,
            schedule: Schedule::Constant,
            random_start: true,
            loss: Loss::CrossEntropy,
            clip: Clip::None,
            seed: 0,
            batch: 256,
            free: None,
            precision: Precision::F64,
        }
    }
}

/// PGD on every sample (row of `x0`) towards its goal; see the module docs.
pub fn pgd(
    net: &Network,
    x0: ArrayView2<f64>,
    goals: &[Goal],
    opts: &PgdOptions,
) -> Result<Vec<AttackResult>> {
    check_args(net, x0, goals, Some(opts.eps), &opts.clip)?;
    if opts.restarts == 0 {
        return Err(Error::InvalidArgument(
            "PGD needs at least one restart".into(),
        ));
    }
    let eta0 = opts
        .step_size
        .unwrap_or(2.5 * opts.eps / opts.steps.max(1) as f64);
    if !(eta0.is_finite() && eta0 >= 0.0) {
        return Err(Error::InvalidArgument(format!(
            "the step size must be a finite number ≥ 0, got {eta0}"
        )));
    }
    let n = x0.nrows();
    let n_in = net.input_len();
    if opts.free.as_ref().is_some_and(|f| f.len() != n_in) {
        return Err(Error::Shape(format!(
            "the free-feature set has {} entries, the network takes {n_in}",
            opts.free.as_ref().map_or(0, |f| f.len())
        )));
    }
    let r_n = opts.restarts;
    let y0 = forward_batched(net, x0, opts.batch)?;
    let mut best: Vec<Best> = (0..n)
        .map(|s| Best::start(&x0.row(s).to_vec(), goals[s].margin(&y0.row(s).to_vec())))
        .collect();
    let per = chunk_samples(opts.batch, r_n);
    let mut start = 0;
    while start < n {
        let end = (start + per).min(n);
        let rows = (end - start) * r_n;
        let origin: Vec<Vec<f64>> = (start..end).map(|s| x0.row(s).to_vec()).collect();
        let mut x = starting_points(
            &origin,
            start,
            r_n,
            opts.random_start,
            opts.seed,
            opts.eps,
            opts.norm,
            &opts.clip,
            opts.free.as_deref(),
        );
        let loss = |row: usize, y: &[f64], g: &mut [f64]| {
            opts.loss.value_and_grad(goals[start + row / r_n], y, g)
        };
        let mut dir = vec![0.0; n_in];
        for k in 0..=opts.steps {
            let (y, grad) = if k < opts.steps {
                let (y, _, g) = match opts.precision {
                    Precision::F64 => loss_and_grad::<f64>(net, x.view(), &loss)?,
                    Precision::F32 => loss_and_grad::<f32>(net, x.view(), &loss)?,
                };
                (y, Some(g))
            } else {
                (net.forward::<f64>(x.view())?, None)
            };
            for row in 0..rows {
                let s = row / r_n;
                let xr = x.row(row).to_vec();
                let m = goals[start + s].margin(&y.row(row).to_vec());
                let d = opts.norm.distance(&xr, &origin[s]);
                best[start + s].offer(&xr, d, m);
            }
            let Some(grad) = grad else { break };
            let eta = opts.schedule.at(eta0, k, opts.steps);
            for row in 0..rows {
                let s = row / r_n;
                let mut g = grad.row(row).to_vec();
                if let Some(free) = &opts.free {
                    g.iter_mut()
                        .zip(free)
                        .filter(|(_, &f)| !f)
                        .for_each(|(v, _)| *v = 0.0);
                }
                ascent_direction(&g, opts.norm, &mut dir);
                let mut xr = x.row(row).to_vec();
                xr.iter_mut().zip(&dir).for_each(|(v, d)| *v += eta * d);
                project(&mut xr, &origin[s], opts.eps, opts.norm, &opts.clip);
                x.row_mut(row)
                    .iter_mut()
                    .zip(&xr)
                    .for_each(|(d, v)| *d = *v);
            }
        }
        start = end;
    }
    let grads = vec![opts.steps * r_n; n];
    finish(net, x0, goals, best, opts.norm, &grads)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{linear_net, relu_net};
    use super::*;
    use ndarray::{array, Array2};

    #[test]
    fn cross_entropy_gradient_matches_finite_differences() {
        let y = [0.3, -1.2, 2.0, 0.1];
        for goal in [Goal::Untargeted { label: 2 }, Goal::Targeted { target: 1 }] {
            for loss in [Loss::CrossEntropy, Loss::Margin] {
                let mut g = [0.0; 4];
                loss.value_and_grad(goal, &y, &mut g);
                for j in 0..4 {
                    let h = 1e-6;
                    let mut a = y;
                    a[j] += h;
                    let mut b = y;
                    b[j] -= h;
                    let mut t = [0.0; 4];
                    let fd = (loss.value_and_grad(goal, &a, &mut t)
                        - loss.value_and_grad(goal, &b, &mut t))
                        / (2.0 * h);
                    assert!((fd - g[j]).abs() < 1e-6, "{loss:?} {goal:?} {j}");
                }
            }
        }
    }

    #[test]
    fn flips_a_linear_classifier_inside_the_ball() {
        // Class 0 wins by 0.2; w_0 − w_1 = (1, 1): the ℓ∞ boundary is 0.1 away.
        let net = linear_net(array![[1.0, 1.0], [0.0, 0.0]], array![0.0, 0.0]);
        let x0 = Array2::from_shape_vec((1, 2), vec![0.1, 0.1]).unwrap();
        let goals = [Goal::Untargeted { label: 0 }];
        for (eps, ok) in [(0.12, true), (0.08, false)] {
            let r = pgd(
                &net,
                x0.view(),
                &goals,
                &PgdOptions {
                    eps,
                    steps: 20,
                    restarts: 2,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(r[0].success, ok, "eps {eps}");
            assert!(r[0].linf <= eps + 1e-12);
        }
    }

    #[test]
    fn targeted_l2_on_a_relu_net_is_reproducible() {
        let net = relu_net(4, 6, &[12], 4);
        let x0 = Array2::from_shape_fn((5, 6), |(i, j)| ((i * 7 + j * 3) % 10) as f64 / 10.0);
        let y = net.forward::<f64>(x0.view()).unwrap();
        let goals: Vec<Goal> = y
            .rows()
            .into_iter()
            .map(|r| Goal::Targeted {
                target: (super::super::argmax(&r.to_vec()) + 1) % 4,
            })
            .collect();
        let opts = PgdOptions {
            norm: Norm::L2,
            eps: 3.0,
            steps: 40,
            restarts: 3,
            schedule: Schedule::Cosine,
            clip: Clip::Range { min: 0.0, max: 1.0 },
            seed: 9,
            batch: 4,
            ..Default::default()
        };
        let a = pgd(&net, x0.view(), &goals, &opts).unwrap();
        let b = pgd(
            &net,
            x0.view(),
            &goals,
            &PgdOptions {
                batch: 64,
                ..opts.clone()
            },
        )
        .unwrap();
        for (p, q) in a.iter().zip(&b) {
            assert_eq!(p.x, q.x);
            assert!(p.l2 <= 3.0 + 1e-9);
            assert!(p.x.iter().all(|v| (0.0..=1.0).contains(v)));
        }
        assert!(a.iter().any(|r| r.success));
    }

    #[test]
    fn f32_passes_stay_in_the_ball_and_box_and_match_f64() {
        let net = relu_net(7, 6, &[16, 16], 5);
        let x0 = Array2::from_shape_fn((8, 6), |(i, j)| ((i * 5 + j * 3) % 11) as f64 / 11.0);
        let y = net.forward::<f64>(x0.view()).unwrap();
        let goals: Vec<Goal> = y
            .rows()
            .into_iter()
            .map(|r| Goal::Untargeted {
                label: super::super::argmax(&r.to_vec()),
            })
            .collect();
        let opts = PgdOptions {
            eps: 0.3,
            steps: 60,
            restarts: 2,
            clip: Clip::Range { min: 0.0, max: 1.0 },
            ..Default::default()
        };
        let a = pgd(&net, x0.view(), &goals, &opts).unwrap();
        let b = pgd(
            &net,
            x0.view(),
            &goals,
            &PgdOptions {
                precision: Precision::F32,
                ..opts.clone()
            },
        )
        .unwrap();
        for (s, (p, q)) in a.iter().zip(&b).enumerate() {
            assert!(q.linf <= 0.3 + 1e-12);
            assert!(q.x.iter().all(|v| (0.0..=1.0).contains(v)));
            // The success and margin are re-checked in f64.
            let yq = net
                .forward::<f64>(Array2::from_shape_vec((1, 6), q.x.clone()).unwrap().view())
                .unwrap();
            assert_eq!(q.success, goals[s].margin(&yq.row(0).to_vec()) < 0.0);
            assert_eq!(p.success, q.success, "sample {s}");
        }
        assert!(a.iter().any(|r| r.success));
    }
}
