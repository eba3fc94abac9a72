//! The engine's configuration: one struct, one source of truth for every default.
//!
//! Python parses CLI flags and `MOSEC_*` variables with the defaults it reads from
//! [`Config::default`] (exported as `mosec._engine.default_config()`), then hands the finished
//! config back as JSON. No default is written on the Python side.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything the engine needs to run; field units are in their names or docs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// IP address the HTTP server binds.
    pub address: String,
    /// TCP port the HTTP server binds.
    pub port: u16,
    /// Prefix of every Prometheus metric name.
    pub namespace: String,
    /// Whole-request deadline in milliseconds; past it the client gets 408.
    pub timeout_ms: u64,
    /// Most tasks in flight at once; one more is answered 429.
    pub capacity: usize,
    /// Largest accepted request body in bytes; a larger one is answered 413.
    pub max_request_size: usize,
    /// `max_wait_time` in milliseconds of the batching stages whose own is 0.
    pub wait_ms: u64,
    /// Milliseconds a client has to send a whole request head (from the accept for the first
    /// request of a connection, from the previous response for the next ones, so it is also
    /// the idle keep-alive limit); a slower client's connection is closed.
    pub header_timeout_ms: u64,
    /// Most HTTP connections open at once; past it new ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// One of `debug`, `info`, `warning`, `error`.
    pub log_level: String,
    /// JSON lines when true, readable text otherwise.
    pub log_json: bool,
    /// Unix socket the worker processes connect to.
    pub socket_path: String,
    /// Threads of the engine's tokio runtime; 0 picks a quarter of the cores, 1 to 4.
    pub engine_threads: usize,
    /// Accept gzip/zstd request bodies and compress responses by `accept-encoding`.
    pub compression: bool,
    /// Milliseconds between keep-alive comments on an idle event stream.
    pub sse_keepalive_ms: u64,
    /// Milliseconds a worker may stay busy with one batch past its stage's
    /// `forward_timeout_ms` before it counts as stuck (its `forward` swallowed the timeout,
    /// or sits in a C call) and is reported to be killed and restarted. The time a forward
    /// that was interrupted needs to return, with the stage's decoding and encoding around it.
    pub stuck_grace_ms: u64,
    /// The work, in the worker's measured time per item, that one batch of a stage handed what
    /// is queued may hold (`batcher::ItemCost`): the items' results come back together, so
    /// the first one waits for the others by about this much.
    pub queued_batch_work_ms: u64,
    /// The OpenAPI document served at `/openapi/metadata.json` (JSON text; empty: none).
    pub openapi: String,
    /// Folder of the Swagger UI assets served under `/openapi/swagger/` (empty: none).
    pub swagger_dir: String,
    /// Whether to create the shared-memory arena (some stage uses it).
    pub use_arena: bool,
    /// Bytes of the shared-memory arena file, header included.
    pub shm_size: u64,
    /// Folder the arena file is created in (a tmpfs such as /dev/shm).
    pub shm_dir: String,
    /// Milliseconds a producer waits for space in a full arena before its request fails (503).
    /// The workers wait (they allocate); the engine carries it so that its default is written
    /// once, here, like every other (`--shm-wait`).
    pub shm_wait_ms: u64,
    /// Smallest NumPy array (bytes) that a worker of a stage with an arena mixin allocates in
    /// the arena during `forward`, so that returning it hands it over with no copy; 0 turns
    /// the workers' NumPy memory handler off (`--shm-alloc-min`). Read by the workers only.
    /// 256 KiB: where lending clearly beats copying (`python -m benchmarks.alloc_threshold`:
    /// the hop takes 0.79x the time at 256 KiB, break-even near 64 KiB) while smaller
    /// temporaries, which cost 5-10% more in the arena, stay on NumPy's heap.
    pub shm_alloc_min: u64,
    /// Redis URL of the Redis store, when a stage uses it; the engine deletes the keys of tasks
    /// that end before their consumer read them.
    pub redis_url: String,
    /// The stages, referenced by index from `routes`.
    pub stages: Vec<StageConfig>,
    /// The HTTP routes and the stages each one runs through.
    pub routes: Vec<RouteConfig>,
}

