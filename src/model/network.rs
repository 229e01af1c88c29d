//! The Network IR: a chain of layers the engine can run, differentiate and encode.
//!
//! A [`Network`] is the ONNX graph evaluated at batch size 1, lowered into a
//! closed enum of [`Layer`]s. Every tensor between two layers is one *sample*:
//! the ONNX tensor at batch 1, flattened row-major. Batching is done by the
//! engine on top (rows of an `Array2`), so the IR never has to guess which axis
//! of an ONNX tensor is the batch axis.
//!
//! Parameters are kept in `f64` (what the solvers need) and in an `f32` copy
//! (what fast inference needs); both are built once at load time.

use ndarray::{Array1, Array2, Array4};
use serde::Serialize;

use super::float::Float;

/// Geometry of a 2-D convolution on one sample in CHW layout (a 1-D
/// convolution is stored with `h_in = h_out = kh = 1`).
///
/// `y[o, i, j] = b[o] + Σ_{c, u, v} W[o, c, u, v] · x[g·C_g + c, i·sh − pt + u·dh, j·sw − pl + v·dw]`
/// with out-of-range input positions read as zero.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConvGeom {
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h_in: usize,
    /// Input width.
    pub w_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Output height.
    pub h_out: usize,
    /// Output width.
    pub w_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Vertical stride.
    pub sh: usize,
    /// Horizontal stride.
    pub sw: usize,
    /// Zero padding above the input.
    pub pt: usize,
    /// Zero padding left of the input.
    pub pl: usize,
    /// Vertical dilation.
    pub dh: usize,
    /// Horizontal dilation.
    pub dw: usize,
    /// Channel groups (`c_in` and `c_out` are multiples of it).
    pub groups: usize,
}

impl ConvGeom {
    /// Input channels seen by one group.
    pub fn c_in_per_group(&self) -> usize {
        self.c_in / self.groups
    }
    /// Output channels produced by one group.
    pub fn c_out_per_group(&self) -> usize {
        self.c_out / self.groups
    }
    /// Rows of the im2col matrix of one group: `C_g · kh · kw`.
    pub fn patch_len(&self) -> usize {
        self.c_in_per_group() * self.kh * self.kw
    }
    /// Flattened input size of one sample.
    pub fn in_len(&self) -> usize {
        self.c_in * self.h_in * self.w_in
    }
    /// Flattened output size of one sample.
    pub fn out_len(&self) -> usize {
        self.c_out * self.h_out * self.w_out
    }
}

/// Geometry of a 2-D pooling window on one sample in CHW layout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PoolGeom {
    /// Channels (pooling is per channel).
    pub c: usize,
    /// Input height.
    pub h_in: usize,
    /// Input width.
    pub w_in: usize,
    /// Output height.
    pub h_out: usize,
    /// Output width.
    pub w_out: usize,
    /// Window height.
    pub kh: usize,
    /// Window width.
    pub kw: usize,
    /// Vertical stride.
    pub sh: usize,
    /// Horizontal stride.
    pub sw: usize,
    /// Padding above.
    pub pt: usize,
    /// Padding left.
    pub pl: usize,
    /// Padding below (only matters for the divisor of an average pool).
    pub pb: usize,
    /// Padding right (only matters for the divisor of an average pool).
    pub pr: usize,
}

impl PoolGeom {
    /// Number of positions of window `(i, j)` inside the padded input
    /// (the divisor of an average pool that counts padding).
    pub fn padded_count(&self, i: usize, j: usize) -> usize {
        let span = |o: usize, s: usize, p: usize, k: usize, n: usize, q: usize| {
            let start = (o * s) as isize - p as isize;
            let end = (start + k as isize).min((n + q) as isize);
            (end - start.max(-(p as isize))).max(0) as usize
        };
        span(i, self.sh, self.pt, self.kh, self.h_in, self.pb)
            * span(j, self.sw, self.pl, self.kw, self.w_in, self.pr)
    }
    /// The input rows (start, end) covered by output row `i`, clipped to the input.
    pub fn rows(&self, i: usize) -> (usize, usize) {
        clip_window(i, self.sh, self.pt, self.kh, self.h_in)
    }
    /// The input columns (start, end) covered by output column `j`, clipped to the input.
    pub fn cols(&self, j: usize) -> (usize, usize) {
        clip_window(j, self.sw, self.pl, self.kw, self.w_in)
    }
}

