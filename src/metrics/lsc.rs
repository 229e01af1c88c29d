//! The Log Sparsity Confidence score (Dabkowski & Gal 2017, SMUG Eq. 5) and
//! the boxes it is compared with.
//!
//! `LSC(a, c) = log(max(0.05, a)) − log(c)`: the mask's tightest bounding box
//! is cropped from the image, resized back to full size by bilinear
//! interpolation, and run through the network; `a` is the box's fraction of
//! the image and `c` the softmax probability of the true class on the
//! resized crop. Lower is better.

use ndarray::Array2;
use serde::Serialize;

use crate::model::Network;
use crate::{Error, Result};

/// A box of pixels: rows `top..bottom`, columns `left..right` (half-open).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PixelBox {
    /// First row.
    pub top: usize,
    /// One past the last row.
    pub bottom: usize,
    /// First column.
    pub left: usize,
    /// One past the last column.
    pub right: usize,
}

impl PixelBox {
    /// Fraction of an `h × w` image the box covers.
    pub fn area(&self, h: usize, w: usize) -> f64 {
        ((self.bottom - self.top) * (self.right - self.left)) as f64 / (h * w) as f64
    }
    /// The whole image (MAXBOX).
    pub fn full(h: usize, w: usize) -> PixelBox {
        PixelBox {
            top: 0,
            bottom: h,
            left: 0,
            right: w,
        }
    }
    /// The centred box covering half the image's area (CENTERBOX).
    pub fn centre_half(h: usize, w: usize) -> PixelBox {
        let s = 0.5f64.sqrt();
        let (bh, bw) = (
            ((h as f64 * s).round() as usize).clamp(1, h),
            ((w as f64 * s).round() as usize).clamp(1, w),
        );
        let (top, left) = ((h - bh) / 2, (w - bw) / 2);
        PixelBox {
            top,
            bottom: top + bh,
            left,
            right: left + bw,
        }
    }
    /// The tightest box around the pixels with `mask[p] == true` (`h × w`,
    /// row-major); `None` for an empty mask.
    pub fn around(mask: &[bool], h: usize, w: usize) -> Option<PixelBox> {
        let mut b: Option<PixelBox> = None;
        for r in 0..h {
            for c in 0..w {
                if mask[r * w + c] {
                    b = Some(match b {
                        None => PixelBox {
                            top: r,
                            bottom: r + 1,
                            left: c,
                            right: c + 1,
                        },
                        Some(b) => PixelBox {
                            top: b.top.min(r),
                            bottom: b.bottom.max(r + 1),
                            left: b.left.min(c),
                            right: b.right.max(c + 1),
                        },
                    });
                }
            }
        }
        b
    }
}

/// Crops `image` (`channels × h × w`, row-major) to `b` and resizes the crop
/// back to `h × w` by bilinear interpolation with half-pixel centres (the
/// convention of `torch.nn.functional.interpolate(…, align_corners=False)`).
pub fn crop_resize(image: &[f64], channels: usize, h: usize, w: usize, b: PixelBox) -> Vec<f64> {
    let (bh, bw) = (b.bottom - b.top, b.right - b.left);
    let mut out = vec![0.0; channels * h * w];
    let src = |c: usize, r: usize, col: usize| image[c * h * w + (b.top + r) * w + b.left + col];
    for c in 0..channels {
        for r in 0..h {
            let y = ((r as f64 + 0.5) * bh as f64 / h as f64 - 0.5).max(0.0);
            let y0 = (y.floor() as usize).min(bh - 1);
            let y1 = (y0 + 1).min(bh - 1);
            let fy = y - y0 as f64;
            for col in 0..w {
                let x = ((col as f64 + 0.5) * bw as f64 / w as f64 - 0.5).max(0.0);
                let x0 = (x.floor() as usize).min(bw - 1);
                let x1 = (x0 + 1).min(bw - 1);
                let fx = x - x0 as f64;
                let top = src(c, y0, x0) * (1.0 - fx) + src(c, y0, x1) * fx;
                let bot = src(c, y1, x0) * (1.0 - fx) + src(c, y1, x1) * fx;
                out[c * h * w + r * w + col] = top * (1.0 - fy) + bot * fy;
            }
        }
    }
    out
}

