//! Fast linear bounds for plain ReLU multilayer perceptrons, for branch and
//! bound.
//!
//! A network of the form `(Affine | Reshape)* Dense (Relu Dense)*` (ACAS Xu,
//! the VNN-COMP MNIST MLPs) is flattened into row-major weight matrices, and
//! its bounds are computed with tight loops instead of the generic layer code:
//!
//! * [`Mlp::intermediate`]: pre-activation bounds of every hidden layer by
//!   CROWN back-substitution (Zhang et al. 2018, "Efficient Neural Network
//!   Robustness Certification with General Activation Functions") with the
//!   adaptive lower slope, only for the neurons that interval propagation
//!   leaves unstable, intersected with a parent domain's bounds (a sub-box's
//!   true bounds lie within its parent's);
//! * [`Mlp::optimise`]: an upper bound on a conjunction of linear atoms of the
//!   output, tightened by projected subgradient steps (Polyak's step size) over the lower ReLU slopes
//!   `α` (alpha-CROWN, Xu et al. 2021, "Fast and Complete: Enabling Complete
//!   Neural Network Verification with Rapid and Massively Parallel Incomplete
//!   Verifiers"), over the split multipliers `β ≥ 0` of ReLU splits
//!   (beta-CROWN, Wang et al. 2021, "Beta-CROWN: Efficient Bound Propagation
//!   with Per-neuron Split Constraints for Complete and Incomplete Neural
//!   Network Verification") and over convex weights `λ` of the atoms: no
//!   point satisfies every atom `h_m ≥ 0` when `max Σ λ_m h_m < 0` for some
//!   `λ ≥ 0`, which lets different atoms rule out different parts of a box.
//!
//! The gradient of the bound with respect to `α`, `β` and `λ` is one forward
//! pass of the relaxed network at the corner of the box that attains the bound.
//!
//! Floating point: every bound is widened by `(terms + 4) · FP_REL · mag +
//! FP_ABS`, where `terms` counts the products accumulated along a path through
//! the network (each layer's fan-in, plus two per ReLU) and `mag` bounds the
//! sum of the magnitudes of every term: for a neuron, the interval bound `Q` of
//! `|W| q + |b|` with `q` twice the previous layer's (slopes are at most 1 and
//! ReLU intercepts at most the bound itself), computed once for the root box,
//! so it holds for every sub-box. Any `α ∈ [0, 1]`, `β ≥ 0`, `λ ≥ 0` gives a
//! sound bound; the optimisation only chooses among them.

use super::{FP_ABS, FP_REL};
use crate::model::{Layer, Network};

/// One dense layer, `z = W x + b`, with `W` row-major `[n_out][n_in]`.
#[derive(Clone, Debug)]
struct Lin {
    n_in: usize,
    n_out: usize,
    w: Vec<f64>,
    b: Vec<f64>,
}

impl Lin {
    fn row(&self, o: usize) -> &[f64] {
        &self.w[o * self.n_in..(o + 1) * self.n_in]
    }
}

/// A ReLU MLP, flattened: element-wise affine maps of the input, then dense
/// layers with a ReLU between each two.
#[derive(Clone, Debug)]
pub struct Mlp {
    n_in: usize,
    /// Element-wise `x ↦ x ⊙ scale + shift` maps applied to the input, in order.
    prefix: Vec<(Vec<f64>, Vec<f64>)>,
    layers: Vec<Lin>,
}

/// Pre-activation bounds of every hidden layer (`lo[j]`, `hi[j]`: the output
/// of dense layer `j`, the input of the `j`-th ReLU).
#[derive(Clone, Debug, PartialEq)]
pub struct Pre {
    /// Lower bounds, one vector per hidden layer.
    pub lo: Vec<Vec<f64>>,
    /// Upper bounds, one vector per hidden layer.
    pub hi: Vec<Vec<f64>>,
}

impl Pre {
    /// Number of unstable neurons (`l < 0 < u`).
    pub fn unstable(&self) -> usize {
        self.lo
            .iter()
            .zip(&self.hi)
            .map(|(l, h)| {
                l.iter()
                    .zip(h)
                    .filter(|(l, u)| **l < 0.0 && **u > 0.0)
                    .count()
            })
            .sum()
    }
}

/// Per-neuron magnitude bounds for the floating-point margins, valid for every
/// sub-box of the box they were computed for (see the module documentation).
#[derive(Clone, Debug)]
pub struct Mags {
    /// `Q` per dense layer's output.
    q: Vec<Vec<f64>>,
    /// `(terms + 4) · FP_REL` per dense layer's output.
    eps: Vec<f64>,
}

/// A linear atom `cy · y + cx · x + c0 ≥ 0` of the output `y` and input `x`
/// (in the network's own input coordinates).
#[derive(Clone, Debug)]
pub struct OutputAtom {
    /// Coefficients on the outputs.
    pub cy: Vec<f64>,
    /// Coefficients on the inputs.
    pub cx: Vec<f64>,
    /// Constant.
    pub c0: f64,
}

/// The multipliers of an optimised bound; a child domain starts from its
/// parent's.
#[derive(Clone, Debug)]
pub struct Duals {
    /// Lower ReLU slopes `α ∈ [0, 1]`, per hidden layer.
    pub alpha: Vec<Vec<f64>>,
    /// Split multipliers `β ≥ 0`, per hidden layer (zero where unsplit).
    pub beta: Vec<Vec<f64>>,
    /// Convex weights of the atoms.
    pub lambda: Vec<f64>,
}

/// An optimised upper bound on `Σ λ_m h_m` over a domain.
#[derive(Clone, Debug)]
pub struct SpecBound {
    /// Sound upper bound (the smallest found).
    pub bound: f64,
    /// The corner of the (transformed) box where the bound's linear function is largest.
    pub x_star: Vec<f64>,
    /// The bound's coefficients on the (transformed) input.
    pub coef: Vec<f64>,
    /// Per hidden layer, the bound's coefficients on the ReLU outputs (for
    /// choosing a neuron to split).
    pub relu_coefs: Vec<Vec<f64>>,
    /// The multipliers that gave `bound`.
    pub duals: Duals,
    /// Steps taken before `bound` was reached.
    pub iterations: usize,
}

