//! What the engine's socket-level tests share: HTTP on loopback, a socket path per test, and
//! a test worker that records the batches it gets.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test file uses a part

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mosec_engine::protocol::{self, read_frame, write_hello, write_items, FrameKind, Hello, Item};
use tokio::net::UnixStream;

/// A worker socket path of its own for the test `name`.
pub fn socket_path(name: &str) -> PathBuf {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    std::env::temp_dir().join(format!("mosec-test-{name}-{}-{nanos}.sock", std::process::id()))
}

/// One HTTP/1.1 request; returns (status, headers, body) as text.
pub fn request(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (headers, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = headers[9..12].parse().unwrap();
    (status, headers.to_ascii_lowercase(), body.to_owned())
}

/// One POST to `/inference`; returns (status, body).
pub fn post(port: u16, body: &[u8]) -> (u16, String) {
    let (status, _, answer) = request(port, "POST", "/inference", body);
    (status, answer)
}

/// Waits until the engine holds `tasks` requests (queued while no worker takes them).
pub fn await_in_flight(port: u16, tasks: usize) {
    let expected = format!("remaining_task {tasks}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !request(port, "GET", "/metrics", b"").2.lines().any(|line| line.ends_with(&expected)) {
        assert!(Instant::now() < deadline, "the engine never held {tasks} requests");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Posts each body to `/inference` from its own thread, each once the one before is in the
/// engine, so that they queue in this order while no worker takes them; the threads return
/// (status, body).
pub fn post_in_order(port: u16, bodies: &[&'static str]) -> Vec<JoinHandle<(u16, String)>> {
    let mut clients = Vec::new();
    for &body in bodies {
        clients.push(std::thread::spawn(move || post(port, body.as_bytes())));
        await_in_flight(port, clients.len());
    }
    clients
}

/// One batch a recording worker got: its number and the batch's payloads as text.
pub type Frame = (usize, Vec<String>);
/// Where recording workers report their batches.
pub type Frames = mpsc::Sender<Frame>;

/// A test worker on its own thread, as process `pid`. It reports the payloads of each batch
/// on `frames` and answers them with their own payloads, except that it closes its socket
/// like a killed process on a batch holding `die`, and hangs on a batch holding `spin` until
/// `kill` is sent or dropped (the supervisor's SIGKILL). It also leaves on its own after
/// answering `leave_after` batches. Returns its thread and `kill`.
pub fn spawn_recording_worker(
    socket: PathBuf,
    number: usize,
    pid: u32,
    frames: Frames,
    leave_after: Option<usize>,
) -> (JoinHandle<()>, mpsc::Sender<()>) {
    let (kill, killed) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let mut stream = UnixStream::connect(&socket).await.unwrap();
            write_hello(&mut stream, Hello { stage: 0, worker_id: 1, pid }).await.unwrap();
            let mut answered = 0;
            while let Ok(protocol::Frame::Items(FrameKind::Batch, items)) =
                read_frame(&mut stream).await
            {
                let payloads: Vec<String> =
                    items.iter().map(|i| String::from_utf8(i.payload.to_vec()).unwrap()).collect();
                let dies = payloads.iter().any(|p| p == "die");
                let spins = payloads.iter().any(|p| p == "spin");
                frames.send((number, payloads)).unwrap();
                if dies {
                    return;
                }
                if spins {
                    let _ = tokio::task::spawn_blocking(move || killed.recv()).await;
                    return;
                }
                let results: Vec<_> =
                    items.into_iter().map(|i| Item { status: 200, ..i }).collect();
                write_items(&mut stream, FrameKind::Result, &results).await.unwrap();
                answered += 1;
                if leave_after == Some(answered) {
                    return;
                }
            }
        });
    });
    (thread, kill)
}
