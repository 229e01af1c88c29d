//! The engine's error type: one `#[non_exhaustive]` enum that callers can match on.
//!
//! Every variant names what went wrong and where (file, line, node, op type), so
//! that a message printed with its whole context chain is enough to fix the input.

use std::path::PathBuf;

/// Everything that can go wrong in nnexplain.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An ONNX file could not be parsed or is inconsistent.
    #[error("ONNX model {path}: {message}")]
    Onnx {
        /// The model file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// An ONNX node whose operator the Network IR cannot express.
    #[error("node '{node}' ({op_type}): cannot lower to the Network IR: {reason}")]
    UnsupportedOp {
        /// The node's name (or its first output when it has no name).
        node: String,
        /// The node's ONNX op type.
        op_type: String,
        /// Why it cannot be lowered.
        reason: String,
    },
    /// Tensors whose shapes do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A malformed VNN-LIB property.
    #[error("{}:{line}: {message}", path.display())]
    Vnnlib {
        /// The property file (`<string>` when parsed from memory).
        path: PathBuf,
        /// 1-based line of the offending token.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A malformed input file (`.npy`, PNG, CSV, instance list).
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Input {
        /// The file.
        path: PathBuf,
        /// 1-based line, for text formats.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A computation produced a non-finite value or cannot be carried out.
    #[error("numerical error in layer {layer}: {message}")]
    Numeric {
        /// The layer (index and kind) where it happened.
        layer: String,
        /// What happened.
        message: String,
    },
    /// An argument outside its domain (a class index out of range, a negative step count).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The reference inference engine (tract) failed.
    #[error("reference inference (tract): {0}")]
    Reference(String),
}

/// `Result` with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
