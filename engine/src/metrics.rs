//! Prometheus metrics of the engine, served as text at `GET /metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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

/// Labels of per-stage metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    /// `<index>_<worker class name>`: unique even when one class serves two stages.
    pub stage: String,
}

fn seconds_histogram() -> Histogram {
    // 100 µs .. ~52 s, doubling.
    Histogram::new(exponential_buckets(1e-4, 2.0, 20))
}

fn batch_size_histogram() -> Histogram {
    // 1 .. 1024, doubling.
    Histogram::new(exponential_buckets(1.0, 2.0, 11))
}

/// Every metric family of the engine.
pub struct Metrics {
    registry: Registry,
    /// Responses by code and endpoint.
    pub throughput: Family<CodeLabels, Counter>,
    /// Time a worker spent on a batch, by stage.
    pub process_duration: Family<StageLabels, Histogram>,
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
    /// Registers every family under `namespace`.
    pub fn new(namespace: &str) -> Self {
        let mut registry = Registry::with_prefix(namespace);
        let throughput = Family::<CodeLabels, Counter>::default();
        let process_duration =
            Family::<StageLabels, Histogram>::new_with_constructor(seconds_histogram as fn() -> _);
        let batch_size = Family::<StageLabels, Histogram>::new_with_constructor(
            batch_size_histogram as fn() -> _,
        );
        let batch_duration =
            Family::<StageLabels, Histogram>::new_with_constructor(seconds_histogram as fn() -> _);
        let remaining_task = Gauge::default();
        let ipc_bytes = Family::<CarriedLabels, Counter>::default();
        let store_full = Counter::default();
        let (shm_capacity, shm_used, shm_objects) =
            (Gauge::default(), Gauge::default(), Gauge::default());
        registry.register(
            "throughput",
            "responses by status code and endpoint",
            throughput.clone(),
        );
        registry.register(
            "process_duration_second",
            "seconds a worker spent on one batch",
            process_duration.clone(),
        );
        registry.register("batch_size", "items in one batch", batch_size.clone());
        registry.register(
            "batch_duration_second",
            "seconds a batch waited to fill",
            batch_duration.clone(),
        );
        registry.register("remaining_task", "tasks in flight", remaining_task.clone());
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
        let metrics = Metrics::new("demo");
        metrics.count_response(200, "/inference");
        metrics.batch_size.get_or_create(&StageLabels { stage: "1_Echo".into() }).observe(4.0);
        metrics.remaining_task.set(3);
        let text = metrics.render();
        assert!(text.contains("demo_throughput_total{code=\"200\",endpoint=\"/inference\"} 1"));
        assert!(text.contains("demo_batch_size_count{stage=\"1_Echo\"} 1"));
        assert!(text.contains("demo_remaining_task 3"));
    }
}
