//! The whole network as constraints (SMUG Appendix A / VNN-LIB verification):
//! every affine layer as equalities, every unstable ReLU as a [`Construct::Relu`]
//! with its pre-activation bounds, every undecided max-pool window as a
//! [`Construct::Max`], Sigmoid/Tanh as nonlinear constructs.
//!
//! Linear maps that do not mix neurons (element-wise affine, index maps,
//! average pooling) and stable ReLUs (`l ≥ 0`: `y = x`; `u ≤ 0`: `y = 0`) create
//! no variable: activations are carried as linear expressions, and a variable
//! is made only where a neuron mixes its inputs or a construct needs one.
//! Variable bounds come from the given [`NetworkBounds`].

use super::problem::{Cmp, Construct, LinExpr, Problem, Var, VarKind};
use crate::bounds::NetworkBounds;
use crate::model::{Layer, Network};
use crate::property::Var as PVar;
use crate::property::{LinearConstraint, Region};
use crate::{Error, Result};

/// Encodes `net` over the input box of `bounds.activations[0]`; the problem's
/// `inputs` and `outputs` name the network's input variables and output expressions.
pub fn network(net: &Network, bounds: &NetworkBounds, name: &str) -> Result<Problem> {
    if bounds.activations.len() != net.len() + 1 {
        return Err(Error::Shape(format!(
            "bounds cover {} activations, the network has {}",
            bounds.activations.len(),
            net.len() + 1
        )));
    }
    let mut p = Problem::new(name);
    let b0 = &bounds.activations[0];
    let mut cur: Vec<LinExpr> = (0..net.input_len())
        .map(|i| {
            let v = p.add_var(
                format!("x_{i}"),
                VarKind::Continuous,
                b0.lower[i],
                b0.upper[i],
            );
            p.inputs.push(v);
            LinExpr::var(v)
        })
        .collect();
    for (i, layer) in net.layers().iter().enumerate() {
        let bin = &bounds.activations[i];
        let bout = &bounds.activations[i + 1];
        let out_len = net.nodes()[i].out_len();
        let tag = layer.kind().to_lowercase();
        let fresh = |p: &mut Problem, e: LinExpr, k: usize| -> LinExpr {
            let v = p.add_var(
                format!("{tag}{i}_{k}"),
                VarKind::Continuous,
                bout.lower[k],
                bout.upper[k],
            );
            let mut d = e;
            d.add_scaled(&LinExpr::var(v), -1.0);
            p.add_constraint(format!("{tag}{i}_{k}"), d, Cmp::Eq, 0.0);
            LinExpr::var(v)
        };
        cur = match layer {
            Layer::Dense(d) => {
                let (out, inp) = d.weight.dim();
                let mut next = Vec::with_capacity(out_len);
                for r in 0..d.rows {
                    for j in 0..out {
                        let mut e = LinExpr::constant(d.bias[j]);
                        for k in 0..inp {
                            let w = d.weight[[j, k]];
                            if w != 0.0 {
                                e.add_scaled(&cur[r * inp + k], w);
                            }
                        }
                        next.push(fresh(&mut p, e, r * out + j));
                    }
                }
                next
            }
            Layer::Conv(c) => {
                let g = &c.geom;
                let (cg, og) = (g.c_in_per_group(), g.c_out_per_group());
                let mut next = Vec::with_capacity(out_len);
                for o in 0..g.c_out {
                    let grp = o / og;
                    for oi in 0..g.h_out {
                        for oj in 0..g.w_out {
                            let mut e = LinExpr::constant(c.bias[o]);
                            for ci in 0..cg {
                                let ch = grp * cg + ci;
                                for u in 0..g.kh {
                                    let r = (oi * g.sh + u * g.dh) as isize - g.pt as isize;
                                    if r < 0 || r >= g.h_in as isize {
                                        continue;
                                    }
                                    for v in 0..g.kw {
                                        let s = (oj * g.sw + v * g.dw) as isize - g.pl as isize;
                                        if s < 0 || s >= g.w_in as isize {
                                            continue;
                                        }
                                        let w = c.weight[[o, ci, u, v]];
                                        if w != 0.0 {
                                            let idx =
                                                (ch * g.h_in + r as usize) * g.w_in + s as usize;
                                            e.add_scaled(&cur[idx], w);
                                        }
                                    }
                                }
                            }
                            let k = (o * g.h_out + oi) * g.w_out + oj;
                            next.push(fresh(&mut p, e, k));
                        }
                    }
                }
                next
            }
            Layer::Affine { scale, shift } => cur
                .iter()
                .zip(scale.iter().zip(shift))
                .map(|(e, (a, s))| {
                    let mut o = e.scaled(*a);
                    o.constant += s;
                    o
                })
                .collect(),
            Layer::Reshape => cur,
            Layer::Transpose { index } => index.iter().map(|&s| cur[s].clone()).collect(),
            Layer::Pad { index } => index
                .iter()
                .map(|s| s.map(|s| cur[s].clone()).unwrap_or_default())
                .collect(),
            Layer::AvgPool {
                geom: g,
                count_include_pad,
            } => {
                let mut next = Vec::with_capacity(out_len);
                for c in 0..g.c {
                    for oi in 0..g.h_out {
                        let (r0, r1) = g.rows(oi);
                        for oj in 0..g.w_out {
                            let (c0, c1) = g.cols(oj);
                            let n = if *count_include_pad {
                                g.padded_count(oi, oj)
                            } else {
                                (r1 - r0) * (c1 - c0)
                            };
                            let mut e = LinExpr::default();
                            for r in r0..r1 {
                                for cc in c0..c1 {
                                    e.add_scaled(
                                        &cur[(c * g.h_in + r) * g.w_in + cc],
                                        1.0 / n.max(1) as f64,
                                    );
                                }
                            }
                            e.normalise();
                            next.push(e);
                        }
                    }
                }
                next
            }
            Layer::Relu => {
                let mut next = Vec::with_capacity(out_len);
                for (k, e) in cur.into_iter().enumerate() {
                    let (l, u) = (bin.lower[k], bin.upper[k]);
                    if l >= 0.0 {
                        next.push(e);
                    } else if u <= 0.0 {
                        next.push(LinExpr::default());
                    } else {
                        let x = as_var(&mut p, e, format!("pre{i}_{k}"), l, u);
                        let y =
                            p.add_var(format!("relu{i}_{k}"), VarKind::Continuous, 0.0, u.max(0.0));
                        p.constructs.push(Construct::Relu { x, y, lb: l, ub: u });
                        next.push(LinExpr::var(y));
                    }
                }
                next
            }
            Layer::MaxPool(g) => {
                let mut next = Vec::with_capacity(out_len);
                for c in 0..g.c {
                    for oi in 0..g.h_out {
                        let (r0, r1) = g.rows(oi);
                        for oj in 0..g.w_out {
                            let (c0, c1) = g.cols(oj);
                            let window: Vec<usize> = (r0..r1)
                                .flat_map(|r| {
                                    (c0..c1).map(move |cc| (c * g.h_in + r) * g.w_in + cc)
                                })
                                .collect();
                            let best =
                                window
                                    .iter()
                                    .copied()
                                    .fold(None, |b: Option<usize>, k| match b {
                                        Some(b) if bin.lower[b] >= bin.lower[k] => Some(b),
                                        _ => Some(k),
                                    });
                            let Some(best) = best else {
                                return Err(Error::InvalidArgument(format!(
                                    "layer {i}: empty max-pool window"
                                )));
                            };
                            let others = window
                                .iter()
                                .filter(|&&k| k != best)
                                .map(|&k| bin.upper[k])
                                .fold(f64::NEG_INFINITY, f64::max);
                            if bin.lower[best] >= others {
                                next.push(cur[best].clone());
                                continue;
                            }
                            let o = (c * g.h_out + oi) * g.w_out + oj;
                            let xs: Vec<Var> = window
                                .iter()
                                .map(|&k| {
                                    as_var(
                                        &mut p,
                                        cur[k].clone(),
                                        format!("pool{i}_in{k}"),
                                        bin.lower[k],
                                        bin.upper[k],
                                    )
                                })
                                .collect();
                            let lbs: Vec<f64> = window.iter().map(|&k| bin.lower[k]).collect();
                            let ubs: Vec<f64> = window.iter().map(|&k| bin.upper[k]).collect();
                            let y = p.add_var(
                                format!("maxpool{i}_{o}"),
                                VarKind::Continuous,
                                bout.lower[o],
                                bout.upper[o],
                            );
                            p.constructs.push(Construct::Max { xs, y, lbs, ubs });
                            next.push(LinExpr::var(y));
                        }
                    }
                }
                next
            }
            Layer::Sigmoid | Layer::Tanh => {
                let mut next = Vec::with_capacity(out_len);
                for (k, e) in cur.into_iter().enumerate() {
                    let (l, u) = (bin.lower[k], bin.upper[k]);
                    let x = as_var(&mut p, e, format!("pre{i}_{k}"), l, u);
                    let y = p.add_var(
                        format!("{tag}{i}_{k}"),
                        VarKind::Continuous,
                        bout.lower[k],
                        bout.upper[k],
                    );
                    p.constructs.push(if matches!(layer, Layer::Sigmoid) {
                        Construct::Sigmoid { x, y, lb: l, ub: u }
                    } else {
                        Construct::Tanh { x, y, lb: l, ub: u }
                    });
                    next.push(LinExpr::var(y));
                }
                next
            }
            Layer::Softmax { .. } | Layer::Embedding { .. } => {
                return Err(Error::InvalidArgument(format!(
                    "layer {i} '{}' ({}) has no exact or relaxed encoding",
                    net.nodes()[i].name,
                    layer.kind()
                )))
            }
        };
    }
    p.outputs = cur;
    Ok(p)
}

