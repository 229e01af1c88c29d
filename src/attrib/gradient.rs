//! Saliency (Simonyan, Vedaldi and Zisserman 2013) and gradient ⊙ input
//! (Shrikumar et al. 2016), batched.

use ndarray::{s, Array2, ArrayView2};

use super::{check_batch, row_gradients, Attribution, Method, Target, ROWS};
use crate::model::{Float, Network};
use crate::Result;

/// The saliency map of every sample: `S(x) = ∂F/∂x`, the gradient of the
/// target `F` (a logit by default) with respect to the input (Simonyan et al.
/// 2013, "Deep inside convolutional networks", Eq. 2, here with its sign kept;
/// take `|S|` for their picture). `x` is `[batch, input_len]`.
pub fn saliency<T: Float>(
    net: &Network,
    x: ArrayView2<T>,
    target: &Target,
) -> Result<Attribution<T>> {
    check_batch(net, 0, &x)?;
    target.check(net, x.nrows())?;
    let mut maps = Array2::<T>::zeros(x.raw_dim());
    let mut values = Vec::with_capacity(x.nrows());
    for start in (0..x.nrows()).step_by(ROWS) {
        let end = (start + ROWS).min(x.nrows());
        let (v, g) = row_gradients(net, 0, x.slice(s![start..end, ..]), |r| {
            target.objective(start + r)
        })?;
        maps.slice_mut(s![start..end, ..]).assign(&g);
        values.extend(v);
    }
    Ok(Attribution {
        method: Method::Gradient,
        maps,
        values,
        baseline_values: None,
        residuals: None,
    })
}

/// Gradient ⊙ input: `A(x) = x ⊙ ∂F/∂x` per sample (Shrikumar, Greenside,
/// Shcherbina and Kundaje 2016; for a ReLU network without biases it sums to
/// `F(x)`, and it equals DeepLIFT-rescale with a zero baseline on a linear
/// model).
pub fn gradient_x_input<T: Float>(
    net: &Network,
    x: ArrayView2<T>,
    target: &Target,
) -> Result<Attribution<T>> {
    let mut a = saliency(net, x, target)?;
    a.maps.zip_mut_with(&x, |g, &v| *g *= v);
    a.method = Method::GradientXInput;
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrib::testnets::{inputs, linear, mlp};
    use crate::Objective;

    #[test]
    fn linear_network_gradient_is_the_weight_row() {
        let net = linear();
        let x = inputs(&net, 3, 0.37);
        let a = saliency(&net, x.view(), &Target::logit(1)).unwrap();
        let w = match net.layer(0) {
            crate::model::Layer::Dense(d) => d.weight.row(1).to_owned(),
            _ => unreachable!(),
        };
        for b in 0..3 {
            for i in 0..5 {
                assert!((a.maps[[b, i]] - w[i]).abs() < 1e-15);
            }
        }
        let gx = gradient_x_input(&net, x.view(), &Target::logit(1)).unwrap();
        assert!((gx.maps[[2, 3]] - w[3] * x[[2, 3]]).abs() < 1e-15);
        assert_eq!(gx.method, Method::GradientXInput);
        assert!(gx.residuals.is_none());
    }

    #[test]
    fn per_sample_targets_match_single_targets_and_f32_agrees() {
        let net = mlp();
        let x = inputs(&net, 4, 0.53);
        let per: Target = vec![
            Objective::Logit(0),
            Objective::Softmax(3),
            Objective::Logit(2),
            Objective::LogSoftmax(1),
        ]
        .into();
        let a = saliency(&net, x.view(), &per).unwrap();
        for b in 0..4 {
            let one = Target::All(per.objective(b).clone());
            let g = net
                .gradient(x.slice(s![b..b + 1, ..]), per.objective(b), 0)
                .unwrap();
            let s1 = saliency(&net, x.slice(s![b..b + 1, ..]), &one).unwrap();
            for i in 0..net.input_len() {
                // A batch and a single row may round differently in the matrix products.
                assert!((a.maps[[b, i]] - g.grad[[0, i]]).abs() < 1e-14);
                assert!((s1.maps[[0, i]] - g.grad[[0, i]]).abs() < 1e-14);
            }
            assert!((a.values[b] - g.values[0]).abs() < 1e-14);
        }
        let x32 = x.mapv(|v| v as f32);
        let a32 = saliency(&net, x32.view(), &per).unwrap();
        for (p, q) in a32.maps.iter().zip(a.maps.iter()) {
            assert!((*p as f64 - q).abs() < 1e-5 * (1.0 + q.abs()));
        }
        assert!(saliency(&net, x.view(), &Target::logit(4)).is_err());
        assert!(saliency(&net, x.view(), &vec![Objective::Logit(0)].into()).is_err());
    }
}
