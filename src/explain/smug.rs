//! SMUG: symbolic minimal masks over the first layer's neurons (Chockler et
//! al. style minimal explanations made tractable with gradients; paper:
//! "SMUG", `smug-symbolic-minimal-masks`).
//!
//! 1. Integrated Gradients of `softmax[label]` with respect to the first
//!    affine layer's outputs `o` (Eq. 1), from the zero activation or as the
//!    average of the black- and white-image activations; neurons ranked by IG
//!    (or activation, or gradient); `D^k` = the `k` best with a positive score.
//! 2. The minimal mask (Eq. 2–3): binary `M` per cell,
//!    `min Σ M  s.t.  o_i(M ⊙ X) ≥ γ · o_i(X) + δ  ∀ i ∈ D^k`. Between the
//!    masked activation and `o` every layer is linear, so
//!    `o_i(M) = d_i + Σ_j G_ij M_j` with `G_ij = Σ_{e ∈ cell j} A_ie (X_e − fill)`:
//!    a 0-1 covering program over the cells in the chosen neurons' receptive
//!    fields only. The paper's strict `>` is `≥ … + δ` (δ = [`DEFAULT_DELTA`]).
//! 3. Saliency (Eq. 4): `s_e = Σ_{p ∈ D^k} α(o_p) 1[e ∈ receptive(o_p)]` for
//!    kept elements; SMUG_base keeps every cell of the receptive fields.

use ndarray::Array2;
use serde::Serialize;

use super::mask::MaskGrid;
use crate::attrib::{integrated_gradients_at, Rule};
use crate::encode::{Cmp, LinExpr, Objective as Goal, Problem, Sense, VarKind};
use crate::model::{Layer, Network, Objective};
use crate::{Error, Result};

/// The margin that stands for the paper's strict inequality.
pub const DEFAULT_DELTA: f64 = 1e-6;

/// Baseline of the first-layer IG.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    /// `o' = 0` (the paper's choice for ReLU networks, §5.3).
    Zero,
    /// The average of the IGs from the first-layer outputs of a black input
    /// (every element `black`) and of a white one (`white`).
    BlackWhite {
        /// Value of a black element (0 for pixels in [0, 1]).
        black: f64,
        /// Value of a white element (1 for pixels in [0, 1]).
        white: f64,
    },
}

/// How first-layer neurons are ranked for `D^k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ranking {
    /// Integrated Gradients (the paper).
    Ig,
    /// The activation `o_i(X)`.
    Activation,
    /// `∂ softmax[label] / ∂ o_i` at `X`.
    Gradient,
}

/// First-layer quantities of one input.
#[derive(Clone, Debug, Serialize)]
pub struct FirstLayer {
    /// Index of the first affine (Dense/Conv) layer; its output is `o`.
    pub layer: usize,
    /// The masked activation's values at `X` (the input, or the embeddings).
    pub base_values: Vec<f64>,
    /// `o(X)`.
    pub activation: Vec<f64>,
    /// `∂ softmax[label] / ∂ o` at `X`.
    pub gradient: Vec<f64>,
    /// `IG(o)` (Eq. 1).
    pub ig: Vec<f64>,
    /// Completeness residual of the IG map(s) (the worse of two for black/white).
    pub ig_residual: f64,
}

