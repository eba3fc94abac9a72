//! Server-sent event streams: one `data:` event per worker event, keep-alive comments while
//! idle, an `event: error` when the pipeline fails after streaming began.

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
    let mut event = Vec::with_capacity(text.len() + 16);
    for line in text.split(|&b| b == b'\n') {
        event.extend_from_slice(b"data: ");
        event.extend_from_slice(line);
        event.push(b'\n');
    }
    event.push(b'\n');
    event.into()
}

/// The error event: `event: error` with `{"status": .., "message": ..}` as its data.
pub fn error_event(status: u16, message: &[u8]) -> Bytes {
    let data = serde_json::json!({
        "status": status,
        "message": String::from_utf8_lossy(message),
    });
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
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
        let error = error_event(422, b"bad \"field\"");
        assert_eq!(
            error,
            Bytes::from_static(
                b"event: error\ndata: {\"status\":422,\"message\":\"bad \\\"field\\\"\"}\n\n"
            )
        );
    }
}