fn clip_window(o: usize, stride: usize, pad: usize, k: usize, n: usize) -> (usize, usize) {
    let start = (o * stride) as isize - pad as isize;
    let end = (start + k as isize).min(n as isize);
    (start.max(0) as usize, end.max(0) as usize)
}

/// An affine layer `y = W x + b` applied to each of `rows` consecutive
/// row vectors of the sample (ONNX Gemm, MatMul + Add, folded BatchNorm).
#[derive(Clone, Debug)]
pub struct Dense<T> {
    /// Weights, `[out, in]`.
    pub weight: Array2<T>,
    /// Bias, `[out]`.
    pub bias: Array1<T>,
    /// How many row vectors of length `in` the sample holds (1 for an MLP).
    pub rows: usize,
}

/// A 2-D (or 1-D) convolution with bias (ONNX Conv, with BatchNorm folded in).
#[derive(Clone, Debug)]
pub struct Conv<T> {
    /// Kernel, `[c_out, c_in / groups, kh, kw]`.
    pub weight: Array4<T>,
    /// Bias, `[c_out]`.
    pub bias: Array1<T>,
    /// Shapes, strides, padding, dilation, groups.
    pub geom: ConvGeom,
}

/// One layer of the IR. Every variant maps one flattened sample to another.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Layer<T> {
    /// `y = W x + b` per row.
    Dense(Dense<T>),
    /// Convolution.
    Conv(Conv<T>),
    /// Element-wise `y = a ⊙ x + s` (in-graph normalisation, an unfolded BatchNorm).
    Affine {
        /// Per-element scale `a`.
        scale: Array1<T>,
        /// Per-element shift `s`.
        shift: Array1<T>,
    },
    /// `y = max(0, x)`.
    Relu,
    /// `y = 1 / (1 + e^{−x})`.
    Sigmoid,
    /// `y = tanh x`.
    Tanh,
    /// `y_i = e^{x_i} / Σ_j e^{x_j}` over `len` entries with stride `inner`,
    /// repeated for `outer × inner` groups.
    Softmax {
        /// Product of the dimensions before the softmax axes.
        outer: usize,
        /// Length of the normalised axis (axes, for opset < 13).
        len: usize,
        /// Product of the dimensions after the normalised axis.
        inner: usize,
    },
    /// Max over each window (padding never wins).
    MaxPool(PoolGeom),
    /// Mean over each window.
    AvgPool {
        /// Windows.
        geom: PoolGeom,
        /// Whether padded positions count in the divisor.
        count_include_pad: bool,
    },
    /// A permutation of the sample's elements: `y[i] = x[index[i]]`.
    Transpose {
        /// Source index of every output element.
        index: Vec<usize>,
    },
    /// Constant-zero padding: `y[i] = x[index[i]]`, or 0 where `index[i]` is `None`.
    Pad {
        /// Source index of every output element.
        index: Vec<Option<usize>>,
    },
    /// A change of shape only; the data is unchanged (Flatten, Reshape, Squeeze, Unsqueeze).
    Reshape,
    /// Embedding lookup: the input holds token indices, `y[t, :] = table[x[t], :]` (ONNX Gather on axis 0).
    Embedding {
        /// The embedding table, `[vocabulary, dim]`.
        table: Array2<T>,
    },
}

