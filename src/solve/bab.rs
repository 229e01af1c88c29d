//! Branch and bound by input splitting, for networks with few inputs (ACAS Xu).
//!
//! A box is *pruned* when CROWN bounds on each atom of the output conjunction,
//! computed by back-substituting the atom itself ([`bound_linear`]), show that
//! some atom cannot hold anywhere in the box. Otherwise the box's centre, and a
//! few projected-gradient steps from it on the most violated atom, are tried as
//! counterexamples; failing that, the box is split in two along the input with
//! the largest `width × |∂ atom / ∂ x_i|` (the "smear" heuristic). The search
//! is complete: it ends with a counterexample, with every box pruned, or at the
//! deadline or cancel.
//!
//! On a ReLU MLP (ACAS Xu) the search runs on [`Mlp`] instead: CROWN
//! intermediate bounds per box, intersected with the parent box's;
//! alpha-CROWN on a convex combination of the atoms (any atom can be the one
//! that rules a box out); many boxes per round in parallel; the split input
//! chosen by its coefficient in the bound times its width (coefficients
//! floored at 5% of the largest); a PGD falsifier from random starts; and ReLU
//! splits with beta-CROWN multipliers once a box has few unstable ReLUs.
//! [`relu_split`] runs the same search splitting ReLUs only, for MLPs with
//! many inputs, on the root's intermediate bounds optimised once by
//! alpha-CROWN ([`Mlp::optimise_intermediate`]); [`RootBounds`] keeps them for
//! the property's other conjunctions over the same box.

use std::sync::Arc;
use std::time::Instant;

use ndarray::Array2;
use rayon::prelude::*;
use serde::Serialize;

use super::attack::{local_search, Rng};
use super::{CancelToken, Deadline};
use crate::bounds::mlp::{Duals, Mags, OutputAtom, Pre, Splits};
use crate::bounds::{bound_linear, crown_intermediate, Mlp};
use crate::model::{Network, Objective};
use crate::property::{Cmp, InputBox, LinearConstraint, Region, Var};
use crate::Result;

/// Boxes narrower than this (relative to the region's width) are not split
/// further: below it, floating-point bounds cannot separate the two halves.
const MIN_RELATIVE_WIDTH: f64 = 1e-9;
/// Projected-gradient steps tried from each box's centre.
const ATTACK_STEPS: usize = 3;

/// How an input-splitting search ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BabOutcome {
    /// Every box was pruned: no input of the region satisfies the conjunction.
    Proven,
    /// An input (of the region) whose output satisfies the conjunction.
    Counterexample(Vec<f64>),
    /// The deadline passed.
    Timeout,
    /// The cancel token was set.
    Cancelled,
    /// A box could not be decided even at the floating-point limit.
    Unknown,
}

/// Counters of a search.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BabStats {
    /// Boxes whose bounds were computed.
    pub boxes: usize,
    /// Boxes pruned by bounds.
    pub pruned: usize,
    /// Deepest split.
    pub max_depth: usize,
    /// Seconds spent in bound computations.
    pub bounds_s: f64,
    /// Share of the search tree closed (pruned), each split giving each child
    /// half its parent's weight: for input splits alone, the share of the
    /// region's volume proven.
    pub closed_share: f64,
    /// ReLU splitting: unstable neurons of the root under CROWN's
    /// intermediate bounds, and after optimising them (alpha-CROWN).
    pub root_unstable_crown: usize,
    /// See `root_unstable_crown`.
    pub root_unstable: usize,
    /// ReLU splitting: seconds spent on the root's intermediate bounds.
    pub root_s: f64,
}

/// The root's optimised intermediate bounds of a ReLU-splitting search,
/// kept for the next conjunction over the same input box: they depend on the
/// box alone, and on the larger MNIST MLPs they take seconds.
#[derive(Debug, Default)]
pub struct RootBounds {
    slot: std::sync::Mutex<Option<RootEntry>>,
}

/// The box, its optimised bounds, and the unstable count under CROWN's.
type RootEntry = (Vec<f64>, Vec<f64>, Arc<Pre>, usize);

impl RootBounds {
    /// A new, empty cache.
    pub fn new() -> RootBounds {
        RootBounds::default()
    }

    /// The bounds for `[lo, hi]` and the unstable count under CROWN's.
    fn get(&self, lo: &[f64], hi: &[f64]) -> Option<(Arc<Pre>, usize)> {
        let slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some((l, h, p, n)) if l.as_slice() == lo && h.as_slice() == hi => Some((p.clone(), *n)),
            _ => None,
        }
    }

    fn put(&self, lo: &[f64], hi: &[f64], pre: Arc<Pre>, unstable_crown: usize) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        *slot = Some((lo.to_vec(), hi.to_vec(), pre, unstable_crown));
    }
}

/// `h(x, y) ≥ 0` forms of the atoms: `(coefficients on y, on x, constant)`.
pub(crate) struct Atom {
    pub(crate) cy: Vec<f64>,
    pub(crate) cx: Vec<f64>,
    pub(crate) c0: f64,
}

pub(crate) fn atoms(conj: &[LinearConstraint], n_in: usize, n_out: usize) -> Vec<Atom> {
    let mut out = Vec::new();
    for a in conj {
        let mut cy = vec![0.0; n_out];
        let mut cx = vec![0.0; n_in];
        for (v, c) in &a.terms {
            match v {
                Var::X(i) => cx[*i] += c,
                Var::Y(j) => cy[*j] += c,
            }
        }
        // lhs ≥ rhs  ⇔  lhs − rhs ≥ 0;  lhs ≤ rhs  ⇔  rhs − lhs ≥ 0.
        let ge = Atom {
            cy: cy.clone(),
            cx: cx.clone(),
            c0: -a.rhs,
        };
        let le = Atom {
            cy: cy.iter().map(|v| -v).collect(),
            cx: cx.iter().map(|v| -v).collect(),
            c0: a.rhs,
        };
        match a.cmp {
            Cmp::Ge => out.push(ge),
            Cmp::Le => out.push(le),
            Cmp::Eq => {
                out.push(ge);
                out.push(le);
            }
        }
    }
    out
}

