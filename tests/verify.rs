//! Verification end to end: encoder + HiGHS MILP / LP + tract re-check, on the
//! VNN-COMP test networks, on planted-answer networks, against an independent
//! decision procedure (enumeration of activation patterns with one LP each),
//! and the timeout path.
#![cfg(feature = "highs")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use ndarray::{Array1, Array2};
use nnexplain::bounds::crown;
use nnexplain::encode::full_network::{full_network, network};
use nnexplain::encode::{Cmp, LinExpr, Objective, Problem, Sense};
use nnexplain::model::{Dense, Layer, Network, Node, Reference};
use nnexplain::property::{InputBox, Property};
use nnexplain::solve::bab::{input_split, BabOutcome};
use nnexplain::solve::lp::LpRelaxation;
use nnexplain::solve::milp::Milp;
use nnexplain::solve::{Backend, CancelToken, SolveOptions, Status};
use nnexplain::verify::{verify, Method, Verdict, VerifyOptions};

fn run(
    onnx: &std::path::Path,
    vnnlib: &std::path::Path,
    method: Method<'_>,
    limit: f64,
) -> nnexplain::verify::Verification {
    let net = Network::from_onnx(onnx).unwrap();
    let reference = Reference::from_onnx(onnx, 1).unwrap();
    let prop = Property::from_vnnlib(vnnlib).unwrap();
    let opts = VerifyOptions {
        time_limit: Some(Duration::from_secs_f64(limit)),
        seed: 0,
        threads: 1,
    };
    verify(&net, &reference, &prop, method, &opts, &CancelToken::new()).unwrap()
}

#[test]
fn vnncomp_test_networks() {
    let d = data_dir().join("vnncomp_test_nets");
    let cases = [
        ("test_nano.onnx", "test_nano.vnnlib", Verdict::Unsat),
        ("test_sat.onnx", "test_prop.vnnlib", Verdict::Sat),
        ("test_unsat.onnx", "test_prop.vnnlib", Verdict::Unsat),
    ];
    for (onnx, vnnlib, want) in cases {
        let members = [Method::InputSplit, Method::Backend(&Milp)];
        for method in [
            Method::Backend(&Milp),
            Method::InputSplit,
            Method::Portfolio(&members),
        ] {
            let v = run(
                &d.join("onnx").join(onnx),
                &d.join("vnnlib").join(vnnlib),
                method,
                60.0,
            );
            assert_eq!(v.verdict, want, "{onnx} + {vnnlib} with {}", method.name());
            if want == Verdict::Sat {
                assert!(v.counterexample.as_ref().unwrap().held);
            }
            if let Method::Portfolio(_) = method {
                // Every member's record is kept: the winner and the one it cancelled.
                for c in v.cases.iter().filter(|c| c.record.is_some()) {
                    assert_eq!(c.others.len(), 1, "{onnx}");
                }
            }
        }
    }
}

/// A tiny random ReLU network `in → h → h → out` (deterministic per seed).
fn tiny_net(seed: u64, n_in: usize, h: usize, n_out: usize) -> Network {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let mut layers = Vec::new();
    let dims = [n_in, h, h, n_out];
    for w in 0..3 {
        let (i, o) = (dims[w], dims[w + 1]);
        let weight = Array2::from_shape_fn((o, i), |_| rnd());
        let bias = Array1::from_shape_fn(o, |_| 0.5 * rnd());
        layers.push((
            Node {
                name: format!("fc{w}"),
                op_types: vec!["Gemm".into()],
                in_shape: vec![1, i],
                out_shape: vec![1, o],
            },
            Layer::Dense(Dense {
                weight,
                bias,
                rows: 1,
            }),
        ));
        if w < 2 {
            layers.push((
                Node {
                    name: format!("relu{w}"),
                    op_types: vec!["Relu".into()],
                    in_shape: vec![1, o],
                    out_shape: vec![1, o],
                },
                Layer::Relu,
            ));
        }
    }
    Network::from_layers(format!("tiny{seed}"), vec![1, n_in], layers).unwrap()
}

