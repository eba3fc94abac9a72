//! The raw shared mapping of an arena file: `mmap`/`munmap`, and typed access to its bytes.
//!
//! This module and `lock.rs` are the only places that define `unsafe` code; everything else
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
//! - **Payloads** are handed out as `&[u8]` / `&mut [u8]` only by [`Mapping::bytes`] and
//!   [`Mapping::bytes_mut`], which are `unsafe`: their one caller (`draft.rs`) relies on the
//!   arena's protocol (a draft is the only handle to, and the only writer of, its unsealed block,
//!   which nothing else releases while the draft lives). A process that breaks the protocol through its own mapping
//!   (say, Python writing into an object it already sealed) makes readers see changing bytes:
//!   wrong data, but no memory unsafety in the reader beyond that, as the pages stay mapped.
//! - **The file itself** must keep its length: a process that truncates it would make accesses
//!   fault with `SIGBUS`. The file is created mode 0600 (only the server's user can open it
//!   for writing; /dev/shm's sticky bit keeps others from removing it), and nothing in this
//!   project ever resizes it.

use std::fs::{File, OpenOptions};
use std::io;
use std::mem::size_of;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr::NonNull;

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
    /// pre-faulted, and initialises the header's robust mutex. All other bytes are zero. On
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

    /// Maps an existing arena file, pre-faulted.
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
    /// resident in the tmpfs, so a first touch here is a minor fault, not an allocation; and
    /// the Rust side touches little but the header and the allocator (the payloads are read and
    /// written through the workers' own data mapping). Populating 1 GiB of page tables in the
    /// engine and in every worker cost about 0.1–0.7 s per process at start for nothing.
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
        // one `ExclusiveSpan` (see its docs), borrowed mutably here, and no other code of this
        // process makes slices of payload bytes.
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
        // mapping outlives `self` (all borrows are tied to `&self`).
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
