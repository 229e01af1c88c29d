//! Backends: each lowers the solver-neutral [`Problem`] its own way and returns
//! the same [`SolveResult`] record.
//!
//! | backend | feature | exact? | constructs | how it stops |
//! |---|---|---|---|---|
//! | [`milp::Milp`] (HiGHS) | `highs` | yes (ReLU, max, indicator by big-M) | no Sigmoid/Tanh | `time_limit` + interrupt callback polling the cancel token and deadline |
//! | [`lp::LpRelaxation`] (HiGHS) | `highs` | no: a bound; infeasible ⇒ infeasible | all (triangle relaxation; Sigmoid/Tanh by the sound envelope of `encode::relax`) | same |
//! | [`z3::Z3`] | `z3` | yes (LRA, `ite` per ReLU; exact rationals) | all (Sigmoid/Tanh through the sound envelope: unsat is a proof, a model must meet the exact activation) | z3 `timeout` + `Z3_interrupt` from the engine's watcher |
//! | [`bab::input_split`] | — | yes (complete search) | networks with few inputs; works on the network, not a `Problem` | checks the deadline and token between boxes |
//! | [`attack::pgd`] | — | no: can only find counterexamples | any differentiable network | checks the deadline and token every step |
//!
//! Infeasibility is an answer ([`Status::Infeasible`]), not an error.

pub mod attack;
pub mod bab;
pub mod cancel;
#[cfg(feature = "highs")]
pub mod highs_model;
#[cfg(feature = "highs")]
pub mod lp;
#[cfg(feature = "highs")]
pub mod milp;
pub mod portfolio;
#[cfg(feature = "z3")]
pub mod z3;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

pub use cancel::{CancelToken, Deadline};

use crate::encode::Problem;
use crate::Result;

/// How a solve ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A solution proven optimal (for a feasibility problem: a feasible point).
    Optimal,
    /// A feasible solution whose optimality is not proven (gap > 0).
    Feasible,
    /// Proven infeasible.
    Infeasible,
    /// The backend could not decide (an incomplete method, or a solver's own "unknown").
    Unknown,
    /// The time limit was reached; the incumbent and bound, if any, are kept.
    Timeout,
    /// Stopped by the cancel token.
    Cancelled,
    /// The backend failed; see the reason.
    Error,
}

impl Status {
    /// The name used in JSON and CSV (`optimal`, `timeout`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Optimal => "optimal",
            Status::Feasible => "feasible",
            Status::Infeasible => "infeasible",
            Status::Unknown => "unknown",
            Status::Timeout => "timeout",
            Status::Cancelled => "cancelled",
            Status::Error => "error",
        }
    }
}

/// The same record from every backend.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct SolveResult {
    /// Which backend produced it.
    pub backend: &'static str,
    /// How the solve ended.
    pub status: Status,
    /// Objective of the best solution found.
    pub objective: Option<f64>,
    /// Best proven bound on the objective.
    pub bound: Option<f64>,
    /// Relative gap between objective and bound.
    pub gap: Option<f64>,
    /// The best solution found, one value per problem variable.
    pub assignment: Option<Vec<f64>>,
    /// Wall time of the solve.
    #[serde(serialize_with = "secs")]
    pub wall_time: Duration,
    /// Why the solver stopped, when it says (error text, "time limit", …).
    pub reason: Option<String>,
    /// Solver statistics: nodes, iterations, deadline overshoot (s), sizes.
    pub stats: BTreeMap<String, f64>,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl SolveResult {
    /// An empty record for `backend` with `status`.
    pub fn new(backend: &'static str, status: Status) -> SolveResult {
        SolveResult {
            backend,
            status,
            objective: None,
            bound: None,
            gap: None,
            assignment: None,
            wall_time: Duration::ZERO,
            reason: None,
            stats: BTreeMap::new(),
        }
    }
}

/// Limits of one solve.
#[derive(Clone, Debug)]
pub struct SolveOptions {
    /// Wall-clock limit (enforced by the engine as well as by the solver).
    pub time_limit: Option<Duration>,
    /// Random seed handed to the solver.
    pub seed: u64,
    /// Threads the solver may use.
    pub threads: usize,
}

impl Default for SolveOptions {
    fn default() -> Self {
        SolveOptions {
            time_limit: None,
            seed: 0,
            threads: 1,
        }
    }
}

/// A solver backend. Object-safe, so that a portfolio can hold several.
pub trait Backend: Send + Sync {
    /// A short name (`"milp"`, `"lp"`, `"z3"`).
    fn name(&self) -> &'static str;
    /// Whether the backend can take this problem (e.g. no Sigmoid for the MILP);
    /// `Err` says why not.
    fn supports(&self, p: &Problem) -> Result<()>;
    /// Solves `p` within `opts.time_limit`, stopping early when `cancel` is set.
    fn solve(&self, p: &Problem, opts: &SolveOptions, cancel: &CancelToken) -> Result<SolveResult>;
}

static ABANDONED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Records that a solver thread was left running after a missed deadline or
/// cancel (see [`abandoned_threads`]).
pub fn note_abandoned_thread() {
    ABANDONED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Whether a solver thread was left running inside its C or C++ library.
/// A process that exits normally under such a thread runs the library's
/// static destructors beneath it, which can abort the process after its
/// answer was written; the CLI then ends with `_exit` instead.
pub fn abandoned_threads() -> bool {
    ABANDONED.load(std::sync::atomic::Ordering::SeqCst)
}
