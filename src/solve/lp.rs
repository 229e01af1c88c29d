//! The LP relaxation on HiGHS: every integer continuous, every ReLU replaced by
//! its triangle. Infeasible means the exact problem is infeasible; otherwise
//! the optimum is only a bound, and the record's status is `Unknown`.

use super::highs_model::{self, Mode};
use super::{Backend, CancelToken, SolveOptions, SolveResult, Status};
use crate::encode::Problem;
use crate::Result;

/// The LP relaxation of a problem (sound, incomplete).
#[derive(Clone, Copy, Debug, Default)]
pub struct LpRelaxation;

impl Backend for LpRelaxation {
    fn name(&self) -> &'static str {
        "lp"
    }
    fn supports(&self, _p: &Problem) -> Result<()> {
        Ok(())
    }
    fn solve(&self, p: &Problem, opts: &SolveOptions, cancel: &CancelToken) -> Result<SolveResult> {
        let mut r = highs_model::solve(p, Mode::Relaxed, self.name(), opts, cancel)?;
        if matches!(r.status, Status::Optimal | Status::Feasible) {
            // A point of the relaxation is not a point of the problem.
            r.status = Status::Unknown;
            r.assignment = None;
            r.reason =
                Some("the relaxation is feasible: no verdict (its optimum is a bound)".into());
        }
        Ok(r)
    }
}

/// The relaxation's optimal point itself, for rounding heuristics: the
/// record's status is HiGHS's (`Optimal` for a solved relaxation) and its
/// assignment the fractional optimum. Not a verdict on the exact problem.
pub fn relaxed_point(
    p: &Problem,
    opts: &SolveOptions,
    cancel: &CancelToken,
) -> Result<SolveResult> {
    highs_model::solve(p, Mode::Relaxed, "lp", opts, cancel)
}
