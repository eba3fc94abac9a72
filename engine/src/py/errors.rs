//! The one mapping from engine and store errors to Python exceptions.

use pyo3::create_exception;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::PyErr;
use shm::ShmError;

use crate::error::EngineError;

create_exception!(
    _engine,
    StoreFullError,
    pyo3::exceptions::PyMemoryError,
    "The store has no room for the object within the wait allowed."
);
create_exception!(
    _engine,
    StoreReferenceError,
    PyValueError,
    "A store reference is stale, forged, or from another arena."
);

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
            EngineError::Arena(_) => PyOSError::new_err(message),
            EngineError::Runtime(_) | EngineError::AlreadyStarted | EngineError::NotRunning => {
                PyRuntimeError::new_err(message)
            }
        }
    }
}

/// Maps an arena error: no room → `StoreFullError`; a bad reference → `StoreReferenceError`;
/// the arena file itself → `OSError`.
pub fn shm_error(err: ShmError) -> PyErr {
    let message = err.to_string();
    match err {
        ShmError::Full { .. } | ShmError::TooLarge { .. } => StoreFullError::new_err(message),
        ShmError::ForeignArena { .. }
        | ShmError::OutOfBounds { .. }
        | ShmError::StaleReference { .. }
        | ShmError::WrongState { .. }
        | ShmError::BadReference { .. }
        | ShmError::InvalidSize { .. } => StoreReferenceError::new_err(message),
        ShmError::NotAnArena { .. } | ShmError::Corrupt(_) | ShmError::Io { .. } => {
            PyOSError::new_err(message)
        }
    }
}