/// An LSC evaluation of one box.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Lsc {
    /// The box.
    pub bbox: PixelBox,
    /// Its fraction of the image, `a`.
    pub area: f64,
    /// Softmax probability of the class on the resized crop, `c`.
    pub confidence: f64,
    /// `log(max(0.05, a)) − log(c)`.
    pub score: f64,
}

/// Eq. 5 from `a` and `c`.
pub fn lsc_score(area: f64, confidence: f64) -> f64 {
    area.max(0.05).ln() - confidence.max(f64::MIN_POSITIVE).ln()
}

fn softmax_prob(y: &[f64], class: usize) -> f64 {
    let m = y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = y.iter().map(|v| (v - m).exp()).sum();
    (y[class] - m).exp() / z
}

/// LSC of several boxes on one image, run through the network in one batch.
pub fn lsc_boxes(
    net: &Network,
    image: &[f64],
    dims: (usize, usize, usize),
    class: usize,
    boxes: &[PixelBox],
) -> Result<Vec<Lsc>> {
    let (c, h, w) = dims;
    if image.len() != c * h * w || image.len() != net.input_len() {
        return Err(Error::Shape(format!(
            "an image of {} values for {c}×{h}×{w} and a network taking {}",
            image.len(),
            net.input_len()
        )));
    }
    if class >= net.output_len() {
        return Err(Error::InvalidArgument(format!(
            "class {class} is not an output of the network"
        )));
    }
    let mut out = Vec::with_capacity(boxes.len());
    for chunk in boxes.chunks(256) {
        let mut batch = Array2::<f64>::zeros((chunk.len(), image.len()));
        for (mut row, b) in batch.rows_mut().into_iter().zip(chunk) {
            if b.bottom <= b.top || b.right <= b.left || b.bottom > h || b.right > w {
                return Err(Error::InvalidArgument(format!(
                    "box {b:?} is empty or outside {h}×{w}"
                )));
            }
            for (r, v) in row.iter_mut().zip(crop_resize(image, c, h, w, *b)) {
                *r = v;
            }
        }
        let y = net.forward::<f64>(batch.view())?;
        for (row, b) in y.rows().into_iter().zip(chunk) {
            let conf = softmax_prob(row.as_slice().unwrap_or(&row.to_vec()), class);
            let area = b.area(h, w);
            out.push(Lsc {
                bbox: *b,
                area,
                confidence: conf,
                score: lsc_score(area, conf),
            });
        }
    }
    Ok(out)
}

/// The best LSC of a continuous saliency map (`h × w`): the map is
/// thresholded to keep its top `q` fraction of positive pixels for every `q`
/// in `fractions`, and the best (lowest) score is kept (SMUG §4).
pub fn best_lsc_of_map(
    net: &Network,
    image: &[f64],
    dims: (usize, usize, usize),
    class: usize,
    saliency: &[f64],
    fractions: &[f64],
) -> Result<Option<Lsc>> {
    let (_, h, w) = dims;
    let mut positive: Vec<f64> = saliency.iter().copied().filter(|v| *v > 0.0).collect();
    if positive.is_empty() {
        return Ok(None);
    }
    positive.sort_by(|a, b| b.total_cmp(a));
    let mut boxes = Vec::new();
    for &q in fractions {
        let n = ((q * positive.len() as f64).ceil() as usize).clamp(1, positive.len());
        let t = positive[n - 1];
        let mask: Vec<bool> = saliency.iter().map(|&v| v > 0.0 && v >= t).collect();
        if let Some(b) = PixelBox::around(&mask, h, w) {
            if !boxes.contains(&b) {
                boxes.push(b);
            }
        }
    }
    let scores = lsc_boxes(net, image, dims, class, &boxes)?;
    Ok(scores
        .into_iter()
        .min_by(|a, b| a.score.total_cmp(&b.score)))
}

