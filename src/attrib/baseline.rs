//! Baselines (reference inputs) for Integrated Gradients and DeepLIFT.
//!
//! A baseline `x'` stands for "absence of signal": the attribution of `x`
//! explains `F(x) − F(x')`. Sundararajan et al. (2017) use the black image;
//! Sturmfels, Lundberg and Lee (Distill 2020) compare black, white, uniform
//! noise and blurred baselines, all of which are here.

use ndarray::{Array2, ArrayView2};

use super::rng::SplitMix;
use crate::model::Network;
use crate::{Error, Result};

/// A baseline, resolved per sample by [`Baseline::resolve`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Baseline {
    /// `x' = 0`.
    Zero,
    /// `x'_i = v` for every element: black (`v` = the input's minimum, e.g. 0)
    /// or white (its maximum, e.g. 1 or 255, whatever the input's scale).
    Constant(f64),
    /// `x'_i ~ U[low, high)`, one independent draw per sample, reproducible from `seed`.
    Uniform {
        /// Lower end.
        low: f64,
        /// Upper end.
        high: f64,
        /// Seed; sample `b` always gets the same draw for the same seed.
        seed: u64,
    },
    /// The input blurred over its height and width, channel by channel, with a
    /// Gaussian of standard deviation `sigma` pixels (see [`gaussian_blur`]).
    Blur {
        /// Standard deviation in pixels; 0 leaves the input unchanged.
        sigma: f64,
    },
    /// A given array: one row (the same baseline for every sample) or one row per sample.
    Given(Array2<f64>),
}

/// Where the height, width and channels of a flattened sample are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageDims {
    /// Channels.
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// `H × W × C` (TensorFlow's NHWC) rather than `C × H × W`.
    pub channels_last: bool,
}

