//! Every op and attribute path of the ONNX lowering, one tiny model each
//! (`tests/data/onnx_ops/`, written by `tests/data/make_onnx_fixtures.py`):
//! the model loads, its IR forward pass agrees with tract's inference in f32
//! and f64 on seeded random inputs, and the IR has the expected structure.

use std::path::{Path, PathBuf};

use ndarray::Array2;
use nnexplain::model::{Layer, Reference};
use nnexplain::Network;

/// Largest accepted |ours − tract| relative to max(1, max|y|).
const REL_TOL: f64 = 1e-5;
/// Random inputs per model.
const SAMPLES: u64 = 3;
/// Vocabulary of the embedding fixture (its table has 20 rows).
const VOCAB: u64 = 20;

fn ops_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/onnx_ops")
}

fn fixture(name: &str) -> PathBuf {
    ops_dir().join(format!("{name}.onnx"))
}

fn all_fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(ops_dir())
        .expect("tests/data/onnx_ops: run tests/data/make_onnx_fixtures.py")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    v.sort();
    v
}

/// SplitMix64: a tiny seeded generator, so the inputs do not depend on a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-2, 2), rounded to f32 so that both engines see the same input.
    fn uniform(&mut self) -> f64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        (4.0 * u - 2.0) as f32 as f64
    }
}

fn random_input(net: &Network, integer: bool, seed: u64) -> Vec<f64> {
    let mut rng = Rng(seed);
    (0..net.input_len())
        .map(|_| {
            if integer {
                (rng.next() % VOCAB) as f64
            } else {
                rng.uniform()
            }
        })
        .collect()
}

/// Runs the IR (f64 and f32) and tract on `x`; returns the worst relative
/// difference, or what went wrong.
fn compare(net: &Network, reference: &Reference, x: &[f64], what: &str) -> Result<f64, String> {
    let xs = Array2::from_shape_vec((1, x.len()), x.to_vec()).unwrap();
    let theirs: Vec<f64> = reference
        .run(xs.mapv(|v| v as f32).view())
        .unwrap_or_else(|e| panic!("{what}: tract: {e}"))
        .iter()
        .map(|&v| v as f64)
        .collect();
    let ours64: Vec<f64> = net
        .forward::<f64>(xs.view())
        .unwrap_or_else(|e| panic!("{what}: f64 forward: {e}"))
        .iter()
        .copied()
        .collect();
    let ours32: Vec<f64> = net
        .forward::<f32>(xs.mapv(|v| v as f32).view())
        .unwrap_or_else(|e| panic!("{what}: f32 forward: {e}"))
        .iter()
        .map(|&v| v as f64)
        .collect();
    assert_eq!(ours64.len(), theirs.len(), "{what}: output length");
    assert_eq!(ours32.len(), theirs.len(), "{what}: output length (f32)");
    let scale = theirs.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let mut worst = 0.0f64;
    for (ours, kind) in [(&ours64, "f64"), (&ours32, "f32")] {
        let (i, d) = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .enumerate()
            .fold((0, 0.0), |m, (i, d)| if d > m.1 { (i, d) } else { m });
        worst = worst.max(d / scale);
        if d > REL_TOL * scale {
            return Err(format!(
                "{what} ({kind}): max |Δ| = {d:e} at output {i} (ours {}, tract {}), scale {scale}\n\
                 ours  {ours:?}\ntract {theirs:?}",
                ours[i], theirs[i]
            ));
        }
    }
    Ok(worst)
}

fn kinds(net: &Network) -> Vec<&'static str> {
    net.layers().iter().map(|l| l.kind()).collect()
}

