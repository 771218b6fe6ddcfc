//! The vehicle directory and actors on the real embedded backends (redb state store,
//! in-process fan-out): routing, dedupe, passivation, restart and shutdown.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fleetwire::backends::embedded::{InProcessFanOut, RedbStateStore, open_database};
use fleetwire_actors::consumer::RouteError;
use fleetwire_actors::model::{
    SignalValue, TelemetryRecord, TenantId, VehicleId, VehicleSnapshot, VehicleUpdate,
};
use fleetwire_actors::ports::{FanOut, FanOutMessage, LogEntry, ReplayRetention, StateStore};
use fleetwire_actors::registry::{ActorKind, ActorRegistry};
use fleetwire_actors::vehicle::{VehicleConfig, VehicleDirectory};
use futures_util::StreamExt;
use futures_util::future::join_all;
use futures_util::stream::BoxStream;

/// Longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(10);
/// How long to watch for an update that must not come.
const QUIET: Duration = Duration::from_millis(300);

/// A directory wired to real embedded backends, plus a fan-out subscription taken
/// before any record is routed.
struct Harness {
    dir: VehicleDirectory,
    store: Arc<RedbStateStore>,
    registry: ActorRegistry,
    updates: BoxStream<'static, FanOutMessage>,
}

impl Harness {
    fn new(config: VehicleConfig, data_dir: Option<&Path>) -> Self {
        let db = open_database(data_dir).expect("database opens");
        let store = Arc::new(RedbStateStore::new(db).expect("state store opens"));
        let fanout = Arc::new(InProcessFanOut::new(1024, ReplayRetention::from_config(100, 0)));
        let updates = fanout.subscribe();
        let registry = ActorRegistry::new();
        let dir = VehicleDirectory::new(config, store.clone(), fanout, registry.clone());
        Self {
            dir,
            store,
            registry,
            updates,
        }
    }

    async fn route(&self, records: Vec<TelemetryRecord>) -> Result<(), RouteError> {
        let vehicle = records[0].vehicle_id.clone();
        tokio::time::timeout(WAIT, self.dir.apply(TenantId::default(), vehicle, records))
            .await
            .expect("route finishes")
    }

    async fn stored(&self, vehicle: &str) -> VehicleSnapshot {
        self.store
            .load(&TenantId::default(), &VehicleId(vehicle.into()))
            .await
            .expect("store readable")
            .unwrap_or_else(|| panic!("{vehicle} was persisted"))
    }

    /// The next published update.
    async fn next_update(&mut self) -> VehicleUpdate {
        match tokio::time::timeout(WAIT, self.updates.next()).await {
            Ok(Some(FanOutMessage::Entry(LogEntry::Update { update, .. }))) => (*update).clone(),
            other => panic!("expected an update, got {other:?}"),
        }
    }

    /// Asserts nothing is published for a short while.
    async fn assert_no_update(&mut self) {
        if let Ok(msg) = tokio::time::timeout(QUIET, self.updates.next()).await {
            panic!("expected no update, got {msg:?}");
        }
    }

    fn vehicle_actors(&self) -> usize {
        self.registry.counts()[&ActorKind::VehicleState]
    }

    async fn shutdown(&self) {
        tokio::time::timeout(WAIT, self.dir.shutdown())
            .await
            .expect("shutdown finishes");
    }
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600 + secs, 0).unwrap()
}

fn record(vehicle: &str, secs: i64, signals: &[(&str, i64)]) -> TelemetryRecord {
    TelemetryRecord {
        timestamp: at(secs),
        vehicle_id: VehicleId(vehicle.into()),
        payload: signals
            .iter()
            .map(|(k, v)| (k.to_string(), SignalValue::Int(*v)))
            .collect(),
        can_id: None,
        ingest_received_at: Utc::now(),
    }
}

fn config() -> VehicleConfig {
    VehicleConfig {
        arbiters: 2,
        ..Default::default()
    }
}

/// Polls `done` every 20 ms until it holds, for at most [`WAIT`].
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

