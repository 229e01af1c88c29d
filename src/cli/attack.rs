//! `attack` and `boundary`: adversarial points and boundary attributions on
//! the command line.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use ndarray::{Array2, ArrayView2};
use nnexplain::attack::{
    apgd, big, boundary_search, bsm, carlini_wagner, pgd, ApgdLoss, ApgdOptions, AttackResult,
    BigBaselines, BoundaryObjective, BoundaryOptions, BoundarySearch, Clip, CwOptions, Goal, Loss,
    Method, Norm, PgdOptions,
};
use nnexplain::metrics::attribution::{box_scores, BoxScores};
use nnexplain::model::Reference;
use nnexplain::report::{channel_sum, side_by_side, Colour, Panel};
use nnexplain::Network;

use crate::{load, InputArgs};

/// Samples per batch in dataset mode (progress is reported after each).
const CHUNK: usize = 32;

/// The attack.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum AttackMethod {
    /// Projected gradient descent (Madry et al. 2018).
    Pgd,
    /// Carlini–Wagner ℓ2 (tanh change of variables, Adam, binary search on c).
    Cw,
    /// AutoPGD (Croce & Hein 2020).
    Apgd,
}

/// The threat model's norm.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum NormArg {
    /// ℓ∞.
    Linf,
    /// ℓ2.
    L2,
}

impl From<NormArg> for Norm {
    fn from(n: NormArg) -> Norm {
        match n {
            NormArg::Linf => Norm::Linf,
            NormArg::L2 => Norm::L2,
        }
    }
}

/// The loss of PGD (ce, margin) or AutoPGD (ce, dlr).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LossArg {
    /// Cross-entropy.
    Ce,
    /// Negative margin (PGD).
    Margin,
    /// Difference of Logits Ratio (AutoPGD).
    Dlr,
}

/// The box every point stays in.
#[derive(clap::Args)]
pub struct BoxArgs {
    /// Lower end of the valid input range (with --box-max), e.g. 0 for pixels.
    #[arg(long, requires = "box_max", allow_hyphen_values = true)]
    box_min: Option<f64>,
    /// Upper end of the valid input range (with --box-min), e.g. 1 for pixels.
    #[arg(long, requires = "box_min", allow_hyphen_values = true)]
    box_max: Option<f64>,
}

impl BoxArgs {
    fn clip(&self) -> Result<Clip> {
        match (self.box_min, self.box_max) {
            (Some(min), Some(max)) => {
                if !(min.is_finite() && max.is_finite() && min <= max) {
                    anyhow::bail!("--box-min {min} --box-max {max} is not a box");
                }
                Ok(Clip::Range { min, max })
            }
            _ => Ok(Clip::None),
        }
    }
}

/// `nnexplain attack`.
#[derive(clap::Args)]
pub struct AttackArgs {
    /// The ONNX model.
    model: PathBuf,
    #[command(flatten)]
    data: InputArgs,
    /// The attack.
    #[arg(long, value_enum, default_value = "pgd")]
    method: AttackMethod,
    /// The norm (CW is always ℓ2).
    #[arg(long, value_enum, default_value = "linf")]
    norm: NormArg,
    /// Radius of the ball (required for pgd and apgd; for cw, points farther are rejected).
    #[arg(long)]
    eps: Option<f64>,
    /// Targeted attack: this class must win (default: untargeted, leave the predicted class).
    #[arg(long)]
    target: Option<usize>,
    /// Steps per restart (Adam steps per constant for cw).
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// Random restarts (binary-search steps for cw).
    #[arg(long, default_value_t = 1)]
    restarts: usize,
    /// Loss: ce or margin for pgd, ce or dlr for apgd.
    #[arg(long, value_enum)]
    loss: Option<LossArg>,
    /// Seed of the random starts.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    clip: BoxArgs,
    /// Directory for adversarial.npy and attack.json (attack.csv in dataset mode).
    #[arg(long)]
    out: PathBuf,
}

fn predicted(net: &Network, x: ArrayView2<f64>) -> Result<Vec<usize>> {
    let y = net.forward::<f64>(x)?;
    Ok(y.rows()
        .into_iter()
        .map(|r| crate::argmax(r.iter().copied()))
        .collect())
}

