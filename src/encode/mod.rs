//! Encoders: from a network and a property (or a method's choices) to the
//! solver-neutral [`Problem`].

pub mod full_network;
pub mod problem;
pub mod relax;

pub use full_network::full_network;
pub use problem::{Cmp, Constraint, Construct, LinExpr, Objective, Problem, Sense, Var, VarKind};
