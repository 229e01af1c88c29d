//! Modified backward passes: DeepLIFT with the rescale rule (Shrikumar,
//! Greenside and Kundaje 2017) and guided backprop (Springenberg, Dosovitskiy,
//! Brox and Riedmiller 2015), batched.
//!
//! Both run the ordinary vector–Jacobian product through the layers that are
//! linear up to a constant (Dense, Conv, Affine, AvgPool, Transpose, Pad,
//! Reshape), where every rule agrees with the chain rule, and replace it at
//! the nonlinearities. The rules at the nonlinearities are Captum's
//! (`captum.attr.DeepLift`, `captum.attr.GuidedBackprop`), so that the maps
//! agree with it.

use ndarray::{s, Array2, ArrayView2, Axis, Zip};

use super::{
    check_batch, completeness_residual, from_f64, to_f64, trace_and_seed, Attribution, Baseline,
    Method, Target, ROWS,
};
use crate::model::backward::layer_vjp;
use crate::model::{Float, Layer, Network, PoolGeom};
use crate::{Error, Result};

/// `|Δx|` below which DeepLIFT's multiplier `Δy/Δx` is replaced by the
/// gradient `∂y/∂x` at the input, the multiplier's limit as `Δx → 0`
/// (Captum's `eps`).
pub const DEEPLIFT_EPS: f64 = 1e-10;

fn layer_error(net: &Network, i: usize, kind: &str, message: String) -> Error {
    Error::Numeric {
        layer: format!("{i} '{}' ({kind})", net.nodes()[i].name),
        message,
    }
}

/// DeepLIFT with the rescale rule against a baseline: `C_i = (x_i − x'_i) · m_i`,
/// where the multipliers `m = ∂^{DL}F/∂x` are back-propagated with the chain
/// rule for multipliers (Shrikumar et al. 2017, Eq. 3) and, at every
/// element-wise nonlinearity `y = f(x)` (ReLU, Sigmoid, Tanh), the rescale
/// rule `m_{Δx Δy} = Δy / Δx = (f(x) − f(x')) / (x − x')` (the Rescale rule, §3.5.2), or
/// `f'(x)` where `|Δx| < ` [`DEEPLIFT_EPS`]. The other nonlinearities follow
/// Captum's `DeepLift`:
///
/// * **MaxPool**: with `M = max(y, y')` per window, `Δy` is split as
///   `(M − y') + (y − M)`; the first part is routed to the input's argmax,
///   the second to the baseline's argmax, and the multiplier of an input
///   element is the routed `∂F/∂y · Δy` divided by its `Δx` (the max-pool's
///   ordinary gradient where `|Δx| < ε`). Overlapping windows add up.
/// * **Softmax**: the element-wise rescale multiplier minus its mean over the
///   softmax axis (Captum subtracts the mean over its whole gradient tensor,
///   batch included; here each sample and softmax group is on its own).
///
/// The objective is applied to the network's output with its gradient at the
/// input's output `y(x)`: exact for a logit, a margin against a fixed class or
/// any linear objective, a linearisation for a softmax entry. Summation to
/// delta, `Σ_i C_i = F(x) − F(x')`, then holds exactly for ReLU networks with a
/// linear objective; its residual is reported with every map.
pub fn deeplift<T: Float>(
    net: &Network,
    x: ArrayView2<T>,
    baseline: &Baseline,
    target: &Target,
) -> Result<Attribution<T>> {
    check_batch(net, 0, &x)?;
    let base = baseline.resolve(net, to_f64(x).view())?;
    deeplift_with(net, x, from_f64::<T>(base.view()).view(), target)
}

