//! The tenant router over a real vehicle directory, with in-memory registry, store and
//! dead-letter sink.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Utc;

use super::*;
use crate::consumer::{RecordRouter, RouteError};
use crate::model::{TenantId, VehicleId};
use crate::ports::{ProvisionOutcome, Registration, StoreError, VehicleRegistry, VehicleStatus};
use crate::producer::{
    DeadLetter, DeadLetterError, DeadLetterId, DeadLetterPage, DeadLetterQuery, DeadLetterReason,
    DeadLetterSink, StoredDeadLetter,
};
use crate::registry::ActorRegistry;
use crate::vehicle::fakes::{FakeFanOut, FakeStore, ports, record};
use crate::vehicle::{VehicleConfig, VehicleDirectory};

/// A registry in a map; `fail` makes the next N calls fail.
#[derive(Default)]
struct FakeRegistry {
    rows: Mutex<HashMap<VehicleId, Registration>>,
    fail: AtomicUsize,
    lookups: AtomicUsize,
}

impl FakeRegistry {
    fn failing(&self) -> Result<(), StoreError> {
        let failed = self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failed {
            Err(StoreError::Unavailable("fake registry down".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl VehicleRegistry for FakeRegistry {
    async fn lookup(&self, id: &VehicleId) -> Result<Option<Registration>, StoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.failing()?;
        Ok(self.rows.lock().unwrap().get(id).cloned())
    }
    async fn provision(&self, r: &Registration) -> Result<ProvisionOutcome, StoreError> {
        self.failing()?;
        let mut rows = self.rows.lock().unwrap();
        Ok(match rows.get(&r.vehicle_id) {
            Some(old) if old.tenant != r.tenant => ProvisionOutcome::OwnedByOther,
            Some(_) => ProvisionOutcome::Updated,
            None => {
                rows.insert(r.vehicle_id.clone(), r.clone());
                ProvisionOutcome::Created
            }
        })
    }
    async fn remove(&self, _: &TenantId, _: &VehicleId) -> Result<bool, StoreError> {
        unimplemented!("not used by the router")
    }
    async fn list(
        &self,
        _: &TenantId,
        _: Option<&VehicleId>,
        _: usize,
    ) -> Result<Vec<Registration>, StoreError> {
        unimplemented!("not used by the router")
    }
}

#[derive(Default)]
struct Letters {
    got: Mutex<Vec<DeadLetter>>,
    fail: AtomicUsize,
}

#[async_trait]
impl DeadLetterSink for Letters {
    async fn put(&self, letters: Vec<DeadLetter>) -> Result<(), DeadLetterError> {
        if self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(DeadLetterError("fake sink down".into()));
        }
        self.got.lock().unwrap().extend(letters);
        Ok(())
    }

    // The router only writes; reads go over what was written, for completeness.
    async fn list(&self, query: &DeadLetterQuery) -> Result<DeadLetterPage, DeadLetterError> {
        let mut letters: Vec<StoredDeadLetter> = self
            .got
            .lock()
            .unwrap()
            .iter()
            .map(|l| l.clone().into_stored(Utc::now()))
            .filter(|l| l.id.tenant == query.tenant && l.id.at().date_naive() == query.day)
            .collect();
        letters.sort_by_key(|l| std::cmp::Reverse(l.id.cursor()));
        letters.truncate(query.limit);
        Ok(DeadLetterPage { letters, next: None })
    }

    async fn get(&self, id: &DeadLetterId) -> Result<Option<StoredDeadLetter>, DeadLetterError> {
        let got = self.got.lock().unwrap();
        Ok(got
            .iter()
            .find(|l| l.id() == *id)
            .map(|l| l.clone().into_stored(Utc::now())))
    }

    async fn delete(&self, id: &DeadLetterId) -> Result<bool, DeadLetterError> {
        let mut got = self.got.lock().unwrap();
        let before = got.len();
        got.retain(|l| l.id() != *id);
        Ok(got.len() < before)
    }

    async fn delete_unchanged(&self, letter: &StoredDeadLetter) -> Result<bool, DeadLetterError> {
        self.delete(&letter.id).await
    }
}

struct Setup {
    router: TenantRouter,
    directory: VehicleDirectory,
    registry: Arc<FakeRegistry>,
    letters: Arc<Letters>,
    store: Arc<FakeStore>,
    fanout: Arc<FakeFanOut>,
}

fn setup(config: TenancyConfig) -> Setup {
    let (store, fanout) = ports();
    let directory = VehicleDirectory::new(
        VehicleConfig {
            arbiters: 1,
            ..Default::default()
        },
        store.clone(),
        fanout.clone(),
        ActorRegistry::new(),
    );
    let registry = Arc::new(FakeRegistry::default());
    let letters = Arc::new(Letters::default());
    let router = TenantRouter::new(&config, directory.clone(), registry.clone(), letters.clone()).unwrap();
    Setup {
        router,
        directory,
        registry,
        letters,
        store,
        fanout,
    }
}

fn tenant(t: &str) -> TenantId {
    TenantId::parse(t).unwrap()
}

fn provision(s: &Setup, vehicle: &str, t: &str, status: VehicleStatus) {
    s.registry.rows.lock().unwrap().insert(
        VehicleId(vehicle.into()),
        Registration {
            vehicle_id: VehicleId(vehicle.into()),
            tenant: tenant(t),
            display_name: None,
            status,
            provisioned_at: Utc::now(),
        },
    );
}

#[test]
fn policy_needs_a_valid_tenant_to_provision() {
    assert_eq!(
        TenancyConfig::default().policy(),
        Ok(UnknownVehiclePolicy::DeadLetter)
    );
    assert_eq!(
        TenancyConfig::provisioning_to("demo").policy(),
        Ok(UnknownVehiclePolicy::Provision(tenant("demo")))
    );
    let missing = TenancyConfig {
        unknown_vehicles: UnknownVehicles::Provision,
        ..TenancyConfig::default()
    };
    assert!(missing.policy().unwrap_err().contains("provision_tenant"));
    assert!(TenancyConfig::provisioning_to("a:b").policy().is_err());
    let parsed: TenancyConfig =
        serde_json::from_str(r#"{"unknown_vehicles": "provision", "provision_tenant": "x"}"#).unwrap();
    assert_eq!(parsed.policy(), Ok(UnknownVehiclePolicy::Provision(tenant("x"))));
    assert!(serde_json::from_str::<TenancyConfig>(r#"{"unknown": "provision"}"#).is_err());
}

#[actix_rt::test]
async fn records_are_applied_under_the_registered_tenant() {
    let s = setup(TenancyConfig::default());
    provision(&s, "v1", "acme", VehicleStatus::Active);
    s.router
        .route(VehicleId("v1".into()), vec![record("v1", 1, &[("Soc", 80)])])
        .await
        .unwrap();
    let stored = s.store.snapshots.lock().unwrap()[&VehicleId("v1".into())].clone();
    assert_eq!((stored.tenant.as_str(), stored.version), ("acme", 1));
    assert_eq!(s.fanout.updates.lock().unwrap()[0].tenant.as_str(), "acme");
    assert!(s.letters.got.lock().unwrap().is_empty());
    s.directory.shutdown().await;
}

#[actix_rt::test]
async fn unknown_and_suspended_vehicles_are_dead_lettered_with_their_reason() {
    let s = setup(TenancyConfig::default());
    provision(&s, "sus", "acme", VehicleStatus::Suspended);
    let records = vec![
        record("nobody", 1, &[("Soc", 1)]),
        record("nobody", 2, &[("Soc", 2)]),
    ];
    s.router.route(VehicleId("nobody".into()), records).await.unwrap();
    s.router
        .route(VehicleId("sus".into()), vec![record("sus", 1, &[("Soc", 1)])])
        .await
        .unwrap();
    let letters = s.letters.got.lock().unwrap().clone();
    let reasons: Vec<_> = letters
        .iter()
        .map(|l| (l.entry.partition_key.as_str(), l.reason.clone()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("nobody", DeadLetterReason::Unprovisioned),
            ("nobody", DeadLetterReason::Unprovisioned),
            (
                "sus",
                DeadLetterReason::Suspended {
                    tenant: tenant("acme")
                }
            ),
        ]
    );
    // The letter keeps the record itself (seed JSON), so it can be replayed.
    let body: serde_json::Value = serde_json::from_slice(&letters[1].entry.data).unwrap();
    assert_eq!(body["payload"]["Soc"], 2);
    assert!(s.store.snapshots.lock().unwrap().is_empty(), "nothing applied");
    assert!(s.fanout.updates.lock().unwrap().is_empty(), "nothing published");
    s.directory.shutdown().await;
}

#[actix_rt::test]
async fn unknown_vehicles_can_be_provisioned_to_a_tenant() {
    let s = setup(TenancyConfig::provisioning_to("demo"));
    s.router
        .route(VehicleId("new".into()), vec![record("new", 1, &[("Soc", 1)])])
        .await
        .unwrap();
    let row = s.registry.rows.lock().unwrap()[&VehicleId("new".into())].clone();
    assert_eq!((row.tenant.as_str(), row.status), ("demo", VehicleStatus::Active));
    assert_eq!(
        s.store.snapshots.lock().unwrap()[&VehicleId("new".into())]
            .tenant
            .as_str(),
        "demo"
    );
    // A vehicle another tenant already owns stays theirs.
    provision(&s, "taken", "acme", VehicleStatus::Active);
    s.router
        .route(VehicleId("taken".into()), vec![record("taken", 1, &[("Soc", 1)])])
        .await
        .unwrap();
    assert_eq!(
        s.store.snapshots.lock().unwrap()[&VehicleId("taken".into())]
            .tenant
            .as_str(),
        "acme"
    );
    s.directory.shutdown().await;
}

#[actix_rt::test]
async fn registry_and_sink_failures_fail_the_route_and_the_retry_succeeds() {
    let s = setup(TenancyConfig::default());
    provision(&s, "v1", "acme", VehicleStatus::Active);
    s.registry.fail.store(1, Ordering::SeqCst);
    let batch = vec![record("v1", 1, &[("Soc", 80)])];
    let err = s
        .router
        .route(VehicleId("v1".into()), batch.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, RouteError::TenantUnresolved { .. }), "{err:?}");
    assert!(s.store.snapshots.lock().unwrap().is_empty());
    s.router.route(VehicleId("v1".into()), batch).await.unwrap();
    assert_eq!(s.store.snapshots.lock().unwrap().len(), 1);

    // A refused record the sink does not take is not acknowledged either.
    s.letters.fail.store(1, Ordering::SeqCst);
    let unknown = vec![record("u", 1, &[("Soc", 1)])];
    let err = s
        .router
        .route(VehicleId("u".into()), unknown.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, RouteError::TenantUnresolved { .. }), "{err:?}");
    s.router.route(VehicleId("u".into()), unknown).await.unwrap();
    assert_eq!(s.letters.got.lock().unwrap().len(), 1);
    s.directory.shutdown().await;
}

#[actix_rt::test]
async fn answers_are_cached_for_the_ttl() {
    let s = setup(TenancyConfig::default());
    provision(&s, "v1", "acme", VehicleStatus::Active);
    for i in 1..=5 {
        s.router
            .route(VehicleId("v1".into()), vec![record("v1", i, &[("Soc", i)])])
            .await
            .unwrap();
        s.router
            .route(VehicleId("u".into()), vec![record("u", i, &[("Soc", i)])])
            .await
            .unwrap();
    }
    assert_eq!(
        s.registry.lookups.load(Ordering::SeqCst),
        2,
        "one lookup per vehicle"
    );

    let uncached = setup(TenancyConfig {
        cache_ttl_secs: 0,
        ..TenancyConfig::default()
    });
    for i in 1..=3 {
        uncached
            .router
            .route(VehicleId("u".into()), vec![record("u", i, &[("Soc", i)])])
            .await
            .unwrap();
    }
    assert_eq!(uncached.registry.lookups.load(Ordering::SeqCst), 3);
    s.directory.shutdown().await;
    uncached.directory.shutdown().await;
}
