//! `smug` and `minimal-mask`: the SMUG explanations on the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use nnexplain::explain::minimal_mask::{
    minimal_mask, tail, MaskOptions, Masked, DEFAULT_CLASS_MARGIN,
};
use nnexplain::explain::smug::{self, Baseline, Ranking};
use nnexplain::explain::MaskGrid;
use nnexplain::model::Reference;
use nnexplain::report::{channel_sum, side_by_side, Colour, Panel};
use nnexplain::solve::{Backend, CancelToken, SolveOptions};
use nnexplain::{Network, Objective};

use crate::{load, make_backend, BackendKind, InputArgs};

/// First-layer IG ranking.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum RankingArg {
    /// Integrated Gradients on the first layer's outputs (the paper).
    Ig,
    /// The first layer's outputs.
    Activation,
    /// Gradient of softmax[label] with respect to the first layer's outputs.
    Gradient,
}

/// Baseline of the first-layer IG.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum BaselineArg {
    /// The zero activation.
    Zero,
    /// The average of the IGs from a black (0) and a white (1) input's activations.
    BlackWhite,
}

/// Which solver(s) to use for a mask.
#[derive(clap::Args)]
pub struct MaskSolverArgs {
    /// Backend: milp, z3, lp (relaxation + rounding), or portfolio (the --members raced).
    #[arg(long, value_enum, default_value = "milp")]
    backend: BackendKind,
    /// The portfolio's members, comma-separated (milp, z3, lp).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "milp,z3")]
    members: Vec<BackendKind>,
    /// Wall-clock limit of the solver, in seconds.
    #[arg(long)]
    timeout: Option<f64>,
    /// Seed handed to the solvers.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Value a dropped element takes.
    #[arg(long, default_value_t = 0.0)]
    fill: f64,
    /// Mask cells of S×S pixels, shared across channels (text: always one word).
    #[arg(long, default_value_t = 1)]
    window: usize,
    /// Class to explain (default: the predicted one).
    #[arg(long)]
    label: Option<usize>,
}

impl MaskSolverArgs {
    fn backends(&self) -> Result<Vec<Box<dyn Backend>>> {
        let kinds: Vec<BackendKind> = match self.backend {
            BackendKind::Portfolio => self.members.clone(),
            k => vec![k],
        };
        if kinds.is_empty() {
            anyhow::bail!("--members is empty");
        }
        kinds
            .into_iter()
            .map(|k| match k {
                BackendKind::Milp | BackendKind::Lp | BackendKind::Z3 => make_backend(k),
                other => anyhow::bail!(
                    "a mask is solved by milp, z3, lp or a portfolio of them, not {}",
                    format!("{other:?}").to_lowercase()
                ),
            })
            .collect()
    }
    fn time_limit(&self) -> Result<Option<Duration>> {
        match self.timeout {
            Some(t) if t.is_finite() && t > 0.0 => Ok(Some(Duration::from_secs_f64(t))),
            Some(t) => anyhow::bail!("--timeout must be a positive number of seconds, got {t}"),
            None => Ok(None),
        }
    }
}

/// `nnexplain smug`.
#[derive(clap::Args)]
pub struct SmugArgs {
    /// The ONNX model.
    model: PathBuf,
    #[command(flatten)]
    data: InputArgs,
    #[command(flatten)]
    solver: MaskSolverArgs,
    /// Number of first-layer neurons to keep (D^k).
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// Each chosen neuron must stay at or above gamma × its original value.
    #[arg(long, default_value_t = 0.0)]
    gamma: f64,
    /// Margin standing for the paper's strict inequality.
    #[arg(long, default_value_t = smug::DEFAULT_DELTA)]
    delta: f64,
    /// How neurons are ranked.
    #[arg(long, value_enum, default_value = "ig")]
    ranking: RankingArg,
    /// Baseline of the first-layer IG.
    #[arg(long, value_enum, default_value = "zero")]
    baseline: BaselineArg,
    /// IG steps (midpoint rule).
    #[arg(long, default_value_t = 200)]
    steps: usize,
    /// Directory for smug.json and smug.png.
    #[arg(long)]
    out: PathBuf,
}

