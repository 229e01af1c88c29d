//! AutoPGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness
//! with an ensemble of diverse parameter-free attacks"), ℓ∞ and ℓ2, with the
//! cross-entropy and DLR losses.
//!
//! With `P` the projection onto the ε-ball and the box, `s` the steepest
//! ascent direction (`sign` for ℓ∞, `g/‖g‖₂` for ℓ2), `η⁽⁰⁾ = 2ε` and
//! momentum `α = 0.75`:
//!
//! `x⁽¹⁾ = P(x⁽⁰⁾ + η⁽⁰⁾ s(∇f(x⁽⁰⁾)))`,
//! `z⁽ᵏ⁺¹⁾ = P(x⁽ᵏ⁾ + η⁽ᵏ⁾ s(∇f(x⁽ᵏ⁾)))`,
//! `x⁽ᵏ⁺¹⁾ = P(x⁽ᵏ⁾ + α (z⁽ᵏ⁺¹⁾ − x⁽ᵏ⁾) + (1 − α)(x⁽ᵏ⁾ − x⁽ᵏ⁻¹⁾))`.
//!
//! At the checkpoints `w_j = ⌈p_j N⌉` (`p₀ = 0`, `p₁ = 0.22`,
//! `p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)`) the step is halved and
//! the iterate reset to the best point so far when either (1) the loss rose in
//! fewer than `ρ = 0.75` of the steps since the last checkpoint, or (2) the
//! step was not halved at the last checkpoint and the best loss has not
//! improved since.
//!
//! The Difference of Logits Ratio loss (Eq. 6 of the paper), to be increased:
//! untargeted `DLR = −(z_y − max_{i≠y} z_i) / (z_{π1} − z_{π3})`, targeted
//! `−(z_o − z_t) / (z_{π1} − (z_{π3} + z_{π4})/2)` where `π` sorts the logits
//! in decreasing order and `o` is the best class other than the target.

use ndarray::ArrayView2;
use serde::Serialize;

use super::pgd::Loss;
use super::{
    ascent_direction, best_other, check_args, chunk_samples, finish, forward_batched,
    loss_and_grad, project, starting_points, AttackResult, Best, Clip, Goal, Norm,
};
use crate::model::Network;
use crate::{Error, Result};

/// The loss AutoPGD ascends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ApgdLoss {
    /// Cross-entropy (APGD-CE).
    #[default]
    CrossEntropy,
    /// Difference of Logits Ratio (APGD-DLR), invariant to shifts and scales of the logits.
    Dlr,
}

/// The DLR loss at `y` and `∂/∂y` into `g`.
pub fn dlr_value_and_grad(goal: Goal, y: &[f64], g: &mut [f64]) -> f64 {
    let n = y.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| y[b].total_cmp(&y[a]).then(a.cmp(&b)));
    let p1 = order[0];
    let p3 = order[2.min(n - 1)];
    let p4 = order[3.min(n - 1)];
    g.iter_mut().for_each(|v| *v = 0.0);
    let tiny = 1e-12;
    // L = −N / D, ∂L = −(∂N D − N ∂D) / D².
    type Terms = Vec<(usize, f64)>;
    let ((num, d_num), (den, d_den)): ((f64, Terms), (f64, Terms)) = match goal {
        Goal::Untargeted { label } => {
            let (o, yo) = best_other(y, label);
            (
                (y[label] - yo, vec![(label, 1.0), (o, -1.0)]),
                (y[p1] - y[p3] + tiny, vec![(p1, 1.0), (p3, -1.0)]),
            )
        }
        Goal::Targeted { target } => {
            let (o, yo) = best_other(y, target);
            (
                (yo - y[target], vec![(o, 1.0), (target, -1.0)]),
                (
                    y[p1] - 0.5 * (y[p3] + y[p4]) + tiny,
                    vec![(p1, 1.0), (p3, -0.5), (p4, -0.5)],
                ),
            )
        }
    };
    for (j, v) in d_num {
        g[j] -= v / den;
    }
    for (j, v) in d_den {
        g[j] += num * v / (den * den);
    }
    -num / den
}