/// [`deeplift`] against given baselines, one row for all samples or one per sample.
pub fn deeplift_with<T: Float>(
    net: &Network,
    x: ArrayView2<T>,
    baselines: ArrayView2<T>,
    target: &Target,
) -> Result<Attribution<T>> {
    check_batch(net, 0, &x)?;
    let (b, n) = x.dim();
    target.check(net, b)?;
    if baselines.ncols() != n || (baselines.nrows() != 1 && baselines.nrows() != b) {
        return Err(Error::Shape(format!(
            "DeepLIFT: the baseline is {:?}, it needs [1, {n}] or [{b}, {n}]",
            baselines.dim()
        )));
    }
    let base = baselines
        .broadcast((b, n))
        .ok_or_else(|| Error::Shape("the baseline does not broadcast".into()))?;
    let layers = net.layers_as::<T>();
    let eps = T::from_f64(DEEPLIFT_EPS);
    let mut maps = Array2::<T>::zeros((b, n));
    let mut values = Vec::with_capacity(b);
    let mut baseline_values = Vec::with_capacity(b);
    let mut residuals = Vec::with_capacity(b);
    for start in (0..b).step_by(ROWS) {
        let end = (start + ROWS).min(b);
        let xs = x.slice(s![start..end, ..]);
        let bs = base.slice(s![start..end, ..]);
        let (tx, v, mut g) = trace_and_seed(net, 0, xs, |r| target.objective(start + r))?;
        let (tr, vr, _) = trace_and_seed(net, 0, bs, |r| target.objective(start + r))?;
        for i in (0..net.len()).rev() {
            let layer = &layers[i];
            let (xa, ya) = (tx.activations[i].view(), tx.activations[i + 1].view());
            let (xr, yr) = (tr.activations[i].view(), tr.activations[i + 1].view());
            let regular = layer_vjp(layer, xa, ya, g.view())
                .map_err(|m| layer_error(net, i, layer.kind(), m))?;
            g = match layer {
                Layer::Relu | Layer::Sigmoid | Layer::Tanh => {
                    rescale(regular, xa, ya, xr, yr, g.view(), eps)
                }
                Layer::Softmax { outer, len, inner } => {
                    let mut m = rescale(regular, xa, ya, xr, yr, g.view(), eps);
                    centre_groups(&mut m, *outer, *len, *inner);
                    m
                }
                Layer::MaxPool(geom) => maxpool_rule(geom, regular, xa, ya, xr, yr, g.view(), eps),
                _ if layer.is_linear() => regular,
                other => {
                    return Err(layer_error(
                        net,
                        i,
                        other.kind(),
                        "DeepLIFT has no rule for this layer".into(),
                    ))
                }
            };
        }
        for (r, (mut mr, gr)) in maps
            .slice_mut(s![start..end, ..])
            .axis_iter_mut(Axis(0))
            .zip(g.axis_iter(Axis(0)))
            .enumerate()
        {
            let mut sum = 0.0;
            for (((o, &m), &xv), &bv) in mr.iter_mut().zip(gr).zip(xs.row(r)).zip(bs.row(r)) {
                let c = m.as_f64() * (xv.as_f64() - bv.as_f64());
                sum += c;
                *o = T::from_f64(c);
            }
            residuals.push(completeness_residual(sum, v[r], vr[r]));
        }
        values.extend(v);
        baseline_values.extend(vr);
    }
    Ok(Attribution {
        method: Method::DeepLift,
        maps,
        values,
        baseline_values: Some(baseline_values),
        residuals: Some(residuals),
    })
}

/// `m = g ⊙ Δy / Δx`, or the ordinary gradient `regular` where `|Δx| < eps`.
fn rescale<T: Float>(
    mut regular: Array2<T>,
    x: ArrayView2<T>,
    y: ArrayView2<T>,
    xr: ArrayView2<T>,
    yr: ArrayView2<T>,
    g: ArrayView2<T>,
    eps: T,
) -> Array2<T> {
    Zip::from(&mut regular)
        .and(&x)
        .and(&y)
        .and(&xr)
        .and(&yr)
        .and(&g)
        .for_each(|m, &x, &y, &xr, &yr, &g| {
            let dx = x - xr;
            if dx.abs() >= eps {
                *m = g * (y - yr) / dx;
            }
        });
    regular
}

