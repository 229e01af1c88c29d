//! `robustness`: explanations judged and built by restricted adversarial
//! robustness (Hsieh et al. 2021): Greedy-AS, Greedy, One-Step Banzhaf,
//! leave-one-out and attribution maps ranked, their Robustness-S̄_r and
//! Robustness-S_r curves and AUCs, and, with `--exact`, the solver's exact
//! ℓ∞ values beside the attack's.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ndarray::Array2;
use nnexplain::attack::restricted::{
    DeepFool, Estimator, Features, PgdBisection, Precision, Restriction, SubsetRobustness,
};
use nnexplain::attack::{Clip, Goal, Norm, Rng};
use nnexplain::attrib::{
    integrated_gradients, leave_one_out, saliency, smoothgrad, Baseline, ImageDims, Noise, Rule,
    Target,
};
use nnexplain::explain::{greedy, greedy_as, one_step_banzhaf, Criterion, GreedyOptions};
use nnexplain::metrics::robustness::{auc, robustness_curves, top_units, RobustnessCurves};
use nnexplain::report::plot::{write_png, write_svg, Chart, Series};
use nnexplain::report::{side_by_side, Colour, Panel};
use nnexplain::{Network, Objective};
use serde::Serialize;

use crate::{load, InputArgs};

/// Samples drawn in heat maps.
const HEATMAP_SAMPLES: usize = 4;

/// The explainers, by their command-line names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Explainer {
    GreedyAs,
    Greedy,
    OneStepBanzhaf,
    Loo,
    Ig,
    Grad,
    SmoothGrad,
    Random,
}

const EXPLAINERS: [(&str, Explainer); 8] = [
    ("greedy-as", Explainer::GreedyAs),
    ("greedy", Explainer::Greedy),
    ("one-step-banzhaf", Explainer::OneStepBanzhaf),
    ("loo", Explainer::Loo),
    ("ig", Explainer::Ig),
    ("grad", Explainer::Grad),
    ("smoothgrad", Explainer::SmoothGrad),
    ("random", Explainer::Random),
];

impl Explainer {
    fn parse_list(s: &str) -> Result<Vec<Explainer>> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let e = super::by_name(&EXPLAINERS, part, "explainer")?;
            if !out.contains(&e) {
                out.push(e);
            }
        }
        if out.is_empty() {
            anyhow::bail!("--explainer names no explainer");
        }
        Ok(out)
    }
    fn name(self) -> &'static str {
        super::name_in(&EXPLAINERS, &self)
    }
    /// Whether the explainer optimises one of the paper's criteria.
    fn has_criterion(self) -> bool {
        matches!(
            self,
            Explainer::GreedyAs | Explainer::Greedy | Explainer::OneStepBanzhaf
        )
    }
}

/// Which objective the robustness explainers optimise.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum CriterionArg {
    /// Eq. 3: maximise Robustness-S̄_r (keep the perturbation off the explanation).
    Anchor,
    /// Eq. 4: minimise Robustness-S_r (perturb only the explanation).
    Perturb,
}

/// The norm of the perturbation.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum NormArg {
    /// Euclidean.
    L2,
    /// Largest coordinate.
    Linf,
}

/// How `g(f, x, S)` is estimated.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum EstimatorArg {
    /// Restricted DeepFool with a bisection back to the boundary (a few passes per set).
    Deepfool,
    /// The paper's PGD restricted to the set with a bisection on the radius.
    Pgd,
}

