//! A VNN-LIB reader: tokenizer, S-expression parser, DNF expansion and
//! classification of atoms into input boxes and output constraints.
//!
//! The accepted language is the linear-real-arithmetic subset of SMT-LIB that
//! VNN-COMP uses:
//!
//! * `(declare-const X_i Real)` and `(declare-const Y_j Real)`: the declared
//!   indices must be exactly `0..n` for `X` and `0..m` for `Y`, each declared
//!   once and before use;
//! * `(assert F)` where `F` is built from `and`, `or`, `true`, `false` and the
//!   comparisons `<=`, `>=`, `<`, `>`, `=` (chains like `(<= a b c)` mean
//!   `a <= b` and `b <= c`) over linear terms: variables, numbers (`3`, `-0.5`,
//!   `.5`, `1e-3`, `+2E+4`), `(+ t ...)`, `(- t)`, `(- t u ...)`,
//!   `(* c t)` (at most one factor with variables), `(/ t c)` (constant divisors);
//! * `(check-sat)`, `(get-model)`, `(exit)`, `(set-logic ..)`, `(set-info ..)`
//!   and `(set-option ..)` are accepted and ignored;
//! * `;` starts a comment that runs to the end of the line.
//!
//! Strict comparisons are read as non-strict (see [`Cmp`]). Anything else is an
//! [`Error::Vnnlib`] naming the 1-based line of the offending token.
//!
//! The conjunction of all asserts is expanded into disjunctive normal form
//! (at most [`MAX_CONJUNCTIONS`] conjunctions and [`MAX_DNF_ATOMS`] atom
//! occurrences, else an error instead of a blow-up). In each conjunction,
//! single-`X` atoms become box bounds (intersected), other X-only atoms become
//! `input_constraints`, and the rest (Y-only and mixed X/Y) the output
//! conjunction. Conjunctions with the same input atoms share one [`Region`].

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{Cmp, InputBox, LinearConstraint, Property, Region, Var};
use crate::{Error, Result};

/// The most conjunctions the asserts may expand to in disjunctive normal form.
pub const MAX_CONJUNCTIONS: usize = 100_000;
/// The most atom occurrences, summed over all conjunctions, of the expansion.
pub const MAX_DNF_ATOMS: usize = 20_000_000;
/// The deepest nesting of parentheses accepted (guards the recursive parser).
pub const MAX_DEPTH: usize = 1_000;
/// The largest variable index accepted in `X_i` / `Y_j`.
pub const MAX_VAR_INDEX: usize = (1 << 22) - 1;

/// Reads a property file as text, decompressing it when it starts with the
/// gzip magic bytes (`.vnnlib.gz`).
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(bytes.len().saturating_mul(8));
        flate2::read::MultiGzDecoder::new(bytes.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::io(path, e))?;
        out
    } else {
        bytes
    };
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count();
        Error::Vnnlib {
            path: path.to_path_buf(),
            line,
            message: format!("not UTF-8 text (invalid byte at offset {at})"),
        }
    })
}

/// Parses VNN-LIB text into a [`Property`]; `origin` names the file in errors.
pub(crate) fn parse(text: &str, origin: Option<&Path>) -> Result<Property> {
    let wrap = |e: PErr| Error::Vnnlib {
        path: origin.map_or_else(|| PathBuf::from("<string>"), Path::to_path_buf),
        line: e.line,
        message: e.message,
    };
    let tokens = tokenize(text).map_err(wrap)?;
    let mut parser = Parser::new(tokens);
    parser.commands().map_err(wrap)?;
    let eof_line = text.lines().count().max(1);
    let n_inputs = check_declared(&parser.x_decl, 'X', eof_line).map_err(wrap)?;
    let n_outputs = check_declared(&parser.y_decl, 'Y', eof_line).map_err(wrap)?;
    let regions = parser.regions(n_inputs).map_err(wrap)?;
    Ok(Property {
        n_inputs,
        n_outputs,
        regions,
        source: origin.map(Path::to_path_buf),
    })
}

/// A parse error before the file name is attached.
#[derive(Debug)]
struct PErr {
    line: usize,
    message: String,
}

fn err<T>(line: usize, message: impl Into<String>) -> Result<T, PErr> {
    Err(PErr {
        line,
        message: message.into(),
    })
}

// ---------------------------------------------------------------- tokenizer

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok<'a> {
    Open,
    Close,
    Sym(&'a str),
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    tok: Tok<'a>,
    line: usize,
}

/// Splits `text` into parentheses and symbols, skipping whitespace and `;`
/// comments, and checks that the parentheses balance.
fn tokenize(text: &str) -> Result<Vec<Token<'_>>, PErr> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::with_capacity(text.len() / 4);
    let mut open_lines: Vec<usize> = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b' ' | b'\t' | b'\r' | b'\x0c' => i += 1,
            b';' => {
                while bytes.get(i).is_some_and(|&c| c != b'\n') {
                    i += 1;
                }
            }
            b'(' => {
                if open_lines.len() >= MAX_DEPTH {
                    return err(line, format!("parentheses nested deeper than {MAX_DEPTH}"));
                }
                open_lines.push(line);
                tokens.push(Token {
                    tok: Tok::Open,
                    line,
                });
                i += 1;
            }
            b')' => {
                if open_lines.pop().is_none() {
                    return err(line, "unmatched `)`: no `(` is open here");
                }
                tokens.push(Token {
                    tok: Tok::Close,
                    line,
                });
                i += 1;
            }
            _ => {
                let start = i;
                while bytes.get(i).is_some_and(|&c| {
                    !matches!(
                        c,
                        b' ' | b'\t' | b'\r' | b'\n' | b'\x0c' | b'(' | b')' | b';'
                    )
                }) {
                    i += 1;
                }
                // The delimiters are ASCII, so `start..i` lies on char boundaries.
                let sym = text.get(start..i).unwrap_or_default();
                tokens.push(Token {
                    tok: Tok::Sym(sym),
                    line,
                });
            }
        }
    }
    if let Some(&first) = open_lines.first() {
        let last = open_lines.last().copied().unwrap_or(first);
        let inner = if last != first {
            format!("; the innermost unclosed `(` is on line {last}")
        } else {
            String::new()
        };
        return err(
            first,
            format!(
                "`(` opened on line {first} is never closed (the file ends on line {line}{inner})"
            ),
        );
    }
    Ok(tokens)
}