/// One stage of workers: a pool of identical processes behind one queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// Worker class name, used in metric labels and logs.
    pub name: String,
    /// Number of worker processes; readiness waits for this many at start.
    pub num: usize,
    /// Largest batch handed to one `forward` call.
    pub max_batch_size: usize,
    /// How long a batch waits for more items after its first one, in milliseconds; 0 means
    /// the server's `wait_ms`.
    pub max_wait_time_ms: u64,
    /// Whether a batch waits for more items (up to `max_wait_time_ms`). When false, a batch is
    /// what is queued when a worker is free, shared among the stage's workers, with no wait:
    /// for a stage whose worker runs items one by one and only wants fewer hops per item.
    #[serde(default = "waits_for_batches")]
    pub wait_for_batch: bool,
    /// The workers' own `forward` timeout in milliseconds (the `Runtime`'s, else the server's
    /// `--timeout`), idle time for a streaming worker; 0: none (a thread stage), and then no
    /// worker of the stage is ever counted stuck. See [`StageConfig::stuck_after`].
    #[serde(default)]
    pub forward_timeout_ms: u64,
}

impl StageConfig {
    /// How long a worker of this stage may be busy with one batch of `forward_calls` calls
    /// (since the batch was sent, or since its last stream event) before it counts as stuck:
    /// each call's forward timeout, plus `grace`. None when the stage has no forward timeout.
    pub fn stuck_after(&self, grace: Duration, forward_calls: usize) -> Option<Duration> {
        match self.forward_timeout_ms {
            0 => None,
            timeout => {
                let calls = u32::try_from(forward_calls.max(1)).unwrap_or(u32::MAX);
                Some(Duration::from_millis(timeout).saturating_mul(calls).saturating_add(grace))
            }
        }
    }
}

/// A stage's `wait_for_batch` when the config leaves it out: mosec's batching.
fn waits_for_batches() -> bool {
    true
}

/// One POST route and its pipeline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Request path, starting with `/`.
    pub path: String,
    /// Indices into [`Config::stages`], in pipeline order.
    pub stages: Vec<usize>,
    /// Content type of a successful response (the egress worker's `resp_mime_type`).
    pub mime: String,
    /// The egress worker streams server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// The route's flow graph; when non-empty it runs instead of `stages` (which then only
    /// has to name existing stages). Empty for a linear route, and left out of the JSON then.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flow: Vec<Step>,
}

/// One step of a route's flow. A flow is a list of steps run in order, each one's output
/// the next one's input; members and branches are flows themselves, so steps nest.
///
/// JSON (externally tagged): `{"stage": 3}`,
/// `{"ensemble": {"members": [[...], [...]], "fail_fast": true}}`,
/// `{"switch": {"chooser": 5, "branches": [[...], [...]]}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Runs one stage (an index into [`Config::stages`]).
    Stage(usize),
    /// Runs every member on the same input; continues with their joined outputs.
    Ensemble(EnsembleStep),
    /// Runs the chooser stage on the input, then the branch it names on that same input.
    Switch(SwitchStep),
}

/// An ensemble: one input to every member flow, their outputs joined in member order (the
/// JOINED layout is in `crate::protocol`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EnsembleStep {
    /// The member flows, at least one, each with at least one step.
    pub members: Vec<Vec<Step>>,
    /// End the task with the first member error (cancelling the other members) instead of
    /// joining errors into their slots. False when left out.
    #[serde(default)]
    pub fail_fast: bool,
}

/// A switch: the chooser stage answers a little-endian `u32` branch index; the branch then
/// runs on the switch's own input, not on the chooser's output.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SwitchStep {
    /// Index into [`Config::stages`] of the stage that picks the branch.
    pub chooser: usize,
    /// The branch flows, at least one, each with at least one step.
    pub branches: Vec<Vec<Step>>,
}

impl RouteConfig {
    /// The flow this route runs: `flow`, or `stages` as a flow of stage steps.
    pub fn steps(&self) -> Vec<Step> {
        if self.flow.is_empty() {
            self.stages.iter().copied().map(Step::Stage).collect()
        } else {
            self.flow.clone()
        }
    }
}

