//! One HTTP connection: its socket watched as hyper reads it, its deadline for the first
//! request head, and how it ends when the server stops.
//!
//! [`Watched`] passes every byte through [`Framing`] (to refuse ambiguous framing, see
//! `framing.rs`) and notes when the connection last moved, for the close at shutdown.
//! [`serve`] runs hyper on it:
//!
//! - The first request head must be complete within the header timeout of the accept.
//!   hyper's own `header_read_timeout` covers every later HTTP/1 head (and idle keep-alive
//!   time), but not the bytes hyper-util reads first to tell HTTP/1 from HTTP/2, so a client
//!   that sends nothing, or a slow preface, is cut off here.
//! - At shutdown a connection is asked to close only once it has sent something and then
//!   been quiet for [`QUIET`]. hyper-util drops a connection that has not yet shown its
//!   version, and closes an idle keep-alive one at once; either would reset a request already
//!   on its way. Waiting lets that request in, to be answered 503 (with `connection: close`)
//!   like every other request of the drain.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::framing::Framing;

/// How long a connection must be quiet at shutdown before it is asked to close: long enough
/// for a busy client's next request on a kept-alive connection to arrive (100 ms was not, on
/// a loaded 2-core machine), short enough not to hold up the exit noticeably.
pub const QUIET: Duration = Duration::from_millis(500);

/// What the socket wrapper and the service of one connection share.
#[derive(Debug)]
pub struct Connection {
    /// The request framing followed so far.
    framing: Mutex<Framing>,
    /// Requests handed to the service so far: the index of the next one.
    requests: AtomicU64,
    /// When the connection was accepted; `last_io_us` counts from here.
    accepted: Instant,
    /// Microseconds after `accepted` of the last byte read or written; 0 before any was read.
    last_io_us: AtomicU64,
}

impl Connection {
    /// A connection accepted now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            framing: Mutex::new(Framing::default()),
            requests: AtomicU64::new(0),
            accepted: Instant::now(),
            last_io_us: AtomicU64::new(0),
        })
    }

    fn framing(&self) -> std::sync::MutexGuard<'_, Framing> {
        self.framing.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Counts a request handed to the service; true when its head was ambiguous (both
    /// `Content-Length` and `Transfer-Encoding`, or conflicting lengths). hyper hands requests
    /// of a connection over in order, and the framing has seen a head before hyper parses it.
    pub fn next_request_is_ambiguous(&self) -> bool {
        let index = self.requests.fetch_add(1, Ordering::Relaxed);
        self.framing().ambiguous().is_some_and(|first| index >= first)
    }

    fn first_head_done(&self) -> bool {
        self.framing().first_head_done()
    }

    fn moved(&self) {
        let micros = u64::try_from(self.accepted.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.last_io_us.store(micros.max(1), Ordering::Relaxed);
    }

    /// Whether the client has sent something and nothing moved for [`QUIET`] since.
    fn is_quiet(&self) -> bool {
        match self.last_io_us.load(Ordering::Relaxed) {
            0 => false,
            last => self.accepted.elapsed() >= Duration::from_micros(last) + QUIET,
        }
    }
}

/// The client socket, watched: what hyper reads goes through the connection's [`Framing`].
pub struct Watched {
    io: TokioIo<TcpStream>,
    connection: Arc<Connection>,
}

impl Watched {
    /// Wraps an accepted socket.
    pub fn new(stream: TcpStream, connection: Arc<Connection>) -> Self {
        Self { io: TokioIo::new(stream), connection }
    }
}

/// Bytes read at once into the thread's scratch buffer (hyper asks for up to its own buffer's
/// room, which grows for large bodies).
const SCRATCH: usize = 64 * 1024;

thread_local! {
    /// Where a read lands before the framing sees it and it is copied into hyper's buffer
    /// (whose cursor has no safe view of what was written to it): one per runtime thread,
    /// not one per connection.
    static SCRATCH_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; SCRATCH]);
}

impl Read for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.connection.framing().is_off() {
            // Nothing left to follow: straight into hyper's buffer.
            // (An end of file counts as movement too: the connection ends right after.)
            let read = Pin::new(&mut this.io).poll_read(cx, buf);
            if matches!(read, Poll::Ready(Ok(()))) {
                this.connection.moved();
            }
            return read;
        }
        SCRATCH_BUF.with_borrow_mut(|scratch| {
            let room = buf.remaining().min(scratch.len());
            let mut tokio_buf = tokio::io::ReadBuf::new(&mut scratch[..room]);
            let stream = this.io.inner_mut();
            match tokio::io::AsyncRead::poll_read(Pin::new(stream), cx, &mut tokio_buf) {
                Poll::Ready(Ok(())) => {
                    let read = tokio_buf.filled();
                    if !read.is_empty() {
                        this.connection.framing().feed(read);
                        this.connection.moved();
                    }
                    buf.put_slice(read);
                    Poll::Ready(Ok(()))
                }
                other => other,
            }
        })
    }
}

impl Write for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write(cx, data);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.connection.moved();
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.connection.moved();
        }
        written
    }
}

/// Why a connection should stop being served as usual.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// The first request head was not complete within the header timeout: drop it.
    HeadTimeout,
    /// The server is stopping: close it once [`Connection::until_quiet`] returns.
    Shutdown,
}

impl Connection {
    /// Waits until the first head misses its deadline or `stopping` turns true; raced by the
    /// caller against the connection itself, which ends first in the usual case.
    pub async fn until_stop(
        &self,
        header_timeout: Duration,
        mut stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Stop {
        let deadline = tokio::time::Instant::from_std(self.accepted + header_timeout);
        loop {
            if *stopping.borrow_and_update() {
                return Stop::Shutdown;
            }
            if self.first_head_done() {
                // Later heads are hyper's `header_read_timeout`'s.
                // A sender gone is a server stopping too.
                let _ = stopping.wait_for(|stop| *stop).await;
                return Stop::Shutdown;
            }
            if tokio::time::Instant::now() >= deadline {
                return Stop::HeadTimeout;
            }
            // The framing has no waker of its own: look again a little later.
            let next = (tokio::time::Instant::now() + QUIET / 4).min(deadline);
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                _ = stopping.changed() => {}
            }
        }
    }

    /// Waits until the client has sent something and then been quiet for [`QUIET`], so that
    /// asking the connection to close cannot cut off a request on its way.
    pub async fn until_quiet(&self) {
        while !self.is_quiet() {
            tokio::time::sleep(QUIET / 4).await;
        }
    }
}