#[test]
fn every_fixture_agrees_with_tract() {
    let files = all_fixtures();
    assert!(files.len() >= 40, "only {} fixtures", files.len());
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let net = Network::from_onnx(path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let reference = match Reference::from_onnx(path, 1) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let integer = name == "embedding";
        let mut worst = 0.0f64;
        for s in 0..SAMPLES {
            let x = random_input(&net, integer, 1000 + s);
            match compare(&net, &reference, &x, &format!("{name} sample {s}")) {
                Ok(w) => worst = worst.max(w),
                Err(e) => {
                    failures.push(e);
                    break;
                }
            }
        }
        report.push(format!("{name:<32} {worst:.2e}  {}", kinds(&net).join(" ")));
    }
    println!("{}", report.join("\n"));
    assert!(
        failures.is_empty(),
        "{} of {} fixtures disagree with tract:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

/// Every fixture's IR output shape is the shape the ONNX graph declares (and
/// that onnx's reference evaluator computed when writing the fixture), batch 1.
#[test]
fn output_shapes_match_the_graph() {
    let expect: &[(&str, &[usize], &[usize])] = &[
        ("conv_bn_relu", &[1, 3, 6, 6], &[1, 4, 6, 6]),
        ("conv_groups_dilation", &[1, 4, 9, 9], &[1, 6, 8, 3]),
        ("conv_same_upper", &[1, 2, 5, 6], &[1, 3, 5, 6]),
        ("conv_same_lower_stride2", &[1, 2, 8, 7], &[1, 3, 4, 4]),
        ("conv_valid", &[1, 2, 7, 5], &[1, 2, 3, 4]),
        ("conv1d", &[1, 3, 11], &[1, 4, 5]),
        ("maxpool_pads_ceil", &[1, 2, 6, 6], &[1, 2, 4, 4]),
        ("avgpool_count_include_pad", &[1, 2, 5, 6], &[1, 2, 5, 3]),
        ("avgpool_ceil", &[1, 2, 7, 5], &[1, 2, 4, 3]),
        ("global_avgpool", &[1, 3, 5, 4], &[1, 3]),
        ("gemm_alpha_beta_transA", &[6, 1], &[1, 4]),
        ("gemm_data_b", &[1, 6], &[3, 1]),
        ("gemm_rows", &[1, 3, 2, 2], &[1, 15]),
        ("matmul_right", &[6], &[5]),
        ("matmul_right_column", &[6, 1], &[4, 1]),
        ("matmul_left_3d", &[1, 3, 4], &[1, 3, 5]),
        ("transpose_3d", &[2, 3, 4], &[3, 2, 4]),
        ("transpose_unit_axes", &[1, 3, 1, 4], &[1, 1, 4, 3]),
        ("pad_opset11", &[1, 2, 4, 5], &[1, 2, 5, 6]),
        ("pad_opset9", &[1, 2, 3, 3], &[1, 3, 4, 6]),
        ("pad_axes_opset18", &[1, 2, 3, 4], &[1, 2, 6, 5]),
        ("reshape_zero_minus1", &[1, 4, 3, 2], &[2, 12]),
        ("squeeze_unsqueeze_opset11", &[1, 3, 1, 4], &[1, 3, 1, 4]),
        ("squeeze_unsqueeze_opset13", &[1, 3, 1, 4], &[1, 3, 1, 4]),
        ("slice_data", &[1, 4, 6, 5], &[1, 2, 3, 3]),
        ("slice_opset9", &[1, 3, 5], &[1, 2, 2]),
        ("gather_data", &[1, 5, 4], &[1, 3, 2]),
        ("embedding", &[1, 6], &[1, 3]),
        ("batch_dynamic", &[1, 3], &[1, 2]),
        ("small_cnn", &[1, 1, 8, 8], &[1, 5]),
    ];
    for (name, input, output) in expect {
        let net = Network::from_onnx(fixture(name)).unwrap();
        assert_eq!(net.input_shape(), *input, "{name}: input shape");
        assert_eq!(net.output_shape(), *output, "{name}: output shape");
    }
    // Every fixture: the IR output shape is the one the graph declares.
    for path in all_fixtures() {
        let net = Network::from_onnx(&path).unwrap();
        assert_eq!(
            net.output_shape(),
            declared_output_shape(&path),
            "{}",
            path.display()
        );
    }
}

/// The graph output's declared shape, a symbolic dimension read as 1.
fn declared_output_shape(path: &Path) -> Vec<usize> {
    use tract_onnx::pb::{tensor_shape_proto::dimension::Value, type_proto};
    use tract_onnx::prelude::Framework;
    let proto = tract_onnx::onnx().proto_model_for_path(path).unwrap();
    let out = &proto.graph.as_ref().unwrap().output[0];
    let Some(type_proto::Value::TensorType(t)) = out.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        panic!("{}: output is not a tensor", path.display());
    };
    t.shape
        .as_ref()
        .unwrap()
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(Value::DimValue(v)) => *v as usize,
            _ => 1,
        })
        .collect()
}

#[test]
fn batch_norm_folds_into_conv() {
    let net = Network::from_onnx(fixture("conv_bn_relu")).unwrap();
    assert_eq!(kinds(&net), ["Conv", "Relu"]);
    assert!(!net
        .layers()
        .iter()
        .any(|l| matches!(l, Layer::Affine { .. })));
    assert_eq!(net.nodes()[0].op_types, ["Conv", "BatchNormalization"]);
    // 4·3·3·3 weights + 4 biases: BN added no parameters.
    assert_eq!(net.param_count(), 4 * 3 * 3 * 3 + 4);
}

#[test]
fn normalisation_is_one_affine_and_mul_add_fold_into_the_conv() {
    let net = Network::from_onnx(fixture("normalisation")).unwrap();
    assert_eq!(kinds(&net), ["Affine", "Conv", "Relu"]);
    assert_eq!(net.nodes()[0].op_types, ["Sub", "Div"]);
    assert_eq!(net.nodes()[1].op_types, ["Conv", "Mul", "Add"]);
}

