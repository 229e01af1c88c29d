//! Integrated Gradients (Sundararajan et al. 2017) at any activation.
//!
//! For a function `F` of the activation `a` of some layer (the network's tail
//! from that layer on, followed by an [`Objective`]) and a baseline `a'`,
//!
//! `IG_i(a) = (a_i − a'_i) ∫₀¹ ∂F/∂a_i (a' + α (a − a')) dα`
//!
//! (SMUG, Eq. 1, there at the first layer's activations). The integral is a
//! Riemann sum over `steps` points (left, right, midpoint) or the trapezoid
//! rule; the points are run through the network in batches. Completeness
//! says `Σ_i IG_i = F(a) − F(a')`; the residual of the sum is reported with
//! every map, as the measure of the quadrature error.

use ndarray::Array2;
use serde::Serialize;

use crate::model::{Network, Objective};
use crate::{Error, Result};

/// How the path integral is discretised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// `α_k = k / n`, `k = 0 … n − 1`.
    Left,
    /// `α_k = k / n`, `k = 1 … n`.
    Right,
    /// `α_k = (k + ½) / n`.
    #[default]
    Midpoint,
    /// `α_k = k / n`, `k = 0 … n`, end points weighted ½.
    Trapezoid,
}

impl Rule {
    /// The points `α_k` and weights `w_k` (summing to 1) of the rule.
    pub fn points(self, steps: usize) -> Vec<(f64, f64)> {
        let n = steps.max(1);
        let nf = n as f64;
        match self {
            Rule::Left => (0..n).map(|k| (k as f64 / nf, 1.0 / nf)).collect(),
            Rule::Right => (1..=n).map(|k| (k as f64 / nf, 1.0 / nf)).collect(),
            Rule::Midpoint => (0..n).map(|k| ((k as f64 + 0.5) / nf, 1.0 / nf)).collect(),
            Rule::Trapezoid => (0..=n)
                .map(|k| {
                    let w = if k == 0 || k == n { 0.5 } else { 1.0 };
                    (k as f64 / nf, w / nf)
                })
                .collect(),
        }
    }
}

/// An Integrated Gradients map with its completeness check.
#[derive(Clone, Debug, Serialize)]
pub struct IgMap {
    /// `IG_i`, one per element of the activation.
    pub attributions: Vec<f64>,
    /// `F(a)`.
    pub f_input: f64,
    /// `F(a')`.
    pub f_baseline: f64,
    /// `|Σ_i IG_i − (F(a) − F(a'))| / max(|F(a) − F(a')|, 1e-12)`.
    pub completeness_residual: f64,
    /// Number of gradient evaluations.
    pub steps: usize,
    /// The quadrature rule.
    pub rule: Rule,
}

/// Points run through the network per batch.
const BATCH: usize = 64;

