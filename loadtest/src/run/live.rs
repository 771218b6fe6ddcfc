//! Counters and latency histograms shared by every driver and subscriber of a run, read
//! once a second by the sampler.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;

/// Latency histogram bounds: 1 µs .. 120 s, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

/// A latency recorder: the whole run plus the current one-second window.
#[derive(Debug)]
pub struct Latency {
    inner: Mutex<(Histogram<u64>, Histogram<u64>)>,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            inner: Mutex::new((histogram(), histogram())),
        }
    }
}

impl Latency {
    /// Records latencies in µs (values beyond the bounds are clamped).
    pub fn record_all(&self, us: &[u64]) {
        let mut g = self.inner.lock().expect("latency lock never poisoned");
        for &v in us {
            let v = v.clamp(1, 120_000_000);
            let _ = g.0.record(v);
            let _ = g.1.record(v);
        }
    }

    /// Takes the window since the last call.
    pub fn take_window(&self) -> Histogram<u64> {
        let mut g = self.inner.lock().expect("latency lock never poisoned");
        let window = g.1.clone();
        g.1.reset();
        window
    }

    /// The whole run so far.
    pub fn total(&self) -> Histogram<u64> {
        self.inner.lock().expect("latency lock never poisoned").0.clone()
    }
}

/// Ack and end-to-end latencies summed over the one-second windows after a run's
/// warm-up (`Scenario::warmup_secs`).
#[derive(Debug)]
pub struct SteadyHistograms {
    /// Send → ack, µs.
    pub ack: Histogram<u64>,
    /// Record → subscriber, µs.
    pub e2e: Histogram<u64>,
}

impl Default for SteadyHistograms {
    fn default() -> Self {
        Self {
            ack: histogram(),
            e2e: histogram(),
        }
    }
}

impl SteadyHistograms {
    /// Adds one window of each.
    pub fn add(&mut self, ack: &Histogram<u64>, e2e: &Histogram<u64>) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.ack.add(ack);
        let _ = self.e2e.add(e2e);
    }
}

/// Shards of the end-to-end recorder, so thousands of subscribers do not share one lock.
pub const E2E_SHARDS: usize = 32;

/// Everything a run counts while it runs.
#[derive(Debug)]
pub struct Live {
    /// Records sent (first attempts).
    pub sent: AtomicU64,
    /// Records the target acknowledged as stored.
    pub accepted: AtomicU64,
    /// Requests or frames attempted (retries included).
    pub attempts: AtomicU64,
    /// Failed attempts (any kind).
    pub errors: AtomicU64,
    errors_by_kind: Mutex<BTreeMap<String, u64>>,
    /// Run `vehicle` events received by all subscribers.
    pub events: AtomicU64,
    /// Duplicate events seen so far (final figures come from the accounts).
    pub duplicates: AtomicU64,
    /// `reset` events.
    pub resets: AtomicU64,
    /// Subscribers currently connected.
    pub subscribers_connected: AtomicU64,
    /// Send → ack latency.
    pub ack: Latency,
    e2e: Vec<Latency>,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            sent: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            errors_by_kind: Mutex::new(BTreeMap::new()),
            events: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            subscribers_connected: AtomicU64::new(0),
            ack: Latency::default(),
            e2e: (0..E2E_SHARDS).map(|_| Latency::default()).collect(),
        }
    }
}

impl Live {
    /// Counts one failed attempt of `kind` (e.g. `http_503`, `transport`, `sse_disconnect`).
    pub fn error(&self, kind: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self
            .errors_by_kind
            .lock()
            .expect("errors lock never poisoned")
            .entry(kind.to_owned())
            .or_default() += 1;
    }

    /// Errors by kind so far.
    pub fn errors_by_kind(&self) -> BTreeMap<String, u64> {
        self.errors_by_kind
            .lock()
            .expect("errors lock never poisoned")
            .clone()
    }

    /// The end-to-end recorder for subscriber `n`.
    pub fn e2e(&self, n: usize) -> &Latency {
        &self.e2e[n % E2E_SHARDS]
    }

    /// End-to-end window over every shard.
    pub fn take_e2e_window(&self) -> Histogram<u64> {
        let mut all = histogram();
        for shard in &self.e2e {
            let _ = all.add(shard.take_window());
        }
        all
    }

    /// End-to-end over the whole run.
    pub fn e2e_total(&self) -> Histogram<u64> {
        let mut all = histogram();
        for shard in &self.e2e {
            let _ = all.add(shard.total());
        }
        all
    }
}

/// Microseconds since the Unix epoch (the clock `lt_sent_us` uses; sender and subscribers
/// run in this process, so they share it).
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
