//! Whole nodes and the vehicle registry: records of unprovisioned or suspended vehicles are
//! dead-lettered (never applied, never dropped silently), vehicles of another tenant are
//! invisible to the API, and a node on DynamoDB Local keeps state and registry across a
//! restart without applying anything twice.
//!
//! The DynamoDB test needs `FLEETWIRE_TEST_DYNAMODB_ENDPOINT` (`scripts/test` starts it).

mod common;

use std::time::Duration;

use chrono::Utc;
use common::cloud::unique;
use common::{TestNode, by_reason, eventually, record, test_config};
use fleetwire::backends::dynamodb::{DynamoDbStateStore, DynamoDbVehicleRegistry};
use fleetwire::config::{Config, StateBackend};
use fleetwire_actors::model::{TenantId, VehicleId};
use fleetwire_actors::ports::{ProvisionOutcome, Registration, VehicleRegistry, VehicleStatus};
use fleetwire_actors::tenancy::TenancyConfig;
use serde_json::json;

fn registration(vehicle: &str, tenant: &str, status: VehicleStatus) -> Registration {
    Registration {
        vehicle_id: VehicleId(vehicle.into()),
        tenant: TenantId::parse(tenant).unwrap(),
        display_name: None,
        status,
        provisioned_at: Utc::now(),
    }
}

async fn vehicle_version(t: &TestNode, vehicle: &str) -> Option<u64> {
    let (status, body) = t.get(&format!("{}/v1/vehicles/{vehicle}", t.api)).await;
    (status == 200).then(|| body["version"].as_u64().unwrap())
}

