//! Accepting HTTP connections: HTTP/1.1 and HTTP/2 with prior knowledge on one port.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tracing::warn;

use super::handler::handle;
use crate::state::{stopped, Shared};

/// How long open connections get to finish their responses once the engine stops.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Serves HTTP on `listener` until shutdown, then closes connections gracefully.
pub async fn serve_http(listener: TcpListener, shared: Arc<Shared>) {
    let builder = Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let (stream, _peer) = tokio::select! {
            () = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Usually EMFILE: back off briefly rather than spin.
                    warn!(error = %err, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let service = service_fn(move |request| handle(request, shared.clone()));
        let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that resets its connection is not an engine error.
            let _ = connection.await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(CLOSE_GRACE, graceful.shutdown()).await;
}
