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

use crate::bounds::mlp::Mlp;
use crate::bounds::{crown, Bounds};
use crate::check::{recheck_counterexample, Recheck};
use crate::encode::full_network::{add_property, network};
use crate::model::{Network, Reference};
use crate::property::{Cmp, LinearConstraint, Property, Var};
use crate::solve::bab::{
    input_split_with, relu_split_with, BabOutcome, BabStats, RootBounds, RELU_SPLIT_BELOW,
    RELU_SPLIT_BELOW_WIDE,
};
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
    /// The deciding backend's record (absent when discharged by bounds).
    pub record: Option<SolveResult>,
    /// In a portfolio, the records of the other backends (cancelled once one decided).
    pub others: Vec<SolveResult>,
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
    /// Branch and bound on the network ([`branch_and_bound`]): input
    /// splitting for networks with at most [`INPUT_SPLIT_MAX_INPUTS`] inputs,
    /// ReLU splitting otherwise.
    Bab,
    /// [`Method::Bab`] with ReLU splits in every box of at most
    /// [`RELU_SPLIT_BELOW_WIDE`] unstable ReLUs (instead of
    /// [`RELU_SPLIT_BELOW`]): a second branching for the portfolio, proving
    /// what input splits close only slowly. Networks that the thresholds do
    /// not concern (over [`INPUT_SPLIT_MAX_INPUTS`] inputs, or not a ReLU MLP)
    /// leave it out of a portfolio, where it would repeat [`Method::Bab`].
    BabWide,
    /// PGD on the property's margin ([`crate::solve::attack::pgd`]): can only find counterexamples.
    Attack,
    /// Several methods raced on each case in their own threads: the first
    /// conclusive answer (a proof, or a counterexample that re-checks) wins and
    /// cancels the rest; every record is kept.
    Portfolio(&'a [Method<'a>]),
}

