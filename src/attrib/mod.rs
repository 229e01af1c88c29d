//! Attributions computed on the Network IR: how much each element of an
//! activation (the input, or a hidden layer) contributes to an objective.
//!
//! Every method works on a batch of inputs (`[batch, input_len]`, one row per
//! sample), in `f64` or `f32`, and explains one [`Objective`] per sample (a
//! logit by default, or a softmax entry; see [`Target`]):
//!
//! | method | function | definition |
//! |---|---|---|
//! | saliency (Simonyan et al. 2013) | [`saliency`] | `∂F/∂x` |
//! | gradient ⊙ input | [`gradient_x_input`] | `x ⊙ ∂F/∂x` |
//! | Integrated Gradients (Sundararajan et al. 2017) | [`integrated_gradients`] | `(x − x') ⊙ ∫₀¹ ∂F/∂x(x' + α(x − x')) dα` |
//! | SmoothGrad (Smilkov et al. 2017) | [`smoothgrad`] | `1/N Σ_k ∂F/∂x(x + ε_k)` |
//! | SmoothGrad on IG | [`smoothgrad_ig`] | `1/N Σ_k IG(x + ε_k)` |
//! | DeepLIFT, rescale rule (Shrikumar et al. 2017) | [`deeplift`] | `(x − x') ⊙ m`, `m` the multipliers |
//! | guided backprop (Springenberg et al. 2015) | [`guided_backprop`] | backward pass with `ReLU` passing only positive gradients |
//! | leave-one-out (Zeiler & Fergus 2014) | [`leave_one_out`] | `F(x) − F(x with unit u set to r)` |
//!
//! Methods with a baseline report the completeness residual of every map
//! (`Σ_i A_i` against `F(x) − F(x')`, see [`completeness_residual`]).

pub mod baseline;
pub mod gradient;
pub mod ig;
pub mod occlusion;
pub mod rules;
pub mod smooth;

mod rng;

use ndarray::{Array2, ArrayView2, Axis};
use serde::Serialize;

use crate::model::{Float, Network, Objective, Trace};
use crate::{Error, Result};

pub use baseline::{gaussian_blur, Baseline, ImageDims};
pub use gradient::{gradient_x_input, saliency};
pub use ig::{
    integrated_gradients, integrated_gradients_at, integrated_gradients_from, IgMap, Rule,
};
pub use occlusion::leave_one_out;
pub use rules::{deeplift, deeplift_with, guided_backprop, DEEPLIFT_EPS};
pub use smooth::{smoothgrad, smoothgrad_ig, Noise};

/// Rows run through the network per batch (samples × steps or draws).
pub(crate) const ROWS: usize = 256;

/// Bytes of the widest activation of one batch that [`rows_for`] aims at:
/// small enough that a batch's activations (and a convolution's patch
/// matrix) stay in the caches and below the allocator's mmap threshold.
const BATCH_BYTES: usize = 2 << 20;

/// Rows per batch for a pass through layers `from..` in `T`: the widest
/// activation times the rows stays near [`BATCH_BYTES`], between 32 and 512.
pub(crate) fn rows_for<T>(net: &Network, from: usize) -> usize {
    let widest = (from..=net.len())
        .map(|i| net.activation_len(i))
        .max()
        .unwrap_or(1)
        .max(1);
    (BATCH_BYTES / (widest * std::mem::size_of::<T>())).clamp(32, 512)
}

/// Which attribution method produced a map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// `∂F/∂x`.
    Gradient,
    /// `x ⊙ ∂F/∂x`.
    GradientXInput,
    /// Integrated Gradients.
    IntegratedGradients,
    /// SmoothGrad.
    SmoothGrad,
    /// SmoothGrad on Integrated Gradients.
    SmoothGradIg,
    /// DeepLIFT with the rescale rule.
    DeepLift,
    /// Guided backprop.
    GuidedBackprop,
}