/// Split state of a hidden neuron in ReLU splitting: `1` active (`z ≥ 0`),
/// `-1` inactive (`z ≤ 0`), `0` unsplit.
pub type Splits = Vec<Vec<i8>>;

impl Mlp {
    /// Flattens `net` when it is a ReLU MLP (see the module documentation).
    pub fn from_network(net: &Network) -> Option<Mlp> {
        let mut prefix = Vec::new();
        let mut layers: Vec<Lin> = Vec::new();
        let mut want_dense = true;
        for layer in net.layers() {
            match layer {
                Layer::Reshape => {}
                Layer::Affine { scale, shift } if layers.is_empty() => {
                    if scale.len() != net.input_len() || shift.len() != net.input_len() {
                        return None;
                    }
                    prefix.push((scale.to_vec(), shift.to_vec()));
                }
                Layer::Dense(d) if want_dense => {
                    if d.rows != 1 {
                        return None;
                    }
                    let (n_out, n_in) = d.weight.dim();
                    if layers.last().map_or(net.input_len(), |l| l.n_out) != n_in {
                        return None;
                    }
                    layers.push(Lin {
                        n_in,
                        n_out,
                        w: d.weight.iter().copied().collect(),
                        b: d.bias.to_vec(),
                    });
                    want_dense = false;
                }
                Layer::Relu if !want_dense => want_dense = true,
                _ => return None,
            }
        }
        if layers.is_empty() || want_dense || layers[layers.len() - 1].n_out != net.output_len() {
            return None;
        }
        Some(Mlp {
            n_in: net.input_len(),
            prefix,
            layers,
        })
    }

    /// Number of inputs.
    pub fn n_in(&self) -> usize {
        self.n_in
    }

    /// Number of outputs.
    pub fn n_out(&self) -> usize {
        self.layers[self.layers.len() - 1].n_out
    }

    /// Widths of the hidden (ReLU) layers.
    pub fn hidden(&self) -> Vec<usize> {
        self.layers[..self.layers.len() - 1]
            .iter()
            .map(|l| l.n_out)
            .collect()
    }

    fn n_hidden(&self) -> usize {
        self.layers.len() - 1
    }

    /// The input after the element-wise prefix maps.
    pub fn transform(&self, x: &[f64]) -> Vec<f64> {
        let mut v = x.to_vec();
        for (s, t) in &self.prefix {
            for ((v, s), t) in v.iter_mut().zip(s).zip(t) {
                *v = *v * s + t;
            }
        }
        v
    }

    /// An input whose transform is (about) `xt`, clamped to `[lo, hi]`: maps a
    /// corner found in transformed coordinates back, for a candidate point.
    pub fn untransform(&self, xt: &[f64], lo: &[f64], hi: &[f64]) -> Vec<f64> {
        let mut v = xt.to_vec();
        for (s, t) in self.prefix.iter().rev() {
            for (i, v) in v.iter_mut().enumerate() {
                *v = if s[i] != 0.0 {
                    (*v - t[i]) / s[i]
                } else {
                    0.5 * (lo[i] + hi[i])
                };
            }
        }
        for (i, v) in v.iter_mut().enumerate() {
            *v = v.clamp(lo[i], hi[i]);
        }
        v
    }

    /// A box holding the transforms of every point of `[lo, hi]` (widened for rounding).
    pub fn transform_box(&self, lo: &[f64], hi: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let (mut l, mut u) = (lo.to_vec(), hi.to_vec());
        for (s, t) in &self.prefix {
            for i in 0..l.len() {
                let (a, b) = (l[i] * s[i] + t[i], u[i] * s[i] + t[i]);
                let (a, b) = if a <= b { (a, b) } else { (b, a) };
                let e = 4.0 * FP_REL * (a.abs().max(b.abs()) + t[i].abs()) + FP_ABS;
                l[i] = a - e;
                u[i] = b + e;
            }
        }
        (l, u)
    }

