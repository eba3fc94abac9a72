//! Prometheus metrics of the engine, served as text at `GET /metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    /// HTTP status code of the response.
    pub code: String,
    /// Request path.
    pub endpoint: String,
}

/// Labels of the inter-stage traffic counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CarriedLabels {
    /// `inline` (bytes crossed the engine) or `reference` (bytes stayed in a store).
    pub carried: &'static str,
}

/// Labels of per-stage metrics, mosec's: a dashboard written for mosec reads ours unchanged.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    /// The stage's name, `<WorkerClass>_<n>`: unique even when one class serves two stages.
    pub stage: String,
    /// The worker's id within its stage; `total` on the end-to-end series.
    pub connection: String,
}

impl StageLabels {
    /// The labels of whole requests, from arrival to answer.
    pub fn total() -> Self {
        Self { stage: "total".into(), connection: "total".into() }
    }
}

/// Seconds, doubling from 1 ms up to the first bucket past the request timeout (mosec's).
fn duration_histogram(timeout_ms: u64) -> Histogram {
    let buckets = (timeout_ms.max(1) as f64).log2().ceil() as u16 + 1;
    Histogram::new(exponential_buckets(1e-3, 2.0, buckets))
}

fn batch_duration_histogram() -> Histogram {
    // 1 ms .. 4.096 s, doubling.
    Histogram::new(exponential_buckets(1e-3, 2.0, 13))
}

fn batch_size_histogram() -> Histogram {
    // 1 .. 512, doubling.
    Histogram::new(exponential_buckets(1.0, 2.0, 10))
}

/// Makes the duration histograms, whose buckets depend on the request timeout.
#[derive(Clone)]
pub struct DurationHistogram {
    timeout_ms: u64,
}

impl MetricConstructor<Histogram> for DurationHistogram {
    fn new_metric(&self) -> Histogram {
        duration_histogram(self.timeout_ms)
    }
}

/// Every metric family of the engine.
pub struct Metrics {
    registry: Registry,
    /// Responses by code and endpoint.
    pub throughput: Family<CodeLabels, Counter>,
    /// Time a worker spent on a batch, by stage and worker; whole successful requests under
    /// [`StageLabels::total`].
    pub process_duration: Family<StageLabels, Histogram, DurationHistogram>,
    /// Items per batch, by batching stage.
    pub batch_size: Family<StageLabels, Histogram>,
    /// Time a batch waited to fill, by batching stage.
    pub batch_duration: Family<StageLabels, Histogram>,
    /// Tasks in flight.
    pub remaining_task: Gauge,
    /// Bytes handed from stage to stage, inline or by reference.
    pub ipc_bytes: Family<CarriedLabels, Counter>,
    /// Requests a worker failed with 503 because a store was full.
    pub store_full: Counter,
    /// Arena capacity in bytes (0 without an arena).
    pub shm_capacity: Gauge,
    /// Arena bytes in use.
    pub shm_used: Gauge,
    /// Arena objects alive.
    pub shm_objects: Gauge,
}

impl Metrics {
    /// Registers every family under `namespace`; `timeout_ms` bounds the duration buckets.
    pub fn new(namespace: &str, timeout_ms: u64) -> Self {
        let mut registry = Registry::with_prefix(namespace);
        let throughput = Family::<CodeLabels, Counter>::default();
        let process_duration = Family::new_with_constructor(DurationHistogram { timeout_ms });
        let batch_size = Family::<StageLabels, Histogram>::new_with_constructor(
            batch_size_histogram as fn() -> _,
        );
        let batch_duration = Family::<StageLabels, Histogram>::new_with_constructor(
            batch_duration_histogram as fn() -> _,
        );
        let remaining_task = Gauge::default();
        let ipc_bytes = Family::<CarriedLabels, Counter>::default();
        let store_full = Counter::default();
        let (shm_capacity, shm_used, shm_objects) =
            (Gauge::default(), Gauge::default(), Gauge::default());
        // mosec's names and help texts for mosec's families.
        registry.register(
            "throughput",
            "service inference endpoint throughput",
            throughput.clone(),
        );
        registry.register(
            "process_duration_second",
            "process duration for each connection in each stage",
            process_duration.clone(),
        );
        registry.register(
            "batch_size",
            "batch size for each connection in each stage",
            batch_size.clone(),
        );
        registry.register(
            "batch_duration_second",
            "dynamic batching duration for each connection in each stage",
            batch_duration.clone(),
        );
        registry.register(
            "remaining_task",
            "remaining tasks for the whole service",
            remaining_task.clone(),
        );
        registry.register("ipc_bytes", "bytes passed between stages, by how", ipc_bytes.clone());
        registry.register(
            "store_full",
            "requests failed because a store was full",
            store_full.clone(),
        );
        registry.register("shm_capacity_bytes", "arena capacity", shm_capacity.clone());
        registry.register("shm_used_bytes", "arena bytes in use", shm_used.clone());
        registry.register("shm_objects", "arena objects alive", shm_objects.clone());
        Self {
            registry,
            throughput,
            process_duration,
            batch_size,
            batch_duration,
            remaining_task,
            ipc_bytes,
            store_full,
            shm_capacity,
            shm_used,
            shm_objects,
        }
    }

    /// Counts one response.
    pub fn count_response(&self, code: u16, endpoint: &str) {
        self.throughput
            .get_or_create(&CodeLabels { code: code.to_string(), endpoint: endpoint.to_owned() })
            .inc();
    }

    /// Counts bytes handed between stages.
    pub fn count_carried(&self, carried: &'static str, bytes: u64) {
        self.ipc_bytes.get_or_create(&CarriedLabels { carried }).inc_by(bytes);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_the_namespace_prefix() {
        let metrics = Metrics::new("demo", 3000);
        metrics.count_response(200, "/inference");
        let labels = StageLabels { stage: "Echo_1".into(), connection: "2".into() };
        metrics.batch_size.get_or_create(&labels).observe(4.0);
        metrics.process_duration.get_or_create(&StageLabels::total()).observe(0.01);
        metrics.remaining_task.set(3);
        let text = metrics.render();
        assert!(text.contains("demo_throughput_total{code=\"200\",endpoint=\"/inference\"} 1"));
        assert!(text.contains("demo_batch_size_count{stage=\"Echo_1\",connection=\"2\"} 1"));
        // 1 ms doubling to 4.096 s, the first bucket past a 3 s timeout, as mosec's.
        let total = "demo_process_duration_second_bucket{le=\"4.096\",stage=\"total\",connection=\"total\"} 1";
        assert!(text.contains(total), "{text}");
        assert!(!text.contains("le=\"8.192\""));
        assert!(text.contains("demo_remaining_task 3"));
    }
}
