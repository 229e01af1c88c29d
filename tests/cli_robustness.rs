//! `nnexplain robustness` from the command line: one explanation written
//! end to end, and bad input refused with exit code 2 and a message.
#![cfg(all(feature = "highs", feature = "z3"))]

mod common;

use std::path::PathBuf;

use common::{data_dir, run_cli as run};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nnx-cli-robustness-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn model(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn one_explanation_writes_json_csv_and_charts() {
    let out = tmp("ok");
    let out_s = out.display().to_string();
    let (code, stdout, stderr) = run(&[
        "robustness",
        &model("mnist_mlp.onnx"),
        &model("digit_7.png"),
        "--scale",
        "1/255",
        "--explainer",
        "greedy-as,ig,random",
        "--fraction",
        "0.1",
        "--coalitions",
        "300",
        "--curve-estimator",
        "deepfool",
        "--out",
        &out_s,
    ]);
    assert_eq!(code, Some(0), "stdout {stdout}\nstderr {stderr}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("robustness.json")).unwrap())
            .unwrap();
    let text = json.to_string();
    for name in ["greedy-as", "ig", "random"] {
        assert!(text.contains(name), "{name} missing from robustness.json");
    }
    for f in ["robustness.csv", "curves.png", "curves.svg"] {
        assert!(out.join(f).is_file(), "{f} not written");
    }
    let csv = std::fs::read_to_string(out.join("robustness.csv")).unwrap();
    assert!(csv.lines().count() >= 2, "{csv}");
}

#[test]
fn bad_robustness_input_exits_2_with_a_message() {
    let mlp = model("mnist_mlp.onnx");
    let png = model("digit_7.png");
    let out = tmp("bad").display().to_string();
    let short = tmp("short.npy");
    // A subset of 10 entries for a 784-pixel input.
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let mut header = "{'descr': '<f8', 'fortran_order': False, 'shape': (10,), }".to_string();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    for _ in 0..10 {
        npy.extend_from_slice(&1.0f64.to_le_bytes());
    }
    std::fs::write(&short, npy).unwrap();
    let short = short.display().to_string();
    let sigmoid = data_dir()
        .join("vnncomp2021_eran_mnist/onnx/ffnnSIGMOID__Point_6x200.onnx")
        .display()
        .to_string();
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["robustness", &mlp, &png, "--scale", "1/255", "--out", &out]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (base(&["--explainer", "shap"]), "unknown explainer 'shap'"),
        (
            base(&["--target", "7"]),
            "--target 7 is the class predicted",
        ),
        (base(&["--target", "10"]), "out of range"),
        (base(&["--subset", &short]), "holds 10 values"),
        (base(&["--exact"]), "--norm linf"),
        (base(&["--fraction", "1.5"]), "--fraction"),
        (
            vec![
                "robustness".into(),
                sigmoid,
                png.clone(),
                "--scale".into(),
                "1/255".into(),
                "--norm".into(),
                "linf".into(),
                "--exact".into(),
                "--explainer".into(),
                "random".into(),
                "--out".into(),
                out.clone(),
            ],
            "--exact needs a network the MILP encodes exactly",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, stderr) = run(&args);
        assert_eq!(code, Some(2), "{args:?}: exit {code:?}, stderr {stderr}");
        assert!(stderr.contains(want), "{args:?}: '{want}' not in {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
