//! Boundary attributions (Wang, Fredrikson & Datta 2022, "Robust Models Are
//! More Interpretable Because Attributions Look Normal"): the closest decision
//! boundary point, the Boundary-based Saliency Map (Definition 5), the
//! Boundary-based Integrated Gradient (Definition 6), and AGI (Pan et al.
//! 2021), the adversarial-path method the paper compares BIG with.
//!
//! **Boundary search.** Finding the exact closest boundary point is as hard
//! as certifying robustness, so, as in the paper (Sec. 4 and App. B.2), the
//! search ensembles PGD, Carlini–Wagner and AutoPGD (CE and DLR) over a list
//! of radii and keeps, per sample, the closest point that changes the class.
//! Each point found is then pulled towards the input by bisection on the
//! segment `x₀ + t (x' − x₀)`, keeping a point that still changes the class,
//! which puts it on the boundary up to `2^{−refine}` of the segment. When
//! nothing is found, the point of the first method at the largest radius is
//! returned with `success = false` (the paper's convention).
//!
//! **BSM** (Definition 5): `BSM(x) = ∇_{x'} f(x')` at the closest boundary
//! point `x'`. **BIG** (Definition 6): `BIG(x) = IG(x; x')`, Integrated
//! Gradients from the boundary point as baseline,
//! `BIG_i(x) = (x_i − x'_i) ∫₀¹ ∂f(x' + α(x − x'))/∂x_i dα`, with the
//! trapezoid rule over 20 intervals by default (App. B.3); with
//! [`BigBaselines::Average`] the IGs from every boundary point found are
//! averaged. The function `f` is a [`BoundaryObjective`].

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;
use serde::Serialize;

use super::apgd::{apgd, ApgdLoss, ApgdOptions};
use super::cw::{carlini_wagner, CwOptions};
use super::pgd::{pgd, Loss, PgdOptions};
use super::{argmax, best_other, forward_batched, AttackResult, Clip, Goal, Norm};
use crate::attrib::{integrated_gradients_at, Rule};
use crate::model::{Network, Objective};
use crate::{Error, Result};

/// An attack of the boundary search.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// PGD (Madry et al. 2018).
    Pgd,
    /// Carlini–Wagner ℓ2 (run once, accepted up to the largest radius).
    Cw,
    /// AutoPGD with the cross-entropy loss.
    ApgdCe,
    /// AutoPGD with the DLR loss.
    ApgdDlr,
}

/// Options of [`boundary_search`].
#[derive(Clone, Debug, Serialize)]
pub struct BoundaryOptions {
    /// The norm in which "closest" is measured and the balls are drawn.
    pub norm: Norm,
    /// Radii tried by PGD and AutoPGD (and the largest bounds CW).
    pub radii: Vec<f64>,
    /// The attacks, in order (the first one supplies the fallback point).
    pub methods: Vec<Method>,
    /// The box the points stay in.
    pub clip: Clip,
    /// Steps of PGD and AutoPGD.
    pub steps: usize,
    /// Restarts of PGD and AutoPGD.
    pub restarts: usize,
    /// PGD's loss.
    pub pgd_loss: Loss,
    /// Carlini–Wagner's options (its box and radius are set by the search).
    pub cw: CwOptions,
    /// Bisection steps towards the input per point found (0: none).
    pub refine: usize,
    /// Seed of every random start.
    pub seed: u64,
    /// Rows run through the network at once.
    pub batch: usize,
}

impl Default for BoundaryOptions {
    fn default() -> Self {
        BoundaryOptions {
            norm: Norm::L2,
            radii: vec![0.5, 1.0, 2.0, 4.0],
            methods: vec![Method::Pgd, Method::Cw, Method::ApgdCe, Method::ApgdDlr],
            clip: Clip::None,
            steps: 100,
            restarts: 1,
            pgd_loss: Loss::CrossEntropy,
            cw: CwOptions::default(),
            refine: 20,
            seed: 0,
            batch: 256,
        }
    }
}

/// A point found by the boundary search.
#[derive(Clone, Debug, Serialize)]
pub struct BoundaryPoint {
    /// The point.
    pub x: Vec<f64>,
    /// `‖x − x₀‖` in the search's norm.
    pub distance: f64,
    /// The label's margin `f_l(x) − max_{j≠l} f_j(x)` (negative: across the boundary).
    pub margin: f64,
    /// Whether the class changed (`margin < 0`), by a forward pass.
    pub success: bool,
    /// The class predicted at `x`.
    pub class: usize,
    /// The attack that found it.
    pub method: Method,
    /// The radius it ran with (CW: the largest).
    pub eps: f64,
}