impl<T: Float> Layer<T> {
    /// A short name of the layer kind, as printed by `nnexplain info`.
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Dense(_) => "Dense",
            Layer::Conv(_) => "Conv",
            Layer::Affine { .. } => "Affine",
            Layer::Relu => "Relu",
            Layer::Sigmoid => "Sigmoid",
            Layer::Tanh => "Tanh",
            Layer::Softmax { .. } => "Softmax",
            Layer::MaxPool(_) => "MaxPool",
            Layer::AvgPool { .. } => "AvgPool",
            Layer::Transpose { .. } => "Transpose",
            Layer::Pad { .. } => "Pad",
            Layer::Reshape => "Reshape",
            Layer::Embedding { .. } => "Embedding",
        }
    }

    /// Number of trainable parameters.
    pub fn param_count(&self) -> usize {
        match self {
            Layer::Dense(d) => d.weight.len() + d.bias.len(),
            Layer::Conv(c) => c.weight.len() + c.bias.len(),
            Layer::Affine { scale, shift } => scale.len() + shift.len(),
            Layer::Embedding { table } => table.len(),
            _ => 0,
        }
    }

    /// Whether the layer is linear up to a constant (its Jacobian does not depend on the input).
    pub fn is_linear(&self) -> bool {
        matches!(
            self,
            Layer::Dense(_)
                | Layer::Conv(_)
                | Layer::Affine { .. }
                | Layer::AvgPool { .. }
                | Layer::Transpose { .. }
                | Layer::Pad { .. }
                | Layer::Reshape
        )
    }

    /// Whether the layer is piecewise linear (exactly encodable with LRA / MILP).
    pub fn is_piecewise_linear(&self) -> bool {
        !matches!(
            self,
            Layer::Sigmoid | Layer::Tanh | Layer::Softmax { .. } | Layer::Embedding { .. }
        )
    }

    /// Stores every parameter array in row-major order.
    pub fn make_standard_layout(&mut self) {
        fn fix<
            A: ndarray::Data<Elem = T> + ndarray::RawDataClone,
            T: Clone,
            D: ndarray::Dimension,
        >(
            a: &mut ndarray::ArrayBase<A, D>,
        ) where
            ndarray::ArrayBase<A, D>: From<ndarray::Array<T, D>>,
        {
            if !a.is_standard_layout() {
                *a = a.as_standard_layout().into_owned().into();
            }
        }
        match self {
            Layer::Dense(d) => {
                fix(&mut d.weight);
                fix(&mut d.bias);
            }
            Layer::Conv(c) => {
                fix(&mut c.weight);
                fix(&mut c.bias);
            }
            Layer::Affine { scale, shift } => {
                fix(scale);
                fix(shift);
            }
            Layer::Embedding { table } => fix(table),
            _ => {}
        }
    }

    /// The same layer with parameters converted to another float type.
    pub fn cast<U: Float>(&self) -> Layer<U> {
        let c1 = |a: &Array1<T>| a.mapv(|v| U::from_f64(v.as_f64()));
        let c2 = |a: &Array2<T>| a.mapv(|v| U::from_f64(v.as_f64()));
        match self {
            Layer::Dense(d) => Layer::Dense(Dense {
                weight: c2(&d.weight),
                bias: c1(&d.bias),
                rows: d.rows,
            }),
            Layer::Conv(c) => Layer::Conv(Conv {
                weight: c.weight.mapv(|v| U::from_f64(v.as_f64())),
                bias: c1(&c.bias),
                geom: c.geom.clone(),
            }),
            Layer::Affine { scale, shift } => Layer::Affine {
                scale: c1(scale),
                shift: c1(shift),
            },
            Layer::Relu => Layer::Relu,
            Layer::Sigmoid => Layer::Sigmoid,
            Layer::Tanh => Layer::Tanh,
            Layer::Softmax { outer, len, inner } => Layer::Softmax {
                outer: *outer,
                len: *len,
                inner: *inner,
            },
            Layer::MaxPool(g) => Layer::MaxPool(g.clone()),
            Layer::AvgPool {
                geom,
                count_include_pad,
            } => Layer::AvgPool {
                geom: geom.clone(),
                count_include_pad: *count_include_pad,
            },
            Layer::Transpose { index } => Layer::Transpose {
                index: index.clone(),
            },
            Layer::Pad { index } => Layer::Pad {
                index: index.clone(),
            },
            Layer::Reshape => Layer::Reshape,
            Layer::Embedding { table } => Layer::Embedding { table: c2(table) },
        }
    }
}

/// One layer of a [`Network`] with where it came from and the shapes around it.
#[derive(Clone, Debug)]
pub struct Node {
    /// The ONNX node name (or its output name when the node has none).
    pub name: String,
    /// The ONNX op types folded into this layer, e.g. `["MatMul", "Add"]`.
    pub op_types: Vec<String>,
    /// Shape of the layer's input sample (the ONNX tensor at batch 1).
    pub in_shape: Vec<usize>,
    /// Shape of the layer's output sample.
    pub out_shape: Vec<usize>,
}

impl Node {
    /// Flattened input length.
    pub fn in_len(&self) -> usize {
        self.in_shape.iter().product()
    }
    /// Flattened output length.
    pub fn out_len(&self) -> usize {
        self.out_shape.iter().product()
    }
}