impl Method<'_> {
    /// The name recorded in results.
    pub fn name(&self) -> &'static str {
        match self {
            Method::Backend(b) => b.name(),
            Method::Bab => "bab",
            Method::BabWide => "bab-wide",
            Method::Attack => "attack",
            Method::Portfolio(_) => "portfolio",
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
    // ReLU splitting's root bounds, shared by the conjunctions of a region.
    let roots: Vec<RootBounds> = prop.regions.iter().map(|_| RootBounds::new()).collect();
    // Bounds per region (None for an empty box).
    let mut region_bounds = Vec::with_capacity(prop.regions.len());
    for region in &prop.regions {
        let t = Instant::now();
        region_bounds.push(if region.input.is_empty() {
            None
        } else {
            Some(crown(net, &region.input)?)
        });
        bounds_s += t.elapsed().as_secs_f64();
    }
    let open = |ri: usize, conj: &[LinearConstraint]| -> bool {
        region_bounds[ri].as_ref().is_some_and(|b| {
            !conj
                .iter()
                .any(|a| ruled_out(a, &b.activations[0], b.output()))
        })
    };
    // The attack, alone or in a portfolio, first runs without refinement on
    // every open case (cheap falsification); then each case gets the
    // refined attack, raced beside the exact members in a portfolio.
    let mut method = method;
    // A portfolio's second branching only where its threshold is read.
    let members: Vec<Method<'_>>;
    if let Method::Portfolio(ms) = method {
        let wide_applies =
            net.input_len() <= INPUT_SPLIT_MAX_INPUTS && Mlp::from_network(net).is_some();
        members = ms
            .iter()
            .filter(|m| wide_applies || !matches!(m, Method::BabWide))
            .copied()
            .collect();
        method = Method::Portfolio(&members);
    }
    let exact_members: Vec<Method<'_>>;
    let mut attack_records: std::collections::HashMap<(usize, usize), SolveResult> =
        std::collections::HashMap::new();
    let with_attack = match method {
        Method::Attack => true,
        Method::Portfolio(ms) => ms.iter().any(|m| matches!(m, Method::Attack)),
        _ => false,
    };
    if with_attack {
        for (ri, region) in prop.regions.iter().enumerate() {
            for (ci, conj) in region.output.iter().enumerate() {
                if !open(ri, conj) || deadline.should_stop(cancel) {
                    continue;
                }
                let name = format!("{}#r{ri}c{ci}", net.name());
                let case = CaseInput {
                    net,
                    reference,
                    prop,
                    region,
                    conj,
                    base: None,
                    roots: &roots[ri],
                    name: &name,
                    opts,
                    deadline: &deadline,
                    refine_attack: false,
                };
                let d = decide(&case, &Method::Attack, cancel)?;
                if let Some(check) = d.counterexample.filter(|c| c.held) {
                    cases.push(Case {
                        region: ri,
                        conjunction: ci,
                        discharged_by_bounds: false,
                        record: Some(d.record),
                        others: Vec::new(),
                    });
                    return Ok(Verification {
                        verdict: Verdict::Sat,
                        counterexample: Some(check),
                        cases,
                        bounds_s,
                        wall_s: start.elapsed().as_secs_f64(),
                    });
                }
                attack_records.insert((ri, ci), d.record);
            }
        }
        // The exact members, and the refined attack beside them.
        if let Method::Portfolio(ms) = method {
            exact_members = ms
                .iter()
                .filter(|m| !matches!(m, Method::Attack))
                .copied()
                .chain(std::iter::once(Method::Attack))
                .collect();
            method = Method::Portfolio(&exact_members);
        }
    }
    for (ri, region) in prop.regions.iter().enumerate() {
        let Some(bounds) = region_bounds[ri].as_ref() else {
            continue;
        };
        // The encoding is built once per region, and only for solver backends.
        let mut base: Option<crate::encode::Problem> = None;
        for (ci, conj) in region.output.iter().enumerate() {
            if !open(ri, conj) {
                cases.push(Case {
                    region: ri,
                    conjunction: ci,
                    discharged_by_bounds: true,
                    record: None,
                    others: Vec::new(),
                });
                continue;
            }
            if deadline.should_stop(cancel) {
                undecided = Some(Verdict::Timeout);
                break;
            }
            if uses_problem(&method) && base.is_none() {
                base = Some(network(net, bounds, net.name())?);
            }
            let name = format!("{}#r{ri}c{ci}", net.name());
            let case = CaseInput {
                net,
                reference,
                prop,
                region,
                conj,
                base: base.as_ref(),
                roots: &roots[ri],
                name: &name,
                opts,
                deadline: &deadline,
                refine_attack: true,
            };
            let (outcome, mut others) = match method {
                Method::Portfolio(methods) => race(&case, methods, cancel)?,
                m => (decide(&case, &m, cancel)?, Vec::new()),
            };
            let Decided {
                record,
                counterexample,
            } = outcome;
            let status = record.status;
            others.extend(attack_records.remove(&(ri, ci)));
            cases.push(Case {
                region: ri,
                conjunction: ci,
                discharged_by_bounds: false,
                record: Some(record),
                others,
            });
            match status {
                Status::Infeasible => {}
                Status::Optimal | Status::Feasible => {
                    if let Some(check) = counterexample.filter(|c| c.held) {
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

/// Everything one case needs.
struct CaseInput<'a> {
    net: &'a Network,
    reference: &'a Reference,
    prop: &'a Property,
    region: &'a crate::property::Region,
    conj: &'a [LinearConstraint],
    base: Option<&'a crate::encode::Problem>,
    /// ReLU splitting's root bounds for this region.
    roots: &'a RootBounds,
    name: &'a str,
    opts: &'a VerifyOptions,
    deadline: &'a Deadline,
    /// Whether the attack refines its best endpoints
    /// ([`crate::solve::attack::local_search`]); the portfolio's first pass
    /// over the cases runs without, its race with.
    refine_attack: bool,
}

/// A method's answer on one case, with its counterexample re-checked.
struct Decided {
    record: SolveResult,
    counterexample: Option<Recheck>,
}

impl Decided {
    /// A proof, or a counterexample that held under the re-check.
    fn conclusive(&self) -> bool {
        self.record.status == Status::Infeasible
            || self.counterexample.as_ref().is_some_and(|c| c.held)
    }
}

fn uses_problem(m: &Method<'_>) -> bool {
    match m {
        Method::Backend(_) => true,
        Method::Bab | Method::BabWide | Method::Attack => false,
        Method::Portfolio(ms) => ms.iter().any(uses_problem),
    }
}

/// Networks with at most this many inputs are searched by input splitting.
pub const INPUT_SPLIT_MAX_INPUTS: usize = 16;

/// Which split a branch and bound used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Input splitting ([`input_split_with`]).
    Input,
    /// ReLU splitting ([`relu_split_with`]).
    Relu,
}

/// Complete branch and bound on one case: input splitting for few inputs
/// (ACAS Xu), ReLU splitting for ReLU MLPs with more, and input splitting
/// again for any other network (ReLU splitting takes only MLPs).
/// `relu_split_below` is the input splitting's threshold for ReLU splits
/// ([`input_split_with`]).
pub fn branch_and_bound(
    net: &Network,
    region: &crate::property::Region,
    conj: &[LinearConstraint],
    deadline: &Deadline,
    cancel: &CancelToken,
    relu_split_below: usize,
    roots: &RootBounds,
) -> Result<(BabOutcome, BabStats, Split)> {
    if net.input_len() > INPUT_SPLIT_MAX_INPUTS {
        match relu_split_with(net, region, conj, deadline, cancel, roots) {
            Ok((o, s)) => return Ok((o, s, Split::Relu)),
            Err(Error::InvalidArgument(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let (o, s) = input_split_with(net, region, conj, deadline, cancel, relu_split_below)?;
    Ok((o, s, Split::Input))
}

/// Runs one (non-portfolio) method on one case and re-checks its counterexample.
fn decide(case: &CaseInput<'_>, method: &Method<'_>, cancel: &CancelToken) -> Result<Decided> {
    let (record, x) = match method {
        Method::Backend(backend) => {
            let mut p = case.base.cloned().unwrap_or_default();
            p.name = case.name.to_string();
            add_property(&mut p, case.region, case.conj)?;
            backend.supports(&p)?;
            let so = SolveOptions {
                time_limit: case.deadline.remaining(),
                seed: case.opts.seed,
                threads: case.opts.threads.max(1),
            };
            let record = backend.solve(&p, &so, cancel)?;
            let x = record
                .assignment
                .as_ref()
                .map(|a| p.inputs.iter().map(|v| a[v.0]).collect::<Vec<f64>>());
            (record, x)
        }
        Method::Bab | Method::BabWide => {
            let t = Instant::now();
            let below = if matches!(method, Method::BabWide) {
                RELU_SPLIT_BELOW_WIDE
            } else {
                RELU_SPLIT_BELOW
            };
            let (outcome, stats, how) = branch_and_bound(
                case.net,
                case.region,
                case.conj,
                case.deadline,
                cancel,
                below,
                case.roots,
            )?;
            let (status, x) = match outcome {
                BabOutcome::Proven => (Status::Infeasible, None),
                BabOutcome::Counterexample(x) => (Status::Optimal, Some(x)),
                BabOutcome::Timeout => (Status::Timeout, None),
                BabOutcome::Cancelled => (Status::Cancelled, None),
                BabOutcome::Unknown => (Status::Unknown, None),
            };
            let mut record = SolveResult::new(method.name(), status);
            record.wall_time = t.elapsed();
            record.stats.insert("boxes".into(), stats.boxes as f64);
            record.stats.insert("pruned".into(), stats.pruned as f64);
            record
                .stats
                .insert("max_depth".into(), stats.max_depth as f64);
            record.stats.insert("bounds_s".into(), stats.bounds_s);
            record
                .stats
                .insert("closed_share".into(), stats.closed_share);
            if how == Split::Relu {
                record.stats.insert(
                    "root_unstable_crown".into(),
                    stats.root_unstable_crown as f64,
                );
                record
                    .stats
                    .insert("root_unstable".into(), stats.root_unstable as f64);
                record.stats.insert("root_s".into(), stats.root_s);
            }
            record
                .stats
                .insert("relu_split".into(), f64::from(u8::from(how == Split::Relu)));
            record.stats.insert(
                "overshoot_s".into(),
                case.deadline.overshoot().as_secs_f64(),
            );
            (record, x)
        }
        Method::Attack => {
            let t = Instant::now();
            let ao = crate::solve::attack::AttackOptions {
                seed: case.opts.seed,
                refine_starts: if case.refine_attack {
                    crate::solve::attack::AttackOptions::default().refine_starts
                } else {
                    0
                },
                ..Default::default()
            };
            let found = crate::solve::attack::pgd(
                case.net,
                case.region,
                case.conj,
                &ao,
                case.deadline,
                cancel,
            )?;
            let status = match &found {
                Some(_) => Status::Optimal,
                None if cancel.is_cancelled() => Status::Cancelled,
                None if case.deadline.expired() => Status::Timeout,
                None => Status::Unknown,
            };
            let mut record = SolveResult::new("attack", status);
            record.wall_time = t.elapsed();
            if status == Status::Unknown {
                record.reason = Some("no counterexample found (an attack proves nothing)".into());
            }
            record.stats.insert("restarts".into(), ao.restarts as f64);
            record.stats.insert("steps".into(), ao.steps as f64);
            record
                .stats
                .insert("refine_starts".into(), ao.refine_starts as f64);
            (record, found)
        }
        Method::Portfolio(_) => {
            return Err(Error::InvalidArgument(
                "a portfolio cannot nest another portfolio".into(),
            ))
        }
    };
    let counterexample = match (record.status, x) {
        (Status::Optimal | Status::Feasible, Some(x)) => {
            Some(recheck_counterexample(case.reference, case.prop, &x)?)
        }
        _ => None,
    };
    Ok(Decided {
        record,
        counterexample,
    })
}

/// The fixed precedence between answers: a re-checked counterexample, then a
/// proof, then the rest (timeouts before unknowns, so that a timeout is never
/// reported as a clean "unknown"). Returns the index of the winner.
fn precedence(answers: &[Decided]) -> usize {
    let rank = |d: &Decided| -> u8 {
        if d.counterexample.as_ref().is_some_and(|c| c.held) {
            0
        } else if d.record.status == Status::Infeasible {
            1
        } else if matches!(d.record.status, Status::Timeout) {
            2
        } else if d.record.status == Status::Error {
            4
        } else {
            3
        }
    };
    (0..answers.len())
        .min_by_key(|&i| rank(&answers[i]))
        .unwrap_or(0)
}

/// Races `methods` on one case: one scoped thread each, a shared token that
/// the first conclusive answer sets (or the caller's token), all threads joined.
fn race(
    case: &CaseInput<'_>,
    methods: &[Method<'_>],
    outer: &CancelToken,
) -> Result<(Decided, Vec<SolveResult>)> {
    if methods.is_empty() {
        return Err(Error::InvalidArgument("an empty portfolio".into()));
    }
    let token = CancelToken::new();
    let answers: Vec<Result<Decided>> = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel::<usize>();
        let handles: Vec<_> = methods
            .iter()
            .enumerate()
            .map(|(k, m)| {
                let tx = tx.clone();
                let token = &token;
                s.spawn(move || {
                    let r = decide(case, m, token);
                    if r.as_ref().is_ok_and(Decided::conclusive) {
                        token.cancel();
                    }
                    let _ = tx.send(k);
                    r
                })
            })
            .collect();
        drop(tx);
        // Forward the caller's cancel (and the deadline) to the race until every thread is done.
        let mut finished = 0;
        while finished < methods.len() {
            match rx.recv_timeout(std::time::Duration::from_millis(10)) {
                Ok(_) => finished += 1,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if outer.is_cancelled() {
                        token.cancel();
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::InvalidArgument("a portfolio thread panicked".into()))
                })
            })
            .collect()
    });
    let mut ok = Vec::with_capacity(answers.len());
    for (a, m) in answers.into_iter().zip(methods) {
        match a {
            Ok(d) => ok.push(d),
            Err(e) => {
                // A backend that cannot take the problem (e.g. the MILP on Sigmoid) just drops out.
                let mut r = SolveResult::new(m.name(), Status::Error);
                r.reason = Some(e.to_string());
                ok.push(Decided {
                    record: r,
                    counterexample: None,
                });
            }
        }
    }
    // A proof and a re-checked counterexample together would be a soundness bug: say so.
    let sat = ok
        .iter()
        .any(|d| d.counterexample.as_ref().is_some_and(|c| c.held));
    let unsat = ok.iter().any(|d| d.record.status == Status::Infeasible);
    if sat && unsat {
        return Err(Error::InvalidArgument(format!(
            "backends disagree on {}: one proved it infeasible, another found a counterexample that re-checks",
            case.name
        )));
    }
    let w = precedence(&ok);
    let winner = ok.swap_remove(w);
    let others = ok.into_iter().map(|d| d.record).collect();
    Ok((winner, others))
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

/// Encode and solve times of one verification case, per method (for the
/// encode-vs-solve benchmark).
#[derive(Clone, Debug, Serialize)]
pub struct CaseTiming {
    /// Input region of the case.
    pub region: usize,
    /// Output conjunction of the case (the first one bounds leave open).
    pub conjunction: usize,
    /// Median seconds of CROWN bounds over the region (of `repeat` runs).
    pub bounds_s: f64,
    /// Median seconds of building the Problem (network + property) on those bounds.
    pub encode_s: f64,
    /// Variables, constraints and ReLU constructs of the encoding.
    pub size: (usize, usize, usize),
    /// One record per method, with its wall time (the median of `repeat`
    /// runs when each took under a second, else one run).
    pub solves: Vec<SolveResult>,
}

/// Times the first case of `prop` that CROWN bounds do not discharge: bounds,
/// encoding, then each method on it within `time_limit`. `Err` when bounds
/// discharge every case (nothing to solve).
pub fn time_case(
    net: &Network,
    prop: &Property,
    methods: &[Method<'_>],
    time_limit: Option<Duration>,
    repeat: usize,
) -> Result<CaseTiming> {
    prop.check_sizes(net.input_len(), net.output_len())?;
    let repeat = repeat.max(1);
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (ri, region) in prop.regions.iter().enumerate() {
        if region.input.is_empty() {
            continue;
        }
        let bounds = crown(net, &region.input)?;
        let Some(ci) = region.output.iter().position(|conj| {
            !conj
                .iter()
                .any(|a| ruled_out(a, &bounds.activations[0], bounds.output()))
        }) else {
            continue;
        };
        let conj = &region.output[ci];
        let mut bt = Vec::new();
        let mut et = Vec::new();
        let mut problem = None;
        for _ in 0..repeat {
            let t = Instant::now();
            let b = crown(net, &region.input)?;
            bt.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let mut p = network(net, &b, net.name())?;
            add_property(&mut p, region, conj)?;
            et.push(t.elapsed().as_secs_f64());
            problem = Some(p);
        }
        let problem = problem.ok_or_else(|| Error::InvalidArgument("no encoding".into()))?;
        let size = (
            problem.vars.len(),
            problem.constraints.len(),
            problem.relu_count(),
        );
        let mut solves = Vec::new();
        for m in methods {
            let mut runs = Vec::new();
            for _ in 0..repeat {
                let cancel = CancelToken::new();
                let deadline = Deadline::after(time_limit);
                let t = Instant::now();
                let mut r = match m {
                    Method::Backend(b) => {
                        b.supports(&problem)?;
                        let so = SolveOptions {
                            time_limit,
                            ..SolveOptions::default()
                        };
                        b.solve(&problem, &so, &cancel)?
                    }
                    Method::Bab | Method::BabWide => {
                        let below = if matches!(m, Method::BabWide) {
                            RELU_SPLIT_BELOW_WIDE
                        } else {
                            RELU_SPLIT_BELOW
                        };
                        let (o, _, _) = branch_and_bound(
                            net,
                            region,
                            conj,
                            &deadline,
                            &cancel,
                            below,
                            &RootBounds::new(),
                        )?;
                        SolveResult::new(
                            m.name(),
                            match o {
                                BabOutcome::Proven => Status::Infeasible,
                                BabOutcome::Counterexample(_) => Status::Optimal,
                                BabOutcome::Timeout => Status::Timeout,
                                BabOutcome::Cancelled => Status::Cancelled,
                                BabOutcome::Unknown => Status::Unknown,
                            },
                        )
                    }
                    other => {
                        return Err(Error::InvalidArgument(format!(
                            "time_case takes solver backends and input splitting, not {}",
                            other.name()
                        )))
                    }
                };
                r.wall_time = t.elapsed();
                let slow = r.wall_time > Duration::from_secs(1);
                runs.push(r);
                if slow {
                    break;
                }
            }
            runs.sort_by_key(|r| r.wall_time);
            let mid = runs.len() / 2;
            solves.push(runs.swap_remove(mid));
        }
        return Ok(CaseTiming {
            region: ri,
            conjunction: ci,
            bounds_s: median(bt),
            encode_s: median(et),
            size,
            solves,
        });
    }
    Err(Error::InvalidArgument(
        "CROWN bounds discharge every case of this property: nothing to solve".into(),
    ))
}
