//! VNN-LIB verification: is there an input in the property's region whose
//! output satisfies the (negated) output constraint?
//!
//! For every input region: CROWN bounds over its box; every output
//! conjunction that the bounds already rule out is discharged without a
//! solver; each remaining one becomes a [`Problem`](crate::encode::Problem)
//! (the whole network plus that conjunction) handed to the backend. A
//! counterexample the backend returns is re-checked with tract and reported as
//! `sat` only if it holds. The verdict is `unsat` only when every conjunction
//! of every region is proven infeasible.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::bounds::{crown, Bounds};
use crate::check::{recheck_counterexample, Recheck};
use crate::encode::full_network::{add_property, network};
use crate::model::{Network, Reference};
use crate::property::{Cmp, LinearConstraint, Property, Var};
use crate::solve::bab::{input_split, BabOutcome};
use crate::solve::{Backend, CancelToken, Deadline, SolveOptions, SolveResult, Status};
use crate::{Error, Result};

/// The answer to a VNN-LIB query (`sat` means a counterexample exists).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A counterexample exists and held under tract's re-check.
    Sat,
    /// No counterexample exists (every case proven infeasible).
    Unsat,
    /// Not decided (an incomplete backend, or a counterexample that did not re-check).
    Unknown,
    /// The time limit was reached first.
    Timeout,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Sat => "sat",
            Verdict::Unsat => "unsat",
            Verdict::Unknown => "unknown",
            Verdict::Timeout => "timeout",
        })
    }
}

/// One solver call: which region and conjunction, and the backend's record.
#[derive(Clone, Debug, Serialize)]
pub struct Case {
    /// Index of the input region.
    pub region: usize,
    /// Index of the output conjunction within the region.
    pub conjunction: usize,
    /// `"bounds"` when CROWN's output bounds discharged the case, else the backend's record.
    pub discharged_by_bounds: bool,
    /// The backend's record (absent when discharged by bounds).
    pub record: Option<SolveResult>,
}

/// The outcome of [`verify`].
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    /// The verdict.
    pub verdict: Verdict,
    /// The counterexample, re-checked, when the verdict is `sat`.
    pub counterexample: Option<Recheck>,
    /// Every case considered, in order.
    pub cases: Vec<Case>,
    /// Seconds spent computing bounds.
    pub bounds_s: f64,
    /// Total wall time in seconds.
    pub wall_s: f64,
}

/// Options of [`verify`].
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Wall-clock limit for the whole query.
    pub time_limit: Option<Duration>,
    /// Seed handed to the solver.
    pub seed: u64,
    /// Solver threads.
    pub threads: usize,
}

/// Whether output bounds alone show that `atom` cannot hold.
fn ruled_out(atom: &LinearConstraint, x: &Bounds, y: &Bounds) -> bool {
    let (mut lo, mut hi) = (0.0, 0.0);
    for (v, c) in &atom.terms {
        let (l, u) = match v {
            Var::X(i) => (x.lower[*i], x.upper[*i]),
            Var::Y(j) => (y.lower[*j], y.upper[*j]),
        };
        if *c >= 0.0 {
            lo += c * l;
            hi += c * u;
        } else {
            lo += c * u;
            hi += c * l;
        }
    }
    match atom.cmp {
        Cmp::Le => lo > atom.rhs,
        Cmp::Ge => hi < atom.rhs,
        Cmp::Eq => lo > atom.rhs || hi < atom.rhs,
    }
}

/// How the cases that bounds leave open are decided.
#[derive(Clone, Copy)]
pub enum Method<'a> {
    /// A solver backend on the encoded [`Problem`](crate::encode::Problem).
    Backend(&'a dyn Backend),
    /// Branch and bound by input splitting on the network ([`input_split`]).
    InputSplit,
}

impl Method<'_> {
    /// The name recorded in results.
    pub fn name(&self) -> &'static str {
        match self {
            Method::Backend(b) => b.name(),
            Method::InputSplit => "bab",
        }
    }
}

