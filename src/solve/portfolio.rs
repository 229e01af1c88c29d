//! A portfolio of [`Backend`]s racing on one [`Problem`].
//!
//! Every member runs in its own thread with the same time limit and a shared
//! cancel token. The first *conclusive* record (proven optimal, or proven
//! infeasible) wins; the others are cancelled and joined, and every record,
//! losers included, is returned. Which of several records counts as the
//! answer is decided in one place, [`precedence`].

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{Backend, CancelToken, Deadline, SolveOptions, SolveResult, Status};
use crate::encode::Problem;
use crate::{Error, Result};

/// The records of a race.
#[derive(Clone, Debug)]
pub struct Race {
    /// Index (into `records`) of the answer by [`precedence`]; `None` when no
    /// member returned anything usable.
    pub winner: Option<usize>,
    /// One record per member, in member order.
    pub records: Vec<SolveResult>,
}

impl Race {
    /// The winning record.
    pub fn answer(&self) -> Option<&SolveResult> {
        self.winner.map(|i| &self.records[i])
    }
}

/// Rank of a record: lower is better. Proofs first (optimal, infeasible),
/// then feasible points with the better objective, then the rest.
fn rank(r: &SolveResult) -> u8 {
    match r.status {
        Status::Optimal | Status::Infeasible => 0,
        Status::Feasible => 1,
        Status::Timeout | Status::Cancelled if r.assignment.is_some() => 1,
        Status::Unknown => 2,
        Status::Timeout | Status::Cancelled => 3,
        Status::Error => 4,
    }
}

/// Which record answers: the best [`rank`]; among equal ranks the first to
/// finish, except that among feasible points the better objective (for the
/// problem's sense) wins. `order` lists record indices in finishing order.
pub fn precedence(p: &Problem, records: &[SolveResult], order: &[usize]) -> Option<usize> {
    let better = |a: &SolveResult, b: &SolveResult| -> bool {
        match (&p.objective, a.objective, b.objective) {
            (Some(o), Some(x), Some(y)) => match o.sense {
                crate::encode::Sense::Minimize => x < y,
                crate::encode::Sense::Maximize => x > y,
            },
            _ => false,
        }
    };
    let mut best: Option<usize> = None;
    for &i in order {
        let r = &records[i];
        best = match best {
            None => Some(i),
            Some(b) => {
                let (ri, rb) = (rank(r), rank(&records[b]));
                if ri < rb || (ri == rb && ri == 1 && better(r, &records[b])) {
                    Some(i)
                } else {
                    Some(b)
                }
            }
        };
    }
    best.filter(|&i| records[i].status != Status::Error || records.len() == 1)
}

/// How often the race looks at the parent token.
const POLL: Duration = Duration::from_millis(5);
/// How long past the time limit a member may take to report before it is cancelled.
const OVERDUE: Duration = Duration::from_secs(1);

