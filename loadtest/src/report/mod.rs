//! The run report: JSON (everything, including the per-second series), the pass/fail
//! checks against the scenario's thresholds, the knee of a ramp, and the HTML page
//! ([`html`]).

pub mod html;

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::account::Counts;
use crate::scenario::{Knee, Scenario, Thresholds};

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// From a histogram of µs.
    pub fn from_us(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

/// One second of the run.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Sample {
    /// Seconds since the load started.
    pub t: f64,
    /// Records per second the scenario asks for.
    pub offered_rps: f64,
    /// Records per second the target acknowledged.
    pub accepted_rps: f64,
    /// Subscriber events per second (all subscribers).
    pub events_ps: f64,
    /// Attempts (requests or frames) per second.
    pub attempts_ps: f64,
    /// Failed attempts per second.
    pub errors_ps: f64,
    /// Ack latency in this window.
    pub ack: Percentiles,
    /// End-to-end latency in this window.
    pub e2e: Percentiles,
    /// Subscribers connected.
    pub subscribers: u64,
    /// Target CPU, percent of one core.
    pub cpu_percent: Option<f64>,
    /// Target resident memory, MiB.
    pub rss_mib: Option<f64>,
}

/// Where the ramp saturated the target.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KneeReport {
    /// Seconds after the load started (start of the first bad window).
    pub at_secs: f64,
    /// Offered records/s there.
    pub offered_rps: f64,
    /// Accepted records/s in the last good window before it.
    pub last_good_accepted_rps: f64,
    /// Which limit broke first.
    pub reason: String,
}

/// Why a window breaks the knee limits, if it does.
fn knee_reason(s: &Sample, k: &Knee) -> Option<String> {
    if let Some(limit) = k.e2e_p99_ms
        && s.e2e.count > 0
        && s.e2e.p99 > limit
    {
        return Some(format!("e2e p99 {:.1} ms > {limit} ms", s.e2e.p99));
    }
    if let Some(limit) = k.ack_p99_ms
        && s.ack.count > 0
        && s.ack.p99 > limit
    {
        return Some(format!("ack p99 {:.1} ms > {limit} ms", s.ack.p99));
    }
    if s.attempts_ps > 0.0 && s.errors_ps / s.attempts_ps > k.max_error_ratio {
        return Some(format!(
            "error ratio {:.3} > {}",
            s.errors_ps / s.attempts_ps,
            k.max_error_ratio
        ));
    }
    if s.offered_rps > 0.0 && s.accepted_rps / s.offered_rps < k.min_accepted_ratio {
        return Some(format!(
            "accepted {:.0}/s < {} × offered {:.0}/s",
            s.accepted_rps, k.min_accepted_ratio, s.offered_rps
        ));
    }
    None
}

/// The first run of `k.windows` consecutive bad windows after `warmup_secs` (at least the
/// first 3 s, while senders and subscribers warm up, are skipped; a scenario's
/// `warmup_secs` also covers the target's cold start, e.g. provisioning a new fleet).
pub fn find_knee(samples: &[Sample], k: &Knee, warmup_secs: f64) -> Option<KneeReport> {
    const MIN_WARM_UP_SECS: f64 = 3.0;
    let warm_up = warmup_secs.max(MIN_WARM_UP_SECS);
    let mut run = 0;
    let mut last_good = 0.0;
    for (i, s) in samples.iter().enumerate().filter(|(_, s)| s.t >= warm_up) {
        match knee_reason(s, k) {
            Some(_) => {
                run += 1;
                if run >= k.windows.max(1) {
                    let first = &samples[i + 1 - run];
                    return Some(KneeReport {
                        at_secs: first.t,
                        offered_rps: first.offered_rps,
                        last_good_accepted_rps: last_good,
                        reason: knee_reason(first, k).unwrap_or_default(),
                    });
                }
            }
            None => {
                run = 0;
                last_good = s.accepted_rps;
            }
        }
    }
    None
}

/// One threshold check.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// The limit.
    pub limit: f64,
    /// The run's figure.
    pub actual: f64,
    /// Whether it held.
    pub pass: bool,
}

/// Figures the thresholds are judged on.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Lost records.
    pub lost: u64,
    /// Duplicates plus double applications.
    pub duplicates: u64,
    /// Resets.
    pub resets: u64,
    /// Failed attempts / attempts.
    pub error_ratio: f64,
    /// End-to-end p99 (None: not measured).
    pub e2e_p99_ms: Option<f64>,
    /// Ack p99.
    pub ack_p99_ms: Option<f64>,
    /// Accepted records/s over the load.
    pub throughput: f64,
}

