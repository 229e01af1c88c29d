//! Interval and CROWN bounds are sound (every activation of every sampled point
//! in the box lies inside them) and CROWN is never looser than IBP, on shared
//! networks with their own property boxes and on the ONNX op fixtures.

mod common;

use std::path::Path;

use common::*;
use ndarray::Array2;
use nnexplain::bounds::{crown, interval, NetworkBounds};
use nnexplain::property::InputBox;
use nnexplain::{Network, Property};

/// Deterministic xorshift64* in [0, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Samples `n` points of the box (the corners `l`, `u` and uniform ones) and
/// checks every activation against `b`.
fn assert_sound(net: &Network, bx: &InputBox, b: &NetworkBounds, n: usize, what: &str) {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let d = bx.lower.len();
    let mut pts = vec![bx.lower.clone(), bx.upper.clone()];
    for _ in 0..n {
        pts.push(
            (0..d)
                .map(|i| bx.lower[i] + rng.next() * (bx.upper[i] - bx.lower[i]))
                .collect(),
        );
    }
    let x = Array2::from_shape_vec((pts.len(), d), pts.concat()).unwrap();
    let trace = net.trace::<f64>(x.view()).unwrap();
    for (a, (act, bounds)) in trace.activations.iter().zip(&b.activations).enumerate() {
        for row in act.rows() {
            for (k, v) in row.iter().enumerate() {
                assert!(
                    *v >= bounds.lower[k] && *v <= bounds.upper[k],
                    "{what}: activation {a}[{k}] = {v} outside [{}, {}]",
                    bounds.lower[k],
                    bounds.upper[k]
                );
            }
        }
    }
}

fn assert_crown_not_looser(ibp: &NetworkBounds, cr: &NetworkBounds, what: &str) {
    for (a, (i, c)) in ibp.activations.iter().zip(&cr.activations).enumerate() {
        for k in 0..i.len() {
            assert!(
                c.lower[k] >= i.lower[k] && c.upper[k] <= i.upper[k],
                "{what}: activation {a}[{k}]"
            );
        }
    }
}

/// (IBP output mean width, CROWN output mean width, IBP ReLU stability, CROWN ReLU stability).
type Summary = (f64, f64, (usize, usize, usize), (usize, usize, usize));

fn check_shared(rel_onnx: &str, rel_vnnlib: &str) -> Summary {
    let net = Network::from_onnx(data_dir().join(rel_onnx)).unwrap();
    let prop = Property::from_vnnlib(data_dir().join(rel_vnnlib)).unwrap();
    let bx = &prop.regions[0].input;
    let ibp = interval(&net, bx).unwrap();
    let cr = crown(&net, bx).unwrap();
    assert_sound(&net, bx, &ibp, 200, rel_onnx);
    assert_sound(&net, bx, &cr, 200, rel_onnx);
    assert_crown_not_looser(&ibp, &cr, rel_onnx);
    (
        ibp.output().mean_width(),
        cr.output().mean_width(),
        ibp.relu_stability(&net),
        cr.relu_stability(&net),
    )
}

