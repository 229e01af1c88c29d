//! SmoothGrad (Smilkov, Thorat, Kim, Viégas and Wattenberg 2017) and
//! SmoothGrad on Integrated Gradients, batched.
//!
//! SmoothGrad averages a map over noisy copies of the input,
//! `M̂(x) = 1/N Σ_{k=1}^{N} M(x + ε_k)`, `ε_k ~ N(0, σ² I)` (Smilkov et al.
//! 2017), with `M` the gradient (SmoothGrad) or Integrated Gradients
//! (their "SmoothGrad on IG"). `σ` here is absolute, in the input's units
//! (Smilkov et al. quote it as a fraction of `x_max − x_min`: multiply first).
//! The draws are seeded per (sample, draw), or passed in explicitly so that a
//! reference implementation can use the very same ones.

use ndarray::{s, Array2, Array3, ArrayView2, Axis};

use super::rng::SplitMix;
use super::{
    check_batch, completeness_residual, from_f64, ig, row_gradients, row_values, to_f64,
    Attribution, Baseline, Method, Rule, Target, ROWS,
};
use crate::model::{Float, Network};
use crate::{Error, Result};

/// The noise draws `ε_k` of SmoothGrad.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Noise {
    /// `ε_k ~ N(0, σ² I)`, `samples` draws per sample; draw `k` of sample `b`
    /// depends only on `(seed, b, k)`.
    Gaussian {
        /// Standard deviation, in the input's units.
        sigma: f64,
        /// Number of draws `N`.
        samples: usize,
        /// Seed.
        seed: u64,
    },
    /// Given draws, `[N, batch, input_len]`, or `[N, 1, input_len]` for the
    /// same draws for every sample.
    Given(Array3<f64>),
}

impl Noise {
    /// Number of draws `N`.
    pub fn samples(&self) -> usize {
        match self {
            Noise::Gaussian { samples, .. } => *samples,
            Noise::Given(a) => a.dim().0,
        }
    }

