//! Logs (`tracing`) and metrics (`metrics` + Prometheus exposition).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global log subscriber. `RUST_LOG` overrides the configured filter. A
/// second call (tests start several nodes in one process) keeps the first subscriber.
pub fn init_logging(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _already_set = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            use fleetwire_actors::telemetry as t;
            let latency_buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
            let producer_latency = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            let batch_entries = [1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0];
            let batch_bytes = [1e3, 1e4, 1e5, 2.5e5, 5e5, 1e6, 2.5e6, 5.3e6];
            let buckets: [(&str, &[f64]); 6] = [
                (t::TESLA_ACK_SECONDS, &producer_latency),
                (t::INGEST_TO_PUBLISH_SECONDS, &latency_buckets),
                (t::PRODUCER_LINGER_SECONDS, &producer_latency),
                (t::PRODUCER_PRODUCE_SECONDS, &producer_latency),
                (t::PRODUCER_BATCH_ENTRIES, &batch_entries),
                (t::PRODUCER_BATCH_BYTES, &batch_bytes),
            ];
            let mut builder = PrometheusBuilder::new();
            for (name, values) in buckets {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full(name.to_owned()), values)
                    .expect("bucket list is not empty");
            }
            let handle = builder
                .install_recorder()
                .expect("no other metrics recorder is installed in this process");
            fleetwire_actors::telemetry::describe();
            handle
        })
        .clone()
}
