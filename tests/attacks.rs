//! Attacks on the Network IR: feasibility (ε-ball and box) as a property,
//! adversarial points re-checked by tract on shared MNIST networks, CW against
//! PGD-ℓ2, seeds, and PGD-ℓ∞ on the VNN-COMP 2021 mnist_fc properties.

mod common;

use common::*;
use ndarray::{Array1, Array2};
use nnexplain::attack::{
    apgd, carlini_wagner, pgd, ApgdLoss, ApgdOptions, AttackResult, Clip, CwOptions, Goal, Loss,
    Norm, PgdOptions, Schedule,
};
use nnexplain::check::recheck_counterexample;
use nnexplain::model::{Dense, Layer, Node, Reference};
use nnexplain::property::{read_instances, Robustness};
use nnexplain::{Network, Property};
use proptest::prelude::*;

fn node(name: &str, op: &str, i: usize, o: usize) -> Node {
    Node {
        name: name.into(),
        op_types: vec![op.into()],
        in_shape: vec![1, i],
        out_shape: vec![1, o],
    }
}

/// A ReLU MLP with weights drawn from `seed` (xorshift).
fn mlp(seed: u64, dims: &[usize]) -> Network {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let mut layers = Vec::new();
    for k in 0..dims.len() - 1 {
        let (i, o) = (dims[k], dims[k + 1]);
        let sc = 1.5 / (i as f64).sqrt();
        let weight = Array2::from_shape_fn((o, i), |_| sc * rnd());
        let bias = Array1::from_shape_fn(o, |_| 0.3 * rnd());
        layers.push((
            node(&format!("fc{k}"), "Gemm", i, o),
            Layer::Dense(Dense {
                weight,
                bias,
                rows: 1,
            }),
        ));
        if k + 2 < dims.len() {
            layers.push((node(&format!("relu{k}"), "Relu", o, o), Layer::Relu));
        }
    }
    Network::from_layers(format!("mlp{seed}"), vec![1, dims[0]], layers).unwrap()
}

fn argmax(v: &[f64]) -> usize {
    let mut b = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[b] {
            b = i;
        }
    }
    b
}

fn labels_of(net: &Network, x: &Array2<f64>) -> Vec<usize> {
    let y = net.forward::<f64>(x.view()).unwrap();
    y.rows().into_iter().map(|r| argmax(&r.to_vec())).collect()
}

fn in_ball_and_box(r: &AttackResult, x0: &[f64], norm: Norm, eps: f64, lo: f64, hi: f64) -> bool {
    let d = match norm {
        Norm::Linf => r.linf,
        Norm::L2 => r.l2,
    };
    let recomputed = norm.distance(&r.x, x0);
    d <= eps + 1e-9 && recomputed <= eps + 1e-9 && r.x.iter().all(|v| *v >= lo && *v <= hi)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// Every attack's output lies in the ε-ball and in the box, whatever the
    /// network, the input, the radius, the box or the goal.
    #[test]
    fn every_attack_stays_in_the_ball_and_the_box(
        seed in 0u64..1000,
        eps in 0.01f64..1.5,
        lo in -0.5f64..0.2,
        width in 0.5f64..2.0,
        targeted in any::<bool>(),
        xs in proptest::collection::vec(0.0f64..1.0, 12),
    ) {
        let hi = lo + width;
        let net = mlp(seed, &[6, 10, 4]);
        let x0 = Array2::from_shape_fn((2, 6), |(r, i)| lo + xs[r * 6 + i] * width);
        let labels = labels_of(&net, &x0);
        let goals: Vec<Goal> = labels
            .iter()
            .map(|&l| if targeted { Goal::Targeted { target: (l + 1) % 4 } } else { Goal::Untargeted { label: l } })
            .collect();
        let clip = Clip::Range { min: lo, max: hi };
        for norm in [Norm::Linf, Norm::L2] {
            let p = pgd(&net, x0.view(), &goals, &PgdOptions {
                norm, eps, steps: 15, restarts: 2, clip: clip.clone(), seed, schedule: Schedule::Linear,
                loss: if targeted { Loss::CrossEntropy } else { Loss::Margin }, step_size: Some(eps / 3.0),
                ..Default::default()
            }).unwrap();
            let a = apgd(&net, x0.view(), &goals, &ApgdOptions {
                norm, eps, steps: 15, restarts: 2, clip: clip.clone(), seed,
                loss: if targeted { ApgdLoss::Dlr } else { ApgdLoss::CrossEntropy },
                ..Default::default()
            }).unwrap();
            for (r, row) in p.iter().chain(&a).zip(x0.rows().into_iter().chain(x0.rows())) {
                prop_assert!(in_ball_and_box(r, &row.to_vec(), norm, eps, lo, hi), "{norm:?} {r:?}");
            }
        }
        let c = carlini_wagner(&net, x0.view(), &goals, &CwOptions {
            steps: 20, binary_steps: 3, clip: clip.clone(), eps: Some(eps), ..Default::default()
        }).unwrap();
        for (r, row) in c.iter().zip(x0.rows()) {
            prop_assert!(in_ball_and_box(r, &row.to_vec(), Norm::L2, eps, lo, hi), "cw {r:?}");
        }
    }
}

