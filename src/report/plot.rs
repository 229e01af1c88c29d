//! Line plots of curves (robustness curves, insertion/deletion): an SVG with
//! titles, axis labels and a legend, and a PNG of the same panels whose axes
//! carry their numbers and whose legend numbers the series in order (the SVG
//! and the JSON beside it name them).

use std::fmt::Write as _;
use std::path::Path;

use image::{Rgb, RgbImage};

use crate::{Error, Result};

/// One curve.
#[derive(Clone, Debug)]
pub struct Series {
    /// Its name in the legend.
    pub name: String,
    /// Abscissae, increasing.
    pub x: Vec<f64>,
    /// Ordinates, one per abscissa.
    pub y: Vec<f64>,
}

/// One panel of curves sharing axes.
#[derive(Clone, Debug)]
pub struct Chart {
    /// Panel title.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// The curves.
    pub series: Vec<Series>,
}

/// Ten distinguishable colours (Tableau 10), cycled.
const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

const W: u32 = 480;
const H: u32 = 320;
const LEFT: u32 = 56;
const RIGHT: u32 = 16;
const TOP: u32 = 28;
const BOTTOM: u32 = 40;

fn check(charts: &[Chart]) -> Result<()> {
    if charts.is_empty() {
        return Err(Error::InvalidArgument("no chart to draw".into()));
    }
    for c in charts {
        for s in &c.series {
            if s.x.len() != s.y.len() || s.x.is_empty() {
                return Err(Error::Shape(format!(
                    "series '{}' has {} abscissae and {} ordinates",
                    s.name,
                    s.x.len(),
                    s.y.len()
                )));
            }
        }
    }
    Ok(())
}

/// The data range of a chart, padded so that flat curves still get a height.
fn range(c: &Chart) -> (f64, f64, f64, f64) {
    let xs = c.series.iter().flat_map(|s| s.x.iter().copied());
    let ys = c.series.iter().flat_map(|s| s.y.iter().copied());
    let fin = |v: &f64| v.is_finite();
    let (x0, x1) = xs
        .filter(fin)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    let (y0, y1) = ys
        .filter(fin)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    let (x0, x1) = if x0.is_finite() { (x0, x1) } else { (0.0, 1.0) };
    let (mut y0, mut y1) = if y0.is_finite() { (y0, y1) } else { (0.0, 1.0) };
    if y1 - y0 < 1e-12 {
        y0 -= 0.5;
        y1 += 0.5;
    }
    let pad = 0.05 * (y1 - y0);
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    (x0, x1, y0 - pad, y1 + pad)
}

/// Three to six round tick values covering `[lo, hi]`.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() * step;
    (0..)
        .map(|k| first + k as f64 * step)
        .take_while(|v| *v <= hi + 1e-9 * span)
        .collect()
}

