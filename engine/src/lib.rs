//! The Rust controller of mosec.
//!
//! Python worker processes run the user's model code; this engine owns everything between them
//! and the network: HTTP, the task table, per-stage queues with dynamic batching, the worker
//! links, metrics and graceful shutdown. It never parses a user payload.
//!
//! # Layout
//! - [`config`]: the one `Config` struct and its defaults.
//! - [`engine`]: start, readiness, drain and stop: the control API.
//! - [`state`]: what a running engine's parts share.
//! - [`flow`]: a route's flow graph (stages, ensembles, switches) compiled for walking.
//! - [`request`]: one client request, HTTP or in-process: admission, submission, deadline.
//! - [`completions`]: outcomes of in-process calls submitted without waiting.
//! - [`tasks`]: the task table, ids, and how a task moves through its flow.
//! - [`batcher`]: per-stage queues and the dynamic batcher.
//! - [`protocol`]: frames on the worker link (layout documented there).
//! - [`link`]: serving one worker process over its Unix socket.
//! - [`stuck`]: workers busy past their forward timeout, reported to the supervisor.
//! - [`shm_room`]: whether /dev/shm can hold the arena, checked before creating it.
//! - [`refs`]: store references: which objects a task holds, released on any end.
//! - [`http`]: routes, status mapping, responses.
//! - [`metrics`]: Prometheus metrics.
//! - [`logging`]: structured logs shared in shape with the Python side.
//! - `py` (feature `python`): the `mosec._engine` extension module.
//!
//! Raw memory access lives only in the `shm` crate; this crate forbids it (the attribute below).

#![forbid(unsafe_code)]

pub mod batcher;
pub mod completions;
pub mod config;
pub mod engine;
pub mod error;
pub mod flow;
pub mod http;
pub mod link;
pub mod logging;
pub mod metrics;
pub mod protocol;
pub mod refs;
pub mod request;
pub mod shm_room;
pub mod state;
pub mod stuck;
pub mod tasks;

#[cfg(feature = "python")]
mod py;

pub use config::Config;
pub use engine::Engine;
pub use error::EngineError;