/// `nnexplain robustness`.
#[derive(clap::Args)]
pub struct RobustnessArgs {
    /// The ONNX model (a classifier).
    model: PathBuf,
    #[command(flatten)]
    data: InputArgs,
    /// Comma-separated: greedy-as, greedy, one-step-banzhaf, loo (leave-one-out),
    /// ig, grad, smoothgrad, random.
    #[arg(long, default_value = "greedy-as")]
    explainer: String,
    /// The objective of greedy-as, greedy and one-step-banzhaf.
    #[arg(long, value_enum, default_value = "anchor")]
    criterion: CriterionArg,
    /// Explain why the sample is not of class C: perturbations must make C win
    /// (the paper's targeted explanation, Eq. 2). Default: any other class.
    #[arg(long)]
    target: Option<usize>,
    /// Norm of the perturbations.
    #[arg(long, value_enum, default_value = "l2")]
    norm: NormArg,
    /// Estimator of g inside the explainers.
    #[arg(long, value_enum, default_value = "deepfool")]
    estimator: EstimatorArg,
    /// Estimator of g for the evaluation curves.
    #[arg(long, value_enum, default_value = "pgd")]
    curve_estimator: EstimatorArg,
    /// The box of valid inputs, "MIN,MAX" (after --scale), or "none".
    #[arg(long, default_value = "0,1")]
    clip: String,
    /// Largest fraction of the features on the curves (points every 5 %, the paper's 5-45 %).
    #[arg(long, default_value_t = 0.45)]
    fraction: f64,
    /// Greedy-AS and One-Step Banzhaf: coalitions sampled per regression.
    #[arg(long, default_value_t = 5000)]
    coalitions: usize,
    /// Greedy and Greedy-AS: fraction of the features added per round.
    #[arg(long, default_value_t = 0.05)]
    per_round: f64,
    /// Greedy-AS: probability that an unchosen feature joins a coalition.
    #[arg(long, default_value_t = 0.2)]
    inclusion: f64,
    /// Integrated Gradients: path intervals (zero baseline, midpoint rule).
    #[arg(long, default_value_t = 50)]
    ig_steps: usize,
    /// SmoothGrad: noise standard deviation, in input units.
    #[arg(long, default_value_t = 0.15)]
    sigma: f64,
    /// SmoothGrad: noisy copies.
    #[arg(long, default_value_t = 50)]
    noise_samples: usize,
    /// PGD: steps per attack.
    #[arg(long, default_value_t = 100)]
    pgd_steps: usize,
    /// PGD: the first (largest) radius of the bisection.
    #[arg(long, default_value_t = 10.0)]
    max_eps: f64,
    /// PGD: bisection steps on the radius.
    #[arg(long, default_value_t = 12)]
    bisections: usize,
    /// Seed of coalitions, noise, random starts and the random explainer.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also evaluate this feature set (.npy or .csv of 0/1, one per feature
    /// unit): g on it and off it.
    #[arg(long)]
    subset: Option<PathBuf>,
    /// Also compute every curve point (and --subset) exactly with the MILP:
    /// minimal l-inf perturbation, untargeted, piecewise-linear networks only.
    #[arg(long)]
    exact: bool,
    /// Limit per exact solve, in seconds (a point past it reports the bounds reached).
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Directory for robustness.json, robustness.csv, curves.png/svg and heatmap PNGs.
    #[arg(long)]
    out: PathBuf,
}

fn parse_clip(s: &str) -> Result<Clip> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(Clip::None);
    }
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let nums: Vec<f64> = parts
        .iter()
        .map(|p| p.parse::<f64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("--clip must be MIN,MAX or none, got '{s}'"))?;
    match nums[..] {
        [min, max] if min.is_finite() && max.is_finite() && min < max => {
            Ok(Clip::Range { min, max })
        }
        _ => anyhow::bail!("--clip must be MIN,MAX with MIN < MAX, or none, got '{s}'"),
    }
}

/// One explainer's result on one sample.
#[derive(Serialize)]
struct Explained {
    explainer: &'static str,
    /// Scores per feature unit (higher: more important).
    scores: Vec<f64>,
    /// Set evaluations spent (robustness explainers).
    evaluations: Option<usize>,
    rounds: Option<usize>,
    explain_s: f64,
    curves: RobustnessCurves,
    curve_s: f64,
    exact: Option<ExactCurves>,
}

/// The exact ℓ∞ values of the curve points.
#[derive(Serialize)]
struct ExactCurves {
    off_set: Vec<Option<f64>>,
    on_set: Vec<Option<f64>>,
    /// Solver status per point (off-set points first).
    status: Vec<String>,
    /// Points where the attack's value is below the solver's proven lower bound (must be 0).
    attack_below_exact: usize,
    auc_off_set: Option<f64>,
    auc_on_set: Option<f64>,
    solve_s: f64,
}

