//! Explanations that optimise robustness directly (Hsieh et al. 2021,
//! "Evaluations and Methods for Explanation through Robustness Analysis",
//! §4): Greedy (§4.1, Eq. 5), Greedy-AS (§4.2, Eq. 6) and One-Step Banzhaf
//! (Appendix E).
//!
//! With `g(f, x, S)` the minimal adversarial perturbation restricted to `S`
//! ([`SubsetRobustness`]), an explanation `S_r` of size `K` should either
//!
//! * maximise `Robustness-S̄_r = g(f, x, U \ S_r)` (Eq. 3): anchoring the
//!   explanation makes the prediction hard to move through the rest
//!   ([`Criterion::Anchor`]), or
//! * minimise `Robustness-S_r = g(f, x, S_r)` (Eq. 4): perturbing the
//!   explanation alone moves the prediction easily ([`Criterion::Perturb`]).
//!
//! Both grow `S_r` from the empty set in rounds that add a fixed fraction of
//! the features (5 % in the paper). **Greedy** scores every unchosen unit `i`
//! by `v(S_r ∪ {i})`; **Greedy-AS** samples coalitions `S` of the unchosen
//! units and regresses `v(S_r ∪ S)` on their indicator vectors,
//!
//! `(w, c) = argmin_{w,c} Σ_S (wᵀ b(S) + c − v(S_r ∪ S))²`   (Eq. 6)
//!
//! whose coefficients are the units' Banzhaf values in the game restricted to
//! the unchosen units, and takes the units with the best coefficients
//! (highest for Eq. 3, lowest for Eq. 4). **One-Step Banzhaf** is a single
//! such regression over all units with the uniform (Banzhaf) distribution on
//! coalitions. Every method returns a full ranking: the units in the order
//! chosen (within a round by score), then the rest by the last round's score.

use ndarray::Array2;
use serde::Serialize;

use crate::attack::restricted::SubsetRobustness;
use crate::attack::Rng;
use crate::{Error, Result};
use rayon::prelude::*;

/// Which of the paper's two objectives an explanation optimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Criterion {
    /// Eq. 3: maximise `Robustness-S̄_r`, perturbing only off the explanation.
    #[default]
    Anchor,
    /// Eq. 4: minimise `Robustness-S_r`, perturbing only the explanation.
    Perturb,
}

impl Criterion {
    /// `v(T)` of a set of chosen units: `g` off `T` (Anchor) or on `T` (Perturb).
    fn values(self, game: &SubsetRobustness<'_>, chosen: &[Vec<bool>]) -> Result<Vec<f64>> {
        let masks: Vec<Vec<bool>> = chosen
            .iter()
            .map(|c| match self {
                Criterion::Anchor => game.features().complement_mask(c),
                Criterion::Perturb => game.features().element_mask(c),
            })
            .collect();
        Ok(game.of_elements(&masks)?.into_iter().map(|v| v.0).collect())
    }

    /// Scores turned so that higher is better for this criterion.
    fn better_is_higher(self, v: f64) -> f64 {
        match self {
            Criterion::Anchor => v,
            Criterion::Perturb => -v,
        }
    }
}

/// Options of Greedy and Greedy-AS.
#[derive(Clone, Debug, Serialize)]
pub struct GreedyOptions {
    /// The objective.
    pub criterion: Criterion,
    /// Stop once this fraction of the units is chosen (the rest is ranked by
    /// the last round's scores).
    pub fraction: f64,
    /// Fraction of the units added per round (the paper: 5 %).
    pub per_round: f64,
    /// Greedy-AS: coalitions sampled per round (the paper: 5,000).
    pub coalitions: usize,
    /// Greedy-AS: probability that an unchosen unit joins a sampled
    /// coalition (the released code: 0.2; 0.5 is the uniform distribution of
    /// the Banzhaf value).
    pub inclusion: f64,
    /// Seed of the coalition draws.
    pub seed: u64,
}

impl Default for GreedyOptions {
    fn default() -> Self {
        GreedyOptions {
            criterion: Criterion::Anchor,
            fraction: 0.5,
            per_round: 0.05,
            coalitions: 5000,
            inclusion: 0.2,
            seed: 0,
        }
    }
}