impl ImageDims {
    /// Reads the image layout off a sample shape (the network's input shape at
    /// batch 1). Size-1 axes are dropped; three axes left are `C × H × W`,
    /// or `H × W × C` when the last is 1, 3 or 4 and the first is larger than 4;
    /// two axes are `H × W`; one axis of a perfect-square length `n` is read as
    /// a `√n × √n` image (a flattened MNIST digit). `None` otherwise.
    pub fn of_shape(shape: &[usize]) -> Option<ImageDims> {
        let d: Vec<usize> = shape.iter().copied().filter(|&v| v != 1).collect();
        let img = |channels, height, width, channels_last| {
            Some(ImageDims {
                channels,
                height,
                width,
                channels_last,
            })
        };
        match d.as_slice() {
            [] => img(1, 1, 1, false),
            [n] => {
                let s = (*n as f64).sqrt().round() as usize;
                if s * s == *n {
                    img(1, s, s, false)
                } else {
                    None
                }
            }
            [h, w] => img(1, *h, *w, false),
            [a, b, c] => {
                if matches!(c, 3 | 4) && *a > 4 {
                    img(*c, *a, *b, true)
                } else {
                    img(*a, *b, *c, false)
                }
            }
            _ => None,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Whether the image has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Flat index of `(c, r, col)`.
    pub fn index(&self, c: usize, r: usize, col: usize) -> usize {
        if self.channels_last {
            (r * self.width + col) * self.channels + c
        } else {
            (c * self.height + r) * self.width + col
        }
    }
}

/// A normalised 1-D Gaussian kernel `k_d ∝ exp(−d² / 2σ²)` for `|d| ≤ ⌈3σ⌉`.
fn gaussian_kernel(sigma: f64) -> Vec<f64> {
    let r = (3.0 * sigma).ceil().max(1.0) as isize;
    let k: Vec<f64> = (-r..=r)
        .map(|d| (-((d * d) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f64 = k.iter().sum();
    k.into_iter().map(|v| v / s).collect()
}

/// Gaussian blur of an image over its height and width, per channel:
/// `(G_σ * x)[c, r, col] = Σ_{u,v} k_u k_v x[c, r + u, col + v]`, with the
/// separable kernel `k_d ∝ exp(−d² / 2σ²)` truncated at `|d| ≤ ⌈3σ⌉` and the
/// border replicated. `sigma ≤ 0` returns the input.
pub fn gaussian_blur(x: &[f64], dims: ImageDims, sigma: f64) -> Result<Vec<f64>> {
    if x.len() != dims.len() {
        return Err(Error::Shape(format!(
            "a {}×{}×{} image has {} elements, got {}",
            dims.channels,
            dims.height,
            dims.width,
            dims.len(),
            x.len()
        )));
    }
    if !sigma.is_finite() {
        return Err(Error::InvalidArgument(format!(
            "blur sigma must be finite, got {sigma}"
        )));
    }
    if sigma <= 0.0 || dims.is_empty() {
        return Ok(x.to_vec());
    }
    let k = gaussian_kernel(sigma);
    let r = (k.len() / 2) as isize;
    let (h, w) = (dims.height as isize, dims.width as isize);
    let clamp = |v: isize, n: isize| v.clamp(0, n - 1) as usize;
    let mut tmp = vec![0.0; x.len()];
    let mut out = vec![0.0; x.len()];
    for c in 0..dims.channels {
        for row in 0..dims.height {
            for col in 0..dims.width {
                let s: f64 = k
                    .iter()
                    .enumerate()
                    .map(|(t, kv)| {
                        let cc = clamp(col as isize + t as isize - r, w);
                        kv * x[dims.index(c, row, cc)]
                    })
                    .sum();
                tmp[dims.index(c, row, col)] = s;
            }
        }
        for row in 0..dims.height {
            for col in 0..dims.width {
                let s: f64 = k
                    .iter()
                    .enumerate()
                    .map(|(t, kv)| {
                        let rr = clamp(row as isize + t as isize - r, h);
                        kv * tmp[dims.index(c, rr, col)]
                    })
                    .sum();
                out[dims.index(c, row, col)] = s;
            }
        }
    }
    Ok(out)
}

impl Baseline {
    /// The baseline of every sample of `x` (`[batch, input_len]`), `[batch, input_len]`.
    pub fn resolve(&self, net: &Network, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        self.resolve_at(net, x, 0)
    }

    /// Like [`Baseline::resolve`] for a batch whose first sample is sample
    /// `first` of a larger set: a uniform baseline draws sample `b` of `x` from
    /// stream `first + b`, so a set split into batches gets the same baselines
    /// as in one batch.
    pub fn resolve_at(
        &self,
        net: &Network,
        x: ArrayView2<f64>,
        first: usize,
    ) -> Result<Array2<f64>> {
        let (b, n) = x.dim();
        if n != net.input_len() {
            return Err(Error::Shape(format!(
                "the network takes {} values per sample, the batch has {n}",
                net.input_len()
            )));
        }
        Ok(match self {
            Baseline::Zero => Array2::zeros((b, n)),
            Baseline::Constant(v) => Array2::from_elem((b, n), *v),
            Baseline::Uniform { low, high, seed } => {
                if !(low.is_finite() && high.is_finite() && low <= high) {
                    return Err(Error::InvalidArgument(format!(
                        "a uniform baseline needs finite low ≤ high, got [{low}, {high})"
                    )));
                }
                let mut out = Array2::zeros((b, n));
                for (i, mut row) in out.rows_mut().into_iter().enumerate() {
                    let mut rng = SplitMix::stream(*seed, first + i, 0);
                    row.iter_mut()
                        .for_each(|v| *v = low + (high - low) * rng.uniform());
                }
                out
            }
            Baseline::Blur { sigma } => {
                let dims = ImageDims::of_shape(net.input_shape()).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "a blurred baseline needs an image input, the network takes {:?}",
                        net.input_shape()
                    ))
                })?;
                let mut out = Array2::zeros((b, n));
                for (xr, mut row) in x.rows().into_iter().zip(out.rows_mut()) {
                    let blurred = gaussian_blur(&xr.to_vec(), dims, *sigma)?;
                    row.iter_mut().zip(blurred).for_each(|(o, v)| *o = v);
                }
                out
            }
            Baseline::Given(a) => {
                if a.ncols() != n || (a.nrows() != 1 && a.nrows() != b) {
                    return Err(Error::Shape(format!(
                        "the baseline is {:?}; it needs [1, {n}] or [{b}, {n}]",
                        a.dim()
                    )));
                }
                if a.nrows() == b {
                    a.clone()
                } else {
                    a.broadcast((b, n))
                        .map(|v| v.to_owned())
                        .unwrap_or_else(|| Array2::zeros((b, n)))
                }
            }
        })
    }

    /// A short name for reports: `zero`, `constant(v)`, `uniform[lo,hi)#seed`, `blur(σ)`, `given`.
    pub fn label(&self) -> String {
        match self {
            Baseline::Zero => "zero".into(),
            Baseline::Constant(v) => format!("constant({v})"),
            Baseline::Uniform { low, high, seed } => format!("uniform[{low},{high})#{seed}"),
            Baseline::Blur { sigma } => format!("blur({sigma})"),
            Baseline::Given(_) => "given".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Layer, Node};

    fn identity(shape: Vec<usize>) -> Network {
        let n: usize = shape.iter().product();
        Network::from_layers(
            "id",
            shape.clone(),
            vec![(
                Node {
                    name: "r".into(),
                    op_types: vec!["Relu".into()],
                    in_shape: shape,
                    out_shape: vec![1, n],
                },
                Layer::Relu,
            )],
        )
        .unwrap()
    }

    #[test]
    fn image_dims_cover_the_usual_layouts() {
        let d = |s: &[usize]| ImageDims::of_shape(s).unwrap();
        assert_eq!(d(&[1, 1, 28, 28]), d(&[1, 784, 1]));
        assert_eq!((d(&[1, 784, 1]).height, d(&[1, 784]).width), (28, 28));
        let chw = d(&[1, 3, 32, 32]);
        assert_eq!((chw.channels, chw.channels_last), (3, false));
        let hwc = d(&[1, 32, 32, 3]);
        assert_eq!((hwc.channels, hwc.height, hwc.channels_last), (3, 32, true));
        assert_eq!(hwc.index(2, 0, 1), 5);
        assert!(ImageDims::of_shape(&[1, 5]).is_none());
    }

    #[test]
    fn blur_keeps_constants_and_mass_and_smooths_a_spike() {
        let dims = ImageDims::of_shape(&[2, 9, 9]).unwrap();
        let flat = vec![0.7; dims.len()];
        for v in gaussian_blur(&flat, dims, 1.3).unwrap() {
            assert!((v - 0.7).abs() < 1e-12);
        }
        let mut spike = vec![0.0; dims.len()];
        spike[dims.index(1, 4, 4)] = 1.0;
        let b = gaussian_blur(&spike, dims, 1.0).unwrap();
        // Far from the border no mass is lost, and the other channel stays dark.
        assert!((b.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(b[dims.index(0, 4, 4)] == 0.0);
        let centre = b[dims.index(1, 4, 4)];
        assert!(centre < 0.2 && centre > b[dims.index(1, 4, 5)]);
        assert!((b[dims.index(1, 4, 5)] - b[dims.index(1, 5, 4)]).abs() < 1e-15);
        assert_eq!(gaussian_blur(&spike, dims, 0.0).unwrap(), spike);
        assert!(gaussian_blur(&spike[1..], dims, 1.0).is_err());
    }

    #[test]
    fn baselines_resolve_per_sample() {
        let net = identity(vec![1, 1, 4, 4]);
        let x = Array2::from_shape_fn((3, 16), |(b, i)| (b * 16 + i) as f64);
        let z = Baseline::Zero.resolve(&net, x.view()).unwrap();
        assert!(z.iter().all(|&v| v == 0.0) && z.dim() == (3, 16));
        let w = Baseline::Constant(255.0).resolve(&net, x.view()).unwrap();
        assert!(w.iter().all(|&v| v == 255.0));
        let u = Baseline::Uniform {
            low: -1.0,
            high: 2.0,
            seed: 3,
        };
        let u1 = u.resolve(&net, x.view()).unwrap();
        let u2 = u.resolve(&net, x.slice(ndarray::s![1..2, ..])).unwrap();
        assert!(u1.iter().all(|&v| (-1.0..2.0).contains(&v)));
        assert_ne!(u1.row(0), u1.row(1));
        // Sample 0 of the sliced batch gets stream 0, as sample 0 of the full one.
        assert_eq!(u1.row(0), u2.row(0));
        let u3 = u
            .resolve_at(&net, x.slice(ndarray::s![1..2, ..]), 1)
            .unwrap();
        assert_eq!(u1.row(1), u3.row(0));
        let bl = Baseline::Blur { sigma: 1.0 }
            .resolve(&net, x.view())
            .unwrap();
        assert!(bl[[0, 0]] > x[[0, 0]] && bl[[0, 15]] < x[[0, 15]]);
        let g = Baseline::Given(Array2::from_elem((1, 16), 0.5))
            .resolve(&net, x.view())
            .unwrap();
        assert_eq!(g.dim(), (3, 16));
        assert!(Baseline::Given(Array2::zeros((2, 16)))
            .resolve(&net, x.view())
            .is_err());
        assert!(Baseline::Given(Array2::zeros((1, 15)))
            .resolve(&net, x.view())
            .is_err());
        let flat = identity(vec![1, 5]);
        assert!(Baseline::Blur { sigma: 1.0 }
            .resolve(&flat, Array2::zeros((1, 5)).view())
            .is_err());
    }
}
