//! Flows (ensembles, switches, nesting) and in-process calls through a real engine: the test
//! plays one worker per stage over the worker link and records what each one was handed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed step is a failed test

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mosec_engine::config::{RouteConfig, StageConfig};
use mosec_engine::protocol::{
    decode_joined, read_frame, write_hello, write_items, Frame, FrameKind, Hello, Item,
    FLAG_EGRESS, FLAG_INGRESS, FLAG_JOINED, FLAG_REQUEST_ID,
};
use mosec_engine::{Config, Engine, EngineError};
use serde_json::json;
use tokio::net::UnixStream;

/// The stages every test engine has, by index, and what their test worker does.
const TAG_A: usize = 0; // appends "|a"
const TAG_B: usize = 1; // appends "|b"
const TAG_C: usize = 2; // appends "|c"
const ECHO: usize = 3; // answers its input
const CHOOSER: usize = 4; // answers the input's first digit as a u32 branch index
const FAIL: usize = 5; // answers 422
const HANG: usize = 6; // never answers
const DIE: usize = 7; // closes its socket when a batch arrives
const STAGES: [&str; 8] = ["TagA", "TagB", "TagC", "Echo", "Chooser", "Fail", "Hang", "Die"];

/// An item a test worker was handed: (stage, task id, flags without REQUEST_ID, payload).
type Seen = (usize, u32, u16, Bytes);

struct Harness {
    engine: Engine,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// (stage, task id) of every CANCEL received.
    cancels: Arc<Mutex<Vec<(usize, u32)>>>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

fn socket_path(name: &str) -> PathBuf {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    std::env::temp_dir().join(format!("mosec-flow-{name}-{}-{nanos}.sock", std::process::id()))
}

fn route(path: &str, flow: serde_json::Value) -> RouteConfig {
    let route =
        json!({"path": path, "stages": [], "mime": "application/octet-stream", "flow": flow});
    serde_json::from_value(route).unwrap()
}

fn appended(payload: &[u8], tag: &[u8]) -> Vec<u8> {
    [payload, tag].concat()
}

/// What the test worker of `stage` answers for `payload`; `None`: no answer.
fn behave(stage: usize, payload: &[u8]) -> Option<(u16, Vec<u8>)> {
    match stage {
        TAG_A => {
            // Slower than the others: member order must not be finishing order.
            std::thread::sleep(Duration::from_millis(30));
            Some((200, appended(payload, b"|a")))
        }
        TAG_B => Some((200, appended(payload, b"|b"))),
        TAG_C => Some((200, appended(payload, b"|c"))),
        ECHO => Some((200, payload.to_vec())),
        CHOOSER => {
            let digit = payload.first().map_or(0, |b| u32::from(b.wrapping_sub(b'0')));
            Some((200, digit.to_le_bytes().to_vec()))
        }
        FAIL => Some((422, appended(b"nope: ", payload))),
        _ => None,
    }
}

impl Harness {
    fn new(name: &str, routes: Vec<RouteConfig>, timeout_ms: u64, capacity: usize) -> Self {
        let socket = socket_path(name);
        let stages = STAGES
            .iter()
            .map(|name| StageConfig {
                name: (*name).into(),
                num: 1,
                max_batch_size: 4,
                max_wait_time_ms: 2,
                wait_for_batch: true,
                forward_timeout_ms: 0,
            })
            .collect();
        let config = Config {
            address: "127.0.0.1".into(),
            port: 0,
            timeout_ms,
            capacity,
            socket_path: socket.display().to_string(),
            engine_threads: 2,
            stages,
            routes,
            ..Config::default()
        };
        let engine = Engine::new(config).unwrap();
        engine.start().unwrap();
        let seen = Arc::default();
        let cancels = Arc::default();
        let workers = (0..STAGES.len())
            .map(|stage| {
                spawn_worker(socket.clone(), stage, Arc::clone(&seen), Arc::clone(&cancels))
            })
            .collect();
        let started = Instant::now();
        while engine.connected_workers().contains(&0) {
            assert!(started.elapsed() < Duration::from_secs(10), "workers never connected");
            std::thread::sleep(Duration::from_millis(5));
        }
        Self { engine, seen, cancels, workers }
    }

    fn call(&self, path: &str, body: &[u8]) -> (u16, Bytes) {
        let outcome = self.engine.call(path, Bytes::copy_from_slice(body), Duration::ZERO).unwrap();
        (outcome.status, outcome.body)
    }

