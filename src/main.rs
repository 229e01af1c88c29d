//! The `nnexplain` command line: a thin layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ndarray::Array2;
use nnexplain::input;
use nnexplain::model::Reference;
use nnexplain::{Network, Property};

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
    /// Exact MILP on HiGHS (big-M with CROWN bounds).
    Milp,
    /// LP relaxation on HiGHS (can prove unsat, never sat).
    Lp,
    /// Branch and bound by input splitting with CROWN bounds (low-dimensional inputs).
    Bab,
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
    Predict {
        /// The ONNX model.
        model: PathBuf,
        /// The input: an array of the model's input shape, or [N, ...] of them.
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
    },
    /// Decide a VNN-LIB property on a network: prints sat, unsat, unknown or timeout first.
    Verify {
        /// The ONNX model.
        model: PathBuf,
        /// The .vnnlib (or .vnnlib.gz) property.
        property: PathBuf,
        /// Which backend decides the cases that bounds leave open.
        #[arg(long, value_enum, default_value = "milp")]
        backend: BackendKind,
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
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Info { model, json } => info(model, json),
        Command::Predict {
            model,
            input,
            index,
            scale,
            hwc_to_chw,
            reshape,
            label_column,
            labels,
            compare_tract,
            json,
        } => predict(PredictArgs {
            model,
            input,
            index,
            scale,
            hwc_to_chw,
            reshape,
            label_column,
            labels,
            compare_tract,
            json,
        }),
        Command::Property {
            property,
            model,
            json,
        } => property_cmd(property, model, json),
        Command::Verify {
            model,
            property,
            backend,
            timeout,
            seed,
            threads,
            json,
            counterexample,
        } => verify_cmd(VerifyArgs {
            model,
            property,
            backend,
            timeout,
            seed,
            threads,
            json,
            counterexample,
        }),
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
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("model        {}", model.display());
    println!(
        "input        '{}' {:?}   output '{}' {:?}   opset {}",
        net.input_name(),
        net.input_shape(),
        net.output_name(),
        net.output_shape(),
        net.opset()
    );
    println!("parameters   {}", net.param_count());
    println!("onnx ops     {}", ops.join(", "));
    match &exact {
        Ok(()) => println!("exact encoding (LRA/MILP): yes, every layer is piecewise linear"),
        Err(why) => println!("exact encoding (LRA/MILP): no, {why}"),
    }
    println!(
        "{:>3}  {:<10} {:<28} {:>10}  {:<18} -> {:<18}",
        "#", "layer", "onnx", "params", "in", "out"
    );
    for (i, (n, l)) in net.nodes().iter().zip(net.layers()).enumerate() {
        println!(
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

struct PredictArgs {
    model: PathBuf,
    input: PathBuf,
    index: Option<usize>,
    scale: f64,
    hwc_to_chw: bool,
    reshape: bool,
    label_column: Option<LabelColumn>,
    labels: Option<PathBuf>,
    compare_tract: bool,
    json: bool,
}

fn predict(a: PredictArgs) -> Result<ExitCode> {
    let net = load(&a.model)?;
    let mut arr = input::read_array(&a.input)
        .with_context(|| format!("reading input {}", a.input.display()))?;
    let mut labels: Option<Vec<f64>> = None;
    if let Some(col) = a.label_column {
        if arr.ndim() != 2 || arr.shape()[1] < 2 {
            anyhow::bail!(
                "--label-column needs a table with at least two columns, {} has shape {:?}",
                a.input.display(),
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
    if a.hwc_to_chw {
        arr = input::hwc_to_chw(&arr)?;
    }
    let mut x = input::to_batch(&arr, net.input_shape(), a.reshape)
        .with_context(|| format!("fitting {} to {}", a.input.display(), a.model.display()))?;
    if let Some(l) = &labels {
        if l.len() != x.nrows() {
            anyhow::bail!("{} labels for {} samples", l.len(), x.nrows());
        }
        if let Some(bad) = l.iter().find(|v| v.fract() != 0.0 || **v < 0.0) {
            anyhow::bail!("label {bad} is not a class index");
        }
    }
    if let Some(i) = a.index {
        if i >= x.nrows() {
            anyhow::bail!(
                "--index {i} is out of range: the input holds {} samples",
                x.nrows()
            );
        }
        x = x.slice(ndarray::s![i..i + 1, ..]).to_owned();
        labels = labels.map(|l| vec![l[i]]);
    }
    x.mapv_inplace(|v| v * a.scale);
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
            "model": a.model, "input": a.input, "batch": y.nrows(),
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
        println!("{}", serde_json::to_string(&v)?);
    } else {
        for (r, row) in y.rows().into_iter().enumerate() {
            let vals: Vec<String> = row.iter().map(|v| format!("{v:.6}")).collect();
            println!(
                "sample {r}: argmax {}  outputs [{}]",
                argmax[r],
                vals.join(", ")
            );
        }
        if let Some((hits, n)) = accuracy {
            println!(
                "accuracy {hits}/{n} = {:.2} %",
                100.0 * hits as f64 / n as f64
            );
        }
        if let Some((d, same)) = tract_diff {
            println!(
                "tract: max |difference| {d:.3e}, argmax {}",
                if same { "agrees" } else { "DIFFERS" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

struct VerifyArgs {
    model: PathBuf,
    property: PathBuf,
    backend: BackendKind,
    timeout: Option<f64>,
    seed: u64,
    threads: usize,
    json: Option<PathBuf>,
    counterexample: Option<PathBuf>,
}

fn make_backend(kind: BackendKind) -> Result<Box<dyn nnexplain::solve::Backend>> {
    match kind {
        BackendKind::Bab => {
            anyhow::bail!("bab is a search over the network, not a Problem backend")
        }
        #[cfg(feature = "highs")]
        BackendKind::Milp => Ok(Box::new(nnexplain::solve::milp::Milp)),
        #[cfg(feature = "highs")]
        BackendKind::Lp => Ok(Box::new(nnexplain::solve::lp::LpRelaxation)),
        #[allow(unreachable_patterns)]
        other => {
            anyhow::bail!("backend {other:?} needs the 'highs' feature, which this build lacks")
        }
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
    let backend = match a.backend {
        BackendKind::Bab => None,
        other => Some(make_backend(other)?),
    };
    let method = match &backend {
        Some(b) => nnexplain::verify::Method::Backend(b.as_ref()),
        None => nnexplain::verify::Method::InputSplit,
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
    println!("{}", result.verdict);
    let solved = result.cases.iter().filter(|c| c.record.is_some()).count();
    let by_bounds = result
        .cases
        .iter()
        .filter(|c| c.discharged_by_bounds)
        .count();
    println!(
        "backend {}  cases {} (bounds {by_bounds}, solver {solved})  bounds {:.3} s  total {:.3} s",
        method.name(),
        result.cases.len(),
        result.bounds_s,
        result.wall_s
    );
    if let Some(c) = &result.counterexample {
        println!(
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
        println!("{}", serde_json::to_string(&v)?);
    } else {
        println!(
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
