//! Attributions computed on the Network IR: how much each element of an
//! activation (the input, or a hidden layer) contributes to an objective.

pub mod ig;

pub use ig::{integrated_gradients_at, IgMap, Rule};
