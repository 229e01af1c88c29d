//! Benchmarks. `cargo bench` runs them all; `cargo bench -- forward` one group.
//!
//! * `forward/<net>/<batch>`: the IR's forward pass (f32 and f64) against tract's
//!   optimised plan on the same weights and inputs, at batch 1 and 256.
//! * `verify/encode/<instance>`: CROWN bounds plus the encoding of one property
//!   case into a `Problem`, apart from `verify/solve/<backend>/<instance>`:
//!   the backend's time on that problem (input splitting works on the network).
//! * `greedy_as/<net>/top20`: one Greedy-AS explanation (Hsieh et al. 2021,
//!   Eq. 3, the paper's 5,000 coalitions and 5 % per round) up to 20 % of the
//!   pixels of one shared MNIST test image, ℓ2 in the `[0, 1]` box, with the
//!   restricted-DeepFool estimator in f32; the paper reports 13.6 s per image.
//! * `throughput/<ig200_f32|ig200_f64|pgd_linf100|pgd_linf100_f32>/<net>`: Integrated
//!   Gradients (200 midpoint steps, zero baseline, the predicted logit) and
//!   untargeted PGD (ℓ∞, 100 steps, one random start, cross-entropy) over the
//!   100 shared MNIST test images on mnist-net_256x4 and the 100 shared
//!   CIFAR-10 images on cifar_base_kw, as images per second.
//!   `benches/captum_pgd_reference.py` times Captum and a PyTorch PGD loop
//!   on the same weights and inputs and prints both side by side.

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::Array2;
use nnexplain::model::Reference;
use nnexplain::Network;

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(rel)
}

/// Deterministic inputs in [0, 1).
fn inputs(batch: usize, len: usize) -> Array2<f32> {
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    Array2::from_shape_fn((batch, len), |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    })
}

fn forward(c: &mut Criterion) {
    let nets = [
        (
            "mnist-net_256x4",
            "vnncomp2021_mnist_fc/onnx/mnist-net_256x4.onnx",
        ),
        (
            "cifar_base_kw",
            "vnncomp2021_oval21_cifar/onnx/cifar_base_kw.onnx",
        ),
    ];
    for (name, rel) in nets {
        let path = shared(rel);
        let net = Network::from_onnx(&path).expect("shared network loads");
        let mut group = c.benchmark_group(format!("forward/{name}"));
        group.measurement_time(Duration::from_secs(4));
        group.warm_up_time(Duration::from_secs(1));
        for batch in [1usize, 256] {
            let x32 = inputs(batch, net.input_len());
            let x64 = x32.mapv(|v| v as f64);
            let reference = Reference::from_onnx(&path, batch).expect("tract plan builds");
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(BenchmarkId::new("nnexplain_f32", batch), &x32, |b, x| {
                b.iter(|| net.forward::<f32>(x.view()).expect("forward"))
            });
            group.bench_with_input(BenchmarkId::new("nnexplain_f64", batch), &x64, |b, x| {
                b.iter(|| net.forward::<f64>(x.view()).expect("forward"))
            });
            group.bench_with_input(BenchmarkId::new("tract_f32", batch), &x32, |b, x| {
                b.iter(|| reference.run(x.view()).expect("tract runs"))
            });
        }
        group.finish();
    }
}