/// Computes `o(X)`, its gradient and its IG for `label`.
pub fn first_layer(
    net: &Network,
    grid: &MaskGrid,
    x: &[f64],
    label: usize,
    baseline: Baseline,
    steps: usize,
) -> Result<FirstLayer> {
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
    let layer = first_affine_after(net, grid.base)?;
    let row = |v: &[f64]| Array2::from_shape_vec((1, v.len()), v.to_vec());
    let shape_err = |e: ndarray::ShapeError| Error::Shape(e.to_string());
    let base_values = net
        .forward_range(0, grid.base, row(x).map_err(shape_err)?.view())?
        .into_raw_vec_and_offset()
        .0;
    let act = |b: &[f64]| -> Result<Vec<f64>> {
        Ok(net
            .forward_range(grid.base, layer + 1, row(b).map_err(shape_err)?.view())?
            .into_raw_vec_and_offset()
            .0)
    };
    let activation = act(&base_values)?;
    let objective = Objective::Softmax(label);
    let g = net.gradient_from(
        layer + 1,
        row(&activation).map_err(shape_err)?.view(),
        &objective,
    )?;
    let gradient = g.grad.into_raw_vec_and_offset().0;
    let ig_from = |b: &[f64]| {
        integrated_gradients_at(
            net,
            layer + 1,
            &activation,
            b,
            &objective,
            steps,
            Rule::Midpoint,
        )
    };
    let (ig, ig_residual) = match baseline {
        Baseline::Zero => {
            let m = ig_from(&vec![0.0; activation.len()])?;
            (m.attributions, m.completeness_residual)
        }
        Baseline::BlackWhite { black, white } => {
            if grid.base != 0 {
                return Err(Error::InvalidArgument(
                    "black/white baselines are defined for images; use the zero baseline for text"
                        .into(),
                ));
            }
            let b = ig_from(&act(&vec![black; net.input_len()])?)?;
            let w = ig_from(&act(&vec![white; net.input_len()])?)?;
            (
                b.attributions
                    .iter()
                    .zip(&w.attributions)
                    .map(|(p, q)| 0.5 * (p + q))
                    .collect(),
                b.completeness_residual.max(w.completeness_residual),
            )
        }
    };
    Ok(FirstLayer {
        layer,
        base_values,
        activation,
        gradient,
        ig,
        ig_residual,
    })
}

/// The first Dense/Conv layer at or after activation `base`, checking that
/// every layer between them is linear (so that `o` is affine in the mask).
fn first_affine_after(net: &Network, base: usize) -> Result<usize> {
    for (i, l) in net.layers().iter().enumerate().skip(base) {
        match l {
            Layer::Dense(_) | Layer::Conv(_) => return Ok(i),
            l if l.is_linear() => {}
            l => {
                return Err(Error::InvalidArgument(format!(
                    "layer {i} ({}) comes before the first Dense/Conv layer and is not linear: SMUG masks need an affine first layer",
                    l.kind()
                )))
            }
        }
    }
    Err(Error::InvalidArgument(
        "the network has no Dense or Conv layer to take as its first layer".into(),
    ))
}

