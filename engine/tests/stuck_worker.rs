//! A worker busy past its forward timeout plus the grace: its batch fails with 500, it is
//! reported for the supervisor to kill, and its link takes no more batches while it lives.
//! The worker is played by this test over the worker link; "killing" it closes its socket.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed step is a failed test

mod common;

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{await_in_flight, post, post_in_order, spawn_recording_worker};
use mosec_engine::config::{RouteConfig, StageConfig};
use mosec_engine::protocol::{read_frame, write_hello, write_items, Frame, FrameKind, Hello};
use mosec_engine::{Config, Engine};
use tokio::net::UnixStream;

const FORWARD_TIMEOUT_MS: u64 = 100;
const GRACE_MS: u64 = 200;

/// What the test worker does with a batch.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Answer every item with its own payload.
    Echo,
    /// Never answer; close the socket once told to (the supervisor's SIGKILL).
    Stuck,
    /// Send an event every 50 ms for three times the stuck limit, then answer.
    Chatty,
}

fn start(name: &str) -> (Engine, u16, PathBuf) {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let socket = std::env::temp_dir()
        .join(format!("mosec-test-stuck-{name}-{}-{nanos}.sock", std::process::id()));
    // From JSON, as Python sends it: the fields this test does not care about take their
    // defaults.
    let stage: StageConfig = serde_json::from_value(serde_json::json!({
        "name": "Model_1", "num": 1, "max_batch_size": 1, "max_wait_time_ms": 1,
        "forward_timeout_ms": FORWARD_TIMEOUT_MS,
    }))
    .unwrap();
    let config = Config {
        address: "127.0.0.1".into(),
        port: 0,
        // Longer than the stuck limit: the client is still waiting when the link gives up.
        timeout_ms: 10_000,
        stuck_grace_ms: GRACE_MS,
        socket_path: socket.display().to_string(),
        engine_threads: 1,
        // Batches of what is queued (up to 64) once one item was measured, however slowly a
        // busy test machine runs this test's worker.
        queued_batch_work_ms: 600_000,
        stages: vec![stage],
        routes: vec![RouteConfig {
            path: "/inference".into(),
            stages: vec![0],
            mime: "text/plain".into(),
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

/// Runs a test worker with `pid` in its HELLO on its own thread until its socket closes; a
/// stuck one closes it when `kill` is sent (or dropped).
fn spawn_worker(
    socket: PathBuf,
    pid: u32,
    behaviour: Behaviour,
) -> (std::thread::JoinHandle<()>, mpsc::Sender<()>) {
    let (kill, killed) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let mut stream = UnixStream::connect(&socket).await.unwrap();
            write_hello(&mut stream, Hello { stage: 0, worker_id: 1, pid }).await.unwrap();
            while let Ok(Frame::Items(FrameKind::Batch, items)) = read_frame(&mut stream).await {
                match behaviour {
                    Behaviour::Stuck => {
                        let _ = tokio::task::spawn_blocking(move || killed.recv()).await;
                        return;
                    }
                    Behaviour::Chatty => {
                        let limit = Duration::from_millis(FORWARD_TIMEOUT_MS + GRACE_MS);
                        let until = Instant::now() + limit * 3;
                        while Instant::now() < until {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            let events: Vec<_> = items
                                .iter()
                                .map(|item| mosec_engine::protocol::Item {
                                    status: 200,
                                    payload: Bytes::from_static(b"tick"),
                                    ..item.clone()
                                })
                                .collect();
                            write_items(&mut stream, FrameKind::Event, &events).await.unwrap();
                        }
                    }
                    Behaviour::Echo => {}
                }
                let results: Vec<_> = items
                    .into_iter()
                    .map(|mut item| {
                        item.status = 200;
                        item
                    })
                    .collect();
                write_items(&mut stream, FrameKind::Result, &results).await.unwrap();
            }
        });
    });
    (thread, kill)
}