/// Integrated Gradients of `objective` with respect to activation `layer`
/// (0 = the input) at the activation value `a`, from `baseline`.
pub fn integrated_gradients_at(
    net: &Network,
    layer: usize,
    a: &[f64],
    baseline: &[f64],
    objective: &Objective,
    steps: usize,
    rule: Rule,
) -> Result<IgMap> {
    let n = net.activation_len(layer.min(net.len()));
    if layer > net.len() || a.len() != n || baseline.len() != n {
        return Err(Error::InvalidArgument(format!(
            "integrated gradients at activation {layer}: expected {n} values, got {} and a baseline of {}",
            a.len(),
            baseline.len()
        )));
    }
    if steps == 0 {
        return Err(Error::InvalidArgument(
            "integrated gradients need at least one step".into(),
        ));
    }
    let points = rule.points(steps);
    let mut avg = vec![0.0; n];
    for chunk in points.chunks(BATCH) {
        let mut batch = Array2::<f64>::zeros((chunk.len(), n));
        for (mut row, &(alpha, _)) in batch.rows_mut().into_iter().zip(chunk) {
            for ((r, &x), &b) in row.iter_mut().zip(a).zip(baseline) {
                *r = b + alpha * (x - b);
            }
        }
        let g = net.gradient_from(layer, batch.view(), objective)?;
        for (row, &(_, w)) in g.grad.rows().into_iter().zip(chunk) {
            for (s, &v) in avg.iter_mut().zip(row) {
                *s += w * v;
            }
        }
    }
    let attributions: Vec<f64> = avg
        .iter()
        .zip(a)
        .zip(baseline)
        .map(|((g, x), b)| g * (x - b))
        .collect();
    let ends = Array2::from_shape_vec((2, n), [a, baseline].concat())
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let f = net.gradient_from(layer, ends.view(), objective)?.values;
    let diff = f[0] - f[1];
    let total: f64 = attributions.iter().sum();
    Ok(IgMap {
        attributions,
        f_input: f[0],
        f_baseline: f[1],
        completeness_residual: (total - diff).abs() / diff.abs().max(1e-12),
        steps: points.len(),
        rule,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Dense, Layer, Node};
    use ndarray::{array, Array1};

    fn node(name: &str, i: usize, o: usize) -> Node {
        Node {
            name: name.into(),
            op_types: vec![name.into()],
            in_shape: vec![1, i],
            out_shape: vec![1, o],
        }
    }

    #[test]
    fn linear_network_is_exact_and_complete() {
        // F(x) = w·x + b: IG_i = w_i (x_i − x'_i) exactly, under every rule.
        let net = Network::from_layers(
            "lin",
            vec![1, 3],
            vec![(
                node("Gemm", 3, 1),
                Layer::Dense(Dense {
                    weight: array![[0.5, -2.0, 3.0]],
                    bias: Array1::from_vec(vec![0.25]),
                    rows: 1,
                }),
            )],
        )
        .unwrap();
        for rule in [Rule::Left, Rule::Right, Rule::Midpoint, Rule::Trapezoid] {
            let m = integrated_gradients_at(
                &net,
                0,
                &[1.0, 2.0, -1.0],
                &[0.0, 1.0, 0.0],
                &Objective::Logit(0),
                7,
                rule,
            )
            .unwrap();
            let want = [0.5, -2.0, -3.0];
            for (g, w) in m.attributions.iter().zip(want) {
                assert!((g - w).abs() < 1e-12, "{rule:?}: {g} vs {w}");
            }
            assert!(m.completeness_residual < 1e-12);
        }
    }

    #[test]
    fn relu_network_converges_with_steps() {
        let net = Network::from_layers(
            "r",
            vec![1, 2],
            vec![
                (
                    node("Gemm", 2, 2),
                    Layer::Dense(Dense {
                        weight: array![[1.0, -1.0], [0.5, 2.0]],
                        bias: Array1::from_vec(vec![0.1, -0.3]),
                        rows: 1,
                    }),
                ),
                (node("Relu", 2, 2), Layer::Relu),
                (
                    node("Gemm", 2, 2),
                    Layer::Dense(Dense {
                        weight: array![[1.0, 2.0], [-1.0, 0.5]],
                        bias: Array1::from_vec(vec![0.0, 0.2]),
                        rows: 1,
                    }),
                ),
            ],
        )
        .unwrap();
        let coarse = integrated_gradients_at(
            &net,
            0,
            &[0.7, 0.4],
            &[0.0, 0.0],
            &Objective::Softmax(0),
            4,
            Rule::Midpoint,
        )
        .unwrap();
        let fine = integrated_gradients_at(
            &net,
            0,
            &[0.7, 0.4],
            &[0.0, 0.0],
            &Objective::Softmax(0),
            4000,
            Rule::Midpoint,
        )
        .unwrap();
        assert!(
            fine.completeness_residual < 1e-3,
            "{}",
            fine.completeness_residual
        );
        assert!(fine.completeness_residual <= coarse.completeness_residual + 1e-12);
    }

    #[test]
    fn bad_sizes_are_errors() {
        let net =
            Network::from_layers("e", vec![1, 2], vec![(node("Relu", 2, 2), Layer::Relu)]).unwrap();
        assert!(integrated_gradients_at(
            &net,
            0,
            &[1.0],
            &[0.0, 0.0],
            &Objective::Logit(0),
            8,
            Rule::Left
        )
        .is_err());
        assert!(integrated_gradients_at(
            &net,
            0,
            &[1.0, 1.0],
            &[0.0, 0.0],
            &Objective::Logit(0),
            0,
            Rule::Left
        )
        .is_err());
        assert!(integrated_gradients_at(
            &net,
            5,
            &[1.0, 1.0],
            &[0.0, 0.0],
            &Objective::Logit(0),
            8,
            Rule::Left
        )
        .is_err());
    }
}