/// `D^k`: the `k` neurons with the highest positive score, best first.
/// Only neurons with a positive activation `o_i(X) > 0` qualify: for the
/// others "stay above γ · o_i" cannot be met by any mask when γ < 1 (the full
/// input gives `o_i < γ o_i + δ`), and (from a non-zero baseline) IG can
/// score them positively.
pub fn top_k(fl: &FirstLayer, ranking: Ranking, k: usize) -> Vec<usize> {
    let s = scores(fl, ranking);
    let mut idx: Vec<usize> = (0..s.len())
        .filter(|&i| s[i] > 0.0 && fl.activation[i] > 0.0)
        .collect();
    idx.sort_by(|&a, &b| s[b].total_cmp(&s[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

fn scores(fl: &FirstLayer, ranking: Ranking) -> &[f64] {
    match ranking {
        Ranking::Ig => &fl.ig,
        Ranking::Activation => &fl.activation,
        Ranking::Gradient => &fl.gradient,
    }
}

/// The rows `A_i` of the affine map from the masked activation to `o`, for
/// the given neurons, and the offsets `c_i`: `o_i = A_i · v + c_i`.
pub fn affine_rows(
    net: &Network,
    base: usize,
    layer: usize,
    neurons: &[usize],
) -> Result<(Array2<f64>, Vec<f64>)> {
    let n_out = net.activation_len(layer + 1);
    if let Some(&bad) = neurons.iter().find(|&&i| i >= n_out) {
        return Err(Error::InvalidArgument(format!(
            "neuron {bad} does not exist: the first layer has {n_out}"
        )));
    }
    let mut g = Array2::<f64>::zeros((neurons.len(), n_out));
    for (r, &i) in neurons.iter().enumerate() {
        g[[r, i]] = 1.0;
    }
    for l in (base..=layer).rev() {
        let in_len = net.activation_len(l);
        g = crate::model::backward::linear_vjp(&net.layers()[l], in_len, g.view())
            .ok_or_else(|| Error::InvalidArgument(format!("layer {l} is not linear")))?;
    }
    let zero = Array2::<f64>::zeros((1, net.activation_len(base)));
    let c = net.forward_range(base, layer + 1, zero.view())?;
    let offsets = neurons.iter().map(|&i| c[[0, i]]).collect();
    Ok((g, offsets))
}

/// The first-layer minimal-mask problem of one input (Eq. 2–3).
#[derive(Clone, Debug)]
pub struct MaskProblem {
    /// Binary variable `j` of the problem is cell `cells[j]`.
    pub cells: Vec<usize>,
    /// The neurons `D^k`.
    pub neurons: Vec<usize>,
    /// `γ · o_i(X) + δ` per neuron.
    pub thresholds: Vec<f64>,
    /// `d_i` per neuron: `o_i` with every encoded cell dropped.
    pub constant: Vec<f64>,
    /// `G_ij`: the change of `o_i` when cell `cells[j]` is kept.
    pub gain: Array2<f64>,
    /// Receptive field of each neuron, as a set of cells (sorted).
    pub receptive: Vec<Vec<usize>>,
    /// The problem for the backends: minimise `Σ M` subject to the thresholds.
    pub problem: Problem,
}

/// Builds Eq. 3 for the neurons `neurons` (usually `D^k`).
pub fn mask_problem(
    net: &Network,
    grid: &MaskGrid,
    fl: &FirstLayer,
    neurons: &[usize],
    gamma: f64,
    delta: f64,
    fill: f64,
) -> Result<MaskProblem> {
    if !gamma.is_finite() || !delta.is_finite() || !fill.is_finite() {
        return Err(Error::InvalidArgument(
            "gamma, delta and the fill value must be finite".into(),
        ));
    }
    let (a, c) = affine_rows(net, grid.base, fl.layer, neurons)?;
    let v = &fl.base_values;
    // Per neuron: o_i(all dropped) and the gain of each cell.
    let mut by_cell = vec![vec![0.0; grid.n_cells]; neurons.len()];
    let mut touched = vec![false; grid.n_cells];
    let mut receptive = vec![Vec::new(); neurons.len()];
    let mut constant = c.clone();
    for (r, row) in a.rows().into_iter().enumerate() {
        let mut seen = vec![false; grid.n_cells];
        for (e, &w) in row.iter().enumerate() {
            if w == 0.0 {
                continue;
            }
            let j = grid.cell_of[e];
            constant[r] += w * fill;
            by_cell[r][j] += w * (v[e] - fill);
            if !seen[j] {
                seen[j] = true;
                receptive[r].push(j);
            }
            if v[e] != fill {
                touched[j] = true;
            }
        }
        receptive[r].sort_unstable();
    }
    let cells: Vec<usize> = (0..grid.n_cells).filter(|&j| touched[j]).collect();
    let mut gain = Array2::<f64>::zeros((neurons.len(), cells.len()));
    for r in 0..neurons.len() {
        for (q, &j) in cells.iter().enumerate() {
            gain[[r, q]] = by_cell[r][j];
        }
    }
    let thresholds: Vec<f64> = neurons
        .iter()
        .map(|&i| gamma * fl.activation[i] + delta)
        .collect();
    let mut p = Problem::new("smug_first_layer");
    let vars: Vec<_> = cells
        .iter()
        .map(|&j| p.add_var(format!("mask_{j}"), VarKind::Binary, 0.0, 1.0))
        .collect();
    for (r, &i) in neurons.iter().enumerate() {
        let mut e = LinExpr::constant(constant[r]);
        for (q, &m) in vars.iter().enumerate() {
            let g = gain[[r, q]];
            if g != 0.0 {
                e.add_scaled(&LinExpr::var(m), g);
            }
        }
        p.add_constraint(format!("neuron_{i}"), e, Cmp::Ge, thresholds[r]);
    }
    let mut obj = LinExpr::default();
    for &m in &vars {
        obj.add_scaled(&LinExpr::var(m), 1.0);
    }
    p.objective = Some(Goal {
        sense: Sense::Minimize,
        expr: obj,
    });
    Ok(MaskProblem {
        cells,
        neurons: neurons.to_vec(),
        thresholds,
        constant,
        gain,
        receptive,
        problem: p,
    })
}

impl MaskProblem {
    /// `o_i(M)` for every neuron, from the problem's linear form.
    pub fn activations(&self, keep: &[bool]) -> Vec<f64> {
        (0..self.neurons.len())
            .map(|r| {
                self.constant[r]
                    + self
                        .cells
                        .iter()
                        .enumerate()
                        .filter(|(_, &j)| keep[j])
                        .map(|(q, _)| self.gain[[r, q]])
                        .sum::<f64>()
            })
            .collect()
    }

    /// Whether a cell selection meets every threshold (in the linear form).
    pub fn satisfied(&self, keep: &[bool]) -> bool {
        self.activations(keep)
            .iter()
            .zip(&self.thresholds)
            .all(|(o, t)| *o >= *t - 1e-9 * (1.0 + t.abs()))
    }

    /// Cells kept by a backend's assignment (a binary at ≥ ½).
    pub fn keep_from(&self, assignment: &[f64], n_cells: usize) -> Vec<bool> {
        let mut keep = vec![false; n_cells];
        for (q, &j) in self.cells.iter().enumerate() {
            keep[j] = assignment.get(q).is_some_and(|&v| v > 0.5);
        }
        keep
    }

    /// Rounds a fractional point of the LP relaxation to a mask: cells are
    /// added by decreasing LP value until every threshold holds, then each
    /// kept cell whose removal keeps them all is dropped (smallest LP value
    /// first). `None` when even every cell together misses a threshold.
    pub fn round(&self, fractional: &[f64], n_cells: usize) -> Option<Vec<bool>> {
        let mut order: Vec<usize> = (0..self.cells.len()).collect();
        order.sort_by(|&a, &b| {
            fractional
                .get(b)
                .copied()
                .unwrap_or(0.0)
                .total_cmp(&fractional.get(a).copied().unwrap_or(0.0))
                .then(a.cmp(&b))
        });
        let mut keep = vec![false; n_cells];
        let mut ok = self.satisfied(&keep);
        for &q in &order {
            if ok {
                break;
            }
            keep[self.cells[q]] = true;
            ok = self.satisfied(&keep);
        }
        if !ok {
            return None;
        }
        for &q in order.iter().rev() {
            let j = self.cells[q];
            if keep[j] {
                keep[j] = false;
                if !self.satisfied(&keep) {
                    keep[j] = true;
                }
            }
        }
        Some(keep)
    }
}

/// Re-check of a first-layer mask by a plain forward pass.
#[derive(Clone, Debug, Serialize)]
pub struct FirstLayerCheck {
    /// Every chosen neuron reached its threshold within `tolerance`.
    pub held: bool,
    /// `o_i(M ⊙ X)` from the forward pass, per chosen neuron.
    pub masked: Vec<f64>,
    /// The thresholds `γ · o_i(X) + δ`.
    pub thresholds: Vec<f64>,
    /// Allowed shortfall: `1e-6 · (1 + |threshold|)`.
    pub tolerance: f64,
}

/// Runs the masked activation through the network up to the first layer
/// and compares each chosen neuron with its threshold.
pub fn recheck_first_layer(
    net: &Network,
    grid: &MaskGrid,
    fl: &FirstLayer,
    mp: &MaskProblem,
    keep: &[bool],
    fill: f64,
) -> Result<FirstLayerCheck> {
    let masked = grid.apply(&fl.base_values, keep, fill);
    let row = Array2::from_shape_vec((1, masked.len()), masked)
        .map_err(|e| Error::Shape(e.to_string()))?;
    let o = net.forward_range(grid.base, fl.layer + 1, row.view())?;
    let vals: Vec<f64> = mp.neurons.iter().map(|&i| o[[0, i]]).collect();
    let tolerance = 1e-6;
    let held = vals
        .iter()
        .zip(&mp.thresholds)
        .all(|(v, t)| *v >= *t - tolerance * (1.0 + t.abs()));
    Ok(FirstLayerCheck {
        held,
        masked: vals,
        thresholds: mp.thresholds.clone(),
        tolerance,
    })
}

/// SMUG saliency (Eq. 4) per element of the masked activation:
/// `s_e = Σ_{p} α(o_p) 1[cell(e) ∈ receptive(o_p)]` where the cell is kept.
/// With every receptive cell kept this is SMUG_base.
pub fn saliency(grid: &MaskGrid, mp: &MaskProblem, fl: &FirstLayer, keep: &[bool]) -> Vec<f64> {
    let mut per_cell = vec![0.0; grid.n_cells];
    for (r, &i) in mp.neurons.iter().enumerate() {
        for &j in &mp.receptive[r] {
            if keep[j] {
                per_cell[j] += fl.ig[i];
            }
        }
    }
    grid.cell_of.iter().map(|&j| per_cell[j]).collect()
}

/// SMUG_base: every cell in a chosen neuron's receptive field.
pub fn base_mask(grid: &MaskGrid, mp: &MaskProblem) -> Vec<bool> {
    let mut keep = vec![false; grid.n_cells];
    for r in &mp.receptive {
        for &j in r {
            keep[j] = true;
        }
    }
    keep
}

/// A solved first-layer mask.
#[derive(Clone, Debug, Serialize)]
pub struct SolvedMask {
    /// `optimal` when proven minimal; `feasible` with a gap otherwise
    /// (e.g. LP rounding); `infeasible` when no mask meets the thresholds;
    /// `timeout` when the limit came first (then the best mask found, if any).
    pub status: crate::solve::Status,
    /// Kept cells (empty when infeasible or nothing was found).
    pub keep: Vec<bool>,
    /// Number of kept cells.
    pub mask_size: usize,
    /// Proven lower bound on the minimal size.
    pub bound: Option<f64>,
    /// Which backend's answer was taken (`lp+rounding` for the LP path).
    pub found_by: String,
    /// Every backend's record.
    pub records: Vec<crate::solve::SolveResult>,
}

/// Solves a first-layer mask problem with `backends` (raced when several).
/// A backend named `lp` is run as the relaxation followed by
/// [`MaskProblem::round`]: its mask is feasible, and optimal only when its
/// size meets the relaxation's bound.
pub fn solve_mask(
    mp: &MaskProblem,
    n_cells: usize,
    backends: &[&dyn crate::solve::Backend],
    opts: &crate::solve::SolveOptions,
    cancel: &crate::solve::CancelToken,
) -> Result<SolvedMask> {
    use crate::solve::Status;
    if backends.is_empty() {
        return Err(Error::InvalidArgument(
            "no backend to solve the mask with".into(),
        ));
    }
    #[cfg(feature = "highs")]
    if backends.len() == 1 && backends[0].name() == "lp" {
        let r = crate::solve::lp::relaxed_point(&mp.problem, opts, cancel)?;
        let bound = r.objective.map(|b| (b - 1e-6).ceil().max(0.0));
        let keep = match (&r.status, &r.assignment) {
            (Status::Optimal, Some(a)) => mp.round(a, n_cells),
            (Status::Infeasible, _) => None,
            _ => None,
        };
        let (status, keep) = match (r.status, keep) {
            (Status::Infeasible, _) => (Status::Infeasible, Vec::new()),
            (_, Some(k)) => {
                let size = k.iter().filter(|&&v| v).count() as f64;
                (
                    if bound.is_some_and(|b| b >= size) {
                        Status::Optimal
                    } else {
                        Status::Feasible
                    },
                    k,
                )
            }
            (s @ (Status::Timeout | Status::Cancelled), None) => (s, Vec::new()),
            (_, None) => (Status::Infeasible, Vec::new()),
        };
        let mask_size = keep.iter().filter(|&&v| v).count();
        return Ok(SolvedMask {
            status,
            keep,
            mask_size,
            bound,
            found_by: "lp+rounding".into(),
            records: vec![r],
        });
    }
    let raced = if backends.len() == 1 {
        crate::solve::portfolio::Race {
            winner: Some(0),
            records: vec![backends[0].solve(&mp.problem, opts, cancel)?],
        }
    } else {
        crate::solve::portfolio::race(&mp.problem, backends, opts, cancel)?
    };
    let Some(w) = raced.answer() else {
        return Ok(SolvedMask {
            status: Status::Error,
            keep: Vec::new(),
            mask_size: 0,
            bound: None,
            found_by: String::new(),
            records: raced.records,
        });
    };
    let keep = match &w.assignment {
        Some(a) => {
            let k = mp.keep_from(a, n_cells);
            if mp.satisfied(&k) {
                k
            } else {
                Vec::new()
            }
        }
        None => Vec::new(),
    };
    let status = match w.status {
        Status::Optimal
            if keep.is_empty() && !mp.cells.is_empty() && !mp.satisfied(&vec![false; n_cells]) =>
        {
            Status::Error
        }
        s => s,
    };
    let mask_size = keep.iter().filter(|&&v| v).count();
    let bound = if status == Status::Optimal {
        Some(mask_size as f64)
    } else {
        w.bound.map(|b| (b - 1e-6).ceil().max(0.0))
    };
    Ok(SolvedMask {
        status,
        keep: if keep.is_empty() && status == Status::Optimal {
            vec![false; n_cells]
        } else {
            keep
        },
        mask_size,
        bound,
        found_by: w.backend.to_string(),
        records: raced.records,
    })
}