    /// (flags, payload) of the items `stage` was handed, in order.
    fn seen_by(&self, stage: usize) -> Vec<(u16, Bytes)> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|s| s.0 == stage).map(|s| (s.2, s.3.clone())).collect()
    }

    fn task_ids_seen_by(&self, stage: usize) -> Vec<u32> {
        self.seen.lock().unwrap().iter().filter(|s| s.0 == stage).map(|s| s.1).collect()
    }

    fn cancelled(&self) -> Vec<(usize, u32)> {
        self.cancels.lock().unwrap().clone()
    }

    /// Tasks in the table, as `/metrics` reports them.
    fn tasks_in_table(&self) -> u64 {
        assert!(self.engine.listen(Duration::from_secs(5)).unwrap());
        let (_, metrics) = http(self.engine.port().unwrap(), "GET", "/metrics", b"");
        let line =
            metrics.lines().find(|l| l.starts_with("mosec_service_remaining_task ")).unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    fn stop(self) {
        self.engine.shutdown(Duration::from_secs(1));
        for worker in self.workers {
            worker.join().unwrap();
        }
    }
}

fn spawn_worker(
    socket: PathBuf,
    stage: usize,
    seen: Arc<Mutex<Vec<Seen>>>,
    cancels: Arc<Mutex<Vec<(usize, u32)>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let mut stream = UnixStream::connect(&socket).await.unwrap();
            let hello = Hello { stage: stage as u32, worker_id: 1, pid: std::process::id() };
            write_hello(&mut stream, hello).await.unwrap();
            loop {
                let items = match read_frame(&mut stream).await {
                    Ok(Frame::Items(FrameKind::Batch, items)) => items,
                    Ok(Frame::Items(FrameKind::Cancel, items)) => {
                        cancels.lock().unwrap().extend(items.iter().map(|i| (stage, i.task_id)));
                        continue;
                    }
                    _ => return,
                };
                seen.lock().unwrap().extend(items.iter().map(|item| {
                    (stage, item.task_id, item.flags & !FLAG_REQUEST_ID, item.payload.clone())
                }));
                if stage == DIE {
                    return;
                }
                let results: Option<Vec<Item>> = items
                    .into_iter()
                    .map(|item| {
                        let (status, payload) = behave(stage, &item.payload)?;
                        Some(Item { status, flags: 0, payload: payload.into(), ..item })
                    })
                    .collect();
                if let Some(results) = results {
                    write_items(&mut stream, FrameKind::Result, &results).await.unwrap();
                }
            }
        });
    })
}

/// One HTTP/1.1 request; returns (status, body) as text.
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (headers, body) = raw.split_once("\r\n\r\n").unwrap();
    (headers[9..12].parse().unwrap(), body.to_owned())
}

/// (status, flags, bytes) of each part of a joined container.
fn parts(joined: &Bytes) -> Vec<(u16, u16, Bytes)> {
    decode_joined(joined).unwrap().into_iter().map(|p| (p.status, p.flags, p.bytes)).collect()
}

fn part(status: u16, flags: u16, bytes: &'static [u8]) -> (u16, u16, Bytes) {
    (status, flags, Bytes::from_static(bytes))
}

const ALL: u16 = FLAG_INGRESS | FLAG_EGRESS;

#[test]
fn an_ensemble_joins_member_outputs_in_member_order_with_their_flags() {
    let members = json!([[{"stage": TAG_A}], [{"stage": TAG_B}, {"stage": TAG_C}]]);
    let routes = vec![
        route("/last", json!([{"ensemble": {"members": members, "fail_fast": true}}])),
        route("/then", json!([{"ensemble": {"members": members}}, {"stage": ECHO}])),
    ];
    let h = Harness::new("order", routes, 5000, 64);
    // Called before the engine listens: no HTTP needed.
    let (status, body) = h.call("/last", b"x");
    assert_eq!(status, 200);
    assert_eq!(parts(&body), vec![part(200, 0, b"x|a"), part(200, 0, b"x|b|c")]);
    assert_eq!(h.seen_by(TAG_A), vec![(ALL, Bytes::from_static(b"x"))]);
    assert_eq!(h.seen_by(TAG_B), vec![(FLAG_INGRESS, Bytes::from_static(b"x"))]);
    assert_eq!(h.seen_by(TAG_C), vec![(FLAG_EGRESS, Bytes::from_static(b"x|b"))]);
    // Not last: the members' stages are not egress; the join's reader gets JOINED.
    let (status, body) = h.call("/then", b"y");
    assert_eq!(status, 200);
    assert_eq!(parts(&body), vec![part(200, 0, b"y|a"), part(200, 0, b"y|b|c")]);
    assert_eq!(h.seen_by(TAG_A)[1].0, FLAG_INGRESS);
    assert_eq!(h.seen_by(TAG_C)[1].0, 0);
    assert_eq!(h.seen_by(ECHO), vec![(FLAG_JOINED | FLAG_EGRESS, body.clone())]);
    // Over HTTP too; only the client request counts in throughput, not its members.
    assert!(h.engine.listen(Duration::from_secs(5)).unwrap());
    let port = h.engine.port().unwrap();
    assert_eq!(http(port, "POST", "/then", b"z").0, 200);
    let (_, metrics) = http(port, "GET", "/metrics", b"");
    assert!(metrics.contains("throughput_total{code=\"200\",endpoint=\"/then\"} 2"), "{metrics}");
    assert_eq!(h.tasks_in_table(), 0);
    h.stop();
}

