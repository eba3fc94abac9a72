//! Running one HTTP request through its route's flow, plain or streaming; admission and the
//! task itself are shared with in-process calls (`crate::request`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{
    HeaderValue, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, RETRY_AFTER, VARY,
};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tracing::{debug, warn};

use super::compression::{self, DecodeError};
use super::response::{status_from_worker, text, with_body, Body};
use super::sse::{data_event, error_event, EventStream, EVENT_STREAM};
use crate::metrics::StageLabels;
use crate::request::{self, Refusal};
use crate::state::{Route, Shared};
use crate::tasks::Outcome;

/// The answer to an empty body, which runs nothing: mosec 0.9.8 answers it so (200, on plain and
/// streaming routes alike), and its clients may rely on it.
const NO_DATA: &str = "no data provided";

/// Runs one request through `route`; every failure becomes a status code.
pub async fn infer(
    request: Request<Incoming>,
    route: &Route,
    shared: &Shared,
    request_id: Bytes,
) -> Response<Body> {
    let started = Instant::now();
    let accept = compression::preferred(request.headers()).filter(|_| shared.config.compression);
    let response = match admit(request, shared).await {
        Err(refusal) => refusal,
        Ok((body, _permit)) if body.is_empty() => text(StatusCode::OK, NO_DATA),
        Ok((body, permit)) if route.stream => {
            stream(body, permit, route, shared, &request_id).await
        }
        Ok((body, _permit)) => {
            let deadline = request::deadline(shared);
            let outcome = request::run(body, route, shared, &request_id, deadline).await;
            respond(outcome, route, accept)
        }
    };
    let status = response.status().as_u16();
    if status == 200 && !route.stream {
        // A stream's answer is not over yet; its length says nothing of the service.
        let total = shared.metrics.process_duration.get_or_create(&StageLabels::total());
        total.observe(started.elapsed().as_secs_f64());
    }
    let request_id = String::from_utf8_lossy(&request_id);
    let latency_ms = started.elapsed().as_secs_f64() * 1e3;
    if status >= 500 {
        warn!(request_id = %request_id, status, latency_ms, "request failed");
    } else {
        debug!(request_id = %request_id, status, latency_ms, "request done");
    }
    response
}

/// Checks draining and capacity (shared with in-process calls), then reads (and
/// decompresses) the body within its limit.
async fn admit(
    request: Request<Incoming>,
    shared: &Shared,
) -> Result<(Bytes, OwnedSemaphorePermit), Response<Body>> {
    let permit = request::admit(shared).map_err(refused)?;
    let limit = shared.config.max_request_size;
    let coding = match compression::request_coding(request.headers()) {
        Ok(Some(_)) if !shared.config.compression => {
            return Err(text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported content-encoding: compression is off (start the server with --compression)",
            ))
        }
        Ok(coding) => coding,
        Err(DecodeError::Unsupported(coding)) => {
            return Err(text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported content-encoding {coding:?}: use gzip or zstd"),
            ))
        }
        Err(_) => return Err(unreachable_decode()),
    };
    if declared_length(request.headers()).is_some_and(|length| length > limit as u64) {
        return Err(too_large(limit));
    }
    let body = match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(too_large(limit))
        }
        Err(err) => {
            debug!(error = %err, "reading a request body failed");
            return Err(text(StatusCode::BAD_REQUEST, "bad request: the body could not be read"));
        }
    };
    let body = match coding {
        None => body,
        Some(coding) => compression::decode(coding, &body, limit).map_err(|err| match err {
            DecodeError::TooLarge => too_large(limit),
            DecodeError::Corrupt(why) => text(
                StatusCode::BAD_REQUEST,
                format!("bad request: the body is not valid {}: {why}", coding.token()),
            ),
            DecodeError::Unsupported(_) => unreachable_decode(),
        })?,
    };
    Ok((body, permit))
}

/// The response of a refused request; a 429 says when to retry.
fn refused(refusal: Refusal) -> Response<Body> {
    let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut response = text(status, refusal.message);
    if status == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// `request_coding` only reports `Unsupported`, and `decode` never does; answer 400 rather
/// than panic if that ever changes.
fn unreachable_decode() -> Response<Body> {
    text(StatusCode::BAD_REQUEST, "bad request: the body could not be decoded")
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn too_large(limit: usize) -> Response<Body> {
    refused(request::too_large(limit))
}

/// The response for a finished plain task: the output with the route's type, or the error.
fn respond(outcome: Outcome, route: &Route, accept: Option<compression::Coding>) -> Response<Body> {
    let status = status_from_worker(outcome.status);
    if status != StatusCode::OK {
        return text(status, outcome.body);
    }
    let Some(coding) = accept.filter(|_| !outcome.body.is_empty()) else {
        return with_body(status, &route.mime, outcome.body);
    };
    match compression::encode(coding, &outcome.body) {
        Ok(packed) => {
            let mut response = with_body(status, &route.mime, packed);
            let headers = response.headers_mut();
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static(coding.token()));
            headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
            response
        }
        Err(err) => {
            debug!(error = %err, "compressing a response failed; sent as is");
            with_body(status, &route.mime, outcome.body)
        }
    }
}

/// Runs a streaming task. Once admitted, the answer is always an event stream, as in mosec:
/// an error before the first event is a stream of one `event: error`; after it, the stream
/// lives while events keep coming and ends with the outcome (an error event when it failed).
async fn stream(
    body: Bytes,
    permit: OwnedSemaphorePermit,
    route: &Route,
    shared: &Shared,
    request_id: &Bytes,
) -> Response<Body> {
    let (events_sender, mut events) = mpsc::unbounded_channel();
    let (guard, mut outcome) =
        request::submit(body, route, shared, request_id, Some(events_sender));
    let timeout = request::deadline(shared);
    let first = tokio::select! {
        biased;
        Some(event) = events.recv() => data_event(&event.body),
        result = &mut outcome => {
            let outcome = result.unwrap_or_else(|_| Outcome::error(500, "inference internal error"));
            let status = status_from_worker(outcome.status);
            return if status == StatusCode::OK {
                event_stream_response(http_body_util::Empty::new().boxed())
            } else {
                single_event(error_event(status.as_u16(), &outcome.body))
            };
        }
        () = tokio::time::sleep(timeout) => {
            let outcome = request::timeout_outcome(timeout);
            return single_event(error_event(outcome.status, &outcome.body));
        }
    };
    let keepalive = Duration::from_millis(shared.config.sse_keepalive_ms);
    let stream = EventStream::new(first, events, outcome, keepalive, timeout, guard, permit);
    event_stream_response(stream.boxed())
}

/// An event stream of exactly one event.
fn single_event(event: Bytes) -> Response<Body> {
    event_stream_response(http_body_util::Full::new(event).boxed())
}

fn event_stream_response(body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(EVENT_STREAM));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