/// Judges a run; a limit on something not measured fails (a guardrail must not pass
/// silently because nothing was measured).
pub fn check(t: &Thresholds, o: &Outcome) -> Vec<Check> {
    let mut checks = vec![
        max_check("loss", t.max_loss as f64, o.lost as f64),
        max_check("duplicates", t.max_duplicates as f64, o.duplicates as f64),
        max_check("error_ratio", t.max_error_ratio, o.error_ratio),
    ];
    if let Some(limit) = t.max_resets {
        checks.push(max_check("resets", limit as f64, o.resets as f64));
    }
    if let Some(limit) = t.e2e_p99_ms {
        checks.push(max_check(
            "e2e_p99_ms",
            limit,
            o.e2e_p99_ms.unwrap_or(f64::INFINITY),
        ));
    }
    if let Some(limit) = t.ack_p99_ms {
        checks.push(max_check(
            "ack_p99_ms",
            limit,
            o.ack_p99_ms.unwrap_or(f64::INFINITY),
        ));
    }
    if let Some(limit) = t.min_throughput {
        checks.push(Check {
            name: "min_throughput".into(),
            limit,
            actual: o.throughput,
            pass: o.throughput >= limit,
        });
    }
    checks
}

fn max_check(name: &str, limit: f64, actual: f64) -> Check {
    Check {
        name: name.into(),
        limit,
        actual,
        pass: actual <= limit,
    }
}

/// Throughput figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Throughput {
    /// Records generated (first sends).
    pub sent_records: u64,
    /// Records acknowledged as stored.
    pub accepted_records: u64,
    /// Accepted records per second over the load.
    pub accepted_per_sec: f64,
    /// Requests or frames attempted (retries included).
    pub attempts: u64,
    /// Run events received by all subscribers.
    pub events: u64,
    /// Events per second over the load.
    pub events_per_sec: f64,
}

/// Server figures over the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerSummary {
    /// Mean CPU, percent of one core.
    pub cpu_percent_mean: Option<f64>,
    /// Highest one-second CPU.
    pub cpu_percent_max: Option<f64>,
    /// Highest resident memory, MiB.
    pub rss_mib_max: Option<f64>,
    /// Resident memory at the end, MiB.
    pub rss_mib_last: Option<f64>,
}

impl ServerSummary {
    /// From the per-second samples.
    pub fn from_samples(samples: &[Sample]) -> Self {
        let cpu: Vec<f64> = samples.iter().filter_map(|s| s.cpu_percent).collect();
        let rss: Vec<f64> = samples.iter().filter_map(|s| s.rss_mib).collect();
        Self {
            cpu_percent_mean: (!cpu.is_empty()).then(|| cpu.iter().sum::<f64>() / cpu.len() as f64),
            cpu_percent_max: cpu.iter().copied().reduce(f64::max),
            rss_mib_max: rss.iter().copied().reduce(f64::max),
            rss_mib_last: rss.last().copied(),
        }
    }
}

/// Ack and end-to-end latencies after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SteadyLatency {
    /// Send → ack.
    pub ack_ms: Percentiles,
    /// Record → subscriber.
    pub e2e_ms: Percentiles,
}

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario as run (after overrides).
    pub scenario: Scenario,
    /// Prefix of this run's vehicle ids.
    pub vehicle_prefix: String,
    /// When the load started (RFC 3339).
    pub started_at: String,
    /// Seconds the load ran.
    pub load_secs: f64,
    /// Throughput.
    pub throughput: Throughput,
    /// Send → ack (HTTP response / Tesla ack).
    pub ack_ms: Percentiles,
    /// Record → subscriber (all subscribers, every event).
    pub e2e_ms: Percentiles,
    /// Whether e2e was measured (HTTP protocol with subscribers).
    pub e2e_measured: bool,
    /// Delivery accounting summed over subscribers.
    pub delivery: Counts,
    /// Lost records (`delivery.lost_before_apply + delivery.lost_tail`).
    pub lost: u64,
    /// Failed attempts by kind.
    pub errors: BTreeMap<String, u64>,
    /// Failed attempts / attempts.
    pub error_ratio: f64,
    /// Target process figures.
    pub server: ServerSummary,
    /// Latencies after the scenario's `warmup_secs` (the drain included), which the
    /// latency thresholds judge; `None` without a warm-up.
    pub steady: Option<SteadyLatency>,
    /// Where a ramp saturated the target.
    pub knee: Option<KneeReport>,
    /// Threshold checks.
    pub checks: Vec<Check>,
    /// Whether every check passed.
    pub passed: bool,
    /// One sample per second.
    pub series: Vec<Sample>,
}

#[cfg(test)]
mod tests;