#[test]
fn constants_on_the_left_and_an_unfoldable_scale() {
    let net = Network::from_onnx(fixture("const_left")).unwrap();
    assert_eq!(
        kinds(&net),
        ["Affine", "Dense", "Reshape", "Relu", "Affine"]
    );
    assert_eq!(net.nodes()[0].op_types, ["Add", "Sub", "Mul"]);
    assert_eq!(net.nodes()[1].op_types, ["Gemm", "Mul"]);
}

#[test]
fn neg_and_batch_norm_fold_into_the_dense() {
    let net = Network::from_onnx(fixture("neg_bn")).unwrap();
    assert_eq!(kinds(&net), ["Affine", "Dense", "Relu"]);
    assert_eq!(
        net.nodes()[1].op_types,
        ["Gemm", "Neg", "BatchNormalization"]
    );
    let net = Network::from_onnx(fixture("bn_first")).unwrap();
    assert_eq!(kinds(&net), ["Affine", "Reshape", "Dense"]);
}

#[test]
fn matmul_then_add_is_one_dense_per_row() {
    let net = Network::from_onnx(fixture("matmul_left_3d")).unwrap();
    assert_eq!(kinds(&net), ["Dense", "Sigmoid"]);
    match net.layer(0) {
        Layer::Dense(d) => {
            assert_eq!(d.rows, 3);
            assert_eq!(d.weight.dim(), (5, 4));
        }
        other => panic!("{other:?}"),
    }
    let net = Network::from_onnx(fixture("gemm_rows")).unwrap();
    assert_eq!(kinds(&net), ["Reshape", "Dense", "Relu", "Reshape"]);
    match net.layer(1) {
        Layer::Dense(d) => assert_eq!(d.rows, 3),
        other => panic!("{other:?}"),
    }
}

#[test]
fn layers_without_data_movement_vanish() {
    let net = Network::from_onnx(fixture("identity_dropout_cast")).unwrap();
    assert_eq!(kinds(&net), ["Relu"]);
    let net = Network::from_onnx(fixture("pad_zero")).unwrap();
    assert_eq!(kinds(&net), ["Relu"]);
    // Moving only axes of extent 1 is a reshape; the second transpose is real.
    let net = Network::from_onnx(fixture("transpose_unit_axes")).unwrap();
    assert_eq!(kinds(&net), ["Reshape", "Transpose"]);
    // Squeeze/Unsqueeze chains merge into reshapes around the Relu.
    for name in ["squeeze_unsqueeze_opset11", "squeeze_unsqueeze_opset13"] {
        let net = Network::from_onnx(fixture(name)).unwrap();
        assert_eq!(kinds(&net), ["Reshape", "Relu", "Reshape"], "{name}");
    }
}

#[test]
fn pytorch_flatten_pattern_is_folded_at_load_time() {
    let net = Network::from_onnx(fixture("shape_gather_concat_reshape")).unwrap();
    assert_eq!(kinds(&net), ["Conv", "Relu", "Reshape", "Dense"]);
    assert_eq!(net.nodes()[2].out_shape, [1, 48]);
    let net = Network::from_onnx(fixture("const_fold")).unwrap();
    assert_eq!(kinds(&net), ["Dense", "Relu"]);
    assert_eq!(net.opset(), 13);
}

#[test]
fn embedding_pipeline() {
    let net = Network::from_onnx(fixture("embedding")).unwrap();
    assert_eq!(
        kinds(&net),
        [
            "Embedding",
            "Transpose",
            "Conv",
            "Relu",
            "MaxPool",
            "Reshape",
            "Dense"
        ]
    );
    assert!(net.exact_encoding().is_err());
    match net.layer(0) {
        Layer::Embedding { table } => assert_eq!(table.dim(), (20, 4)),
        other => panic!("{other:?}"),
    }
    // A token outside the vocabulary is an error, not a panic.
    let x = Array2::from_elem((1, 6), 20.0f64);
    assert!(net.forward::<f64>(x.view()).is_err());
    let x = Array2::from_elem((1, 6), 1.5f64);
    assert!(net.forward::<f64>(x.view()).is_err());
}

