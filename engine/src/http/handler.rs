//! Request routing: readiness, metrics, documents, and inference routes.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, ALLOW, CONNECTION};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::infer::infer;
use super::request_id::{request_id, REQUEST_ID};
use super::response::{finish, text, with_body, Body, SHUTTING_DOWN};
use crate::state::Shared;

/// Content type of the metrics, mosec's (Prometheus reads the text either way).
pub const METRICS_MIME: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Handles one request; never fails (every problem becomes a status code).
pub async fn handle(
    request: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_owned();
    let id = request_id(request.headers());
    let is_get = matches!(*request.method(), Method::GET | Method::HEAD);
    let http1 = request.version() <= Version::HTTP_11;
    let response = match path.as_str() {
        "/" | "/metrics" if !is_get => not_allowed("GET, HEAD"),
        "/" => readiness(&shared),
        "/metrics" => metrics(&shared),
        _ if path.starts_with("/openapi") => match shared.documents.serve(&path) {
            Some(response) if is_get => response,
            Some(_) => not_allowed("GET, HEAD"),
            None => text(StatusCode::NOT_FOUND, format!("not found: {path}")),
        },
        _ => match shared.routes.get(&path) {
            Some(route) if request.method() == Method::POST => {
                let response = infer(request, route, &shared, id.clone()).await;
                shared.metrics.count_response(response.status().as_u16(), &path);
                response
            }
            Some(_) => not_allowed("POST"),
            None => text(StatusCode::NOT_FOUND, format!("not found: no route {path}")),
        },
    };
    let mut response = with_request_id(response, id);
    // Every answer of the drain closes its connection, so that no client sends another
    // request on a connection the server is about to close (which would reset it); so does a
    // 413, whose body was left unread and so cannot be followed by another request.
    let closes = shared.is_draining() || response.status() == StatusCode::PAYLOAD_TOO_LARGE;
    if http1 && closes {
        response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(finish(response))
}

/// The answer to a request whose head carried both `Content-Length` and `Transfer-Encoding`
/// (or conflicting lengths; see `framing.rs`): 400, and the connection closes. The body is
/// read first (up to `max_request_size`), so that closing does not reset the connection
/// before the client has read the answer.
pub async fn refuse_ambiguous(request: Request<Incoming>, shared: &Shared) -> Response<Body> {
    let id = request_id(request.headers());
    let body = Limited::new(request.into_body(), shared.config.max_request_size);
    let _ = tokio::time::timeout(AMBIGUOUS_BODY_WAIT, body.collect()).await;
    let message = "bad request: a request may not carry both Content-Length and \
        Transfer-Encoding";
    let mut response = with_request_id(text(StatusCode::BAD_REQUEST, message), id);
    response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    finish(response)
}

/// How long the body of a refused ambiguous request may take to arrive.
const AMBIGUOUS_BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn with_request_id(mut response: Response<Body>, id: Bytes) -> Response<Body> {
    if let Ok(value) = HeaderValue::from_maybe_shared(id) {
        response.headers_mut().insert(HeaderName::from_static(REQUEST_ID), value);
    }
    response
}

/// `GET /`: the engine accepts connections only once every stage has warmed up and connected
/// (see `Engine::listen`), so a client that can connect is served; 503 once the drain starts.
fn readiness(shared: &Shared) -> Response<Body> {
    if shared.is_draining() {
        text(StatusCode::SERVICE_UNAVAILABLE, SHUTTING_DOWN)
    } else {
        text(StatusCode::OK, "MOSEC service")
    }
}

fn metrics(shared: &Shared) -> Response<Body> {
    shared.metrics.remaining_task.set(shared.tasks.len() as i64);
    if let Some(arena) = &shared.tasks.stores().arena {
        let stats = arena.stats();
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        shared.metrics.shm_capacity.set(gauge(stats.capacity));
        shared.metrics.shm_used.set(gauge(stats.used_bytes));
        shared.metrics.shm_objects.set(gauge(stats.objects));
    }
    with_body(StatusCode::OK, METRICS_MIME, shared.metrics.render())
}

fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut response =
        text(StatusCode::METHOD_NOT_ALLOWED, format!("method not allowed: use {allow}"));
    response.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    response
}
