//! The minimal adversarial perturbation restricted to a feature set, exactly
//! (Hsieh et al. 2021, "Evaluations and Methods for Explanation through
//! Robustness Analysis", §3: Robustness-S_r and Robustness-S̄_r are this
//! quantity with the perturbation kept on S_r or off it).
//!
//! For an input `x` classified as `c`, a set `S` of free features and a box
//! `[lo, hi]` of valid inputs:
//!
//! `ε*_S = min ‖δ‖  s.t.  δ_i = 0 (i ∉ S),  lo ≤ x + δ ≤ hi,
//!          max_{l ≠ c} y_l(x + δ) ≥ y_c(x + δ)`
//!
//! with `‖·‖∞` (minimise `t`, `−t ≤ δ_i ≤ t`) or `‖·‖₁` (`δ = δ⁺ − δ⁻`). The
//! network is encoded exactly (ReLU and the max over the other classes as
//! constructs) over the box `x ± cap` on `S`, where `cap` is any known upper
//! bound on `ε*` (e.g. PGD's): CROWN bounds on that smaller box are tighter,
//! and the minimum cannot lie outside it. A MILP answers with the exact value;
//! an attack's value is never below it.

use serde::Serialize;

use crate::bounds::crown;
use crate::encode::full_network::network;
use crate::encode::{Cmp, Construct, LinExpr, Objective as Goal, Problem, Sense, VarKind};
use crate::model::Network;
use crate::property::InputBox;
use crate::solve::{Backend, CancelToken, SolveOptions, SolveResult, Status};
use crate::{Error, Result};

/// The norm of the perturbation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExactNorm {
    /// `max_i |δ_i|`.
    Linf,
    /// `Σ_i |δ_i|`.
    L1,
}

/// The exact restricted minimal perturbation.
#[derive(Clone, Debug, Serialize)]
pub struct ExactPerturbation {
    /// `optimal`: `value` is `ε*`; `infeasible`: no perturbation within
    /// `cap` on `S` changes the class; `timeout`: `value` (if any) is an
    /// upper bound and `bound` a lower bound.
    pub status: Status,
    /// `‖δ‖` of the best perturbation found.
    pub value: Option<f64>,
    /// Proven lower bound on `ε*`.
    pub bound: Option<f64>,
    /// The perturbed input `x + δ`.
    pub point: Option<Vec<f64>>,
    /// The class that wins at `point` (by the IR's forward pass).
    pub class_at_point: Option<usize>,
    /// The backend's record.
    pub record: SolveResult,
}