#[test]
fn softmax_axis_semantics_depend_on_the_opset() {
    let len = |name: &str| match Network::from_onnx(fixture(name)).unwrap().layers().last() {
        Some(Layer::Softmax { outer, len, inner }) => (*outer, *len, *inner),
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(len("softmax_opset11"), (1, 12, 1));
    assert_eq!(len("softmax_opset13"), (1, 3, 4));
    assert_eq!(len("softmax_default_opset11"), (1, 6, 1));
    assert_eq!(len("softmax_default_opset13"), (2, 3, 1));
}

#[test]
fn conv_geometry_is_read_from_the_attributes() {
    let geom = |name: &str| match Network::from_onnx(fixture(name)).unwrap().layer(0) {
        Layer::Conv(c) => c.geom.clone(),
        other => panic!("{name}: {other:?}"),
    };
    let g = geom("conv_groups_dilation");
    assert_eq!((g.groups, g.dh, g.dw, g.sh, g.sw), (2, 2, 2, 1, 2));
    assert_eq!((g.pt, g.pl), (1, 0));
    // SAME_UPPER, kernel 2×4 at stride 1: total padding 1×3, the extra below/right.
    let g = geom("conv_same_upper");
    assert_eq!((g.pt, g.pl, g.h_out, g.w_out), (0, 1, 5, 6));
    // SAME_LOWER, kernel 4×3 at stride 2 on 8×7: totals 2×2... the extra above/left.
    let g = geom("conv_same_lower_stride2");
    assert_eq!((g.h_out, g.w_out), (4, 4));
    assert_eq!((g.pt, g.pl), (1, 1));
    let g = geom("conv1d");
    assert_eq!(
        (g.h_in, g.kh, g.w_in, g.pl, g.sw, g.dw),
        (1, 1, 11, 1, 2, 2)
    );
}

#[test]
fn dynamic_batch_is_fixed_to_one() {
    let net = Network::from_onnx(fixture("batch_dynamic")).unwrap();
    assert_eq!(net.input_shape(), [1, 3]);
    // The IR runs batches of any size on top.
    let x = Array2::from_shape_fn((5, 3), |(i, j)| (i as f64 - 2.0) * 0.3 + j as f64 * 0.1);
    let y = net.forward::<f64>(x.view()).unwrap();
    assert_eq!(y.dim(), (5, 2));
    let reference = Reference::from_onnx(fixture("batch_dynamic"), 5).unwrap();
    let theirs = reference.run(x.mapv(|v| v as f32).view()).unwrap();
    for (a, b) in y.iter().zip(theirs.iter()) {
        assert!((a - *b as f64).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn counted_padding_stays_in_the_pool() {
    // AveragePool with count_include_pad = 1 and pads is one AvgPool whose divisor
    // counts the window clipped to the padded input (checked against tract above).
    for name in ["avgpool_count_include_pad", "avgpool_ceil_include_pad"] {
        let net = Network::from_onnx(fixture(name)).unwrap();
        assert_eq!(kinds(&net), ["AvgPool"], "{name}");
        match net.layer(0) {
            Layer::AvgPool {
                geom,
                count_include_pad,
            } => {
                assert!(*count_include_pad, "{name}");
                assert!(geom.pt + geom.pl + geom.pb + geom.pr > 0, "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    // Without counted padding the pads stay in the pooling geometry too.
    let net = Network::from_onnx(fixture("avgpool_pads")).unwrap();
    match net.layer(0) {
        Layer::AvgPool {
            geom,
            count_include_pad,
        } => {
            assert!(!count_include_pad);
            assert_eq!((geom.pt, geom.pl, geom.pb, geom.pr), (1, 1, 1, 1));
        }
        other => panic!("{other:?}"),
    }
}

/// The backward pass through every lowered op path agrees with central finite
/// differences of the f64 forward pass (a random linear objective, one seeded
/// input per fixture; the embedding takes tokens, not reals, and is skipped).
#[test]
fn gradients_agree_with_finite_differences() {
    use nnexplain::Objective;
    const H: f64 = 1e-6;
    let mut failures = Vec::new();
    for path in all_fixtures() {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if name == "embedding" {
            continue;
        }
        let net = Network::from_onnx(&path).unwrap();
        let mut rng = Rng(7);
        let w: Vec<f64> = (0..net.output_len()).map(|_| rng.uniform()).collect();
        let objective = Objective::Linear(w.clone());
        let x = random_input(&net, false, 2000);
        let xs = Array2::from_shape_vec((1, x.len()), x.clone()).unwrap();
        let g = net
            .gradient::<f64>(xs.view(), &objective, 0)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let f = |x: &[f64]| -> f64 {
            let xs = Array2::from_shape_vec((1, x.len()), x.to_vec()).unwrap();
            let y = net.forward::<f64>(xs.view()).unwrap();
            y.iter().zip(&w).map(|(a, b)| a * b).sum()
        };
        let scale = g.grad.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for i in 0..x.len() {
            let (mut hi, mut lo) = (x.clone(), x.clone());
            hi[i] += H;
            lo[i] -= H;
            let fd = (f(&hi) - f(&lo)) / (2.0 * H);
            let an = g.grad[[0, i]];
            if (fd - an).abs() > 1e-5 * scale {
                failures.push(format!(
                    "{name}: ∂f/∂x[{i}] = {an} by backward, {fd} by differences"
                ));
                break;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