pub(crate) fn value(a: &Atom, x: &[f64], y: &[f64]) -> f64 {
    a.c0 + a.cy.iter().zip(y).map(|(c, v)| c * v).sum::<f64>()
        + a.cx.iter().zip(x).map(|(c, v)| c * v).sum::<f64>()
}

/// Upper bound of `c·x` over a box.
fn linear_max(c: &[f64], b: &InputBox) -> f64 {
    c.iter()
        .zip(b.lower.iter().zip(&b.upper))
        .map(|(c, (l, u))| if *c >= 0.0 { c * u } else { c * l })
        .sum()
}

/// Searches `region` for an input whose output satisfies every atom of `conj`
/// (on a ReLU MLP, boxes with at most [`RELU_SPLIT_BELOW`] unstable ReLUs are
/// split on a ReLU).
pub fn input_split(
    net: &Network,
    region: &Region,
    conj: &[LinearConstraint],
    deadline: &Deadline,
    cancel: &CancelToken,
) -> Result<(BabOutcome, BabStats)> {
    input_split_with(net, region, conj, deadline, cancel, RELU_SPLIT_BELOW)
}

/// [`input_split`] where a box of a ReLU MLP with at most `relu_split_below`
/// unstable ReLUs is split on a ReLU instead of an input (other networks
/// split inputs only, and ignore it).
pub fn input_split_with(
    net: &Network,
    region: &Region,
    conj: &[LinearConstraint],
    deadline: &Deadline,
    cancel: &CancelToken,
    relu_split_below: usize,
) -> Result<(BabOutcome, BabStats)> {
    if let Some(mlp) = Mlp::from_network(net) {
        if !conj.is_empty() {
            return input_split_mlp(&mlp, region, conj, deadline, cancel, relu_split_below);
        }
    }
    let n_in = net.input_len();
    let n_out = net.output_len();
    // The region's non-box input constraints, as atoms with no y part.
    let input_atoms = atoms(&region.input_constraints, n_in, n_out);
    let atoms = atoms(conj, n_in, n_out);
    let mut stats = BabStats::default();
    let widths: Vec<f64> = region
        .input
        .lower
        .iter()
        .zip(&region.input.upper)
        .map(|(l, u)| u - l)
        .collect();
    // (box, depth, share of the tree): each split halves the share.
    let mut stack: Vec<(InputBox, usize, f64)> = vec![(region.input.clone(), 0, 1.0)];
    let spec = Array2::from_shape_fn((atoms.len(), n_out), |(r, j)| atoms[r].cy[j]);
    let mut undecided = false;
    let ctx = Ctx {
        net,
        atoms: &atoms,
        input_atoms: &input_atoms,
        spec: &spec,
        widths: &widths,
    };
    while !stack.is_empty() {
        if cancel.is_cancelled() {
            return Ok((BabOutcome::Cancelled, stats));
        }
        if deadline.expired() {
            return Ok((BabOutcome::Timeout, stats));
        }
        // A handful of boxes at a time, bounded in parallel.
        let take = stack.len().min(PARALLEL_BOXES);
        let batch: Vec<(InputBox, usize, f64)> = stack.split_off(stack.len() - take);
        let results: Vec<(Result<(Visit, f64)>, f64)> = batch
            .into_par_iter()
            .map(|(bx, depth, weight)| (ctx.visit(bx, depth), weight))
            .collect();
        for (r, weight) in results.into_iter().rev() {
            let (visit, secs) = r?;
            stats.boxes += 1;
            stats.bounds_s += secs;
            match visit {
                Visit::Pruned => {
                    stats.pruned += 1;
                    stats.closed_share += weight;
                }
                Visit::Found(x) => return Ok((BabOutcome::Counterexample(x), stats)),
                Visit::Undecided => undecided = true,
                Visit::Split(left, right, depth) => {
                    stats.max_depth = stats.max_depth.max(depth);
                    stack.push((right, depth, 0.5 * weight));
                    stack.push((left, depth, 0.5 * weight));
                }
            }
        }
    }
    Ok((
        if undecided {
            BabOutcome::Unknown
        } else {
            BabOutcome::Proven
        },
        stats,
    ))
}

/// Boxes bounded at once (one per rayon task).
const PARALLEL_BOXES: usize = 8;

/// What happened to one box.
enum Visit {
    Pruned,
    Found(Vec<f64>),
    Undecided,
    Split(InputBox, InputBox, usize),
}

/// What every box visit reads.
struct Ctx<'a> {
    net: &'a Network,
    atoms: &'a [Atom],
    input_atoms: &'a [Atom],
    spec: &'a Array2<f64>,
    widths: &'a [f64],
}

