//! Linear bound propagation by back-substitution (CROWN, Zhang et al. 2018;
//! DeepPoly, Singh et al. 2019).
//!
//! To bound activation `a`, start from `y = I·a` and substitute each layer
//! below by a linear lower and upper relaxation until the input box is reached:
//!
//! `A_lo · a_j + c_lo  ≤  y  ≤  A_up · a_j + c_up`,
//!
//! then concretise with the box: `min = c + Σ_k (A⁺_k l_k + A⁻_k u_k)`.
//! Linear layers substitute exactly (`A ↦ A·J`, the same product as the
//! backward pass). A ReLU with input bounds `l < 0 < u` is relaxed by the
//! chord `y ≤ u (x − l) / (u − l)` above and `y ≥ α x` below with
//! `α = 1` if `u > −l` else `0` (CROWN's adaptive choice); MaxPool by
//! `y ≥ x_{i*}` (the input with the largest lower bound) and `y ≤ x_{i*}` when
//! that input dominates the window, else `y ≤ max u`. Sigmoid, Tanh and
//! Softmax stop the substitution: the expression is concretised with that
//! activation's bounds, which is sound though not tightest.
//!
//! Bounds are computed layer by layer (each layer's relaxation uses the tightest
//! bounds of its input found so far) and intersected with interval bounds.

use ndarray::{Array1, Array2, Axis};

use super::interval::{input_bounds, propagate};
use super::{Bounds, NetworkBounds, FP_ABS, FP_REL};
use crate::model::backward::linear_vjp;
use crate::model::forward::layer_forward;
use crate::model::{Layer, Network};
use crate::property::InputBox;
use crate::Result;

/// CROWN bounds on every activation of `net` for inputs in `input`
/// (each never looser than the interval bound).
pub fn crown(net: &Network, input: &InputBox) -> Result<NetworkBounds> {
    crown_with(net, input, true)
}

/// CROWN bounds on every activation that feeds a nonlinear layer; the output's
/// bounds are interval bounds from those. For callers that bound a linear
/// specification of the output with [`bound_linear`] instead.
pub fn crown_intermediate(net: &Network, input: &InputBox) -> Result<NetworkBounds> {
    crown_with(net, input, false)
}

fn crown_with(net: &Network, input: &InputBox, refine_output: bool) -> Result<NetworkBounds> {
    let mut acts: Vec<Bounds> = vec![input_bounds(net, input)?];
    for i in 0..net.len() {
        let layer = net.layer(i);
        let needs = matches!(
            layer,
            Layer::Relu | Layer::MaxPool(_) | Layer::Sigmoid | Layer::Tanh | Layer::Softmax { .. }
        );
        // The output of an element-wise monotone layer whose input was refined
        // gains nothing from substitution (its interval image is already tight).
        let after_monotone =
            i > 0 && matches!(net.layer(i - 1), Layer::Relu | Layer::Sigmoid | Layer::Tanh);
        if needs && !after_monotone && !box_exact_below(net, i) {
            let rows: Vec<usize> = match layer {
                Layer::Relu => (0..acts[i].len())
                    .filter(|&k| acts[i].lower[k] < 0.0 && acts[i].upper[k] > 0.0)
                    .collect(),
                _ => (0..acts[i].len()).collect(),
            };
            refine(net, &mut acts, i, &rows)?;
        }
        let next = propagate(net, i, &acts[i])?;
        acts.push(next);
    }
    let last = net.len();
    if refine_output && last > 0 && !box_exact_below(net, last) {
        let rows: Vec<usize> = (0..acts[last].len()).collect();
        refine(net, &mut acts, last, &rows)?;
    }
    Ok(NetworkBounds { activations: acts })
}

/// Largest number of `f64` entries of one substitution matrix (`rows × width`);
/// more rows are substituted in chunks. 2²⁴ entries = 128 MiB.
const MAX_MATRIX: usize = 1 << 24;

/// Tightens activation `a` on `rows` by back-substitution, in chunks of rows.
fn refine(net: &Network, acts: &mut [Bounds], a: usize, rows: &[usize]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let widest = acts[..=a].iter().map(|b| b.len()).max().unwrap_or(1).max(1);
    let chunk = (MAX_MATRIX / widest).max(1);
    for part in rows.chunks(chunk) {
        let refined = back_substitute(net, acts, a, part)?;
        acts[a].intersect(&refined);
    }
    Ok(())
}

