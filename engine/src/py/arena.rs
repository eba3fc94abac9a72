//! `ArenaClient`: a worker's handle on the server's arena. Allocation, sealing, validation and
//! freeing happen here in Rust, under the arena's lock; the bytes themselves are read and
//! written by Python, at the offsets returned here, through `buffer()`: the client's own
//! mapping exported as a Python buffer (`shm::ArenaBuffer`, where the unsafe export lives), so
//! a worker maps the arena once.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use shm::{Arena, ArenaBuffer, Reference};

use super::errors::shm_error;

/// A mapping of the server's arena in this process.
#[pyclass(name = "ArenaClient", module = "mosec._engine", frozen)]
pub struct PyArenaClient {
    arena: Arena,
}

fn reference(bytes: &[u8]) -> PyResult<Reference> {
    Reference::from_bytes(bytes).map_err(shm_error)
}

#[pymethods]
impl PyArenaClient {
    /// Maps the arena file at `path`.
    #[new]
    fn open(path: &str) -> PyResult<Self> {
        Ok(Self { arena: Arena::open(path).map_err(shm_error)? })
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

    /// `(capacity, used_bytes, objects)`.
    fn stats(&self) -> (u64, u64, u64) {
        let stats = self.arena.stats();
        (stats.capacity, stats.used_bytes, stats.objects)
    }
}
