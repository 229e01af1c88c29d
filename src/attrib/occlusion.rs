//! Leave-one-out (Zeiler & Fergus 2014; Li, Monroe and Jurafsky 2016): the
//! drop of the objective when one feature unit is set to a reference value,
//!
//! `LOO_u(x) = F(x) − F(x with unit u set to r)`,
//!
//! one forward pass per unit, batched.

use ndarray::Array2;

use super::ROWS;
use crate::model::{Network, Objective};
use crate::{Error, Result};

/// Leave-one-out scores of sample `x` (activation `from`; 0 = the input) for
/// units given by `unit_of[e]` (the unit of element `e`, `units` of them),
/// with every element of a removed unit set to `fill`.
pub fn leave_one_out(
    net: &Network,
    from: usize,
    x: &[f64],
    unit_of: &[usize],
    units: usize,
    objective: &Objective,
    fill: f64,
) -> Result<Vec<f64>> {
    if from > net.len() {
        return Err(Error::InvalidArgument(format!(
            "activation {from} does not exist: the network has {} layers",
            net.len()
        )));
    }
    let n = net.activation_len(from);
    if x.len() != n || unit_of.len() != n {
        return Err(Error::Shape(format!(
            "leave-one-out on activation {from} of {n} elements, got a point of {} and {} unit labels",
            x.len(),
            unit_of.len()
        )));
    }
    if let Some(&u) = unit_of.iter().find(|&&u| u >= units) {
        return Err(Error::InvalidArgument(format!(
            "unit {u} is out of range: {units} units"
        )));
    }
    if !fill.is_finite() {
        return Err(Error::InvalidArgument(format!(
            "the reference value must be finite, got {fill}"
        )));
    }
    objective.check(net.output_len())?;
    let mut buf = vec![0.0; net.output_len()];
    let x0 = Array2::from_shape_vec((1, n), x.to_vec()).map_err(|e| Error::Shape(e.to_string()))?;
    let y0 = net.forward_range::<f64>(from, net.len(), x0.view())?;
    let f0 = objective.value_and_grad(&y0.row(0).to_vec(), &mut buf);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); units];
    for (e, &u) in unit_of.iter().enumerate() {
        members[u].push(e);
    }
    let mut scores = Vec::with_capacity(units);
    for start in (0..units).step_by(ROWS) {
        let end = (start + ROWS).min(units);
        let mut batch = Array2::<f64>::zeros((end - start, n));
        for (r, mut row) in batch.rows_mut().into_iter().enumerate() {
            row.iter_mut().zip(x).for_each(|(d, &v)| *d = v);
            for &e in &members[start + r] {
                row[e] = fill;
            }
        }
        let y = net.forward_range::<f64>(from, net.len(), batch.view())?;
        for yr in y.rows() {
            scores.push(f0 - objective.value_and_grad(&yr.to_vec(), &mut buf));
        }
    }
    Ok(scores)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrib::testnets::linear;

    /// On a linear logit `wᵀx + b`, removing element `i` (fill 0) drops `w_i x_i`.
    #[test]
    fn linear_drops_are_weight_times_input() {
        let net = linear();
        let n = net.input_len();
        let x: Vec<f64> = (0..n).map(|i| 0.1 * (i as f64 + 1.0)).collect();
        let units: Vec<usize> = (0..n).collect();
        let loo = leave_one_out(&net, 0, &x, &units, n, &Objective::Logit(0), 0.0).unwrap();
        let row = ndarray::Array2::from_shape_vec((1, n), x.clone()).unwrap();
        let g = net
            .gradient::<f64>(row.view(), &Objective::Logit(0), 0)
            .unwrap();
        for i in 0..n {
            assert!((loo[i] - g.grad[[0, i]] * x[i]).abs() < 1e-12);
        }
        assert!(leave_one_out(&net, 0, &x, &units, n - 1, &Objective::Logit(0), 0.0).is_err());
        assert!(leave_one_out(&net, 0, &x[1..], &units, n, &Objective::Logit(0), 0.0).is_err());
    }
}
