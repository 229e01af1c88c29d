//! Helpers shared by the integration tests: where the shared data lives and a
//! real input for every shared network.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nnexplain::property::read_instances;
use nnexplain::Property;

/// `../shared/data`, next to the crate.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

/// Every file under `dir` whose name ends with `suffix`, sorted.
pub fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every VNN-COMP instance under the shared data: (onnx, vnnlib) pairs.
pub fn all_instances() -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for csv in files_with_suffix(&data_dir(), ".csv") {
        let name = csv.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("instances") {
            continue;
        }
        for inst in read_instances(&csv).unwrap() {
            out.push((inst.onnx, inst.vnnlib));
        }
    }
    out
}

/// For every shared network, the first property that names it.
pub fn first_property_per_network() -> BTreeMap<PathBuf, PathBuf> {
    let mut m = BTreeMap::new();
    for (onnx, vnnlib) in all_instances() {
        m.entry(onnx.canonicalize().unwrap()).or_insert(vnnlib);
    }
    m
}

/// The centre of the first input region of a property.
pub fn box_centre(vnnlib: &Path) -> Vec<f64> {
    let p = Property::from_vnnlib(vnnlib).unwrap();
    p.regions[0]
        .input
        .centre()
        .unwrap_or_else(|| panic!("{}: unbounded input box", vnnlib.display()))
}

/// The first `n` MNIST test images as pixel/255, flattened.
pub fn mnist_images(n: usize) -> (Vec<Vec<f64>>, Vec<usize>) {
    let d = data_dir().join("mnist_samples");
    let x = nnexplain::input::read_npy(d.join("mnist_test_100_images_u8.npy")).unwrap();
    let y = nnexplain::input::read_npy(d.join("mnist_test_100_labels.npy")).unwrap();
    let flat: Vec<f64> = x.iter().map(|v| v / 255.0).collect();
    let imgs = flat.chunks(784).take(n).map(|c| c.to_vec()).collect();
    (imgs, y.iter().take(n).map(|&v| v as usize).collect())
}

/// Runs the `nnexplain` binary with `args`: exit code, stdout, stderr.
pub fn run_cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nnexplain"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
