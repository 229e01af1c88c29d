//! SMUG on the project's own models: first-layer masks agree between z3 and
//! the MILP and pass the forward-pass re-check; the LP rounding is feasible
//! and never below the MILP optimum; full-network minimal masks match an
//! exhaustive search on a coarse grid and pass tract's re-check.
#![cfg(all(feature = "highs", feature = "z3"))]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use ndarray::Array2;
use nnexplain::explain::minimal_mask::{minimal_mask, tail, MaskOptions, Masked};
use nnexplain::explain::smug::{self, Baseline, Ranking};
use nnexplain::explain::MaskGrid;
use nnexplain::model::Reference;
use nnexplain::solve::lp::LpRelaxation;
use nnexplain::solve::milp::Milp;
use nnexplain::solve::z3::Z3;
use nnexplain::solve::{Backend, CancelToken, SolveOptions, Status};
use nnexplain::Network;

fn model(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name)
}

fn predicted(net: &Network, x: &[f64]) -> usize {
    let y = net
        .forward::<f64>(
            Array2::from_shape_vec((1, x.len()), x.to_vec())
                .unwrap()
                .view(),
        )
        .unwrap();
    let mut best = 0;
    for (j, v) in y.iter().enumerate() {
        if *v > y[[0, best]] {
            best = j;
        }
    }
    best
}

fn opts(limit: f64) -> SolveOptions {
    SolveOptions {
        time_limit: Some(Duration::from_secs_f64(limit)),
        ..SolveOptions::default()
    }
}

#[test]
fn first_layer_masks_agree_between_z3_and_milp_and_recheck() {
    let (images, _) = common::mnist_images(8);
    let mut both = 0;
    for (model_name, window, k) in [("mnist_mlp.onnx", 4, 4), ("mnist_cnn.onnx", 2, 6)] {
        let net = Network::from_onnx(model(model_name)).unwrap();
        let grid = MaskGrid::for_network(&net, window).unwrap();
        for (i, x) in images.iter().enumerate() {
            let label = predicted(&net, x);
            let fl = smug::first_layer(&net, &grid, x, label, Baseline::Zero, 64).unwrap();
            let neurons = smug::top_k(&fl, Ranking::Ig, k);
            assert!(!neurons.is_empty(), "{model_name} image {i}");
            let mp = smug::mask_problem(&net, &grid, &fl, &neurons, 0.5, smug::DEFAULT_DELTA, 0.0)
                .unwrap();
            let milp = smug::solve_mask(
                &mp,
                grid.n_cells,
                &[&Milp],
                &opts(30.0),
                &CancelToken::new(),
            )
            .unwrap();
            assert_eq!(milp.status, Status::Optimal, "{model_name} image {i}");
            let check = smug::recheck_first_layer(&net, &grid, &fl, &mp, &milp.keep, 0.0).unwrap();
            assert!(check.held, "{model_name} image {i}: {check:?}");
            // Every neuron of D^k stays above γ · o_i under the plain forward pass.
            for ((m, t), &n) in check.masked.iter().zip(&check.thresholds).zip(&mp.neurons) {
                assert!(*m >= *t - 1e-6 * (1.0 + t.abs()), "neuron {n}");
            }
            let z = smug::solve_mask(&mp, grid.n_cells, &[&Z3], &opts(20.0), &CancelToken::new())
                .unwrap();
            if z.status == Status::Optimal {
                assert_eq!(
                    z.mask_size, milp.mask_size,
                    "{model_name} image {i}: z3 vs MILP"
                );
                assert!(
                    smug::recheck_first_layer(&net, &grid, &fl, &mp, &z.keep, 0.0)
                        .unwrap()
                        .held
                );
                both += 1;
            } else {
                assert_eq!(z.status, Status::Timeout, "{model_name} image {i}");
            }
            // The LP path: rounding is feasible, never smaller than the optimum,
            // and its bound never above it.
            let lp = smug::solve_mask(
                &mp,
                grid.n_cells,
                &[&LpRelaxation],
                &opts(30.0),
                &CancelToken::new(),
            )
            .unwrap();
            assert!(matches!(lp.status, Status::Optimal | Status::Feasible));
            assert!(lp.mask_size >= milp.mask_size);
            assert!(lp.bound.unwrap() <= milp.mask_size as f64);
            assert!(
                smug::recheck_first_layer(&net, &grid, &fl, &mp, &lp.keep, 0.0)
                    .unwrap()
                    .held
            );
            // SMUG_base keeps every receptive cell; the minimal mask is a subset.
            let base = smug::base_mask(&grid, &mp);
            assert!(milp.keep.iter().zip(&base).all(|(m, b)| !*m || *b));
        }
    }
    assert!(
        both >= 4,
        "z3 finished only {both} of 16 first-layer instances"
    );
}

