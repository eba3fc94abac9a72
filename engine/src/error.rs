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
    /// The shared-memory folder has less room than the arena asked for (see `shm_room`).
    #[error(
        "--shm-size asks for {size} bytes but {dir} has only {free} bytes free: lower --shm-size \
         (MOSEC_SHM_SIZE), or give the container more shared memory: `docker run \
         --shm-size={fix_mib}m`, or in Kubernetes mount an emptyDir with `medium: Memory` and \
         `sizeLimit: {fix_mib}Mi` on /dev/shm (see docs/deploy.md)"
    )]
    ShmTooSmall {
        /// The shared-memory folder.
        dir: String,
        /// Bytes the arena asked for.
        size: u64,
        /// Bytes free in the folder.
        free: u64,
        /// The shared-memory size to give the container, in MiB.
        fix_mib: u64,
    },
    /// The shared-memory folder could not be inspected (it does not exist, say).
    #[error("cannot inspect the shared-memory folder {dir}: {source}")]
    ShmStat {
        /// The shared-memory folder.
        dir: String,
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
