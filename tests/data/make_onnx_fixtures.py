#!/usr/bin/env python3
"""Writes the small ONNX fixtures of tests/onnx_ops.rs and tests/onnx_errors.rs.

    python3 tests/data/make_onnx_fixtures.py

Dev-time only (numpy + onnx); the generated files are committed. Every model
draws its weights from its own generator seeded by its name, so the bytes are
deterministic and adding a model changes no other file.

* tests/data/onnx_ops/  models the lowering must accept, one per op/attribute
  path of src/model/onnx.rs; the tests compare the IR with tract on each.
* tests/data/onnx_bad/  models (and non-models) it must reject with a precise
  error; tests/onnx_errors.rs checks the error variant and message.
"""

import os
import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

HERE = os.path.dirname(os.path.abspath(__file__))
OPS = os.path.join(HERE, "onnx_ops")
BAD = os.path.join(HERE, "onnx_bad")

FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64


def rng_for(name):
    return np.random.RandomState(zlib.crc32(name.encode()) & 0x7FFFFFFF)


class G:
    """A tiny graph builder: nodes, initializers, one input, one output."""

    def __init__(self, name):
        self.name = name
        self.rng = rng_for(name)
        self.nodes = []
        self.inits = []
        self.count = 0

    def w(self, *shape, scale=0.5):
        """A random float32 initializer."""
        return self.const((self.rng.randn(*shape) * scale).astype(np.float32))

    def pos(self, *shape, lo=0.5, hi=1.5):
        """A random positive float32 initializer."""
        return self.const(self.rng.uniform(lo, hi, size=shape).astype(np.float32))

    def const(self, array, name=None):
        self.count += 1
        name = name or "c%d" % self.count
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def i64(self, values):
        return self.const(np.asarray(values, dtype=np.int64))

    def op(self, op_type, inputs, n_out=1, name=None, domain=None, **attrs):
        self.count += 1
        name = name or "%s_%d" % (op_type.lower(), self.count)
        outs = ["%s_out%d" % (name, i) if i else name + "_out" for i in range(n_out)]
        node = helper.make_node(op_type, inputs, outs, name=name, domain=domain, **attrs)
        self.nodes.append(node)
        return outs[0] if n_out == 1 else outs

    def model(self, inputs, outputs, opset=13, extra_opsets=()):
        graph = helper.make_graph(self.nodes, self.name, inputs, outputs, initializer=self.inits)
        opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
        m = helper.make_model(graph, opset_imports=opsets, producer_name="make_onnx_fixtures")
        # An IR version every onnx runtime (and tract) reads, independent of the installed onnx.
        m.ir_version = 7 if opset <= 13 else 8
        return m


def vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def save(model, directory, name, check=True):
    if check:
        onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString(deterministic=True)
    assert len(data) < 20_000, (name, len(data))
    with open(os.path.join(directory, name + ".onnx"), "wb") as f:
        f.write(data)
    return data


def simple(name, in_shape, body, opset=13, elem=FLOAT):
    """A model `x -> body(g, x) -> y`; the output shape is what onnx's reference
    evaluator computes on a sample input."""
    g = G(name)
    y = body(g, "x")
    m = g.model([vi("x", elem, in_shape)], [vi(y, FLOAT, None)], opset=opset)
    if elem == INT64:
        sample = np.zeros(in_shape, np.int64)
    else:
        sample = np.zeros(in_shape, np.float32)
    out = ReferenceEvaluator(m).run(None, {"x": sample})[0]
    m.graph.output[0].CopyFrom(vi(y, FLOAT, list(out.shape)))
    return m


# ---------------------------------------------------------------- ops


