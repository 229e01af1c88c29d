//! Adversarial attacks and boundary attributions on the Network IR.
//!
//! Every attack works on a batch of samples (`[n, input_len]`, one goal per
//! sample), runs all samples and restarts through the network together, is
//! seeded (the random numbers of sample `i` depend only on the seed and `i`,
//! never on how the batch is cut), and returns, per sample, the **closest
//! point found** that meets the goal together with its distance and margin.
//! The returned margin is always recomputed by a separate forward pass on the
//! returned point, so `success` never rests on an iterate's bookkeeping.
//!
//! | module | method |
//! |---|---|
//! | [`pgd`] | projected gradient descent, ℓ∞ and ℓ2 (Madry et al. 2018) |
//! | [`cw`] | Carlini–Wagner ℓ2 (Carlini & Wagner 2017) |
//! | [`apgd`] | AutoPGD with CE and DLR losses (Croce & Hein 2020) |
//! | [`boundary`] | closest-boundary search, BSM, BIG and AGI (Wang et al. 2022) |
//! | [`restricted`] | minimal perturbations restricted to feature sets: DeepFool and PGD with bisection, batched over sets (Hsieh et al. 2021) |
//!
//! **Margins.** For an untargeted goal with label `l` the margin is
//! `m(x) = f_l(x) − max_{j≠l} f_j(x)`; for a targeted goal with target `t` it
//! is `m(x) = max_{j≠t} f_j(x) − f_t(x)`. In both cases `m(x) < 0` means the
//! goal is met (an attack *succeeds*), and `m(x) = 0` is the decision boundary.
//!
//! **Feasible set.** PGD and AutoPGD keep every iterate in the ε-ball around
//! the sample (ℓ∞ or ℓ2) intersected with a [`Clip`] box; Carlini–Wagner keeps
//! its iterates in the box by construction and accepts only points inside the
//! ε-ball when one is given. The ℓ2 projection is "scale into the ball, then
//! clamp into the box": clamping moves every coordinate towards the sample
//! (which lies in the box), so the result stays in the ball.

pub mod apgd;
pub mod boundary;
pub mod cw;
pub mod pgd;
pub mod restricted;

use ndarray::{Array2, ArrayView2};
use serde::Serialize;

use crate::model::{Float, Network};
use crate::{Error, Result};

pub use apgd::{apgd, ApgdLoss, ApgdOptions};
pub use boundary::{
    agi, big, boundary_search, bsm, AgiOptions, BigBaselines, BigMap, BoundaryObjective,
    BoundaryOptions, BoundaryPoint, BoundarySearch, Method,
};
pub use cw::{carlini_wagner, CwOptions};
pub use pgd::{pgd, Loss, PgdOptions, Schedule};

/// The norm of the threat model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    /// `‖δ‖∞ = max_i |δ_i|`.
    #[default]
    Linf,
    /// `‖δ‖₂ = (Σ_i δ_i²)^{1/2}`.
    L2,
}

impl Norm {
    /// `‖a − b‖` in this norm.
    pub fn distance(self, a: &[f64], b: &[f64]) -> f64 {
        match self {
            Norm::Linf => linf(a, b),
            Norm::L2 => l2(a, b),
        }
    }
}

/// `‖a − b‖∞`.
pub fn linf(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max)
}

/// `‖a − b‖₂`.
pub fn l2(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(p, q)| (p - q) * (p - q))
        .sum::<f64>()
        .sqrt()
}

/// The box every point must stay in (the valid input domain, such as `[0, 1]`
/// for pixels), besides the ε-ball.
#[derive(Clone, Debug, PartialEq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Clip {
    /// No box.
    #[default]
    None,
    /// The same interval `[min, max]` for every element.
    Range {
        /// Lower end.
        min: f64,
        /// Upper end.
        max: f64,
    },
    /// One interval per element (a VNN-LIB input box, say).
    Box {
        /// Lower ends, `input_len` of them.
        lower: Vec<f64>,
        /// Upper ends, `input_len` of them.
        upper: Vec<f64>,
    },
}

