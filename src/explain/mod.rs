//! Explanations computed with the solvers: SMUG's first-layer minimal masks
//! and saliency, the full-network minimal mask, and the exact minimal
//! adversarial perturbation restricted to a feature set.

pub mod mask;
pub mod minimal_mask;
pub mod robustness;
pub mod smug;

pub use mask::{Layout, MaskGrid};
pub use minimal_mask::{minimal_mask, MaskOptions, Masked, MinimalMask};
