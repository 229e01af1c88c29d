//! Integrated Gradients (Sundararajan, Taly and Yan 2017) at the input or at
//! any activation, batched over samples and steps.
//!
//! For a function `F` of the activation `a` of some layer (the network's tail
//! from that layer on, followed by an [`Objective`]) and a baseline `a'`,
//!
//! `IG_i(a) = (a_i − a'_i) ∫₀¹ ∂F/∂a_i (a' + α (a − a')) dα`
//!
//! (Sundararajan et al. 2017, Eq. 1; SMUG, Eq. 1, there at the first layer's
//! activations). The integral is a Riemann sum over `steps` points (left,
//! right, midpoint) or the trapezoid rule; the (sample, point) pairs are run
//! through the network together, in batches of rows. Completeness says
//! `Σ_i IG_i = F(a) − F(a')` (Prop. 1); the residual of the sum is reported
//! with every map, as the measure of the quadrature error.

use ndarray::{s, Array2, ArrayView2, Axis};
use serde::Serialize;

use super::{
    check_batch, completeness_residual, from_f64, row_gradients, row_values, rows_for, to_f64,
    Attribution, Baseline, Method, Target,
};
use crate::model::backward::linear_vjp;
use crate::model::{Float, Network, Objective};
use crate::{Error, Result};

/// How the path integral is discretised.
///
/// Captum's `riemann_left`, `riemann_right` and `riemann_middle` with
/// `n_steps = n` are [`Rule::Left`], [`Rule::Right`] and [`Rule::Midpoint`]
/// with `steps = n`. Captum's `riemann_trapezoid` with `n_steps = n` evaluates
/// the same `n` points as [`Rule::Trapezoid`] with `steps = n − 1`, but
/// weights them `1/n` (ends `1/2n`), so that its weights sum to `(n − 1)/n`
/// rather than 1: its map is this rule's times `(n − 1)/n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// `α_k = k / n`, `k = 0 … n − 1`.
    Left,
    /// `α_k = k / n`, `k = 1 … n`.
    Right,
    /// `α_k = (k + ½) / n`.
    #[default]
    Midpoint,
    /// `α_k = k / n`, `k = 0 … n`, end points weighted ½.
    Trapezoid,
}

impl Rule {
    /// The points `α_k` and weights `w_k` (summing to 1) of the rule.
    pub fn points(self, steps: usize) -> Vec<(f64, f64)> {
        let n = steps.max(1);
        let nf = n as f64;
        match self {
            Rule::Left => (0..n).map(|k| (k as f64 / nf, 1.0 / nf)).collect(),
            Rule::Right => (1..=n).map(|k| (k as f64 / nf, 1.0 / nf)).collect(),
            Rule::Midpoint => (0..n).map(|k| ((k as f64 + 0.5) / nf, 1.0 / nf)).collect(),
            Rule::Trapezoid => (0..=n)
                .map(|k| {
                    let w = if k == 0 || k == n { 0.5 } else { 1.0 };
                    (k as f64 / nf, w / nf)
                })
                .collect(),
        }
    }
}

/// An Integrated Gradients map of one sample with its completeness check.
#[derive(Clone, Debug, Serialize)]
pub struct IgMap {
    /// `IG_i`, one per element of the activation.
    pub attributions: Vec<f64>,
    /// `F(a)`.
    pub f_input: f64,
    /// `F(a')`.
    pub f_baseline: f64,
    /// `|Σ_i IG_i − (F(a) − F(a'))| / max(|F(a) − F(a')|, 1e-12)`.
    pub completeness_residual: f64,
    /// Number of gradient evaluations.
    pub steps: usize,
    /// The quadrature rule.
    pub rule: Rule,
}

/// Integrated Gradients of `objective` with respect to activation `layer`
/// (0 = the input) at the activation value `a` of one sample, from `baseline`
/// (Sundararajan et al. 2017, Eq. 1, by [`Rule`] with `steps` intervals).
pub fn integrated_gradients_at(
    net: &Network,
    layer: usize,
    a: &[f64],
    baseline: &[f64],
    objective: &Objective,
    steps: usize,
    rule: Rule,
) -> Result<IgMap> {
    let n = net.activation_len(layer.min(net.len()));
    if layer > net.len() || a.len() != n || baseline.len() != n {
        return Err(Error::InvalidArgument(format!(
            "integrated gradients at activation {layer}: expected {n} values, got {} and a baseline of {}",
            a.len(),
            baseline.len()
        )));
    }
    let av = ndarray::ArrayView2::from_shape((1, n), a).map_err(|e| Error::Shape(e.to_string()))?;
    let bv = ndarray::ArrayView2::from_shape((1, n), baseline)
        .map_err(|e| Error::Shape(e.to_string()))?;
    let m = integrated_gradients_from(
        net,
        layer,
        av,
        bv,
        &Target::All(objective.clone()),
        steps,
        rule,
    )?;
    let f_baseline = m.baseline_values.as_ref().map_or(f64::NAN, |v| v[0]);
    Ok(IgMap {
        attributions: m.maps.row(0).to_vec(),
        f_input: m.values[0],
        f_baseline,
        completeness_residual: m.residuals.as_ref().map_or(f64::NAN, |r| r[0]),
        steps: rule.points(steps).len(),
        rule,
    })
}