impl Clip {
    /// The interval of element `i`.
    pub fn bounds(&self, i: usize) -> (f64, f64) {
        match self {
            Clip::None => (f64::NEG_INFINITY, f64::INFINITY),
            Clip::Range { min, max } => (*min, *max),
            Clip::Box { lower, upper } => (lower[i], upper[i]),
        }
    }

    /// Whether the box is finite in every element.
    pub fn is_bounded(&self) -> bool {
        match self {
            Clip::None => false,
            Clip::Range { min, max } => min.is_finite() && max.is_finite(),
            Clip::Box { lower, upper } => lower.iter().chain(upper).all(|v| v.is_finite()),
        }
    }

    /// Whether `x` lies in the box, with slack `tol`.
    pub fn contains(&self, x: &[f64], tol: f64) -> bool {
        x.iter().enumerate().all(|(i, &v)| {
            let (lo, hi) = self.bounds(i);
            v >= lo - tol && v <= hi + tol
        })
    }

    /// Checks the box against an input length and that every interval is ordered.
    pub fn check(&self, n: usize) -> Result<()> {
        match self {
            Clip::None => Ok(()),
            Clip::Range { min, max } => {
                if min.is_nan() || max.is_nan() || min > max {
                    return Err(Error::InvalidArgument(format!(
                        "the box [{min}, {max}] is empty"
                    )));
                }
                Ok(())
            }
            Clip::Box { lower, upper } => {
                if lower.len() != n || upper.len() != n {
                    return Err(Error::Shape(format!(
                        "the box has {} lower and {} upper ends, the input has {n} elements",
                        lower.len(),
                        upper.len()
                    )));
                }
                if let Some(i) = (0..n).find(|&i| lower[i].is_nan() || lower[i] > upper[i]) {
                    return Err(Error::InvalidArgument(format!(
                        "the box is empty in element {i}: [{}, {}]",
                        lower[i], upper[i]
                    )));
                }
                Ok(())
            }
        }
    }
}

/// What an attack wants of one sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// Any class but `label` must win.
    Untargeted {
        /// The class to leave.
        label: usize,
    },
    /// Class `target` must win.
    Targeted {
        /// The class to reach.
        target: usize,
    },
}

impl Goal {
    /// The goal's margin `m(x)` at output `y` (`< 0`: goal met; see the module docs).
    pub fn margin(self, y: &[f64]) -> f64 {
        match self {
            Goal::Untargeted { label } => y[label] - best_other(y, label).1,
            Goal::Targeted { target } => best_other(y, target).1 - y[target],
        }
    }

    /// `∂m/∂y` at `y`, written into `g` (the best other class takes the subgradient).
    pub fn margin_grad(self, y: &[f64], g: &mut [f64]) {
        g.iter_mut().for_each(|v| *v = 0.0);
        match self {
            Goal::Untargeted { label } => {
                let (o, _) = best_other(y, label);
                g[label] += 1.0;
                g[o] -= 1.0;
            }
            Goal::Targeted { target } => {
                let (o, _) = best_other(y, target);
                g[o] += 1.0;
                g[target] -= 1.0;
            }
        }
    }

    fn class(self) -> usize {
        match self {
            Goal::Untargeted { label } => label,
            Goal::Targeted { target } => target,
        }
    }
}

/// The best class other than `c` and its score (`(c, −∞)` with a single output).
pub(crate) fn best_other(y: &[f64], c: usize) -> (usize, f64) {
    let mut best = (c, f64::NEG_INFINITY);
    for (j, &v) in y.iter().enumerate() {
        if j != c && v > best.1 {
            best = (j, v);
        }
    }
    best
}

/// The first maximal entry.
pub(crate) fn argmax(y: &[f64]) -> usize {
    let mut b = 0;
    for (j, &v) in y.iter().enumerate() {
        if v > y[b] {
            b = j;
        }
    }
    b
}