/// The objective explained for each sample of a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// The same objective for every sample.
    All(Objective),
    /// One objective per sample (e.g. each sample's predicted class).
    PerSample(Vec<Objective>),
}

impl From<Objective> for Target {
    fn from(o: Objective) -> Target {
        Target::All(o)
    }
}

impl From<Vec<Objective>> for Target {
    fn from(v: Vec<Objective>) -> Target {
        Target::PerSample(v)
    }
}

impl Target {
    /// Logit `c` for every sample: the usual target, `F(x) = y_c(x)`.
    pub fn logit(c: usize) -> Target {
        Target::All(Objective::Logit(c))
    }

    /// Softmax entry `c` for every sample: `F(x) = softmax(y(x))_c`.
    pub fn softmax(c: usize) -> Target {
        Target::All(Objective::Softmax(c))
    }

    /// The objective of sample `b`.
    pub fn objective(&self, b: usize) -> &Objective {
        match self {
            Target::All(o) => o,
            Target::PerSample(v) => &v[b],
        }
    }

    /// Checks the class indices against the network's outputs and the number
    /// of objectives against the batch.
    pub fn check(&self, net: &Network, batch: usize) -> Result<()> {
        match self {
            Target::All(o) => o.check(net.output_len()),
            Target::PerSample(v) => {
                if v.len() != batch {
                    return Err(Error::Shape(format!(
                        "{} targets for a batch of {batch}",
                        v.len()
                    )));
                }
                v.iter().try_for_each(|o| o.check(net.output_len()))
            }
        }
    }
}

/// Attribution maps for a batch, with what is needed to judge them.
#[derive(Clone, Debug)]
pub struct Attribution<T> {
    /// The method.
    pub method: Method,
    /// One map per sample, `[batch, len]`, in the input's layout.
    pub maps: Array2<T>,
    /// `F(x)` per sample.
    pub values: Vec<f64>,
    /// `F(x')` per sample, for methods with a baseline.
    pub baseline_values: Option<Vec<f64>>,
    /// The completeness residual of every map (see [`completeness_residual`]),
    /// for the methods where completeness holds in theory (IG, SmoothGrad-IG, DeepLIFT).
    pub residuals: Option<Vec<f64>>,
}

impl<T: Float> Attribution<T> {
    /// The largest completeness residual of the batch, where defined.
    pub fn worst_residual(&self) -> Option<f64> {
        self.residuals
            .as_ref()
            .map(|r| r.iter().copied().fold(0.0, f64::max))
    }

    /// Map `b` as `f64`.
    pub fn map_f64(&self, b: usize) -> Vec<f64> {
        self.maps.row(b).iter().map(|v| v.as_f64()).collect()
    }
}

/// `|Σ_i A_i − (F(x) − F(x'))| / max(|F(x) − F(x')|, 1e-12)`: how far a map
/// is from completeness (Sundararajan et al. 2017, Prop. 1; Shrikumar et al.
/// 2017, "summation-to-delta").
pub fn completeness_residual(sum: f64, f_input: f64, f_baseline: f64) -> f64 {
    let diff = f_input - f_baseline;
    (sum - diff).abs() / diff.abs().max(1e-12)
}

/// Runs rows of activation `from` through the network's tail and returns the
/// trace, the objective value of every row and `∂f/∂y` per row; `obj(r)` is
/// the objective of row `r`.
pub(crate) fn trace_and_seed<'a, T: Float>(
    net: &Network,
    from: usize,
    a: ArrayView2<T>,
    obj: impl Fn(usize) -> &'a Objective,
) -> Result<(Trace<T>, Vec<f64>, Array2<T>)> {
    let trace = net.trace_range(from, net.len(), a)?;
    let y = trace.output();
    let mut gy = Array2::<T>::zeros(y.raw_dim());
    let mut values = Vec::with_capacity(y.nrows());
    let mut buf = vec![T::zero(); y.ncols()];
    for (r, (yr, mut gr)) in y
        .axis_iter(Axis(0))
        .zip(gy.axis_iter_mut(Axis(0)))
        .enumerate()
    {
        let yr = yr.to_vec();
        values.push(obj(r).value_and_grad(&yr, &mut buf).as_f64());
        gr.iter_mut().zip(&buf).for_each(|(g, b)| *g = *b);
    }
    Ok((trace, values, gy))
}

