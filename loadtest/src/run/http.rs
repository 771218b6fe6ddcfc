//! The HTTP JSON driver: senders that each own a slice of the fleet and post its records
//! to `POST /v1/ingest` in batches, one request in flight per sender, so every vehicle's
//! records are stored in order. Records the target could not store now (`failed`, 503) or
//! whose request failed are resent, byte for byte (the server drops repeats by content),
//! before anything newer of the same sender; accepted seqs therefore form a contiguous
//! prefix per vehicle, which the subscribers' accounting relies on.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use super::Plan;
use super::live::{Live, now_us};
use crate::fleet::{Fleet, FleetConfig};
use crate::scenario::PayloadMix;

/// One sender's share of the fleet: global vehicle `g` belongs to sender `g % senders`.
pub struct Sender {
    /// Index of this sender.
    pub index: usize,
    /// Global indices of its vehicles.
    pub vehicles: Vec<usize>,
}

/// Reply of `POST /v1/ingest` (only what the driver needs).
#[derive(Deserialize)]
struct IngestReply {
    #[serde(default)]
    rejected: u64,
    #[serde(default)]
    results: Vec<RecordResult>,
}

#[derive(Deserialize)]
struct RecordResult {
    status: String,
}

/// Drives one sender until the plan's load ends (or `stop`); returns the highest accepted
/// seq of each of its vehicles (same order as `sender.vehicles`).
pub async fn drive(
    plan: Arc<Plan>,
    sender: Sender,
    live: Arc<Live>,
    mut stop: watch::Receiver<bool>,
) -> Vec<u64> {
    let n = sender.vehicles.len();
    let ids: Vec<String> = sender.vehicles.iter().map(|&g| plan.vehicle_id(g)).collect();
    let mut fleet = (plan.scenario.fleet.payload == PayloadMix::Fleet).then(|| {
        Fleet::new(FleetConfig {
            vehicles: n,
            seed: plan.scenario.fleet.seed ^ (sender.index as u64).wrapping_mul(0x9E37_79B9),
            ..FleetConfig::default()
        })
    });
    let mut seq = vec![0u64; n];
    let mut accepted = vec![0u64; n];
    let urls = &plan.scenario.targets.ingest;
    let mut url_index = sender.index % urls.len();
    let mut client = new_client();
    let reconnect_at = plan.reconnect_at(sender.index);
    let batch_size = plan.scenario.fleet.batch_size;
    // Senders start out of phase: vehicles report on clocks of their own, so the fleet's
    // load is smooth. Started together, 16 senders sent 16 batches at each of the same
    // 4 instants a second, and the bursts, not the target, set the e2e tail.
    let mut tick_start = Instant::now() + first_phase(&plan, sender.index, n.div_ceil(batch_size.max(1)));
    tokio::select! {
        _ = tokio::time::sleep_until(tick_start) => {}
        _ = stop.changed() => {}
    }
    loop {
        let t = plan.elapsed();
        let Some(hz) = plan.hz_at(t) else { break };
        if *stop.borrow() {
            break;
        }
        if reconnect_at.is_some_and(|at| plan.elapsed() >= at.as_secs_f64()) && !client.reconnected {
            client = Client {
                reconnected: true,
                ..new_client()
            };
        }
        let period = Duration::from_secs_f64(1.0 / hz);
        let now = Utc::now();
        let mut records: Vec<(usize, DateTime<Utc>, Map<String, Value>)> = match &mut fleet {
            Some(f) => f
                .tick(now)
                .into_iter()
                .enumerate()
                .map(|(i, r)| (i, r.timestamp, r.payload))
                .collect(),
            None => (0..n).map(|i| (i, now, Map::new())).collect(),
        };
        live.sent.fetch_add(n as u64, Ordering::Relaxed);
        let batches = records.len().div_ceil(batch_size).max(1);
        let gap = period / batches as u32;
        for (k, chunk) in records.chunks_mut(batch_size).enumerate() {
            tokio::time::sleep_until(tick_start + gap * k as u32).await;
            // Stamped when the batch goes out, not when the tick began: the batches of a
            // tick are spread over its period, and that wait is the driver's, not the
            // target's (stamping at the tick once added up to a period to e2e latency).
            let sent_us = now_us();
            let batch: Vec<(usize, Vec<u8>)> = chunk
                .iter_mut()
                .map(|(i, timestamp, payload)| {
                    seq[*i] += 1;
                    let mut payload = std::mem::take(payload);
                    payload.insert("lt_seq".into(), Value::from(seq[*i]));
                    payload.insert("lt_sent_us".into(), Value::from(sent_us));
                    let record = serde_json::json!({
                        "timestamp": timestamp,
                        "vehicle_id": ids[*i],
                        "payload": payload,
                    });
                    (*i, serde_json::to_vec(&record).expect("records serialize"))
                })
                .collect();
            let mut pending: Vec<&(usize, Vec<u8>)> = batch.iter().collect();
            let mut backoff = Duration::from_millis(50);
            while !pending.is_empty() {
                if plan.hard_deadline_passed() {
                    return accepted;
                }
                let url = &urls[url_index];
                live.attempts.fetch_add(1, Ordering::Relaxed);
                let started = std::time::Instant::now();
                match post(&client.http, url, &plan.scenario.auth.api_key, &pending).await {
                    Ok((status, reply)) => {
                        live.ack.record_all(&[started.elapsed().as_micros() as u64]);
                        if reply.rejected > 0 {
                            live.error("rejected");
                        }
                        let mut retry = Vec::new();
                        for (record, result) in pending.iter().zip(&reply.results) {
                            match result.status.as_str() {
                                "accepted" => {
                                    accepted[record.0] = accepted[record.0].max(seq_of(&seq, record));
                                    live.accepted.fetch_add(1, Ordering::Relaxed);
                                }
                                "failed" => retry.push(*record),
                                _ => {}
                            }
                        }
                        if status == 503 {
                            live.error("http_503");
                        }
                        pending = retry;
                    }
                    Err(PostError::Status(429)) => {
                        // Rate-limited: nothing was accepted; resend the same records
                        // after the backoff, as a vehicle would, so they are not lost.
                        live.error("http_429");
                    }
                    Err(PostError::Status(status)) if (400..500).contains(&status) => {
                        // Our request is wrong (or unauthorized): resending will not help.
                        live.error(&format!("http_{status}"));
                        break;
                    }
                    Err(e) => {
                        live.error(e.kind());
                        url_index = (url_index + 1) % urls.len();
                    }
                }
                if !pending.is_empty() {
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
        // Behind schedule: start the next tick now rather than bursting to catch up.
        tick_start = (tick_start + period).max(Instant::now() - period / 2);
        tokio::select! {
            _ = tokio::time::sleep_until(tick_start) => {}
            _ = stop.changed() => {}
        }
    }
    accepted
}

/// Delay of sender `index`'s first tick: the senders' batches interleave evenly, each
/// sender's `batches` spread over the period and the senders spread over the gap between
/// two of them.
fn first_phase(plan: &Plan, index: usize, batches: usize) -> Duration {
    let senders = plan
        .scenario
        .fleet
        .connections
        .min(plan.scenario.fleet.vehicles)
        .max(1);
    let hz = plan.scenario.hz_at(0.0).filter(|hz| *hz > 0.0).unwrap_or(1.0);
    Duration::from_secs_f64(index as f64 / (senders * batches.max(1)) as f64 / hz)
}

/// A record's seq is the sender's current one for its vehicle: a vehicle has at most one
/// record in flight, because a batch is settled before the next tick.
fn seq_of(seq: &[u64], record: &(usize, Vec<u8>)) -> u64 {
    seq[record.0]
}

struct Client {
    http: reqwest::Client,
    reconnected: bool,
}

fn new_client() -> Client {
    Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .build()
            .expect("HTTP client builds"),
        reconnected: false,
    }
}

enum PostError {
    Status(u16),
    Timeout,
    Transport,
    BadReply,
}

impl PostError {
    fn kind(&self) -> &'static str {
        match self {
            PostError::Status(s) if *s >= 500 => "http_5xx",
            PostError::Status(_) => "http_other",
            PostError::Timeout => "timeout",
            PostError::Transport => "transport",
            PostError::BadReply => "bad_reply",
        }
    }
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    api_key: &Option<String>,
    records: &[&(usize, Vec<u8>)],
) -> Result<(u16, IngestReply), PostError> {
    let mut body = Vec::with_capacity(records.iter().map(|r| r.1.len() + 1).sum::<usize>() + 2);
    body.push(b'[');
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&r.1);
    }
    body.push(b']');
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = api_key {
        request = request.header("X-Api-Key", key);
    }
    let response = request.send().await.map_err(classify)?;
    let status = response.status().as_u16();
    if status != 200 && status != 503 {
        return Err(PostError::Status(status));
    }
    let bytes = response.bytes().await.map_err(classify)?;
    let reply: IngestReply = serde_json::from_slice(&bytes).map_err(|_| PostError::BadReply)?;
    if reply.results.len() != records.len() {
        return Err(PostError::BadReply);
    }
    Ok((status, reply))
}

fn classify(e: reqwest::Error) -> PostError {
    if e.is_timeout() {
        PostError::Timeout
    } else {
        PostError::Transport
    }
}