/// Decides `prop` on `net` with `method`, re-checking any counterexample with `reference`.
pub fn verify(
    net: &Network,
    reference: &Reference,
    prop: &Property,
    method: Method<'_>,
    opts: &VerifyOptions,
    cancel: &CancelToken,
) -> Result<Verification> {
    let start = Instant::now();
    prop.check_sizes(net.input_len(), net.output_len())?;
    let deadline = Deadline::after(opts.time_limit);
    let mut cases = Vec::new();
    let mut bounds_s = 0.0;
    let mut undecided: Option<Verdict> = None;
    for (ri, region) in prop.regions.iter().enumerate() {
        if region.input.is_empty() {
            continue;
        }
        let t = Instant::now();
        let bounds = crown(net, &region.input)?;
        bounds_s += t.elapsed().as_secs_f64();
        // The encoding is built once per region, and only for solver backends.
        let mut base: Option<crate::encode::Problem> = None;
        for (ci, conj) in region.output.iter().enumerate() {
            if conj
                .iter()
                .any(|a| ruled_out(a, &bounds.activations[0], bounds.output()))
            {
                cases.push(Case {
                    region: ri,
                    conjunction: ci,
                    discharged_by_bounds: true,
                    record: None,
                });
                continue;
            }
            if deadline.should_stop(cancel) {
                undecided = Some(Verdict::Timeout);
                break;
            }
            if matches!(method, Method::Backend(_)) && base.is_none() {
                base = Some(network(net, &bounds, net.name())?);
            }
            let name = format!("{}#r{ri}c{ci}", net.name());
            let (record, x) = match method {
                Method::Backend(backend) => {
                    let mut p = base.clone().unwrap_or_default();
                    p.name = name.clone();
                    add_property(&mut p, region, conj)?;
                    backend.supports(&p)?;
                    let so = SolveOptions {
                        time_limit: deadline.remaining(),
                        seed: opts.seed,
                        threads: opts.threads.max(1),
                    };
                    let record = backend.solve(&p, &so, cancel)?;
                    let x = record
                        .assignment
                        .as_ref()
                        .map(|a| p.inputs.iter().map(|v| a[v.0]).collect::<Vec<f64>>());
                    (record, x)
                }
                Method::InputSplit => {
                    let t = Instant::now();
                    let (outcome, stats) = input_split(net, region, conj, &deadline, cancel)?;
                    let (status, x) = match outcome {
                        BabOutcome::Proven => (Status::Infeasible, None),
                        BabOutcome::Counterexample(x) => (Status::Optimal, Some(x)),
                        BabOutcome::Timeout => (Status::Timeout, None),
                        BabOutcome::Cancelled => (Status::Cancelled, None),
                        BabOutcome::Unknown => (Status::Unknown, None),
                    };
                    let mut record = SolveResult::new("bab", status);
                    record.wall_time = t.elapsed();
                    record.stats.insert("boxes".into(), stats.boxes as f64);
                    record.stats.insert("pruned".into(), stats.pruned as f64);
                    record
                        .stats
                        .insert("max_depth".into(), stats.max_depth as f64);
                    record.stats.insert("bounds_s".into(), stats.bounds_s);
                    record
                        .stats
                        .insert("overshoot_s".into(), deadline.overshoot().as_secs_f64());
                    (record, x)
                }
            };
            let status = record.status;
            let assignment = x;
            cases.push(Case {
                region: ri,
                conjunction: ci,
                discharged_by_bounds: false,
                record: Some(record),
            });
            match status {
                Status::Infeasible => {}
                Status::Optimal | Status::Feasible => {
                    let Some(x) = assignment else {
                        undecided.get_or_insert(Verdict::Unknown);
                        continue;
                    };
                    let check = recheck_counterexample(reference, prop, &x)?;
                    if check.held {
                        return Ok(Verification {
                            verdict: Verdict::Sat,
                            counterexample: Some(check),
                            cases,
                            bounds_s,
                            wall_s: start.elapsed().as_secs_f64(),
                        });
                    }
                    undecided.get_or_insert(Verdict::Unknown);
                }
                Status::Timeout | Status::Cancelled => {
                    undecided = Some(Verdict::Timeout);
                }
                Status::Unknown => {
                    undecided.get_or_insert(Verdict::Unknown);
                }
                Status::Error => {
                    let why = cases
                        .last()
                        .and_then(|c| c.record.as_ref())
                        .and_then(|r| r.reason.clone())
                        .unwrap_or_default();
                    return Err(Error::InvalidArgument(format!(
                        "backend {} failed on {name}: {why}",
                        method.name()
                    )));
                }
            }
            if undecided == Some(Verdict::Timeout) {
                break;
            }
        }
        if undecided == Some(Verdict::Timeout) {
            break;
        }
    }
    Ok(Verification {
        verdict: undecided.unwrap_or(Verdict::Unsat),
        counterexample: None,
        cases,
        bounds_s,
        wall_s: start.elapsed().as_secs_f64(),
    })
}

/// A counterexample in VNN-COMP's result format: `sat` on the first line, then
/// `((X_0 v) … (Y_0 v) …)`.
pub fn vnncomp_counterexample(c: &Recheck) -> String {
    let mut s = String::from("sat\n(");
    for (i, v) in c.x.iter().enumerate() {
        s.push_str(&format!("(X_{i} {v:e})\n"));
    }
    for (j, v) in c.y.iter().enumerate() {
        s.push_str(&format!("(Y_{j} {v:e})\n"));
    }
    s.push_str(")\n");
    s
}