/// Subtracts the mean over every softmax group of each row.
fn centre_groups<T: Float>(m: &mut Array2<T>, outer: usize, len: usize, inner: usize) {
    for mut row in m.axis_iter_mut(Axis(0)) {
        for o in 0..outer {
            for k in 0..inner {
                let base = o * len * inner + k;
                let mean = (0..len).map(|l| row[base + l * inner]).sum::<T>()
                    / T::from_f64(len.max(1) as f64);
                for l in 0..len {
                    row[base + l * inner] -= mean;
                }
            }
        }
    }
}

/// First position of the maximum of a window (the IR's and PyTorch's tie rule).
fn argmax_in<T: Float>(
    plane: &[T],
    w_in: usize,
    rows: (usize, usize),
    cols: (usize, usize),
) -> usize {
    let mut best = rows.0 * w_in + cols.0;
    let mut m = T::neg_infinity();
    for r in rows.0..rows.1 {
        for c in cols.0..cols.1 {
            if plane[r * w_in + c] > m {
                m = plane[r * w_in + c];
                best = r * w_in + c;
            }
        }
    }
    best
}

/// Captum's DeepLIFT rule for a max-pool (see [`deeplift`]).
#[allow(clippy::too_many_arguments)]
fn maxpool_rule<T: Float>(
    geom: &PoolGeom,
    regular: Array2<T>,
    x: ArrayView2<T>,
    y: ArrayView2<T>,
    xr: ArrayView2<T>,
    yr: ArrayView2<T>,
    g: ArrayView2<T>,
    eps: T,
) -> Array2<T> {
    let plane_len = geom.h_in * geom.w_in;
    let mut routed = Array2::<T>::zeros(x.raw_dim());
    for (row, mut ur) in routed.axis_iter_mut(Axis(0)).enumerate() {
        let xs = x.row(row).to_vec();
        let xrs = xr.row(row).to_vec();
        for c in 0..geom.c {
            let px = &xs[c * plane_len..][..plane_len];
            let pr = &xrs[c * plane_len..][..plane_len];
            for i in 0..geom.h_out {
                let rows = geom.rows(i);
                for j in 0..geom.w_out {
                    let cols = geom.cols(j);
                    let o = (c * geom.h_out + i) * geom.w_out + j;
                    let (yo, yro, go) = (y[[row, o]], yr[[row, o]], g[[row, o]]);
                    let top = yo.max(yro);
                    let ax = c * plane_len + argmax_in(px, geom.w_in, rows, cols);
                    let ar = c * plane_len + argmax_in(pr, geom.w_in, rows, cols);
                    ur[ax] += go * (top - yro);
                    ur[ar] += go * (yo - top);
                }
            }
        }
    }
    let mut out = regular;
    Zip::from(&mut out)
        .and(&routed)
        .and(&x)
        .and(&xr)
        .for_each(|m, &u, &x, &xr| {
            let dx = x - xr;
            if dx.abs() >= eps {
                *m = u / dx;
            }
        });
    out
}

