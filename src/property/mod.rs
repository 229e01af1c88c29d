//! Properties to check: VNN-LIB input regions and output constraints, and
//! VNN-COMP instance lists.
//!
//! A VNN-LIB file asserts the **negation** of the property to verify: a point
//! `x` with network output `y = f(x)` that satisfies every assert is a
//! counterexample (`sat` = the property is violated, `unsat` = it holds).
//! [`Property::from_vnnlib`] reads such a file into a small normal form:
//!
//! * a disjunction of input [`Region`]s, each an [`InputBox`] plus any
//!   X-only constraints that are not single-variable bounds;
//! * per region, a disjunction of conjunctions of [`LinearConstraint`]s over
//!   the outputs (and over mixed X/Y terms): `x` is a counterexample when it
//!   lies in some region and **any** of that region's output conjunctions holds.
//!
//! ```
//! use nnexplain::property::{Property, Robustness};
//!
//! let text = "(declare-const X_0 Real)
//! (declare-const X_1 Real)
//! (declare-const Y_0 Real)
//! (declare-const Y_1 Real)
//! (assert (<= X_0 1)) (assert (>= X_0 0))
//! (assert (<= X_1 1)) (assert (>= X_1 0))
//! (assert (or (and (>= Y_1 Y_0))))";
//! let p = Property::parse_vnnlib(text, None)?;
//! assert_eq!((p.n_inputs, p.n_outputs, p.regions.len()), (2, 2, 1));
//! assert_eq!(p.regions[0].input.centre(), Some(vec![0.5, 0.5]));
//! assert_eq!(p.robustness(), Some(Robustness::Untargeted { label: 0 }));
//! assert!(p.is_counterexample(&[0.5, 0.5], &[1.0, 2.0], 0.0));
//! # Ok::<(), nnexplain::Error>(())
//! ```

pub mod instances;
pub mod vnnlib;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

pub use instances::{read_instances, Instance};

/// A variable of a property: an input `X_i` or an output `Y_j`.
///
/// The index is into the *flattened* tensor, row-major in the ONNX tensor's
/// own layout (NCHW or NHWC, whichever the model uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Var {
    /// Input `X_i`.
    X(usize),
    /// Output `Y_j`.
    Y(usize),
}

impl Var {
    /// Whether this is an input variable.
    pub fn is_input(self) -> bool {
        matches!(self, Var::X(_))
    }

    /// Whether this is an output variable.
    pub fn is_output(self) -> bool {
        matches!(self, Var::Y(_))
    }

    /// The flattened index, input or output.
    pub fn index(self) -> usize {
        match self {
            Var::X(i) | Var::Y(i) => i,
        }
    }

    /// The value of this variable at `(x, y)`, `None` when the index is out of range.
    fn value(self, x: &[f64], y: &[f64]) -> Option<f64> {
        match self {
            Var::X(i) => x.get(i).copied(),
            Var::Y(j) => y.get(j).copied(),
        }
    }
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Var::X(i) => write!(f, "X_{i}"),
            Var::Y(j) => write!(f, "Y_{j}"),
        }
    }
}

/// The comparison of a [`LinearConstraint`].
///
/// VNN-LIB's strict `<` and `>` are read as `<=` and `>=`: over the reals the
/// difference is a set of measure zero, which no floating-point verifier or
/// re-check can tell apart anyway (every check runs with an explicit tolerance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cmp {
    /// `lhs <= rhs` (also `<`).
    Le,
    /// `lhs >= rhs` (also `>`).
    Ge,
    /// `lhs = rhs`.
    Eq,
}

impl fmt::Display for Cmp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cmp::Le => "<=",
            Cmp::Ge => ">=",
            Cmp::Eq => "=",
        })
    }
}

/// A linear constraint `sum_i c_i v_i  cmp  rhs`.
///
/// As built by the parser, `terms` is sorted by variable (all `X` before all
/// `Y`, then by index), has no repeated variable, no zero coefficient, and is
/// never empty (atoms without variables are folded to true or false).
#[derive(Debug, Clone, PartialEq)]
pub struct LinearConstraint {
    /// The terms `(v_i, c_i)` of the left-hand side.
    pub terms: Vec<(Var, f64)>,
    /// The comparison.
    pub cmp: Cmp,
    /// The constant right-hand side.
    pub rhs: f64,
}

impl LinearConstraint {
    /// The left-hand side `sum_i c_i v_i` at `(x, y)`; `None` when a variable's
    /// index is outside `x` or `y`.
    pub fn lhs(&self, x: &[f64], y: &[f64]) -> Option<f64> {
        let mut sum = 0.0;
        for &(v, c) in &self.terms {
            sum += c * v.value(x, y)?;
        }
        Some(sum)
    }

