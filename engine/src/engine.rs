//! The engine's control API: start it, ask whether it is ready, call a route in-process,
//! drain and stop it.
//!
//! The engine runs on its own tokio runtime (Rust-owned threads), so the Python process that
//! owns it only calls in to start, query and stop it.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use shm::Arena;
use tokio::net::{TcpSocket, UnixListener};
use tokio::runtime::Runtime;
use tracing::{info, warn};

use crate::config::Config;
use crate::error::EngineError;
use crate::http::documents::Documents;
use crate::http::serve_http;
use crate::link::serve_links;
use crate::logging;
use crate::refs::{release_redis_keys, Stores};
use crate::request::{self, CallInput};
use crate::shm_room;
use crate::state::Shared;
use crate::stuck::{StuckReports, StuckWorker};
use crate::tasks::Outcome;

/// How long tasks failed at the end of a drain get to deliver their answer.
const FLUSH_GRACE: Duration = Duration::from_secs(1);

/// The answer of a task the server stopped before it finished.
const STOPPED: &str = "service unavailable: the server stopped before the request finished";

/// How many connections may wait to be accepted (what `TcpListener::bind` uses).
const LISTEN_BACKLOG: u32 = 1024;

/// The HTTP side of a running engine: a port bound at start, served once every worker is in.
enum Http {
    /// Bound but not listening: a client trying to connect is refused, as by a server that is
    /// not up yet, so nothing a client sends can reach a pipeline that is still warming up.
    Bound(TcpSocket),
    /// Accepting connections; the task ends once shutdown is signalled.
    Serving(tokio::task::JoinHandle<()>),
}

/// A running engine's parts.
struct Running {
    runtime: Runtime,
    shared: Arc<Shared>,
    http: Option<Http>,
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