/// The result of the search for one sample.
#[derive(Clone, Debug, Serialize)]
pub struct BoundarySearch {
    /// The closest point that changes the class (or the fallback point).
    pub closest: BoundaryPoint,
    /// Every point found that changes the class, one per method and radius.
    pub found: Vec<BoundaryPoint>,
}

/// Searches the closest decision-boundary point of every sample (row of
/// `x0`, whose class is `labels[i]`); see the module docs.
pub fn boundary_search(
    net: &Network,
    x0: ArrayView2<f64>,
    labels: &[usize],
    opts: &BoundaryOptions,
) -> Result<Vec<BoundarySearch>> {
    if opts.methods.is_empty() || opts.radii.is_empty() {
        return Err(Error::InvalidArgument(
            "the boundary search needs at least one method and one radius".into(),
        ));
    }
    if let Some(r) = opts.radii.iter().find(|r| !(r.is_finite() && **r > 0.0)) {
        return Err(Error::InvalidArgument(format!(
            "every radius must be positive and finite, got {r}"
        )));
    }
    let goals: Vec<Goal> = labels
        .iter()
        .map(|&label| Goal::Untargeted { label })
        .collect();
    let r_max = opts.radii.iter().copied().fold(0.0, f64::max);
    let n = x0.nrows();
    let mut found: Vec<Vec<BoundaryPoint>> = vec![Vec::new(); n];
    let mut fallback: Option<Vec<BoundaryPoint>> = None;
    for (mi, &method) in opts.methods.iter().enumerate() {
        let runs: Vec<f64> = if method == Method::Cw {
            vec![r_max]
        } else {
            opts.radii.clone()
        };
        for (ri, &eps) in runs.iter().enumerate() {
            let seed = opts
                .seed
                .wrapping_add((mi as u64) << 32)
                .wrapping_add(ri as u64);
            let res: Vec<AttackResult> = match method {
                Method::Pgd => pgd(
                    net,
                    x0,
                    &goals,
                    &PgdOptions {
                        norm: opts.norm,
                        eps,
                        steps: opts.steps,
                        restarts: opts.restarts,
                        loss: opts.pgd_loss,
                        clip: opts.clip.clone(),
                        seed,
                        batch: opts.batch,
                        ..Default::default()
                    },
                )?,
                Method::Cw => carlini_wagner(
                    net,
                    x0,
                    &goals,
                    &CwOptions {
                        clip: opts.clip.clone(),
                        eps: None,
                        batch: opts.batch,
                        ..opts.cw.clone()
                    },
                )?,
                Method::ApgdCe | Method::ApgdDlr => apgd(
                    net,
                    x0,
                    &goals,
                    &ApgdOptions {
                        norm: opts.norm,
                        eps,
                        steps: opts.steps,
                        restarts: opts.restarts,
                        loss: if method == Method::ApgdCe {
                            ApgdLoss::CrossEntropy
                        } else {
                            ApgdLoss::Dlr
                        },
                        clip: opts.clip.clone(),
                        seed,
                        batch: opts.batch,
                        ..Default::default()
                    },
                )?,
            };
            let points = refine(net, x0, labels, res, method, eps, opts)?;
            for (s, p) in points.iter().enumerate() {
                if p.success && p.distance <= r_max * (1.0 + 1e-12) {
                    found[s].push(p.clone());
                }
            }
            if mi == 0 && ri + 1 == runs.len() {
                fallback = Some(points);
            }
        }
    }
    let fallback = fallback.unwrap_or_default();
    Ok(found
        .into_iter()
        .enumerate()
        .map(|(s, f)| {
            let closest = f
                .iter()
                .min_by(|a, b| a.distance.total_cmp(&b.distance))
                .cloned()
                .unwrap_or_else(|| fallback[s].clone());
            BoundarySearch { closest, found: f }
        })
        .collect())
}

