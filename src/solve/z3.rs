//! The SMT backend on z3: linear real arithmetic with one `ite` per ReLU.
//!
//! Every coefficient and bound is handed to z3 as the exact rational value of
//! its f64 (`m · 2^e`), so on piecewise-linear problems the answer is exact in
//! rational arithmetic:
//!
//! * ReLU `y = max(0, x)`: `y = ite(x ≥ 0, x, 0)`, plus the valid cuts
//!   `y ≥ x`, `y ≥ 0`, `(u − l) y ≤ u (x − l)` from the pre-activation bounds,
//!   which let z3's simplex prune before case-splitting (Katz et al. 2017 use
//!   the same bounds in Reluplex); stable ReLUs (`l ≥ 0` or `u ≤ 0`) are linear;
//! * max: `y ≥ x_i` for all `i` and `⋁_i y = x_i`;
//! * indicator: `(b = active) ⇒ constraint`;
//! * Sigmoid and Tanh: z3's arithmetic has no `exp`, so they are enclosed by
//!   the sound linear envelope of [`crate::encode::relax`]. An `unsat` is
//!   then a proof; a model is kept only when it satisfies the exact
//!   activations within [`NONLINEAR_TOL`], and is otherwise reported as
//!   `Unknown` (a point of the envelope, not of the network).
//!
//! Feasibility problems use z3's `Solver`, problems with an objective its
//! `Optimize` (νZ). z3 runs in its own thread with its own `timeout`
//! parameter; the engine keeps the wall clock too, interrupts z3 through
//! `Z3_interrupt` at the deadline or on cancel, and answers without it if z3
//! has not stopped within [`GRACE`] (z3's own limits are known to be missed:
//! Optimize has run 163 s on a 120 s limit).
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::z3::ast::{Bool, Int, Real};
use ::z3::{Context, Optimize, Params, SatResult, Solver, StatisticsValue};

use super::{Backend, CancelToken, Deadline, SolveOptions, SolveResult, Status};
use crate::encode::problem::{Cmp, Construct, LinExpr, Problem, Sense, VarKind};
use crate::encode::relax::{envelope, SShape};
use crate::{Error, Result};

/// Largest violation of a Sigmoid/Tanh construct for a z3 model of the
/// envelope to count as a solution of the problem.
pub const NONLINEAR_TOL: f64 = 1e-6;
/// How often the engine looks at the solver thread, the deadline and the token.
const POLL: Duration = Duration::from_millis(5);
/// How long past the limit (or a cancel) the engine waits for z3 to stop after
/// interrupting it.
const GRACE: Duration = Duration::from_millis(200);

/// z3 on the problem's LRA (LIRA with integers) encoding; exact for
/// piecewise-linear problems.
#[derive(Clone, Copy, Debug, Default)]
pub struct Z3;

impl Backend for Z3 {
    fn name(&self) -> &'static str {
        "z3"
    }
    fn supports(&self, _p: &Problem) -> Result<()> {
        Ok(())
    }
    fn solve(&self, p: &Problem, opts: &SolveOptions, cancel: &CancelToken) -> Result<SolveResult> {
        solve(p, opts, cancel)
    }
}

/// A z3 context pointer handed to the watching thread for `Z3_interrupt`.
#[derive(Clone, Copy)]
struct RawContext(z3_sys::Z3_context);

// SAFETY: `Z3_interrupt` is the one z3 call documented as safe from another
// thread; the pointer is only used for it, and only while the solver thread
// has it registered (it is cleared, under the same mutex, before the context
// can be dropped).
unsafe impl Send for RawContext {}

type Handle = Arc<Mutex<Option<RawContext>>>;

