//! The full-network minimal mask (SMUG, Appendix A, Eq. 6): the fewest cells
//! `M` whose masked input still gets the predicted class,
//!
//! `min Σ M  s.t.  y_label(M ⊙ X) ≥ y_l(M ⊙ X) + δ  ∀ l ≠ label`,
//!
//! with the whole network encoded exactly (ReLU as a construct, bounds from
//! CROWN over the box spanned by `X` and the fill value). The strict `>` of
//! Eq. 6 is `≥ … + δ`. The answer is anytime: a greedy pass (drop cells,
//! least important first, while the class stays) gives a mask at once, the
//! solver is then asked for a strictly smaller one (`Σ M ≤ greedy − 1`), so
//! "infeasible" proves the greedy mask optimal; at a timeout the best mask
//! found and the solver's proven lower bound are reported, never an empty
//! mask.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use ndarray::Array2;
use serde::Serialize;

use super::mask::MaskGrid;
use crate::bounds::crown;
use crate::encode::full_network::network;
use crate::encode::{Cmp, LinExpr, Objective as Goal, Problem, Sense, Var, VarKind};
use crate::model::{Network, Objective, Reference};
use crate::property::InputBox;
use crate::solve::portfolio::race;
use crate::solve::{Backend, CancelToken, SolveOptions, SolveResult, Status};
use crate::{Error, Result};

/// Default margin of the kept class over every other logit: the networks are
/// float32, and a mask at a smaller margin may flip under float32 inference.
pub const DEFAULT_CLASS_MARGIN: f64 = 1e-3;

/// Limits and constants of a minimal-mask search.
#[derive(Clone, Debug)]
pub struct MaskOptions {
    /// The margin standing for Eq. 6's strict inequality.
    pub delta: f64,
    /// Value of a dropped element.
    pub fill: f64,
    /// Wall-clock limit of the solver phase.
    pub time_limit: Option<Duration>,
    /// Seed handed to the solvers.
    pub seed: u64,
    /// Solver threads.
    pub threads: usize,
}

impl Default for MaskOptions {
    fn default() -> Self {
        MaskOptions {
            delta: DEFAULT_CLASS_MARGIN,
            fill: 0.0,
            time_limit: None,
            seed: 0,
            threads: 1,
        }
    }
}

/// Re-check of a mask with tract on the masked input.
#[derive(Clone, Debug, Serialize)]
pub struct ClassCheck {
    /// tract's argmax on the masked input is the label.
    pub held: bool,
    /// `y_label − max_{l ≠ label} y_l` under tract.
    pub margin: f64,
    /// The comparison is exact on tract's f32 outputs (no tolerance).
    pub tolerance: f64,
}

/// The answer of a minimal-mask search.
#[derive(Clone, Debug, Serialize)]
pub struct MinimalMask {
    /// `optimal` (proven), `feasible`/`timeout` (best found, with `bound`), …
    pub status: Status,
    /// Kept cells.
    pub keep: Vec<bool>,
    /// One 0/1 entry per input element, flattened.
    pub mask: Vec<u8>,
    /// Number of kept cells.
    pub mask_size: usize,
    /// Proven lower bound on the minimal size.
    pub bound: Option<f64>,
    /// Size of the greedy mask the solver started from.
    pub greedy_size: usize,
    /// Which part found the reported mask (`greedy` or a backend).
    pub found_by: String,
    /// Wall time of the whole search.
    pub wall_s: f64,
    /// tract's verdict on the masked input.
    pub recheck: ClassCheck,
    /// Every backend's record.
    pub records: Vec<SolveResult>,
}

/// The network from activation `base` on (the network itself for `base = 0`).
pub fn tail(net: &Network, base: usize) -> Result<Cow<'_, Network>> {
    if base == 0 {
        return Ok(Cow::Borrowed(net));
    }
    let shape = net.nodes()[base - 1].out_shape.clone();
    let layers = net.nodes()[base..]
        .iter()
        .cloned()
        .zip(net.layers()[base..].iter().cloned())
        .collect();
    Ok(Cow::Owned(Network::from_layers(
        format!("{}[{base}..]", net.name()),
        shape,
        layers,
    )?))
}

