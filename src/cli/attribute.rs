//! `attribute`: gradient, gradient ⊙ input, Integrated Gradients, SmoothGrad,
//! SmoothGrad-IG, DeepLIFT and guided backprop maps on the command line.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use ndarray::{s, Array2, ArrayView2};
use nnexplain::attrib::{
    deeplift, gradient_x_input, guided_backprop, integrated_gradients, saliency, smoothgrad,
    smoothgrad_ig, Attribution, Baseline, ImageDims, Noise, Rule, Target,
};
use nnexplain::report::{side_by_side, Colour, Panel};
use nnexplain::{Network, Objective};

use crate::{load, InputArgs};

/// Samples per batch between two progress lines.
const CHUNK: usize = 16;
/// Samples drawn side by side in the PNG.
const PNG_SAMPLES: usize = 4;

/// The attribution methods, by their command-line names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MethodArg {
    Grad,
    GradXInput,
    Ig,
    SmoothGrad,
    SgIg,
    DeepLift,
    Guided,
}

const METHODS: [(&str, MethodArg); 7] = [
    ("grad", MethodArg::Grad),
    ("gradxinput", MethodArg::GradXInput),
    ("ig", MethodArg::Ig),
    ("smoothgrad", MethodArg::SmoothGrad),
    ("sg-ig", MethodArg::SgIg),
    ("deeplift", MethodArg::DeepLift),
    ("guided", MethodArg::Guided),
];

impl MethodArg {
    fn parse(s: &str) -> Result<MethodArg> {
        super::by_name(&METHODS, s, "attribution method")
    }
    fn name(self) -> &'static str {
        super::name_in(&METHODS, &self)
    }
    fn has_baseline(self) -> bool {
        matches!(self, MethodArg::Ig | MethodArg::SgIg | MethodArg::DeepLift)
    }
    fn has_steps(self) -> bool {
        matches!(self, MethodArg::Ig | MethodArg::SgIg)
    }
    fn has_noise(self) -> bool {
        matches!(self, MethodArg::SmoothGrad | MethodArg::SgIg)
    }
}

/// The scalar function of the output that is explained.
#[derive(Clone, Copy, Debug, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectiveArg {
    /// The class's logit.
    Logit,
    /// The class's softmax probability.
    Softmax,
}

/// Quadrature rule of Integrated Gradients.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum RuleArg {
    /// Left Riemann sum.
    Left,
    /// Right Riemann sum.
    Right,
    /// Midpoint rule.
    Midpoint,
    /// Trapezoid rule (steps intervals, steps + 1 points).
    Trapezoid,
}

/// `nnexplain attribute`.
#[derive(clap::Args)]
pub struct AttributeArgs {
    /// The ONNX model.
    model: PathBuf,
    #[command(flatten)]
    data: InputArgs,
    /// grad, gradxinput, ig, smoothgrad, sg-ig (SmoothGrad on IG), deeplift (rescale) or guided (guided backprop).
    #[arg(long)]
    method: String,
    /// Class to explain (default: each sample's predicted class).
    #[arg(long)]
    target: Option<usize>,
    /// Explain the class's logit or its softmax probability.
    #[arg(long, value_enum, default_value = "logit")]
    objective: ObjectiveArg,
    /// Integrated Gradients: number of intervals of the path integral.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Integrated Gradients: quadrature rule.
    #[arg(long, value_enum, default_value = "midpoint")]
    rule: RuleArg,
    /// Baseline (ig, sg-ig, deeplift): zero, black (--black), white (--white),
    /// noise (uniform in [black, white), seeded), blur (--blur-sigma), or an
    /// .npy of one sample (or one per sample) in the network's input units.
    #[arg(long, default_value = "zero")]
    baseline: String,
    /// Value of a black pixel, after --scale.
    #[arg(long, default_value_t = 0.0)]
    black: f64,
    /// Value of a white pixel, after --scale.
    #[arg(long, default_value_t = 1.0)]
    white: f64,
    /// Standard deviation of the blurred baseline's Gaussian, in pixels.
    #[arg(long, default_value_t = 5.0)]
    blur_sigma: f64,
    /// SmoothGrad: standard deviation of the noise, in input units (after --scale).
    #[arg(long, default_value_t = 0.15)]
    sigma: f64,
    /// SmoothGrad: number of noisy copies per sample.
    #[arg(long, default_value_t = 50)]
    samples: usize,
    /// Seed of the noise (SmoothGrad and the noise baseline).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Score every map against the ground truth "pixels whose value (mean
    /// over channels) is above T": Localization, Energy Game, Positive
    /// Percentage and Concentration (Wang et al. 2022, Defs. 8-11).
    #[arg(long)]
    truth_above: Option<f64>,
    /// Directory for <method>.npy, <method>.json, <method>.png (and <method>.csv for several samples).
    #[arg(long)]
    out: PathBuf,
}

