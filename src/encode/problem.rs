//! The Problem IR: one solver-neutral description of a constraint problem.
//!
//! Variables (continuous, integer, binary; each with bounds and a name that
//! carries layer and neuron, e.g. `relu3_17`), linear constraints, and
//! piecewise-linear constructs kept as such — ReLU with its pre-activation
//! bounds, max, indicator — plus Sigmoid/Tanh terms that only a nonlinear
//! backend takes exactly. Each backend lowers the constructs its own way (z3:
//! `ite`; MILP: big-M with the bounds; LP: the triangle relaxation).

use serde::Serialize;

/// A variable, by index into [`Problem::vars`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Var(pub usize);

/// The domain of a variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum VarKind {
    /// Real-valued.
    Continuous,
    /// Integer-valued.
    Integer,
    /// 0 or 1.
    Binary,
}

/// A variable with its bounds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Variable {
    /// Name, e.g. `x_3`, `dense2_17`, `relu2_17`.
    pub name: String,
    /// Domain.
    pub kind: VarKind,
    /// Lower bound (may be −∞).
    pub lb: f64,
    /// Upper bound (may be +∞).
    pub ub: f64,
}

/// `Σ cᵢ vᵢ + constant`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LinExpr {
    /// Coefficients per variable (no duplicates after [`LinExpr::normalise`]).
    pub terms: Vec<(Var, f64)>,
    /// The constant part.
    pub constant: f64,
}

impl LinExpr {
    /// The constant `c`.
    pub fn constant(c: f64) -> LinExpr {
        LinExpr {
            terms: Vec::new(),
            constant: c,
        }
    }
    /// The variable `v`.
    pub fn var(v: Var) -> LinExpr {
        LinExpr {
            terms: vec![(v, 1.0)],
            constant: 0.0,
        }
    }
    /// `self += k · other`.
    pub fn add_scaled(&mut self, other: &LinExpr, k: f64) {
        if k == 0.0 {
            return;
        }
        self.terms
            .extend(other.terms.iter().map(|&(v, c)| (v, c * k)));
        self.constant += k * other.constant;
    }
    /// `k · self`.
    pub fn scaled(&self, k: f64) -> LinExpr {
        LinExpr {
            terms: self.terms.iter().map(|&(v, c)| (v, c * k)).collect(),
            constant: self.constant * k,
        }
    }
    /// Merges duplicate variables and drops zero coefficients.
    pub fn normalise(&mut self) {
        self.terms.sort_by_key(|t| t.0);
        let mut out: Vec<(Var, f64)> = Vec::with_capacity(self.terms.len());
        for &(v, c) in &self.terms {
            match out.last_mut() {
                Some(last) if last.0 == v => last.1 += c,
                _ => out.push((v, c)),
            }
        }
        out.retain(|t| t.1 != 0.0);
        self.terms = out;
    }
    /// The value at an assignment.
    pub fn eval(&self, x: &[f64]) -> f64 {
        self.constant + self.terms.iter().map(|&(v, c)| c * x[v.0]).sum::<f64>()
    }
    /// Whether the expression is a constant.
    pub fn is_constant(&self) -> bool {
        self.terms.iter().all(|t| t.1 == 0.0)
    }
}

/// Comparison of a constraint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Cmp {
    /// `≤`
    Le,
    /// `≥`
    Ge,
    /// `=`
    Eq,
}

/// `expr cmp rhs`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Constraint {
    /// Name for diagnostics.
    pub name: String,
    /// Left-hand side.
    pub expr: LinExpr,
    /// Comparison.
    pub cmp: Cmp,
    /// Right-hand side.
    pub rhs: f64,
}

impl Constraint {
    /// How much the constraint is violated at `x` (0 when it holds).
    pub fn violation(&self, x: &[f64]) -> f64 {
        let v = self.expr.eval(x) - self.rhs;
        match self.cmp {
            Cmp::Le => v.max(0.0),
            Cmp::Ge => (-v).max(0.0),
            Cmp::Eq => v.abs(),
        }
    }
}

/// A piecewise-linear or nonlinear construct, kept as such for the backends.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Construct {
    /// `y = max(0, x)` with known pre-activation bounds `lb < 0 < ub`.
    Relu {
        /// Pre-activation.
        x: Var,
        /// Post-activation.
        y: Var,
        /// Lower bound of `x`.
        lb: f64,
        /// Upper bound of `x`.
        ub: f64,
    },
    /// `y = max_i xs[i]` with bounds on every `xs[i]`.
    Max {
        /// Arguments.
        xs: Vec<Var>,
        /// Result.
        y: Var,
        /// Lower bounds of the arguments.
        lbs: Vec<f64>,
        /// Upper bounds of the arguments.
        ubs: Vec<f64>,
    },
    /// `b = active ⇒ constraint`.
    Indicator {
        /// A binary variable.
        b: Var,
        /// The value of `b` that switches the constraint on.
        active: bool,
        /// The constraint.
        constraint: Constraint,
    },
    /// `y = 1 / (1 + e^{−x})`, `lb ≤ x ≤ ub` (nonlinear).
    Sigmoid {
        /// Argument.
        x: Var,
        /// Result.
        y: Var,
        /// Lower bound of `x`.
        lb: f64,
        /// Upper bound of `x`.
        ub: f64,
    },
    /// `y = tanh x`, `lb ≤ x ≤ ub` (nonlinear).
    Tanh {
        /// Argument.
        x: Var,
        /// Result.
        y: Var,
        /// Lower bound of `x`.
        lb: f64,
        /// Upper bound of `x`.
        ub: f64,
    },
}