/// Guided backprop: the gradient of the target with respect to the input,
/// computed with every ReLU's backward step replaced by
/// `R_in = 1[x > 0] · max(R_out, 0)` — only positive signals pass, both
/// forward and backward (Springenberg et al. 2015, Fig. 1). Every other
/// layer, MaxPool and Sigmoid included, back-propagates its ordinary gradient
/// (as Captum's `GuidedBackprop`).
pub fn guided_backprop<T: Float>(
    net: &Network,
    x: ArrayView2<T>,
    target: &Target,
) -> Result<Attribution<T>> {
    check_batch(net, 0, &x)?;
    let b = x.nrows();
    target.check(net, b)?;
    let layers = net.layers_as::<T>();
    let mut maps = Array2::<T>::zeros(x.raw_dim());
    let mut values = Vec::with_capacity(b);
    for start in (0..b).step_by(ROWS) {
        let end = (start + ROWS).min(b);
        let (tx, v, mut g) = trace_and_seed(net, 0, x.slice(s![start..end, ..]), |r| {
            target.objective(start + r)
        })?;
        for i in (0..net.len()).rev() {
            let layer = &layers[i];
            let (xa, ya) = (tx.activations[i].view(), tx.activations[i + 1].view());
            g = layer_vjp(layer, xa, ya, g.view())
                .map_err(|m| layer_error(net, i, layer.kind(), m))?;
            if matches!(layer, Layer::Relu) {
                g.mapv_inplace(|v| v.max(T::zero()));
            }
        }
        maps.slice_mut(s![start..end, ..]).assign(&g);
        values.extend(v);
    }
    Ok(Attribution {
        method: Method::GuidedBackprop,
        maps,
        values,
        baseline_values: None,
        residuals: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrib::testnets::{cnn, inputs, linear, mlp, smooth};
    use crate::attrib::{gradient_x_input, integrated_gradients, saliency, Rule};
    use crate::Objective;

    #[test]
    fn linear_network_deeplift_is_weight_times_delta() {
        let net = linear();
        let x = inputs(&net, 3, 0.37);
        let base = Baseline::Constant(0.25);
        let d = deeplift(&net, x.view(), &base, &Target::logit(0)).unwrap();
        let ig =
            integrated_gradients(&net, x.view(), &base, &Target::logit(0), 2, Rule::Left).unwrap();
        for (a, b) in d.maps.iter().zip(ig.maps.iter()) {
            assert!((a - b).abs() < 1e-14);
        }
        assert!(d.worst_residual().unwrap() < 1e-12);
        // With a zero baseline it is gradient ⊙ input.
        let z = deeplift(&net, x.view(), &Baseline::Zero, &Target::logit(1)).unwrap();
        let gx = gradient_x_input(&net, x.view(), &Target::logit(1)).unwrap();
        for (a, b) in z.maps.iter().zip(gx.maps.iter()) {
            assert!((a - b).abs() < 1e-14);
        }
    }

    #[test]
    fn deeplift_sums_to_delta_on_relu_and_maxpool_networks() {
        for net in [mlp(), cnn()] {
            let x = inputs(&net, 5, 0.61);
            for base in [
                Baseline::Zero,
                Baseline::Constant(-0.3),
                Baseline::Uniform {
                    low: -1.0,
                    high: 1.0,
                    seed: 2,
                },
            ] {
                for c in 0..3 {
                    let d = deeplift(&net, x.view(), &base, &Target::logit(c)).unwrap();
                    let r = d.worst_residual().unwrap();
                    assert!(r < 1e-10, "{} {base:?} class {c}: residual {r}", net.name());
                }
            }
        }
    }

    #[test]
    fn one_relu_is_the_secant_slope() {
        // F(x) = relu(w x + b): DeepLIFT gives Δrelu / Δ(w x + b) · w · Δx, IG's limit.
        use crate::attrib::testnets::{dense, node};
        let net = Network::from_layers(
            "one",
            vec![1, 1],
            vec![
                dense(ndarray::array![[2.0]], vec![-1.0]),
                (node("Relu", vec![1, 1], vec![1, 1]), Layer::Relu),
            ],
        )
        .unwrap();
        let x: Array2<f64> = ndarray::array![[1.5], [0.25]];
        let d = deeplift(&net, x.view(), &Baseline::Zero, &Target::logit(0)).unwrap();
        // x = 1.5: relu(2) − relu(−1) = 2, all of it attributed to x.
        assert!((d.maps[[0, 0]] - 2.0).abs() < 1e-15);
        // x = 0.25: relu(−0.5) − relu(−1) = 0.
        assert_eq!(d.maps[[1, 0]], 0.0);
        // At the baseline itself the multiplier falls back to the gradient and C = 0.
        let at = deeplift(
            &net,
            x.view(),
            &Baseline::Given(x.clone()),
            &Target::logit(0),
        )
        .unwrap();
        assert!(at.maps.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn smooth_nonlinearities_get_the_rescale_rule_and_f32_agrees() {
        let net = smooth();
        let x = inputs(&net, 4, 0.83);
        let d = deeplift(&net, x.view(), &Baseline::Zero, &Target::logit(2)).unwrap();
        // Rescale through Tanh/Sigmoid keeps summation to delta for a logit.
        assert!(d.worst_residual().unwrap() < 1e-10);
        let x32 = x.mapv(|v| v as f32);
        let d32 = deeplift(&net, x32.view(), &Baseline::Zero, &Target::logit(2)).unwrap();
        for (a, b) in d32.maps.iter().zip(d.maps.iter()) {
            assert!((*a as f64 - b).abs() < 1e-4 * (1.0 + b.abs()), "{a} {b}");
        }
        // A softmax target is linearised at y(x): reported, not hidden.
        let s = deeplift(&net, x.view(), &Baseline::Zero, &Target::softmax(0)).unwrap();
        assert!(s.residuals.is_some());
    }

    #[test]
    fn softmax_layer_rule_centres_the_multipliers() {
        use crate::attrib::testnets::{dense, node};
        let net = Network::from_layers(
            "sm",
            vec![1, 2],
            vec![
                dense(
                    ndarray::array![[1.0, -1.0], [0.5, 2.0], [0.3, 0.3]],
                    vec![0.0; 3],
                ),
                (
                    node("Softmax", vec![1, 3], vec![1, 3]),
                    Layer::Softmax {
                        outer: 1,
                        len: 3,
                        inner: 1,
                    },
                ),
            ],
        )
        .unwrap();
        let x: Array2<f64> = ndarray::array![[0.4, -0.7]];
        let d = deeplift(&net, x.view(), &Baseline::Zero, &Target::logit(1)).unwrap();
        assert!(d.maps.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn guided_backprop_passes_only_positive_signals() {
        let net = mlp();
        let x = inputs(&net, 3, 0.47);
        let t = Target::logit(3);
        let gb = guided_backprop(&net, x.view(), &t).unwrap();
        let g = saliency(&net, x.view(), &t).unwrap();
        assert!(gb.maps.iter().zip(g.maps.iter()).any(|(a, b)| a != b));
        // On a network without ReLU it is the gradient.
        let lin = linear();
        let xl = inputs(&lin, 2, 0.3);
        let a = guided_backprop(&lin, xl.view(), &Target::logit(0)).unwrap();
        let b = saliency(&lin, xl.view(), &Target::logit(0)).unwrap();
        assert_eq!(a.maps, b.maps);
        // f32 agrees.
        let x32 = x.mapv(|v| v as f32);
        let gb32 = guided_backprop(&net, x32.view(), &t).unwrap();
        for (p, q) in gb32.maps.iter().zip(gb.maps.iter()) {
            assert!((*p as f64 - q).abs() < 1e-5 * (1.0 + q.abs()));
        }
        assert!(guided_backprop(&net, x.view(), &Target::All(Objective::Logit(9))).is_err());
    }

    #[test]
    fn guided_backprop_closed_form_on_one_hidden_layer() {
        use crate::attrib::testnets::{dense, node};
        // F(x) = v · relu(W x + c): guided = Wᵀ (max(v, 0) ⊙ 1[W x + c > 0]).
        let w = ndarray::array![[1.0, -2.0], [0.5, 1.5], [-1.0, 0.25]];
        let c = vec![0.1, -0.2, 0.3];
        let v = ndarray::array![[2.0, -3.0, 0.5]];
        let net = Network::from_layers(
            "gb",
            vec![1, 2],
            vec![
                dense(w.clone(), c.clone()),
                (node("Relu", vec![1, 3], vec![1, 3]), Layer::Relu),
                dense(v.clone(), vec![0.0]),
            ],
        )
        .unwrap();
        let x: Array2<f64> = ndarray::array![[0.7, 0.2], [-0.4, 0.9]];
        let gb = guided_backprop(&net, x.view(), &Target::logit(0)).unwrap();
        for b in 0..2 {
            for i in 0..2 {
                let mut want = 0.0;
                for j in 0..3 {
                    let h = w[[j, 0]] * x[[b, 0]] + w[[j, 1]] * x[[b, 1]] + c[j];
                    if h > 0.0 {
                        want += w[[j, i]] * v[[0, j]].max(0.0);
                    }
                }
                assert!((gb.maps[[b, i]] - want).abs() < 1e-14);
            }
        }
    }
}