/// The shape of `n` samples: `[n, …]` replacing a leading batch of 1.
fn batch_shape(net: &Network, n: usize) -> Vec<usize> {
    let s = net.input_shape();
    let tail = if s.first() == Some(&1) && s.len() > 1 {
        &s[1..]
    } else {
        s
    };
    std::iter::once(n).chain(tail.iter().copied()).collect()
}

fn write_npy(path: &Path, shape: &[usize], rows: &[Vec<f64>]) -> Result<()> {
    let data: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
    nnexplain::input::write_npy_f32(path, shape, &data)
        .with_context(|| format!("writing {}", path.display()))
}

fn tract_class(reference: &Reference, x: &[f64]) -> Result<usize> {
    let a = Array2::from_shape_vec((1, x.len()), x.iter().map(|&v| v as f32).collect())?;
    let y = reference.run(a.view())?;
    Ok(crate::argmax(y.iter().map(|&v| v as f64)))
}

impl AttackArgs {
    fn run(&self, net: &Network, x: ArrayView2<f64>, goals: &[Goal]) -> Result<Vec<AttackResult>> {
        let clip = self.clip.clip()?;
        let norm: Norm = self.norm.into();
        let need_eps = || {
            self.eps.ok_or_else(|| {
                anyhow::anyhow!(
                    "--eps is required for {}",
                    format!("{:?}", self.method).to_lowercase()
                )
            })
        };
        Ok(match self.method {
            AttackMethod::Pgd => {
                let loss = match self.loss {
                    None | Some(LossArg::Ce) => Loss::CrossEntropy,
                    Some(LossArg::Margin) => Loss::Margin,
                    Some(LossArg::Dlr) => anyhow::bail!("pgd takes --loss ce or margin"),
                };
                pgd(
                    net,
                    x,
                    goals,
                    &PgdOptions {
                        norm,
                        eps: need_eps()?,
                        steps: self.steps,
                        restarts: self.restarts,
                        loss,
                        clip,
                        seed: self.seed,
                        ..Default::default()
                    },
                )?
            }
            AttackMethod::Apgd => {
                let loss = match self.loss {
                    None | Some(LossArg::Ce) => ApgdLoss::CrossEntropy,
                    Some(LossArg::Dlr) => ApgdLoss::Dlr,
                    Some(LossArg::Margin) => anyhow::bail!("apgd takes --loss ce or dlr"),
                };
                apgd(
                    net,
                    x,
                    goals,
                    &ApgdOptions {
                        norm,
                        eps: need_eps()?,
                        steps: self.steps,
                        restarts: self.restarts,
                        loss,
                        clip,
                        seed: self.seed,
                        ..Default::default()
                    },
                )?
            }
            AttackMethod::Cw => {
                if self.loss.is_some() {
                    anyhow::bail!("cw has no --loss (it minimises ‖δ‖² + c·max(margin, −κ))");
                }
                if matches!(self.norm, NormArg::Linf) {
                    anyhow::bail!("cw is an ℓ2 attack: use --norm l2");
                }
                carlini_wagner(
                    net,
                    x,
                    goals,
                    &CwOptions {
                        steps: self.steps,
                        binary_steps: self.restarts.max(1),
                        initial_const: 0.1,
                        lr: 0.05,
                        clip,
                        eps: self.eps,
                        ..Default::default()
                    },
                )?
            }
        })
    }
}

