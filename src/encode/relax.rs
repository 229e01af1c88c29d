//! Sound linear envelopes of the S-shaped activations (Sigmoid, Tanh).
//!
//! Backends that cannot represent `exp` (HiGHS, and z3, whose arithmetic has
//! no transcendental functions) enclose `y = f(x)`, `l ≤ x ≤ u`, between
//! lines. Both functions are monotone, convex on `x ≤ 0` and concave on
//! `x ≥ 0`, and `f'` is largest at 0, which gives (Singh et al. 2019,
//! "An Abstract Domain for Certifying Neural Networks", §4.3, and Zhang et al.
//! 2018, CROWN, Table 1):
//!
//! * `f(l) ≤ y ≤ f(u)` (monotone);
//! * `y ≥ f(l) + λ (x − l)` and `y ≤ f(u) + λ (x − u)` with
//!   `λ = min(f'(l), f'(u))`, since `f' ≥ λ` on `[l, u]`;
//! * on the convex side (`u ≤ 0`): the chord is an upper line and every
//!   tangent a lower line; on the concave side (`l ≥ 0`) the other way round;
//! * across 0: a tangent at `d ≤ 0` is a lower line on `[l, u]` exactly when
//!   it passes below `f(u)` (on `[0, u]`, `f − t` is concave, so its minimum
//!   is at 0 or at `u`); symmetrically for tangents at `d ≥ 0` and `f(l)`.
//!
//! Every intercept is moved outward by a margin that covers the rounding of
//! the f64 evaluation of `f`, so the envelope is sound in floating point.

/// Which S-shaped function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SShape {
    /// `σ(x) = 1 / (1 + e^{−x})`.
    Sigmoid,
    /// `tanh x`.
    Tanh,
}

impl SShape {
    /// `f(x)`.
    pub fn value(self, x: f64) -> f64 {
        match self {
            SShape::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            SShape::Tanh => x.tanh(),
        }
    }
    /// `f'(x)`.
    pub fn slope(self, x: f64) -> f64 {
        match self {
            SShape::Sigmoid => {
                let s = self.value(x);
                s * (1.0 - s)
            }
            SShape::Tanh => {
                let t = x.tanh();
                1.0 - t * t
            }
        }
    }
}

/// A line `y ≥ a x + b` (lower) or `y ≤ a x + b` (upper).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Line {
    /// Slope.
    pub a: f64,
    /// Intercept, already moved outward by the rounding margin.
    pub b: f64,
    /// `true`: `y ≤ a x + b`; `false`: `y ≥ a x + b`.
    pub upper: bool,
}

impl Line {
    /// Whether `(x, y)` is on the allowed side.
    pub fn holds(&self, x: f64, y: f64) -> bool {
        let v = self.a * x + self.b;
        if self.upper {
            y <= v
        } else {
            y >= v
        }
    }
}

/// Absolute slack added to every intercept: far above the error of the f64
/// evaluation of `f`, `f'` and of `a x + b` for `|x|` up to 1e6.
const MARGIN: f64 = 1e-9;

/// Number of interior tangent points tried on each side.
const TANGENTS: usize = 3;

/// The envelope of `y = f(x)` on `[l, u]`: lines every point of the graph
/// satisfies. Empty when the interval is not finite (only the range `[0, 1]`
/// or `[−1, 1]` of `f` then applies, which callers add as variable bounds).
pub fn envelope(f: SShape, l: f64, u: f64) -> Vec<Line> {
    let mut out = Vec::new();
    if !(l.is_finite() && u.is_finite()) || l > u {
        return out;
    }
    let margin = |b: f64| MARGIN * (1.0 + b.abs());
    let lower = |a: f64, b: f64| Line {
        a,
        b: b - margin(b) - MARGIN * a.abs() * l.abs().max(u.abs()),
        upper: false,
    };
    let upper = |a: f64, b: f64| Line {
        a,
        b: b + margin(b) + MARGIN * a.abs() * l.abs().max(u.abs()),
        upper: true,
    };
    let (fl, fu) = (f.value(l), f.value(u));
    out.push(lower(0.0, fl));
    out.push(upper(0.0, fu));
    if u - l < 1e-12 {
        return out;
    }
    let lam = f.slope(l).min(f.slope(u));
    out.push(lower(lam, fl - lam * l));
    out.push(upper(lam, fu - lam * u));
    // Tangent at d: y = f(d) + f'(d)(x − d).
    let tangent = |d: f64| (f.slope(d), f.value(d) - f.slope(d) * d);
    let chord = {
        let a = (fu - fl) / (u - l);
        (a, fl - a * l)
    };
    let points =
        |a: f64, b: f64| (0..TANGENTS).map(move |k| a + (b - a) * k as f64 / (TANGENTS - 1) as f64);
    if u <= 0.0 {
        // Convex: chord above, tangents below.
        out.push(upper(chord.0, chord.1));
        for d in points(l, u) {
            let (a, b) = tangent(d);
            out.push(lower(a, b));
        }
    } else if l >= 0.0 {
        // Concave: chord below, tangents above.
        out.push(lower(chord.0, chord.1));
        for d in points(l, u) {
            let (a, b) = tangent(d);
            out.push(upper(a, b));
        }
    } else {
        for d in points(l, 0.0) {
            let (a, b) = tangent(d);
            // Valid below on [l, u] iff it stays under f(u) at u.
            if a * u + b <= fu {
                out.push(lower(a, b));
            }
        }
        for d in points(0.0, u) {
            let (a, b) = tangent(d);
            if a * l + b >= fl {
                out.push(upper(a, b));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_contains_the_graph() {
        let cases = [
            (-8.0, -0.5),
            (-3.0, 4.0),
            (0.2, 6.0),
            (-0.1, 0.1),
            (-20.0, 20.0),
            (1.0, 1.0),
            (-1e-3, 5.0),
        ];
        for f in [SShape::Sigmoid, SShape::Tanh] {
            for &(l, u) in &cases {
                let lines = envelope(f, l, u);
                assert!(lines.len() >= 2);
                for k in 0..=2000 {
                    let x = l + (u - l) * k as f64 / 2000.0;
                    let y = f.value(x);
                    for line in &lines {
                        assert!(line.holds(x, y), "{f:?} [{l}, {u}] x={x} {line:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn envelope_is_tight_on_narrow_intervals() {
        // On a narrow interval the envelope pins y to within the interval's
        // variation: every lower line at the midpoint is close to f(mid).
        let (l, u) = (0.5, 0.51);
        let lines = envelope(SShape::Sigmoid, l, u);
        let m = 0.505;
        let lo = lines
            .iter()
            .filter(|c| !c.upper)
            .map(|c| c.a * m + c.b)
            .fold(f64::NEG_INFINITY, f64::max);
        let hi = lines
            .iter()
            .filter(|c| c.upper)
            .map(|c| c.a * m + c.b)
            .fold(f64::INFINITY, f64::min);
        let y = SShape::Sigmoid.value(m);
        assert!(lo <= y && y <= hi);
        assert!(hi - lo < 1e-5, "{lo} {hi}");
    }

    #[test]
    fn unbounded_intervals_give_no_lines() {
        assert!(envelope(SShape::Tanh, f64::NEG_INFINITY, 1.0).is_empty());
    }
}
