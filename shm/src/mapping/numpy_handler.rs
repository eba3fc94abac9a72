//! NumPy's array data allocated in the arena: a memory handler (NumPy >= 1.22,
//! `PyDataMem_SetHandler`) whose allocations of at least `min_size` bytes are arena blocks held by
//! the array ([`Arena::alloc_held`]), the rest going to the handler that was current when ours
//! was made (NumPy's default one, with its small-block cache). An array born in the arena can
//! then be handed to the next stage with no copy (see `arena/holds.rs` for the two holders).
//!
//! The handler never fails where NumPy's would not: a full arena (or one too small for the
//! request) falls back to the previous handler. `free` and `realloc` tell the two kinds of
//! pointer apart by address, since the arena is one mapping. The handler is process-wide state
//! that NumPy scopes per context (a `ContextVar`): the worker loop installs it around `forward`
//! only, and every array remembers the handler it was allocated by, so arrays freed later, or
//! in other code, still come back here.
//!
//! Unsafe code here: calling NumPy's C API through its `_ARRAY_API` table, reading another
//! handler's struct out of its capsule, and the raw memory of the C allocator contract
//! (zeroing, copying for `realloc`). Each block says why it holds.

use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use crate::Arena;

/// Name NumPy requires of a handler capsule.
pub const HANDLER_CAPSULE_NAME: &CStr = c"mem_handler";
/// Slots of `PyDataMem_SetHandler` and `PyDataMem_GetHandler` in NumPy's C API table (fixed
/// since NumPy 1.22, in NumPy 1.x and 2.x alike: `numpy/_core/code_generators/numpy_api.py`).
const SET_HANDLER_SLOT: usize = 304;
const GET_HANDLER_SLOT: usize = 305;

/// Frees of arena pointers that did not validate (a block reclaimed behind the array's back):
/// the handler cannot raise, so it counts them for tests and diagnostics.
static FAILED_FREES: AtomicU64 = AtomicU64::new(0);

/// `PyDataMemAllocator` of `numpy/ndarraytypes.h`, version 1.
#[repr(C)]
#[derive(Clone, Copy)]
struct Allocator {
    ctx: *mut c_void,
    malloc: Option<unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void>,
    calloc: Option<unsafe extern "C" fn(*mut c_void, usize, usize) -> *mut c_void>,
    realloc: Option<unsafe extern "C" fn(*mut c_void, *mut c_void, usize) -> *mut c_void>,
    free: Option<unsafe extern "C" fn(*mut c_void, *mut c_void, usize)>,
}

/// `PyDataMem_Handler` of `numpy/ndarraytypes.h`: what a `mem_handler` capsule points to.
#[repr(C)]
pub struct NumpyHandler {
    name: [u8; 127],
    version: u8,
    allocator: Allocator,
}

// SAFETY: the handler is immutable once made; its `ctx` points to a leaked `Context` that is
// only read (the arena inside it is `Sync`), and its functions may run on any thread (NumPy
// may allocate without the GIL), so moving the struct to another thread is sound.
unsafe impl Send for NumpyHandler {}

/// What our handler's functions need: the arena, the threshold, and the handler to fall back to.
struct Context {
    arena: Arc<Arena>,
    /// The mapping's first byte, and its length: arena pointers are recognised by address.
    base: *mut u8,
    len: usize,
    min_size: usize,
    fallback: Allocator,
    /// Keeps the fallback handler (and so its `ctx`) alive for as long as we may call it.
    _fallback_capsule: Py<PyAny>,
}

impl NumpyHandler {
    /// A handler over `arena` for allocations of at least `min_size` bytes, falling back to the
    /// handler current now in NumPy (`api` is NumPy's `_ARRAY_API` capsule). Its context lives
    /// as long as the process: arrays allocated by it may outlive every other reference.
    ///
    /// # Errors
    /// When `api` is not a capsule or the current handler cannot be read.
    pub fn new(arena: Arc<Arena>, min_size: usize, api: &Bound<'_, PyAny>) -> PyResult<Self> {
        let current = get_handler(api)?;
        let fallback = allocator_of(&current)?;
        let map = arena.mapping();
        let context = Box::new(Context {
            base: map.ptr.as_ptr(),
            len: map.len,
            arena: Arc::clone(&arena),
            min_size: min_size.max(1),
            fallback,
            _fallback_capsule: current.unbind(),
        });
        let mut name = [0u8; 127];
        let label = b"mosec_arena";
        name[..label.len()].copy_from_slice(label);
        Ok(NumpyHandler {
            name,
            version: 1,
            allocator: Allocator {
                ctx: Box::into_raw(context).cast(),
                malloc: Some(handler_malloc),
                calloc: Some(handler_calloc),
                realloc: Some(handler_realloc),
                free: Some(handler_free),
            },
        })
    }
}

