//! VNN-LIB and instance-list reading on the real properties in `../shared/data`
//! and on the malformed fixtures in `tests/data/vnnlib_bad`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use nnexplain::property::{read_instances, Property, Robustness};
use nnexplain::Error;

fn shared_data() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data")).to_path_buf()
}

fn bad_dir() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/vnnlib_bad"
    ))
    .to_path_buf()
}

/// Every file under `dir` (recursively) whose name satisfies `keep`, sorted.
fn walk(dir: &Path, keep: &dyn Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().and_then(|n| n.to_str()).is_some_and(keep) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn is_vnnlib(name: &str) -> bool {
    name.ends_with(".vnnlib") || name.ends_with(".vnnlib.gz")
}

fn load(rel: &str) -> Property {
    let path = shared_data().join(rel);
    Property::from_vnnlib(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// The number after `key` in `text`, e.g. `label: 8.` or `target9_`.
fn number_after(text: &str, key: &str) -> Option<usize> {
    let rest = &text[text.find(key)? + key.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The text of a property file, decompressed when gzipped.
fn header(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("read");
    let text = if path.extension().is_some_and(|e| e == "gz") {
        use std::io::Read;
        let mut s = String::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_string(&mut s)
            .expect("gunzip");
        s
    } else {
        String::from_utf8(bytes).expect("utf-8")
    };
    text.lines().next().unwrap_or_default().to_string()
}

#[test]
fn every_shared_property_parses() {
    let files = walk(&shared_data(), &is_vnnlib);
    assert_eq!(files.len(), 314, "VNN-LIB files under shared/data");
    let start = Instant::now();
    let mut props = Vec::new();
    for f in &files {
        match Property::from_vnnlib(f) {
            Ok(p) => props.push((f, p)),
            Err(e) => panic!("{e}"),
        }
    }
    let elapsed = start.elapsed();
    let regions: usize = props.iter().map(|(_, p)| p.regions.len()).sum();
    println!(
        "parsed {} VNN-LIB files ({regions} regions) in {:.3} s",
        files.len(),
        elapsed.as_secs_f64()
    );
    for (f, p) in &props {
        let name = f.display();
        assert_eq!(p.source.as_deref(), Some(f.as_path()));
        assert!(!p.regions.is_empty(), "{name}: no region");
        for r in &p.regions {
            assert_eq!(r.input.dim(), p.n_inputs, "{name}");
            assert!(r.input.is_bounded(), "{name}: unbounded input box");
            assert!(!r.input.is_empty(), "{name}: empty input box");
            assert!(r.input_constraints.is_empty(), "{name}");
            assert!(!r.output.is_empty(), "{name}");
            let centre = r.input.centre().expect("bounded box has a centre");
            assert!(r.contains_input(&centre, 0.0), "{name}: centre outside");
        }
    }
}

#[test]
fn test_nets_mix_inputs_and_outputs_in_one_disjunct() {
    for name in ["test_small", "test_tiny"] {
        let p = load(&format!("vnncomp_test_nets/vnnlib/{name}.vnnlib"));
        assert_eq!((p.n_inputs, p.n_outputs, p.regions.len()), (1, 1, 1));
        let r = &p.regions[0];
        assert_eq!((r.input.lower[0], r.input.upper[0]), (-1.0, 1.0));
        assert_eq!(r.output.len(), 1);
        assert!(p.is_counterexample(&[0.0], &[100.0], 0.0));
        assert!(!p.is_counterexample(&[0.0], &[99.0], 0.0));
        assert!(!p.is_counterexample(&[1.5], &[100.0], 0.0));
        assert!(p.is_counterexample(&[1.0 + 1e-9], &[100.0], 1e-6));
        assert_eq!(p.robustness(), None);
    }
    let p = load("vnncomp_test_nets/vnnlib/test_nano.vnnlib");
    assert_eq!((p.n_inputs, p.n_outputs, p.regions.len()), (1, 1, 1));
    assert!(p.is_counterexample(&[0.5], &[-1.0], 0.0));
    // test_prop is ACAS Xu phi_3: "Y_0 is minimal" is a counterexample.
    let p = load("vnncomp_test_nets/vnnlib/test_prop.vnnlib");
    assert_eq!((p.n_inputs, p.n_outputs, p.regions.len()), (5, 5, 1));
    assert_eq!(p.regions[0].output.len(), 1);
    assert_eq!(p.regions[0].output[0].len(), 4);
    assert_eq!(p.robustness(), None);
}

#[test]
fn acas_xu_properties() {
    let p = load("vnncomp_acasxu/vnnlib/prop_1.vnnlib");
    assert_eq!((p.n_inputs, p.n_outputs, p.regions.len()), (5, 5, 1));
    let r = &p.regions[0];
    assert_eq!(r.output.len(), 1);
    assert_eq!(r.output[0].len(), 1);
    assert_eq!(r.output[0][0].to_string(), "Y_0 >= 3.991125645861615");
    assert_eq!(r.input.upper[0], 0.679857769);
    assert_eq!(r.input.lower[0], 0.6);
    assert!(p.check_sizes(5, 5).is_ok());
    assert!(matches!(p.check_sizes(784, 10), Err(Error::Shape(_))));

    // phi_6: two input boxes, each with the 4-way output disjunction.
    let p = load("vnncomp_acasxu_extra/vnnlib/prop_6.vnnlib");
    assert_eq!((p.n_inputs, p.n_outputs, p.regions.len()), (5, 5, 2));
    assert_eq!(p.regions[0].input.lower[1], 0.11140846);
    assert_eq!(p.regions[1].input.upper[1], -0.11140846);
    for r in &p.regions {
        assert_eq!(r.output.len(), 4);
        assert!(r.output.iter().all(|c| c.len() == 1));
    }
    let p = load("vnncomp_acasxu_extra/vnnlib/prop_7.vnnlib");
    assert_eq!(p.regions.len(), 1);
    assert_eq!(p.regions[0].output.len(), 2);
    assert!(p.regions[0].output.iter().all(|c| c.len() == 3));

    // Detection is structural: phi_2's negation "Y_0 is the largest score"
    // reads as Targeted{0}; the others are not classification robustness.
    for (file, want) in [
        ("vnncomp_acasxu/vnnlib/prop_1.vnnlib", None),
        (
            "vnncomp_acasxu/vnnlib/prop_2.vnnlib",
            Some(Robustness::Targeted { target: 0 }),
        ),
        ("vnncomp_acasxu/vnnlib/prop_3.vnnlib", None),
        ("vnncomp_acasxu/vnnlib/prop_4.vnnlib", None),
        ("vnncomp_acasxu_extra/vnnlib/prop_5.vnnlib", None),
        ("vnncomp_acasxu_extra/vnnlib/prop_6.vnnlib", None),
        ("vnncomp_acasxu_extra/vnnlib/prop_7.vnnlib", None),
        ("vnncomp_acasxu_extra/vnnlib/prop_8.vnnlib", None),
        ("vnncomp_acasxu_extra/vnnlib/prop_9.vnnlib", None),
        ("vnncomp_acasxu_extra/vnnlib/prop_10.vnnlib", None),
    ] {
        assert_eq!(load(file).robustness(), want, "{file}");
    }
}

#[test]
fn mnist_properties_are_untargeted_with_the_commented_label() {
    let data = shared_data();
    let mut checked = 0;
    for dir in [
        "vnncomp2021_mnist_fc/vnnlib",
        "vnncomp_mnist_fc_extra/vnnlib_2021",
        "vnncomp_mnist_fc_extra/vnnlib_2022",
        "vnncomp2021_verivital_mnist_conv/vnnlib",
    ] {
        for f in walk(&data.join(dir), &is_vnnlib) {
            let label = number_after(&header(&f), "label:")
                .unwrap_or_else(|| panic!("{}: no label comment", f.display()));
            let p = Property::from_vnnlib(&f).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((p.n_inputs, p.n_outputs), (784, 10), "{}", f.display());
            assert_eq!(p.regions.len(), 1, "{}", f.display());
            assert_eq!(p.regions[0].output.len(), 9, "{}", f.display());
            assert_eq!(
                p.robustness(),
                Some(Robustness::Untargeted { label }),
                "{}",
                f.display()
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 30 + 30 + 30 + 60);
}

#[test]
fn eran_and_oval21_are_untargeted() {
    let data = shared_data();
    for (dir, n_inputs, count) in [
        ("vnncomp2021_eran_mnist/vnnlib", 784, 72),
        ("vnncomp2021_oval21_cifar/vnnlib", 3072, 30),
    ] {
        let files = walk(&data.join(dir), &is_vnnlib);
        assert_eq!(files.len(), count, "{dir}");
        for f in files {
            let p = Property::from_vnnlib(&f).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((p.n_inputs, p.n_outputs), (n_inputs, 10), "{}", f.display());
            assert_eq!(p.regions.len(), 1, "{}", f.display());
            assert!(
                matches!(p.robustness(), Some(Robustness::Untargeted { .. })),
                "{}",
                f.display()
            );
        }
    }
}

#[test]
fn marabou_properties_are_targeted_as_named() {
    let data = shared_data();
    let mut checked = 0;
    for dir in [
        "vnncomp2021_marabou_cifar10_small/vnnlib",
        "vnncomp2021_marabou_cifar10_medium/vnnlib",
    ] {
        for f in walk(&data.join(dir), &is_vnnlib) {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let target = number_after(name, "_target").expect("target in the file name");
            let orig = number_after(name, "_orig").expect("orig in the file name");
            assert_ne!(target, orig);
            let p = Property::from_vnnlib(&f).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((p.n_inputs, p.n_outputs), (3072, 10), "{name}");
            assert_eq!(p.regions.len(), 1, "{name}");
            assert_eq!(p.regions[0].output.len(), 1, "{name}");
            assert_eq!(p.regions[0].output[0].len(), 9, "{name}");
            assert_eq!(
                p.robustness(),
                Some(Robustness::Targeted { target }),
                "{name}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 48);
}

#[test]
fn every_instance_list_reads_and_its_files_exist() {
    let data = shared_data();
    let lists = walk(&data, &|n| {
        n.starts_with("instances") && n.ends_with(".csv")
    });
    let mut counts = Vec::new();
    for csv in &lists {
        let instances = read_instances(csv).unwrap_or_else(|e| panic!("{e}"));
        assert!(!instances.is_empty(), "{}", csv.display());
        for inst in &instances {
            assert!(inst.timeout_s > 0.0);
            for f in [&inst.onnx, &inst.vnnlib] {
                assert!(
                    f.is_file(),
                    "{}:{}: {} does not exist",
                    csv.display(),
                    inst.line,
                    f.display()
                );
            }
        }
        let rel = csv.strip_prefix(&data).unwrap_or(csv);
        counts.push((rel.display().to_string(), instances.len()));
    }
    let want = [
        ("vnncomp2021_eran_mnist/instances.csv", 72),
        ("vnncomp2021_marabou_cifar10_medium/instances.csv", 24),
        ("vnncomp2021_marabou_cifar10_small/instances.csv", 24),
        ("vnncomp2021_mnist_fc/instances.csv", 60),
        ("vnncomp2021_oval21_cifar/instances.csv", 30),
        ("vnncomp2021_verivital_mnist_conv/instances.csv", 60),
        ("vnncomp_acasxu/instances.csv", 180),
        ("vnncomp_acasxu_extra/instances.csv", 6),
        ("vnncomp_mnist_fc_extra/instances_2021.csv", 90),
        ("vnncomp_mnist_fc_extra/instances_2022.csv", 90),
        ("vnncomp_test_nets/instances.csv", 5),
    ];
    let want: Vec<_> = want.iter().map(|(p, n)| (p.to_string(), *n)).collect();
    assert_eq!(counts, want);
}

/// Each malformed fixture, the line its error must name, and a piece of the message.
const BAD: &[(&str, usize, &str)] = &[
    ("bad_exponent.vnnlib", 7, "malformed number `1e`"),
    ("bad_name.vnnlib", 4, "cannot declare `epsilon`"),
    ("bad_number.vnnlib", 6, "malformed number `0.5.3`"),
    ("comments_only.vnnlib", 2, "no input variables"),
    ("dnf_blowup.vnnlib", 22, "more than 100000 conjunctions"),
    (
        "duplicate_declaration.vnnlib",
        6,
        "X_1 is declared twice (first on line 3)",
    ),
    ("empty.vnnlib", 1, "no input variables"),
    ("empty_assert.vnnlib", 7, "empty `(assert)`"),
    ("extra_close_paren.vnnlib", 7, "unmatched `)`"),
    ("formula_as_term.vnnlib", 6, "expected a term"),
    ("gap_in_x.vnnlib", 3, "X_1 is not declared"),
    ("garbage_token.vnnlib", 7, "unexpected `#garbage`"),
    ("no_outputs.vnnlib", 4, "no output variables"),
    ("nonlinear_product.vnnlib", 7, "non-linear product"),
    ("not_operator.vnnlib", 6, "unsupported operator `not`"),
    ("truncated.vnnlib", 7, "opened on line 7 is never closed"),
    (
        "unclosed_paren.vnnlib",
        6,
        "opened on line 6 is never closed",
    ),
    ("undeclared_gz.vnnlib.gz", 5, "undeclared variable X_3"),
    ("undeclared_variable.vnnlib", 9, "undeclared variable Y_2"),
    ("unknown_command.vnnlib", 6, "unknown command `define-fun`"),
    ("unknown_function.vnnlib", 6, "unknown function `abs`"),
    ("unknown_sort.vnnlib", 3, "unsupported sort `Int`"),
    ("unknown_variable.vnnlib", 8, "unknown symbol `Z_0`"),
    (
        "use_before_declaration.vnnlib",
        3,
        "undeclared variable Y_0",
    ),
];

#[test]
fn malformed_fixtures_give_line_numbered_errors() {
    let files = walk(&bad_dir(), &is_vnnlib);
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_name()?.to_str().map(str::to_string))
        .collect();
    let listed: Vec<&str> = BAD.iter().map(|b| b.0).collect();
    assert_eq!(
        names, listed,
        "every fixture has an expectation, and only those"
    );
    for (name, want_line, needle) in BAD {
        let path = bad_dir().join(name);
        match Property::from_vnnlib(&path) {
            Err(e @ Error::Vnnlib { .. }) => {
                let shown = e.to_string();
                let Error::Vnnlib {
                    path: p,
                    line,
                    message,
                } = e
                else {
                    unreachable!()
                };
                assert_eq!(p, path);
                assert!(line > 0, "{name}: line 0");
                assert_eq!(line, *want_line, "{name}: {message}");
                assert!(
                    message.contains(needle),
                    "{name}: {message:?} lacks {needle:?}"
                );
                assert!(shown.contains(&format!("{name}:{line}: ")), "{shown}");
            }
            Err(e) => panic!("{name}: expected a VNN-LIB error, got {e:?}"),
            Ok(p) => panic!("{name}: parsed as {p:?}"),
        }
    }
}

#[test]
fn missing_property_file_is_an_io_error() {
    let e = Property::from_vnnlib(bad_dir().join("no_such_file.vnnlib")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
}
