//! Request routing: readiness, metrics, documents, and inference routes.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, ALLOW};
use http::{Method, Request, Response, StatusCode};
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
    Ok(finish(with_request_id(response, id)))
}

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