// ---------------------------------------------------------------- numbers and names

/// Reads `s` as a number if it looks like one: `Some(Ok)` for a valid finite
/// decimal, `Some(Err)` for a malformed or out-of-range one, `None` when `s`
/// is no number at all (a symbol).
fn parse_number(s: &str) -> Option<Result<f64, String>> {
    let b = s.as_bytes();
    let body = match b.first()? {
        b'+' | b'-' => b.get(1..)?,
        _ => b,
    };
    match body.first() {
        Some(c) if c.is_ascii_digit() => {}
        Some(b'.') if body.get(1).is_some_and(u8::is_ascii_digit) => {}
        _ => return None,
    }
    let digits = |from: usize| {
        body.get(from..)
            .map_or(0, |r| r.iter().take_while(|c| c.is_ascii_digit()).count())
    };
    let mut k = digits(0);
    let mut mantissa = k;
    if body.get(k) == Some(&b'.') {
        let frac = digits(k + 1);
        mantissa += frac;
        k += 1 + frac;
    }
    let mut ok = mantissa > 0;
    if ok && matches!(body.get(k), Some(b'e' | b'E')) {
        k += 1;
        if matches!(body.get(k), Some(b'+' | b'-')) {
            k += 1;
        }
        let exp = digits(k);
        ok = exp > 0;
        k += exp;
    }
    if !ok || k != body.len() {
        return Some(Err(format!("malformed number `{s}`")));
    }
    Some(match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("number `{s}` is out of range")),
    })
}

/// Reads `s` as a variable name: `Some(Ok)` for `X_i` / `Y_j`, `Some(Err)` for
/// a malformed index, `None` when `s` does not have that shape.
fn parse_var_name(s: &str) -> Option<Result<Var, String>> {
    let (is_x, digits) = if let Some(d) = s.strip_prefix("X_") {
        (true, d)
    } else {
        (false, s.strip_prefix("Y_")?)
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return Some(Err(format!(
            "variable `{s}` has a leading zero in its index"
        )));
    }
    match digits.parse::<usize>() {
        Ok(i) if i <= MAX_VAR_INDEX => Some(Ok(if is_x { Var::X(i) } else { Var::Y(i) })),
        _ => Some(Err(format!(
            "variable `{s}`: index larger than {MAX_VAR_INDEX}"
        ))),
    }
}

// ---------------------------------------------------------------- terms and atoms

/// A linear term `sum c_i v_i + constant` (terms may repeat a variable).
#[derive(Debug, Default)]
struct Lin {
    terms: Vec<(Var, f64)>,
    constant: f64,
}

impl Lin {
    fn constant(c: f64) -> Self {
        Lin {
            terms: Vec::new(),
            constant: c,
        }
    }

    fn is_constant(&self) -> bool {
        self.terms.is_empty()
    }

    fn scale(&mut self, k: f64) {
        for (_, c) in &mut self.terms {
            *c *= k;
        }
        self.constant *= k;
    }

    fn add(&mut self, other: Lin, sign: f64) {
        self.terms
            .extend(other.terms.into_iter().map(|(v, c)| (v, sign * c)));
        self.constant += sign * other.constant;
    }
}

/// What an atom contributes to a region.
#[derive(Debug, Clone, Copy)]
enum AtomKind {
    /// `lo <= X_i <= hi`.
    Bound { i: usize, lo: f64, hi: f64 },
    /// An X-only constraint over two or more inputs.
    Input,
    /// Y-only or mixed.
    Output,
}

fn classify(atom: &LinearConstraint) -> AtomKind {
    match atom.terms.as_slice() {
        &[(Var::X(i), c)] => {
            let v = atom.rhs / c;
            let (lo, hi) = match (atom.cmp, c > 0.0) {
                (Cmp::Eq, _) => (v, v),
                (Cmp::Le, true) | (Cmp::Ge, false) => (f64::NEG_INFINITY, v),
                (Cmp::Ge, true) | (Cmp::Le, false) => (v, f64::INFINITY),
            };
            AtomKind::Bound { i, lo, hi }
        }
        _ if atom.is_input_only() => AtomKind::Input,
        _ => AtomKind::Output,
    }
}

/// Bitwise identity of an atom, for interning.
#[derive(Debug, PartialEq, Eq, Hash)]
struct AtomKey {
    terms: Vec<(Var, u64)>,
    cmp: Cmp,
    rhs: u64,
}

/// Bits of `v` with `-0.0` read as `0.0`.
fn bits(v: f64) -> u64 {
    if v == 0.0 {
        0
    } else {
        v.to_bits()
    }
}

/// A formula in disjunctive normal form over interned atom ids: `[]` is false,
/// `[[]]` is true.
type Dnf = Vec<Vec<u32>>;

fn dnf_true() -> Dnf {
    vec![Vec::new()]
}

/// `a and b`, distributed, within the caps.
fn dnf_and(a: Dnf, b: Dnf, line: usize) -> Result<Dnf, PErr> {
    if a.len() == 1 && b.len() == 1 {
        let (mut a, b) = (a, b);
        let mut conj = a.pop().unwrap_or_default();
        conj.extend(b.into_iter().flatten());
        return Ok(vec![conj]);
    }
    let count = a.len().saturating_mul(b.len());
    let cells = a
        .len()
        .saturating_mul(b.iter().map(Vec::len).sum())
        .saturating_add(b.len().saturating_mul(a.iter().map(Vec::len).sum()));
    check_caps(count, cells, line)?;
    let mut out = Vec::with_capacity(count);
    for x in &a {
        for y in &b {
            let mut conj = Vec::with_capacity(x.len() + y.len());
            conj.extend_from_slice(x);
            conj.extend_from_slice(y);
            out.push(conj);
        }
    }
    Ok(out)
}