#[derive(Serialize)]
struct SubsetResult {
    size: usize,
    on_set: f64,
    on_set_reached: bool,
    off_set: f64,
    off_set_reached: bool,
    exact_on_set: Option<f64>,
    exact_off_set: Option<f64>,
}

#[derive(Serialize)]
struct SampleResult {
    sample: usize,
    predicted: usize,
    goal: Goal,
    unreached: f64,
    explained: Vec<Explained>,
    subset: Option<SubsetResult>,
}

struct Exact {
    backend: Box<dyn nnexplain::solve::Backend>,
    opts: nnexplain::solve::SolveOptions,
    input_box: (f64, f64),
}

impl Exact {
    /// `ε*_S` (ℓ∞) for one element mask, with the attack's value as the cap.
    fn solve(
        &self,
        net: &Network,
        x: &[f64],
        label: usize,
        free: &[bool],
        cap: f64,
    ) -> Result<(Option<f64>, Option<f64>, String)> {
        use nnexplain::explain::robustness::{exact_min_perturbation, ExactNorm};
        use nnexplain::solve::{CancelToken, Status};
        if !free.iter().any(|&f| f) {
            return Ok((None, None, "empty_set".into()));
        }
        let r = exact_min_perturbation(
            net,
            x,
            label,
            free,
            self.input_box,
            cap,
            ExactNorm::Linf,
            self.backend.as_ref(),
            &self.opts,
            &CancelToken::new(),
        )?;
        let value = match r.status {
            Status::Optimal => r.value,
            _ => None,
        };
        Ok((value, r.bound, r.status.as_str().to_string()))
    }
}

/// Scores per unit of an element-wise map: the sum over each unit's elements.
fn unit_scores(map: &[f64], features: &Features) -> Vec<f64> {
    let mut s = vec![0.0; features.units()];
    for (e, &v) in map.iter().enumerate() {
        s[features.unit_of(e)] += v;
    }
    s
}

/// Scores from a ranking: the first unit gets `units`, the last 1.
fn ranking_scores(order: &[usize], units: usize) -> Vec<f64> {
    let mut s = vec![0.0; units];
    for (r, &u) in order.iter().enumerate() {
        s[u] = (units - r) as f64;
    }
    s
}

