//! SSE subscribers: a streaming HTTP client per subscriber that parses every event
//! (`eventsource-stream`) and accounts for it ([`crate::account`]). A dropped stream reconnects with
//! `Last-Event-ID`, to the next SSE URL, as a browser's `EventSource` does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use serde::Deserialize;
use tokio::sync::watch;

use super::Plan;
use super::live::{Live, now_us};
use crate::account::{Counts, StreamAccount};

/// Most events taken from a stream at once (those already received): their latency is
/// stamped and recorded together.
const EVENTS_PER_READ: usize = 256;

/// The fields of a `vehicle` event the accounting needs; everything else is skipped.
#[derive(Deserialize)]
struct UpdateView<'a> {
    #[serde(borrow)]
    vehicle_id: std::borrow::Cow<'a, str>,
    version: u64,
    signals: Signals,
}

#[derive(Deserialize)]
struct Signals {
    lt_seq: Option<Reading>,
    lt_sent_us: Option<Reading>,
}

#[derive(Deserialize)]
struct Reading {
    value: u64,
}

/// What one `vehicle` event said, if it is one of this run's.
pub fn parse_update(
    data: &str,
    plan_prefix: &str,
) -> Result<Option<(usize, u64, u64, u64)>, serde_json::Error> {
    let view: UpdateView = serde_json::from_str(data)?;
    let (Some(seq), Some(sent)) = (view.signals.lt_seq, view.signals.lt_sent_us) else {
        return Ok(None);
    };
    let Some(index) = view
        .vehicle_id
        .strip_prefix(plan_prefix)
        .and_then(|n| n.parse::<usize>().ok())
    else {
        return Ok(None);
    };
    Ok(Some((index, seq.value, view.version, sent.value)))
}

/// Progress of one subscriber that the drain waits on.
#[derive(Debug, Default)]
pub struct Seen {
    /// Sum over vehicles of the highest seq seen.
    pub seq_sum: AtomicU64,
}

/// An HTTP client for subscribers: HTTP/1.1 (one per subscriber), or HTTP/2 without TLS
/// (`h2c`: one connection shared by the subscribers given clones of it).
pub fn client(h2c: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    let builder = if h2c {
        builder.http2_prior_knowledge().http2_adaptive_window(true)
    } else {
        builder.http1_only()
    };
    builder.build().expect("HTTP client builds")
}

/// Runs subscriber `n` with `client` until `stop`; returns its counters (before the lost tail).
pub async fn subscribe(
    plan: Arc<Plan>,
    client: reqwest::Client,
    n: usize,
    live: Arc<Live>,
    seen: Arc<Seen>,
    connected: tokio::sync::mpsc::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> StreamAccount {
    let vehicles = plan.scenario.fleet.vehicles;
    let mut account = StreamAccount::new(vehicles);
    let urls = &plan.scenario.targets.sse;
    let mut url_index = n % urls.len();
    let mut last_id: Option<String> = None;
    let mut reconnect_at = plan.reconnect_at(n);
    let mut first = Some(connected);
    let mut backoff = Duration::from_millis(100);
    let mut latencies = Vec::new();
    let recorder = live.e2e(n);
    let mut filters = Vec::new();
    if !plan.scenario.subscribers.signals.is_empty() {
        filters.push(format!("signals={}", plan.scenario.subscribers.signals.join(",")));
    }
    let each = plan.scenario.subscribers.vehicles_each.min(vehicles);
    if each > 0 {
        let followed: Vec<usize> = (0..each).map(|j| (n * each + j) % vehicles).collect();
        let ids: Vec<String> = followed.iter().map(|&g| plan.vehicle_id(g)).collect();
        filters.push(format!("vehicles={}", ids.join(",")));
        account.follow_only(&followed);
    }
    let query = if filters.is_empty() {
        String::new()
    } else {
        format!("?{}", filters.join("&"))
    };
    'connect: loop {
        if *stop.borrow() {
            break;
        }
        let mut request = client
            .get(format!("{}{query}", urls[url_index]))
            .header("accept", "text/event-stream");
        if let Some(token) = &plan.scenario.auth.bearer_token {
            request = request.bearer_auth(token);
        }
        if let Some(id) = &last_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = tokio::select! {
            r = request.send() => r,
            _ = stop.changed() => break,
        };
        let response = match response {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                live.error(&format!("sse_{}", r.status().as_u16()));
                url_index = (url_index + 1) % urls.len();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            Err(_) => {
                live.error("sse_connect");
                url_index = (url_index + 1) % urls.len();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        // Connected; the run waits a moment after the last one before it starts the load,
        // since the subscriber registers with the hub just after the response starts.
        if let Some(tx) = first.take() {
            let _ = tx.send(()).await;
        }
        live.subscribers_connected.fetch_add(1, Ordering::Relaxed);
        let mut events = response
            .bytes_stream()
            .eventsource()
            .ready_chunks(EVENTS_PER_READ);
        let ended = loop {
            let storm = async {
                match reconnect_at {
                    Some(at) => tokio::time::sleep_until(plan.started() + at).await,
                    None => std::future::pending().await,
                }
            };
            let batch = tokio::select! {
                b = events.next() => b,
                _ = storm => { reconnect_at = None; break "storm"; }
                _ = stop.changed() => break "stop",
            };
            let Some(batch) = batch else { break "disconnect" };
            let now = now_us();
            let mut advanced = 0;
            let mut broken = false;
            for event in batch {
                // A transport error or a stream that is not SSE ends the connection.
                let Ok(event) = event else {
                    broken = true;
                    break;
                };
                if !event.id.is_empty() {
                    last_id = Some(event.id);
                }
                match event.event.as_str() {
                    "vehicle" => match parse_update(&event.data, &plan.prefix) {
                        Ok(Some((index, seq, version, sent))) => {
                            let dups = account.counts.duplicates;
                            advanced += account.vehicle_event(index, seq, version);
                            if account.counts.duplicates > dups {
                                live.duplicates.fetch_add(1, Ordering::Relaxed);
                            }
                            latencies.push(now.saturating_sub(sent));
                        }
                        Ok(None) => account.foreign_event(),
                        Err(_) => live.error("sse_bad_event"),
                    },
                    "reset" => {
                        account.reset();
                        live.resets.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
            if !latencies.is_empty() {
                live.events.fetch_add(latencies.len() as u64, Ordering::Relaxed);
                recorder.record_all(&latencies);
                latencies.clear();
            }
            seen.seq_sum.fetch_add(advanced, Ordering::Relaxed);
            if broken {
                break "disconnect";
            }
        };
        live.subscribers_connected.fetch_sub(1, Ordering::Relaxed);
        match ended {
            "stop" => break 'connect,
            "storm" => continue 'connect,
            _ => {
                live.error("sse_disconnect");
                url_index = (url_index + 1) % urls.len();
            }
        }
    }
    account
}

/// Sums the counters of finished subscribers, adding each one's lost tail.
pub fn total(accounts: Vec<StreamAccount>, accepted: &[u64]) -> Counts {
    let mut total = Counts::default();
    for mut a in accounts {
        total.add(&a.finish(accepted));
    }
    total
}

#[cfg(test)]
mod tests;
