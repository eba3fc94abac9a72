//! Engine logs: JSON lines by default, readable text at debug, in the same shape as the Python
//! side's (`mosec/log.py`): `timestamp`, `level`, `target`, `message`, then the event's fields.

use tracing_subscriber::EnvFilter;

/// Installs the process-wide log subscriber once; later calls keep the first one.
pub fn init(level: &str, json: bool) {
    let level = match level {
        "debug" => "debug",
        "warning" => "warn",
        "error" => "error",
        _ => "info",
    };
    // Our own events at the chosen level; dependencies (hyper, h2) only when they warn.
    let filter = EnvFilter::new(format!("warn,mosec_engine={level}"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    // Err only means a subscriber is already installed (a second engine in this process).
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
}