#[actix_rt::test]
async fn fifty_vehicles_are_persisted_published_and_deduplicated() {
    let mut h = Harness::new(config(), None);
    let batch = |i: i64| {
        let v = format!("car-{i:02}");
        vec![
            record(&v, 10, &[("Soc", 80 + i)]),
            record(&v, 11, &[("Speed", i), ("Soc", 79)]),
        ]
    };

    let routes = (0..50).map(|i| h.route(batch(i)));
    for result in join_all(routes).await {
        result.expect("route succeeds");
    }

    for i in 0..50 {
        let snap = h.stored(&format!("car-{i:02}")).await;
        assert_eq!(snap.version, 2, "{}", snap.vehicle_id);
        assert_eq!(snap.signals.get("Soc").unwrap().value, SignalValue::Int(79));
        assert_eq!(snap.signals.get("Speed").unwrap().value, SignalValue::Int(i));
        assert_eq!(snap.recent_records.len(), 2);
    }
    let mut seen = Vec::new();
    for _ in 0..50 {
        let update = h.next_update().await;
        assert_eq!(
            (update.version, update.changed.as_slice()),
            (2, ["Soc".into(), "Speed".into()].as_slice())
        );
        seen.push(update.vehicle_id.0);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 50, "one update per route");
    h.assert_no_update().await;
    assert_eq!(h.vehicle_actors(), 50);
    assert_eq!(h.dir.active_count(), 50);
    let info = h.registry.get(ActorKind::VehicleState, "car-07").expect("listed");
    assert_eq!(info.details["version"], 2);

    // Replays (a shard retry after a failover) change nothing and publish nothing.
    for result in join_all((0..50).map(|i| h.route(batch(i)))).await {
        result.expect("replay succeeds");
    }
    h.assert_no_update().await;
    assert_eq!(h.stored("car-07").await.version, 2);
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_passivated_vehicle_reactivates_from_the_store() {
    let mut h = Harness::new(
        VehicleConfig {
            passivate_after_secs: 1,
            ..config()
        },
        None,
    );
    let first = record("car-1", 10, &[("Soc", 80)]);
    h.route(vec![first.clone()]).await.unwrap();
    assert_eq!(h.next_update().await.version, 1);
    assert_eq!(h.vehicle_actors(), 1);

    eventually("the idle actor passivated", || {
        h.vehicle_actors() == 0 && h.dir.active_count() == 0
    })
    .await;

    // The next record reactivates the vehicle with its stored state and dedupe window.
    h.route(vec![first]).await.unwrap();
    h.assert_no_update().await;
    assert_eq!(h.vehicle_actors(), 1);
    h.route(vec![record("car-1", 11, &[("Soc", 79)])]).await.unwrap();
    let update = h.next_update().await;
    assert_eq!(update.version, 2, "version continues from the store");
    assert_eq!(h.stored("car-1").await.version, 2);
    h.shutdown().await;
}

/// Another node owned the vehicle's shard for a while and wrote newer state. Once this
/// node's consumer released the vehicle, its next record starts from the stored state;
/// a kept actor would apply it on its stale copy, reach the stored version and lose it.
#[actix_rt::test]
async fn a_released_vehicle_reloads_what_another_node_stored() {
    let mut h = Harness::new(config(), None);
    h.route(vec![record("car-1", 10, &[("Soc", 80)])]).await.unwrap();
    assert_eq!(h.next_update().await.version, 1);

    // The other owner applied two more records (11, 12) and stored version 3.
    let mut replica = fleetwire_actors::vehicle::VehicleState::restore(h.stored("car-1").await, 64);
    for r in [
        record("car-1", 11, &[("Soc", 79)]),
        record("car-1", 12, &[("Soc", 78)]),
    ] {
        replica.apply(&r);
    }
    let other = replica.snapshot();
    assert_eq!(other.version, 3);
    h.store.save(&other).await.unwrap();

    h.dir.release(&[VehicleId("car-1".into())]);
    eventually("the released actor stopped", || h.vehicle_actors() == 0).await;
    h.route(vec![record("car-1", 13, &[("Soc", 77)])]).await.unwrap();
    let update = h.next_update().await;
    assert_eq!(update.version, 4, "applied on top of the other node's state");
    let stored = h.stored("car-1").await;
    assert_eq!(stored.version, 4);
    assert_eq!(stored.signals.get("Soc").unwrap().value, SignalValue::Int(77));
    h.shutdown().await;
}

#[actix_rt::test]
async fn state_and_dedupe_window_survive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let first = vec![
        record("car-1", 10, &[("Soc", 80)]),
        record("car-1", 11, &[("Odometer", 5)]),
    ];
    {
        let h = Harness::new(config(), Some(data.path()));
        h.route(first.clone()).await.unwrap();
        h.shutdown().await;
    }

    // The old store's writer thread releases the database file shortly after the store
    // is dropped; redb refuses a second open until then.
    let mut h = tokio::time::timeout(WAIT, async {
        loop {
            match open_database(Some(data.path())) {
                Ok(db) => {
                    drop(db);
                    break Harness::new(config(), Some(data.path()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("database reopens");

    let snap = h.stored("car-1").await;
    assert_eq!((snap.version, snap.recent_records.len()), (2, 2));
    // The replayed batch is recognised as duplicates after the restart.
    h.route(first).await.unwrap();
    h.assert_no_update().await;
    h.route(vec![record("car-1", 12, &[("Soc", 78)])]).await.unwrap();
    let update = h.next_update().await;
    assert_eq!(update.version, 3);
    assert_eq!(update.signals.get("Odometer").unwrap().value, SignalValue::Int(5));
    h.shutdown().await;
}

#[actix_rt::test]
async fn shutdown_stops_every_actor_and_refuses_records() {
    let h = Harness::new(config(), None);
    for result in
        join_all((0..10).map(|i| h.route(vec![record(&format!("car-{i}"), 1, &[("Soc", i)])]))).await
    {
        result.unwrap();
    }
    assert_eq!(h.vehicle_actors(), 10);
    h.shutdown().await;
    assert_eq!(h.vehicle_actors(), 0);
    assert_eq!(h.dir.active_count(), 0);
    assert_eq!(
        h.route(vec![record("car-1", 2, &[("Soc", 1)])]).await,
        Err(RouteError::ShuttingDown)
    );
    assert_eq!(
        h.route(vec![record("new-car", 2, &[("Soc", 1)])]).await,
        Err(RouteError::ShuttingDown)
    );
    assert_eq!(h.vehicle_actors(), 0);
}
