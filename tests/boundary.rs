//! Boundary attributions where the boundary is known analytically, and the
//! attribution metrics on toy maps with known values.

mod common;

use common::*;
use ndarray::{array, Array1, Array2};
use nnexplain::attack::{
    big, boundary_search, bsm, BigBaselines, BoundaryObjective, BoundaryOptions, Clip, Method, Norm,
};
use nnexplain::metrics::attribution::{
    box_mask, box_scores, concentration, energy_game, localization, perturbation_curve,
    positive_percentage, CurveKind,
};
use nnexplain::metrics::PixelBox;
use nnexplain::model::{Dense, Layer, Node};
use nnexplain::{Network, Objective};

fn node(name: &str, op: &str, i: usize, o: usize) -> Node {
    Node {
        name: name.into(),
        op_types: vec![op.into()],
        in_shape: vec![1, i],
        out_shape: vec![1, o],
    }
}

fn dense(name: &str, w: Array2<f64>, b: Array1<f64>) -> (Node, Layer<f64>) {
    let (o, i) = w.dim();
    (
        node(name, "Gemm", i, o),
        Layer::Dense(Dense {
            weight: w,
            bias: b,
            rows: 1,
        }),
    )
}

fn cos(a: &[f64], b: &[f64]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    d / (na * nb)
}