#[test]
fn a_portfolio_solves_the_first_layer_mask() {
    let (images, _) = common::mnist_images(1);
    let net = Network::from_onnx(model("mnist_mlp.onnx")).unwrap();
    let grid = MaskGrid::for_network(&net, 1).unwrap();
    let x = &images[0];
    let fl = smug::first_layer(&net, &grid, x, 7, Baseline::Zero, 200).unwrap();
    assert!(fl.ig_residual < 0.01, "IG residual {}", fl.ig_residual);
    let neurons = smug::top_k(&fl, Ranking::Ig, 10);
    let mp = smug::mask_problem(&net, &grid, &fl, &neurons, 0.5, smug::DEFAULT_DELTA, 0.0).unwrap();
    let members: [&dyn Backend; 2] = [&Milp, &Z3];
    let r = smug::solve_mask(
        &mp,
        grid.n_cells,
        &members,
        &opts(30.0),
        &CancelToken::new(),
    )
    .unwrap();
    assert_eq!(r.status, Status::Optimal);
    assert_eq!(r.records.len(), 2, "the loser's record is kept");
    let milp = smug::solve_mask(
        &mp,
        grid.n_cells,
        &[&Milp],
        &opts(30.0),
        &CancelToken::new(),
    )
    .unwrap();
    assert_eq!(r.mask_size, milp.mask_size);
    // Saliency (Eq. 4) is non-zero only on kept cells, and sums α(o_p) per pixel.
    let s = smug::saliency(&grid, &mp, &fl, &r.keep);
    for (e, v) in s.iter().enumerate() {
        if !r.keep[grid.cell_of[e]] {
            assert_eq!(*v, 0.0);
        }
    }
}

#[test]
fn text_masks_are_per_word() {
    let net = Network::from_onnx(model("text_cnn.onnx")).unwrap();
    let ids = nnexplain::input::read_npy(model("text_samples.npy")).unwrap();
    let grid = MaskGrid::for_network(&net, 1).unwrap();
    assert_eq!(grid.n_cells, 32);
    for row in 0..5 {
        let x: Vec<f64> = ids.iter().skip(row * 32).take(32).copied().collect();
        let label = predicted(&net, &x);
        let fl = smug::first_layer(&net, &grid, &x, label, Baseline::Zero, 64).unwrap();
        let neurons = smug::top_k(&fl, Ranking::Ig, 8);
        if neurons.is_empty() {
            continue;
        }
        let mp =
            smug::mask_problem(&net, &grid, &fl, &neurons, 0.5, smug::DEFAULT_DELTA, 0.0).unwrap();
        let r = smug::solve_mask(
            &mp,
            grid.n_cells,
            &[&Milp],
            &opts(30.0),
            &CancelToken::new(),
        )
        .unwrap();
        assert_eq!(r.status, Status::Optimal);
        assert!(
            smug::recheck_first_layer(&net, &grid, &fl, &mp, &r.keep, 0.0)
                .unwrap()
                .held
        );
        // Padding words (id 0, a zero embedding row) never need a mask bit.
        for (w, &id) in x.iter().enumerate() {
            if id == 0.0 {
                assert!(
                    !mp.cells.contains(&w),
                    "row {row}: padding word {w} encoded"
                );
            }
        }
        assert_eq!(grid.input_mask(&r.keep).len(), 32);
    }
}

/// The smallest mask over a 4×4 grid of 7×7-pixel cells, by trying all 2^16 subsets.
fn brute_force_min(net: &Network, grid: &MaskGrid, x: &[f64], label: usize, delta: f64) -> usize {
    let n = grid.n_cells;
    let mut best = n;
    let subsets: Vec<u32> = (0u32..(1 << n)).collect();
    for chunk in subsets.chunks(4096) {
        let mut batch = Array2::<f64>::zeros((chunk.len(), x.len()));
        for (mut row, &s) in batch.rows_mut().into_iter().zip(chunk) {
            let keep: Vec<bool> = (0..n).map(|j| s >> j & 1 == 1).collect();
            for (r, v) in row.iter_mut().zip(grid.apply(x, &keep, 0.0)) {
                *r = v;
            }
        }
        let y = net.forward::<f64>(batch.view()).unwrap();
        for (row, &s) in y.rows().into_iter().zip(chunk) {
            let other = (0..row.len())
                .filter(|&j| j != label)
                .map(|j| row[j])
                .fold(f64::NEG_INFINITY, f64::max);
            if row[label] - other >= delta {
                best = best.min(s.count_ones() as usize);
            }
        }
    }
    best
}

