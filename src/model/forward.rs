//! Batched forward pass over the Network IR, in `f32` or `f64`.
//!
//! A batch is an `Array2` whose rows are flattened samples. Matrix products go
//! through faer; convolutions are im2col + GEMM per sample, spread over rayon's
//! threads for large batches.

use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

use super::float::Float;
use super::network::{Conv, ConvGeom, Dense, Layer, Network, PoolGeom};
use crate::{Error, Result};

/// Batches smaller than this run on the calling thread (spawning costs more than it saves).
const PARALLEL_ROWS: usize = 8;

/// Every activation of a forward pass: `activations[0]` is the input batch and
/// `activations[i + 1]` the output of layer `i`.
#[derive(Clone, Debug)]
pub struct Trace<T> {
    /// One `[batch, len]` array per activation.
    pub activations: Vec<Array2<T>>,
}

impl<T: Float> Trace<T> {
    /// The network's output batch.
    pub fn output(&self) -> &Array2<T> {
        // A trace always holds at least the input.
        &self.activations[self.activations.len() - 1]
    }
}

impl Network {
    /// Runs the whole network on a batch (`[batch, input_len]`).
    ///
    /// Errors when the width does not match, when a token index is invalid, or
    /// when a layer produces NaN/Inf (the error names the layer).
    pub fn forward<T: Float>(&self, x: ArrayView2<T>) -> Result<Array2<T>> {
        self.forward_range(0, self.len(), x)
    }

    /// Runs layers `from..to` on a batch of activation `from` and returns activation `to`.
    pub fn forward_range<T: Float>(
        &self,
        from: usize,
        to: usize,
        x: ArrayView2<T>,
    ) -> Result<Array2<T>> {
        self.check_range(from, to, x.ncols())?;
        let layers = T::layers(self);
        let mut cur: Option<Array2<T>> = None;
        for (i, layer) in layers.iter().enumerate().take(to).skip(from) {
            cur = match cur.take() {
                Some(mut a) => {
                    // Element-wise layers overwrite the batch the previous layer produced.
                    if layer_forward_inplace(layer, &mut a) {
                        self.check_finite(i, layer, &a)?;
                        Some(a)
                    } else {
                        Some(self.apply(i, layer, a.view())?.unwrap_or(a))
                    }
                }
                None => self.apply(i, layer, x.view())?,
            };
        }
        Ok(cur.unwrap_or_else(|| x.to_owned()))
    }

    /// Runs the whole network and keeps every activation (what the backward pass needs).
    pub fn trace<T: Float>(&self, x: ArrayView2<T>) -> Result<Trace<T>> {
        self.trace_range(0, self.len(), x)
    }

    /// Like [`Network::trace`] for layers `from..to`; `activations[0]` is then activation `from`.
    pub fn trace_range<T: Float>(
        &self,
        from: usize,
        to: usize,
        x: ArrayView2<T>,
    ) -> Result<Trace<T>> {
        self.check_range(from, to, x.ncols())?;
        let layers = T::layers(self);
        let mut activations = Vec::with_capacity(to - from + 1);
        activations.push(x.to_owned());
        for (i, layer) in layers.iter().enumerate().take(to).skip(from) {
            let prev = activations[activations.len() - 1].view();
            let next = match self.apply(i, layer, prev)? {
                Some(y) => y,
                None => prev.to_owned(),
            };
            activations.push(next);
        }
        Ok(Trace { activations })
    }

    fn check_range(&self, from: usize, to: usize, width: usize) -> Result<()> {
        if from > to || to > self.len() {
            return Err(Error::InvalidArgument(format!(
                "layer range {from}..{to} is outside the network's {} layers",
                self.len()
            )));
        }
        let want = self.activation_len(from);
        if width != want {
            return Err(Error::Shape(format!(
                "activation {from} of '{}' has {want} elements per sample, the batch has {width}",
                self.name
            )));
        }
        Ok(())
    }

    /// Applies layer `i`; `None` when the layer leaves the data unchanged.
    fn apply<T: Float>(
        &self,
        i: usize,
        layer: &Layer<T>,
        x: ArrayView2<T>,
    ) -> Result<Option<Array2<T>>> {
        let out_len = self.nodes[i].out_len();
        let y = match layer {
            Layer::Reshape => return Ok(None),
            Layer::Embedding { table } => embedding(table, x, out_len).map_err(|m| {
                Error::InvalidArgument(format!("layer {i} '{}': {m}", self.nodes[i].name))
            })?,
            _ => layer_forward(layer, x, out_len),
        };
        if !matches!(layer, Layer::Transpose { .. } | Layer::Pad { .. }) {
            self.check_finite(i, layer, &y)?;
        }
        Ok(Some(y))
    }

