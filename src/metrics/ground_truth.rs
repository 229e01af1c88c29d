//! Scores of a saliency map against a ground-truth mask: ROC-AUC (the
//! probability that a random foreground pixel outranks a random background
//! one, ties counted half) and the best F1 over all thresholds.

use crate::{Error, Result};

fn check(map: &[f64], truth: &[bool]) -> Result<()> {
    if map.len() != truth.len() {
        return Err(Error::Shape(format!(
            "a map of {} values and a ground truth of {}",
            map.len(),
            truth.len()
        )));
    }
    Ok(())
}

/// Ranks of `v` (1-based, ties averaged).
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// ROC-AUC of `map` as a score for `truth` (Mann–Whitney U / (n₊ n₋));
/// `None` when one class is empty.
pub fn roc_auc(map: &[f64], truth: &[bool]) -> Result<Option<f64>> {
    check(map, truth)?;
    let pos = truth.iter().filter(|&&t| t).count();
    let neg = truth.len() - pos;
    if pos == 0 || neg == 0 {
        return Ok(None);
    }
    let r = ranks(map);
    let sum: f64 = r
        .iter()
        .zip(truth)
        .filter(|(_, &t)| t)
        .map(|(r, _)| r)
        .sum();
    let u = sum - (pos * (pos + 1)) as f64 / 2.0;
    Ok(Some(u / (pos * neg) as f64))
}

/// The largest F1 of `{map ≥ t}` against `truth` over all thresholds `t`;
/// `None` when the truth is empty.
pub fn max_f1(map: &[f64], truth: &[bool]) -> Result<Option<f64>> {
    check(map, truth)?;
    let pos = truth.iter().filter(|&&t| t).count();
    if pos == 0 {
        return Ok(None);
    }
    let mut idx: Vec<usize> = (0..map.len()).collect();
    idx.sort_by(|&a, &b| map[b].total_cmp(&map[a]));
    let (mut tp, mut fp, mut best) = (0usize, 0usize, 0.0f64);
    let mut i = 0;
    while i < idx.len() {
        // Take every pixel tied at this value together.
        let v = map[idx[i]];
        while i < idx.len() && map[idx[i]] == v {
            if truth[idx[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        let f1 = 2.0 * tp as f64 / (2 * tp + fp + (pos - tp)) as f64;
        best = best.max(f1);
    }
    Ok(Some(best))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_inverse_and_tied_maps() {
        let truth = [true, true, false, false];
        assert_eq!(roc_auc(&[0.9, 0.8, 0.1, 0.0], &truth).unwrap(), Some(1.0));
        assert_eq!(roc_auc(&[0.0, 0.1, 0.8, 0.9], &truth).unwrap(), Some(0.0));
        assert_eq!(roc_auc(&[0.5; 4], &truth).unwrap(), Some(0.5));
        assert_eq!(max_f1(&[0.9, 0.8, 0.1, 0.0], &truth).unwrap(), Some(1.0));
        // All tied: the only threshold keeps everything: F1 = 2·2 / (4 + 2) = 2/3.
        assert!((max_f1(&[0.5; 4], &truth).unwrap().unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(roc_auc(&[1.0, 2.0], &[true, true]).unwrap(), None);
        assert!(roc_auc(&[1.0], &truth).is_err());
    }

    #[test]
    fn auc_matches_pair_counting() {
        let map = [0.3, 0.7, 0.7, 0.1, 0.9, 0.2];
        let truth = [true, false, true, false, true, false];
        let mut wins = 0.0;
        let mut pairs = 0.0;
        for i in 0..6 {
            for j in 0..6 {
                if truth[i] && !truth[j] {
                    pairs += 1.0;
                    wins += if map[i] > map[j] {
                        1.0
                    } else if map[i] == map[j] {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        assert!((roc_auc(&map, &truth).unwrap().unwrap() - wins / pairs).abs() < 1e-12);
    }
}