/// A 5-input linear classifier with 3 classes: from `x₀` the closest boundary
/// is the one to class 1, with normal `w₀ − w₁`.
#[test]
fn linear_boundary_point_and_bsm_normal() {
    let w = array![
        [1.0, -0.5, 0.3, 0.0, 0.2],
        [-0.2, 0.4, 0.1, 0.6, -0.3],
        [0.0, 0.0, -1.0, 0.0, 0.0]
    ];
    let b = array![0.0, 0.0, -0.5];
    let net = Network::from_layers("lin3", vec![1, 5], vec![dense("fc", w.clone(), b)]).unwrap();
    let x0 = array![[0.7, 0.3, 0.5, 0.4, 0.5]];
    let y = net.forward::<f64>(x0.view()).unwrap();
    assert!(y[[0, 0]] > y[[0, 1]] && y[[0, 0]] > y[[0, 2]]);
    // Closest ℓ2 point of each pairwise boundary: margin / ‖w₀ − w_c‖.
    let dist = |c: usize| {
        let n: Vec<f64> = (0..5).map(|i| w[[0, i]] - w[[c, i]]).collect();
        (y[[0, 0]] - y[[0, c]]) / n.iter().map(|v| v * v).sum::<f64>().sqrt()
    };
    let (d1, d2) = (dist(1), dist(2));
    assert!(d1 < d2);
    let s = boundary_search(
        &net,
        x0.view(),
        &[0],
        &BoundaryOptions {
            radii: vec![0.25, 0.5, 1.0],
            steps: 60,
            restarts: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let p = &s[0].closest;
    println!(
        "linear: closest {:.5} (analytic {d1:.5}) by {:?}, {} points found",
        p.distance,
        p.method,
        s[0].found.len()
    );
    assert!(p.success && p.class == 1);
    assert!(
        p.distance >= d1 - 1e-9 && p.distance < d1 * 1.01,
        "{}",
        p.distance
    );
    assert!(p.margin.abs() < 1e-3);
    let g = bsm(&net, &[0], &s, BoundaryObjective::Normal).unwrap();
    let normal: Vec<f64> = (0..5).map(|i| w[[0, i]] - w[[1, i]]).collect();
    assert!(cos(&g.row(0).to_vec(), &normal) > 1.0 - 1e-12);
    // The literal Definition 5 (the label's logit) gives w₀ on a linear net.
    let g0 = bsm(&net, &[0], &s, BoundaryObjective::Logit).unwrap();
    assert!(cos(&g0.row(0).to_vec(), &w.row(0).to_vec()) > 1.0 - 1e-12);
    for baselines in [BigBaselines::Closest, BigBaselines::Average] {
        let m = big(
            &net,
            x0.view(),
            &[0],
            &s,
            BoundaryObjective::Normal,
            baselines,
            20,
        )
        .unwrap();
        // On a linear net BIG from x' is (x − x') ⊙ (w₀ − w_c), summing to the margin gap.
        let total: f64 = m[0].attributions.iter().sum();
        assert!(m[0].completeness_residual < 1e-9);
        if baselines == BigBaselines::Closest {
            assert!((total - (y[[0, 0]] - y[[0, 1]])).abs() < 1e-3, "{total}");
        }
    }
}

/// A 2-input ReLU net: `y₀ = 1`, `y₁ = 2 relu(x₀ − 1) + 0.5 relu(x₁)`. At
/// `x = (0, 0.1)` the gradient is `(0, 0.5)` (only the second unit is on),
/// but the closest boundary point lies where both units are on: on the line
/// `2 x₀ + 0.5 x₁ = 3`, at distance `2.95 / √4.25`, with normal `(2, 0.5)`.
/// BSM recovers that normal where the saliency map does not.
#[test]
fn relu_boundary_point_and_bsm_differs_from_the_gradient() {
    let net = Network::from_layers(
        "tiny",
        vec![1, 2],
        vec![
            dense("h", array![[1.0, 0.0], [0.0, 1.0]], array![-1.0, 0.0]),
            (node("relu", "Relu", 2, 2), Layer::Relu),
            dense("out", array![[0.0, 0.0], [2.0, 0.5]], array![1.0, 0.0]),
        ],
    )
    .unwrap();
    let x0 = array![[0.0, 0.1]];
    let d_star = 2.95 / 4.25f64.sqrt();
    let x_star = [2.95 / 4.25 * 2.0, 0.1 + 2.95 / 4.25 * 0.5];
    let s = boundary_search(
        &net,
        x0.view(),
        &[0],
        &BoundaryOptions {
            radii: vec![1.0, 1.5, 2.0],
            steps: 100,
            restarts: 4,
            cw: nnexplain::attack::CwOptions {
                lr: 0.05,
                steps: 300,
                initial_const: 1.0,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    let p = &s[0].closest;
    println!(
        "relu: closest {:.5} at {:?} (analytic {d_star:.5} at {x_star:?}) by {:?}",
        p.distance, p.x, p.method
    );
    assert!(p.success);
    assert!(p.distance < d_star * 1.02, "{}", p.distance);
    assert!(nnexplain::attack::l2(&p.x, &x_star) < 0.1);
    let g = bsm(&net, &[0], &s, BoundaryObjective::Normal).unwrap();
    // ∇(y₀ − y₁) = −(2, 0.5) where both units are on.
    assert!((g[[0, 0]] + 2.0).abs() < 1e-12 && (g[[0, 1]] + 0.5).abs() < 1e-12);
    let sm = net
        .gradient::<f64>(
            x0.view(),
            &Objective::Margin {
                class: 0,
                other: Some(1),
            },
            0,
        )
        .unwrap();
    assert!(cos(&sm.grad.row(0).to_vec(), &[-2.0, -0.5]) < 0.3);
}

/// The ensemble on a shared MNIST network: every method contributes points,
/// the closest is a real class change, and BIG's completeness holds.
#[test]
fn mnist_boundary_search_and_big() {
    let (imgs, labels) = mnist_images(3);
    let x0 = Array2::from_shape_vec((imgs.len(), 784), imgs.concat()).unwrap();
    let net = Network::from_onnx(data_dir().join("vnncomp2021_mnist_fc/onnx/mnist-net_256x2.onnx"))
        .unwrap();
    let s = boundary_search(
        &net,
        x0.view(),
        &labels,
        &BoundaryOptions {
            norm: Norm::L2,
            radii: vec![1.0, 2.0, 4.0],
            methods: vec![Method::Pgd, Method::Cw, Method::ApgdCe, Method::ApgdDlr],
            clip: Clip::Range { min: 0.0, max: 1.0 },
            steps: 40,
            ..Default::default()
        },
    )
    .unwrap();
    for (i, r) in s.iter().enumerate() {
        println!(
            "sample {i}: closest {:.3} by {:?} ({} points)",
            r.closest.distance,
            r.closest.method,
            r.found.len()
        );
        assert!(r.closest.success && r.closest.class != labels[i]);
        assert!(r.found.iter().all(|p| p.distance >= r.closest.distance));
    }
    let maps = big(
        &net,
        x0.view(),
        &labels,
        &s,
        BoundaryObjective::Normal,
        BigBaselines::Average,
        20,
    )
    .unwrap();
    for m in &maps {
        assert!(m.baselines >= 1 && m.completeness_residual < 0.2);
    }
}

#[test]
fn metrics_on_toy_maps() {
    // 4×4 map; the box is the top-left 2×2.
    let b = PixelBox {
        top: 0,
        bottom: 2,
        left: 0,
        right: 2,
    };
    let truth = box_mask(b, 4, 4);
    // All positive mass in the box.
    let mut inside = vec![0.0; 16];
    inside[0] = 1.0;
    inside[5] = 3.0;
    let s = box_scores(&inside, &truth, 4, 4).unwrap();
    assert!((s.localization - 0.5).abs() < 1e-12); // |B ∩ P| = 2, |B| = 4
    assert_eq!(s.energy_game, 1.0);
    assert_eq!(s.positive_percentage, 1.0);
    // Centre of mass (0.75, 0.75): d₀ = √1.125 ≈ 1.06, d₅ = √0.125 → floored at 1.
    let expect = 0.25 / 1.125f64.sqrt() + 0.75;
    assert!((s.concentration - expect).abs() < 1e-12);
    // A map that is positive everywhere: Loc = 4 / (4 + 12).
    let flat = vec![1.0; 16];
    assert!((localization(&flat, &truth).unwrap() - 0.25).abs() < 1e-12);
    assert!((energy_game(&flat, &truth).unwrap() - 0.25).abs() < 1e-12);
    // Mixed signs inside the box.
    let mut mixed = vec![0.0; 16];
    mixed[0] = 2.0;
    mixed[1] = -2.0;
    mixed[15] = 4.0;
    assert!((positive_percentage(&mixed, &truth).unwrap() - 0.5).abs() < 1e-12);
    assert!((energy_game(&mixed, &truth).unwrap() - 2.0 / 6.0).abs() < 1e-12);
    assert!(concentration(&mixed, &truth, 4, 4).unwrap() > 0.0);
}

#[test]
fn insertion_and_deletion_on_mnist() {
    let (imgs, labels) = mnist_images(1);
    let net = Network::from_onnx(data_dir().join("vnncomp2021_mnist_fc/onnx/mnist-net_256x2.onnx"))
        .unwrap();
    let x = &imgs[0];
    let obj = Objective::Softmax(labels[0]);
    // Gradient ⊙ input as the map: deleting by it should hurt faster than at random.
    let a = Array2::from_shape_vec((1, 784), x.clone()).unwrap();
    let g = net.gradient::<f64>(a.view(), &obj, 0).unwrap();
    let map: Vec<f64> = g.grad.row(0).iter().zip(x).map(|(g, v)| g * v).collect();
    let anti: Vec<f64> = map.iter().map(|v| -v).collect();
    let del = perturbation_curve(&net, x, &map, &obj, 0.0, 28, CurveKind::Deletion).unwrap();
    let del_anti = perturbation_curve(&net, x, &anti, &obj, 0.0, 28, CurveKind::Deletion).unwrap();
    let ins = perturbation_curve(&net, x, &map, &obj, 0.0, 28, CurveKind::Insertion).unwrap();
    println!(
        "deletion AUC {:.3} (reversed order {:.3}), insertion AUC {:.3}",
        del.auc, del_anti.auc, ins.auc
    );
    assert_eq!(del.scores.len(), 29);
    assert!((del.scores[28] - ins.scores[0]).abs() < 1e-12);
    assert!((del.scores[0] - ins.scores[28]).abs() < 1e-12);
    assert!(del.auc < del_anti.auc);
}
