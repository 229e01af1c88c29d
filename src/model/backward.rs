//! Reverse mode: a vector–Jacobian product (VJP) per layer.
//!
//! For a scalar objective `f(y)` of the network's output, the backward pass
//! returns `∂f/∂a_l` for the input (`l = 0`) or any layer's activation `a_l`,
//! batched. At the kinks of ReLU and MaxPool the one-sided choice is fixed:
//! `relu'(0) = 0`, and a max routes its gradient to the first maximal entry.

use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

use super::float::Float;
use super::forward::{col2im, Trace};
use super::network::{Conv, Layer, Network, PoolGeom};
use crate::{Error, Result};

/// A scalar function of one output sample, the quantity whose gradient is taken.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Objective {
    /// `f(y) = y_c`.
    Logit(usize),
    /// `f(y) = softmax(y)_c = e^{y_c} / Σ_j e^{y_j}`.
    Softmax(usize),
    /// `f(y) = log softmax(y)_c = y_c − log Σ_j e^{y_j}`.
    LogSoftmax(usize),
    /// `f(y) = y_c − y_o`, or `y_c − max_{j≠c} y_j` when `other` is `None`.
    Margin {
        /// The class whose logit is counted positively.
        class: usize,
        /// The class subtracted; the best other class when `None`.
        other: Option<usize>,
    },
    /// `f(y) = Σ_j w_j y_j`.
    Linear(Vec<f64>),
}

impl Objective {
    /// Checks the class indices against the output length.
    pub fn check(&self, n_out: usize) -> Result<()> {
        let bad = |c: usize| {
            Err(Error::InvalidArgument(format!(
                "class {c} is out of range: the network has {n_out} outputs"
            )))
        };
        match self {
            Objective::Logit(c) | Objective::Softmax(c) | Objective::LogSoftmax(c) => {
                if *c >= n_out {
                    return bad(*c);
                }
            }
            Objective::Margin { class, other } => {
                if *class >= n_out {
                    return bad(*class);
                }
                if let Some(o) = other {
                    if *o >= n_out {
                        return bad(*o);
                    }
                }
                if other.is_none() && n_out < 2 {
                    return Err(Error::InvalidArgument(
                        "a margin against the best other class needs at least two outputs".into(),
                    ));
                }
            }
            Objective::Linear(w) => {
                if w.len() != n_out {
                    return Err(Error::Shape(format!(
                        "objective weights have {} entries, the network has {n_out} outputs",
                        w.len()
                    )));
                }
            }
        }
        Ok(())
    }

    /// The value `f(y)` and the gradient `∂f/∂y` for one output sample.
    pub fn value_and_grad<T: Float>(&self, y: &[T], grad: &mut [T]) -> T {
        grad.iter_mut().for_each(|g| *g = T::zero());
        match self {
            Objective::Logit(c) => {
                grad[*c] = T::one();
                y[*c]
            }
            Objective::Softmax(c) | Objective::LogSoftmax(c) => {
                let m = y.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
                let sum: T = y.iter().map(|&v| (v - m).exp()).sum();
                for (g, &v) in grad.iter_mut().zip(y) {
                    *g = -(v - m).exp() / sum;
                }
                let p = (y[*c] - m).exp() / sum;
                if matches!(self, Objective::Softmax(_)) {
                    // ∂p_c/∂y_j = p_c (δ_cj − p_j)
                    grad.iter_mut().for_each(|g| *g *= p);
                    grad[*c] += p;
                    p
                } else {
                    grad[*c] += T::one();
                    y[*c] - m - sum.ln()
                }
            }
            Objective::Margin { class, other } => {
                let o = match other {
                    Some(o) => *o,
                    None => (0..y.len())
                        .filter(|&j| j != *class)
                        .fold(None, |best: Option<usize>, j| match best {
                            Some(b) if y[b] >= y[j] => Some(b),
                            _ => Some(j),
                        })
                        .unwrap_or(*class),
                };
                grad[*class] += T::one();
                grad[o] -= T::one();
                y[*class] - y[o]
            }
            Objective::Linear(w) => {
                let mut v = T::zero();
                for ((g, &wj), &yj) in grad.iter_mut().zip(w).zip(y) {
                    *g = T::from_f64(wj);
                    v += *g * yj;
                }
                v
            }
        }
    }
}