/// Values and gradients of each row's objective with respect to activation `from`.
pub(crate) fn row_gradients<'a, T: Float>(
    net: &Network,
    from: usize,
    a: ArrayView2<T>,
    obj: impl Fn(usize) -> &'a Objective,
) -> Result<(Vec<f64>, Array2<T>)> {
    let (trace, values, gy) = trace_and_seed(net, from, a, obj)?;
    let g = net.backward(&trace, from, gy.view())?;
    Ok((values, g))
}

/// Objective values only (a forward pass), one per row.
pub(crate) fn row_values<'a, T: Float>(
    net: &Network,
    from: usize,
    a: ArrayView2<T>,
    obj: impl Fn(usize) -> &'a Objective,
) -> Result<Vec<f64>> {
    let y = net.forward_range(from, net.len(), a)?;
    let mut buf = vec![T::zero(); y.ncols()];
    Ok(y.axis_iter(Axis(0))
        .enumerate()
        .map(|(r, yr)| obj(r).value_and_grad(&yr.to_vec(), &mut buf).as_f64())
        .collect())
}

/// Checks that a batch has the network's input width.
pub(crate) fn check_batch<T>(net: &Network, from: usize, x: &ArrayView2<T>) -> Result<()> {
    if from > net.len() {
        return Err(Error::InvalidArgument(format!(
            "activation {from} does not exist: the network has {} layers",
            net.len()
        )));
    }
    let n = net.activation_len(from);
    if x.ncols() != n {
        return Err(Error::Shape(format!(
            "activation {from} of '{}' has {n} elements per sample, the batch has {}",
            net.name(),
            x.ncols()
        )));
    }
    Ok(())
}

/// `x` as `f64`.
pub(crate) fn to_f64<T: Float>(x: ArrayView2<T>) -> Array2<f64> {
    x.mapv(|v| v.as_f64())
}

/// `x` as `T`.
pub(crate) fn from_f64<T: Float>(x: ArrayView2<f64>) -> Array2<T> {
    x.mapv(T::from_f64)
}

#[cfg(test)]
pub(crate) mod testnets {
    //! Small networks shared by the unit tests of the attribution methods.
    use crate::model::{Conv, ConvGeom, Dense, Layer, Network, Node, PoolGeom};
    use ndarray::{Array1, Array2, Array4};

    pub fn node(name: &str, ins: Vec<usize>, outs: Vec<usize>) -> Node {
        Node {
            name: name.into(),
            op_types: vec![name.into()],
            in_shape: ins,
            out_shape: outs,
        }
    }

    pub fn dense(w: Array2<f64>, b: Vec<f64>) -> (Node, Layer<f64>) {
        let (o, i) = w.dim();
        (
            node("Gemm", vec![1, i], vec![1, o]),
            Layer::Dense(Dense {
                weight: w,
                bias: Array1::from_vec(b),
                rows: 1,
            }),
        )
    }

    fn wave(n: usize, s: f64) -> Vec<f64> {
        (0..n).map(|i| ((i as f64 + 1.0) * s).sin()).collect()
    }

    /// `y = W x + b`, 5 inputs, 3 outputs.
    pub fn linear() -> Network {
        let w = Array2::from_shape_vec((3, 5), wave(15, 0.77)).unwrap();
        Network::from_layers("linear", vec![1, 5], vec![dense(w, vec![0.1, -0.2, 0.3])]).unwrap()
    }