/// The shared MNIST fully-connected networks (input `[1, 784, 1]`, pixel/255).
fn mnist_nets() -> Vec<std::path::PathBuf> {
    let d = data_dir();
    vec![
        d.join("vnncomp2021_mnist_fc/onnx/mnist-net_256x2.onnx"),
        d.join("vnncomp2021_mnist_fc/onnx/mnist-net_256x4.onnx"),
        d.join("vnncomp_mnist_fc_extra/onnx/mnist-net_256x6.onnx"),
    ]
}

/// tract's class at `x`.
fn tract_class(reference: &Reference, x: &[f64]) -> usize {
    let a = Array2::from_shape_vec((1, x.len()), x.iter().map(|&v| v as f32).collect()).unwrap();
    let y = reference.run(a.view()).unwrap();
    argmax(&y.row(0).iter().map(|&v| v as f64).collect::<Vec<_>>())
}

#[test]
fn pgd_finds_adversarial_points_that_tract_confirms() {
    let (imgs, labels) = mnist_images(20);
    let x0 = Array2::from_shape_vec((imgs.len(), 784), imgs.concat()).unwrap();
    for path in mnist_nets() {
        let net = Network::from_onnx(&path).unwrap();
        let reference = Reference::from_onnx(&path, 1).unwrap();
        let goals: Vec<Goal> = labels
            .iter()
            .map(|&label| Goal::Untargeted { label })
            .collect();
        for (norm, eps) in [(Norm::Linf, 0.1), (Norm::L2, 2.0)] {
            let res = pgd(
                &net,
                x0.view(),
                &goals,
                &PgdOptions {
                    norm,
                    eps,
                    steps: 50,
                    restarts: 2,
                    loss: Loss::Margin,
                    step_size: Some(eps / 10.0),
                    clip: Clip::Range { min: 0.0, max: 1.0 },
                    seed: 1,
                    ..Default::default()
                },
            )
            .unwrap();
            let mut found = 0;
            for (r, res) in res.iter().enumerate() {
                assert!(in_ball_and_box(
                    res,
                    &x0.row(r).to_vec(),
                    norm,
                    eps,
                    0.0,
                    1.0
                ));
                if res.success {
                    found += 1;
                    assert_ne!(res.predicted, labels[r]);
                    assert_ne!(
                        tract_class(&reference, &res.x),
                        labels[r],
                        "{} sample {r}: tract disagrees",
                        path.display()
                    );
                }
            }
            println!(
                "{}: PGD-{norm:?} eps {eps}: {found}/{} adversarial, all confirmed by tract",
                path.file_name().unwrap().to_string_lossy(),
                labels.len()
            );
            assert!(found >= labels.len() / 2, "only {found} found");
        }
    }
}

#[test]
fn cw_is_not_farther_than_pgd_l2() {
    let (imgs, labels) = mnist_images(10);
    let x0 = Array2::from_shape_vec((imgs.len(), 784), imgs.concat()).unwrap();
    let path = &mnist_nets()[0];
    let net = Network::from_onnx(path).unwrap();
    let goals: Vec<Goal> = labels
        .iter()
        .map(|&label| Goal::Untargeted { label })
        .collect();
    let eps = 3.0;
    let p = pgd(
        &net,
        x0.view(),
        &goals,
        &PgdOptions {
            norm: Norm::L2,
            eps,
            steps: 100,
            restarts: 1,
            loss: Loss::Margin,
            step_size: Some(0.1),
            clip: Clip::Range { min: 0.0, max: 1.0 },
            ..Default::default()
        },
    )
    .unwrap();
    let c = carlini_wagner(
        &net,
        x0.view(),
        &goals,
        &CwOptions {
            steps: 100,
            binary_steps: 8,
            initial_const: 0.1,
            lr: 0.05,
            clip: Clip::Range { min: 0.0, max: 1.0 },
            eps: Some(eps),
            ..Default::default()
        },
    )
    .unwrap();
    let both: Vec<usize> = (0..labels.len())
        .filter(|&i| p[i].success && c[i].success)
        .collect();
    let mean = |v: &[AttackResult]| both.iter().map(|&i| v[i].l2).sum::<f64>() / both.len() as f64;
    let closer = both.iter().filter(|&&i| c[i].l2 <= p[i].l2).count();
    println!(
        "CW vs PGD-l2 (eps {eps}) on {} images both flip: mean l2 CW {:.3}, PGD {:.3}; CW closer on {closer}; successes CW {}, PGD {}",
        both.len(),
        mean(&c),
        mean(&p),
        c.iter().filter(|r| r.success).count(),
        p.iter().filter(|r| r.success).count()
    );
    assert!(both.len() >= labels.len() / 2);
    assert!(mean(&c) <= mean(&p), "CW is farther than PGD on average");
}

