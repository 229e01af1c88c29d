//! Subcommands beyond the verification core, one file per family.

pub mod attack;
pub mod attribute;
pub mod explain;
pub mod robustness;