/// `nnexplain attack MODEL INPUT --method pgd|cw|apgd …`.
pub fn attack_cmd(a: AttackArgs) -> Result<ExitCode> {
    let net = load(&a.model)?;
    let xs = a.data.samples(&net)?;
    if let Some(t) = a.target {
        if t >= net.output_len() {
            anyhow::bail!(
                "--target {t} is not a class of the network ({} outputs)",
                net.output_len()
            );
        }
    }
    let reference = Reference::from_onnx(&a.model, 1)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let n = xs.nrows();
    let labels = predicted(&net, xs.view())?;
    let goals: Vec<Goal> = labels
        .iter()
        .map(|&label| match a.target {
            Some(target) => Goal::Targeted { target },
            None => Goal::Untargeted { label },
        })
        .collect();
    let t0 = std::time::Instant::now();
    let mut results = Vec::with_capacity(n);
    for start in (0..n).step_by(CHUNK) {
        let end = (start + CHUNK).min(n);
        let r = a.run(
            &net,
            xs.slice(ndarray::s![start..end, ..]),
            &goals[start..end],
        )?;
        results.extend(r);
        if n > 1 {
            eprintln!(
                "{end}/{n} samples, {} succeeded, {:.1} s",
                results.iter().filter(|r| r.success).count(),
                t0.elapsed().as_secs_f64()
            );
        }
    }
    let wall_s = t0.elapsed().as_secs_f64();
    let tract: Vec<usize> = results
        .iter()
        .map(|r| tract_class(&reference, &r.x))
        .collect::<Result<_>>()?;
    let confirmed = |i: usize| match goals[i] {
        Goal::Untargeted { label } => tract[i] != label,
        Goal::Targeted { target } => tract[i] == target,
    };
    let shape = if n == 1 {
        net.input_shape().to_vec()
    } else {
        batch_shape(&net, n)
    };
    let points: Vec<Vec<f64>> = results.iter().map(|r| r.x.clone()).collect();
    write_npy(&a.out.join("adversarial.npy"), &shape, &points)?;
    let succeeded = results.iter().filter(|r| r.success).count();
    let common = serde_json::json!({
        "model": a.model, "input": a.data.input, "method": format!("{:?}", a.method).to_lowercase(),
        "norm": Norm::from(a.norm), "eps": a.eps, "steps": a.steps, "restarts": a.restarts,
        "seed": a.seed, "clip": a.clip.clip()?, "wall_s": wall_s,
    });
    let json = if n == 1 {
        let r = &results[0];
        say!(
            "{}  label {}  {}  predicted {} (tract {})  margin {:.6}  distance {:.6} (linf {:.6}, l2 {:.6})",
            if r.success { "adversarial" } else { "not found" },
            labels[0],
            a.target.map_or("untargeted".to_string(), |t| format!("target {t}")),
            r.predicted,
            tract[0],
            r.margin,
            r.distance,
            r.linf,
            r.l2
        );
        serde_json::json!({
            "settings": common, "label": labels[0], "goal": goals[0],
            "success": r.success, "margin": r.margin, "distance": r.distance,
            "linf": r.linf, "l2": r.l2, "predicted": r.predicted,
            "tract_class": tract[0], "tract_confirms": confirmed(0), "gradients": r.gradients,
        })
    } else {
        let csv = a.out.join("attack.csv");
        let mut f =
            std::fs::File::create(&csv).with_context(|| format!("creating {}", csv.display()))?;
        writeln!(
            f,
            "index,label,target,success,margin,distance,linf,l2,predicted,tract_class,tract_confirms"
        )?;
        for (i, r) in results.iter().enumerate() {
            writeln!(
                f,
                "{i},{},{},{},{},{},{},{},{},{},{}",
                labels[i],
                a.target.map_or(String::new(), |t| t.to_string()),
                r.success,
                r.margin,
                r.distance,
                r.linf,
                r.l2,
                r.predicted,
                tract[i],
                confirmed(i)
            )?;
        }
        let mean = |f: &dyn Fn(&AttackResult) -> f64| {
            let v: Vec<f64> = results.iter().filter(|r| r.success).map(f).collect();
            if v.is_empty() {
                None
            } else {
                Some(v.iter().sum::<f64>() / v.len() as f64)
            }
        };
        say!(
            "{succeeded}/{n} adversarial ({} confirmed by tract), mean distance {}  {:.1} s",
            (0..n)
                .filter(|&i| results[i].success && confirmed(i))
                .count(),
            mean(&|r| r.distance).map_or("-".into(), |d| format!("{d:.6}")),
            wall_s
        );
        serde_json::json!({
            "settings": common, "samples": n, "succeeded": succeeded,
            "confirmed": (0..n).filter(|&i| results[i].success && confirmed(i)).count(),
            "mean_distance": mean(&|r| r.distance), "mean_linf": mean(&|r| r.linf), "mean_l2": mean(&|r| r.l2),
            "csv": "attack.csv",
        })
    };
    let jpath = a.out.join("attack.json");
    std::fs::write(&jpath, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", jpath.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// The boundary attribution.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum BoundaryMethod {
    /// Boundary-based Saliency Map (Wang et al. 2022, Definition 5).
    Bsm,
    /// Boundary-based Integrated Gradient (Wang et al. 2022, Definition 6).
    Big,
}

/// An attack of the boundary search.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum SearchArg {
    /// PGD.
    Pgd,
    /// Carlini–Wagner ℓ2.
    Cw,
    /// AutoPGD with cross-entropy.
    ApgdCe,
    /// AutoPGD with DLR.
    ApgdDlr,
}

