//! Explanations computed with the solvers: SMUG's first-layer minimal masks
//! and saliency, and the full-network minimal mask.

pub mod mask;
pub mod minimal_mask;
pub mod smug;

pub use mask::{Layout, MaskGrid};
pub use minimal_mask::{minimal_mask, MaskOptions, Masked, MinimalMask};