    /// Dense → ReLU → Dense → ReLU → Dense, 6 inputs, 4 outputs.
    pub fn mlp() -> Network {
        let w1 = Array2::from_shape_vec((8, 6), wave(48, 0.61)).unwrap();
        let w2 = Array2::from_shape_vec((7, 8), wave(56, 1.37)).unwrap();
        let w3 = Array2::from_shape_vec((4, 7), wave(28, 0.93)).unwrap();
        Network::from_layers(
            "mlp",
            vec![1, 6],
            vec![
                dense(w1, wave(8, 0.3)),
                (node("Relu", vec![1, 8], vec![1, 8]), Layer::Relu),
                dense(w2, wave(7, 0.5)),
                (node("Relu", vec![1, 7], vec![1, 7]), Layer::Relu),
                dense(w3, wave(4, 0.7)),
            ],
        )
        .unwrap()
    }

    /// Dense → Tanh → Dense → Sigmoid → Dense, 4 inputs, 3 outputs.
    pub fn smooth() -> Network {
        let w1 = Array2::from_shape_vec((5, 4), wave(20, 0.41)).unwrap();
        let w2 = Array2::from_shape_vec((5, 5), wave(25, 1.11)).unwrap();
        let w3 = Array2::from_shape_vec((3, 5), wave(15, 0.29)).unwrap();
        Network::from_layers(
            "smooth",
            vec![1, 4],
            vec![
                dense(w1, wave(5, 0.2)),
                (node("Tanh", vec![1, 5], vec![1, 5]), Layer::Tanh),
                dense(w2, wave(5, 0.4)),
                (node("Sigmoid", vec![1, 5], vec![1, 5]), Layer::Sigmoid),
                dense(w3, wave(3, 0.6)),
            ],
        )
        .unwrap()
    }

    /// Conv(2×1×3×3, stride 1) → ReLU → MaxPool 2×2 → Dense, on a 1×6×6 image.
    pub fn cnn() -> Network {
        let geom = ConvGeom {
            c_in: 1,
            h_in: 6,
            w_in: 6,
            c_out: 2,
            h_out: 4,
            w_out: 4,
            kh: 3,
            kw: 3,
            sh: 1,
            sw: 1,
            pt: 0,
            pl: 0,
            dh: 1,
            dw: 1,
            groups: 1,
        };
        let pool = PoolGeom {
            c: 2,
            h_in: 4,
            w_in: 4,
            h_out: 2,
            w_out: 2,
            kh: 2,
            kw: 2,
            sh: 2,
            sw: 2,
            pt: 0,
            pl: 0,
            pb: 0,
            pr: 0,
        };
        let w = Array2::from_shape_vec((3, 8), wave(24, 0.53)).unwrap();
        Network::from_layers(
            "cnn",
            vec![1, 1, 6, 6],
            vec![
                (
                    node("Conv", vec![1, 1, 6, 6], vec![1, 2, 4, 4]),
                    Layer::Conv(Conv {
                        weight: Array4::from_shape_vec((2, 1, 3, 3), wave(18, 0.83)).unwrap(),
                        bias: Array1::from_vec(vec![0.05, -0.1]),
                        geom,
                    }),
                ),
                (
                    node("Relu", vec![1, 2, 4, 4], vec![1, 2, 4, 4]),
                    Layer::Relu,
                ),
                (
                    node("MaxPool", vec![1, 2, 4, 4], vec![1, 2, 2, 2]),
                    Layer::MaxPool(pool),
                ),
                (
                    node("Flatten", vec![1, 2, 2, 2], vec![1, 8]),
                    Layer::Reshape,
                ),
                dense(w, vec![0.0, 0.1, -0.1]),
            ],
        )
        .unwrap()
    }

    /// A batch of `b` inputs for `net`, deterministic.
    pub fn inputs(net: &Network, b: usize, s: f64) -> Array2<f64> {
        let n = net.input_len();
        Array2::from_shape_fn((b, n), |(r, i)| {
            (((r * n + i) as f64 + 0.5) * s).sin() * 0.8 + 0.1
        })
    }
}