    fn check(&self, batch: usize, n: usize) -> Result<()> {
        match self {
            Noise::Gaussian { sigma, samples, .. } => {
                if !(sigma.is_finite() && *sigma >= 0.0) {
                    return Err(Error::InvalidArgument(format!(
                        "the noise level must be finite and non-negative, got {sigma}"
                    )));
                }
                if *samples == 0 {
                    return Err(Error::InvalidArgument(
                        "SmoothGrad needs at least one noise sample".into(),
                    ));
                }
            }
            Noise::Given(a) => {
                let (k, bb, nn) = a.dim();
                if k == 0 || nn != n || (bb != 1 && bb != batch) {
                    return Err(Error::Shape(format!(
                        "the noise is {:?}; it needs [N ≥ 1, 1 or {batch}, {n}]",
                        a.dim()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Writes draw `k` of sample `b` into `out`.
    fn fill(&self, k: usize, b: usize, out: &mut [f64]) {
        match self {
            Noise::Gaussian { sigma, seed, .. } => {
                let mut rng = SplitMix::stream(*seed, b, k);
                out.iter_mut().for_each(|v| *v = sigma * rng.normal());
            }
            Noise::Given(a) => {
                let bb = if a.dim().1 == 1 { 0 } else { b };
                out.iter_mut()
                    .zip(a.slice(s![k, bb, ..]))
                    .for_each(|(o, v)| *o = *v);
            }
        }
    }

    /// The draws for a batch of `batch` samples of `n` values, `[N, batch, n]`.
    pub fn draws(&self, batch: usize, n: usize) -> Result<Array3<f64>> {
        self.draws_for(0..batch, n)
    }

    /// The draws of samples `samples` (e.g. `100..116`) of a larger set, as
    /// `[N, len(samples), n]`: with them, a set split into batches gets the
    /// same noise as in one batch. Given draws for one sample are repeated.
    pub fn draws_for(&self, samples: std::ops::Range<usize>, n: usize) -> Result<Array3<f64>> {
        match self {
            Noise::Given(a) if a.dim().1 != 1 && samples.end <= a.dim().1 => {
                self.check(a.dim().1, n)?
            }
            _ => self.check(samples.end, n)?,
        }
        let k = self.samples();
        let mut out = Array3::zeros((k, samples.len(), n));
        for kk in 0..k {
            for (i, b) in samples.clone().enumerate() {
                if let Some(row) = out.slice_mut(s![kk, i, ..]).as_slice_mut() {
                    self.fill(kk, b, row);
                }
            }
        }
        Ok(out)
    }
}

/// SmoothGrad: `SG(x) = 1/N Σ_k ∂F/∂x (x + ε_k)` for every sample of `x`
/// (`[batch, input_len]`) (Smilkov et al. 2017, with `M_c = ∂F/∂x`).
/// All (sample, draw) pairs are run through the network in batches of rows;
/// [`Attribution::values`] holds the noise-free `F(x)`.
pub fn smoothgrad<T: Float>(
    net: &Network,
    x: ArrayView2<T>,
    target: &Target,
    noise: &Noise,
) -> Result<Attribution<T>> {
    check_batch(net, 0, &x)?;
    let (b, n) = x.dim();
    target.check(net, b)?;
    noise.check(b, n)?;
    let k = noise.samples();
    let total = b * k;
    let mut sum = Array2::<f64>::zeros((b, n));
    let mut rows = Array2::<T>::zeros((ROWS.min(total), n));
    let mut eps = vec![0.0; n];
    for start in (0..total).step_by(ROWS) {
        let end = (start + ROWS).min(total);
        let mut batch = rows.slice_mut(s![..end - start, ..]);
        for (r, mut row) in batch.axis_iter_mut(Axis(0)).enumerate() {
            let (sb, kk) = ((start + r) / k, (start + r) % k);
            noise.fill(kk, sb, &mut eps);
            for ((o, &xv), e) in row.iter_mut().zip(x.row(sb)).zip(&eps) {
                *o = T::from_f64(xv.as_f64() + e);
            }
        }
        let (_, g) = row_gradients(net, 0, batch.view(), |r| target.objective((start + r) / k))?;
        for (r, gr) in g.axis_iter(Axis(0)).enumerate() {
            let sb = (start + r) / k;
            sum.row_mut(sb)
                .iter_mut()
                .zip(gr)
                .for_each(|(s, v)| *s += v.as_f64());
        }
    }
    let values = row_values(net, 0, x, |r| target.objective(r))?;
    Ok(Attribution {
        method: Method::SmoothGrad,
        maps: sum.mapv(|v| T::from_f64(v / k as f64)),
        values,
        baseline_values: None,
        residuals: None,
    })
}

/// SmoothGrad on Integrated Gradients: `SG-IG(x) = 1/N Σ_k IG(x + ε_k; x')`
/// (Smilkov et al. 2017), with the baseline `x'` resolved once from the
/// noise-free input and kept fixed over the draws (as Captum's `NoiseTunnel`
/// does), and IG as in [`super::integrated_gradients`]. Completeness holds
/// for the average: the residual compares `Σ_i SG-IG_i` with
/// `1/N Σ_k F(x + ε_k) − F(x')`. [`Attribution::values`] holds the noise-free
/// `F(x)`.
pub fn smoothgrad_ig<T: Float>(
    net: &Network,
    x: ArrayView2<T>,
    baseline: &Baseline,
    target: &Target,
    noise: &Noise,
    steps: usize,
    rule: Rule,
) -> Result<Attribution<T>> {
    check_batch(net, 0, &x)?;
    let (b, n) = x.dim();
    target.check(net, b)?;
    noise.check(b, n)?;
    let base = baseline.resolve(net, to_f64(x).view())?;
    let k = noise.samples();
    let mut maps = Array2::<T>::zeros((b, n));
    let mut residuals = Vec::with_capacity(b);
    let mut baseline_values = Vec::with_capacity(b);
    let mut eps = vec![0.0; n];
    for sb in 0..b {
        let mut noisy = Array2::<T>::zeros((k, n));
        for (kk, mut row) in noisy.axis_iter_mut(Axis(0)).enumerate() {
            noise.fill(kk, sb, &mut eps);
            for ((o, &xv), e) in row.iter_mut().zip(x.row(sb)).zip(&eps) {
                *o = T::from_f64(xv.as_f64() + e);
            }
        }
        let bl = from_f64::<T>(base.slice(s![sb..sb + 1, ..]));
        let one = Target::All(target.objective(sb).clone());
        let m = ig::integrated_gradients_from(net, 0, noisy.view(), bl.view(), &one, steps, rule)?;
        let mut sum = 0.0;
        for (o, col) in maps.row_mut(sb).iter_mut().zip(m.maps.axis_iter(Axis(1))) {
            let v = col.iter().map(|v| v.as_f64()).sum::<f64>() / k as f64;
            sum += v;
            *o = T::from_f64(v);
        }
        let f_noisy = m.values.iter().sum::<f64>() / k as f64;
        let f_base = m.baseline_values.as_ref().map_or(f64::NAN, |v| v[0]);
        residuals.push(completeness_residual(sum, f_noisy, f_base));
        baseline_values.push(f_base);
    }
    let values = row_values(net, 0, x, |r| target.objective(r))?;
    Ok(Attribution {
        method: Method::SmoothGradIg,
        maps,
        values,
        baseline_values: Some(baseline_values),
        residuals: Some(residuals),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrib::testnets::{inputs, linear, mlp};
    use crate::attrib::{integrated_gradients, saliency};

    #[test]
    fn linear_network_smoothgrad_is_the_gradient() {
        let net = linear();
        let x = inputs(&net, 2, 0.41);
        let noise = Noise::Gaussian {
            sigma: 0.3,
            samples: 7,
            seed: 1,
        };
        let sg = smoothgrad(&net, x.view(), &Target::logit(2), &noise).unwrap();
        let g = saliency(&net, x.view(), &Target::logit(2)).unwrap();
        for (a, b) in sg.maps.iter().zip(g.maps.iter()) {
            assert!((a - b).abs() < 1e-13);
        }
        // On a linear model IG is exact at every noisy point and completeness
        // of the average holds to rounding.
        let sgig = smoothgrad_ig(
            &net,
            x.view(),
            &Baseline::Zero,
            &Target::logit(2),
            &noise,
            3,
            Rule::Left,
        )
        .unwrap();
        assert!(sgig.worst_residual().unwrap() < 1e-12);
    }

    #[test]
    fn given_noise_equals_the_mean_of_saliency_over_the_noisy_inputs() {
        let net = mlp();
        let x = inputs(&net, 2, 0.29);
        let seeded = Noise::Gaussian {
            sigma: 0.2,
            samples: 5,
            seed: 9,
        };
        let draws = seeded.draws(2, net.input_len()).unwrap();
        let given = Noise::Given(draws.clone());
        let t = Target::softmax(1);
        let a = smoothgrad(&net, x.view(), &t, &seeded).unwrap();
        let b = smoothgrad(&net, x.view(), &t, &given).unwrap();
        assert_eq!(a.maps, b.maps);
        for sb in 0..2 {
            let noisy = Array2::from_shape_fn((5, net.input_len()), |(k, i)| {
                x[[sb, i]] + draws[[k, sb, i]]
            });
            let g = saliency(&net, noisy.view(), &t).unwrap();
            for i in 0..net.input_len() {
                let mean = g.maps.column(i).sum() / 5.0;
                assert!((a.maps[[sb, i]] - mean).abs() < 1e-14);
            }
        }
        // SG-IG is the mean of IG over the same noisy inputs.
        let sgig = smoothgrad_ig(
            &net,
            x.view(),
            &Baseline::Zero,
            &t,
            &given,
            16,
            Rule::Midpoint,
        )
        .unwrap();
        let noisy =
            Array2::from_shape_fn((5, net.input_len()), |(k, i)| x[[1, i]] + draws[[k, 1, i]]);
        let igs = integrated_gradients(&net, noisy.view(), &Baseline::Zero, &t, 16, Rule::Midpoint)
            .unwrap();
        for i in 0..net.input_len() {
            let mean = igs.maps.column(i).sum() / 5.0;
            assert!((sgig.maps[[1, i]] - mean).abs() < 1e-14);
        }
        assert!(smoothgrad(&net, x.view(), &t, &Noise::Given(Array3::zeros((2, 3, 6)))).is_err());
        assert!(smoothgrad(
            &net,
            x.view(),
            &t,
            &Noise::Gaussian {
                sigma: 0.1,
                samples: 0,
                seed: 0
            }
        )
        .is_err());
    }

    #[test]
    fn zero_noise_gives_back_the_gradient_and_the_draws_do_not_depend_on_the_batch() {
        let net = mlp();
        let x = inputs(&net, 3, 0.71);
        let t = Target::logit(0);
        let z = Noise::Gaussian {
            sigma: 0.0,
            samples: 3,
            seed: 4,
        };
        let sg = smoothgrad(&net, x.view(), &t, &z).unwrap();
        let g = saliency(&net, x.view(), &t).unwrap();
        for (a, b) in sg.maps.iter().zip(g.maps.iter()) {
            assert!((a - b).abs() < 1e-14);
        }
        let nz = Noise::Gaussian {
            sigma: 0.5,
            samples: 4,
            seed: 4,
        };
        let all = smoothgrad(&net, x.view(), &t, &nz).unwrap();
        let first = smoothgrad(&net, x.slice(s![..1, ..]), &t, &nz).unwrap();
        assert_eq!(all.maps.row(0), first.maps.row(0));
        let tail = Noise::Given(nz.draws_for(1..3, net.input_len()).unwrap());
        let rest = smoothgrad(&net, x.slice(s![1.., ..]), &t, &tail).unwrap();
        assert_eq!(all.maps.slice(s![1.., ..]), rest.maps);
    }
}