    /// NaN or ±Inf in a layer's output is an error naming the layer.
    fn check_finite<T: Float>(&self, i: usize, layer: &Layer<T>, y: &Array2<T>) -> Result<()> {
        let Some(pos) = y.iter().position(|v| !v.is_finite()) else {
            return Ok(());
        };
        let width = y.ncols().max(1);
        Err(Error::Numeric {
            layer: format!("{i} '{}' ({})", self.nodes[i].name, layer.kind()),
            message: format!(
                "non-finite value {:?} at sample {}, element {}",
                y.iter().nth(pos).copied().unwrap_or_else(T::nan),
                pos / width,
                pos % width
            ),
        })
    }
}

/// Forward of one layer on a batch. `Reshape` and `Embedding` are handled by the caller.
pub(crate) fn layer_forward<T: Float>(
    layer: &Layer<T>,
    x: ArrayView2<T>,
    out_len: usize,
) -> Array2<T> {
    let x = x.as_standard_layout();
    let xv = x.view();
    let b = x.nrows();
    match layer {
        Layer::Dense(d) => dense(d, x.view()),
        Layer::Conv(c) => per_sample(&xv, out_len, |xs, ys| conv(c, xs, ys)),
        Layer::Affine { .. }
        | Layer::Relu
        | Layer::Sigmoid
        | Layer::Tanh
        | Layer::Softmax { .. } => {
            let mut y = x.into_owned();
            layer_forward_inplace(layer, &mut y);
            y
        }
        Layer::MaxPool(g) => per_sample(&xv, out_len, |xs, ys| max_pool(g, xs, ys)),
        Layer::AvgPool {
            geom,
            count_include_pad,
        } => per_sample(&xv, out_len, |xs, ys| {
            avg_pool(geom, *count_include_pad, xs, ys)
        }),
        Layer::Transpose { index } => {
            let mut y = Array2::zeros((b, out_len));
            for (xr, mut yr) in x.axis_iter(Axis(0)).zip(y.axis_iter_mut(Axis(0))) {
                for (o, &s) in yr.iter_mut().zip(index) {
                    *o = xr[s];
                }
            }
            y
        }
        Layer::Pad { index } => {
            let mut y = Array2::zeros((b, out_len));
            for (xr, mut yr) in x.axis_iter(Axis(0)).zip(y.axis_iter_mut(Axis(0))) {
                for (o, s) in yr.iter_mut().zip(index) {
                    if let Some(s) = s {
                        *o = xr[*s];
                    }
                }
            }
            y
        }
        Layer::Reshape | Layer::Embedding { .. } => x.into_owned(),
    }
}

/// Applies an element-wise layer in place; `false` (and nothing done) for other layers.
pub(crate) fn layer_forward_inplace<T: Float>(layer: &Layer<T>, y: &mut Array2<T>) -> bool {
    match layer {
        Layer::Relu => y.mapv_inplace(|v| if v > T::zero() { v } else { T::zero() }),
        Layer::Sigmoid => y.mapv_inplace(sigmoid),
        Layer::Tanh => y.mapv_inplace(|v| v.tanh()),
        Layer::Affine { scale, shift } => {
            for mut row in y.axis_iter_mut(Axis(0)) {
                for ((v, a), s) in row.iter_mut().zip(scale).zip(shift) {
                    *v = *v * *a + *s;
                }
            }
        }
        Layer::Softmax { outer, len, inner } => {
            for mut row in y.axis_iter_mut(Axis(0)) {
                if let Some(r) = row.as_slice_mut() {
                    softmax(r, *outer, *len, *inner);
                }
            }
        }
        _ => return false,
    }
    true
}

/// `σ(x) = 1 / (1 + e^{−x})`, computed without overflow for large |x|.
#[inline]
pub(crate) fn sigmoid<T: Float>(v: T) -> T {
    if v >= T::zero() {
        T::one() / (T::one() + (-v).exp())
    } else {
        let e = v.exp();
        e / (T::one() + e)
    }
}