/// What BSM and BIG differentiate.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ObjectiveArg {
    /// The label's logit minus the logit of the class reached (the boundary normal).
    Normal,
    /// The label's logit.
    Logit,
    /// The label's softmax probability.
    Softmax,
}

/// BIG's baselines.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum BaselinesArg {
    /// The closest boundary point.
    Closest,
    /// The average over every boundary point found.
    Average,
}

/// `nnexplain boundary`.
#[derive(clap::Args)]
pub struct BoundaryArgs {
    /// The ONNX model.
    model: PathBuf,
    #[command(flatten)]
    data: InputArgs,
    /// The attribution.
    #[arg(long, value_enum, default_value = "big")]
    method: BoundaryMethod,
    /// Radii of the search, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.5,1,2,4")]
    eps: Vec<f64>,
    /// The norm of the search.
    #[arg(long, value_enum, default_value = "l2")]
    norm: NormArg,
    /// The attacks ensembled, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "pgd,cw,apgd-ce,apgd-dlr"
    )]
    attacks: Vec<SearchArg>,
    /// Steps of PGD and AutoPGD (and of CW's Adam per constant).
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// Random restarts of PGD and AutoPGD.
    #[arg(long, default_value_t = 1)]
    restarts: usize,
    /// Seed of the random starts.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    clip: BoxArgs,
    /// The function differentiated.
    #[arg(long, value_enum, default_value = "normal")]
    objective: ObjectiveArg,
    /// BIG: baselines.
    #[arg(long, value_enum, default_value = "average")]
    baselines: BaselinesArg,
    /// BIG: trapezoid intervals.
    #[arg(long, default_value_t = 20)]
    big_steps: usize,
    /// Score every map against the ground truth "pixels whose value (mean
    /// over channels) is above T" (the strokes of a digit, say): Localization,
    /// Energy Game, Positive Percentage and Concentration (Wang et al. 2022,
    /// Defs. 8-11), per sample in the CSV and as means.
    #[arg(long)]
    truth_above: Option<f64>,
    /// Directory for <method>.npy, <method>.json and <method>.png (<method>.csv in dataset mode).
    #[arg(long)]
    out: PathBuf,
}

/// The four ground-truth scores (Wang et al. 2022, Defs. 8-11) of every map,
/// against the pixels whose value (mean over channels) is above `t`.
pub(crate) fn truth_scores(
    net: &Network,
    xs: ArrayView2<f64>,
    maps: &[Vec<f64>],
    t: f64,
) -> Result<Vec<BoxScores>> {
    if !t.is_finite() {
        anyhow::bail!("--truth-above must be a finite number, got {t}");
    }
    let (h, w) = picture_dims(net);
    let channels = (net.input_len() / (h * w).max(1)).max(1) as f64;
    xs.rows()
        .into_iter()
        .zip(maps)
        .enumerate()
        .map(|(i, (x, m))| {
            let truth: Vec<bool> = channel_sum(&x.to_vec(), h, w)
                .iter()
                .map(|v| v / channels > t)
                .collect();
            if !truth.iter().any(|&b| b) {
                anyhow::bail!(
                    "sample {i} has no pixel above --truth-above {t}: its ground truth is empty"
                );
            }
            Ok(box_scores(&channel_sum(m, h, w), &truth, h, w)?)
        })
        .collect()
}

