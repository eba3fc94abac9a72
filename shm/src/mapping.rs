//! The raw shared mapping of an arena file: `mmap`/`munmap`, and typed access to its bytes.
//!
//! This module (with its `lock` submodule) is the only place that defines `unsafe` code; everything else
//! reaches the mapping through the methods here.
//!
//! # The hazard: memory modified by another process
//! The mapping is `MAP_SHARED`: every process that maps the file sees (and may change) the same
//! bytes at any time, and Rust's aliasing rules cannot see across processes. The crate copes in
//! three ways:
//! - **Metadata** (the arena [`Header`] and every [`BlockHeader`]) is made only of atomics, so
//!   concurrent writes by another process are never undefined behaviour; every number read from
//!   it is bounds-checked against this process's own copy of the geometry before it is used as
//!   an offset, so a scribbled header gives an error, not an out-of-bounds access.
//! - **Payloads** are handed out as `&[u8]` / `&mut [u8]` only by [`Mapping::exclusive`] and
//!   [`Mapping::exclusive_mut`], whose one caller (`draft.rs`) relies on the arena's protocol (a
//!   draft is the only handle to, and the only writer of, its unsealed block, which nothing
//!   else releases while the draft lives). A process that breaks the protocol through its
//!   mapping (say, Python writing into an object it already sealed) makes readers see changing
//!   bytes: wrong data, but no memory unsafety in the reader beyond that, as the pages stay
//!   mapped.
//! - **Python's access** (feature `python`) goes through `ArenaBuffer`, which exports this
//!   process's one mapping through the buffer protocol instead of Python mapping the file a
//!   second time. Python code in this process is then one more writer that Rust cannot see,
//!   exactly like another process: it is only ever told the offsets of `Leased` (its own, to
//!   fill) and `Sealed` (to read) objects, never of a `Writing` block that a draft here holds
//!   as `&mut [u8]`. The exporter holds the mapping (`Arc<Mapping>`), and every Python view
//!   holds the exporter (`Py_buffer.obj`), so no view outlives the mapping.
//! - **The file itself** must keep its length: a process that truncates it would make accesses
//!   fault with `SIGBUS`. The file is created mode 0600 (only the server's user can open it
//!   for writing; /dev/shm's sticky bit keeps others from removing it), and nothing in this
//!   project ever resizes it.

pub(crate) mod lock;
#[cfg(feature = "python")]
pub(crate) mod numpy_handler;
use std::fs::{File, OpenOptions};
use std::io;
use std::mem::size_of;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr::NonNull;
#[cfg(feature = "python")]
use std::sync::Arc;

use crate::error::{Result, ShmError};
use crate::header::{BlockHeader, Header, DATA_START, GRANULE};
use crate::reference::Span;

/// A `MAP_SHARED`, read-write mapping of a whole arena file, unmapped on drop.
pub(crate) struct Mapping {
    /// Start of the mapping (page aligned).
    ptr: NonNull<u8>,
    /// Length in bytes; at least [`DATA_START`].
    len: usize,
}

