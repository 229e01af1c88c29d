//! Models the IR cannot hold (`tests/data/onnx_bad/`, written by
//! `tests/data/make_onnx_fixtures.py`) are rejected with an `Err` of the right
//! variant, naming the node, its op type and the reason; never a panic.

use std::path::{Path, PathBuf};

use nnexplain::{Error, Network};

fn bad(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/onnx_bad")
        .join(name)
}

fn load_err(name: &str) -> Error {
    let path = bad(name);
    assert!(path.is_file(), "{}: missing fixture", path.display());
    match std::panic::catch_unwind(|| Network::from_onnx(&path)) {
        Ok(Ok(net)) => panic!(
            "{name}: loaded with {} layers, expected an error",
            net.len()
        ),
        Ok(Err(e)) => e,
        Err(_) => panic!("{name}: from_onnx panicked"),
    }
}

/// Asserts an `UnsupportedOp` naming `node` and `op_type` whose reason
/// contains every one of `words`.
fn unsupported(name: &str, node: &str, op_type: &str, words: &[&str]) {
    let e = load_err(name);
    let shown = e.to_string();
    match &e {
        Error::UnsupportedOp {
            node: n,
            op_type: o,
            reason,
        } => {
            assert_eq!(n, node, "{name}: node in {e:?}");
            assert_eq!(o, op_type, "{name}: op type in {e:?}");
            for w in words {
                assert!(reason.contains(w), "{name}: {w:?} not in reason {reason:?}");
            }
            // The printed message names both, for a user reading it.
            assert!(shown.contains(node) && shown.contains(op_type), "{shown}");
        }
        other => panic!("{name}: expected UnsupportedOp, got {other:?}"),
    }
}

/// Asserts an `Onnx` error on this file whose message contains every one of `words`.
fn onnx_error(name: &str, words: &[&str]) {
    let e = load_err(name);
    match &e {
        Error::Onnx { path, message } => {
            assert_eq!(path, &bad(name), "{name}: path in {e:?}");
            for w in words {
                assert!(message.contains(w), "{name}: {w:?} not in {message:?}");
            }
            assert!(e.to_string().contains(name), "{e}");
        }
        other => panic!("{name}: expected Onnx, got {other:?}"),
    }
}

#[test]
fn unsupported_op_names_the_node_and_op() {
    unsupported(
        "unsupported_op.onnx",
        "act1",
        "LeakyRelu",
        &["LeakyRelu", "not in the lowering table"],
    );
}

#[test]
fn branching_graph_is_rejected_at_the_join() {
    unsupported(
        "branching.onnx",
        "residual",
        "Add",
        &["'x'", "not the latest", "relu_out", "chain"],
    );
}

#[test]
fn reading_the_data_twice_is_rejected() {
    unsupported("square.onnx", "square", "Mul", &["twice"]);
}

#[test]
fn non_affine_arithmetic_is_rejected() {
    unsupported(
        "div_by_data.onnx",
        "reciprocal",
        "Div",
        &["constant by the data", "not affine"],
    );
    unsupported(
        "div_by_zero.onnx",
        "scale_down",
        "Div",
        &["division", "zero"],
    );
    unsupported(
        "broadcast_grows.onnx",
        "grow",
        "Add",
        &["[3, 4]", "grow", "[1, 4]"],
    );
    unsupported("cast_to_int.onnx", "to_int", "Cast", &["type 6"]);
}

#[test]
fn padding_must_be_constant_zero() {
    unsupported(
        "nonzero_pad.onnx",
        "pad_one",
        "Pad",
        &["constant padding with 1", "only zero"],
    );
    unsupported("reflect_pad.onnx", "pad_reflect", "Pad", &["'reflect'"]);
}

#[test]
fn pooling_limits() {
    unsupported("maxpool_indices.onnx", "pool", "MaxPool", &["indices"]);
    unsupported("maxpool_dilated.onnx", "pool", "MaxPool", &["dilated"]);
    unsupported(
        "pool_zero_kernel.onnx",
        "pool",
        "AveragePool",
        &["empty window"],
    );
}

#[test]
fn conv_limits() {
    unsupported("conv3d.onnx", "conv3d", "Conv", &["[1, 1, 3, 3, 3]"]);
    unsupported("conv_zero_kernel.onnx", "conv", "Conv", &["empty window"]);
    unsupported(
        "window_too_large.onnx",
        "conv_big",
        "Conv",
        &["window of 5", "padded input of 3"],
    );
}

#[test]
fn custom_domain_is_rejected() {
    unsupported(
        "custom_domain.onnx",
        "fancy",
        "FancyAct",
        &["domain", "'com.example'"],
    );
}

#[test]
fn impossible_reshapes_are_rejected() {
    unsupported(
        "bad_reshape.onnx",
        "reshape_5",
        "Reshape",
        &["[1, 6]", "[1, 5]"],
    );
    unsupported(
        "reshape_overflow.onnx",
        "reshape_huge",
        "Reshape",
        &["[1, 4]", "1099511627776"],
    );
}

#[test]
fn graph_interface_errors() {
    onnx_error("two_inputs.onnx", &["2 data inputs", "x, z", "exactly one"]);
    onnx_error(
        "two_outputs.onnx",
        &["2 outputs", "relu_out, sigmoid_out", "exactly one"],
    );
    onnx_error(
        "dynamic_non_batch.onnx",
        &["'x'", "seq", "axis 1", "only the batch axis"],
    );
    onnx_error(
        "output_mid_chain.onnx",
        &["relu_out", "not the end of the chain", "dangling_out"],
    );
    onnx_error("string_input.onnx", &["'x'", "element type 8"]);
    onnx_error("no_graph.onnx", &["no graph"]);
}

#[test]
fn unreadable_files_are_onnx_errors() {
    onnx_error("garbage.onnx", &["not a readable ONNX protobuf"]);
    onnx_error("truncated.onnx", &["not a readable ONNX protobuf"]);
}

#[test]
fn missing_file_is_an_io_error() {
    let path = bad("does_not_exist.onnx");
    match Network::from_onnx(&path) {
        Err(Error::Io { path: p, source }) => {
            assert_eq!(p, path);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Io, got {other:?}"),
    }
    // A directory is not a model either.
    assert!(matches!(Network::from_onnx(bad("")), Err(Error::Io { .. })));
}

/// Every file in the directory fails cleanly (a fixture added later without a
/// test of its own is still checked for this).
#[test]
fn every_bad_file_is_an_error_not_a_panic() {
    let dir = bad("");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".onnx"))
        .collect();
    names.sort();
    assert!(names.len() >= 20, "{names:?}");
    for name in names {
        let e = load_err(&name);
        assert!(
            matches!(e, Error::UnsupportedOp { .. } | Error::Onnx { .. }),
            "{name}: {e:?}"
        );
    }
}