/// max (y_0 − y_1) over the box, decided by enumerating every activation
/// pattern of the unstable ReLUs and solving one LP per pattern (no big-M, no binaries).
fn max_margin_by_enumeration(net: &Network, bx: &InputBox) -> f64 {
    let bounds = crown(net, bx).unwrap();
    let base = network(net, &bounds, "enum").unwrap();
    let relus: Vec<_> = base
        .constructs
        .iter()
        .filter_map(|c| match c {
            nnexplain::encode::Construct::Relu { x, y, .. } => Some((*x, *y)),
            _ => None,
        })
        .collect();
    assert!(
        relus.len() <= 12,
        "too many unstable ReLUs to enumerate: {}",
        relus.len()
    );
    let mut best = f64::NEG_INFINITY;
    for pattern in 0u32..(1 << relus.len()) {
        let mut p = Problem::new("pattern");
        p.vars = base.vars.clone();
        p.constraints = base.constraints.clone();
        p.inputs = base.inputs.clone();
        p.outputs = base.outputs.clone();
        for (k, (x, y)) in relus.iter().enumerate() {
            let mut d = LinExpr::var(*y);
            if pattern >> k & 1 == 1 {
                // active: y = x, x ≥ 0
                d.add_scaled(&LinExpr::var(*x), -1.0);
                p.add_constraint("on", d, Cmp::Eq, 0.0);
                p.add_constraint("on_x", LinExpr::var(*x), Cmp::Ge, 0.0);
            } else {
                p.add_constraint("off", d, Cmp::Eq, 0.0);
                p.add_constraint("off_x", LinExpr::var(*x), Cmp::Le, 0.0);
            }
        }
        let mut obj = p.outputs[0].clone();
        obj.add_scaled(&p.outputs[1], -1.0);
        p.objective = Some(Objective {
            sense: Sense::Maximize,
            expr: obj.clone(),
        });
        let r = Milp
            .solve(&p, &SolveOptions::default(), &CancelToken::new())
            .unwrap();
        if r.status == Status::Optimal {
            best = best.max(r.objective.unwrap() + obj.constant);
        } else {
            assert_eq!(r.status, Status::Infeasible, "pattern LP: {:?}", r.reason);
        }
    }
    best
}

fn margin_problem(net: &Network, bx: &InputBox) -> (Problem, f64) {
    let bounds = crown(net, bx).unwrap();
    let mut p = network(net, &bounds, "margin").unwrap();
    let mut obj = p.outputs[0].clone();
    obj.add_scaled(&p.outputs[1], -1.0);
    let c = obj.constant;
    p.objective = Some(Objective {
        sense: Sense::Maximize,
        expr: obj,
    });
    (p, c)
}

#[test]
fn milp_matches_pattern_enumeration_and_lp_never_tighter() {
    let mut checked = 0;
    for seed in 0..120u64 {
        let net = tiny_net(seed, 2, 5, 2);
        let c = [
            ((seed % 7) as f64 - 3.0) * 0.3,
            ((seed % 5) as f64 - 2.0) * 0.3,
        ];
        let bx = InputBox {
            lower: c.iter().map(|v| v - 0.5).collect(),
            upper: c.iter().map(|v| v + 0.5).collect(),
        };
        let exact = max_margin_by_enumeration(&net, &bx);
        let (p, k) = margin_problem(&net, &bx);
        let milp = Milp
            .solve(&p, &SolveOptions::default(), &CancelToken::new())
            .unwrap();
        assert_eq!(
            milp.status,
            Status::Optimal,
            "seed {seed}: {:?}",
            milp.reason
        );
        let m = milp.objective.unwrap() + k;
        assert!(
            (m - exact).abs() <= 1e-6 * (1.0 + exact.abs()),
            "seed {seed}: MILP {m} vs enumeration {exact}"
        );
        // The MILP's optimal point is a real input: its margin under the network is the optimum.
        let a = milp.assignment.unwrap();
        let x: Vec<f64> = p.inputs.iter().map(|v| a[v.0]).collect();
        let y = net
            .forward::<f64>(Array2::from_shape_vec((1, 2), x).unwrap().view())
            .unwrap();
        assert!(
            (y[[0, 0]] - y[[0, 1]] - m).abs() <= 1e-5 * (1.0 + m.abs()),
            "seed {seed}"
        );
        let lp = LpRelaxation
            .solve(&p, &SolveOptions::default(), &CancelToken::new())
            .unwrap();
        let lb = lp.bound.unwrap() + k;
        assert!(
            lb >= m - 1e-7 * (1.0 + m.abs()),
            "seed {seed}: LP bound {lb} tighter than MILP optimum {m}"
        );
        checked += 1;
    }
    assert_eq!(checked, 120);
}