fn margin(y: &[f64], label: usize) -> f64 {
    let other = y
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != label)
        .map(|(_, v)| *v)
        .fold(f64::NEG_INFINITY, f64::max);
    y[label] - other
}

fn row(v: &[f64]) -> Result<Array2<f64>> {
    Array2::from_shape_vec((1, v.len()), v.to_vec()).map_err(|e| Error::Shape(e.to_string()))
}

/// The greedy mask: cells ordered by `Σ_e |∂margin/∂v_e · (v_e − fill)|`
/// (least important first) are dropped one by one while the margin stays
/// ≥ δ; passes repeat until none drops, so no single kept cell can go.
pub fn greedy_mask(
    tail: &Network,
    grid: &MaskGrid,
    v: &[f64],
    label: usize,
    opts: &MaskOptions,
) -> Result<Vec<bool>> {
    let g = tail.gradient(
        row(v)?.view(),
        &Objective::Margin {
            class: label,
            other: None,
        },
        0,
    )?;
    let mut score = vec![0.0; grid.n_cells];
    for (e, (&gv, &x)) in g.grad.iter().zip(v).enumerate() {
        score[grid.cell_of[e]] += (gv * (x - opts.fill)).abs();
    }
    let mut order: Vec<usize> = (0..grid.n_cells).collect();
    order.sort_by(|&a, &b| score[a].total_cmp(&score[b]).then(a.cmp(&b)));
    let mut keep = vec![true; grid.n_cells];
    let holds = |keep: &[bool]| -> Result<bool> {
        let y = tail.forward(row(&grid.apply(v, keep, opts.fill))?.view())?;
        Ok(margin(y.as_slice().unwrap_or(&[]), label) >= opts.delta)
    };
    if !holds(&keep)? {
        return Err(Error::InvalidArgument(format!(
            "the network does not predict class {label} with a margin of {} on the unmasked input",
            opts.delta
        )));
    }
    for _ in 0..4 {
        let mut changed = false;
        for &j in &order {
            if keep[j] {
                keep[j] = false;
                if holds(&keep)? {
                    changed = true;
                } else {
                    keep[j] = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    Ok(keep)
}

/// Eq. 6 as a [`Problem`]; `mask_vars[q]` is cell `cells[q]`. With
/// `at_most = Some(n)` the problem asks for a mask of at most `n` cells.
pub struct FullMaskProblem {
    /// The problem.
    pub problem: Problem,
    /// Cells with a variable (those holding an element that differs from the fill).
    pub cells: Vec<usize>,
    /// Their binary variables.
    pub mask_vars: Vec<Var>,
}

/// Builds Eq. 6 on `tail` (the network from the masked activation on).
pub fn full_mask_problem(
    tail: &Network,
    grid: &MaskGrid,
    v: &[f64],
    label: usize,
    opts: &MaskOptions,
    at_most: Option<usize>,
) -> Result<FullMaskProblem> {
    let fill = opts.fill;
    let bx = InputBox {
        lower: v.iter().map(|&x| x.min(fill)).collect(),
        upper: v.iter().map(|&x| x.max(fill)).collect(),
    };
    let bounds = crown(tail, &bx)?;
    let mut p = network(tail, &bounds, "smug_full_network")?;
    p.name = "smug_full_network".into();
    let mut var_of = vec![None; grid.n_cells];
    let mut cells = Vec::new();
    let mut mask_vars = Vec::new();
    for (e, &x) in v.iter().enumerate() {
        if x == fill {
            continue;
        }
        let j = grid.cell_of[e];
        let m = *var_of[j].get_or_insert_with(|| {
            let m = p.add_var(format!("mask_{j}"), VarKind::Binary, 0.0, 1.0);
            cells.push(j);
            mask_vars.push(m);
            m
        });
        // x_e = fill + (X_e − fill) M_j
        let mut d = LinExpr::var(p.inputs[e]);
        d.add_scaled(&LinExpr::var(m), -(x - fill));
        p.add_constraint(format!("masked_{e}"), d, Cmp::Eq, fill);
    }
    let out = p.outputs.clone();
    let ob = bounds.output();
    for l in 0..out.len() {
        if l == label || ob.lower[label] - ob.upper[l] >= opts.delta {
            continue;
        }
        let mut d = out[label].clone();
        d.add_scaled(&out[l], -1.0);
        p.add_constraint(format!("keep_{label}_over_{l}"), d, Cmp::Ge, opts.delta);
    }
    let mut total = LinExpr::default();
    for &m in &mask_vars {
        total.add_scaled(&LinExpr::var(m), 1.0);
    }
    if let Some(n) = at_most {
        p.add_constraint("at_most", total.clone(), Cmp::Le, n as f64);
    }
    p.objective = Some(Goal {
        sense: Sense::Minimize,
        expr: total,
    });
    Ok(FullMaskProblem {
        problem: p,
        cells,
        mask_vars,
    })
}

/// tract's check of a mask.
pub fn recheck_class(
    reference: &Reference,
    net: &Network,
    grid: &MaskGrid,
    x: &[f64],
    keep: &[bool],
    label: usize,
    fill: f64,
) -> Result<ClassCheck> {
    let masked_input: Vec<f64> = if grid.base == 0 {
        grid.apply(x, keep, fill)
    } else {
        // Text: a dropped word's embedding row is the fill value, which no
        // token id produces; tract cannot run that input, so the IR's own
        // forward pass from the embeddings on is the check.
        let v = net.forward_range(0, grid.base, row(x)?.view())?;
        let masked = grid.apply(v.as_slice().unwrap_or(&[]), keep, fill);
        let y = net.forward_range(grid.base, net.len(), row(&masked)?.view())?;
        let m = margin(y.as_slice().unwrap_or(&[]), label);
        return Ok(ClassCheck {
            held: m > 0.0,
            margin: m,
            tolerance: 0.0,
        });
    };
    let x32: Vec<f32> = masked_input.iter().map(|&v| v as f32).collect();
    let x32 =
        Array2::from_shape_vec((1, x32.len()), x32).map_err(|e| Error::Shape(e.to_string()))?;
    let y: Vec<f64> = reference
        .run(x32.view())?
        .iter()
        .map(|&v| v as f64)
        .collect();
    let m = margin(&y, label);
    Ok(ClassCheck {
        held: m > 0.0,
        margin: m,
        tolerance: 0.0,
    })
}

/// The network a mask is searched on: its IR, tract's plan for the re-check,
/// and the mask's cells.
#[derive(Clone, Copy)]
pub struct Masked<'a> {
    /// The network.
    pub net: &'a Network,
    /// tract's plan of the same ONNX file (batch 1).
    pub reference: &'a Reference,
    /// The mask's cells.
    pub grid: &'a MaskGrid,
}

/// Searches the minimal mask of `x` for `label` with `backends` (raced when
/// there are several).
pub fn minimal_mask(
    on: Masked<'_>,
    x: &[f64],
    label: usize,
    backends: &[&dyn Backend],
    opts: &MaskOptions,
    cancel: &CancelToken,
) -> Result<MinimalMask> {
    let Masked {
        net,
        reference,
        grid,
    } = on;
    let start = Instant::now();
    if x.len() != net.input_len() {
        return Err(Error::Shape(format!(
            "the input has {} values, the network takes {}",
            x.len(),
            net.input_len()
        )));
    }
    if label >= net.output_len() {
        return Err(Error::InvalidArgument(format!(
            "label {label} is not an output of the network ({} outputs)",
            net.output_len()
        )));
    }
    let t = tail(net, grid.base)?;
    t.exact_encoding().map_err(|why| {
        Error::InvalidArgument(format!(
            "the full-network mask needs an exact encoding: {why}"
        ))
    })?;
    let v = net
        .forward_range(0, grid.base, row(x)?.view())?
        .into_raw_vec_and_offset()
        .0;
    let greedy = greedy_mask(&t, grid, &v, label, opts)?;
    let greedy_size = greedy.iter().filter(|&&k| k).count();
    let mut best = greedy.clone();
    let mut found_by = "greedy".to_string();
    let mut status = Status::Feasible;
    let mut bound: Option<f64> = None;
    let mut records = Vec::new();
    if greedy_size == 0 {
        status = Status::Optimal;
        bound = Some(0.0);
    } else if !backends.is_empty() {
        let fm = full_mask_problem(&t, grid, &v, label, opts, Some(greedy_size - 1))?;
        let so = SolveOptions {
            time_limit: opts.time_limit.map(|l| l.saturating_sub(start.elapsed())),
            seed: opts.seed,
            threads: opts.threads,
        };
        let raced = if backends.len() == 1 {
            let r = backends[0].solve(&fm.problem, &so, cancel)?;
            crate::solve::portfolio::Race {
                winner: Some(0),
                records: vec![r],
            }
        } else {
            race(&fm.problem, backends, &so, cancel)?
        };
        // The best proven bound over all records (each is a lower bound on
        // the size of a mask smaller than the greedy one, if any exists).
        let proven_infeasible = raced.records.iter().any(|r| r.status == Status::Infeasible);
        for r in &raced.records {
            if let Some(b) = r.bound {
                let b = (b - 1e-6).ceil().max(0.0);
                bound = Some(bound.map_or(b, |c: f64| c.max(b)));
            }
        }
        // A smaller mask from any record, kept only when tract agrees.
        let mut candidates: Vec<(usize, Vec<bool>, String)> = Vec::new();
        for r in &raced.records {
            if let Some(a) = &r.assignment {
                let mut keep = vec![false; grid.n_cells];
                for (q, &m) in fm.mask_vars.iter().enumerate() {
                    keep[fm.cells[q]] = a.get(m.0).is_some_and(|&v| v > 0.5);
                }
                let size = keep.iter().filter(|&&k| k).count();
                if size < greedy_size
                    && recheck_class(reference, net, grid, x, &keep, label, opts.fill)?.held
                {
                    candidates.push((size, keep, r.backend.to_string()));
                }
            }
        }
        candidates.sort_by_key(|c| c.0);
        if let Some((_, keep, by)) = candidates.into_iter().next() {
            best = keep;
            found_by = by;
        }
        let size = best.iter().filter(|&&k| k).count() as f64;
        if proven_infeasible {
            // No mask of at most greedy − 1 cells exists.
            bound = Some(greedy_size as f64);
        }
        bound = bound.map(|b| b.min(size));
        if raced
            .answer()
            .is_some_and(|r| r.status == Status::Optimal && found_by == r.backend)
        {
            bound = Some(size);
        }
        let out_of_time = opts.time_limit.is_some_and(|l| start.elapsed() >= l);
        status = if bound.is_some_and(|b| b >= size) {
            Status::Optimal
        } else if out_of_time
            || raced
                .records
                .iter()
                .any(|r| matches!(r.status, Status::Timeout))
        {
            Status::Timeout
        } else if cancel.is_cancelled() {
            Status::Cancelled
        } else {
            Status::Feasible
        };
        records = raced.records;
    }
    let recheck = recheck_class(reference, net, grid, x, &best, label, opts.fill)?;
    let mask_size = best.iter().filter(|&&k| k).count();
    Ok(MinimalMask {
        status,
        mask: grid.input_mask(&best),
        keep: best,
        mask_size,
        bound,
        greedy_size,
        found_by,
        wall_s: start.elapsed().as_secs_f64(),
        recheck,
        records,
    })
}
