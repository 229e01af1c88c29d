//! The robustness evaluation curves of Hsieh et al. 2021 (§3.2, Definition
//! 3.2, Appendix C): for the top-`K` units `S_r` of an explanation,
//!
//! * `Robustness-S̄_r = g(f, x, U \ S_r)`: the minimal perturbation off the
//!   explanation (higher is better), and
//! * `Robustness-S_r = g(f, x, S_r)`: the minimal perturbation on it (lower
//!   is better),
//!
//! measured at `|S_r|` = 5 %, 10 %, …, 45 % of the units and summarised by the
//! area under each curve, `AUC(C) = Σ_i (y_i + y_{i−1}) / 2 · (x_i − x_{i−1})`
//! with `x` in percent of the units (the paper's scale: its Table 1 reports
//! these AUCs averaged over images).

use serde::Serialize;

use crate::attack::restricted::SubsetRobustness;
use crate::{Error, Result};

/// The paper's curve points: 5 %, 10 %, …, 45 % of the units.
pub fn paper_fractions() -> Vec<f64> {
    (1..=9).map(|k| 0.05 * k as f64).collect()
}

/// Both robustness curves of one explanation on one sample.
#[derive(Clone, Debug, Serialize)]
pub struct RobustnessCurves {
    /// Fractions of the units in `S_r`.
    pub fractions: Vec<f64>,
    /// `|S_r|` at each fraction.
    pub sizes: Vec<usize>,
    /// `Robustness-S̄_r` at each fraction (perturbation off `S_r`).
    pub off_set: Vec<f64>,
    /// `Robustness-S_r` at each fraction (perturbation on `S_r`).
    pub on_set: Vec<f64>,
    /// Whether a perturbation was found at each point of `off_set` (where
    /// not, the point holds the unreached value).
    pub off_set_reached: Vec<bool>,
    /// Whether a perturbation was found at each point of `on_set`.
    pub on_set_reached: Vec<bool>,
    /// Points of `off_set` where no perturbation was found.
    pub off_set_unreached: usize,
    /// Points of `on_set` where no perturbation was found.
    pub on_set_unreached: usize,
    /// AUC of `Robustness-S̄_r` (x in percent; higher is better).
    pub auc_off_set: f64,
    /// AUC of `Robustness-S_r` (x in percent; lower is better).
    pub auc_on_set: f64,
}

/// The top-`k` units of `scores` by `|score|` (ties by index), as a mask.
///
/// Attribution maps are ranked by magnitude, as in the released evaluation
/// code; rankings from [`crate::explain::greedy_as`] are positive already.
pub fn top_units(scores: &[f64], k: usize) -> Vec<bool> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].abs().total_cmp(&scores[a].abs()).then(a.cmp(&b)));
    let mut m = vec![false; scores.len()];
    for &u in order.iter().take(k) {
        m[u] = true;
    }
    m
}

/// The trapezoid AUC of points `(x_i, y_i)`, `x` increasing.
pub fn auc(x: &[f64], y: &[f64]) -> f64 {
    x.windows(2)
        .zip(y.windows(2))
        .map(|(a, b)| (a[1] - a[0]) * 0.5 * (b[0] + b[1]))
        .sum()
}

