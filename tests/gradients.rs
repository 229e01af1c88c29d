//! The backward pass checked against central finite differences in `f64`.
//!
//! Every check compares the analytic gradient `g = ∂f/∂a` of an objective `f`
//! with respect to an activation `a` (from [`Network::gradient`], cross-checked
//! against [`Network::gradient_from`]) with
//! `g_fd,i = (f(a + h e_i) − f(a − h e_i)) / ((a_i + h) − (a_i − h))`, where
//! `f(a)` runs `forward_range(wrt, len, a)` and evaluates the objective with an
//! implementation independent of the library's ([`objective_value`]).
//!
//! **Error measure** (asserted on every check):
//! - per coordinate, mixed relative/absolute: `err_i = |g_fd,i − g_i| / max(1, |g_i|)`
//!   must be `≤ REL_TOL = 1e-6` on every checked coordinate;
//! - in addition, norm-wise over the checked coordinates,
//!   `‖g_fd − g‖₂ / ‖g‖₂ ≤ NORM_TOL`, which keeps the check meaningful where
//!   `|g| ≪ 1` (there the per-coordinate bound is an absolute one).
//!
//! Each test prints both worst values (run with `--nocapture`), with `‖g‖∞`.
//!
//! **Kinks**: ReLU and MaxPool are only piecewise smooth, and so is the
//! `Margin { other: None }` objective. Inputs are drawn (from a seeded
//! xorshift generator, so every run is identical) until no ReLU input is within
//! a margin of 0, no max-pool window has its two largest entries within the
//! margin, and the best two "other" classes of a best-other margin are not
//! within it. On top of that, every finite-difference evaluation asserts that
//! `a ± h e_i` lies on the same linear piece as `a` (the same ReLU signs,
//! max-pool winners and best other class), so a difference quotient taken
//! across a kink fails loudly instead of passing or failing by luck.

mod common;

use ndarray::{Array1, Array2, Array4};
use nnexplain::model::{Conv, ConvGeom, Dense, Layer, Node, PoolGeom, Trace};
use nnexplain::{Network, Objective, Property};

/// Central-difference step. The truncation error is `O(h² · f''')` ≈ 1e-12 and
/// the rounding error `O(ε · |f| / h)` ≈ 1e-10 · |f| for the values of `f`
/// seen here, both well below [`REL_TOL`].
const H: f64 = 1e-6;
/// Largest accepted `|g_fd − g| / max(1, |g|)` per coordinate.
const REL_TOL: f64 = 1e-6;
/// Distance to the nearest kink required of the synthetic networks' inputs.
/// A step of `H` moves any pre-activation by at most `H · ‖J‖∞` ≪ 1e-3 there.
const KINK_MARGIN: f64 = 1e-3;
/// Distance to the nearest kink required of the real networks' inputs.
const REAL_KINK_MARGIN: f64 = 1e-4;
/// Largest accepted norm-wise relative error `‖g_fd − g‖₂ / ‖g‖₂` over the
/// checked coordinates. Its floor is the rounding error `ε · |f| / (h · ‖g‖)`:
/// ~1e-9 where `‖g‖ ~ 1`, but ~5e-6 on the ERAN sigmoid network (input
/// gradient entries down to ~1e-4, logits ~10), hence the headroom.
const NORM_TOL: f64 = 1e-4;
/// A gradient whose checked coordinates are all below this is taken as vacuous.
const MIN_SCALE: f64 = 1e-6;
/// Largest accepted difference between a batched gradient row and the same
/// sample's gradient computed alone (only the summation order may differ).
const BATCH_TOL: f64 = 1e-12;

// ---------------------------------------------------------------------------
// A tiny deterministic random generator (xorshift64*): `rand` is not a dependency.

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    fn vec(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// `k` distinct indices in `0..n`, sorted.
    fn distinct(&mut self, k: usize, n: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..n).collect();
        for i in 0..k.min(n) {
            let j = i + self.below(n - i);
            all.swap(i, j);
        }
        let mut out = all[..k.min(n)].to_vec();
        out.sort_unstable();
        out
    }
}

// ---------------------------------------------------------------------------
// Building networks in code.

/// A chain of layers under construction; each `push` names the output shape.
struct Builder {
    input_shape: Vec<usize>,
    shape: Vec<usize>,
    layers: Vec<(Node, Layer<f64>)>,
}

impl Builder {
    fn new(input_shape: &[usize]) -> Builder {
        Builder {
            input_shape: input_shape.to_vec(),
            shape: input_shape.to_vec(),
            layers: Vec::new(),
        }
    }
    fn push(mut self, layer: Layer<f64>, out_shape: &[usize]) -> Builder {
        let node = Node {
            name: format!("{}_{}", layer.kind().to_lowercase(), self.layers.len()),
            op_types: vec![layer.kind().to_string()],
            in_shape: self.shape.clone(),
            out_shape: out_shape.to_vec(),
        };
        self.shape = out_shape.to_vec();
        self.layers.push((node, layer));
        self
    }
    /// Pushes a shape-preserving layer.
    fn same(self, layer: Layer<f64>) -> Builder {
        let s = self.shape.clone();
        self.push(layer, &s)
    }
    fn build(self, name: &str) -> Network {
        Network::from_layers(name, self.input_shape, self.layers).unwrap()
    }
}

/// A dense layer with weights of scale ~1/√in, so activations stay O(1).
fn dense(rng: &mut Rng, inp: usize, out: usize, rows: usize) -> Layer<f64> {
    let s = 1.5 / (inp as f64).sqrt();
    Layer::Dense(Dense {
        weight: Array2::from_shape_vec((out, inp), rng.vec(out * inp, -s, s)).unwrap(),
        bias: Array1::from(rng.vec(out, -0.5, 0.5)),
        rows,
    })
}

