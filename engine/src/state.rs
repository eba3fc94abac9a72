//! The state every part of a running engine shares: config, task table, queues, metrics,
//! readiness and the shutdown signal.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};

use crate::batcher::StageQueue;
use crate::config::{Config, RouteConfig, StageConfig};
use crate::http::documents::Documents;
use crate::metrics::{Metrics, StageLabels};
use crate::refs::Stores;
use crate::tasks::{Pipeline, TaskTable};

/// A stage as the running engine sees it.
pub struct Stage {
    /// Its configuration.
    pub config: StageConfig,
    /// `<index>_<name>`, the label of its metrics.
    pub label: StageLabels,
    /// Items waiting for one of its workers.
    pub queue: StageQueue,
    /// Worker links now connected.
    pub connected: AtomicUsize,
    /// How long a batch may wait to fill.
    pub max_wait: Duration,
}

/// A route as the running engine sees it.
pub struct Route {
    /// The stages its tasks pass through.
    pub pipeline: Pipeline,
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
    /// Latched once every stage had all its workers connected at the same time.
    all_started: AtomicBool,
    /// Flips to true when the engine must stop; every loop watches it.
    pub shutdown: watch::Sender<bool>,
}

impl Shared {
    /// Builds the running state from a validated config and the documents it names.
    pub fn new(config: Config, documents: Documents, stores: Arc<Stores>) -> Self {
        let stages = config
            .stages
            .iter()
            .enumerate()
            .map(|(index, stage)| Stage {
                label: StageLabels { stage: format!("{}_{}", index + 1, stage.name) },
                queue: StageQueue::default(),
                connected: AtomicUsize::new(0),
                max_wait: Duration::from_millis(stage.max_wait_time_ms),
                config: stage.clone(),
            })
            .collect();
        let routes = config
            .routes
            .iter()
            .map(|RouteConfig { path, stages, mime, stream }| {
                let route =
                    Route { pipeline: stages.clone().into(), mime: mime.clone(), stream: *stream };
                (path.clone(), route)
            })
            .collect();
        Self {
            metrics: Metrics::new(&config.namespace),
            capacity: Arc::new(Semaphore::new(config.capacity)),
            tasks: Arc::new(TaskTable::new(stores)),
            documents,
            stages,
            routes,
            draining: AtomicBool::new(false),
            all_started: AtomicBool::new(false),
            shutdown: watch::channel(false).0,
            config,
        }
    }

    /// Ready to serve: at start every stage must have all its workers connected; after that,
    /// at least one per stage (a restarting worker does not take the server out of rotation).
    pub fn is_ready(&self) -> bool {
        if self.draining.load(Ordering::Acquire) {
            return false;
        }
        if !self.all_started.load(Ordering::Acquire) {
            let all = self
                .stages
                .iter()
                .all(|stage| stage.connected.load(Ordering::Acquire) >= stage.config.num);
            if !all {
                return false;
            }
            self.all_started.store(true, Ordering::Release);
        }
        self.stages.iter().all(|stage| stage.connected.load(Ordering::Acquire) >= 1)
    }

    /// Whether shutdown has started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
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