#[test]
fn fail_fast_ends_at_the_first_member_error_else_errors_join() {
    let routes = vec![
        route(
            "/fast",
            json!([{"ensemble": {"members": [[{"stage": FAIL}], [{"stage": HANG}]], "fail_fast": true}}]),
        ),
        route(
            "/slow",
            json!([{"ensemble": {"members": [[{"stage": FAIL}], [{"stage": TAG_A}]], "fail_fast": false}}]),
        ),
    ];
    let h = Harness::new("failfast", routes, 5000, 64);
    let started = Instant::now();
    assert_eq!(h.call("/fast", b"x"), (422, Bytes::from_static(b"nope: x")));
    assert!(started.elapsed() < Duration::from_secs(2), "ended at once, not at the deadline");
    // The hanging member was cancelled: removed, and its worker told.
    let hung = h.task_ids_seen_by(HANG);
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.cancelled().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(h.cancelled(), vec![(HANG, hung[0])]);
    let (status, body) = h.call("/slow", b"y");
    assert_eq!(status, 200);
    assert_eq!(parts(&body), vec![part(422, 0, b"nope: y"), part(200, 0, b"y|a")]);
    assert_eq!(h.tasks_in_table(), 0);
    h.stop();
}

#[test]
fn a_switch_runs_the_chosen_branch_on_the_switch_input() {
    let branches = json!([[{"stage": TAG_A}], [{"stage": TAG_B}, {"stage": TAG_C}]]);
    let routes =
        vec![route("/switch", json!([{"switch": {"chooser": CHOOSER, "branches": branches}}]))];
    let h = Harness::new("switch", routes, 5000, 64);
    assert_eq!(h.call("/switch", b"1x"), (200, Bytes::from_static(b"1x|b|c")));
    assert_eq!(h.call("/switch", b"0x"), (200, Bytes::from_static(b"0x|a")));
    // The chooser and the branch's first stage both read the request body.
    assert_eq!(h.seen_by(CHOOSER).iter().map(|s| s.0).collect::<Vec<_>>(), [FLAG_INGRESS; 2]);
    assert_eq!(h.seen_by(TAG_B), vec![(FLAG_INGRESS, Bytes::from_static(b"1x"))]);
    assert_eq!(h.seen_by(TAG_C), vec![(FLAG_EGRESS, Bytes::from_static(b"1x|b"))]);
    assert_eq!(h.seen_by(TAG_A), vec![(ALL, Bytes::from_static(b"0x"))]);
    let (status, body) = h.call("/switch", b"7");
    assert_eq!(status, 500);
    assert_eq!(body, "inference internal error: switch chose branch 7 of 2");
    h.stop();
}

#[test]
fn nested_flows_nest_their_joins() {
    // A stage, then an ensemble whose first member is a switch whose second branch is an
    // ensemble itself, then a stage reading the (nested) join.
    let inner = json!({"ensemble": {"members": [[{"stage": TAG_C}], [{"stage": TAG_A}]]}});
    let switch = json!({"switch": {"chooser": CHOOSER, "branches": [[{"stage": TAG_A}], [inner]]}});
    let flow = json!([
        {"stage": ECHO},
        {"ensemble": {"members": [[switch], [{"stage": TAG_B}]], "fail_fast": true}},
        {"stage": ECHO}
    ]);
    let h = Harness::new("nested", vec![route("/nested", flow)], 5000, 64);
    let (status, body) = h.call("/nested", b"1");
    assert_eq!(status, 200);
    let outer = parts(&body);
    assert_eq!((outer[0].0, outer[0].1), (200, FLAG_JOINED));
    assert_eq!(parts(&outer[0].2), vec![part(200, 0, b"1|c"), part(200, 0, b"1|a")]);
    assert_eq!(outer[1], part(200, 0, b"1|b"));
    // Past the first stage nothing is INGRESS; only the last stage is EGRESS.
    assert_eq!(
        h.seen_by(ECHO).iter().map(|s| s.0).collect::<Vec<_>>(),
        [FLAG_INGRESS, FLAG_JOINED | FLAG_EGRESS]
    );
    assert!(h.seen.lock().unwrap().iter().filter(|s| s.0 != ECHO).all(|s| s.2 == 0));
    assert_eq!(h.tasks_in_table(), 0);
    h.stop();
}

