//! One client request, whoever sends it: admission, submission, deadline.
//!
//! HTTP (`http/infer.rs`) and in-process calls ([`crate::Engine::call`]) both come through
//! here, so they are refused for the same reasons with the same words (draining 503, capacity
//! 429, body size 413) and run the same task life: one capacity permit per request, a
//! [`TaskGuard`] that removes the task (and its member tasks) on every exit, one deadline.
//! What is HTTP's own (content encodings, 415/400, event streams, headers) stays there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tracing::debug;

use crate::http::response::{status_from_worker, SHUTTING_DOWN};
use crate::metrics::StageLabels;
use crate::refs::{self, Lease};
use crate::state::{Route, Shared};
use crate::tasks::{Outcome, TaskGuard};

/// Why a request was not admitted: its status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 503, 429, 413 (or HTTP's own 415, 400).
    pub status: u16,
    /// The body sent back.
    pub message: String,
}

impl From<Refusal> for Outcome {
    fn from(refusal: Refusal) -> Self {
        Outcome::error(refusal.status, refusal.message)
    }
}

/// Checks draining and capacity; the permit is held until the request is answered, so
/// `capacity` bounds client requests in flight (an ensemble's member tasks take none).
///
/// # Errors
/// 503 while draining, 429 when `capacity` requests are in flight already.
pub fn admit(shared: &Shared) -> Result<OwnedSemaphorePermit, Refusal> {
    let draining = || Refusal { status: 503, message: SHUTTING_DOWN.to_owned() };
    if shared.is_draining() {
        return Err(draining());
    }
    let permit = shared.capacity.clone().try_acquire_owned().map_err(|_| Refusal {
        status: 429,
        message: format!("too many requests: {} tasks already in flight", shared.config.capacity),
    })?;
    // The drain waits until every permit is back, after setting `draining`: looked at again
    // now that the permit is taken, so a request cannot slip in between (it would be queued
    // after the drain ended, with nobody left to answer it).
    if shared.is_draining() {
        return Err(draining());
    }
    Ok(permit)
}

/// The 413 of a body over `limit` bytes.
pub fn too_large(limit: usize) -> Refusal {
    Refusal { status: 413, message: format!("request body too large: the limit is {limit} bytes") }
}

/// The 408 of a request that got no answer within `timeout`.
pub fn timeout_outcome(timeout: Duration) -> Outcome {
    Outcome::error(408, format!("request timeout: no answer within {} ms", timeout.as_millis()))
}

/// The server's whole-request deadline.
pub fn deadline(shared: &Shared) -> Duration {
    Duration::from_millis(shared.config.timeout_ms)
}

/// Creates a task for the request and queues it at its route's first step.
///
/// The guard removes the task when dropped: on every exit, also when the client disconnects
/// and hyper drops the handler (or, for a stream, the response body).
pub fn submit(
    body: Bytes,
    route: &Route,
    shared: &Shared,
    request_id: &Bytes,
    events: Option<mpsc::UnboundedSender<Outcome>>,
) -> (TaskGuard, oneshot::Receiver<Outcome>) {
    submit_input(body, None, route, shared, request_id, events)
}

/// [`submit`] with the lease on the store objects `body` names, when it is a reference.
fn submit_input(
    body: Bytes,
    stored: Option<Arc<Lease>>,
    route: &Route,
    shared: &Shared,
    request_id: &Bytes,
    events: Option<mpsc::UnboundedSender<Outcome>>,
) -> (TaskGuard, oneshot::Receiver<Outcome>) {
    let (task_id, dispatches, outcome) =
        shared.tasks.submit_input(&route.flow, body, stored, events);
    let guard = TaskGuard::new(shared.tasks.clone(), task_id);
    shared.queue(dispatches, request_id);
    (guard, outcome)
}

/// Runs a plain task to its end or to `timeout`.
pub async fn run(
    body: Bytes,
    route: &Route,
    shared: &Shared,
    request_id: &Bytes,
    timeout: Duration,
) -> Outcome {
    let (_guard, outcome) = submit(body, route, shared, request_id, None);
    wait(outcome, timeout).await
}

/// A task's outcome, or 408 once `timeout` has passed.
async fn wait(outcome: oneshot::Receiver<Outcome>, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, outcome).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_dropped)) => Outcome::error(500, "inference internal error"),
        Err(_elapsed) => timeout_outcome(timeout),
    }
}

