//! The one mapping from engine and store errors to Python exceptions.
//!
//! Store errors are raised as the classes of `mosec.errors`, so that there is one class per
//! error: the one user code catches is the one the extension raises, and it already carries
//! the HTTP status the worker answers with. The extension defines no exception classes itself.

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::{import_exception, PyErr};
use shm::ShmError;

use crate::error::EngineError;

// A store had no room for an object within the wait allowed (503).
import_exception!(mosec.errors, StoreFullError);
// A store reference is stale, forged, or names a store this server does not run (500).
import_exception!(mosec.errors, StoreReferenceError);

/// Which store a full-store message is about; the Redis store says `redis: `.
const ARENA_LABEL: &str = "shared-memory arena";

impl From<EngineError> for PyErr {
    fn from(err: EngineError) -> Self {
        let message = err.to_string();
        match err {
            EngineError::Config(_) => PyValueError::new_err(message),
            EngineError::BindHttp { source, .. }
            | EngineError::Listen { source, .. }
            | EngineError::BindSocket { source, .. }
            | EngineError::Documents { source, .. } => {
                // (errno, message) gives Python an OSError whose .errno callers can test.
                PyOSError::new_err((source.raw_os_error().unwrap_or(0), message))
            }
            EngineError::Arena(_)
            | EngineError::ShmTooSmall { .. }
            | EngineError::ShmStat { .. } => PyOSError::new_err(message),
            EngineError::Runtime(_) | EngineError::AlreadyStarted | EngineError::NotRunning => {
                PyRuntimeError::new_err(message)
            }
        }
    }
}

/// Maps an arena error: no room → `mosec.errors.StoreFullError` (its message names the
/// arena, as the Redis store's names Redis); a bad reference →
/// `mosec.errors.StoreReferenceError`; the arena file itself → `OSError`.
pub fn shm_error(err: ShmError) -> PyErr {
    match err {
        ShmError::Full { .. } | ShmError::TooLarge { .. } => {
            StoreFullError::new_err(format!("{ARENA_LABEL}: {err}"))
        }
        ShmError::ForeignArena { .. }
        | ShmError::OutOfBounds { .. }
        | ShmError::StaleReference { .. }
        | ShmError::WrongState { .. }
        | ShmError::BadReference { .. }
        | ShmError::InvalidSize { .. } => StoreReferenceError::new_err(err.to_string()),
        ShmError::NotAnArena { .. } | ShmError::Corrupt(_) | ShmError::Io { .. } => {
            PyOSError::new_err(err.to_string())
        }
    }
}
