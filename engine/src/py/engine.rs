//! The `Engine` Python class: a thin shell over [`crate::Engine`] that releases the GIL for
//! every call that may block.

use std::time::Duration;

use pyo3::prelude::*;

use crate::{Config, Engine};

/// The controller, running on its own threads once started.
#[pyclass(name = "Engine", module = "mosec._engine", frozen)]
pub struct PyEngine {
    inner: Engine,
}

#[pymethods]
impl PyEngine {
    #[new]
    fn new(config_json: &str) -> PyResult<Self> {
        let config = Config::from_json(config_json).map_err(crate::EngineError::from)?;
        Ok(Self { inner: Engine::new(config)? })
    }

    /// Binds the HTTP port and worker socket and starts serving.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.start())?;
        Ok(())
    }

    /// The HTTP port bound.
    fn port(&self) -> PyResult<u16> {
        Ok(self.inner.port()?)
    }

    /// Path of the arena file, or None when no stage uses the arena.
    fn arena_path(&self) -> Option<String> {
        self.inner.arena_path()
    }

    /// Whether every stage has its workers connected and the engine is not draining.
    fn is_ready(&self) -> bool {
        self.inner.is_ready()
    }

    /// Connected workers per stage index.
    fn connected_workers(&self) -> Vec<usize> {
        self.inner.connected_workers()
    }

    /// Answers every task in flight with `status` and `message`; returns how many.
    fn fail_inflight(&self, status: u16, message: &str) -> usize {
        self.inner.fail_inflight(status, message)
    }

    /// Drains (up to `drain_timeout_ms`) and stops; true when nothing was left unfinished.
    fn shutdown(&self, py: Python<'_>, drain_timeout_ms: u64) -> bool {
        py.detach(|| self.inner.shutdown(Duration::from_millis(drain_timeout_ms)))
    }
}