/// Encodes the problem (see the module docs).
pub fn restricted_perturbation_problem(
    net: &Network,
    x: &[f64],
    label: usize,
    free: &[bool],
    input_box: (f64, f64),
    cap: f64,
    norm: ExactNorm,
) -> Result<Problem> {
    let n = net.input_len();
    if x.len() != n || free.len() != n {
        return Err(Error::Shape(format!(
            "an input of {} values and a feature set of {} for a network taking {n}",
            x.len(),
            free.len()
        )));
    }
    if label >= net.output_len() || net.output_len() < 2 {
        return Err(Error::InvalidArgument(format!(
            "class {label} of a network with {} outputs",
            net.output_len()
        )));
    }
    if !(cap.is_finite() && cap > 0.0) {
        return Err(Error::InvalidArgument(format!(
            "the radius cap must be positive, got {cap}"
        )));
    }
    net.exact_encoding().map_err(|why| {
        Error::InvalidArgument(format!(
            "the exact minimal perturbation needs an exact encoding: {why}"
        ))
    })?;
    let (lo, hi) = input_box;
    let bx = InputBox {
        lower: x
            .iter()
            .zip(free)
            .map(|(&v, &f)| if f { (v - cap).max(lo).min(v) } else { v })
            .collect(),
        upper: x
            .iter()
            .zip(free)
            .map(|(&v, &f)| if f { (v + cap).min(hi).max(v) } else { v })
            .collect(),
    };
    let bounds = crown(net, &bx)?;
    let mut p = network(net, &bounds, "restricted_perturbation")?;
    // The norm.
    let t = p.add_var(
        "norm",
        VarKind::Continuous,
        0.0,
        if norm == ExactNorm::Linf {
            cap
        } else {
            cap * n as f64
        },
    );
    let mut l1 = LinExpr::default();
    for i in 0..n {
        if !free[i] {
            continue;
        }
        let xi = p.inputs[i];
        match norm {
            ExactNorm::Linf => {
                // x_i − X_i ≤ t and X_i − x_i ≤ t.
                let mut a = LinExpr::var(xi);
                a.add_scaled(&LinExpr::var(t), -1.0);
                p.add_constraint(format!("linf_up_{i}"), a, Cmp::Le, x[i]);
                let mut b = LinExpr::var(xi);
                b.add_scaled(&LinExpr::var(t), 1.0);
                p.add_constraint(format!("linf_down_{i}"), b, Cmp::Ge, x[i]);
            }
            ExactNorm::L1 => {
                let w = (bx.upper[i] - bx.lower[i]).max(0.0);
                let up = p.add_var(format!("d_plus_{i}"), VarKind::Continuous, 0.0, w);
                let dn = p.add_var(format!("d_minus_{i}"), VarKind::Continuous, 0.0, w);
                // x_i − δ⁺ + δ⁻ = X_i
                let mut e = LinExpr::var(xi);
                e.add_scaled(&LinExpr::var(up), -1.0);
                e.add_scaled(&LinExpr::var(dn), 1.0);
                p.add_constraint(format!("l1_{i}"), e, Cmp::Eq, x[i]);
                l1.add_scaled(&LinExpr::var(up), 1.0);
                l1.add_scaled(&LinExpr::var(dn), 1.0);
            }
        }
    }
    if norm == ExactNorm::L1 {
        let mut e = l1;
        e.add_scaled(&LinExpr::var(t), -1.0);
        p.add_constraint("l1_total", e, Cmp::Eq, 0.0);
    }
    // m = max_{l ≠ c} y_l ≥ y_c.
    let ob = bounds.output().clone();
    let outs = p.outputs.clone();
    let mut xs = Vec::new();
    let (mut lbs, mut ubs) = (Vec::new(), Vec::new());
    for (l, e) in outs.iter().enumerate() {
        if l == label {
            continue;
        }
        let v = p.add_var(
            format!("logit_{l}"),
            VarKind::Continuous,
            ob.lower[l],
            ob.upper[l],
        );
        let mut d = e.clone();
        d.add_scaled(&LinExpr::var(v), -1.0);
        p.add_constraint(format!("logit_{l}"), d, Cmp::Eq, 0.0);
        xs.push(v);
        lbs.push(ob.lower[l]);
        ubs.push(ob.upper[l]);
    }
    let mlo = lbs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mhi = ubs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let m = p.add_var("best_other", VarKind::Continuous, mlo, mhi);
    p.constructs.push(Construct::Max { xs, y: m, lbs, ubs });
    let mut flip = LinExpr::var(m);
    flip.add_scaled(&outs[label], -1.0);
    p.add_constraint("class_changes", flip, Cmp::Ge, 0.0);
    p.objective = Some(Goal {
        sense: Sense::Minimize,
        expr: LinExpr::var(t),
    });
    Ok(p)
}

/// Solves for `ε*_S` with `backend` (exact backends: the MILP, z3).
#[allow(clippy::too_many_arguments)]
pub fn exact_min_perturbation(
    net: &Network,
    x: &[f64],
    label: usize,
    free: &[bool],
    input_box: (f64, f64),
    cap: f64,
    norm: ExactNorm,
    backend: &dyn Backend,
    opts: &SolveOptions,
    cancel: &CancelToken,
) -> Result<ExactPerturbation> {
    let p = restricted_perturbation_problem(net, x, label, free, input_box, cap, norm)?;
    backend.supports(&p)?;
    let record = backend.solve(&p, opts, cancel)?;
    let point: Option<Vec<f64>> = record
        .assignment
        .as_ref()
        .map(|a| p.inputs.iter().map(|v| a[v.0]).collect());
    let class_at_point = match &point {
        Some(z) => {
            let y = net.forward::<f64>(
                ndarray::Array2::from_shape_vec((1, z.len()), z.clone())
                    .map_err(|e| Error::Shape(e.to_string()))?
                    .view(),
            )?;
            let mut best = 0;
            for (j, &v) in y.iter().enumerate() {
                if v > y[[0, best]] {
                    best = j;
                }
            }
            Some(best)
        }
        None => None,
    };
    let value = point.as_ref().map(|z| {
        let d = z.iter().zip(x).map(|(a, b)| (a - b).abs());
        match norm {
            ExactNorm::Linf => d.fold(0.0, f64::max),
            ExactNorm::L1 => d.sum(),
        }
    });
    let bound = match record.status {
        Status::Optimal => record.objective,
        _ => record.bound,
    };
    Ok(ExactPerturbation {
        status: record.status,
        value,
        bound,
        point,
        class_at_point,
        record,
    })
}