/// `[c_in, c_out]`, `[h_in, w_in]`, kernel, stride, `[pt, pl, pb, pr]`, dilation, groups.
fn conv_geom(
    ch: [usize; 2],
    hw: [usize; 2],
    k: [usize; 2],
    s: [usize; 2],
    pad: [usize; 4],
    d: [usize; 2],
    groups: usize,
) -> ConvGeom {
    let out = |n: usize, p0: usize, p1: usize, k: usize, s: usize, d: usize| {
        (n + p0 + p1 - d * (k - 1) - 1) / s + 1
    };
    ConvGeom {
        c_in: ch[0],
        h_in: hw[0],
        w_in: hw[1],
        c_out: ch[1],
        h_out: out(hw[0], pad[0], pad[2], k[0], s[0], d[0]),
        w_out: out(hw[1], pad[1], pad[3], k[1], s[1], d[1]),
        kh: k[0],
        kw: k[1],
        sh: s[0],
        sw: s[1],
        pt: pad[0],
        pl: pad[1],
        dh: d[0],
        dw: d[1],
        groups,
    }
}

fn conv(rng: &mut Rng, geom: ConvGeom) -> Layer<f64> {
    let cg = geom.c_in_per_group();
    let n = geom.c_out * cg * geom.kh * geom.kw;
    let s = 1.5 / (geom.patch_len() as f64).sqrt();
    Layer::Conv(Conv {
        weight: Array4::from_shape_vec((geom.c_out, cg, geom.kh, geom.kw), rng.vec(n, -s, s))
            .unwrap(),
        bias: Array1::from(rng.vec(geom.c_out, -0.5, 0.5)),
        geom,
    })
}