    /// Whether the constraint holds at `(x, y)` with absolute slack `tol`:
    /// `lhs <= rhs + tol`, `lhs >= rhs - tol`, or `|lhs - rhs| <= tol`.
    ///
    /// False when a variable's index is outside `x` or `y`, or when the
    /// left-hand side is NaN.
    pub fn eval(&self, x: &[f64], y: &[f64], tol: f64) -> bool {
        let Some(lhs) = self.lhs(x, y) else {
            return false;
        };
        match self.cmp {
            Cmp::Le => lhs <= self.rhs + tol,
            Cmp::Ge => lhs >= self.rhs - tol,
            Cmp::Eq => (lhs - self.rhs).abs() <= tol,
        }
    }

    /// Whether every term is an input variable (true for no terms).
    pub fn is_input_only(&self) -> bool {
        self.terms.iter().all(|(v, _)| v.is_input())
    }

    /// Whether every term is an output variable (true for no terms).
    pub fn is_output_only(&self) -> bool {
        self.terms.iter().all(|(v, _)| v.is_output())
    }

    /// `Some((a, b))` when this constraint says `Y_a >= Y_b`, in any of the
    /// forms `c*Y_a - c*Y_b >= 0` or `c*Y_b - c*Y_a <= 0` with `c > 0`.
    pub fn as_output_ge(&self) -> Option<(usize, usize)> {
        if self.rhs != 0.0 || self.terms.len() != 2 {
            return None;
        }
        let (Var::Y(p), cp) = self.terms[0] else {
            return None;
        };
        let (Var::Y(q), cq) = self.terms[1] else {
            return None;
        };
        if cp != -cq {
            return None;
        }
        // (pos, neg): the variable with the positive coefficient first.
        let (pos, neg) = if cp > 0.0 { (p, q) } else { (q, p) };
        match self.cmp {
            Cmp::Ge => Some((pos, neg)),
            Cmp::Le => Some((neg, pos)),
            Cmp::Eq => None,
        }
    }
}

impl fmt::Display for LinearConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, (v, c)) in self.terms.iter().enumerate() {
            let (sign, mag) = if *c < 0.0 { ("-", -c) } else { ("+", *c) };
            match (k, sign) {
                (0, "+") => {}
                (0, _) => f.write_str("-")?,
                _ => write!(f, " {sign} ")?,
            }
            if mag == 1.0 {
                write!(f, "{v}")?;
            } else {
                write!(f, "{mag}*{v}")?;
            }
        }
        write!(f, " {} {}", self.cmp, self.rhs)
    }
}

/// An axis-aligned box over the inputs: `lower[i] <= x_i <= upper[i]`.
///
/// Unbounded sides are `-inf` / `+inf`. A box with `lower[i] > upper[i]` for
/// some `i` is *empty*: the parser keeps it (the file said so), and a region
/// with an empty box can never hold. `lower[i] == upper[i]` fixes `x_i`.
#[derive(Debug, Clone, PartialEq)]
pub struct InputBox {
    /// Lower bounds, one per input.
    pub lower: Vec<f64>,
    /// Upper bounds, one per input.
    pub upper: Vec<f64>,
}

impl InputBox {
    /// The box `(-inf, +inf)^n`.
    pub fn unbounded(n: usize) -> Self {
        InputBox {
            lower: vec![f64::NEG_INFINITY; n],
            upper: vec![f64::INFINITY; n],
        }
    }

    /// The number of inputs.
    pub fn dim(&self) -> usize {
        self.lower.len()
    }

    /// Whether every bound is finite.
    pub fn is_bounded(&self) -> bool {
        self.lower.iter().chain(&self.upper).all(|b| b.is_finite())
    }

    /// Whether some interval is empty (`lower[i] > upper[i]`).
    pub fn is_empty(&self) -> bool {
        self.lower.iter().zip(&self.upper).any(|(l, u)| l > u)
    }

    /// The centre `(lower + upper) / 2`; `None` when the box is unbounded or empty.
    pub fn centre(&self) -> Option<Vec<f64>> {
        if !self.is_bounded() || self.is_empty() {
            return None;
        }
        Some(
            self.lower
                .iter()
                .zip(&self.upper)
                .map(|(l, u)| l + (u - l) / 2.0)
                .collect(),
        )
    }

    /// Whether `x` lies in the box widened by `tol` on every side.
    ///
    /// False when `x` has the wrong length or holds a NaN.
    pub fn contains(&self, x: &[f64], tol: f64) -> bool {
        x.len() == self.dim()
            && x.iter()
                .zip(self.lower.iter().zip(&self.upper))
                .all(|(&v, (&l, &u))| v >= l - tol && v <= u + tol)
    }

