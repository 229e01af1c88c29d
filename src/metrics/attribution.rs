//! Metrics of attribution maps against a ground truth (a bounding box or a
//! mask), from Wang, Fredrikson & Datta 2022 (Appendix B.1, Definitions
//! 8–11), and insertion/deletion curves (Petsiuk et al. 2018).
//!
//! Notation: `z` is the attribution map over the pixels `I`, `P = {i : z_i > 0}`,
//! `N = {i : z_i < 0}`, `B` the pixels in the box (or mask). All four scores
//! are higher-is-better and are 0 where their denominator vanishes.
//!
//! * Localization (Def. 8, Chattopadhyay et al. 2017): `Loc = |B ∩ P| / (|B| + |P \ B|)`.
//! * Energy Game (Def. 9, Wang et al. 2020): `EG = Σ_{i∈B} max(z_i, 0) / Σ_{i∈I} max(z_i, 0)`.
//! * Positive Percentage (Def. 10): `PP = Σ_{i∈P∩B} z_i / (Σ_{i∈P∩B} z_i + Σ_{i∈N∩B} |z_i|)`.
//! * Concentration (Def. 11): with `ẑ_i = |z_i| / Σ_j |z_j|` and the mass centre
//!   `C = Σ_i ẑ_i (r_i, c_i)` (what `scipy.ndimage.center_of_mass` computes),
//!   `Con = Σ_{i∈B} ẑ_i / d_i` where `d_i = ‖(r_i, c_i) − C‖₂`, floored at one
//!   pixel so that a pixel at the centre counts with weight 1 rather than ∞.

use ndarray::Array2;
use serde::Serialize;

use super::PixelBox;
use crate::model::{Network, Objective};
use crate::{Error, Result};

fn check(map: &[f64], truth: &[bool]) -> Result<()> {
    if map.len() != truth.len() {
        return Err(Error::Shape(format!(
            "the map has {} pixels, the ground truth {}",
            map.len(),
            truth.len()
        )));
    }
    if map.iter().any(|v| !v.is_finite()) {
        return Err(Error::InvalidArgument(
            "the attribution map holds a non-finite value".into(),
        ));
    }
    Ok(())
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// The `h × w` mask (row-major) of the pixels inside a box.
pub fn box_mask(b: PixelBox, h: usize, w: usize) -> Vec<bool> {
    (0..h * w)
        .map(|p| {
            let (r, c) = (p / w, p % w);
            r >= b.top && r < b.bottom && c >= b.left && c < b.right
        })
        .collect()
}

/// Localization (Definition 8): `|B ∩ P| / (|B| + |P \ B|)`.
pub fn localization(map: &[f64], truth: &[bool]) -> Result<f64> {
    check(map, truth)?;
    let (mut in_pos, mut b, mut out_pos) = (0usize, 0usize, 0usize);
    for (&z, &t) in map.iter().zip(truth) {
        b += t as usize;
        if z > 0.0 {
            if t {
                in_pos += 1;
            } else {
                out_pos += 1;
            }
        }
    }
    Ok(ratio(in_pos as f64, (b + out_pos) as f64))
}

/// Energy Game (Definition 9): `Σ_{i∈B} max(z_i, 0) / Σ_i max(z_i, 0)`.
pub fn energy_game(map: &[f64], truth: &[bool]) -> Result<f64> {
    check(map, truth)?;
    let (mut inside, mut total) = (0.0, 0.0);
    for (&z, &t) in map.iter().zip(truth) {
        let p = z.max(0.0);
        total += p;
        if t {
            inside += p;
        }
    }
    Ok(ratio(inside, total))
}

/// Positive Percentage (Definition 10): the positive share of the absolute
/// attribution inside the box.
pub fn positive_percentage(map: &[f64], truth: &[bool]) -> Result<f64> {
    check(map, truth)?;
    let (mut pos, mut abs) = (0.0, 0.0);
    for (&z, &t) in map.iter().zip(truth) {
        if t {
            pos += z.max(0.0);
            abs += z.abs();
        }
    }
    Ok(ratio(pos, abs))
}

/// Concentration (Definition 11) of an `h × w` map (row-major).
pub fn concentration(map: &[f64], truth: &[bool], h: usize, w: usize) -> Result<f64> {
    check(map, truth)?;
    if map.len() != h * w {
        return Err(Error::Shape(format!(
            "a {h}×{w} map needs {} values, got {}",
            h * w,
            map.len()
        )));
    }
    let total: f64 = map.iter().map(|z| z.abs()).sum();
    if total <= 0.0 {
        return Ok(0.0);
    }
    let (mut cr, mut cc) = (0.0, 0.0);
    for (p, z) in map.iter().enumerate() {
        let m = z.abs() / total;
        cr += m * (p / w) as f64;
        cc += m * (p % w) as f64;
    }
    let mut con = 0.0;
    for (p, (z, &t)) in map.iter().zip(truth).enumerate() {
        if t {
            let (dr, dc) = ((p / w) as f64 - cr, (p % w) as f64 - cc);
            con += (z.abs() / total) / (dr * dr + dc * dc).sqrt().max(1.0);
        }
    }
    Ok(con)
}

/// The four box scores of one map.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct BoxScores {
    /// Localization (Def. 8).
    pub localization: f64,
    /// Energy Game (Def. 9).
    pub energy_game: f64,
    /// Positive Percentage (Def. 10).
    pub positive_percentage: f64,
    /// Concentration (Def. 11).
    pub concentration: f64,
}