/// The outcome of an attack on one sample.
#[derive(Clone, Debug, Serialize)]
pub struct AttackResult {
    /// The closest point found that meets the goal, or (when none did) the
    /// point with the lowest margin; always inside the box and the ε-ball.
    pub x: Vec<f64>,
    /// `‖x − x₀‖` in the attack's norm.
    pub distance: f64,
    /// `‖x − x₀‖∞`.
    pub linf: f64,
    /// `‖x − x₀‖₂`.
    pub l2: f64,
    /// The goal's margin at `x`, from a separate forward pass (`< 0`: met).
    pub margin: f64,
    /// Whether `margin < 0`.
    pub success: bool,
    /// The class the network predicts at `x` (first maximal output).
    pub predicted: usize,
    /// Gradient evaluations spent on this sample (all restarts together).
    pub gradients: usize,
}

/// A point of the search, ranked: one that meets the goal beats one that does
/// not; among those that do, the closer one wins; among the others, the lower
/// margin wins.
#[derive(Clone, Debug)]
pub(crate) struct Best {
    pub x: Vec<f64>,
    pub distance: f64,
    pub margin: f64,
}

impl Best {
    pub fn start(x0: &[f64], margin: f64) -> Best {
        Best {
            x: x0.to_vec(),
            distance: 0.0,
            margin,
        }
    }

    /// Offers a candidate; keeps it when it ranks higher.
    pub fn offer(&mut self, x: &[f64], distance: f64, margin: f64) {
        let better = match (margin < 0.0, self.margin < 0.0) {
            (true, false) => true,
            (false, true) => false,
            (true, true) => distance < self.distance,
            (false, false) => margin < self.margin,
        };
        if better && margin.is_finite() && distance.is_finite() {
            self.x.clear();
            self.x.extend_from_slice(x);
            self.distance = distance;
            self.margin = margin;
        }
    }
}

/// Checks the shared arguments of an attack.
pub(crate) fn check_args(
    net: &Network,
    x0: ArrayView2<f64>,
    goals: &[Goal],
    eps: Option<f64>,
    clip: &Clip,
) -> Result<()> {
    let n_in = net.input_len();
    let n_out = net.output_len();
    if x0.ncols() != n_in {
        return Err(Error::Shape(format!(
            "the samples have {} elements, the network takes {n_in}",
            x0.ncols()
        )));
    }
    if goals.len() != x0.nrows() {
        return Err(Error::InvalidArgument(format!(
            "{} goals for {} samples",
            goals.len(),
            x0.nrows()
        )));
    }
    if n_out < 2 {
        return Err(Error::InvalidArgument(
            "an attack needs a classifier with at least two outputs".into(),
        ));
    }
    if let Some(g) = goals.iter().find(|g| g.class() >= n_out) {
        return Err(Error::InvalidArgument(format!(
            "class {} is out of range: the network has {n_out} outputs",
            g.class()
        )));
    }
    if let Some(e) = eps {
        if !(e.is_finite() && e >= 0.0) {
            return Err(Error::InvalidArgument(format!(
                "the radius must be a finite number ≥ 0, got {e}"
            )));
        }
    }
    clip.check(n_in)?;
    for (r, row) in x0.rows().into_iter().enumerate() {
        let row = row.to_vec();
        if row.iter().any(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "sample {r} holds a non-finite value"
            )));
        }
        if !clip.contains(&row, 1e-9) {
            return Err(Error::InvalidArgument(format!(
                "sample {r} lies outside the box the attack must stay in"
            )));
        }
    }
    Ok(())
}

/// Projects `x` onto the `norm`-ball of radius `eps` around `x0`, then into the box.
pub(crate) fn project(x: &mut [f64], x0: &[f64], eps: f64, norm: Norm, clip: &Clip) {
    match norm {
        Norm::Linf => {
            for (i, (v, &c)) in x.iter_mut().zip(x0).enumerate() {
                let (lo, hi) = clip.bounds(i);
                *v = v.clamp(c - eps, c + eps).clamp(lo, hi);
            }
        }
        Norm::L2 => {
            let d = l2(x, x0);
            if d > eps {
                let s = if d > 0.0 { eps / d } else { 0.0 };
                for (v, &c) in x.iter_mut().zip(x0) {
                    *v = c + (*v - c) * s;
                }
            }
            for (i, v) in x.iter_mut().enumerate() {
                let (lo, hi) = clip.bounds(i);
                *v = v.clamp(lo, hi);
            }
        }
    }
}

