//! Conformance checks of the [`VehicleRegistry`] port.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use fleetwire_actors::model::{TenantId, VehicleId};
use fleetwire_actors::ports::{ProvisionOutcome, Registration, VehicleRegistry, VehicleStatus};

use super::nonce;

/// A registration of `vehicle` to `tenant`, active, provisioned at a fixed time.
pub fn registration(tenant: &str, vehicle: &str) -> Registration {
    Registration {
        vehicle_id: VehicleId(vehicle.to_owned()),
        tenant: TenantId::parse(tenant).expect("valid tenant"),
        display_name: None,
        status: VehicleStatus::Active,
        provisioned_at: "2026-03-01T10:00:00.123456Z".parse::<DateTime<Utc>>().unwrap(),
    }
}

/// A tenant id unique to this check run (`_` instead of the nonce's other characters).
pub fn unique_tenant(name: &str) -> TenantId {
    let raw: String = nonce(name)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Tenant ids are at most 64 characters; keep the unique tail.
    let start = raw.len().saturating_sub(TenantId::MAX_LEN);
    TenantId::parse(&raw[start..]).expect("nonce makes a valid tenant id")
}

/// Provision / lookup / update / remove / list, and the tenant boundary of each.
pub async fn check_registry_basics(registry: &dyn VehicleRegistry) {
    let a = unique_tenant("rega");
    let b = unique_tenant("regb");
    let vid = |s: &str| VehicleId(format!("{a}-{s}"));
    assert_eq!(registry.lookup(&vid("x")).await.expect("lookup failed"), None);

    let mut first = registration(a.as_str(), vid("x").as_str());
    assert_eq!(
        registry.provision(&first).await.expect("provision failed"),
        ProvisionOutcome::Created
    );
    assert_eq!(registry.lookup(&vid("x")).await.unwrap(), Some(first.clone()));

    // Same tenant again: name and status change, the first provisioning time stays.
    let mut again = first.clone();
    again.display_name = Some("truck 7".into());
    again.status = VehicleStatus::Suspended;
    again.provisioned_at = Utc::now();
    assert_eq!(
        registry.provision(&again).await.unwrap(),
        ProvisionOutcome::Updated
    );
    first.display_name = Some("truck 7".into());
    first.status = VehicleStatus::Suspended;
    assert_eq!(
        registry.lookup(&vid("x")).await.unwrap(),
        Some(first.clone()),
        "an update keeps provisioned_at"
    );
    // And the name can be cleared.
    again.display_name = None;
    registry.provision(&again).await.unwrap();
    assert_eq!(
        registry.lookup(&vid("x")).await.unwrap().unwrap().display_name,
        None
    );

    // Another tenant can neither take, remove nor list it.
    let theirs = registration(b.as_str(), vid("x").as_str());
    assert_eq!(
        registry.provision(&theirs).await.unwrap(),
        ProvisionOutcome::OwnedByOther
    );
    assert_eq!(registry.lookup(&vid("x")).await.unwrap().unwrap().tenant, a);
    assert!(
        !registry.remove(&b, &vid("x")).await.unwrap(),
        "B cannot remove A's vehicle"
    );
    assert!(registry.list(&b, None, 10).await.unwrap().is_empty());

    // Listing pages in vehicle-id order within the tenant.
    for s in ["d", "b", "c"] {
        registry
            .provision(&registration(a.as_str(), vid(s).as_str()))
            .await
            .unwrap();
    }
    registry
        .provision(&registration(b.as_str(), &format!("{a}-bb")))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut after: Option<VehicleId> = None;
    loop {
        let page = registry.list(&a, after.as_ref(), 2).await.expect("list failed");
        assert!(page.len() <= 2, "list returns at most `limit`");
        let Some(last) = page.last() else { break };
        after = Some(last.vehicle_id.clone());
        assert!(
            page.iter().all(|r| r.tenant == a),
            "list shows only the tenant's vehicles"
        );
        seen.extend(page.into_iter().map(|r| r.vehicle_id));
    }
    assert_eq!(
        seen,
        ["b", "c", "d", "x"].map(vid),
        "every vehicle once, in id order"
    );

    assert!(registry.remove(&a, &vid("x")).await.unwrap());
    assert!(!registry.remove(&a, &vid("x")).await.unwrap(), "already gone");
    assert_eq!(registry.lookup(&vid("x")).await.unwrap(), None);
    assert_eq!(registry.list(&a, None, 10).await.unwrap().len(), 3);
    // Once removed, another tenant may provision it.
    assert_eq!(
        registry.provision(&theirs).await.unwrap(),
        ProvisionOutcome::Created
    );
}

/// Two tenants provisioning the same vehicle at the same time: exactly one wins, the other
/// gets `OwnedByOther`, and the stored owner is the winner. Repeated over many vehicles.
/// `first` and `second` may be one registry or two clients of the same backend (two nodes).
pub async fn check_registry_provision_race(
    first: Arc<dyn VehicleRegistry>,
    second: Arc<dyn VehicleRegistry>,
) {
    let registry = &first;
    let a = unique_tenant("racea");
    let b = unique_tenant("raceb");
    for i in 0..20 {
        let vehicle = format!("{a}-race-{i}");
        let (ra, rb) = (
            registration(a.as_str(), &vehicle),
            registration(b.as_str(), &vehicle),
        );
        let (r1, r2) = (Arc::clone(&first), Arc::clone(&second));
        let ta = tokio::spawn(async move { r1.provision(&ra).await });
        let tb = tokio::spawn(async move { r2.provision(&rb).await });
        let oa = ta.await.unwrap().expect("provision failed");
        let ob = tb.await.unwrap().expect("provision failed");
        let winner = match (&oa, &ob) {
            (ProvisionOutcome::Created, ProvisionOutcome::OwnedByOther) => &a,
            (ProvisionOutcome::OwnedByOther, ProvisionOutcome::Created) => &b,
            other => panic!("vehicle {vehicle}: exactly one tenant must win, got {other:?}"),
        };
        let stored = registry
            .lookup(&VehicleId(vehicle.clone()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&stored.tenant, winner, "the stored owner is the winner");
    }
}
