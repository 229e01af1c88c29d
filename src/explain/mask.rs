//! Mask geometry: which elements of an activation one mask variable controls.
//!
//! Images (the input activation, laid out `C × H × W`): one variable per
//! `s × s` cell of pixels, shared across channels (SMUG §3.3 and §5.1, where
//! a variable covers a 4 × 4 grid). Text (a network whose first layer is an
//! embedding lookup): one variable per word, multiplying the word's embedding
//! row (SMUG §5.2). A dropped element takes the fill value.

use serde::Serialize;

use crate::model::{Layer, Network};
use crate::{Error, Result};

/// How the masked activation is laid out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// The input, `channels × height × width`, cells of `window × window` pixels.
    Image {
        /// Channels.
        channels: usize,
        /// Rows.
        height: usize,
        /// Columns.
        width: usize,
        /// Cell side in pixels.
        window: usize,
    },
    /// The embedding lookup's output, `words × width`, one cell per word.
    Words {
        /// Tokens in the input.
        words: usize,
        /// Embedding width.
        width: usize,
    },
}

/// The cells of a mask over activation `base` of a network.
#[derive(Clone, Debug, Serialize)]
pub struct MaskGrid {
    /// The activation the mask multiplies (0: the input; 1: the embedding
    /// lookup's output for text).
    pub base: usize,
    /// Layout of that activation.
    pub layout: Layout,
    /// Cell of every element of the activation.
    pub cell_of: Vec<usize>,
    /// Number of cells.
    pub n_cells: usize,
}

impl MaskGrid {
    /// The grid for `net`: per word when its first layer is an embedding
    /// lookup, else `window × window` pixel cells over its input.
    pub fn for_network(net: &Network, window: usize) -> Result<MaskGrid> {
        if window == 0 {
            return Err(Error::InvalidArgument(
                "the mask window must be at least 1".into(),
            ));
        }
        if let Some(Layer::Embedding { table }) = net.layers().first() {
            let width = table.ncols();
            let len = net.activation_len(1);
            let words = len / width.max(1);
            return Ok(MaskGrid {
                base: 1,
                layout: Layout::Words { words, width },
                cell_of: (0..len).map(|e| e / width).collect(),
                n_cells: words,
            });
        }
        let (channels, height, width) = image_dims(net.input_shape())?;
        let cols = width.div_ceil(window);
        let rows = height.div_ceil(window);
        let mut cell_of = Vec::with_capacity(channels * height * width);
        for _ in 0..channels {
            for h in 0..height {
                for w in 0..width {
                    cell_of.push((h / window) * cols + w / window);
                }
            }
        }
        Ok(MaskGrid {
            base: 0,
            layout: Layout::Image {
                channels,
                height,
                width,
                window,
            },
            cell_of,
            n_cells: rows * cols,
        })
    }

    /// Elements of the masked activation.
    pub fn len(&self) -> usize {
        self.cell_of.len()
    }

    /// Whether the activation is empty.
    pub fn is_empty(&self) -> bool {
        self.cell_of.is_empty()
    }

    /// The masked activation: `v_e` where the element's cell is kept, `fill` elsewhere.
    pub fn apply(&self, values: &[f64], keep: &[bool], fill: f64) -> Vec<f64> {
        values
            .iter()
            .zip(&self.cell_of)
            .map(|(&v, &c)| if keep[c] { v } else { fill })
            .collect()
    }

    /// The mask as one 0/1 entry per *input* element (flattened): per pixel
    /// and channel for images, per token for text.
    pub fn input_mask(&self, keep: &[bool]) -> Vec<u8> {
        match self.layout {
            Layout::Words { words, .. } => (0..words).map(|w| u8::from(keep[w])).collect(),
            Layout::Image { .. } => self.cell_of.iter().map(|&c| u8::from(keep[c])).collect(),
        }
    }

    /// Spatial size `(height, width)` of the map drawn for a person (words:
    /// one row of tokens).
    pub fn picture(&self) -> (usize, usize) {
        match self.layout {
            Layout::Image { height, width, .. } => (height, width),
            Layout::Words { words, .. } => (1, words),
        }
    }

    /// Position in [`MaskGrid::picture`] of an element of the activation.
    pub fn pixel_of(&self, e: usize) -> usize {
        match self.layout {
            Layout::Image { height, width, .. } => e % (height * width),
            Layout::Words { width, .. } => e / width,
        }
    }
}

/// `C × H × W` of an input shape (leading batch dimension of 1 dropped); a
/// flat input of a square length `n = s²` is read as one `s × s` channel.
pub fn image_dims(shape: &[usize]) -> Result<(usize, usize, usize)> {
    let d: &[usize] = match shape {
        [1, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    let square = |n: usize| -> Option<usize> {
        let s = (n as f64).sqrt().round() as usize;
        (s * s == n && n > 1).then_some(s)
    };
    match d {
        [n] | [1, n] => square(*n).map(|s| (1, s, s)).ok_or_else(|| {
            Error::Shape(format!(
                "the input {shape:?} is not an image: a flat input must have a square length to be masked in pixel cells"
            ))
        }),
        [h, w] => Ok((1, *h, *w)),
        [lead @ .., h, w] => Ok((lead.iter().product(), *h, *w)),
        [] => Err(Error::Shape(format!("the input {shape:?} has no elements to mask"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_dimensions() {
        assert_eq!(image_dims(&[1, 1, 28, 28]).unwrap(), (1, 28, 28));
        assert_eq!(image_dims(&[1, 784]).unwrap(), (1, 28, 28));
        assert_eq!(image_dims(&[1, 3, 32, 32]).unwrap(), (3, 32, 32));
        assert!(image_dims(&[1, 5]).is_err());
    }
}
