//! Lowering of a [`Problem`] to HiGHS, shared by the MILP and LP backends.
//!
//! The exact lowering uses big-M with the tightest bounds the problem carries:
//! for `y = max(0, x)` with `l < 0 < u` and a binary `z`,
//! `y ≥ x, y ≥ 0, y ≤ x − l(1 − z), y ≤ u z` (Tjeng et al. 2019, Eq. 3);
//! the relaxed lowering replaces each ReLU by its triangle
//! `y ≥ 0, y ≥ x, y ≤ u (x − l) / (u − l)` and makes every integer continuous.
//!
//! HiGHS is driven directly (not through good_lp) so that its full model
//! status, MIP dual bound, gap and node count are kept, and so that an
//! interrupt callback can poll the engine's cancel token and deadline.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CString};
use std::time::{Duration, Instant};

use highs::{Col, RowProblem, Sense as HSense};

use super::{CancelToken, Deadline, SolveOptions, SolveResult, Status};
use crate::encode::problem::{Cmp, Construct, Problem, Sense, VarKind};
use crate::encode::relax::{envelope, SShape};
use crate::{Error, Result};

/// Which lowering to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Integers stay integer; constructs by big-M.
    Exact,
    /// The LP relaxation: continuous integers, triangle ReLUs.
    Relaxed,
}

// HiGHS model status codes (highs_c_api.h, kHighsModelStatus*).
const MS_OPTIMAL: c_int = 7;
const MS_INFEASIBLE: c_int = 8;
const MS_UNBOUNDED_OR_INFEASIBLE: c_int = 9;
const MS_UNBOUNDED: c_int = 10;
const MS_OBJECTIVE_BOUND: c_int = 11;
const MS_OBJECTIVE_TARGET: c_int = 12;
const MS_TIME_LIMIT: c_int = 13;
const MS_ITERATION_LIMIT: c_int = 14;
const MS_SOLUTION_LIMIT: c_int = 16;
const MS_INTERRUPT: c_int = 17;
const MS_MEMORY_LIMIT: c_int = 18;
const MS_HIGHS_INTERRUPT: c_int = 19;
// Callback types that allow an interrupt (kHighsCallback*).
const CB_SIMPLEX_INTERRUPT: c_int = 1;
const CB_IPM_INTERRUPT: c_int = 2;
const CB_MIP_INTERRUPT: c_int = 6;
/// `primal_solution_status` meaning a feasible primal point is available.
const SOLUTION_FEASIBLE: c_int = 2;

/// What the interrupt callback reads.
struct Watch {
    cancel: CancelToken,
    deadline: Deadline,
}

/// HiGHS interrupt callback: asks HiGHS to stop once the token is cancelled or
/// the deadline has passed. Never unwinds.
extern "C" fn interrupt(
    _kind: c_int,
    _message: *const c_char,
    _out: *const highs_sys::HighsCallbackDataOut,
    data_in: *mut highs_sys::HighsCallbackDataIn,
    user: *mut c_void,
) {
    if user.is_null() || data_in.is_null() {
        return;
    }
    // SAFETY: `user` is the `&Watch` registered in `solve` and outlives the
    // `Highs_run` call that invokes this callback; `data_in` is provided by
    // HiGHS for interrupt callbacks and is valid for writes during the call.
    unsafe {
        let watch = &*(user as *const Watch);
        if watch.deadline.should_stop(&watch.cancel) {
            (*data_in).user_interrupt = 1;
        }
    }
}

fn info_f64(ptr: *const c_void, name: &str) -> Option<f64> {
    let key = CString::new(name).ok()?;
    let mut v = 0.0f64;
    // SAFETY: `ptr` is a live Highs instance; `key` is NUL-terminated; `v` is writable.
    let st = unsafe { highs_sys::Highs_getDoubleInfoValue(ptr, key.as_ptr(), &mut v) };
    (st == 0).then_some(v)
}