#[test]
fn shared_networks_sound_and_crown_tighter() {
    let cases = [
        ("vnncomp_acasxu/onnx/ACASXU_run2a_1_1_batch_2000.onnx", "vnncomp_acasxu/vnnlib/prop_1.vnnlib"),
        ("vnncomp_acasxu/onnx/ACASXU_run2a_3_3_batch_2000.onnx", "vnncomp_acasxu/vnnlib/prop_3.vnnlib"),
        ("vnncomp2021_mnist_fc/onnx/mnist-net_256x2.onnx", "vnncomp2021_mnist_fc/vnnlib/prop_0_0.03.vnnlib"),
        ("vnncomp2021_mnist_fc/onnx/mnist-net_256x4.onnx", "vnncomp2021_mnist_fc/vnnlib/prop_1_0.05.vnnlib"),
        ("vnncomp2021_eran_mnist/onnx/mnist_relu_9_200.onnx", "vnncomp2021_eran_mnist/vnnlib/mnist_spec_idx_8098_eps_0.01500.vnnlib"),
        ("vnncomp2021_eran_mnist/onnx/ffnnSIGMOID__Point_6x200.onnx", "vnncomp2021_eran_mnist/vnnlib/mnist_spec_idx_8098_eps_0.01500.vnnlib"),
        ("vnncomp2021_verivital_mnist_conv/onnx/Convnet_maxpool.onnx", "vnncomp2021_verivital_mnist_conv/vnnlib/maxpool/prop_0_0.004.vnnlib"),
        ("vnncomp2021_verivital_mnist_conv/onnx/Convnet_avgpool.onnx", "vnncomp2021_verivital_mnist_conv/vnnlib/avgpool/prop_0_0.02.vnnlib"),
        ("vnncomp2021_oval21_cifar/onnx/cifar_base_kw.onnx", "vnncomp2021_oval21_cifar/vnnlib/cifar_base_kw-img4549-eps0.00392156862745098.vnnlib"),
        ("vnncomp2021_marabou_cifar10_small/onnx/cifar10_small.onnx", "vnncomp2021_marabou_cifar10_small/vnnlib/networkcifar10_small_index1783_eps0.012_target9_orig8.vnnlib"),
    ];
    for (onnx, vnnlib) in cases {
        if !data_dir().join(vnnlib).exists() {
            panic!("{vnnlib} missing");
        }
        let (wi, wc, si, sc) = check_shared(onnx, vnnlib);
        eprintln!(
            "{onnx}: output mean width IBP {wi:.3e} CROWN {wc:.3e}; unstable ReLUs IBP {} CROWN {}",
            si.2, sc.2
        );
        assert!(wc <= wi);
        if onnx.contains("mnist-net") || onnx.contains("ACASXU") {
            assert!(
                wc < 0.5 * wi,
                "{onnx}: CROWN should be much tighter than IBP ({wc} vs {wi})"
            );
            assert!(sc.2 < si.2, "{onnx}: CROWN should stabilise some ReLUs");
        }
    }
}

#[test]
fn op_fixtures_sound_on_random_boxes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/onnx_ops");
    let mut rng = Rng(42);
    let mut n = 0;
    for path in files_with_suffix(&dir, ".onnx") {
        let net = Network::from_onnx(&path).unwrap();
        if net.layers().iter().any(|l| l.kind() == "Embedding") {
            continue;
        }
        let d = net.input_len();
        let centre: Vec<f64> = (0..d).map(|_| rng.next() * 2.0 - 1.0).collect();
        let bx = InputBox {
            lower: centre.iter().map(|c| c - 0.1).collect(),
            upper: centre.iter().map(|c| c + 0.1).collect(),
        };
        let ibp = interval(&net, &bx).unwrap();
        let cr = crown(&net, &bx).unwrap();
        let what = path.display().to_string();
        assert_sound(&net, &bx, &ibp, 100, &what);
        assert_sound(&net, &bx, &cr, 100, &what);
        assert_crown_not_looser(&ibp, &cr, &what);
        n += 1;
    }
    assert!(n >= 50, "only {n} fixtures checked");
}

#[test]
fn a_point_box_gives_the_point() {
    let net = Network::from_onnx(data_dir().join("vnncomp2021_mnist_fc/onnx/mnist-net_256x2.onnx"))
        .unwrap();
    let (imgs, _) = mnist_images(1);
    let bx = InputBox {
        lower: imgs[0].clone(),
        upper: imgs[0].clone(),
    };
    let y = net
        .forward::<f64>(
            Array2::from_shape_vec((1, 784), imgs[0].clone())
                .unwrap()
                .view(),
        )
        .unwrap();
    for b in [interval(&net, &bx).unwrap(), crown(&net, &bx).unwrap()] {
        for (k, v) in y.iter().enumerate() {
            let (l, u) = (b.output().lower[k], b.output().upper[k]);
            assert!(l <= *v && *v <= u);
            assert!(
                u - l < 1e-9 * (1.0 + v.abs()),
                "width {} at output {k}",
                u - l
            );
        }
    }
}

#[test]
fn bad_boxes_are_errors() {
    let net =
        Network::from_onnx(data_dir().join("vnncomp_acasxu/onnx/ACASXU_run2a_1_1_batch_2000.onnx"))
            .unwrap();
    let wrong = InputBox {
        lower: vec![0.0; 3],
        upper: vec![1.0; 3],
    };
    assert!(interval(&net, &wrong).is_err());
    let unbounded = InputBox {
        lower: vec![0.0; 5],
        upper: vec![f64::INFINITY; 5],
    };
    assert!(crown(&net, &unbounded).is_err());
    let empty = InputBox {
        lower: vec![1.0; 5],
        upper: vec![0.0; 5],
    };
    assert!(interval(&net, &empty).is_err());
}
