//! Dead letters over HTTP on a whole node: an unprovisioned vehicle's record and an
//! undecodable record end as letters; the platform admin lists, inspects, replays (after
//! provisioning the vehicle, the record is applied) and deletes them; a tenant admin sees
//! and replays only its own tenant's letters; a letter of 300 KB is inspected and replayed
//! whole.

mod common;

use std::time::Duration;

use base64::Engine as _;
use chrono::Utc;
use common::auth::token;
use common::{TestNode, client_with_token, eventually, eventually_some, record, test_config};
use fleetwire::auth::Role;
use fleetwire_actors::model::{TenantId, VehicleId};
use fleetwire_actors::ports::{PutEntry, Registration, VehicleStatus};
use fleetwire_actors::tenancy::TenancyConfig;
use serde_json::{Value, json};

fn admin_client() -> reqwest::Client {
    client_with_token(common::auth::ADMIN_TOKEN, None)
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = client.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = client.post(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn registration(vehicle: &str, tenant: &str, status: VehicleStatus) -> Registration {
    Registration {
        vehicle_id: VehicleId(vehicle.into()),
        tenant: TenantId::parse(tenant).unwrap(),
        display_name: None,
        status,
        provisioned_at: Utc::now(),
    }
}

/// A node whose tenancy router never caches registrations (so a provision is seen at
/// once), and an admin client.
async fn start_uncached() -> (TestNode, reqwest::Client) {
    let mut config = test_config(None);
    config.tenancy = TenancyConfig {
        cache_ttl_secs: 0,
        ..TenancyConfig::default()
    };
    (TestNode::start(config).await, admin_client())
}

fn json_entry(vehicle: &str, second: u32) -> PutEntry {
    let mut r = record(vehicle, second, 42.0);
    r["ingest_received_at"] = json!(Utc::now());
    PutEntry {
        partition_key: vehicle.into(),
        data: serde_json::to_vec(&r).unwrap().into(),
    }
}

#[actix_rt::test]
async fn admin_lists_inspects_replays_and_deletes_dead_letters() {
    let (t, admin) = start_uncached().await;
    // A stranger's record and bytes that are no record at all, straight onto the stream
    // (as another producer would write them).
    t.node
        .ports()
        .stream
        .put_records(vec![
            json_entry("stranger", 1),
            PutEntry {
                partition_key: "stranger".into(),
                data: bytes::Bytes::from_static(b"\x01\x02 not a record"),
            },
        ])
        .await
        .unwrap();

    let list_url = format!("{}/admin/dead-letters?tenant=_unknown", t.admin);
    let letters = eventually_some("two dead letters listed", || async {
        let (status, body) = get(&admin, &list_url).await;
        assert_eq!(status, 200, "{body}");
        let letters = body["dead_letters"].as_array().unwrap().clone();
        (letters.len() == 2).then_some(letters)
    })
    .await;
    let reasons: Vec<&str> = letters.iter().map(|l| l["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons.len(), 2);
    assert!(
        reasons.contains(&"unprovisioned") && reasons.contains(&"undecodable"),
        "{reasons:?}"
    );
    assert!(
        letters[0]["at"].as_str().unwrap() >= letters[1]["at"].as_str().unwrap(),
        "newest first"
    );
    let by = |reason: &str| letters.iter().find(|l| l["reason"] == reason).unwrap().clone();
    let (stranger, garbage) = (by("unprovisioned"), by("undecodable"));
    assert_eq!(garbage["source"]["stream"], "embedded");
    assert!(
        garbage["source"]["shard"]
            .as_str()
            .unwrap()
            .starts_with("shardId-")
    );
    assert!(garbage["source"]["sequence"].is_string());
    assert!(
        letters.iter().all(|l| l.get("payload_base64").is_none()),
        "listings carry no payloads"
    );

    // Filter and paging.
    let (_, only) = get(&admin, &format!("{list_url}&reason=undecodable")).await;
    assert_eq!(only["dead_letters"].as_array().unwrap().len(), 1);
    let (_, first) = get(&admin, &format!("{list_url}&limit=1")).await;
    let cursor = first["next_cursor"].as_str().expect("a second page").to_owned();
    let (_, second) = get(&admin, &format!("{list_url}&limit=1&cursor={cursor}")).await;
    assert_eq!(second["dead_letters"][0]["id"], letters[1]["id"]);
    assert_eq!(second["next_cursor"], Value::Null);
    let (status, _) = get(&admin, &format!("{}/admin/dead-letters", t.admin)).await;
    assert_eq!(status, 400, "tenant is required");
    let (status, _) = get(&admin, &format!("{list_url}&day=yesterday")).await;
    assert_eq!(status, 400);

    // Inspect: bytes as base64, the telemetry record decoded when it is one.
    let url = |l: &Value| format!("{}/admin/dead-letters/{}", t.admin, l["id"].as_str().unwrap());
    let (status, detail) = get(&admin, &url(&garbage)).await;
    assert_eq!(status, 200);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(detail["payload_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes, b"\x01\x02 not a record");
    assert_eq!(detail["record"], Value::Null);
    let (_, detail) = get(&admin, &url(&stranger)).await;
    assert_eq!(detail["record"]["vehicle_id"], "stranger");
    assert_eq!(detail["record"]["payload"]["Soc"], 42.0);
    let (status, _) = get(&admin, &format!("{}/admin/dead-letters/not-an-id", t.admin)).await;
    assert_eq!(status, 400);

    // Without the admin token: 401.
    let (status, _) = get(&reqwest::Client::new(), &url(&stranger)).await;
    assert_eq!(status, 401);

    // Replay after provisioning: the record is applied and the letter is gone.
    t.node
        .vehicle_registry()
        .provision(&registration(
            "stranger",
            TenantId::DEFAULT,
            VehicleStatus::Active,
        ))
        .await
        .unwrap();
    let (status, replayed) = post(&admin, &format!("{}/replay", url(&stranger))).await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["deleted"], true);
    assert!(replayed["sequence_number"].is_string());
    eventually("the replayed record is applied", || async {
        t.get(&format!("{}/v1/vehicles/stranger", t.api)).await.0 == 200
    })
    .await;
    assert_eq!(get(&admin, &url(&stranger)).await.0, 404);

    // Delete.
    let deleted = admin.delete(url(&garbage)).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let again = admin.delete(url(&garbage)).send().await.unwrap();
    assert_eq!(again.status(), 404);
    let (_, empty) = get(&admin, &list_url).await;
    assert_eq!(empty["dead_letters"], json!([]));

    let (_, metrics) = t.get_text(&format!("{}/metrics", t.admin)).await;
    assert!(
        metrics.contains(r#"fleetwire_dead_letters_stored_total{reason="undecodable"}"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"fleetwire_dead_letters_replayed_total{result="stored"}"#));
    assert!(t.shutdown(Duration::from_secs(10)).await.drained);
}

#[actix_rt::test]
async fn tenant_admins_see_and_replay_only_their_own_dead_letters() {
    let mut config = test_config(None);
    config.tenancy = TenancyConfig {
        cache_ttl_secs: 0,
        ..TenancyConfig::default()
    };
    let t = TestNode::start(config).await;
    let registry = t.node.vehicle_registry();
    registry
        .provision(&registration("paused", "acme", VehicleStatus::Suspended))
        .await
        .unwrap();
    t.node
        .ports()
        .stream
        .put_records(vec![json_entry("paused", 1), json_entry("nobody", 1)])
        .await
        .unwrap();
    let acme_admin = client_with_token(&token("acme", Role::TenantAdmin), None);
    let list = format!("{}/v1/dead-letters", t.api);
    let letters = eventually_some("acme's letter listed", || async {
        let (status, body) = get(&acme_admin, &list).await;
        assert_eq!(status, 200, "{body}");
        let letters = body["dead_letters"].as_array().unwrap().clone();
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert_eq!(
        letters.len(),
        1,
        "only acme's letter, not the stranger's: {letters:?}"
    );
    let letter = &letters[0];
    assert_eq!(letter["reason"], "suspended");
    assert_eq!(letter["tenant"], "acme");
    let one = format!("{}/v1/dead-letters/{}", t.api, letter["id"].as_str().unwrap());

    // Other roles and other tenants.
    let viewer = client_with_token(&token("acme", Role::Viewer), None);
    assert_eq!(get(&viewer, &list).await.0, 403);
    assert_eq!(post(&viewer, &format!("{one}/replay")).await.0, 403);
    let other = client_with_token(&token("globex", Role::TenantAdmin), None);
    assert_eq!(
        get(&other, &one).await.0,
        404,
        "another tenant's letter does not exist for it"
    );
    assert_eq!(post(&other, &format!("{one}/replay")).await.0, 404);
    assert_eq!(get(&other, &list).await.1["dead_letters"], json!([]));
    assert_eq!(get(&acme_admin, &format!("{list}?tenant=globex")).await.0, 400);
    let (_, unknown) = get(
        &admin_client(),
        &format!("{}/admin/dead-letters?tenant=_unknown", t.admin),
    )
    .await;
    let stranger_id = unknown["dead_letters"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(get(&acme_admin, &format!("{list}/{stranger_id}")).await.0, 404);

    // The tenant admin inspects and, after resuming the vehicle, replays.
    let (status, detail) = get(&acme_admin, &one).await;
    assert_eq!(status, 200);
    assert_eq!(detail["record"]["vehicle_id"], "paused");
    registry
        .provision(&registration("paused", "acme", VehicleStatus::Active))
        .await
        .unwrap();
    let (status, replayed) = post(&acme_admin, &format!("{one}/replay")).await;
    assert_eq!(status, 200, "{replayed}");
    eventually("the replayed record is applied under acme", || async {
        let (status, _) = get(&acme_admin, &format!("{}/v1/vehicles/paused", t.api)).await;
        status == 200
    })
    .await;
    assert_eq!(get(&acme_admin, &one).await.0, 404);
    assert!(t.shutdown(Duration::from_secs(10)).await.drained);
}

#[actix_rt::test]
async fn a_large_dead_letter_is_inspected_and_replayed_whole() {
    let (t, admin) = start_uncached().await;
    // Far over the 64 KiB a DynamoDB item keeps inline, within the 1 MiB of a record.
    let mut r = record("bigcar", 1, 42.0);
    r["ingest_received_at"] = json!(Utc::now());
    r["payload"]["Note"] = json!("n".repeat(300_000));
    let data = bytes::Bytes::from(serde_json::to_vec(&r).unwrap());
    t.node
        .ports()
        .stream
        .put_records(vec![PutEntry {
            partition_key: "bigcar".into(),
            data: data.clone(),
        }])
        .await
        .unwrap();
    let list_url = format!("{}/admin/dead-letters?tenant=_unknown", t.admin);
    let letter = eventually_some("the large letter listed", || async {
        let (_, body) = get(&admin, &list_url).await;
        body["dead_letters"].as_array().unwrap().first().cloned()
    })
    .await;
    assert_eq!(letter["reason"], "unprovisioned", "{letter}");
    assert_eq!(letter["payload_bytes"], data.len());
    assert_eq!(letter["truncated"], false);
    let url = format!(
        "{}/admin/dead-letters/{}",
        t.admin,
        letter["id"].as_str().unwrap()
    );
    let (status, detail) = get(&admin, &url).await;
    assert_eq!(status, 200);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(detail["payload_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes.len(), data.len(), "nothing cut");
    // The router files the record it decoded, encoded again: the same record, keys
    // perhaps in another order.
    let back: Value = serde_json::from_slice(&bytes).expect("the whole record");
    assert!(
        back == serde_json::from_slice::<Value>(&data).unwrap(),
        "the same record"
    );
    t.node
        .vehicle_registry()
        .provision(&registration("bigcar", TenantId::DEFAULT, VehicleStatus::Active))
        .await
        .unwrap();
    let (status, replayed) = post(&admin, &format!("{url}/replay")).await;
    assert_eq!(status, 200, "replayable: {replayed}");
    eventually("the replayed record is applied", || async {
        t.get(&format!("{}/v1/vehicles/bigcar", t.api)).await.0 == 200
    })
    .await;
    assert!(t.shutdown(Duration::from_secs(10)).await.drained);
}