impl GreedyOptions {
    fn check(&self) -> Result<()> {
        let frac = |v: f64| v.is_finite() && v > 0.0 && v <= 1.0;
        if !frac(self.fraction) || !frac(self.per_round) {
            return Err(Error::InvalidArgument(format!(
                "the fraction chosen and the fraction per round must lie in (0, 1], got {} and {}",
                self.fraction, self.per_round
            )));
        }
        if !(self.inclusion > 0.0 && self.inclusion < 1.0) {
            return Err(Error::InvalidArgument(format!(
                "the inclusion probability must lie in (0, 1), got {}",
                self.inclusion
            )));
        }
        if self.coalitions < 2 {
            return Err(Error::InvalidArgument(format!(
                "Greedy-AS needs at least 2 coalitions per round, got {}",
                self.coalitions
            )));
        }
        Ok(())
    }
}

/// A ranking of the feature units.
#[derive(Clone, Debug, Serialize)]
pub struct Ranking {
    /// Units, most important first (every unit once).
    pub order: Vec<usize>,
    /// One score per unit, higher = more important: `units − rank`.
    pub scores: Vec<f64>,
    /// How many units were chosen by the greedy rounds (the rest of `order`
    /// is ranked by the last round's scores).
    pub chosen: usize,
    /// Rounds run.
    pub rounds: usize,
    /// Evaluations of `g` spent.
    pub evaluations: usize,
}

impl Ranking {
    fn from_order(order: Vec<usize>, chosen: usize, rounds: usize, evaluations: usize) -> Ranking {
        let n = order.len();
        let mut scores = vec![0.0; n];
        for (r, &u) in order.iter().enumerate() {
            scores[u] = (n - r) as f64;
        }
        Ranking {
            order,
            scores,
            chosen,
            rounds,
            evaluations,
        }
    }
}

/// Sorts `units` by `score` (higher first, ties by index).
fn by_score(units: &mut [usize], score: &[f64]) {
    units.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
}

/// The shared round structure of Greedy and Greedy-AS: `score_round` gets the
/// current chosen mask and the unchosen units, returns one score per
/// unchosen unit (higher = better) and the evaluations it spent.
fn greedy_rounds(
    units: usize,
    opts: &GreedyOptions,
    mut score_round: impl FnMut(&[bool], &[usize], usize) -> Result<(Vec<f64>, usize)>,
) -> Result<Ranking> {
    opts.check()?;
    let target = ((opts.fraction * units as f64).round() as usize).clamp(1, units);
    let step = ((opts.per_round * units as f64).round() as usize).max(1);
    let mut chosen = vec![false; units];
    let mut order = Vec::with_capacity(units);
    let mut rounds = 0;
    let mut evaluations = 0;
    loop {
        let rest: Vec<usize> = (0..units).filter(|&u| !chosen[u]).collect();
        if rest.is_empty() {
            break;
        }
        let (scores, spent) = score_round(&chosen, &rest, rounds)?;
        evaluations += spent;
        rounds += 1;
        let mut full = vec![f64::NEG_INFINITY; units];
        for (&u, &s) in rest.iter().zip(&scores) {
            full[u] = if s.is_nan() { f64::NEG_INFINITY } else { s };
        }
        let mut ranked = rest.clone();
        by_score(&mut ranked, &full);
        let take = step.min(target - order.len());
        for &u in &ranked[..take] {
            chosen[u] = true;
            order.push(u);
        }
        if order.len() >= target {
            order.extend_from_slice(&ranked[take..]);
            break;
        }
    }
    Ok(Ranking::from_order(order, target, rounds, evaluations))
}

/// Greedy (§4.1, Eq. 5): each round adds the units whose singleton addition
/// scores best, `argmax_i v(S_r ∪ {i})` (Eq. 3) or `argmin` (Eq. 4).
pub fn greedy(game: &SubsetRobustness<'_>, opts: &GreedyOptions) -> Result<Ranking> {
    let units = game.features().units();
    greedy_rounds(units, opts, |chosen, rest, _| {
        let sets: Vec<Vec<bool>> = rest
            .iter()
            .map(|&u| {
                let mut c = chosen.to_vec();
                c[u] = true;
                c
            })
            .collect();
        let v = opts.criterion.values(game, &sets)?;
        Ok((
            v.into_iter()
                .map(|v| opts.criterion.better_is_higher(v))
                .collect(),
            rest.len(),
        ))
    })
}

