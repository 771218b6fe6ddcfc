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
            let buckets: [(&str, &[f64]); 12] = [
                (t::AWS_CALL_SECONDS, &producer_latency),
                (t::TESLA_ACK_SECONDS, &producer_latency),
                (t::INGEST_TO_APPLY_SECONDS, &latency_buckets),
                (t::INGEST_TO_PUBLISH_SECONDS, &latency_buckets),
                (t::INGEST_TO_HUB_SECONDS, &latency_buckets),
                (t::INGEST_TO_SSE_SECONDS, &latency_buckets),
                (t::PRODUCER_LINGER_SECONDS, &producer_latency),
                (t::REDIS_FANOUT_APPEND_QUEUE_SECONDS, &producer_latency),
                (t::REDIS_FANOUT_APPEND_CALL_SECONDS, &producer_latency),
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

/// Sets the Prometheus client conventions' process metrics, `process_cpu_seconds_total`
/// and `process_resident_memory_bytes`, from `/proc/self` (Linux; elsewhere nothing).
/// Called on every `/metrics` scrape, so they are as fresh as the scrape.
pub fn record_process_metrics() {
    let Some((cpu_seconds, rss_bytes)) = read_proc_self() else {
        return;
    };
    metrics::gauge!("process_cpu_seconds_total").set(cpu_seconds);
    metrics::gauge!("process_resident_memory_bytes").set(rss_bytes);
}

/// (CPU seconds, resident bytes) of this process.
fn read_proc_self() -> Option<(f64, f64)> {
    // USER_HZ, the unit of utime/stime in /proc/<pid>/stat, is 100 on every Linux
    // architecture (proc(5)); the comm field may contain spaces, so count after ')'.
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    // After ')': state is field 3, utime 14, stime 15.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(((utime + stime) / USER_HZ, rss_kib * 1024.0))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn reads_this_process_cpu_and_memory() {
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(50) {}
        let (cpu, rss) = super::read_proc_self().expect("/proc/self is readable");
        assert!(cpu > 0.0 && cpu < 1e6, "{cpu}");
        assert!(rss > 1e6 && rss < 1e11, "{rss}");
    }
}