    /// Intersects interval `i` with `[lo, hi]`.
    fn tighten(&mut self, i: usize, lo: f64, hi: f64) {
        if let (Some(l), Some(u)) = (self.lower.get_mut(i), self.upper.get_mut(i)) {
            *l = l.max(lo);
            *u = u.min(hi);
        }
    }
}

/// One disjunct of a property's input side, with its output conditions.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    /// The single-variable bounds on the inputs.
    pub input: InputBox,
    /// X-only constraints with two or more variables.
    pub input_constraints: Vec<LinearConstraint>,
    /// A disjunction of conjunctions over the outputs (mixed X/Y constraints
    /// are kept here too): a point of the region is a counterexample when
    /// **any** conjunction holds. Never empty; a conjunction may be empty
    /// (then every point of the region is a counterexample).
    pub output: Vec<Vec<LinearConstraint>>,
}

impl Region {
    /// Whether `x` is in the region's box and meets its input constraints (slack `tol`).
    pub fn contains_input(&self, x: &[f64], tol: f64) -> bool {
        self.input.contains(x, tol) && self.input_constraints.iter().all(|c| c.eval(x, &[], tol))
    }

    /// Whether some output conjunction holds at `(x, y)` (slack `tol`).
    pub fn output_holds(&self, x: &[f64], y: &[f64], tol: f64) -> bool {
        self.output
            .iter()
            .any(|conj| conj.iter().all(|c| c.eval(x, y, tol)))
    }
}

/// What a classification-robustness property asks, as read by [`Property::robustness`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Robustness {
    /// Counterexample: some other class scores at least as high as `label`
    /// (`Y_j >= Y_label` for some `j != label`).
    Untargeted {
        /// The class the network should keep.
        label: usize,
    },
    /// Counterexample: class `target` scores at least as high as every other
    /// class (`Y_target >= Y_j` for all `j != target`).
    Targeted {
        /// The class an attacker wants.
        target: usize,
    },
}

/// A VNN-LIB property: the negation of what should hold, in normal form.
///
/// `x` (with `y = f(x)`) is a counterexample when it lies in some region and
/// one of that region's output conjunctions holds. No region means the
/// asserts are unsatisfiable on their face (the property holds trivially).
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    /// Number of inputs declared (`X_0 .. X_{n-1}`).
    pub n_inputs: usize,
    /// Number of outputs declared (`Y_0 .. Y_{m-1}`).
    pub n_outputs: usize,
    /// The disjunction of input regions, in the order the file produces them.
    pub regions: Vec<Region>,
    /// The file it was read from, if any.
    pub source: Option<PathBuf>,
}

impl Property {
    /// Reads a `.vnnlib` file, or a gzip-compressed one (`.vnnlib.gz`, detected
    /// by its magic bytes).
    pub fn from_vnnlib(path: impl AsRef<Path>) -> Result<Property> {
        let path = path.as_ref();
        let text = vnnlib::read_text(path)?;
        Self::parse_vnnlib(&text, Some(path))
    }

    /// Parses VNN-LIB text; `origin` names the file in errors and becomes `source`.
    pub fn parse_vnnlib(text: &str, origin: Option<&Path>) -> Result<Property> {
        vnnlib::parse(text, origin)
    }

    /// Whether `x`, with output `y`, is a counterexample: `x` is in some region
    /// (box and input constraints) and one of its output conjunctions holds,
    /// every comparison with absolute slack `tol`.
    ///
    /// False when `x` or `y` has the wrong length.
    pub fn is_counterexample(&self, x: &[f64], y: &[f64], tol: f64) -> bool {
        x.len() == self.n_inputs
            && y.len() == self.n_outputs
            && self
                .regions
                .iter()
                .any(|r| r.contains_input(x, tol) && r.output_holds(x, y, tol))
    }

    /// Recognises classification robustness, judged on structure alone.
    ///
    /// * `Untargeted { label }`: every region's output is a disjunction of
    ///   single atoms `Y_j >= Y_label` (written `(>= Y_j Y_l)` or
    ///   `(<= Y_l Y_j)`) that covers every `j != label`.
    /// * `Targeted { target }`: every region's output is one conjunction of
    ///   `Y_target >= Y_j` over every `j != target` (Marabou's style).
    ///
    /// Otherwise `None`. Untargeted is tried first (with two outputs the two
    /// forms coincide). Note that a property whose negation says "`Y_t` is the
    /// largest output" reads as `Targeted` whatever the outputs mean (ACAS Xu
    /// φ2, where the advisory is the *smallest* score, is one).
    pub fn robustness(&self) -> Option<Robustness> {
        if self.regions.is_empty() || self.n_outputs < 2 {
            return None;
        }
        self.untargeted_label()
            .map(|label| Robustness::Untargeted { label })
            .or_else(|| {
                self.targeted_class()
                    .map(|target| Robustness::Targeted { target })
            })
    }

