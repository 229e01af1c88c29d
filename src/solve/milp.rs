//! The exact MILP backend on HiGHS: big-M with the tightest bounds available.

use super::highs_model::{self, Mode};
use super::{Backend, CancelToken, SolveOptions, SolveResult};
use crate::encode::Problem;
use crate::{Error, Result};

/// HiGHS branch-and-cut on the big-M encoding; exact for piecewise-linear problems.
#[derive(Clone, Copy, Debug, Default)]
pub struct Milp;

impl Backend for Milp {
    fn name(&self) -> &'static str {
        "milp"
    }
    fn supports(&self, p: &Problem) -> Result<()> {
        if p.has_nonlinear() {
            return Err(Error::InvalidArgument(format!(
                "problem '{}' has Sigmoid/Tanh terms, which the MILP cannot encode exactly (use z3, or the LP relaxation for a bound)",
                p.name
            )));
        }
        Ok(())
    }
    fn solve(&self, p: &Problem, opts: &SolveOptions, cancel: &CancelToken) -> Result<SolveResult> {
        self.supports(p)?;
        highs_model::solve(p, Mode::Exact, self.name(), opts, cancel)
    }
}