#[test]
fn a_member_worker_dying_is_a_member_error() {
    let members = json!([[{"stage": DIE}], [{"stage": TAG_B}]]);
    let routes = vec![route("/die", json!([{"ensemble": {"members": members}}]))];
    let h = Harness::new("die", routes, 5000, 64);
    let started = Instant::now();
    let (status, body) = h.call("/die", b"x");
    assert!(started.elapsed() < Duration::from_secs(2), "failed at once, not at the deadline");
    assert_eq!(status, 200);
    let joined = parts(&body);
    assert_eq!(
        (joined[0].0, &joined[0].2[..]),
        (500, &b"inference internal error: worker 1 of stage Die exited"[..])
    );
    assert_eq!(joined[1], part(200, 0, b"x|b"));
    assert_eq!(h.tasks_in_table(), 0);
    h.stop();
}

#[test]
fn a_timeout_mid_ensemble_removes_the_task_and_its_members() {
    let members =
        json!([[{"stage": TAG_B}], [{"stage": HANG}], [{"stage": TAG_C}, {"stage": HANG}]]);
    let routes = vec![route("/hang", json!([{"ensemble": {"members": members}}]))];
    let h = Harness::new("timeout", routes, 300, 64);
    let (status, body) = h.call("/hang", b"x");
    assert_eq!(status, 408);
    assert_eq!(body, "request timeout: no answer within 300 ms");
    // An explicit deadline wins over the server's.
    let outcome =
        h.engine.call("/hang", Bytes::from_static(b"y"), Duration::from_millis(50)).unwrap();
    assert_eq!(
        outcome,
        mosec_engine::tasks::Outcome::error(408, "request timeout: no answer within 50 ms")
    );
    assert_eq!(h.tasks_in_table(), 0, "no task and no member left in the table");
    // The hanging worker never answers its first batch, so it is handed nothing more: one
    // or two members of the first call, by how they were batched.
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.cancelled().len() < h.task_ids_seen_by(HANG).len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut hung = h.task_ids_seen_by(HANG);
    let mut cancelled: Vec<u32> = h.cancelled().into_iter().map(|(_, id)| id).collect();
    hung.sort_unstable();
    cancelled.sort_unstable();
    assert_eq!(cancelled, hung, "the workers holding members were told");
    h.stop();
}

#[test]
fn calls_are_admitted_like_http_requests() {
    let routes = vec![
        route("/echo", json!([{"stage": ECHO}])),
        route("/hang", json!([{"stage": HANG}])),
        RouteConfig { stream: true, ..route("/stream", json!([{"stage": ECHO}])) },
    ];
    let h = Harness::new("admission", routes, 5000, 2);
    assert_eq!(h.call("/echo", b"hi"), (200, Bytes::from_static(b"hi")));
    assert_eq!(h.call("/nowhere", b"").0, 404);
    assert_eq!(h.call("/stream", b"").0, 400);
    let too_big = vec![b'x'; 10 * 1024 * 1024 + 1];
    let (status, body) = h.call("/echo", &too_big);
    assert_eq!(
        (status, body),
        (413, Bytes::from("request body too large: the limit is 10485760 bytes"))
    );
    // Many threads at once.
    std::thread::scope(|scope| {
        let callers: Vec<_> = (0..4)
            .map(|t| {
                let h = &h;
                scope.spawn(move || {
                    for i in 0..20 {
                        let body = format!("{t}-{i}");
                        let (status, echoed) = h.call("/echo", body.as_bytes());
                        assert!(status == 200 || status == 429, "{status}");
                        if status == 200 {
                            assert_eq!(echoed, body);
                        }
                    }
                })
            })
            .collect();
        callers.into_iter().for_each(|c| c.join().unwrap());
    });
    // Capacity 2: two hanging calls take it all; a third is refused at once. Then a drain
    // refuses new calls with 503 and answers the hanging ones when it gives up.
    std::thread::scope(|scope| {
        let hanging: Vec<_> = (0..2).map(|_| scope.spawn(|| h.call("/hang", b""))).collect();
        let deadline = Instant::now() + Duration::from_secs(5);
        while h.task_ids_seen_by(HANG).len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let (status, body) = h.call("/echo", b"");
        assert_eq!(status, 429);
        assert_eq!(body, "too many requests: 2 tasks already in flight");
        let drain = scope.spawn(|| h.engine.shutdown(Duration::from_millis(500)));
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(h.call("/echo", b""), (503, Bytes::from_static(b"gracefully shutting down")));
        for call in hanging {
            assert_eq!(call.join().unwrap().0, 503);
        }
        assert!(!drain.join().unwrap(), "the drain gave up on the hanging calls");
    });
    let stopped = h.engine.call("/echo", Bytes::new(), Duration::ZERO);
    assert!(matches!(stopped, Err(EngineError::NotRunning)));
    for worker in h.workers {
        worker.join().unwrap();
    }
}
