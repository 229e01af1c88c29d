//! Reference inference with tract, the independent engine every IR result is checked against.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndarray::{Array2, ArrayView2, IxDyn};
use tract_onnx::prelude::*;

use super::onnx::{input_signature, InputType};
use crate::{Error, Result};

/// A network loaded and optimised by tract, at a fixed batch size.
pub struct Reference {
    plan: Arc<TypedRunnableModel>,
    input_shape: Vec<usize>,
    input_type: InputType,
    batch: usize,
    path: PathBuf,
}

impl std::fmt::Debug for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reference")
            .field("path", &self.path)
            .field("input_shape", &self.input_shape)
            .field("batch", &self.batch)
            .finish()
    }
}

fn tract_err(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Reference(format!("{}: {what}: {e:#}", path.display()))
}

impl Reference {
    /// Loads `path` with the ONNX input's leading (batch) dimension set to `batch`.
    ///
    /// With `batch > 1` the leading axis must really be the batch axis of the
    /// model (it is for every classifier that takes `[N, ...]`); with `batch = 1`
    /// any model the IR loads can be run.
    pub fn from_onnx(path: impl AsRef<Path>, batch: usize) -> Result<Reference> {
        let path = path.as_ref();
        let onnx = tract_onnx::onnx();
        let proto = onnx
            .proto_model_for_path(path)
            .map_err(|e| tract_err(path, "reading", e))?;
        let (_, input_shape, input_type) = input_signature(path, &proto)?;
        let mut shape = input_shape.clone();
        if batch != 1 {
            match shape.first_mut() {
                Some(d) if *d == 1 => *d = batch,
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "{}: input shape {input_shape:?} has no leading batch axis of 1 to set to {batch}",
                        path.display()
                    )))
                }
            }
        }
        let fact = match input_type {
            InputType::Float => f32::fact(&shape),
            InputType::Int => i64::fact(&shape),
        };
        let model = onnx
            .model_for_proto_model(&proto)
            .and_then(|m| m.with_input_fact(0, fact.into()))
            .map_err(|e| tract_err(path, "building the model", e))?;
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| tract_err(path, "optimising the model", e))?;
        Ok(Reference {
            plan,
            input_shape: shape,
            input_type,
            batch,
            path: path.to_path_buf(),
        })
    }

    /// The batch size the plan was built for.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Runs tract on `x` (`[n, input_len]` with `n` the plan's batch) and returns
    /// the output batch, flattened per sample.
    pub fn run(&self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        let per: usize = self.input_shape.iter().product::<usize>() / self.batch;
        if x.nrows() != self.batch || x.ncols() != per {
            return Err(Error::Shape(format!(
                "reference plan for {} takes [{}, {per}], got {:?}",
                self.path.display(),
                self.batch,
                x.dim()
            )));
        }
        let flat: Vec<f32> = x.iter().copied().collect();
        let tensor: Tensor = match self.input_type {
            InputType::Float => {
                tract_ndarray::ArrayD::from_shape_vec(IxDyn(&self.input_shape), flat)
                    .map_err(|e| Error::Shape(e.to_string()))?
                    .into()
            }
            InputType::Int => tract_ndarray::ArrayD::from_shape_vec(
                IxDyn(&self.input_shape),
                flat.iter().map(|&v| v as i64).collect(),
            )
            .map_err(|e| Error::Shape(e.to_string()))?
            .into(),
        };
        let out = self
            .plan
            .run(tvec!(tensor.into()))
            .map_err(|e| tract_err(&self.path, "running", e))?;
        let first = out
            .first()
            .ok_or_else(|| tract_err(&self.path, "running", "no output"))?;
        let y = first
            .cast_to::<f32>()
            .map_err(|e| tract_err(&self.path, "reading the output", e))?;
        let view = y
            .to_plain_array_view::<f32>()
            .map_err(|e| tract_err(&self.path, "reading the output", e))?;
        let n = view.len() / self.batch;
        Array2::from_shape_vec((self.batch, n), view.iter().copied().collect())
            .map_err(|e| Error::Shape(e.to_string()))
    }

    /// Runs a batch of any size one row (or one plan batch) at a time.
    pub fn run_rows(&self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        let mut rows = Vec::new();
        let mut n_out = 0;
        for chunk in x.axis_chunks_iter(ndarray::Axis(0), self.batch) {
            if chunk.nrows() != self.batch {
                return Err(Error::Shape(format!(
                    "{} rows do not split into plan batches of {}",
                    x.nrows(),
                    self.batch
                )));
            }
            let y = self.run(chunk)?;
            n_out = y.ncols();
            rows.extend(y.iter().copied());
        }
        Array2::from_shape_vec((x.nrows(), n_out), rows).map_err(|e| Error::Shape(e.to_string()))
    }
}
