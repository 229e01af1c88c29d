//! The `nnexplain` command line: a thin layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ndarray::Array2;
use nnexplain::input;
use nnexplain::model::Reference;
use nnexplain::{Network, Property};

/// Prints a line to stdout; a closed pipe (`nnexplain … | head`) ends output quietly.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod cli;

/// Explains and checks neural networks with solvers.
#[derive(Parser)]
#[command(name = "nnexplain", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LabelColumn {
    First,
    Last,
}

/// The backends the CLI can build.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum BackendKind {
    /// The --members (default: attack, both input splittings, MILP) raced on every case; the first conclusive answer wins.
    Portfolio,
    /// Input splitting for networks with at most 16 inputs, the MILP otherwise.
    Auto,
    /// Exact MILP on HiGHS (big-M with CROWN bounds).
    Milp,
    /// LP relaxation on HiGHS (can prove unsat, never sat).
    Lp,
    /// SMT on z3: linear real arithmetic with an ite per ReLU (exact rationals).
    Z3,
    /// Branch and bound with CROWN bounds: input splitting (at most 16 inputs), ReLU splitting otherwise.
    Bab,
    /// Branch and bound whose input splitting splits ReLUs in every box of at most 32 unstable ones (bab: 12).
    BabWide,
    /// PGD with random restarts on the property's margin (can only answer sat).
    Attack,
}

#[derive(Subcommand)]
enum Command {
    /// Describe a network: layers, shapes, parameters, ops, exact encodability.
    Info {
        /// The ONNX model.
        model: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a network on an input (.npy, .png or .csv) and show its outputs.
    Predict(PredictArgs),
    /// Decide a VNN-LIB property on a network: prints sat, unsat, unknown or timeout first.
    Verify(VerifyArgs),
    /// SMUG: first-layer IG, the minimal mask keeping the top-k neurons (Eq. 2-3), SMUG saliency.
    Smug(cli::explain::SmugArgs),
    /// The smallest mask whose masked input keeps the class (SMUG Appendix A, Eq. 6).
    MinimalMask(cli::explain::MinimalMaskArgs),
    /// Attribution maps: gradient, gradient x input, IG, SmoothGrad, SmoothGrad-IG, DeepLIFT, guided backprop.
    Attribute(cli::attribute::AttributeArgs),
    /// Adversarial examples: PGD, Carlini-Wagner or AutoPGD under l-inf or l2.
    Attack(cli::attack::AttackArgs),
    /// Boundary attributions BSM and BIG from the closest decision-boundary points.
    Boundary(cli::attack::BoundaryArgs),
    /// Robustness analysis (Hsieh et al. 2021): Greedy-AS, Greedy, One-Step Banzhaf, LOO and
    /// attribution maps judged by Robustness-S̄_r / S_r curves and AUCs, optionally exact.
    Robustness(cli::robustness::RobustnessArgs),
    /// SMUG's metrics over a set of images: LSC (Eq. 5), Win %, sparsity, against IG, gradient and boxes.
    Lsc(cli::explain::LscArgs),
    /// Benchmark: bounds and encoding time vs solve time per backend on the
    /// first case of a property that bounds leave open.
    BenchSolve {
        /// The ONNX model.
        model: PathBuf,
        /// The .vnnlib property.
        property: PathBuf,
        /// Backends to time, comma-separated (bab, milp, lp, z3).
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "bab,milp,lp,z3"
        )]
        backends: Vec<BackendKind>,
        /// Limit per solve, in seconds.
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
        /// Runs per measurement (the median is kept; solves over 1 s run once).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Write the timings as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Run a VNN-COMP instance list (onnx,vnnlib,timeout per line), one isolated
    /// process per instance, appending one JSON line per instance to --out.
    Batch {
        /// The instances.csv (paths relative to its folder, or absolute).
        instances: PathBuf,
        /// Backend for every instance.
        #[arg(long, value_enum, default_value = "portfolio")]
        backend: BackendKind,
        /// The portfolio's members, comma-separated.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "attack,bab,bab-wide,milp"
        )]
        members: Vec<BackendKind>,
        /// Multiply every instance's timeout by this factor.
        #[arg(long, default_value_t = 1.0)]
        timeout_scale: f64,
        /// The JSON-lines result file; rows already in it are skipped (resume).
        #[arg(long)]
        out: PathBuf,
        /// Run only rows whose index mod N is I, given as I/N (Slurm arrays, GNU parallel).
        #[arg(long)]
        shard: Option<String>,
        /// Seed handed to every solve.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Parse a VNN-LIB property and summarise it (optionally against a model's sizes).
    Property {
        /// The .vnnlib (or .vnnlib.gz) file.
        property: PathBuf,
        /// Check the property's sizes against this ONNX model.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` answers Ok only with success.
    let (code, raw) = match run(cli) {
        Ok(code) => (code, 0),
        Err(e) => {
            eprintln!("error: {e:#}");
            (ExitCode::from(2), 2)
        }
    };
    if nnexplain::solve::abandoned_threads() {
        // A solver thread still runs inside HiGHS or z3: end without the
        // libraries' static destructors, which could abort under it after
        // the answer was written. Every file is closed by now.
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        // SAFETY: `_exit` ends the process at once; nothing runs after it.
        unsafe { libc::_exit(raw) };
    }
    code
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Info { model, json } => info(model, json),
        Command::Predict(a) => predict(a),
        Command::Property {
            property,
            model,
            json,
        } => property_cmd(property, model, json),
        Command::Batch {
            instances,
            backend,
            members,
            timeout_scale,
            out,
            shard,
            seed,
        } => batch(
            instances,
            (backend, &members),
            timeout_scale,
            out,
            shard,
            seed,
        ),
        Command::Verify(a) => verify_cmd(a),
        Command::Smug(a) => cli::explain::smug_cmd(a),
        Command::MinimalMask(a) => cli::explain::minimal_mask_cmd(a),
        Command::Lsc(a) => cli::explain::lsc_cmd(a),
        Command::Attribute(a) => cli::attribute::attribute_cmd(a),
        Command::Attack(a) => cli::attack::attack_cmd(a),
        Command::Boundary(a) => cli::attack::boundary_cmd(a),
        Command::Robustness(a) => cli::robustness::robustness_cmd(a),
        Command::BenchSolve {
            model,
            property,
            backends,
            timeout,
            repeat,
            json,
        } => bench_solve(model, property, &backends, timeout, repeat, json),
    }
}