/// OPTBOX: the box with the best LSC among all boxes whose corners lie on a
/// grid of `step` pixels (SMUG §4: a brute-force search over a 10-pixel grid).
pub fn optbox(
    net: &Network,
    image: &[f64],
    dims: (usize, usize, usize),
    class: usize,
    step: usize,
) -> Result<Lsc> {
    let (_, h, w) = dims;
    let step = step.max(1);
    let ys: Vec<usize> = (0..h).step_by(step).chain([h]).collect();
    let xs: Vec<usize> = (0..w).step_by(step).chain([w]).collect();
    let mut boxes = Vec::new();
    for (i, &top) in ys.iter().enumerate() {
        for &bottom in &ys[i + 1..] {
            for (j, &left) in xs.iter().enumerate() {
                for &right in &xs[j + 1..] {
                    boxes.push(PixelBox {
                        top,
                        bottom,
                        left,
                        right,
                    });
                }
            }
        }
    }
    boxes.dedup();
    let scores = lsc_boxes(net, image, dims, class, &boxes)?;
    scores
        .into_iter()
        .min_by(|a, b| a.score.total_cmp(&b.score))
        .ok_or_else(|| Error::InvalidArgument("no box to search".into()))
}

/// Fraction of pixels with a non-zero value.
pub fn sparsity(map: &[f64]) -> f64 {
    if map.is_empty() {
        return 0.0;
    }
    map.iter().filter(|v| **v != 0.0).count() as f64 / map.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes() {
        let mut m = vec![false; 12];
        assert_eq!(PixelBox::around(&m, 3, 4), None);
        m[5] = true; // (1, 1)
        m[11] = true; // (2, 3)
        let b = PixelBox::around(&m, 3, 4).unwrap();
        assert_eq!((b.top, b.bottom, b.left, b.right), (1, 3, 1, 4));
        assert!((b.area(3, 4) - 0.5).abs() < 1e-12);
        let c = PixelBox::centre_half(28, 28);
        assert!((c.area(28, 28) - 0.5).abs() < 0.02);
        assert_eq!(PixelBox::full(5, 6).area(5, 6), 1.0);
    }

    #[test]
    fn full_box_resize_is_identity_and_constants_stay_constant() {
        let img: Vec<f64> = (0..2 * 4 * 5).map(|v| v as f64 * 0.1).collect();
        let out = crop_resize(&img, 2, 4, 5, PixelBox::full(4, 5));
        for (a, b) in img.iter().zip(&out) {
            assert!((a - b).abs() < 1e-12);
        }
        let flat = vec![0.7; 16];
        let b = PixelBox {
            top: 1,
            bottom: 3,
            left: 2,
            right: 3,
        };
        assert!(crop_resize(&flat, 1, 4, 4, b)
            .iter()
            .all(|v| (v - 0.7).abs() < 1e-12));
    }

    #[test]
    fn bilinear_upsampling_matches_half_pixel_centres() {
        // A 1×2 crop [0, 1] upsampled to width 4: centres map to −0.25, 0.25,
        // 0.75, 1.25 → clamped and interpolated: 0, 0.25, 0.75, 1.
        let img = vec![0.0, 1.0, 5.0, 5.0];
        let b = PixelBox {
            top: 0,
            bottom: 1,
            left: 0,
            right: 2,
        };
        let out = crop_resize(&img, 1, 2, 2, b);
        // h = w = 2: x = (col + .5) * 2/2 − .5 = col → exact pixels.
        assert_eq!(out, vec![0.0, 1.0, 0.0, 1.0]);
        let wide = vec![
            0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
        ];
        let out = crop_resize(&wide, 1, 4, 4, b);
        let row: Vec<f64> = out[..4].to_vec();
        for (a, e) in row.iter().zip([0.0, 0.25, 0.75, 1.0]) {
            assert!((a - e).abs() < 1e-12, "{row:?}");
        }
    }

    #[test]
    fn score() {
        assert!((lsc_score(0.01, 1.0) - 0.05f64.ln()).abs() < 1e-12);
        assert!((lsc_score(0.5, 0.5) - 0.0).abs() < 1e-12);
        assert_eq!(sparsity(&[0.0, 1.0, -2.0, 0.0]), 0.5);
    }
}