/// Paths the engine serves itself; no route may take them.
pub const RESERVED_PATHS: [&str; 2] = ["/", "/metrics"];
/// The prefix of the documents the engine serves (`/openapi/metadata.json`, Swagger UI); no
/// route may start with it.
pub const RESERVED_PREFIX: &str = "/openapi";

/// A config that cannot run, with the reason.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    /// The JSON did not parse into a [`Config`].
    #[error("invalid engine config: {0}")]
    Parse(String),
    /// The config parsed but names something impossible.
    #[error("invalid engine config: {0}")]
    Invalid(String),
}

impl Default for Config {
    fn default() -> Self {
        Self {
            address: "0.0.0.0".to_owned(),
            port: 8000,
            namespace: "mosec_service".to_owned(),
            timeout_ms: 3000,
            capacity: 1024,
            max_request_size: 10 * 1024 * 1024,
            wait_ms: 10,
            header_timeout_ms: 30_000,
            max_connections: 4096,
            log_level: "info".to_owned(),
            log_json: true,
            socket_path: String::new(),
            engine_threads: 0,
            compression: false,
            sse_keepalive_ms: 15_000,
            stuck_grace_ms: 5_000,
            queued_batch_work_ms: 2,
            openapi: String::new(),
            swagger_dir: String::new(),
            use_arena: false,
            shm_size: 1 << 30,
            shm_dir: "/dev/shm".to_owned(),
            shm_wait_ms: 1000,
            shm_alloc_min: 256 << 10,
            redis_url: String::new(),
            stages: Vec::new(),
            routes: Vec::new(),
        }
    }
}

impl Config {
    /// Parses and validates a config from JSON; missing fields take their defaults.
    ///
    /// # Errors
    /// [`ConfigError`] when the JSON is malformed or the config cannot run.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let config: Config =
            serde_json::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// The defaults as JSON, for the Python side's flag parser.
    pub fn default_json() -> String {
        serde_json::to_string(&Config::default()).unwrap_or_default()
    }