#[test]
fn full_network_masks_match_exhaustive_search_and_recheck() {
    let (images, _) = common::mnist_images(12);
    for model_name in ["mnist_mlp.onnx", "mnist_cnn.onnx"] {
        let path = model(model_name);
        let net = Network::from_onnx(&path).unwrap();
        let reference = Reference::from_onnx(&path, 1).unwrap();
        let grid = MaskGrid::for_network(&net, 7).unwrap();
        assert_eq!(grid.n_cells, 16);
        let mo = MaskOptions {
            time_limit: Some(Duration::from_secs(60)),
            ..MaskOptions::default()
        };
        for (i, x) in images.iter().enumerate() {
            let label = predicted(&net, x);
            let m = minimal_mask(
                Masked {
                    net: &net,
                    reference: &reference,
                    grid: &grid,
                },
                x,
                label,
                &[&Milp],
                &mo,
                &CancelToken::new(),
            )
            .unwrap();
            assert_eq!(m.status, Status::Optimal, "{model_name} image {i}");
            assert!(m.recheck.held, "{model_name} image {i}");
            assert!(m.mask_size <= m.greedy_size);
            let truth = brute_force_min(&net, &grid, x, label, mo.delta);
            assert_eq!(
                m.mask_size, truth,
                "{model_name} image {i}: MILP vs exhaustive"
            );
            assert_eq!(m.bound, Some(truth as f64));
            assert_eq!(m.mask.len(), 784);
        }
    }
}

#[test]
fn full_network_mask_is_anytime_at_a_timeout() {
    // With a limit far too short for the proof, the greedy mask and whatever
    // bound exists come back: never an empty answer, never a failed re-check.
    let (images, _) = common::mnist_images(100);
    let path = model("mnist_mlp.onnx");
    let net = Network::from_onnx(&path).unwrap();
    let reference = Reference::from_onnx(&path, 1).unwrap();
    let grid = MaskGrid::for_network(&net, 1).unwrap();
    // Test image 84 needs tens of seconds for the MILP's proof.
    let x = &images[84];
    let label = predicted(&net, x);
    let mo = MaskOptions {
        time_limit: Some(Duration::from_millis(300)),
        ..MaskOptions::default()
    };
    let t = std::time::Instant::now();
    let m = minimal_mask(
        Masked {
            net: &net,
            reference: &reference,
            grid: &grid,
        },
        x,
        label,
        &[&Milp],
        &mo,
        &CancelToken::new(),
    )
    .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert!(m.mask_size >= 1);
    assert!(m.recheck.held);
    if m.status != Status::Optimal {
        assert!(
            matches!(m.status, Status::Timeout | Status::Feasible),
            "{:?}",
            m.status
        );
        assert!(m.bound.is_none_or(|b| b <= m.mask_size as f64));
    }
}

#[test]
fn text_network_full_mask_runs_from_the_embeddings() {
    let path = model("text_cnn.onnx");
    let net = Network::from_onnx(&path).unwrap();
    let reference = Reference::from_onnx(&path, 1).unwrap();
    let ids = nnexplain::input::read_npy(model("text_samples.npy")).unwrap();
    let grid = MaskGrid::for_network(&net, 1).unwrap();
    let x: Vec<f64> = ids.iter().take(32).copied().collect();
    let label = predicted(&net, &x);
    // The mask multiplies embedding rows, so the network is encoded from the
    // embeddings on (the lookup itself is not piecewise linear).
    assert!(net.exact_encoding().is_err());
    assert!(tail(&net, 1).unwrap().exact_encoding().is_ok());
    let mo = MaskOptions {
        time_limit: Some(Duration::from_secs(60)),
        ..MaskOptions::default()
    };
    let m = minimal_mask(
        Masked {
            net: &net,
            reference: &reference,
            grid: &grid,
        },
        &x,
        label,
        &[&Milp],
        &mo,
        &CancelToken::new(),
    )
    .unwrap();
    assert_eq!(m.status, Status::Optimal);
    assert!(m.recheck.held);
    assert_eq!(m.mask.len(), 32);
    // A dropped word is never a padding word that could not matter.
    for (w, &k) in m.keep.iter().enumerate() {
        if k {
            assert_ne!(x[w], 0.0, "kept padding word {w}");
        }
    }
}