fn verify(c: &mut Criterion) {
    use nnexplain::bounds::crown;
    use nnexplain::encode::full_network::full_network;
    use nnexplain::solve::bab::input_split;
    use nnexplain::solve::{CancelToken, Deadline};
    use nnexplain::Property;

    let cases = [
        (
            "acasxu_1_1_prop1",
            "vnncomp_acasxu/onnx/ACASXU_run2a_1_1_batch_2000.onnx",
            "vnncomp_acasxu/vnnlib/prop_1.vnnlib",
        ),
        (
            "acasxu_4_5_prop4",
            "vnncomp_acasxu/onnx/ACASXU_run2a_4_5_batch_2000.onnx",
            "vnncomp_acasxu/vnnlib/prop_4.vnnlib",
        ),
        (
            "mnist_256x2_prop0",
            "vnncomp2021_mnist_fc/onnx/mnist-net_256x2.onnx",
            "vnncomp2021_mnist_fc/vnnlib/prop_0_0.03.vnnlib",
        ),
    ];
    let mut group = c.benchmark_group("verify");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for (name, onnx, vnnlib) in cases {
        let net = Network::from_onnx(shared(onnx)).expect("network");
        let prop = Property::from_vnnlib(shared(vnnlib)).expect("property");
        let region = &prop.regions[0];
        // The first output conjunction that bounds alone do not discharge (index 0 if none).
        let conj = &region.output[if name.starts_with("mnist") { 1 } else { 0 }];
        group.bench_function(BenchmarkId::new("encode", name), |b| {
            b.iter(|| {
                let bounds = crown(&net, &region.input).expect("bounds");
                full_network(&net, &bounds, region, conj).expect("encoding")
            })
        });
        if name.starts_with("acasxu") {
            group.bench_function(BenchmarkId::new("solve/bab", name), |b| {
                b.iter(|| {
                    input_split(&net, region, conj, &Deadline::never(), &CancelToken::new())
                        .expect("search")
                })
            });
        }
        #[cfg(feature = "highs")]
        if name.starts_with("mnist") {
            use nnexplain::solve::{milp::Milp, Backend, SolveOptions};
            let bounds = crown(&net, &region.input).expect("bounds");
            let problem = full_network(&net, &bounds, region, conj).expect("encoding");
            group.bench_function(BenchmarkId::new("solve/milp", name), |b| {
                b.iter(|| {
                    Milp.solve(&problem, &SolveOptions::default(), &CancelToken::new())
                        .expect("solve")
                })
            });
        }
    }
    group.finish();
}

fn greedy_as(c: &mut Criterion) {
    use nnexplain::attack::restricted::{
        DeepFool, Estimator, Features, Precision, Restriction, SubsetRobustness,
    };
    use nnexplain::attack::{Clip, Goal, Norm};
    use nnexplain::explain::{greedy_as, GreedyOptions};

    let images = nnexplain::input::read_array(shared("mnist_samples/mnist_test_100_images_u8.npy"))
        .expect("shared MNIST images");
    let x: Vec<f64> = images.iter().take(784).map(|v| v / 255.0).collect();
    let mut group = c.benchmark_group("greedy_as");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for name in ["mnist_mlp", "mnist_cnn"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join(format!("{name}.onnx"));
        let net = Network::from_onnx(&path).expect("project model");
        let xa = Array2::from_shape_vec((1, 784), x.clone()).expect("one image");
        let y = net.forward::<f64>(xa.view()).expect("forward");
        let label = (0..10)
            .max_by(|&a, &b| y[[0, a]].total_cmp(&y[[0, b]]))
            .expect("ten classes");
        let game = SubsetRobustness::new(
            &net,
            &x,
            Goal::Untargeted { label },
            Features::for_activation(&net, 0),
            Estimator::DeepFool(DeepFool::default()),
            Restriction {
                norm: Norm::L2,
                clip: Clip::Range { min: 0.0, max: 1.0 },
                precision: Precision::F32,
                ..Restriction::default()
            },
        )
        .expect("game");
        let opts = GreedyOptions {
            fraction: 0.2,
            ..GreedyOptions::default()
        };
        group.bench_function(BenchmarkId::new(name, "top20"), |b| {
            b.iter(|| greedy_as(&game, &opts).expect("Greedy-AS"))
        });
    }
    group.finish();
}

criterion_group!(benches, forward, verify, greedy_as, throughput);
criterion_main!(benches);