/// Bisection towards the input on the segment to each successful point.
fn refine(
    net: &Network,
    x0: ArrayView2<f64>,
    labels: &[usize],
    res: Vec<AttackResult>,
    method: Method,
    eps: f64,
    opts: &BoundaryOptions,
) -> Result<Vec<BoundaryPoint>> {
    let n = res.len();
    let n_in = net.input_len();
    let mut lo = vec![0.0f64; n];
    let mut hi = vec![1.0f64; n];
    let on: Vec<usize> = (0..n).filter(|&s| res[s].success).collect();
    let point = |s: usize, t: f64| -> Vec<f64> {
        x0.row(s)
            .iter()
            .zip(&res[s].x)
            .map(|(&a, &b)| a + t * (b - a))
            .collect()
    };
    if !on.is_empty() {
        for _ in 0..opts.refine {
            let mut batch = Array2::<f64>::zeros((on.len(), n_in));
            for (k, &s) in on.iter().enumerate() {
                let p = point(s, 0.5 * (lo[s] + hi[s]));
                batch
                    .row_mut(k)
                    .iter_mut()
                    .zip(&p)
                    .for_each(|(d, v)| *d = *v);
            }
            let y = forward_batched(net, batch.view(), opts.batch)?;
            for (k, &s) in on.iter().enumerate() {
                let mid = 0.5 * (lo[s] + hi[s]);
                let yr = y.row(k).to_vec();
                if yr[labels[s]] - best_other(&yr, labels[s]).1 < 0.0 {
                    hi[s] = mid;
                } else {
                    lo[s] = mid;
                }
            }
        }
    }
    let mut xs = Array2::<f64>::zeros((n, n_in));
    for s in 0..n {
        let p = if res[s].success {
            point(s, hi[s])
        } else {
            res[s].x.clone()
        };
        xs.row_mut(s).iter_mut().zip(&p).for_each(|(d, v)| *d = *v);
    }
    let y = forward_batched(net, xs.view(), opts.batch)?;
    Ok((0..n)
        .map(|s| {
            let x = xs.row(s).to_vec();
            let yr = y.row(s).to_vec();
            let margin = yr[labels[s]] - best_other(&yr, labels[s]).1;
            BoundaryPoint {
                distance: opts.norm.distance(&x, &x0.row(s).to_vec()),
                margin,
                success: margin < 0.0,
                class: argmax(&yr),
                method,
                eps,
                x,
            }
        })
        .collect())
}

/// The function of the output whose gradient BSM and BIG take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BoundaryObjective {
    /// `f_l − f_c`, with `c` the class reached at the boundary point (the best
    /// other class there when the search failed): its gradient is the normal
    /// of the boundary segment between `l` and `c`, Definition 5's "normal
    /// vector of the closest decision boundary".
    #[default]
    Normal,
    /// `f_l`, the label's logit (the paper's Definitions 5 and 6 read literally).
    Logit,
    /// `softmax(f)_l`.
    Softmax,
}

impl BoundaryObjective {
    /// The [`Objective`] for label `label` and a boundary point.
    pub fn objective(self, label: usize, point: &BoundaryPoint, y_at_point: &[f64]) -> Objective {
        match self {
            BoundaryObjective::Normal => {
                let other = if point.class != label {
                    point.class
                } else {
                    best_other(y_at_point, label).0
                };
                Objective::Margin {
                    class: label,
                    other: Some(other),
                }
            }
            BoundaryObjective::Logit => Objective::Logit(label),
            BoundaryObjective::Softmax => Objective::Softmax(label),
        }
    }
}

fn output_at(net: &Network, x: &[f64]) -> Result<Vec<f64>> {
    let a = Array2::from_shape_vec((1, x.len()), x.to_vec())
        .map_err(|e| Error::Shape(e.to_string()))?;
    Ok(net.forward::<f64>(a.view())?.row(0).to_vec())
}

/// BSM (Definition 5): the gradient of the objective at each sample's closest
/// boundary point, `[n, input_len]`.
pub fn bsm(
    net: &Network,
    labels: &[usize],
    searches: &[BoundarySearch],
    objective: BoundaryObjective,
) -> Result<Array2<f64>> {
    if labels.len() != searches.len() {
        return Err(Error::InvalidArgument(format!(
            "{} labels for {} searches",
            labels.len(),
            searches.len()
        )));
    }
    let rows: Vec<Vec<f64>> = searches
        .par_iter()
        .zip(labels.par_iter())
        .map(|(s, &l)| {
            let p = &s.closest;
            let y = output_at(net, &p.x)?;
            let obj = objective.objective(l, p, &y);
            let a = Array2::from_shape_vec((1, p.x.len()), p.x.clone())
                .map_err(|e| Error::Shape(e.to_string()))?;
            Ok(net.gradient::<f64>(a.view(), &obj, 0)?.grad.row(0).to_vec())
        })
        .collect::<Result<_>>()?;
    let n_in = net.input_len();
    let mut out = Array2::<f64>::zeros((rows.len(), n_in));
    for (r, g) in rows.iter().enumerate() {
        out.row_mut(r).iter_mut().zip(g).for_each(|(d, v)| *d = *v);
    }
    Ok(out)
}