def ops_models():
    models = {}

    def add(name, in_shape, body, opset=13, elem=FLOAT):
        models[name] = simple(name, in_shape, body, opset=opset, elem=elem)

    # Conv with pads, BatchNormalization folded into it, Relu.
    def conv_bn_relu(g, x):
        y = g.op("Conv", [x, g.w(4, 3, 3, 3), g.w(4)], pads=[1, 1, 1, 1], kernel_shape=[3, 3])
        y = g.op("BatchNormalization", [y, g.pos(4), g.w(4), g.w(4), g.pos(4)], epsilon=1e-3)
        return g.op("Relu", [y])

    add("conv_bn_relu", [1, 3, 6, 6], conv_bn_relu)

    # Grouped, dilated, strided conv with asymmetric pads; no bias.
    def conv_groups_dilation(g, x):
        return g.op("Conv", [x, g.w(6, 2, 3, 3)], group=2, dilations=[2, 2], strides=[1, 2], pads=[1, 0, 2, 1])

    add("conv_groups_dilation", [1, 4, 9, 9], conv_groups_dilation)

    # Depthwise conv (groups = channels).
    def conv_depthwise(g, x):
        y = g.op("Conv", [x, g.w(3, 1, 3, 3), g.w(3)], group=3, pads=[1, 1, 1, 1])
        return g.op("Relu", [y])

    add("conv_depthwise", [1, 3, 5, 5], conv_depthwise)

    # SAME_UPPER with an even kernel: the extra padding goes below/right.
    def conv_same_upper(g, x):
        return g.op("Conv", [x, g.w(3, 2, 2, 4), g.w(3)], auto_pad="SAME_UPPER", strides=[1, 1])

    add("conv_same_upper", [1, 2, 5, 6], conv_same_upper)

    # SAME_LOWER with stride 2: the extra padding goes above/left.
    def conv_same_lower_stride2(g, x):
        return g.op("Conv", [x, g.w(3, 2, 4, 3), g.w(3)], auto_pad="SAME_LOWER", strides=[2, 2])

    add("conv_same_lower_stride2", [1, 2, 8, 7], conv_same_lower_stride2)

    # SAME_UPPER with dilation and stride.
    def conv_same_dilated(g, x):
        return g.op("Conv", [x, g.w(2, 2, 3, 2), g.w(2)], auto_pad="SAME_UPPER", strides=[2, 1], dilations=[2, 3])

    add("conv_same_dilated", [1, 2, 7, 8], conv_same_dilated)

    # VALID auto_pad.
    def conv_valid(g, x):
        return g.op("Conv", [x, g.w(2, 2, 3, 2), g.w(2)], auto_pad="VALID", strides=[2, 1])

    add("conv_valid", [1, 2, 7, 5], conv_valid)

    # 1-D conv with stride, dilation and asymmetric pads, then 1-D average pooling.
    def conv1d(g, x):
        y = g.op("Conv", [x, g.w(4, 3, 3), g.w(4)], strides=[2], dilations=[2], pads=[1, 2])
        y = g.op("Relu", [y])
        return g.op("AveragePool", [y], kernel_shape=[2], strides=[1], pads=[1, 0], count_include_pad=1)

    add("conv1d", [1, 3, 11], conv1d)

    # 1-D conv with SAME_LOWER at stride 2, flattened with a negative axis.
    def conv1d_same(g, x):
        y = g.op("Conv", [x, g.w(3, 2, 4), g.w(3)], auto_pad="SAME_LOWER", strides=[2])
        return g.op("Flatten", [y], axis=-2)

    add("conv1d_same", [1, 2, 9], conv1d_same)

    # Overlapping max-pool windows with pads and ceil_mode.
    def maxpool_pads_ceil(g, x):
        return g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)

    add("maxpool_pads_ceil", [1, 2, 6, 6], maxpool_pads_ceil)

    # Max pool, stride 1 with asymmetric pads (opset 11).
    def maxpool_asym(g, x):
        return g.op("MaxPool", [x], kernel_shape=[2, 3], strides=[1, 2], pads=[0, 1, 1, 2])

    add("maxpool_asym", [1, 2, 5, 6], maxpool_asym, opset=11)

    # Average pool counting the padding in the divisor (windows reach into the right pad).
    def avgpool_count_include_pad(g, x):
        return g.op("AveragePool", [x], kernel_shape=[3, 3], strides=[1, 2], pads=[1, 1, 1, 1], count_include_pad=1)

    add("avgpool_count_include_pad", [1, 2, 5, 6], avgpool_count_include_pad)

    # Average pool with ceil_mode: the last windows are cut short by the edge.
    def avgpool_ceil(g, x):
        return g.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)

    add("avgpool_ceil", [1, 2, 7, 5], avgpool_ceil)

    # Average pool with pads, not counting them (the default).
    def avgpool_pads(g, x):
        return g.op("AveragePool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])

    add("avgpool_pads", [1, 2, 6, 5], avgpool_pads)

    # SAME_UPPER average pooling.
    def avgpool_same_upper(g, x):
        return g.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_UPPER")

    add("avgpool_same_upper", [1, 2, 5, 5], avgpool_same_upper)

    # Ceil mode and counted padding: the last windows reach past the padded input,
    # and only the part inside it counts.
    def avgpool_ceil_include_pad(g, x):
        return g.op("AveragePool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                    ceil_mode=1, count_include_pad=1)

    add("avgpool_ceil_include_pad", [1, 2, 6, 6], avgpool_ceil_include_pad)

    # SAME_UPPER pads counted in the divisor.
    def avgpool_same_include_pad(g, x):
        return g.op("AveragePool", [x], kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_UPPER",
                    count_include_pad=1)

    add("avgpool_same_include_pad", [1, 2, 5, 5], avgpool_same_include_pad)

    def global_avgpool(g, x):
        y = g.op("GlobalAveragePool", [x])
        return g.op("Flatten", [y])

    add("global_avgpool", [1, 3, 5, 4], global_avgpool)

    def global_maxpool(g, x):
        y = g.op("GlobalMaxPool", [x])
        return g.op("Flatten", [y])

    add("global_maxpool", [1, 3, 5, 4], global_maxpool)

    # Gemm with the data as A, transposed: data [K, 1], alpha, beta.
    def gemm_alpha_beta_transA(g, x):
        return g.op("Gemm", [x, g.w(6, 4), g.w(4)], alpha=0.5, beta=2.0, transA=1)

    add("gemm_alpha_beta_transA", [6, 1], gemm_alpha_beta_transA)

    # Gemm with the data as B (transposed): A [3, 6] times data^T [6, 1], bias [3, 1].
    def gemm_data_b(g, x):
        return g.op("Gemm", [g.w(3, 6), x, g.w(3, 1)], alpha=1.5, beta=0.5, transB=1)

    add("gemm_data_b", [1, 6], gemm_data_b)

    # Gemm with transA on the constant A and the data [6, 1] as B.
    def gemm_data_b_transA(g, x):
        return g.op("Gemm", [g.w(6, 3), x, g.w(1)], transA=1)

    add("gemm_data_b_transA", [6, 1], gemm_data_b_transA)

    # Gemm on a data matrix of 3 rows (a Dense applied per row), bias broadcast from [1, n].
    def gemm_rows(g, x):
        y = g.op("Flatten", [x], axis=2)  # [1, 3, 2, 2] -> [3, 4]
        y = g.op("Gemm", [y, g.w(5, 4), g.w(1, 5)], transB=1)
        y = g.op("Relu", [y])
        return g.op("Flatten", [y], axis=0)  # [3, 5] -> [1, 15]

    add("gemm_rows", [1, 3, 2, 2], gemm_rows)

    # MatMul with the data on the right: const [5, 6] @ data vector [6].
    def matmul_right(g, x):
        y = g.op("MatMul", [g.w(5, 6), x])
        return g.op("Add", [y, g.w(5)])

    add("matmul_right", [6], matmul_right)

    # MatMul with the data on the right as a [k, 1] matrix.
    def matmul_right_column(g, x):
        return g.op("MatMul", [g.w(4, 6), x])

    add("matmul_right_column", [6, 1], matmul_right_column)

    # MatMul with the data on the left, rank 3 (one Dense per row), then Add: folded.
    def matmul_left_3d(g, x):
        y = g.op("MatMul", [x, g.w(4, 5)])
        y = g.op("Add", [y, g.w(5)])
        return g.op("Sigmoid", [y])

    add("matmul_left_3d", [1, 3, 4], matmul_left_3d)

    # Softmax on a 3-D tensor, axis 1: opset 11 coerces to 2-D (over axes 1 and 2) ...
    def softmax_axis1(g, x):
        y = g.op("Mul", [x, g.w(1, 3, 4, scale=2.0)])
        return g.op("Softmax", [y], axis=1)

    add("softmax_opset11", [1, 3, 4], softmax_axis1, opset=11)
    # ... opset 13 normalises over axis 1 only.
    add("softmax_opset13", [1, 3, 4], softmax_axis1, opset=13)

    # Default axes: 1 at opset 11 (everything after the batch), -1 at opset 13.
    def softmax_default(g, x):
        return g.op("Softmax", [x])

    add("softmax_default_opset11", [1, 2, 3], softmax_default, opset=11)
    add("softmax_default_opset13", [1, 2, 3], softmax_default, opset=13)

    # A bias that differs between the rows of a per-row Dense cannot fold: an Affine.
    def matmul_full_bias(g, x):
        y = g.op("MatMul", [x, g.w(4, 2)])
        return g.op("Add", [y, g.w(1, 3, 2)])

    add("matmul_full_bias", [1, 3, 4], matmul_full_bias)

    def tanh_sigmoid(g, x):
        y = g.op("Gemm", [x, g.w(6, 5), g.w(6)], transB=1)
        y = g.op("Tanh", [y])
        y = g.op("Gemm", [y, g.w(6, 4), g.w(4)])
        return g.op("Sigmoid", [y])

    add("tanh_sigmoid", [1, 5], tanh_sigmoid)

    # A real 3-D permutation, then the default perm (reverse all axes).
    def transpose_3d(g, x):
        y = g.op("Transpose", [x], perm=[2, 0, 1])
        return g.op("Transpose", [y])

    add("transpose_3d", [2, 3, 4], transpose_3d)

    # A permutation that only moves axes of extent 1 (a Reshape), then a real one.
    def transpose_unit_axes(g, x):
        y = g.op("Transpose", [x], perm=[2, 0, 1, 3])  # [1,3,1,4] -> [1,1,3,4]
        return g.op("Transpose", [y], perm=[0, 1, 3, 2])  # -> [1,1,4,3]

    add("transpose_unit_axes", [1, 3, 1, 4], transpose_unit_axes)

    # Pad as inputs (opset 11), then a conv reading the padded tensor.
    def pad_opset11(g, x):
        y = g.op("Pad", [x, g.i64([0, 0, 1, 2, 0, 0, 2, 1]), g.const(np.array(0.0, np.float32))])
        return g.op("Conv", [y, g.w(2, 2, 3, 3), g.w(2)])

    add("pad_opset11", [1, 2, 4, 5], pad_opset11, opset=11)

    # Pad as attributes (opset < 11).
    def pad_opset9(g, x):
        return g.op("Pad", [x], pads=[0, 1, 0, 2, 0, 0, 1, 1], mode="constant", value=0.0)

    add("pad_opset9", [1, 2, 3, 3], pad_opset9, opset=9)

    # Pad with an axes input (opset 18).
    def pad_axes_opset18(g, x):
        return g.op("Pad", [x, g.i64([1, 0, 2, 1]), "", g.i64([2, -1])])

    add("pad_axes_opset18", [1, 2, 3, 4], pad_axes_opset18, opset=18)

    # Pads of zero are the identity.
    def pad_zero(g, x):
        y = g.op("Pad", [x, g.i64([0, 0, 0, 0])])
        return g.op("Relu", [y])

    add("pad_zero", [1, 5], pad_zero, opset=13)

    # Reshape with 0 (copy a dimension) and -1 (infer), then allowzero (opset 14).
    def reshape_zero_minus1(g, x):
        y = g.op("Reshape", [x, g.i64([0, -1, 3])])  # [1,4,3,2] -> [1,8,3]
        y = g.op("Relu", [y])
        y = g.op("Reshape", [y, g.i64([2, 12])], allowzero=1)
        return g.op("Reshape", [y, g.i64([-1, 0])])  # -> [2, 12]: 0 copies 12

    add("reshape_zero_minus1", [1, 4, 3, 2], reshape_zero_minus1, opset=14)

    # Squeeze/Unsqueeze with axes as attributes (opset 11).
    def squeeze_unsqueeze_attr(g, x):
        y = g.op("Squeeze", [x], axes=[2])  # [1,3,1,4] -> [1,3,4]
        y = g.op("Unsqueeze", [y], axes=[-1])  # -> [1,3,4,1]
        y = g.op("Relu", [y])
        y = g.op("Squeeze", [y], axes=[0, 3])  # -> [3,4] (tract needs the axes at opset 11)
        return g.op("Unsqueeze", [y], axes=[0, 2])  # -> [1,3,1,4]

    add("squeeze_unsqueeze_opset11", [1, 3, 1, 4], squeeze_unsqueeze_attr, opset=11)

    # Squeeze/Unsqueeze with axes as inputs (opset 13).
    def squeeze_unsqueeze_input(g, x):
        y = g.op("Squeeze", [x, g.i64([2])])
        y = g.op("Unsqueeze", [y, g.i64([-1])])
        y = g.op("Relu", [y])
        y = g.op("Squeeze", [y])  # no axes: every axis of extent 1 -> [3,4]
        return g.op("Unsqueeze", [y, g.i64([0, 2])])

    add("squeeze_unsqueeze_opset13", [1, 3, 1, 4], squeeze_unsqueeze_input, opset=13)

    # What PyTorch writes for x.view(x.size(0), -1): Shape -> Gather -> Unsqueeze -> Concat -> Reshape.
    def shape_gather_concat_reshape(g, x):
        y = g.op("Conv", [x, g.w(3, 2, 3, 3), g.w(3)], pads=[1, 1, 1, 1])
        y = g.op("Relu", [y])
        s = g.op("Shape", [y])
        zero = g.op("Constant", [], value=numpy_helper.from_array(np.array(0, np.int64)))
        n = g.op("Gather", [s, zero], axis=0)
        n = g.op("Unsqueeze", [n], axes=[0])
        minus1 = g.op("Constant", [], value=numpy_helper.from_array(np.array([-1], np.int64)))
        shape = g.op("Concat", [n, minus1], axis=0)
        y = g.op("Reshape", [y, shape])
        return g.op("Gemm", [y, g.w(4, 3 * 4 * 4), g.w(4)], transB=1)

    add("shape_gather_concat_reshape", [1, 2, 4, 4], shape_gather_concat_reshape, opset=11)

    # Shape with start/end (opset 15) builds the target of two reshapes.
    def shape_slice_opset15(g, x):
        y = g.op("Relu", [x])
        batch = g.op("Shape", [y], end=1)  # [1]
        y = g.op("Reshape", [y, g.op("Concat", [batch, g.i64([-1])], axis=0)])  # [1, 24]
        y = g.op("Gemm", [y, g.w(24, 8), g.w(8)])
        y = g.op("Reshape", [y, g.i64([1, 2, 4])])
        last = g.op("Shape", [y], start=-1)  # [4]
        return g.op("Reshape", [y, g.op("Concat", [g.i64([-1]), last], axis=0)])  # [2, 4]

    add("shape_slice_opset15", [1, 2, 3, 4], shape_slice_opset15, opset=15)

    # Slice of the data (opset 13): several axes, a negative axis, a negative step.
    def slice_data(g, x):
        return g.op("Slice", [x, g.i64([1, 5, 0]), g.i64([3, 0, 5]), g.i64([1, 2, -1]), g.i64([1, -2, 2])])

    add("slice_data", [1, 4, 6, 5], slice_data)

    # Reversing an axis the way exporters write it: step -1 down to INT64_MIN.
    def slice_reverse(g, x):
        big = np.iinfo(np.int64)
        y = g.op("Slice", [x, g.i64([-1]), g.i64([big.min]), g.i64([2]), g.i64([-1])])
        y = g.op("Slice", [y, g.i64([1]), g.i64([big.max]), g.i64([1])])
        # A step of INT64_MAX keeps the first element only.
        return g.op("Slice", [y, g.i64([0]), g.i64([big.max]), g.i64([-1]), g.i64([big.max])])

    add("slice_reverse", [1, 3, 4], slice_reverse)

    # Slice with attributes (opset 9), ends past the extent.
    def slice_opset9(g, x):
        return g.op("Slice", [x], starts=[1, -3], ends=[1000, -1], axes=[1, 2])

    add("slice_opset9", [1, 3, 5], slice_opset9, opset=9)

    # Gather with constant indices on a data axis (a negative index), then a scalar index.
    def gather_data(g, x):
        y = g.op("Gather", [x, g.i64([3, 0, -1, 3])], axis=1)  # [1,5,4] -> [1,4,4]
        y = g.op("Gather", [y, g.const(np.array(2, np.int64))], axis=-1)  # -> [1,4]
        return g.op("Gather", [y, g.i64([[1, 2], [3, 1], [0, 0]])], axis=1)  # -> [1,3,2]

    add("gather_data", [1, 5, 4], gather_data)

    # Token indices -> embedding -> conv1d -> relu -> 1-D max pool -> flatten -> gemm.
    def embedding(g, x):
        y = g.op("Gather", [g.w(20, 4), x], axis=0)  # [1,6] -> [1,6,4]
        y = g.op("Transpose", [y], perm=[0, 2, 1])  # -> [1,4,6]
        y = g.op("Conv", [y, g.w(5, 4, 3), g.w(5)])  # -> [1,5,4]
        y = g.op("Relu", [y])
        y = g.op("MaxPool", [y], kernel_shape=[2], strides=[2])  # -> [1,5,2]
        y = g.op("Flatten", [y])  # -> [1,10]
        return g.op("Gemm", [y, g.w(3, 10), g.w(3)], transB=1)

    add("embedding", [1, 6], embedding, elem=INT64)

    # In-graph normalisation (Sub/Div: an Affine), a conv, then Mul/Add folded into it.
    def normalisation(g, x):
        y = g.op("Sub", [x, g.w(1, 3, 1, 1)])
        y = g.op("Div", [y, g.pos(1, 3, 1, 1)])
        y = g.op("Conv", [y, g.w(2, 3, 3, 3), g.w(2)])
        y = g.op("Mul", [y, g.pos(2, 1, 1)])
        y = g.op("Add", [y, g.w(2, 1, 1)])
        return g.op("Relu", [y])

    add("normalisation", [1, 3, 4, 4], normalisation)

    # Constants on the left: c + x, c - x, c * x; a full-shape (not per-channel) scale after
    # a conv cannot fold and stays an Affine.
    def const_left(g, x):
        y = g.op("Add", [g.w(4), x])
        y = g.op("Sub", [g.w(1, 4), y])
        y = g.op("Mul", [g.w(4), y])
        y = g.op("Gemm", [y, g.w(4, 6), g.w(6)])
        y = g.op("Mul", [y, g.w(6)])  # folds into the Gemm
        y = g.op("Reshape", [y, g.i64([1, 2, 3])])
        y = g.op("Relu", [y])
        return g.op("Mul", [y, g.w(1, 2, 3)])  # after a Relu: an Affine

    add("const_left", [1, 4], const_left)

    # Neg of the data, folded into the Gemm after it; BatchNormalization on [N, C].
    def neg_bn(g, x):
        y = g.op("Neg", [x])
        y = g.op("Gemm", [y, g.w(5, 4), g.w(4)])
        y = g.op("Neg", [y])
        y = g.op("BatchNormalization", [y, g.pos(4), g.w(4), g.w(4), g.pos(4)])
        return g.op("Relu", [y])

    add("neg_bn", [1, 5], neg_bn)

    # BatchNormalization with nothing to fold into: an Affine.
    def bn_first(g, x):
        y = g.op("BatchNormalization", [x, g.pos(3), g.w(3), g.w(3), g.pos(3)], epsilon=1e-2)
        y = g.op("Flatten", [y])
        return g.op("Gemm", [y, g.w(12, 2)])

    add("bn_first", [1, 3, 2, 2], bn_first)

    # Identity, Dropout (opset 13, with ratio), Cast to float and double: no layers.
    def identity_dropout_cast(g, x):
        y = g.op("Identity", [x])
        y = g.op("Dropout", [y, g.const(np.array(0.3, np.float32))])
        y = g.op("Cast", [y], to=TensorProto.DOUBLE)
        y = g.op("Relu", [y])
        y = g.op("Cast", [y], to=TensorProto.FLOAT)
        y = g.op("Dropout", [y])
        return g.op("Identity", [y])

    add("identity_dropout_cast", [1, 7], identity_dropout_cast)

    # Weights computed at load time from constant-only nodes: Constant (every value
    # attribute), Identity, Cast, Shape, Neg, Add/Sub/Mul/Div (integer Div truncates),
    # Unsqueeze/Squeeze, Reshape, Flatten, Concat, Gather, Transpose, Slice, ConstantOfShape.
    def const_fold(g, x):
        w = g.w(2, 3, 4)  # 24 values
        wt = g.op("Transpose", [w], perm=[2, 1, 0])  # [4,3,2]
        wf = g.op("Flatten", [wt], axis=1)  # [4,6]
        s = g.op("Shape", [wf])  # [4,6]
        two = g.op("Constant", [], value_int=2)
        k = g.op("Gather", [s, g.i64([1])])  # [6]
        k = g.op("Div", [g.op("Add", [k, g.i64([1])]), g.op("Cast", [two], to=TensorProto.INT64)])  # 7/2 = 3
        k = g.op("Mul", [k, g.i64([2])])  # 6
        r = g.op("Concat", [g.op("Slice", [s, g.i64([0]), g.i64([1])]), k], axis=0)  # [4, 6]
        wm = g.op("Reshape", [g.op("Identity", [wf]), r])
        wm = g.op("Neg", [g.op("Sub", [wm, g.op("Constant", [], value_float=0.25)])])
        ones = g.op("ConstantOfShape", [g.op("Constant", [], value_ints=[6])],
                    value=numpy_helper.from_array(np.array([0.5], np.float32)))
        bias = g.op("Mul", [ones, g.op("Constant", [], value_floats=[1.0, -1.0, 2.0, -2.0, 0.5, 3.0])])
        bias = g.op("Squeeze", [g.op("Unsqueeze", [bias, g.i64([0])]), g.i64([0])])
        y = g.op("Gemm", [x, wm, bias])  # [1,4] @ [4,6]
        return g.op("Relu", [y])

    add("const_fold", [1, 4], const_fold)

    # A dynamic batch dimension ('N'), fixed to 1 by the IR.
    g = G("batch_dynamic")
    y = g.op("Gemm", ["x", g.w(8, 3), g.w(8)], transB=1)
    y = g.op("Relu", [y])
    y = g.op("Gemm", [y, g.w(2, 8), g.w(2)], transB=1)
    models["batch_dynamic"] = g.model([vi("x", FLOAT, ["N", 3])], [vi(y, FLOAT, ["N", 2])])

    # A small CNN as a classifier: conv, pool, flatten, gemm, softmax.
    def small_cnn(g, x):
        y = g.op("Conv", [x, g.w(4, 1, 3, 3), g.w(4)], pads=[1, 1, 1, 1])
        y = g.op("Relu", [y])
        y = g.op("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2])
        y = g.op("Conv", [y, g.w(4, 4, 3, 3, scale=0.3), g.w(4)], strides=[2, 2], pads=[1, 1, 1, 1])
        y = g.op("Relu", [y])
        y = g.op("Flatten", [y])
        y = g.op("Gemm", [y, g.w(5, 16), g.w(5)], transB=1)
        return g.op("Softmax", [y], axis=1)

    add("small_cnn", [1, 1, 8, 8], small_cnn)
    return models


# ---------------------------------------------------------------- bad


def bad_models():
    models = {}

    g = G("unsupported_op")
    y = g.op("Gemm", ["x", g.w(4, 3), g.w(4)], transB=1, name="fc1")
    y = g.op("LeakyRelu", [y], name="act1", alpha=0.1)
    models["unsupported_op"] = g.model([vi("x", FLOAT, [1, 3])], [vi(y, FLOAT, [1, 4])])

    g = G("branching")
    r = g.op("Relu", ["x"], name="relu")
    y = g.op("Add", ["x", r], name="residual")
    models["branching"] = g.model([vi("x", FLOAT, [1, 4])], [vi(y, FLOAT, [1, 4])])

    g = G("two_inputs")
    y = g.op("Add", ["x", "z"], name="sum")
    models["two_inputs"] = g.model([vi("x", FLOAT, [1, 4]), vi("z", FLOAT, [1, 4])], [vi(y, FLOAT, [1, 4])])

    g = G("dynamic_non_batch")
    y = g.op("Relu", ["x"], name="relu")
    models["dynamic_non_batch"] = g.model([vi("x", FLOAT, ["N", "seq"])], [vi(y, FLOAT, ["N", "seq"])])

    g = G("div_by_data")
    y = g.op("Div", [g.pos(1, 4), "x"], name="reciprocal")
    models["div_by_data"] = g.model([vi("x", FLOAT, [1, 4])], [vi(y, FLOAT, [1, 4])])

    g = G("nonzero_pad")
    y = g.op("Pad", ["x", g.i64([0, 1, 0, 1]), g.const(np.array(1.0, np.float32))], name="pad_one")
    models["nonzero_pad"] = g.model([vi("x", FLOAT, [1, 4])], [vi(y, FLOAT, [1, 6])], opset=13)

    g = G("reflect_pad")
    y = g.op("Pad", ["x", g.i64([0, 0, 1, 1, 0, 0, 1, 1])], name="pad_reflect", mode="reflect")
    models["reflect_pad"] = g.model([vi("x", FLOAT, [1, 1, 3, 3])], [vi(y, FLOAT, [1, 1, 5, 5])], opset=13)

    g = G("two_outputs")
    a = g.op("Relu", ["x"], name="relu")
    b = g.op("Sigmoid", [a], name="sigmoid")
    models["two_outputs"] = g.model([vi("x", FLOAT, [1, 4])], [vi(a, FLOAT, [1, 4]), vi(b, FLOAT, [1, 4])])

    g = G("custom_domain")
    y = g.op("Relu", ["x"], name="relu")
    y = g.op("FancyAct", [y], name="fancy", domain="com.example")
    models["custom_domain"] = g.model(
        [vi("x", FLOAT, [1, 4])], [vi(y, FLOAT, [1, 4])], extra_opsets=[("com.example", 1)]
    )

    g = G("maxpool_indices")
    y, idx = g.op("MaxPool", ["x"], n_out=2, name="pool", kernel_shape=[2, 2])
    y = g.op("Relu", [y], name="relu")
    models["maxpool_indices"] = g.model([vi("x", FLOAT, [1, 1, 4, 4])], [vi(y, FLOAT, [1, 1, 3, 3])])

    g = G("bad_reshape")
    y = g.op("Reshape", ["x", g.i64([1, 5])], name="reshape_5")
    models["bad_reshape"] = g.model([vi("x", FLOAT, [1, 6])], [vi(y, FLOAT, [1, 5])])

    # Beyond the brief: the other rules of the chain.
    g = G("square")
    y = g.op("Mul", ["x", "x"], name="square")
    models["square"] = g.model([vi("x", FLOAT, [1, 4])], [vi(y, FLOAT, [1, 4])])

    g = G("cast_to_int")
    y = g.op("Cast", ["x"], name="to_int", to=TensorProto.INT32)
    models["cast_to_int"] = g.model([vi("x", FLOAT, [1, 4])], [vi(y, TensorProto.INT32, [1, 4])])

    g = G("output_mid_chain")
    a = g.op("Relu", ["x"], name="relu")
    g.op("Sigmoid", [a], name="dangling")
    models["output_mid_chain"] = g.model([vi("x", FLOAT, [1, 4])], [vi(a, FLOAT, [1, 4])])

    g = G("conv3d")
    y = g.op("Conv", ["x", g.w(1, 1, 2, 2, 2)], name="conv3d")
    models["conv3d"] = g.model([vi("x", FLOAT, [1, 1, 3, 3, 3])], [vi(y, FLOAT, [1, 1, 2, 2, 2])])

    g = G("string_input")
    y = g.op("Identity", ["x"], name="id")
    models["string_input"] = g.model([vi("x", TensorProto.STRING, [1, 4])], [vi(y, TensorProto.STRING, [1, 4])])

    g = G("div_by_zero")
    y = g.op("Div", ["x", g.const(np.array([1.0, 0.0, 2.0, 4.0], np.float32))], name="scale_down")
    models["div_by_zero"] = g.model([vi("x", FLOAT, [1, 4])], [vi(y, FLOAT, [1, 4])])

    g = G("broadcast_grows")
    y = g.op("Add", ["x", g.w(3, 4)], name="grow")
    models["broadcast_grows"] = g.model([vi("x", FLOAT, [1, 4])], [vi(y, FLOAT, [3, 4])])

    g = G("maxpool_dilated")
    y = g.op("MaxPool", ["x"], name="pool", kernel_shape=[2, 2], dilations=[2, 2])
    models["maxpool_dilated"] = g.model([vi("x", FLOAT, [1, 1, 5, 5])], [vi(y, FLOAT, [1, 1, 3, 3])])

    # Adversarial shapes: a zero-sized pooling window and kernel, a reshape whose
    # target overflows, a window larger than the input.
    g = G("pool_zero_kernel")
    y = g.op("AveragePool", ["x"], name="pool", kernel_shape=[0, 2])
    models["pool_zero_kernel"] = g.model([vi("x", FLOAT, [1, 1, 4, 4])], [vi(y, FLOAT, None)])

    g = G("conv_zero_kernel")
    y = g.op("Conv", ["x", g.const(np.zeros((2, 1, 0, 2), np.float32))], name="conv")
    models["conv_zero_kernel"] = g.model([vi("x", FLOAT, [1, 1, 4, 4])], [vi(y, FLOAT, None)])

    g = G("reshape_overflow")
    y = g.op("Reshape", ["x", g.i64([1 << 40, 1 << 40, -1])], name="reshape_huge")
    models["reshape_overflow"] = g.model([vi("x", FLOAT, [1, 4])], [vi(y, FLOAT, None)])

    g = G("window_too_large")
    y = g.op("Conv", ["x", g.w(1, 1, 5, 5)], name="conv_big")
    models["window_too_large"] = g.model([vi("x", FLOAT, [1, 1, 3, 3])], [vi(y, FLOAT, None)])

    # A model without a graph.
    m = onnx.ModelProto()
    m.ir_version = 7
    m.opset_import.append(helper.make_opsetid("", 13))
    models["no_graph"] = m
    return models


def main():
    os.makedirs(OPS, exist_ok=True)
    os.makedirs(BAD, exist_ok=True)
    for d in (OPS, BAD):
        for f in os.listdir(d):
            if f.endswith(".onnx"):
                os.remove(os.path.join(d, f))
    for name, m in sorted(ops_models().items()):
        save(m, OPS, name)
    valid = None
    for name, m in sorted(bad_models().items()):
        # Custom-domain ops and shape-inconsistent models do not pass the checker.
        data = save(m, BAD, name, check=False)
        if name == "unsupported_op":
            valid = data
    rng = rng_for("garbage")
    with open(os.path.join(BAD, "garbage.onnx"), "wb") as f:
        f.write(rng.randint(0, 256, size=1500).astype(np.uint8).tobytes())
    with open(os.path.join(BAD, "truncated.onnx"), "wb") as f:
        f.write(valid[: len(valid) * 6 // 10])
    print("wrote %d models to %s and %d files to %s" % (len(os.listdir(OPS)), OPS, len(os.listdir(BAD)), BAD))


if __name__ == "__main__":
    main()
