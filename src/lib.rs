//! # nnexplain
//!
//! An engine that explains and checks neural networks with solvers.
//!
//! ```text
//!  ONNX file ──tract──▶ Network IR ──▶ attribution (IG, grads, PGD, DSF)
//!                            │
//!                            ▼
//!                       encoders ──▶ Problem IR ──▶ backends: z3 · HiGHS MILP · LP relax
//!                                                     └──▶ portfolio (race, cancel losers)
//!                                                                 │
//!                  explanation / verdict ◀── independent re-check ┘  (forward pass)
//! ```
//!
//! The foundation is in place: [`Network::from_onnx`] lowers an ONNX file into
//! the engine's own [`Network`] IR, which runs forward ([`Network::forward`]) and
//! backward ([`Network::gradient`]) exactly in `f32` or `f64`, and agrees with
//! tract's inference ([`model::Reference`]); [`Property::from_vnnlib`] reads
//! VNN-LIB properties.
//!
//! ## Module map
//!
//! | module | what |
//! |---|---|
//! | [`model`] | ONNX import, the IR, forward/backward passes, tract reference |
//! | [`property`] | VNN-LIB properties and VNN-COMP instance lists |
//! | [`bounds`] | interval and CROWN bounds on every activation over an input box |
//! | [`encode`] | the solver-neutral Problem IR and the network encoder |
//! | [`solve`] | backends (HiGHS MILP, LP relaxation, z3, branch and bound, attack), the portfolio, cancel tokens and deadlines |
//! | [`check`] | independent re-checks with tract |
//! | [`verify`] | VNN-LIB verification: bounds, encoding, backend, re-check |
//! | [`attrib`] | attributions: saliency, gradient ⊙ input, Integrated Gradients (any activation, four rules, six baselines), SmoothGrad, SmoothGrad-IG, DeepLIFT, guided backprop |
//! | [`attack`] | PGD, Carlini–Wagner, AutoPGD; boundary search, BSM and BIG |
//! | [`explain`] | SMUG first-layer minimal masks and saliency, full-network minimal masks |
//! | [`input`] | `.npy`, PNG and CSV inputs |
//! | [`metrics`] | LSC, boxes, sparsity, ROC-AUC and max-F1 against a ground truth |
//! | [`report`] | PNG heat maps |
//! | [`error`] | the error type |
#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod attack;
pub mod attrib;
pub mod bounds;
pub mod check;
pub mod encode;
pub mod error;
pub mod explain;
pub mod input;
pub mod metrics;
pub mod model;
pub mod property;
pub mod report;
pub mod solve;
pub mod verify;

pub use error::{Error, Result};
pub use model::{Network, Objective};
pub use property::Property;

/// The README's Rust example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