impl Construct {
    /// Whether the construct is nonlinear (not exactly expressible in LRA/MILP).
    pub fn is_nonlinear(&self) -> bool {
        matches!(self, Construct::Sigmoid { .. } | Construct::Tanh { .. })
    }
    /// How much the construct is violated at `x`.
    pub fn violation(&self, x: &[f64]) -> f64 {
        match self {
            Construct::Relu { x: a, y, .. } => (x[y.0] - x[a.0].max(0.0)).abs(),
            Construct::Max { xs, y, .. } => {
                let m = xs.iter().map(|v| x[v.0]).fold(f64::NEG_INFINITY, f64::max);
                (x[y.0] - m).abs()
            }
            Construct::Indicator {
                b,
                active,
                constraint,
            } => {
                let on = x[b.0] > 0.5;
                if on == *active {
                    constraint.violation(x)
                } else {
                    0.0
                }
            }
            Construct::Sigmoid { x: a, y, .. } => (x[y.0] - 1.0 / (1.0 + (-x[a.0]).exp())).abs(),
            Construct::Tanh { x: a, y, .. } => (x[y.0] - x[a.0].tanh()).abs(),
        }
    }
}

/// Minimise or maximise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Sense {
    /// Minimise.
    Minimize,
    /// Maximise.
    Maximize,
}

/// An objective.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Objective {
    /// Direction.
    pub sense: Sense,
    /// What to optimise.
    pub expr: LinExpr,
}

/// A constraint problem: find an assignment satisfying every constraint and
/// construct (optimising the objective when there is one).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Problem {
    /// Name for reports.
    pub name: String,
    /// Variables.
    pub vars: Vec<Variable>,
    /// Linear constraints.
    pub constraints: Vec<Constraint>,
    /// Piecewise-linear and nonlinear constructs.
    pub constructs: Vec<Construct>,
    /// The objective; `None` for a feasibility problem.
    pub objective: Option<Objective>,
    /// The network's input variables, in input order (for counterexamples).
    pub inputs: Vec<Var>,
    /// The network's outputs as expressions, in output order.
    pub outputs: Vec<LinExpr>,
}

impl Problem {
    /// An empty problem.
    pub fn new(name: impl Into<String>) -> Problem {
        Problem {
            name: name.into(),
            ..Problem::default()
        }
    }
    /// Adds a variable and returns it.
    pub fn add_var(&mut self, name: impl Into<String>, kind: VarKind, lb: f64, ub: f64) -> Var {
        self.vars.push(Variable {
            name: name.into(),
            kind,
            lb,
            ub,
        });
        Var(self.vars.len() - 1)
    }
    /// Adds `expr cmp rhs` (the expression's constant moves to the right-hand side).
    pub fn add_constraint(
        &mut self,
        name: impl Into<String>,
        mut expr: LinExpr,
        cmp: Cmp,
        rhs: f64,
    ) {
        expr.normalise();
        let rhs = rhs - expr.constant;
        expr.constant = 0.0;
        self.constraints.push(Constraint {
            name: name.into(),
            expr,
            cmp,
            rhs,
        });
    }
    /// Number of binary and integer variables.
    pub fn integer_count(&self) -> usize {
        self.vars
            .iter()
            .filter(|v| v.kind != VarKind::Continuous)
            .count()
    }
    /// Number of ReLU constructs (each needs a binary in a MILP).
    pub fn relu_count(&self) -> usize {
        self.constructs
            .iter()
            .filter(|c| matches!(c, Construct::Relu { .. }))
            .count()
    }
    /// Whether any construct is nonlinear.
    pub fn has_nonlinear(&self) -> bool {
        self.constructs.iter().any(Construct::is_nonlinear)
    }
    /// The largest violation of any bound, constraint or construct at `x`.
    pub fn max_violation(&self, x: &[f64]) -> f64 {
        if x.len() != self.vars.len() {
            return f64::INFINITY;
        }
        let bounds = self
            .vars
            .iter()
            .zip(x)
            .map(|(v, &a)| (v.lb - a).max(a - v.ub).max(0.0));
        let cons = self.constraints.iter().map(|c| c.violation(x));
        let cstr = self.constructs.iter().map(|c| c.violation(x));
        bounds.chain(cons).chain(cstr).fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_normalise_and_evaluate() {
        let mut e = LinExpr::var(Var(1));
        e.add_scaled(&LinExpr::var(Var(0)), 2.0);
        e.add_scaled(&LinExpr::var(Var(1)), -1.0);
        e.add_scaled(&LinExpr::constant(3.0), 1.0);
        e.normalise();
        assert_eq!(e.terms, vec![(Var(0), 2.0)]);
        assert_eq!(e.eval(&[1.5, 7.0]), 6.0);
    }

    #[test]
    fn violation_counts_everything() {
        let mut p = Problem::new("t");
        let x = p.add_var("x", VarKind::Continuous, -1.0, 1.0);
        let y = p.add_var("y", VarKind::Continuous, 0.0, 1.0);
        p.constructs.push(Construct::Relu {
            x,
            y,
            lb: -1.0,
            ub: 1.0,
        });
        p.add_constraint("c", LinExpr::var(y), Cmp::Ge, 0.5);
        assert_eq!(p.max_violation(&[0.7, 0.7]), 0.0);
        assert!((p.max_violation(&[-0.5, 0.0]) - 0.5).abs() < 1e-12);
        assert!((p.max_violation(&[2.0, 1.0]) - 1.0).abs() < 1e-12);
    }
}