#[test]
fn planted_counterexamples_are_found_and_recheck() {
    for seed in 0..40u64 {
        let net = tiny_net(1000 + seed, 3, 6, 3);
        // The point x0 has margin m0 = y_0 − y_1; the property "y_0 − y_1 ≥ m0 − 0.01"
        // over a box around x0 is violated at x0 itself: sat by construction.
        let x0 = [0.1 * seed as f64 % 1.0, -0.3, 0.2];
        let y0 = net
            .forward::<f64>(Array2::from_shape_vec((1, 3), x0.to_vec()).unwrap().view())
            .unwrap();
        let m0 = y0[[0, 0]] - y0[[0, 1]];
        let text = format!(
            "(declare-const X_0 Real)(declare-const X_1 Real)(declare-const X_2 Real)\n\
             (declare-const Y_0 Real)(declare-const Y_1 Real)(declare-const Y_2 Real)\n\
             (assert (>= X_0 {})) (assert (<= X_0 {}))\n(assert (>= X_1 -0.5)) (assert (<= X_1 -0.1))\n\
             (assert (>= X_2 0.0)) (assert (<= X_2 0.4))\n(assert (>= (- Y_0 Y_1) {}))\n",
            x0[0] - 0.2,
            x0[0] + 0.2,
            m0 - 0.01
        );
        let prop = Property::parse_vnnlib(&text, None).unwrap();
        // The network exists only in memory, so the counterexample is re-checked
        // with the IR's own forward pass (independent of the encoding and the solver).
        let bounds = crown(&net, &prop.regions[0].input).unwrap();
        let p = full_network(&net, &bounds, &prop.regions[0], &prop.regions[0].output[0]).unwrap();
        let r = Milp
            .solve(&p, &SolveOptions::default(), &CancelToken::new())
            .unwrap();
        assert_eq!(r.status, Status::Optimal, "seed {seed}");
        let a = r.assignment.unwrap();
        let x: Vec<f64> = p.inputs.iter().map(|v| a[v.0]).collect();
        let y = net
            .forward::<f64>(Array2::from_shape_vec((1, 3), x.clone()).unwrap().view())
            .unwrap();
        assert!(
            prop.is_counterexample(&x, y.as_slice().unwrap(), 1e-6),
            "seed {seed}: {x:?}"
        );
        // Raising the threshold above the true maximum makes it unsat.
        let (mp, k) = margin_problem(&net, &prop.regions[0].input);
        let best = Milp
            .solve(&mp, &SolveOptions::default(), &CancelToken::new())
            .unwrap()
            .objective
            .unwrap()
            + k;
        let text_unsat = text.replace(&format!("{}))", m0 - 0.01), &format!("{}))", best + 0.01));
        let prop_unsat = Property::parse_vnnlib(&text_unsat, None).unwrap();
        let q = full_network(
            &net,
            &bounds,
            &prop_unsat.regions[0],
            &prop_unsat.regions[0].output[0],
        )
        .unwrap();
        let r = Milp
            .solve(&q, &SolveOptions::default(), &CancelToken::new())
            .unwrap();
        assert_eq!(r.status, Status::Infeasible, "seed {seed}");
        // Branch and bound by input splitting agrees on both.
        let never = nnexplain::solve::Deadline::never();
        let region = &prop.regions[0];
        let (sat, _) =
            input_split(&net, region, &region.output[0], &never, &CancelToken::new()).unwrap();
        match sat {
            BabOutcome::Counterexample(x) => {
                let y = net
                    .forward::<f64>(Array2::from_shape_vec((1, 3), x.clone()).unwrap().view())
                    .unwrap();
                assert!(
                    prop.is_counterexample(&x, y.as_slice().unwrap(), 1e-9),
                    "seed {seed}"
                );
            }
            other => panic!("seed {seed}: BaB said {other:?} on a planted counterexample"),
        }
        let ru = &prop_unsat.regions[0];
        let (unsat, _) = input_split(&net, ru, &ru.output[0], &never, &CancelToken::new()).unwrap();
        assert_eq!(unsat, BabOutcome::Proven, "seed {seed}");
        // Branch and bound by input splitting agrees on both.
        let never = nnexplain::solve::Deadline::never();
        let (sat, _) = input_split(
            &net,
            &prop.regions[0],
            &prop.regions[0].output[0],
            &never,
            &CancelToken::new(),
        )
        .unwrap();
        match sat {
            BabOutcome::Counterexample(x) => {
                let y = net
                    .forward::<f64>(Array2::from_shape_vec((1, 3), x.clone()).unwrap().view())
                    .unwrap();
                assert!(
                    prop.is_counterexample(&x, y.as_slice().unwrap(), 1e-9),
                    "seed {seed}"
                );
            }
            other => panic!("seed {seed}: BaB said {other:?} on a planted counterexample"),
        }
        let (unsat, _) = input_split(
            &net,
            &prop_unsat.regions[0],
            &prop_unsat.regions[0].output[0],
            &never,
            &CancelToken::new(),
        )
        .unwrap();
        assert_eq!(unsat, BabOutcome::Proven, "seed {seed}");
    }
}

/// mnist-net_256x6 on a wide 2022 box: far beyond one second for the MILP
/// (HiGHS's presolve alone takes several seconds and does not poll its limit).
fn hard_problem() -> Problem {
    let d = data_dir().join("vnncomp_mnist_fc_extra");
    let net = Network::from_onnx(d.join("onnx/mnist-net_256x6.onnx")).unwrap();
    let prop = Property::from_vnnlib(d.join("vnnlib_2022/prop_0_0.05.vnnlib")).unwrap();
    let region = &prop.regions[0];
    let bounds = crown(&net, &region.input).unwrap();
    full_network(&net, &bounds, region, &region.output[0]).unwrap()
}

