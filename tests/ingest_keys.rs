//! Ingest API keys, black-box: created once-visible by a tenant admin, listed and revoked
//! per tenant, required by `POST /v1/ingest` (a user token is not enough), refused once
//! revoked, limited per key (429 + Retry-After), and a key of tenant A cannot write a
//! vehicle registered to tenant B.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::auth::{tenant, token};
use common::{TestNode, create_api_key, eventually, record, test_config};
use fleetwire::auth::Role;
use fleetwire_actors::model::VehicleId;
use fleetwire_actors::ports::{Registration, VehicleStatus};
use serde_json::{Value, json};

async fn ingest_with(
    t: &TestNode,
    headers: &[(&str, String)],
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/v1/ingest", t.api))
        .json(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.json().await.unwrap_or(Value::Null))
}

#[actix_rt::test]
async fn keys_are_shown_once_listed_per_tenant_and_revocable() {
    let t = TestNode::start(test_config(None)).await;
    let admin_a = token("tenant-a", Role::TenantAdmin);
    let key = create_api_key(&t.api, &admin_a, "gateway 1").await;
    assert!(key.starts_with("fwk_"));

    let list = |who: String| {
        let url = format!("{}/v1/api-keys", t.api);
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .bearer_auth(who)
                .send()
                .await
                .unwrap();
            r.json::<Value>().await.unwrap()
        }
    };
    let listed = list(admin_a.clone()).await;
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{listed}");
    assert_eq!(keys[0]["name"], "gateway 1");
    assert!(keys[0]["revoked_at"].is_null());
    assert!(
        !listed.to_string().contains(&key[17..]),
        "a listing never shows the key"
    );
    let key_id = keys[0]["key_id"].as_str().unwrap().to_owned();
    // Another tenant neither sees nor revokes it.
    assert_eq!(
        list(token("tenant-b", Role::TenantAdmin)).await["keys"],
        json!([])
    );
    let delete = |who: String| {
        let url = format!("{}/v1/api-keys/{key_id}", t.api);
        async move {
            reqwest::Client::new()
                .delete(url)
                .bearer_auth(who)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(delete(token("tenant-b", Role::TenantAdmin)).await, 404);

    // The key works until it is revoked; revocation on this node is immediate.
    let (status, _, body) = ingest_with(
        &t,
        &[("x-api-key", key.clone())],
        &json!([record("car-a", 1, 1.0)]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["rejected"], 1,
        "car-a is not provisioned to tenant-a: {body}"
    );
    assert_eq!(delete(admin_a.clone()).await, 204);
    let (status, headers, body) = ingest_with(
        &t,
        &[("authorization", format!("Bearer {key}"))],
        &json!([record("car-a", 1, 1.0)]),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(headers.contains_key("www-authenticate"));
    assert_eq!(body["error"]["code"], "invalid_token", "{body}");
    let listed = list(admin_a).await;
    assert!(
        listed["keys"][0]["revoked_at"].is_string(),
        "revoked keys stay listed: {listed}"
    );

    // Bad names are refused.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/api-keys", t.api))
        .bearer_auth(token("tenant-a", Role::TenantAdmin))
        .json(&json!({"name": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    t.shutdown(Duration::from_secs(10)).await;
}

#[actix_rt::test]
async fn ingest_needs_a_key_not_a_user_token() {
    let t = TestNode::start(test_config(None)).await;
    let batch = json!([record("car-1", 1, 1.0)]);
    for (why, headers) in [
        ("nothing", vec![]),
        (
            "a tenant admin's JWT",
            vec![(
                "authorization",
                format!("Bearer {}", token("default", Role::TenantAdmin)),
            )],
        ),
        (
            "an unknown key",
            vec![("x-api-key", "fwk_000000000000_nope".to_owned())],
        ),
        ("not a key", vec![("x-api-key", "hello".to_owned())]),
    ] {
        let (status, headers, body) = ingest_with(&t, &headers, &batch).await;
        assert_eq!(status, 401, "{why}: {body}");
        assert!(headers.contains_key("www-authenticate"), "{why}");
        assert!(
            body["error"]["message"].as_str().unwrap().len() > 5,
            "{why}: {body}"
        );
    }
    t.shutdown(Duration::from_secs(10)).await;
}

#[actix_rt::test]
async fn a_key_over_its_rate_limit_gets_429_with_retry_after() {
    let mut config = test_config(None);
    config.auth.ingest_requests_per_sec = 1;
    config.auth.ingest_burst = 3;
    let t = TestNode::start(config).await;
    let key = create_api_key(&t.api, &token("default", Role::TenantAdmin), "limited").await;
    let other_key = create_api_key(&t.api, &token("default", Role::TenantAdmin), "other").await;
    let batch = json!([record("car-1", 1, 1.0)]);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let (status, headers, body) = ingest_with(&t, &[("x-api-key", key.clone())], &batch).await;
        if status == 429 {
            let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=2).contains(&retry), "{retry}");
            assert_eq!(body["error"]["code"], "rate_limited", "{body}");
        }
        statuses.push(status);
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "the burst passes: {statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    // The limit is per key.
    assert_eq!(ingest_with(&t, &[("x-api-key", other_key)], &batch).await.0, 200);
    // And refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(ingest_with(&t, &[("x-api-key", key)], &batch).await.0, 200);
    t.shutdown(Duration::from_secs(10)).await;
}

#[actix_rt::test]
async fn a_key_of_tenant_a_cannot_write_a_vehicle_of_tenant_b() {
    let t = TestNode::start(test_config(None)).await;
    let registry = t.node.vehicle_registry();
    for (vehicle, owner) in [("car-of-a", "tenant-a"), ("car-of-b", "tenant-b")] {
        registry
            .provision(&Registration {
                vehicle_id: VehicleId::parse(vehicle).unwrap(),
                tenant: tenant(owner),
                display_name: None,
                status: VehicleStatus::Active,
                provisioned_at: Utc::now(),
            })
            .await
            .unwrap();
    }
    let key_a = create_api_key(&t.api, &token("tenant-a", Role::TenantAdmin), "a").await;
    let batch = json!([
        record("car-of-a", 1, 1.0),
        record("car-of-b", 1, 2.0),
        record("car-nobody", 1, 3.0)
    ]);
    let (status, _, body) = ingest_with(&t, &[("x-api-key", key_a)], &batch).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["status"], "accepted", "{body}");
    for i in [1, 2] {
        assert_eq!(body["results"][i]["status"], "rejected", "{body}");
        assert!(
            body["results"][i]["error"]
                .as_str()
                .unwrap()
                .contains("not provisioned to this tenant"),
            "{body}"
        );
    }
    // The default tenant's key (the test node's) may still write unregistered vehicles,
    // but not tenant B's.
    let (status, body) = t
        .ingest(&json!([record("car-of-b", 2, 1.0), record("car-free", 1, 1.0)]))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["results"][0]["status"], "rejected", "{body}");
    assert_eq!(body["results"][1]["status"], "accepted", "{body}");
    eventually("car-free is stored", || async {
        t.get(&format!("{}/v1/vehicles/car-free", t.api)).await.0 == 200
    })
    .await;
    t.shutdown(Duration::from_secs(10)).await;
}
