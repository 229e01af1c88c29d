//! The attribution methods checked against Captum on real MNIST networks.
//!
//! `tests/data/captum/` holds Captum's maps for three networks (the project's
//! `mnist_mlp` and `mnist_cnn`, and VNN-COMP 2021's `mnist-net_256x2`) on the
//! first three MNIST test images, each explaining the logit of its predicted
//! class; `tests/data/make_captum_fixtures.py` made them and its README says
//! with which versions. Every map is compared in `f64` with the same steps,
//! rule, baseline and noise draws:
//!
//! `err = ‖ours − captum‖∞ / max(‖captum‖∞, 1e-12) ≤ 1e-4` per map.
//!
//! Captum's `riemann_trapezoid` with `n_steps = 50` weights its 50 points by
//! `1/50` (ends halved), so it is compared with our trapezoid over 49 intervals
//! (the same points) times `49/50` (see `Rule`). Each test prints the worst
//! error per method and network (run with `--nocapture`).

use std::path::{Path, PathBuf};

use ndarray::{Array2, Array3, Ix2, Ix3};
use nnexplain::attrib::{
    deeplift, gradient_x_input, guided_backprop, integrated_gradients, saliency, smoothgrad,
    smoothgrad_ig, Attribution, Baseline, Noise, Rule, Target,
};
use nnexplain::input::read_npy;
use nnexplain::{Network, Objective};

/// Largest accepted `‖ours − captum‖∞ / ‖captum‖∞` per map, in `f64`.
const REL_TOL: f64 = 1e-4;
/// The same for `f32` maps against Captum's `f64` ones.
const REL_TOL_F32: f64 = 1e-3;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/captum")
}

struct Fixture {
    name: String,
    net: Network,
    targets: Target,
    maps: serde_json::Map<String, serde_json::Value>,
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn load2(file: &str) -> Array2<f64> {
    read_npy(fixtures().join(file))
        .unwrap()
        .into_dimensionality::<Ix2>()
        .unwrap()
}

fn networks() -> Vec<Fixture> {
    let m = manifest();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    m["networks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let targets: Vec<Objective> = n["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| Objective::Logit(t.as_u64().unwrap() as usize))
                .collect();
            Fixture {
                name: n["name"].as_str().unwrap().to_string(),
                net: Network::from_onnx(root.join(n["onnx"].as_str().unwrap())).unwrap(),
                targets: targets.into(),
                maps: n["maps"].as_object().unwrap().clone(),
            }
        })
        .collect()
}

fn inputs() -> Array2<f64> {
    load2("inputs.npy")
}

fn noise() -> Array3<f64> {
    read_npy(fixtures().join("noise.npy"))
        .unwrap()
        .into_dimensionality::<Ix3>()
        .unwrap()
}

/// Worst `‖ours − captum‖∞ / max(‖captum‖∞, 1e-12)` over the maps of a batch.
fn worst_error(ours: &Array2<f64>, captum: &Array2<f64>) -> f64 {
    assert_eq!(ours.dim(), captum.dim());
    ours.rows()
        .into_iter()
        .zip(captum.rows())
        .map(|(o, c)| {
            let scale = c.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
            let diff = o
                .iter()
                .zip(c)
                .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            diff / scale
        })
        .fold(0.0, f64::max)
}

fn check(f: &Fixture, key: &str, ours: &Array2<f64>, tol: f64) -> f64 {
    let file = f.maps[key].as_str().unwrap();
    let err = worst_error(ours, &load2(file));
    println!("{:<12} {:<22} worst relative error {err:.3e}", f.name, key);
    assert!(err <= tol, "{} {key}: {err:e} > {tol:e}", f.name);
    err
}

fn maps(a: &Attribution<f64>) -> Array2<f64> {
    a.maps.clone()
}

#[test]
fn fixtures_are_small_and_complete() {
    let m = manifest();
    assert_eq!(m["n_steps"].as_u64(), Some(50));
    let mut total = 0;
    for e in std::fs::read_dir(fixtures()).unwrap() {
        total += e.unwrap().metadata().unwrap().len();
    }
    assert!(total < 2 << 20, "{total} bytes");
    for f in networks() {
        assert_eq!(f.maps.len(), 10, "{}", f.name);
        assert_eq!(f.net.input_len(), inputs().ncols());
    }
}

#[test]
fn gradients_match_captum() {
    let x = inputs();
    for f in networks() {
        let s = saliency(&f.net, x.view(), &f.targets).unwrap();
        check(&f, "saliency", &maps(&s), REL_TOL);
        let gx = gradient_x_input(&f.net, x.view(), &f.targets).unwrap();
        check(&f, "input_x_gradient", &maps(&gx), REL_TOL);
        let gb = guided_backprop(&f.net, x.view(), &f.targets).unwrap();
        check(&f, "guided_backprop", &maps(&gb), REL_TOL);
        // f32, where it is cheap.
        let x32 = x.mapv(|v| v as f32);
        let s32 = saliency(&f.net, x32.view(), &f.targets).unwrap();
        check(&f, "saliency", &s32.maps.mapv(|v| v as f64), REL_TOL_F32);
    }
}

#[test]
fn integrated_gradients_match_captum_under_every_rule() {
    let x = inputs();
    for f in networks() {
        for (key, rule, steps, scale) in [
            ("ig_riemann_left", Rule::Left, 50, 1.0),
            ("ig_riemann_right", Rule::Right, 50, 1.0),
            ("ig_riemann_middle", Rule::Midpoint, 50, 1.0),
            ("ig_riemann_trapezoid", Rule::Trapezoid, 49, 49.0 / 50.0),
        ] {
            let a =
                integrated_gradients(&f.net, x.view(), &Baseline::Zero, &f.targets, steps, rule)
                    .unwrap();
            let r = a.residuals.as_ref().unwrap();
            assert!(r.iter().all(|v| v.is_finite()));
            println!(
                "{:<12} {:<22} completeness residual (ours, unscaled) {:.3e}",
                f.name,
                key,
                a.worst_residual().unwrap()
            );
            check(&f, key, &(a.maps * scale), REL_TOL);
        }
        let x32 = x.mapv(|v| v as f32);
        let a32 = integrated_gradients(
            &f.net,
            x32.view(),
            &Baseline::Zero,
            &f.targets,
            50,
            Rule::Midpoint,
        )
        .unwrap();
        check(
            &f,
            "ig_riemann_middle",
            &a32.maps.mapv(|v| v as f64),
            REL_TOL_F32,
        );
    }
}

#[test]
fn smoothgrad_matches_captum_with_the_same_draws() {
    let x = inputs();
    let noise = Noise::Given(noise());
    for f in networks() {
        let sg = smoothgrad(&f.net, x.view(), &f.targets, &noise).unwrap();
        check(&f, "smoothgrad", &maps(&sg), REL_TOL);
        let sgig = smoothgrad_ig(
            &f.net,
            x.view(),
            &Baseline::Zero,
            &f.targets,
            &noise,
            50,
            Rule::Midpoint,
        )
        .unwrap();
        check(&f, "smoothgrad_ig", &maps(&sgig), REL_TOL);
    }
}

#[test]
fn deeplift_matches_captum_including_its_maxpool_rule() {
    let x = inputs();
    for f in networks() {
        let d = deeplift(&f.net, x.view(), &Baseline::Zero, &f.targets).unwrap();
        let r = d.worst_residual().unwrap();
        println!(
            "{:<12} deeplift summation-to-delta residual {r:.3e}",
            f.name
        );
        assert!(r < 1e-9, "{}: {r}", f.name);
        check(&f, "deeplift", &maps(&d), REL_TOL);
    }
}