/// All four scores of an `h × w` map against a mask.
pub fn box_scores(map: &[f64], truth: &[bool], h: usize, w: usize) -> Result<BoxScores> {
    Ok(BoxScores {
        localization: localization(map, truth)?,
        energy_game: energy_game(map, truth)?,
        positive_percentage: positive_percentage(map, truth)?,
        concentration: concentration(map, truth, h, w)?,
    })
}

/// Which way a perturbation curve runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CurveKind {
    /// Start from the fill value everywhere and put the most important units
    /// back first (higher AUC is better).
    Insertion,
    /// Start from the input and replace the most important units by the fill
    /// value first (lower AUC is better).
    Deletion,
}

/// A perturbation curve: the objective after each fraction of units changed.
#[derive(Clone, Debug, Serialize)]
pub struct Curve {
    /// The kind.
    pub kind: CurveKind,
    /// Fractions of units changed, from 0 to 1.
    pub fractions: Vec<f64>,
    /// The objective at each fraction.
    pub scores: Vec<f64>,
    /// The area under the curve (trapezoid rule over the fractions).
    pub auc: f64,
}

/// Rows per forward pass of a curve.
const CURVE_BATCH: usize = 64;

/// An insertion or deletion curve of `objective` at `x`.
///
/// The map has one value per *unit*: `map.len()` must divide the input's
/// length, and element `e` belongs to unit `e mod map.len()` (a `H × W` map
/// for a `C × H × W` input moves all channels of a pixel together; a map as
/// long as the input moves single elements). Units are taken in decreasing
/// order of the map (ties by index); the curve has `steps + 1` points, the
/// `k`-th after `round(k · units / steps)` units, all run through the network
/// in batches.
pub fn perturbation_curve(
    net: &Network,
    x: &[f64],
    map: &[f64],
    objective: &Objective,
    fill: f64,
    steps: usize,
    kind: CurveKind,
) -> Result<Curve> {
    let n = net.input_len();
    let units = map.len();
    if x.len() != n || units == 0 || n % units != 0 {
        return Err(Error::Shape(format!(
            "a curve needs an input of {n} elements and a map whose length divides it; got {} and {units}",
            x.len()
        )));
    }
    if steps == 0 || map.iter().any(|v| v.is_nan()) {
        return Err(Error::InvalidArgument(
            "a curve needs at least one step and a map without NaN".into(),
        ));
    }
    objective.check(net.output_len())?;
    let mut order: Vec<usize> = (0..units).collect();
    order.sort_by(|&a, &b| map[b].total_cmp(&map[a]).then(a.cmp(&b)));
    let counts: Vec<usize> = (0..=steps)
        .map(|k| ((k as f64 * units as f64 / steps as f64).round() as usize).min(units))
        .collect();
    let mut rank = vec![0usize; units];
    for (r, &u) in order.iter().enumerate() {
        rank[u] = r;
    }
    let mut scores = Vec::with_capacity(counts.len());
    let mut buf = vec![0.0; net.output_len()];
    for chunk in counts.chunks(CURVE_BATCH) {
        let mut batch = Array2::<f64>::zeros((chunk.len(), n));
        for (mut row, &k) in batch.rows_mut().into_iter().zip(chunk) {
            for (e, v) in row.iter_mut().enumerate() {
                let changed = rank[e % units] < k;
                *v = match (kind, changed) {
                    (CurveKind::Deletion, true) | (CurveKind::Insertion, false) => fill,
                    _ => x[e],
                };
            }
        }
        let y = net.forward::<f64>(batch.view())?;
        for yr in y.rows() {
            scores.push(objective.value_and_grad(&yr.to_vec(), &mut buf));
        }
    }
    let fractions: Vec<f64> = counts.iter().map(|&k| k as f64 / units as f64).collect();
    let auc = fractions
        .windows(2)
        .zip(scores.windows(2))
        .map(|(f, s)| (f[1] - f[0]) * 0.5 * (s[0] + s[1]))
        .sum();
    Ok(Curve {
        kind,
        fractions,
        scores,
        auc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Dense, Layer, Node};
    use ndarray::{array, Array1};

    #[test]
    fn box_scores_on_a_toy_map() {
        // 2×3 map, box = left column pair (pixels 0, 1, 3, 4).
        let map = [1.0, 2.0, 3.0, -1.0, 0.0, 0.5];
        let truth = box_mask(
            PixelBox {
                top: 0,
                bottom: 2,
                left: 0,
                right: 2,
            },
            2,
            3,
        );
        assert_eq!(truth, vec![true, true, false, true, true, false]);
        // P = {0, 1, 2, 5}; |B ∩ P| = 2, |B| = 4, |P \ B| = 2.
        assert!((localization(&map, &truth).unwrap() - 2.0 / 6.0).abs() < 1e-12);
        // Positive mass 6.5, inside 3.
        assert!((energy_game(&map, &truth).unwrap() - 3.0 / 6.5).abs() < 1e-12);
        // Inside: positive 3, absolute 4.
        assert!((positive_percentage(&map, &truth).unwrap() - 0.75).abs() < 1e-12);
        let zero = [0.0; 6];
        assert_eq!(localization(&zero, &truth).unwrap(), 0.0);
        assert_eq!(energy_game(&zero, &truth).unwrap(), 0.0);
        assert_eq!(concentration(&zero, &truth, 2, 3).unwrap(), 0.0);
        assert!(localization(&map[..5], &truth).is_err());
    }

    #[test]
    fn concentration_rewards_mass_near_its_centre() {
        // All mass on one pixel inside the box: centre there, d floored at 1.
        let mut map = vec![0.0; 25];
        map[12] = 4.0;
        let truth = vec![true; 25];
        assert!((concentration(&map, &truth, 5, 5).unwrap() - 1.0).abs() < 1e-12);
        // Two equal pixels 2 apart: centre between them, each at distance 1.
        let mut map = vec![0.0; 25];
        map[11] = 1.0;
        map[13] = -1.0;
        assert!((concentration(&map, &truth, 5, 5).unwrap() - 1.0).abs() < 1e-12);
        // Four apart: each at distance 2, Con = 0.5.
        let mut map = vec![0.0; 25];
        map[10] = 1.0;
        map[14] = 1.0;
        assert!((concentration(&map, &truth, 5, 5).unwrap() - 0.5).abs() < 1e-12);
        let outside = box_mask(
            PixelBox {
                top: 0,
                bottom: 1,
                left: 0,
                right: 1,
            },
            5,
            5,
        );
        assert_eq!(concentration(&map, &outside, 5, 5).unwrap(), 0.0);
    }

    #[test]
    fn curves_of_a_linear_score() {
        // y₀ = Σ_i w_i x_i on 4 inputs: deletion in the map's order removes w_i x_i.
        let w = array![[4.0, 3.0, 2.0, 1.0]];
        let net = Network::from_layers(
            "lin",
            vec![1, 4],
            vec![(
                Node {
                    name: "fc".into(),
                    op_types: vec!["Gemm".into()],
                    in_shape: vec![1, 4],
                    out_shape: vec![1, 1],
                },
                Layer::Dense(Dense {
                    weight: w,
                    bias: Array1::zeros(1),
                    rows: 1,
                }),
            )],
        )
        .unwrap();
        let x = [1.0; 4];
        let map = [4.0, 3.0, 2.0, 1.0];
        let del = perturbation_curve(
            &net,
            &x,
            &map,
            &Objective::Logit(0),
            0.0,
            4,
            CurveKind::Deletion,
        )
        .unwrap();
        assert_eq!(del.scores, vec![10.0, 6.0, 3.0, 1.0, 0.0]);
        // Trapezoid: 0.25 · (8 + 4.5 + 2 + 0.5) = 3.75.
        assert!((del.auc - 3.75).abs() < 1e-12);
        let ins = perturbation_curve(
            &net,
            &x,
            &map,
            &Objective::Logit(0),
            0.0,
            4,
            CurveKind::Insertion,
        )
        .unwrap();
        assert_eq!(ins.scores, vec![0.0, 4.0, 7.0, 9.0, 10.0]);
        assert!((ins.auc - 6.25).abs() < 1e-12);
        // A map of 2 units on 4 inputs: unit u covers elements u and u + 2.
        let two = perturbation_curve(
            &net,
            &x,
            &[0.0, 1.0],
            &Objective::Logit(0),
            0.0,
            2,
            CurveKind::Deletion,
        )
        .unwrap();
        assert_eq!(two.scores, vec![10.0, 6.0, 0.0]);
        assert!(perturbation_curve(
            &net,
            &x,
            &[0.0; 3],
            &Objective::Logit(0),
            0.0,
            2,
            CurveKind::Deletion
        )
        .is_err());
    }
}