/// Makes `handler` (a `mem_handler` capsule) NumPy's handler in the current context; returns the
/// previous one, to be set back.
///
/// # Errors
/// What NumPy raises (a capsule of the wrong name), or a `RuntimeError` for a broken `api`.
pub fn set_handler<'py>(
    api: &Bound<'py, PyAny>,
    handler: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let slot = api_slot(api, SET_HANDLER_SLOT)?;
    // SAFETY: slot 304 of NumPy's API table is `PyObject *PyDataMem_SetHandler(PyObject *)`
    // (NumPy >= 1.22, checked by the caller), called with the GIL held (`api` is bound) and a
    // valid object; it returns a new reference or NULL with an exception set, which
    // `from_owned_ptr_or_err` takes over.
    unsafe {
        let set: unsafe extern "C" fn(*mut pyo3::ffi::PyObject) -> *mut pyo3::ffi::PyObject =
            std::mem::transmute(slot);
        Bound::from_owned_ptr_or_err(api.py(), set(handler.as_ptr()))
    }
}

/// NumPy's handler in the current context (a `mem_handler` capsule).
fn get_handler<'py>(api: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let slot = api_slot(api, GET_HANDLER_SLOT)?;
    // SAFETY: slot 305 is `PyObject *PyDataMem_GetHandler(void)`, called with the GIL held; it
    // returns a new reference or NULL with an exception set.
    unsafe {
        let get: unsafe extern "C" fn() -> *mut pyo3::ffi::PyObject = std::mem::transmute(slot);
        Bound::from_owned_ptr_or_err(api.py(), get())
    }
}

/// Frees of arena pointers that did not validate, in this process so far.
pub fn failed_frees() -> u64 {
    FAILED_FREES.load(Relaxed)
}

/// The function pointer in slot `index` of NumPy's API table.
fn api_slot(api: &Bound<'_, PyAny>, index: usize) -> PyResult<*const c_void> {
    let capsule = api.cast::<PyCapsule>()?;
    let table = capsule.pointer_checked(None)?.as_ptr().cast::<*const c_void>();
    // SAFETY: NumPy's API table is a static array of more than 305 pointers (every NumPy that
    // has the slots we read, >= 1.22, which the caller checks), alive while numpy is imported.
    let slot = unsafe { *table.add(index) };
    if slot.is_null() {
        return Err(PyRuntimeError::new_err(format!("NumPy's C API slot {index} is empty")));
    }
    Ok(slot)
}

/// The allocator functions of a `mem_handler` capsule.
fn allocator_of(handler: &Bound<'_, PyAny>) -> PyResult<Allocator> {
    let capsule = handler.cast::<PyCapsule>()?;
    let struct_ptr = capsule.pointer_checked(Some(HANDLER_CAPSULE_NAME))?.as_ptr();
    let struct_ptr = struct_ptr.cast::<NumpyHandler>();
    // SAFETY: a `mem_handler` capsule points to a `PyDataMem_Handler`, laid out as
    // `NumpyHandler` (repr(C), checked against NumPy's header); the capsule is alive (bound) and
    // we copy the plain-data allocator out of it.
    let allocator = unsafe { (*struct_ptr).allocator };
    let complete = allocator.malloc.is_some()
        && allocator.calloc.is_some()
        && allocator.realloc.is_some()
        && allocator.free.is_some();
    if !complete {
        return Err(PyRuntimeError::new_err("NumPy's current handler lacks a function"));
    }
    Ok(allocator)
}

impl Context {
    /// The arena offset of `ptr`, when it points into the mapping.
    fn offset_of(&self, ptr: *mut c_void) -> Option<u64> {
        let offset = (ptr as usize).checked_sub(self.base as usize)?;
        (offset < self.len).then_some(offset as u64)
    }

    /// A held arena block of `size` bytes, or None (too small to be worth it, or no room).
    fn arena_alloc(&self, size: usize) -> Option<*mut c_void> {
        if size < self.min_size {
            return None;
        }
        let span = self.arena.alloc_held(size).ok()?;
        Some(self.base.wrapping_add(span.offset).cast())
    }