/// Both curves of an explanation (`scores`, one per unit of `game`) at the
/// given fractions, all `2 × fractions` sets estimated in one batch.
pub fn robustness_curves(
    game: &SubsetRobustness<'_>,
    scores: &[f64],
    fractions: &[f64],
) -> Result<RobustnessCurves> {
    let units = game.features().units();
    if scores.len() != units {
        return Err(Error::Shape(format!(
            "an explanation of {} scores for {units} feature units",
            scores.len()
        )));
    }
    if scores.iter().any(|s| s.is_nan()) {
        return Err(Error::InvalidArgument(
            "the explanation holds NaN scores".into(),
        ));
    }
    if fractions.is_empty()
        || fractions
            .iter()
            .any(|f| !(f.is_finite() && *f > 0.0 && *f < 1.0))
        || fractions.windows(2).any(|w| w[1] <= w[0])
    {
        return Err(Error::InvalidArgument(format!(
            "curve fractions must increase strictly within (0, 1), got {fractions:?}"
        )));
    }
    let sizes: Vec<usize> = fractions
        .iter()
        .map(|f| ((f * units as f64).round() as usize).clamp(1, units.max(1)))
        .collect();
    let sets: Vec<Vec<bool>> = sizes.iter().map(|&k| top_units(scores, k)).collect();
    let mut masks = Vec::with_capacity(2 * sets.len());
    for s in &sets {
        masks.push(game.features().complement_mask(s));
    }
    for s in &sets {
        masks.push(game.features().element_mask(s));
    }
    let v = game.of_elements(&masks)?;
    let (off, on) = v.split_at(sets.len());
    let pct: Vec<f64> = fractions.iter().map(|f| 100.0 * f).collect();
    let off_set: Vec<f64> = off.iter().map(|p| p.0).collect();
    let on_set: Vec<f64> = on.iter().map(|p| p.0).collect();
    Ok(RobustnessCurves {
        auc_off_set: auc(&pct, &off_set),
        auc_on_set: auc(&pct, &on_set),
        off_set_reached: off.iter().map(|p| p.1).collect(),
        on_set_reached: on.iter().map(|p| p.1).collect(),
        off_set_unreached: off.iter().filter(|p| !p.1).count(),
        on_set_unreached: on.iter().filter(|p| !p.1).count(),
        fractions: fractions.to_vec(),
        sizes,
        off_set,
        on_set,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attack::restricted::{DeepFool, Estimator, Features, Restriction};
    use crate::attack::tests::linear_net;
    use crate::attack::{Goal, Norm};
    use ndarray::{Array1, Array2};

    #[test]
    fn auc_is_the_trapezoid_rule() {
        assert!((auc(&[5.0, 10.0, 15.0], &[1.0, 2.0, 4.0]) - (7.5 + 15.0)).abs() < 1e-12);
        assert_eq!(auc(&[1.0], &[3.0]), 0.0);
    }

    #[test]
    fn top_units_ranks_by_magnitude() {
        assert_eq!(
            top_units(&[0.1, -3.0, 2.0, 0.0], 2),
            vec![false, true, true, false]
        );
        assert_eq!(top_units(&[1.0, 1.0, 1.0], 1), vec![true, false, false]);
    }

    /// On a linear classifier without a box, `g(S) = m / ‖w_S‖₂`: the
    /// explanation |w| gives the largest off-set and the smallest on-set
    /// robustness at every size, and its AUCs beat the reversed ranking.
    #[test]
    fn the_weights_beat_their_reverse() {
        let w: Vec<f64> = (0..10)
            .map(|i| (i as f64 + 1.0) * if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let mut rows = w.clone();
        rows.extend(vec![0.0; 10]);
        let net = linear_net(
            Array2::from_shape_vec((2, 10), rows).unwrap(),
            Array1::from(vec![20.0, 0.0]),
        );
        let x = vec![0.0; 10];
        let game = SubsetRobustness::new(
            &net,
            &x,
            Goal::Untargeted { label: 0 },
            Features::elements(10),
            Estimator::DeepFool(DeepFool {
                refine: 30,
                ..DeepFool::default()
            }),
            Restriction {
                norm: Norm::L2,
                ..Restriction::default()
            },
        )
        .unwrap();
        let good: Vec<f64> = w.iter().map(|v| v.abs()).collect();
        let bad: Vec<f64> = good.iter().map(|v| 1.0 / v).collect();
        let fr = [0.1, 0.2, 0.3, 0.4];
        let g = robustness_curves(&game, &good, &fr).unwrap();
        let b = robustness_curves(&game, &bad, &fr).unwrap();
        for i in 0..fr.len() {
            let k = g.sizes[i];
            let on: f64 = (10 - k..10).map(|j| w[j] * w[j]).sum::<f64>().sqrt();
            assert!(
                (g.on_set[i] - 20.0 / on).abs() < 1e-5,
                "{} vs {}",
                g.on_set[i],
                20.0 / on
            );
            assert!(g.off_set[i] >= b.off_set[i] && g.on_set[i] <= b.on_set[i]);
        }
        assert!(g.auc_off_set > b.auc_off_set && g.auc_on_set < b.auc_on_set);
        assert!(robustness_curves(&game, &good[1..], &fr).is_err());
        assert!(robustness_curves(&game, &good, &[0.3, 0.2]).is_err());
    }
}