/// Greedy-AS (§4.2, Eq. 6): each round regresses `v(S_r ∪ S)` on the
/// indicators of sampled coalitions `S` of the unchosen units and adds the
/// units with the best coefficients.
pub fn greedy_as(game: &SubsetRobustness<'_>, opts: &GreedyOptions) -> Result<Ranking> {
    let units = game.features().units();
    greedy_rounds(units, opts, |chosen, rest, round| {
        let (sets, z) = sample_coalitions(
            chosen,
            rest,
            opts.coalitions,
            opts.inclusion,
            opts.seed,
            round,
        );
        let v = opts.criterion.values(game, &sets)?;
        let (w, _) = banzhaf_regression(&z, rest.len(), &v)?;
        Ok((
            w.into_iter()
                .map(|w| opts.criterion.better_is_higher(w))
                .collect(),
            sets.len(),
        ))
    })
}

/// One-Step Banzhaf (Appendix E): one regression (Eq. 6 with `S_r = ∅`) over
/// `coalitions` sets drawn uniformly from all subsets; the ranking follows
/// the coefficients (highest first for Eq. 3, lowest for Eq. 4).
pub fn one_step_banzhaf(game: &SubsetRobustness<'_>, opts: &GreedyOptions) -> Result<Ranking> {
    opts.check()?;
    let units = game.features().units();
    let rest: Vec<usize> = (0..units).collect();
    let (sets, z) = sample_coalitions(
        &vec![false; units],
        &rest,
        opts.coalitions,
        0.5,
        opts.seed,
        0,
    );
    let v = opts.criterion.values(game, &sets)?;
    let (w, _) = banzhaf_regression(&z, units, &v)?;
    let score: Vec<f64> = w
        .into_iter()
        .map(|w| opts.criterion.better_is_higher(w))
        .collect();
    let mut order = rest;
    by_score(&mut order, &score);
    Ok(Ranking::from_order(order, units, 1, sets.len()))
}

/// Draws `count` coalitions of the units `rest` (each joins with probability
/// `p`), seeded by `(seed, round, draw)`. Returns the chosen-unit masks
/// `chosen ∪ S` and the indicator matrix of `S` over `rest` (`[count, |rest|]`).
fn sample_coalitions(
    chosen: &[bool],
    rest: &[usize],
    count: usize,
    p: f64,
    seed: u64,
    round: usize,
) -> (Vec<Vec<bool>>, Array2<f32>) {
    let mut z = Array2::<f32>::zeros((count, rest.len()));
    let mut sets = Vec::with_capacity(count);
    for k in 0..count {
        let mut rng = Rng::for_sample(seed, round, k);
        let mut set = chosen.to_vec();
        for (j, &u) in rest.iter().enumerate() {
            if rng.uniform() < p {
                set[u] = true;
                z[[k, j]] = 1.0;
            }
        }
        sets.push(set);
    }
    (sets, z)
}

/// `ZᵀZ` (upper triangle, row-major `[players, players]`) of the 0/1 matrix
/// `z` (`[coalitions, players]`, row-major) by AND + popcount over the
/// columns packed as bit sets.
fn indicator_gram(z: &[f32], coalitions: usize, players: usize) -> Vec<u64> {
    let words = coalitions.div_ceil(64);
    let mut bits = vec![0u64; players * words];
    for (k, row) in z.chunks_exact(players.max(1)).enumerate() {
        for (j, &b) in row.iter().enumerate() {
            if b != 0.0 {
                bits[j * words + k / 64] |= 1 << (k % 64);
            }
        }
    }
    let mut gram = vec![0u64; players * players];
    gram.par_chunks_mut(players.max(1))
        .enumerate()
        .for_each(|(i, row)| {
            let a = &bits[i * words..(i + 1) * words];
            for (j, g) in row.iter_mut().enumerate().skip(i) {
                let b = &bits[j * words..(j + 1) * words];
                *g = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| u64::from((x & y).count_ones()))
                    .sum();
            }
        });
    gram
}

/// Ridge added to the players' diagonal of the normal equations, relative to
/// the number of coalitions: it only matters for a player that no coalition
/// (or every coalition) holds, whose coefficient it sets to 0 instead of
/// leaving the system singular.
const RIDGE: f64 = 1e-9;