    fn malloc(&self, size: usize) -> *mut c_void {
        if let Some(ptr) = self.arena_alloc(size) {
            return ptr;
        }
        let f = self.fallback;
        // SAFETY: the fallback's own function with its own context (checked complete), kept
        // alive by `_fallback_capsule`; the C malloc contract.
        unsafe { (f.malloc.unwrap_unchecked())(f.ctx, size) }
    }

    fn calloc(&self, count: usize, item: usize) -> *mut c_void {
        let Some(size) = count.checked_mul(item) else {
            return std::ptr::null_mut(); // NumPy raises MemoryError, as for a failed calloc
        };
        if let Some(ptr) = self.arena_alloc(size) {
            // SAFETY: `ptr..ptr + size` is the payload of a block just allocated for this
            // array, inside the mapping, that nothing else knows about yet.
            unsafe { std::ptr::write_bytes(ptr.cast::<u8>(), 0, size) };
            return ptr;
        }
        let f = self.fallback;
        // SAFETY: as in `malloc`.
        unsafe { (f.calloc.unwrap_unchecked())(f.ctx, count, item) }
    }

    fn realloc(&self, ptr: *mut c_void, size: usize) -> *mut c_void {
        if ptr.is_null() {
            return self.malloc(size);
        }
        let Some(offset) = self.offset_of(ptr) else {
            let f = self.fallback;
            // SAFETY: `ptr` came from the fallback (it is not in the arena); as in `malloc`.
            return unsafe { (f.realloc.unwrap_unchecked())(f.ctx, ptr, size) };
        };
        let Ok(old) = self.arena.held_len(offset).map(|len| len as usize) else {
            return std::ptr::null_mut();
        };
        if size <= old {
            return ptr; // the block keeps its length; the array uses its first `size` bytes
        }
        let moved = self.malloc(size);
        if moved.is_null() {
            return moved; // realloc's contract: the old block stays valid
        }
        // SAFETY: `ptr..ptr + old` is this array's held block, `moved..moved + size` (size >
        // old) a new allocation of its own; the two are distinct allocations.
        unsafe { std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), moved.cast::<u8>(), old) };
        self.release(offset);
        moved
    }

    fn free(&self, ptr: *mut c_void, size: usize) {
        if ptr.is_null() {
            return;
        }
        match self.offset_of(ptr) {
            Some(offset) => self.release(offset),
            None => {
                let f = self.fallback;
                // SAFETY: `ptr` came from the fallback; as in `malloc`.
                unsafe { (f.free.unwrap_unchecked())(f.ctx, ptr, size) }
            }
        }
    }

    fn release(&self, offset: u64) {
        if self.arena.release_held(offset).is_err() {
            FAILED_FREES.fetch_add(1, Relaxed);
        }
    }
}

/// The `Context` behind a handler's `ctx`.
///
/// # Safety
/// `ctx` must be the context of a handler made by [`NumpyHandler::new`] (leaked, never freed).
unsafe fn context<'a>(ctx: *mut c_void) -> &'a Context {
    // SAFETY: the caller's contract; the context is never freed or written after creation.
    unsafe { &*ctx.cast::<Context>() }
}

/// # Safety
/// Called by NumPy with our handler's `ctx`.
unsafe extern "C" fn handler_malloc(ctx: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: NumPy passes back the `ctx` of our handler.
    unsafe { context(ctx) }.malloc(size)
}

/// # Safety
/// Called by NumPy with our handler's `ctx`.
unsafe extern "C" fn handler_calloc(ctx: *mut c_void, count: usize, item: usize) -> *mut c_void {
    // SAFETY: NumPy passes back the `ctx` of our handler.
    unsafe { context(ctx) }.calloc(count, item)
}

/// # Safety
/// Called by NumPy with our handler's `ctx` and a pointer it allocated.
unsafe extern "C" fn handler_realloc(
    ctx: *mut c_void,
    ptr: *mut c_void,
    size: usize,
) -> *mut c_void {
    // SAFETY: NumPy passes back the `ctx` of our handler.
    unsafe { context(ctx) }.realloc(ptr, size)
}

/// # Safety
/// Called by NumPy with our handler's `ctx` and a pointer it allocated.
unsafe extern "C" fn handler_free(ctx: *mut c_void, ptr: *mut c_void, size: usize) {
    // SAFETY: NumPy passes back the `ctx` of our handler.
    unsafe { context(ctx) }.free(ptr, size)
}