/// Values of an objective and its gradient with respect to one activation.
#[derive(Clone, Debug)]
pub struct Gradient<T> {
    /// `f(y)` per sample.
    pub values: Vec<T>,
    /// `∂f/∂a` per sample, `[batch, len(a)]`.
    pub grad: Array2<T>,
}

impl Network {
    /// Gradient of `objective` with respect to activation `wrt` (0 = the input,
    /// `l` = the output of layer `l − 1`) at the inputs `x` (`[batch, input_len]`).
    pub fn gradient<T: Float>(
        &self,
        x: ArrayView2<T>,
        objective: &Objective,
        wrt: usize,
    ) -> Result<Gradient<T>> {
        if wrt > self.len() {
            return Err(Error::InvalidArgument(format!(
                "activation {wrt} does not exist: the network has {} layers",
                self.len()
            )));
        }
        let head = self.forward_range(0, wrt, x)?;
        self.gradient_from(wrt, head.view(), objective)
    }

    /// Gradient of `objective` with respect to activation `from`, given that
    /// activation's values `a` (`[batch, len(a_from)]`): the network's tail from
    /// layer `from` on is run and differentiated.
    pub fn gradient_from<T: Float>(
        &self,
        from: usize,
        a: ArrayView2<T>,
        objective: &Objective,
    ) -> Result<Gradient<T>> {
        objective.check(self.output_len())?;
        let trace = self.trace_range(from, self.len(), a)?;
        let y = trace.output();
        let n_out = y.ncols();
        let mut gy = Array2::<T>::zeros(y.raw_dim());
        let mut values = Vec::with_capacity(y.nrows());
        let mut buf = vec![T::zero(); n_out];
        for (yr, mut gr) in y.axis_iter(Axis(0)).zip(gy.axis_iter_mut(Axis(0))) {
            let yr = yr.to_vec();
            values.push(objective.value_and_grad(&yr, &mut buf));
            gr.iter_mut().zip(&buf).for_each(|(g, b)| *g = *b);
        }
        let grad = self.backward(&trace, from, gy.view())?;
        Ok(Gradient { values, grad })
    }

    /// Back-propagates `grad_out` (`∂f/∂output`, `[batch, output_len]`) through a
    /// trace of layers `from..len()` and returns `∂f/∂a_from`.
    pub fn backward<T: Float>(
        &self,
        trace: &Trace<T>,
        from: usize,
        grad_out: ArrayView2<T>,
    ) -> Result<Array2<T>> {
        let layers = T::layers(self);
        if trace.activations.len() != self.len() - from + 1 {
            return Err(Error::InvalidArgument(format!(
                "the trace holds {} activations, layers {from}..{} need {}",
                trace.activations.len(),
                self.len(),
                self.len() - from + 1
            )));
        }
        if grad_out.dim() != trace.output().dim() {
            return Err(Error::Shape(format!(
                "output gradient is {:?}, the output batch is {:?}",
                grad_out.dim(),
                trace.output().dim()
            )));
        }
        let mut g = grad_out.to_owned();
        for i in (from..self.len()).rev() {
            let x = trace.activations[i - from].view();
            let y = trace.activations[i - from + 1].view();
            g = layer_vjp(&layers[i], x, y, g.view()).map_err(|m| Error::Numeric {
                layer: format!("{i} '{}' ({})", self.nodes[i].name, layers[i].kind()),
                message: m,
            })?;
        }
        Ok(g)
    }
}