fn rule_of(r: RuleArg) -> Rule {
    match r {
        RuleArg::Left => Rule::Left,
        RuleArg::Right => Rule::Right,
        RuleArg::Midpoint => Rule::Midpoint,
        RuleArg::Trapezoid => Rule::Trapezoid,
    }
}

fn baseline_of(a: &AttributeArgs, net: &Network, n_samples: usize) -> Result<Baseline> {
    Ok(match a.baseline.as_str() {
        "zero" => Baseline::Zero,
        "black" => Baseline::Constant(a.black),
        "white" => Baseline::Constant(a.white),
        "noise" => Baseline::Uniform {
            low: a.black.min(a.white),
            high: a.black.max(a.white),
            seed: a.seed,
        },
        "blur" => {
            if ImageDims::of_shape(net.input_shape()).is_none() {
                anyhow::bail!(
                    "--baseline blur needs an image input; the network takes {:?}",
                    net.input_shape()
                );
            }
            Baseline::Blur {
                sigma: a.blur_sigma,
            }
        }
        file => {
            let path = Path::new(file);
            if !path.exists() {
                anyhow::bail!(
                    "--baseline '{file}' is neither zero, black, white, noise, blur nor an existing file"
                );
            }
            let arr = nnexplain::input::read_array(path)
                .with_context(|| format!("reading baseline {file}"))?;
            let b =
                nnexplain::input::to_batch(&arr, net.input_shape(), false).with_context(|| {
                    format!(
                        "baseline {file} has shape {:?}, the network's input is {:?}",
                        arr.shape(),
                        net.input_shape()
                    )
                })?;
            if b.nrows() != 1 && b.nrows() != n_samples {
                anyhow::bail!(
                    "baseline {file} holds {} samples: give one, or one per input sample ({n_samples})",
                    b.nrows()
                );
            }
            Baseline::Given(b)
        }
    })
}

/// The map of every sample, in chunks of [`CHUNK`] samples with progress on stderr.
fn compute(
    method: MethodArg,
    a: &AttributeArgs,
    net: &Network,
    x: ArrayView2<f64>,
    target: &Target,
    baseline: &Baseline,
) -> Result<Attribution<f64>> {
    let rule = rule_of(a.rule);
    let n = x.nrows();
    let mut parts: Vec<Attribution<f64>> = Vec::new();
    for start in (0..n).step_by(CHUNK) {
        let end = (start + CHUNK).min(n);
        let xs = x.slice(s![start..end, ..]);
        let t = match target {
            Target::All(o) => Target::All(o.clone()),
            Target::PerSample(v) => Target::PerSample(v[start..end].to_vec()),
        };
        let bl = match baseline {
            Baseline::Given(b) if b.nrows() > 1 => {
                Baseline::Given(b.slice(s![start..end, ..]).to_owned())
            }
            other => other.clone(),
        };
        // Noise is drawn per sample index in the input file, so that a batch
        // split into chunks, or one sample picked with --index, gets the same draws.
        let first = a.data.index.unwrap_or(0) + start;
        let noise = Noise::Given(
            Noise::Gaussian {
                sigma: a.sigma,
                samples: if method.has_noise() { a.samples } else { 1 },
                seed: a.seed,
            }
            .draws_for(first..first + (end - start), x.ncols())?,
        );
        let bl = match bl {
            Baseline::Uniform { .. } => Baseline::Given(bl.resolve_at(net, xs, first)?),
            other => other,
        };
        let part = match method {
            MethodArg::Grad => saliency(net, xs, &t)?,
            MethodArg::GradXInput => gradient_x_input(net, xs, &t)?,
            MethodArg::Ig => integrated_gradients(net, xs, &bl, &t, a.steps, rule)?,
            MethodArg::SmoothGrad => smoothgrad(net, xs, &t, &noise)?,
            MethodArg::SgIg => smoothgrad_ig(net, xs, &bl, &t, &noise, a.steps, rule)?,
            MethodArg::DeepLift => deeplift(net, xs, &bl, &t)?,
            MethodArg::Guided => guided_backprop(net, xs, &t)?,
        };
        parts.push(part);
        if n > 1 {
            let mut err = std::io::stderr();
            let _ = writeln!(err, "{}: {end}/{n} samples", method.name());
        }
    }
    let mut maps = Array2::<f64>::zeros(x.raw_dim());
    let mut values = Vec::with_capacity(n);
    let mut baseline_values: Option<Vec<f64>> = None;
    let mut residuals: Option<Vec<f64>> = None;
    let mut row = 0;
    let kind = parts.first().map(|p| p.method);
    for p in parts {
        let k = p.maps.nrows();
        maps.slice_mut(s![row..row + k, ..]).assign(&p.maps);
        row += k;
        values.extend(p.values);
        if let Some(v) = p.baseline_values {
            baseline_values.get_or_insert_with(Vec::new).extend(v);
        }
        if let Some(r) = p.residuals {
            residuals.get_or_insert_with(Vec::new).extend(r);
        }
    }
    Ok(Attribution {
        method: kind.unwrap_or(nnexplain::attrib::Method::Gradient),
        maps,
        values,
        baseline_values,
        residuals,
    })
}