/// Softmax in place over `len` entries of stride `inner`, for every (outer, inner) group.
pub(crate) fn softmax<T: Float>(r: &mut [T], outer: usize, len: usize, inner: usize) {
    for o in 0..outer {
        for k in 0..inner {
            let base = o * len * inner + k;
            let mut m = T::neg_infinity();
            for l in 0..len {
                m = m.max(r[base + l * inner]);
            }
            let mut sum = T::zero();
            for l in 0..len {
                let e = (r[base + l * inner] - m).exp();
                r[base + l * inner] = e;
                sum += e;
            }
            for l in 0..len {
                r[base + l * inner] = r[base + l * inner] / sum;
            }
        }
    }
}

fn dense<T: Float>(d: &Dense<T>, x: ArrayView2<T>) -> Array2<T> {
    let (out, inp) = d.weight.dim();
    let b = x.nrows();
    let m = b * d.rows;
    let mut y = Array2::<T>::zeros((b, d.rows * out));
    let bias = d.bias.as_slice().unwrap_or(&[]);
    if let (Some(ys), Some(xs), Some(w)) = (y.as_slice_mut(), x.as_slice(), d.weight.as_slice()) {
        for row in ys.chunks_exact_mut(out) {
            row.copy_from_slice(bias);
        }
        T::gemm(m, out, inp, xs, false, w, true, ys, true);
    }
    y
}

/// Runs `f(sample_in, sample_out)` for every row, in parallel for large batches.
fn per_sample<T: Float, F>(x: &ArrayView2<T>, out_len: usize, f: F) -> Array2<T>
where
    F: Fn(&[T], &mut [T]) + Sync,
{
    let b = x.nrows();
    let in_len = x.ncols();
    let mut y = Array2::<T>::zeros((b, out_len));
    let (Some(xs), Some(ys)) = (x.as_slice(), y.as_slice_mut()) else {
        return y;
    };
    if in_len == 0 || out_len == 0 {
        return y;
    }
    if b >= PARALLEL_ROWS {
        ys.par_chunks_exact_mut(out_len)
            .zip(xs.par_chunks_exact(in_len))
            .for_each(|(yr, xr)| f(xr, yr));
    } else {
        for (yr, xr) in ys.chunks_exact_mut(out_len).zip(xs.chunks_exact(in_len)) {
            f(xr, yr);
        }
    }
    y
}

/// im2col for group `g`: `cols[(c, u, v), (i, j)] = x[g·C_g + c, i·sh − pt + u·dh, j·sw − pl + v·dw]`.
pub(crate) fn im2col<T: Float>(geom: &ConvGeom, g: usize, x: &[T], cols: &mut [T]) {
    let hw = geom.h_out * geom.w_out;
    let cg = geom.c_in_per_group();
    for c in 0..cg {
        let plane = &x[(g * cg + c) * geom.h_in * geom.w_in..][..geom.h_in * geom.w_in];
        for u in 0..geom.kh {
            for v in 0..geom.kw {
                let row = &mut cols[((c * geom.kh + u) * geom.kw + v) * hw..][..hw];
                for i in 0..geom.h_out {
                    let r = (i * geom.sh + u * geom.dh) as isize - geom.pt as isize;
                    let dst = &mut row[i * geom.w_out..][..geom.w_out];
                    if r < 0 || r >= geom.h_in as isize {
                        dst.iter_mut().for_each(|d| *d = T::zero());
                        continue;
                    }
                    let src = &plane[r as usize * geom.w_in..][..geom.w_in];
                    for (j, d) in dst.iter_mut().enumerate() {
                        let s = (j * geom.sw + v * geom.dw) as isize - geom.pl as isize;
                        *d = if s < 0 || s >= geom.w_in as isize {
                            T::zero()
                        } else {
                            src[s as usize]
                        };
                    }
                }
            }
        }
    }
}

/// col2im for group `g`: the adjoint of [`im2col`], accumulated into `x`.
pub(crate) fn col2im<T: Float>(geom: &ConvGeom, g: usize, cols: &[T], x: &mut [T]) {
    let hw = geom.h_out * geom.w_out;
    let cg = geom.c_in_per_group();
    for c in 0..cg {
        let plane = &mut x[(g * cg + c) * geom.h_in * geom.w_in..][..geom.h_in * geom.w_in];
        for u in 0..geom.kh {
            for v in 0..geom.kw {
                let row = &cols[((c * geom.kh + u) * geom.kw + v) * hw..][..hw];
                for i in 0..geom.h_out {
                    let r = (i * geom.sh + u * geom.dh) as isize - geom.pt as isize;
                    if r < 0 || r >= geom.h_in as isize {
                        continue;
                    }
                    let dst = &mut plane[r as usize * geom.w_in..][..geom.w_in];
                    for (j, g) in row[i * geom.w_out..][..geom.w_out].iter().enumerate() {
                        let s = (j * geom.sw + v * geom.dw) as isize - geom.pl as isize;
                        if s >= 0 && s < geom.w_in as isize {
                            dst[s as usize] += *g;
                        }
                    }
                }
            }
        }
    }
}