#[test]
fn milp_honours_a_one_second_limit() {
    let p = hard_problem();
    let t = Instant::now();
    let opts = SolveOptions {
        time_limit: Some(Duration::from_secs(1)),
        ..SolveOptions::default()
    };
    let r = Milp.solve(&p, &opts, &CancelToken::new()).unwrap();
    let wall = t.elapsed();
    assert_eq!(r.status, Status::Timeout, "{:?}", r.reason);
    assert!(wall < Duration::from_millis(1500), "took {wall:?}");
    assert!(r.stats.contains_key("overshoot_s"));
}

#[test]
fn cancel_from_another_thread_stops_the_milp() {
    let p = hard_problem();
    let cancel = CancelToken::new();
    let c2 = cancel.clone();
    let t = Instant::now();
    let h = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        c2.cancel();
    });
    let r = Milp.solve(&p, &SolveOptions::default(), &cancel).unwrap();
    h.join().unwrap();
    assert_eq!(r.status, Status::Cancelled, "{:?}", r.reason);
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[test]
fn sigmoid_network_is_refused_by_the_milp_with_a_clear_error() {
    let d = data_dir().join("vnncomp2021_eran_mnist");
    let net = Network::from_onnx(d.join("onnx/ffnnSIGMOID__Point_6x200.onnx")).unwrap();
    let prop =
        Property::from_vnnlib(d.join("vnnlib/mnist_spec_idx_8098_eps_0.01500.vnnlib")).unwrap();
    let bounds = crown(&net, &prop.regions[0].input).unwrap();
    let p = network(&net, &bounds, "sig").unwrap();
    let e = Milp.supports(&p).unwrap_err().to_string();
    assert!(e.contains("Sigmoid"), "{e}");
}

#[test]
fn lp_returns_within_its_one_second_limit() {
    let p = hard_problem();
    let t = Instant::now();
    let opts = SolveOptions {
        time_limit: Some(Duration::from_secs(1)),
        ..SolveOptions::default()
    };
    let r = LpRelaxation.solve(&p, &opts, &CancelToken::new()).unwrap();
    let wall = t.elapsed();
    assert!(wall < Duration::from_millis(1500), "took {wall:?}");
    // Whatever it reached, the relaxation never claims a counterexample.
    assert!(
        matches!(
            r.status,
            Status::Timeout | Status::Unknown | Status::Infeasible
        ),
        "{:?}",
        r.status
    );
}

#[test]
fn input_splitting_and_portfolio_honour_a_one_second_limit() {
    // ACAS Xu 2_2 φ1 needs far more than a second of input splitting.
    let d = data_dir().join("vnncomp_acasxu");
    let onnx = d.join("onnx/ACASXU_run2a_2_2_batch_2000.onnx");
    let vnnlib = d.join("vnnlib/prop_1.vnnlib");
    let members = [Method::InputSplit, Method::Backend(&Milp)];
    for method in [Method::InputSplit, Method::Portfolio(&members)] {
        let t = Instant::now();
        let v = run(&onnx, &vnnlib, method, 1.0);
        let wall = t.elapsed();
        assert_eq!(v.verdict, Verdict::Timeout, "{}", method.name());
        assert!(
            wall < Duration::from_millis(1500),
            "{}: took {wall:?}",
            method.name()
        );
    }
}

#[test]
fn attack_finds_rechecked_counterexamples_and_never_claims_unsat() {
    // mnist-net_256x2, ε = 0.05 around test image 1: the attack finds a counterexample.
    let d = data_dir().join("vnncomp2021_mnist_fc");
    let v = run(
        &d.join("onnx/mnist-net_256x2.onnx"),
        &d.join("vnnlib/prop_1_0.05.vnnlib"),
        Method::Attack,
        30.0,
    );
    assert_eq!(v.verdict, Verdict::Sat);
    let ce = v.counterexample.unwrap();
    assert!(ce.held);
    let prop = Property::from_vnnlib(d.join("vnnlib/prop_1_0.05.vnnlib")).unwrap();
    assert!(
        prop.regions[0].input.contains(&ce.x, 0.0),
        "the attack left the box"
    );
    // On an unsat property that bounds alone do not prove (ACAS Xu 1_1 φ1, proven
    // by input splitting above), the attack answers unknown, never unsat.
    let a = data_dir().join("vnncomp_acasxu");
    let v = run(
        &a.join("onnx/ACASXU_run2a_1_1_batch_2000.onnx"),
        &a.join("vnnlib/prop_1.vnnlib"),
        Method::Attack,
        30.0,
    );
    assert_eq!(v.verdict, Verdict::Unknown);
    assert!(v.cases.iter().any(|c| !c.discharged_by_bounds));
}
