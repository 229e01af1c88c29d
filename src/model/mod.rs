//! The Network IR and everything that reads or runs it: ONNX import, forward
//! and backward passes, and tract as the independent reference.

pub mod backward;
pub mod float;
pub mod forward;
pub mod network;
pub mod onnx;
pub mod reference;

pub use backward::{Gradient, Objective};
pub use float::Float;
pub use forward::Trace;
pub use network::{Conv, ConvGeom, Dense, Layer, Network, Node, PoolGeom};
pub use onnx::InputType;
pub use reference::Reference;
