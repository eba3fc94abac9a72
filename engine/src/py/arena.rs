//! `ArenaClient`: a worker's handle on the server's arena. Allocation, sealing, validation and
//! freeing happen here in Rust, under the arena's lock; the bytes themselves are read and
//! written by Python, at the offsets returned here, through `buffer()`: the client's own
//! mapping exported as a Python buffer (`shm::ArenaBuffer`, exported by shm's mapping module),
//! so a worker maps the arena once.
//!
//! It also makes the worker's NumPy memory handler (`numpy_handler`: arrays of a stage with an
//! arena mixin are born in the arena) and hands such arrays over (`share_held`, `share`); the
//! handler itself, with all its raw-pointer code, is `shm`'s (`shm/src/mapping/numpy_handler.rs`).

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyCapsule};
use shm::{Arena, ArenaBuffer, NumpyHandler, Reference};

use super::errors::shm_error;

/// A mapping of the server's arena in this process.
#[pyclass(name = "ArenaClient", module = "mosec._engine", frozen)]
pub struct PyArenaClient {
    /// Shared with the NumPy handler made from this client, which may outlive it.
    arena: Arc<Arena>,
}

fn reference(bytes: &[u8]) -> PyResult<Reference> {
    Reference::from_bytes(bytes).map_err(shm_error)
}

#[pymethods]
impl PyArenaClient {
    /// Maps the arena file at `path`.
    #[new]
    fn open(path: &str) -> PyResult<Self> {
        Ok(Self { arena: Arc::new(Arena::open(path).map_err(shm_error)?) })
    }

    /// Path of the arena file.
    #[getter]
    fn path(&self) -> String {
        self.arena.path().display().to_string()
    }

    /// Usable bytes.
    #[getter]
    fn capacity(&self) -> u64 {
        self.arena.capacity()
    }

    /// The client's mapping of the whole file as a writable buffer; views of it keep the
    /// mapping alive after the client is gone.
    fn buffer(&self) -> ArenaBuffer {
        self.arena.buffer()
    }

    /// Reserves `size` bytes for this process, waiting up to `timeout_ms` for space.
    ///
    /// Returns the 32-byte reference and the payload's offset in the file. The object is
    /// leased: write it through the mapping, then `seal` it.
    fn alloc<'py>(
        &self,
        py: Python<'py>,
        size: usize,
        timeout_ms: u64,
    ) -> PyResult<(Bound<'py, PyBytes>, u64)> {
        let leased = py.detach(|| {
            self.arena
                .alloc_wait(size, Duration::from_millis(timeout_ms))
                .and_then(|draft| draft.into_lease())
        });
        let leased = leased.map_err(shm_error)?;
        Ok((PyBytes::new(py, &leased.to_bytes()), leased.offset))
    }

    /// Marks a leased object complete: readers may resolve it from now on.
    fn seal(&self, reference_bytes: &[u8]) -> PyResult<()> {
        self.arena.seal(&reference(reference_bytes)?).map_err(shm_error)
    }

    /// Validates a sealed object's reference; returns its `(offset, size)` in the file.
    fn locate(&self, reference_bytes: &[u8]) -> PyResult<(usize, usize)> {
        let span = self.arena.locate(&reference(reference_bytes)?).map_err(shm_error)?;
        Ok((span.offset, span.len))
    }

    /// Frees an object (a producer dropping an output it will not hand over).
    fn free(&self, reference_bytes: &[u8]) -> PyResult<()> {
        self.arena.free(&reference(reference_bytes)?).map_err(shm_error)
    }

    /// NumPy's memory handler (a `mem_handler` capsule) that allocates array data of at least
    /// `min_size` bytes in this arena, held by the array, and the rest with the handler current
    /// now. `api` is NumPy's `_ARRAY_API` capsule; install the result with `set_numpy_handler`.
    fn numpy_handler<'py>(
        &self,
        py: Python<'py>,
        api: &Bound<'py, PyAny>,
        min_size: usize,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let handler = NumpyHandler::new(Arc::clone(&self.arena), min_size, api)?;
        PyCapsule::new_with_value(py, handler, shm::NUMPY_HANDLER_CAPSULE)
    }

    /// Hands over the block an array of this process holds, whose payload starts at `offset`:
    /// sealed, one more task hold; returns its reference.
    fn share_held<'py>(&self, py: Python<'py>, offset: u64) -> PyResult<Bound<'py, PyBytes>> {
        let reference = self.arena.share_held(offset).map_err(shm_error)?;
        Ok(PyBytes::new(py, &reference.to_bytes()))
    }

    /// Hands a sealed object over once more (a reader passing its input through).
    fn share(&self, reference_bytes: &[u8]) -> PyResult<()> {
        self.arena.share(&reference(reference_bytes)?).map_err(shm_error)
    }

    /// `(capacity, used_bytes, objects)`.
    fn stats(&self) -> (u64, u64, u64) {
        let stats = self.arena.stats();
        (stats.capacity, stats.used_bytes, stats.objects)
    }
}

/// Makes `handler` NumPy's memory handler in the current context; returns the previous one.
/// `api` is NumPy's `_ARRAY_API` capsule.
#[pyfunction]
pub fn set_numpy_handler<'py>(
    api: &Bound<'py, PyAny>,
    handler: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    shm::set_numpy_handler(api, handler)
}

/// Frees of arena arrays whose block did not validate, in this process so far (0 unless a
/// block was reclaimed behind its array's back).
#[pyfunction]
pub fn numpy_failed_frees() -> u64 {
    shm::numpy_failed_frees()
}