    /// The output at `x` (in `f64`).
    pub fn forward(&self, x: &[f64]) -> Vec<f64> {
        let mut v = self.transform(x);
        for (k, lin) in self.layers.iter().enumerate() {
            let mut z = lin.b.clone();
            for (o, z) in z.iter_mut().enumerate() {
                *z += dot(lin.row(o), &v);
            }
            if k + 1 < self.layers.len() {
                z.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            v = z;
        }
        v
    }

    /// `(y, ∂ (cy · y) / ∂ x)` at `x`.
    pub fn gradient(&self, x: &[f64], cy: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let mut acts = vec![self.transform(x)];
        for (k, lin) in self.layers.iter().enumerate() {
            let v = &acts[k];
            let mut z = lin.b.clone();
            for (o, z) in z.iter_mut().enumerate() {
                *z += dot(lin.row(o), v);
            }
            if k + 1 < self.layers.len() {
                z.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            acts.push(z);
        }
        let y = acts[self.layers.len()].clone();
        let mut g = cy.to_vec();
        for k in (0..self.layers.len()).rev() {
            let lin = &self.layers[k];
            if k + 1 < self.layers.len() {
                for (g, a) in g.iter_mut().zip(&acts[k + 1]) {
                    if *a <= 0.0 {
                        *g = 0.0;
                    }
                }
            }
            let mut next = vec![0.0; lin.n_in];
            for (o, &go) in g.iter().enumerate() {
                if go != 0.0 {
                    axpy(go, lin.row(o), &mut next);
                }
            }
            g = next;
        }
        for (s, _) in self.prefix.iter().rev() {
            for (g, s) in g.iter_mut().zip(s) {
                *g *= s;
            }
        }
        (y, g)
    }

    /// Magnitude bounds for the margins of every bound over sub-boxes of the
    /// transformed box `[xl, xu]`.
    pub fn mags(&self, xl: &[f64], xu: &[f64]) -> Mags {
        let q_in: Vec<f64> = xl
            .iter()
            .zip(xu)
            .map(|(l, u)| l.abs().max(u.abs()))
            .collect();
        let mut q = Vec::with_capacity(self.layers.len());
        let mut eps = Vec::with_capacity(self.layers.len());
        let mut prev = q_in;
        let mut terms = 0.0;
        for (k, lin) in self.layers.iter().enumerate() {
            let mut qk = lin.b.iter().map(|b| b.abs()).collect::<Vec<f64>>();
            for (o, qo) in qk.iter_mut().enumerate() {
                *qo += lin
                    .row(o)
                    .iter()
                    .zip(&prev)
                    .map(|(w, p)| w.abs() * p)
                    .sum::<f64>();
            }
            terms += lin.n_in as f64 + if k > 0 { 2.0 } else { 0.0 };
            eps.push((terms + 4.0) * FP_REL);
            prev = qk.iter().map(|v| 2.0 * v).collect();
            q.push(qk);
        }
        Mags { q, eps }
    }

    /// Interval bounds of the first hidden layer over `[xl, xu]` (transformed).
    fn first_layer(&self, xl: &[f64], xu: &[f64], mags: &Mags, lo: &mut [f64], hi: &mut [f64]) {
        let lin = &self.layers[0];
        for o in 0..lin.n_out {
            let (mut a, mut b) = (lin.b[o], lin.b[o]);
            for ((w, l), u) in lin.row(o).iter().zip(xl).zip(xu) {
                if *w >= 0.0 {
                    a += w * l;
                    b += w * u;
                } else {
                    a += w * u;
                    b += w * l;
                }
            }
            let e = mags.eps[0] * mags.q[0][o] + FP_ABS;
            lo[o] = a - e;
            hi[o] = b + e;
        }
    }

    /// Pre-activation bounds of every hidden layer over the transformed box
    /// `[xl, xu]`: interval bounds, refined by CROWN back-substitution for the
    /// neurons they leave unstable, intersected with `parent` (bounds of a
    /// domain that contains this one) and clamped by `splits`.
    pub fn intermediate(
        &self,
        xl: &[f64],
        xu: &[f64],
        mags: &Mags,
        parent: Option<&Pre>,
        splits: Option<&Splits>,
    ) -> Pre {
        let h = self.n_hidden();
        let mut pre = Pre {
            lo: self.layers[..h]
                .iter()
                .map(|l| vec![0.0; l.n_out])
                .collect(),
            hi: self.layers[..h]
                .iter()
                .map(|l| vec![0.0; l.n_out])
                .collect(),
        };
        let mut buf = Vec::new();
        let mut next = Vec::new();
        for k in 0..h {
            if k == 0 {
                let (lo, hi) = (&mut pre.lo[0], &mut pre.hi[0]);
                self.first_layer(xl, xu, mags, lo, hi);
            } else {
                // Interval bounds from the previous layer's ReLU outputs.
                let lin = &self.layers[k];
                for o in 0..lin.n_out {
                    let (mut a, mut b) = (lin.b[o], lin.b[o]);
                    for ((w, l), u) in lin.row(o).iter().zip(&pre.lo[k - 1]).zip(&pre.hi[k - 1]) {
                        let (l, u) = (l.max(0.0), u.max(0.0));
                        if *w >= 0.0 {
                            a += w * l;
                            b += w * u;
                        } else {
                            a += w * u;
                            b += w * l;
                        }
                    }
                    let e = mags.eps[k] * mags.q[k][o] + FP_ABS;
                    pre.lo[k][o] = a - e;
                    pre.hi[k][o] = b + e;
                }
            }
            self.tighten(&mut pre, k, parent, splits);
            if k == 0 {
                continue;
            }
            // CROWN on the neurons still unstable.
            for o in 0..self.layers[k].n_out {
                if !(pre.lo[k][o] < 0.0 && pre.hi[k][o] > 0.0) {
                    continue;
                }
                let e = mags.eps[k] * mags.q[k][o] + FP_ABS;
                for upper in [false, true] {
                    buf.clear();
                    buf.extend_from_slice(self.layers[k].row(o));
                    let v = self.backward(
                        k - 1,
                        &mut buf,
                        &mut next,
                        self.layers[k].b[o],
                        &pre,
                        xl,
                        xu,
                        upper,
                    );
                    if upper {
                        pre.hi[k][o] = pre.hi[k][o].min(v + e);
                    } else {
                        pre.lo[k][o] = pre.lo[k][o].max(v - e);
                    }
                }
            }
            self.tighten(&mut pre, k, parent, splits);
        }
        pre
    }

    /// Tightens the pre-activation bounds of the unstable neurons of every
    /// hidden layer after the first by alpha-CROWN (Xu et al. 2021, Sec. 3.1,
    /// optimised intermediate bounds): for neuron `o` of layer `k`,
    ///
    /// `u_{k,o} ← min(u_{k,o}, max_α B_α(z_{k,o}))`, `l_{k,o} ← max(l_{k,o}, −max_α B_α(−z_{k,o}))`,
    ///
    /// where `B_α` is [`Mlp::optimise`]'s bound on the network cut after dense
    /// layer `k` (every `α ∈ [0, 1]` gives a sound bound; `iters` steps choose
    /// one), with the later layers' CROWN bounds recomputed after each layer
    /// so that each layer uses the tightened ones before it. `pre` must hold
    /// the box's CROWN bounds ([`Mlp::intermediate`]). A side stops once the
    /// neuron is stable. Neurons are bounded in parallel; once `stop` answers
    /// true the remaining ones keep their CROWN bounds.
    pub fn optimise_intermediate(
        &self,
        xl: &[f64],
        xu: &[f64],
        mags: &Mags,
        pre: &mut Pre,
        iters: usize,
        stop: &(dyn Fn() -> bool + Sync),
    ) {
        use rayon::prelude::*;
        let h = self.n_hidden();
        for k in 1..h {
            if stop() {
                return;
            }
            // The network up to dense layer k; the input is already transformed.
            // Its margins are the full network's for these layers (`mags`
            // is indexed by layer).
            let cut = Mlp {
                n_in: self.n_in,
                prefix: Vec::new(),
                layers: self.layers[..=k].to_vec(),
            };
            let cut_pre = Pre {
                lo: pre.lo[..k].to_vec(),
                hi: pre.hi[..k].to_vec(),
            };
            let unstable: Vec<usize> = (0..self.layers[k].n_out)
                .filter(|&o| pre.lo[k][o] < 0.0 && pre.hi[k][o] > 0.0)
                .collect();
            let side = |o: usize, sign: f64| -> f64 {
                let mut cy = vec![0.0; self.layers[k].n_out];
                cy[o] = sign;
                let atom = [OutputAtom {
                    cy,
                    cx: vec![0.0; self.n_in],
                    c0: 0.0,
                }];
                let init = cut.initial_duals(&cut_pre, 1, 0);
                cut.optimise(
                    xl, xu, xl, xu, &cut_pre, mags, &atom, None, init, iters, 0.0,
                )
                .bound
            };
            let tightened: Vec<(usize, f64, f64)> = unstable
                .par_iter()
                .filter_map(|&o| {
                    if stop() {
                        return None;
                    }
                    let hi = side(o, 1.0).min(pre.hi[k][o]);
                    let lo = if hi <= 0.0 {
                        pre.lo[k][o]
                    } else {
                        (-side(o, -1.0)).max(pre.lo[k][o])
                    };
                    Some((o, lo, hi))
                })
                .collect();
            for (o, lo, hi) in tightened {
                pre.lo[k][o] = lo;
                pre.hi[k][o] = hi;
            }
            // The later layers' CROWN bounds, from the tightened ones.
            if k + 1 < h {
                *pre = self.intermediate(xl, xu, mags, Some(pre), None);
            }
        }
    }

    /// `parent`'s bounds with `splits` applied, without recomputing anything
    /// (beta-CROWN keeps the intermediate bounds of the root).
    pub fn clamp(&self, parent: &Pre, splits: &Splits) -> Pre {
        let mut pre = parent.clone();
        for k in 0..pre.lo.len() {
            self.tighten(&mut pre, k, None, Some(splits));
        }
        pre
    }

    /// Intersects layer `k` with the parent's bounds and applies the splits.
    fn tighten(&self, pre: &mut Pre, k: usize, parent: Option<&Pre>, splits: Option<&Splits>) {
        if let Some(p) = parent {
            for (l, pl) in pre.lo[k].iter_mut().zip(&p.lo[k]) {
                *l = l.max(*pl);
            }
            for (u, pu) in pre.hi[k].iter_mut().zip(&p.hi[k]) {
                *u = u.min(*pu);
            }
        }
        if let Some(s) = splits {
            for (i, &s) in s[k].iter().enumerate() {
                if s > 0 {
                    pre.lo[k][i] = pre.lo[k][i].max(0.0);
                } else if s < 0 {
                    pre.hi[k][i] = pre.hi[k][i].min(0.0);
                }
            }
        }
    }

    /// Bound (lower, or upper when `upper`) of `a · relu(z_top) + c` by
    /// back-substitution with the adaptive lower slope, without the margin.
    /// `a` and `next` are scratch space.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        top: usize,
        a: &mut Vec<f64>,
        next: &mut Vec<f64>,
        mut c: f64,
        pre: &Pre,
        xl: &[f64],
        xu: &[f64],
        upper: bool,
    ) -> f64 {
        for j in (0..=top).rev() {
            // Coefficients on relu(z_j) → on z_j.
            for ((w, &l), &u) in a.iter_mut().zip(&pre.lo[j]).zip(&pre.hi[j]) {
                if l >= 0.0 {
                } else if u <= 0.0 {
                    *w = 0.0;
                } else if (*w >= 0.0) == upper {
                    let s = u / (u - l);
                    c -= *w * s * l;
                    *w *= s;
                } else if u <= -l {
                    *w = 0.0;
                }
            }
            let lin = &self.layers[j];
            next.clear();
            next.resize(lin.n_in, 0.0);
            for (o, &w) in a.iter().enumerate() {
                if w != 0.0 {
                    c += w * lin.b[o];
                    axpy(w, lin.row(o), next);
                }
            }
            std::mem::swap(a, next);
        }
        for ((w, l), u) in a.iter().zip(xl).zip(xu) {
            c += if (*w >= 0.0) == upper { w * u } else { w * l };
        }
        c
    }

    /// Initial multipliers: the adaptive slopes, no split multipliers, and all
    /// weight on atom `first`.
    pub fn initial_duals(&self, pre: &Pre, n_atoms: usize, first: usize) -> Duals {
        let alpha = pre
            .lo
            .iter()
            .zip(&pre.hi)
            .map(|(l, h)| {
                l.iter()
                    .zip(h)
                    .map(|(l, u)| if *u > -*l { 1.0 } else { 0.0 })
                    .collect()
            })
            .collect();
        let beta = pre.lo.iter().map(|l| vec![0.0; l.len()]).collect();
        let mut lambda = vec![0.0; n_atoms];
        if n_atoms > 0 {
            lambda[first.min(n_atoms - 1)] = 1.0;
        }
        Duals {
            alpha,
            beta,
            lambda,
        }
    }

    /// A sound upper bound on `max Σ λ_m h_m` over the domain (transformed box
    /// `[xl, xu]`, original box `[ol, ou]` for the atoms' input terms,
    /// pre-activation bounds `pre`, splits `splits`), tightened by up to
    /// `iters` projected subgradient steps on `α`, `β`, `λ` from `init`, each
    /// of Polyak's length towards a target below zero; stops early once the
    /// bound is below `target`.
    #[allow(clippy::too_many_arguments)]
    pub fn optimise(
        &self,
        xl: &[f64],
        xu: &[f64],
        ol: &[f64],
        ou: &[f64],
        pre: &Pre,
        mags: &Mags,
        atoms: &[OutputAtom],
        splits: Option<&Splits>,
        init: Duals,
        iters: usize,
        target: f64,
    ) -> SpecBound {
        let mut d = init;
        let mut best: Option<SpecBound> = None;
        let mut ev = Eval::new(self);
        for it in 0..=iters {
            let b = ev.run(self, xl, xu, ol, ou, pre, mags, atoms, splits, &d);
            let better = best.as_ref().is_none_or(|s| b < s.bound);
            if better {
                best = Some(SpecBound {
                    bound: b,
                    x_star: ev.x_star.clone(),
                    coef: ev.coefs[0].clone(),
                    relu_coefs: ev.coefs[1..].to_vec(),
                    duals: d.clone(),
                    iterations: it,
                });
            }
            if b < target || it == iters {
                break;
            }
            // Gradients: one forward pass of the relaxed network at x*.
            let (ga, gb, gl) = ev.gradients(self, pre, atoms, splits, &d, ol, ou);
            {
                // Polyak's step towards a target below zero, on the projected
                // gradient: scale-free, which matters as `β` has no natural scale.
                let free = |x: f64, g: f64, lo: f64, hi: f64| {
                    !((x <= lo && g > 0.0) || (x >= hi && g < 0.0))
                };
                let mut norm = 0.0;
                for (x, g) in d.alpha.iter().flatten().zip(ga.iter().flatten()) {
                    if free(*x, *g, 0.0, 1.0) {
                        norm += g * g;
                    }
                }
                if splits.is_some() {
                    for (x, g) in d.beta.iter().flatten().zip(gb.iter().flatten()) {
                        if free(*x, *g, 0.0, f64::INFINITY) {
                            norm += g * g;
                        }
                    }
                }
                let glm = gl.iter().sum::<f64>() / gl.len().max(1) as f64;
                if atoms.len() > 1 {
                    norm += gl.iter().map(|g| (g - glm) * (g - glm)).sum::<f64>();
                }
                if norm <= 0.0 || !norm.is_finite() {
                    break;
                }
                let gap = b.abs() * 1.5 + 1e-12;
                let eta = gap / norm;
                for (x, g) in d.alpha.iter_mut().flatten().zip(ga.iter().flatten()) {
                    *x = (*x - eta * g).clamp(0.0, 1.0);
                }
                if splits.is_some() {
                    for (x, g) in d.beta.iter_mut().flatten().zip(gb.iter().flatten()) {
                        *x = (*x - eta * g).max(0.0);
                    }
                }
                if atoms.len() > 1 {
                    let lam: Vec<f64> = d
                        .lambda
                        .iter()
                        .zip(&gl)
                        .map(|(l, g)| l - eta * (g - glm))
                        .collect();
                    d.lambda = project_simplex(&lam);
                }
            }
        }
        let mut best = best.unwrap_or_else(|| SpecBound {
            bound: f64::INFINITY,
            x_star: xl.to_vec(),
            coef: vec![0.0; xl.len()],
            relu_coefs: pre.lo.iter().map(|l| vec![0.0; l.len()]).collect(),
            duals: d,
            iterations: 0,
        });
        if best.bound.is_nan() {
            best.bound = f64::INFINITY;
        }
        best
    }
}

/// Scratch state of one bound evaluation and its gradient.
struct Eval {
    /// `coefs[j]`: coefficients on the output of dense layer `j - 1` after its
    /// ReLU (`coefs[0]`: on the transformed input), before the ReLU step.
    coefs: Vec<Vec<f64>>,
    x_star: Vec<f64>,
    /// Spec row on the outputs.
    r: Vec<f64>,
}

impl Eval {
    fn new(m: &Mlp) -> Eval {
        let mut coefs = vec![vec![0.0; m.n_in]];
        for l in &m.layers[..m.layers.len() - 1] {
            coefs.push(vec![0.0; l.n_out]);
        }
        Eval {
            coefs,
            x_star: vec![0.0; m.n_in],
            r: vec![0.0; m.n_out()],
        }
    }