/// Runs every member on `p` at once and returns all records.
pub fn race(
    p: &Problem,
    members: &[&dyn Backend],
    opts: &SolveOptions,
    cancel: &CancelToken,
) -> Result<Race> {
    if members.is_empty() {
        return Err(Error::InvalidArgument("an empty portfolio".into()));
    }
    for m in members {
        m.supports(p)?;
    }
    let start = Instant::now();
    let deadline = Deadline::after(opts.time_limit);
    let shared = CancelToken::new();
    let (tx, rx) = mpsc::channel::<(usize, Result<SolveResult>)>();
    let mut slots: Vec<Option<SolveResult>> = vec![None; members.len()];
    let mut order = Vec::new();
    std::thread::scope(|s| -> Result<()> {
        for (i, m) in members.iter().enumerate() {
            let tx = tx.clone();
            let shared = shared.clone();
            let opts = opts.clone();
            s.spawn(move || {
                let r = m.solve(p, &opts, &shared);
                let _ = tx.send((i, r));
            });
        }
        drop(tx);
        let mut first_error = None;
        loop {
            match rx.recv_timeout(POLL) {
                Ok((i, r)) => {
                    let r = match r {
                        Ok(r) => r,
                        Err(e) => {
                            let mut r = SolveResult::new(members[i].name(), Status::Error);
                            r.reason = Some(e.to_string());
                            first_error.get_or_insert(e);
                            r
                        }
                    };
                    if matches!(r.status, Status::Optimal | Status::Infeasible) {
                        shared.cancel();
                    }
                    slots[i] = Some(r);
                    order.push(i);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            // Members keep their own clocks (each reports `timeout` at the
            // limit); only the parent's cancel is passed on. A member still
            // running well past the limit is stopped as well.
            if cancel.is_cancelled() || deadline.overshoot() > OVERDUE {
                shared.cancel();
            }
        }
        let _ = first_error;
        Ok(())
    })?;
    let records: Vec<SolveResult> = slots
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| {
                let mut r = SolveResult::new(members[i].name(), Status::Error);
                r.reason = Some("the member ended without a record".into());
                r.wall_time = start.elapsed();
                r
            })
        })
        .collect();
    let winner = precedence(p, &records, &order);
    Ok(Race { winner, records })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{Cmp, LinExpr, Objective, Sense, VarKind};

    /// A backend that waits for the token (or a fixed time) and answers `status`.
    struct Fake(&'static str, Status, Duration);
    impl Backend for Fake {
        fn name(&self) -> &'static str {
            self.0
        }
        fn supports(&self, _p: &Problem) -> Result<()> {
            Ok(())
        }
        fn solve(&self, _p: &Problem, _o: &SolveOptions, c: &CancelToken) -> Result<SolveResult> {
            let t = Instant::now();
            while t.elapsed() < self.2 {
                if c.is_cancelled() {
                    return Ok(SolveResult::new(self.0, Status::Cancelled));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let mut r = SolveResult::new(self.0, self.1);
            r.objective = Some(1.0);
            Ok(r)
        }
    }

    fn problem() -> Problem {
        let mut p = Problem::new("t");
        let x = p.add_var("x", VarKind::Continuous, 0.0, 1.0);
        p.add_constraint("c", LinExpr::var(x), Cmp::Ge, 0.5);
        p.objective = Some(Objective {
            sense: Sense::Minimize,
            expr: LinExpr::var(x),
        });
        p
    }

    #[test]
    fn first_conclusive_wins_and_losers_are_cancelled_and_kept() {
        let fast = Fake("fast", Status::Optimal, Duration::from_millis(10));
        let slow = Fake("slow", Status::Optimal, Duration::from_secs(30));
        let t = Instant::now();
        let r = race(
            &problem(),
            &[&slow, &fast],
            &SolveOptions::default(),
            &CancelToken::new(),
        )
        .unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(r.winner, Some(1));
        assert_eq!(r.records[0].status, Status::Cancelled);
        assert_eq!(r.records.len(), 2);
    }

    #[test]
    fn an_inconclusive_answer_does_not_stop_the_race() {
        let unknown = Fake("unknown", Status::Unknown, Duration::from_millis(1));
        let proof = Fake("proof", Status::Infeasible, Duration::from_millis(50));
        let r = race(
            &problem(),
            &[&unknown, &proof],
            &SolveOptions::default(),
            &CancelToken::new(),
        )
        .unwrap();
        assert_eq!(r.answer().unwrap().backend, "proof");
    }

    #[test]
    fn the_parent_token_and_the_limit_stop_everyone() {
        let a = Fake("a", Status::Optimal, Duration::from_secs(30));
        let opts = SolveOptions {
            time_limit: Some(Duration::from_millis(100)),
            ..SolveOptions::default()
        };
        let t = Instant::now();
        let r = race(&problem(), &[&a], &opts, &CancelToken::new()).unwrap();
        assert!(t.elapsed() < Duration::from_secs(3));
        assert_eq!(r.records[0].status, Status::Cancelled);
        let parent = CancelToken::new();
        parent.cancel();
        let t = Instant::now();
        let r = race(&problem(), &[&a], &SolveOptions::default(), &parent).unwrap();
        assert!(t.elapsed() < Duration::from_secs(1));
        assert_eq!(r.records[0].status, Status::Cancelled);
    }

    #[test]
    fn highs_milp_and_z3_agree_in_a_race() {
        #[cfg(all(feature = "highs", feature = "z3"))]
        {
            let p = problem();
            let r = race(
                &p,
                &[&crate::solve::milp::Milp, &crate::solve::z3::Z3],
                &SolveOptions::default(),
                &CancelToken::new(),
            )
            .unwrap();
            let a = r.answer().unwrap();
            assert_eq!(a.status, Status::Optimal);
            assert!((a.objective.unwrap() - 0.5).abs() < 1e-9);
        }
    }
}