/// Integrated Gradients at the input for a batch `x` (`[batch, input_len]`):
/// `IG_i(x) = (x_i − x'_i) Σ_k w_k ∂F/∂x_i (x' + α_k (x − x'))`, the
/// quadrature of Sundararajan et al. (2017), Eq. 1, with the points and
/// weights `(α_k, w_k)` of `rule` over `steps` intervals, the baseline `x'` of
/// each sample resolved from `baseline` and `F` the sample's target. The
/// completeness residual of every map is in [`Attribution::residuals`].
pub fn integrated_gradients<T: Float>(
    net: &Network,
    x: ArrayView2<T>,
    baseline: &Baseline,
    target: &Target,
    steps: usize,
    rule: Rule,
) -> Result<Attribution<T>> {
    check_batch(net, 0, &x)?;
    let base = baseline.resolve(net, to_f64(x).view())?;
    integrated_gradients_from(
        net,
        0,
        x,
        from_f64::<T>(base.view()).view(),
        target,
        steps,
        rule,
    )
}

/// Integrated Gradients with respect to activation `from` (0 = the input, `l`
/// = the output of layer `l − 1`) for a batch of that activation's values `a`
/// (`[batch, len]`), from `baselines` (one row for all samples, or one per
/// sample); see [`integrated_gradients`]. All (sample, point) pairs are run
/// through the network's tail in batches of rows.
pub fn integrated_gradients_from<T: Float>(
    net: &Network,
    from: usize,
    a: ArrayView2<T>,
    baselines: ArrayView2<T>,
    target: &Target,
    steps: usize,
    rule: Rule,
) -> Result<Attribution<T>> {
    check_batch(net, from, &a)?;
    let (b, n) = a.dim();
    target.check(net, b)?;
    if baselines.ncols() != n || (baselines.nrows() != 1 && baselines.nrows() != b) {
        return Err(Error::Shape(format!(
            "integrated gradients: the baseline is {:?}, it needs [1, {n}] or [{b}, {n}]",
            baselines.dim()
        )));
    }
    if steps == 0 {
        return Err(Error::InvalidArgument(
            "integrated gradients need at least one step".into(),
        ));
    }
    let base = baselines
        .broadcast((b, n))
        .ok_or_else(|| Error::Shape("the baseline does not broadcast".into()))?;
    // The leading layers that are linear up to a constant (Dense, Conv, an
    // in-graph normalisation, reshapes) carry the straight path
    // a' + α (a − a') onto the straight path L(a') + α (L(a) − L(a')) with the
    // same α, and their Jacobian J is constant, so
    // Σ_k w_k ∂F/∂a (α_k) = Jᵀ Σ_k w_k ∂F/∂L(a) (α_k): the points run from the
    // first non-linear layer on, and the weighted sum of their gradients goes
    // back through J once per sample instead of once per point. The quadrature
    // is the same; only the first layers' work per point is saved.
    let mid = (from..net.len())
        .find(|&i| !net.layer(i).is_linear())
        .unwrap_or(net.len());
    let base = base.to_owned();
    let (pa, pb) = if mid > from {
        (
            net.forward_range(from, mid, a)?,
            net.forward_range(from, mid, base.view())?,
        )
    } else {
        (a.to_owned(), base.clone())
    };
    let m = pa.ncols();
    let points = rule.points(steps);
    let p = points.len();
    let total = b * p;
    let mut avg = Array2::<f64>::zeros((b, m));
    let per = rows_for::<T>(net, mid);
    let mut rows = Array2::<T>::zeros((per.min(total), m));
    for start in (0..total).step_by(per) {
        let end = (start + per).min(total);
        let mut batch = rows.slice_mut(s![..end - start, ..]);
        for (r, mut row) in batch.axis_iter_mut(Axis(0)).enumerate() {
            let (sb, k) = ((start + r) / p, (start + r) % p);
            let alpha = T::from_f64(points[k].0);
            for ((o, &x), &x0) in row.iter_mut().zip(pa.row(sb)).zip(pb.row(sb)) {
                *o = x0 + alpha * (x - x0);
            }
        }
        let (_, g) = row_gradients(net, mid, batch.view(), |r| {
            target.objective((start + r) / p)
        })?;
        for (r, gr) in g.axis_iter(Axis(0)).enumerate() {
            let (sb, k) = ((start + r) / p, (start + r) % p);
            let w = points[k].1;
            avg.row_mut(sb)
                .iter_mut()
                .zip(gr)
                .for_each(|(s, v)| *s += w * v.as_f64());
        }
    }
    for i in (from..mid).rev() {
        avg = linear_vjp(net.layer(i), net.activation_len(i), avg.view()).ok_or_else(|| {
            Error::Numeric {
                layer: format!("{i} '{}'", net.nodes()[i].name),
                message: "a linear layer without a vector-Jacobian product".into(),
            }
        })?;
    }
    let mut maps = Array2::<T>::zeros((b, n));
    let mut sums = vec![0.0; b];
    for (sb, (mut mr, ar)) in maps
        .axis_iter_mut(Axis(0))
        .zip(avg.axis_iter(Axis(0)))
        .enumerate()
    {
        for (((m, g), &x), &x0) in mr.iter_mut().zip(ar).zip(a.row(sb)).zip(base.row(sb)) {
            let v = g * (x.as_f64() - x0.as_f64());
            sums[sb] += v;
            *m = T::from_f64(v);
        }
    }
    let values = row_values(net, from, a, |r| target.objective(r))?;
    let baseline_values = row_values(net, from, base.view(), |r| target.objective(r))?;
    let residuals = (0..b)
        .map(|i| completeness_residual(sums[i], values[i], baseline_values[i]))
        .collect();
    Ok(Attribution {
        method: Method::IntegratedGradients,
        maps,
        values,
        baseline_values: Some(baseline_values),
        residuals: Some(residuals),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrib::integrated_gradients;
    use crate::model::{Dense, Layer, Node};
    use ndarray::{array, Array1};

    fn node(name: &str, i: usize, o: usize) -> Node {
        Node {
            name: name.into(),
            op_types: vec![name.into()],
            in_shape: vec![1, i],
            out_shape: vec![1, o],
        }
    }

    #[test]
    fn linear_network_is_exact_and_complete() {
        // F(x) = w·x + b: IG_i = w_i (x_i − x'_i) exactly, under every rule.
        let net = Network::from_layers(
            "lin",
            vec![1, 3],
            vec![(
                node("Gemm", 3, 1),
                Layer::Dense(Dense {
                    weight: array![[0.5, -2.0, 3.0]],
                    bias: Array1::from_vec(vec![0.25]),
                    rows: 1,
                }),
            )],
        )
        .unwrap();
        for rule in [Rule::Left, Rule::Right, Rule::Midpoint, Rule::Trapezoid] {
            let m = integrated_gradients_at(
                &net,
                0,
                &[1.0, 2.0, -1.0],
                &[0.0, 1.0, 0.0],
                &Objective::Logit(0),
                7,
                rule,
            )
            .unwrap();
            let want = [0.5, -2.0, -3.0];
            for (g, w) in m.attributions.iter().zip(want) {
                assert!((g - w).abs() < 1e-12, "{rule:?}: {g} vs {w}");
            }
            assert!(m.completeness_residual < 1e-12);
        }
    }

    #[test]
    fn relu_network_converges_with_steps() {
        let net = Network::from_layers(
            "r",
            vec![1, 2],
            vec![
                (
                    node("Gemm", 2, 2),
                    Layer::Dense(Dense {
                        weight: array![[1.0, -1.0], [0.5, 2.0]],
                        bias: Array1::from_vec(vec![0.1, -0.3]),
                        rows: 1,
                    }),
                ),
                (node("Relu", 2, 2), Layer::Relu),
                (
                    node("Gemm", 2, 2),
                    Layer::Dense(Dense {
                        weight: array![[1.0, 2.0], [-1.0, 0.5]],
                        bias: Array1::from_vec(vec![0.0, 0.2]),
                        rows: 1,
                    }),
                ),
            ],
        )
        .unwrap();
        let coarse = integrated_gradients_at(
            &net,
            0,
            &[0.7, 0.4],
            &[0.0, 0.0],
            &Objective::Softmax(0),
            4,
            Rule::Midpoint,
        )
        .unwrap();
        let fine = integrated_gradients_at(
            &net,
            0,
            &[0.7, 0.4],
            &[0.0, 0.0],
            &Objective::Softmax(0),
            4000,
            Rule::Midpoint,
        )
        .unwrap();
        assert!(
            fine.completeness_residual < 1e-3,
            "{}",
            fine.completeness_residual
        );
        assert!(fine.completeness_residual <= coarse.completeness_residual + 1e-12);
    }

    #[test]
    fn bad_sizes_are_errors() {
        let net =
            Network::from_layers("e", vec![1, 2], vec![(node("Relu", 2, 2), Layer::Relu)]).unwrap();
        assert!(integrated_gradients_at(
            &net,
            0,
            &[1.0],
            &[0.0, 0.0],
            &Objective::Logit(0),
            8,
            Rule::Left
        )
        .is_err());
        assert!(integrated_gradients_at(
            &net,
            0,
            &[1.0, 1.0],
            &[0.0, 0.0],
            &Objective::Logit(0),
            0,
            Rule::Left
        )
        .is_err());
        assert!(integrated_gradients_at(
            &net,
            5,
            &[1.0, 1.0],
            &[0.0, 0.0],
            &Objective::Logit(0),
            8,
            Rule::Left
        )
        .is_err());
    }

    #[test]
    fn batched_maps_match_one_sample_at_a_time_under_every_baseline() {
        use crate::attrib::testnets::{cnn, inputs};
        let net = cnn();
        let x = inputs(&net, 3, 0.47);
        let t: Target = vec![
            Objective::Logit(0),
            Objective::Softmax(2),
            Objective::Logit(1),
        ]
        .into();
        for base in [
            Baseline::Zero,
            Baseline::Constant(1.0),
            Baseline::Uniform {
                low: 0.0,
                high: 1.0,
                seed: 5,
            },
            Baseline::Blur { sigma: 1.0 },
            Baseline::Given(Array2::from_elem((1, 36), 0.3)),
        ] {
            let all = integrated_gradients(&net, x.view(), &base, &t, 9, Rule::Trapezoid).unwrap();
            let bl = base.resolve(&net, x.view()).unwrap();
            for b in 0..3 {
                let one = integrated_gradients_at(
                    &net,
                    0,
                    &x.row(b).to_vec(),
                    &bl.row(b).to_vec(),
                    t.objective(b),
                    9,
                    Rule::Trapezoid,
                )
                .unwrap();
                for (p, q) in all.maps.row(b).iter().zip(&one.attributions) {
                    assert!((p - q).abs() < 1e-14, "{base:?}");
                }
                assert!(
                    (all.residuals.as_ref().unwrap()[b] - one.completeness_residual).abs() < 1e-9
                );
                assert_eq!(one.steps, 10);
            }
        }
    }

    #[test]
    fn relu_network_residual_shrinks_and_f32_agrees() {
        use crate::attrib::testnets::{inputs, mlp};
        let net = mlp();
        let x = inputs(&net, 4, 0.91);
        let t = Target::logit(2);
        // The integrand is piecewise constant (ReLU), so the quadrature error
        // falls like 1/steps.
        let res = |steps| {
            integrated_gradients(&net, x.view(), &Baseline::Zero, &t, steps, Rule::Midpoint)
                .unwrap()
                .worst_residual()
                .unwrap()
        };
        let (coarse, fine) = (res(16), res(4096));
        assert!(fine < 1e-3 && fine < coarse / 10.0, "{coarse} {fine}");
        let x32 = x.mapv(|v| v as f32);
        let a = integrated_gradients(&net, x.view(), &Baseline::Zero, &t, 20, Rule::Right).unwrap();
        let b =
            integrated_gradients(&net, x32.view(), &Baseline::Zero, &t, 20, Rule::Right).unwrap();
        for (p, q) in b.maps.iter().zip(a.maps.iter()) {
            assert!((*p as f64 - q).abs() < 1e-4 * (1.0 + q.abs()));
        }
        assert!(integrated_gradients(
            &net,
            x.view(),
            &Baseline::Given(Array2::zeros((2, 6))),
            &t,
            4,
            Rule::Left
        )
        .is_err());
    }

    #[test]
    fn rules_have_unit_weight_and_their_points() {
        for rule in [Rule::Left, Rule::Right, Rule::Midpoint, Rule::Trapezoid] {
            let p = rule.points(8);
            assert!((p.iter().map(|(_, w)| w).sum::<f64>() - 1.0).abs() < 1e-15);
            assert!(p.iter().all(|(a, _)| (0.0..=1.0).contains(a)));
        }
        assert_eq!(Rule::Trapezoid.points(8).len(), 9);
        assert_eq!(Rule::Left.points(8)[0].0, 0.0);
        assert_eq!(Rule::Right.points(8)[7].0, 1.0);
    }
}