    /// Sound upper bound of `Σ λ_m h_m` with multipliers `d`; leaves the
    /// coefficients and the maximising corner in `self`.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        m: &Mlp,
        xl: &[f64],
        xu: &[f64],
        ol: &[f64],
        ou: &[f64],
        pre: &Pre,
        mags: &Mags,
        atoms: &[OutputAtom],
        splits: Option<&Splits>,
        d: &Duals,
    ) -> f64 {
        let nl = m.layers.len();
        self.r.iter_mut().for_each(|v| *v = 0.0);
        let mut c0 = 0.0;
        let mut cx_mag = 0.0;
        let mut cx_max = 0.0;
        for (atom, &lam) in atoms.iter().zip(&d.lambda) {
            if lam == 0.0 {
                continue;
            }
            for (r, c) in self.r.iter_mut().zip(&atom.cy) {
                *r += lam * c;
            }
            c0 += lam * atom.c0;
            cx_mag += lam * atom.c0.abs();
        }
        // Input terms of the atoms: bounded over the original box on their own.
        if atoms.iter().any(|a| a.cx.iter().any(|v| *v != 0.0)) {
            for i in 0..ol.len() {
                let c: f64 = atoms.iter().zip(&d.lambda).map(|(a, l)| l * a.cx[i]).sum();
                cx_max += if c >= 0.0 { c * ou[i] } else { c * ol[i] };
                cx_mag += (c * ol[i].abs().max(ou[i].abs())).abs();
            }
        }
        // Margin magnitude: |r| · Q_out plus every β term.
        let mut mag: f64 = self
            .r
            .iter()
            .zip(&mags.q[nl - 1])
            .map(|(r, q)| r.abs() * q)
            .sum();
        // Back-substitution; coefs[k + 1] holds the coefficients on relu(z_k).
        let last = &m.layers[nl - 1];
        let mut c = c0 + cx_max;
        {
            let (head, tail) = self.coefs.split_at_mut(nl - 1);
            let _ = head;
            let a = &mut tail[0];
            a.iter_mut().for_each(|v| *v = 0.0);
            for (o, &w) in self.r.iter().enumerate() {
                if w != 0.0 {
                    c += w * last.b[o];
                    axpy(w, last.row(o), a);
                }
            }
        }
        let mut lam_z = Vec::new();
        for j in (0..nl - 1).rev() {
            // coefs[j + 1] on relu(z_j) → lam_z on z_j.
            lam_z.clear();
            lam_z.extend_from_slice(&self.coefs[j + 1]);
            let (lo, hi) = (&pre.lo[j], &pre.hi[j]);
            for (i, w) in lam_z.iter_mut().enumerate() {
                let (l, u) = (lo[i], hi[i]);
                if l >= 0.0 {
                } else if u <= 0.0 {
                    *w = 0.0;
                } else if *w >= 0.0 {
                    let s = u / (u - l);
                    c -= *w * s * l;
                    *w *= s;
                } else {
                    *w *= d.alpha[j][i];
                }
            }
            if let Some(sp) = splits {
                for (i, &s) in sp[j].iter().enumerate() {
                    let b = d.beta[j][i];
                    if s != 0 && b > 0.0 {
                        lam_z[i] += if s > 0 { b } else { -b };
                        mag += b * mags.q[j][i];
                    }
                }
            }
            let lin = &m.layers[j];
            let a = &mut self.coefs[j];
            a.iter_mut().for_each(|v| *v = 0.0);
            for (o, &w) in lam_z.iter().enumerate() {
                if w != 0.0 {
                    c += w * lin.b[o];
                    axpy(w, lin.row(o), a);
                }
            }
        }
        for (i, w) in self.coefs[0].iter().enumerate() {
            let x = if *w >= 0.0 { xu[i] } else { xl[i] };
            self.x_star[i] = x;
            c += w * x;
        }
        let terms = mags.eps[nl - 1];
        c + terms * (mag + cx_mag) + FP_ABS
    }