fn conv<T: Float>(c: &Conv<T>, x: &[T], y: &mut [T]) {
    let geom = &c.geom;
    let hw = geom.h_out * geom.w_out;
    let patch = geom.patch_len();
    let cog = geom.c_out_per_group();
    let w = c.weight.as_slice().unwrap_or(&[]);
    let bias = c.bias.as_slice().unwrap_or(&[]);
    for (o, row) in y.chunks_exact_mut(hw).enumerate() {
        row.iter_mut().for_each(|v| *v = bias[o]);
    }
    let direct = geom.kh == 1
        && geom.kw == 1
        && geom.sh == 1
        && geom.sw == 1
        && geom.pt == 0
        && geom.pl == 0
        && geom.groups == 1
        && hw == geom.h_in * geom.w_in;
    if direct {
        // A 1×1 convolution is a plain product with the input planes.
        T::gemm(cog, hw, patch, w, false, x, false, y, true);
        return;
    }
    let mut cols = vec![T::zero(); patch * hw];
    for g in 0..geom.groups {
        im2col(geom, g, x, &mut cols);
        let wg = &w[g * cog * patch..][..cog * patch];
        let yg = &mut y[g * cog * hw..][..cog * hw];
        T::gemm(cog, hw, patch, wg, false, &cols, false, yg, true);
    }
}

fn max_pool<T: Float>(g: &PoolGeom, x: &[T], y: &mut [T]) {
    for c in 0..g.c {
        let plane = &x[c * g.h_in * g.w_in..][..g.h_in * g.w_in];
        for i in 0..g.h_out {
            let (r0, r1) = g.rows(i);
            for j in 0..g.w_out {
                let (c0, c1) = g.cols(j);
                let mut m = T::neg_infinity();
                for r in r0..r1 {
                    for v in &plane[r * g.w_in + c0..r * g.w_in + c1] {
                        m = m.max(*v);
                    }
                }
                y[(c * g.h_out + i) * g.w_out + j] = m;
            }
        }
    }
}

fn avg_pool<T: Float>(g: &PoolGeom, include_pad: bool, x: &[T], y: &mut [T]) {
    for c in 0..g.c {
        let plane = &x[c * g.h_in * g.w_in..][..g.h_in * g.w_in];
        for i in 0..g.h_out {
            let (r0, r1) = g.rows(i);
            for j in 0..g.w_out {
                let (c0, c1) = g.cols(j);
                let mut s = T::zero();
                for r in r0..r1 {
                    for v in &plane[r * g.w_in + c0..r * g.w_in + c1] {
                        s += *v;
                    }
                }
                let n = if include_pad {
                    g.padded_count(i, j)
                } else {
                    (r1 - r0) * (c1 - c0)
                };
                y[(c * g.h_out + i) * g.w_out + j] = s / T::from_f64(n.max(1) as f64);
            }
        }
    }
}

fn embedding<T: Float>(
    table: &ndarray::Array2<T>,
    x: ArrayView2<T>,
    out_len: usize,
) -> std::result::Result<Array2<T>, String> {
    let (vocab, dim) = table.dim();
    let mut y = Array2::zeros((x.nrows(), out_len));
    for (bi, (xr, mut yr)) in x
        .axis_iter(Axis(0))
        .zip(y.axis_iter_mut(Axis(0)))
        .enumerate()
    {
        for (t, v) in xr.iter().enumerate() {
            let f = v.as_f64();
            if f.fract() != 0.0 || f < 0.0 || f >= vocab as f64 {
                return Err(format!(
                    "token index {f} at sample {bi}, position {t} is not an integer in 0..{vocab}"
                ));
            }
            let row = table.row(f as usize);
            for (o, w) in yr.iter_mut().skip(t * dim).take(dim).zip(row.iter()) {
                *o = *w;
            }
        }
    }
    Ok(y)
}