/// An in-process request to the route at `path`: the admission and task of an HTTP request
/// to it, with the body given as is (no content encoding) and `timeout` as its deadline (zero:
/// the server's). Counted in the metrics like an HTTP request.
///
/// A path with no route is 404; a streaming route is 400, since a call has no event stream
/// to deliver its events to.
pub async fn call(shared: &Shared, path: &str, body: Bytes, timeout: Duration) -> Outcome {
    match start_call(shared, path, CallInput::Inline(body), timeout) {
        Ok(started) => started.finish(shared).await,
        Err(refused) => refused,
    }
}

/// An in-process call admitted and queued, not answered yet.
pub struct StartedCall {
    path: String,
    started: Instant,
    timeout: Duration,
    /// Removes the task on every end; the permit is its place in the capacity.
    guard: TaskGuard,
    _permit: OwnedSemaphorePermit,
    outcome: oneshot::Receiver<Outcome>,
}

/// What an in-process call hands the route's first step.
#[derive(Debug, Clone)]
pub enum CallInput {
    /// The request body, as an HTTP request's.
    Inline(Bytes),
    /// A store reference (the layout of `refs.rs`) to objects the caller stored and hands
    /// over with the call: the call's task owns them from then on, and they are released like
    /// any stage's output, also when the call is refused.
    Stored(Bytes),
}

/// The first half of [`call`], which needs no runtime: admits the call and queues its task
/// now, on the calling thread, so that a call started before a drain begins is one the drain
/// waits for. The refusal (already counted in the metrics) otherwise.
///
/// # Errors
/// The outcome of a call refused at once: 404, 400 (also for a reference the stores refuse),
/// 503, 429, 413.
pub fn start_call(
    shared: &Shared,
    path: &str,
    input: CallInput,
    timeout: Duration,
) -> Result<StartedCall, Outcome> {
    let started = Instant::now();
    let refuse = |outcome: Outcome| Err(record(shared, path, started, outcome));
    // Adopted before anything can refuse the call, so that a refusal (dropping the lease)
    // releases the objects instead of leaving them to nobody.
    let (body, stored) = match input {
        CallInput::Inline(body) => (body, None),
        CallInput::Stored(reference) => match adopt_input(shared, &reference) {
            Ok(lease) => (reference, lease),
            Err(refusal) => return refuse(refusal),
        },
    };
    let Some(route) = shared.routes.get(path) else {
        return refuse(Outcome::error(404, format!("not found: no route {path}")));
    };
    if route.stream {
        return refuse(Outcome::error(
            400,
            format!("bad request: route {path} streams events, which a call cannot receive"),
        ));
    }
    let permit = match admit(shared) {
        Err(refusal) => return refuse(refusal.into()),
        Ok(_) if body.len() > shared.config.max_request_size => {
            return refuse(too_large(shared.config.max_request_size).into())
        }
        Ok(permit) => permit,
    };
    let timeout = if timeout.is_zero() { deadline(shared) } else { timeout };
    let request_id = Bytes::from(uuid::Uuid::new_v4().simple().to_string());
    let (guard, outcome) = submit_input(body, stored, route, shared, &request_id, None);
    Ok(StartedCall { path: path.to_owned(), started, timeout, guard, _permit: permit, outcome })
}

impl StartedCall {
    /// Waits for the call's outcome, up to its deadline, and counts it.
    pub async fn finish(self, shared: &Shared) -> Outcome {
        let outcome = wait(self.outcome, self.timeout).await;
        drop(self.guard);
        record(shared, &self.path, self.started, outcome)
    }
}

/// Takes ownership of the objects a caller's reference names (all or none).
fn adopt_input(shared: &Shared, reference: &Bytes) -> Result<Option<Arc<Lease>>, Outcome> {
    let stores = shared.tasks.stores();
    let objects =
        refs::parse(reference).and_then(|objects| stores.adopt(&objects).map(|()| objects));
    match objects {
        Ok(objects) => Ok(Lease::new(stores, objects)),
        Err(err) => {
            Err(Outcome::error(400, format!("bad request: refused a store reference: {err}")))
        }
    }
}

/// Counts a call's outcome in the metrics as an HTTP response to `path` would be.
fn record(shared: &Shared, path: &str, started: Instant, outcome: Outcome) -> Outcome {
    let status = status_from_worker(outcome.status).as_u16();
    if status == 200 {
        let total = shared.metrics.process_duration.get_or_create(&StageLabels::total());
        total.observe(started.elapsed().as_secs_f64());
    }
    shared.metrics.count_response(status, path);
    debug!(path, status, "call done");
    Outcome { status, ..outcome }
}
