//! The one mapping from engine errors to Python exceptions.

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::PyErr;

use crate::error::EngineError;

impl From<EngineError> for PyErr {
    fn from(err: EngineError) -> Self {
        let message = err.to_string();
        match err {
            EngineError::Config(_) => PyValueError::new_err(message),
            EngineError::BindHttp { source, .. }
            | EngineError::BindSocket { source, .. }
            | EngineError::Documents { source, .. } => {
                // (errno, message) gives Python an OSError whose .errno callers can test.
                PyOSError::new_err((source.raw_os_error().unwrap_or(0), message))
            }
            EngineError::Runtime(_) | EngineError::AlreadyStarted | EngineError::NotRunning => {
                PyRuntimeError::new_err(message)
            }
        }
    }
}
