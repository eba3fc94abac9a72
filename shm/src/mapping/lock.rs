//! Cross-process synchronisation living inside the mapping: a robust, process-shared pthread
//! mutex guarding the allocator, and a futex for waiting until space is freed.
//!
//! Part of `mapping.rs`, the one module that defines `unsafe` code: the lock lives in the mapping.
//!
//! # Why a robust pthread mutex rather than a spinlock
//! Allocation must work from every process that maps the arena, and any of those processes may be
//! killed (`kill -9`) at any instant, even while holding the lock. A robust mutex solves both
//! halves with kernel help: when the holder dies, the kernel walks its robust list and the next
//! `lock` returns `EOWNERDEAD`, so the survivor repairs the metadata and carries on; and waiters
//! sleep on a futex instead of burning one of the machine's few cores while a preempted holder
//! is off-CPU. A spinlock with an owner pid detects death only by polling `/proc` or `kill(pid,
//! 0)`, races with pid reuse, and spins on a 2-core machine. Uncontended, both cost one atomic
//! instruction to lock and one to unlock.

use std::cell::UnsafeCell;
use std::io;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// A `pthread_mutex_t` set up `PTHREAD_PROCESS_SHARED` + `PTHREAD_MUTEX_ROBUST`, stored in shared
/// memory. Any bit pattern is a valid value of this type (it is plain bytes to Rust); only
/// [`RobustMutex::init`] makes it a working mutex.
#[repr(C)]
pub(crate) struct RobustMutex {
    raw: UnsafeCell<libc::pthread_mutex_t>,
}

// SAFETY: a process-shared pthread mutex is made to be used from many threads (and processes) at
// once; every access goes through the pthread functions, which synchronise internally.
unsafe impl Sync for RobustMutex {}

/// How the lock was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The previous holder unlocked it normally: the data it guards is consistent.
    Clean,
    /// The previous holder died while holding it: the guarded data may be half-updated and must
    /// be repaired, then [`MutexGuard::mark_consistent`] called, before unlocking.
    OwnerDied,
}

impl RobustMutex {
    /// Makes the bytes a working robust, process-shared mutex (unlocked).
    ///
    /// # Safety
    /// No thread or process may be using this mutex (locked, waiting, or about to lock) while it
    /// is initialised. The arena calls this once, on a file it has just created exclusively and
    /// before it writes the header magic that lets other processes open it.
    ///
    /// # Errors
    /// The OS error from a failing `pthread_*` call.
    pub(crate) unsafe fn init(&self) -> io::Result<()> {
        let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: `attr` is writable storage of the right type; init fills it.
        check(unsafe { libc::pthread_mutexattr_init(attr.as_mut_ptr()) })?;
        let attr_ptr = attr.as_mut_ptr();
        // SAFETY: `attr_ptr` points to the attribute object initialised just above.
        let mut result = check(unsafe {
            libc::pthread_mutexattr_setpshared(attr_ptr, libc::PTHREAD_PROCESS_SHARED)
        });
        if result.is_ok() {
            // SAFETY: as above, `attr_ptr` points to an initialised attribute object.
            result = check(unsafe {
                libc::pthread_mutexattr_setrobust(attr_ptr, libc::PTHREAD_MUTEX_ROBUST)
            });
        }
        if result.is_ok() {
            // SAFETY: `raw` is storage for a mutex that nobody uses (the caller's contract), and
            // `attr_ptr` points to an initialised attribute object.
            result = check(unsafe { libc::pthread_mutex_init(self.raw.get(), attr_ptr) });
        }
        // SAFETY: `attr` is initialised and no longer needed; the mutex does not refer to it.
        unsafe { libc::pthread_mutexattr_destroy(attr_ptr) };
        result
    }

    /// Locks, sleeping while another thread or process holds it.
    ///
    /// # Errors
    /// `ENOTRECOVERABLE` when an earlier holder died and the survivor unlocked without marking the
    /// data consistent (this crate never does that); any other OS error from `pthread_mutex_lock`.
    pub(crate) fn lock(&self) -> io::Result<(MutexGuard<'_>, Acquired)> {
        // SAFETY: `raw` points into the live mapping that `self` borrows. If the bytes are not an
        // initialised mutex (a corrupted header) glibc reports an error code rather than touching
        // memory outside the `pthread_mutex_t`.
        let rc = unsafe { libc::pthread_mutex_lock(self.raw.get()) };
        let acquired = match rc {
            0 => Acquired::Clean,
            libc::EOWNERDEAD => Acquired::OwnerDied,
            rc => return Err(io::Error::from_raw_os_error(rc)),
        };
        let guard = MutexGuard { mutex: self, _not_send: PhantomData };
        Ok((guard, acquired))
    }
}

/// Holds the lock; unlocks on drop. Not `Send`: a pthread mutex must be unlocked by the thread
/// that locked it.
pub(crate) struct MutexGuard<'a> {
    /// The locked mutex.
    mutex: &'a RobustMutex,
    /// Keeps the guard on its thread.
    _not_send: PhantomData<*const ()>,
}

impl MutexGuard<'_> {
    /// Declares the guarded data repaired after [`Acquired::OwnerDied`].
    ///
    /// # Errors
    /// The OS error from `pthread_mutex_consistent`.
    pub(crate) fn mark_consistent(&self) -> io::Result<()> {
        // SAFETY: this thread holds the lock (the guard exists), as the call requires.
        check(unsafe { libc::pthread_mutex_consistent(self.mutex.raw.get()) })
    }
}

impl Drop for MutexGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: this thread locked the mutex when it made the guard and has not unlocked it.
        unsafe { libc::pthread_mutex_unlock(self.mutex.raw.get()) };
    }
}

/// Sleeps while `*word == expected`, at most `timeout` (spurious wake-ups are possible: callers
/// re-check their condition). Works across processes because the word lives in a shared file
/// mapping and the futex is not `FUTEX_PRIVATE`.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT only reads the aligned u32 behind `word` (a live reference) and the
    // timespec on our stack; it writes no memory. Its result (woken, EAGAIN, ETIMEDOUT, EINTR)
    // needs no handling because the caller re-checks.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
        )
    };
}

/// Wakes every process sleeping in [`futex_wait`] on `word`.
pub(crate) fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE does not access the word's memory at all; it only uses its address as
    // the key of the wait queue.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX) };
}

/// Turns a pthread return code into a `Result`.
fn check(rc: libc::c_int) -> io::Result<()> {
    match rc {
        0 => Ok(()),
        rc => Err(io::Error::from_raw_os_error(rc)),
    }
}