fn info_i32(ptr: *const c_void, name: &str) -> Option<i64> {
    let key = CString::new(name).ok()?;
    let mut v: highs_sys::HighsInt = 0;
    // SAFETY: as in `info_f64`.
    let st = unsafe { highs_sys::Highs_getIntInfoValue(ptr, key.as_ptr(), &mut v) };
    (st == 0).then_some(v as i64)
}

fn info_i64(ptr: *const c_void, name: &str) -> Option<i64> {
    let key = CString::new(name).ok()?;
    let mut v: i64 = 0;
    // SAFETY: as in `info_f64`.
    let st = unsafe { highs_sys::Highs_getInt64InfoValue(ptr, key.as_ptr(), &mut v) };
    (st == 0).then_some(v)
}

/// Bounds of a linear expression from the variables' bounds.
fn expr_range(p: &Problem, e: &crate::encode::problem::LinExpr) -> (f64, f64) {
    let (mut lo, mut hi) = (e.constant, e.constant);
    for &(v, c) in &e.terms {
        let (l, u) = (p.vars[v.0].lb, p.vars[v.0].ub);
        if c >= 0.0 {
            lo += c * l;
            hi += c * u;
        } else {
            lo += c * u;
            hi += c * l;
        }
    }
    (lo, hi)
}

