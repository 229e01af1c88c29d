//! The IR's forward pass agrees with tract's inference on every shared network,
//! in f32 and f64, on a real input (the box centre of the network's first
//! VNN-COMP property, and MNIST test images for the MNIST networks).

mod common;

use common::*;
use ndarray::Array2;
use nnexplain::model::Reference;
use nnexplain::Network;

/// Largest accepted |ours − tract| relative to the output scale max(1, max|y|):
/// both compute in f32 with different summation orders.
const REL_TOL: f64 = 1e-5;

fn argmax(v: &[f64]) -> usize {
    let mut b = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[b] {
            b = i;
        }
    }
    b
}

fn check(net: &Network, reference: &Reference, x: &[f64], what: &str) -> f64 {
    let xs = Array2::from_shape_vec((1, x.len()), x.to_vec()).unwrap();
    let theirs: Vec<f64> = reference
        .run(xs.mapv(|v| v as f32).view())
        .unwrap()
        .iter()
        .map(|&v| v as f64)
        .collect();
    let ours64: Vec<f64> = net
        .forward::<f64>(xs.view())
        .unwrap()
        .iter()
        .copied()
        .collect();
    let ours32: Vec<f64> = net
        .forward::<f32>(xs.mapv(|v| v as f32).view())
        .unwrap()
        .iter()
        .map(|&v| v as f64)
        .collect();
    assert_eq!(ours64.len(), theirs.len(), "{what}: output length");
    let scale = theirs.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let mut worst = 0.0f64;
    for ours in [&ours64, &ours32] {
        let d = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        worst = worst.max(d / scale);
        assert!(
            d <= REL_TOL * scale,
            "{what}: max |Δ| = {d:e} at scale {scale}"
        );
    }
    // The argmax must agree unless the two best outputs are within the tolerance.
    let mut sorted = theirs.clone();
    sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
    if sorted.len() > 1 && sorted[0] - sorted[1] > 2.0 * REL_TOL * scale {
        assert_eq!(argmax(&ours64), argmax(&theirs), "{what}: argmax");
        assert_eq!(argmax(&ours32), argmax(&theirs), "{what}: argmax (f32)");
    }
    worst
}

#[test]
fn every_shared_network_agrees_with_tract() {
    let nets = files_with_suffix(&data_dir(), ".onnx");
    assert_eq!(nets.len(), 69, "the shared data holds 69 networks");
    let props = first_property_per_network();
    let (images, _) = mnist_images(5);
    let mut worst = 0.0f64;
    for path in &nets {
        let net = Network::from_onnx(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let reference = Reference::from_onnx(path, 1).unwrap();
        let key = path.canonicalize().unwrap();
        let prop = props
            .get(&key)
            .unwrap_or_else(|| panic!("{}: no instance names this network", path.display()));
        let x = box_centre(prop);
        worst = worst.max(check(&net, &reference, &x, &path.display().to_string()));
        if net.input_len() == 784 {
            for (i, img) in images.iter().enumerate() {
                let w = check(
                    &net,
                    &reference,
                    img,
                    &format!("{} image {i}", path.display()),
                );
                worst = worst.max(w);
            }
        }
    }
    eprintln!("69 networks agree with tract; worst relative difference {worst:.2e}");
}
