//! One run of a scenario: subscribers connect, the drivers send the stages' load, the
//! sampler records a window per second (and watches for the knee), subscribers drain,
//! and everything is summed into a [`Report`].

mod http;
pub mod live;
mod progress;
pub mod server;
pub mod sse;
mod tesla;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::report::{self, Outcome, Percentiles, Report, Sample, ServerSummary, SteadyLatency, Throughput};
use crate::scenario::{Protocol, Scenario};
use live::{Live, SteadyHistograms};

/// A scenario being run: what every driver and subscriber reads.
pub struct Plan {
    /// The scenario (validated).
    pub scenario: Scenario,
    /// This run's vehicle id prefix (`lt<random>-`): fresh vehicles, so versions count from 0.
    pub prefix: String,
    /// When the load started (set once every subscriber is connected).
    started: OnceLock<Instant>,
    /// Load end in ms after the start; lowered when the knee says stop.
    load_end_ms: AtomicU64,
}

impl Plan {
    /// Vehicle `g`'s id.
    pub fn vehicle_id(&self, g: usize) -> String {
        format!("{}{g}", self.prefix)
    }

    /// When the load started (far in the future until it has).
    pub fn started(&self) -> Instant {
        self.started
            .get()
            .copied()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400))
    }

    /// Seconds since the load started.
    pub fn elapsed(&self) -> f64 {
        Instant::now()
            .saturating_duration_since(self.started())
            .as_secs_f64()
    }

    /// Per-vehicle rate at `t` s, `None` once the load is over.
    pub fn hz_at(&self, t: f64) -> Option<f64> {
        if t * 1000.0 >= self.load_end_ms.load(Ordering::Relaxed) as f64 {
            return None;
        }
        self.scenario.hz_at(t)
    }

    /// Offered records/s at `t`.
    pub fn offered_at(&self, t: f64) -> f64 {
        self.hz_at(t)
            .map_or(0.0, |hz| hz * self.scenario.fleet.vehicles as f64)
    }

    /// When client `n` (sender, vehicle or subscriber) reconnects in the storm, after the
    /// start: spread over the window by a fixed hash of `n`.
    pub fn reconnect_at(&self, n: usize) -> Option<Duration> {
        let r = self.scenario.reconnect.as_ref()?;
        let spread = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
        let fraction = spread as f64 / (1u64 << 53) as f64;
        Some(Duration::from_secs_f64(
            r.at_secs as f64 + fraction * r.window_secs as f64,
        ))
    }

    /// Senders give up resending past the load's end plus the drain.
    pub fn hard_deadline_passed(&self) -> bool {
        let limit = self.load_end_ms.load(Ordering::Relaxed) + self.scenario.drain_secs * 1000;
        self.elapsed() * 1000.0 > limit as f64
    }
}

/// Options that are not part of the scenario.
pub struct RunOptions {
    /// Where the JSON and HTML reports go.
    pub report_dir: PathBuf,
}