/// Least squares with an intercept (Eq. 6): `(w, c)` minimising
/// `Σ_k (wᵀ z_k + c − v_k)²` for 0/1 rows `z_k` (`z`: `[coalitions, players]`).
///
/// `ZᵀZ` of a 0/1 matrix holds the integer counts `|{k : z_ki = z_kj = 1}|`:
/// every column is packed into a bit set over the coalitions and each entry
/// of the upper triangle is one AND + popcount sweep (exact, about 60× fewer
/// operations than a dense GEMM at 5,000 coalitions). The normal equations
/// are solved in `f64` by Cholesky.
pub fn banzhaf_regression(z: &Array2<f32>, players: usize, v: &[f64]) -> Result<(Vec<f64>, f64)> {
    let s = z.nrows();
    if z.ncols() != players || v.len() != s {
        return Err(Error::Shape(format!(
            "a regression of {} values on a {}×{} coalition matrix for {players} players",
            v.len(),
            s,
            z.ncols()
        )));
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(Error::InvalidArgument(
            "a coalition value is not finite".into(),
        ));
    }
    let zs = z.as_standard_layout();
    let zs = zs.as_slice().unwrap_or(&[]);
    if let Some(b) = zs.iter().find(|&&b| b != 0.0 && b != 1.0) {
        return Err(Error::InvalidArgument(format!(
            "a coalition indicator is {b}, not 0 or 1"
        )));
    }
    let gram = indicator_gram(zs, s, players);
    let n = players + 1;
    let mut counts = vec![0.0f64; players];
    let mut zv = vec![0.0f64; players];
    for (k, &vk) in v.iter().enumerate() {
        for (j, &b) in zs[k * players..(k + 1) * players].iter().enumerate() {
            if b != 0.0 {
                counts[j] += 1.0;
                zv[j] += vk;
            }
        }
    }
    let a = faer::Mat::<f64>::from_fn(n, n, |i, j| match (i < players, j < players) {
        (true, true) => {
            gram[i.min(j) * players + i.max(j)] as f64 + if i == j { RIDGE * s as f64 } else { 0.0 }
        }
        (true, false) => counts[i],
        (false, true) => counts[j],
        (false, false) => s as f64,
    });
    let rhs = faer::Mat::<f64>::from_fn(
        n,
        1,
        |i, _| {
            if i < players {
                zv[i]
            } else {
                v.iter().sum()
            }
        },
    );
    let llt = a.llt(faer::Side::Lower).map_err(|e| Error::Numeric {
        layer: "Banzhaf regression".into(),
        message: format!("the normal equations are not positive definite: {e:?}"),
    })?;
    let sol = faer::linalg::solvers::Solve::solve(&llt, &rhs);
    let w: Vec<f64> = (0..players).map(|i| sol[(i, 0)]).collect();
    let c = sol[(players, 0)];
    if w.iter().any(|x| !x.is_finite()) || !c.is_finite() {
        return Err(Error::Numeric {
            layer: "Banzhaf regression".into(),
            message: "the coefficients are not finite".into(),
        });
    }
    Ok((w, c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attack::restricted::{DeepFool, Estimator, Features, Restriction};
    use crate::attack::tests::linear_net;
    use crate::attack::{Clip, Goal, Norm};
    use ndarray::{Array1, Array2};

    /// An additive game with an intercept is recovered exactly.
    #[test]
    fn regression_recovers_an_additive_game() {
        let players = 12;
        let w: Vec<f64> = (0..players).map(|j| (j as f64 - 5.0) * 0.3).collect();
        let rest: Vec<usize> = (0..players).collect();
        let (_, z) = sample_coalitions(&vec![false; players], &rest, 400, 0.3, 7, 0);
        let v: Vec<f64> = z
            .rows()
            .into_iter()
            .map(|r| 1.5 + r.iter().zip(&w).map(|(&b, w)| b as f64 * w).sum::<f64>())
            .collect();
        let (got, c) = banzhaf_regression(&z, players, &v).unwrap();
        for j in 0..players {
            assert!(
                (got[j] - w[j]).abs() < 1e-6,
                "player {j}: {} vs {}",
                got[j],
                w[j]
            );
        }
        assert!((c - 1.5).abs() < 1e-6);
    }

    /// On a full enumeration with p = 1/2 the coefficient of a player is its
    /// Banzhaf value, the mean marginal contribution over all coalitions of the others.
    #[test]
    fn regression_on_all_coalitions_is_the_banzhaf_value() {
        let players = 5;
        // v(S) = [|S ∩ {0,1}| ≥ 2] + 0.5 [3 ∈ S] [4 ∈ S]: a majority and a product.
        let game = |s: u32| {
            let a = ((s & 1) + ((s >> 1) & 1) >= 2) as u32 as f64;
            a + 0.5 * (((s >> 3) & 1) * ((s >> 4) & 1)) as f64
        };
        let all = 1u32 << players;
        let z = Array2::from_shape_fn((all as usize, players), |(k, j)| ((k >> j) & 1) as f32);
        let v: Vec<f64> = (0..all).map(game).collect();
        let (w, _) = banzhaf_regression(&z, players, &v).unwrap();
        for (j, wj) in w.iter().enumerate() {
            let mut sum = 0.0;
            for s in 0..all {
                if (s >> j) & 1 == 0 {
                    sum += game(s | (1 << j)) - game(s);
                }
            }
            let banzhaf = sum / (all / 2) as f64;
            assert!((wj - banzhaf).abs() < 1e-6, "player {j}: {wj} vs {banzhaf}");
        }
    }

    #[test]
    fn regression_survives_a_player_no_coalition_holds() {
        let z = Array2::from_shape_fn(
            (20, 3),
            |(k, j)| if j == 2 { 0.0 } else { ((k + j) % 2) as f32 },
        );
        let v: Vec<f64> = (0..20).map(|k| k as f64).collect();
        let (w, _) = banzhaf_regression(&z, 3, &v).unwrap();
        assert!(w[2].abs() < 1e-6);
        assert!(banzhaf_regression(&z, 4, &v).is_err());
    }

    /// A linear two-class net over 8 inputs where inputs 0-3 carry most of the
    /// weight: both criteria and every method rank the heavy inputs first.
    #[test]
    fn heavy_inputs_come_first() {
        let w = [3.0, -2.5, 2.0, -3.5, 0.1, -0.05, 0.08, 0.02];
        let mut rows = w.to_vec();
        rows.extend_from_slice(&[0.0; 8]);
        let net = linear_net(
            Array2::from_shape_vec((2, 8), rows).unwrap(),
            Array1::from(vec![0.5, 0.0]),
        );
        let x = vec![0.5; 8];
        let game = SubsetRobustness::new(
            &net,
            &x,
            Goal::Untargeted { label: 0 },
            Features::elements(8),
            Estimator::DeepFool(DeepFool::default()),
            Restriction {
                norm: Norm::L2,
                clip: Clip::Range { min: 0.0, max: 1.0 },
                ..Restriction::default()
            },
        )
        .unwrap();
        for criterion in [Criterion::Anchor, Criterion::Perturb] {
            let opts = GreedyOptions {
                criterion,
                fraction: 0.5,
                per_round: 0.25,
                coalitions: 300,
                ..GreedyOptions::default()
            };
            for (name, r) in [
                ("greedy", greedy(&game, &opts).unwrap()),
                ("greedy-as", greedy_as(&game, &opts).unwrap()),
                ("one-step", one_step_banzhaf(&game, &opts).unwrap()),
            ] {
                let mut top: Vec<usize> = r.order[..4].to_vec();
                top.sort();
                assert_eq!(top, vec![0, 1, 2, 3], "{name} {criterion:?}: {:?}", r.order);
                let mut all = r.order.clone();
                all.sort();
                assert_eq!(all, (0..8).collect::<Vec<_>>());
                assert!(r.scores[r.order[0]] > r.scores[r.order[7]]);
            }
        }
    }

    #[test]
    fn bad_options_are_errors() {
        let net = linear_net(Array2::eye(2), Array1::zeros(2));
        let game = SubsetRobustness::new(
            &net,
            &[1.0, 0.0],
            Goal::Untargeted { label: 0 },
            Features::elements(2),
            Estimator::DeepFool(DeepFool::default()),
            Restriction::default(),
        )
        .unwrap();
        for bad in [
            GreedyOptions {
                fraction: 0.0,
                ..GreedyOptions::default()
            },
            GreedyOptions {
                per_round: 1.5,
                ..GreedyOptions::default()
            },
            GreedyOptions {
                inclusion: 1.0,
                ..GreedyOptions::default()
            },
            GreedyOptions {
                coalitions: 1,
                ..GreedyOptions::default()
            },
        ] {
            assert!(greedy_as(&game, &bad).is_err());
        }
    }
}
