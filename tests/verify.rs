//! Verification end to end: encoder + HiGHS MILP / LP / z3 + tract re-check,
//! on the VNN-COMP test networks, and the timeout and cancel paths. Planted
//! answers on random networks are in `planted.rs`.
#![cfg(feature = "highs")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use nnexplain::bounds::crown;
use nnexplain::encode::full_network::{full_network, network};
use nnexplain::encode::Problem;
use nnexplain::model::{Network, Reference};
use nnexplain::property::Property;
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
        let members = [Method::Bab, Method::Backend(&Milp)];
        for method in [
            Method::Backend(&Milp),
            Method::Bab,
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

#[cfg(feature = "z3")]
#[test]
fn z3_honours_a_one_second_limit_and_a_cancel() {
    use nnexplain::solve::z3::Z3;
    let p = hard_problem();
    let t = Instant::now();
    let opts = SolveOptions {
        time_limit: Some(Duration::from_secs(1)),
        ..SolveOptions::default()
    };
    let r = Z3.solve(&p, &opts, &CancelToken::new()).unwrap();
    let wall = t.elapsed();
    assert_eq!(r.status, Status::Timeout, "{:?}", r.reason);
    assert!(wall < Duration::from_millis(1500), "took {wall:?}");
    assert!(r.stats.contains_key("overshoot_s"));

    let cancel = CancelToken::new();
    let c2 = cancel.clone();
    let t = Instant::now();
    let h = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        c2.cancel();
    });
    let r = Z3.solve(&p, &SolveOptions::default(), &cancel).unwrap();
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
    // ACAS Xu 4_2 φ2 needs far more than a second of input splitting.
    let d = data_dir().join("vnncomp_acasxu");
    let onnx = d.join("onnx/ACASXU_run2a_4_2_batch_2000.onnx");
    let vnnlib = d.join("vnnlib/prop_2.vnnlib");
    let members = [Method::Bab, Method::BabWide, Method::Backend(&Milp)];
    for method in [Method::Bab, Method::BabWide, Method::Portfolio(&members)] {
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
fn both_input_splittings_agree_on_acas_xu() {
    // Two sat and two unsat instances that each threshold decides in well
    // under a second; every counterexample re-checks under tract.
    let d = data_dir().join("vnncomp_acasxu");
    let cases = [
        ("1_4", 2, Verdict::Sat),
        ("3_2", 2, Verdict::Sat),
        ("1_2", 1, Verdict::Unsat),
        ("1_5", 1, Verdict::Unsat),
    ];
    for (net, prop, want) in cases {
        let onnx = d.join(format!("onnx/ACASXU_run2a_{net}_batch_2000.onnx"));
        let vnnlib = d.join(format!("vnnlib/prop_{prop}.vnnlib"));
        for method in [Method::Bab, Method::BabWide] {
            let v = run(&onnx, &vnnlib, method, 60.0);
            assert_eq!(v.verdict, want, "{net} φ{prop} with {}", method.name());
            if want == Verdict::Sat {
                assert!(v.counterexample.as_ref().unwrap().held, "{net} φ{prop}");
            }
            let record = v.cases.iter().find_map(|c| c.record.as_ref()).unwrap();
            assert_eq!(record.backend, method.name());
        }
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
