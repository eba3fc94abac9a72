//! The engine over real sockets: HTTP on loopback and a worker played by this test over the
//! worker link, so the controller is checked without Python.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed step is a failed test

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{
    await_in_flight, post_in_order, request, socket_path, spawn_recording_worker, Frames,
};
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

fn start(name: &str, timeout_ms: u64, max_request_size: usize) -> (Engine, u16, PathBuf) {
    start_with_batches_of(name, timeout_ms, max_request_size, 4)
}

fn start_with_batches_of(
    name: &str,
    timeout_ms: u64,
    max_request_size: usize,
    max_batch_size: usize,
) -> (Engine, u16, PathBuf) {
    let socket = socket_path(name);
    let config = Config {
        address: "127.0.0.1".into(),
        port: 0,
        timeout_ms,
        max_request_size,
        socket_path: socket.display().to_string(),
        engine_threads: 1,
        // The unbatched stage's batches are then what is queued (up to 64) once one item was
        // measured, however slowly a busy test machine runs this test's worker.
        queued_batch_work_ms: 600_000,
        stages: vec![StageConfig {
            name: "Echo".into(),
            num: 1,
            max_batch_size,
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

/// An engine with an unbatched stage whose first worker served one request and left, so that
/// requests sent now wait in the queue: (engine, port, socket, frames sender, frames).
fn unbatched_engine_without_worker(
    name: &str,
) -> (Engine, u16, PathBuf, Frames, mpsc::Receiver<common::Frame>) {
    let (engine, port, socket) = start_with_batches_of(name, 10_000, 1024, 1);
    let (frames, received) = mpsc::channel();
    let (first, _) = spawn_recording_worker(socket.clone(), 0, 1, frames.clone(), Some(1));
    wait_ready(&engine);
    assert_eq!(request(port, "POST", "/inference", b"first").0, 200);
    first.join().unwrap();
    assert_eq!(received.recv().unwrap(), (0, vec!["first".to_owned()]));
    await_in_flight(port, 0); // its task is gone too: what the engine holds next is queued
    (engine, port, socket, frames, received)
}

#[test]
fn an_unbatched_stage_gets_what_is_queued_in_one_hop_each_item_answered_on_its_own() {
    let (engine, port, socket, frames, received) = unbatched_engine_without_worker("hop");
    let bodies = ["a", "b", "c", "d", "e"];
    let clients = post_in_order(port, &bodies);
    let (worker, _) = spawn_recording_worker(socket, 1, 1, frames, None);
    let mut sizes = Vec::new();
    while sizes.iter().sum::<usize>() < bodies.len() {
        sizes.push(received.recv().unwrap().1.len());
    }
    // The first batch of a new link is one item (its worker's cost is not known yet); the
    // next takes the rest of the queue at once.
    assert_eq!(sizes, [1, 4]);
    for (client, body) in clients.into_iter().zip(bodies) {
        assert_eq!(client.join().unwrap(), (200, body.to_owned()));
    }
    engine.shutdown(Duration::from_secs(1));
    worker.join().unwrap();
}

#[test]
fn a_worker_failing_with_several_queued_items_sends_each_to_a_worker_alone() {
    let (engine, port, socket, frames, received) = unbatched_engine_without_worker("alone");
    let bodies = ["a", "b", "die", "d", "e"];
    let clients = post_in_order(port, &bodies);
    // Worker 1 takes "a", then the four others, and dies with them: none of them fails for
    // it. Each goes to worker 2 on its own, so "die" kills it alone; worker 3 serves the rest.
    let expected = [vec!["a", "b,die,d,e"], vec!["b", "die"], vec!["d", "e"]];
    let mut last = None;
    for (number, frames_expected) in (1..).zip(expected) {
        let (worker, _) = spawn_recording_worker(socket.clone(), number, 1, frames.clone(), None);
        for frame in frames_expected {
            let got = received.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!((got.0, got.1.join(",")), (number, frame.to_owned()));
        }
        last = Some(worker); // each worker but the last has died by now
    }
    for (client, body) in clients.into_iter().zip(bodies) {
        let (status, answer) = client.join().unwrap();
        if body == "die" {
            assert_eq!(status, 500);
            assert!(answer.contains("exited"), "{answer}");
        } else {
            assert_eq!((status, answer.as_str()), (200, body));
        }
    }
    engine.shutdown(Duration::from_secs(1));
    last.unwrap().join().unwrap();
}
