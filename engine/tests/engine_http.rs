//! The engine over real sockets: HTTP on loopback and a worker played by this test over the
//! worker link, so the controller is checked without Python.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed step is a failed test

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mosec_engine::config::{RouteConfig, StageConfig};
use mosec_engine::protocol::{read_frame, write_hello, write_items, Frame, FrameKind, Hello};
use mosec_engine::{Config, Engine};
use tokio::net::UnixStream;

/// What the test worker does with each batch.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Answer every item with its own payload.
    Echo,
    /// Never answer.
    Hang,
    /// Close the socket as soon as a batch arrives, like a killed process.
    Die,
}

fn socket_path(name: &str) -> PathBuf {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    std::env::temp_dir().join(format!("mosec-test-{name}-{}-{nanos}.sock", std::process::id()))
}

fn start(name: &str, timeout_ms: u64, max_request_size: usize) -> (Engine, u16, PathBuf) {
    let socket = socket_path(name);
    let config = Config {
        address: "127.0.0.1".into(),
        port: 0,
        timeout_ms,
        max_request_size,
        socket_path: socket.display().to_string(),
        engine_threads: 1,
        stages: vec![StageConfig {
            name: "Echo".into(),
            num: 1,
            max_batch_size: 4,
            max_wait_time_ms: 5,
            wait_for_batch: true,
            forward_timeout_ms: 0,
        }],
        routes: vec![RouteConfig {
            path: "/inference".into(),
            stages: vec![0],
            mime: "application/json".into(),
            stream: false,
            flow: Vec::new(),
        }],
        ..Config::default()
    };
    let engine = Engine::new(config).unwrap();
    engine.start().unwrap();
    let port = engine.port().unwrap();
    (engine, port, socket)
}

/// Runs a test worker on its own thread until its socket closes.
fn spawn_worker(socket: PathBuf, behaviour: Behaviour) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let mut stream = UnixStream::connect(&socket).await.unwrap();
            write_hello(&mut stream, Hello { stage: 0, worker_id: 1, pid: std::process::id() })
                .await
                .unwrap();
            while let Ok(Frame::Items(FrameKind::Batch, items)) = read_frame(&mut stream).await {
                match behaviour {
                    Behaviour::Echo => {
                        let results: Vec<_> = items
                            .into_iter()
                            .map(|mut item| {
                                item.status = 200;
                                item
                            })
                            .collect();
                        write_items(&mut stream, FrameKind::Result, &results).await.unwrap();
                    }
                    Behaviour::Hang => {}
                    Behaviour::Die => return,
                }
            }
        });
    })
}

/// Listens once the worker is in, as the supervisor does.
fn wait_ready(engine: &Engine) {
    assert!(engine.listen(Duration::from_secs(10)).unwrap(), "worker never connected");
    assert!(engine.is_ready());
}

/// One HTTP/1.1 request; returns (status, headers, body) as text.
fn request(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
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

#[test]
fn echoes_through_a_worker_and_serves_health_and_metrics() {
    let (engine, port, socket) = start("echo", 3000, 1024);
    // Bound at start, so the port is taken, but refusing connections until the worker is in.
    let refused = TcpStream::connect(("127.0.0.1", port)).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(!engine.listen(Duration::from_millis(50)).unwrap(), "no worker yet");
    let worker = spawn_worker(socket, Behaviour::Echo);
    wait_ready(&engine);
    let (status, headers, body) = request(port, "POST", "/inference", b"{\"x\": 1}");
    assert_eq!((status, body.as_str()), (200, "{\"x\": 1}"));
    assert!(headers.contains("content-type: application/json"));
    assert!(headers.contains("server: mosec/"));
    assert_eq!(request(port, "GET", "/", b"").0, 200);
    let (_, _, metrics) = request(port, "GET", "/metrics", b"");
    assert!(
        metrics.contains("mosec_service_throughput_total{code=\"200\",endpoint=\"/inference\"} 1")
    );
    assert!(metrics.contains("mosec_service_batch_size_count{stage=\"Echo\",connection=\"1\"} 1"));
    assert!(engine.shutdown(Duration::from_secs(1)));
    worker.join().unwrap();
}

#[test]
fn refuses_bad_requests_with_clear_statuses() {
    let (engine, port, socket) = start("refuse", 3000, 16);
    let worker = spawn_worker(socket, Behaviour::Echo);
    wait_ready(&engine);
    let (status, headers, body) = request(port, "POST", "/inference", &[b'x'; 17]);
    assert_eq!(status, 413);
    assert!(body.contains("16 bytes"));
    assert!(headers.contains("content-type: text/plain"));
    assert_eq!(request(port, "POST", "/nowhere", b"").0, 404);
    let (status, headers, _) = request(port, "GET", "/inference", b"");
    assert_eq!(status, 405);
    assert!(headers.contains("allow: post"));
    assert_eq!(request(port, "DELETE", "/metrics", b"").0, 405);
    engine.shutdown(Duration::from_secs(1));
    worker.join().unwrap();
}

#[test]
fn a_silent_worker_means_408_at_the_deadline() {
    let (engine, port, socket) = start("hang", 200, 1024);
    let worker = spawn_worker(socket, Behaviour::Hang);
    wait_ready(&engine);
    let (status, _, body) = request(port, "POST", "/inference", b"{}");
    assert_eq!(status, 408);
    assert!(body.contains("200 ms"));
    engine.shutdown(Duration::from_millis(100));
    worker.join().unwrap();
}

#[test]
fn a_worker_dying_with_a_batch_fails_it_at_once() {
    let (engine, port, socket) = start("die", 10_000, 1024);
    let worker = spawn_worker(socket.clone(), Behaviour::Die);
    wait_ready(&engine);
    let started = Instant::now();
    let (status, _, body) = request(port, "POST", "/inference", b"{}");
    assert_eq!(status, 500);
    assert!(body.contains("exited"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5), "failed only after the deadline");
    worker.join().unwrap();
    // A replacement worker picks up the next request.
    let replacement = spawn_worker(socket, Behaviour::Echo);
    wait_ready(&engine);
    assert_eq!(request(port, "POST", "/inference", b"1").0, 200);
    engine.shutdown(Duration::from_secs(1));
    replacement.join().unwrap();
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let mut config = Config {
        address: "127.0.0.1".into(),
        port,
        socket_path: socket_path("taken").display().to_string(),
        ..Config::default()
    };
    config.stages.push(StageConfig {
        name: "A".into(),
        num: 1,
        max_batch_size: 1,
        max_wait_time_ms: 0,
        wait_for_batch: true,
        forward_timeout_ms: 0,
    });
    config.routes.push(RouteConfig {
        path: "/inference".into(),
        stages: vec![0],
        mime: "x".into(),
        stream: false,
        flow: Vec::new(),
    });
    let err = Engine::new(config).unwrap().start().unwrap_err().to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}")) && err.contains("another server"), "{err}");
}