#[actix_rt::test]
async fn unprovisioned_and_suspended_vehicles_are_dead_lettered_and_other_tenants_invisible() {
    let mut config = test_config(None);
    config.tenancy = TenancyConfig::default(); // production default: dead_letter
    let t = TestNode::start(config).await;
    let registry = t.node.ports().registry.clone();
    registry
        .provision(&registration("mine", TenantId::DEFAULT, VehicleStatus::Active))
        .await
        .unwrap();
    registry
        .provision(&registration(
            "paused",
            TenantId::DEFAULT,
            VehicleStatus::Suspended,
        ))
        .await
        .unwrap();
    registry
        .provision(&registration("theirs", "acme", VehicleStatus::Active))
        .await
        .unwrap();

    // At the edge, the default tenant's key writes its own vehicles (the suspended one too:
    // the consumer refuses it), never a stranger or another tenant's vehicle.
    let body = json!([
        record("mine", 1, 50.0),
        record("stranger", 1, 50.0),
        record("paused", 1, 50.0),
        record("theirs", 1, 50.0),
    ]);
    let (status, reply) = t.ingest(&body).await;
    assert_eq!(status, 200, "{reply}");
    let outcomes: Vec<&str> = reply["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["accepted", "rejected", "accepted", "rejected"],
        "{reply}"
    );
    // acme's own key writes acme's vehicle.
    let acme_key = common::create_api_key(
        &t.api,
        &common::auth::token("acme", fleetwire::auth::Role::TenantAdmin),
        "acme fleet",
    )
    .await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/ingest", t.api))
        .header("x-api-key", acme_key)
        .json(&json!([record("theirs", 1, 50.0)]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // A stream written by another producer (Tesla's own server) has no edge check: the
    // consumer dead-letters the stranger's records.
    let strangers = [record("stranger", 1, 50.0), record("stranger", 2, 49.0)]
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r["ingest_received_at"] = json!(Utc::now());
            fleetwire_actors::ports::PutEntry {
                partition_key: "stranger".into(),
                data: serde_json::to_vec(&r).unwrap().into(),
            }
        })
        .collect();
    t.node.ports().stream.put_records(strangers).await.unwrap();

    eventually("refused records dead-lettered", || async {
        let by_reason = by_reason(&t.dead_letters(&["_unknown", "acme", "default"]).await);
        by_reason.get("unprovisioned") == Some(&2) && by_reason.get("suspended") == Some(&1)
    })
    .await;
    eventually("the provisioned vehicle applied", || async {
        vehicle_version(&t, "mine").await == Some(1)
    })
    .await;
    // acme's vehicle is applied under acme: persisted, but not visible to this caller.
    eventually("acme's vehicle persisted under acme", || async {
        t.node
            .ports()
            .state
            .load(&TenantId::parse("acme").unwrap(), &VehicleId("theirs".into()))
            .await
            .unwrap()
            .is_some()
    })
    .await;
    assert_eq!(
        vehicle_version(&t, "theirs").await,
        None,
        "another tenant's vehicle is a 404"
    );
    assert_eq!(vehicle_version(&t, "stranger").await, None);
    assert_eq!(vehicle_version(&t, "paused").await, None);
    let (_, list) = t.get(&format!("{}/v1/vehicles", t.api)).await;
    let ids: Vec<&str> = list["vehicles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["vehicle_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["mine"],
        "the list holds only the caller's tenant's vehicles"
    );
    let (_, metrics) = t.get_text(&format!("{}/metrics", t.admin)).await;
    assert!(
        metrics.contains(r#"fleetwire_tenancy_dead_letters_total{reason="unprovisioned"}"#),
        "the refusals are counted"
    );
    // Each letter keeps its record for a later replay.
    let letters = t.dead_letters(&["_unknown"]).await;
    assert!(
        letters.iter().any(|l| l.partition_key == "stranger"
            && String::from_utf8_lossy(&l.payload).contains(r#""Soc":49.0"#))
    );
    assert!(t.shutdown(Duration::from_secs(10)).await.drained);
}

/// A node with the embedded stream (persisted) and the state + registry in DynamoDB Local.
fn dynamodb_node(data_dir: &std::path::Path, prefix: &str) -> Config {
    let mut config = test_config(Some(data_dir.to_owned()));
    config.backends.state = StateBackend::Dynamodb;
    config.dynamodb.endpoint_url = Some(
        std::env::var("FLEETWIRE_TEST_DYNAMODB_ENDPOINT")
            .expect("FLEETWIRE_TEST_DYNAMODB_ENDPOINT is not set: run scripts/test"),
    );
    config.dynamodb.static_credentials = true;
    config.dynamodb.create_tables_if_missing = true;
    config.dynamodb.table_prefix = prefix.to_owned();
    config
}

#[actix_rt::test]
async fn a_node_on_dynamodb_keeps_state_across_a_restart_and_applies_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("{}-", unique("fw-node"));
    let config = dynamodb_node(dir.path(), &prefix);

    let t = TestNode::start(config.clone()).await;
    let first = json!([
        record("d-1", 1, 90.0),
        record("d-1", 2, 89.0),
        record("d-2", 1, 70.0)
    ]);
    assert_eq!(t.ingest(&first).await.0, 200);
    eventually("both vehicles persisted", || async {
        vehicle_version(&t, "d-1").await == Some(2) && vehicle_version(&t, "d-2").await == Some(1)
    })
    .await;
    assert!(t.shutdown(Duration::from_secs(20)).await.drained);

    // What the node wrote is in DynamoDB: the registry row and the state item.
    let registry = DynamoDbVehicleRegistry::connect(&config.dynamodb).await.unwrap();
    let row = registry.lookup(&VehicleId("d-1".into())).await.unwrap().unwrap();
    assert_eq!(
        row.tenant.as_str(),
        TenantId::DEFAULT,
        "provisioned on first sight"
    );
    assert_eq!(
        registry
            .provision(&registration("d-1", "acme", VehicleStatus::Active))
            .await
            .unwrap(),
        ProvisionOutcome::OwnedByOther
    );

    // Restarted: the state is there before any new record, a replayed record is a
    // duplicate, a new one is applied once.
    let t = TestNode::start(config.clone()).await;
    assert_eq!(
        vehicle_version(&t, "d-1").await,
        Some(2),
        "state survived the restart"
    );
    let again = json!([record("d-1", 2, 89.0), record("d-1", 3, 88.0)]);
    assert_eq!(t.ingest(&again).await.0, 200);
    eventually("the new record applied", || async {
        vehicle_version(&t, "d-1").await == Some(3)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, body) = t.get(&format!("{}/v1/vehicles/d-1", t.api)).await;
    assert_eq!(body["version"], 3, "the replayed record was not applied twice");
    assert_eq!(body["signals"]["Soc"]["value"], 88.0);
    assert!(t.shutdown(Duration::from_secs(20)).await.drained);

    DynamoDbStateStore::connect(&config.dynamodb)
        .await
        .unwrap()
        .delete_table()
        .await
        .unwrap();
    registry.delete_table().await.unwrap();
}