fn load(model: &PathBuf) -> Result<Network> {
    Network::from_onnx(model).with_context(|| format!("loading {}", model.display()))
}

fn info(model: PathBuf, json: bool) -> Result<ExitCode> {
    let net = load(&model)?;
    let mut ops: Vec<String> = net
        .nodes()
        .iter()
        .flat_map(|n| n.op_types.iter().cloned())
        .collect();
    ops.sort();
    ops.dedup();
    let exact = net.exact_encoding();
    if json {
        let layers: Vec<_> = net
            .nodes()
            .iter()
            .zip(net.layers())
            .enumerate()
            .map(|(i, (n, l))| {
                serde_json::json!({
                    "index": i, "kind": l.kind(), "name": n.name, "onnx_ops": n.op_types,
                    "in_shape": n.in_shape, "out_shape": n.out_shape, "params": l.param_count(),
                })
            })
            .collect();
        let v = serde_json::json!({
            "model": model, "input": net.input_name(), "input_shape": net.input_shape(),
            "output": net.output_name(), "output_shape": net.output_shape(), "opset": net.opset(),
            "params": net.param_count(), "onnx_ops": ops, "layers": layers,
            "exact_encoding": exact.is_ok(), "exact_encoding_blocker": exact.err(),
        });
        say!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    say!("model        {}", model.display());
    say!(
        "input        '{}' {:?}   output '{}' {:?}   opset {}",
        net.input_name(),
        net.input_shape(),
        net.output_name(),
        net.output_shape(),
        net.opset()
    );
    say!("parameters   {}", net.param_count());
    say!("onnx ops     {}", ops.join(", "));
    match &exact {
        Ok(()) => say!("exact encoding (LRA/MILP): yes, every layer is piecewise linear"),
        Err(why) => say!("exact encoding (LRA/MILP): no, {why}"),
    }
    say!(
        "{:>3}  {:<10} {:<28} {:>10}  {:<18} -> {:<18}",
        "#",
        "layer",
        "onnx",
        "params",
        "in",
        "out"
    );
    for (i, (n, l)) in net.nodes().iter().zip(net.layers()).enumerate() {
        say!(
            "{:>3}  {:<10} {:<28} {:>10}  {:<18} -> {:<18}",
            i,
            l.kind(),
            n.op_types.join("+"),
            l.param_count(),
            format!("{:?}", n.in_shape),
            format!("{:?}", n.out_shape)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Where an input comes from and how it is prepared.
#[derive(clap::Args)]
struct InputArgs {
    /// The input: an array of the model's input shape, or [N, ...] of them (.npy, .png, .csv).
    input: PathBuf,
    /// Take only sample I of a batch (e.g. one image of a dataset file).
    #[arg(long)]
    index: Option<usize>,
    /// Multiply the input by this factor first: a number or a fraction such as 1/255 for pixels.
    #[arg(long, default_value = "1", value_parser = parse_scale)]
    scale: f64,
    /// Convert images from HWC (or NHWC) to CHW (NCHW) first.
    #[arg(long)]
    hwc_to_chw: bool,
    /// Accept any input with a multiple of the model's input size, read row-major.
    #[arg(long)]
    reshape: bool,
    /// Subtract these per-channel means after scaling (comma-separated: one per channel, or one for all).
    #[arg(long, value_delimiter = ',', requires = "std")]
    mean: Vec<f64>,
    /// Divide by these per-channel standard deviations after the mean (e.g. 0.225 for the oval21 CIFAR nets).
    #[arg(long, value_delimiter = ',', requires = "mean")]
    std: Vec<f64>,
}

impl InputArgs {
    /// The prepared samples, `[N, input_len]` (one row with --index).
    fn samples(&self, net: &Network) -> Result<Array2<f64>> {
        let mut arr = input::read_array(&self.input)
            .with_context(|| format!("reading input {}", self.input.display()))?;
        if self.hwc_to_chw {
            arr = input::hwc_to_chw(&arr)?;
        }
        let mut x = input::to_batch(&arr, net.input_shape(), self.reshape)
            .with_context(|| format!("fitting {} to the network's input", self.input.display()))?;
        if let Some(i) = self.index {
            if i >= x.nrows() {
                anyhow::bail!(
                    "--index {i} is out of range: the input holds {} samples",
                    x.nrows()
                );
            }
            x = x.slice(ndarray::s![i..i + 1, ..]).to_owned();
        }
        x.mapv_inplace(|v| v * self.scale);
        if !self.mean.is_empty() {
            input::normalise(&mut x, net.input_shape(), &self.mean, &self.std)?;
        }
        Ok(x)
    }
}

#[derive(clap::Args)]
struct PredictArgs {
    /// The ONNX model.
    model: PathBuf,
    #[command(flatten)]
    data: InputArgs,
    /// A CSV input holds a class label in its first or last column (e.g. ERAN's
    /// `label,p0,...`): strip it and report the accuracy.
    #[arg(long, value_enum)]
    label_column: Option<LabelColumn>,
    /// Class labels for the samples (.npy or .csv), to report the accuracy.
    #[arg(long, conflicts_with = "label_column")]
    labels: Option<PathBuf>,
    /// Also run tract's inference and report the largest difference.
    #[arg(long)]
    compare_tract: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn predict(a: PredictArgs) -> Result<ExitCode> {
    let net = load(&a.model)?;
    let mut arr = input::read_array(&a.data.input)
        .with_context(|| format!("reading input {}", a.data.input.display()))?;
    let mut labels: Option<Vec<f64>> = None;
    if let Some(col) = a.label_column {
        if arr.ndim() != 2 || arr.shape()[1] < 2 {
            anyhow::bail!(
                "--label-column needs a table with at least two columns, {} has shape {:?}",
                a.data.input.display(),
                arr.shape()
            );
        }
        let w = arr.shape()[1];
        let (li, range) = match col {
            LabelColumn::First => (0, 1..w),
            LabelColumn::Last => (w - 1, 0..w - 1),
        };
        labels = Some(
            arr.index_axis(ndarray::Axis(1), li)
                .iter()
                .copied()
                .collect(),
        );
        arr = arr.slice(ndarray::s![.., range]).to_owned().into_dyn();
    }
    if let Some(p) = &a.labels {
        let l = input::read_array(p).with_context(|| format!("reading labels {}", p.display()))?;
        labels = Some(l.iter().copied().collect());
    }
    if a.data.hwc_to_chw {
        arr = input::hwc_to_chw(&arr)?;
    }
    let mut x = input::to_batch(&arr, net.input_shape(), a.data.reshape).with_context(|| {
        format!(
            "fitting {} to {}",
            a.data.input.display(),
            a.model.display()
        )
    })?;
    if let Some(l) = &labels {
        if l.len() != x.nrows() {
            anyhow::bail!("{} labels for {} samples", l.len(), x.nrows());
        }
        if let Some(bad) = l.iter().find(|v| v.fract() != 0.0 || **v < 0.0) {
            anyhow::bail!("label {bad} is not a class index");
        }
    }
    if let Some(i) = a.data.index {
        if i >= x.nrows() {
            anyhow::bail!(
                "--index {i} is out of range: the input holds {} samples",
                x.nrows()
            );
        }
        x = x.slice(ndarray::s![i..i + 1, ..]).to_owned();
        labels = labels.map(|l| vec![l[i]]);
    }
    x.mapv_inplace(|v| v * a.data.scale);
    if !a.data.mean.is_empty() {
        input::normalise(&mut x, net.input_shape(), &a.data.mean, &a.data.std)?;
    }
    let y = net
        .forward::<f64>(x.view())
        .context("running the network")?;
    let argmax: Vec<usize> = y
        .rows()
        .into_iter()
        .map(|r| argmax(r.iter().copied()))
        .collect();
    let tract_diff = if a.compare_tract {
        let reference = Reference::from_onnx(&a.model, 1)?;
        let xf: Array2<f32> = x.mapv(|v| v as f32);
        let yr = reference.run_rows(xf.view())?;
        let mut max = 0.0f64;
        let mut same = true;
        for (r, (ours, theirs)) in y.rows().into_iter().zip(yr.rows()).enumerate() {
            for (o, t) in ours.iter().zip(theirs.iter()) {
                max = max.max((o - *t as f64).abs());
            }
            same &= argmax[r] == argmax_f32(theirs.iter().copied());
        }
        Some((max, same))
    } else {
        None
    };
    let accuracy = labels.as_ref().map(|l| {
        let hits = l
            .iter()
            .zip(&argmax)
            .filter(|(l, a)| **l as usize == **a)
            .count();
        (hits, l.len())
    });
    if a.json {
        let outputs: Vec<f64> = y.iter().copied().collect();
        let mut v = serde_json::json!({
            "model": a.model, "input": a.data.input, "batch": y.nrows(),
            "output_shape": net.output_shape(),
            "outputs": outputs,
            "argmax": if argmax.len() == 1 { serde_json::json!(argmax[0]) } else { serde_json::json!(argmax) },
        });
        if let Some((d, same)) = tract_diff {
            v["tract_max_abs_diff"] = serde_json::json!(d);
            v["tract_same_argmax"] = serde_json::json!(same);
        }
        if let Some((hits, n)) = accuracy {
            v["correct"] = serde_json::json!(hits);
            v["accuracy"] = serde_json::json!(hits as f64 / n as f64);
        }
        say!("{}", serde_json::to_string(&v)?);
    } else {
        for (r, row) in y.rows().into_iter().enumerate() {
            let vals: Vec<String> = row.iter().map(|v| format!("{v:.6}")).collect();
            say!(
                "sample {r}: argmax {}  outputs [{}]",
                argmax[r],
                vals.join(", ")
            );
        }
        if let Some((hits, n)) = accuracy {
            say!(
                "accuracy {hits}/{n} = {:.2} %",
                100.0 * hits as f64 / n as f64
            );
        }
        if let Some((d, same)) = tract_diff {
            say!(
                "tract: max |difference| {d:.3e}, argmax {}",
                if same { "agrees" } else { "DIFFERS" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// The ONNX model.
    model: PathBuf,
    /// The .vnnlib (or .vnnlib.gz) property.
    property: PathBuf,
    /// Which backend decides the cases that bounds leave open.
    #[arg(long, value_enum, default_value = "portfolio")]
    backend: BackendKind,
    /// The portfolio's members, comma-separated (attack, bab, bab-wide, milp, lp, z3).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "attack,bab,bab-wide,milp"
    )]
    members: Vec<BackendKind>,
    /// Wall-clock limit in seconds for the whole query.
    #[arg(long)]
    timeout: Option<f64>,
    /// Seed handed to the solver.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Solver threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Write the full result (every case's solver record) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a re-checked counterexample in VNN-COMP's format here.
    #[arg(long)]
    counterexample: Option<PathBuf>,
}

fn make_backend(kind: BackendKind) -> Result<Box<dyn nnexplain::solve::Backend>> {
    match kind {
        BackendKind::Bab | BackendKind::BabWide => {
            anyhow::bail!(
                "{} is a search over the network, not a Problem backend",
                kind.name()
            )
        }
        #[cfg(feature = "highs")]
        BackendKind::Milp => Ok(Box::new(nnexplain::solve::milp::Milp)),
        #[cfg(feature = "highs")]
        BackendKind::Lp => Ok(Box::new(nnexplain::solve::lp::LpRelaxation)),
        #[cfg(feature = "z3")]
        BackendKind::Z3 => Ok(Box::new(nnexplain::solve::z3::Z3)),
        BackendKind::Portfolio | BackendKind::Auto | BackendKind::Attack => {
            anyhow::bail!("{kind:?} is not a solver backend")
        }
        #[allow(unreachable_patterns)]
        other => anyhow::bail!(
            "backend {} needs the '{}' feature, which this build lacks",
            format!("{other:?}").to_lowercase(),
            if matches!(other, BackendKind::Z3) {
                "z3"
            } else {
                "highs"
            }
        ),
    }
}

fn verify_cmd(a: VerifyArgs) -> Result<ExitCode> {
    use nnexplain::verify::{verify, vnncomp_counterexample, Verdict, VerifyOptions};
    let time_limit = match a.timeout {
        Some(t) if t.is_finite() && t > 0.0 => Some(std::time::Duration::from_secs_f64(t)),
        Some(t) => anyhow::bail!("--timeout must be a positive number of seconds, got {t}"),
        None => None,
    };
    let net = load(&a.model)?;
    let reference = Reference::from_onnx(&a.model, 1)?;
    let prop = Property::from_vnnlib(&a.property)?;
    let kind = match a.backend {
        BackendKind::Auto if net.input_len() <= 16 => BackendKind::Bab,
        BackendKind::Auto => BackendKind::Milp,
        other => other,
    };
    use nnexplain::verify::Method;
    let solvers: Vec<Box<dyn nnexplain::solve::Backend>> = match kind {
        BackendKind::Bab | BackendKind::BabWide | BackendKind::Attack => Vec::new(),
        BackendKind::Portfolio => {
            if a.members.is_empty() {
                anyhow::bail!("--members is empty");
            }
            let mut v = Vec::new();
            for &m in &a.members {
                match m {
                    BackendKind::Portfolio | BackendKind::Auto => {
                        anyhow::bail!(
                            "--members takes attack, bab, bab-wide, milp, lp or z3, not {}",
                            m.name()
                        )
                    }
                    BackendKind::Bab | BackendKind::BabWide | BackendKind::Attack => {}
                    other => v.push(make_backend(other)?),
                }
            }
            v
        }
        other => vec![make_backend(other)?],
    };
    let mut members: Vec<Method> = Vec::new();
    if matches!(kind, BackendKind::Portfolio) {
        if a.members.iter().any(|m| matches!(m, BackendKind::Attack)) {
            members.push(Method::Attack);
        }
        if a.members.iter().any(|m| matches!(m, BackendKind::Bab)) {
            members.push(Method::Bab);
        }
        if a.members.iter().any(|m| matches!(m, BackendKind::BabWide)) {
            members.push(Method::BabWide);
        }
        members.extend(solvers.iter().map(|b| Method::Backend(b.as_ref())));
    }
    let method = match (kind, solvers.first()) {
        (BackendKind::Portfolio, _) => Method::Portfolio(&members),
        (BackendKind::Attack, _) => Method::Attack,
        (BackendKind::BabWide, _) => Method::BabWide,
        (_, Some(b)) => Method::Backend(b.as_ref()),
        (_, None) => Method::Bab,
    };
    let opts = VerifyOptions {
        time_limit,
        seed: a.seed,
        threads: a.threads,
    };
    let cancel = nnexplain::solve::CancelToken::new();
    let result = verify(&net, &reference, &prop, method, &opts, &cancel).with_context(|| {
        format!(
            "verifying {} on {}",
            a.property.display(),
            a.model.display()
        )
    })?;
    say!("{}", result.verdict);
    let solved = result.cases.iter().filter(|c| c.record.is_some()).count();
    let by_bounds = result
        .cases
        .iter()
        .filter(|c| c.discharged_by_bounds)
        .count();
    say!(
        "backend {}  cases {} (bounds {by_bounds}, solver {solved})  bounds {:.3} s  total {:.3} s",
        method.name(),
        result.cases.len(),
        result.bounds_s,
        result.wall_s
    );
    if let Some(c) = &result.counterexample {
        say!(
            "counterexample re-checked with tract (tolerance {:.1e}): held",
            c.tolerance
        );
        if let Some(path) = &a.counterexample {
            std::fs::write(path, vnncomp_counterexample(c))
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    if let Some(path) = &a.json {
        let v = serde_json::json!({
            "onnx": a.model, "vnnlib": a.property, "backend": method.name(),
            "verdict": result.verdict, "wall_s": result.wall_s,
            "recheck": result.counterexample.as_ref().map(|c| c.held),
            "result": result,
        });
        std::fs::write(path, serde_json::to_string_pretty(&v)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let _ = Verdict::Sat;
    Ok(ExitCode::SUCCESS)
}

/// One finished instance of a batch, as written to the JSON-lines file.
fn batch_line(
    index: usize,
    inst: &nnexplain::property::Instance,
    backend: BackendKind,
    seed: u64,
    limit: f64,
    run: std::result::Result<serde_json::Value, String>,
    wall: f64,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "index": index, "onnx": inst.onnx, "vnnlib": inst.vnnlib,
        "backend": backend.name(), "timeout_s": limit, "seed": seed,
        "engine": concat!("nnexplain ", env!("CARGO_PKG_VERSION")),
        "host": std::env::var("HOSTNAME").ok().or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string())),
    });
    match run {
        Ok(r) => {
            v["verdict"] = r["verdict"].clone();
            v["wall_s"] = r["wall_s"].clone();
            v["recheck"] = r["recheck"].clone();
            v["backend"] = r["backend"].clone();
            v["result"] = r["result"].clone();
        }
        Err(e) => {
            let timed_out = e.starts_with("killed");
            v["verdict"] = serde_json::json!(if timed_out { "timeout" } else { "error" });
            v["wall_s"] = serde_json::json!(wall);
            v["recheck"] = serde_json::Value::Null;
            v["error"] = serde_json::json!(e);
        }
    }
    v
}

/// Runs one instance in a child `nnexplain verify` process, killed if it
/// outlives `limit` by more than a grace period.
fn run_isolated(
    inst: &nnexplain::property::Instance,
    (backend, members): (BackendKind, &[BackendKind]),
    seed: u64,
    limit: f64,
    scratch: &std::path::Path,
) -> std::result::Result<serde_json::Value, String> {
    const GRACE: f64 = 10.0;
    // On Linux the running image itself, so that a rebuild that replaces the
    // file during a long batch does not fail the remaining instances.
    let proc_exe = std::path::Path::new("/proc/self/exe");
    let exe = if proc_exe.exists() {
        proc_exe.to_path_buf()
    } else {
        std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?
    };
    let json = scratch.join(format!("instance-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&json);
    let mut child = std::process::Command::new(exe)
        .arg("verify")
        .arg(&inst.onnx)
        .arg(&inst.vnnlib)
        .args(["--backend", backend.name()])
        .args(["--members", &members_arg(members)])
        .args(["--timeout", &format!("{limit}")])
        .args(["--seed", &seed.to_string()])
        .arg("--json")
        .arg(&json)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the instance process: {e}"))?;
    let start = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                if !status.success() {
                    let tail: String = err
                        .lines()
                        .rev()
                        .take(5)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect::<Vec<_>>()
                        .join(" | ");
                    return Err(format!("instance process exited with {status}: {tail}"));
                }
                let text =
                    std::fs::read_to_string(&json).map_err(|e| format!("no result file: {e}"))?;
                let _ = std::fs::remove_file(&json);
                return serde_json::from_str(&text).map_err(|e| format!("bad result file: {e}"));
            }
            Ok(None) => {
                if start.elapsed().as_secs_f64() > limit + GRACE {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "killed after {:.1} s (limit {limit} s + {GRACE} s grace)",
                        start.elapsed().as_secs_f64()
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(format!("waiting for the instance process: {e}")),
        }
    }
}

fn bench_solve(
    model: PathBuf,
    property: PathBuf,
    backends: &[BackendKind],
    timeout: f64,
    repeat: usize,
    json: Option<PathBuf>,
) -> Result<ExitCode> {
    use nnexplain::verify::{time_case, Method};
    if !(timeout.is_finite() && timeout > 0.0) {
        anyhow::bail!("--timeout must be a positive number of seconds, got {timeout}");
    }
    let net = load(&model)?;
    let prop = Property::from_vnnlib(&property)?;
    let mut solvers = Vec::new();
    for &b in backends {
        if !matches!(b, BackendKind::Bab | BackendKind::BabWide) {
            solvers.push(make_backend(b)?);
        }
    }
    let mut methods: Vec<Method> = Vec::new();
    let mut k = 0;
    for &b in backends {
        if matches!(b, BackendKind::Bab) {
            methods.push(Method::Bab);
        } else if matches!(b, BackendKind::BabWide) {
            methods.push(Method::BabWide);
        } else {
            methods.push(Method::Backend(solvers[k].as_ref()));
            k += 1;
        }
    }
    let t = time_case(
        &net,
        &prop,
        &methods,
        Some(std::time::Duration::from_secs_f64(timeout)),
        repeat,
    )
    .with_context(|| format!("timing {} on {}", property.display(), model.display()))?;
    say!(
        "case r{}c{}: {} variables, {} constraints, {} unstable ReLUs",
        t.region,
        t.conjunction,
        t.size.0,
        t.size.1,
        t.size.2
    );
    say!("bounds {:.6} s  encode {:.6} s", t.bounds_s, t.encode_s);
    for r in &t.solves {
        say!(
            "{:<5} {:>10.6} s  {:?}",
            r.backend,
            r.wall_time.as_secs_f64(),
            r.status
        );
    }
    if let Some(path) = json {
        let v = serde_json::json!({"onnx": model, "vnnlib": property, "timing": t});
        std::fs::write(&path, serde_json::to_string_pretty(&v)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The `--members` value naming these backends.
impl BackendKind {
    /// The name on the command line (and in batch records).
    fn name(self) -> &'static str {
        match self {
            BackendKind::Portfolio => "portfolio",
            BackendKind::Auto => "auto",
            BackendKind::Milp => "milp",
            BackendKind::Lp => "lp",
            BackendKind::Z3 => "z3",
            BackendKind::Bab => "bab",
            BackendKind::BabWide => "bab-wide",
            BackendKind::Attack => "attack",
        }
    }
}

fn members_arg(members: &[BackendKind]) -> String {
    members
        .iter()
        .map(|m| m.name())
        .collect::<Vec<_>>()
        .join(",")
}

fn batch(
    instances: PathBuf,
    (backend, members): (BackendKind, &[BackendKind]),
    timeout_scale: f64,
    out: PathBuf,
    shard: Option<String>,
    seed: u64,
) -> Result<ExitCode> {
    use std::io::Write;
    if !(timeout_scale.is_finite() && timeout_scale > 0.0) {
        anyhow::bail!("--timeout-scale must be positive, got {timeout_scale}");
    }
    let (si, sn) = match &shard {
        None => (0, 1),
        Some(s) => {
            let parsed = s.split_once('/').and_then(|(i, n)| {
                Some((
                    i.trim().parse::<usize>().ok()?,
                    n.trim().parse::<usize>().ok()?,
                ))
            });
            match parsed {
                Some((i, n)) if n > 0 && i < n => (i, n),
                _ => anyhow::bail!("--shard must be I/N with 0 <= I < N, got '{s}'"),
            }
        }
    };
    let list = nnexplain::property::read_instances(&instances)?;
    let mut done = std::collections::HashSet::new();
    if out.exists() {
        let text =
            std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                if let Some(i) = v["index"].as_u64() {
                    done.insert(i as usize);
                }
            }
        }
    }
    let todo: Vec<usize> = (0..list.len())
        .filter(|i| i % sn == si && !done.contains(i))
        .collect();
    let total = (0..list.len()).filter(|i| i % sn == si).count();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out)
        .with_context(|| format!("opening {}", out.display()))?;
    let scratch = std::env::temp_dir();
    eprintln!(
        "{} instances in this shard, {} already in {}",
        total,
        total - todo.len(),
        out.display()
    );
    for (k, &i) in todo.iter().enumerate() {
        let inst = &list[i];
        let limit = inst.timeout_s * timeout_scale;
        let t = std::time::Instant::now();
        let run = run_isolated(inst, (backend, members), seed, limit, &scratch);
        let line = batch_line(
            i,
            inst,
            backend,
            seed,
            limit,
            run,
            t.elapsed().as_secs_f64(),
        );
        writeln!(file, "{}", serde_json::to_string(&line)?)?;
        file.flush()?;
        eprintln!(
            "[{}/{}] {} {} {:.3} s",
            total - todo.len() + k + 1,
            total,
            line["verdict"].as_str().unwrap_or("?"),
            inst.vnnlib
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            line["wall_s"].as_f64().unwrap_or(0.0)
        );
    }
    // Summary over everything the output file holds.
    let text = std::fs::read_to_string(&out)?;
    let rows: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut by: std::collections::BTreeMap<String, Vec<&serde_json::Value>> = Default::default();
    for r in &rows {
        by.entry(r["backend"].as_str().unwrap_or("?").to_string())
            .or_default()
            .push(r);
    }
    let mut csv = String::from(
        "backend,instances,sat,unsat,unknown,timeout,error,sat_rechecked,median_s,max_s\n",
    );
    say!(
        "{:<8} {:>9} {:>5} {:>6} {:>8} {:>8} {:>6} {:>10} {:>9} {:>9}",
        "backend",
        "instances",
        "sat",
        "unsat",
        "unknown",
        "timeout",
        "error",
        "rechecked",
        "median_s",
        "max_s"
    );
    for (b, rs) in &by {
        let count = |v: &str| rs.iter().filter(|r| r["verdict"] == v).count();
        let rechecked = rs
            .iter()
            .filter(|r| r["verdict"] == "sat" && r["recheck"] == true)
            .count();
        let mut times: Vec<f64> = rs.iter().filter_map(|r| r["wall_s"].as_f64()).collect();
        times.sort_by(|a, b| a.total_cmp(b));
        let median = if times.is_empty() {
            0.0
        } else {
            times[times.len() / 2]
        };
        let max = times.last().copied().unwrap_or(0.0);
        let line = format!(
            "{b},{},{},{},{},{},{},{rechecked},{median:.4},{max:.4}",
            rs.len(),
            count("sat"),
            count("unsat"),
            count("unknown"),
            count("timeout"),
            count("error")
        );
        say!(
            "{:<8} {:>9} {:>5} {:>6} {:>8} {:>8} {:>6} {:>10} {:>9.3} {:>9.3}",
            b,
            rs.len(),
            count("sat"),
            count("unsat"),
            count("unknown"),
            count("timeout"),
            count("error"),
            rechecked,
            median,
            max
        );
        csv.push_str(&line);
        csv.push('\n');
    }
    let summary = out.with_extension("summary.csv");
    std::fs::write(&summary, csv).with_context(|| format!("writing {}", summary.display()))?;
    eprintln!("summary written to {}", summary.display());
    Ok(ExitCode::SUCCESS)
}

fn property_cmd(path: PathBuf, model: Option<PathBuf>, json: bool) -> Result<ExitCode> {
    let prop = Property::from_vnnlib(&path)?;
    if let Some(m) = &model {
        let net = load(m)?;
        prop.check_sizes(net.input_len(), net.output_len())?;
    }
    let outputs: usize = prop.regions.iter().map(|r| r.output.len()).sum();
    let robustness = prop.robustness().map(|r| format!("{r:?}"));
    if json {
        let v = serde_json::json!({
            "property": path, "inputs": prop.n_inputs, "outputs": prop.n_outputs,
            "regions": prop.regions.len(), "output_conjunctions": outputs,
            "robustness": robustness,
        });
        say!("{}", serde_json::to_string(&v)?);
    } else {
        say!(
            "{}: {} inputs, {} outputs, {} input region(s), {} output conjunction(s){}",
            path.display(),
            prop.n_inputs,
            prop.n_outputs,
            prop.regions.len(),
            outputs,
            robustness
                .map(|r| format!(", robustness {r}"))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A finite number, or a fraction `a/b` of two.
fn parse_scale(s: &str) -> std::result::Result<f64, String> {
    let num = |t: &str| {
        t.trim()
            .parse::<f64>()
            .map_err(|_| format!("'{t}' is not a number"))
    };
    let v = match s.split_once('/') {
        Some((a, b)) => num(a)? / num(b)?,
        None => num(s)?,
    };
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("'{s}' is not a finite scale"))
    }
}

fn argmax(it: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, v) in it.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

fn argmax_f32(it: impl Iterator<Item = f32>) -> usize {
    argmax(it.map(|v| v as f64))
}
