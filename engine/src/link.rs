//! Serving one worker process over its Unix socket: hand it batches, route its results and
//! stream events, and tell it when a client it is working for has gone.
//!
//! The worker reads its batch's arena inputs in place, so the link reports to the task table
//! when the batch is answered and when the link ends: only then are the inputs of tasks
//! removed meanwhile released (see `tasks.rs`).
//!
//! A worker busy with one batch past its stage's forward timeout plus `stuck_grace_ms` is
//! stuck: the link fails the batch's tasks, reports the worker (`stuck.rs`) for the supervisor
//! to kill, and then only waits for its socket to close. The link ends, and what the worker
//! read or owned in the arena is released, once the process is gone, not while it may still
//! be reading or writing there.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::BufWriter;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{debug, info, warn};

use crate::batcher::{collect, take_queued, Batching, ItemCost, Queued};
use crate::metrics::StageLabels;
use crate::protocol::{
    write_items, Frame, FrameKind, FrameReader, Hello, Item, ProtocolError, FLAG_REFERENCE,
};
use crate::refs::{self, StoreObject};
use crate::state::{stopped, Shared, Stage};
use crate::stuck::StuckWorker;
use crate::tasks::{Advance, Answer, Holder, Outcome, TaskId};

/// How long a fresh connection may take to introduce itself.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts worker connections until shutdown.
pub async fn serve_links(listener: UnixListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_link(stream, shared.clone()));
                }
                Err(err) => warn!(error = %err, "accepting a worker connection failed"),
            },
        }
    }
}

/// Counts a connected worker for readiness while it lives.
struct Connected<'a>(&'a Stage);

impl<'a> Connected<'a> {
    fn new(shared: &Shared, stage: &'a Stage) -> Self {
        stage.connected.fetch_add(1, Ordering::AcqRel);
        shared.note_connected();
        Self(stage)
    }
}

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        self.0.connected.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn serve_link(stream: UnixStream, shared: Arc<Shared>) {
    let (reader, writer) = stream.into_split();
    let mut frames = FrameReader::new(reader);
    let hello = match timeout(HELLO_TIMEOUT, frames.next()).await {
        Ok(Ok(Frame::Hello(hello))) => hello,
        Ok(Ok(_)) => return warn!("worker connection did not start with HELLO; closed"),
        Ok(Err(err)) => return warn!(error = %err, "worker connection failed before HELLO"),
        Err(_) => return warn!("worker connection sent no HELLO in time; closed"),
    };
    let Some(stage) = shared.stages.get(hello.stage as usize) else {
        return warn!(
            stage = hello.stage,
            worker_pid = hello.pid,
            "worker names an unknown stage; closed"
        );
    };
    let _connected = Connected::new(&shared, stage);
    info!(
        stage = %stage.config.name, worker_id = hello.worker_id, worker_pid = hello.pid,
        "worker connected"
    );
    let (cancel, cancelled) = mpsc::unbounded_channel();
    let labels =
        StageLabels { stage: stage.config.name.clone(), connection: hello.worker_id.to_string() };
    let mut link = Link {
        shared: &shared,
        stage,
        hello,
        labels,
        frames,
        writer: BufWriter::new(writer),
        holder: Holder::new(cancel),
        cancelled,
        set_aside: None,
    };
    let reason = link.run().await;
    drop(link); // the link has ended: what its worker was reading is released now
    if let Some(arena) = &shared.tasks.stores().arena {
        // Objects the worker allocated and never handed over (handed-over ones were adopted).
        match arena.reclaim_owner(hello.pid) {
            Ok(0) => {}
            Ok(reclaimed) => {
                info!(worker_pid = hello.pid, reclaimed, "reclaimed a worker's arena objects")
            }
            Err(err) => {
                warn!(worker_pid = hello.pid, error = %err, "reclaiming a worker's arena objects failed")
            }
        }
    }
    info!(
        stage = %stage.config.name, worker_id = hello.worker_id, worker_pid = hello.pid, reason,
        "worker disconnected"
    );
}

/// Why a batch got no RESULT.
enum Unanswered {
    /// The worker went away or broke the protocol.
    Broken(ProtocolError),
    /// The worker was busy past its forward timeout plus the grace, for this long.
    Stuck(Duration),
}

/// What interrupted waiting for a batch.
enum Wake {
    Batch(Option<Instant>),
    WorkerGone,
    Shutdown,
}