impl Ctx<'_> {
    /// Bounds one box: prune it, find a counterexample in it, or split it.
    /// Also returns the seconds spent on bounds.
    fn visit(&self, bx: InputBox, depth: usize) -> Result<(Visit, f64)> {
        let net = self.net;
        // Input constraints that cannot hold anywhere in the box prune it.
        if self
            .input_atoms
            .iter()
            .any(|a| a.c0 + linear_max(&a.cx, &bx) < 0.0)
        {
            return Ok((Visit::Pruned, 0.0));
        }
        let t = Instant::now();
        let bounds = crown_intermediate(net, &bx)?;
        let (_, hi) = bound_linear(net, &bounds, net.len(), self.spec.clone())?;
        let secs = t.elapsed().as_secs_f64();
        let margins: Vec<f64> = self
            .atoms
            .iter()
            .zip(&hi)
            .map(|(a, h)| h + a.c0 + linear_max(&a.cx, &bx))
            .collect();
        if margins.iter().any(|m| *m < 0.0) {
            return Ok((Visit::Pruned, secs));
        }
        if let Some(x) = attack(net, self.atoms, self.input_atoms, &bx)? {
            return Ok((Visit::Found(x), secs));
        }
        // Split along the input with the largest smear for the atom nearest to pruning.
        let worst = margins
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(k, _)| k)
            .unwrap_or(0);
        let centre: Vec<f64> = bx
            .lower
            .iter()
            .zip(&bx.upper)
            .map(|(l, u)| 0.5 * (l + u))
            .collect();
        let grad = atom_gradient(net, &self.atoms[worst], &centre)?;
        let mut best = (usize::MAX, -1.0);
        for (i, g) in grad.iter().enumerate() {
            let w = bx.upper[i] - bx.lower[i];
            if w <= MIN_RELATIVE_WIDTH * self.widths[i].max(f64::MIN_POSITIVE) {
                continue;
            }
            let smear = w * (g.abs() + 1e-12);
            if smear > best.1 {
                best = (i, smear);
            }
        }
        if best.0 == usize::MAX {
            return Ok((Visit::Undecided, secs));
        }
        let i = best.0;
        let mid = 0.5 * (bx.lower[i] + bx.upper[i]);
        let mut left = bx.clone();
        let mut right = bx;
        left.upper[i] = mid;
        right.lower[i] = mid;
        Ok((Visit::Split(left, right, depth + 1), secs))
    }
}

/// `∂ h / ∂ x` at `x` for one atom.
fn atom_gradient(net: &Network, a: &Atom, x: &[f64]) -> Result<Vec<f64>> {
    let xs = Array2::from_shape_vec((1, x.len()), x.to_vec())
        .map_err(|e| crate::Error::Shape(e.to_string()))?;
    let g = net.gradient::<f64>(xs.view(), &Objective::Linear(a.cy.clone()), 0)?;
    Ok(g.grad.iter().zip(&a.cx).map(|(g, c)| g + c).collect())
}

/// Tries the box centre and a few projected-gradient ascent steps on the most
/// violated atom; returns a point where every atom and input constraint holds.
fn attack(
    net: &Network,
    atoms: &[Atom],
    input_atoms: &[Atom],
    bx: &InputBox,
) -> Result<Option<Vec<f64>>> {
    let mut x: Vec<f64> = bx
        .lower
        .iter()
        .zip(&bx.upper)
        .map(|(l, u)| 0.5 * (l + u))
        .collect();
    for step in 0..=ATTACK_STEPS {
        let xs = Array2::from_shape_vec((1, x.len()), x.clone())
            .map_err(|e| crate::Error::Shape(e.to_string()))?;
        let y = net.forward::<f64>(xs.view())?;
        let y = y.row(0).to_vec();
        let vals: Vec<f64> = atoms.iter().map(|a| value(a, &x, &y)).collect();
        let inputs_ok = input_atoms.iter().all(|a| value(a, &x, &[]) >= 0.0);
        if inputs_ok && vals.iter().all(|v| *v >= 0.0) {
            return Ok(Some(x));
        }
        if step == ATTACK_STEPS {
            break;
        }
        let (k, _) = vals
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .unwrap_or((0, &0.0));
        let g = atom_gradient(net, &atoms[k], &x)?;
        // A signed step of a quarter of the box's width along each input.
        for i in 0..x.len() {
            let w = bx.upper[i] - bx.lower[i];
            x[i] = (x[i] + 0.25 * w * g[i].signum()).clamp(bx.lower[i], bx.upper[i]);
        }
    }
    Ok(None)
}

/// Domains bounded per round of the MLP search (in parallel).
const MLP_BATCH: usize = 64;
/// Subgradient steps on the slopes, split multipliers and atom weights per domain.
const ALPHA_ITERS: usize = 20;
/// Subgradient steps per side of each unstable neuron when ReLU splitting
/// optimises the root's intermediate bounds.
const INTERMEDIATE_ITERS: usize = 20;
/// Candidates that ReLU splitting's filtered smart branching bounds both
/// children of (the best by the BaBSR-style score). Measured on
/// mnist-net_256x2 prop_1 (ε = 0.03), first conjunction: 1,683 boxes with
/// the score alone, 81 with 8 candidates, 51 with 16 and 32; the whole
/// property is proven in about 20 s with 32, where 16 leaves one of its nine
/// conjunctions open at 50 s.
const FSB_CANDIDATES: usize = 32;
/// Margin evaluations of the periodic attack's refinement, per search round.
const REFINE_EVALS_PER_ROUND: usize = 64;
/// In input splitting, a box with at most this many unstable ReLUs is split
/// on a ReLU instead of an input.
pub const RELU_SPLIT_BELOW: usize = 12;
/// The threshold of the portfolio's second input-splitting member. Measured
/// on ACAS Xu (one core, the list's limits): with 32, 4_2 φ2 is proven in
/// 39 s, where 12, 20, 24, 40 and 48 time out (28: 97 s), because its deep
/// boxes keep 14–29 unstable ReLUs whose relaxation hides margins of 1e-3 to
/// 1e-2, which input splits shrink only slowly; but 1_5 φ2 and 3_3 φ2, which
/// 12 falsifies in seconds, then time out. Neither threshold decides all
/// 180; the two raced do.
pub const RELU_SPLIT_BELOW_WIDE: usize = 32;

/// The atoms as [`OutputAtom`]s.
fn output_atoms(atoms: &[Atom]) -> Vec<OutputAtom> {
    atoms
        .iter()
        .map(|a| OutputAtom {
            cy: a.cy.clone(),
            cx: a.cx.clone(),
            c0: a.c0,
        })
        .collect()
}

/// One domain of the MLP search (a box and ReLU splits), with what its parent learnt.
struct Domain {
    lo: Vec<f64>,
    hi: Vec<f64>,
    splits: Option<Arc<Splits>>,
    depth: usize,
    /// Share of the search tree (the root's is 1; each child gets half).
    weight: f64,
    pre: Option<Arc<Pre>>,
    /// Whether `pre` was computed for this very domain (else for its parent).
    exact: bool,
    duals: Option<Arc<Duals>>,
}