/// The variable an expression is, or a fresh one bound to it by an equality.
fn as_var(p: &mut Problem, e: LinExpr, name: String, lb: f64, ub: f64) -> Var {
    if e.constant == 0.0 && e.terms.len() == 1 && e.terms[0].1 == 1.0 {
        return e.terms[0].0;
    }
    let v = p.add_var(name.clone(), VarKind::Continuous, lb, ub);
    let mut d = e;
    d.add_scaled(&LinExpr::var(v), -1.0);
    p.add_constraint(name, d, Cmp::Eq, 0.0);
    v
}

/// Substitutes a property atom over `X_i`/`Y_j` into the problem's variables and outputs.
fn atom_expr(p: &Problem, c: &LinearConstraint) -> Result<LinExpr> {
    let mut e = LinExpr::default();
    for (v, k) in &c.terms {
        match v {
            PVar::X(i) => {
                let x = p.inputs.get(*i).ok_or_else(|| {
                    Error::Shape(format!(
                        "the property names X_{i}, the network has {} inputs",
                        p.inputs.len()
                    ))
                })?;
                e.add_scaled(&LinExpr::var(*x), *k);
            }
            PVar::Y(j) => {
                let y = p.outputs.get(*j).ok_or_else(|| {
                    Error::Shape(format!(
                        "the property names Y_{j}, the network has {} outputs",
                        p.outputs.len()
                    ))
                })?;
                e.add_scaled(y, *k);
            }
        }
    }
    Ok(e)
}

/// Adds a region's non-box input constraints and one output conjunction.
pub fn add_property(
    p: &mut Problem,
    region: &Region,
    conjunction: &[LinearConstraint],
) -> Result<()> {
    for (n, c) in region
        .input_constraints
        .iter()
        .chain(conjunction)
        .enumerate()
    {
        let e = atom_expr(p, c)?;
        let cmp = match c.cmp {
            crate::property::Cmp::Le => Cmp::Le,
            crate::property::Cmp::Ge => Cmp::Ge,
            crate::property::Cmp::Eq => Cmp::Eq,
        };
        p.add_constraint(format!("property_{n}"), e, cmp, c.rhs);
    }
    Ok(())
}

/// `network` followed by `add_property`: the counterexample search for one
/// region and one output conjunction. `bounds` must be computed for the region's box.
pub fn full_network(
    net: &Network,
    bounds: &NetworkBounds,
    region: &Region,
    conjunction: &[LinearConstraint],
) -> Result<Problem> {
    let mut p = network(net, bounds, net.name())?;
    add_property(&mut p, region, conjunction)?;
    Ok(p)
}
