//! Every VNN-COMP classification-robustness instance in the shared data: the
//! centre of the input box is classified as the property's own label. This
//! confirms input layouts and normalisation end to end (ONNX import, VNN-LIB
//! variable order, forward pass).

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::*;
use ndarray::Array2;
use nnexplain::property::Robustness;
use nnexplain::{Network, Property};

fn argmax(v: &[f64]) -> usize {
    let mut b = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[b] {
            b = i;
        }
    }
    b
}

/// `orig<N>` in a marabou property's file name: the image's true class.
fn orig_label(p: &std::path::Path) -> Option<usize> {
    let name = p.file_name()?.to_string_lossy().to_string();
    let i = name.find("orig")?;
    name[i + 4..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .ok()
}

/// `vnncomp_mnist_fc_extra/README.md`: "256x2 prop_12 (both ε): the box centre is
/// already misclassified" (VNN-COMP 2022 mnist_fc).
fn documented_misclassified(onnx: &std::path::Path, vnnlib: &std::path::Path) -> bool {
    onnx.ends_with("vnncomp_mnist_fc_extra/onnx/mnist-net_256x2.onnx")
        && vnnlib.to_string_lossy().contains("vnnlib_2022/prop_12_")
}

#[test]
fn box_centres_are_classified_as_the_property_label() {
    let mut nets: HashMap<PathBuf, Network> = HashMap::new();
    let (mut untargeted, mut targeted, mut other, mut misclassified) = (0, 0, 0, 0);
    for (onnx, vnnlib) in all_instances() {
        let prop = Property::from_vnnlib(&vnnlib).unwrap();
        let Some(kind) = prop.robustness() else {
            other += 1;
            continue;
        };
        let net = nets
            .entry(onnx.clone())
            .or_insert_with(|| Network::from_onnx(&onnx).unwrap());
        prop.check_sizes(net.input_len(), net.output_len()).unwrap();
        let c = prop.regions[0].input.centre().unwrap();
        let x = Array2::from_shape_vec((1, c.len()), c).unwrap();
        let y: Vec<f64> = net
            .forward::<f64>(x.view())
            .unwrap()
            .iter()
            .copied()
            .collect();
        let got = argmax(&y);
        match kind {
            Robustness::Untargeted { label } => {
                untargeted += 1;
                if documented_misclassified(&onnx, &vnnlib) {
                    assert_ne!(
                        got,
                        label,
                        "{}: documented as misclassified",
                        vnnlib.display()
                    );
                    misclassified += 1;
                    continue;
                }
                assert_eq!(
                    got,
                    label,
                    "{}: centre classified {got}, label {label}",
                    vnnlib.display()
                );
            }
            Robustness::Targeted { target } => {
                // ACAS Xu φ2-style "Y_0 is maximal" properties have the same form as a
                // targeted robustness property; only the marabou files name the original class.
                let Some(orig) = orig_label(&vnnlib) else {
                    other += 1;
                    continue;
                };
                targeted += 1;
                assert_ne!(
                    got,
                    target,
                    "{}: centre already in the target class",
                    vnnlib.display()
                );
                assert_eq!(
                    got,
                    orig,
                    "{}: centre classified {got}, original {orig}",
                    vnnlib.display()
                );
            }
        }
    }
    eprintln!("{untargeted} untargeted and {targeted} targeted robustness instances checked; {other} other properties");
    // mnist_fc (60 + 90 + 90), eran (72), verivital (60), oval21 (30) untargeted; marabou 48 targeted.
    assert!(
        untargeted >= 400,
        "only {untargeted} untargeted instances found"
    );
    assert_eq!(targeted, 48);
    assert_eq!(misclassified, 2);
}