fn check_caps(count: usize, cells: usize, line: usize) -> Result<(), PErr> {
    if count > MAX_CONJUNCTIONS {
        return err(
            line,
            format!(
                "the asserts expand to more than {MAX_CONJUNCTIONS} conjunctions \
                 in disjunctive normal form"
            ),
        );
    }
    if cells > MAX_DNF_ATOMS {
        return err(
            line,
            format!(
                "the asserts expand to more than {MAX_DNF_ATOMS} atoms \
                 in disjunctive normal form"
            ),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- parser

struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    pos: usize,
    /// Line of each `X_i` declaration (0: not declared).
    x_decl: Vec<usize>,
    /// Line of each `Y_j` declaration (0: not declared).
    y_decl: Vec<usize>,
    atoms: Vec<LinearConstraint>,
    kinds: Vec<AtomKind>,
    intern: HashMap<AtomKey, u32>,
    /// Atoms of the asserts that are a single conjunction.
    base: Vec<u32>,
    /// Asserts with two or more disjuncts, with their lines.
    disjunctions: Vec<(Dnf, usize)>,
    /// Conjunctions the disjunctions multiply out to.
    product: usize,
    /// Some assert is false on its face.
    is_false: bool,
}

impl<'a> Parser<'a> {
    fn new(tokens: Vec<Token<'a>>) -> Self {
        Parser {
            tokens,
            pos: 0,
            x_decl: Vec::new(),
            y_decl: Vec::new(),
            atoms: Vec::new(),
            kinds: Vec::new(),
            intern: HashMap::new(),
            base: Vec::new(),
            disjunctions: Vec::new(),
            product: 1,
            is_false: false,
        }
    }

    fn peek(&self) -> Option<Token<'a>> {
        self.tokens.get(self.pos).copied()
    }

    /// The line of the last token, for errors at the end of the input.
    fn last_line(&self) -> usize {
        self.tokens.last().map_or(1, |t| t.line)
    }

    fn next(&mut self, what: &str) -> Result<Token<'a>, PErr> {
        let t = self.peek().ok_or_else(|| PErr {
            line: self.last_line(),
            message: format!("unexpected end of file, expected {what}"),
        })?;
        self.pos += 1;
        Ok(t)
    }

    fn expect_close(&mut self, context: &str) -> Result<(), PErr> {
        let t = self.next("`)`")?;
        match t.tok {
            Tok::Close => Ok(()),
            Tok::Open => err(t.line, format!("{context}: unexpected `(`, expected `)`")),
            Tok::Sym(s) => err(t.line, format!("{context}: unexpected `{s}`, expected `)`")),
        }
    }

    /// Skips the rest of a command whose `(` and name were read.
    fn skip_to_close(&mut self) -> Result<(), PErr> {
        let mut depth = 1usize;
        while depth > 0 {
            match self.next("`)`")?.tok {
                Tok::Open => depth += 1,
                Tok::Close => depth -= 1,
                Tok::Sym(_) => {}
            }
        }
        Ok(())
    }

    fn commands(&mut self) -> Result<(), PErr> {
        while let Some(t) = self.peek() {
            self.pos += 1;
            match t.tok {
                Tok::Open => {}
                Tok::Sym(s) => {
                    return err(
                        t.line,
                        format!("unexpected `{s}` at top level, expected `(` starting a command"),
                    )
                }
                Tok::Close => return err(t.line, "unexpected `)` at top level"),
            }
            let name = self.next("a command")?;
            match name.tok {
                Tok::Sym("declare-const") => self.declare(name.line)?,
                Tok::Sym("assert") => self.assert(name.line)?,
                Tok::Sym(
                    "check-sat" | "get-model" | "exit" | "set-logic" | "set-info" | "set-option",
                ) => self.skip_to_close()?,
                Tok::Sym(s) => {
                    return err(
                        name.line,
                        format!("unknown command `{s}` (expected `declare-const` or `assert`)"),
                    )
                }
                Tok::Open | Tok::Close => {
                    return err(name.line, "expected a command name after `(`");
                }
            }
        }
        Ok(())
    }

    fn declare(&mut self, line: usize) -> Result<(), PErr> {
        let name = self.next("a variable name")?;
        let Tok::Sym(s) = name.tok else {
            return err(
                name.line,
                "`declare-const` needs a name and a sort: (declare-const X_0 Real)",
            );
        };
        let var = match parse_var_name(s) {
            Some(Ok(v)) => v,
            Some(Err(m)) => return err(name.line, m),
            None => {
                return err(
                    name.line,
                    format!(
                        "cannot declare `{s}`: VNN-LIB variables are named X_i (inputs) \
                         and Y_j (outputs)"
                    ),
                )
            }
        };
        let sort = self.next("a sort")?;
        match sort.tok {
            Tok::Sym("Real") => {}
            Tok::Sym(other) => {
                return err(
                    sort.line,
                    format!("unsupported sort `{other}` for {var}: VNN-LIB variables are Real"),
                )
            }
            Tok::Close => {
                return err(
                    sort.line,
                    format!("`declare-const` needs a sort after {var}: (declare-const {var} Real)"),
                )
            }
            Tok::Open => {
                return err(
                    sort.line,
                    format!("unsupported sort for {var}: VNN-LIB variables are Real"),
                )
            }
        }
        self.expect_close("`declare-const` takes a name and a sort")?;
        let decl = match var {
            Var::X(_) => &mut self.x_decl,
            Var::Y(_) => &mut self.y_decl,
        };
        let i = var.index();
        if decl.len() <= i {
            decl.resize(i + 1, 0);
        }
        if let Some(slot) = decl.get_mut(i) {
            if *slot != 0 {
                let first = *slot;
                return err(
                    name.line,
                    format!("{var} is declared twice (first on line {first})"),
                );
            }
            *slot = line;
        }
        Ok(())
    }

    fn assert(&mut self, line: usize) -> Result<(), PErr> {
        if let Some(Token {
            tok: Tok::Close, ..
        }) = self.peek()
        {
            return err(line, "empty `(assert)`: expected a formula");
        }
        let dnf = self.formula()?;
        self.expect_close("`assert` takes exactly one formula")?;
        match dnf.len() {
            0 => self.is_false = true,
            1 => self.base.extend(dnf.into_iter().flatten()),
            n => {
                self.product = self.product.saturating_mul(n);
                check_caps(self.product, 0, line)?;
                self.disjunctions.push((dnf, line));
            }
        }
        Ok(())
    }

    fn formula(&mut self) -> Result<Dnf, PErr> {
        let t = self.next("a formula")?;
        match t.tok {
            Tok::Sym("true") => return Ok(dnf_true()),
            Tok::Sym("false") => return Ok(Vec::new()),
            Tok::Sym(s) => {
                return err(
                    t.line,
                    format!("expected a formula (a comparison, `and` or `or`), found `{s}`"),
                )
            }
            Tok::Close => return err(t.line, "expected a formula, found `)`"),
            Tok::Open => {}
        }
        let op = self.next("an operator")?;
        let Tok::Sym(name) = op.tok else {
            return err(op.line, "expected an operator after `(`");
        };
        match name {
            "and" | "or" => {
                let mut acc: Option<Dnf> = None;
                let mut cells = 0usize;
                while !self.at_close() {
                    let child = self.formula()?;
                    acc = Some(match acc {
                        None => child,
                        Some(a) if name == "and" => dnf_and(a, child, op.line)?,
                        Some(mut a) => {
                            cells = cells.saturating_add(child.iter().map(Vec::len).sum());
                            check_caps(a.len().saturating_add(child.len()), cells, op.line)?;
                            a.extend(child);
                            a
                        }
                    });
                }
                self.pos += 1;
                acc.ok_or_else(|| PErr {
                    line: op.line,
                    message: format!("`{name}` needs at least one argument"),
                })
            }
            "<=" | ">=" | "<" | ">" | "=" => {
                let cmp = match name {
                    "<=" | "<" => Cmp::Le,
                    ">=" | ">" => Cmp::Ge,
                    _ => Cmp::Eq,
                };
                let mut terms = Vec::with_capacity(2);
                while !self.at_close() {
                    terms.push(self.term()?);
                }
                self.pos += 1;
                if terms.len() < 2 {
                    return err(op.line, format!("`{name}` needs at least two terms"));
                }
                let mut conj = dnf_true();
                let mut terms = terms.into_iter();
                let mut lhs = terms.next().unwrap_or_default();
                for rhs in terms {
                    let atom = self.atom(lhs, cmp, &rhs, op.line)?;
                    conj = dnf_and(conj, atom, op.line)?;
                    lhs = rhs;
                }
                Ok(conj)
            }
            "+" | "-" | "*" | "/" => err(
                op.line,
                format!("expected a formula, found the arithmetic term `({name} ...)`"),
            ),
            "not" | "=>" | "xor" | "ite" | "distinct" => err(
                op.line,
                format!(
                    "unsupported operator `{name}` (VNN-LIB formulas use `and`, `or` \
                     and comparisons)"
                ),
            ),
            _ => err(op.line, format!("unknown function `{name}`")),
        }
    }

    fn at_close(&self) -> bool {
        matches!(
            self.peek(),
            Some(Token {
                tok: Tok::Close,
                ..
            })
        )
    }

    /// Interns `lhs cmp rhs` as an atom: `[[id]]`, or true / false when no
    /// variable is left.
    fn atom(&mut self, lhs: Lin, cmp: Cmp, rhs: &Lin, line: usize) -> Result<Dnf, PErr> {
        let mut terms = lhs.terms;
        terms.extend(rhs.terms.iter().map(|&(v, c)| (v, -c)));
        let bound = rhs.constant - lhs.constant;
        terms.sort_by_key(|&(v, _)| v);
        let mut merged: Vec<(Var, f64)> = Vec::with_capacity(terms.len());
        for (v, c) in terms {
            match merged.last_mut() {
                Some((w, d)) if *w == v => *d += c,
                _ => merged.push((v, c)),
            }
        }
        merged.retain(|&(_, c)| c != 0.0);
        if !bound.is_finite() || merged.iter().any(|(_, c)| !c.is_finite()) {
            return err(line, "a coefficient or constant overflows to infinity");
        }
        if merged.is_empty() {
            let holds = match cmp {
                Cmp::Le => 0.0 <= bound,
                Cmp::Ge => 0.0 >= bound,
                Cmp::Eq => bound == 0.0,
            };
            return Ok(if holds { dnf_true() } else { Vec::new() });
        }
        let key = AtomKey {
            terms: merged.iter().map(|&(v, c)| (v, bits(c))).collect(),
            cmp,
            rhs: bits(bound),
        };
        let next_id = self.atoms.len();
        let id = *self.intern.entry(key).or_insert_with(|| next_id as u32);
        if id as usize == next_id {
            let atom = LinearConstraint {
                terms: merged,
                cmp,
                rhs: if bound == 0.0 { 0.0 } else { bound },
            };
            self.kinds.push(classify(&atom));
            self.atoms.push(atom);
        }
        Ok(vec![vec![id]])
    }

    fn term(&mut self) -> Result<Lin, PErr> {
        let t = self.next("a term")?;
        match t.tok {
            Tok::Sym(s) => return self.leaf(s, t.line),
            Tok::Close => return err(t.line, "expected a term, found `)`"),
            Tok::Open => {}
        }
        let op = self.next("an operator")?;
        let Tok::Sym(name) = op.tok else {
            return err(op.line, "expected an operator after `(`");
        };
        let mut args = Vec::new();
        match name {
            "+" | "-" | "*" | "/" => {
                while !self.at_close() {
                    args.push(self.term()?);
                }
                self.pos += 1;
            }
            "and" | "or" | "<=" | ">=" | "<" | ">" | "=" | "not" => {
                return err(
                    op.line,
                    format!("expected a term, found the formula `({name} ...)`"),
                )
            }
            _ => return err(op.line, format!("unknown function `{name}`")),
        }
        let n_args = args.len();
        let mut args = args.into_iter();
        let Some(mut acc) = args.next() else {
            return err(op.line, format!("`{name}` needs at least one argument"));
        };
        match name {
            "+" => args.for_each(|a| acc.add(a, 1.0)),
            "-" if n_args == 1 => acc.scale(-1.0),
            "-" => args.for_each(|a| acc.add(a, -1.0)),
            "*" => {
                for a in args {
                    let (mut var, k) = match (acc.is_constant(), a.is_constant()) {
                        (_, true) => (acc, a.constant),
                        (true, false) => (a, acc.constant),
                        (false, false) => {
                            return err(
                                op.line,
                                "non-linear product: at most one factor of `*` may contain \
                                 variables",
                            )
                        }
                    };
                    var.scale(k);
                    acc = var;
                }
            }
            _ => {
                for a in args {
                    if !a.is_constant() {
                        return err(op.line, "non-linear division: divisors must be constants");
                    }
                    if a.constant == 0.0 {
                        return err(op.line, "division by zero");
                    }
                    acc.scale(1.0 / a.constant);
                }
            }
        }
        Ok(acc)
    }

    fn leaf(&self, s: &str, line: usize) -> Result<Lin, PErr> {
        if let Some(n) = parse_number(s) {
            return n.map(Lin::constant).map_err(|m| PErr { line, message: m });
        }
        let var = match parse_var_name(s) {
            Some(Ok(v)) => v,
            Some(Err(m)) => return err(line, m),
            None => {
                return err(
                    line,
                    format!("unknown symbol `{s}` (expected a number or a variable X_i / Y_j)"),
                )
            }
        };
        let decl = match var {
            Var::X(_) => &self.x_decl,
            Var::Y(_) => &self.y_decl,
        };
        if decl.get(var.index()).is_none_or(|&l| l == 0) {
            return err(
                line,
                format!("undeclared variable {var} (no `(declare-const {var} Real)` before it)"),
            );
        }
        Ok(Lin {
            terms: vec![(var, 1.0)],
            constant: 0.0,
        })
    }

    /// Multiplies out the disjunctive asserts and groups the conjunctions by
    /// their input part.
    fn regions(&self, n_inputs: usize) -> Result<Vec<Region>, PErr> {
        if self.is_false {
            return Ok(Vec::new());
        }
        let atom = |id: &u32| self.atoms.get(*id as usize).cloned();
        let kind = |id: u32| self.kinds.get(id as usize).copied();
        let mut base_box = InputBox::unbounded(n_inputs);
        let mut base_input = Vec::new();
        let mut base_output = Vec::new();
        let mut seen = vec![false; self.atoms.len()];
        for &id in &self.base {
            // Repeated atoms in the base conjunction add nothing.
            match seen.get_mut(id as usize) {
                Some(s) if !*s => *s = true,
                _ => continue,
            }
            match kind(id) {
                Some(AtomKind::Bound { i, lo, hi }) => base_box.tighten(i, lo, hi),
                Some(AtomKind::Input) => base_input.extend(atom(&id)),
                Some(AtomKind::Output) => base_output.push(id),
                None => {}
            }
        }

        let line = self.disjunctions.last().map_or(1, |d| d.1);
        let mut regions: Vec<Region> = Vec::new();
        let mut groups: HashMap<Vec<u32>, usize> = HashMap::new();
        let mut pick = vec![0usize; self.disjunctions.len()];
        let mut input_key: Vec<u32> = Vec::new();
        let mut output_ids: Vec<u32> = Vec::new();
        let mut cells = 0usize;
        loop {
            input_key.clear();
            output_ids.clear();
            output_ids.extend_from_slice(&base_output);
            for ((dnf, _), &p) in self.disjunctions.iter().zip(&pick) {
                for &id in dnf.get(p).map_or(&[][..], Vec::as_slice) {
                    match kind(id) {
                        Some(AtomKind::Output) => output_ids.push(id),
                        _ => input_key.push(id),
                    }
                }
            }
            input_key.sort_unstable();
            input_key.dedup();
            cells = cells.saturating_add(input_key.len() + output_ids.len());
            check_caps(0, cells, line)?;
            let r = match groups.get(&input_key) {
                Some(&r) => r,
                None => {
                    let mut input = base_box.clone();
                    let mut input_constraints = base_input.clone();
                    for &id in &input_key {
                        match kind(id) {
                            Some(AtomKind::Bound { i, lo, hi }) => input.tighten(i, lo, hi),
                            _ => input_constraints.extend(atom(&id)),
                        }
                    }
                    groups.insert(input_key.clone(), regions.len());
                    regions.push(Region {
                        input,
                        input_constraints,
                        output: Vec::new(),
                    });
                    regions.len() - 1
                }
            };
            let conj = output_ids.iter().filter_map(atom).collect();
            if let Some(region) = regions.get_mut(r) {
                region.output.push(conj);
            }
            // Next combination, the last disjunction moving fastest.
            let mut k = pick.len();
            loop {
                if k == 0 {
                    return Ok(regions);
                }
                k -= 1;
                if let (Some(p), Some((dnf, _))) = (pick.get_mut(k), self.disjunctions.get(k)) {
                    *p += 1;
                    if *p < dnf.len() {
                        break;
                    }
                    *p = 0;
                }
            }
        }
    }
}

