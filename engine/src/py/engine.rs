//! The `Engine` Python class: a thin shell over [`crate::Engine`] that releases the GIL for
//! every call that may block.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

use crate::completions::Completions;
use crate::request::CallInput;
use crate::{Config, Engine};

/// The controller, running on its own threads once started.
#[pyclass(name = "Engine", module = "mosec._engine", frozen)]
pub struct PyEngine {
    inner: Engine,
    /// Outcomes of calls made with `submit`, collected by `completions`.
    completions: Arc<Completions>,
}

#[pymethods]
impl PyEngine {
    #[new]
    fn new(config_json: &str) -> PyResult<Self> {
        let config = Config::from_json(config_json).map_err(crate::EngineError::from)?;
        Ok(Self { inner: Engine::new(config)?, completions: Arc::default() })
    }

    /// Binds the HTTP port and worker socket and starts serving.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.start())?;
        Ok(())
    }

    /// Starts accepting HTTP connections once every worker has connected, waiting up to
    /// `wait_ms`; true when listening.
    fn listen(&self, py: Python<'_>, wait_ms: u64) -> PyResult<bool> {
        Ok(py.detach(|| self.inner.listen(Duration::from_millis(wait_ms)))?)
    }

    /// The HTTP port bound.
    fn port(&self) -> PyResult<u16> {
        Ok(self.inner.port()?)
    }

    /// Path of the arena file, or None when no stage uses the arena.
    fn arena_path(&self) -> Option<String> {
        self.inner.arena_path()
    }

    /// Whether the engine accepts HTTP connections and is not draining.
    fn is_ready(&self) -> bool {
        self.inner.is_ready()
    }

    /// Connected workers per stage index.
    fn connected_workers(&self) -> Vec<usize> {
        self.inner.connected_workers()
    }

    /// The descriptor readable while stuck workers wait to be taken; valid until shutdown.
    fn stuck_workers_fd(&self) -> PyResult<i32> {
        Ok(self.inner.stuck_workers_fd()?)
    }

    /// The workers found stuck since the last call: `(stage index, worker id, pid, busy ms)`.
    fn stuck_workers(&self) -> Vec<(usize, u32, u32, u64)> {
        let millis = |busy: Duration| u64::try_from(busy.as_millis()).unwrap_or(u64::MAX);
        self.inner
            .stuck_workers()
            .into_iter()
            .map(|w| (w.stage, w.worker_id, w.pid, millis(w.busy)))
            .collect()
    }

    /// Answers every task in flight with `status` and `message`; returns how many.
    fn fail_inflight(&self, status: u16, message: &str) -> usize {
        self.inner.fail_inflight(status, message)
    }

    /// Runs `payload` through the route at `path` in-process, as an HTTP POST would run it;
    /// `(status, body)` of its outcome. `timeout_ms` is its deadline (0: the server's). The GIL
    /// is released while waiting, so other Python threads (and other calls) run meanwhile.
    fn call<'py>(
        &self,
        py: Python<'py>,
        path: &str,
        payload: PyBackedBytes,
        timeout_ms: u64,
    ) -> PyResult<(u16, Bound<'py, PyBytes>)> {
        // The Python bytes object itself backs the payload: no copy.
        let payload = Bytes::from_owner(payload);
        let timeout = Duration::from_millis(timeout_ms);
        let outcome = py.detach(|| self.inner.call(path, payload, timeout))?;
        Ok((outcome.status, PyBytes::new(py, &outcome.body)))
    }

    /// Starts `call` without waiting: its `(token, status, body)` comes out of
    /// `completions` once it is answered (503 if the engine stops first). With `stored`, the
    /// payload is a store reference whose objects the call takes over (released when it ends,
    /// also when it is refused).
    #[pyo3(signature = (path, payload, timeout_ms, token, stored = false))]
    fn submit(
        &self,
        path: &str,
        payload: PyBackedBytes,
        timeout_ms: u64,
        token: u64,
        stored: bool,
    ) -> PyResult<()> {
        let completions = self.completions.clone();
        let timeout = Duration::from_millis(timeout_ms);
        let payload = Bytes::from_owner(payload);
        let input = if stored { CallInput::Stored(payload) } else { CallInput::Inline(payload) };
        self.inner.submit(path, input, timeout, move |outcome| {
            completions.push(token, outcome);
        })?;
        Ok(())
    }

    /// The `(token, status, body)` of every submitted call answered since the last look,
    /// waiting up to `wait_ms` for one (an empty list when none came); None once the engine
    /// has stopped and every answer has been taken.
    fn completions<'py>(
        &self,
        py: Python<'py>,
        wait_ms: u64,
    ) -> Option<Vec<(u64, u16, Bound<'py, PyBytes>)>> {
        let taken = py.detach(|| self.completions.take(Duration::from_millis(wait_ms)))?;
        Some(
            taken
                .into_iter()
                .map(|(token, outcome)| (token, outcome.status, PyBytes::new(py, &outcome.body)))
                .collect(),
        )
    }

    /// Drains (up to `drain_timeout_ms`) and stops; true when nothing was left unfinished.
    fn shutdown(&self, py: Python<'_>, drain_timeout_ms: u64) -> bool {
        let drained = py.detach(|| self.inner.shutdown(Duration::from_millis(drain_timeout_ms)));
        // Every submitted call has been answered by now (a stopped runtime answers 503).
        self.completions.close();
        drained
    }
}