    fn untargeted_label(&self) -> Option<usize> {
        let mut label = None;
        for region in &self.regions {
            let mut seen = vec![false; self.n_outputs];
            for conj in &region.output {
                let [atom] = conj.as_slice() else {
                    return None;
                };
                let (j, l) = atom.as_output_ge()?;
                if *label.get_or_insert(l) != l || j == l {
                    return None;
                }
                *seen.get_mut(j)? = true;
            }
            let l = label?;
            if seen.iter().enumerate().any(|(j, &s)| j != l && !s) {
                return None;
            }
        }
        label
    }

    fn targeted_class(&self) -> Option<usize> {
        let mut target = None;
        for region in &self.regions {
            let [conj] = region.output.as_slice() else {
                return None;
            };
            let mut seen = vec![false; self.n_outputs];
            for atom in conj {
                let (t, j) = atom.as_output_ge()?;
                if *target.get_or_insert(t) != t || j == t {
                    return None;
                }
                *seen.get_mut(j)? = true;
            }
            let t = target?;
            if seen.iter().enumerate().any(|(j, &s)| j != t && !s) {
                return None;
            }
        }
        target
    }

    /// Checks that the property fits a network with `n_inputs` inputs and
    /// `n_outputs` outputs (flattened), as [`Error::Shape`] naming both sizes.
    pub fn check_sizes(&self, n_inputs: usize, n_outputs: usize) -> Result<()> {
        if self.n_inputs == n_inputs && self.n_outputs == n_outputs {
            return Ok(());
        }
        let name = self
            .source
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "<string>".to_string());
        Err(Error::Shape(format!(
            "property {name} declares {} inputs and {} outputs, \
             but the network has {n_inputs} inputs and {n_outputs} outputs (flattened)",
            self.n_inputs, self.n_outputs
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ge(a: usize, b: usize) -> LinearConstraint {
        LinearConstraint {
            terms: vec![(Var::Y(a.min(b)), 1.0), (Var::Y(a.max(b)), -1.0)],
            cmp: if a < b { Cmp::Ge } else { Cmp::Le },
            rhs: 0.0,
        }
    }

    fn prop(outputs: Vec<Vec<Vec<LinearConstraint>>>, n_outputs: usize) -> Property {
        Property {
            n_inputs: 1,
            n_outputs,
            regions: outputs
                .into_iter()
                .map(|output| Region {
                    input: InputBox {
                        lower: vec![0.0],
                        upper: vec![1.0],
                    },
                    input_constraints: vec![],
                    output,
                })
                .collect(),
            source: None,
        }
    }

    #[test]
    fn as_output_ge_reads_both_directions() {
        assert_eq!(ge(3, 1).as_output_ge(), Some((3, 1)));
        assert_eq!(ge(1, 3).as_output_ge(), Some((1, 3)));
        let scaled = LinearConstraint {
            terms: vec![(Var::Y(0), -2.0), (Var::Y(4), 2.0)],
            cmp: Cmp::Ge,
            rhs: 0.0,
        };
        assert_eq!(scaled.as_output_ge(), Some((4, 0)));
        let offset = LinearConstraint {
            rhs: 1.0,
            ..ge(3, 1)
        };
        assert_eq!(offset.as_output_ge(), None);
        let unequal = LinearConstraint {
            terms: vec![(Var::Y(0), 1.0), (Var::Y(1), -2.0)],
            cmp: Cmp::Ge,
            rhs: 0.0,
        };
        assert_eq!(unequal.as_output_ge(), None);
    }

    #[test]
    fn untargeted_needs_every_other_class() {
        let all: Vec<_> = [0, 1, 3].iter().map(|&j| vec![ge(j, 2)]).collect();
        let p = prop(vec![all.clone(), all.clone()], 4);
        assert_eq!(p.robustness(), Some(Robustness::Untargeted { label: 2 }));
        let missing: Vec<_> = [0, 1].iter().map(|&j| vec![ge(j, 2)]).collect();
        assert_eq!(prop(vec![missing], 4).robustness(), None);
        let mixed = vec![vec![ge(0, 2)], vec![ge(1, 2)], vec![ge(3, 1)]];
        assert_eq!(prop(vec![mixed], 4).robustness(), None);
        let other_label: Vec<_> = [1, 2, 3].iter().map(|&j| vec![ge(j, 0)]).collect();
        assert_eq!(prop(vec![all, other_label], 4).robustness(), None);
    }

    #[test]
    fn targeted_is_one_conjunction() {
        let conj: Vec<_> = [0, 2, 3].iter().map(|&j| ge(1, j)).collect();
        let p = prop(vec![vec![conj.clone()]], 4);
        assert_eq!(p.robustness(), Some(Robustness::Targeted { target: 1 }));
        let split: Vec<_> = conj.iter().map(|c| vec![c.clone()]).collect();
        assert_eq!(prop(vec![split], 4).robustness(), None);
        assert_eq!(prop(vec![vec![conj[..2].to_vec()]], 4).robustness(), None);
    }

    #[test]
    fn acas_like_outputs_are_not_robustness() {
        let bound = LinearConstraint {
            terms: vec![(Var::Y(0), 1.0)],
            cmp: Cmp::Ge,
            rhs: 3.99,
        };
        assert_eq!(prop(vec![vec![vec![bound]]], 5).robustness(), None);
        // "Y_0 is minimal": Y_j >= Y_0 for all j in one conjunction.
        let conj: Vec<_> = (1..5).map(|j| ge(j, 0)).collect();
        assert_eq!(prop(vec![vec![conj]], 5).robustness(), None);
        assert_eq!(prop(vec![], 5).robustness(), None);
    }

    #[test]
    fn eval_with_tolerance() {
        let c = LinearConstraint {
            terms: vec![(Var::X(0), 2.0), (Var::Y(1), -1.0)],
            cmp: Cmp::Le,
            rhs: 1.0,
        };
        assert!(c.eval(&[1.0], &[0.0, 1.0], 0.0)); // 2 - 1 = 1 <= 1
        assert!(!c.eval(&[1.0], &[0.0, 0.99], 0.0));
        assert!(c.eval(&[1.0], &[0.0, 0.99], 0.02));
        assert!(!c.eval(&[1.0], &[0.0], 1.0), "out of range index is false");
        assert!(!c.eval(&[f64::NAN], &[0.0, 1.0], 1.0), "NaN is false");
        let eq = LinearConstraint {
            cmp: Cmp::Eq,
            ..c.clone()
        };
        assert!(eq.eval(&[1.0], &[0.0, 1.0005], 1e-3));
        assert!(!eq.eval(&[1.0], &[0.0, 1.1], 1e-3));
        let ge = LinearConstraint { cmp: Cmp::Ge, ..c };
        assert!(ge.eval(&[1.0], &[0.0, 1.0], 0.0));
        assert!(!ge.eval(&[0.0], &[0.0, 1.0], 0.5));
        assert!(!ge.is_input_only() && !ge.is_output_only());
    }

    #[test]
    fn box_centre_contains_and_emptiness() {
        let b = InputBox {
            lower: vec![0.0, -1.0],
            upper: vec![1.0, -1.0],
        };
        assert!(b.is_bounded() && !b.is_empty());
        assert_eq!(b.centre(), Some(vec![0.5, -1.0]));
        assert!(b.contains(&[1.0, -1.0], 0.0));
        assert!(!b.contains(&[1.1, -1.0], 0.0));
        assert!(b.contains(&[1.1, -1.0], 0.2));
        assert!(!b.contains(&[0.5], 1.0));
        assert!(!b.contains(&[f64::NAN, -1.0], 1.0));
        assert_eq!(InputBox::unbounded(2).centre(), None);
        let empty = InputBox {
            lower: vec![1.0],
            upper: vec![0.0],
        };
        assert!(empty.is_empty());
        assert_eq!(empty.centre(), None);
    }

    #[test]
    fn check_sizes_names_both() {
        let p = prop(vec![], 3);
        assert!(p.check_sizes(1, 3).is_ok());
        let msg = p.check_sizes(784, 10).unwrap_err().to_string();
        assert!(msg.contains("1 inputs and 3 outputs"), "{msg}");
        assert!(msg.contains("784 inputs and 10 outputs"), "{msg}");
    }

    #[test]
    fn display_constraint() {
        let c = LinearConstraint {
            terms: vec![(Var::X(0), -2.0), (Var::Y(3), 1.0), (Var::Y(4), -1.0)],
            cmp: Cmp::Ge,
            rhs: 0.5,
        };
        assert_eq!(c.to_string(), "-2*X_0 + Y_3 - Y_4 >= 0.5");
    }
}