/// What happened to one domain of the MLP search.
enum MlpVisit {
    Pruned,
    Found(Vec<f64>),
    Undecided,
    Split(Domain, Domain),
}

/// How the MLP search branches.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Split inputs; split ReLUs once a box has at most `relu_split_below`
    /// unstable ones.
    Input { relu_split_below: usize },
    /// Split ReLUs only, on the intermediate bounds of the root.
    Relu,
}

/// What every domain visit of the MLP search reads.
struct MlpCtx<'a> {
    mlp: &'a Mlp,
    atoms: &'a [Atom],
    spec: &'a [OutputAtom],
    input_atoms: &'a [Atom],
    mags: &'a Mags,
    widths: &'a [f64],
    mode: Mode,
}

impl MlpCtx<'_> {
    /// Whether `x` satisfies every atom and input constraint (in `f64`).
    fn is_counterexample(&self, x: &[f64]) -> bool {
        let y = self.mlp.forward(x);
        self.atoms.iter().all(|a| value(a, x, &y) >= 0.0)
            && self.input_atoms.iter().all(|a| value(a, x, &[]) >= 0.0)
    }

    /// `min_k h_k(x, f(x))` over the atoms and input constraints: `≥ 0`
    /// exactly at a counterexample.
    fn margin(&self, x: &[f64]) -> f64 {
        let y = self.mlp.forward(x);
        let out = self.atoms.iter().map(|a| value(a, x, &y));
        let inp = self.input_atoms.iter().map(|a| value(a, x, &[]));
        out.chain(inp).fold(f64::INFINITY, f64::min)
    }

    fn visit(&self, node: Domain) -> MlpVisit {
        let Domain {
            lo,
            hi,
            splits,
            depth,
            weight,
            pre: parent,
            exact,
            duals,
        } = node;
        let bx = InputBox {
            lower: lo,
            upper: hi,
        };
        if self
            .input_atoms
            .iter()
            .any(|a| a.c0 + linear_max(&a.cx, &bx) < 0.0)
        {
            return MlpVisit::Pruned;
        }
        let (lo, hi) = (&bx.lower, &bx.upper);
        let mlp = self.mlp;
        let (xl, xu) = mlp.transform_box(lo, hi);
        let sp = splits.as_deref();
        let pre = match parent {
            Some(p) if exact => Arc::unwrap_or_clone(p),
            Some(p) if self.mode == Mode::Relu => match sp {
                Some(s) => mlp.clamp(&p, s),
                None => Arc::unwrap_or_clone(p),
            },
            p => mlp.intermediate(&xl, &xu, self.mags, p.as_deref(), sp),
        };
        // A split that contradicts the bounds leaves an empty domain.
        if pre
            .lo
            .iter()
            .zip(&pre.hi)
            .any(|(l, h)| l.iter().zip(h).any(|(l, u)| l > u))
        {
            return MlpVisit::Pruned;
        }
        // Each atom on its own with the adaptive slopes; any negative prunes.
        let m = self.spec.len();
        let mut first = 0;
        if m > 1 || duals.is_none() {
            let mut best = f64::INFINITY;
            for k in 0..m {
                let init = mlp.initial_duals(&pre, m, k);
                let b = mlp.optimise(
                    &xl, &xu, lo, hi, &pre, self.mags, self.spec, sp, init, 0, 0.0,
                );
                if b.bound < 0.0 {
                    return MlpVisit::Pruned;
                }
                if b.bound < best {
                    best = b.bound;
                    first = k;
                }
            }
        }
        let init = match &duals {
            Some(d) => (**d).clone(),
            None => mlp.initial_duals(&pre, m, first),
        };
        let sb = mlp.optimise(
            &xl,
            &xu,
            lo,
            hi,
            &pre,
            self.mags,
            self.spec,
            sp,
            init,
            ALPHA_ITERS,
            0.0,
        );
        if sb.bound < 0.0 {
            return MlpVisit::Pruned;
        }
        // Candidates: the corner that attains the bound, and the centre.
        let corner = mlp.untransform(&sb.x_star, lo, hi);
        if self.is_counterexample(&corner) {
            return MlpVisit::Found(corner);
        }
        let centre: Vec<f64> = lo.iter().zip(hi).map(|(l, u)| 0.5 * (l + u)).collect();
        if self.is_counterexample(&centre) {
            return MlpVisit::Found(centre);
        }
        let unstable = pre.unstable();
        let relu_branch = match self.mode {
            Mode::Relu => true,
            Mode::Input { relu_split_below } => unstable > 0 && unstable <= relu_split_below,
        };
        let pre = Arc::new(pre);
        let duals = Arc::new(sb.duals.clone());
        if relu_branch {
            // BaBSR-style score: the bound's coefficient on the neuron times
            // the intercept of its upper relaxation, `|a| · u·(−l) / (u − l)`.
            let mut scored: Vec<(usize, usize, f64)> = Vec::new();
            for (j, (l, h)) in pre.lo.iter().zip(&pre.hi).enumerate() {
                for (i, (&l, &u)) in l.iter().zip(h).enumerate() {
                    if !(l < 0.0 && u > 0.0) {
                        continue;
                    }
                    let a = sb.relu_coefs[j][i];
                    let score = a.abs() * u * (-l) / (u - l) + 1e-9 * (u - l);
                    scored.push((j, i, score));
                }
            }
            let split_with = |j: usize, i: usize, sign: i8| {
                let mut s = match &splits {
                    Some(s) => (**s).clone(),
                    None => mlp.hidden().iter().map(|n| vec![0i8; *n]).collect(),
                };
                s[j][i] = sign;
                s
            };
            let best = if self.mode == Mode::Relu && scored.len() > 1 {
                // Filtered smart branching (De Palma et al. 2021): of the
                // best-scored candidates, the one whose worse child has the
                // lowest bound, each child bounded once with the parent's
                // multipliers.
                scored.sort_by(|a, b| b.2.total_cmp(&a.2));
                scored.truncate(FSB_CANDIDATES);
                let child_bound = |j: usize, i: usize, sign: i8| {
                    let s = split_with(j, i, sign);
                    let p = mlp.clamp(&pre, &s);
                    mlp.optimise(
                        &xl,
                        &xu,
                        lo,
                        hi,
                        &p,
                        self.mags,
                        self.spec,
                        Some(&s),
                        (*duals).clone(),
                        0,
                        0.0,
                    )
                    .bound
                };
                scored
                    .iter()
                    .map(|&(j, i, _)| {
                        let (a, b) = (child_bound(j, i, 1), child_bound(j, i, -1));
                        (j, i, a.max(b), a + b)
                    })
                    .min_by(|x, y| x.2.total_cmp(&y.2).then(x.3.total_cmp(&y.3)))
                    .map(|(j, i, _, _)| (j, i))
            } else {
                // The first of the best-scored.
                scored
                    .iter()
                    .fold(None::<&(usize, usize, f64)>, |b, x| match b {
                        Some(b) if x.2 <= b.2 => Some(b),
                        _ => Some(x),
                    })
                    .map(|&(j, i, _)| (j, i))
            };
            if let Some((j, i)) = best {
                let child = |sign: i8| {
                    let s = split_with(j, i, sign);
                    Domain {
                        lo: lo.clone(),
                        hi: hi.clone(),
                        splits: Some(Arc::new(s)),
                        depth: depth + 1,
                        weight: 0.5 * weight,
                        pre: Some(pre.clone()),
                        exact: false,
                        duals: Some(duals.clone()),
                    }
                };
                return MlpVisit::Split(child(1), child(-1));
            }
            // Every ReLU is decided and the bound still does not prune: the
            // multipliers were not optimised far enough, so split the box.
        }
        let splittable: Vec<usize> = (0..lo.len())
            .filter(|&i| hi[i] - lo[i] > MIN_RELATIVE_WIDTH * self.widths[i].max(f64::MIN_POSITIVE))
            .collect();
        if splittable.is_empty() {
            return MlpVisit::Undecided;
        }
        // Split the input whose coefficient × width contributes most to the
        // bound; coefficients are floored at 5% of the largest, as the
        // relaxation can hide an input the network depends on.
        let cmax = sb.coef.iter().fold(0.0f64, |m, c| m.max(c.abs()));
        let score = |i: usize| sb.coef[i].abs().max(0.05 * cmax) * (xu[i] - xl[i]);
        let i = *splittable
            .iter()
            .max_by(|a, b| score(**a).total_cmp(&score(**b)))
            .expect("a splittable input");
        let mid = 0.5 * (lo[i] + hi[i]);
        let node = |l: Vec<f64>, h: Vec<f64>| Domain {
            lo: l,
            hi: h,
            splits: splits.clone(),
            depth: depth + 1,
            weight: 0.5 * weight,
            pre: Some(pre.clone()),
            exact: false,
            duals: Some(duals.clone()),
        };
        let mut l_hi = hi.clone();
        l_hi[i] = mid;
        let mut r_lo = lo.clone();
        r_lo[i] = mid;
        MlpVisit::Split(node(lo.clone(), l_hi), node(r_lo, hi.clone()))
    }
}

