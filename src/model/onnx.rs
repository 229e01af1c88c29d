//! ONNX → Network IR.
//!
//! tract-onnx parses the protobuf; this module walks the graph in order and
//! lowers each node through one table (`lower_data_node`). Nodes whose inputs
//! are all constant (initializers, `Constant`, the `Shape` of a tensor whose
//! shape is static, and anything computed from those) are evaluated at load
//! time. Every other node must read exactly one data tensor, the latest one:
//! the IR is a chain. A node that breaks either rule, or an op the table does
//! not know, is an [`Error::UnsupportedOp`] naming the node and its op type.

use std::collections::HashMap;
use std::path::Path;

use ndarray::{Array1, Array2, Array4, ArrayD, Axis, IxDyn};
use tract_onnx::pb::{self, tensor_shape_proto::dimension, type_proto, NodeProto};
use tract_onnx::prelude::Framework;

use super::network::{Conv, ConvGeom, Dense, Layer, Network, Node, PoolGeom};
use crate::{Error, Result};

/// ONNX element types of the input that the IR accepts.
const FLOAT_TYPES: [i32; 3] = [1, 10, 11]; // FLOAT, FLOAT16, DOUBLE
const INT_TYPES: [i32; 4] = [6, 7, 12, 13]; // INT32, INT64, UINT32, UINT64

/// A constant known at load time. Integer-typed ONNX tensors keep `int` so that
/// `Div` and `Cast` behave as ONNX says.
#[derive(Clone, Debug)]
struct Const {
    value: ArrayD<f64>,
    int: bool,
}

/// What the lowering knows about the latest data tensor.
struct Tip {
    name: String,
    shape: Vec<usize>,
}

struct Lowering {
    opset: i64,
    consts: HashMap<String, Const>,
    /// Static shapes of every data tensor seen so far (for `Shape` of an earlier value).
    shapes: HashMap<String, Vec<usize>>,
    tip: Tip,
    layers: Vec<(Node, Layer<f64>)>,
}

/// What the input element type of a network is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputType {
    /// Real-valued input (ONNX float, double, float16).
    Float,
    /// Integer token indices (ONNX int32/int64), for embedding lookups.
    Int,
}

impl Network {
    /// Reads an ONNX file and lowers it into the IR. A dynamic batch dimension
    /// is fixed to 1.
    ///
    /// ```no_run
    /// let net = nnexplain::Network::from_onnx("models/mnist_mlp.onnx")?;
    /// println!("{} layers, {} parameters", net.len(), net.param_count());
    /// # Ok::<(), nnexplain::Error>(())
    /// ```
    pub fn from_onnx(path: impl AsRef<Path>) -> Result<Network> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            ));
        }
        let onnx = tract_onnx::onnx();
        let proto = onnx
            .proto_model_for_path(path)
            .map_err(|e| onnx_err(path, format!("not a readable ONNX protobuf: {e}")))?;
        lower_model(path, &onnx, &proto)
    }
}

fn onnx_err(path: &Path, message: impl Into<String>) -> Error {
    Error::Onnx {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn unsupported(node: &NodeProto, reason: impl Into<String>) -> Error {
    Error::UnsupportedOp {
        node: node_name(node),
        op_type: node.op_type.clone(),
        reason: reason.into(),
    }
}

fn node_name(node: &NodeProto) -> String {
    if !node.name.is_empty() {
        node.name.clone()
    } else {
        node.output.first().cloned().unwrap_or_default()
    }
}

/// The ONNX input shape and element type of a model, with a dynamic batch fixed to 1.
pub(crate) fn input_signature(
    path: &Path,
    proto: &pb::ModelProto,
) -> Result<(String, Vec<usize>, InputType)> {
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| onnx_err(path, "the model has no graph"))?;
    let inits: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&pb::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !inits.contains(i.name.as_str()))
        .collect();
    let input = match inputs.as_slice() {
        [one] => *one,
        [] => return Err(onnx_err(path, "the graph has no data input")),
        many => {
            return Err(onnx_err(
                path,
                format!(
                    "the graph has {} data inputs ({}); the IR takes exactly one",
                    many.len(),
                    many.iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))
        }
    };
    let Some(type_proto::Value::TensorType(tt)) =
        input.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(onnx_err(
            path,
            format!("input '{}' is not a tensor", input.name),
        ));
    };
    let ty = if FLOAT_TYPES.contains(&tt.elem_type) {
        InputType::Float
    } else if INT_TYPES.contains(&tt.elem_type) {
        InputType::Int
    } else {
        return Err(onnx_err(
            path,
            format!(
                "input '{}' has ONNX element type {}, expected a float or integer tensor",
                input.name, tt.elem_type
            ),
        ));
    };
    let dims = tt
        .shape
        .as_ref()
        .ok_or_else(|| onnx_err(path, format!("input '{}' has no shape", input.name)))?;
    let mut shape = Vec::with_capacity(dims.dim.len());
    for (axis, d) in dims.dim.iter().enumerate() {
        let v = match &d.value {
            Some(dimension::Value::DimValue(v)) if *v > 0 => *v as usize,
            other if axis == 0 => {
                // A symbolic, zero or missing leading dimension is the batch: fix it to 1.
                let _ = other;
                1
            }
            other => {
                return Err(onnx_err(
                    path,
                    format!(
                        "input '{}' has dynamic dimension {} at axis {axis}; only the batch axis may be dynamic",
                        input.name,
                        match other {
                            Some(dimension::Value::DimParam(p)) => format!("'{p}'"),
                            Some(dimension::Value::DimValue(v)) => v.to_string(),
                            None => "(unknown)".into(),
                        }
                    ),
                ))
            }
        };
        shape.push(v);
    }
    Ok((input.name.clone(), shape, ty))
}

fn lower_model(path: &Path, onnx: &tract_onnx::Onnx, proto: &pb::ModelProto) -> Result<Network> {
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| onnx_err(path, "the model has no graph"))?;
    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(1);
    let (input_name, input_shape, _) = input_signature(path, proto)?;
    let dir = path.parent().and_then(|p| p.to_str());
    let mut consts = HashMap::new();
    for t in &graph.initializer {
        let c = load_const(onnx, t, dir)
            .map_err(|m| onnx_err(path, format!("initializer '{}': {m}", t.name)))?;
        consts.insert(t.name.clone(), c);
    }
    let mut low = Lowering {
        opset,
        consts,
        shapes: HashMap::from([(input_name.clone(), input_shape.clone())]),
        tip: Tip {
            name: input_name.clone(),
            shape: input_shape.clone(),
        },
        layers: Vec::new(),
    };
    for node in &graph.node {
        low.lower_node(onnx, node, dir)?;
    }
    let output_name = match graph.output.as_slice() {
        [one] => one.name.clone(),
        [] => return Err(onnx_err(path, "the graph has no output")),
        many => {
            return Err(onnx_err(
                path,
                format!(
                    "the graph has {} outputs ({}); the IR takes exactly one",
                    many.len(),
                    many.iter()
                        .map(|o| o.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))
        }
    };
    if output_name != low.tip.name {
        return Err(onnx_err(
            path,
            format!(
                "graph output '{output_name}' is not the end of the chain of layers (which ends at '{}')",
                low.tip.name
            ),
        ));
    }
    // A trailing change of shape (e.g. a final Flatten) is kept as a layer so that
    // the output shape is the ONNX one.
    let last_shape = low
        .layers
        .last()
        .map(|(n, _)| n.out_shape.clone())
        .unwrap_or_else(|| input_shape.clone());
    if last_shape != low.tip.shape {
        let shape = low.tip.shape.clone();
        low.push_reshape("output", &["Reshape"], last_shape, shape);
    }
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut net = Network::from_layers(name, input_shape, low.layers)?;
    net.input_name = input_name;
    net.output_name = output_name;
    net.opset = opset;
    Ok(net)
}

fn load_const(
    onnx: &tract_onnx::Onnx,
    t: &pb::TensorProto,
    dir: Option<&str>,
) -> std::result::Result<Const, String> {
    let tensor =
        tract_onnx::tensor::load_tensor(&*onnx.provider, t, dir).map_err(|e| e.to_string())?;
    let int = tensor.datum_type().is_integer() || tensor.datum_type().is::<bool>();
    let f = tensor.cast_to::<f64>().map_err(|e| e.to_string())?;
    let value = f
        .into_owned()
        .into_plain_array::<f64>()
        .map_err(|e| e.to_string())?;
    Ok(Const { value, int })
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}
fn attr_i(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map(|a| a.i).unwrap_or(default)
}
fn attr_f(node: &NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).map(|a| a.f).unwrap_or(default)
}
fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}
fn attr_s(node: &NodeProto, name: &str) -> Option<String> {
    attr(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

fn norm_axis(node: &NodeProto, axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    if axis < -r || axis >= r.max(1) {
        return Err(unsupported(
            node,
            format!("axis {axis} is out of range for rank {rank}"),
        ));
    }
    Ok(if axis < 0 {
        (axis + r) as usize
    } else {
        axis as usize
    })
}

/// Numpy-style broadcast of two shapes.
fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return None;
        };
    }
    Some(out)
}

