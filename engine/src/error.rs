//! Errors of the engine's control API.

use crate::config::ConfigError;

/// Why the engine could not start or be controlled.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The config cannot run.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The HTTP address is taken or not ours to bind.
    #[error("cannot listen on {address}: {source} (is another server using this port?)")]
    BindHttp {
        /// `address:port` that failed.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The bound HTTP port could not start listening.
    #[error("cannot listen on {address}: {source} (is another server using this port?)")]
    Listen {
        /// `address:port` that failed.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The worker socket could not be created.
    #[error("cannot create the worker socket {path}: {source}")]
    BindSocket {
        /// Socket path that failed.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The Swagger UI assets could not be read.
    #[error("cannot read the Swagger UI assets in {path}: {source}")]
    Documents {
        /// Folder that failed.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The arena could not be created (too little shared memory, say).
    #[error("cannot create the shared-memory arena: {0} (see --shm-size)")]
    Arena(shm::ShmError),
    /// The tokio runtime could not start.
    #[error("cannot start the engine runtime: {0}")]
    Runtime(std::io::Error),
    /// `start` was called twice.
    #[error("the engine is already running")]
    AlreadyStarted,
    /// A call that needs a running engine came before `start` or after `shutdown`.
    #[error("the engine is not running")]
    NotRunning,
}