/// Sums a flattened sample over its channels onto `height × width`.
pub(crate) fn picture(values: &[f64], dims: Option<ImageDims>) -> (Vec<f64>, usize, usize) {
    match dims {
        Some(d) if d.len() == values.len() => {
            let mut out = vec![0.0; d.height * d.width];
            for c in 0..d.channels {
                for r in 0..d.height {
                    for col in 0..d.width {
                        out[r * d.width + col] += values[d.index(c, r, col)];
                    }
                }
            }
            (out, d.height, d.width)
        }
        _ => (values.to_vec(), 1, values.len()),
    }
}

/// The shape written to the .npy: the network's input shape for one sample,
/// `[N, ...]` for several.
fn out_shape(net: &Network, n: usize) -> Vec<usize> {
    let sample = net.input_shape();
    if n == 1 {
        return sample.to_vec();
    }
    let rest = if sample.first() == Some(&1) {
        &sample[1..]
    } else {
        sample
    };
    std::iter::once(n).chain(rest.iter().copied()).collect()
}

/// `nnexplain attribute MODEL INPUT --method M --out DIR`.
pub fn attribute_cmd(a: AttributeArgs) -> Result<ExitCode> {
    let method = MethodArg::parse(&a.method)?;
    let net = load(&a.model)?;
    let x = a.data.samples(&net)?;
    let n = x.nrows();
    if n == 0 {
        anyhow::bail!("{} holds no sample", a.data.input.display());
    }
    let n_out = net.output_len();
    if let Some(c) = a.target {
        if c >= n_out {
            anyhow::bail!("--target {c} is out of range: the network has {n_out} outputs");
        }
    }
    if method.has_steps() && a.steps == 0 {
        anyhow::bail!("--steps must be at least 1");
    }
    if method.has_noise() {
        if a.samples == 0 {
            anyhow::bail!("--samples must be at least 1");
        }
        if !(a.sigma.is_finite() && a.sigma >= 0.0) {
            anyhow::bail!(
                "--sigma must be a finite non-negative number, got {}",
                a.sigma
            );
        }
    }
    let objective = |c: usize| match a.objective {
        ObjectiveArg::Logit => Objective::Logit(c),
        ObjectiveArg::Softmax => Objective::Softmax(c),
    };
    let y = net.forward::<f64>(x.view())?;
    let predicted: Vec<usize> = y
        .rows()
        .into_iter()
        .map(|r| crate::argmax(r.iter().copied()))
        .collect();
    let classes: Vec<usize> = match a.target {
        Some(c) => vec![c; n],
        None => predicted.clone(),
    };
    let target = match a.target {
        Some(c) => Target::All(objective(c)),
        None => Target::PerSample(classes.iter().map(|&c| objective(c)).collect()),
    };
    let baseline = if method.has_baseline() {
        baseline_of(&a, &net, n)?
    } else {
        Baseline::Zero
    };
    let started = Instant::now();
    let attr = compute(method, &a, &net, x.view(), &target, &baseline)?;
    let wall_s = started.elapsed().as_secs_f64();
    let scores = match a.truth_above {
        Some(t) => {
            let maps: Vec<Vec<f64>> = attr.maps.rows().into_iter().map(|r| r.to_vec()).collect();
            Some(crate::cli::attack::truth_scores(&net, x.view(), &maps, t)?)
        }
        None => None,
    };
    let means = scores.as_deref().map(crate::cli::attack::mean_scores);

    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let name = method.name();
    let npy = a.out.join(format!("{name}.npy"));
    let data: Vec<f32> = attr.maps.iter().map(|&v| v as f32).collect();
    nnexplain::input::write_npy_f32(&npy, &out_shape(&net, n), &data)
        .with_context(|| format!("writing {}", npy.display()))?;

    let one = |v: &Option<Vec<f64>>| -> serde_json::Value {
        match v {
            None => serde_json::Value::Null,
            Some(v) if n == 1 => serde_json::json!(v[0]),
            Some(v) => serde_json::json!(v),
        }
    };
    let json = serde_json::json!({
        "method": name,
        "model": a.model,
        "input": a.data.input,
        "index": a.data.index,
        "samples": n,
        "shape": out_shape(&net, n),
        "target": if n == 1 { serde_json::json!(classes[0]) } else { serde_json::json!(classes) },
        "target_given": a.target.is_some(),
        "predicted": if n == 1 { serde_json::json!(predicted[0]) } else { serde_json::json!(predicted) },
        "objective": a.objective,
        "options": {
            "steps": method.has_steps().then_some(a.steps),
            "rule": method.has_steps().then(|| format!("{:?}", a.rule).to_lowercase()),
            "baseline": method.has_baseline().then(|| baseline.label()),
            "sigma": method.has_noise().then_some(a.sigma),
            "noise_samples": method.has_noise().then_some(a.samples),
            "seed": (method.has_noise() || a.baseline == "noise").then_some(a.seed),
            "scale": a.data.scale,
        },
        "f_input": one(&Some(attr.values.clone())),
        "f_baseline": one(&attr.baseline_values),
        "completeness_residual": one(&attr.residuals),
        "worst_completeness_residual": attr.worst_residual(),
        "wall_s": wall_s,
        "truth_above": a.truth_above,
        "truth_scores": scores.as_ref().map(|v| if n == 1 { serde_json::json!(v[0]) } else { serde_json::json!(v) }),
        "mean_truth_scores": means,
    });
    if let Some(m) = &means {
        say!("{name}: mean ground-truth scores over {n} samples {m}");
    }
    let jpath = a.out.join(format!("{name}.json"));
    std::fs::write(&jpath, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", jpath.display()))?;

    if n > 1 {
        let cpath = a.out.join(format!("{name}.csv"));
        let mut csv =
            String::from("sample,target,predicted,f_input,f_baseline,completeness_residual,localization,energy_game,positive_percentage,concentration\n");
        let opt = |v: &Option<Vec<f64>>, i: usize, sci: bool| {
            v.as_ref().map_or(String::new(), |v| {
                if sci {
                    format!("{:e}", v[i])
                } else {
                    format!("{}", v[i])
                }
            })
        };
        for i in 0..n {
            let sample = a.data.index.unwrap_or(0) + i;
            csv.push_str(&format!(
                "{sample},{},{},{},{},{},{}\n",
                classes[i],
                predicted[i],
                attr.values[i],
                opt(&attr.baseline_values, i, false),
                opt(&attr.residuals, i, true),
                crate::cli::attack::score_cells(scores.as_deref(), i)
            ));
        }
        std::fs::write(&cpath, csv).with_context(|| format!("writing {}", cpath.display()))?;
    }

    let dims = ImageDims::of_shape(net.input_shape());
    let mut pics = Vec::new();
    for i in 0..n.min(PNG_SAMPLES) {
        let (input_p, h, w) = picture(&x.row(i).to_vec(), dims);
        let (map_p, _, _) = picture(&attr.maps.row(i).to_vec(), dims);
        pics.push((input_p, map_p, h, w));
    }
    let mut panels = Vec::new();
    for (input_p, map_p, h, w) in &pics {
        panels.push(Panel {
            values: input_p,
            height: *h,
            width: *w,
            colour: Colour::Grey,
        });
        panels.push(Panel {
            values: map_p,
            height: *h,
            width: *w,
            colour: Colour::Signed,
        });
    }
    let (h, w) = pics.first().map_or((1, 1), |p| (p.2, p.3));
    let scale = (256 / h.max(w).max(1)).clamp(1, 16) as u32;
    let ppath = a.out.join(format!("{name}.png"));
    side_by_side(&ppath, &panels, scale).with_context(|| format!("writing {}", ppath.display()))?;

    let residual = attr
        .worst_residual()
        .map_or("-".to_string(), |r| format!("{r:.3e}"));
    say!(
        "{name}: {n} sample{} in {wall_s:.3} s  target {}  completeness residual {residual}  -> {}",
        if n == 1 { "" } else { "s" },
        if n == 1 {
            classes[0].to_string()
        } else {
            a.target.map_or("predicted".into(), |c| c.to_string())
        },
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