/// Projected gradient ascent on the most violated atom from `restarts`
/// random points of the region (plus its centre), in `f64` on the MLP; then
/// the best endpoint is refined by [`local_search`] for `refine_evals`
/// margin evaluations (0: no refinement).
fn mlp_attack(
    ctx: &MlpCtx<'_>,
    region: &Region,
    restarts: usize,
    steps: usize,
    seed: u64,
    refine_evals: usize,
    stop: &dyn Fn() -> bool,
) -> Option<Vec<f64>> {
    let (lo, hi) = (&region.input.lower, &region.input.upper);
    let n = lo.len();
    let mut rng = Rng::seeded(seed);
    let starts: Vec<Vec<f64>> = (0..=restarts)
        .map(|r| {
            (0..n)
                .map(|i| {
                    if r == 0 {
                        0.5 * (lo[i] + hi[i])
                    } else {
                        lo[i] + rng.next() * (hi[i] - lo[i])
                    }
                })
                .collect()
        })
        .collect();
    let ends: Vec<PgdEnd> = starts
        .into_par_iter()
        .map(|x| pgd_in_box(ctx, lo, hi, x, steps))
        .collect();
    let mut best: Option<(f64, Vec<f64>)> = None;
    for end in ends {
        match end {
            Ok(x) => return Some(x),
            Err((m, x)) => {
                if best.as_ref().is_none_or(|b| m > b.0) {
                    best = Some((m, x));
                }
            }
        }
    }
    let (_, x0) = best.filter(|_| refine_evals > 0)?;
    let mut margin = |pts: &Array2<f64>| -> Result<Vec<f64>> {
        Ok(pts
            .outer_iter()
            .into_par_iter()
            .map(|r| ctx.margin(r.as_slice().unwrap_or(&r.to_vec())))
            .collect())
    };
    local_search(&mut margin, lo, hi, &x0, refine_evals, &mut rng, stop)
        .ok()
        .flatten()
}

/// A counterexample (`Ok`), or the best margin seen and its point (`Err`).
type PgdEnd = std::result::Result<Vec<f64>, (f64, Vec<f64>)>;