fn predicted(net: &Network, x: &[f64]) -> Result<usize> {
    let y =
        net.forward::<f64>(ndarray::Array2::from_shape_vec((1, x.len()), x.to_vec())?.view())?;
    Ok(crate::argmax(y.iter().copied()))
}

/// Class labels from a file (.npy or .csv), checked to be classes of `net`.
fn read_labels(path: Option<&Path>, net: &Network) -> Result<Option<Vec<usize>>> {
    let Some(p) = path else { return Ok(None) };
    let raw = nnexplain::input::read_array(p)
        .with_context(|| format!("reading labels {}", p.display()))?;
    raw.iter()
        .map(|&v| {
            if v.fract() == 0.0 && v >= 0.0 && (v as usize) < net.output_len() {
                Ok(v as usize)
            } else {
                anyhow::bail!(
                    "{}: label {v} is not a class of the network ({} outputs)",
                    p.display(),
                    net.output_len()
                )
            }
        })
        .collect::<Result<Vec<usize>>>()
        .map(Some)
}

fn one_sample(data: &InputArgs, net: &Network) -> Result<Vec<f64>> {
    let x = data.samples(net)?;
    if x.nrows() != 1 {
        anyhow::bail!(
            "{} holds {} samples: pick one with --index",
            data.input.display(),
            x.nrows()
        );
    }
    Ok(x.row(0).to_vec())
}

fn check_label(net: &Network, label: Option<usize>, x: &[f64]) -> Result<usize> {
    let p = predicted(net, x)?;
    match label {
        Some(l) if l >= net.output_len() => anyhow::bail!(
            "--label {l} is not a class of the network ({} outputs)",
            net.output_len()
        ),
        Some(l) => Ok(l),
        None => Ok(p),
    }
}

/// Input-space IG from the zero input, for the side-by-side picture.
fn input_ig(
    net: &Network,
    grid: &MaskGrid,
    x: &[f64],
    label: usize,
    steps: usize,
) -> Result<Vec<f64>> {
    let t = tail(net, grid.base)?;
    let v = net
        .forward_range(
            0,
            grid.base,
            ndarray::Array2::from_shape_vec((1, x.len()), x.to_vec())?.view(),
        )?
        .into_raw_vec_and_offset()
        .0;
    let m = nnexplain::attrib::integrated_gradients_at(
        &t,
        0,
        &v,
        &vec![0.0; v.len()],
        &Objective::Softmax(label),
        steps,
        nnexplain::attrib::Rule::Midpoint,
    )?;
    Ok(m.attributions)
}

/// Draws `values` (one per element of the masked activation) as the grid's picture.
fn picture(grid: &MaskGrid, values: &[f64]) -> Vec<f64> {
    let (h, w) = grid.picture();
    match grid.layout {
        nnexplain::explain::Layout::Image { .. } => channel_sum(values, h, w),
        nnexplain::explain::Layout::Words { .. } => {
            let mut out = vec![0.0; h * w];
            for (e, v) in values.iter().enumerate() {
                out[grid.pixel_of(e)] += v;
            }
            out
        }
    }
}

fn png_scale(grid: &MaskGrid) -> u32 {
    let (h, w) = grid.picture();
    (256 / h.max(w).max(1)).clamp(2, 16) as u32
}

