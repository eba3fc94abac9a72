//! Workers stuck past their forward timeout, reported to the process that owns them.
//!
//! A worker link knows when it sent a batch and how long its stage's `forward` may take
//! ([`crate::config::StageConfig::stuck_after`]); a worker still busy past that has swallowed
//! its timeout (or sits in a C call) and would keep its place in the stage for ever. The
//! link fails the batch's tasks and reports the worker here; it does not kill it. The
//! processes belong to the supervisor (Python), which spawned them, holds them as its
//! unreaped children (so a pid it kills is surely the worker's), and restarts a dead one:
//! it waits on [`StuckReports::fd`] beside its other wake-ups, takes the reports and kills
//! the worker, whose link then ends like any crashed worker's.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::Duration;

use tracing::warn;

/// One worker found stuck.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StuckWorker {
    /// Index of its stage.
    pub stage: usize,
    /// Its id within the stage, as its HELLO gave it.
    pub worker_id: u32,
    /// Its process id, as its HELLO gave it: the supervisor kills only a child of its own.
    pub pid: u32,
    /// How long it had been busy with its batch (or silent since its last stream event).
    pub busy: Duration,
}

/// Reports not yet taken, and a socket pair whose read end is readable while there are some.
pub struct StuckReports {
    reports: Mutex<Vec<StuckWorker>>,
    /// Written one byte per report; non-blocking (a full buffer already wakes the reader).
    wake: UnixStream,
    /// Read by the supervisor's wait; drained by [`StuckReports::take`].
    ready: UnixStream,
}

impl StuckReports {
    /// A socket pair for the wake-ups.
    ///
    /// # Errors
    /// The OS error when no socket pair can be made (too many open files).
    pub fn new() -> std::io::Result<Self> {
        let (wake, ready) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        ready.set_nonblocking(true)?;
        Ok(Self { reports: Mutex::new(Vec::new()), wake, ready })
    }

    /// Records a stuck worker and wakes whoever waits on [`Self::fd`].
    pub fn report(&self, worker: StuckWorker) {
        self.lock().push(worker);
        match (&self.wake).write(&[1]) {
            Ok(_) => {}
            Err(err) if err.kind() == ErrorKind::WouldBlock => {} // unread wake-ups are pending
            Err(err) => warn!(error = %err, "waking the supervisor for a stuck worker failed"),
        }
    }

    /// The reports made since the last call, oldest first. Drains the wake-ups first: a
    /// report made meanwhile is either taken now or leaves a wake-up for the next call.
    pub fn take(&self) -> Vec<StuckWorker> {
        let mut bytes = [0u8; 64];
        while matches!((&self.ready).read(&mut bytes), Ok(n) if n > 0) {}
        std::mem::take(&mut *self.lock())
    }

    /// The descriptor that is readable while reports wait; valid while the engine runs.
    pub fn fd(&self) -> RawFd {
        self.ready.as_raw_fd()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<StuckWorker>> {
        self.reports.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads what waits on the read end (consuming it), or None when nothing does.
    fn waiting(reports: &StuckReports) -> Option<usize> {
        let mut bytes = [0u8; 64];
        match (&reports.ready).read(&mut bytes) {
            Ok(n) => Some(n),
            Err(err) if err.kind() == ErrorKind::WouldBlock => None,
            Err(err) => panic!("{err}"),
        }
    }

    #[test]
    fn reports_are_taken_once_and_wake_the_reader() {
        let reports = StuckReports::new().unwrap();
        assert_eq!(waiting(&reports), None);
        let worker = StuckWorker { stage: 1, worker_id: 2, pid: 3, busy: Duration::from_secs(4) };
        reports.report(worker.clone());
        assert_eq!(waiting(&reports), Some(1), "a report wakes the reader");
        reports.report(StuckWorker { worker_id: 3, ..worker.clone() });
        let taken = reports.take();
        assert_eq!(taken, vec![worker.clone(), StuckWorker { worker_id: 3, ..worker }]);
        assert!(reports.take().is_empty());
        assert_eq!(waiting(&reports), None, "taking drains the wake-ups");
    }
}