/// Options of [`apgd`].
#[derive(Clone, Debug, Serialize)]
pub struct ApgdOptions {
    /// The threat model's norm.
    pub norm: Norm,
    /// The ball's radius ε.
    pub eps: f64,
    /// Iterations `N` per restart.
    pub steps: usize,
    /// Restarts per sample.
    pub restarts: usize,
    /// The loss.
    pub loss: ApgdLoss,
    /// Momentum `α` (0.75 in the paper).
    pub alpha: f64,
    /// Fraction `ρ` of rising steps below which the step is halved (0.75).
    pub rho: f64,
    /// Start restart 0 from a random point too (otherwise it starts at `x₀`).
    pub random_start: bool,
    /// The box the points stay in.
    pub clip: Clip,
    /// Seed of the random starts.
    pub seed: u64,
    /// Rows (samples × restarts) run through the network at once.
    pub batch: usize,
}

impl Default for ApgdOptions {
    fn default() -> Self {
        ApgdOptions {
            norm: Norm::Linf,
            eps: 0.1,
            steps: 100,
            restarts: 1,
            loss: ApgdLoss::CrossEntropy,
            alpha: 0.75,
            rho: 0.75,
            random_start: true,
            clip: Clip::None,
            seed: 0,
            batch: 256,
        }
    }
}

/// The checkpoints `w_j = ⌈p_j N⌉`, `j ≥ 1`, below `N`.
pub fn checkpoints(steps: usize) -> Vec<usize> {
    let mut p = vec![0.0f64, 0.22];
    loop {
        let j = p.len() - 1;
        let next = p[j] + (p[j] - p[j - 1] - 0.03).max(0.06);
        if next > 1.0 {
            break;
        }
        p.push(next);
    }
    let mut w: Vec<usize> = p[1..]
        .iter()
        .map(|q| (q * steps as f64 - 1e-9).ceil() as usize)
        .filter(|&k| k > 0 && k < steps)
        .collect();
    w.dedup();
    w
}

/// AutoPGD on every sample (row of `x0`) towards its goal; see the module docs.
pub fn apgd(
    net: &Network,
    x0: ArrayView2<f64>,
    goals: &[Goal],
    opts: &ApgdOptions,
) -> Result<Vec<AttackResult>> {
    check_args(net, x0, goals, Some(opts.eps), &opts.clip)?;
    if opts.restarts == 0 {
        return Err(Error::InvalidArgument(
            "AutoPGD needs at least one restart".into(),
        ));
    }
    let n = x0.nrows();
    let n_in = net.input_len();
    let r_n = opts.restarts;
    let ckpts = checkpoints(opts.steps);
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
            None,
        );
        let mut x_prev = x.clone();
        let mut eta = vec![2.0 * opts.eps; rows];
        let mut f_prev = vec![f64::NEG_INFINITY; rows];
        let mut f_max = vec![f64::NEG_INFINITY; rows];
        let mut x_max = x.clone();
        let mut rises = vec![0usize; rows];
        let mut reduced_last = vec![false; rows];
        let mut f_max_last = vec![f64::NEG_INFINITY; rows];
        let mut last_ckpt = 0usize;
        let loss = |row: usize, y: &[f64], g: &mut [f64]| {
            let goal = goals[start + row / r_n];
            match opts.loss {
                ApgdLoss::CrossEntropy => Loss::CrossEntropy.value_and_grad(goal, y, g),
                ApgdLoss::Dlr => dlr_value_and_grad(goal, y, g),
            }
        };
        let mut dir = vec![0.0; n_in];
        for k in 0..=opts.steps {
            let (y, f, grad) = if k < opts.steps {
                let (y, f, g) = loss_and_grad::<f64>(net, x.view(), &loss)?;
                (y, f, Some(g))
            } else {
                (net.forward::<f64>(x.view())?, vec![], None)
            };
            for row in 0..rows {
                let s = row / r_n;
                let xr = x.row(row).to_vec();
                let m = goals[start + s].margin(&y.row(row).to_vec());
                best[start + s].offer(&xr, opts.norm.distance(&xr, &origin[s]), m);
            }
            let Some(grad) = grad else { break };
            let at_ckpt = ckpts.binary_search(&k).is_ok();
            for row in 0..rows {
                let s = row / r_n;
                if k > 0 && f[row] > f_prev[row] {
                    rises[row] += 1;
                }
                f_prev[row] = f[row];
                if f[row] > f_max[row] {
                    f_max[row] = f[row];
                    x_max.row_mut(row).assign(&x.row(row));
                }
                if at_ckpt {
                    let span = (k - last_ckpt) as f64;
                    let oscillates = (rises[row] as f64) < opts.rho * span;
                    let stalled = !reduced_last[row] && f_max_last[row] >= f_max[row];
                    let reduce = oscillates || stalled;
                    reduced_last[row] = reduce;
                    f_max_last[row] = f_max[row];
                    rises[row] = 0;
                    if reduce {
                        eta[row] *= 0.5;
                        // Restart from the best point; its gradient is taken next step.
                        x.row_mut(row).assign(&x_max.row(row));
                        x_prev.row_mut(row).assign(&x_max.row(row));
                        f_prev[row] = f_max[row];
                        continue;
                    }
                }
                let xr = x.row(row).to_vec();
                ascent_direction(&grad.row(row).to_vec(), opts.norm, &mut dir);
                let mut z: Vec<f64> = xr.iter().zip(&dir).map(|(v, d)| v + eta[row] * d).collect();
                project(&mut z, &origin[s], opts.eps, opts.norm, &opts.clip);
                let next = if k == 0 {
                    z
                } else {
                    let mut v: Vec<f64> = xr
                        .iter()
                        .zip(&z)
                        .zip(x_prev.row(row))
                        .map(|((&c, &zv), &p)| {
                            c + opts.alpha * (zv - c) + (1.0 - opts.alpha) * (c - p)
                        })
                        .collect();
                    project(&mut v, &origin[s], opts.eps, opts.norm, &opts.clip);
                    v
                };
                x_prev.row_mut(row).assign(&x.row(row));
                x.row_mut(row)
                    .iter_mut()
                    .zip(&next)
                    .for_each(|(d, v)| *d = *v);
            }
            if at_ckpt {
                last_ckpt = k;
            }
        }
        start = end;
    }
    let grads = vec![opts.steps * r_n; n];
    finish(net, x0, goals, best, opts.norm, &grads)
}