pub fn smug_cmd(a: SmugArgs) -> Result<ExitCode> {
    let net = load(&a.model)?;
    let x = one_sample(&a.data, &net)?;
    let label = check_label(&net, a.solver.label, &x)?;
    let grid = MaskGrid::for_network(&net, a.solver.window)?;
    let baseline = match a.baseline {
        BaselineArg::Zero => Baseline::Zero,
        BaselineArg::BlackWhite => Baseline::BlackWhite {
            black: 0.0,
            white: 1.0,
        },
    };
    let ranking = match a.ranking {
        RankingArg::Ig => Ranking::Ig,
        RankingArg::Activation => Ranking::Activation,
        RankingArg::Gradient => Ranking::Gradient,
    };
    if a.top_k == 0 {
        anyhow::bail!("--top-k must be at least 1");
    }
    let fl = smug::first_layer(&net, &grid, &x, label, baseline, a.steps)?;
    let neurons = smug::top_k(&fl, ranking, a.top_k);
    if neurons.is_empty() {
        anyhow::bail!("no first-layer neuron has a positive {ranking:?} score for class {label}: nothing to keep");
    }
    let mp = smug::mask_problem(&net, &grid, &fl, &neurons, a.gamma, a.delta, a.solver.fill)?;
    let backends = a.solver.backends()?;
    let refs: Vec<&dyn Backend> = backends.iter().map(|b| b.as_ref()).collect();
    let so = SolveOptions {
        time_limit: a.solver.time_limit()?,
        seed: a.solver.seed,
        threads: 1,
    };
    let t = std::time::Instant::now();
    let solved = smug::solve_mask(&mp, grid.n_cells, &refs, &so, &CancelToken::new())?;
    let wall_s = t.elapsed().as_secs_f64();
    let recheck = if solved.keep.is_empty() {
        None
    } else {
        Some(smug::recheck_first_layer(
            &net,
            &grid,
            &fl,
            &mp,
            &solved.keep,
            a.solver.fill,
        )?)
    };
    let base_keep = smug::base_mask(&grid, &mp);
    let sal = if solved.keep.is_empty() {
        vec![0.0; grid.len()]
    } else {
        smug::saliency(&grid, &mp, &fl, &solved.keep)
    };
    let base_sal = smug::saliency(&grid, &mp, &fl, &base_keep);
    let ig = input_ig(&net, &grid, &x, label, a.steps)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    say!("{}", solved.status.as_str());
    say!(
        "class {label}  neurons {:?}  mask {} of {} cells (SMUG_base {})  bound {}  {:.3} s  recheck {}",
        neurons,
        solved.mask_size,
        grid.n_cells,
        base_keep.iter().filter(|&&k| k).count(),
        solved.bound.map_or("-".into(), |b| format!("{b}")),
        wall_s,
        recheck.as_ref().map_or("-".into(), |r| if r.held { "held".to_string() } else { "FAILED".to_string() })
    );
    let json = serde_json::json!({
        "model": a.model, "input": a.data.input, "label": label,
        "first_layer": fl.layer, "top_k": a.top_k, "gamma": a.gamma, "delta": a.delta,
        "window": a.solver.window, "fill": a.solver.fill, "grid": grid.layout,
        "ranking": ranking, "baseline": baseline, "steps": a.steps,
        "neurons": neurons, "first_layer_ig": fl.ig, "first_layer_activation": fl.activation,
        "ig_completeness_residual": fl.ig_residual,
        "status": solved.status,
        "mask": if solved.keep.is_empty() { None } else { Some(grid.input_mask(&solved.keep)) },
        "mask_size": solved.mask_size, "cells": grid.n_cells, "cells_encoded": mp.cells.len(),
        "bound": solved.bound, "wall_s": wall_s, "found_by": solved.found_by,
        "recheck": recheck, "records": solved.records,
        "smug_saliency": sal,
        "smug_base": {"mask": grid.input_mask(&base_keep), "mask_size": base_keep.iter().filter(|&&k| k).count(), "saliency": base_sal},
        "input_ig": ig,
    });
    let jpath = a.out.join("smug.json");
    std::fs::write(&jpath, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", jpath.display()))?;
    let (h, w) = grid.picture();
    let mask_vals: Vec<f64> = if solved.keep.is_empty() {
        vec![0.0; h * w]
    } else {
        picture(
            &grid,
            &grid.apply(&vec![1.0; grid.len()], &solved.keep, 0.0),
        )
    };
    let sal_p = picture(&grid, &sal);
    let ig_p = picture(&grid, &ig);
    let mut panels = Vec::new();
    let input_p;
    if grid.base == 0 {
        input_p = picture(&grid, &x);
        panels.push(Panel {
            values: &input_p,
            height: h,
            width: w,
            colour: Colour::Grey,
        });
    }
    panels.push(Panel {
        values: &mask_vals,
        height: h,
        width: w,
        colour: Colour::Grey,
    });
    panels.push(Panel {
        values: &sal_p,
        height: h,
        width: w,
        colour: Colour::Heat,
    });
    panels.push(Panel {
        values: &ig_p,
        height: h,
        width: w,
        colour: Colour::Signed,
    });
    side_by_side(&a.out.join("smug.png"), &panels, png_scale(&grid))?;
    Ok(ExitCode::SUCCESS)
}

/// `nnexplain minimal-mask`.
#[derive(clap::Args)]
pub struct MinimalMaskArgs {
    /// The ONNX model.
    model: PathBuf,
    #[command(flatten)]
    data: InputArgs,
    #[command(flatten)]
    solver: MaskSolverArgs,
    /// Margin of the kept class over every other logit.
    #[arg(long, default_value_t = DEFAULT_CLASS_MARGIN)]
    delta: f64,
    /// Write the result as JSON here (one sample).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write input | mask as a PNG here (one sample).
    #[arg(long)]
    png: Option<PathBuf>,
    /// Dataset mode (the input holds several samples and no --index): one CSV row per sample.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Dataset mode: class labels (.npy), to explain the true class instead of the predicted one.
    #[arg(long)]
    labels: Option<PathBuf>,
}

pub fn minimal_mask_cmd(a: MinimalMaskArgs) -> Result<ExitCode> {
    use std::io::Write;
    let net = load(&a.model)?;
    let reference = Reference::from_onnx(&a.model, 1)?;
    let grid = MaskGrid::for_network(&net, a.solver.window)?;
    let backends = a.solver.backends()?;
    let refs: Vec<&dyn Backend> = backends.iter().map(|b| b.as_ref()).collect();
    let opts = MaskOptions {
        delta: a.delta,
        fill: a.solver.fill,
        time_limit: a.solver.time_limit()?,
        seed: a.solver.seed,
        threads: 1,
    };
    let xs = a.data.samples(&net)?;
    if xs.nrows() > 1 {
        let Some(csv) = &a.csv else {
            anyhow::bail!(
                "{} holds {} samples: pick one with --index, or give --csv for all of them",
                a.data.input.display(),
                xs.nrows()
            );
        };
        let labels = read_labels(a.labels.as_deref(), &net)?;
        if labels.as_ref().is_some_and(|l| l.len() != xs.nrows()) {
            anyhow::bail!(
                "{} labels for {} samples",
                labels.map_or(0, |l| l.len()),
                xs.nrows()
            );
        }
        let mut f =
            std::fs::File::create(csv).with_context(|| format!("creating {}", csv.display()))?;
        writeln!(f, "index,label,status,mask_size,bound,greedy_size,found_by,wall_s,recheck_held,recheck_margin")?;
        let n = xs.nrows();
        for (i, row) in xs.rows().into_iter().enumerate() {
            let x = row.to_vec();
            let label = match &labels {
                Some(l) => l[i],
                None => predicted(&net, &x)?,
            };
            let line = match minimal_mask(
                Masked {
                    net: &net,
                    reference: &reference,
                    grid: &grid,
                },
                &x,
                label,
                &refs,
                &opts,
                &CancelToken::new(),
            ) {
                Ok(m) => format!(
                    "{i},{label},{},{},{},{},{},{:.6},{},{}",
                    m.status.as_str(),
                    m.mask_size,
                    m.bound.map_or(String::new(), |b| b.to_string()),
                    m.greedy_size,
                    m.found_by,
                    m.wall_s,
                    m.recheck.held,
                    m.recheck.margin
                ),
                Err(e) => format!(
                    "{i},{label},error,,,,,,,\"{}\"",
                    e.to_string().replace('"', "'")
                ),
            };
            writeln!(f, "{line}")?;
            f.flush()?;
            eprint!("\r{}/{n} {line:<80}", i + 1);
        }
        eprintln!();
        say!("wrote {}", csv.display());
        return Ok(ExitCode::SUCCESS);
    }
    let x = xs.row(0).to_vec();
    let label = check_label(&net, a.solver.label, &x)?;
    let m = minimal_mask(
        Masked {
            net: &net,
            reference: &reference,
            grid: &grid,
        },
        &x,
        label,
        &refs,
        &opts,
        &CancelToken::new(),
    )?;
    say!("{}", m.status.as_str());
    say!(
        "class {label}  mask {} of {} cells (greedy {})  bound {}  found by {}  {:.3} s  recheck {} (margin {:.4})",
        m.mask_size,
        grid.n_cells,
        m.greedy_size,
        m.bound.map_or("-".into(), |b| format!("{b}")),
        m.found_by,
        m.wall_s,
        if m.recheck.held { "held" } else { "FAILED" },
        m.recheck.margin
    );
    if let Some(p) = &a.json {
        let v = serde_json::json!({"model": a.model, "input": a.data.input, "label": label,
            "window": a.solver.window, "fill": a.solver.fill, "delta": a.delta, "grid": grid.layout, "result": m});
        std::fs::write(p, serde_json::to_string_pretty(&v)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &a.png {
        write_mask_png(p, &grid, &x, &m.keep)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn write_mask_png(path: &Path, grid: &MaskGrid, x: &[f64], keep: &[bool]) -> Result<()> {
    let (h, w) = grid.picture();
    let mask = picture(grid, &grid.apply(&vec![1.0; grid.len()], keep, 0.0));
    let mut panels = Vec::new();
    let (input_p, masked_p);
    if grid.base == 0 {
        input_p = picture(grid, x);
        masked_p = picture(grid, &grid.apply(x, keep, 0.0));
        panels.push(Panel {
            values: &input_p,
            height: h,
            width: w,
            colour: Colour::Grey,
        });
        panels.push(Panel {
            values: &masked_p,
            height: h,
            width: w,
            colour: Colour::Grey,
        });
    }
    panels.push(Panel {
        values: &mask,
        height: h,
        width: w,
        colour: Colour::Grey,
    });
    side_by_side(path, &panels, png_scale(grid))?;
    Ok(())
}

/// Methods compared by `nnexplain lsc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LscMethod {
    /// SMUG saliency (Eq. 4) on the minimal mask.
    Smug,
    /// SMUG_base: every cell of the chosen neurons' receptive fields.
    SmugBase,
    /// Integrated Gradients from the black (zero) input.
    Ig,
    /// |∂ softmax[label] / ∂ input|.
    Gradient,
    /// The box with the best LSC on a grid (brute force).
    Optbox,
    /// The centred box covering half the image.
    Centerbox,
    /// The whole image.
    Maxbox,
}

/// `nnexplain lsc`.
#[derive(clap::Args)]
pub struct LscArgs {
    /// The ONNX model (an image classifier).
    model: PathBuf,
    #[command(flatten)]
    data: InputArgs,
    #[command(flatten)]
    solver: MaskSolverArgs,
    /// Class labels (.npy); default: the predicted class of each image.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Only the first N images.
    #[arg(long)]
    count: Option<usize>,
    /// Methods to score, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "smug,smug-base,ig,gradient,optbox,centerbox,maxbox"
    )]
    methods: Vec<LscMethod>,
    /// SMUG's k.
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// SMUG's γ.
    #[arg(long, default_value_t = 0.0)]
    gamma: f64,
    /// IG steps (midpoint rule), for SMUG's first layer and the IG map.
    #[arg(long, default_value_t = 200)]
    steps: usize,
    /// OPTBOX grid step in pixels (default: a tenth of the image side).
    #[arg(long)]
    optbox_step: Option<usize>,
    /// Also solve each SMUG mask with each of these backends on its own, to compare them.
    #[arg(long, value_enum, value_delimiter = ',')]
    compare_backends: Vec<BackendKind>,
    /// One row per image and method.
    #[arg(long)]
    csv: PathBuf,
}

/// Fractions of a continuous map kept when thresholding it for LSC.
const FRACTIONS: [f64; 10] = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.85, 1.0];

pub fn lsc_cmd(a: LscArgs) -> Result<ExitCode> {
    use nnexplain::metrics::{best_lsc_of_map, lsc_boxes, optbox, sparsity, PixelBox};
    use std::io::Write;
    let net = load(&a.model)?;
    let grid = MaskGrid::for_network(&net, a.solver.window)?;
    if grid.base != 0 {
        anyhow::bail!(
            "lsc scores image boxes; {} is not an image classifier",
            a.model.display()
        );
    }
    let dims = nnexplain::explain::mask::image_dims(net.input_shape())?;
    let (_, h, w) = dims;
    let xs = a.data.samples(&net)?;
    let n = a.count.unwrap_or(xs.nrows()).min(xs.nrows());
    let labels = read_labels(a.labels.as_deref(), &net)?;
    if labels.as_ref().is_some_and(|l| l.len() < n) {
        anyhow::bail!("fewer labels than images");
    }
    let backends = a.solver.backends()?;
    let refs: Vec<&dyn Backend> = backends.iter().map(|b| b.as_ref()).collect();
    let compare: Vec<Box<dyn Backend>> = a
        .compare_backends
        .iter()
        .map(|&k| make_backend(k))
        .collect::<Result<_>>()?;
    let so = SolveOptions {
        time_limit: a.solver.time_limit()?,
        seed: a.solver.seed,
        threads: 1,
    };
    let step = a.optbox_step.unwrap_or((h.max(w) / 10).max(1));
    let mut f =
        std::fs::File::create(&a.csv).with_context(|| format!("creating {}", a.csv.display()))?;
    write!(
        f,
        "index,label,method,lsc,area,confidence,sparsity,status,mask_size,bound,wall_s,recheck"
    )?;
    for c in &compare {
        write!(f, ",{0}_status,{0}_size,{0}_s", c.name())?;
    }
    writeln!(f)?;
    let mut per_method: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    let mut wins: std::collections::BTreeMap<String, usize> = Default::default();
    for i in 0..n {
        let x = xs.row(i).to_vec();
        let label = match &labels {
            Some(l) => l[i],
            None => predicted(&net, &x)?,
        };
        let mut rows: Vec<(String, Option<nnexplain::metrics::Lsc>, String)> = Vec::new();
        let mut smug_done = None;
        for &m in &a.methods {
            match m {
                LscMethod::Smug | LscMethod::SmugBase => {
                    if smug_done.is_none() {
                        let fl =
                            smug::first_layer(&net, &grid, &x, label, Baseline::Zero, a.steps)?;
                        let neurons = smug::top_k(&fl, Ranking::Ig, a.top_k);
                        let mp = smug::mask_problem(
                            &net,
                            &grid,
                            &fl,
                            &neurons,
                            a.gamma,
                            smug::DEFAULT_DELTA,
                            a.solver.fill,
                        )?;
                        let t = std::time::Instant::now();
                        let solved =
                            smug::solve_mask(&mp, grid.n_cells, &refs, &so, &CancelToken::new())?;
                        let wall = t.elapsed().as_secs_f64();
                        let mut cmp = String::new();
                        for c in &compare {
                            let t = std::time::Instant::now();
                            let r = smug::solve_mask(
                                &mp,
                                grid.n_cells,
                                &[c.as_ref()],
                                &so,
                                &CancelToken::new(),
                            )?;
                            cmp += &format!(
                                ",{},{},{:.6}",
                                r.status.as_str(),
                                r.mask_size,
                                t.elapsed().as_secs_f64()
                            );
                        }
                        smug_done = Some((fl, mp, solved, wall, cmp));
                    }
                    let Some((fl, mp, solved, wall, cmp)) = smug_done.as_ref() else {
                        anyhow::bail!("SMUG was not computed for image {i}");
                    };
                    let keep = if m == LscMethod::Smug {
                        solved.keep.clone()
                    } else {
                        smug::base_mask(&grid, mp)
                    };
                    let sal = if keep.is_empty() {
                        vec![0.0; grid.len()]
                    } else {
                        smug::saliency(&grid, mp, fl, &keep)
                    };
                    let pic = channel_sum(&sal, h, w);
                    let best = best_lsc_of_map(&net, &x, dims, label, &pic, &FRACTIONS)?;
                    let recheck = if m == LscMethod::Smug && !keep.is_empty() {
                        smug::recheck_first_layer(&net, &grid, fl, mp, &keep, a.solver.fill)?
                            .held
                            .to_string()
                    } else {
                        String::new()
                    };
                    let extra = if m == LscMethod::Smug {
                        format!(
                            "{},{},{},{:.6},{recheck}{cmp}",
                            solved.status.as_str(),
                            solved.mask_size,
                            solved.bound.map_or(String::new(), |b| b.to_string()),
                            wall
                        )
                    } else {
                        format!(",{},,,", keep.iter().filter(|&&k| k).count())
                    };
                    rows.push((
                        format!("{m:?}").to_lowercase(),
                        best,
                        format!("{},{extra}", sparsity(&pic)),
                    ));
                }
                LscMethod::Ig | LscMethod::Gradient => {
                    let map = if m == LscMethod::Ig {
                        input_ig(&net, &grid, &x, label, a.steps)?
                    } else {
                        let g = net.gradient(
                            ndarray::Array2::from_shape_vec((1, x.len()), x.clone())?.view(),
                            &Objective::Softmax(label),
                            0,
                        )?;
                        g.grad.iter().map(|v| v.abs()).collect()
                    };
                    let pic = channel_sum(&map, h, w);
                    let best = best_lsc_of_map(&net, &x, dims, label, &pic, &FRACTIONS)?;
                    rows.push((
                        format!("{m:?}").to_lowercase(),
                        best,
                        format!("{},,,,,", sparsity(&pic)),
                    ));
                }
                LscMethod::Optbox => {
                    let b = optbox(&net, &x, dims, label, step)?;
                    rows.push(("optbox".into(), Some(b), format!("{},,,,,", b.area)));
                }
                LscMethod::Centerbox | LscMethod::Maxbox => {
                    let bx = if m == LscMethod::Centerbox {
                        PixelBox::centre_half(h, w)
                    } else {
                        PixelBox::full(h, w)
                    };
                    let s = lsc_boxes(&net, &x, dims, label, &[bx])?;
                    rows.push((
                        format!("{m:?}").to_lowercase(),
                        s.first().copied(),
                        format!("{},,,,,", bx.area(h, w)),
                    ));
                }
            }
        }
        let best = rows
            .iter()
            .filter_map(|r| r.1.map(|l| l.score))
            .fold(f64::INFINITY, f64::min);
        for (name, l, rest) in &rows {
            match l {
                Some(l) => {
                    writeln!(
                        f,
                        "{i},{label},{name},{},{},{},{rest}",
                        l.score, l.area, l.confidence
                    )?;
                    per_method.entry(name.clone()).or_default().push(l.score);
                    if l.score <= best + 1e-12 {
                        *wins.entry(name.clone()).or_default() += 1;
                    }
                }
                None => writeln!(f, "{i},{label},{name},,,,{rest}")?,
            }
        }
        f.flush()?;
        eprint!("\r[{}/{n}] image {i} class {label}", i + 1);
    }
    eprintln!();
    say!("method       median LSC   Win%   (images scored)");
    for (name, scores) in &per_method {
        let mut s = scores.clone();
        s.sort_by(f64::total_cmp);
        say!(
            "{name:<12} {:>10.4} {:>6.1}   ({})",
            s[s.len() / 2],
            100.0 * *wins.get(name).unwrap_or(&0) as f64 / n.max(1) as f64,
            s.len()
        );
    }
    say!("wrote {}", a.csv.display());
    Ok(ExitCode::SUCCESS)
}