/// `∂f/∂x = (∂y/∂x)ᵀ ∂f/∂y` for one layer, given its input `x` and output `y`.
pub(crate) fn layer_vjp<T: Float>(
    layer: &Layer<T>,
    x: ArrayView2<T>,
    y: ArrayView2<T>,
    gy: ArrayView2<T>,
) -> std::result::Result<Array2<T>, String> {
    if let Some(gx) = linear_vjp(layer, x.ncols(), gy) {
        return Ok(gx);
    }
    let x = x.as_standard_layout();
    let gy = gy.as_standard_layout();
    Ok(match layer {
        Layer::Relu => {
            let mut gx = gy.into_owned();
            gx.zip_mut_with(&x, |g, &v| {
                if v <= T::zero() {
                    *g = T::zero()
                }
            });
            gx
        }
        Layer::Sigmoid => {
            let mut gx = gy.into_owned();
            gx.zip_mut_with(&y, |g, &s| *g *= s * (T::one() - s));
            gx
        }
        Layer::Tanh => {
            let mut gx = gy.into_owned();
            gx.zip_mut_with(&y, |g, &t| *g *= T::one() - t * t);
            gx
        }
        Layer::Softmax { outer, len, inner } => {
            let y = y.as_standard_layout();
            let mut gx = gy.into_owned();
            for (mut gr, yr) in gx.axis_iter_mut(Axis(0)).zip(y.axis_iter(Axis(0))) {
                for o in 0..*outer {
                    for k in 0..*inner {
                        let base = o * len * inner + k;
                        let mut dot = T::zero();
                        for l in 0..*len {
                            dot += gr[base + l * inner] * yr[base + l * inner];
                        }
                        for l in 0..*len {
                            let idx = base + l * inner;
                            gr[idx] = yr[idx] * (gr[idx] - dot);
                        }
                    }
                }
            }
            gx
        }
        Layer::MaxPool(g) => pool_vjp(g, &x.view(), &gy.view(), |plane, r0, r1, c0, c1, w_in, gp, v| {
            let mut best = (r0, c0);
            let mut m = T::neg_infinity();
            for r in r0..r1 {
                for c in c0..c1 {
                    if plane[r * w_in + c] > m {
                        m = plane[r * w_in + c];
                        best = (r, c);
                    }
                }
            }
            gp[best.0 * w_in + best.1] += v;
        }),
        Layer::Embedding { .. } => {
            return Err("the input of an embedding lookup holds integer token indices and \
                        has no gradient; differentiate with respect to the embedding's output instead"
                .into())
        }
        _ => return Err(format!("no VJP for layer kind {}", layer.kind())),
    })
}

/// `gy · J` for a layer that is linear up to a constant (Dense, Conv, Affine,
/// AvgPool, Transpose, Pad, Reshape), where `J` does not depend on the input;
/// `None` for the other layers. `in_len` is the layer's input width.
///
/// The rows of `gy` are independent, so this is also the back-substitution
/// step of linear bound propagation: `A ↦ A·J`.
pub(crate) fn linear_vjp<T: Float>(
    layer: &Layer<T>,
    in_len: usize,
    gy: ArrayView2<T>,
) -> Option<Array2<T>> {
    let gy = gy.as_standard_layout();
    let b = gy.nrows();
    Some(match layer {
        Layer::Dense(d) => {
            let (out, inp) = d.weight.dim();
            let mut gx = Array2::<T>::zeros((b, in_len));
            if let (Some(gxs), Some(gys), Some(w)) =
                (gx.as_slice_mut(), gy.as_slice(), d.weight.as_slice())
            {
                T::gemm(b * d.rows, inp, out, gys, false, w, false, gxs, false);
            }
            gx
        }
        Layer::Conv(c) => {
            let mut gx = Array2::<T>::zeros((b, in_len));
            let out_len = gy.ncols();
            if let (Some(gxs), Some(gys)) = (gx.as_slice_mut(), gy.as_slice()) {
                if b >= 8 {
                    gxs.par_chunks_exact_mut(in_len)
                        .zip(gys.par_chunks_exact(out_len))
                        .for_each(|(gxr, gyr)| conv_vjp(c, gyr, gxr));
                } else {
                    for (gxr, gyr) in gxs.chunks_exact_mut(in_len).zip(gys.chunks_exact(out_len)) {
                        conv_vjp(c, gyr, gxr);
                    }
                }
            }
            gx
        }
        Layer::Affine { scale, .. } => {
            let mut gx = gy.into_owned();
            for mut row in gx.axis_iter_mut(Axis(0)) {
                row.iter_mut().zip(scale).for_each(|(g, a)| *g *= *a);
            }
            gx
        }
        Layer::AvgPool {
            geom,
            count_include_pad,
        } => {
            let mut gx = Array2::<T>::zeros((b, in_len));
            for (mut gxr, gyr) in gx.axis_iter_mut(Axis(0)).zip(gy.axis_iter(Axis(0))) {
                let g = geom;
                for c in 0..g.c {
                    for i in 0..g.h_out {
                        let (r0, r1) = g.rows(i);
                        for j in 0..g.w_out {
                            let (c0, c1) = g.cols(j);
                            let n = if *count_include_pad {
                                g.padded_count(i, j)
                            } else {
                                (r1 - r0) * (c1 - c0)
                            };
                            let v =
                                gyr[(c * g.h_out + i) * g.w_out + j] / T::from_f64(n.max(1) as f64);
                            for r in r0..r1 {
                                for cc in c0..c1 {
                                    gxr[(c * g.h_in + r) * g.w_in + cc] += v;
                                }
                            }
                        }
                    }
                }
            }
            gx
        }
        Layer::Transpose { index } => {
            let mut gx = Array2::<T>::zeros((b, in_len));
            for (mut gxr, gyr) in gx.axis_iter_mut(Axis(0)).zip(gy.axis_iter(Axis(0))) {
                for (g, &s) in gyr.iter().zip(index) {
                    gxr[s] += *g;
                }
            }
            gx
        }
        Layer::Pad { index } => {
            let mut gx = Array2::<T>::zeros((b, in_len));
            for (mut gxr, gyr) in gx.axis_iter_mut(Axis(0)).zip(gy.axis_iter(Axis(0))) {
                for (g, s) in gyr.iter().zip(index) {
                    if let Some(s) = s {
                        gxr[*s] += *g;
                    }
                }
            }
            gx
        }
        Layer::Reshape => gy.into_owned(),
        _ => return None,
    })
}