fn broadcast_to(c: &ArrayD<f64>, shape: &[usize]) -> Option<ArrayD<f64>> {
    c.broadcast(IxDyn(shape)).map(|v| v.to_owned())
}

impl Lowering {
    fn input_of<'n>(&self, node: &'n NodeProto, i: usize) -> Option<&'n str> {
        node.input
            .get(i)
            .map(|s| s.as_str())
            .filter(|s| !s.is_empty())
    }

    fn konst(&self, node: &NodeProto, i: usize) -> Result<&Const> {
        let name = self
            .input_of(node, i)
            .ok_or_else(|| unsupported(node, format!("input {i} is missing")))?;
        self.consts
            .get(name)
            .ok_or_else(|| unsupported(node, format!("input {i} ('{name}') must be a constant")))
    }

    fn opt_konst(&self, node: &NodeProto, i: usize) -> Result<Option<&Const>> {
        match self.input_of(node, i) {
            None => Ok(None),
            Some(_) => self.konst(node, i).map(Some),
        }
    }

    fn lower_node(
        &mut self,
        onnx: &tract_onnx::Onnx,
        node: &NodeProto,
        dir: Option<&str>,
    ) -> Result<()> {
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(unsupported(
                node,
                format!(
                    "operator domain '{}' is not the ONNX standard one",
                    node.domain
                ),
            ));
        }
        let inputs: Vec<&str> = node
            .input
            .iter()
            .map(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .collect();
        let data: Vec<&str> = inputs
            .iter()
            .copied()
            .filter(|n| !self.consts.contains_key(*n))
            .collect();
        // Shape of a tensor with a static shape is a constant even when the tensor is data.
        let known_shape = data.first().and_then(|d| self.shapes.get(*d));
        if let (true, [_], Some(shape)) = (node.op_type == "Shape", data.as_slice(), known_shape) {
            let v: Vec<f64> = shape.iter().map(|&d| d as f64).collect();
            let n = v.len();
            let c = Const {
                value: ArrayD::from_shape_vec(IxDyn(&[n]), v)
                    .map_err(|e| unsupported(node, e.to_string()))?,
                int: true,
            };
            let c = slice_shape(node, c)?;
            self.set_const(node, c);
            return Ok(());
        }
        if data.is_empty() {
            let c = self.eval_const(onnx, node, dir)?;
            self.set_const(node, c);
            return Ok(());
        }
        for d in &data {
            if *d != self.tip.name {
                return Err(unsupported(
                    node,
                    format!(
                        "reads '{d}', which is not the latest value of the chain ('{}'): \
                         the IR holds chains of layers, not branching graphs",
                        self.tip.name
                    ),
                ));
            }
        }
        if data.len() > 1 {
            return Err(unsupported(
                node,
                "reads the same data tensor twice (x ⊙ x, x + x): only operations with one data input and constants are supported",
            ));
        }
        self.lower_data_node(node)
    }

    fn set_const(&mut self, node: &NodeProto, c: Const) {
        if let Some(o) = node.output.first() {
            self.consts.insert(o.clone(), c);
        }
    }

    fn set_tip(&mut self, node: &NodeProto, shape: Vec<usize>) {
        if let Some(o) = node.output.first() {
            self.shapes.insert(o.clone(), shape.clone());
            self.tip = Tip {
                name: o.clone(),
                shape,
            };
        }
    }

    fn push(&mut self, node: &NodeProto, layer: Layer<f64>, out_shape: Vec<usize>) {
        let n = Node {
            name: node_name(node),
            op_types: vec![node.op_type.clone()],
            in_shape: self.tip.shape.clone(),
            out_shape: out_shape.clone(),
        };
        self.layers.push((n, layer));
        self.set_tip(node, out_shape);
    }

    fn push_reshape(
        &mut self,
        name: &str,
        ops: &[&str],
        in_shape: Vec<usize>,
        out_shape: Vec<usize>,
    ) {
        if let Some((n, Layer::Reshape)) = self.layers.last_mut() {
            n.out_shape = out_shape;
            n.op_types.extend(ops.iter().map(|s| s.to_string()));
            return;
        }
        self.layers.push((
            Node {
                name: name.to_string(),
                op_types: ops.iter().map(|s| s.to_string()).collect(),
                in_shape,
                out_shape,
            },
            Layer::Reshape,
        ));
    }

    fn reshape(&mut self, node: &NodeProto, out_shape: Vec<usize>) -> Result<()> {
        let have: usize = self.tip.shape.iter().product();
        let want: usize = out_shape.iter().product();
        if have != want {
            return Err(unsupported(
                node,
                format!(
                    "cannot reshape {:?} ({have} elements) to {:?} ({want})",
                    self.tip.shape, out_shape
                ),
            ));
        }
        if out_shape != self.tip.shape {
            let in_shape = self.tip.shape.clone();
            self.push_reshape(
                &node_name(node),
                &[&node.op_type],
                in_shape,
                out_shape.clone(),
            );
        }
        self.set_tip(node, out_shape);
        Ok(())
    }

    /// Emits `y = a ⊙ x + s` (full-size `a`, `s`), folded into the previous
    /// affine layer when that is exact.
    fn affine(
        &mut self,
        node: &NodeProto,
        scale: Array1<f64>,
        shift: Array1<f64>,
        out_shape: Vec<usize>,
    ) {
        let folded = match self.layers.last_mut() {
            Some((n, layer)) if n.out_shape == self.tip.shape => fold_affine(layer, &scale, &shift),
            _ => false,
        };
        if folded {
            if let Some((n, _)) = self.layers.last_mut() {
                n.op_types.push(node.op_type.clone());
                n.out_shape = out_shape.clone();
            }
            self.set_tip(node, out_shape);
        } else {
            self.push(node, Layer::Affine { scale, shift }, out_shape);
        }
    }

    /// Lowers a node that reads the data tensor (the table of supported ops).
    fn lower_data_node(&mut self, node: &NodeProto) -> Result<()> {
        let shape = self.tip.shape.clone();
        let rank = shape.len();
        let len: usize = shape.iter().product();
        let data_pos = node
            .input
            .iter()
            .position(|n| *n == self.tip.name)
            .unwrap_or(0);
        match node.op_type.as_str() {
            "Identity" | "Dropout" => {
                self.set_tip(node, shape);
                Ok(())
            }
            "Cast" => {
                let to = attr_i(node, "to", 1) as i32;
                if FLOAT_TYPES.contains(&to) {
                    self.set_tip(node, shape);
                    Ok(())
                } else {
                    Err(unsupported(node, format!("cast of the data to ONNX type {to} (only float casts keep the network differentiable)")))
                }
            }
            "Relu" => {
                self.push(node, Layer::Relu, shape);
                Ok(())
            }
            "Sigmoid" => {
                self.push(node, Layer::Sigmoid, shape);
                Ok(())
            }
            "Tanh" => {
                self.push(node, Layer::Tanh, shape);
                Ok(())
            }
            "Softmax" => {
                let default = if self.opset >= 13 { -1 } else { 1 };
                let axis = norm_axis(node, attr_i(node, "axis", default), rank)?;
                let outer: usize = shape[..axis].iter().product();
                let (len, inner) = if self.opset >= 13 {
                    (shape[axis], shape[axis + 1..].iter().product())
                } else {
                    (shape[axis..].iter().product(), 1)
                };
                self.push(node, Layer::Softmax { outer, len, inner }, shape);
                Ok(())
            }
            "Flatten" => {
                let axis = attr_i(node, "axis", 1);
                let axis = if axis < 0 { axis + rank as i64 } else { axis };
                if axis < 0 || axis > rank as i64 {
                    return Err(unsupported(
                        node,
                        format!("axis {axis} is out of range for rank {rank}"),
                    ));
                }
                let a = axis as usize;
                let out = vec![shape[..a].iter().product(), shape[a..].iter().product()];
                self.reshape(node, out)
            }
            "Reshape" => {
                let target = self
                    .konst(node, 1)?
                    .value
                    .iter()
                    .map(|&v| v as i64)
                    .collect::<Vec<_>>();
                let allowzero = attr_i(node, "allowzero", 0) != 0;
                let out = resolve_reshape(node, &shape, &target, allowzero)?;
                self.reshape(node, out)
            }
            "Squeeze" | "Unsqueeze" => {
                let axes: Vec<i64> = match attr_ints(node, "axes") {
                    Some(a) => a,
                    None => match self.opt_konst(node, 1)? {
                        Some(c) => c.value.iter().map(|&v| v as i64).collect(),
                        None => Vec::new(),
                    },
                };
                let out = if node.op_type == "Squeeze" {
                    squeeze_shape(node, &shape, &axes)?
                } else {
                    unsqueeze_shape(node, &shape, &axes)?
                };
                self.reshape(node, out)
            }
            "Transpose" => {
                let perm: Vec<usize> = match attr_ints(node, "perm") {
                    Some(p) => p
                        .iter()
                        .map(|&v| norm_axis(node, v, rank))
                        .collect::<Result<_>>()?,
                    None => (0..rank).rev().collect(),
                };
                let mut seen = vec![false; rank];
                if perm.len() != rank || perm.iter().any(|&p| std::mem::replace(&mut seen[p], true))
                {
                    return Err(unsupported(
                        node,
                        format!("perm {perm:?} is not a permutation of {rank} axes"),
                    ));
                }
                let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
                // Moving only axes of extent 1 leaves the data order unchanged.
                let moved: Vec<usize> = perm.iter().copied().filter(|&p| shape[p] != 1).collect();
                if moved.windows(2).all(|w| w[0] < w[1]) {
                    return self.reshape(node, out);
                }
                let is = strides(&shape);
                let index = multi_indices(&out)
                    .map(|idx| idx.iter().zip(&perm).map(|(&i, &p)| i * is[p]).sum())
                    .collect();
                self.push(node, Layer::Transpose { index }, out);
                Ok(())
            }
            "Add" | "Sub" | "Mul" | "Div" => {
                let c = self.konst(node, 1 - data_pos)?.value.clone();
                let out = broadcast_shapes(&shape, c.shape()).ok_or_else(|| {
                    unsupported(
                        node,
                        format!(
                            "constant of shape {:?} does not broadcast to the data shape {shape:?}",
                            c.shape()
                        ),
                    )
                })?;
                if out.iter().product::<usize>() != len {
                    return Err(unsupported(node, format!("broadcasting the constant of shape {:?} would grow the data from {shape:?} to {out:?}", c.shape())));
                }
                let cfull = broadcast_to(&c, &out)
                    .ok_or_else(|| unsupported(node, "constant does not broadcast"))?;
                let cv: Array1<f64> = cfull.iter().copied().collect();
                let ones = Array1::from_elem(len, 1.0);
                let zeros = Array1::zeros(len);
                let (scale, shift) = match (node.op_type.as_str(), data_pos) {
                    ("Add", _) => (ones, cv),
                    ("Sub", 0) => (ones, -cv),
                    ("Sub", _) => (-ones, cv),
                    ("Mul", _) => (cv, zeros),
                    ("Div", 0) => {
                        if cv.iter().any(|&v| v == 0.0) {
                            return Err(unsupported(
                                node,
                                "division by a constant that holds zero",
                            ));
                        }
                        (cv.mapv(|v| 1.0 / v), zeros)
                    }
                    _ => {
                        return Err(unsupported(
                            node,
                            "division of a constant by the data is not affine",
                        ))
                    }
                };
                self.affine(node, scale, shift, out);
                Ok(())
            }
            "Neg" => {
                self.affine(
                    node,
                    Array1::from_elem(len, -1.0),
                    Array1::zeros(len),
                    shape,
                );
                Ok(())
            }
            "BatchNormalization" => {
                if rank < 2 {
                    return Err(unsupported(
                        node,
                        format!("data of rank {rank} has no channel axis"),
                    ));
                }
                let eps = attr_f(node, "epsilon", 1e-5) as f64;
                let get = |i| -> Result<Vec<f64>> {
                    Ok(self.konst(node, i)?.value.iter().copied().collect())
                };
                let (gamma, beta, mean, var) = (get(1)?, get(2)?, get(3)?, get(4)?);
                let ch = shape[1];
                if [&gamma, &beta, &mean, &var].iter().any(|v| v.len() != ch) {
                    return Err(unsupported(
                        node,
                        format!("parameters do not have {ch} channels"),
                    ));
                }
                let inner: usize = shape[2..].iter().product();
                let outer = shape[0];
                let mut scale = Array1::zeros(len);
                let mut shift = Array1::zeros(len);
                for o in 0..outer {
                    for c in 0..ch {
                        let a = gamma[c] / (var[c] + eps).sqrt();
                        let s = beta[c] - mean[c] * a;
                        for k in 0..inner {
                            let i = (o * ch + c) * inner + k;
                            scale[i] = a;
                            shift[i] = s;
                        }
                    }
                }
                self.affine(node, scale, shift, shape);
                Ok(())
            }
            "Gemm" => self.gemm(node, data_pos),
            "MatMul" => self.matmul(node, data_pos),
            "Conv" => self.conv(node),
            "MaxPool" | "AveragePool" | "GlobalAveragePool" | "GlobalMaxPool" => self.pool(node),
            "Pad" => self.pad(node),
            "Gather" => self.gather(node, data_pos),
            "Slice" => self.slice(node),
            other => Err(unsupported(
                node,
                format!("op type '{other}' is not in the lowering table"),
            )),
        }
    }

    fn gemm(&mut self, node: &NodeProto, data_pos: usize) -> Result<()> {
        let shape = self.tip.shape.clone();
        let alpha = attr_f(node, "alpha", 1.0) as f64;
        let beta = attr_f(node, "beta", 1.0) as f64;
        let trans_a = attr_i(node, "transA", 0) != 0;
        let trans_b = attr_i(node, "transB", 0) != 0;
        if shape.len() != 2 {
            return Err(unsupported(
                node,
                format!("data has rank {}, Gemm takes matrices", shape.len()),
            ));
        }
        if data_pos == 0 {
            let (m, k) = if trans_a {
                (shape[1], shape[0])
            } else {
                (shape[0], shape[1])
            };
            if trans_a && m != 1 {
                return Err(unsupported(
                    node,
                    "transA=1 on a data matrix with more than one row",
                ));
            }
            let b = self.konst(node, 1)?.value.clone();
            let b = to2(node, &b)?;
            let w = if trans_b {
                b
            } else {
                b.t().as_standard_layout().into_owned()
            }; // [n, k]
            if w.ncols() != k {
                return Err(unsupported(
                    node,
                    format!("weight {:?} does not fit data {:?}", w.dim(), shape),
                ));
            }
            let n = w.nrows();
            let bias = self.gemm_bias(node, m, n, beta, false)?;
            let layer = Layer::Dense(Dense {
                weight: w * alpha,
                bias,
                rows: m,
            });
            self.push(node, layer, vec![m, n]);
        } else {
            // Y = A · X with the data X of shape [k, 1].
            let (k, n) = if trans_b {
                (shape[1], shape[0])
            } else {
                (shape[0], shape[1])
            };
            if n != 1 {
                return Err(unsupported(
                    node,
                    "the data is the right factor with more than one column",
                ));
            }
            let a = to2(node, &self.konst(node, 0)?.value.clone())?;
            let a = if trans_a {
                a.t().as_standard_layout().into_owned()
            } else {
                a
            }; // [m, k]
            if a.ncols() != k {
                return Err(unsupported(
                    node,
                    format!("weight {:?} does not fit data {:?}", a.dim(), shape),
                ));
            }
            let m = a.nrows();
            let bias = self.gemm_bias(node, m, 1, beta, true)?;
            let layer = Layer::Dense(Dense {
                weight: a * alpha,
                bias,
                rows: 1,
            });
            self.push(node, layer, vec![m, 1]);
        }
        Ok(())
    }

    /// The Gemm bias `β·C` as one vector per output (it must not vary across rows).
    fn gemm_bias(
        &self,
        node: &NodeProto,
        m: usize,
        n: usize,
        beta: f64,
        column: bool,
    ) -> Result<Array1<f64>> {
        let Some(c) = self.opt_konst(node, 2)? else {
            return Ok(Array1::zeros(if column { m } else { n }));
        };
        let full = broadcast_to(&c.value, &[m, n]).ok_or_else(|| {
            unsupported(
                node,
                format!(
                    "bias of shape {:?} does not broadcast to [{m}, {n}]",
                    c.value.shape()
                ),
            )
        })?;
        let full = full
            .into_dimensionality::<ndarray::Ix2>()
            .map_err(|e| unsupported(node, e.to_string()))?;
        if column {
            return Ok(full.column(0).mapv(|v| v * beta));
        }
        let first = full.row(0).to_owned();
        if full.rows().into_iter().any(|r| r != first) {
            return Err(unsupported(node, "bias differs between rows"));
        }
        Ok(first * beta)
    }

    fn matmul(&mut self, node: &NodeProto, data_pos: usize) -> Result<()> {
        let shape = self.tip.shape.clone();
        let c = self.konst(node, 1 - data_pos)?.value.clone();
        if data_pos == 0 {
            if c.ndim() != 2 {
                return Err(unsupported(
                    node,
                    format!(
                        "constant factor has rank {}, only matrices are supported",
                        c.ndim()
                    ),
                ));
            }
            let b = to2(node, &c)?; // [k, n]
            let k = *shape.last().unwrap_or(&0);
            if b.nrows() != k {
                return Err(unsupported(
                    node,
                    format!("data {shape:?} times weight {:?}", b.dim()),
                ));
            }
            let n = b.ncols();
            let rows = if shape.is_empty() {
                1
            } else {
                shape[..shape.len() - 1].iter().product()
            };
            let mut out = shape.clone();
            if let Some(l) = out.last_mut() {
                *l = n;
            }
            let layer = Layer::Dense(Dense {
                weight: b.t().as_standard_layout().into_owned(),
                bias: Array1::zeros(n),
                rows,
            });
            self.push(node, layer, out);
        } else {
            let a = to2(node, &c)?; // [m, k]
            let (k, ncol) = match shape.as_slice() {
                [k] => (*k, None),
                [k, 1] => (*k, Some(1)),
                _ => {
                    return Err(unsupported(
                        node,
                        format!(
                            "data {shape:?} as the right factor: only a vector or a [k, 1] matrix"
                        ),
                    ))
                }
            };
            if a.ncols() != k {
                return Err(unsupported(
                    node,
                    format!("weight {:?} times data {shape:?}", a.dim()),
                ));
            }
            let m = a.nrows();
            let out = match ncol {
                None => vec![m],
                Some(_) => vec![m, 1],
            };
            let layer = Layer::Dense(Dense {
                weight: a,
                bias: Array1::zeros(m),
                rows: 1,
            });
            self.push(node, layer, out);
        }
        Ok(())
    }

    /// The spatial extent `(h, w)` of data `[1, C, H, W]` or `[1, C, L]` (as `(1, L)`).
    fn spatial(&self, node: &NodeProto) -> Result<(usize, usize, usize)> {
        match self.tip.shape.as_slice() {
            [1, c, h, w] => Ok((*c, *h, *w)),
            [1, c, l] => Ok((*c, 1, *l)),
            s => Err(unsupported(
                node,
                format!("data shape {s:?}: expected [1, C, H, W] or [1, C, L]"),
            )),
        }
    }

    fn conv(&mut self, node: &NodeProto) -> Result<()> {
        let (c_in, h_in, w_in) = self.spatial(node)?;
        let one_d = self.tip.shape.len() == 3;
        let w = self.konst(node, 1)?.value.clone();
        let w4 = match w.ndim() {
            4 if !one_d => w
                .into_dimensionality::<ndarray::Ix4>()
                .map_err(|e| unsupported(node, e.to_string()))?,
            3 if one_d => w
                .insert_axis(Axis(2))
                .into_dimensionality::<ndarray::Ix4>()
                .map_err(|e| unsupported(node, e.to_string()))?,
            r => {
                return Err(unsupported(
                    node,
                    format!(
                        "kernel of rank {r} for data of rank {}",
                        self.tip.shape.len()
                    ),
                ))
            }
        };
        let (c_out, cg, kh, kw) = w4.dim();
        let groups = attr_i(node, "group", 1).max(1) as usize;
        if c_in % groups != 0 || c_out % groups != 0 || cg != c_in / groups {
            return Err(unsupported(
                node,
                format!(
                    "kernel {:?} with {groups} groups does not fit {c_in} input channels",
                    w4.dim()
                ),
            ));
        }
        let win = Window::read(node, one_d, (kh, kw), (h_in, w_in), true)?;
        let bias = match self.opt_konst(node, 2)? {
            Some(b) if b.value.len() == c_out => b.value.iter().copied().collect(),
            Some(b) => {
                return Err(unsupported(
                    node,
                    format!("bias has {} entries for {c_out} channels", b.value.len()),
                ))
            }
            None => Array1::zeros(c_out),
        };
        let geom = ConvGeom {
            c_in,
            h_in,
            w_in,
            c_out,
            h_out: win.h_out,
            w_out: win.w_out,
            kh,
            kw,
            sh: win.sh,
            sw: win.sw,
            pt: win.pt,
            pl: win.pl,
            dh: win.dh,
            dw: win.dw,
            groups,
        };
        let out = if one_d {
            vec![1, c_out, win.w_out]
        } else {
            vec![1, c_out, win.h_out, win.w_out]
        };
        let weight: Array4<f64> = w4.as_standard_layout().into_owned();
        self.push(node, Layer::Conv(Conv { weight, bias, geom }), out);
        Ok(())
    }

    fn pool(&mut self, node: &NodeProto) -> Result<()> {
        let (c, h_in, w_in) = self.spatial(node)?;
        let one_d = self.tip.shape.len() == 3;
        let global = node.op_type.starts_with("Global");
        let win = if global {
            Window {
                h_out: 1,
                w_out: 1,
                sh: 1,
                sw: 1,
                pt: 0,
                pl: 0,
                pb: 0,
                pr: 0,
                dh: 1,
                dw: 1,
                kh: h_in,
                kw: w_in,
            }
        } else {
            let ks = attr_ints(node, "kernel_shape")
                .ok_or_else(|| unsupported(node, "kernel_shape is required"))?;
            let k = match (one_d, ks.as_slice()) {
                (false, [a, b]) => (*a as usize, *b as usize),
                (true, [a]) => (1, *a as usize),
                _ => {
                    return Err(unsupported(
                        node,
                        format!("kernel_shape {ks:?} does not fit the data"),
                    ))
                }
            };
            Window::read(node, one_d, k, (h_in, w_in), false)?
        };
        if win.dh != 1 || win.dw != 1 {
            return Err(unsupported(node, "dilated pooling"));
        }
        if win.pt >= win.kh || win.pl >= win.kw || win.pb >= win.kh || win.pr >= win.kw {
            return Err(unsupported(
                node,
                "padding as large as the window leaves windows without input",
            ));
        }
        let geom = PoolGeom {
            c,
            h_in,
            w_in,
            h_out: win.h_out,
            w_out: win.w_out,
            kh: win.kh,
            kw: win.kw,
            sh: win.sh,
            sw: win.sw,
            pt: win.pt,
            pl: win.pl,
            pb: win.pb,
            pr: win.pr,
        };
        let out = if one_d {
            vec![1, c, win.w_out]
        } else {
            vec![1, c, win.h_out, win.w_out]
        };
        let layer = if node.op_type.contains("Max") {
            if attr_i(node, "storage_order", 0) != 0 {
                // storage_order only affects the (unsupported) indices output.
            }
            if node.output.len() > 1 && !node.output[1].is_empty() {
                return Err(unsupported(node, "the indices output of MaxPool"));
            }
            Layer::MaxPool(geom)
        } else {
            Layer::AvgPool {
                geom,
                count_include_pad: attr_i(node, "count_include_pad", 0) != 0,
            }
        };
        self.push(node, layer, out);
        Ok(())
    }

    fn pad(&mut self, node: &NodeProto) -> Result<()> {
        let shape = self.tip.shape.clone();
        let rank = shape.len();
        let mode = attr_s(node, "mode").unwrap_or_else(|| "constant".into());
        if mode != "constant" {
            return Err(unsupported(
                node,
                format!("pad mode '{mode}' (only constant zero padding is linear and supported)"),
            ));
        }
        let (pads, value): (Vec<i64>, f64) = if self.opset < 11 {
            (
                attr_ints(node, "pads").unwrap_or_default(),
                attr_f(node, "value", 0.0) as f64,
            )
        } else {
            let p = self
                .konst(node, 1)?
                .value
                .iter()
                .map(|&v| v as i64)
                .collect();
            let v = self
                .opt_konst(node, 2)?
                .and_then(|c| c.value.iter().next().copied())
                .unwrap_or(0.0);
            (p, v)
        };
        let pads = if let Some(axes) = self.opt_konst(node, 3)? {
            let mut full = vec![0i64; 2 * rank];
            let axes: Vec<usize> = axes
                .value
                .iter()
                .map(|&a| norm_axis(node, a as i64, rank))
                .collect::<Result<_>>()?;
            if pads.len() != 2 * axes.len() {
                return Err(unsupported(node, "pads do not match axes"));
            }
            for (i, a) in axes.iter().enumerate() {
                full[*a] = pads[i];
                full[rank + *a] = pads[axes.len() + i];
            }
            full
        } else {
            pads
        };
        if pads.len() != 2 * rank {
            return Err(unsupported(
                node,
                format!("{} pads for data of rank {rank}", pads.len()),
            ));
        }
        if pads.iter().any(|&p| p < 0) {
            return Err(unsupported(node, "negative pads (cropping)"));
        }
        if value != 0.0 {
            return Err(unsupported(
                node,
                format!("constant padding with {value} (only zero)"),
            ));
        }
        if pads.iter().all(|&p| p == 0) {
            self.set_tip(node, shape);
            return Ok(());
        }
        let out: Vec<usize> = (0..rank)
            .map(|a| shape[a] + (pads[a] + pads[rank + a]) as usize)
            .collect();
        let is = strides(&shape);
        let index = multi_indices(&out)
            .map(|idx| {
                let mut flat = 0;
                for a in 0..rank {
                    let i = idx[a] as i64 - pads[a];
                    if i < 0 || i >= shape[a] as i64 {
                        return None;
                    }
                    flat += i as usize * is[a];
                }
                Some(flat)
            })
            .collect();
        self.push(node, Layer::Pad { index }, out);
        Ok(())
    }

    fn gather(&mut self, node: &NodeProto, data_pos: usize) -> Result<()> {
        let shape = self.tip.shape.clone();
        let axis_attr = attr_i(node, "axis", 0);
        if data_pos == 1 {
            // Embedding lookup: table[indices].
            let table = self.konst(node, 0)?.value.clone();
            if table.ndim() != 2 || axis_attr != 0 {
                return Err(unsupported(
                    node,
                    "an embedding lookup needs a [vocabulary, dim] table and axis 0",
                ));
            }
            let table = to2(node, &table)?;
            let mut out = shape.clone();
            out.push(table.ncols());
            self.push(node, Layer::Embedding { table }, out);
            return Ok(());
        }
        // Selecting entries of the data with constant indices is a linear map.
        let rank = shape.len();
        let axis = norm_axis(node, axis_attr, rank)?;
        let idx = self.konst(node, 1)?.value.clone();
        let n = shape[axis] as i64;
        let picks: Vec<usize> = idx
            .iter()
            .map(|&v| {
                let v = v as i64;
                let v = if v < 0 { v + n } else { v };
                if v < 0 || v >= n {
                    Err(unsupported(
                        node,
                        format!("index {v} is out of range for an axis of {n}"),
                    ))
                } else {
                    Ok(v as usize)
                }
            })
            .collect::<Result<_>>()?;
        let mut out: Vec<usize> = shape[..axis].to_vec();
        out.extend_from_slice(idx.shape());
        out.extend_from_slice(&shape[axis + 1..]);
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        let mut index = Vec::with_capacity(outer * picks.len() * inner);
        for o in 0..outer {
            for &p in &picks {
                for k in 0..inner {
                    index.push(Some((o * shape[axis] + p) * inner + k));
                }
            }
        }
        self.push(node, Layer::Pad { index }, out);
        Ok(())
    }

    fn slice(&mut self, node: &NodeProto) -> Result<()> {
        let shape = self.tip.shape.clone();
        let spec = self.slice_spec(node, shape.len())?;
        let (out, index) = slice_index(node, &shape, &spec)?;
        self.push(
            node,
            Layer::Pad {
                index: index.into_iter().map(Some).collect(),
            },
            out,
        );
        Ok(())
    }

    /// (starts, ends, axes, steps) of a Slice node, from attributes (opset < 10) or inputs.
    fn slice_spec(&self, node: &NodeProto, rank: usize) -> Result<SliceSpec> {
        let get = |i: usize| -> Result<Option<Vec<i64>>> {
            Ok(self
                .opt_konst(node, i)?
                .map(|c| c.value.iter().map(|&v| v as i64).collect()))
        };
        let (starts, ends, axes, steps) = if self.opset < 10 {
            (
                attr_ints(node, "starts").unwrap_or_default(),
                attr_ints(node, "ends").unwrap_or_default(),
                attr_ints(node, "axes"),
                None,
            )
        } else {
            (
                get(1)?.unwrap_or_default(),
                get(2)?.unwrap_or_default(),
                get(3)?,
                get(4)?,
            )
        };
        let axes: Vec<usize> = match axes {
            Some(a) => a
                .iter()
                .map(|&v| norm_axis(node, v, rank))
                .collect::<Result<_>>()?,
            None => (0..starts.len()).collect(),
        };
        let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
        if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            return Err(unsupported(
                node,
                "starts, ends, axes and steps differ in length",
            ));
        }
        Ok(SliceSpec {
            starts,
            ends,
            axes,
            steps,
        })
    }

    fn eval_const(
        &self,
        onnx: &tract_onnx::Onnx,
        node: &NodeProto,
        dir: Option<&str>,
    ) -> Result<Const> {
        let k = |i: usize| self.konst(node, i).cloned();
        let op = node.op_type.as_str();
        match op {
            "Constant" => {
                if let Some(a) = attr(node, "value") {
                    let t =
                        a.t.as_ref()
                            .ok_or_else(|| unsupported(node, "value is not a tensor"))?;
                    return load_const(onnx, t, dir).map_err(|m| unsupported(node, m));
                }
                if let Some(a) = attr(node, "value_float") {
                    return Ok(Const {
                        value: ArrayD::from_elem(IxDyn(&[]), a.f as f64),
                        int: false,
                    });
                }
                if let Some(a) = attr(node, "value_floats") {
                    let v: Vec<f64> = a.floats.iter().map(|&f| f as f64).collect();
                    return Ok(Const {
                        value: ArrayD::from_shape_vec(IxDyn(&[v.len()]), v)
                            .map_err(|e| unsupported(node, e.to_string()))?,
                        int: false,
                    });
                }
                if let Some(a) = attr(node, "value_int") {
                    return Ok(Const {
                        value: ArrayD::from_elem(IxDyn(&[]), a.i as f64),
                        int: true,
                    });
                }
                if let Some(a) = attr(node, "value_ints") {
                    let v: Vec<f64> = a.ints.iter().map(|&f| f as f64).collect();
                    return Ok(Const {
                        value: ArrayD::from_shape_vec(IxDyn(&[v.len()]), v)
                            .map_err(|e| unsupported(node, e.to_string()))?,
                        int: true,
                    });
                }
                Err(unsupported(node, "no supported value attribute"))
            }
            "Identity" | "Dropout" => k(0),
            "Cast" => {
                let mut c = k(0)?;
                let to = attr_i(node, "to", 1) as i32;
                let int = !FLOAT_TYPES.contains(&to);
                if int {
                    c.value.mapv_inplace(|v| v.trunc());
                }
                c.int = int;
                Ok(c)
            }
            "Shape" => {
                let c = k(0)?;
                let v: Vec<f64> = c.value.shape().iter().map(|&d| d as f64).collect();
                let n = v.len();
                slice_shape(
                    node,
                    Const {
                        value: ArrayD::from_shape_vec(IxDyn(&[n]), v)
                            .map_err(|e| unsupported(node, e.to_string()))?,
                        int: true,
                    },
                )
            }
            "Neg" => {
                let mut c = k(0)?;
                c.value.mapv_inplace(|v| -v);
                Ok(c)
            }
            "Add" | "Sub" | "Mul" | "Div" => {
                let (a, b) = (k(0)?, k(1)?);
                let out = broadcast_shapes(a.value.shape(), b.value.shape())
                    .ok_or_else(|| unsupported(node, "operands do not broadcast"))?;
                let (av, bv) = match (broadcast_to(&a.value, &out), broadcast_to(&b.value, &out)) {
                    (Some(x), Some(y)) => (x, y),
                    _ => return Err(unsupported(node, "operands do not broadcast")),
                };
                let int = a.int && b.int;
                let mut r = av.clone();
                ndarray::Zip::from(&mut r)
                    .and(&av)
                    .and(&bv)
                    .for_each(|r, &x, &y| {
                        *r = match op {
                            "Add" => x + y,
                            "Sub" => x - y,
                            "Mul" => x * y,
                            _ if int => (x / y).trunc(),
                            _ => x / y,
                        }
                    });
                Ok(Const { value: r, int })
            }
            "Unsqueeze" | "Squeeze" => {
                let c = k(0)?;
                let axes: Vec<i64> = match attr_ints(node, "axes") {
                    Some(a) => a,
                    None => self
                        .opt_konst(node, 1)?
                        .map(|a| a.value.iter().map(|&v| v as i64).collect())
                        .unwrap_or_default(),
                };
                let shape = if op == "Squeeze" {
                    squeeze_shape(node, c.value.shape(), &axes)?
                } else {
                    unsqueeze_shape(node, c.value.shape(), &axes)?
                };
                reshape_const(node, c, &shape)
            }
            "Reshape" => {
                let c = k(0)?;
                let target: Vec<i64> = k(1)?.value.iter().map(|&v| v as i64).collect();
                let shape = resolve_reshape(
                    node,
                    c.value.shape(),
                    &target,
                    attr_i(node, "allowzero", 0) != 0,
                )?;
                reshape_const(node, c, &shape)
            }
            "Flatten" => {
                let c = k(0)?;
                let s = c.value.shape().to_vec();
                let a = norm_axis(node, attr_i(node, "axis", 1), s.len() + 1)?;
                let shape = vec![s[..a].iter().product(), s[a..].iter().product()];
                reshape_const(node, c, &shape)
            }
            "Concat" => {
                let parts: Vec<Const> = (0..node.input.len())
                    .filter(|&i| self.input_of(node, i).is_some())
                    .map(k)
                    .collect::<Result<_>>()?;
                let rank = parts.first().map(|p| p.value.ndim()).unwrap_or(0);
                let axis = norm_axis(node, attr_i(node, "axis", 0), rank)?;
                let views: Vec<_> = parts.iter().map(|p| p.value.view()).collect();
                let value = ndarray::concatenate(Axis(axis), &views)
                    .map_err(|e| unsupported(node, e.to_string()))?;
                Ok(Const {
                    value,
                    int: parts.iter().all(|p| p.int),
                })
            }
            "Gather" => {
                let (c, idx) = (k(0)?, k(1)?);
                let axis = norm_axis(node, attr_i(node, "axis", 0), c.value.ndim())?;
                let n = c.value.shape()[axis] as i64;
                let mut picks = Vec::new();
                for &v in idx.value.iter() {
                    let v = v as i64;
                    let v = if v < 0 { v + n } else { v };
                    if v < 0 || v >= n {
                        return Err(unsupported(node, format!("index {v} out of range")));
                    }
                    picks.push(v as usize);
                }
                let sel = c.value.select(Axis(axis), &picks);
                let mut shape: Vec<usize> = c.value.shape()[..axis].to_vec();
                shape.extend_from_slice(idx.value.shape());
                shape.extend_from_slice(&c.value.shape()[axis + 1..]);
                reshape_const(
                    node,
                    Const {
                        value: sel,
                        int: c.int,
                    },
                    &shape,
                )
            }
            "Transpose" => {
                let c = k(0)?;
                let rank = c.value.ndim();
                let perm: Vec<usize> = match attr_ints(node, "perm") {
                    Some(p) => p
                        .iter()
                        .map(|&v| norm_axis(node, v, rank))
                        .collect::<Result<_>>()?,
                    None => (0..rank).rev().collect(),
                };
                let value = c
                    .value
                    .clone()
                    .permuted_axes(IxDyn(&perm))
                    .as_standard_layout()
                    .into_owned();
                Ok(Const { value, int: c.int })
            }
            "Slice" => {
                let c = k(0)?;
                let shape = c.value.shape().to_vec();
                let spec = self.slice_spec(node, shape.len())?;
                let (out, index) = slice_index(node, &shape, &spec)?;
                let flat: Vec<f64> = c.value.iter().copied().collect();
                let v: Vec<f64> = index.iter().map(|&i| flat[i]).collect();
                Ok(Const {
                    value: ArrayD::from_shape_vec(IxDyn(&out), v)
                        .map_err(|e| unsupported(node, e.to_string()))?,
                    int: c.int,
                })
            }
            "ConstantOfShape" => {
                let shape: Vec<usize> = k(0)?.value.iter().map(|&v| v.max(0.0) as usize).collect();
                let (v, int) = match attr(node, "value").and_then(|a| a.t.as_ref()) {
                    Some(t) => {
                        let c = load_const(onnx, t, dir).map_err(|m| unsupported(node, m))?;
                        (c.value.iter().next().copied().unwrap_or(0.0), c.int)
                    }
                    None => (0.0, false),
                };
                Ok(Const {
                    value: ArrayD::from_elem(IxDyn(&shape), v),
                    int,
                })
            }
            other => Err(unsupported(
                node,
                format!("op type '{other}' on constants is not evaluated at load time"),
            )),
        }
    }
}

