//! The minimal adversarial perturbation restricted to a feature set: PGD's
//! value (bisection on ε) is never below the exact MILP value, on the
//! project's MNIST model and the shared test images.
#![cfg(feature = "highs")]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use ndarray::Array2;
use nnexplain::explain::robustness::{
    exact_min_perturbation, pgd_min_perturbation, ExactNorm, PgdSearch,
};
use nnexplain::solve::milp::Milp;
use nnexplain::solve::{CancelToken, SolveOptions, Status};
use nnexplain::{Network, Objective};

#[test]
fn pgd_is_an_upper_bound_on_the_exact_restricted_minimum() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/mnist_mlp.onnx");
    let net = Network::from_onnx(path).unwrap();
    let (images, _) = common::mnist_images(20);
    let mut ratios = Vec::new();
    for (i, x) in images.iter().enumerate() {
        let row = Array2::from_shape_vec((1, 784), x.clone()).unwrap();
        let y = net.forward::<f64>(row.view()).unwrap();
        let label = (0..10).fold(0, |b, j| if y[[0, j]] > y[[0, b]] { j } else { b });
        // S: the 20 % of pixels with the largest |gradient × (x − 0.5)| (a
        // saliency-style explanation), the rest fixed.
        let g = net
            .gradient(
                row.view(),
                &Objective::Margin {
                    class: label,
                    other: None,
                },
                0,
            )
            .unwrap();
        let mut order: Vec<usize> = (0..784).collect();
        let score = |e: usize| (g.grad[[0, e]] * (x[e] - 0.5)).abs();
        order.sort_by(|&a, &b| score(b).total_cmp(&score(a)));
        let mut free = vec![false; 784];
        for &e in &order[..157] {
            free[e] = true;
        }
        let Some((ub, point)) =
            pgd_min_perturbation(&net, x, label, &free, (0.0, 1.0), &PgdSearch::default()).unwrap()
        else {
            continue;
        };
        // PGD's point changes the class and only moves free pixels.
        let yp = net
            .forward::<f64>(
                Array2::from_shape_vec((1, 784), point.clone())
                    .unwrap()
                    .view(),
            )
            .unwrap();
        assert_ne!(
            (0..10).fold(0, |b, j| if yp[[0, j]] > yp[[0, b]] { j } else { b }),
            label
        );
        assert!((0..784).all(|e| free[e] || point[e] == x[e]));
        // The exact minimum lies within PGD's radius, so that radius caps the encoding.
        let exact = exact_min_perturbation(
            &net,
            x,
            label,
            &free,
            (0.0, 1.0),
            ub * (1.0 + 1e-6) + 1e-9,
            ExactNorm::Linf,
            &Milp,
            &SolveOptions {
                time_limit: Some(Duration::from_secs(60)),
                ..SolveOptions::default()
            },
            &CancelToken::new(),
        )
        .unwrap();
        assert_eq!(
            exact.status,
            Status::Optimal,
            "image {i}: {:?}",
            exact.record.reason
        );
        let e = exact.value.unwrap();
        assert!(ub >= e - 1e-9, "image {i}: PGD {ub} below the exact {e}");
        ratios.push(ub / e.max(1e-12));
        println!(
            "image {i}: exact {e:.5}  PGD {ub:.5}  ratio {:.3}",
            ub / e.max(1e-12)
        );
    }
    assert!(
        ratios.len() >= 15,
        "PGD found perturbations on only {} images",
        ratios.len()
    );
    ratios.sort_by(f64::total_cmp);
    println!(
        "{} images: median PGD / exact = {:.3}, max {:.3}",
        ratios.len(),
        ratios[ratios.len() / 2],
        ratios[ratios.len() - 1]
    );
}