struct Link<'a> {
    shared: &'a Shared,
    stage: &'a Stage,
    hello: Hello,
    /// This link's metric labels: the stage's name and the worker's id, as mosec's
    /// `stage` and `connection`.
    labels: StageLabels,
    /// Frames from the worker, read in this task: waiting for one is cancel-safe, so it sits
    /// in `select!` beside the queue and the cancellations without a reader task's hop.
    frames: FrameReader<OwnedReadHalf>,
    writer: BufWriter<OwnedWriteHalf>,
    /// Registered with every task this link holds: the task table sends its id here when the
    /// task is abandoned, and keeps its store objects here if it is removed meanwhile.
    holder: Arc<Holder>,
    /// Ids of held tasks whose clients left, to pass on to the worker.
    cancelled: mpsc::UnboundedReceiver<TaskId>,
    /// An item to be sent on its own, taken from the queue while a batch was being made (see
    /// `take_queued`): the next batch.
    set_aside: Option<Queued>,
}

impl Drop for Link<'_> {
    /// Every way a link ends (worker gone, protocol broken, engine stopping, the task dropped)
    /// ends its hold on the inputs of removed tasks.
    fn drop(&mut self) {
        self.shared.tasks.link_ended(&self.holder);
    }
}

impl Link<'_> {
    /// Serves batches until the worker goes away or the engine stops; returns why it ended.
    async fn run(&mut self) -> &'static str {
        let mut shutdown = self.shared.shutdown.subscribe();
        let stage = self.stage;
        let mut batch: Vec<Queued> = Vec::with_capacity(stage.config.max_batch_size);
        // For a stage that takes what is queued: its worker's cost per item, so far.
        let mut cost = ItemCost::default();
        let work = Duration::from_millis(self.shared.config.queued_batch_work_ms);
        loop {
            let receiver = &stage.queue.receiver;
            let set_aside = &mut self.set_aside;
            let next_batch = async {
                match stage.batching {
                    Batching::Collect => {
                        let size = stage.config.max_batch_size;
                        collect(receiver, &mut batch, size, stage.max_wait).await
                    }
                    Batching::Queued { most, .. } => {
                        let workers = stage.connected.load(Ordering::Acquire);
                        let most = cost.limit(most, work);
                        take_queued(receiver, &mut batch, most, workers, set_aside).await
                    }
                }
            };
            let wake = tokio::select! {
                () = stopped(&mut shutdown) => Wake::Shutdown,
                // A worker never speaks while idle: a frame or an error now means it closed (or
                // broke the protocol), so its queue items must go to another worker.
                _ = self.frames.next() => Wake::WorkerGone,
                opened = next_batch => Wake::Batch(opened),
            };
            let opened = match wake {
                Wake::Batch(Some(opened)) => opened,
                Wake::Batch(None) | Wake::Shutdown => {
                    return self.requeue(batch, "engine stopping")
                }
                Wake::WorkerGone => return self.requeue(batch, "worker closed its socket"),
            };
            // Cancellations of tasks from earlier batches are stale now.
            while self.cancelled.try_recv().is_ok() {}
            batch.retain(|queued| self.shared.tasks.hold(queued.task_id, &self.holder));
            if batch.is_empty() {
                continue;
            }
            self.observe_batch(batch.len(), opened);
            let items: Vec<Item> = batch
                .drain(..)
                .map(|q| Item {
                    task_id: q.task_id,
                    flags: q.flags,
                    status: 0,
                    request_id: q.request_id,
                    payload: q.payload,
                })
                .collect();
            if let Err(err) = write_items(&mut self.writer, FrameKind::Batch, &items).await {
                // The worker never saw this batch: another worker can still serve it.
                debug!(error = %err, "sending a batch failed");
                return self.requeue(unsent(items, false), "worker closed its socket");
            }
            let started = Instant::now();
            match self.await_result(&items).await {
                Ok(results) => {
                    let elapsed = started.elapsed();
                    cost.note(elapsed, items.len());
                    self.observe_process(elapsed, items.len());
                    self.dispatch(items, results);
                    // After every task of the batch has had its result: see `batch_answered`.
                    self.shared.tasks.batch_answered(&self.holder);
                }
                Err(Unanswered::Broken(err)) if self.retries_alone(&items) => {
                    warn!(
                        stage = %self.stage.config.name, worker_pid = self.hello.pid, error = %err,
                        tasks = items.len(), "worker failed while holding items that are each \
                        their own work; each goes to a worker again, on its own"
                    );
                    return self
                        .requeue(unsent(items, true), "worker failed while holding a batch");
                }
                Err(Unanswered::Broken(err)) => {
                    warn!(
                        stage = %self.stage.config.name, worker_pid = self.hello.pid, error = %err,
                        tasks = items.len(), "worker failed while holding a batch; its tasks get 500"
                    );
                    self.fail_batch(&items, "exited");
                    return "worker failed while holding a batch";
                }
                Err(Unanswered::Stuck(busy)) => {
                    warn!(
                        stage = %self.stage.config.name, worker_id = self.hello.worker_id,
                        worker_pid = self.hello.pid, stuck_s = busy.as_secs_f64(),
                        forward_timeout_ms = self.stage.config.forward_timeout_ms,
                        tasks = items.len(),
                        "worker stuck in a batch past its forward timeout; its tasks get 500, \
                         and it is reported to the supervisor to be killed and restarted"
                    );
                    if self.retries_alone(&items) {
                        // Each goes to a worker again, on its own: only the one that hangs
                        // is stuck once more.
                        self.requeue(unsent(items, true), "");
                    } else {
                        self.fail_batch(&items, "was stuck past its timeout");
                    }
                    self.shared.stuck.report(StuckWorker {
                        stage: self.hello.stage as usize,
                        worker_id: self.hello.worker_id,
                        pid: self.hello.pid,
                        busy,
                    });
                    self.await_exit().await;
                    return "worker stuck past its forward timeout";
                }
            }
        }
    }

    /// Ends the tasks of a batch its worker will never answer with a 500 saying what became
    /// of the worker (`what`).
    fn fail_batch(&self, items: &[Item], what: &str) {
        let message = format!(
            "inference internal error: worker {} of stage {} {what}",
            self.hello.worker_id, self.stage.config.name
        );
        for item in items {
            let failed = Outcome::error(500, message.clone());
            // A member's failure may complete its ensemble: its parent goes on.
            if let Advance::Next(next) = self.shared.tasks.fail(item.task_id, failed) {
                self.shared.queue(next, &item.request_id);
            }
        }
    }

    /// After giving up on a stuck worker: waits for its socket to close (the supervisor kills
    /// it), dropping whatever it still sends. Its tasks are answered already; a late RESULT's
    /// store objects are still the worker's, reclaimed once it is gone.
    async fn await_exit(&mut self) {
        while self.frames.next().await.is_ok() {}
    }

    /// Whether a batch its worker never answered goes back on the queue, each item on its
    /// own, instead of failing: when it is several items that are each their own work
    /// (handed what was queued), since one of them may be what broke the worker, and the
    /// others would not have failed had they come one at a time.
    fn retries_alone(&self, items: &[Item]) -> bool {
        matches!(self.stage.batching, Batching::Queued { .. }) && items.len() > 1
    }

    /// Records how long the worker took for a batch of `items`: once per `forward` call (per
    /// item when each item is one), as a stage handed one item at a time would.
    fn observe_process(&self, elapsed: Duration, items: usize) {
        let calls = self.stage.batching.forward_calls(items);
        let per_call = elapsed / u32::try_from(calls).unwrap_or(u32::MAX);
        let histogram = self.shared.metrics.process_duration.get_or_create(&self.labels);
        for _ in 0..calls {
            histogram.observe(per_call.as_secs_f64());
        }
    }

    fn observe_batch(&self, size: usize, opened: Instant) {
        if self.stage.config.max_batch_size > 1 {
            let metrics = &self.shared.metrics;
            let label = &self.labels;
            metrics.batch_size.get_or_create(label).observe(size as f64);
            metrics.batch_duration.get_or_create(label).observe(opened.elapsed().as_secs_f64());
        }
    }

    /// Waits for the RESULT of `sent`, passing stream events on and telling the worker about
    /// abandoned tasks meanwhile. Checks that the result answers exactly `sent`, in order.
    /// Gives up on a worker silent past its stage's `stuck_after` (an event re-arms it, as it
    /// re-arms a streaming worker's own idle timeout).
    async fn await_result(&mut self, sent: &[Item]) -> Result<Vec<Item>, Unanswered> {
        let grace = Duration::from_millis(self.shared.config.stuck_grace_ms);
        let calls = self.stage.batching.forward_calls(sent.len());
        let stuck_after = self.stage.config.stuck_after(grace, calls);
        let mut busy_since = Instant::now();
        loop {
            let frame = tokio::select! {
                frame = self.frames.next() => frame,
                Some(task_id) = self.cancelled.recv() => {
                    self.send_cancel(task_id).await;
                    continue;
                }
                () = past(stuck_after.map(|after| busy_since + after)) => {
                    return Err(Unanswered::Stuck(busy_since.elapsed()));
                }
            };
            match frame {
                Ok(Frame::Items(FrameKind::Result, results)) => {
                    let same_tasks = results.len() == sent.len()
                        && results.iter().zip(sent).all(|(r, s)| r.task_id == s.task_id);
                    if !same_tasks {
                        let err = ProtocolError::Malformed("result does not match its batch");
                        return Err(Unanswered::Broken(err));
                    }
                    return Ok(results);
                }
                Ok(Frame::Items(FrameKind::Event, events)) => {
                    busy_since = Instant::now();
                    for event in events {
                        self.shared.tasks.stream_event(event.task_id, event.status, event.payload);
                    }
                }
                Ok(_) => {
                    let err = ProtocolError::Malformed("expected RESULT or EVENT");
                    return Err(Unanswered::Broken(err));
                }
                Err(err) => return Err(Unanswered::Broken(err)),
            }
        }
    }

    /// Tells the worker a task's client is gone. A failure here is not acted on: if the
    /// socket broke, the pending read of the result reports it.
    async fn send_cancel(&mut self, task_id: TaskId) {
        let item =
            Item { task_id, flags: 0, status: 0, request_id: Bytes::new(), payload: Bytes::new() };
        if let Err(err) = write_items(&mut self.writer, FrameKind::Cancel, &[item]).await {
            debug!(error = %err, "sending a cancel failed");
        }
    }

    /// Moves each task on in its flow (its next stage, the chosen branch, its ensemble's
    /// join) or answers it. Store references in the results are adopted (the task owns them
    /// now) before the next stage sees them.
    fn dispatch(&self, sent: Vec<Item>, results: Vec<Item>) {
        let tasks = &self.shared.tasks;
        let metrics = &self.shared.metrics;
        for (sent, result) in sent.into_iter().zip(results) {
            let (mut status, mut payload) = (result.status, result.payload);
            let mut output = Vec::new();
            let by_reference = status == 200 && result.flags & FLAG_REFERENCE != 0;
            if by_reference {
                match refs::parse(&payload)
                    .and_then(|objects| tasks.stores().adopt(&objects).map(|()| objects))
                {
                    Ok(objects) => output = objects,
                    Err(err) => {
                        warn!(stage = %self.stage.config.name, error = %err, "refused a store reference");
                        status = 500;
                        payload = Bytes::from(format!("inference internal error: {err}"));
                    }
                }
            }
            if status == 503 {
                metrics.store_full.inc();
            }
            let referenced: u64 = output.iter().map(StoreObject::size).sum();
            let inline = payload.len() as u64;
            let flags = if by_reference && status == 200 { FLAG_REFERENCE } else { 0 };
            let answer = Answer { status, flags, payload, objects: output };
            if let Advance::Next(next) = tasks.answer(result.task_id, answer) {
                metrics.count_carried("inline", inline);
                if flags & FLAG_REFERENCE != 0 {
                    metrics.count_carried("reference", referenced);
                }
                self.shared.queue(next, &sent.request_id);
            }
        }
    }

    /// Puts items this link took but never delivered back on the queue for another worker,
    /// with the one it set aside.
    fn requeue(&mut self, batch: Vec<Queued>, reason: &'static str) -> &'static str {
        for queued in batch.into_iter().chain(self.set_aside.take()) {
            self.stage.queue.push(queued);
        }
        reason
    }
}

/// The queue items of a batch sent but not answered; `alone`: each to go on its own next time.
fn unsent(items: Vec<Item>, alone: bool) -> Vec<Queued> {
    let queued = |item: Item| Queued {
        task_id: item.task_id,
        flags: item.flags,
        payload: item.payload,
        request_id: item.request_id,
        alone,
    };
    items.into_iter().map(queued).collect()
}

/// Resolves at `deadline`; never without one.
async fn past(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