struct SliceSpec {
    starts: Vec<i64>,
    ends: Vec<i64>,
    axes: Vec<usize>,
    steps: Vec<i64>,
}

/// Output shape and source indices of a Slice.
fn slice_index(
    node: &NodeProto,
    shape: &[usize],
    spec: &SliceSpec,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let rank = shape.len();
    let mut start = vec![0i64; rank];
    let mut step = vec![1i64; rank];
    let mut out = shape.to_vec();
    for i in 0..spec.axes.len() {
        let a = spec.axes[i];
        let n = shape[a] as i64;
        let s = spec.steps[i];
        if s == 0 {
            return Err(unsupported(node, "slice step 0"));
        }
        let clampi = |v: i64, lo: i64, hi: i64| v.max(lo).min(hi);
        let mut b = spec.starts[i];
        let mut e = spec.ends[i];
        if b < 0 {
            b += n;
        }
        if e < 0 {
            e += n;
        }
        let (b, e) = if s > 0 {
            (clampi(b, 0, n), clampi(e, 0, n))
        } else {
            (clampi(b, 0, n - 1), clampi(e, -1, n - 1))
        };
        // ceil(span / |s|), without overflow for steps near the i64 limits.
        let span = (if s > 0 { e - b } else { b - e }).max(0) as u64;
        let count = if span == 0 {
            0
        } else {
            (span - 1) / s.unsigned_abs() + 1
        };
        start[a] = b;
        step[a] = s;
        out[a] = count as usize;
    }
    let is = strides(shape);
    let index = multi_indices(&out)
        .map(|idx| {
            (0..rank)
                .map(|a| (start[a] + idx[a] as i64 * step[a]) as usize * is[a])
                .sum()
        })
        .collect();
    Ok((out, index))
}

