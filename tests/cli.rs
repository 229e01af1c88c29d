//! The `nnexplain` binary end to end: exit codes, `error:` lines on stderr,
//! and the JSON it prints.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn mnist() -> PathBuf {
    root().join("models/mnist_mlp.onnx")
}

fn digit7() -> PathBuf {
    root().join("models/digit_7.png")
}

/// A fresh scratch directory for one test.
fn scratch(test: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli_{test}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_nnexplain"))
        .args(args)
        .output()
        .expect("running nnexplain")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
}

/// Exit code 2 with a one-line `error:` report that contains every one of `words`.
fn assert_error(o: &Output, words: &[&str]) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "stdout: {}\nstderr: {err}",
        stdout(o)
    );
    assert!(err.starts_with("error:"), "stderr: {err}");
    for w in words {
        assert!(err.contains(w), "{w:?} not in stderr: {err}");
    }
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

/// A VNN-LIB property over `n_in` inputs in [lo, hi] and `n_out` outputs,
/// untargeted robustness around `label`.
fn write_property(path: &Path, n_in: usize, n_out: usize, label: usize, lo: f64, hi: f64) {
    let mut s = String::new();
    for i in 0..n_in {
        s += &format!("(declare-const X_{i} Real)\n");
    }
    for j in 0..n_out {
        s += &format!("(declare-const Y_{j} Real)\n");
    }
    for i in 0..n_in {
        s += &format!("(assert (>= X_{i} {lo}))\n(assert (<= X_{i} {hi}))\n");
    }
    s += "(assert (or\n";
    for j in (0..n_out).filter(|&j| j != label) {
        s += &format!("  (and (>= Y_{j} Y_{label}))\n");
    }
    s += "))\n";
    std::fs::write(path, s).unwrap();
}

#[test]
fn info_describes_the_layers() {
    let o = run([Path::new("info"), &mnist()]);
    assert_ok(&o);
    let out = stdout(&o);
    for w in [
        "layer",
        "Dense",
        "Relu",
        "parameters",
        "[1, 784]",
        "exact encoding",
    ] {
        assert!(out.contains(w), "{w:?} not in:\n{out}");
    }
}

#[test]
fn info_json_parses() {
    let o = run([Path::new("info"), &mnist(), Path::new("--json")]);
    assert_ok(&o);
    let v = json(&o);
    assert_eq!(v["input_shape"], serde_json::json!([1, 1, 28, 28]));
    assert_eq!(v["output_shape"], serde_json::json!([1, 10]));
    assert_eq!(v["exact_encoding"], serde_json::json!(true));
    let layers = v["layers"].as_array().expect("layers");
    assert!(!layers.is_empty());
    let params: u64 = layers.iter().map(|l| l["params"].as_u64().unwrap()).sum();
    assert_eq!(v["params"].as_u64(), Some(params));
    assert!(layers.iter().any(|l| l["kind"] == "Dense"));
}

#[test]
fn info_on_a_fixture_lists_folded_ops() {
    let model = root().join("tests/data/onnx_ops/conv_bn_relu.onnx");
    let o = run([Path::new("info"), &model, Path::new("--json")]);
    assert_ok(&o);
    let v = json(&o);
    let kinds: Vec<&str> = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["Conv", "Relu"]);
    assert_eq!(
        v["layers"][0]["onnx_ops"],
        serde_json::json!(["Conv", "BatchNormalization"])
    );
}

#[test]
fn predict_digit_seven_agrees_with_tract() {
    let o = run([
        Path::new("predict"),
        &mnist(),
        &digit7(),
        Path::new("--scale"),
        Path::new("1/255"),
        Path::new("--compare-tract"),
        Path::new("--json"),
    ]);
    assert_ok(&o);
    let v = json(&o);
    let outputs = v["outputs"].as_array().expect("outputs");
    assert_eq!(outputs.len(), 10);
    assert!(outputs
        .iter()
        .all(|y| y.as_f64().is_some_and(f64::is_finite)));
    assert_eq!(v["argmax"], serde_json::json!(7));
    let diff = v["tract_max_abs_diff"]
        .as_f64()
        .expect("tract_max_abs_diff");
    assert!(diff < 1e-4, "tract differs by {diff}");
    assert_eq!(v["tract_same_argmax"], serde_json::json!(true));
}

#[test]
fn predict_text_output() {
    let o = run([
        Path::new("predict"),
        &mnist(),
        &digit7(),
        Path::new("--scale"),
        Path::new("1/255"),
    ]);
    assert_ok(&o);
    assert!(stdout(&o).contains("argmax 7"), "{}", stdout(&o));
}

#[test]
fn predict_wrong_shape_names_the_shapes() {
    let dir = scratch("wrong_shape");
    let npy = dir.join("three_by_three.npy");
    nnexplain::input::write_npy_f32(&npy, &[3, 3], &[0.5; 9]).unwrap();
    let o = run([Path::new("predict"), &mnist(), &npy]);
    assert_error(&o, &["three_by_three.npy", "[3, 3]", "[1, 1, 28, 28]"]);
}

#[test]
fn predict_on_a_bad_model_names_the_node() {
    let dir = scratch("bad_model");
    let npy = dir.join("x.npy");
    nnexplain::input::write_npy_f32(&npy, &[1, 3], &[0.1, 0.2, 0.3]).unwrap();
    let model = root().join("tests/data/onnx_bad/unsupported_op.onnx");
    let o = run([Path::new("predict"), &model, &npy]);
    assert_error(&o, &["unsupported_op.onnx", "act1", "LeakyRelu"]);
}

