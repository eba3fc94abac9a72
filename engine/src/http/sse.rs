//! Server-sent event streams: one `data:` event per worker event, keep-alive comments while
//! idle, and an `event: error` whenever the pipeline fails, before or after the first event
//! (a streaming route always answers `200 text/event-stream` once the request is admitted).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio::time::{Instant, Interval, Sleep};

use crate::tasks::{Outcome, TaskGuard};

/// Content type of an event stream.
pub const EVENT_STREAM: &str = "text/event-stream";

/// One `data:` event; every line of the text gets its own `data:` field so newlines survive.
pub fn data_event(text: &[u8]) -> Bytes {
    framed_event(None, text)
}

/// The error event, in mosec's format: `event: error` with the data
/// `SSE inference error: <status>: <reason>: <message>`, e.g.
/// `SSE inference error: 422: Unprocessable Content: request validation error: text is required`.
pub fn error_event(status: u16, message: &[u8]) -> Bytes {
    let mut text = format!("SSE inference error: {status}: {}: ", reason(status)).into_bytes();
    text.extend_from_slice(message);
    framed_event(Some("error"), &text)
}

/// The reason phrase of an error status as mosec names it (RFC 9110 wording: 422 is
/// "Unprocessable Content", where the `http` crate still says "Entity").
fn reason(status: u16) -> &'static str {
    match status {
        422 => "Unprocessable Content",
        _ => http::StatusCode::from_u16(status)
            .ok()
            .and_then(|code| code.canonical_reason())
            .unwrap_or("Error"),
    }
}

fn framed_event(name: Option<&str>, text: &[u8]) -> Bytes {
    let mut event = Vec::with_capacity(text.len() + 32);
    if let Some(name) = name {
        event.extend_from_slice(b"event: ");
        event.extend_from_slice(name.as_bytes());
        event.push(b'\n');
    }
    for line in text.split(|&b| b == b'\n') {
        event.extend_from_slice(b"data: ");
        event.extend_from_slice(line);
        event.push(b'\n');
    }
    event.push(b'\n');
    event.into()
}

/// The body of a streaming response. It owns the task (and its capacity permit), so a client
/// that disconnects drops the body, which removes the task and tells its worker to stop.
pub struct EventStream {
    first: Option<Bytes>,
    events: mpsc::UnboundedReceiver<Outcome>,
    outcome: Option<oneshot::Receiver<Outcome>>,
    keepalive: Interval,
    idle: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    finished: bool,
    _task: TaskGuard,
    _permit: OwnedSemaphorePermit,
}

impl EventStream {
    /// A stream that starts with `first` (an event already received).
    pub fn new(
        first: Bytes,
        events: mpsc::UnboundedReceiver<Outcome>,
        outcome: oneshot::Receiver<Outcome>,
        keepalive: Duration,
        idle_timeout: Duration,
        task: TaskGuard,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        let mut keepalive = tokio::time::interval_at(Instant::now() + keepalive, keepalive);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            first: Some(first),
            events,
            outcome: Some(outcome),
            keepalive,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            idle_timeout,
            finished: false,
            _task: task,
            _permit: permit,
        }
    }

    fn finish_with(
        &mut self,
        last: Option<Bytes>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>> {
        self.finished = true;
        Poll::Ready(last.map(|bytes| Ok(Frame::data(bytes))))
    }
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        // Events first: the worker sends them before its result, so when the result is ready
        // every event before it is already queued here.
        if let Poll::Ready(Some(event)) = this.events.poll_recv(cx) {
            let deadline = Instant::now() + this.idle_timeout;
            this.idle.as_mut().reset(deadline);
            return Poll::Ready(Some(Ok(Frame::data(data_event(&event.body)))));
        }
        if let Some(outcome) = this.outcome.as_mut() {
            if let Poll::Ready(result) = Pin::new(outcome).poll(cx) {
                this.outcome = None;
                return match result {
                    Ok(done) if done.status == 200 => this.finish_with(None),
                    Ok(failed) => this.finish_with(Some(error_event(failed.status, &failed.body))),
                    Err(_) => this.finish_with(Some(error_event(500, b"inference internal error"))),
                };
            }
        }
        if this.idle.as_mut().poll(cx).is_ready() {
            let message = format!("stream idle for {} ms", this.idle_timeout.as_millis());
            return this.finish_with(Some(error_event(408, message.as_bytes())));
        }
        if this.keepalive.poll_tick(cx).is_ready() {
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b": keep-alive\n\n")))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_framed_line_by_line() {
        assert_eq!(data_event(b"hello"), Bytes::from_static(b"data: hello\n\n"));
        assert_eq!(data_event(b"a\nb"), Bytes::from_static(b"data: a\ndata: b\n\n"));
        let error = error_event(422, b"request validation error: text is required");
        assert_eq!(
            error,
            Bytes::from_static(
                b"event: error\ndata: SSE inference error: 422: Unprocessable Content: \
                  request validation error: text is required\n\n"
            )
        );
        assert_eq!(
            error_event(500, b"inference internal error"),
            Bytes::from_static(
                b"event: error\ndata: SSE inference error: 500: Internal Server Error: \
                  inference internal error\n\n"
            )
        );
        assert!(error_event(503, b"a\nb").ends_with(b": Service Unavailable: a\ndata: b\n\n"));
    }
}