#[test]
fn a_stuck_worker_fails_its_batch_is_reported_and_serves_no_more() {
    let (engine, port, socket) = start("stuck");
    let (stuck, kill) = spawn_worker(socket.clone(), 4242, Behaviour::Stuck);
    assert!(engine.listen(Duration::from_secs(10)).unwrap());
    assert!(engine.stuck_workers().is_empty());
    let sent = Instant::now();
    let (status, body) = post(port, b"spin");
    let waited = sent.elapsed();
    assert_eq!(status, 500, "{body}");
    assert_eq!(
        body,
        "inference internal error: worker 1 of stage Model_1 was stuck past its timeout"
    );
    let limit = Duration::from_millis(FORWARD_TIMEOUT_MS + GRACE_MS);
    assert!(waited >= limit && waited < Duration::from_secs(5), "failed after {waited:?}");
    let reports = engine.stuck_workers();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let report = &reports[0];
    assert_eq!((report.stage, report.worker_id, report.pid), (0, 1, 4242));
    assert!(report.busy >= limit && report.busy <= waited, "{report:?}");
    assert!(engine.stuck_workers().is_empty(), "a report is taken once");
    // While the stuck worker lives its link takes nothing: a replacement serves the stage.
    let (replacement, _) = spawn_worker(socket, 4243, Behaviour::Echo);
    assert_eq!(post(port, b"next"), (200, "next".to_owned()));
    kill.send(()).unwrap();
    stuck.join().unwrap();
    assert_eq!(post(port, b"after").0, 200);
    assert!(engine.shutdown(Duration::from_secs(1)));
    replacement.join().unwrap();
    assert!(engine.stuck_workers().is_empty());
}

#[test]
fn stream_events_re_arm_the_watch() {
    let (engine, port, socket) = start("chatty");
    let (worker, _) = spawn_worker(socket, 4244, Behaviour::Chatty);
    assert!(engine.listen(Duration::from_secs(10)).unwrap());
    // Busy three times the limit, but never silent for as long as it.
    assert_eq!(post(port, b"talk"), (200, "talk".to_owned()));
    assert!(engine.stuck_workers().is_empty());
    assert!(engine.shutdown(Duration::from_secs(1)));
    worker.join().unwrap();
}

#[test]
fn a_stuck_worker_holding_several_queued_items_sends_each_to_a_worker_alone() {
    let (engine, port, socket) = start("stuck-queued");
    let (frames, received) = mpsc::channel();
    let (first, _) = spawn_recording_worker(socket.clone(), 0, 4300, frames.clone(), Some(1));
    assert!(engine.listen(Duration::from_secs(10)).unwrap());
    assert_eq!(post(port, b"first").0, 200);
    first.join().unwrap();
    received.recv().unwrap();
    await_in_flight(port, 0);
    let bodies = ["a", "spin", "c"];
    let clients = post_in_order(port, &bodies);
    // Worker 1 answers "a", then hangs holding "spin" and "c": stuck past two forward
    // timeouts plus the grace, its items go back alone. Worker 2 takes "spin" on its own and
    // hangs in turn, so only "spin" fails; worker 3 serves "c".
    let mut kills = Vec::new();
    let mut last = None;
    let expected = [(1, vec!["a", "spin,c"]), (2, vec!["spin"]), (3, vec!["c"])];
    for (number, frames_expected) in expected {
        let pid = 4300 + number as u32;
        let (worker, kill) =
            spawn_recording_worker(socket.clone(), number, pid, frames.clone(), None);
        for frame in frames_expected {
            let got = received.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!((got.0, got.1.join(",")), (number, frame.to_owned()));
        }
        kills.push(kill);
        last = Some(worker);
    }
    let answers: Vec<_> = clients.into_iter().map(|client| client.join().unwrap()).collect();
    assert_eq!(answers[0], (200, "a".to_owned()));
    assert_eq!(answers[1].0, 500, "{:?}", answers[1]);
    assert!(answers[1].1.ends_with("was stuck past its timeout"), "{:?}", answers[1]);
    assert_eq!(answers[2], (200, "c".to_owned()));
    let mut stuck: Vec<u32> = engine.stuck_workers().iter().map(|report| report.pid).collect();
    stuck.sort_unstable();
    assert_eq!(stuck, [4301, 4302]);
    drop(kills); // the supervisor's SIGKILL: the stuck workers close their sockets
    assert!(engine.shutdown(Duration::from_secs(1)));
    last.unwrap().join().unwrap();
}