/// Applies the opset-15 `start`/`end` attributes of Shape.
fn slice_shape(node: &NodeProto, c: Const) -> Result<Const> {
    let n = c.value.len() as i64;
    let norm = |v: i64| if v < 0 { (v + n).max(0) } else { v.min(n) };
    let s = norm(attr_i(node, "start", 0)) as usize;
    let e = norm(attr_i(node, "end", n)) as usize;
    if s == 0 && e as i64 == n {
        return Ok(c);
    }
    let v: Vec<f64> = c
        .value
        .iter()
        .skip(s)
        .take(e.saturating_sub(s))
        .copied()
        .collect();
    let len = v.len();
    Ok(Const {
        value: ArrayD::from_shape_vec(IxDyn(&[len]), v)
            .map_err(|e| unsupported(node, e.to_string()))?,
        int: true,
    })
}

fn reshape_const(node: &NodeProto, c: Const, shape: &[usize]) -> Result<Const> {
    let flat: Vec<f64> = c.value.iter().copied().collect();
    let value =
        ArrayD::from_shape_vec(IxDyn(shape), flat).map_err(|e| unsupported(node, e.to_string()))?;
    Ok(Const { value, int: c.int })
}

fn to2(node: &NodeProto, c: &ArrayD<f64>) -> Result<Array2<f64>> {
    c.clone()
        .into_dimensionality::<ndarray::Ix2>()
        .map(|a| a.as_standard_layout().into_owned())
        .map_err(|_| {
            unsupported(
                node,
                format!("expected a matrix, got shape {:?}", c.shape()),
            )
        })
}