/// `c`, `[h_in, w_in]`, window, stride, `[pt, pl, pb, pr]`.
fn pool_geom(c: usize, hw: [usize; 2], k: [usize; 2], s: [usize; 2], pad: [usize; 4]) -> PoolGeom {
    PoolGeom {
        c,
        h_in: hw[0],
        w_in: hw[1],
        h_out: (hw[0] + pad[0] + pad[2] - k[0]) / s[0] + 1,
        w_out: (hw[1] + pad[1] + pad[3] - k[1]) / s[1] + 1,
        kh: k[0],
        kw: k[1],
        sh: s[0],
        sw: s[1],
        pt: pad[0],
        pl: pad[1],
        pb: pad[2],
        pr: pad[3],
    }
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Output shape and index map of a transpose: output axis `k` is input axis `perm[k]`.
fn permutation(shape: &[usize], perm: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let (si, so) = (strides(shape), strides(&out));
    let n: usize = shape.iter().product();
    let index = (0..n)
        .map(|o| {
            (0..out.len())
                .map(|k| (o / so[k]) % out[k] * si[perm[k]])
                .sum()
        })
        .collect();
    (out, index)
}

/// Output shape and index map of constant-zero padding by `begin` / `end` per axis.
fn zero_pad(shape: &[usize], begin: &[usize], end: &[usize]) -> (Vec<usize>, Vec<Option<usize>>) {
    let out: Vec<usize> = (0..shape.len())
        .map(|k| shape[k] + begin[k] + end[k])
        .collect();
    let (si, so) = (strides(shape), strides(&out));
    let n: usize = out.iter().product();
    let index = (0..n)
        .map(|o| {
            let mut src = 0;
            for k in 0..out.len() {
                let m = (o / so[k]) % out[k];
                if m < begin[k] || m >= begin[k] + shape[k] {
                    return None;
                }
                src += (m - begin[k]) * si[k];
            }
            Some(src)
        })
        .collect();
    (out, index)
}

// ---------------------------------------------------------------------------
// The objective, evaluated independently of the library.

fn log_sum_exp(y: &[f64]) -> f64 {
    let m = y.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    m + y.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

/// The best class other than `class`, and its lead over the runner-up.
fn best_other(y: &[f64], class: usize) -> (usize, f64) {
    let mut others: Vec<(f64, usize)> = (0..y.len())
        .filter(|&j| j != class)
        .map(|j| (y[j], j))
        .collect();
    others.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
    let gap = if others.len() > 1 {
        others[0].0 - others[1].0
    } else {
        f64::INFINITY
    };
    (others[0].1, gap)
}

fn objective_value(obj: &Objective, y: &[f64]) -> f64 {
    match obj {
        Objective::Logit(c) => y[*c],
        Objective::Softmax(c) => (y[*c] - log_sum_exp(y)).exp(),
        Objective::LogSoftmax(c) => y[*c] - log_sum_exp(y),
        Objective::Margin { class, other } => {
            let o = other.unwrap_or_else(|| best_other(y, *class).0);
            y[*class] - y[o]
        }
        Objective::Linear(w) => w.iter().zip(y).map(|(a, b)| a * b).sum(),
        other => panic!("objective {other:?} has no reference value in this test"),
    }
}

// ---------------------------------------------------------------------------
// Linear pieces: which side of every kink a point is on, and how far from it.

struct Piece {
    /// ReLU signs, max-pool winners (first maximal entry) and the best other class.
    pattern: Vec<usize>,
    /// Distance to the nearest kink.
    margin: f64,
}

fn piece(net: &Network, from: usize, trace: &Trace<f64>, row: usize, obj: &Objective) -> Piece {
    let mut pattern = Vec::new();
    let mut margin = f64::INFINITY;
    for i in from..net.len() {
        let x = trace.activations[i - from].row(row);
        match net.layer(i) {
            Layer::Relu => {
                for &v in x.iter() {
                    pattern.push(usize::from(v > 0.0));
                    margin = margin.min(v.abs());
                }
            }
            Layer::MaxPool(g) => {
                for c in 0..g.c {
                    for oi in 0..g.h_out {
                        let (r0, r1) = g.rows(oi);
                        for oj in 0..g.w_out {
                            let (c0, c1) = g.cols(oj);
                            let mut vals: Vec<(f64, usize)> = Vec::new();
                            for r in r0..r1 {
                                for cc in c0..c1 {
                                    let k = (c * g.h_in + r) * g.w_in + cc;
                                    vals.push((x[k], k));
                                }
                            }
                            // Stable: among equal values the first stays first.
                            vals.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
                            pattern.push(vals[0].1);
                            if vals.len() > 1 {
                                margin = margin.min(vals[0].0 - vals[1].0);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if let Objective::Margin { class, other: None } = obj {
        let y = trace.output().row(row).to_vec();
        let (o, gap) = best_other(&y, *class);
        pattern.push(o);
        margin = margin.min(gap);
    }
    Piece { pattern, margin }
}

/// One sample as a batch of one row.
fn one(x: &[f64]) -> Array2<f64> {
    Array2::from_shape_vec((1, x.len()), x.to_vec()).unwrap()
}

fn batch(rows: &[Vec<f64>]) -> Array2<f64> {
    let n = rows[0].len();
    Array2::from_shape_vec((rows.len(), n), rows.concat()).unwrap()
}

/// The objective at activation `from` = `a`, and the linear piece `a` lies on.
fn eval(net: &Network, from: usize, a: &[f64], obj: &Objective) -> (f64, Vec<usize>) {
    let t = net
        .trace_range::<f64>(from, net.len(), one(a).view())
        .unwrap();
    let y = t.output().row(0).to_vec();
    (
        objective_value(obj, &y),
        piece(net, from, &t, 0, obj).pattern,
    )
}

/// Distance of input `x` to the nearest kink of the network (and objective).
fn kink_margin(net: &Network, x: &[f64], obj: &Objective) -> f64 {
    let t = net.trace::<f64>(one(x).view()).unwrap();
    piece(net, 0, &t, 0, obj).margin
}

/// Draws inputs uniformly from `[lo_i, hi_i]` until one is farther than `margin` from every kink.
fn sample_away_from_kinks(
    net: &Network,
    rng: &mut Rng,
    lo: &[f64],
    hi: &[f64],
    obj: &Objective,
    margin: f64,
) -> Vec<f64> {
    for _ in 0..1000 {
        let x: Vec<f64> = lo
            .iter()
            .zip(hi)
            .map(|(&l, &h)| rng.uniform(l, h))
            .collect();
        if kink_margin(net, &x, obj) > margin {
            return x;
        }
    }
    panic!("{}: no input away from the kinks in 1000 draws", net.name());
}

fn sample_box(net: &Network, rng: &mut Rng, lo: f64, hi: f64, obj: &Objective) -> Vec<f64> {
    let n = net.input_len();
    sample_away_from_kinks(net, rng, &vec![lo; n], &vec![hi; n], obj, KINK_MARGIN)
}

/// A random linear objective on the network's output.
fn random_linear(rng: &mut Rng, net: &Network) -> Objective {
    Objective::Linear(rng.vec(net.output_len(), -1.0, 1.0))
}

/// The worst errors of one finite-difference check.
#[derive(Clone, Copy, Default)]
struct Errors {
    /// `max_i |g_fd,i − g_i| / max(1, |g_i|)` (asserted ≤ `REL_TOL`).
    mixed: f64,
    /// `‖g_fd − g‖₂ / ‖g‖₂` over the checked coordinates (asserted ≤ `NORM_TOL`).
    norm: f64,
    /// Number of coordinates checked.
    coords: usize,
    /// `‖g‖∞` over the checked coordinates.
    scale: f64,
}

impl Errors {
    fn merge(self, o: Errors) -> Errors {
        Errors {
            mixed: self.mixed.max(o.mixed),
            norm: self.norm.max(o.norm),
            coords: self.coords + o.coords,
            scale: self.scale.max(o.scale),
        }
    }
}

/// Checks `∂f/∂a_wrt` at input `x` against finite differences on `coords`
/// (every coordinate when `None`).
fn check(
    net: &Network,
    x: &[f64],
    obj: &Objective,
    wrt: usize,
    coords: Option<&[usize]>,
) -> Errors {
    let xb = one(x);
    let g = net.gradient::<f64>(xb.view(), obj, wrt).unwrap();
    let head = net.forward_range::<f64>(0, wrt, xb.view()).unwrap();
    let g_from = net.gradient_from::<f64>(wrt, head.view(), obj).unwrap();
    assert_eq!(g.grad, g_from.grad, "gradient and gradient_from disagree");
    assert_eq!(g.grad.dim(), (1, net.activation_len(wrt)));
    assert_eq!(g.values.len(), 1);

    let a = head.row(0).to_vec();
    let (f0, p0) = eval(net, wrt, &a, obj);
    assert!(
        (g.values[0] - f0).abs() <= 1e-12 * f0.abs().max(1.0),
        "objective value {} ≠ reference {f0}",
        g.values[0]
    );
    let all: Vec<usize> = (0..a.len()).collect();
    let coords = coords.unwrap_or(&all);
    let mut e = Errors {
        coords: coords.len(),
        ..Errors::default()
    };
    let (mut diff2, mut norm2) = (0.0f64, 0.0f64);
    for &i in coords {
        let (mut ap, mut am) = (a.clone(), a.clone());
        ap[i] += H;
        am[i] -= H;
        let step = ap[i] - am[i];
        let (fp, pp) = eval(net, wrt, &ap, obj);
        let (fm, pm) = eval(net, wrt, &am, obj);
        assert!(
            pp == p0 && pm == p0,
            "{}: a ± h·e_{i} (activation {wrt}) crosses a kink",
            net.name()
        );
        let fd = (fp - fm) / step;
        let gi = g.grad[[0, i]];
        let err = (fd - gi).abs() / gi.abs().max(1.0);
        assert!(
            err <= REL_TOL,
            "{}: ∂f/∂a{wrt}[{i}] = {gi:e}, finite difference {fd:e} (error {err:e})",
            net.name()
        );
        e.mixed = e.mixed.max(err);
        e.scale = e.scale.max(gi.abs());
        diff2 += (fd - gi) * (fd - gi);
        norm2 += gi * gi;
    }
    // A check on an all-zero gradient (dead ReLUs, a wrong objective) proves nothing.
    assert!(
        e.scale > MIN_SCALE,
        "{}: gradient wrt activation {wrt} is ~0 on the checked coordinates (‖g‖∞ = {:e})",
        net.name(),
        e.scale
    );
    e.norm = (diff2 / norm2).sqrt();
    assert!(
        e.norm <= NORM_TOL,
        "{}: ‖g_fd − g‖ / ‖g‖ = {:e} wrt activation {wrt}",
        net.name(),
        e.norm
    );
    e
}

fn report(what: &str, e: Errors) {
    eprintln!(
        "[gradients] {what:<52} max |Δ|/max(1,|g|) {:.2e}  ‖Δ‖/‖g‖ {:.2e}  ‖g‖∞ {:.1e}  ({} coords)",
        e.mixed, e.norm, e.scale, e.coords
    );
}

/// One layer on its own under a random linear objective `f = w · L(x)`, so the
/// check covers the whole vector–Jacobian product `Jᵀ w`, on every input coordinate.
fn check_single(
    what: &str,
    seed: u64,
    in_shape: &[usize],
    layer: Layer<f64>,
    out_shape: &[usize],
    range: f64,
) -> Errors {
    let mut rng = Rng::new(seed);
    let net = Builder::new(in_shape).push(layer, out_shape).build(what);
    let obj = random_linear(&mut rng, &net);
    let x = sample_box(&net, &mut rng, -range, range, &obj);
    let worst = check(&net, &x, &obj, 0, None);
    report(what, worst);
    worst
}

fn conv_case(what: &str, seed: u64, geom: ConvGeom) {
    let mut rng = Rng::new(seed ^ 0xC0);
    let (i, o) = (
        vec![1, geom.c_in, geom.h_in, geom.w_in],
        vec![1, geom.c_out, geom.h_out, geom.w_out],
    );
    check_single(what, seed, &i, conv(&mut rng, geom), &o, 1.0);
}

// ---------------------------------------------------------------------------
// Every layer type on its own.

#[test]
fn dense_rows_1() {
    let mut rng = Rng::new(1);
    check_single(
        "Dense rows=1 [7]→[5]",
        1,
        &[1, 7],
        dense(&mut rng, 7, 5, 1),
        &[1, 5],
        1.0,
    );
}

#[test]
fn dense_rows_3() {
    let mut rng = Rng::new(2);
    let layer = dense(&mut rng, 5, 4, 3);
    check_single(
        "Dense rows=3 [3,5]→[3,4]",
        2,
        &[1, 3, 5],
        layer,
        &[1, 3, 4],
        1.0,
    );
}

#[test]
fn conv_stride2_padding1() {
    let g = conv_geom([2, 3], [7, 7], [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 1);
    assert_eq!((g.h_out, g.w_out), (4, 4));
    conv_case("Conv 3x3 stride 2 padding 1", 3, g);
}

#[test]
fn conv_dilation2() {
    let g = conv_geom([2, 3], [8, 8], [3, 3], [1, 1], [2, 2, 2, 2], [2, 2], 1);
    conv_case("Conv 3x3 dilation 2 padding 2", 4, g);
}

#[test]
fn conv_groups2() {
    let g = conv_geom([4, 6], [6, 6], [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 2);
    conv_case("Conv 3x3 groups 2", 5, g);
}

#[test]
fn conv_every_option_at_once() {
    // Non-square kernel, unequal strides and dilations, asymmetric padding, groups.
    let g = conv_geom([4, 4], [9, 8], [2, 3], [2, 1], [1, 2, 0, 1], [2, 1], 2);
    conv_case("Conv 2x3 s(2,1) d(2,1) pad(1,2,0,1) g2", 6, g);
}

#[test]
fn conv_1x1_fast_path() {
    // kh = kw = 1, stride 1, no padding, one group: the forward pass's direct GEMM.
    let g = conv_geom([3, 4], [5, 6], [1, 1], [1, 1], [0, 0, 0, 0], [1, 1], 1);
    assert_eq!(g.h_out * g.w_out, g.h_in * g.w_in);
    conv_case("Conv 1x1 (direct GEMM fast path)", 7, g);
}

#[test]
fn conv_1x1_off_the_fast_path() {
    let g = conv_geom([4, 6], [5, 5], [1, 1], [1, 1], [0, 0, 0, 0], [1, 1], 2);
    conv_case("Conv 1x1 groups 2", 8, g);
    let g = conv_geom([3, 4], [5, 5], [1, 1], [2, 2], [0, 0, 0, 0], [1, 1], 1);
    conv_case("Conv 1x1 stride 2", 9, g);
}

#[test]
fn conv_1d() {
    // A 1-D convolution is stored with h_in = h_out = kh = 1; its ONNX shape is [1, C, L].
    let g = conv_geom([2, 3], [1, 10], [1, 3], [1, 2], [0, 1, 0, 1], [1, 1], 1);
    assert_eq!((g.h_out, g.w_out), (1, 5));
    let mut rng = Rng::new(10);
    let layer = conv(&mut rng, g);
    check_single(
        "Conv 1-D k3 stride 2 padding 1",
        10,
        &[1, 2, 10],
        layer,
        &[1, 3, 5],
        1.0,
    );
}

#[test]
fn affine() {
    let mut rng = Rng::new(11);
    let layer = Layer::Affine {
        scale: Array1::from(rng.vec(12, -2.0, 2.0)),
        shift: Array1::from(rng.vec(12, -1.0, 1.0)),
    };
    check_single("Affine", 11, &[1, 3, 4], layer, &[1, 3, 4], 1.0);
}

#[test]
fn relu() {
    check_single("Relu", 12, &[1, 20], Layer::Relu, &[1, 20], 1.0);
}

#[test]
fn sigmoid() {
    check_single("Sigmoid", 13, &[1, 12], Layer::Sigmoid, &[1, 12], 4.0);
}

#[test]
fn tanh() {
    check_single("Tanh", 14, &[1, 12], Layer::Tanh, &[1, 12], 3.0);
}

#[test]
fn softmax_outer_and_inner() {
    // Softmax over axis 2 of [1, 2, 4, 3]: outer = 2, len = 4, inner = 3.
    let layer = Layer::Softmax {
        outer: 2,
        len: 4,
        inner: 3,
    };
    check_single(
        "Softmax outer=2 len=4 inner=3",
        15,
        &[1, 2, 4, 3],
        layer,
        &[1, 2, 4, 3],
        3.0,
    );
}

#[test]
fn maxpool_padded_overlapping() {
    // 3x3 windows with stride 2 (overlapping), padding on every side.
    let g = pool_geom(2, [5, 6], [3, 3], [2, 2], [1, 1, 1, 1]);
    let o = [1, 2, g.h_out, g.w_out];
    check_single(
        "MaxPool 3x3 s2 pad 1",
        16,
        &[1, 2, 5, 6],
        Layer::MaxPool(g),
        &o,
        1.0,
    );
    // Unequal windows and strides, asymmetric padding.
    let g = pool_geom(3, [6, 7], [2, 3], [1, 2], [1, 2, 0, 1]);
    let o = [1, 3, g.h_out, g.w_out];
    check_single(
        "MaxPool 2x3 s(1,2) pad(1,2,0,1)",
        17,
        &[1, 3, 6, 7],
        Layer::MaxPool(g),
        &o,
        1.0,
    );
}

fn avgpool_case(count_include_pad: bool, seed: u64) {
    let flag = if count_include_pad {
        "include"
    } else {
        "exclude"
    };
    for (k, (g, c)) in [
        (pool_geom(2, [5, 6], [3, 3], [2, 2], [1, 1, 1, 1]), 2),
        (pool_geom(3, [6, 7], [2, 3], [1, 2], [1, 2, 2, 1]), 3),
    ]
    .into_iter()
    .enumerate()
    {
        let i = [1, c, g.h_in, g.w_in];
        let o = [1, c, g.h_out, g.w_out];
        let what = format!(
            "AvgPool {}x{} s({},{}) pad({},{},{},{}) {flag} pad",
            g.kh, g.kw, g.sh, g.sw, g.pt, g.pl, g.pb, g.pr
        );
        let layer = Layer::AvgPool {
            geom: g,
            count_include_pad,
        };
        check_single(&what, seed + k as u64, &i, layer, &o, 1.0);
    }
}

#[test]
fn avgpool_count_include_pad() {
    avgpool_case(true, 18);
}

#[test]
fn avgpool_exclude_pad() {
    avgpool_case(false, 20);
}

#[test]
fn transpose_3d_permutation() {
    // [1, 2, 3, 4] → [1, 4, 2, 3]: a 3-cycle of the non-batch axes (not its own inverse).
    let (out, index) = permutation(&[1, 2, 3, 4], &[0, 3, 1, 2]);
    assert_eq!(out, [1, 4, 2, 3]);
    assert_eq!(index[1], 4); // y[0, 0, 0, 1] = x[0, 0, 1, 0]
    let mut sorted = index.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..24).collect::<Vec<_>>());
    check_single(
        "Transpose perm (0,3,1,2)",
        22,
        &[1, 2, 3, 4],
        Layer::Transpose { index },
        &out,
        1.0,
    );
}

#[test]
fn pad_zero() {
    let (out, index) = zero_pad(&[1, 2, 3, 3], &[0, 1, 1, 2], &[0, 0, 2, 1]);
    assert_eq!(out, [1, 3, 6, 6]);
    assert_eq!(index.iter().flatten().count(), 18);
    check_single(
        "Pad zero (0,1,1,2)/(0,0,2,1)",
        23,
        &[1, 2, 3, 3],
        Layer::Pad { index },
        &out,
        1.0,
    );
}

#[test]
fn reshape() {
    check_single(
        "Reshape [1,2,3,4]→[1,24]",
        24,
        &[1, 2, 3, 4],
        Layer::Reshape,
        &[1, 24],
        1.0,
    );
    // Reshape between two real layers: the gradient must pass through unchanged.
    let mut rng = Rng::new(25);
    let net = Builder::new(&[1, 2, 6])
        .same(Layer::Tanh)
        .push(Layer::Reshape, &[1, 3, 4])
        .push(dense(&mut rng, 4, 2, 3), &[1, 3, 2])
        .push(Layer::Reshape, &[1, 6])
        .same(Layer::Sigmoid)
        .build("reshape-chain");
    let obj = random_linear(&mut rng, &net);
    let x = sample_box(&net, &mut rng, -2.0, 2.0, &obj);
    let worst = check(&net, &x, &obj, 0, None);
    report("Reshape in Tanh→Reshape→Dense→Reshape→Sigmoid", worst);
}

// ---------------------------------------------------------------------------
// Objectives, chains, intermediate activations, batches.

/// `[1, 6] → Dense(8) → Tanh → Dense(5)`: smooth, five outputs.
fn smooth_mlp(rng: &mut Rng) -> Network {
    Builder::new(&[1, 6])
        .push(dense(rng, 6, 8, 1), &[1, 8])
        .same(Layer::Tanh)
        .push(dense(rng, 8, 5, 1), &[1, 5])
        .build("smooth-mlp")
}

#[test]
fn every_objective() {
    let mut rng = Rng::new(30);
    let net = smooth_mlp(&mut rng);
    let objectives = [
        Objective::Logit(3),
        Objective::Softmax(1),
        Objective::LogSoftmax(4),
        Objective::Margin {
            class: 2,
            other: Some(0),
        },
        Objective::Margin {
            class: 2,
            other: None,
        },
        Objective::Linear(rng.vec(5, -1.0, 1.0)),
    ];
    for obj in &objectives {
        let x = sample_box(&net, &mut rng, -1.5, 1.5, obj);
        let mut worst = Errors::default();
        // Input, hidden activations, and the output itself (there the gradient is ∂f/∂y).
        for wrt in 0..=net.len() {
            worst = worst.merge(check(&net, &x, obj, wrt, None));
        }
        let name = match obj {
            Objective::Linear(_) => "Linear(random w)".to_string(),
            o => format!("{o:?}"),
        };
        report(&format!("objective {name}, every activation"), worst);
    }
}

#[test]
fn margin_against_best_other_follows_the_argmax() {
    // y = x (an identity network): the best other class is the largest y_j, j ≠ class.
    let net = Builder::new(&[1, 4]).same(Layer::Reshape).build("identity");
    let obj = Objective::Margin {
        class: 1,
        other: None,
    };
    let x = batch(&[vec![0.3, 0.1, 0.7, -0.2], vec![0.3, 2.0, -0.5, 0.31]]);
    let g = net.gradient::<f64>(x.view(), &obj, 0).unwrap();
    assert_eq!(g.grad.row(0).to_vec(), [0.0, 1.0, -1.0, 0.0]);
    assert_eq!(g.grad.row(1).to_vec(), [0.0, 1.0, 0.0, -1.0]);
    assert!((g.values[0] - (0.1 - 0.7)).abs() < 1e-15);
    assert!((g.values[1] - (2.0 - 0.31)).abs() < 1e-15);
}

/// `[1, 2, 9, 9]`: Affine → Conv → MaxPool → Relu → Conv(groups 2, stride 2) → Tanh
/// → AvgPool(count_include_pad) → Transpose → Pad → Reshape → Dense(rows 3)
/// → Softmax(outer 1, len 3, inner 5) → Sigmoid → Reshape → Dense: every layer kind but Embedding.
fn cnn_chain(rng: &mut Rng) -> Network {
    let g1 = conv_geom([2, 4], [9, 9], [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 1);
    let p1 = pool_geom(4, [9, 9], [3, 3], [2, 2], [1, 1, 1, 1]);
    let g2 = conv_geom([4, 6], [5, 5], [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 2);
    let p2 = pool_geom(6, [3, 3], [2, 2], [1, 1], [0, 0, 1, 1]);
    let (t_shape, t_index) = permutation(&[1, 6, 3, 3], &[0, 2, 3, 1]);
    let (p_shape, p_index) = zero_pad(&t_shape, &[0, 0, 0, 1], &[0, 0, 0, 0]);
    assert_eq!(p_shape, [1, 3, 3, 7]);
    Builder::new(&[1, 2, 9, 9])
        .same(Layer::Affine {
            scale: Array1::from(rng.vec(162, 0.5, 2.0)),
            shift: Array1::from(rng.vec(162, -0.5, 0.5)),
        })
        .push(conv(rng, g1), &[1, 4, 9, 9])
        .push(Layer::MaxPool(p1), &[1, 4, 5, 5])
        .same(Layer::Relu)
        .push(conv(rng, g2), &[1, 6, 3, 3])
        .same(Layer::Tanh)
        .push(
            Layer::AvgPool {
                geom: p2,
                count_include_pad: true,
            },
            &[1, 6, 3, 3],
        )
        .push(Layer::Transpose { index: t_index }, &t_shape)
        .push(Layer::Pad { index: p_index }, &p_shape)
        .push(Layer::Reshape, &[1, 3, 21])
        .push(dense(rng, 21, 5, 3), &[1, 3, 5])
        .same(Layer::Softmax {
            outer: 1,
            len: 3,
            inner: 5,
        })
        .same(Layer::Sigmoid)
        .push(Layer::Reshape, &[1, 15])
        .push(dense(rng, 15, 4, 1), &[1, 4])
        .build("cnn-chain")
}

#[test]
fn cnn_chain_every_activation() {
    let mut rng = Rng::new(40);
    let net = cnn_chain(&mut rng);
    for obj in [
        Objective::LogSoftmax(1),
        Objective::Margin {
            class: 0,
            other: None,
        },
    ] {
        let x = sample_box(&net, &mut rng, -1.0, 1.0, &obj);
        let mut worst = Errors::default();
        for wrt in 0..=net.len() {
            worst = worst.merge(check(&net, &x, &obj, wrt, None));
        }
        report(&format!("CNN chain, every activation, {obj:?}"), worst);
    }
}

/// `[1, 6]` → Affine → Dense(12) → Relu → Dense(10) → Relu → Dense(4).
fn relu_mlp(rng: &mut Rng) -> Network {
    Builder::new(&[1, 6])
        .same(Layer::Affine {
            scale: Array1::from(rng.vec(6, 0.5, 2.0)),
            shift: Array1::from(rng.vec(6, -0.5, 0.5)),
        })
        .push(dense(rng, 6, 12, 1), &[1, 12])
        .same(Layer::Relu)
        .push(dense(rng, 12, 10, 1), &[1, 10])
        .same(Layer::Relu)
        .push(dense(rng, 10, 4, 1), &[1, 4])
        .build("relu-mlp")
}

#[test]
fn first_layer_activation_gradient() {
    // SMUG ranks the neurons of the first affine layer by ∂f/∂(its output).
    let mut rng = Rng::new(50);
    let net = relu_mlp(&mut rng);
    let first = net.first_affine_layer().unwrap();
    assert_eq!(
        first, 1,
        "the Affine normalisation is not the first affine layer"
    );
    let wrt = first + 1;
    let obj = Objective::Margin {
        class: 3,
        other: None,
    };
    let x = sample_box(&net, &mut rng, -1.0, 1.0, &obj);
    let mut worst = check(&net, &x, &obj, wrt, None);
    // The post-ReLU activation, too.
    worst = worst.merge(check(&net, &x, &obj, wrt + 1, None));
    let xb = one(&x);
    let pre = net.forward_range::<f64>(0, wrt, xb.view()).unwrap();
    let g = net.gradient::<f64>(xb.view(), &obj, wrt).unwrap();
    // Units whose pre-activation is negative get exactly zero.
    for (p, gi) in pre.iter().zip(g.grad.iter()) {
        if *p <= 0.0 {
            assert_eq!(*gi, 0.0);
        }
    }
    // By the chain rule, ∂f/∂x = (∂a/∂x)ᵀ ∂f/∂a with a = W·Affine(x) + b.
    let gx = net.gradient::<f64>(xb.view(), &obj, 0).unwrap().grad;
    let ga = net.gradient::<f64>(xb.view(), &obj, wrt).unwrap().grad;
    let (Layer::Affine { scale, .. }, Layer::Dense(d)) = (net.layer(0), net.layer(first)) else {
        unreachable!()
    };
    for i in 0..6 {
        let want: f64 = (0..12).map(|o| ga[[0, o]] * d.weight[[o, i]]).sum::<f64>() * scale[i];
        assert!((want - gx[[0, i]]).abs() <= 1e-12 * want.abs().max(1.0));
    }
    report("first-layer activations (relu MLP, Margin None)", worst);

    let mut rng = Rng::new(51);
    let net = smooth_mlp(&mut rng);
    let obj = Objective::LogSoftmax(2);
    let x = sample_box(&net, &mut rng, -1.0, 1.0, &obj);
    let worst = check(&net, &x, &obj, net.first_affine_layer().unwrap() + 1, None);
    report("first-layer activations (tanh MLP, LogSoftmax)", worst);
}

#[test]
fn batch_rows_are_per_sample_gradients() {
    let mut rng = Rng::new(60);
    let net = cnn_chain(&mut rng);
    // 9 ≥ 8 rows: the per-sample layers (Conv forward and VJP) take their parallel path.
    for obj in [
        Objective::LogSoftmax(2),
        Objective::Margin {
            class: 1,
            other: None,
        },
    ] {
        let rows: Vec<Vec<f64>> = (0..9)
            .map(|_| sample_box(&net, &mut rng, -1.0, 1.0, &obj))
            .collect();
        let xb = batch(&rows);
        let mut worst = Errors::default();
        for wrt in [0, net.first_affine_layer().unwrap() + 1, 5, net.len()] {
            let g = net.gradient::<f64>(xb.view(), &obj, wrt).unwrap();
            assert_eq!(g.grad.dim(), (9, net.activation_len(wrt)));
            assert_eq!(g.values.len(), 9);
            for (r, x) in rows.iter().enumerate() {
                let alone = net.gradient::<f64>(one(x).view(), &obj, wrt).unwrap();
                assert!((alone.values[0] - g.values[r]).abs() <= BATCH_TOL);
                for (a, b) in alone.grad.row(0).iter().zip(g.grad.row(r)) {
                    assert!(
                        (a - b).abs() <= BATCH_TOL * a.abs().max(1.0),
                        "row {r}, activation {wrt}: batched {b:e} vs alone {a:e}"
                    );
                }
            }
            // The rows really are different samples (at the output, a margin's
            // gradient is ±1 and may be the same for every row).
            if wrt < net.len() {
                assert_ne!(g.grad.row(0), g.grad.row(1));
            }
            worst = worst.merge(check(&net, &rows[4], &obj, wrt, None));
        }
        report(&format!("batch of 9 (row 4 by FD), {obj:?}"), worst);
    }
}

// ---------------------------------------------------------------------------
// Embedding.

/// `[1, 3]` token indices → Embedding(7 × 4) → Dense(rows 3) → Tanh → Reshape → Dense(4).
fn embedding_net(rng: &mut Rng) -> Network {
    Builder::new(&[1, 3])
        .push(
            Layer::Embedding {
                table: Array2::from_shape_vec((7, 4), rng.vec(28, -1.0, 1.0)).unwrap(),
            },
            &[1, 3, 4],
        )
        .push(dense(rng, 4, 3, 3), &[1, 3, 3])
        .same(Layer::Tanh)
        .push(Layer::Reshape, &[1, 9])
        .push(dense(rng, 9, 4, 1), &[1, 4])
        .build("embedding")
}

#[test]
fn embedding_input_gradient_is_an_error() {
    let mut rng = Rng::new(70);
    let net = embedding_net(&mut rng);
    let x = batch(&[vec![2.0, 0.0, 6.0]]);
    let obj = Objective::LogSoftmax(1);
    let err = net.gradient::<f64>(x.view(), &obj, 0).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("embedding"), "{msg}");
    assert!(net.gradient_from::<f64>(0, x.view(), &obj).is_err());
    assert!(net
        .gradient::<f32>(x.mapv(|v| v as f32).view(), &obj, 0)
        .is_err());
}

#[test]
fn embedding_output_gradient_works() {
    let mut rng = Rng::new(71);
    let net = embedding_net(&mut rng);
    let x = [2.0, 0.0, 6.0];
    let mut worst = Errors::default();
    for obj in [Objective::LogSoftmax(1), random_linear(&mut rng, &net)] {
        for wrt in 1..=net.len() {
            worst = worst.merge(check(&net, &x, &obj, wrt, None));
        }
    }
    report("embedding output (wrt ≥ 1)", worst);
}

#[test]
fn gradient_rejects_bad_arguments() {
    let mut rng = Rng::new(80);
    let net = smooth_mlp(&mut rng);
    let x = batch(&[vec![0.1; 6]]);
    assert!(net
        .gradient::<f64>(x.view(), &Objective::Logit(0), 4)
        .is_err());
    assert!(net
        .gradient::<f64>(x.view(), &Objective::Logit(5), 0)
        .is_err());
    let bad_margin = Objective::Margin {
        class: 0,
        other: Some(5),
    };
    assert!(net.gradient::<f64>(x.view(), &bad_margin, 0).is_err());
    let short = Objective::Linear(vec![1.0; 4]);
    assert!(net.gradient::<f64>(x.view(), &short, 0).is_err());
    let wide = batch(&[vec![0.1; 7]]);
    assert!(net
        .gradient::<f64>(wide.view(), &Objective::Logit(0), 0)
        .is_err());
}

// ---------------------------------------------------------------------------
// Real networks.

/// `k_random` random coordinates of activation `wrt`, plus the `k_top` where
/// `|∂f/∂a|` is largest (so that the entries that matter are always checked).
fn pick_coords(
    net: &Network,
    x: &[f64],
    obj: &Objective,
    wrt: usize,
    rng: &mut Rng,
    k: [usize; 2],
) -> Vec<usize> {
    let g = net.gradient::<f64>(one(x).view(), obj, wrt).unwrap().grad;
    let mut by_size: Vec<usize> = (0..g.ncols()).collect();
    by_size.sort_by(|&a, &b| g[[0, b]].abs().partial_cmp(&g[[0, a]].abs()).unwrap());
    let mut coords = rng.distinct(k[0], g.ncols());
    coords.extend(&by_size[..k[1]]);
    coords.sort_unstable();
    coords.dedup();
    coords
}

fn load(rel: &str) -> Network {
    let path = common::data_dir().join(rel);
    let net = Network::from_onnx(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let kinds: Vec<&str> = net.layers().iter().map(|l| l.kind()).collect();
    eprintln!("[gradients] {rel}: {}", kinds.join(" → "));
    net
}

#[test]
fn real_eran_sigmoid_6x200() {
    // Fully smooth: Affine (normalisation) → 7 Dense with 6 Sigmoids between.
    let net = load("vnncomp2021_eran_mnist/onnx/ffnnSIGMOID__Point_6x200.onnx");
    let (images, labels) = common::mnist_images(2);
    let mut rng = Rng::new(90);
    let mut worst = Errors::default();
    let first = net.first_affine_layer().unwrap() + 1;
    for (x, &label) in images.iter().zip(&labels) {
        let obj = Objective::LogSoftmax(label);
        let coords = pick_coords(&net, x, &obj, 0, &mut rng, [20, 8]);
        worst = worst.merge(check(&net, x, &obj, 0, Some(&coords)));
        let obj = Objective::Margin {
            class: label,
            other: None,
        };
        assert!(kink_margin(&net, x, &obj) > REAL_KINK_MARGIN);
        let coords = pick_coords(&net, x, &obj, 0, &mut rng, [20, 8]);
        worst = worst.merge(check(&net, x, &obj, 0, Some(&coords)));
        // The first-layer (pre-sigmoid) activations.
        let obj = Objective::Logit(label);
        let coords = pick_coords(&net, x, &obj, first, &mut rng, [20, 8]);
        worst = worst.merge(check(&net, x, &obj, first, Some(&coords)));
    }
    report("real: ERAN ffnnSIGMOID__Point_6x200 (MNIST)", worst);
}

#[test]
fn real_cifar_base_kw() {
    // Conv → Relu → Conv → Relu → Reshape → Dense → Relu → Dense, at a random
    // input in [0, 1] with no ReLU input within REAL_KINK_MARGIN of 0.
    let net = load("vnncomp2021_oval21_cifar/onnx/cifar_base_kw.onnx");
    let mut rng = Rng::new(91);
    let n = net.input_len();
    let obj = Objective::LogSoftmax(3);
    let (lo, hi) = (vec![0.0; n], vec![1.0; n]);
    let x = sample_away_from_kinks(&net, &mut rng, &lo, &hi, &obj, REAL_KINK_MARGIN);
    let coords = pick_coords(&net, &x, &obj, 0, &mut rng, [32, 8]);
    let mut worst = check(&net, &x, &obj, 0, Some(&coords));
    // The first-layer (pre-ReLU conv) activations.
    let wrt = net.first_affine_layer().unwrap() + 1;
    let margin = Objective::Margin {
        class: 3,
        other: Some(5),
    };
    let coords = pick_coords(&net, &x, &margin, wrt, &mut rng, [32, 8]);
    worst = worst.merge(check(&net, &x, &margin, wrt, Some(&coords)));
    report("real: oval21 cifar_base_kw", worst);
}

#[test]
fn real_acasxu_1_1() {
    let net = load("vnncomp_acasxu/onnx/ACASXU_run2a_1_1_batch_2000.onnx");
    let prop =
        Property::from_vnnlib(common::data_dir().join("vnncomp_acasxu/vnnlib/prop_1.vnnlib"))
            .unwrap();
    let bx = &prop.regions[0].input;
    assert_eq!(bx.dim(), net.input_len());
    let mut rng = Rng::new(92);
    let mut worst = Errors::default();
    for obj in [
        Objective::Logit(0),
        Objective::Margin {
            class: 0,
            other: None,
        },
    ] {
        for _ in 0..3 {
            let x = sample_away_from_kinks(
                &net,
                &mut rng,
                &bx.lower,
                &bx.upper,
                &obj,
                REAL_KINK_MARGIN,
            );
            worst = worst.merge(check(&net, &x, &obj, 0, None));
            let wrt = net.first_affine_layer().unwrap() + 1;
            worst = worst.merge(check(&net, &x, &obj, wrt, None));
        }
    }
    report("real: ACAS Xu 1_1 (prop 1 box)", worst);
}
