//! A worker link as the task table sees it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;

use super::TaskId;
use crate::refs::Lease;

/// A worker link as the task table sees it: where to report abandoned tasks, and the store
/// objects of abandoned tasks that the link's worker may still be reading.
pub struct Holder {
    /// Told the id of a held task whose client left, whose deadline passed, or whose
    /// ensemble was cancelled.
    pub(super) cancel: mpsc::UnboundedSender<TaskId>,
    /// Leases of tasks removed while in the link's batch in hand, dropped when the worker
    /// answers that batch; `None` once the link has ended (nobody reads them any more). A
    /// lease shared with other readers (an ensemble's input) is only freed when the last of
    /// them lets go.
    deferred: Mutex<Option<Vec<Arc<Lease>>>>,
}

impl Holder {
    /// A holder reporting abandoned tasks to `cancel`.
    pub fn new(cancel: mpsc::UnboundedSender<TaskId>) -> Arc<Self> {
        Arc::new(Self { cancel, deferred: Mutex::new(Some(Vec::new())) })
    }

    fn deferred(&self) -> MutexGuard<'_, Option<Vec<Arc<Lease>>>> {
        // Every update is one push or take: a poisoned list is still consistent.
        self.deferred.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `leases` until the batch in hand is answered; gives them back when the link has
    /// ended already, so the caller drops them now.
    pub(super) fn defer(&self, leases: Vec<Arc<Lease>>) -> Option<Vec<Arc<Lease>>> {
        if leases.is_empty() {
            return None;
        }
        match self.deferred().as_mut() {
            Some(deferred) => {
                deferred.extend(leases);
                None
            }
            None => Some(leases),
        }
    }

    /// What was deferred until the batch in hand was answered.
    pub(super) fn answered(&self) -> Vec<Arc<Lease>> {
        self.deferred().as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Ends the link's hold: what was deferred, and from now on nothing more is.
    pub(super) fn end(&self) -> Vec<Arc<Lease>> {
        self.deferred().take().unwrap_or_default()
    }
}