/// Solves `p` with HiGHS in the given mode.
pub(crate) fn solve(
    p: &Problem,
    mode: Mode,
    backend: &'static str,
    opts: &SolveOptions,
    cancel: &CancelToken,
) -> Result<SolveResult> {
    let start = Instant::now();
    let deadline = Deadline::after(opts.time_limit);
    let n = p.vars.len();
    let mut costs = vec![0.0; n];
    let sense = match &p.objective {
        Some(o) => {
            for &(v, c) in &o.expr.terms {
                costs[v.0] += c;
            }
            match o.sense {
                Sense::Minimize => HSense::Minimise,
                Sense::Maximize => HSense::Maximise,
            }
        }
        None => HSense::Minimise,
    };
    let mut pb = RowProblem::default();
    let mut cols: Vec<Col> = Vec::with_capacity(n);
    for (v, cost) in p.vars.iter().zip(&costs) {
        let integer = v.kind != VarKind::Continuous && mode == Mode::Exact;
        let (lb, ub) = if v.kind == VarKind::Binary {
            (v.lb.max(0.0), v.ub.min(1.0))
        } else {
            (v.lb, v.ub)
        };
        if lb > ub {
            let mut r = SolveResult::new(backend, Status::Infeasible);
            r.reason = Some(format!(
                "variable '{}' has empty bounds [{lb}, {ub}]",
                v.name
            ));
            r.wall_time = start.elapsed();
            return Ok(r);
        }
        cols.push(pb.add_column_with_integrality(*cost, lb..=ub, integer));
    }
    let row = |e: &crate::encode::problem::LinExpr| -> Vec<(Col, f64)> {
        e.terms.iter().map(|&(v, c)| (cols[v.0], c)).collect()
    };
    for c in &p.constraints {
        let r = row(&c.expr);
        match c.cmp {
            Cmp::Le => pb.add_row(..=c.rhs, &r),
            Cmp::Ge => pb.add_row(c.rhs.., &r),
            Cmp::Eq => pb.add_row(c.rhs..=c.rhs, &r),
        }
    }
    let mut binaries = 0usize;
    for k in &p.constructs {
        match k {
            Construct::Relu { x, y, lb, ub } => {
                let (x, y, l, u) = (cols[x.0], cols[y.0], *lb, *ub);
                if l >= 0.0 {
                    pb.add_row(0.0..=0.0, [(y, 1.0), (x, -1.0)]);
                    continue;
                }
                if u <= 0.0 {
                    pb.add_row(0.0..=0.0, [(y, 1.0)]);
                    continue;
                }
                pb.add_row(0.0.., [(y, 1.0), (x, -1.0)]);
                pb.add_row(0.0.., [(y, 1.0)]);
                match mode {
                    Mode::Exact => {
                        let z = pb.add_integer_column(0.0, 0.0..=1.0);
                        binaries += 1;
                        // y ≤ x − l(1 − z)  ⇔  y − x − l z ≤ −l
                        pb.add_row(..=-l, [(y, 1.0), (x, -1.0), (z, -l)]);
                        // y ≤ u z
                        pb.add_row(..=0.0, [(y, 1.0), (z, -u)]);
                    }
                    Mode::Relaxed => {
                        let s = u / (u - l);
                        pb.add_row(..=-s * l, [(y, 1.0), (x, -s)]);
                    }
                }
            }
            Construct::Max { xs, y, lbs, ubs } => {
                let y = cols[y.0];
                let umax = ubs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let lmax = lbs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                for x in xs {
                    pb.add_row(0.0.., [(y, 1.0), (cols[x.0], -1.0)]);
                }
                pb.add_row(..=umax, [(y, 1.0)]);
                // y ≤ Σ (x_i − l_i) + max_i l_i, valid since max x ≤ x_k − l_k + Σ_{i≠k}(x_i − l_i) + l_k.
                let mut terms: Vec<(Col, f64)> = vec![(y, 1.0)];
                terms.extend(xs.iter().map(|x| (cols[x.0], -1.0)));
                pb.add_row(..=lmax - lbs.iter().sum::<f64>(), &terms);
                if mode == Mode::Exact {
                    let zs: Vec<Col> = xs
                        .iter()
                        .map(|_| pb.add_integer_column(0.0, 0.0..=1.0))
                        .collect();
                    binaries += zs.len();
                    let sel: Vec<(Col, f64)> = zs.iter().map(|&z| (z, 1.0)).collect();
                    pb.add_row(1.0..=1.0, &sel);
                    for ((x, &l), &z) in xs.iter().zip(lbs).zip(&zs) {
                        // y ≤ x_i + (U − l_i)(1 − z_i)
                        let m = umax - l;
                        pb.add_row(..=m, [(y, 1.0), (cols[x.0], -1.0), (z, m)]);
                    }
                }
            }
            Construct::Indicator {
                b,
                active,
                constraint,
            } => {
                let (lo, hi) = expr_range(p, &constraint.expr);
                let r0 = row(&constraint.expr);
                let b = cols[b.0];
                // on = b if active, 1 − b otherwise; the constraint is relaxed by M·(1 − on).
                let mut add = |upper: bool| -> Result<()> {
                    let m = if upper {
                        hi - constraint.rhs
                    } else {
                        constraint.rhs - lo
                    };
                    if !m.is_finite() {
                        return Err(Error::InvalidArgument(format!(
                            "indicator '{}' needs a bounded expression for its big-M",
                            constraint.name
                        )));
                    }
                    let m = m.max(0.0);
                    let mut r = r0.clone();
                    if upper {
                        // expr ≤ rhs + M(1 − on)
                        if *active {
                            r.push((b, m));
                            pb.add_row(..=constraint.rhs + m, &r);
                        } else {
                            r.push((b, -m));
                            pb.add_row(..=constraint.rhs, &r);
                        }
                    } else if *active {
                        // expr ≥ rhs − M(1 − b)
                        r.push((b, -m));
                        pb.add_row(constraint.rhs - m.., &r);
                    } else {
                        // expr ≥ rhs − M b
                        r.push((b, m));
                        pb.add_row(constraint.rhs.., &r);
                    }
                    Ok(())
                };
                match constraint.cmp {
                    Cmp::Le => add(true)?,
                    Cmp::Ge => add(false)?,
                    Cmp::Eq => {
                        add(true)?;
                        add(false)?;
                    }
                }
            }
            Construct::Sigmoid { x, y, lb, ub } | Construct::Tanh { x, y, lb, ub } => {
                if mode == Mode::Exact {
                    return Err(Error::InvalidArgument(
                        "the MILP cannot encode Sigmoid/Tanh exactly; use z3 or the LP relaxation"
                            .into(),
                    ));
                }
                let shape = if matches!(k, Construct::Sigmoid { .. }) {
                    SShape::Sigmoid
                } else {
                    SShape::Tanh
                };
                // The sound linear envelope (encode::relax); with unbounded x
                // only the function's range is left.
                let (y, x) = (cols[y.0], cols[x.0]);
                let lines = envelope(shape, *lb, *ub);
                if lines.is_empty() {
                    let lo = if shape == SShape::Sigmoid { 0.0 } else { -1.0 };
                    pb.add_row(lo..=1.0, [(y, 1.0)]);
                }
                for line in lines {
                    // y − a x ≤ b (upper) or ≥ b (lower).
                    if line.upper {
                        pb.add_row(..=line.b, [(y, 1.0), (x, -line.a)]);
                    } else {
                        pb.add_row(line.b.., [(y, 1.0), (x, -line.a)]);
                    }
                }
            }
        }
    }
    let mut model = pb.optimise(sense);
    if std::env::var_os("NNX_HIGHS_LOG").is_some() {
        model.set_option("output_flag", true);
        model.set_option("log_to_console", true);
    } else {
        model.make_quiet();
    }
    model.set_option("threads", opts.threads.max(1) as i32);
    model.set_option("random_seed", (opts.seed % (i32::MAX as u64)) as i32);
    if let Some(rem) = deadline.remaining() {
        model.set_option("time_limit", rem.as_secs_f64().max(1e-3));
    }
    let job = Job {
        model: SendModel(model),
        n,
        binaries,
        is_mip: binaries > 0 || (mode == Mode::Exact && p.integer_count() > 0),
        has_objective: p.objective.is_some(),
        backend,
        watch: Watch {
            cancel: cancel.clone(),
            deadline,
        },
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::Builder::new()
        .name(format!("{backend}-highs"))
        .spawn(move || {
            let _ = tx.send(job.run());
        })
        .map_err(|e| Error::InvalidArgument(format!("cannot start the solver thread: {e}")))?;
    // HiGHS checks its time limit and the interrupt callback only at some points
    // (not inside presolve): the engine keeps its own clock and, once the limit
    // or the cancel token has passed and a grace period expired, answers without
    // waiting; the solver thread then stops at its next interrupt check.
    let mut stop_seen: Option<Instant> = None;
    loop {
        match rx.recv_timeout(POLL) {
            Ok(mut r) => {
                let _ = worker.join();
                r.wall_time = start.elapsed();
                return Ok(r);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let mut r = SolveResult::new(backend, Status::Error);
                r.reason = Some("the HiGHS thread ended without an answer".into());
                r.wall_time = start.elapsed();
                return Ok(r);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if deadline.should_stop(cancel) {
            let seen = *stop_seen.get_or_insert_with(Instant::now);
            if seen.elapsed() >= GRACE {
                let status = if cancel.is_cancelled() {
                    Status::Cancelled
                } else {
                    Status::Timeout
                };
                let mut r = SolveResult::new(backend, status);
                r.reason = Some(format!(
                    "HiGHS did not stop within {} ms of the {}; answered without it (its thread stops at its next interrupt check)",
                    GRACE.as_millis(),
                    if status == Status::Cancelled { "cancellation" } else { "time limit" }
                ));
                r.stats
                    .insert("overshoot_s".into(), deadline.overshoot().as_secs_f64());
                r.stats.insert("abandoned_solver_thread".into(), 1.0);
                crate::solve::note_abandoned_thread();
                r.wall_time = start.elapsed();
                return Ok(r);
            }
        }
    }
}

/// How often the engine looks at the solver thread, the deadline and the token.
const POLL: Duration = Duration::from_millis(5);
/// How long past the limit (or a cancel) the engine waits for HiGHS to stop by itself.
const GRACE: Duration = Duration::from_millis(100);

/// A HiGHS model moved to the solver thread.
struct SendModel(highs::Model);

// SAFETY: a Highs instance has no thread affinity; it is moved to the solver
// thread before use and only that thread touches it afterwards.
unsafe impl Send for SendModel {}

/// Everything the solver thread needs.
struct Job {
    model: SendModel,
    n: usize,
    binaries: usize,
    is_mip: bool,
    has_objective: bool,
    backend: &'static str,
    watch: Watch,
}

impl Job {
    fn run(self) -> SolveResult {
        let Job {
            model: SendModel(mut model),
            n,
            binaries,
            is_mip,
            has_objective,
            backend,
            watch,
        } = self;
        let watch = Box::new(watch);
        // SAFETY: `model` owns a live Highs instance; `watch` is boxed and lives
        // until after `try_solve` returns; the callback only reads it.
        unsafe {
            let ptr = model.as_mut_ptr();
            highs_sys::Highs_setCallback(
                ptr,
                Some(interrupt),
                &*watch as *const Watch as *mut c_void,
            );
            for kind in [CB_SIMPLEX_INTERRUPT, CB_IPM_INTERRUPT, CB_MIP_INTERRUPT] {
                highs_sys::Highs_startCallback(ptr, kind);
            }
        }
        let solved = match model.try_solve() {
            Ok(s) => s,
            Err(e) => {
                let mut r = SolveResult::new(backend, Status::Error);
                r.reason = Some(format!("HiGHS refused the model: {e:?}"));
                return r;
            }
        };
        let ptr = solved.as_ptr();
        // SAFETY: `ptr` is the solved, live Highs instance.
        let raw = unsafe { highs_sys::Highs_getModelStatus(ptr) } as c_int;
        let has_point = info_i32(ptr, "primal_solution_status") == Some(SOLUTION_FEASIBLE as i64);
        let stopped = if watch.cancel.is_cancelled() {
            Status::Cancelled
        } else {
            Status::Timeout
        };
        let (status, reason) = match raw {
            MS_OPTIMAL => (Status::Optimal, None),
            MS_INFEASIBLE => (Status::Infeasible, None),
            MS_UNBOUNDED_OR_INFEASIBLE | MS_UNBOUNDED => (
                Status::Unknown,
                Some("HiGHS: unbounded (or infeasible)".to_string()),
            ),
            MS_OBJECTIVE_BOUND | MS_OBJECTIVE_TARGET | MS_SOLUTION_LIMIT => (
                if has_point {
                    Status::Feasible
                } else {
                    Status::Unknown
                },
                Some(format!("HiGHS model status {raw}")),
            ),
            MS_TIME_LIMIT | MS_INTERRUPT | MS_HIGHS_INTERRUPT => {
                (stopped, Some(format!("HiGHS stopped (model status {raw})")))
            }
            MS_ITERATION_LIMIT => (Status::Unknown, Some("HiGHS iteration limit".into())),
            MS_MEMORY_LIMIT => (Status::Error, Some("HiGHS memory limit".into())),
            other => (Status::Error, Some(format!("HiGHS model status {other}"))),
        };
        let mut r = SolveResult::new(backend, status);
        r.reason = reason;
        if has_point {
            let sol = solved.get_solution();
            let cols_v = sol.columns();
            r.assignment = Some(cols_v[..n.min(cols_v.len())].to_vec());
            r.objective = has_objective.then(|| solved.objective_value());
        }
        if is_mip {
            if has_objective {
                r.bound = info_f64(ptr, "mip_dual_bound");
                r.gap = info_f64(ptr, "mip_gap");
            }
            if let Some(nodes) = info_i64(ptr, "mip_node_count") {
                r.stats.insert("nodes".into(), nodes as f64);
            }
        } else if status == Status::Optimal && has_objective {
            r.bound = r.objective;
            r.gap = Some(0.0);
        }
        if let Some(it) = info_i32(ptr, "simplex_iteration_count") {
            r.stats.insert("simplex_iterations".into(), it as f64);
        }
        r.stats.insert("columns".into(), (n + binaries) as f64);
        r.stats.insert("binaries".into(), binaries as f64);
        r.stats.insert(
            "overshoot_s".into(),
            watch.deadline.overshoot().as_secs_f64(),
        );
        drop(solved);
        drop(watch);
        r
    }
}
