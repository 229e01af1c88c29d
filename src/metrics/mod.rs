//! Metrics of explanations: SMUG's LSC score and boxes, sparsity, scores
//! against a ground-truth mask, and the robustness curves Robustness-S_r and
//! Robustness-S̄_r.

pub mod attribution;
pub mod ground_truth;
pub mod lsc;
pub mod robustness;

pub use ground_truth::{max_f1, roc_auc};
pub use lsc::{best_lsc_of_map, lsc_boxes, lsc_score, optbox, sparsity, Lsc, PixelBox};
pub use robustness::{robustness_curves, RobustnessCurves};
