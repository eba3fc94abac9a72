//! The `mosec._engine` extension module.

mod arena;
mod engine;
mod errors;

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
    module.add_function(wrap_pyfunction!(default_config, module)?)?;
    module.add_function(wrap_pyfunction!(version, module)?)?;
    Ok(())
}