fn resolve_reshape(
    node: &NodeProto,
    shape: &[usize],
    target: &[i64],
    allowzero: bool,
) -> Result<Vec<usize>> {
    let total: usize = shape.iter().product();
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            -1 => return Err(unsupported(node, "more than one -1 in the target shape")),
            0 if !allowzero => out.push(*shape.get(i).ok_or_else(|| {
                unsupported(
                    node,
                    format!("0 at axis {i} copies a dimension the input lacks"),
                )
            })?),
            t if t < 0 => return Err(unsupported(node, format!("negative dimension {t}"))),
            t => out.push(t as usize),
        }
    }
    // A target whose size overflows cannot match the input (whose size does not).
    let product = |v: &[usize]| v.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if let Some(i) = infer {
        let known = product(&out).unwrap_or(0);
        if known == 0 || total % known != 0 {
            return Err(unsupported(
                node,
                format!("cannot infer -1 reshaping {shape:?} to {target:?}"),
            ));
        }
        out[i] = total / known;
    }
    if product(&out) != Some(total) {
        return Err(unsupported(
            node,
            format!("cannot reshape {shape:?} to {target:?}"),
        ));
    }
    Ok(out)
}

fn squeeze_shape(node: &NodeProto, shape: &[usize], axes: &[i64]) -> Result<Vec<usize>> {
    if axes.is_empty() {
        return Ok(shape.iter().copied().filter(|&d| d != 1).collect());
    }
    let axes: Vec<usize> = axes
        .iter()
        .map(|&a| norm_axis(node, a, shape.len()))
        .collect::<Result<_>>()?;
    for &a in &axes {
        if shape[a] != 1 {
            return Err(unsupported(
                node,
                format!("cannot squeeze axis {a} of extent {}", shape[a]),
            ));
        }
    }
    Ok(shape
        .iter()
        .enumerate()
        .filter(|(i, _)| !axes.contains(i))
        .map(|(_, &d)| d)
        .collect())
}