    /// Gradients of the last [`Eval::run`]'s bound (before the margin) with
    /// respect to `α`, `β` and `λ`.
    #[allow(clippy::too_many_arguments)]
    fn gradients(
        &self,
        m: &Mlp,
        pre: &Pre,
        atoms: &[OutputAtom],
        splits: Option<&Splits>,
        d: &Duals,
        ol: &[f64],
        ou: &[f64],
    ) -> (Vec<Vec<f64>>, Vec<Vec<f64>>, Vec<f64>) {
        let nl = m.layers.len();
        let mut ga: Vec<Vec<f64>> = pre.lo.iter().map(|l| vec![0.0; l.len()]).collect();
        let mut gb: Vec<Vec<f64>> = pre.lo.iter().map(|l| vec![0.0; l.len()]).collect();
        let mut v_prev = self.x_star.clone();
        for j in 0..nl - 1 {
            let lin = &m.layers[j];
            let mut v: Vec<f64> = (0..lin.n_out)
                .map(|o| lin.b[o] + dot(lin.row(o), &v_prev))
                .collect();
            let a = &self.coefs[j + 1];
            if let Some(sp) = splits {
                for (i, &s) in sp[j].iter().enumerate() {
                    if s != 0 {
                        gb[j][i] = if s > 0 { v[i] } else { -v[i] };
                    }
                }
            }
            for (i, vi) in v.iter_mut().enumerate() {
                let (l, u) = (pre.lo[j][i], pre.hi[j][i]);
                if l >= 0.0 {
                } else if u <= 0.0 {
                    *vi = 0.0;
                } else if a[i] >= 0.0 {
                    let s = u / (u - l);
                    *vi = s * (*vi - l);
                } else {
                    ga[j][i] = a[i] * *vi;
                    *vi *= d.alpha[j][i];
                }
            }
            v_prev = v;
        }
        let last = &m.layers[nl - 1];
        let y: Vec<f64> = (0..last.n_out)
            .map(|o| last.b[o] + dot(last.row(o), &v_prev))
            .collect();
        let gl = atoms
            .iter()
            .map(|a| {
                let mut g = a.c0 + dot(&a.cy, &y);
                for (i, c) in a.cx.iter().enumerate() {
                    if *c != 0.0 {
                        // The input terms are bounded separately at the box corner.
                        let lam_c: f64 =
                            atoms.iter().zip(&d.lambda).map(|(a, l)| l * a.cx[i]).sum();
                        g += c * if lam_c >= 0.0 { ou[i] } else { ol[i] };
                    }
                }
                g
            })
            .collect();
        (ga, gb, gl)
    }
}