/// Signed-gradient ascent on the most violated atom inside `[lo, hi]` from
/// `x`, the step shrinking from a quarter of the box's width:
/// `x ← Π_box(x + α_t (hi − lo) ⊙ sign ∇ₓ h_k*(x))`. `Ok` with the first
/// point that meets every atom and input constraint (in `f64`), else `Err`
/// with the best margin seen and its point.
fn pgd_in_box(ctx: &MlpCtx<'_>, lo: &[f64], hi: &[f64], mut x: Vec<f64>, steps: usize) -> PgdEnd {
    let mut best = (f64::NEG_INFINITY, x.clone());
    for step in 0..=steps {
        let y = ctx.mlp.forward(&x);
        let Some((k, v)) = ctx
            .atoms
            .iter()
            .map(|a| value(a, &x, &y))
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(&b.1))
        else {
            return Err(best);
        };
        if v >= 0.0 && ctx.input_atoms.iter().all(|a| value(a, &x, &[]) >= 0.0) {
            return Ok(x);
        }
        if v > best.0 {
            best = (v, x.clone());
        }
        if step == steps {
            break;
        }
        let (_, g) = ctx.mlp.gradient(&x, &ctx.atoms[k].cy);
        let size = 0.25 * (1.0 - step as f64 / steps as f64).max(0.02);
        for i in 0..x.len() {
            let gi = g[i] + ctx.atoms[k].cx[i];
            x[i] = (x[i] + size * (hi[i] - lo[i]) * gi.signum()).clamp(lo[i], hi[i]);
        }
    }
    Err(best)
}

/// Branch and bound by ReLU splitting, for ReLU MLPs with many inputs.
///
/// Every subdomain fixes some ReLUs active (`z ≥ 0`) or inactive (`z ≤ 0`);
/// its bound is alpha-/beta-CROWN on the intermediate bounds of the whole
/// region (CROWN's, each unstable neuron's then tightened by alpha-CROWN,
/// [`Mlp::optimise_intermediate`]), clamped by the splits (sound: the subdomain is a subset), with the
/// split constraints as Lagrangian terms (beta-CROWN, Wang et al. 2021). The
/// neuron to split is chosen by filtered smart branching (De Palma et al.
/// 2021, "Improved Branch and Bound for Neural Network Verification via
/// Lagrangian Decomposition"): of the unstable neurons with the largest
/// BaBSR-style score (Bunel et al. 2020, "Branch and Bound for Piecewise
/// Linear Neural Network Verification": the coefficient in the bound times
/// the intercept of the upper relaxation), the one whose worse child bound,
/// with the parent's multipliers, is lowest. A subdomain with every ReLU split that the bound still
/// does not prune is split on its inputs, so the search is complete: it ends
/// with a counterexample (checked in `f64`; the caller re-checks it), with
/// every subdomain pruned ([`BabOutcome::Proven`]), with
/// [`BabOutcome::Unknown`] when a box could not be split further, or at the
/// deadline or cancel (checked between rounds of bounding).
pub fn relu_split(
    net: &Network,
    region: &Region,
    conj: &[LinearConstraint],
    deadline: &Deadline,
    cancel: &CancelToken,
) -> Result<(BabOutcome, BabStats)> {
    relu_split_with(net, region, conj, deadline, cancel, &RootBounds::new())
}

/// [`relu_split`], reusing the root bounds that `roots` holds for the same
/// input box and leaving its own there.
pub fn relu_split_with(
    net: &Network,
    region: &Region,
    conj: &[LinearConstraint],
    deadline: &Deadline,
    cancel: &CancelToken,
    roots: &RootBounds,
) -> Result<(BabOutcome, BabStats)> {
    let mlp = Mlp::from_network(net).ok_or_else(|| {
        crate::Error::InvalidArgument(
            "ReLU splitting needs a ReLU MLP: element-wise affine inputs, then dense layers with a ReLU between each two".into(),
        )
    })?;
    search_mlp(
        &mlp,
        region,
        conj,
        deadline,
        cancel,
        Mode::Relu,
        Some(roots),
    )
}

/// [`input_split`] on a ReLU MLP: bounds from [`Mlp`] (CROWN intermediate
/// bounds reusing the parent box's, alpha-CROWN on the atoms), many boxes per
/// round, a falsifier before the search, and ReLU splits once a box has few
/// unstable ReLUs left.
fn input_split_mlp(
    mlp: &Mlp,
    region: &Region,
    conj: &[LinearConstraint],
    deadline: &Deadline,
    cancel: &CancelToken,
    relu_split_below: usize,
) -> Result<(BabOutcome, BabStats)> {
    search_mlp(
        mlp,
        region,
        conj,
        deadline,
        cancel,
        Mode::Input { relu_split_below },
        None,
    )
}