fn solve(p: &Problem, opts: &SolveOptions, cancel: &CancelToken) -> Result<SolveResult> {
    let start = Instant::now();
    let deadline = Deadline::after(opts.time_limit);
    let handle: Handle = Arc::new(Mutex::new(None));
    let (tx, rx) = std::sync::mpsc::channel();
    let job = {
        let p = p.clone();
        let handle = handle.clone();
        let seed = opts.seed;
        move || {
            let r = run(&p, deadline, seed, &handle);
            // The context is thread-local and lives until the thread ends;
            // the watcher must not interrupt it after this point.
            if let Ok(mut h) = handle.lock() {
                *h = None;
            }
            let _ = tx.send(r);
        }
    };
    let worker = std::thread::Builder::new()
        .name("z3".into())
        .spawn(job)
        .map_err(|e| Error::InvalidArgument(format!("cannot start the z3 thread: {e}")))?;
    let mut stop_seen: Option<Instant> = None;
    loop {
        match rx.recv_timeout(POLL) {
            Ok(r) => {
                let _ = worker.join();
                let mut r = r?;
                r.wall_time = start.elapsed();
                if deadline.should_stop(cancel) && !is_conclusive(r.status) {
                    r.status = stopped(cancel);
                }
                r.stats
                    .insert("overshoot_s".into(), deadline.overshoot().as_secs_f64());
                return Ok(r);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let mut r = SolveResult::new("z3", Status::Error);
                r.reason = Some("the z3 thread ended without an answer".into());
                r.wall_time = start.elapsed();
                return Ok(r);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if deadline.should_stop(cancel) {
            if stop_seen.is_none() {
                stop_seen = Some(Instant::now());
                if let Ok(h) = handle.lock() {
                    if let Some(RawContext(ctx)) = *h {
                        // SAFETY: see `RawContext`; the mutex is held, so the
                        // solver thread cannot have released the context.
                        unsafe { z3_sys::Z3_interrupt(ctx) };
                    }
                }
            }
            if stop_seen.is_some_and(|s| s.elapsed() >= GRACE) {
                let status = stopped(cancel);
                let mut r = SolveResult::new("z3", status);
                r.reason = Some(format!(
                    "z3 did not stop within {} ms of being interrupted; answered without it",
                    GRACE.as_millis()
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

fn is_conclusive(s: Status) -> bool {
    matches!(s, Status::Optimal | Status::Infeasible)
}

fn stopped(cancel: &CancelToken) -> Status {
    if cancel.is_cancelled() {
        Status::Cancelled
    } else {
        Status::Timeout
    }
}

/// The rational `n / d`, through `Z3_mk_numeral` (libz3 before 4.12 has no
/// `Z3_mk_real_int64`, which the crate's `Real::from_rational` calls).
fn rat(n: i64, d: i64) -> Real {
    Real::from_rational_str(&n.to_string(), &d.to_string()).unwrap_or_else(zero)
}

fn zero() -> Real {
    Real::from_int(&Int::from_i64(0))
}

/// Exact rationals of f64 values, with the powers of two cached.
#[derive(Default)]
struct Numerals {
    pow2: HashMap<u32, String>,
}

impl Numerals {
    /// The exact rational value of a finite `v`.
    fn real(&mut self, v: f64) -> Real {
        debug_assert!(v.is_finite());
        if v == 0.0 {
            return rat(0, 1);
        }
        let bits = v.abs().to_bits();
        let exp = ((bits >> 52) & 0x7ff) as i32;
        let frac = bits & ((1u64 << 52) - 1);
        // v = ±m · 2^e.
        let (mut m, mut e) = if exp == 0 {
            (frac, -1074)
        } else {
            (frac | (1u64 << 52), exp - 1075)
        };
        let tz = m.trailing_zeros().min((-e).max(0) as u32);
        m >>= tz;
        e += tz as i32;
        let sign = if v < 0.0 { "-" } else { "" };
        if e >= 0 {
            let e = e as u32;
            if e < 64 {
                let n = (m as u128) << e;
                return if n <= i64::MAX as u128 {
                    rat(if v < 0.0 { -(n as i64) } else { n as i64 }, 1)
                } else {
                    Real::from_rational_str(&format!("{sign}{n}"), "1").unwrap_or_else(zero)
                };
            }
            let p = self.pow2(e).to_string();
            let num = mul_decimal(&p, m);
            return Real::from_rational_str(&format!("{sign}{num}"), "1").unwrap_or_else(zero);
        }
        let k = (-e) as u32;
        if k <= 62 {
            let mi = m as i64;
            return rat(if v < 0.0 { -mi } else { mi }, 1i64 << k);
        }
        let den = self.pow2(k).to_string();
        Real::from_rational_str(&format!("{sign}{m}"), &den).unwrap_or_else(zero)
    }

    fn pow2(&mut self, k: u32) -> &str {
        self.pow2.entry(k).or_insert_with(|| {
            let mut digits = vec![1u8]; // little-endian decimal digits
            for _ in 0..k {
                let mut carry = 0u8;
                for d in digits.iter_mut() {
                    let v = *d * 2 + carry;
                    *d = v % 10;
                    carry = v / 10;
                }
                if carry > 0 {
                    digits.push(carry);
                }
            }
            digits.iter().rev().map(|d| (b'0' + d) as char).collect()
        })
    }
}

/// `p · m` for a decimal string `p`.
fn mul_decimal(p: &str, m: u64) -> String {
    let mut digits: Vec<u128> = p.bytes().rev().map(|b| (b - b'0') as u128).collect();
    let mut carry = 0u128;
    for d in digits.iter_mut() {
        let v = *d * m as u128 + carry;
        *d = v % 10;
        carry = v / 10;
    }
    while carry > 0 {
        digits.push(carry % 10);
        carry /= 10;
    }
    digits
        .iter()
        .rev()
        .map(|d| (b'0' + *d as u8) as char)
        .collect()
}

/// The z3 terms of a problem.
struct Lowered {
    /// Each variable as a real term (integers through `to_real`).
    views: Vec<Real>,
    ints: Vec<Option<Int>>,
    assertions: Vec<Bool>,
    objective: Option<(Sense, Real)>,
    relaxed: usize,
}

fn lower(p: &Problem) -> Result<Lowered> {
    let mut num = Numerals::default();
    let mut views = Vec::with_capacity(p.vars.len());
    let mut ints = Vec::with_capacity(p.vars.len());
    let mut assertions = Vec::new();
    for (i, v) in p.vars.iter().enumerate() {
        let name = format!("v{i}_{}", v.name);
        let (lb, ub) = if v.kind == VarKind::Binary {
            (v.lb.max(0.0), v.ub.min(1.0))
        } else {
            (v.lb, v.ub)
        };
        if lb.is_nan() || ub.is_nan() {
            return Err(Error::InvalidArgument(format!(
                "variable '{}' has a NaN bound",
                v.name
            )));
        }
        let view = if v.kind == VarKind::Continuous {
            ints.push(None);
            Real::new_const(name)
        } else {
            let iv = Int::new_const(name);
            let r = Real::from_int(&iv);
            ints.push(Some(iv));
            r
        };
        if lb.is_finite() {
            assertions.push(view.ge(num.real(lb)));
        }
        if ub.is_finite() {
            assertions.push(view.le(num.real(ub)));
        }
        views.push(view);
    }
    let expr = |num: &mut Numerals, e: &LinExpr| -> Result<Real> {
        let mut parts: Vec<Real> = Vec::with_capacity(e.terms.len() + 1);
        for &(v, c) in &e.terms {
            if !c.is_finite() {
                return Err(Error::InvalidArgument(format!(
                    "coefficient {c} on '{}' is not finite",
                    p.vars[v.0].name
                )));
            }
            if c == 1.0 {
                parts.push(views[v.0].clone());
            } else if c != 0.0 {
                parts.push(Real::mul(&[num.real(c), views[v.0].clone()]));
            }
        }
        if e.constant != 0.0 {
            parts.push(num.real(e.constant));
        }
        Ok(match parts.len() {
            0 => rat(0, 1),
            1 => parts.pop().unwrap_or_else(zero),
            _ => Real::add(&parts),
        })
    };
    let finite = |v: f64, what: &str| -> Result<f64> {
        if v.is_finite() {
            Ok(v)
        } else {
            Err(Error::InvalidArgument(format!("{what} {v} is not finite")))
        }
    };
    for c in &p.constraints {
        let lhs = expr(&mut num, &c.expr)?;
        let rhs = num.real(finite(c.rhs, &format!("right-hand side of '{}'", c.name))?);
        assertions.push(match c.cmp {
            Cmp::Le => lhs.le(&rhs),
            Cmp::Ge => lhs.ge(&rhs),
            Cmp::Eq => lhs.eq(&rhs),
        });
    }
    let zero = rat(0, 1);
    let mut relaxed = 0;
    for k in &p.constructs {
        match k {
            Construct::Relu { x, y, lb, ub } => {
                let (xv, yv) = (&views[x.0], &views[y.0]);
                if *lb >= 0.0 {
                    assertions.push(yv.eq(xv));
                } else if *ub <= 0.0 {
                    assertions.push(yv.eq(&zero));
                } else {
                    assertions.push(yv.eq(xv.ge(&zero).ite(xv, &zero)));
                    assertions.push(yv.ge(xv));
                    assertions.push(yv.ge(&zero));
                    if ub.is_finite() && lb.is_finite() {
                        let (l, u) = (num.real(*lb), num.real(*ub));
                        assertions.push(xv.ge(&l));
                        assertions.push(xv.le(&u));
                        // (u − l) y ≤ u (x − l)
                        let lhs = Real::mul(&[Real::sub(&[u.clone(), l.clone()]), yv.clone()]);
                        let rhs = Real::mul(&[u, Real::sub(&[xv.clone(), l])]);
                        assertions.push(lhs.le(&rhs));
                    }
                }
            }
            Construct::Max { xs, y, .. } => {
                let yv = &views[y.0];
                let mut alts = Vec::with_capacity(xs.len());
                for x in xs {
                    assertions.push(yv.ge(&views[x.0]));
                    alts.push(yv.eq(&views[x.0]));
                }
                assertions.push(Bool::or(&alts));
            }
            Construct::Indicator {
                b,
                active,
                constraint,
            } => {
                let bv = ints[b.0].as_ref().ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "indicator on '{}', which is not a binary variable",
                        p.vars[b.0].name
                    ))
                })?;
                let on = bv.eq(Int::from_i64(i64::from(*active)));
                let lhs = expr(&mut num, &constraint.expr)?;
                let rhs = num.real(finite(
                    constraint.rhs,
                    &format!("right-hand side of '{}'", constraint.name),
                )?);
                let c = match constraint.cmp {
                    Cmp::Le => lhs.le(&rhs),
                    Cmp::Ge => lhs.ge(&rhs),
                    Cmp::Eq => lhs.eq(&rhs),
                };
                assertions.push(on.implies(&c));
            }
            Construct::Sigmoid { x, y, lb, ub } | Construct::Tanh { x, y, lb, ub } => {
                relaxed += 1;
                let shape = if matches!(k, Construct::Sigmoid { .. }) {
                    SShape::Sigmoid
                } else {
                    SShape::Tanh
                };
                let (xv, yv) = (&views[x.0], &views[y.0]);
                let lo = if shape == SShape::Sigmoid { 0 } else { -1 };
                assertions.push(yv.ge(rat(lo, 1)));
                assertions.push(yv.le(rat(1, 1)));
                for line in envelope(shape, *lb, *ub) {
                    let rhs =
                        Real::add(&[Real::mul(&[num.real(line.a), xv.clone()]), num.real(line.b)]);
                    assertions.push(if line.upper { yv.le(&rhs) } else { yv.ge(&rhs) });
                }
            }
        }
    }
    let objective = match &p.objective {
        Some(o) => Some((o.sense, expr(&mut num, &o.expr)?)),
        None => None,
    };
    Ok(Lowered {
        views,
        ints,
        assertions,
        objective,
        relaxed,
    })
}

/// The f64 nearest a z3 numeral.
fn value_of(r: &Real) -> Option<f64> {
    if let Some((n, d)) = r.as_rational() {
        return Some(n as f64 / d as f64);
    }
    r.approx(20).parse::<f64>().ok()
}

fn params(remaining: Option<Duration>, seed: u64) -> Params {
    let mut prm = Params::new();
    if let Some(rem) = remaining {
        prm.set_u32("timeout", rem.as_millis().clamp(1, u32::MAX as u128) as u32);
    }
    prm.set_u32("random_seed", (seed % u32::MAX as u64) as u32);
    prm
}

/// The solver thread: lower, register the context for interrupts, check.
fn run(p: &Problem, deadline: Deadline, seed: u64, handle: &Handle) -> Result<SolveResult> {
    let ctx = Context::thread_local();
    if let Ok(mut h) = handle.lock() {
        *h = Some(RawContext(ctx.get_z3_context()));
    }
    let t_lower = Instant::now();
    let low = lower(p)?;
    let mut r = SolveResult::new("z3", Status::Unknown);
    r.stats
        .insert("lower_s".into(), t_lower.elapsed().as_secs_f64());
    r.stats
        .insert("assertions".into(), low.assertions.len() as f64);
    r.stats
        .insert("relaxed_nonlinear".into(), low.relaxed as f64);
    if deadline.expired() {
        r.status = Status::Timeout;
        r.reason = Some("the time limit passed while encoding".into());
        return Ok(r);
    }
    let read_model = |m: &::z3::Model| -> Option<Vec<f64>> {
        low.views
            .iter()
            .zip(&low.ints)
            .map(|(v, i)| match i {
                Some(iv) => m.eval(iv, true).and_then(|x| x.as_i64()).map(|x| x as f64),
                None => m.eval(v, true).as_ref().and_then(value_of),
            })
            .collect()
    };
    let (sat, model, reason, stats) = match &low.objective {
        None => {
            let s = Solver::new();
            s.set_params(&params(deadline.remaining(), seed));
            for a in &low.assertions {
                s.assert(a);
            }
            let res = s.check();
            let model = (res == SatResult::Sat)
                .then(|| s.get_model())
                .flatten()
                .and_then(|m| read_model(&m));
            (res, model, s.get_reason_unknown(), s.get_statistics())
        }
        Some((sense, obj)) => {
            let o = Optimize::new();
            o.set_params(&params(deadline.remaining(), seed));
            for a in &low.assertions {
                o.assert(a);
            }
            match sense {
                Sense::Minimize => o.minimize(obj),
                Sense::Maximize => o.maximize(obj),
            }
            let res = o.check(&[]);
            // After a timeout νZ may still hold the best model found so far.
            let model = if res == SatResult::Unsat {
                None
            } else {
                o.get_model().and_then(|m| read_model(&m))
            };
            let bound = match sense {
                Sense::Minimize => o.get_lower(0),
                Sense::Maximize => o.get_upper(0),
            };
            r.bound = bound
                .and_then(|b| {
                    b.as_real()
                        .or_else(|| b.as_int().map(|i| Real::from_int(&i)))
                })
                .as_ref()
                .and_then(value_of)
                .filter(|b| b.is_finite());
            (res, model, o.get_reason_unknown(), o.get_statistics())
        }
    };
    for e in stats.entries() {
        let v = match e.value {
            StatisticsValue::UInt(u) => u as f64,
            StatisticsValue::Double(d) => d,
        };
        if matches!(
            e.key.as_str(),
            "decisions" | "conflicts" | "arith-pivots" | "propagations" | "max memory" | "memory"
        ) {
            r.stats.insert(e.key.replace([' ', '-'], "_"), v);
        }
    }
    let timed_out = deadline.expired();
    match sat {
        SatResult::Unsat => r.status = Status::Infeasible,
        SatResult::Sat | SatResult::Unknown => {
            let exact = model.as_ref().is_some_and(|x| {
                p.constructs
                    .iter()
                    .filter(|c| c.is_nonlinear())
                    .all(|c| c.violation(x) <= NONLINEAR_TOL)
            });
            r.status = match (sat, exact) {
                (SatResult::Sat, true) => Status::Optimal,
                (SatResult::Unknown, true) if low.objective.is_some() => Status::Feasible,
                (SatResult::Sat, false) if model.is_some() => {
                    r.reason = Some(format!(
                        "z3 found a point of the Sigmoid/Tanh envelope that misses the exact activation by more than {NONLINEAR_TOL}"
                    ));
                    Status::Unknown
                }
                _ if timed_out => Status::Timeout,
                _ => Status::Unknown,
            };
            if r.reason.is_none() && sat == SatResult::Unknown {
                r.reason = reason;
            }
            if exact {
                r.objective = p
                    .objective
                    .as_ref()
                    .zip(model.as_ref())
                    .map(|(o, x)| o.expr.eval(x));
                r.assignment = model;
                if r.status == Status::Optimal && r.objective.is_some() {
                    r.bound = r.objective;
                }
                if let (Some(o), Some(b)) = (r.objective, r.bound) {
                    r.gap = Some((o - b).abs() / o.abs().max(1e-9));
                }
            }
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::problem::{Objective, Var};
    use ::z3::ast::Ast;

    #[test]
    fn numerals_are_exact() {
        let mut n = Numerals::default();
        for v in [
            0.1f64,
            -0.1,
            1e-30,
            -3.5e-300,
            f64::MIN_POSITIVE,
            5e-324,
            1e30,
            -7.25,
            123456789.0,
            (0.3f32) as f64,
        ] {
            let r = n.real(v);
            // Rust prints the exact binary value given enough digits.
            let exact = format!("{v:.1100}");
            let (int, frac) = exact.split_once('.').unwrap();
            let den = format!("1{}", "0".repeat(frac.len()));
            let d = Real::from_rational_str(&format!("{int}{frac}"), &den).unwrap();
            assert_eq!(r.eq(&d).simplify().as_bool(), Some(true), "{v}");
        }
        assert_eq!(n.real(0.5).as_rational(), Some((1, 2)));
        assert_eq!(n.real(-3.0).as_rational(), Some((-3, 1)));
        assert_eq!(
            n.real(0.1).as_rational(),
            Some((3602879701896397, 36028797018963968))
        );
    }

    fn relu_problem() -> (Problem, Var, Var) {
        let mut p = Problem::new("t");
        let x = p.add_var("x", VarKind::Continuous, -1.0, 2.0);
        let y = p.add_var("y", VarKind::Continuous, f64::NEG_INFINITY, f64::INFINITY);
        p.constructs.push(Construct::Relu {
            x,
            y,
            lb: -1.0,
            ub: 2.0,
        });
        (p, x, y)
    }

    #[test]
    fn relu_feasibility_and_optimisation() {
        let (mut p, x, y) = relu_problem();
        p.add_constraint("c", LinExpr::var(y), Cmp::Ge, 1.5);
        let r = Z3
            .solve(&p, &SolveOptions::default(), &CancelToken::new())
            .unwrap();
        assert_eq!(r.status, Status::Optimal);
        let a = r.assignment.unwrap();
        assert!(p.max_violation(&a) < 1e-9, "{a:?}");
        p.add_constraint("d", LinExpr::var(x), Cmp::Le, 1.0);
        let r = Z3
            .solve(&p, &SolveOptions::default(), &CancelToken::new())
            .unwrap();
        assert_eq!(r.status, Status::Infeasible);

        let (mut p, x, y) = relu_problem();
        let mut e = LinExpr::var(y);
        e.add_scaled(&LinExpr::var(x), -0.5);
        p.objective = Some(Objective {
            sense: Sense::Minimize,
            expr: e,
        });
        let r = Z3
            .solve(&p, &SolveOptions::default(), &CancelToken::new())
            .unwrap();
        assert_eq!(r.status, Status::Optimal);
        // y − x/2 is 0.5 at x = −1 and 0 at x = 0, 0 at... minimum −0.0 vs x=2: 1.
        // min over x of max(0,x) − x/2: x<0 gives −x/2 > 0, x ≥ 0 gives x/2 ≥ 0; so 0.
        assert!(r.objective.unwrap().abs() < 1e-12);
        assert_eq!(r.bound, r.objective);
    }

    #[test]
    fn sigmoid_through_the_envelope() {
        let mut p = Problem::new("s");
        let x = p.add_var("x", VarKind::Continuous, -2.0, 2.0);
        let y = p.add_var("y", VarKind::Continuous, 0.0, 1.0);
        p.constructs.push(Construct::Sigmoid {
            x,
            y,
            lb: -2.0,
            ub: 2.0,
        });
        // σ(x) ≥ 0.95 needs x ≥ 2.94 > 2: unsat, and the envelope proves it.
        p.add_constraint("c", LinExpr::var(y), Cmp::Ge, 0.95);
        let r = Z3
            .solve(&p, &SolveOptions::default(), &CancelToken::new())
            .unwrap();
        assert_eq!(r.status, Status::Infeasible);
    }

    #[test]
    fn cancel_is_honoured() {
        let (p, _, _) = relu_problem();
        let c = CancelToken::new();
        c.cancel();
        let r = Z3.solve(&p, &SolveOptions::default(), &c).unwrap();
        // A tiny problem may finish before the token is seen; it is never an error.
        assert!(
            matches!(r.status, Status::Optimal | Status::Cancelled),
            "{:?}",
            r.status
        );
    }
}
