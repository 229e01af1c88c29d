//! Interval bound propagation (IBP).
//!
//! An affine layer maps the box `[c − r, c + r]` to the box with centre
//! `W c + b` and radius `|W| r`, which is exact for one affine layer; monotone
//! layers (ReLU, Sigmoid, Tanh, pooling, index maps) map the corners `l` and
//! `u`; Softmax uses `σ_i ∈ [1 / (1 + Σ_{j≠i} e^{u_j − l_i}), 1 / (1 + Σ_{j≠i} e^{l_j − u_i})]`.

use ndarray::{Array1, Array2};

use super::{Bounds, NetworkBounds, FP_ABS, FP_REL};
use crate::model::forward::layer_forward;
use crate::model::{Conv, Dense, Layer, Network};
use crate::property::InputBox;
use crate::{Error, Result};

/// IBP bounds on every activation of `net` for inputs in `input`.
pub fn interval(net: &Network, input: &InputBox) -> Result<NetworkBounds> {
    let first = input_bounds(net, input)?;
    let mut activations = Vec::with_capacity(net.len() + 1);
    activations.push(first);
    for i in 0..net.len() {
        let next = propagate(net, i, &activations[i])?;
        activations.push(next);
    }
    Ok(NetworkBounds { activations })
}

/// The input box as [`Bounds`], checked against the network's input size.
pub(crate) fn input_bounds(net: &Network, input: &InputBox) -> Result<Bounds> {
    if input.lower.len() != net.input_len() {
        return Err(Error::Shape(format!(
            "the input box has {} entries, the network takes {}",
            input.lower.len(),
            net.input_len()
        )));
    }
    if let Some(i) = (0..input.lower.len()).find(|&i| {
        !(input.lower[i].is_finite() && input.upper[i].is_finite())
            || input.lower[i] > input.upper[i]
    }) {
        return Err(Error::InvalidArgument(format!(
            "input {i} has bounds [{}, {}]: bounds need a finite, non-empty box",
            input.lower[i], input.upper[i]
        )));
    }
    Ok(Bounds::new(input.lower.clone(), input.upper.clone()))
}

/// Widens `b` by `(fan_in + 2) · FP_REL · mag + FP_ABS` on each side.
fn widen(b: &mut Bounds, mag: &[f64], fan_in: usize) {
    let k = (fan_in as f64 + 2.0) * FP_REL;
    for ((l, u), m) in b.lower.iter_mut().zip(b.upper.iter_mut()).zip(mag) {
        let e = k * m + FP_ABS;
        *l -= e;
        *u += e;
    }
}

fn row(v: &[f64]) -> Array2<f64> {
    Array2::from_shape_vec((1, v.len()), v.to_vec()).unwrap_or_else(|_| Array2::zeros((1, 0)))
}

/// The same affine layer with `|W|` and no bias, for radii and magnitudes.
fn abs_layer(layer: &Layer<f64>) -> Option<(Layer<f64>, usize)> {
    match layer {
        Layer::Dense(d) => Some((
            Layer::Dense(Dense {
                weight: d.weight.mapv(f64::abs),
                bias: Array1::zeros(d.bias.len()),
                rows: d.rows,
            }),
            d.weight.ncols(),
        )),
        Layer::Conv(c) => Some((
            Layer::Conv(Conv {
                weight: c.weight.mapv(f64::abs),
                bias: Array1::zeros(c.bias.len()),
                geom: c.geom.clone(),
            }),
            c.geom.patch_len(),
        )),
        Layer::Affine { scale, shift } => Some((
            Layer::Affine {
                scale: scale.mapv(f64::abs),
                shift: Array1::zeros(shift.len()),
            },
            1,
        )),
        _ => None,
    }
}