#[cfg(test)]
mod tests {
    use super::super::tests::relu_net;
    use super::*;
    use ndarray::Array2;

    #[test]
    fn checkpoints_follow_the_paper() {
        // p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 for N = 100.
        assert_eq!(checkpoints(100), vec![22, 41, 57, 70, 80, 87, 93, 99]);
    }

    #[test]
    fn dlr_gradient_matches_finite_differences() {
        let y = [0.3, -1.2, 2.0, 0.1, 0.7];
        for goal in [Goal::Untargeted { label: 2 }, Goal::Targeted { target: 1 }] {
            let mut g = [0.0; 5];
            dlr_value_and_grad(goal, &y, &mut g);
            for j in 0..5 {
                let h = 1e-6;
                let mut a = y;
                a[j] += h;
                let mut b = y;
                b[j] -= h;
                let mut t = [0.0; 5];
                let fd = (dlr_value_and_grad(goal, &a, &mut t)
                    - dlr_value_and_grad(goal, &b, &mut t))
                    / (2.0 * h);
                assert!((fd - g[j]).abs() < 1e-5, "{goal:?} {j}: {fd} vs {}", g[j]);
            }
        }
    }

    #[test]
    fn stays_feasible_and_finds_points() {
        let net = relu_net(2, 8, &[16, 16], 5);
        let x0 = Array2::from_shape_fn((6, 8), |(i, j)| ((i * 5 + j * 3) % 11) as f64 / 10.0);
        let y = net.forward::<f64>(x0.view()).unwrap();
        let goals: Vec<Goal> = y
            .rows()
            .into_iter()
            .map(|r| Goal::Untargeted {
                label: super::super::argmax(&r.to_vec()),
            })
            .collect();
        for norm in [Norm::Linf, Norm::L2] {
            for loss in [ApgdLoss::CrossEntropy, ApgdLoss::Dlr] {
                let eps = if norm == Norm::Linf { 0.3 } else { 1.0 };
                let r = apgd(
                    &net,
                    x0.view(),
                    &goals,
                    &ApgdOptions {
                        norm,
                        eps,
                        steps: 30,
                        restarts: 2,
                        loss,
                        clip: Clip::Range { min: 0.0, max: 1.0 },
                        ..Default::default()
                    },
                )
                .unwrap();
                assert!(r.iter().any(|a| a.success), "{norm:?} {loss:?}");
                for a in &r {
                    assert!(a.distance <= eps + 1e-9);
                    assert!(a.x.iter().all(|v| (0.0..=1.0).contains(v)));
                }
            }
        }
    }
}