fn conv_vjp<T: Float>(c: &Conv<T>, gy: &[T], gx: &mut [T]) {
    let geom = &c.geom;
    let hw = geom.h_out * geom.w_out;
    let patch = geom.patch_len();
    let cog = geom.c_out_per_group();
    let w = c.weight.as_slice().unwrap_or(&[]);
    let mut gcols = vec![T::zero(); patch * hw];
    for g in 0..geom.groups {
        let wg = &w[g * cog * patch..][..cog * patch];
        let gyg = &gy[g * cog * hw..][..cog * hw];
        // gcols (patch × hw) = W_gᵀ (patch × cog) · gy_g (cog × hw)
        T::gemm(patch, hw, cog, wg, true, gyg, false, &mut gcols, false);
        col2im(geom, g, &gcols, gx);
    }
}

type WindowFn<'a, T> = dyn Fn(&[T], usize, usize, usize, usize, usize, &mut [T], T) + 'a;

fn pool_vjp<T: Float>(
    g: &PoolGeom,
    x: &ndarray::ArrayView2<T>,
    gy: &ndarray::ArrayView2<T>,
    route: impl Fn(&[T], usize, usize, usize, usize, usize, &mut [T], T),
) -> Array2<T> {
    let route: &WindowFn<'_, T> = &route;
    let mut gx = Array2::<T>::zeros(x.raw_dim());
    let plane_len = g.h_in * g.w_in;
    for ((xr, gyr), mut gxr) in x
        .axis_iter(Axis(0))
        .zip(gy.axis_iter(Axis(0)))
        .zip(gx.axis_iter_mut(Axis(0)))
    {
        let (Some(xs), Some(gxs)) = (xr.to_slice(), gxr.as_slice_mut()) else {
            continue;
        };
        for c in 0..g.c {
            let plane = &xs[c * plane_len..][..plane_len];
            let gp = &mut gxs[c * plane_len..][..plane_len];
            for i in 0..g.h_out {
                let (r0, r1) = g.rows(i);
                for j in 0..g.w_out {
                    let (c0, c1) = g.cols(j);
                    let v = gyr[(c * g.h_out + i) * g.w_out + j];
                    route(plane, r0, r1, c0, c1, g.w_in, gp, v);
                }
            }
        }
    }
    gx
}