/// The four score cells of sample `i` of a CSV row (empty without scores).
pub(crate) fn score_cells(scores: Option<&[BoxScores]>, i: usize) -> String {
    scores.map_or_else(
        || ",,,".to_string(),
        |v| {
            let s = v[i];
            format!(
                "{},{},{},{}",
                s.localization, s.energy_game, s.positive_percentage, s.concentration
            )
        },
    )
}

/// Means of the four scores, as JSON.
pub(crate) fn mean_scores(scores: &[BoxScores]) -> serde_json::Value {
    let n = scores.len().max(1) as f64;
    let mean = |f: fn(&BoxScores) -> f64| scores.iter().map(f).sum::<f64>() / n;
    serde_json::json!({
        "localization": mean(|s| s.localization),
        "energy_game": mean(|s| s.energy_game),
        "positive_percentage": mean(|s| s.positive_percentage),
        "concentration": mean(|s| s.concentration),
    })
}

/// A picture size for a flattened input: the last two dimensions of size
/// above 1, or a square, or one row.
fn picture_dims(net: &Network) -> (usize, usize) {
    let dims: Vec<usize> = net
        .input_shape()
        .iter()
        .copied()
        .filter(|&d| d > 1)
        .collect();
    let n = net.input_len();
    match dims.len() {
        0 => (1, n.max(1)),
        1 => {
            let s = (n as f64).sqrt().round() as usize;
            if s * s == n {
                (s, s)
            } else {
                (1, n)
            }
        }
        k => (dims[k - 2], dims[k - 1]),
    }
}