fn label(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Writes the charts side by side as an SVG.
pub fn write_svg(path: &Path, charts: &[Chart]) -> Result<()> {
    check(charts)?;
    let total_w = W * charts.len() as u32;
    let legend_h = 18 * charts.iter().map(|c| c.series.len()).max().unwrap_or(0) as u32;
    let total_h = H + legend_h + 8;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{total_h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (k, c) in charts.iter().enumerate() {
        let ox = (k as u32 * W) as f64;
        let (x0, x1, y0, y1) = range(c);
        let pw = (W - LEFT - RIGHT) as f64;
        let ph = (H - TOP - BOTTOM) as f64;
        let px = |x: f64| ox + LEFT as f64 + (x - x0) / (x1 - x0) * pw;
        let py = |y: f64| TOP as f64 + (1.0 - (y - y0) / (y1 - y0)) * ph;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="16" text-anchor="middle" font-size="13">{}</text>"#,
            ox + W as f64 / 2.0,
            escape(&c.title)
        );
        let _ = writeln!(
            s,
            r##"<rect x="{}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##,
            ox + LEFT as f64
        );
        for t in ticks(y0, y1) {
            let _ = writeln!(
                s,
                r##"<line x1="{}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
                ox + LEFT as f64,
                ox + LEFT as f64 + pw,
                ox + LEFT as f64 - 4.0,
                py(t) + 4.0,
                label(t),
                y = py(t)
            );
        }
        for t in ticks(x0, x1) {
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
                px(t),
                TOP as f64 + ph + 14.0,
                label(t)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            ox + LEFT as f64 + pw / 2.0,
            H as f64 - 8.0,
            escape(&c.x_label)
        );
        let _ = writeln!(
            s,
            r#"<text transform="translate({},{}) rotate(-90)" text-anchor="middle">{}</text>"#,
            ox + 14.0,
            TOP as f64 + ph / 2.0,
            escape(&c.y_label)
        );
        for (i, ser) in c.series.iter().enumerate() {
            let [r, g, b] = PALETTE[i % PALETTE.len()];
            let pts: Vec<String> = ser
                .x
                .iter()
                .zip(&ser.y)
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|(&x, &y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="rgb({r},{g},{b})" stroke-width="2"/>"#,
                pts.join(" ")
            );
            let ly = H as f64 + 4.0 + 18.0 * i as f64;
            let _ = writeln!(
                s,
                r#"<rect x="{}" y="{ly}" width="14" height="10" fill="rgb({r},{g},{b})"/><text x="{}" y="{}">{}</text>"#,
                ox + LEFT as f64,
                ox + LEFT as f64 + 20.0,
                ly + 9.0,
                escape(&ser.name)
            );
        }
    }
    s.push_str("</svg>\n");
    std::fs::write(path, s).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// 3×5 glyphs of the characters the PNG writes: digits, `.`, `-`, `%`.
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b010, 0b010, 0b010],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        '.' => [0b000, 0b000, 0b000, 0b000, 0b010],
        '-' => [0b000, 0b000, 0b111, 0b000, 0b000],
        '%' => [0b101, 0b001, 0b010, 0b100, 0b101],
        _ => return None,
    })
}

/// Draws `text` with its top-left corner at `(x, y)`, glyph pixels `scale` wide.
fn draw_text(img: &mut RgbImage, x: i64, y: i64, text: &str, scale: i64, colour: Rgb<u8>) {
    let mut cx = x;
    for ch in text.chars() {
        if let Some(g) = glyph(ch) {
            for (r, bits) in g.iter().enumerate() {
                for c in 0..3 {
                    if bits & (0b100 >> c) != 0 {
                        for dy in 0..scale {
                            for dx in 0..scale {
                                put(img, cx + c * scale + dx, y + r as i64 * scale + dy, colour);
                            }
                        }
                    }
                }
            }
        }
        cx += 4 * scale;
    }
}