/// A neural network lowered into the IR: a chain of [`Node`]s.
#[derive(Clone, Debug)]
pub struct Network {
    pub(crate) name: String,
    pub(crate) input_name: String,
    pub(crate) output_name: String,
    pub(crate) input_shape: Vec<usize>,
    pub(crate) output_shape: Vec<usize>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) layers64: Vec<Layer<f64>>,
    pub(crate) layers32: Vec<Layer<f32>>,
    pub(crate) opset: i64,
}

impl Network {
    /// Builds a network from layers and their nodes (checks that consecutive shapes agree).
    pub fn from_layers(
        name: impl Into<String>,
        input_shape: Vec<usize>,
        layers: Vec<(Node, Layer<f64>)>,
    ) -> crate::Result<Network> {
        let (nodes, mut layers64): (Vec<Node>, Vec<Layer<f64>>) = layers.into_iter().unzip();
        // The kernels read parameters as row-major slices.
        for l in &mut layers64 {
            l.make_standard_layout();
        }
        let mut shape = input_shape.clone();
        for (i, n) in nodes.iter().enumerate() {
            let have: usize = shape.iter().product();
            if n.in_len() != have {
                return Err(crate::Error::Shape(format!(
                    "layer {i} ('{}') takes {:?} but receives {:?}",
                    n.name, n.in_shape, shape
                )));
            }
            shape = n.out_shape.clone();
        }
        let layers32 = layers64.iter().map(|l| l.cast::<f32>()).collect();
        Ok(Network {
            name: name.into(),
            input_name: "input".into(),
            output_name: "output".into(),
            output_shape: shape,
            input_shape,
            nodes,
            layers64,
            layers32,
            opset: 0,
        })
    }

    /// A name for the network (the file stem of its ONNX file).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The ONNX graph input's name.
    pub fn input_name(&self) -> &str {
        &self.input_name
    }
    /// The ONNX graph output's name.
    pub fn output_name(&self) -> &str {
        &self.output_name
    }
    /// The ONNX opset the model was written for (0 when built in code).
    pub fn opset(&self) -> i64 {
        self.opset
    }
    /// Shape of one input sample: the ONNX input shape with a dynamic batch fixed to 1.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }
    /// Shape of one output sample.
    pub fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }
    /// Flattened input length.
    pub fn input_len(&self) -> usize {
        self.input_shape.iter().product()
    }
    /// Flattened output length.
    pub fn output_len(&self) -> usize {
        self.output_shape.iter().product()
    }
    /// The layers, in order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }
    /// Number of layers.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }
    /// Whether the network has no layer (it is then the identity).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
    /// The layers with their `f64` parameters, in order.
    pub fn layers(&self) -> &[Layer<f64>] {
        &self.layers64
    }
    /// Layer `i` with its `f64` parameters.
    pub fn layer(&self, i: usize) -> &Layer<f64> {
        &self.layers64[i]
    }
    /// Total number of parameters.
    pub fn param_count(&self) -> usize {
        self.layers64.iter().map(|l| l.param_count()).sum()
    }
    /// Flattened length of activation `i` (0 is the input, `i` the output of layer `i − 1`).
    pub fn activation_len(&self, i: usize) -> usize {
        if i == 0 {
            self.input_len()
        } else {
            self.nodes[i - 1].out_len()
        }
    }
    /// Whether every layer is piecewise linear, so that an exact LRA/MILP encoding exists;
    /// `Err` names the first layer that is not.
    pub fn exact_encoding(&self) -> Result<(), String> {
        match self
            .layers64
            .iter()
            .enumerate()
            .find(|(_, l)| !l.is_piecewise_linear())
        {
            None => Ok(()),
            Some((i, l)) => Err(format!(
                "layer {i} '{}' is {} (not piecewise linear)",
                self.nodes[i].name,
                l.kind()
            )),
        }
    }
    /// Index of the first affine layer with weights (Dense or Conv): the
    /// "first layer" whose neurons SMUG ranks.
    pub fn first_affine_layer(&self) -> Option<usize> {
        self.layers64
            .iter()
            .position(|l| matches!(l, Layer::Dense(_) | Layer::Conv(_)))
    }

    /// The layers with parameters in `T` (the `f64` originals or their `f32` copy).
    pub fn layers_as<T: Float>(&self) -> &[Layer<T>] {
        T::layers(self)
    }
}
