//! Independent re-checks: every counterexample, mask or adversarial point the
//! engine reports is re-evaluated by a plain forward pass in tract, with the
//! tolerance stated.

pub mod recheck;

pub use recheck::{recheck_counterexample, Recheck, RECHECK_TOL};
