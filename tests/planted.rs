//! Planted answers on small random ReLU networks: the MILP, z3 and branch and
//! bound (input and ReLU splitting) agree with an answer known by construction and with an independent
//! decision procedure (enumeration of every activation pattern of the unstable
//! ReLUs, one LP each, no big-M), and the LP relaxation's bound is never
//! tighter than the exact optimum. Fixed seeds first, then a property test
//! over random sizes, boxes and thresholds (its regressions are committed in
//! `tests/planted.proptest-regressions` when there are any).
#![cfg(all(feature = "highs", feature = "z3"))]

use std::time::Duration;

use ndarray::{Array1, Array2};
use nnexplain::bounds::crown;
use nnexplain::encode::full_network::{full_network, network};
use nnexplain::encode::{Cmp, LinExpr, Objective, Problem, Sense};
use nnexplain::model::{Dense, Layer, Network, Node};
use nnexplain::property::{InputBox, Property};
use nnexplain::solve::bab::{input_split, relu_split, BabOutcome};
use nnexplain::solve::lp::LpRelaxation;
use nnexplain::solve::milp::Milp;
use nnexplain::solve::z3::Z3;
use nnexplain::solve::{Backend, CancelToken, Deadline, SolveOptions, Status};
use proptest::prelude::*;

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
fn milp_and_z3_match_pattern_enumeration_and_lp_never_tighter() {
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
        let z = Z3
            .solve(&p, &SolveOptions::default(), &CancelToken::new())
            .unwrap();
        assert_eq!(z.status, Status::Optimal, "seed {seed}: {:?}", z.reason);
        let zm = z.objective.unwrap() + k;
        assert!(
            (zm - exact).abs() <= 1e-6 * (1.0 + exact.abs()),
            "seed {seed}: z3 {zm} vs enumeration {exact}"
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
    }
}

/// `y_0 − y_1 ≥ t` over `bx` as VNN-LIB text.
fn margin_property(bx: &InputBox, t: f64) -> Property {
    let n = bx.lower.len();
    let mut text = String::new();
    for i in 0..n {
        text += &format!("(declare-const X_{i} Real)\n");
    }
    text += "(declare-const Y_0 Real)(declare-const Y_1 Real)\n";
    for i in 0..n {
        text += &format!(
            "(assert (>= X_{i} {:?}))(assert (<= X_{i} {:?}))\n",
            bx.lower[i], bx.upper[i]
        );
    }
    text += &format!("(assert (>= (- Y_0 Y_1) {t:?}))\n");
    Property::parse_vnnlib(&text, None).unwrap()
}

#[derive(Debug, PartialEq)]
enum Answer {
    Sat,
    Unsat,
}

/// Decides `prop` with the MILP, z3, input splitting and ReLU splitting; checks every
/// counterexample with the IR's forward pass and returns the four answers.
type Search = fn(
    &Network,
    &nnexplain::property::Region,
    &[nnexplain::property::LinearConstraint],
    &Deadline,
    &CancelToken,
) -> nnexplain::Result<(BabOutcome, nnexplain::solve::bab::BabStats)>;

fn decide_four_ways(net: &Network, prop: &Property) -> Result<[Answer; 4], TestCaseError> {
    let region = &prop.regions[0];
    let bounds = crown(net, &region.input).unwrap();
    let p = full_network(net, &bounds, region, &region.output[0]).unwrap();
    let n = region.input.lower.len();
    let holds = |x: &[f64]| {
        let y = net
            .forward::<f64>(Array2::from_shape_vec((1, n), x.to_vec()).unwrap().view())
            .unwrap();
        prop.is_counterexample(x, y.as_slice().unwrap(), 1e-6)
    };
    let opts = SolveOptions {
        time_limit: Some(Duration::from_secs(30)),
        ..SolveOptions::default()
    };
    let mut out = Vec::new();
    for b in [&Milp as &dyn Backend, &Z3] {
        let r = b.solve(&p, &opts, &CancelToken::new()).unwrap();
        match r.status {
            Status::Optimal => {
                let a = r.assignment.unwrap();
                let x: Vec<f64> = p.inputs.iter().map(|v| a[v.0]).collect();
                prop_assert!(
                    holds(&x),
                    "{}: counterexample {x:?} does not hold",
                    b.name()
                );
                out.push(Answer::Sat);
            }
            Status::Infeasible => out.push(Answer::Unsat),
            s => {
                return Err(TestCaseError::fail(format!(
                    "{}: {s:?} {:?}",
                    b.name(),
                    r.reason
                )))
            }
        }
    }
    for (name, search) in [
        ("input split", input_split as Search),
        ("relu split", relu_split),
    ] {
        let deadline = Deadline::after(Some(Duration::from_secs(30)));
        let (o, _) = search(
            net,
            region,
            &region.output[0],
            &deadline,
            &CancelToken::new(),
        )
        .unwrap();
        match o {
            BabOutcome::Counterexample(x) => {
                prop_assert!(holds(&x), "{name}: counterexample {x:?} does not hold");
                out.push(Answer::Sat);
            }
            BabOutcome::Proven => out.push(Answer::Unsat),
            other => return Err(TestCaseError::fail(format!("{name}: {other:?}"))),
        }
    }
    let [a, b, c, d]: [Answer; 4] = out.try_into().unwrap();
    Ok([a, b, c, d])
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 100,
        ..ProptestConfig::default()
    })]

    /// Thresholds just below and just above the exact maximum margin (found by
    /// enumeration) plant a "sat" and an "unsat" answer; all four complete
    /// backends must give it, and the LP bound must not undercut the maximum.
    #[test]
    fn backends_agree_with_planted_answers(
        seed in any::<u64>(),
        n_in in 1usize..4,
        h in 2usize..5,
        centre in -1.5f64..1.5,
        radius in 0.05f64..1.0,
        slack in 0.001f64..0.3,
    ) {
        let net = tiny_net(seed, n_in, h, 2);
        let bx = InputBox {
            lower: (0..n_in).map(|i| centre + 0.3 * i as f64 - radius).collect(),
            upper: (0..n_in).map(|i| centre + 0.3 * i as f64 + radius).collect(),
        };
        let exact = max_margin_by_enumeration(&net, &bx);
        let sat = decide_four_ways(&net, &margin_property(&bx, exact - slack))?;
        prop_assert_eq!(sat, [Answer::Sat, Answer::Sat, Answer::Sat, Answer::Sat]);
        let unsat = decide_four_ways(&net, &margin_property(&bx, exact + slack))?;
        prop_assert_eq!(unsat, [Answer::Unsat, Answer::Unsat, Answer::Unsat, Answer::Unsat]);
        let (p, k) = margin_problem(&net, &bx);
        let lp = LpRelaxation.solve(&p, &SolveOptions::default(), &CancelToken::new()).unwrap();
        let lb = lp.bound.unwrap() + k;
        prop_assert!(lb >= exact - 1e-7 * (1.0 + exact.abs()), "LP {} < exact {}", lb, exact);
    }
}