/// Which boundary points BIG integrates from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BigBaselines {
    /// The closest point only (Definition 6 read literally).
    Closest,
    /// The average of the IGs from every point found (the closest alone when
    /// none was found), aggregating several nearby boundary segments.
    #[default]
    Average,
}

/// A BIG map.
#[derive(Clone, Debug, Serialize)]
pub struct BigMap {
    /// `BIG_i(x)`, one per input element.
    pub attributions: Vec<f64>,
    /// Boundary points integrated from.
    pub baselines: usize,
    /// The largest IG completeness residual over those points.
    pub completeness_residual: f64,
}

/// BIG (Definition 6) of every sample (row of `x0`) from its boundary points.
pub fn big(
    net: &Network,
    x0: ArrayView2<f64>,
    labels: &[usize],
    searches: &[BoundarySearch],
    objective: BoundaryObjective,
    baselines: BigBaselines,
    steps: usize,
) -> Result<Vec<BigMap>> {
    if labels.len() != searches.len() || x0.nrows() != searches.len() {
        return Err(Error::InvalidArgument(format!(
            "{} samples, {} labels and {} searches",
            x0.nrows(),
            labels.len(),
            searches.len()
        )));
    }
    (0..searches.len())
        .into_par_iter()
        .map(|s| {
            let x = x0.row(s).to_vec();
            let points: Vec<&BoundaryPoint> = match baselines {
                BigBaselines::Average if !searches[s].found.is_empty() => {
                    searches[s].found.iter().collect()
                }
                _ => vec![&searches[s].closest],
            };
            let mut acc = vec![0.0; x.len()];
            let mut residual = 0.0f64;
            for p in &points {
                let y = output_at(net, &p.x)?;
                let obj = objective.objective(labels[s], p, &y);
                let m = integrated_gradients_at(net, 0, &x, &p.x, &obj, steps, Rule::Trapezoid)?;
                acc.iter_mut()
                    .zip(&m.attributions)
                    .for_each(|(a, v)| *a += v / points.len() as f64);
                residual = residual.max(m.completeness_residual);
            }
            Ok(BigMap {
                attributions: acc,
                baselines: points.len(),
                completeness_residual: residual,
            })
        })
        .collect()
}

/// Options of [`agi`].
#[derive(Clone, Debug, Serialize)]
pub struct AgiOptions {
    /// Step of the signed-gradient path.
    pub step: f64,
    /// Steps per false class at most.
    pub max_iter: usize,
    /// How many false classes (the highest-scoring ones at the input).
    pub top_k: usize,
    /// The box the path stays in.
    pub clip: Clip,
}

impl Default for AgiOptions {
    fn default() -> Self {
        AgiOptions {
            step: 0.05,
            max_iter: 20,
            top_k: 10,
            clip: Clip::None,
        }
    }
}