/// `nnexplain boundary MODEL INPUT --method bsm|big …`.
pub fn boundary_cmd(a: BoundaryArgs) -> Result<ExitCode> {
    let net = load(&a.model)?;
    let xs = a.data.samples(&net)?;
    if a.attacks.is_empty() {
        anyhow::bail!("--attacks is empty");
    }
    if a.big_steps == 0 {
        anyhow::bail!("--big-steps must be at least 1");
    }
    let opts = BoundaryOptions {
        norm: a.norm.into(),
        radii: a.eps.clone(),
        methods: a
            .attacks
            .iter()
            .map(|m| match m {
                SearchArg::Pgd => Method::Pgd,
                SearchArg::Cw => Method::Cw,
                SearchArg::ApgdCe => Method::ApgdCe,
                SearchArg::ApgdDlr => Method::ApgdDlr,
            })
            .collect(),
        clip: a.clip.clip()?,
        steps: a.steps,
        restarts: a.restarts,
        cw: CwOptions {
            steps: a.steps,
            ..Default::default()
        },
        seed: a.seed,
        ..Default::default()
    };
    let objective = match a.objective {
        ObjectiveArg::Normal => BoundaryObjective::Normal,
        ObjectiveArg::Logit => BoundaryObjective::Logit,
        ObjectiveArg::Softmax => BoundaryObjective::Softmax,
    };
    let baselines = match a.baselines {
        BaselinesArg::Closest => BigBaselines::Closest,
        BaselinesArg::Average => BigBaselines::Average,
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let n = xs.nrows();
    let labels = predicted(&net, xs.view())?;
    let t0 = std::time::Instant::now();
    let mut searches: Vec<BoundarySearch> = Vec::with_capacity(n);
    let mut maps: Vec<Vec<f64>> = Vec::with_capacity(n);
    let mut residuals: Vec<Option<f64>> = Vec::with_capacity(n);
    for start in (0..n).step_by(CHUNK) {
        let end = (start + CHUNK).min(n);
        let x = xs.slice(ndarray::s![start..end, ..]);
        let s = boundary_search(&net, x, &labels[start..end], &opts)?;
        match a.method {
            BoundaryMethod::Bsm => {
                let g = bsm(&net, &labels[start..end], &s, objective)?;
                maps.extend(g.rows().into_iter().map(|r| r.to_vec()));
                residuals.extend(std::iter::repeat_n(None, end - start));
            }
            BoundaryMethod::Big => {
                let m = big(
                    &net,
                    x,
                    &labels[start..end],
                    &s,
                    objective,
                    baselines,
                    a.big_steps,
                )?;
                residuals.extend(m.iter().map(|b| Some(b.completeness_residual)));
                maps.extend(m.into_iter().map(|b| b.attributions));
            }
        }
        searches.extend(s);
        if n > 1 {
            eprintln!(
                "{end}/{n} samples, {} boundary points found, {:.1} s",
                searches.iter().filter(|s| s.closest.success).count(),
                t0.elapsed().as_secs_f64()
            );
        }
    }
    let wall_s = t0.elapsed().as_secs_f64();
    let scores = match a.truth_above {
        Some(t) => Some(truth_scores(&net, xs.view(), &maps, t)?),
        None => None,
    };
    let name = format!("{:?}", a.method).to_lowercase();
    let shape = if n == 1 {
        net.input_shape().to_vec()
    } else {
        batch_shape(&net, n)
    };
    write_npy(&a.out.join(format!("{name}.npy")), &shape, &maps)?;
    let settings = serde_json::json!({
        "model": a.model, "input": a.data.input, "method": name, "search": opts,
        "objective": objective, "baselines": baselines, "big_steps": a.big_steps, "wall_s": wall_s,
    });
    let json = if n == 1 {
        let s = &searches[0];
        say!(
            "{}  label {}  boundary point at {:.6} by {:?} (class {}, margin {:.3e}), {} points found",
            name,
            labels[0],
            s.closest.distance,
            s.closest.method,
            s.closest.class,
            s.closest.margin,
            s.found.len()
        );
        let (h, w) = picture_dims(&net);
        let x = xs.row(0).to_vec();
        let pics = [
            (channel_sum(&x, h, w), Colour::Grey),
            (channel_sum(&s.closest.x, h, w), Colour::Grey),
            (channel_sum(&maps[0], h, w), Colour::Signed),
        ];
        let panels: Vec<Panel<'_>> = pics
            .iter()
            .map(|(v, c)| Panel {
                values: v,
                height: h,
                width: w,
                colour: *c,
            })
            .collect();
        let scale = (256 / h.max(w).max(1)).clamp(1, 16) as u32;
        side_by_side(&a.out.join(format!("{name}.png")), &panels, scale)?;
        serde_json::json!({
            "settings": settings, "label": labels[0], "boundary": s.closest,
            "points_found": s.found.len(), "completeness_residual": residuals[0],
            "truth_scores": scores.as_ref().map(|v| v[0]),
            "attributions": maps[0],
        })
    } else {
        let csv = a.out.join(format!("{name}.csv"));
        let mut f =
            std::fs::File::create(&csv).with_context(|| format!("creating {}", csv.display()))?;
        writeln!(
            f,
            "index,label,success,distance,margin,class,method,eps,points_found,completeness_residual,localization,energy_game,positive_percentage,concentration"
        )?;
        for (i, s) in searches.iter().enumerate() {
            let p = &s.closest;
            writeln!(
                f,
                "{i},{},{},{},{},{},{:?},{},{},{},{}",
                labels[i],
                p.success,
                p.distance,
                p.margin,
                p.class,
                p.method,
                p.eps,
                s.found.len(),
                residuals[i].map_or(String::new(), |r| r.to_string()),
                score_cells(scores.as_deref(), i)
            )?;
        }
        let found = searches.iter().filter(|s| s.closest.success).count();
        say!("{name}: boundary points for {found}/{n} samples  {wall_s:.1} s");
        let means = scores.as_deref().map(mean_scores);
        if let Some(m) = &means {
            say!("{name}: mean ground-truth scores {m}");
        }
        serde_json::json!({
            "settings": settings, "samples": n, "found": found, "csv": format!("{name}.csv"),
            "truth_above": a.truth_above, "mean_truth_scores": means,
        })
    };
    let jpath = a.out.join(format!("{name}.json"));
    std::fs::write(&jpath, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", jpath.display()))?;
    Ok(ExitCode::SUCCESS)
}
