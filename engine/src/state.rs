//! The state every part of a running engine shares: config, task table, queues, metrics,
//! readiness and the shutdown signal.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{watch, Semaphore};
use tracing::warn;

use crate::batcher::{Batching, Queued, StageQueue};
use crate::config::{Config, StageConfig};
use crate::flow::Flow;
use crate::http::documents::Documents;
use crate::metrics::Metrics;
use crate::refs::Stores;
use crate::stuck::StuckReports;
use crate::tasks::{Advance, Dispatch, Outcome, TaskTable};

/// A stage as the running engine sees it.
pub struct Stage {
    /// Its configuration.
    pub config: StageConfig,
    /// Items waiting for one of its workers.
    pub queue: StageQueue,
    /// Worker links now connected.
    pub connected: AtomicUsize,
    /// How long a batch may wait to fill.
    pub max_wait: Duration,
    /// How its links take batches from the queue.
    pub batching: Batching,
}

/// A route as the running engine sees it.
pub struct Route {
    /// The flow its tasks run (a pipeline of stages for a linear route).
    pub flow: Flow,
    /// Content type of a successful response.
    pub mime: String,
    /// Whether the egress worker streams server-sent events.
    pub stream: bool,
}

/// Shared by the HTTP side, every worker link and the control API.
pub struct Shared {
    /// The validated config.
    pub config: Config,
    /// Every task in flight.
    pub tasks: Arc<TaskTable>,
    /// Stages by index.
    pub stages: Vec<Stage>,
    /// Routes by path.
    pub routes: HashMap<String, Route>,
    /// The OpenAPI document and Swagger UI assets.
    pub documents: Documents,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// One permit per task in flight, `capacity` in all.
    pub capacity: Arc<Semaphore>,
    /// Set once shutdown starts: new requests get 503.
    pub draining: AtomicBool,
    /// Flips to true once every stage has had all its workers connected at the same time:
    /// the moment the engine may start accepting HTTP connections (see `Engine::listen`).
    pub all_started: watch::Sender<bool>,
    /// Flips to true when the engine must stop; every loop watches it.
    pub shutdown: watch::Sender<bool>,
    /// Workers the links found stuck, for the supervisor to kill.
    pub stuck: StuckReports,
}

impl Shared {
    /// Builds the running state from a validated config and the documents it names.
    pub fn new(
        config: Config,
        documents: Documents,
        stores: Arc<Stores>,
        stuck: StuckReports,
    ) -> Self {
        // The egress stages of streaming routes (a streaming route is a line of stages).
        let streaming: Vec<usize> = config
            .routes
            .iter()
            .filter(|route| route.stream)
            .filter_map(|route| route.stages.last().copied())
            .collect();
        let stages = config
            .stages
            .iter()
            .enumerate()
            .map(|(index, stage)| Stage {
                batching: Batching::of(stage, streaming.contains(&index)),
                queue: StageQueue::default(),
                connected: AtomicUsize::new(0),
                max_wait: Duration::from_millis(match stage.max_wait_time_ms {
                    0 => config.wait_ms,
                    own => own,
                }),
                config: stage.clone(),
            })
            .collect();
        let routes = config
            .routes
            .iter()
            .map(|route| {
                let flow = Flow::compile(&route.steps());
                let running = Route { flow, mime: route.mime.clone(), stream: route.stream };
                (route.path.clone(), running)
            })
            .collect();
        Self {
            metrics: Metrics::new(&config.namespace, config.timeout_ms),
            capacity: Arc::new(Semaphore::new(config.capacity)),
            tasks: Arc::new(TaskTable::new(stores)),
            documents,
            stages,
            routes,
            draining: AtomicBool::new(false),
            all_started: watch::channel(false).0,
            shutdown: watch::channel(false).0,
            stuck,
            config,
        }
    }

    /// Notes that a worker of some stage connected: the first time every stage has its full
    /// `num` connected, `all_started` flips (and stays set while workers come and go).
    pub fn note_connected(&self) {
        if *self.all_started.borrow() {
            return;
        }
        let all = self
            .stages
            .iter()
            .all(|stage| stage.connected.load(Ordering::Acquire) >= stage.config.num);
        if all {
            self.all_started.send_replace(true);
        }
    }

    /// Whether every stage has had all its workers connected once.
    pub fn all_started(&self) -> bool {
        *self.all_started.borrow()
    }

    /// Whether shutdown has started.
    pub fn is_draining(&self) -> bool {
        // SeqCst with the store in `Engine::shutdown`: admission and the drain each write one
        // thing (a permit, the flag) and then read the other's.
        self.draining.load(Ordering::SeqCst)
    }

    /// Queues each item at its stage, for the request `request_id` (a client request and its
    /// member tasks share their request's id).
    pub fn queue(&self, dispatches: Vec<Dispatch>, request_id: &Bytes) {
        let mut pending = VecDeque::from(dispatches);
        while let Some(Dispatch { task_id, hop, payload }) = pending.pop_front() {
            if let Some(stage) = self.stages.get(hop.stage) {
                let request_id = request_id.clone();
                stage.queue.push(Queued {
                    task_id,
                    flags: hop.flags,
                    payload,
                    request_id,
                    alone: false,
                });
                continue;
            }
            // Flows are validated against the stages: a bug, not the request's fault.
            warn!(stage = hop.stage, "a flow names a stage that does not exist");
            let outcome = Outcome::error(500, "inference internal error: no such stage");
            if let Advance::Next(more) = self.tasks.fail(task_id, outcome) {
                pending.extend(more);
            }
        }
    }

    /// Connected workers per stage.
    pub fn connected_workers(&self) -> Vec<usize> {
        self.stages.iter().map(|stage| stage.connected.load(Ordering::Acquire)).collect()
    }
}

/// Resolves once the engine's shutdown signal is set (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // Drop the borrow `wait_for` returns right away: it must not live across an await.
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_without_its_own_wait_takes_the_servers() {
        let stage = |max_wait_time_ms| StageConfig {
            name: "Stage_1".into(),
            num: 1,
            max_batch_size: 4,
            max_wait_time_ms,
            wait_for_batch: true,
            forward_timeout_ms: 0,
        };
        let config = Config { wait_ms: 7, stages: vec![stage(0), stage(20)], ..Config::default() };
        let stores = Arc::new(Stores::new(None, None));
        let stuck = StuckReports::new().unwrap();
        let shared = Shared::new(config, Documents::default(), stores, stuck);
        assert_eq!(shared.stages[0].max_wait, Duration::from_millis(7));
        assert_eq!(shared.stages[1].max_wait, Duration::from_millis(20));
    }
}