/// Adversarial Gradient Integration (Pan, Li & Zhu 2021), the comparison
/// method of Wang et al. 2022 (Table 1, "IG-AGI"): for each of the `top_k`
/// best false classes `t`, a path `x⁽ᵏ⁺¹⁾ = clip(x⁽ᵏ⁾ + step · sign ∇ softmax_t(x⁽ᵏ⁾))`
/// runs until `t` wins (or `max_iter`), and
/// `AGI(x) = Σ_t Σ_k −∇ softmax_l(x⁽ᵏ⁾) ⊙ (x⁽ᵏ⁺¹⁾ − x⁽ᵏ⁾)`.
/// All false classes run as one batch.
pub fn agi(net: &Network, x: &[f64], label: usize, opts: &AgiOptions) -> Result<Vec<f64>> {
    let n_in = net.input_len();
    let n_out = net.output_len();
    if x.len() != n_in || label >= n_out {
        return Err(Error::InvalidArgument(format!(
            "AGI: {} inputs for a network of {n_in}, class {label} of {n_out}",
            x.len()
        )));
    }
    opts.clip.check(n_in)?;
    let y = output_at(net, x)?;
    let mut others: Vec<usize> = (0..n_out).filter(|&j| j != label).collect();
    others.sort_by(|&a, &b| y[b].total_cmp(&y[a]).then(a.cmp(&b)));
    others.truncate(opts.top_k.max(1));
    let k = others.len();
    let mut cur = Array2::<f64>::zeros((k, n_in));
    for mut r in cur.rows_mut() {
        r.iter_mut().zip(x).for_each(|(d, v)| *d = *v);
    }
    let mut done = vec![false; k];
    let mut attr = vec![0.0; n_in];
    let softmax_grad = |yr: &[f64], c: usize, g: &mut [f64]| {
        Objective::Softmax(c).value_and_grad(yr, g);
    };
    for _ in 0..opts.max_iter {
        let trace = net.trace::<f64>(cur.view())?;
        let yb = trace.output().clone();
        let mut g_t = Array2::<f64>::zeros(yb.raw_dim());
        let mut g_l = Array2::<f64>::zeros(yb.raw_dim());
        let mut buf = vec![0.0; n_out];
        for r in 0..k {
            let yr = yb.row(r).to_vec();
            if argmax(&yr) == others[r] {
                done[r] = true;
            }
            softmax_grad(&yr, others[r], &mut buf);
            g_t.row_mut(r)
                .iter_mut()
                .zip(&buf)
                .for_each(|(d, v)| *d = *v);
            softmax_grad(&yr, label, &mut buf);
            g_l.row_mut(r)
                .iter_mut()
                .zip(&buf)
                .for_each(|(d, v)| *d = *v);
        }
        if done.iter().all(|&d| d) {
            break;
        }
        let dt = net.backward(&trace, 0, g_t.view())?;
        let dl = net.backward(&trace, 0, g_l.view())?;
        for r in 0..k {
            if done[r] {
                continue;
            }
            for i in 0..n_in {
                let (lo, hi) = opts.clip.bounds(i);
                let old = cur[[r, i]];
                let d = dt[[r, i]];
                let sign = if d > 0.0 {
                    1.0
                } else if d < 0.0 {
                    -1.0
                } else {
                    0.0
                };
                let new = (old + opts.step * sign).clamp(lo, hi);
                attr[i] -= dl[[r, i]] * (new - old);
                cur[[r, i]] = new;
            }
        }
    }
    Ok(attr)
}

#[cfg(test)]
mod tests {
    use super::super::tests::linear_net;
    use super::*;
    use ndarray::array;

    #[test]
    fn finds_the_linear_boundary_and_bsm_is_its_normal() {
        // Margin of class 0: x₀ + 2 x₁ − 1; the closest point is at m / √5.
        let net = linear_net(array![[1.0, 2.0], [0.0, 0.0]], array![-1.0, 0.0]);
        let x0 = Array2::from_shape_vec((1, 2), vec![0.8, 0.6]).unwrap();
        let m = 0.8 + 1.2 - 1.0;
        let s = boundary_search(
            &net,
            x0.view(),
            &[0],
            &BoundaryOptions {
                radii: vec![0.2, 0.5, 1.0],
                ..Default::default()
            },
        )
        .unwrap();
        let d = m / 5f64.sqrt();
        assert!(s[0].closest.success);
        assert!(
            (s[0].closest.distance - d).abs() < 0.01 * d,
            "{}",
            s[0].closest.distance
        );
        let g = bsm(&net, &[0], &s, BoundaryObjective::Normal).unwrap();
        assert!((g[[0, 0]] - 1.0).abs() < 1e-12 && (g[[0, 1]] - 2.0).abs() < 1e-12);
        let b = big(
            &net,
            x0.view(),
            &[0],
            &s,
            BoundaryObjective::Normal,
            BigBaselines::Closest,
            20,
        )
        .unwrap();
        // Completeness: Σ BIG = m(x) − m(x') ≈ m.
        let total: f64 = b[0].attributions.iter().sum();
        assert!((total - m).abs() < 0.01 * m, "{total}");
    }

    #[test]
    fn agi_is_positive_on_a_linear_net() {
        let net = linear_net(
            array![[1.0, 2.0], [0.0, 0.0], [-1.0, 0.5]],
            array![0.0, 0.0, 0.0],
        );
        let a = agi(&net, &[0.5, 0.5], 0, &AgiOptions::default()).unwrap();
        assert!(a.iter().sum::<f64>() > 0.0);
    }
}
