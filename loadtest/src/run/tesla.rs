//! The Tesla driver: one mTLS WebSocket per vehicle ([`crate::tesla::drive_vehicle`]),
//! fed the simulated fleet's records at the stage rate. Acks are what it measures: Tesla's
//! payload schema has no free-form signals, so records cannot carry `lt_seq`, and
//! end-to-end accounting is left to the HTTP driver.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::Plan;
use super::live::Live;
use crate::fleet::{Fleet, FleetConfig};
use crate::pki::DevPki;
use crate::tesla::{DriverStats, Drivers};

/// Frames a vehicle may have queued; a vehicle still waiting for acks skips ticks beyond.
const VEHICLE_QUEUE: usize = 4;

/// Drives every vehicle until the load ends; returns no per-vehicle seqs.
pub async fn drive(plan: Arc<Plan>, live: Arc<Live>, mut stop: watch::Receiver<bool>) -> Vec<(usize, u64)> {
    if let Err(e) = drive_inner(&plan, &live, &mut stop).await {
        live.error(&format!("tesla_setup: {e:#}"));
    }
    Vec::new()
}

async fn drive_inner(plan: &Plan, live: &Live, stop: &mut watch::Receiver<bool>) -> anyhow::Result<()> {
    let t = &plan.scenario.targets;
    let addr = tokio::net::lookup_host(t.tesla.as_deref().unwrap_or_default())
        .await?
        .next()
        .ok_or_else(|| anyhow::anyhow!("the vehicle listener address does not resolve"))?;
    let pki = DevPki::load_or_create(t.pki.as_deref().unwrap_or(std::path::Path::new(".")))?;
    let vehicles = plan.scenario.fleet.vehicles;
    let mut fleet = Fleet::new(FleetConfig {
        vehicles,
        seed: plan.scenario.fleet.seed,
        id_prefix: plan.prefix.clone(),
        ..FleetConfig::default()
    });
    let stats = Arc::new(DriverStats::default());
    let (vehicle_stop_tx, vehicle_stop) = watch::channel(false);
    let drivers = Drivers::start(
        fleet.vehicle_ids(),
        &pki,
        addr,
        VEHICLE_QUEUE,
        &stats,
        &vehicle_stop,
    )?;
    let mut last = (0u64, 0u64);
    let mut tick_start = Instant::now();
    while let Some(hz) = plan.hz_at(plan.elapsed()) {
        if *stop.borrow() {
            break;
        }
        let records = fleet.tick(chrono::Utc::now());
        live.sent.fetch_add(records.len() as u64, Ordering::Relaxed);
        let period = Duration::from_secs_f64(1.0 / hz);
        // A skipped send (the vehicle still waits for acks) counts as a failed one.
        for _ in 0..drivers.send_tick(records, tick_start, period).await {
            live.attempts.fetch_add(1, Ordering::Relaxed);
            live.error("vehicle_busy");
        }
        last = fold(&stats, live, last);
        tick_start += period;
        tick_start = tick_start.max(Instant::now() - Duration::from_millis(100));
        tokio::select! {
            _ = tokio::time::sleep_until(tick_start) => {}
            _ = stop.changed() => break,
        }
    }
    let _ = vehicle_stop_tx.send(true);
    drivers.finish().await;
    fold(&stats, live, last);
    Ok(())
}

/// Moves the vehicle drivers' counters and ack latencies into the run's; returns the
/// (acked, errors) totals folded so far.
fn fold(stats: &DriverStats, live: &Live, last: (u64, u64)) -> (u64, u64) {
    let acked = stats.acked.load(Ordering::Relaxed);
    let errors = stats.errors.load(Ordering::Relaxed);
    live.accepted.fetch_add(acked - last.0, Ordering::Relaxed);
    live.attempts
        .fetch_add(acked - last.0 + errors - last.1, Ordering::Relaxed);
    for _ in last.1..errors {
        live.error("tesla_connection");
    }
    let window: Vec<u64> = {
        let mut h = stats
            .ack_latency_us
            .lock()
            .expect("histogram lock never poisoned");
        let w = h
            .iter_recorded()
            .flat_map(|v| std::iter::repeat_n(v.value_iterated_to(), v.count_since_last_iteration() as usize))
            .collect();
        h.reset();
        w
    };
    live.ack.record_all(&window);
    (acked, errors)
}