/// The steepest-ascent direction of a gradient for a norm: `sign g` for ℓ∞,
/// `g / ‖g‖₂` for ℓ2 (zero for a zero gradient).
pub(crate) fn ascent_direction(g: &[f64], norm: Norm, out: &mut [f64]) {
    match norm {
        Norm::Linf => {
            for (o, &v) in out.iter_mut().zip(g) {
                *o = if v > 0.0 {
                    1.0
                } else if v < 0.0 {
                    -1.0
                } else {
                    0.0
                };
            }
        }
        Norm::L2 => {
            let n = g.iter().map(|v| v * v).sum::<f64>().sqrt();
            for (o, &v) in out.iter_mut().zip(g) {
                *o = if n > 0.0 { v / n } else { 0.0 };
            }
        }
    }
}

/// A small seeded generator (splitmix64): reproducible across platforms and
/// independent of the batch a sample is run in.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// The stream of sample `sample`, restart `restart` under `seed`.
    pub fn for_sample(seed: u64, sample: usize, restart: usize) -> Rng {
        let mut r = Rng(seed ^ 0x6A09_E667_F3BC_C909);
        let a = r.next_u64() ^ (sample as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut r = Rng(a);
        let b = r.next_u64() ^ (restart as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        Rng(b)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// A random point of the `norm`-ball of radius `eps` around `x0` (uniform in
/// the ball), clamped into the box.
/// The starting rows of a batch of samples × restarts: restart 0 of every
/// sample starts at the sample itself unless `random_start`; the others at a
/// seeded random point of the ball and the box. With `free`, coordinates
/// outside the set stay at the sample.
#[allow(clippy::too_many_arguments)]
pub(crate) fn starting_points(
    origin: &[Vec<f64>],
    first_sample: usize,
    restarts: usize,
    random: bool,
    seed: u64,
    eps: f64,
    norm: Norm,
    clip: &Clip,
    free: Option<&[bool]>,
) -> Array2<f64> {
    let n_in = origin.first().map_or(0, |o| o.len());
    let mut x = Array2::<f64>::zeros((origin.len() * restarts, n_in));
    for row in 0..origin.len() * restarts {
        let (s, r) = (row / restarts, row % restarts);
        let p = if r > 0 || random {
            let mut rng = Rng::for_sample(seed, first_sample + s, r);
            let mut p = random_start(&origin[s], eps, norm, clip, &mut rng);
            if let Some(free) = free {
                for ((v, &o), &f) in p.iter_mut().zip(&origin[s]).zip(free) {
                    if !f {
                        *v = o;
                    }
                }
            }
            p
        } else {
            origin[s].clone()
        };
        x.row_mut(row).iter_mut().zip(&p).for_each(|(d, v)| *d = *v);
    }
    x
}

pub(crate) fn random_start(
    x0: &[f64],
    eps: f64,
    norm: Norm,
    clip: &Clip,
    rng: &mut Rng,
) -> Vec<f64> {
    let mut x: Vec<f64> = match norm {
        Norm::Linf => x0
            .iter()
            .map(|&c| c + eps * (2.0 * rng.uniform() - 1.0))
            .collect(),
        Norm::L2 => {
            let d: Vec<f64> = x0.iter().map(|_| rng.normal()).collect();
            let n = d.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-300);
            let r = eps * rng.uniform().powf(1.0 / x0.len().max(1) as f64);
            x0.iter().zip(&d).map(|(&c, &v)| c + r * v / n).collect()
        }
    };
    project(&mut x, x0, eps, norm, clip);
    x
}

/// A per-row scalar function of the output: its value and `∂/∂y`.
pub(crate) type RowLoss<'a> = dyn Fn(usize, &[f64], &mut [f64]) -> f64 + Sync + 'a;

/// Outputs, per-row loss values and `∂loss/∂x` of a batch: one forward trace,
/// one backward pass with a different output gradient per row. The passes run
/// in `T`; the points, the outputs and the gradient are converted at the
/// ends and the loss is taken in `f64`.
pub(crate) fn loss_and_grad<T: Float>(
    net: &Network,
    x: ArrayView2<f64>,
    loss: &RowLoss<'_>,
) -> Result<(Array2<f64>, Vec<f64>, Array2<f64>)> {
    let trace = net.trace::<T>(x.mapv(T::from_f64).view())?;
    let y = trace.output().mapv(|v| v.as_f64());
    let mut gy = Array2::<T>::zeros(y.raw_dim());
    let mut values = Vec::with_capacity(y.nrows());
    let mut buf = vec![0.0; y.ncols()];
    for (r, yr) in y.rows().into_iter().enumerate() {
        let yr = yr.to_vec();
        values.push(loss(r, &yr, &mut buf));
        gy.row_mut(r)
            .iter_mut()
            .zip(&buf)
            .for_each(|(g, &b)| *g = T::from_f64(b));
    }
    let grad = net.backward(&trace, 0, gy.view())?.mapv(|v| v.as_f64());
    Ok((y, values, grad))
}

/// Runs `x` forward in batches of at most `batch` rows.
pub(crate) fn forward_batched(
    net: &Network,
    x: ArrayView2<f64>,
    batch: usize,
) -> Result<Array2<f64>> {
    let n = x.nrows();
    let mut out = Array2::<f64>::zeros((n, net.output_len()));
    let b = batch.max(1);
    let mut s = 0;
    while s < n {
        let e = (s + b).min(n);
        let y = net.forward::<f64>(x.slice(ndarray::s![s..e, ..]))?;
        out.slice_mut(ndarray::s![s..e, ..]).assign(&y);
        s = e;
    }
    Ok(out)
}

/// Turns the best points into results, re-checked by a forward pass.
pub(crate) fn finish(
    net: &Network,
    x0: ArrayView2<f64>,
    goals: &[Goal],
    best: Vec<Best>,
    norm: Norm,
    gradients: &[usize],
) -> Result<Vec<AttackResult>> {
    let n = best.len();
    let n_in = net.input_len();
    let mut xs = Array2::<f64>::zeros((n, n_in));
    for (r, b) in best.iter().enumerate() {
        xs.row_mut(r)
            .iter_mut()
            .zip(&b.x)
            .for_each(|(d, s)| *d = *s);
    }
    let y = forward_batched(net, xs.view(), 256)?;
    Ok(best
        .into_iter()
        .enumerate()
        .map(|(r, b)| {
            let yr = y.row(r).to_vec();
            let c = x0.row(r).to_vec();
            let margin = goals[r].margin(&yr);
            AttackResult {
                distance: norm.distance(&b.x, &c),
                linf: linf(&b.x, &c),
                l2: l2(&b.x, &c),
                margin,
                success: margin < 0.0,
                predicted: argmax(&yr),
                gradients: gradients[r],
                x: b.x,
            }
        })
        .collect())
}

/// Samples per chunk so that `chunk × restarts` rows stay near `rows`.
pub(crate) fn chunk_samples(rows: usize, restarts: usize) -> usize {
    (rows / restarts.max(1)).max(1)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{Dense, Layer, Node};
    use ndarray::{Array1, Array2};

    fn node(name: &str, op: &str, i: usize, o: usize) -> Node {
        Node {
            name: name.into(),
            op_types: vec![op.into()],
            in_shape: vec![1, i],
            out_shape: vec![1, o],
        }
    }

    /// `y = W x + b`.
    pub fn linear_net(w: Array2<f64>, b: Array1<f64>) -> Network {
        let (o, i) = w.dim();
        Network::from_layers(
            "linear",
            vec![1, i],
            vec![(
                node("fc", "Gemm", i, o),
                Layer::Dense(Dense {
                    weight: w,
                    bias: b,
                    rows: 1,
                }),
            )],
        )
        .unwrap()
    }

    /// A seeded ReLU MLP `n_in → hidden → n_out` with weights in `±1.5/√in`.
    pub fn relu_net(seed: u64, n_in: usize, hidden: &[usize], n_out: usize) -> Network {
        let mut rng = Rng::for_sample(seed, 0, 0);
        let mut dims = vec![n_in];
        dims.extend_from_slice(hidden);
        dims.push(n_out);
        let mut layers = Vec::new();
        for k in 0..dims.len() - 1 {
            let (i, o) = (dims[k], dims[k + 1]);
            let s = 1.5 / (i as f64).sqrt();
            let w = Array2::from_shape_fn((o, i), |_| s * (2.0 * rng.uniform() - 1.0));
            let b = Array1::from_shape_fn(o, |_| 0.3 * (2.0 * rng.uniform() - 1.0));
            layers.push((
                node(&format!("fc{k}"), "Gemm", i, o),
                Layer::Dense(Dense {
                    weight: w,
                    bias: b,
                    rows: 1,
                }),
            ));
            if k + 2 < dims.len() {
                layers.push((node(&format!("relu{k}"), "Relu", o, o), Layer::Relu));
            }
        }
        Network::from_layers(format!("relu{seed}"), vec![1, n_in], layers).unwrap()
    }

    #[test]
    fn projections_stay_in_ball_and_box() {
        let x0 = [0.5, 0.9, 0.1];
        let clip = Clip::Range { min: 0.0, max: 1.0 };
        let mut x = vec![2.0, -3.0, 0.15];
        project(&mut x, &x0, 0.2, Norm::Linf, &clip);
        assert_eq!(x, vec![0.7, 0.7, 0.15]);
        let mut x = vec![3.5, 0.9, 0.1];
        project(&mut x, &x0, 0.5, Norm::L2, &clip);
        assert!((x[0] - 1.0).abs() < 1e-12 && l2(&x, &x0) <= 0.5 + 1e-12);
        let mut rng = Rng::for_sample(3, 1, 2);
        for norm in [Norm::Linf, Norm::L2] {
            for _ in 0..50 {
                let s = random_start(&x0, 0.3, norm, &clip, &mut rng);
                assert!(norm.distance(&s, &x0) <= 0.3 + 1e-12);
                assert!(clip.contains(&s, 0.0));
            }
        }
    }

    #[test]
    fn margins_and_ranking() {
        let y = [1.0, 3.0, 2.0];
        assert_eq!(Goal::Untargeted { label: 1 }.margin(&y), 1.0);
        assert_eq!(Goal::Untargeted { label: 0 }.margin(&y), -2.0);
        assert_eq!(Goal::Targeted { target: 2 }.margin(&y), 1.0);
        let mut g = [0.0; 3];
        Goal::Targeted { target: 2 }.margin_grad(&y, &mut g);
        assert_eq!(g, [0.0, 1.0, -1.0]);
        let mut b = Best::start(&[0.0], 1.0);
        b.offer(&[1.0], 1.0, 0.5);
        assert_eq!(b.margin, 0.5);
        b.offer(&[2.0], 2.0, -0.1);
        assert_eq!(b.x, vec![2.0]);
        b.offer(&[3.0], 3.0, -5.0);
        assert_eq!(b.x, vec![2.0]);
        b.offer(&[0.5], 0.5, -0.01);
        assert_eq!(b.x, vec![0.5]);
    }

    #[test]
    fn seeds_are_per_sample() {
        let a: Vec<u64> = (0..4)
            .map(|_| Rng::for_sample(1, 5, 0).next_u64())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Rng::for_sample(1, 5, 0).next_u64(),
            Rng::for_sample(1, 6, 0).next_u64()
        );
        assert_ne!(
            Rng::for_sample(1, 5, 0).next_u64(),
            Rng::for_sample(2, 5, 0).next_u64()
        );
    }
}
