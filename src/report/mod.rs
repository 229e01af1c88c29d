//! Reports for people: PNG heat maps of inputs, masks and attribution maps,
//! and line plots of curves ([`plot`]).

pub mod plot;

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::{Error, Result};

/// How a panel's values are coloured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Colour {
    /// Grey levels from the panel's minimum (black) to its maximum (white).
    Grey,
    /// Signed values: blue for negative, white at 0, red for positive,
    /// scaled by the largest magnitude.
    Signed,
    /// Non-negative values from white (0) to dark red (the maximum); SMUG's
    /// convention of drawing the non-zero scores between 0.5 and 1 is applied.
    Heat,
}

/// One picture of a row of panels.
#[derive(Clone, Debug)]
pub struct Panel<'a> {
    /// Row-major values, `height × width`.
    pub values: &'a [f64],
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Colouring.
    pub colour: Colour,
}

fn colour_of(c: Colour, v: f64, lo: f64, hi: f64) -> Rgb<u8> {
    let to8 = |t: f64| (t.clamp(0.0, 1.0) * 255.0).round() as u8;
    match c {
        Colour::Grey => {
            let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.0 };
            Rgb([to8(t); 3])
        }
        Colour::Signed => {
            let m = lo.abs().max(hi.abs());
            let t = if m > 0.0 { v / m } else { 0.0 };
            if t >= 0.0 {
                Rgb([255, to8(1.0 - t), to8(1.0 - t)])
            } else {
                Rgb([to8(1.0 + t), to8(1.0 + t), 255])
            }
        }
        Colour::Heat => {
            // Non-zero scores drawn between 0.5 and 1 of the scale (SMUG §3.4).
            let t = if v <= 0.0 || hi <= 0.0 {
                0.0
            } else {
                0.5 + 0.5 * (v / hi).min(1.0)
            };
            Rgb([to8(1.0 - 0.4 * t), to8(1.0 - t), to8(1.0 - t)])
        }
    }
}

/// Writes the panels side by side, each pixel drawn as a `scale × scale`
/// square, with a 4-pixel white gap between panels.
pub fn side_by_side(path: &Path, panels: &[Panel<'_>], scale: u32) -> Result<()> {
    if panels.is_empty() {
        return Err(Error::InvalidArgument("no panel to draw".into()));
    }
    for p in panels {
        if p.values.len() != p.height * p.width {
            return Err(Error::Shape(format!(
                "a {}×{} panel needs {} values, got {}",
                p.height,
                p.width,
                p.height * p.width,
                p.values.len()
            )));
        }
    }
    let scale = scale.max(1);
    let gap = 4u32;
    let h = panels.iter().map(|p| p.height as u32).max().unwrap_or(0) * scale;
    let w: u32 = panels.iter().map(|p| p.width as u32 * scale).sum::<u32>()
        + gap * (panels.len() as u32 - 1);
    let mut img = RgbImage::from_pixel(w.max(1), h.max(1), Rgb([255, 255, 255]));
    let mut x0 = 0u32;
    for p in panels {
        let finite = p.values.iter().copied().filter(|v| v.is_finite());
        let lo = finite.clone().fold(f64::INFINITY, f64::min);
        let hi = finite.fold(f64::NEG_INFINITY, f64::max);
        for r in 0..p.height {
            for c in 0..p.width {
                let px = colour_of(p.colour, p.values[r * p.width + c], lo, hi);
                for dy in 0..scale {
                    for dx in 0..scale {
                        img.put_pixel(x0 + c as u32 * scale + dx, r as u32 * scale + dy, px);
                    }
                }
            }
        }
        x0 += p.width as u32 * scale + gap;
    }
    img.save(path)
        .map_err(|e| Error::InvalidArgument(format!("writing {}: {e}", path.display())))
}

/// Sums a map over channels onto `height × width` (for drawing a `C × H × W` map).
pub fn channel_sum(values: &[f64], height: usize, width: usize) -> Vec<f64> {
    let hw = height * width;
    let mut out = vec![0.0; hw];
    if hw == 0 {
        return out;
    }
    for (e, v) in values.iter().enumerate() {
        out[e % hw] += v;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_and_rejects_bad_panels() {
        let dir = std::env::temp_dir().join(format!("nnx-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let v = [0.0, 1.0, -1.0, 0.5];
        let path = dir.join("p.png");
        side_by_side(
            &path,
            &[
                Panel {
                    values: &v,
                    height: 2,
                    width: 2,
                    colour: Colour::Grey,
                },
                Panel {
                    values: &v,
                    height: 2,
                    width: 2,
                    colour: Colour::Signed,
                },
                Panel {
                    values: &v,
                    height: 1,
                    width: 4,
                    colour: Colour::Heat,
                },
            ],
            3,
        )
        .unwrap();
        let img = image::open(&path).unwrap();
        assert_eq!(img.width(), 2 * 3 + 2 * 3 + 4 * 3 + 8);
        assert_eq!(img.height(), 6);
        assert!(side_by_side(
            &path,
            &[Panel {
                values: &v,
                height: 3,
                width: 2,
                colour: Colour::Grey
            }],
            1
        )
        .is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn channels_are_summed() {
        assert_eq!(channel_sum(&[1.0, 2.0, 3.0, 4.0], 1, 2), vec![4.0, 6.0]);
    }
}
