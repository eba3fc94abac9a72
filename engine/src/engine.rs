//! The engine's control API: start it, ask whether it is ready, drain and stop it.
//!
//! The engine runs on its own tokio runtime (Rust-owned threads), so the Python process that
//! owns it only calls in to start, query and stop it.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shm::Arena;
use tokio::net::{TcpListener, UnixListener};
use tokio::runtime::Runtime;
use tracing::{info, warn};

use crate::config::Config;
use crate::error::EngineError;
use crate::http::documents::Documents;
use crate::http::serve_http;
use crate::link::serve_links;
use crate::logging;
use crate::refs::{release_redis_keys, Stores};
use crate::state::Shared;
use crate::tasks::Outcome;

/// How long tasks failed at the end of a drain get to deliver their answer.
const FLUSH_GRACE: Duration = Duration::from_secs(1);

/// A running engine's parts.
struct Running {
    runtime: Runtime,
    shared: Arc<Shared>,
    http: tokio::task::JoinHandle<()>,
    port: u16,
}

/// The controller: HTTP server, task table, batchers and worker links.
pub struct Engine {
    config: Config,
    running: Mutex<Option<Running>>,
}

impl Engine {
    /// Validates `config`; nothing runs until [`Engine::start`].
    ///
    /// # Errors
    /// [`EngineError::Config`] when the config cannot run.
    pub fn new(config: Config) -> Result<Self, EngineError> {
        config.validate()?;
        Ok(Self { config, running: Mutex::new(None) })
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Binds the HTTP port and the worker socket, then serves on the engine's own threads.
    ///
    /// # Errors
    /// [`EngineError::BindHttp`] for a taken port, [`EngineError::BindSocket`],
    /// [`EngineError::Runtime`], or [`EngineError::AlreadyStarted`].
    pub fn start(&self) -> Result<(), EngineError> {
        let mut running = self.running();
        if running.is_some() {
            return Err(EngineError::AlreadyStarted);
        }
        logging::init(&self.config.log_level, self.config.log_json);
        let threads = match self.config.engine_threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get().min(4)),
            n => n,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("mosec-engine")
            .enable_all()
            .build()
            .map_err(EngineError::Runtime)?;
        let address = self.config.http_address();
        let socket_path = self.config.socket_path.clone();
        let (tcp, unix) = runtime.block_on(async {
            let tcp = TcpListener::bind(&address)
                .await
                .map_err(|source| EngineError::BindHttp { address: address.clone(), source })?;
            // A socket file left by a crashed run would make bind fail; it serves nobody.
            let _ = std::fs::remove_file(&socket_path);
            let unix = UnixListener::bind(&socket_path)
                .map_err(|source| EngineError::BindSocket { path: socket_path.clone(), source })?;
            Ok::<_, EngineError>((tcp, unix))
        })?;
        let port = tcp.local_addr().map(|a| a.port()).unwrap_or(self.config.port);
        let documents = Documents::load(&self.config).map_err(|source| EngineError::Documents {
            path: self.config.swagger_dir.clone(),
            source,
        })?;
        let stores = Arc::new(self.open_stores(&runtime)?);
        let shared = Arc::new(Shared::new(self.config.clone(), documents, stores));
        let http = runtime.spawn(serve_http(tcp, shared.clone()));
        runtime.spawn(serve_links(unix, shared.clone()));
        info!(address = %address, port, routes = shared.routes.len(), "engine listening");
        *running = Some(Running { runtime, shared, http, port });
        Ok(())
    }

    /// Creates the arena (sweeping files of crashed servers first) and starts the Redis key
    /// releaser, for the stores the config names.
    fn open_stores(&self, runtime: &Runtime) -> Result<Stores, EngineError> {
        let (mut arena, mut redis) = (None, None);
        if self.config.use_arena {
            let dir = &self.config.shm_dir;
            match Arena::sweep_stale(dir) {
                Ok(swept) if !swept.is_empty() => {
                    info!(files = ?swept, "removed arenas left by servers that are gone")
                }
                Ok(_) => {}
                Err(err) => warn!(error = %err, "sweeping stale arenas failed"),
            }
            let created = Arena::create(dir, self.config.shm_size).map_err(EngineError::Arena)?;
            info!(path = %created.path().display(), capacity = created.capacity(), "arena created");
            arena = Some(Arc::new(created));
        }
        if !self.config.redis_url.is_empty() {
            let (keys, released) = tokio::sync::mpsc::unbounded_channel();
            runtime.spawn(release_redis_keys(self.config.redis_url.clone(), released));
            redis = Some(keys);
        }
        Ok(Stores::new(arena, redis))
    }

    /// Path of the arena file, when the config asked for one.
    pub fn arena_path(&self) -> Option<String> {
        let running = self.running();
        let arena = running.as_ref()?.shared.tasks.stores().arena.as_ref()?;
        Some(arena.path().display().to_string())
    }

    /// The HTTP port actually bound (useful when the config asked for port 0).
    ///
    /// # Errors
    /// [`EngineError::NotRunning`] before start or after shutdown.
    pub fn port(&self) -> Result<u16, EngineError> {
        self.running().as_ref().map(|r| r.port).ok_or(EngineError::NotRunning)
    }

    /// Whether every stage has its workers connected and the engine is not draining.
    pub fn is_ready(&self) -> bool {
        self.running().as_ref().is_some_and(|r| r.shared.is_ready())
    }

    /// Connected workers per stage (empty when not running).
    pub fn connected_workers(&self) -> Vec<usize> {
        self.running().as_ref().map(|r| r.shared.connected_workers()).unwrap_or_default()
    }

    /// Answers every task in flight now with `status` and `message`; returns how many.
    pub fn fail_inflight(&self, status: u16, message: &str) -> usize {
        self.running()
            .as_ref()
            .map_or(0, |r| r.shared.tasks.fail_all(&Outcome::error(status, message)))
    }

    /// Drains and stops: new requests get 503, tasks in flight get up to `drain` to finish
    /// (the rest get 503), then HTTP stops and every worker link closes.
    ///
    /// Returns true when no task was left unfinished. Blocks the calling thread.
    pub fn shutdown(&self, drain: Duration) -> bool {
        let Some(Running { runtime, shared, http, .. }) = self.running().take() else {
            return true;
        };
        shared.draining.store(true, std::sync::atomic::Ordering::Release);
        info!(in_flight = shared.tasks.len(), "draining");
        let drained = runtime.block_on(async {
            let mut tasks = shared.tasks.watch_len();
            let drained = tokio::time::timeout(drain, tasks.wait_for(|n| *n == 0)).await.is_ok();
            if !drained {
                let left = shared.tasks.fail_all(&Outcome::error(
                    503,
                    "service unavailable: the server stopped before the request finished",
                ));
                warn!(left, "drain timed out; unfinished tasks answered 503");
                let _ = tokio::time::timeout(FLUSH_GRACE, tasks.wait_for(|n| *n == 0)).await;
            }
            shared.shutdown.send_replace(true);
            let _ = http.await;
            drained
        });
        // Close every queue so links blocked on an empty one wake up and end.
        for stage in &shared.stages {
            stage.queue.sender.close();
        }
        runtime.shutdown_timeout(FLUSH_GRACE);
        if !self.config.socket_path.is_empty() && Path::new(&self.config.socket_path).exists() {
            let _ = std::fs::remove_file(&self.config.socket_path);
        }
        info!(drained, "engine stopped");
        drained
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(running) = self.running().take() {
            running.shared.shutdown.send_replace(true);
            running.runtime.shutdown_background();
        }
    }
}
