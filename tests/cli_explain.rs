//! `nnexplain smug`, `minimal-mask` and `lsc` from the command line.
#![cfg(all(feature = "highs", feature = "z3"))]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::data_dir;

fn nnx() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nnexplain"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nnx-cli-explain-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn model(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name)
}

fn run(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let out = nnx().args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn smug_writes_json_and_png_with_a_rechecked_mask() {
    let out = tmp("smug");
    for backend in ["milp", "lp", "portfolio"] {
        let (code, stdout, stderr) = run(&[
            "smug".as_ref(),
            model("mnist_mlp.onnx").as_os_str(),
            model("digit_7.png").as_os_str(),
            "--scale".as_ref(),
            "1/255".as_ref(),
            "--top-k".as_ref(),
            "10".as_ref(),
            "--gamma".as_ref(),
            "0.5".as_ref(),
            "--backend".as_ref(),
            backend.as_ref(),
            "--timeout".as_ref(),
            "30".as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ]);
        assert_eq!(code, Some(0), "{backend}: {stderr}");
        let first = stdout.lines().next().unwrap();
        assert!(
            first == "optimal" || (backend == "lp" && first == "feasible"),
            "{backend}: {stdout}"
        );
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("smug.json")).unwrap()).unwrap();
        for key in [
            "status",
            "mask",
            "mask_size",
            "bound",
            "wall_s",
            "recheck",
            "records",
            "smug_saliency",
            "neurons",
        ] {
            assert!(v.get(key).is_some(), "{backend}: no '{key}'");
        }
        assert_eq!(v["mask"].as_array().unwrap().len(), 784);
        assert_eq!(v["recheck"]["held"], serde_json::json!(true));
        let kept = v["mask"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m.as_u64() == Some(1))
            .count();
        assert_eq!(kept as u64, v["mask_size"].as_u64().unwrap());
        let img = image::open(out.join("smug.png")).unwrap();
        assert!(img.width() > img.height() * 3, "four panels side by side");
    }
}

#[test]
fn minimal_mask_single_and_dataset_modes() {
    let js = tmp("mm.json");
    let png = tmp("mm.png");
    let (code, stdout, stderr) = run(&[
        "minimal-mask".as_ref(),
        model("mnist_mlp.onnx").as_os_str(),
        model("digit_7.png").as_os_str(),
        "--scale".as_ref(),
        "1/255".as_ref(),
        "--json".as_ref(),
        js.as_os_str(),
        "--png".as_ref(),
        png.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.lines().next(), Some("optimal"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&js).unwrap()).unwrap();
    let r = &v["result"];
    for key in [
        "status",
        "mask",
        "mask_size",
        "bound",
        "wall_s",
        "recheck",
        "records",
    ] {
        assert!(r.get(key).is_some(), "no '{key}'");
    }
    assert_eq!(r["recheck"]["held"], serde_json::json!(true));
    assert!(png.exists());
    let csv = tmp("mm.csv");
    let d = data_dir().join("mnist_samples");
    let (code, _, stderr) = run(&[
        "minimal-mask".as_ref(),
        model("mnist_cnn.onnx").as_os_str(),
        d.join("mnist_test_100_images_u8.npy").as_os_str(),
        "--scale".as_ref(),
        "1/255".as_ref(),
        "--window".as_ref(),
        "4".as_ref(),
        "--timeout".as_ref(),
        "30".as_ref(),
        "--reshape".as_ref(),
        "--csv".as_ref(),
        csv.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 101);
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f[2], "optimal", "{line}");
        assert_eq!(f[8], "true", "{line}");
    }
}

#[test]
fn lsc_scores_every_method_and_compares_backends() {
    let csv = tmp("lsc.csv");
    let d = data_dir().join("mnist_samples");
    let (code, stdout, stderr) = run(&[
        "lsc".as_ref(),
        model("mnist_cnn.onnx").as_os_str(),
        d.join("mnist_test_100_images_u8.npy").as_os_str(),
        "--scale".as_ref(),
        "1/255".as_ref(),
        "--reshape".as_ref(),
        "--labels".as_ref(),
        d.join("mnist_test_100_labels.npy").as_os_str(),
        "--count".as_ref(),
        "3".as_ref(),
        "--gamma".as_ref(),
        "0.5".as_ref(),
        "--window".as_ref(),
        "2".as_ref(),
        "--steps".as_ref(),
        "32".as_ref(),
        "--compare-backends".as_ref(),
        "milp,lp".as_ref(),
        "--csv".as_ref(),
        csv.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("median LSC"), "{stdout}");
    let text = std::fs::read_to_string(&csv).unwrap();
    // 3 images × 7 methods.
    assert_eq!(text.lines().count(), 1 + 3 * 7, "{text}");
    for line in text.lines().filter(|l| l.contains(",smug,")) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f[7], "optimal", "{line}");
        assert_eq!(f[11], "true", "{line}");
        // The MILP compared on its own reaches the same size.
        assert_eq!(f[12], "optimal");
        assert_eq!(f[13], f[8], "{line}");
    }
}

#[test]
fn bad_explanation_input_exits_2_with_a_message() {
    let mlp = model("mnist_mlp.onnx");
    let png = model("digit_7.png");
    let images = data_dir().join("mnist_samples/mnist_test_100_images_u8.npy");
    let text = model("text_cnn.onnx");
    let ids = model("text_samples.npy");
    let out = tmp("bad");
    let missing = tmp("missing.png");
    let cases: Vec<(Vec<&std::ffi::OsStr>, &str)> = vec![
        (
            vec![
                "minimal-mask".as_ref(),
                mlp.as_os_str(),
                png.as_os_str(),
                "--label".as_ref(),
                "10".as_ref(),
            ],
            "--label 10",
        ),
        (
            vec![
                "minimal-mask".as_ref(),
                mlp.as_os_str(),
                png.as_os_str(),
                "--backend".as_ref(),
                "bab".as_ref(),
            ],
            "bab",
        ),
        (
            vec!["minimal-mask".as_ref(), mlp.as_os_str(), images.as_os_str()],
            "--index",
        ),
        (
            vec![
                "minimal-mask".as_ref(),
                mlp.as_os_str(),
                png.as_os_str(),
                "--window".as_ref(),
                "0".as_ref(),
            ],
            "window",
        ),
        (
            vec![
                "minimal-mask".as_ref(),
                mlp.as_os_str(),
                missing.as_os_str(),
            ],
            "missing.png",
        ),
        (
            vec![
                "smug".as_ref(),
                mlp.as_os_str(),
                png.as_os_str(),
                "--top-k".as_ref(),
                "0".as_ref(),
                "--out".as_ref(),
                out.as_os_str(),
            ],
            "--top-k",
        ),
        (
            vec![
                "smug".as_ref(),
                mlp.as_os_str(),
                png.as_os_str(),
                "--timeout=0".as_ref(),
                "--out".as_ref(),
                out.as_os_str(),
            ],
            "--timeout",
        ),
        // Black and white baselines are pixel values, not embeddings.
        (
            vec![
                "smug".as_ref(),
                text.as_os_str(),
                ids.as_os_str(),
                "--index".as_ref(),
                "0".as_ref(),
                "--baseline".as_ref(),
                "black-white".as_ref(),
                "--out".as_ref(),
                out.as_os_str(),
            ],
            "black/white",
        ),
    ];
    for (args, needle) in cases {
        let (code, _, err) = run(&args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with("error:") && err.contains(needle),
            "{args:?}: {err}"
        );
    }
}