/// Checks that the declared indices are exactly `0..n`; returns `n`.
fn check_declared(decl: &[usize], name: char, eof_line: usize) -> Result<usize, PErr> {
    if decl.is_empty() {
        let role = if name == 'X' { "input" } else { "output" };
        return err(
            eof_line,
            format!(
                "no {role} variables declared: expected `(declare-const {name}_0 Real)` \
                 and so on"
            ),
        );
    }
    if let Some(missing) = decl.iter().position(|&l| l == 0) {
        let (above, line) = decl
            .iter()
            .enumerate()
            .skip(missing)
            .find(|(_, &l)| l != 0)
            .map_or((missing, eof_line), |(k, &l)| (k, l));
        return err(
            line,
            format!(
                "{name}_{missing} is not declared, but {name}_{above} is: \
                 declared indices must be exactly {name}_0 .. {name}_{}",
                decl.len() - 1
            ),
        );
    }
    Ok(decl.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::property::Robustness;

    fn parse_ok(text: &str) -> Property {
        match parse(text, None) {
            Ok(p) => p,
            Err(e) => panic!("{e}\n--- text:\n{text}"),
        }
    }

    /// The line and message of the error `text` gives.
    fn parse_err(text: &str) -> (usize, String) {
        match parse(text, None) {
            Err(Error::Vnnlib { line, message, .. }) => (line, message),
            other => panic!("expected a VNN-LIB error, got {other:?}\n--- text:\n{text}"),
        }
    }

    fn decls(nx: usize, ny: usize) -> String {
        let mut s = String::new();
        for i in 0..nx {
            s += &format!("(declare-const X_{i} Real)\n");
        }
        for j in 0..ny {
            s += &format!("(declare-const Y_{j} Real)\n");
        }
        s
    }

    #[test]
    fn tokenizer_counts_lines_and_skips_comments() {
        let toks = tokenize("; (not a paren\n(a\tb ;c)\n\r\n  )").unwrap();
        let got: Vec<_> = toks.iter().map(|t| (t.tok, t.line)).collect();
        assert_eq!(
            got,
            vec![
                (Tok::Open, 2),
                (Tok::Sym("a"), 2),
                (Tok::Sym("b"), 2),
                (Tok::Close, 4)
            ]
        );
        assert!(tokenize("").unwrap().is_empty());
        assert!(tokenize("(é)").is_ok());
    }

    #[test]
    fn tokenizer_reports_unbalanced_parens() {
        let e = tokenize("(a)\n(b\n(c (d)\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("opened on line 2"), "{}", e.message);
        assert!(
            e.message.contains("innermost unclosed `(` is on line 3"),
            "{}",
            e.message
        );
        let e = tokenize("(a)\n\n(b))").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("unmatched `)`"));
        let deep = "(".repeat(MAX_DEPTH + 1);
        assert!(tokenize(&deep)
            .unwrap_err()
            .message
            .contains("nested deeper"));
    }

    #[test]
    fn numbers() {
        let good = [
            ("0", 0.0),
            ("3", 3.0),
            ("-3", -3.0),
            ("+2", 2.0),
            ("0.5", 0.5),
            ("-0.29855281193475053", -0.29855281193475053),
            (".5", 0.5),
            ("-.5", -0.5),
            ("5.", 5.0),
            ("1e-3", 1e-3),
            ("1E3", 1000.0),
            ("-2.5e+2", -250.0),
            ("0.029999999329447746", 0.029999999329447746),
        ];
        for (s, v) in good {
            assert_eq!(parse_number(s), Some(Ok(v)), "{s}");
        }
        for s in [
            "0.5.3", "1e", "1e+", "1.2x", "12abc", "--1", "-.e1", "1e5.5", "1e400",
        ] {
            assert!(
                matches!(parse_number(s), Some(Err(_)) | None),
                "{s} must not parse"
            );
        }
        for s in ["0.5.3", "1e", "1.2x", "1e400", "-1e400"] {
            assert!(
                matches!(parse_number(s), Some(Err(_))),
                "{s} is a bad number"
            );
        }
        for s in [
            "X_0", "-", "+", "inf", "nan", "NaN", "infinity", ".", "e5", "Real",
        ] {
            assert_eq!(parse_number(s), None, "{s} is no number");
        }
    }

    #[test]
    fn variable_names() {
        assert_eq!(parse_var_name("X_0"), Some(Ok(Var::X(0))));
        assert_eq!(parse_var_name("Y_3071"), Some(Ok(Var::Y(3071))));
        assert!(matches!(parse_var_name("X_01"), Some(Err(_))));
        assert!(matches!(
            parse_var_name("X_99999999999999999999999"),
            Some(Err(_))
        ));
        assert_eq!(parse_var_name("X_"), None);
        assert_eq!(parse_var_name("X_1a"), None);
        assert_eq!(parse_var_name("Z_1"), None);
        assert_eq!(parse_var_name("x_1"), None);
    }

    #[test]
    fn box_bounds_flip_and_intersect() {
        let text = decls(4, 1)
            + "(assert (<= (* -2 X_0) 4))\n\
               (assert (>= (- X_0) -1))\n\
               (assert (< X_1 3)) (assert (> X_1 1)) (assert (<= X_1 5))\n\
               (assert (= X_2 0.25))\n\
               (assert (>= (/ X_3 2) 1)) (assert (<= (* X_3 0.5) 1.0))\n\
               (assert (<= Y_0 0))";
        let p = parse_ok(&text);
        assert_eq!(p.regions.len(), 1);
        let b = &p.regions[0].input;
        assert_eq!(b.lower, vec![-2.0, 1.0, 0.25, 2.0]);
        assert_eq!(b.upper, vec![1.0, 3.0, 0.25, 2.0]);
        assert!(p.regions[0].input_constraints.is_empty());
        assert_eq!(p.regions[0].output.len(), 1);
    }

    #[test]
    fn unbounded_and_empty_boxes_are_kept() {
        let p = parse_ok(&(decls(2, 1) + "(assert (<= X_0 0)) (assert (>= X_0 1))"));
        let b = &p.regions[0].input;
        assert_eq!(b.lower, vec![1.0, f64::NEG_INFINITY]);
        assert_eq!(b.upper, vec![0.0, f64::INFINITY]);
        assert!(b.is_empty() && !b.is_bounded());
        // No output atom: one empty conjunction, every point of the region counts.
        assert_eq!(p.regions[0].output, vec![Vec::<LinearConstraint>::new()]);
    }

    #[test]
    fn terms_merge_and_fold() {
        let text = decls(2, 2)
            + "(assert (<= (+ X_0 X_1 (- X_0) (* 2 X_1) 1) (- 4 (- 1))))\n\
               (assert (>= (- Y_0 Y_1 Y_1 3) (* 0.5 (+ Y_0 2))))\n\
               (assert (<= 1 2))";
        let p = parse_ok(&text);
        let r = &p.regions[0];
        // 3 X_1 + 1 <= 5  ->  X_1 <= 4/3
        assert_eq!(r.input.upper[1], 4.0 / 3.0);
        assert_eq!(r.input.lower[0], f64::NEG_INFINITY);
        // Y_0 - 2 Y_1 - 3 >= 0.5 Y_0 + 1  ->  0.5 Y_0 - 2 Y_1 >= 4
        let c = &r.output[0][0];
        assert_eq!(c.terms, vec![(Var::Y(0), 0.5), (Var::Y(1), -2.0)]);
        assert_eq!((c.cmp, c.rhs), (Cmp::Ge, 4.0));
        // A false constant atom empties the property.
        let p = parse_ok(&(decls(1, 1) + "(assert (<= 2 1)) (assert (<= Y_0 0))"));
        assert!(p.regions.is_empty());
        // Cancelling variables fold too.
        let p = parse_ok(&(decls(1, 1) + "(assert (>= (- X_0 X_0) 1))"));
        assert!(p.regions.is_empty());
    }

    #[test]
    fn chained_comparison_is_a_conjunction() {
        let p = parse_ok(&(decls(1, 1) + "(assert (<= -1 X_0 1 2))"));
        let r = &p.regions[0];
        assert_eq!((r.input.lower[0], r.input.upper[0]), (-1.0, 1.0));
    }

    #[test]
    fn input_constraints_and_mixed_atoms() {
        let text = decls(2, 1)
            + "(assert (<= (+ X_0 X_1) 1))\n\
               (assert (or (and (>= X_0 -1) (<= X_0 1) (>= Y_0 (* 2 X_1)))))";
        let p = parse_ok(&text);
        assert_eq!(p.regions.len(), 1);
        let r = &p.regions[0];
        assert_eq!(r.input_constraints.len(), 1);
        assert!(r.input_constraints[0].is_input_only());
        assert_eq!((r.input.lower[0], r.input.upper[0]), (-1.0, 1.0));
        let mixed = &r.output[0][0];
        assert!(!mixed.is_input_only() && !mixed.is_output_only());
        assert!(p.is_counterexample(&[0.0, 0.5], &[1.0], 0.0));
        assert!(!p.is_counterexample(&[0.0, 0.5], &[0.9], 0.0));
        assert!(p.is_counterexample(&[0.0, 0.5], &[0.9], 0.2));
        assert!(
            !p.is_counterexample(&[0.9, 0.5], &[1.0], 0.0),
            "X_0 + X_1 > 1"
        );
        assert!(!p.is_counterexample(&[0.0], &[1.0], 0.0), "wrong length");
    }

    #[test]
    fn dnf_groups_regions_by_input_part() {
        // ACAS Xu phi_6 in miniature: 2 input disjuncts x 3 output disjuncts.
        let text = decls(2, 4)
            + "(assert (<= X_1 1))\n\
               (assert (or (and (>= X_0 0) (<= X_0 1)) (and (<= X_0 0) (>= X_0 -1))))\n\
               (assert (or (and (<= Y_1 Y_0)) (and (<= Y_2 Y_0)) (and (<= Y_3 Y_0))))\n\
               (assert (>= Y_0 0))";
        let p = parse_ok(&text);
        assert_eq!(p.regions.len(), 2);
        assert_eq!(p.regions[0].input.lower, vec![0.0, f64::NEG_INFINITY]);
        assert_eq!(p.regions[1].input.lower, vec![-1.0, f64::NEG_INFINITY]);
        for r in &p.regions {
            assert_eq!(r.input.upper[1], 1.0);
            assert_eq!(r.output.len(), 3);
            // Base output atom first, then the disjunct's.
            for (k, conj) in r.output.iter().enumerate() {
                assert_eq!(conj.len(), 2);
                assert_eq!(conj[1].as_output_ge(), Some((0, k + 1)));
            }
        }
        assert_eq!(p.robustness(), None);
    }

    #[test]
    fn identical_input_disjuncts_share_a_region() {
        // Same input atoms in a different order, and an output-only split.
        let text = decls(1, 2)
            + "(assert (or (and (>= X_0 0) (<= X_0 1) (>= Y_0 1)) \
                           (and (<= X_0 1) (>= X_0 0) (>= Y_1 1))))";
        let p = parse_ok(&text);
        assert_eq!(p.regions.len(), 1);
        assert_eq!(p.regions[0].output.len(), 2);
    }

    #[test]
    fn nested_and_or_distribute() {
        let text = decls(1, 4)
            + "(assert (and (or (>= Y_0 0) (>= Y_1 0)) (or (>= Y_2 0) (and (>= Y_3 0) true))))";
        let p = parse_ok(&text);
        let shape: Vec<Vec<usize>> = p.regions[0]
            .output
            .iter()
            .map(|c| c.iter().map(|a| a.terms[0].0.index()).collect())
            .collect();
        assert_eq!(shape, vec![vec![0, 2], vec![0, 3], vec![1, 2], vec![1, 3]]);
        let p = parse_ok(&(decls(1, 1) + "(assert (or false (>= Y_0 0)))"));
        assert_eq!(p.regions[0].output.len(), 1);
    }

    #[test]
    fn dnf_blow_up_is_an_error() {
        let mut text = decls(1, 2);
        for k in 0..17 {
            text += &format!("(assert (or (>= Y_0 {k}) (>= Y_1 {k})))\n");
        }
        let (line, msg) = parse_err(&text);
        // 2^17 > 100_000 first at the 17th assert.
        assert_eq!(line, 3 + 17);
        assert!(msg.contains("conjunctions"), "{msg}");
        // The same inside a single assert.
        let inner: String = (0..17)
            .map(|k| format!("(or (>= Y_0 {k}) (>= Y_1 {k}))"))
            .collect();
        let (line, msg) = parse_err(&(decls(1, 2) + "(assert (and\n" + &inner + "))"));
        assert_eq!(line, 4);
        assert!(msg.contains("conjunctions"), "{msg}");
    }

    #[test]
    fn robustness_from_text() {
        let mut untargeted = decls(1, 3) + "(assert (<= X_0 1)) (assert (>= X_0 0))\n";
        untargeted += "(assert (or (and (>= Y_0 Y_1)) (and (<= Y_1 Y_2))))";
        let p = parse_ok(&untargeted);
        assert_eq!(p.robustness(), Some(Robustness::Untargeted { label: 1 }));
        let targeted = decls(1, 3) + "(assert (>= Y_2 Y_0)) (assert (<= Y_1 Y_2))";
        let p = parse_ok(&targeted);
        assert_eq!(p.robustness(), Some(Robustness::Targeted { target: 2 }));
        let acas = decls(1, 3) + "(assert (>= Y_0 3.99))";
        assert_eq!(parse_ok(&acas).robustness(), None);
    }

    #[test]
    fn ignored_commands() {
        let text = "(set-logic QF_LRA)\n".to_string()
            + &decls(1, 1)
            + "(assert (<= Y_0 0))\n(check-sat)\n(get-model)\n(exit)";
        assert_eq!(parse_ok(&text).regions.len(), 1);
    }

    #[test]
    fn errors_name_the_line() {
        let d = decls(2, 1); // 3 lines
        let cases: Vec<(String, usize, &str)> = vec![
            (String::new(), 1, "no input variables"),
            ("; only a comment\n\n".into(), 2, "no input variables"),
            (decls(1, 0), 1, "no output variables"),
            (
                d.clone() + "(assert (<= X_2 1))",
                4,
                "undeclared variable X_2",
            ),
            (
                d.clone() + "\n(assert (<= Z_0 1))",
                5,
                "unknown symbol `Z_0`",
            ),
            (
                d.clone() + "(assert (<= X_0 0.5.3))",
                4,
                "malformed number `0.5.3`",
            ),
            (
                d.clone() + "(assert (<= X_0 1e))",
                4,
                "malformed number `1e`",
            ),
            (d.clone() + "(assert (<= (* X_0 X_1) 1))", 4, "non-linear"),
            (
                d.clone() + "(assert (<= (/ 1 X_1) 1))",
                4,
                "non-linear division",
            ),
            (
                d.clone() + "(assert (<= (/ X_1 0) 1))",
                4,
                "division by zero",
            ),
            (
                d.clone() + "(define-fun f () Real 1)",
                4,
                "unknown command `define-fun`",
            ),
            (
                d.clone() + "(declare-const X_0 Real)",
                4,
                "declared twice (first on line 1)",
            ),
            (
                "(declare-const X_1 Real)\n(declare-const Y_0 Real)".into(),
                1,
                "X_0 is not declared",
            ),
            (
                "(declare-const X_0 Int)".into(),
                1,
                "unsupported sort `Int`",
            ),
            ("(declare-const foo Real)".into(), 1, "cannot declare `foo`"),
            ("(declare-const X_0)".into(), 1, "needs a sort after X_0"),
            (d.clone() + "(assert)", 4, "empty `(assert)`"),
            (
                d.clone() + "(assert (<= X_0 1) (<= X_0 2))",
                4,
                "exactly one formula",
            ),
            (d.clone() + "(assert X_0)", 4, "expected a formula"),
            (d.clone() + "(assert (<= (and) 1))", 4, "expected a term"),
            (d.clone() + "(assert (<= X_0))", 4, "at least two terms"),
            (d.clone() + "(assert (and))", 4, "at least one argument"),
            (
                d.clone() + "(assert (not (<= X_0 1)))",
                4,
                "unsupported operator `not`",
            ),
            (
                d.clone() + "(assert (<= (abs X_0) 1))",
                4,
                "unknown function `abs`",
            ),
            (
                d.clone() + "(assert (<= X_0 1)) @@@",
                4,
                "unexpected `@@@` at top level",
            ),
            (d.clone() + "(assert (<= X_0 1e999))", 4, "out of range"),
            (
                d.clone() + "(assert (<= (* 1e300 1e300 X_0) 1))",
                4,
                "overflows",
            ),
            (d.clone() + "(assert\n(<= X_0 1)", 4, "never closed"),
            (
                d.clone() + "((assert (<= X_0 1)))",
                4,
                "expected a command name",
            ),
        ];
        for (text, line, needle) in cases {
            let (got_line, msg) = parse_err(&text);
            assert!(msg.contains(needle), "{msg:?} lacks {needle:?} for\n{text}");
            assert_eq!(got_line, line, "line of {msg:?} for\n{text}");
        }
    }

    #[test]
    fn origin_names_the_file() {
        let e = parse("(x)", Some(Path::new("a/b.vnnlib"))).unwrap_err();
        assert!(e.to_string().starts_with("a/b.vnnlib:1: "), "{e}");
        let e = parse("(x)", None).unwrap_err();
        assert!(e.to_string().starts_with("<string>:1: "), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn formatted_floats_read_back(v in proptest::num::f64::POSITIVE | proptest::num::f64::NEGATIVE | proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO) {
            proptest::prop_assert_eq!(parse_number(&format!("{v}")), Some(Ok(v)));
            proptest::prop_assert_eq!(parse_number(&format!("{v:e}")), Some(Ok(v)));
        }

        #[test]
        fn arbitrary_text_never_panics(text in "[()XY_0-9 .;\\n<=>andor+*-]{0,200}") {
            let _ = parse(&text, None);
        }

        #[test]
        fn mutated_property_never_panics(cut in 0usize..400, insert in "[()a-z0-9.;_ ]{0,3}") {
            let base = decls(2, 2)
                + "(assert (or (and (<= X_0 1) (>= X_0 -1.5e-1)) (and (= X_1 0))))\n\
                   (assert (or (and (>= Y_0 Y_1)) (and (<= (+ Y_1 (* 2 X_0)) 3))))";
            let at = cut.min(base.len());
            let text = format!("{}{}{}", &base[..at], insert, &base[at..]);
            let _ = parse(&text, None);
            let _ = parse(&base[..at], None);
        }
    }
}
