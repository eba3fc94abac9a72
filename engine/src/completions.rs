//! Outcomes of in-process calls submitted without waiting, until Python collects them.
//!
//! A caller with many requests in flight (a stream of items) would otherwise need one blocked
//! thread per request. Instead each request is submitted with a token and its outcome lands
//! here, from the engine's threads; one Python thread collects them in batches, with the GIL
//! released while it waits.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::tasks::Outcome;

/// The outcomes not collected yet, and whether more can come.
#[derive(Default)]
struct Pending {
    outcomes: Vec<(u64, Outcome)>,
    /// Set once the engine has stopped: every submitted call has been answered by then.
    closed: bool,
}

/// Where the engine leaves submitted calls' outcomes.
#[derive(Default)]
pub struct Completions {
    pending: Mutex<Pending>,
    /// Signalled on every new outcome and on close.
    ready: Condvar,
}

impl Completions {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        // Every update is one push or one take: a poisoned queue is still consistent.
        self.pending.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Leaves the outcome of the call submitted with `token`.
    pub fn push(&self, token: u64, outcome: Outcome) {
        self.pending().outcomes.push((token, outcome));
        self.ready.notify_one();
    }

    /// No more outcomes will come: the collector stops once it has taken the last ones.
    pub fn close(&self) {
        self.pending().closed = true;
        self.ready.notify_all();
    }

    /// Every outcome left so far, waiting up to `wait` for the first one; `None` once closed
    /// and empty. An empty list means the wait passed.
    pub fn take(&self, wait: Duration) -> Option<Vec<(u64, Outcome)>> {
        let pending = self.pending();
        let (mut pending, _) = self
            .ready
            .wait_timeout_while(pending, wait, |p| p.outcomes.is_empty() && !p.closed)
            .unwrap_or_else(|poison| poison.into_inner());
        if pending.outcomes.is_empty() && pending.closed {
            return None;
        }
        Some(std::mem::take(&mut pending.outcomes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_come_out_in_the_order_they_were_left_then_none_after_close() {
        let completions = Completions::default();
        completions.push(7, Outcome::error(408, "late"));
        completions.push(3, Outcome::error(500, "broken"));
        let taken = completions.take(Duration::ZERO).unwrap_or_default();
        let tokens: Vec<u64> = taken.iter().map(|(token, _)| *token).collect();
        assert_eq!(tokens, vec![7, 3]);
        assert_eq!(completions.take(Duration::from_millis(1)).map(|t| t.len()), Some(0));
        completions.push(9, Outcome::error(503, "stopped"));
        completions.close();
        assert_eq!(completions.take(Duration::ZERO).map(|t| t.len()), Some(1));
        assert!(completions.take(Duration::from_secs(5)).is_none());
    }
}