fn unsqueeze_shape(node: &NodeProto, shape: &[usize], axes: &[i64]) -> Result<Vec<usize>> {
    let rank = shape.len() + axes.len();
    let mut axes: Vec<usize> = axes
        .iter()
        .map(|&a| norm_axis(node, a, rank))
        .collect::<Result<_>>()?;
    axes.sort_unstable();
    let mut out = shape.to_vec();
    for a in axes {
        out.insert(a.min(out.len()), 1);
    }
    Ok(out)
}

/// All multi-indices of `shape` in row-major order.
fn multi_indices(shape: &[usize]) -> impl Iterator<Item = Vec<usize>> + '_ {
    let total: usize = shape.iter().product();
    let st = strides(shape);
    (0..total).map(move |mut f| {
        st.iter()
            .map(|&s| {
                let i = f / s;
                f %= s;
                i
            })
            .collect()
    })
}

/// Strides, padding, dilation and output size of a Conv or pooling node.
struct Window {
    h_out: usize,
    w_out: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    pt: usize,
    pl: usize,
    pb: usize,
    pr: usize,
    dh: usize,
    dw: usize,
}

impl Window {
    fn read(
        node: &NodeProto,
        one_d: bool,
        k: (usize, usize),
        input: (usize, usize),
        conv: bool,
    ) -> Result<Window> {
        let pair = |name: &str, default: usize| -> Result<(usize, usize)> {
            match attr_ints(node, name) {
                None => Ok((default, default)),
                Some(v) => match (one_d, v.as_slice()) {
                    (false, [a, b]) if *a > 0 && *b > 0 => Ok((*a as usize, *b as usize)),
                    (true, [a]) if *a > 0 => Ok((1, *a as usize)),
                    _ => Err(unsupported(
                        node,
                        format!("{name} {v:?} does not fit the data"),
                    )),
                },
            }
        };
        if let Some(ks) = attr_ints(node, "kernel_shape") {
            let want: Vec<i64> = if one_d {
                vec![k.1 as i64]
            } else {
                vec![k.0 as i64, k.1 as i64]
            };
            if conv && ks != want {
                return Err(unsupported(
                    node,
                    format!("kernel_shape {ks:?} disagrees with the weight's {want:?}"),
                ));
            }
        }
        let (sh, sw) = pair("strides", 1)?;
        let (dh, dw) = pair("dilations", 1)?;
        let (kh, kw) = k;
        if kh == 0 || kw == 0 {
            return Err(unsupported(node, format!("empty window {kh}×{kw}")));
        }
        let (h, w) = input;
        let ceil = attr_i(node, "ceil_mode", 0) != 0;
        let auto = attr_s(node, "auto_pad").unwrap_or_else(|| "NOTSET".into());
        // Saturating: a huge kernel or dilation must fail the size check below, not overflow.
        let ext = |k: usize, d: usize| (k - 1).saturating_mul(d).saturating_add(1);
        let (pt, pl, pb, pr) = match auto.as_str() {
            "NOTSET" | "" => match attr_ints(node, "pads") {
                None => (0, 0, 0, 0),
                Some(p) => {
                    if p.iter().any(|&v| v < 0) {
                        return Err(unsupported(node, format!("negative pads {p:?}")));
                    }
                    match (one_d, p.as_slice()) {
                        (false, [a, b, c, d]) => {
                            (*a as usize, *b as usize, *c as usize, *d as usize)
                        }
                        (true, [a, b]) => (0, *a as usize, 0, *b as usize),
                        _ => {
                            return Err(unsupported(
                                node,
                                format!("pads {p:?} do not fit the data"),
                            ))
                        }
                    }
                }
            },
            "VALID" => (0, 0, 0, 0),
            "SAME_UPPER" | "SAME_LOWER" => {
                let total = |n: usize, s: usize, k: usize, d: usize| {
                    let out = n.div_ceil(s);
                    (out.saturating_sub(1) * s)
                        .saturating_add(ext(k, d))
                        .saturating_sub(n)
                };
                let th = total(h, sh, kh, dh);
                let tw = total(w, sw, kw, dw);
                if auto == "SAME_UPPER" {
                    (th / 2, tw / 2, th - th / 2, tw - tw / 2)
                } else {
                    (th - th / 2, tw - tw / 2, th / 2, tw / 2)
                }
            }
            other => return Err(unsupported(node, format!("auto_pad '{other}'"))),
        };
        let size =
            |n: usize, p0: usize, p1: usize, k: usize, d: usize, s: usize| -> Result<usize> {
                let span = n + p0 + p1;
                let e = ext(k, d);
                if span < e {
                    return Err(unsupported(
                        node,
                        format!("window of {e} is larger than the padded input of {span}"),
                    ));
                }
                let mut o = if ceil {
                    (span - e).div_ceil(s) + 1
                } else {
                    (span - e) / s + 1
                };
                // In ceil mode the last window must start inside the input or its leading padding.
                if ceil && (o - 1) * s >= n + p0 {
                    o -= 1;
                }
                Ok(o)
            };
        Ok(Window {
            h_out: size(h, pt, pb, kh, dh, sh)?,
            w_out: size(w, pl, pr, kw, dw, sw)?,
            kh,
            kw,
            sh,
            sw,
            pt,
            pl,
            pb,
            pr,
            dh,
            dw,
        })
    }
}