    /// Checks that every stage and route makes sense.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if self.timeout_ms == 0 {
            return invalid("timeout must be positive".into());
        }
        if self.use_arena && self.shm_size < 1 << 20 {
            return invalid(format!(
                "shm_size of {} bytes is too small: use at least 1M",
                self.shm_size
            ));
        }
        if self.sse_keepalive_ms == 0 {
            return invalid("sse_keepalive_ms must be positive".into());
        }
        if self.stuck_grace_ms == 0 {
            return invalid("stuck_grace_ms must be positive".into());
        }
        if !self.openapi.is_empty()
            && serde_json::from_str::<serde_json::Value>(&self.openapi).is_err()
        {
            return invalid("the OpenAPI document is not valid JSON".into());
        }
        // The drain counts capacity permits back in one `acquire_many(u32)`.
        if self.capacity == 0 || u32::try_from(self.capacity).is_err() {
            return invalid(format!("capacity must be between 1 and {}", u32::MAX));
        }
        if self.header_timeout_ms == 0 {
            return invalid("header_timeout_ms must be positive".into());
        }
        // tokio's semaphore holds at most `usize::MAX >> 3` permits.
        if self.max_connections == 0 || self.max_connections > tokio::sync::Semaphore::MAX_PERMITS {
            return invalid(format!(
                "max_connections must be between 1 and {}",
                tokio::sync::Semaphore::MAX_PERMITS
            ));
        }
        if !matches!(self.log_level.as_str(), "debug" | "info" | "warning" | "error") {
            return invalid(format!("unknown log level {:?}", self.log_level));
        }
        for (index, stage) in self.stages.iter().enumerate() {
            if stage.num == 0 || stage.max_batch_size == 0 {
                return invalid(format!(
                    "stage {index} ({}) needs num and max_batch_size >= 1",
                    stage.name
                ));
            }
        }
        if self.routes.is_empty() {
            return invalid("no route: append at least one worker".into());
        }
        let mut seen = std::collections::HashSet::new();
        for route in &self.routes {
            if !route.path.starts_with('/') {
                return invalid(format!("route {:?} must start with '/'", route.path));
            }
            if RESERVED_PATHS.contains(&route.path.as_str())
                || route.path.starts_with(RESERVED_PREFIX)
            {
                return invalid(format!("route {:?} is reserved by the server", route.path));
            }
            if !seen.insert(route.path.as_str()) {
                return invalid(format!("route {:?} is registered twice", route.path));
            }
            if route.stages.is_empty() && route.flow.is_empty() {
                return invalid(format!("route {:?} has no stage", route.path));
            }
            if let Some(bad) = route.stages.iter().find(|&&s| s >= self.stages.len()) {
                return invalid(format!("route {:?} names unknown stage {bad}", route.path));
            }
            self.validate_flow(&route.flow, "flow", route.stream)
                .map_err(|why| ConfigError::Invalid(format!("route {:?} {why}", route.path)))?;
        }
        Ok(())
    }

    /// Checks one flow of a route, nested flows included; `at` names the flow in the message
    /// (`flow[1].members[0]`), so a mistake deep in a graph is easy to find.
    fn validate_flow(&self, flow: &[Step], at: &str, stream: bool) -> Result<(), String> {
        let known = |stage: usize, what: &str, at: &str| {
            if stage < self.stages.len() {
                Ok(())
            } else {
                Err(format!("names unknown stage {stage} as {what} at {at}"))
            }
        };
        for (index, step) in flow.iter().enumerate() {
            let at = format!("{at}[{index}]");
            let (flows, kind) = match step {
                Step::Stage(stage) => {
                    known(*stage, "a stage", &at)?;
                    continue;
                }
                _ if stream => {
                    return Err(format!(
                        "streams events, so its flow may only have stage steps (found one at {at})"
                    ))
                }
                Step::Ensemble(ensemble) => {
                    if ensemble.members.len() > usize::from(u16::MAX) {
                        return Err(format!("has more than {} ensemble members at {at}", u16::MAX));
                    }
                    (&ensemble.members, "members")
                }
                Step::Switch(switch) => {
                    known(switch.chooser, "a switch chooser", &at)?;
                    (&switch.branches, "branches")
                }
            };
            if flows.is_empty() {
                return Err(format!("has no {kind} at {at}"));
            }
            for (inner, steps) in flows.iter().enumerate() {
                let at = format!("{at}.{kind}[{inner}]");
                if steps.is_empty() {
                    return Err(format!("has an empty flow at {at}"));
                }
                self.validate_flow(steps, &at, stream)?;
            }
        }
        Ok(())
    }

    /// The socket address string the HTTP server binds.
    pub fn http_address(&self) -> String {
        if self.address.contains(':') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Config {
        Config {
            stages: vec![StageConfig {
                name: "Echo".into(),
                num: 1,
                max_batch_size: 1,
                max_wait_time_ms: 0,
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
        }
    }

    #[test]
    fn defaults_round_trip_through_json() {
        let parsed: Config = serde_json::from_str(&Config::default_json()).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn missing_fields_take_defaults() {
        let json = serde_json::to_string(&minimal()).unwrap();
        let config = Config::from_json(&json).unwrap();
        assert_eq!(config.port, 8000);
        assert_eq!(config.capacity, 1024);
    }

    #[test]
    fn a_stage_with_a_forward_timeout_is_stuck_past_it_plus_the_grace() {
        let mut stage = minimal().stages.remove(0);
        let grace = Duration::from_millis(Config::default().stuck_grace_ms);
        assert_eq!(stage.stuck_after(grace, 1), None, "no forward timeout: never stuck");
        stage.forward_timeout_ms = 1500;
        assert_eq!(stage.stuck_after(grace, 1), Some(Duration::from_millis(6500)));
        // Three items, each its own forward call with its own timeout.
        assert_eq!(stage.stuck_after(grace, 3), Some(Duration::from_millis(9500)));
        let json = r#"{"name": "A", "num": 1, "max_batch_size": 1, "max_wait_time_ms": 0}"#;
        let parsed: StageConfig = serde_json::from_str(json).unwrap();
        assert_eq!(parsed.forward_timeout_ms, 0, "0 when left out");
        let mut config = minimal();
        config.stuck_grace_ms = 0;
        assert!(
            matches!(config.validate(), Err(ConfigError::Invalid(m)) if m.contains("stuck_grace_ms"))
        );
    }

    #[test]
    fn reserved_and_unknown_are_refused() {
        let mut config = minimal();
        config.routes[0].path = "/metrics".into();
        assert!(
            matches!(config.validate(), Err(ConfigError::Invalid(m)) if m.contains("reserved"))
        );
        let mut config = minimal();
        config.routes[0].stages = vec![3];
        assert!(
            matches!(config.validate(), Err(ConfigError::Invalid(m)) if m.contains("unknown stage"))
        );
        assert!(matches!(Config::from_json("{\"nope\": 1}"), Err(ConfigError::Parse(_))));
    }

    fn with_flow(flow: serde_json::Value, stream: bool) -> Result<Config, ConfigError> {
        let mut config = serde_json::to_value(minimal()).unwrap();
        let stage = config["stages"][0].clone();
        config["stages"] = serde_json::json!([stage.clone(), stage.clone(), stage]);
        config["routes"][0]["flow"] = flow;
        config["routes"][0]["stream"] = stream.into();
        Config::from_json(&config.to_string())
    }

    #[test]
    fn flows_parse_from_their_json() {
        let flow = serde_json::json!([
            {"stage": 0},
            {"ensemble": {"members": [[{"stage": 1}], [{"stage": 2}, {"stage": 1}]], "fail_fast": true}},
            {"switch": {"chooser": 2, "branches": [[{"stage": 0}], [{"ensemble": {"members": [[{"stage": 1}]]}}]]}}
        ]);
        let config = with_flow(flow, false).unwrap();
        let route = &config.routes[0];
        assert_eq!(route.steps(), route.flow);
        let Step::Ensemble(ensemble) = &route.flow[1] else { panic!("{:?}", route.flow) };
        assert!(ensemble.fail_fast);
        assert_eq!(ensemble.members[1], vec![Step::Stage(2), Step::Stage(1)]);
        let Step::Switch(switch) = &route.flow[2] else { panic!("{:?}", route.flow) };
        assert_eq!(switch.chooser, 2);
        let Step::Ensemble(inner) = &switch.branches[1][0] else { panic!("{switch:?}") };
        assert!(!inner.fail_fast, "fail_fast is false when left out");
        // A linear route is its stages, and its JSON has no flow at all.
        assert_eq!(minimal().routes[0].steps(), vec![Step::Stage(0)]);
        let json = serde_json::to_value(minimal()).unwrap();
        assert!(json["routes"][0].get("flow").is_none());
    }

    #[test]
    fn bad_flows_are_refused_with_where() {
        let refused = |flow: serde_json::Value, stream: bool| match with_flow(flow, stream) {
            Err(ConfigError::Invalid(message)) => message,
            other => panic!("{other:?}"),
        };
        let message = refused(
            serde_json::json!([{"ensemble": {"members": [[{"stage": 0}], [{"stage": 7}]]}}]),
            false,
        );
        assert_eq!(
            message,
            "route \"/inference\" names unknown stage 7 as a stage at flow[0].members[1][0]"
        );
        let message = refused(
            serde_json::json!([{"switch": {"chooser": 9, "branches": [[{"stage": 0}]]}}]),
            false,
        );
        assert!(message.contains("unknown stage 9 as a switch chooser at flow[0]"), "{message}");
        let message = refused(serde_json::json!([{"ensemble": {"members": []}}]), false);
        assert!(message.contains("has no members at flow[0]"), "{message}");
        let message =
            refused(serde_json::json!([{"switch": {"chooser": 0, "branches": [[]]}}]), false);
        assert!(message.contains("empty flow at flow[0].branches[0]"), "{message}");
        let message = refused(
            serde_json::json!([{"stage": 0}, {"switch": {"chooser": 0, "branches": [[{"stage": 1}]]}}]),
            true,
        );
        assert!(
            message.contains("streams events, so its flow may only have stage steps"),
            "{message}"
        );
        // A streaming route of stage steps is fine; so is a flow with no `stages`.
        assert!(with_flow(serde_json::json!([{"stage": 0}, {"stage": 1}]), true).is_ok());
        // Unknown step kinds and fields do not parse.
        for bad in [
            serde_json::json!([{"loop": {}}]),
            serde_json::json!([{"switch": {"chooser": 0, "branches": [[{"stage": 0}]], "x": 1}}]),
        ] {
            assert!(matches!(with_flow(bad, false), Err(ConfigError::Parse(_))));
        }
    }
}
