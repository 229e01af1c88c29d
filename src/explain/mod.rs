//! Explanations computed with the solvers: SMUG's first-layer minimal masks
//! and saliency, the full-network minimal mask, and the exact minimal
//! adversarial perturbation restricted to a feature set, and the
//! explanations that optimise it (Greedy, Greedy-AS, One-Step Banzhaf).

pub mod greedy_as;
pub mod mask;
pub mod minimal_mask;
pub mod robustness;
pub mod smug;

pub use greedy_as::{greedy, greedy_as, one_step_banzhaf, Criterion, GreedyOptions, Ranking};
pub use mask::{Layout, MaskGrid};
pub use minimal_mask::{minimal_mask, MaskOptions, Masked, MinimalMask};