/// Folds `y = a ⊙ x + s` into the layer that produced `x`, when exact.
fn fold_affine(layer: &mut Layer<f64>, a: &Array1<f64>, s: &Array1<f64>) -> bool {
    match layer {
        Layer::Affine { scale, shift } => {
            *scale = &*scale * a;
            *shift = &*shift * a + s;
            true
        }
        Layer::Dense(d) if d.rows == 1 => {
            for (mut row, &ai) in d.weight.rows_mut().into_iter().zip(a) {
                row *= ai;
            }
            d.bias = &d.bias * a + s;
            true
        }
        Layer::Dense(d) => {
            let out = d.weight.nrows();
            let per = |v: &Array1<f64>| {
                let first = v.slice(ndarray::s![..out]).to_owned();
                v.exact_chunks(out)
                    .into_iter()
                    .all(|c| c == first)
                    .then_some(first)
            };
            let (Some(a1), Some(s1)) = (per(a), per(s)) else {
                return false;
            };
            for (mut row, &ai) in d.weight.rows_mut().into_iter().zip(&a1) {
                row *= ai;
            }
            d.bias = &d.bias * &a1 + &s1;
            true
        }
        Layer::Conv(c) => {
            let hw = c.geom.h_out * c.geom.w_out;
            let mut ac = Vec::with_capacity(c.geom.c_out);
            let mut sc = Vec::with_capacity(c.geom.c_out);
            for o in 0..c.geom.c_out {
                let sa = a.slice(ndarray::s![o * hw..(o + 1) * hw]);
                let ss = s.slice(ndarray::s![o * hw..(o + 1) * hw]);
                if sa.iter().any(|&v| v != sa[0]) || ss.iter().any(|&v| v != ss[0]) {
                    return false;
                }
                ac.push(sa[0]);
                sc.push(ss[0]);
            }
            for (o, (ai, si)) in ac.iter().zip(&sc).enumerate() {
                c.weight.index_axis_mut(Axis(0), o).mapv_inplace(|w| w * ai);
                c.bias[o] = c.bias[o] * ai + si;
            }
            true
        }
        _ => false,
    }
}