/// `nnexplain robustness MODEL INPUT --explainer … --out DIR`.
pub fn robustness_cmd(a: RobustnessArgs) -> Result<ExitCode> {
    let explainers = Explainer::parse_list(&a.explainer)?;
    let net = load(&a.model)?;
    let x = a.data.samples(&net)?;
    let n = x.nrows();
    if n == 0 {
        anyhow::bail!("{} holds no sample", a.data.input.display());
    }
    let classes = net.output_len();
    if classes < 2 {
        anyhow::bail!("robustness needs a classifier; the network has {classes} output");
    }
    if let Some(t) = a.target {
        if t >= classes {
            anyhow::bail!("--target {t} is out of range: the network has {classes} outputs");
        }
    }
    if !(a.fraction > 0.05 - 1e-12 && a.fraction < 1.0) {
        anyhow::bail!("--fraction must lie in [0.05, 1), got {}", a.fraction);
    }
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        anyhow::bail!(
            "--timeout must be a positive number of seconds, got {}",
            a.timeout
        );
    }
    if explainers.contains(&Explainer::Ig) && a.ig_steps == 0 {
        anyhow::bail!("--ig-steps must be at least 1");
    }
    if explainers.contains(&Explainer::SmoothGrad)
        && (a.noise_samples == 0 || !(a.sigma.is_finite() && a.sigma >= 0.0))
    {
        anyhow::bail!(
            "smoothgrad needs --noise-samples ≥ 1 and a finite --sigma ≥ 0, got {} and {}",
            a.noise_samples,
            a.sigma
        );
    }
    let clip = parse_clip(&a.clip)?;
    let norm = match a.norm {
        NormArg::L2 => Norm::L2,
        NormArg::Linf => Norm::Linf,
    };
    let exact = if a.exact {
        Some(exact_setup(&a, &net, norm, &clip)?)
    } else {
        None
    };
    let features = Features::for_activation(&net, 0);
    let units = features.units();
    let subset = match &a.subset {
        Some(p) => Some(read_subset(p, units)?),
        None => None,
    };
    let fractions: Vec<f64> = (1..)
        .map(|k| 0.05 * k as f64)
        .take_while(|f| *f <= a.fraction + 1e-9)
        .collect();
    let estimator = |kind: EstimatorArg| match kind {
        EstimatorArg::Deepfool => Estimator::DeepFool(DeepFool::default()),
        EstimatorArg::Pgd => Estimator::Pgd(PgdBisection {
            steps: a.pgd_steps,
            max_eps: a.max_eps,
            bisections: a.bisections,
            seed: a.seed,
            ..PgdBisection::default()
        }),
    };
    let explain_est = estimator(a.estimator);
    let curve_est = estimator(a.curve_estimator);
    explain_est.check()?;
    curve_est.check()?;
    let setting = |precision| Restriction {
        norm,
        clip: clip.clone(),
        precision,
        ..Restriction::default()
    };
    let gopts = GreedyOptions {
        criterion: match a.criterion {
            CriterionArg::Anchor => Criterion::Anchor,
            CriterionArg::Perturb => Criterion::Perturb,
        },
        fraction: a.fraction,
        per_round: a.per_round,
        coalitions: a.coalitions,
        inclusion: a.inclusion,
        seed: a.seed,
    };

    let y = net.forward::<f64>(x.view())?;
    let predicted: Vec<usize> = y
        .rows()
        .into_iter()
        .map(|r| crate::argmax(r.iter().copied()))
        .collect();
    if let Some(t) = a.target {
        if let Some(i) = predicted.iter().position(|&p| p == t) {
            anyhow::bail!(
                "--target {t} is the class predicted for sample {}: a targeted explanation needs another class",
                a.data.index.unwrap_or(0) + i
            );
        }
    }

    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let started = Instant::now();
    let mut results: Vec<SampleResult> = Vec::with_capacity(n);
    for (i, &label) in predicted.iter().enumerate().take(n) {
        let sample = a.data.index.unwrap_or(0) + i;
        let xi: Vec<f64> = x.row(i).to_vec();
        let goal = match a.target {
            Some(target) => Goal::Targeted { target },
            None => Goal::Untargeted { label },
        };
        let game = SubsetRobustness::new(
            &net,
            &xi,
            goal,
            features.clone(),
            explain_est.clone(),
            setting(Precision::F32),
        )?;
        let judge = SubsetRobustness::new(
            &net,
            &xi,
            goal,
            features.clone(),
            curve_est.clone(),
            setting(Precision::F64),
        )?;
        let explained_class = a.target.unwrap_or(label);
        let mut explained = Vec::with_capacity(explainers.len());
        for &e in &explainers {
            let t0 = Instant::now();
            let (scores, evaluations, rounds) = explain_one(
                e,
                &a,
                &net,
                &xi,
                &features,
                &game,
                &gopts,
                explained_class,
                sample,
            )?;
            let explain_s = t0.elapsed().as_secs_f64();
            let t1 = Instant::now();
            let curves = robustness_curves(&judge, &scores, &fractions)?;
            let curve_s = t1.elapsed().as_secs_f64();
            let exact_curves = match &exact {
                Some(ex) => Some(exact_curves(ex, &judge, &scores, &curves, label)?),
                None => None,
            };
            explained.push(Explained {
                explainer: e.name(),
                scores,
                evaluations,
                rounds,
                explain_s,
                curves,
                curve_s,
                exact: exact_curves,
            });
        }
        let subset_result = match &subset {
            Some(s) => Some(evaluate_subset(s, &judge, exact.as_ref(), label)?),
            None => None,
        };
        {
            let mut err = std::io::stderr();
            let line: Vec<String> = explained
                .iter()
                .map(|e| {
                    format!(
                        "{} {:.2}/{:.2}",
                        e.explainer, e.curves.auc_off_set, e.curves.auc_on_set
                    )
                })
                .collect();
            let _ = writeln!(
                err,
                "sample {sample} ({}/{n}, {:.1} s): AUC S̄_r/S_r {}",
                i + 1,
                started.elapsed().as_secs_f64(),
                line.join("  ")
            );
        }
        results.push(SampleResult {
            sample,
            predicted: label,
            goal,
            unreached: judge.unreached(),
            explained,
            subset: subset_result,
        });
    }
    let wall_s = started.elapsed().as_secs_f64();
    write_outputs(&a, &net, &x, &explainers, &fractions, &results, wall_s)?;
    Ok(ExitCode::SUCCESS)
}

