//! Cancellation and wall-clock deadlines that every backend honours.
//!
//! Solvers leak their own deadlines (z3's Optimize has run 163 s on a 120 s
//! limit), so the engine keeps its own clock: a [`Deadline`] is checked by
//! the backends' callbacks and by watchdogs, and a [`CancelToken`] can be set
//! from any thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A flag shared between threads: once cancelled, it stays cancelled.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A fresh, un-cancelled token.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }
    /// Asks every holder to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A point in time after which work must stop.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    start: Instant,
    end: Option<Instant>,
}

impl Deadline {
    /// A deadline `limit` from now (`None`: no limit).
    pub fn after(limit: Option<Duration>) -> Deadline {
        let start = Instant::now();
        Deadline {
            start,
            end: limit.map(|l| start + l),
        }
    }
    /// No limit.
    pub fn never() -> Deadline {
        Deadline::after(None)
    }
    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        self.end.is_some_and(|e| Instant::now() >= e)
    }
    /// Time left (`None`: unlimited); zero once expired.
    pub fn remaining(&self) -> Option<Duration> {
        self.end
            .map(|e| e.saturating_duration_since(Instant::now()))
    }
    /// Time since the deadline was set.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
    /// How long past the deadline we are now (zero if not past it).
    pub fn overshoot(&self) -> Duration {
        self.end
            .map(|e| Instant::now().saturating_duration_since(e))
            .unwrap_or_default()
    }
    /// Whether work should stop: the deadline passed or the token was cancelled.
    pub fn should_stop(&self, cancel: &CancelToken) -> bool {
        cancel.is_cancelled() || self.expired()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_shared_and_sticky() {
        let t = CancelToken::new();
        let u = t.clone();
        assert!(!u.is_cancelled());
        std::thread::spawn(move || t.cancel()).join().unwrap();
        assert!(u.is_cancelled());
    }

    #[test]
    fn deadlines() {
        let d = Deadline::after(Some(Duration::from_millis(0)));
        assert!(d.expired());
        assert_eq!(d.remaining(), Some(Duration::ZERO));
        let n = Deadline::never();
        assert!(!n.expired());
        assert_eq!(n.remaining(), None);
        assert_eq!(n.overshoot(), Duration::ZERO);
    }
}
