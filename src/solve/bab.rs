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

use std::time::Instant;

use ndarray::Array2;
use rayon::prelude::*;
use serde::Serialize;

use super::{CancelToken, Deadline};
use crate::bounds::{bound_linear, crown_intermediate};
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

/// Searches `region` for an input whose output satisfies every atom of `conj`.
pub fn input_split(
    net: &Network,
    region: &Region,
    conj: &[LinearConstraint],
    deadline: &Deadline,
    cancel: &CancelToken,
) -> Result<(BabOutcome, BabStats)> {
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
    let mut stack: Vec<(InputBox, usize)> = vec![(region.input.clone(), 0)];
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
        let batch: Vec<(InputBox, usize)> = stack.split_off(stack.len() - take);
        let results: Vec<Result<(Visit, f64)>> = batch
            .into_par_iter()
            .map(|(bx, depth)| ctx.visit(bx, depth))
            .collect();
        for r in results.into_iter().rev() {
            let (visit, secs) = r?;
            stats.boxes += 1;
            stats.bounds_s += secs;
            match visit {
                Visit::Pruned => stats.pruned += 1,
                Visit::Found(x) => return Ok((BabOutcome::Counterexample(x), stats)),
                Visit::Undecided => undecided = true,
                Visit::Split(left, right, depth) => {
                    stats.max_depth = stats.max_depth.max(depth);
                    stack.push((right, depth));
                    stack.push((left, depth));
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
