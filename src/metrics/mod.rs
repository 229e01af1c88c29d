//! Metrics of explanations: SMUG's LSC score and boxes, sparsity, and scores
//! against a ground-truth mask.

pub mod attribution;
pub mod ground_truth;
pub mod lsc;

pub use ground_truth::{max_f1, roc_auc};
pub use lsc::{best_lsc_of_map, lsc_boxes, lsc_score, optbox, sparsity, Lsc, PixelBox};