/// The 100 shared MNIST test images in `[0, 1]` (`[100, 784]`) and the 100
/// shared CIFAR-10 test images, CHW, normalised as the oval21 networks expect
/// (`(x − mean_c) / 0.225`), with the box `[0, 1]` maps to.
fn throughput_inputs() -> Vec<(
    &'static str,
    &'static str,
    Array2<f64>,
    nnexplain::attack::Clip,
    f64,
)> {
    use nnexplain::attack::Clip;
    let mnist = nnexplain::input::read_array(shared("mnist_samples/mnist_test_100_images_u8.npy"))
        .expect("shared MNIST images");
    let mnist = Array2::from_shape_vec((100, 784), mnist.iter().map(|v| v / 255.0).collect())
        .expect("100 MNIST images");
    let cifar =
        nnexplain::input::read_array(shared("cifar10_samples/cifar10_test_100_images_hwc_u8.npy"))
            .expect("shared CIFAR images");
    let hwc: Vec<f64> = cifar.iter().copied().collect();
    let mean = [0.485, 0.456, 0.406];
    let std = 0.225;
    let mut chw = vec![0.0; 100 * 3072];
    let (mut lower, mut upper) = (vec![0.0; 3072], vec![0.0; 3072]);
    for s in 0..100 {
        for p in 0..1024 {
            for c in 0..3 {
                chw[s * 3072 + c * 1024 + p] = (hwc[s * 3072 + p * 3 + c] / 255.0 - mean[c]) / std;
            }
        }
    }
    for c in 0..3 {
        for p in 0..1024 {
            lower[c * 1024 + p] = (0.0 - mean[c]) / std;
            upper[c * 1024 + p] = (1.0 - mean[c]) / std;
        }
    }
    vec![
        (
            "mnist-net_256x4",
            "vnncomp2021_mnist_fc/onnx/mnist-net_256x4.onnx",
            mnist,
            Clip::Range { min: 0.0, max: 1.0 },
            0.03,
        ),
        (
            "cifar_base_kw",
            "vnncomp2021_oval21_cifar/onnx/cifar_base_kw.onnx",
            Array2::from_shape_vec((100, 3072), chw).expect("100 CIFAR images"),
            Clip::Box { lower, upper },
            2.0 / 255.0 / std,
        ),
    ]
}

fn throughput(c: &mut Criterion) {
    use nnexplain::attack::pgd::{pgd, PgdOptions};
    use nnexplain::attack::{Goal, Norm};
    use nnexplain::attrib::{integrated_gradients, Baseline, Rule, Target};
    use nnexplain::Objective;

    let mut group = c.benchmark_group("throughput");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    for (name, rel, x, clip, eps) in throughput_inputs() {
        let net = Network::from_onnx(shared(rel)).expect("shared network");
        let y = net.forward::<f64>(x.view()).expect("forward");
        let labels: Vec<usize> = y
            .rows()
            .into_iter()
            .map(|r| {
                (0..r.len())
                    .max_by(|&a, &b| r[a].total_cmp(&r[b]))
                    .expect("classes")
            })
            .collect();
        let target = Target::PerSample(labels.iter().map(|&l| Objective::Logit(l)).collect());
        let x32 = x.mapv(|v| v as f32);
        group.throughput(Throughput::Elements(x.nrows() as u64));
        group.bench_function(BenchmarkId::new("ig200_f32", name), |b| {
            b.iter(|| {
                integrated_gradients::<f32>(
                    &net,
                    x32.view(),
                    &Baseline::Zero,
                    &target,
                    200,
                    Rule::Midpoint,
                )
                .expect("IG")
            })
        });
        group.bench_function(BenchmarkId::new("ig200_f64", name), |b| {
            b.iter(|| {
                integrated_gradients::<f64>(
                    &net,
                    x.view(),
                    &Baseline::Zero,
                    &target,
                    200,
                    Rule::Midpoint,
                )
                .expect("IG")
            })
        });
        let goals: Vec<Goal> = labels
            .iter()
            .map(|&label| Goal::Untargeted { label })
            .collect();
        let opts = PgdOptions {
            norm: Norm::Linf,
            eps,
            steps: 100,
            clip: clip.clone(),
            ..PgdOptions::default()
        };
        group.bench_function(BenchmarkId::new("pgd_linf100", name), |b| {
            b.iter(|| pgd(&net, x.view(), &goals, &opts).expect("PGD"))
        });
        let opts32 = PgdOptions {
            precision: nnexplain::attack::restricted::Precision::F32,
            ..opts.clone()
        };
        group.bench_function(BenchmarkId::new("pgd_linf100_f32", name), |b| {
            b.iter(|| pgd(&net, x.view(), &goals, &opts32).expect("PGD"))
        });
    }
    group.finish();
}