/// Checks that `--exact` can run and builds its backend.
fn exact_setup(a: &RobustnessArgs, net: &Network, norm: Norm, clip: &Clip) -> Result<Exact> {
    if norm != Norm::Linf {
        anyhow::bail!("--exact computes the minimal l-inf perturbation: add --norm linf");
    }
    if a.target.is_some() {
        anyhow::bail!("--exact solves the untargeted problem: drop --target");
    }
    if let Err(why) = net.exact_encoding() {
        anyhow::bail!("--exact needs a network the MILP encodes exactly: {why}");
    }
    let input_box = match clip {
        Clip::Range { min, max } => (*min, *max),
        Clip::None => (f64::NEG_INFINITY, f64::INFINITY),
        Clip::Box { .. } => anyhow::bail!("--exact takes one range for every input"),
    };
    let backend =
        crate::make_backend(crate::BackendKind::Milp).context("--exact needs the MILP backend")?;
    Ok(Exact {
        backend,
        opts: nnexplain::solve::SolveOptions {
            time_limit: Some(Duration::from_secs_f64(a.timeout)),
            ..Default::default()
        },
        input_box,
    })
}

/// Reads a 0/1 feature set of `units` values.
fn read_subset(path: &std::path::Path, units: usize) -> Result<Vec<bool>> {
    let arr = nnexplain::input::read_array(path)
        .with_context(|| format!("reading --subset {}", path.display()))?;
    if arr.len() != units {
        anyhow::bail!(
            "--subset {} holds {} values; the network's input has {units} feature units",
            path.display(),
            arr.len()
        );
    }
    arr.iter()
        .map(|&v| {
            if v == 0.0 {
                Ok(false)
            } else if v == 1.0 {
                Ok(true)
            } else {
                anyhow::bail!(
                    "--subset {} must hold only 0 and 1, found {v}",
                    path.display()
                )
            }
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn explain_one(
    e: Explainer,
    a: &RobustnessArgs,
    net: &Network,
    x: &[f64],
    features: &Features,
    game: &SubsetRobustness<'_>,
    gopts: &GreedyOptions,
    class: usize,
    sample: usize,
) -> Result<(Vec<f64>, Option<usize>, Option<usize>)> {
    let units = features.units();
    let xa = Array2::from_shape_vec((1, x.len()), x.to_vec())?;
    let target = Target::All(Objective::Logit(class));
    Ok(match e {
        Explainer::GreedyAs | Explainer::Greedy | Explainer::OneStepBanzhaf => {
            let r = match e {
                Explainer::GreedyAs => greedy_as(game, gopts)?,
                Explainer::Greedy => greedy(game, gopts)?,
                _ => one_step_banzhaf(game, gopts)?,
            };
            (
                ranking_scores(&r.order, units),
                Some(r.evaluations),
                Some(r.rounds),
            )
        }
        Explainer::Loo => {
            let unit_of: Vec<usize> = (0..x.len()).map(|e| features.unit_of(e)).collect();
            let s = leave_one_out(net, 0, x, &unit_of, units, &Objective::Logit(class), 0.0)?;
            (s, None, None)
        }
        Explainer::Ig => {
            let m = integrated_gradients(
                net,
                xa.view(),
                &Baseline::Zero,
                &target,
                a.ig_steps,
                Rule::Midpoint,
            )?;
            (unit_scores(&m.maps.row(0).to_vec(), features), None, None)
        }
        Explainer::Grad => {
            let m = saliency(net, xa.view(), &target)?;
            (unit_scores(&m.maps.row(0).to_vec(), features), None, None)
        }
        Explainer::SmoothGrad => {
            let noise = Noise::Given(
                Noise::Gaussian {
                    sigma: a.sigma,
                    samples: a.noise_samples,
                    seed: a.seed,
                }
                .draws_for(sample..sample + 1, x.len())?,
            );
            let m = smoothgrad(net, xa.view(), &target, &noise)?;
            (unit_scores(&m.maps.row(0).to_vec(), features), None, None)
        }
        Explainer::Random => {
            let mut rng = Rng::for_sample(a.seed, sample, 0);
            ((0..units).map(|_| rng.uniform()).collect(), None, None)
        }
    })
}

fn exact_curves(
    ex: &Exact,
    judge: &SubsetRobustness<'_>,
    scores: &[f64],
    curves: &RobustnessCurves,
    label: usize,
) -> Result<ExactCurves> {
    let t = Instant::now();
    let features = judge.features();
    let mut off = Vec::new();
    let mut on = Vec::new();
    let mut status = Vec::new();
    let mut below = 0;
    for on_side in [false, true] {
        for (k, &size) in curves.sizes.iter().enumerate() {
            let set = top_units(scores, size);
            let mask = if on_side {
                features.element_mask(&set)
            } else {
                features.complement_mask(&set)
            };
            let attack = if on_side {
                curves.on_set[k]
            } else {
                curves.off_set[k]
            };
            let reached = if on_side {
                curves.on_set_reached[k]
            } else {
                curves.off_set_reached[k]
            };
            // A little slack so that the attack's own point lies inside the encoded box.
            let cap = if reached {
                attack * (1.0 + 1e-6) + 1e-9
            } else {
                judge.unreached()
            };
            let (value, bound, st) = ex.solve(judge.net(), judge.x(), label, &mask, cap)?;
            if reached && bound.is_some_and(|b| attack < b - 1e-6) {
                below += 1;
            }
            // Within the cap and infeasible: nothing closer than the attack's point.
            let value = match (value, st.as_str()) {
                (None, "infeasible") if reached => Some(attack),
                (None, "infeasible") => Some(judge.unreached()),
                (v, _) => v,
            };
            if on_side {
                on.push(value);
            } else {
                off.push(value);
            }
            status.push(st);
        }
    }
    let pct: Vec<f64> = curves.fractions.iter().map(|f| 100.0 * f).collect();
    let area = |v: &[Option<f64>]| -> Option<f64> {
        let y: Option<Vec<f64>> = v.iter().copied().collect();
        y.map(|y| auc(&pct, &y))
    };
    Ok(ExactCurves {
        auc_off_set: area(&off),
        auc_on_set: area(&on),
        off_set: off,
        on_set: on,
        status,
        attack_below_exact: below,
        solve_s: t.elapsed().as_secs_f64(),
    })
}

fn evaluate_subset(
    set: &[bool],
    judge: &SubsetRobustness<'_>,
    exact: Option<&Exact>,
    label: usize,
) -> Result<SubsetResult> {
    let f = judge.features();
    let masks = vec![f.element_mask(set), f.complement_mask(set)];
    let v = judge.of_elements(&masks)?;
    let (mut exact_on, mut exact_off) = (None, None);
    if let Some(ex) = exact {
        for (k, slot) in [&mut exact_on, &mut exact_off].into_iter().enumerate() {
            let cap = if v[k].1 { v[k].0 } else { judge.unreached() };
            let (value, _, st) = ex.solve(judge.net(), judge.x(), label, &masks[k], cap)?;
            *slot = match (value, st.as_str()) {
                (None, "infeasible") => Some(cap),
                (v, _) => v,
            };
        }
    }
    Ok(SubsetResult {
        size: set.iter().filter(|&&s| s).count(),
        on_set: v[0].0,
        on_set_reached: v[0].1,
        off_set: v[1].0,
        off_set_reached: v[1].1,
        exact_on_set: exact_on,
        exact_off_set: exact_off,
    })
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, k) = v.fold((0.0, 0usize), |(s, k), x| (s + x, k + 1));
    if k == 0 {
        f64::NAN
    } else {
        s / k as f64
    }
}

fn write_outputs(
    a: &RobustnessArgs,
    net: &Network,
    x: &Array2<f64>,
    explainers: &[Explainer],
    fractions: &[f64],
    results: &[SampleResult],
    wall_s: f64,
) -> Result<()> {
    let pct: Vec<f64> = fractions.iter().map(|f| 100.0 * f).collect();
    let mut summary = Vec::new();
    let mut off_series = Vec::new();
    let mut on_series = Vec::new();
    for (k, e) in explainers.iter().enumerate() {
        let per = |f: &dyn Fn(&Explained) -> f64| mean(results.iter().map(|r| f(&r.explained[k])));
        let off_curve: Vec<f64> = (0..fractions.len())
            .map(|j| per(&|x| x.curves.off_set[j]))
            .collect();
        let on_curve: Vec<f64> = (0..fractions.len())
            .map(|j| per(&|x| x.curves.on_set[j]))
            .collect();
        let exact_auc = |on: bool| -> Option<f64> {
            let v: Option<Vec<f64>> = results
                .iter()
                .map(|r| {
                    r.explained[k].exact.as_ref().and_then(|x| {
                        if on {
                            x.auc_on_set
                        } else {
                            x.auc_off_set
                        }
                    })
                })
                .collect();
            v.map(|v| mean(v.into_iter()))
        };
        summary.push(serde_json::json!({
            "explainer": e.name(),
            "auc_off_set": per(&|x| x.curves.auc_off_set),
            "auc_on_set": per(&|x| x.curves.auc_on_set),
            "off_set_curve": off_curve,
            "on_set_curve": on_curve,
            "explain_s": per(&|x| x.explain_s),
            "curve_s": per(&|x| x.curve_s),
            "exact_auc_off_set": exact_auc(false),
            "exact_auc_on_set": exact_auc(true),
        }));
        off_series.push(Series {
            name: e.name().into(),
            x: pct.clone(),
            y: off_curve,
        });
        on_series.push(Series {
            name: e.name().into(),
            x: pct.clone(),
            y: on_curve,
        });
    }
    let norm = match a.norm {
        NormArg::L2 => "l2",
        NormArg::Linf => "linf",
    };
    let json = serde_json::json!({
        "model": a.model,
        "input": a.data.input,
        "index": a.data.index,
        "samples": results.len(),
        "options": {
            "explainers": explainers.iter().map(|e| e.name()).collect::<Vec<_>>(),
            "criterion": format!("{:?}", a.criterion).to_lowercase(),
            "criterion_applies_to": explainers.iter().filter(|e| e.has_criterion()).map(|e| e.name()).collect::<Vec<_>>(),
            "target": a.target,
            "norm": norm,
            "estimator": format!("{:?}", a.estimator).to_lowercase(),
            "curve_estimator": format!("{:?}", a.curve_estimator).to_lowercase(),
            "clip": a.clip,
            "fractions": fractions,
            "coalitions": a.coalitions,
            "per_round": a.per_round,
            "inclusion": a.inclusion,
            "pgd_steps": a.pgd_steps,
            "max_eps": a.max_eps,
            "bisections": a.bisections,
            "seed": a.seed,
            "exact": a.exact,
            "timeout_s": a.exact.then_some(a.timeout),
            "scale": a.data.scale,
        },
        "summary": summary,
        "results": results,
        "wall_s": wall_s,
    });
    let jpath = a.out.join("robustness.json");
    std::fs::write(&jpath, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", jpath.display()))?;

    let mut csv = String::from(
        "sample,predicted,explainer,auc_off_set,auc_on_set,off_set_unreached,on_set_unreached,explain_s,curve_s,exact_auc_off_set,exact_auc_on_set,attack_below_exact\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
    for r in results {
        for e in &r.explained {
            csv.push_str(&format!(
                "{},{},{},{},{},{},{},{:.4},{:.4},{},{},{}\n",
                r.sample,
                r.predicted,
                e.explainer,
                e.curves.auc_off_set,
                e.curves.auc_on_set,
                e.curves.off_set_unreached,
                e.curves.on_set_unreached,
                e.explain_s,
                e.curve_s,
                opt(e.exact.as_ref().and_then(|x| x.auc_off_set)),
                opt(e.exact.as_ref().and_then(|x| x.auc_on_set)),
                e.exact
                    .as_ref()
                    .map_or(String::new(), |x| x.attack_below_exact.to_string()),
            ));
        }
    }
    let cpath = a.out.join("robustness.csv");
    std::fs::write(&cpath, csv).with_context(|| format!("writing {}", cpath.display()))?;

    let of = if results.len() == 1 {
        String::new()
    } else {
        format!(", mean of {}", results.len())
    };
    let charts = [
        Chart {
            title: format!("Robustness-S̄r (higher is better{of})"),
            x_label: "% of features in the explanation".into(),
            y_label: norm.into(),
            series: off_series,
        },
        Chart {
            title: format!("Robustness-Sr (lower is better{of})"),
            x_label: "% of features in the explanation".into(),
            y_label: norm.into(),
            series: on_series,
        },
    ];
    write_png(&a.out.join("curves.png"), &charts)?;
    write_svg(&a.out.join("curves.svg"), &charts)?;

    let dims = ImageDims::of_shape(net.input_shape());
    let features = Features::for_activation(net, 0);
    for (i, r) in results.iter().enumerate().take(HEATMAP_SAMPLES) {
        let (input_p, h, w) = crate::cli::attribute::picture(&x.row(i).to_vec(), dims);
        let maps: Vec<Vec<f64>> = r
            .explained
            .iter()
            .map(|e| {
                // Rank per unit, 1 for the first and 0 past the curve's last point.
                let k = ((a.fraction * features.units() as f64).round() as usize).max(1);
                let mut order: Vec<usize> = (0..e.scores.len()).collect();
                order.sort_by(|&p, &q| e.scores[q].abs().total_cmp(&e.scores[p].abs()));
                let mut unit = vec![0.0; e.scores.len()];
                for (rank, &u) in order.iter().take(k).enumerate() {
                    unit[u] = 1.0 - rank as f64 / k as f64;
                }
                let elems: Vec<f64> = (0..x.ncols())
                    .map(|el| unit[features.unit_of(el)])
                    .collect();
                let per_pixel = crate::cli::attribute::picture(&elems, dims).0;
                let channels = dims.map_or(1, |d| d.channels) as f64;
                per_pixel.into_iter().map(|v| v / channels).collect()
            })
            .collect();
        let mut panels = vec![Panel {
            values: &input_p,
            height: h,
            width: w,
            colour: Colour::Grey,
        }];
        for m in &maps {
            panels.push(Panel {
                values: m,
                height: h,
                width: w,
                colour: Colour::Signed,
            });
        }
        let scale = (256 / h.max(w).max(1)).clamp(1, 16) as u32;
        let path = a.out.join(format!("heatmap_{}.png", r.sample));
        side_by_side(&path, &panels, scale)
            .with_context(|| format!("writing {}", path.display()))?;
    }

    for s in &summary {
        say!(
            "{:<17} AUC Robustness-S̄_r {:>8.3}  Robustness-S_r {:>8.3}  explain {:.3} s/sample{}",
            s["explainer"].as_str().unwrap_or("?"),
            s["auc_off_set"].as_f64().unwrap_or(f64::NAN),
            s["auc_on_set"].as_f64().unwrap_or(f64::NAN),
            s["explain_s"].as_f64().unwrap_or(f64::NAN),
            match (
                s["exact_auc_off_set"].as_f64(),
                s["exact_auc_on_set"].as_f64()
            ) {
                (Some(o), Some(p)) => format!("  exact {o:.3} / {p:.3}"),
                _ => String::new(),
            }
        );
    }
    say!(
        "{} sample{} in {wall_s:.1} s -> {}",
        results.len(),
        if results.len() == 1 { "" } else { "s" },
        a.out.display()
    );
    Ok(())
}