fn search_mlp(
    mlp: &Mlp,
    region: &Region,
    conj: &[LinearConstraint],
    deadline: &Deadline,
    cancel: &CancelToken,
    mode: Mode,
    roots: Option<&RootBounds>,
) -> Result<(BabOutcome, BabStats)> {
    let n_in = mlp.n_in();
    let n_out = mlp.n_out();
    let input_atoms = atoms(&region.input_constraints, n_in, n_out);
    let atoms = atoms(conj, n_in, n_out);
    let spec = output_atoms(&atoms);
    let mut stats = BabStats::default();
    let (lo, hi) = (&region.input.lower, &region.input.upper);
    if lo.len() != n_in
        || (0..n_in).any(|i| !(lo[i].is_finite() && hi[i].is_finite() && lo[i] <= hi[i]))
    {
        return Err(crate::Error::InvalidArgument(
            "branch and bound needs a finite, non-empty input box".into(),
        ));
    }
    let widths: Vec<f64> = lo.iter().zip(hi).map(|(l, u)| u - l).collect();
    let (xl, xu) = mlp.transform_box(lo, hi);
    let mags = mlp.mags(&xl, &xu);
    let ctx = MlpCtx {
        mlp,
        atoms: &atoms,
        spec: &spec,
        input_atoms: &input_atoms,
        mags: &mags,
        widths: &widths,
        mode,
    };
    if cancel.is_cancelled() {
        return Ok((BabOutcome::Cancelled, stats));
    }
    if let Some(x) = mlp_attack(&ctx, region, 16, 30, 0, 0, &|| false) {
        return Ok((BabOutcome::Counterexample(x), stats));
    }
    // ReLU splitting keeps the root's intermediate bounds in every domain,
    // so they are worth optimising once.
    let cached = roots.and_then(|r| r.get(lo, hi));
    let root_pre = if let Some((pre, unstable_crown)) = cached {
        stats.root_unstable = pre.unstable();
        stats.root_unstable_crown = unstable_crown;
        Some(pre)
    } else if mode == Mode::Relu {
        let t = Instant::now();
        let mut pre = mlp.intermediate(&xl, &xu, &mags, None, None);
        stats.root_unstable_crown = pre.unstable();
        mlp.optimise_intermediate(&xl, &xu, &mags, &mut pre, INTERMEDIATE_ITERS, &|| {
            deadline.should_stop(cancel)
        });
        stats.root_unstable = pre.unstable();
        stats.root_s = t.elapsed().as_secs_f64();
        stats.bounds_s += stats.root_s;
        let pre = Arc::new(pre);
        // Bounds cut short by the deadline are sound but not worth keeping.
        if let Some(r) = roots.filter(|_| !deadline.should_stop(cancel)) {
            r.put(lo, hi, pre.clone(), stats.root_unstable_crown);
        }
        Some(pre)
    } else {
        None
    };
    let mut stack = vec![Domain {
        lo: lo.clone(),
        hi: hi.clone(),
        splits: None,
        depth: 0,
        weight: 1.0,
        exact: root_pre.is_some(),
        pre: root_pre,
        duals: None,
    }];
    let mut undecided = false;
    let mut round = 0usize;
    while !stack.is_empty() {
        if cancel.is_cancelled() {
            return Ok((BabOutcome::Cancelled, stats));
        }
        if deadline.expired() {
            return Ok((BabOutcome::Timeout, stats));
        }
        round += 1;
        if round % 64 == 0 {
            // A longer attack now and then, from fresh random points, its
            // refinement growing with the search so that it keeps a fixed
            // share of the time.
            let refine = REFINE_EVALS_PER_ROUND * round;
            if let Some(x) = mlp_attack(&ctx, region, 32, 30, round as u64, refine, &|| {
                deadline.should_stop(cancel)
            }) {
                return Ok((BabOutcome::Counterexample(x), stats));
            }
        }
        // The root alone first: its intermediate bounds are the costliest.
        let take = if round == 1 {
            1
        } else {
            stack.len().min(MLP_BATCH)
        };
        let batch = stack.split_off(stack.len() - take);
        let tb = Instant::now();
        let results: Vec<(MlpVisit, usize, f64)> = batch
            .into_par_iter()
            .map(|node| {
                let (depth, weight) = (node.depth, node.weight);
                (ctx.visit(node), depth, weight)
            })
            .collect();
        stats.bounds_s += tb.elapsed().as_secs_f64();
        for (visit, depth, weight) in results.into_iter().rev() {
            stats.boxes += 1;
            match visit {
                MlpVisit::Pruned => {
                    stats.pruned += 1;
                    stats.closed_share += weight;
                }
                MlpVisit::Found(x) => return Ok((BabOutcome::Counterexample(x), stats)),
                MlpVisit::Undecided => undecided = true,
                MlpVisit::Split(left, right) => {
                    stats.max_depth = stats.max_depth.max(depth + 1);
                    stack.push(right);
                    stack.push(left);
                }
            }
        }
    }
    Ok((
        if undecided {
            BabOutcome::Unknown
        } else {
            BabOutcome::Proven
        },
        stats,
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bounds::mlp::tests::random_mlp;

    fn margin_at_least(t: f64) -> Vec<LinearConstraint> {
        vec![LinearConstraint {
            terms: vec![(Var::Y(0), 1.0), (Var::Y(1), -1.0)],
            cmp: Cmp::Ge,
            rhs: t,
        }]
    }

    fn region(lo: Vec<f64>, hi: Vec<f64>) -> Region {
        Region {
            input: InputBox {
                lower: lo,
                upper: hi,
            },
            input_constraints: vec![],
            output: vec![],
        }
    }

    /// The largest `y_0 − y_1` on a fine grid of the 2-D box.
    fn grid_max(net: &Network, r: &Region) -> f64 {
        let m = Mlp::from_network(net).unwrap();
        let (lo, hi) = (&r.input.lower, &r.input.upper);
        let n = 300;
        let mut best = f64::NEG_INFINITY;
        for i in 0..=n {
            for j in 0..=n {
                let x = [
                    lo[0] + (hi[0] - lo[0]) * i as f64 / n as f64,
                    lo[1] + (hi[1] - lo[1]) * j as f64 / n as f64,
                ];
                let y = m.forward(&x);
                best = best.max(y[0] - y[1]);
            }
        }
        best
    }

    type Search = fn(
        &Network,
        &Region,
        &[LinearConstraint],
        &Deadline,
        &CancelToken,
    ) -> Result<(BabOutcome, BabStats)>;

    #[test]
    fn input_and_relu_splitting_agree_with_a_grid() {
        let searches: [(&str, Search); 2] = [("input", input_split), ("relu", relu_split)];
        for seed in 0..8 {
            let net = random_mlp(seed, 2, &[8, 8], 2);
            let r = region(vec![-0.5, -0.5], vec![0.5, 0.5]);
            let best = grid_max(&net, &r);
            // Just below the grid maximum a counterexample exists; well above
            // it (the grid's spacing times a crude Lipschitz constant) none does.
            for (t, sat) in [(best - 1e-3, true), (best + 0.5, false)] {
                for (name, search) in searches {
                    let deadline = Deadline::after(Some(Duration::from_secs(20)));
                    let conj = margin_at_least(t);
                    let (out, _) = search(&net, &r, &conj, &deadline, &CancelToken::new()).unwrap();
                    match (&out, sat) {
                        (BabOutcome::Counterexample(x), true) => {
                            let y = Mlp::from_network(&net).unwrap().forward(x);
                            assert!(y[0] - y[1] >= t && r.input.contains(x, 0.0));
                        }
                        (BabOutcome::Proven, false) => {}
                        _ => panic!("{name} seed {seed} t {t}: {out:?}, expected sat = {sat}"),
                    }
                }
            }
        }
    }

    #[test]
    fn relu_splitting_never_proves_a_sampled_counterexample_away() {
        for seed in 0..5 {
            let net = random_mlp(seed + 50, 6, &[16, 16], 2);
            let m = Mlp::from_network(&net).unwrap();
            let r = region(vec![-0.3; 6], vec![0.3; 6]);
            // A point's margin is reachable, so the property with that threshold is sat.
            let x0 = vec![0.1, -0.2, 0.3, 0.0, -0.1, 0.25];
            let y = m.forward(&x0);
            let conj = margin_at_least(y[0] - y[1]);
            let deadline = Deadline::after(Some(Duration::from_secs(20)));
            let (out, _) = relu_split(&net, &r, &conj, &deadline, &CancelToken::new()).unwrap();
            assert!(
                matches!(out, BabOutcome::Counterexample(_) | BabOutcome::Timeout),
                "seed {seed}: {out:?}"
            );
        }
    }

    #[test]
    fn relu_splitting_reuses_the_root_bounds_of_the_same_box() {
        let net = random_mlp(11, 6, &[16, 16, 16], 2);
        let r = region(vec![-0.3; 6], vec![0.3; 6]);
        let roots = RootBounds::new();
        let d = Deadline::after(Some(Duration::from_secs(20)));
        let c = CancelToken::new();
        let y = Mlp::from_network(&net).unwrap().forward(&[0.0; 6]);
        // Two conjunctions far above any reachable margin (unsat).
        let (a, sa) = relu_split_with(&net, &r, &margin_at_least(1e3), &d, &c, &roots).unwrap();
        let (b, sb) = relu_split_with(&net, &r, &margin_at_least(5e2), &d, &c, &roots).unwrap();
        assert_eq!((a, b), (BabOutcome::Proven, BabOutcome::Proven));
        assert!(sa.root_s > 0.0);
        let (_, fresh) = relu_split(&net, &r, &margin_at_least(y[0] - y[1] + 1e3), &d, &c).unwrap();
        assert_eq!(sa.root_unstable, fresh.root_unstable);
        assert!(sa.root_unstable <= sa.root_unstable_crown);
        assert_eq!(
            (sb.root_unstable, sb.root_unstable_crown, sb.root_s),
            (sa.root_unstable, sa.root_unstable_crown, 0.0)
        );
        // Another box computes its own.
        let other = region(vec![-0.2; 6], vec![0.3; 6]);
        let (_, so) = relu_split_with(&net, &other, &margin_at_least(1e3), &d, &c, &roots).unwrap();
        assert!(so.root_s > 0.0);
    }

    #[test]
    fn mlp_search_honours_the_deadline_and_cancel() {
        let net = random_mlp(7, 5, &[40, 40, 40, 40], 2);
        let r = region(vec![-1.0; 5], vec![1.0; 5]);
        let m = Mlp::from_network(&net).unwrap();
        let y = m.forward(&[0.0; 5]);
        // Slightly above a point's margin: hard to decide either way.
        let conj = margin_at_least(y[0] - y[1] + 1e-4);
        for search in [input_split as Search, relu_split as Search] {
            let t = Instant::now();
            let deadline = Deadline::after(Some(Duration::from_millis(300)));
            let (out, _) = search(&net, &r, &conj, &deadline, &CancelToken::new()).unwrap();
            assert!(t.elapsed() < Duration::from_millis(600), "{out:?}");
            let cancel = CancelToken::new();
            cancel.cancel();
            let (out, _) = search(&net, &r, &conj, &Deadline::never(), &cancel).unwrap();
            assert_eq!(out, BabOutcome::Cancelled);
        }
    }

    /// ReLU splitting on VNN-COMP 2021 MNIST instances (run with `--ignored`
    /// when the shared data is present); prints each case's outcome.
    #[test]
    #[ignore]
    fn relu_split_on_mnist_fc() {
        let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/data/vnncomp2021_mnist_fc");
        for (onnx, prop) in [
            ("mnist-net_256x2.onnx", "prop_0_0.03.vnnlib"),
            ("mnist-net_256x2.onnx", "prop_1_0.05.vnnlib"),
            ("mnist-net_256x4.onnx", "prop_0_0.03.vnnlib"),
            ("mnist-net_256x4.onnx", "prop_2_0.03.vnnlib"),
        ] {
            let net = Network::from_onnx(d.join("onnx").join(onnx)).unwrap();
            let p = crate::property::Property::from_vnnlib(d.join("vnnlib").join(prop)).unwrap();
            let t = Instant::now();
            let deadline = Deadline::after(Some(Duration::from_secs(60)));
            let mut outcomes = Vec::new();
            for r in &p.regions {
                for conj in &r.output {
                    let (out, st) =
                        relu_split(&net, r, conj, &deadline, &CancelToken::new()).unwrap();
                    let sat = matches!(out, BabOutcome::Counterexample(_));
                    outcomes.push((
                        if sat {
                            "sat".to_string()
                        } else {
                            format!("{out:?}")
                        },
                        st.boxes,
                    ));
                    if sat {
                        break;
                    }
                }
            }
            eprintln!(
                "{onnx} {prop}: {:.2} s {outcomes:?}",
                t.elapsed().as_secs_f64()
            );
        }
    }

    #[test]
    fn relu_split_refuses_non_mlps_with_an_error() {
        let net = random_mlp(1, 2, &[4], 2);
        let mut layers: Vec<_> = net
            .nodes()
            .iter()
            .cloned()
            .zip(net.layers().iter().cloned())
            .collect();
        layers.push((
            crate::model::Node {
                name: "s".into(),
                op_types: vec!["Sigmoid".into()],
                in_shape: vec![1, 2],
                out_shape: vec![1, 2],
            },
            crate::model::Layer::Sigmoid,
        ));
        let net = Network::from_layers("s", vec![1, 2], layers).unwrap();
        let r = region(vec![0.0; 2], vec![1.0; 2]);
        let d = Deadline::never();
        assert!(relu_split(&net, &r, &margin_at_least(0.0), &d, &CancelToken::new()).is_err());
    }
}