/// IBP through layer `i` of `net`, given bounds on its input.
pub(crate) fn propagate(net: &Network, i: usize, b: &Bounds) -> Result<Bounds> {
    let layer = net.layer(i);
    let out_len = net.nodes()[i].out_len();
    let fwd = |v: &[f64]| -> Vec<f64> {
        layer_forward(layer, row(v).view(), out_len)
            .into_raw_vec_and_offset()
            .0
    };
    if let Some((abs, fan_in)) = abs_layer(layer) {
        let c: Vec<f64> = b
            .lower
            .iter()
            .zip(&b.upper)
            .map(|(l, u)| 0.5 * (l + u))
            .collect();
        let r: Vec<f64> = b
            .lower
            .iter()
            .zip(&b.upper)
            .map(|(l, u)| 0.5 * (u - l))
            .collect();
        let m: Vec<f64> = b
            .lower
            .iter()
            .zip(&b.upper)
            .map(|(l, u)| l.abs().max(u.abs()))
            .collect();
        let absf = |v: &[f64]| -> Vec<f64> {
            layer_forward(&abs, row(v).view(), out_len)
                .into_raw_vec_and_offset()
                .0
        };
        let yc = fwd(&c);
        let yr = absf(&r);
        // Magnitude of every term of the sums: |W|·max(|l|, |u|) + |b| (+ |c| and r themselves).
        let bias = fwd(&vec![0.0; c.len()]);
        let mag: Vec<f64> = absf(&m)
            .iter()
            .zip(&bias)
            .zip(&yr)
            .map(|((a, b), r)| a + b.abs() + r)
            .collect();
        let mut out = Bounds::new(
            yc.iter().zip(&yr).map(|(c, r)| c - r).collect(),
            yc.iter().zip(&yr).map(|(c, r)| c + r).collect(),
        );
        widen(&mut out, &mag, fan_in + 2);
        return Ok(out);
    }
    match layer {
        Layer::Relu
        | Layer::MaxPool(_)
        | Layer::Transpose { .. }
        | Layer::Pad { .. }
        | Layer::Reshape => {
            // Monotone and exact in floating point (max, copies).
            Ok(Bounds::new(fwd(&b.lower), fwd(&b.upper)))
        }
        Layer::AvgPool { geom, .. } => {
            // Monotone; a mean of k·k terms rounds like a dot product.
            let mut out = Bounds::new(fwd(&b.lower), fwd(&b.upper));
            let mag: Vec<f64> = out.lower.iter().zip(&out.upper).map(|(l, u)| l.abs().max(u.abs())).collect();
            widen(&mut out, &mag, geom.kh * geom.kw + 1);
            Ok(out)
        }
        Layer::Sigmoid | Layer::Tanh => {
            // Monotone; exp/tanh are accurate to a few ulp.
            let mut out = Bounds::new(fwd(&b.lower), fwd(&b.upper));
            let mag: Vec<f64> = out.lower.iter().zip(&out.upper).map(|(l, u)| l.abs().max(u.abs())).collect();
            widen(&mut out, &mag, 8);
            let (lo, hi) = if matches!(layer, Layer::Sigmoid) { (0.0, 1.0) } else { (-1.0, 1.0) };
            out.lower.iter_mut().for_each(|v| *v = v.max(lo));
            out.upper.iter_mut().for_each(|v| *v = v.min(hi));
            Ok(out)
        }
        Layer::Softmax { outer, len, inner } => {
            let n = b.len();
            let mut lower = vec![0.0; n];
            let mut upper = vec![0.0; n];
            for o in 0..*outer {
                for k in 0..*inner {
                    let idx = |l: usize| o * len * inner + l * inner + k;
                    for i in 0..*len {
                        let (li, ui) = (b.lower[idx(i)], b.upper[idx(i)]);
                        let (mut s_lo, mut s_hi) = (0.0, 0.0);
                        for j in (0..*len).filter(|&j| j != i) {
                            s_lo += (b.upper[idx(j)] - li).exp();
                            s_hi += (b.lower[idx(j)] - ui).exp();
                        }
                        lower[idx(i)] = 1.0 / (1.0 + s_lo);
                        upper[idx(i)] = 1.0 / (1.0 + s_hi);
                    }
                }
            }
            let mut out = Bounds::new(lower, upper);
            let ones = vec![1.0; n];
            widen(&mut out, &ones, 4 * len + 8);
            out.lower.iter_mut().for_each(|v| *v = v.max(0.0));
            out.upper.iter_mut().for_each(|v| *v = v.min(1.0));
            Ok(out)
        }
        Layer::Embedding { .. } => Err(Error::InvalidArgument(format!(
            "layer {i} '{}': bounds through an embedding lookup (integer token inputs) are not supported",
            net.nodes()[i].name
        ))),
        other => Err(Error::InvalidArgument(format!(
            "layer {i}: no interval rule for {}",
            other.kind()
        ))),
    }
}
