//! `nnexplain attribute` and `nnexplain boundary` with `--truth-above`: the
//! four ground-truth scores per sample in the CSV, Energy Game recomputed
//! here from the written map and the image, and an empty ground truth refused.

mod common;

use std::path::PathBuf;

use common::{data_dir, run_cli as run};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nnx-cli-attribute-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The first five shared MNIST test images as their own `.npy`.
fn five_images(dir: &std::path::Path) -> (PathBuf, Vec<Vec<f64>>) {
    let (imgs, _) = common::mnist_images(5);
    let path = dir.join("five.npy");
    let flat: Vec<f32> = imgs.iter().flatten().map(|&v| v as f32).collect();
    nnexplain::input::write_npy_f32(&path, &[5, 784], &flat).unwrap();
    (path, imgs)
}

fn net() -> String {
    data_dir()
        .join("vnncomp2021_mnist_fc/onnx/mnist-net_256x4.onnx")
        .display()
        .to_string()
}

/// Rows of a CSV as maps from column name to cell.
fn csv_rows(path: &std::path::Path) -> Vec<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let head: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    lines
        .map(|l| {
            head.iter()
                .cloned()
                .zip(l.split(',').map(str::to_string))
                .collect()
        })
        .collect()
}

#[test]
fn ig_scores_match_a_recomputation_from_the_map() {
    let dir = scratch("ig");
    let (input, imgs) = five_images(&dir);
    let out = dir.join("out");
    let (code, stdout, stderr) = run(&[
        "attribute",
        &net(),
        input.to_str().unwrap(),
        "--reshape",
        "--method",
        "ig",
        "--steps",
        "50",
        "--truth-above",
        "0.5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("mean ground-truth scores"), "{stdout}");
    let maps = nnexplain::input::read_npy(out.join("ig.npy")).unwrap();
    let maps: Vec<f64> = maps.iter().copied().collect();
    let rows = csv_rows(&out.join("ig.csv"));
    assert_eq!(rows.len(), 5);
    for (i, row) in rows.iter().enumerate() {
        for col in [
            "localization",
            "energy_game",
            "positive_percentage",
            "concentration",
        ] {
            let v: f64 = row[col].parse().unwrap();
            assert!((0.0..=1.0 + 1e-12).contains(&v), "{col} {v}");
        }
        // Def. 9: the positive mass inside the digit's pixels over all positive mass.
        let map = &maps[i * 784..(i + 1) * 784];
        let (mut inside, mut all) = (0.0, 0.0);
        for (z, x) in map.iter().zip(&imgs[i]) {
            let p = z.max(0.0);
            all += p;
            if *x > 0.5 {
                inside += p;
            }
        }
        let eg: f64 = row["energy_game"].parse().unwrap();
        // The map is written in f32.
        assert!(
            (eg - inside / all).abs() < 1e-5,
            "sample {i}: {eg} vs {}",
            inside / all
        );
    }
}

#[test]
fn big_writes_the_scores_and_an_empty_truth_is_refused() {
    let dir = scratch("big");
    let (input, _) = five_images(&dir);
    let out = dir.join("out");
    let (code, stdout, stderr) = run(&[
        "boundary",
        &net(),
        input.to_str().unwrap(),
        "--reshape",
        "--method",
        "big",
        "--truth-above",
        "0.5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let rows = csv_rows(&out.join("big.csv"));
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r["energy_game"].parse::<f64>().is_ok()));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("big.json")).unwrap()).unwrap();
    assert!(
        json["mean_truth_scores"]["localization"].is_number(),
        "{json}"
    );

    // No pixel of a [0, 1] image lies above 2.
    let (code, _, stderr) = run(&[
        "attribute",
        &net(),
        input.to_str().unwrap(),
        "--reshape",
        "--method",
        "grad",
        "--truth-above",
        "2",
        "--out",
        dir.join("empty").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("ground truth is empty"), "{stderr}");
}