/// Options of the PGD upper bound on `ε*_S`.
#[derive(Clone, Debug)]
pub struct PgdSearch {
    /// The norm (ℓ∞ or ℓ2).
    pub norm: crate::attack::Norm,
    /// The largest radius tried.
    pub max_eps: f64,
    /// Bisection steps on ε.
    pub bisections: usize,
    /// PGD steps per attack.
    pub steps: usize,
    /// PGD restarts per attack.
    pub restarts: usize,
    /// Seed of the random starts.
    pub seed: u64,
}

impl Default for PgdSearch {
    fn default() -> Self {
        PgdSearch {
            norm: crate::attack::Norm::Linf,
            max_eps: 1.0,
            bisections: 12,
            steps: 50,
            restarts: 4,
            seed: 0,
        }
    }
}

/// The smallest perturbation on `S` that PGD finds: bisection on ε (the
/// paper's binary search), PGD restricted to `S` (gradient zeroed elsewhere)
/// at each radius; the answer is the closest class-changing point found and
/// its distance, an upper bound on `ε*_S`. `None` when PGD changes nothing
/// even at `max_eps`.
pub fn pgd_min_perturbation(
    net: &Network,
    x: &[f64],
    label: usize,
    free: &[bool],
    input_box: (f64, f64),
    search: &PgdSearch,
) -> Result<Option<(f64, Vec<f64>)>> {
    use crate::attack::{pgd, Clip, Goal, PgdOptions};
    if free.len() != x.len() {
        return Err(Error::Shape(format!(
            "a feature set of {} for an input of {}",
            free.len(),
            x.len()
        )));
    }
    let x0 = ndarray::Array2::from_shape_vec((1, x.len()), x.to_vec())
        .map_err(|e| Error::Shape(e.to_string()))?;
    let attack = |eps: f64| -> Result<Option<(f64, Vec<f64>)>> {
        let r = pgd(
            net,
            x0.view(),
            &[Goal::Untargeted { label }],
            &PgdOptions {
                norm: search.norm,
                eps,
                steps: search.steps,
                restarts: search.restarts,
                clip: Clip::Range {
                    min: input_box.0,
                    max: input_box.1,
                },
                seed: search.seed,
                free: Some(free.to_vec()),
                ..PgdOptions::default()
            },
        )?;
        Ok(r.into_iter()
            .next()
            .filter(|a| a.success)
            .map(|a| (a.distance, a.x)))
    };
    let Some(mut best) = attack(search.max_eps)? else {
        return Ok(None);
    };
    let (mut lo, mut hi) = (0.0, best.0.min(search.max_eps));
    for _ in 0..search.bisections {
        let mid = 0.5 * (lo + hi);
        match attack(mid)? {
            Some(found) => {
                hi = found.0.min(mid);
                if found.0 < best.0 {
                    best = found;
                }
            }
            None => lo = mid,
        }
    }
    Ok(Some(best))
}

#[cfg(all(test, feature = "highs"))]
mod tests {
    use super::*;
    use crate::model::{Dense, Layer, Node};
    use crate::solve::milp::Milp;
    use ndarray::{Array1, Array2};

