//! Request routing: readiness, metrics, and running a task through its route's pipeline.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, ALLOW, CONTENT_LENGTH, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use tracing::debug;

use super::response::{finish, status_from_worker, text, with_body, Body};
use crate::batcher::Queued;
use crate::state::{Route, Shared};
use crate::tasks::TaskGuard;

/// Content type of the Prometheus text exposition.
const METRICS_MIME: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Handles one request; never fails (every problem becomes a status code).
pub async fn handle(
    request: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_owned();
    let response = match (request.method(), path.as_str()) {
        (&Method::GET | &Method::HEAD, "/") => readiness(&shared),
        (&Method::GET | &Method::HEAD, "/metrics") => metrics(&shared),
        (_, "/" | "/metrics") => not_allowed("GET, HEAD"),
        (method, _) => match shared.routes.get(&path) {
            Some(route) if method == Method::POST => {
                let response = infer(request, route, &shared).await;
                shared
                    .metrics
                    .count_response(response.status().as_u16(), &path);
                response
            }
            Some(_) => not_allowed("POST"),
            None => text(StatusCode::NOT_FOUND, format!("not found: no route {path}")),
        },
    };
    Ok(finish(response))
}

fn readiness(shared: &Shared) -> Response<Body> {
    if shared.is_draining() {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "service unavailable: server is shutting down",
        )
    } else if shared.is_ready() {
        text(StatusCode::OK, "mosec service is ready")
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "service unavailable: workers are starting",
        )
    }
}

fn metrics(shared: &Shared) -> Response<Body> {
    shared.metrics.remaining_task.set(shared.tasks.len() as i64);
    with_body(StatusCode::OK, METRICS_MIME, shared.metrics.render())
}

fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed: use {allow}"),
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

fn too_large(limit: usize) -> Response<Body> {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body too large: the limit is {limit} bytes"),
    )
}

/// Runs one request through its route's pipeline.
async fn infer(request: Request<Incoming>, route: &Route, shared: &Shared) -> Response<Body> {
    if shared.is_draining() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "service unavailable: server is shutting down",
        );
    }
    // Held until the response is built: one permit per task in flight.
    let Ok(_permit) = shared.capacity.clone().try_acquire_owned() else {
        let mut response = text(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many requests: {} tasks already in flight",
                shared.config.capacity
            ),
        );
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let limit = shared.config.max_request_size;
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return too_large(limit);
    }
    let body = match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => return too_large(limit),
        Err(err) => {
            debug!(error = %err, "reading a request body failed");
            return text(
                StatusCode::BAD_REQUEST,
                "bad request: the body could not be read",
            );
        }
    };

    let (task_id, hop, outcome) = shared.tasks.create(route.pipeline.clone());
    // Dropped on every exit, also when the client disconnects and hyper drops this future.
    let _guard = TaskGuard::new(shared.tasks.clone(), task_id);
    shared.stages[hop.stage].queue.push(Queued {
        task_id,
        flags: hop.flags,
        payload: body,
    });

    match tokio::time::timeout(Duration::from_millis(shared.config.timeout_ms), outcome).await {
        Ok(Ok(outcome)) => {
            let status = status_from_worker(outcome.status);
            if status == StatusCode::OK {
                with_body(status, &route.mime, outcome.body)
            } else {
                text(status, outcome.body)
            }
        }
        Ok(Err(_dropped)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "inference internal error",
        ),
        Err(_elapsed) => text(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request timeout: no answer within {} ms",
                shared.config.timeout_ms
            ),
        ),
    }
}
