//! Serving one worker process over its Unix socket: hand it batches, route its results.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, BufWriter};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::time::{timeout, Instant};
use tracing::{debug, info, warn};

use crate::batcher::{collect, Queued};
use crate::protocol::{read_frame, write_items, Frame, FrameKind, Hello, Item, ProtocolError};
use crate::state::{stopped, Shared, Stage};
use crate::tasks::{Advance, Outcome};

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
    fn new(stage: &'a Stage) -> Self {
        stage.connected.fetch_add(1, Ordering::AcqRel);
        Self(stage)
    }
}

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        self.0.connected.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What interrupted waiting for a batch.
enum Wake {
    Batch(Option<Instant>),
    WorkerGone,
    Shutdown,
}

async fn serve_link(stream: UnixStream, shared: Arc<Shared>) {
    let (mut reader, writer) = stream.into_split();
    let hello = match timeout(HELLO_TIMEOUT, read_frame(&mut reader)).await {
        Ok(Ok(Frame::Hello(hello))) => hello,
        Ok(Ok(_)) => return warn!("worker connection did not start with HELLO; closed"),
        Ok(Err(err)) => return warn!(error = %err, "worker connection failed before HELLO"),
        Err(_) => return warn!("worker connection sent no HELLO in time; closed"),
    };
    let Some(stage) = shared.stages.get(hello.stage as usize) else {
        return warn!(
            stage = hello.stage,
            pid = hello.pid,
            "worker names an unknown stage; closed"
        );
    };
    let _connected = Connected::new(stage);
    info!(
        stage = %stage.label.stage, worker_id = hello.worker_id, pid = hello.pid,
        "worker connected"
    );
    let mut link = Link {
        shared: &shared,
        stage,
        hello,
        reader,
        writer: BufWriter::new(writer),
    };
    let reason = link.run().await;
    info!(
        stage = %stage.label.stage, worker_id = hello.worker_id, pid = hello.pid, reason,
        "worker disconnected"
    );
}

struct Link<'a> {
    shared: &'a Shared,
    stage: &'a Stage,
    hello: Hello,
    reader: OwnedReadHalf,
    writer: BufWriter<OwnedWriteHalf>,
}

impl Link<'_> {
    /// Serves batches until the worker goes away or the engine stops; returns why it ended.
    async fn run(&mut self) -> &'static str {
        let mut shutdown = self.shared.shutdown.subscribe();
        let max_batch_size = self.stage.config.max_batch_size;
        let mut batch: Vec<Queued> = Vec::with_capacity(max_batch_size);
        loop {
            let mut probe = [0u8; 1];
            let wake = tokio::select! {
                () = stopped(&mut shutdown) => Wake::Shutdown,
                // A worker never speaks while idle: a read that completes means it closed (or
                // broke the protocol), so its queue items must go to another worker.
                _ = self.reader.read(&mut probe) => Wake::WorkerGone,
                opened = collect(&self.stage.queue.receiver, &mut batch, max_batch_size, self.stage.max_wait) => Wake::Batch(opened),
            };
            let opened = match wake {
                Wake::Batch(Some(opened)) => opened,
                Wake::Batch(None) | Wake::Shutdown => {
                    return self.requeue(batch, "engine stopping")
                }
                Wake::WorkerGone => return self.requeue(batch, "worker closed its socket"),
            };
            batch.retain(|queued| self.shared.tasks.is_pending(queued.task_id));
            if batch.is_empty() {
                continue;
            }
            if max_batch_size > 1 {
                let label = &self.stage.label;
                self.shared
                    .metrics
                    .batch_size
                    .get_or_create(label)
                    .observe(batch.len() as f64);
                self.shared
                    .metrics
                    .batch_duration
                    .get_or_create(label)
                    .observe(opened.elapsed().as_secs_f64());
            }
            let items: Vec<Item> = batch
                .drain(..)
                .map(|q| Item {
                    task_id: q.task_id,
                    flags: q.flags,
                    status: 0,
                    payload: q.payload,
                })
                .collect();
            if let Err(err) = write_items(&mut self.writer, FrameKind::Batch, &items).await {
                // The worker never saw this batch: another worker can still serve it.
                debug!(error = %err, "sending a batch failed");
                let unsent = items.into_iter().map(|i| Queued {
                    task_id: i.task_id,
                    flags: i.flags,
                    payload: i.payload,
                });
                return self.requeue(unsent.collect(), "worker closed its socket");
            }
            let started = Instant::now();
            match self.read_result(&items).await {
                Ok(results) => {
                    self.shared
                        .metrics
                        .process_duration
                        .get_or_create(&self.stage.label)
                        .observe(started.elapsed().as_secs_f64());
                    self.dispatch(results);
                }
                Err(err) => {
                    warn!(
                        stage = %self.stage.label.stage, pid = self.hello.pid, error = %err,
                        tasks = items.len(), "worker failed while holding a batch; its tasks get 500"
                    );
                    let message = format!(
                        "inference internal error: worker {} of stage {} exited",
                        self.hello.worker_id, self.stage.config.name
                    );
                    for item in &items {
                        self.shared
                            .tasks
                            .fail(item.task_id, Outcome::error(500, message.clone()));
                    }
                    return "worker failed while holding a batch";
                }
            }
        }
    }

    /// Reads the RESULT of `sent`, checking that it answers exactly those tasks in order.
    async fn read_result(&mut self, sent: &[Item]) -> Result<Vec<Item>, ProtocolError> {
        loop {
            match read_frame(&mut self.reader).await? {
                Frame::Items(FrameKind::Result, results) => {
                    let same_tasks = results.len() == sent.len()
                        && results
                            .iter()
                            .zip(sent)
                            .all(|(r, s)| r.task_id == s.task_id);
                    if !same_tasks {
                        return Err(ProtocolError::Malformed("result does not match its batch"));
                    }
                    return Ok(results);
                }
                Frame::Items(FrameKind::Event, _) => {
                    debug!("stream events are not served yet; dropped");
                }
                _ => return Err(ProtocolError::Malformed("expected a RESULT frame")),
            }
        }
    }

    /// Moves each task to its next stage or answers it.
    fn dispatch(&self, results: Vec<Item>) {
        for item in results {
            if let Advance::Next(hop) =
                self.shared
                    .tasks
                    .advance(item.task_id, item.status, item.payload.clone())
            {
                self.shared.stages[hop.stage].queue.push(Queued {
                    task_id: item.task_id,
                    flags: hop.flags,
                    payload: item.payload,
                });
            }
        }
    }

    /// Puts items this link took but never delivered back on the queue for another worker.
    fn requeue(&self, batch: Vec<Queued>, reason: &'static str) -> &'static str {
        for queued in batch {
            self.stage.queue.push(queued);
        }
        reason
    }
}
