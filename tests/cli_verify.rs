//! `nnexplain verify` and `nnexplain batch` from the command line.
#![cfg(feature = "highs")]

mod common;

use std::process::Command;

use common::data_dir;

fn nnx() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nnexplain"))
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("nnx-cli-verify-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn verify_prints_the_verdict_first_and_writes_the_counterexample() {
    let d = data_dir().join("vnncomp_test_nets");
    let ce = tmp("ce.txt");
    let js = tmp("v.json");
    for backend in ["milp", "bab", "auto"] {
        let out = nnx()
            .arg("verify")
            .arg(d.join("onnx/test_sat.onnx"))
            .arg(d.join("vnnlib/test_prop.vnnlib"))
            .args(["--backend", backend, "--timeout", "60"])
            .arg("--counterexample")
            .arg(&ce)
            .arg("--json")
            .arg(&js)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(stdout.lines().next(), Some("sat"), "{backend}: {stdout}");
        let text = std::fs::read_to_string(&ce).unwrap();
        assert!(text.starts_with("sat\n((X_0 "), "{text}");
        assert_eq!(text.matches("(X_").count(), 5);
        assert_eq!(text.matches("(Y_").count(), 5);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&js).unwrap()).unwrap();
        assert_eq!(v["verdict"], "sat");
        assert_eq!(v["recheck"], true);
    }
    let out = nnx()
        .arg("verify")
        .arg(d.join("onnx/test_unsat.onnx"))
        .arg(d.join("vnnlib/test_prop.vnnlib"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().next(),
        Some("unsat")
    );
}

#[test]
fn verify_bad_input_exits_2_with_a_message() {
    let d = data_dir();
    let acas = d.join("vnncomp_acasxu/onnx/ACASXU_run2a_1_1_batch_2000.onnx");
    // A property that names X_7 on a 5-input network.
    let wide = tmp("wide.vnnlib");
    let mut text = String::new();
    for i in 0..8 {
        text.push_str(&format!(
            "(declare-const X_{i} Real)\n(assert (>= X_{i} 0))\n(assert (<= X_{i} 1))\n"
        ));
    }
    for j in 0..5 {
        text.push_str(&format!("(declare-const Y_{j} Real)\n"));
    }
    text.push_str("(assert (>= Y_0 Y_1))\n");
    std::fs::write(&wide, text).unwrap();
    let malformed = tmp("bad.vnnlib");
    std::fs::write(
        &malformed,
        "(declare-const X_0 Real)\n(assert (>= X_0 0.5.3))\n",
    )
    .unwrap();
    let sigmoid = d.join("vnncomp2021_eran_mnist/onnx/ffnnSIGMOID__Point_6x200.onnx");
    let sig_prop = d.join("vnncomp2021_eran_mnist/vnnlib/mnist_spec_idx_8098_eps_0.01500.vnnlib");
    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (vec![acas.clone().into(), wide.clone().into()], "input"),
        (
            vec![acas.clone().into(), malformed.clone().into()],
            "bad.vnnlib:2",
        ),
        (
            vec![acas.clone().into(), tmp("missing.vnnlib").into()],
            "missing.vnnlib",
        ),
        (
            vec![
                sigmoid.into(),
                sig_prop.into(),
                "--backend".into(),
                "milp".into(),
            ],
            "Sigmoid",
        ),
        (
            vec![
                acas.clone().into(),
                d.join("vnncomp_acasxu/vnnlib/prop_1.vnnlib").into(),
                "--timeout".into(),
                "0".into(),
            ],
            "timeout",
        ),
    ];
    for (args, needle) in cases {
        let out = nnx().arg("verify").args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with("error:") && err.contains(needle),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn batch_writes_json_lines_resumes_and_shards() {
    let list = data_dir().join("vnncomp_test_nets/instances.csv");
    let out = tmp("batch.jsonl");
    let _ = std::fs::remove_file(&out);
    let run = |extra: &[&str]| {
        let o = nnx()
            .arg("batch")
            .arg(&list)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    run(&["--shard", "1/2"]);
    let lines = |p: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let first = lines(&out);
    assert_eq!(first.len(), 2, "rows 1 and 3 of 5");
    assert!(first.iter().all(|r| r["index"].as_u64().unwrap() % 2 == 1));
    let table = run(&[]);
    let all = lines(&out);
    assert_eq!(all.len(), 5, "the rest is added, nothing repeated");
    for r in &all {
        for key in ["onnx", "vnnlib", "backend", "verdict", "wall_s", "recheck"] {
            assert!(r.get(key).is_some(), "missing {key}: {r}");
        }
        assert!(
            ["sat", "unsat"].contains(&r["verdict"].as_str().unwrap()),
            "{r}"
        );
        if r["verdict"] == "sat" {
            assert_eq!(r["recheck"], true);
        }
    }
    assert!(table.contains("portfolio"), "{table}");
    run(&[]);
    assert_eq!(lines(&out).len(), 5, "a rerun with the same --out resumes");
    assert!(out.with_extension("summary.csv").exists());
}