fn text_width(text: &str, scale: i64) -> i64 {
    4 * scale * text.chars().count() as i64 - scale
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

/// A line from `a` to `b`, `width` pixels thick.
fn line(img: &mut RgbImage, a: (f64, f64), b: (f64, f64), width: i64, c: Rgb<u8>) {
    let steps = ((b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil() as usize).max(1);
    for k in 0..=steps {
        let t = k as f64 / steps as f64;
        let x = (a.0 + t * (b.0 - a.0)).round() as i64;
        let y = (a.1 + t * (b.1 - a.1)).round() as i64;
        for dx in 0..width {
            for dy in 0..width {
                put(img, x + dx - width / 2, y + dy - width / 2, c);
            }
        }
    }
}

/// Writes the charts side by side as a PNG: frames, grid lines, numbered
/// axes and the curves; below each chart, a swatch per series with its
/// position in the list (1, 2, …).
pub fn write_png(path: &Path, charts: &[Chart]) -> Result<()> {
    check(charts)?;
    let n_series = charts.iter().map(|c| c.series.len()).max().unwrap_or(0) as u32;
    let legend_h = 14 * n_series.div_ceil(4);
    let mut img = RgbImage::from_pixel(
        W * charts.len() as u32,
        H + legend_h + 6,
        Rgb([255, 255, 255]),
    );
    let ink = Rgb([60, 60, 60]);
    let grid = Rgb([225, 225, 225]);
    for (k, c) in charts.iter().enumerate() {
        let ox = (k as u32 * W) as f64;
        let (x0, x1, y0, y1) = range(c);
        let pw = (W - LEFT - RIGHT) as f64;
        let ph = (H - TOP - BOTTOM) as f64;
        let px = |x: f64| ox + LEFT as f64 + (x - x0) / (x1 - x0) * pw;
        let py = |y: f64| TOP as f64 + (1.0 - (y - y0) / (y1 - y0)) * ph;
        for t in ticks(y0, y1) {
            line(&mut img, (px(x0), py(t)), (px(x1), py(t)), 1, grid);
            let l = label(t);
            draw_text(
                &mut img,
                (ox + LEFT as f64) as i64 - 6 - text_width(&l, 2),
                py(t) as i64 - 5,
                &l,
                2,
                ink,
            );
        }
        for t in ticks(x0, x1) {
            line(&mut img, (px(t), py(y0)), (px(t), py(y1)), 1, grid);
            let l = label(t);
            draw_text(
                &mut img,
                px(t) as i64 - text_width(&l, 2) / 2,
                (TOP as f64 + ph) as i64 + 6,
                &l,
                2,
                ink,
            );
        }
        let corners = [
            (px(x0), py(y0)),
            (px(x1), py(y0)),
            (px(x1), py(y1)),
            (px(x0), py(y1)),
        ];
        for i in 0..4 {
            line(&mut img, corners[i], corners[(i + 1) % 4], 1, ink);
        }
        for (i, ser) in c.series.iter().enumerate() {
            let [r, g, b] = PALETTE[i % PALETTE.len()];
            let col = Rgb([r, g, b]);
            let pts: Vec<(f64, f64)> = ser
                .x
                .iter()
                .zip(&ser.y)
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|(&x, &y)| (px(x), py(y)))
                .collect();
            for w in pts.windows(2) {
                line(&mut img, w[0], w[1], 2, col);
            }
            let (lx, ly) = (
                ox as i64 + LEFT as i64 + 100 * (i as i64 % 4),
                H as i64 + 14 * (i as i64 / 4),
            );
            for dy in 0..10 {
                for dx in 0..16 {
                    put(&mut img, lx + dx, ly + dy, col);
                }
            }
            draw_text(&mut img, lx + 22, ly, &(i + 1).to_string(), 2, ink);
        }
    }
    img.save(path)
        .map_err(|e| Error::InvalidArgument(format!("writing {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let t = ticks(0.0, 1.0);
        let want = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
        assert_eq!(t.len(), want.len());
        assert!(t.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12));
        let t = ticks(3.2, 47.9);
        assert!(t.first().unwrap() >= &3.2 && t.last().unwrap() <= &47.9 && t.len() >= 3);
    }

    #[test]
    fn writes_both_formats_and_rejects_ragged_series() {
        let dir = std::env::temp_dir().join(format!("nnx-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let chart = Chart {
            title: "Robustness-S_r <lower is better>".into(),
            x_label: "% of features".into(),
            y_label: "l2".into(),
            series: vec![
                Series {
                    name: "a".into(),
                    x: vec![5.0, 10.0, 15.0],
                    y: vec![1.0, 2.0, 1.5],
                },
                Series {
                    name: "b".into(),
                    x: vec![5.0, 10.0, 15.0],
                    y: vec![0.5, 0.5, 0.5],
                },
            ],
        };
        write_png(&dir.join("c.png"), &[chart.clone(), chart.clone()]).unwrap();
        write_svg(&dir.join("c.svg"), std::slice::from_ref(&chart)).unwrap();
        let img = image::open(dir.join("c.png")).unwrap();
        assert_eq!(img.width(), 2 * W);
        let svg = std::fs::read_to_string(dir.join("c.svg")).unwrap();
        assert!(svg.contains("&lt;lower is better&gt;") && svg.matches("<polyline").count() == 2);
        let mut bad = chart;
        bad.series[0].y.pop();
        assert!(write_png(&dir.join("d.png"), &[bad]).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