#[test]
fn seeds_reproduce() {
    let (imgs, labels) = mnist_images(4);
    let x0 = Array2::from_shape_vec((imgs.len(), 784), imgs.concat()).unwrap();
    let net = Network::from_onnx(&mnist_nets()[0]).unwrap();
    let goals: Vec<Goal> = labels
        .iter()
        .map(|&label| Goal::Untargeted { label })
        .collect();
    let run = |seed: u64, batch: usize| {
        let o = PgdOptions {
            norm: Norm::L2,
            eps: 1.0,
            steps: 10,
            restarts: 3,
            clip: Clip::Range { min: 0.0, max: 1.0 },
            seed,
            batch,
            ..Default::default()
        };
        let a = pgd(&net, x0.view(), &goals, &o).unwrap();
        let b = apgd(
            &net,
            x0.view(),
            &goals,
            &ApgdOptions {
                norm: Norm::L2,
                eps: 1.0,
                steps: 10,
                restarts: 3,
                clip: Clip::Range { min: 0.0, max: 1.0 },
                seed,
                batch,
                ..Default::default()
            },
        )
        .unwrap();
        (a, b)
    };
    let (a1, b1) = run(5, 256);
    let (a2, b2) = run(5, 3);
    let (a3, _) = run(6, 256);
    for i in 0..labels.len() {
        assert_eq!(a1[i].x, a2[i].x);
        assert_eq!(b1[i].x, b2[i].x);
    }
    assert!((0..labels.len()).any(|i| a1[i].x != a3[i].x));
}

/// The acceptance check: PGD-ℓ∞ on every VNN-COMP 2021 mnist_fc instance,
/// inside the property's input box, with every counterexample re-checked by
/// tract against the property.
#[test]
fn pgd_falsifies_mnist_fc_properties_within_the_box() {
    let csv = data_dir().join("vnncomp2021_mnist_fc/instances.csv");
    let instances = read_instances(&csv).unwrap();
    let mut falsified = Vec::new();
    let mut nets: std::collections::HashMap<std::path::PathBuf, (Network, Reference)> =
        Default::default();
    for inst in &instances {
        let (net, reference) = nets.entry(inst.onnx.clone()).or_insert_with(|| {
            (
                Network::from_onnx(&inst.onnx).unwrap(),
                Reference::from_onnx(&inst.onnx, 1).unwrap(),
            )
        });
        let prop = Property::from_vnnlib(&inst.vnnlib).unwrap();
        let Some(Robustness::Untargeted { label }) = prop.robustness() else {
            panic!(
                "{}: not an untargeted robustness property",
                inst.vnnlib.display()
            );
        };
        assert_eq!(prop.regions.len(), 1);
        let bx = &prop.regions[0].input;
        let centre: Vec<f64> = bx
            .lower
            .iter()
            .zip(&bx.upper)
            .map(|(l, u)| 0.5 * (l + u))
            .collect();
        let eps = bx
            .lower
            .iter()
            .zip(&bx.upper)
            .map(|(l, u)| 0.5 * (u - l))
            .fold(0.0, f64::max);
        let x0 = Array2::from_shape_vec((1, centre.len()), centre).unwrap();
        let res = pgd(
            net,
            x0.view(),
            &[Goal::Untargeted { label }],
            &PgdOptions {
                norm: Norm::Linf,
                eps,
                steps: 100,
                restarts: 10,
                loss: Loss::Margin,
                step_size: Some(eps / 4.0),
                schedule: Schedule::Cosine,
                clip: Clip::Box {
                    lower: bx.lower.clone(),
                    upper: bx.upper.clone(),
                },
                seed: 0,
                ..Default::default()
            },
        )
        .unwrap();
        let r = &res[0];
        assert!(
            bx.contains(&r.x, 0.0),
            "{}: the attack left the box",
            inst.vnnlib.display()
        );
        if r.success {
            let check = recheck_counterexample(reference, &prop, &r.x).unwrap();
            assert!(
                check.held,
                "{}: the counterexample does not re-check",
                inst.vnnlib.display()
            );
            falsified.push(format!(
                "{}:{}",
                inst.onnx.file_name().unwrap().to_string_lossy(),
                inst.vnnlib.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    println!(
        "PGD-linf falsified {} of {} mnist_fc 2021 instances (every counterexample re-checked by tract, box never left):",
        falsified.len(),
        instances.len()
    );
    for f in &falsified {
        println!("  {f}");
    }
    assert!(!falsified.is_empty());
}