    /// Binds the HTTP port and the worker socket, then serves the worker socket on the engine's
    /// own threads. HTTP connections are accepted only after [`Engine::listen`].
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
            0 => default_threads(std::thread::available_parallelism().map_or(1, |n| n.get())),
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
            let tcp = bind_http(&address)
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
        let stuck = StuckReports::new().map_err(EngineError::Runtime)?;
        let shared = Arc::new(Shared::new(self.config.clone(), documents, stores, stuck));
        runtime.spawn(serve_links(unix, shared.clone()));
        info!(address = %address, port, routes = shared.routes.len(), "engine started");
        *running = Some(Running { runtime, shared, http: Some(Http::Bound(tcp)), port });
        Ok(())
    }

    /// Starts accepting HTTP connections once every stage has had all its workers connected,
    /// waiting up to `wait` for that. Returns whether the engine is now listening; calling it
    /// again once listening returns true at once.
    ///
    /// # Errors
    /// [`EngineError::NotRunning`], or [`EngineError::Listen`] when the bound port cannot
    /// listen (another socket bound to it started listening first).
    pub fn listen(&self, wait: Duration) -> Result<bool, EngineError> {
        let (handle, mut started) = {
            let running = self.running();
            let running = running.as_ref().ok_or(EngineError::NotRunning)?;
            if matches!(running.http, Some(Http::Serving(_))) {
                return Ok(true);
            }
            (running.runtime.handle().clone(), running.shared.all_started.subscribe())
        };
        // Waited for without the lock, so the other control calls are not held up.
        let started = handle
            .block_on(async { tokio::time::timeout(wait, started.wait_for(|all| *all)).await })
            .is_ok();
        if !started {
            return Ok(false);
        }
        let mut running = self.running();
        let running = running.as_mut().ok_or(EngineError::NotRunning)?;
        let Some(Http::Bound(socket)) = running.http.take() else {
            return Ok(running.http.is_some());
        };
        let _entered = handle.enter();
        let address = self.config.http_address();
        let listener = socket
            .listen(LISTEN_BACKLOG)
            .map_err(|source| EngineError::Listen { address: address.clone(), source })?;
        running.http =
            Some(Http::Serving(handle.spawn(serve_http(listener, running.shared.clone()))));
        info!(address = %address, port = running.port, "engine listening: every worker is in");
        Ok(true)
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
            shm_room::check(dir, self.config.shm_size)?;
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

    /// Whether the engine accepts HTTP connections and is not draining.
    pub fn is_ready(&self) -> bool {
        self.running()
            .as_ref()
            .is_some_and(|r| matches!(r.http, Some(Http::Serving(_))) && !r.shared.is_draining())
    }

    /// Connected workers per stage (empty when not running).
    pub fn connected_workers(&self) -> Vec<usize> {
        self.running().as_ref().map(|r| r.shared.connected_workers()).unwrap_or_default()
    }

    /// The descriptor that is readable while stuck workers wait to be taken with
    /// [`Engine::stuck_workers`]; valid until shutdown.
    ///
    /// # Errors
    /// [`EngineError::NotRunning`] before start or after shutdown.
    pub fn stuck_workers_fd(&self) -> Result<i32, EngineError> {
        self.running().as_ref().map(|r| r.shared.stuck.fd()).ok_or(EngineError::NotRunning)
    }

    /// The workers found stuck past their forward timeout since the last call (see
    /// `stuck.rs`); their links wait for them to be killed. Empty when not running.
    pub fn stuck_workers(&self) -> Vec<StuckWorker> {
        self.running().as_ref().map(|r| r.shared.stuck.take()).unwrap_or_default()
    }

    /// Answers every task in flight now with `status` and `message`; returns how many.
    pub fn fail_inflight(&self, status: u16, message: &str) -> usize {
        self.running()
            .as_ref()
            .map_or(0, |r| r.shared.tasks.fail_all(&Outcome::error(status, message)))
    }

    /// Runs one in-process request to the route at `path`, as an HTTP POST of `payload` to it
    /// would run (same admission: 503 draining, 429 capacity, 413 body size; same task, same
    /// flow), and returns its outcome: 200 with the route's output (a JOINED container for a
    /// route that ends with an ensemble) or the error. `timeout` is the request's deadline
    /// (408 past it); zero means the server's `timeout_ms`. Works from start on: no HTTP
    /// listener is needed. Blocks the calling thread only, so many threads may call at once.
    ///
    /// # Errors
    /// [`EngineError::NotRunning`] before start or after shutdown.
    pub fn call(
        &self,
        path: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Outcome, EngineError> {
        // Waited for on a plain channel, not `block_on`: a caller on any thread is fine.
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        self.submit(path, CallInput::Inline(payload), timeout, move |outcome| {
            let _ = answer.send(outcome);
        })?;
        Ok(answered.recv().unwrap_or_else(|_| Outcome::error(503, STOPPED)))
    }

    /// [`Self::call`] without waiting, and with an input that may be objects the caller put in
    /// a store ([`CallInput::Stored`]): the request is admitted and queued now, and `answer`
    /// gets its outcome exactly once (503 when the engine stops before the request ends): on
    /// this thread for a call refused at once, else on an engine thread. `answer` must not
    /// block: it may run on the engine's own threads.
    ///
    /// # Errors
    /// [`EngineError::NotRunning`] before start or after shutdown (`answer` is not called).
    pub fn submit(
        &self,
        path: &str,
        input: CallInput,
        timeout: Duration,
        answer: impl FnOnce(Outcome) + Send + 'static,
    ) -> Result<(), EngineError> {
        let (handle, shared) = {
            let running = self.running();
            let running = running.as_ref().ok_or(EngineError::NotRunning)?;
            (running.runtime.handle().clone(), running.shared.clone())
        };
        let answer = AnswerOnce(Some(answer));
        // Admitted and queued here, so that the drain of a shutdown starting after this
        // returns waits for the call; only the wait for its outcome runs on the engine.
        match request::start_call(&shared, path, input, timeout) {
            Ok(started) => {
                handle.spawn(async move { answer.send(started.finish(&shared).await) });
            }
            Err(refused) => answer.send(refused),
        }
        Ok(())
    }

    /// Drains and stops: new requests get 503, tasks in flight get up to `drain` to finish
    /// (the rest get 503), then HTTP stops and every worker link closes.
    ///
    /// Returns true when no task was left unfinished. Blocks the calling thread.
    pub fn shutdown(&self, drain: Duration) -> bool {
        // Drained while the engine is still in place, so that calls made meanwhile are
        // refused with 503 like HTTP requests, not told the engine is gone.
        let (handle, shared) = {
            let running = self.running();
            let Some(running) = running.as_ref() else {
                return true;
            };
            (running.runtime.handle().clone(), running.shared.clone())
        };
        shared.draining.store(true, std::sync::atomic::Ordering::SeqCst);
        info!(in_flight = shared.tasks.len(), "draining");
        let drained = handle.block_on(async {
            let mut tasks = shared.tasks.watch_len();
            // Every admitted request answered: its permit is back. Waiting for the task table
            // alone would miss a request admitted before the drain whose body was still being
            // read, and it would be queued once the links had closed.
            let all = u32::try_from(self.config.capacity).unwrap_or(u32::MAX);
            let answered = async {
                let _all = shared.capacity.acquire_many(all).await;
                let _ = tasks.wait_for(|n| *n == 0).await;
            };
            let drained = tokio::time::timeout(drain, answered).await.is_ok();
            if !drained {
                let left = shared.tasks.fail_all(&Outcome::error(503, STOPPED));
                warn!(left, "drain timed out; unfinished tasks answered 503");
                let _ = tokio::time::timeout(FLUSH_GRACE, tasks.wait_for(|n| *n == 0)).await;
            }
            drained
        });
        let Some(Running { runtime, http, .. }) = self.running().take() else {
            return drained; // another shutdown call stopped it meanwhile
        };
        runtime.block_on(async {
            shared.shutdown.send_replace(true);
            if let Some(Http::Serving(http)) = http {
                let _ = http.await;
            }
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

/// A submitted call's answer, given exactly once: by the request's end, or with 503 when the
/// runtime drops the request first (the engine stopping).
struct AnswerOnce<F: FnOnce(Outcome)>(Option<F>);

impl<F: FnOnce(Outcome)> AnswerOnce<F> {
    fn send(mut self, outcome: Outcome) {
        if let Some(answer) = self.0.take() {
            answer(outcome);
        }
    }
}

impl<F: FnOnce(Outcome)> Drop for AnswerOnce<F> {
    fn drop(&mut self) {
        if let Some(answer) = self.0.take() {
            answer(Outcome::error(503, STOPPED));
        }
    }
}

/// Binds the HTTP address without listening on it yet; `SO_REUSEADDR` as `TcpListener::bind`
/// sets it, so a restarted server is not refused by connections of the last run in TIME_WAIT.
async fn bind_http(address: &str) -> std::io::Result<TcpSocket> {
    let resolved = tokio::net::lookup_host(address).await?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "the address resolves to nothing")
    })?;
    let socket = if resolved.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(resolved)?;
    Ok(socket)
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(running) = self.running().take() {
            running.shared.shutdown.send_replace(true);
            running.runtime.shutdown_background();
        }
    }
}

/// The engine's threads when the config leaves them to it: a quarter of the cores, 1 to 4.
///
/// The workers do the real work and share the cores with the engine; the engine's threads
/// mostly wait for them, and every extra one costs wake-ups between threads. On 2 cores, one
/// thread against two (alternating 4 s runs): echo at 8 connections 7.4k against 5.0k req/s
/// (medians), 66 against 90 µs of engine CPU per request; the 3-stage pipeline at 8 connections
/// 4.5k against 3.3k, at 64 level. From 8 cores on a second thread parses HTTP beside the first.
fn default_threads(cores: usize) -> usize {
    (cores / 4).clamp(1, 4)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_engine_takes_a_quarter_of_the_cores_from_one_to_four_threads() {
        let threads: Vec<usize> = [1, 2, 4, 7, 8, 16, 64].map(super::default_threads).to_vec();
        assert_eq!(threads, [1, 1, 1, 1, 2, 4, 4]);
    }
}
