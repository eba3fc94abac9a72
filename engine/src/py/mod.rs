//! The `mosec._engine` extension module.

mod arena;
mod engine;
mod errors;
mod forward_watch;
mod json_text;

use pyo3::prelude::*;

/// The engine's defaults as JSON: the one source of every default the CLI shows.
#[pyfunction]
fn default_config() -> String {
    crate::Config::default_json()
}

/// The engine's version.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[pymodule]
fn _engine(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<engine::PyEngine>()?;
    module.add_class::<arena::PyArenaClient>()?;
    module.add_class::<shm::ArenaBuffer>()?;
    module.add_class::<forward_watch::ForwardWatch>()?;
    module.add_function(wrap_pyfunction!(default_config, module)?)?;
    module.add_function(wrap_pyfunction!(version, module)?)?;
    module.add_function(wrap_pyfunction!(arena::set_numpy_handler, module)?)?;
    module.add_function(wrap_pyfunction!(arena::numpy_failed_frees, module)?)?;
    module.add_function(wrap_pyfunction!(json_text::dumps_indent2, module)?)?;
    add_wire_constants(module)?;
    add_http_constants(module)
}

/// What the HTTP side answers, exported so that the OpenAPI document (`mosec/openapi.py`)
/// describes the server from the same definitions.
fn add_http_constants(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("TEXT_PLAIN_MIME", crate::http::response::TEXT_PLAIN)?;
    module.add("METRICS_MIME", crate::http::handler::METRICS_MIME)?;
    module.add("EVENT_STREAM_MIME", crate::http::sse::EVENT_STREAM)?;
    module.add("REQUEST_ID_MAX_LEN", crate::http::request_id::MAX_LEN)?;
    Ok(())
}

/// The wire formats' numbers, exported so that the Python side reads them from their one
/// definition (`crate::protocol`, `crate::refs`, `shm::Reference`, `crate::config`).
fn add_wire_constants(module: &Bound<'_, PyModule>) -> PyResult<()> {
    use crate::protocol::{
        FrameKind, FLAG_EGRESS, FLAG_INGRESS, FLAG_JOINED, FLAG_REFERENCE, FLAG_REQUEST_ID,
    };
    for (name, kind) in [
        ("KIND_HELLO", FrameKind::Hello),
        ("KIND_BATCH", FrameKind::Batch),
        ("KIND_RESULT", FrameKind::Result),
        ("KIND_EVENT", FrameKind::Event),
        ("KIND_CANCEL", FrameKind::Cancel),
    ] {
        module.add(name, kind as u8)?;
    }
    module.add("FLAG_INGRESS", FLAG_INGRESS)?;
    module.add("FLAG_EGRESS", FLAG_EGRESS)?;
    module.add("FLAG_REQUEST_ID", FLAG_REQUEST_ID)?;
    module.add("FLAG_JOINED", FLAG_JOINED)?;
    module.add("FLAG_REFERENCE", FLAG_REFERENCE)?;
    module.add("STORE_ARENA", crate::refs::STORE_ARENA)?;
    module.add("STORE_REDIS", crate::refs::STORE_REDIS)?;
    module.add("ARENA_REFERENCE_LEN", shm::Reference::LEN)?;
    module.add("RESERVED_PATHS", crate::config::RESERVED_PATHS.to_vec())?;
    module.add("RESERVED_PREFIX", crate::config::RESERVED_PREFIX)?;
    Ok(())
}
