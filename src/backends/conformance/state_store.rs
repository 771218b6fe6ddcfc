//! Conformance checks of the [`StateStore`] port: order safety, tenant isolation, racing
//! writers, paging. Each check works in tenants of its own (`unique_tenant`), so checks
//! can share one backend.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use fleetwire_actors::model::{
    Location, RecordId, SignalReading, SignalValue, TenantId, VehicleId, VehicleSnapshot,
};
use fleetwire_actors::ports::{SaveOutcome, StateStore};

use super::registry::unique_tenant;

/// A bare snapshot of `tenant`'s `vehicle` at `version`.
pub fn snapshot(tenant: &TenantId, vehicle: &str, version: u64) -> VehicleSnapshot {
    VehicleSnapshot {
        tenant: tenant.clone(),
        vehicle_id: VehicleId(vehicle.to_owned()),
        version,
        ..VehicleSnapshot::default()
    }
}

/// A snapshot with every kind of signal value, so a backend that re-encodes values
/// (DynamoDB) shows that integers stay integers, floats floats, and nested values survive.
fn rich(tenant: &TenantId, vehicle: &str, version: u64, writer: i64) -> VehicleSnapshot {
    let t: DateTime<Utc> = "2026-03-01T10:00:00.123Z".parse().unwrap();
    let reading = |value| SignalReading { value, timestamp: t };
    let mut s = snapshot(tenant, vehicle, version);
    s.last_seen = Some(t);
    s.recent_records = vec![RecordId(u64::MAX), RecordId(7), RecordId(version)];
    s.signals = [
        ("Writer", SignalValue::Int(writer)),
        ("Soc", SignalValue::Float(2.0)),
        ("Speed", SignalValue::Float(-12.5)),
        ("Gear", SignalValue::Text("D".into())),
        ("Locked", SignalValue::Bool(true)),
        ("Range", SignalValue::Invalid),
        (
            "Location",
            SignalValue::Location(Location {
                latitude: 52.52,
                longitude: 13.405,
            }),
        ),
        (
            "Doors",
            SignalValue::Fields([("DriverFront".to_string(), SignalValue::Bool(false))].into()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.into(), reading(v)))
    .collect();
    s
}

/// Saves are order-safe: a lower or equal version never replaces a stored higher one and
/// reports `AlreadyNewer`, replays in any order end at the highest version; `load` returns
/// exactly what was written; `list` pages through a tenant in id order.
pub async fn check_state_store_is_order_safe(store: &dyn StateStore) {
    let tenant = unique_tenant("order");
    let id = "veh-a";
    let vid = VehicleId(id.into());
    assert_eq!(store.load(&tenant, &vid).await.expect("load failed"), None);

    let save = |s: VehicleSnapshot| async move { store.save(&s).await.expect("save failed") };
    assert_eq!(save(snapshot(&tenant, id, 5)).await, SaveOutcome::Written);
    assert_eq!(save(snapshot(&tenant, id, 3)).await, SaveOutcome::AlreadyNewer);
    assert_eq!(save(snapshot(&tenant, id, 5)).await, SaveOutcome::AlreadyNewer);
    let stored = store.load(&tenant, &vid).await.expect("load failed");
    assert_eq!(
        stored.map(|s| s.version),
        Some(5),
        "a lower version never overwrites"
    );

    let newer = rich(&tenant, id, 6, 1);
    assert_eq!(save(newer.clone()).await, SaveOutcome::Written);
    assert_eq!(
        store.load(&tenant, &vid).await.unwrap(),
        Some(newer),
        "load returns the saved snapshot, values and types intact"
    );

    // A replay after a failover: versions arrive shuffled and repeated.
    let replayed = "veh-replay";
    let mut outcomes = Vec::new();
    for v in [3, 1, 5, 2, 5, 4, 6, 6] {
        outcomes.push(save(rich(&tenant, replayed, v, v as i64)).await);
    }
    use SaveOutcome::{AlreadyNewer as Old, Written as New};
    assert_eq!(outcomes, [New, Old, New, Old, Old, Old, New, Old]);
    let last = store
        .load(&tenant, &VehicleId(replayed.into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last, rich(&tenant, replayed, 6, 6), "the highest version wins");

    // Paging in id order, within the tenant.
    for suffix in ["d", "b", "c"] {
        save(snapshot(&tenant, &format!("veh-{suffix}"), 1)).await;
    }
    let mut ids = Vec::new();
    let mut after: Option<VehicleId> = None;
    loop {
        let page = store.list(&tenant, after.as_ref(), 2).await.expect("list failed");
        assert!(page.len() <= 2, "list returns at most `limit` snapshots");
        let Some(last) = page.last() else { break };
        after = Some(last.vehicle_id.clone());
        assert!(page.iter().all(|s| s.tenant == tenant));
        ids.extend(page.into_iter().map(|s| s.vehicle_id.0));
    }
    assert_eq!(
        ids,
        ["veh-a", "veh-b", "veh-c", "veh-d", "veh-replay"],
        "list pages through every snapshot once, in id order"
    );
    assert_eq!(store.list(&tenant, None, 0).await.unwrap(), vec![], "limit 0");
    store.ping().await.expect("ping failed");
}

/// Tenant B cannot load, list or overwrite tenant A's vehicle, even under the same vehicle
/// id: the two are different snapshots.
pub async fn check_state_store_tenant_isolation(store: &dyn StateStore) {
    let a = unique_tenant("isoa");
    let b = unique_tenant("isob");
    let vid = VehicleId("shared-id".into());
    assert_eq!(
        store.save(&rich(&a, "shared-id", 3, 1)).await.unwrap(),
        SaveOutcome::Written
    );
    assert_eq!(
        store.load(&b, &vid).await.unwrap(),
        None,
        "B cannot load A's vehicle"
    );
    assert!(
        store.list(&b, None, 100).await.unwrap().is_empty(),
        "B lists nothing"
    );
    // B's first snapshot of the same id is B's own, not "older than A's".
    assert_eq!(
        store.save(&snapshot(&b, "shared-id", 1)).await.unwrap(),
        SaveOutcome::Written
    );
    assert_eq!(
        store.load(&a, &vid).await.unwrap(),
        Some(rich(&a, "shared-id", 3, 1))
    );
    assert_eq!(
        store.load(&b, &vid).await.unwrap(),
        Some(snapshot(&b, "shared-id", 1))
    );
    let listed: Vec<_> = store.list(&a, None, 100).await.unwrap();
    assert_eq!(listed, vec![rich(&a, "shared-id", 3, 1)], "A lists only its own");
}

/// Two writers (two clients, as two nodes after a lease steal) save the same versions of
/// one vehicle at the same time with different content: for each version exactly one
/// save is `Written`, and the stored snapshot is that writer's.
pub async fn check_state_store_racing_writers(first: Arc<dyn StateStore>, second: Arc<dyn StateStore>) {
    let tenant = unique_tenant("race");
    let vid = VehicleId("raced".into());
    for version in 1..=15u64 {
        let (a, b) = (Arc::clone(&first), Arc::clone(&second));
        let (sa, sb) = (
            rich(&tenant, "raced", version, 1),
            rich(&tenant, "raced", version, 2),
        );
        let ta = tokio::spawn(async move { a.save(&sa).await });
        let tb = tokio::spawn(async move { b.save(&sb).await });
        let oa = ta.await.unwrap().expect("save failed");
        let ob = tb.await.unwrap().expect("save failed");
        let winner = match (oa, ob) {
            (SaveOutcome::Written, SaveOutcome::AlreadyNewer) => 1,
            (SaveOutcome::AlreadyNewer, SaveOutcome::Written) => 2,
            other => panic!("version {version}: exactly one writer must win, got {other:?}"),
        };
        let stored = first.load(&tenant, &vid).await.unwrap().unwrap();
        assert_eq!(
            stored,
            rich(&tenant, "raced", version, winner),
            "the stored snapshot is the winner's"
        );
    }
    // A stale writer racing a newer one never wins.
    let (a, b) = (Arc::clone(&first), Arc::clone(&second));
    let (old, new) = (rich(&tenant, "raced", 16, 1), rich(&tenant, "raced", 17, 2));
    let (_, _) = tokio::join!(async move { a.save(&new).await.unwrap() }, async move {
        b.save(&old).await.unwrap()
    });
    assert_eq!(first.load(&tenant, &vid).await.unwrap().unwrap().version, 17);
}