#[test]
fn predict_on_a_fixture_with_index() {
    // Two samples of a [1, 5] model; --index 1 picks the second.
    let dir = scratch("index");
    let npy = dir.join("two.npy");
    let data: Vec<f32> = (0..10).map(|i| i as f32 * 0.1 - 0.5).collect();
    nnexplain::input::write_npy_f32(&npy, &[2, 5], &data).unwrap();
    let model = root().join("tests/data/onnx_ops/tanh_sigmoid.onnx");
    let all = run([Path::new("predict"), &model, &npy, Path::new("--json")]);
    assert_ok(&all);
    let all = json(&all);
    assert_eq!(all["batch"], serde_json::json!(2));
    let one = run([
        Path::new("predict"),
        &model,
        &npy,
        Path::new("--index"),
        Path::new("1"),
        Path::new("--compare-tract"),
        Path::new("--json"),
    ]);
    assert_ok(&one);
    let one = json(&one);
    assert_eq!(one["batch"], serde_json::json!(1));
    let outs = |v: &serde_json::Value| -> Vec<f64> {
        v["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|y| y.as_f64().unwrap())
            .collect()
    };
    assert_eq!(outs(&one)[..], outs(&all)[4..]);
    assert!(one["tract_max_abs_diff"].as_f64().unwrap() < 1e-5);
}

#[test]
fn scale_division_by_zero_is_a_usage_error() {
    let o = run([
        Path::new("predict"),
        &mnist(),
        &digit7(),
        Path::new("--scale"),
        Path::new("1/0"),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("scale"), "{}", stderr(&o));
    let o = run([
        Path::new("predict"),
        &mnist(),
        &digit7(),
        Path::new("--scale"),
        Path::new("abc"),
    ]);
    assert!(!o.status.success());
}

#[test]
fn missing_files_exit_2() {
    let o = run([
        Path::new("predict"),
        Path::new("no/such/model.onnx"),
        &digit7(),
    ]);
    assert_error(&o, &["no/such/model.onnx"]);
    let o = run([
        Path::new("predict"),
        &mnist(),
        Path::new("no/such/input.npy"),
    ]);
    assert_error(&o, &["no/such/input.npy"]);
    let o = run([Path::new("info"), Path::new("no/such/model.onnx")]);
    assert_error(&o, &["no/such/model.onnx"]);
}

#[test]
fn index_out_of_range_exits_2() {
    let o = run([
        Path::new("predict"),
        &mnist(),
        &digit7(),
        Path::new("--index"),
        Path::new("5"),
    ]);
    assert_error(&o, &["--index 5", "1 samples"]);
}

#[test]
fn property_against_the_model() {
    let dir = scratch("property");
    let prop = dir.join("robust_7.vnnlib");
    write_property(&prop, 784, 10, 7, 0.0, 0.05);
    let o = run([
        Path::new("property"),
        &prop,
        Path::new("--model"),
        &mnist(),
        Path::new("--json"),
    ]);
    assert_ok(&o);
    let v = json(&o);
    assert_eq!(v["inputs"], serde_json::json!(784));
    assert_eq!(v["outputs"], serde_json::json!(10));
    assert!(
        v["robustness"].as_str().is_some_and(|r| r.contains('7')),
        "{v}"
    );
    // Text output too.
    let o = run([Path::new("property"), &prop, Path::new("--model"), &mnist()]);
    assert_ok(&o);
    assert!(stdout(&o).contains("784 inputs"), "{}", stdout(&o));
}

#[test]
fn property_size_mismatch_exits_2() {
    let dir = scratch("property_mismatch");
    let prop = dir.join("small.vnnlib");
    write_property(&prop, 5, 2, 0, -1.0, 1.0);
    let o = run([Path::new("property"), &prop, Path::new("--model"), &mnist()]);
    assert_error(&o, &["5 inputs", "784 inputs", "2 outputs", "10 outputs"]);
}

#[test]
fn no_subcommand_is_a_usage_error() {
    let o = run(Vec::<&str>::new());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("Usage"), "{}", stderr(&o));
}

#[test]
fn mean_and_std_match_a_pre_normalised_input() {
    // The same digit, normalised by hand into a .npy, must give the same logits
    // as the PNG read with --scale 1/255 --mean 0.1307 --std 0.3081.
    let dir = scratch("mean_std");
    let img = nnexplain::input::read_png(digit7()).unwrap();
    let pre: Vec<f32> = img
        .iter()
        .map(|v| ((v / 255.0 - 0.1307) / 0.3081) as f32)
        .collect();
    let npy = dir.join("pre.npy");
    nnexplain::input::write_npy_f32(&npy, &[1, 1, 28, 28], &pre).unwrap();
    let outs = |o: &Output| -> Vec<f64> {
        json(o)["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|y| y.as_f64().unwrap())
            .collect()
    };
    let by_hand = run([Path::new("predict"), &mnist(), &npy, Path::new("--json")]);
    assert_ok(&by_hand);
    let flags = run([
        Path::new("predict"),
        &mnist(),
        &digit7(),
        Path::new("--scale"),
        Path::new("1/255"),
        Path::new("--mean"),
        Path::new("0.1307"),
        Path::new("--std"),
        Path::new("0.3081"),
        Path::new("--json"),
    ]);
    assert_ok(&flags);
    for (a, b) in outs(&by_hand).iter().zip(outs(&flags)) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
    // Three means for a one-channel input, and a zero std, are usage errors.
    let bad = |mean: &str, std: &str| {
        run([
            Path::new("predict"),
            &mnist(),
            &digit7(),
            Path::new("--mean"),
            Path::new(mean),
            Path::new("--std"),
            Path::new(std),
        ])
    };
    assert_error(&bad("0.1,0.2,0.3", "1"), &["--mean", "1 channels"]);
    assert_error(&bad("0.1", "0"), &["--std", "positive"]);
}
