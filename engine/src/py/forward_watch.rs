//! A worker's `forward` timeout without a system call per `forward`.
//!
//! `setitimer` armed and disarmed around each call costs two system calls, 2.6 µs of the 6 µs
//! a worker spends on a small item (more on a virtual machine, where arming a timer leaves the
//! guest). Here `start` and `stop` only store a deadline; one thread per worker process sleeps
//! until the deadline it last saw and, if the same `forward` still runs past it, sends the
//! process `SIGALRM`, which Python's handler (`mosec.stage_worker`) turns into the timeout.
//!
//! The thread never oversleeps a deadline when every call's timeout is the same, which is
//! how a worker runs: idle, it naps one timeout, so a call that starts meanwhile ends its nap
//! no later than its own deadline; busy, it sleeps until the running call's deadline, and a
//! later call's deadline is later still. A call with a shorter timeout than the one before
//! (only possible when the caller varies it) wakes the thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use rustix::process::{getpid, kill_process, Signal};

/// The longest the thread sleeps before it looks again (ns): bounds how long it outlives a
/// dropped watch.
const LONGEST_NAP_NS: u64 = 60_000_000_000;

/// What a `forward` call and the watching thread share.
struct Watch {
    /// The clock the deadlines count from, in nanoseconds.
    base: Instant,
    /// When the running call's time is up (ns from `base`); 0 while none runs.
    deadline: AtomicU64,
    /// The timeout of the latest call (ns): the idle thread's nap.
    timeout: AtomicU64,
    /// When the thread plans to wake next (ns from `base`).
    wakes_at: AtomicU64,
    /// Held by the thread while it decides how long to sleep; `wake` interrupts its sleep.
    asleep: Mutex<()>,
    wake: Condvar,
}

impl Watch {
    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX).max(1)
    }
}

/// The forward timeout of one worker process (`mosec._engine.ForwardWatch`).
#[pyclass(module = "mosec._engine", name = "ForwardWatch", frozen)]
pub struct ForwardWatch {
    watch: Arc<Watch>,
}

#[pymethods]
impl ForwardWatch {
    /// Starts the watching thread; it ends when this object is dropped.
    #[new]
    fn new() -> PyResult<Self> {
        let watch = Arc::new(Watch {
            base: Instant::now(),
            deadline: AtomicU64::new(0),
            timeout: AtomicU64::new(u64::MAX),
            wakes_at: AtomicU64::new(u64::MAX),
            asleep: Mutex::new(()),
            wake: Condvar::new(),
        });
        let weak = Arc::downgrade(&watch);
        std::thread::Builder::new()
            .name("mosec-forward-watch".into())
            .spawn(move || run(&weak))
            .map_err(|err| {
                PyValueError::new_err(format!("cannot start the forward watch: {err}"))
            })?;
        Ok(Self { watch })
    }

    /// A call starts (or a streaming call sent an event): its time is up `timeout_s` from now.
    fn start(&self, timeout_s: f64) {
        let watch = &self.watch;
        let timeout = Duration::try_from_secs_f64(timeout_s).unwrap_or(Duration::MAX);
        let timeout = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        let deadline = watch.now().saturating_add(timeout);
        watch.timeout.store(timeout, Ordering::SeqCst);
        watch.deadline.store(deadline, Ordering::SeqCst);
        if deadline < watch.wakes_at.load(Ordering::SeqCst) {
            // Sooner than the thread will look: only when this call's timeout is shorter.
            let _asleep = watch.asleep.lock().unwrap_or_else(PoisonError::into_inner);
            watch.wake.notify_one();
        }
    }

    /// The call ended: no alarm for it.
    fn stop(&self) {
        self.watch.deadline.store(0, Ordering::SeqCst);
    }

    /// Whether a call is running past its deadline: an alarm that arrives otherwise is stale
    /// (its call ended meanwhile) and is ignored.
    fn expired(&self) -> bool {
        let deadline = self.watch.deadline.load(Ordering::SeqCst);
        deadline != 0 && self.watch.now() >= deadline
    }
}

/// The watching thread: until the watch is dropped, sleeps until the running call's deadline
/// (or one timeout while idle), and alarms the process once for a call still running past it.
fn run(weak: &Weak<Watch>) {
    let mut alarmed = 0; // the deadline already alarmed for
    loop {
        let Some(watch) = weak.upgrade() else { return };
        let guard = watch.asleep.lock().unwrap_or_else(PoisonError::into_inner);
        let now = watch.now();
        let deadline = watch.deadline.load(Ordering::SeqCst);
        if deadline != 0 && deadline <= now && deadline != alarmed {
            alarmed = deadline;
            let _ = kill_process(getpid(), Signal::ALARM);
        }
        let nap = match deadline {
            future if future > now => future - now,
            _ => watch.timeout.load(Ordering::SeqCst),
        };
        let mut nap_until = now.saturating_add(nap.min(LONGEST_NAP_NS));
        watch.wakes_at.store(nap_until, Ordering::SeqCst);
        // A call that started after the load above may have a deadline before this nap's end
        // and have missed the store: look again (`start` notifies under the lock, so one that
        // starts from now on wakes the wait).
        let started = watch.deadline.load(Ordering::SeqCst);
        if started > now && started < nap_until {
            nap_until = started;
        }
        let nap = Duration::from_nanos(nap_until - now);
        // Dropped on waking; upgraded again at the top, so a dropped watch ends the thread
        // within one nap.
        let _ = watch.wake.wait_timeout(guard, nap).unwrap_or_else(PoisonError::into_inner);
    }
}