/// Euclidean projection onto the probability simplex.
fn project_simplex(v: &[f64]) -> Vec<f64> {
    let mut u: Vec<f64> = v.to_vec();
    u.sort_by(|a, b| b.total_cmp(a));
    let mut css = 0.0;
    let mut theta = 0.0;
    for (i, ui) in u.iter().enumerate() {
        css += ui;
        let t = (css - 1.0) / (i + 1) as f64;
        if ui - t > 0.0 {
            theta = t;
        }
    }
    v.iter().map(|x| (x - theta).max(0.0)).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut s = [0.0; 4];
    let n = a.len().min(b.len());
    let (a4, b4) = (a[..n].chunks_exact(4), b[..n].chunks_exact(4));
    let (ra, rb) = (a4.remainder(), b4.remainder());
    for (x, y) in a4.zip(b4) {
        s[0] += x[0] * y[0];
        s[1] += x[1] * y[1];
        s[2] += x[2] * y[2];
        s[3] += x[3] * y[3];
    }
    let mut t = (s[0] + s[1]) + (s[2] + s[3]);
    for (x, y) in ra.iter().zip(rb) {
        t += x * y;
    }
    t
}

fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use ndarray::{Array1, Array2};

    use super::*;
    use crate::model::{Dense, Node};

    /// A seeded random ReLU MLP `n_in → hidden… → n_out`, with an input
    /// normalisation `(x − 0.1) · 2` in front.
    pub(crate) fn random_mlp(seed: u64, n_in: usize, hidden: &[usize], n_out: usize) -> Network {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        };
        let node = |name: String, op: &str, i: usize, o: usize| Node {
            name,
            op_types: vec![op.into()],
            in_shape: vec![1, i],
            out_shape: vec![1, o],
        };
        let mut layers = vec![(
            node("norm".into(), "Sub", n_in, n_in),
            Layer::Affine {
                scale: Array1::from_elem(n_in, 2.0),
                shift: Array1::from_elem(n_in, -0.2),
            },
        )];
        let mut dims = vec![n_in];
        dims.extend_from_slice(hidden);
        dims.push(n_out);
        for w in 0..dims.len() - 1 {
            let (i, o) = (dims[w], dims[w + 1]);
            let scale = 1.5 / (i as f64).sqrt();
            let weight = Array2::from_shape_fn((o, i), |_| scale * rnd());
            let bias = Array1::from_shape_fn(o, |_| 0.3 * rnd());
            layers.push((
                node(format!("fc{w}"), "Gemm", i, o),
                Layer::Dense(Dense {
                    weight,
                    bias,
                    rows: 1,
                }),
            ));
            if w + 2 < dims.len() {
                layers.push((node(format!("relu{w}"), "Relu", o, o), Layer::Relu));
            }
        }
        Network::from_layers(format!("mlp{seed}"), vec![1, n_in], layers).unwrap()
    }

    fn points(seed: u64, lo: &[f64], hi: &[f64], n: usize) -> Vec<Vec<f64>> {
        let mut s = seed | 1;
        (0..n)
            .map(|k| {
                lo.iter()
                    .zip(hi)
                    .map(|(l, h)| {
                        s ^= s << 13;
                        s ^= s >> 7;
                        s ^= s << 17;
                        let t = (s >> 11) as f64 / (1u64 << 53) as f64;
                        // Some samples on the corners.
                        let t = if k % 4 == 0 { t.round() } else { t };
                        l + t * (h - l)
                    })
                    .collect()
            })
            .collect()
    }

    /// Pre-activations of the hidden layers at `x`.
    fn pre_acts(m: &Mlp, x: &[f64]) -> Vec<Vec<f64>> {
        let mut v = m.transform(x);
        let mut out = Vec::new();
        for lin in &m.layers[..m.layers.len() - 1] {
            let z: Vec<f64> = (0..lin.n_out)
                .map(|o| lin.b[o] + dot(lin.row(o), &v))
                .collect();
            v = z.iter().map(|z| z.max(0.0)).collect();
            out.push(z);
        }
        out
    }

    #[test]
    fn flattening_keeps_the_function() {
        let net = random_mlp(3, 4, &[10, 10], 3);
        let m = Mlp::from_network(&net).unwrap();
        assert_eq!(m.hidden(), vec![10, 10]);
        for x in points(1, &[-1.0; 4], &[1.0; 4], 20) {
            let xs = Array2::from_shape_vec((1, 4), x.clone()).unwrap();
            let y = net.forward::<f64>(xs.view()).unwrap();
            for (a, b) in m.forward(&x).iter().zip(y.row(0)) {
                assert!((a - b).abs() < 1e-12);
            }
            // The gradient agrees with the network's own.
            let cy = [1.0, -2.0, 0.5];
            let g = net
                .gradient::<f64>(xs.view(), &crate::model::Objective::Linear(cy.to_vec()), 0)
                .unwrap();
            for (a, b) in m.gradient(&x, &cy).1.iter().zip(g.grad.row(0)) {
                assert!((a - b).abs() < 1e-9, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn intermediate_and_optimised_bounds_hold_on_samples() {
        for seed in 0..6 {
            let net = random_mlp(seed, 3, &[12, 12, 12], 4);
            let m = Mlp::from_network(&net).unwrap();
            let (lo, hi) = (vec![-0.3, 0.0, 0.2], vec![0.1, 0.25, 0.6]);
            let (xl, xu) = m.transform_box(&lo, &hi);
            let mags = m.mags(&xl, &xu);
            let pre = m.intermediate(&xl, &xu, &mags, None, None);
            // The atoms y_0 − y_j ≥ 0 and a constant one.
            let atoms: Vec<OutputAtom> = (1..4)
                .map(|j| {
                    let mut cy = vec![0.0; 4];
                    cy[0] = 1.0;
                    cy[j] = -1.0;
                    OutputAtom {
                        cy,
                        cx: vec![0.0, 0.5, 0.0],
                        c0: -0.1,
                    }
                })
                .collect();
            let init = m.initial_duals(&pre, atoms.len(), 0);
            let plain = m.optimise(
                &xl,
                &xu,
                &lo,
                &hi,
                &pre,
                &mags,
                &atoms,
                None,
                init.clone(),
                0,
                f64::NEG_INFINITY,
            );
            let opt = m.optimise(
                &xl,
                &xu,
                &lo,
                &hi,
                &pre,
                &mags,
                &atoms,
                None,
                init,
                30,
                f64::NEG_INFINITY,
            );
            assert!(opt.bound <= plain.bound);
            let lam = &opt.duals.lambda;
            assert!((lam.iter().sum::<f64>() - 1.0).abs() < 1e-9 && lam.iter().all(|l| *l >= 0.0));
            for x in points(seed + 10, &lo, &hi, 2000) {
                for (k, z) in pre_acts(&m, &x).iter().enumerate() {
                    for (i, z) in z.iter().enumerate() {
                        assert!(pre.lo[k][i] <= *z && *z <= pre.hi[k][i]);
                    }
                }
                let y = m.forward(&x);
                let g: f64 = atoms
                    .iter()
                    .zip(lam)
                    .map(|(a, l)| l * (a.c0 + dot(&a.cy, &y) + dot(&a.cx, &x)))
                    .sum();
                assert!(g <= opt.bound, "seed {seed}: {g} > {}", opt.bound);
            }
            // Bounds of a sub-box with the parent's are within the parent's.
            let (sl, su) = m.transform_box(&[-0.3, 0.0, 0.2], &[-0.1, 0.25, 0.4]);
            let sub = m.intermediate(&sl, &su, &mags, Some(&pre), None);
            for k in 0..pre.lo.len() {
                for i in 0..pre.lo[k].len() {
                    assert!(sub.lo[k][i] >= pre.lo[k][i] && sub.hi[k][i] <= pre.hi[k][i]);
                }
            }
        }
    }

    #[test]
    fn optimised_intermediate_bounds_are_tighter_and_hold_on_samples() {
        let mut tightened = 0;
        for seed in 0..6 {
            let net = random_mlp(seed + 30, 4, &[16, 16, 16], 3);
            let m = Mlp::from_network(&net).unwrap();
            let (lo, hi) = (vec![-0.4; 4], vec![0.4; 4]);
            let (xl, xu) = m.transform_box(&lo, &hi);
            let mags = m.mags(&xl, &xu);
            let crown = m.intermediate(&xl, &xu, &mags, None, None);
            let mut opt = crown.clone();
            m.optimise_intermediate(&xl, &xu, &mags, &mut opt, 20, &|| false);
            for k in 0..crown.lo.len() {
                for i in 0..crown.lo[k].len() {
                    assert!(opt.lo[k][i] >= crown.lo[k][i] && opt.hi[k][i] <= crown.hi[k][i]);
                    let gained =
                        (opt.hi[k][i] - opt.lo[k][i]) < (crown.hi[k][i] - crown.lo[k][i]) - 1e-9;
                    tightened += usize::from(gained);
                }
            }
            for x in points(seed + 40, &lo, &hi, 3000) {
                for (k, z) in pre_acts(&m, &x).iter().enumerate() {
                    for (i, z) in z.iter().enumerate() {
                        assert!(
                            opt.lo[k][i] <= *z && *z <= opt.hi[k][i],
                            "seed {seed} layer {k} neuron {i}: {z} outside [{}, {}]",
                            opt.lo[k][i],
                            opt.hi[k][i]
                        );
                    }
                }
            }
            // A stop that answers at once leaves CROWN's bounds.
            let mut stopped = crown.clone();
            m.optimise_intermediate(&xl, &xu, &mags, &mut stopped, 20, &|| true);
            assert_eq!(stopped, crown);
        }
        assert!(tightened > 0, "alpha-CROWN tightened no intermediate bound");
    }

    #[test]
    fn split_bounds_hold_on_the_subdomain() {
        for seed in 0..6 {
            let net = random_mlp(seed + 100, 3, &[10, 10], 2);
            let m = Mlp::from_network(&net).unwrap();
            let (lo, hi) = (vec![-0.5; 3], vec![0.5; 3]);
            let (xl, xu) = m.transform_box(&lo, &hi);
            let mags = m.mags(&xl, &xu);
            let root = m.intermediate(&xl, &xu, &mags, None, None);
            // Split the first two unstable neurons of the first layer: active, inactive.
            let mut splits: Splits = m.hidden().iter().map(|n| vec![0i8; *n]).collect();
            let unstable: Vec<usize> = (0..10)
                .filter(|&i| root.lo[0][i] < 0.0 && root.hi[0][i] > 0.0)
                .take(2)
                .collect();
            for (k, &i) in unstable.iter().enumerate() {
                splits[0][i] = if k == 0 { 1 } else { -1 };
            }
            let pre = m.clamp(&root, &splits);
            let atoms = vec![OutputAtom {
                cy: vec![1.0, -1.0],
                cx: vec![0.0; 3],
                c0: 0.0,
            }];
            let init = m.initial_duals(&pre, 1, 0);
            let b = m.optimise(
                &xl,
                &xu,
                &lo,
                &hi,
                &pre,
                &mags,
                &atoms,
                Some(&splits),
                init,
                30,
                f64::NEG_INFINITY,
            );
            for x in points(seed, &lo, &hi, 3000) {
                let z = pre_acts(&m, &x);
                let inside = unstable.iter().enumerate().all(|(k, &i)| {
                    if k == 0 {
                        z[0][i] >= 0.0
                    } else {
                        z[0][i] <= 0.0
                    }
                });
                if inside {
                    let y = m.forward(&x);
                    assert!(y[0] - y[1] <= b.bound, "seed {seed}");
                }
            }
        }
    }

    #[test]
    fn non_mlp_networks_are_not_flattened() {
        let mut net = random_mlp(1, 2, &[4], 2);
        assert!(Mlp::from_network(&net).is_some());
        // A network ending in a ReLU is not of the form.
        let mut layers: Vec<(Node, Layer<f64>)> = net
            .nodes()
            .iter()
            .cloned()
            .zip(net.layers().iter().cloned())
            .collect();
        layers.push((
            Node {
                name: "r".into(),
                op_types: vec!["Relu".into()],
                in_shape: vec![1, 2],
                out_shape: vec![1, 2],
            },
            Layer::Relu,
        ));
        net = Network::from_layers("x", vec![1, 2], layers).unwrap();
        assert!(Mlp::from_network(&net).is_none());
    }
}