// SAFETY: the mapping is plain memory shared with other processes anyway; all shared access goes
// through atomics (metadata) or through the arena's draft protocol (payloads), which holds
// for threads exactly as it does for processes.
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`: `&Mapping` hands out only atomics or protocol-guarded slices.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Creates `path` exclusively (`O_CREAT | O_EXCL`, mode 0600), reserves `len` bytes for it
    /// (so a too-small /dev/shm fails now with `ENOSPC`, not later with `SIGBUS`), maps it
    /// (see [`Mapping::map`]), and initialises the header's robust mutex. All other bytes are zero. On
    /// error the file is removed again.
    ///
    /// # Errors
    /// [`ShmError::Io`] naming the failing step.
    pub(crate) fn create(path: &Path, len: usize) -> Result<Mapping> {
        let io_err = |op, source| ShmError::Io { op, path: path.to_path_buf(), source };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| io_err("create", e))?;
        let made = reserve(&file, len)
            .map_err(|e| io_err("reserve space for", e))
            .and_then(|()| Mapping::map(&file, len, path))
            .and_then(|map| {
                // SAFETY: we created the file a moment ago with O_EXCL and its header magic is
                // not written yet, so no other process opens it or uses the lock.
                unsafe { map.header().lock.init() }.map_err(|e| io_err("init lock in", e))?;
                Ok(map)
            });
        if made.is_err() {
            let _ = std::fs::remove_file(path);
        }
        made
    }

    /// Maps an existing arena file (see [`Mapping::map`]).
    ///
    /// # Errors
    /// [`ShmError::Io`] when the file cannot be opened or mapped; [`ShmError::NotAnArena`] when
    /// it is too short to hold a header.
    pub(crate) fn open(path: &Path) -> Result<Mapping> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| ShmError::Io { op: "open", path: path.to_path_buf(), source })?;
        let len = file
            .metadata()
            .map(|m| usize::try_from(m.len()).unwrap_or(usize::MAX))
            .map_err(|source| ShmError::Io { op: "stat", path: path.to_path_buf(), source })?;
        Mapping::map(&file, len, path)
    }

    /// `mmap(MAP_SHARED)` of `len` bytes of `file`. The descriptor can be closed afterwards:
    /// the mapping keeps the file alive.
    ///
    /// No `MAP_POPULATE`: `posix_fallocate` at creation already made every page of the file
    /// resident in the tmpfs, so a first touch here is a minor fault, not an allocation; and a
    /// process touches little but the header, the allocator and the payloads it uses itself
    /// (Python's through `ArenaBuffer`, this same mapping). Populating 1 GiB of page tables
    /// in the engine and in every worker cost about 0.1–0.7 s per process at start and made
    /// the whole arena count in each worker's RSS, for nothing.
    fn map(file: &File, len: usize, path: &Path) -> Result<Mapping> {
        if (len as u64) < DATA_START + GRANULE {
            return Err(ShmError::NotAnArena {
                path: path.to_path_buf(),
                reason: format!("file is {len} bytes, too short for an arena"),
            });
        }
        // SAFETY: a fresh mapping at an address the kernel chooses, so no existing Rust memory is
        // affected; `fd` is a valid open descriptor for the duration of the call.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(ShmError::Io {
                op: "mmap",
                path: path.to_path_buf(),
                source: io::Error::last_os_error(),
            });
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| ShmError::Io {
            op: "mmap",
            path: path.to_path_buf(),
            source: io::Error::other("mmap returned a null address"),
        })?;
        Ok(Mapping { ptr, len })
    }

    /// Length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The arena header at offset 0.
    pub(crate) fn header(&self) -> &Header {
        const _: () = assert!(size_of::<Header>() as u64 <= DATA_START);
        // SAFETY: the mapping is page aligned (so aligned for `Header`) and at least DATA_START
        // bytes long (checked in `map`), which covers `size_of::<Header>()`. It stays mapped while
        // `&self` lives. `Header` is all atomics plus a `RobustMutex` in an `UnsafeCell`, so any
        // bit pattern is valid and shared mutation (by us or other processes) is allowed.
        unsafe { &*self.ptr.as_ptr().cast::<Header>() }
    }

    /// The block header at file offset `offset`, if that is 64-byte aligned, inside the data
    /// region, and leaves room for the whole header.
    pub(crate) fn block(&self, offset: u64) -> Option<&BlockHeader> {
        let end = offset.checked_add(GRANULE)?;
        if offset < DATA_START || offset % GRANULE != 0 || end > self.len as u64 {
            return None;
        }
        // SAFETY: checked just above: `offset` is 64-byte aligned inside the mapping (whose base
        // is page aligned) and the 64 bytes of a `BlockHeader` fit before its end. The type is
        // all atomics, so any bit pattern is valid and shared mutation is allowed.
        Some(unsafe { &*self.ptr.as_ptr().add(offset as usize).cast::<BlockHeader>() })
    }

    /// The payload bytes of an exclusive span, or `None` when it does not lie inside the
    /// mapping. `&ExclusiveSpan` excludes the span's own `&mut` for as long as the slice lives.
    pub(crate) fn exclusive<'a>(&'a self, span: &'a ExclusiveSpan) -> Option<&'a [u8]> {
        let Span { offset, len } = span.0;
        if offset.checked_add(len)? > self.len {
            return None;
        }
        // SAFETY: the range is inside the live mapping (checked above) and readable. No `&mut`
        // to these bytes exists in this process: the only way to one is
        // `exclusive_mut(&mut span)`, which this shared borrow of the one `ExclusiveSpan` of
        // the block excludes (see `ExclusiveSpan` for why there is one). Writes by another
        // process that breaks the protocol are the hazard in the module docs.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset), len) })
    }

    /// The payload bytes of an exclusive span for writing, or `None` when it does not lie inside
    /// the mapping.
    #[allow(clippy::mut_from_ref)] // exclusivity comes from `&mut ExclusiveSpan`, as documented
    pub(crate) fn exclusive_mut<'a>(&'a self, span: &'a mut ExclusiveSpan) -> Option<&'a mut [u8]> {
        let Span { offset, len } = span.0;
        if offset.checked_add(len)? > self.len {
            return None;
        }
        // SAFETY: the range is inside the live, writable mapping (checked above). This is the
        // only reference to these bytes in this process while it lives: the block has exactly
        // one `ExclusiveSpan` (see its docs), borrowed mutably here, no other Rust code of this
        // process makes slices of payload bytes, and Python (through `ArenaBuffer`) is never
        // told where a `Writing` block lies (see the module docs).
        Some(unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(offset), len) })
    }
}

/// The payload span of a block in `Writing` state, of which there is exactly one: the arena
/// makes it once, when it allocates the block for its one `Draft`, and it is neither `Clone`
/// nor `Copy`. The block stays `Writing` (not released, not reused) until that draft ends it,
/// since `free` and `set_owner` refuse `Writing` blocks and `reclaim_owner` of this process
/// skips them. Borrowing it is therefore what makes [`Mapping::exclusive`] and
/// [`Mapping::exclusive_mut`] sound, which is why every `unsafe` of payload access stays here.
#[derive(Debug)]
pub(crate) struct ExclusiveSpan(Span);

impl ExclusiveSpan {
    /// The one span of a block just allocated in `Writing` state (call once per allocation).
    pub(crate) fn of_new_block(span: Span) -> Self {
        Self(span)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, and nothing borrowed from the
        // mapping outlives `self`: Rust borrows are tied to `&self`, and Python buffers hold an
        // `ArenaBuffer`, hence an `Arc` of `self`, until the last view of them is released.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Gives the file its length with its pages allocated: `posix_fallocate` on tmpfs reserves the
/// memory, so a too-small /dev/shm (Docker's default is 64 MiB) fails here with `ENOSPC`. Falls
/// back to `ftruncate` on file systems without fallocate.
fn reserve(file: &File, len: usize) -> io::Result<()> {
    let len_off =
        libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: plain syscall on a valid descriptor; no memory of ours is involved.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len_off) } {
        0 => Ok(()),
        libc::EOPNOTSUPP | libc::EINVAL => file.set_len(len as u64),
        libc::ENOSPC => Err(io::Error::other(format!(
            "no space for {len} bytes of shared memory (in a container, raise its /dev/shm \
                 size, e.g. `docker run --shm-size`, or lower the arena size)"
        ))),
        rc => Err(io::Error::from_raw_os_error(rc)),
    }
}

/// This process's mapping of an arena, whole, as a Python object that supports the buffer
/// protocol: writable, one-dimensional, of bytes (format `B`). Python builds its memoryviews and
/// numpy arrays over it (`np.frombuffer(buffer, dtype, count, offset)`), so a worker maps the
/// arena once, with the Rust client, and touches only the pages it uses.
///
/// Made by [`Arena::buffer`](crate::Arena::buffer). It holds the mapping, and each exported
/// view holds it (CPython keeps `Py_buffer.obj` until the view is released), so the mapping
/// outlives every view: dropping the `Arena` first only drops one of the mapping's owners.
#[cfg(feature = "python")]
#[pyo3::pyclass(name = "ArenaBuffer", module = "mosec._engine", frozen)]
pub struct ArenaBuffer {
    map: Arc<Mapping>,
}

#[cfg(feature = "python")]
impl ArenaBuffer {
    /// The buffer of `map`.
    pub(crate) fn new(map: Arc<Mapping>) -> Self {
        Self { map }
    }
}

#[cfg(feature = "python")]
#[pyo3::pymethods]
impl ArenaBuffer {
    /// Bytes of the mapping (the whole arena file).
    fn __len__(&self) -> usize {
        self.map.len
    }

    /// `bf_getbuffer`: fills `view` with the whole mapping, writable. Nothing is allocated for
    /// the view (`PyBuffer_FillInfo` points `format` at a static `"B"`), so no
    /// `__releasebuffer__` is needed: releasing the view drops its reference to `slf`.
    ///
    /// # Safety
    /// Called by CPython (through pyo3's slot) with `view` pointing to a `Py_buffer` it owns.
    unsafe fn __getbuffer__(
        slf: pyo3::Bound<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: std::ffi::c_int,
    ) -> pyo3::PyResult<()> {
        use pyo3::prelude::*;
        let map = &slf.get().map;
        let len = pyo3::ffi::Py_ssize_t::try_from(map.len).map_err(|_| {
            pyo3::exceptions::PyBufferError::new_err("arena too large for a buffer")
        })?;
        // SAFETY: `view` is CPython's own `Py_buffer` (the contract of this slot), and
        // `PyBuffer_FillInfo` only writes it. `ptr..ptr + len` is the live, readable and
        // writable mapping; `PyBuffer_FillInfo` stores a new reference to `slf` in `view.obj`,
        // which keeps `slf`, so its `Arc<Mapping>`, so the mapping, alive until the view is
        // released. Writes through the view are the unseen writer of the module docs.
        let filled = unsafe {
            pyo3::ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                map.ptr.as_ptr().cast(),
                len,
                0, // writable
                flags,
            )
        };
        if filled == 0 {
            Ok(())
        } else {
            Err(PyErr::fetch(slf.py()))
        }
    }
}