/// Whether interval bounds on activation `a` are already exact: only
/// element-wise affine maps and index maps below it, plus at most one Dense or Conv.
fn box_exact_below(net: &Network, a: usize) -> bool {
    let mut mixing = 0;
    for l in &net.layers()[..a] {
        match l {
            Layer::Affine { .. } | Layer::Reshape | Layer::Transpose { .. } | Layer::Pad { .. } => {
            }
            Layer::Dense(_) | Layer::Conv(_) => mixing += 1,
            _ => return false,
        }
    }
    mixing <= 1
}

/// One side (lower or upper) of a linear bound `A · a_j + c` on the chosen rows.
struct Side {
    a: Array2<f64>,
    c: Array1<f64>,
    /// `Σ |every term added to c|`, the scale of its rounding error.
    c_abs: Array1<f64>,
    upper: bool,
}

impl Side {
    fn concretise(&self, b: &Bounds, terms: f64) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.a.nrows());
        for (r, row) in self.a.axis_iter(Axis(0)).enumerate() {
            let mut v = self.c[r];
            let mut mag = self.c_abs[r];
            for ((&w, &l), &u) in row.iter().zip(&b.lower).zip(&b.upper) {
                let pick = if (w >= 0.0) != self.upper { l } else { u };
                v += w * pick;
                mag += (w * l.abs().max(u.abs())).abs();
            }
            let e = (terms + 2.0) * FP_REL * mag + FP_ABS;
            out.push(if self.upper { v + e } else { v - e });
        }
        out
    }
}

/// Bounds on the `rows` of activation `a` by back-substitution to the input;
/// other rows get ±∞.
fn back_substitute(net: &Network, acts: &[Bounds], a: usize, rows: &[usize]) -> Result<Bounds> {
    let n_a = acts[a].len();
    let m = rows.len();
    let mut start = Array2::<f64>::zeros((m, n_a));
    for (r, &k) in rows.iter().enumerate() {
        start[[r, k]] = 1.0;
    }
    let (lo, hi) = substitute(net, acts, a, start)?;
    let mut lower = vec![f64::NEG_INFINITY; n_a];
    let mut upper = vec![f64::INFINITY; n_a];
    for (r, &k) in rows.iter().enumerate() {
        lower[k] = lo[r];
        upper[k] = hi[r];
    }
    Ok(Bounds::new(lower, upper))
}

/// Lower and upper bounds of `C · a` over the box, for each row of `C`
/// (`[rows, len(a)]`), by back-substitution through the layers below
/// activation `a` with the relaxations given by `bounds`. This bounds a
/// linear specification directly, which is tighter than combining the
/// bounds of each element of `a`.
pub fn bound_linear(
    net: &Network,
    bounds: &NetworkBounds,
    a: usize,
    c: Array2<f64>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    if a >= bounds.activations.len() || c.ncols() != bounds.activations[a].len() {
        return Err(crate::Error::Shape(format!(
            "a specification of width {} for activation {a}",
            c.ncols()
        )));
    }
    substitute(net, &bounds.activations, a, c)
}

fn substitute(
    net: &Network,
    acts: &[Bounds],
    a: usize,
    start: Array2<f64>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let m = start.nrows();
    let mut sides = [false, true].map(|upper| Side {
        a: start.clone(),
        c: Array1::zeros(m),
        c_abs: Array1::zeros(m),
        upper,
    });
    let mut terms = 0.0;
    let mut stop = 0;
    for j in (0..a).rev() {
        let layer = net.layer(j);
        let in_len = acts[j].len();
        if layer.is_linear() {
            let out_len = net.nodes()[j].out_len();
            let has_bias = matches!(
                layer,
                Layer::Dense(_) | Layer::Conv(_) | Layer::Affine { .. }
            );
            let bias = if has_bias {
                let zero = Array2::zeros((1, in_len));
                Some(layer_forward(layer, zero.view(), out_len).row(0).to_owned())
            } else {
                None
            };
            for s in sides.iter_mut() {
                if let Some(b) = &bias {
                    s.c += &s.a.dot(b);
                    s.c_abs += &s.a.mapv(f64::abs).dot(&b.mapv(f64::abs));
                }
                s.a = linear_vjp(layer, in_len, s.a.view())
                    .unwrap_or_else(|| Array2::zeros((m, in_len)));
            }
            terms += fan_in(layer) as f64;
            continue;
        }
        match layer {
            Layer::Relu => {
                let b = &acts[j];
                for s in sides.iter_mut() {
                    relu_step(s, b);
                }
                terms += 2.0;
            }
            Layer::MaxPool(g) => {
                let b = &acts[j];
                for s in sides.iter_mut() {
                    maxpool_step(s, g, b);
                }
                terms += (g.kh * g.kw) as f64;
            }
            _ => {
                // No linear relaxation: concretise with this layer's output bounds.
                stop = j + 1;
                break;
            }
        }
    }
    let b = &acts[stop];
    Ok((sides[0].concretise(b, terms), sides[1].concretise(b, terms)))
}