/// Runs a validated scenario; returns the report (also written to `report_dir`).
pub async fn run(scenario: Scenario, options: RunOptions) -> anyhow::Result<Report> {
    let load_secs = scenario.load_secs();
    let plan = Arc::new(Plan {
        prefix: format!("lt{:06x}-", rand::random::<u32>() & 0xff_ffff),
        scenario,
        started: OnceLock::new(),
        load_end_ms: AtomicU64::new(load_secs * 1000),
    });
    let s = &plan.scenario;
    let live = Arc::new(Live::default());
    let (stop_load_tx, stop_load) = watch::channel(false);
    let (stop_subs_tx, stop_subs) = watch::channel(false);
    println!(
        "{}: {}\n  vehicles {}0..{} over {:?}, {} subscribers, load {} s",
        s.name,
        s.description,
        plan.prefix,
        s.fleet.vehicles,
        s.fleet.protocol,
        s.subscribers.count,
        load_secs
    );

    // Subscribers first, so every stream starts before the vehicles' first record.
    let sub_count = s.subscribers.count;
    let seen: Vec<Arc<sse::Seen>> = (0..sub_count).map(|_| Arc::default()).collect();
    let (connected_tx, mut connected_rx) = mpsc::channel(sub_count.max(1));
    let mut subscribers = Vec::with_capacity(sub_count);
    let connect_gap = Duration::from_secs(s.subscribers.connect_secs) / sub_count.max(1) as u32;
    let shared: Vec<reqwest::Client> = (0..s.subscribers.h2c_connections)
        .map(|_| sse::client(true))
        .collect();
    for (n, seen) in seen.iter().enumerate() {
        let client = match shared.len() {
            0 => sse::client(false),
            k => shared[n % k].clone(),
        };
        subscribers.push(tokio::spawn(sse::subscribe(
            plan.clone(),
            client,
            n,
            live.clone(),
            seen.clone(),
            connected_tx.clone(),
            stop_subs.clone(),
        )));
        tokio::time::sleep(connect_gap).await;
    }
    drop(connected_tx);
    let deadline = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(deadline);
    let mut connected = 0;
    while connected < sub_count {
        tokio::select! {
            r = connected_rx.recv() => match r { Some(()) => connected += 1, None => break },
            _ = &mut deadline => break,
        }
    }
    if connected < sub_count {
        let _ = stop_subs_tx.send(true);
        anyhow::bail!(
            "only {connected} of {sub_count} subscribers connected within 30 s (errors: {:?})",
            live.errors_by_kind()
        );
    }
    // A subscriber registers with the hub just after its response starts.
    if sub_count > 0 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let started_at = chrono::Utc::now();
    let _ = plan.started.set(Instant::now());
    let drivers: Vec<tokio::task::JoinHandle<Vec<(usize, u64)>>> = match s.fleet.protocol {
        Protocol::Http => {
            let senders = s.fleet.connections.min(s.fleet.vehicles);
            (0..senders)
                .map(|i| {
                    let sender = http::Sender {
                        index: i,
                        vehicles: (i..s.fleet.vehicles).step_by(senders).collect(),
                    };
                    let (plan, live, stop) = (plan.clone(), live.clone(), stop_load.clone());
                    tokio::spawn(async move {
                        let vehicles = sender.vehicles.clone();
                        let accepted = http::drive(plan, sender, live, stop).await;
                        vehicles.into_iter().zip(accepted).collect()
                    })
                })
                .collect()
        }
        Protocol::Tesla => vec![tokio::spawn(tesla::drive(
            plan.clone(),
            live.clone(),
            stop_load.clone(),
        ))],
    };
    let failover = s.failover.clone().map(|f| {
        let plan = plan.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(plan.started() + Duration::from_secs(f.at_secs)).await;
            run_command(f.command).await
        })
    });

    // One window per second until the load ends, then the drain.
    let mut sampler = server::ServerSampler::new(s.targets.metrics.clone(), s.auth.admin_token.clone());
    let mut progress = progress::Progress::new(load_secs);
    let mut samples: Vec<Sample> = Vec::new();
    let mut knee = None;
    let mut last = (
        live.accepted.load(Ordering::Relaxed),
        live.events.load(Ordering::Relaxed),
    );
    let mut last_attempts = (
        live.attempts.load(Ordering::Relaxed),
        live.errors.load(Ordering::Relaxed),
    );
    let mut steady = (s.warmup_secs > 0).then(SteadyHistograms::default);
    let mut ticker =
        tokio::time::interval_at(plan.started() + Duration::from_secs(1), Duration::from_secs(1));
    loop {
        ticker.tick().await;
        let t = plan.elapsed();
        let accepted = live.accepted.load(Ordering::Relaxed);
        let events = live.events.load(Ordering::Relaxed);
        let attempts = (
            live.attempts.load(Ordering::Relaxed),
            live.errors.load(Ordering::Relaxed),
        );
        let server = sampler.sample().await;
        let (ack_window, e2e_window) = (live.ack.take_window(), live.take_e2e_window());
        // Windows that began once the warm-up was over.
        if let Some(steady) = &mut steady
            && t.round() - 1.0 >= s.warmup_secs as f64
        {
            steady.add(&ack_window, &e2e_window);
        }
        let sample = Sample {
            t: t.round(),
            offered_rps: plan.offered_at(t - 0.5),
            accepted_rps: (accepted - last.0) as f64,
            events_ps: (events - last.1) as f64,
            attempts_ps: (attempts.0 - last_attempts.0) as f64,
            errors_ps: (attempts.1 - last_attempts.1) as f64,
            ack: Percentiles::from_us(&ack_window),
            e2e: Percentiles::from_us(&e2e_window),
            subscribers: live.subscribers_connected.load(Ordering::Relaxed),
            cpu_percent: server.cpu_percent,
            rss_mib: server.rss_bytes.map(|b| b / 1_048_576.0),
        };
        (last, last_attempts) = ((accepted, events), attempts);
        progress.update(&sample, &live);
        samples.push(sample);
        if knee.is_none()
            && let Some(k) = &s.knee
            && let Some(found) = report::find_knee(&samples, k, s.warmup_secs as f64)
        {
            progress.line(&format!(
                "knee at {:.0} s, offered {:.0} records/s: {}",
                found.at_secs, found.offered_rps, found.reason
            ));
            if k.stop_after_secs > 0 {
                let end = ((t + k.stop_after_secs as f64) * 1000.0) as u64;
                plan.load_end_ms.fetch_min(end, Ordering::Relaxed);
            }
            knee = Some(found);
        }
        if plan.hz_at(t).is_none() {
            break;
        }
    }
    let load_secs_actual = plan.elapsed();
    let _ = stop_load_tx.send(true);
    let mut accepted = vec![0u64; s.fleet.vehicles];
    for d in drivers {
        for (g, last) in d.await.context("a driver panicked")? {
            accepted[g] = last;
        }
    }
    // Drain: until every subscriber has seen every accepted record, or drain_secs.
    let expected: u64 = accepted.iter().sum();
    let drain_until = Instant::now() + Duration::from_secs(s.drain_secs);
    let e2e_measured = s.fleet.protocol == Protocol::Http && sub_count > 0;
    while e2e_measured
        && Instant::now() < drain_until
        && seen.iter().any(|x| x.seq_sum.load(Ordering::Relaxed) < expected)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_subs_tx.send(true);
    let mut accounts = Vec::with_capacity(sub_count);
    for sub in subscribers {
        accounts.push(sub.await.context("a subscriber panicked")?);
    }
    let mut delivery = sse::total(accounts, if e2e_measured { &accepted } else { &[] });
    if !e2e_measured {
        delivery.lost_tail = 0;
    }
    if let Some(f) = failover {
        match f.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => live.error(&format!("failover_command: {e}")),
            Err(_) => live.error("failover_command: panicked"),
        }
    }
    progress.finish();

    let attempts = live.attempts.load(Ordering::Relaxed);
    let errors = live.errors.load(Ordering::Relaxed);
    let accepted_records = live.accepted.load(Ordering::Relaxed);
    let events = live.events.load(Ordering::Relaxed);
    // What arrived after the last window (the drain) belongs to the steady state too.
    if let Some(steady) = &mut steady {
        steady.add(&live.ack.take_window(), &live.take_e2e_window());
    }
    let steady = steady.map(|h| SteadyLatency {
        ack_ms: Percentiles::from_us(&h.ack),
        e2e_ms: Percentiles::from_us(&h.e2e),
    });
    let ack_ms = Percentiles::from_us(&live.ack.total());
    let e2e_ms = Percentiles::from_us(&live.e2e_total());
    let error_ratio = if attempts == 0 {
        0.0
    } else {
        errors as f64 / attempts as f64
    };
    let lost = delivery.lost();
    let outcome = Outcome {
        lost,
        duplicates: delivery.duplicates + delivery.double_applied,
        resets: delivery.resets,
        error_ratio,
        // The latency thresholds judge the steady state when the scenario has a warm-up.
        e2e_p99_ms: {
            let e2e = steady.map_or(e2e_ms, |st| st.e2e_ms);
            (e2e_measured && e2e.count > 0).then_some(e2e.p99)
        },
        ack_p99_ms: {
            let ack = steady.map_or(ack_ms, |st| st.ack_ms);
            (ack.count > 0).then_some(ack.p99)
        },
        throughput: accepted_records as f64 / load_secs_actual.max(0.001),
    };
    let checks = report::check(&s.thresholds, &outcome);
    let report = Report {
        scenario: s.clone(),
        vehicle_prefix: plan.prefix.clone(),
        started_at: started_at.to_rfc3339(),
        load_secs: load_secs_actual,
        throughput: Throughput {
            sent_records: live.sent.load(Ordering::Relaxed),
            accepted_records,
            accepted_per_sec: outcome.throughput,
            attempts,
            events,
            events_per_sec: events as f64 / load_secs_actual.max(0.001),
        },
        ack_ms,
        e2e_ms,
        e2e_measured,
        delivery,
        lost,
        errors: live.errors_by_kind(),
        error_ratio,
        server: ServerSummary::from_samples(&samples),
        steady,
        knee,
        passed: checks.iter().all(|c| c.pass),
        checks,
        series: samples,
    };
    write_reports(&report, &options.report_dir)?;
    Ok(report)
}

/// Writes `<name>-<prefix>.json` and `.html`; prints their paths.
fn write_reports(report: &Report, dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stem = format!(
        "{}-{}",
        report.scenario.name,
        report.vehicle_prefix.trim_end_matches('-')
    );
    let json = dir.join(format!("{stem}.json"));
    let html = dir.join(format!("{stem}.html"));
    std::fs::write(&json, serde_json::to_vec_pretty(report)?)?;
    std::fs::write(&html, report::html::render(report))?;
    println!("report: {}\n        {}", json.display(), html.display());
    Ok(())
}

/// Runs the failover command (blocking, off the runtime threads).
async fn run_command(command: Vec<String>) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        let (program, args) = command.split_first().ok_or("empty command")?;
        let status = std::process::Command::new(program)
            .args(args)
            .status()
            .map_err(|e| format!("{program}: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{program} exited with {status}"))
        }
    })
    .await
    .map_err(|e| e.to_string())?
}