    fn tiny(seed: u64) -> Network {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        };
        let dims = [3, 8, 3];
        let mut layers = Vec::new();
        for w in 0..2 {
            let (i, o) = (dims[w], dims[w + 1]);
            layers.push((
                Node {
                    name: format!("fc{w}"),
                    op_types: vec!["Gemm".into()],
                    in_shape: vec![1, i],
                    out_shape: vec![1, o],
                },
                Layer::Dense(Dense {
                    weight: Array2::from_shape_fn((o, i), |_| 2.0 * rnd()),
                    bias: Array1::from_shape_fn(o, |_| 0.3 * rnd()),
                    rows: 1,
                }),
            ));
            if w == 0 {
                layers.push((
                    Node {
                        name: "relu".into(),
                        op_types: vec!["Relu".into()],
                        in_shape: vec![1, o],
                        out_shape: vec![1, o],
                    },
                    Layer::Relu,
                ));
            }
        }
        Network::from_layers("tiny", vec![1, 3], layers).unwrap()
    }

    fn argmax(net: &Network, x: &[f64]) -> usize {
        let y = net
            .forward::<f64>(
                Array2::from_shape_vec((1, x.len()), x.to_vec())
                    .unwrap()
                    .view(),
            )
            .unwrap();
        (0..y.ncols()).fold(0, |b, j| if y[[0, j]] > y[[0, b]] { j } else { b })
    }

    #[test]
    fn milp_minimum_is_below_every_sampled_flip_and_close_to_the_best() {
        let mut checked = 0;
        for seed in 0..12 {
            let net = tiny(seed);
            let x = [0.5, 0.5, 0.5];
            let c = argmax(&net, &x);
            // Features 0 and 1 free, feature 2 fixed.
            let free = [true, true, false];
            let r = exact_min_perturbation(
                &net,
                &x,
                c,
                &free,
                (0.0, 1.0),
                0.5,
                ExactNorm::Linf,
                &Milp,
                &SolveOptions::default(),
                &CancelToken::new(),
            )
            .unwrap();
            // A 201×201 grid over the free features.
            let mut best = f64::INFINITY;
            for a in 0..=200 {
                for b in 0..=200 {
                    let z = [a as f64 / 200.0, b as f64 / 200.0, 0.5];
                    if argmax(&net, &z) != c {
                        best = best.min((z[0] - 0.5).abs().max((z[1] - 0.5).abs()));
                    }
                }
            }
            match r.status {
                Status::Optimal => {
                    let v = r.value.unwrap();
                    assert!(
                        v <= best + 1e-9,
                        "seed {seed}: exact {v} above a sampled flip {best}"
                    );
                    assert!(
                        best - v <= 0.005 + 1e-9,
                        "seed {seed}: exact {v}, grid {best}"
                    );
                    assert!((r.bound.unwrap() - v).abs() < 1e-6);
                    checked += 1;
                }
                Status::Infeasible => {
                    assert!(best > 0.5, "seed {seed}: a flip at {best} within the cap");
                }
                s => panic!("seed {seed}: {s:?}"),
            }
        }
        assert!(
            checked >= 4,
            "only {checked} nets had a flip within the cap"
        );
    }

    #[test]
    fn l1_is_at_least_linf_and_bad_input_is_refused() {
        let net = tiny(3);
        let x = [0.5, 0.5, 0.5];
        let c = argmax(&net, &x);
        let all = [true; 3];
        let solve = |norm| {
            exact_min_perturbation(
                &net,
                &x,
                c,
                &all,
                (0.0, 1.0),
                1.0,
                norm,
                &Milp,
                &SolveOptions::default(),
                &CancelToken::new(),
            )
            .unwrap()
        };
        let (li, l1) = (solve(ExactNorm::Linf), solve(ExactNorm::L1));
        if li.status == Status::Optimal && l1.status == Status::Optimal {
            assert!(l1.value.unwrap() >= li.value.unwrap() - 1e-9);
        }
        assert!(restricted_perturbation_problem(
            &net,
            &x,
            c,
            &[true; 2],
            (0.0, 1.0),
            1.0,
            ExactNorm::Linf
        )
        .is_err());
        assert!(restricted_perturbation_problem(
            &net,
            &x,
            7,
            &all,
            (0.0, 1.0),
            1.0,
            ExactNorm::Linf
        )
        .is_err());
        assert!(restricted_perturbation_problem(
            &net,
            &x,
            c,
            &all,
            (0.0, 1.0),
            0.0,
            ExactNorm::Linf
        )
        .is_err());
    }

    #[test]
    fn pgd_never_undercuts_the_exact_minimum() {
        for seed in 0..10 {
            let net = tiny(seed);
            let x = [0.5, 0.5, 0.5];
            let c = argmax(&net, &x);
            for free in [[true, true, false], [true, false, true], [true, true, true]] {
                let exact = exact_min_perturbation(
                    &net,
                    &x,
                    c,
                    &free,
                    (0.0, 1.0),
                    0.5,
                    ExactNorm::Linf,
                    &Milp,
                    &SolveOptions::default(),
                    &CancelToken::new(),
                )
                .unwrap();
                let found =
                    pgd_min_perturbation(&net, &x, c, &free, (0.0, 1.0), &PgdSearch::default())
                        .unwrap();
                match (exact.status, found) {
                    (Status::Optimal, Some((d, z))) => {
                        let e = exact.value.unwrap();
                        assert!(d >= e - 1e-9, "seed {seed}: PGD {d} below exact {e}");
                        assert_ne!(argmax(&net, &z), c);
                        for (i, f) in free.iter().enumerate() {
                            if !f {
                                assert_eq!(z[i], x[i], "PGD moved a fixed feature");
                            }
                        }
                    }
                    (Status::Infeasible, Some((d, _))) => {
                        assert!(
                            d > 0.5 - 1e-9,
                            "seed {seed}: PGD flip at {d} inside an infeasible cap"
                        )
                    }
                    _ => {}
                }
            }
        }
    }
}
