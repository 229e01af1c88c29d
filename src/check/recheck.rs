//! Re-checking a VNN-LIB counterexample with tract's inference.

use ndarray::Array2;
use serde::Serialize;

use crate::model::Reference;
use crate::property::Property;
use crate::Result;

/// Slack allowed on each output constraint when re-checking a counterexample,
/// relative to `max(1, max |y|)`: tract computes in `f32`, whose rounding over
/// a network's depth is of order 1e-6 relative; 1e-5 leaves headroom while
/// still rejecting any point that violates the property by a visible margin.
pub const RECHECK_TOL: f64 = 1e-5;

/// The outcome of re-evaluating a counterexample.
#[derive(Clone, Debug, Serialize)]
pub struct Recheck {
    /// Whether the point lies in an input region and the output, computed by
    /// tract, satisfies that region's output constraint (within the tolerance).
    pub held: bool,
    /// The input, clipped into the region's box.
    pub x: Vec<f64>,
    /// tract's output at `x`.
    pub y: Vec<f64>,
    /// The absolute tolerance used: `RECHECK_TOL · max(1, max |y|)`.
    pub tolerance: f64,
}

/// Re-evaluates `x` with tract and checks it against `prop`. The point is
/// first clipped into the box of the region it is closest to, so that a
/// solver's feasibility tolerance cannot take it outside the input set.
pub fn recheck_counterexample(
    reference: &Reference,
    prop: &Property,
    x: &[f64],
) -> Result<Recheck> {
    let clipped = prop
        .regions
        .iter()
        .map(|r| {
            x.iter()
                .zip(r.input.lower.iter().zip(&r.input.upper))
                .map(|(v, (l, u))| v.max(*l).min(*u))
                .collect::<Vec<f64>>()
        })
        .min_by(|a, b| {
            let d = |c: &Vec<f64>| {
                c.iter()
                    .zip(x)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0.0, f64::max)
            };
            d(a).total_cmp(&d(b))
        })
        .unwrap_or_else(|| x.to_vec());
    let xs = Array2::from_shape_vec(
        (1, clipped.len()),
        clipped.iter().map(|&v| v as f32).collect(),
    )
    .map_err(|e| crate::Error::Shape(e.to_string()))?;
    let y: Vec<f64> = reference
        .run(xs.view())?
        .iter()
        .map(|&v| v as f64)
        .collect();
    let scale = y.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let tolerance = RECHECK_TOL * scale;
    // The f32 input tract saw is what is checked against the box.
    let seen: Vec<f64> = clipped.iter().map(|&v| v as f32 as f64).collect();
    let held = prop.is_counterexample(&seen, &y, tolerance);
    Ok(Recheck {
        held,
        x: clipped,
        y,
        tolerance,
    })
}
