//! Accepting HTTP connections: HTTP/1.1 and HTTP/2 with prior knowledge on one port, at most
//! `max_connections` at once, and a close at shutdown that resets no request.
//!
//! **The cap.** A permit of a semaphore is taken *before* each accept and held by the
//! connection until it ends. At the cap the server stops accepting: new connections wait in
//! the kernel's backlog (their handshake completes, their request waits) and are served as
//! soon as a connection ends; only once the backlog is full does the kernel drop new SYNs
//! (the client retries). The other choice, accepting and closing at once, spends a
//! descriptor and a reset on every refused client and turns a brief burst into errors; holding
//! the accept is backpressure, and the header timeout bounds how long a slow client can keep
//! a slot. (A slow client can still take every slot, one per header timeout, from a single
//! address: limits per address belong in a proxy.)
//!
//! **The close.** Once shutdown is signalled the connections still queued in the backlog are
//! accepted and served (each request gets the drain's 503) before the listener closes: closing
//! it with connections queued would reset them. Each connection then closes itself once quiet
//! (see `connection.rs`); whatever is still open after [`CLOSE_GRACE`] is dropped.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::connection::{Connection, Stop, Watched};
use super::handler::{handle, refuse_ambiguous};
use crate::state::{stopped, Shared};

/// How long open connections get to finish their responses once the engine stops.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Serves HTTP on `listener` until shutdown, then closes connections gracefully.
pub async fn serve_http(listener: TcpListener, shared: Arc<Shared>) {
    let header_timeout = Duration::from_millis(shared.config.header_timeout_ms);
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let slots = Arc::new(Semaphore::new(shared.config.max_connections));
    let mut connections = JoinSet::new();
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        // Reap finished connections so the set does not grow with every one served.
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            () = stopped(&mut shutdown) => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // the semaphore is never closed
            },
        };
        let stream = tokio::select! {
            () = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    // Usually EMFILE: back off briefly rather than spin.
                    warn!(error = %err, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        connections.spawn(serve_one(stream, Some(permit), &builder, &shared, header_timeout));
    }
    // Connections whose handshake the kernel completed: served (503) rather than reset. Past
    // the cap if need be: the backlog bounds them, and each gets one answer and closes.
    let mut swept = 0usize;
    while let Some(stream) = poll_fn(|cx| match listener.poll_accept(cx) {
        Poll::Ready(Ok((stream, _))) => Poll::Ready(Some(stream)),
        Poll::Ready(Err(_)) | Poll::Pending => Poll::Ready(None),
    })
    .await
    {
        swept += 1;
        connections.spawn(serve_one(stream, None, &builder, &shared, header_timeout));
    }
    drop(listener);
    debug!(swept, open = connections.len(), "HTTP listener closed");
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.shutdown().await;
}

/// The future serving one accepted connection (holding its slot of the cap until it ends).
fn serve_one(
    stream: TcpStream,
    permit: Option<OwnedSemaphorePermit>,
    builder: &Builder<TokioExecutor>,
    shared: &Arc<Shared>,
    header_timeout: Duration,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let _ = stream.set_nodelay(true);
    let state = Connection::new();
    let service = {
        let (shared, state) = (shared.clone(), state.clone());
        service_fn(move |request| {
            let shared = shared.clone();
            let ambiguous = state.next_request_is_ambiguous();
            async move {
                if ambiguous {
                    Ok(refuse_ambiguous(request, &shared).await)
                } else {
                    handle(request, shared).await
                }
            }
        })
    };
    let io = Watched::new(stream, state.clone());
    let connection = builder.serve_connection(io, service).into_owned();
    let stopping = shared.shutdown.subscribe();
    async move {
        let _permit = permit;
        let mut connection = std::pin::pin!(connection);
        // A client that resets its connection is not an engine error: results are dropped.
        tokio::select! {
            _ = connection.as_mut() => return,
            stop = state.until_stop(header_timeout, stopping) => {
                if stop == Stop::HeadTimeout {
                    debug!("a client did not finish its request head in time; closed");
                    return;
                }
            }
        }
        tokio::select! {
            _ = connection.as_mut() => return,
            () = state.until_quiet() => {}
        }
        connection.as_mut().graceful_shutdown();
        let _ = connection.await;
    }
}