fn fan_in(layer: &Layer<f64>) -> usize {
    match layer {
        Layer::Dense(d) => d.weight.ncols(),
        Layer::Conv(c) => c.geom.patch_len(),
        Layer::AvgPool { geom, .. } => geom.kh * geom.kw,
        _ => 1,
    }
}

/// Substitutes `y = relu(x)` by its relaxation, on the side `s`.
fn relu_step(s: &mut Side, b: &Bounds) {
    // Per neuron: (lower slope, upper slope, upper intercept).
    let relax: Vec<(f64, f64, f64)> = b
        .lower
        .iter()
        .zip(&b.upper)
        .map(|(&l, &u)| {
            if l >= 0.0 {
                (1.0, 1.0, 0.0)
            } else if u <= 0.0 {
                (0.0, 0.0, 0.0)
            } else {
                let slope = u / (u - l);
                let alpha = if u > -l { 1.0 } else { 0.0 };
                (alpha, slope, -slope * l)
            }
        })
        .collect();
    for (r, mut row) in s.a.axis_iter_mut(Axis(0)).enumerate() {
        let (mut dc, mut dabs) = (0.0, 0.0);
        for (w, &(alpha, slope, icpt)) in row.iter_mut().zip(&relax) {
            // A lower bound takes the lower relaxation where w ≥ 0; an upper bound where w < 0.
            let use_lower = (*w >= 0.0) != s.upper;
            if use_lower {
                *w *= alpha;
            } else {
                dc += *w * icpt;
                dabs += (*w * icpt).abs();
                *w *= slope;
            }
        }
        s.c[r] += dc;
        s.c_abs[r] += dabs;
    }
}

/// Substitutes `y = maxpool(x)` by its relaxation, on the side `s`.
fn maxpool_step(s: &mut Side, g: &crate::model::PoolGeom, b: &Bounds) {
    let n_in = g.c * g.h_in * g.w_in;
    // Per output: (index of the input with the largest lower bound, dominates?, max upper).
    let mut relax = Vec::with_capacity(g.c * g.h_out * g.w_out);
    for c in 0..g.c {
        for i in 0..g.h_out {
            let (r0, r1) = g.rows(i);
            for j in 0..g.w_out {
                let (c0, c1) = g.cols(j);
                let mut best = (usize::MAX, f64::NEG_INFINITY);
                let mut umax = f64::NEG_INFINITY;
                for r in r0..r1 {
                    for cc in c0..c1 {
                        let k = (c * g.h_in + r) * g.w_in + cc;
                        if b.lower[k] > best.1 {
                            best = (k, b.lower[k]);
                        }
                        umax = umax.max(b.upper[k]);
                    }
                }
                let mut other_u = f64::NEG_INFINITY;
                for r in r0..r1 {
                    for cc in c0..c1 {
                        let k = (c * g.h_in + r) * g.w_in + cc;
                        if k != best.0 {
                            other_u = other_u.max(b.upper[k]);
                        }
                    }
                }
                relax.push((best.0, best.1 >= other_u, umax));
            }
        }
    }
    let m = s.a.nrows();
    let mut next = Array2::<f64>::zeros((m, n_in));
    for r in 0..m {
        let (mut dc, mut dabs) = (0.0, 0.0);
        for (o, &(k, exact, umax)) in relax.iter().enumerate() {
            let w = s.a[[r, o]];
            if w == 0.0 || k == usize::MAX {
                continue;
            }
            let use_lower = (w >= 0.0) != s.upper;
            if use_lower || exact {
                next[[r, k]] += w;
            } else {
                dc += w * umax;
                dabs += (w * umax).abs();
            }
        }
        s.c[r] += dc;
        s.c_abs[r] += dabs;
    }
    s.a = next;
}
