//! `GET /v1/stream` of a whole node on the embedded backends, over HTTP: `Last-Event-ID`
//! resume, `reset` for ids the log cannot cover, filters (`vehicles=`, `signals=`,
//! `types=`), the per-tenant and per-node connection limits (429 / 503), and streams over
//! HTTP/2 without TLS (`http.h2c`).

mod common;

use std::time::Duration;

use common::{SseEvent, TestNode, WAIT, eventually, id_key, next_event, record, test_config};
use serde_json::{Value, json};
use tokio::sync::mpsc::Receiver;

async fn ready_node(config: fleetwire::config::Config) -> TestNode {
    let t = TestNode::start(config).await;
    eventually("node ready", || async {
        t.get(&format!("{}/readyz", t.admin)).await.0 == 200
    })
    .await;
    t
}

/// Reads `n` vehicle events; asserts ids keep increasing.
async fn read_vehicles(rx: &mut Receiver<SseEvent>, n: usize) -> Vec<SseEvent> {
    let mut out: Vec<SseEvent> = Vec::new();
    while out.len() < n {
        let ev = next_event(rx).await;
        assert_eq!(ev.event, "vehicle", "unexpected {ev:?}");
        if let Some(previous) = out.last() {
            assert!(
                id_key(&previous.id) < id_key(&ev.id),
                "ids increase: {} then {}",
                previous.id,
                ev.id
            );
        }
        out.push(ev);
    }
    out
}

/// Reads vehicle events until each of `cars` was seen at `version`.
async fn read_until_version(rx: &mut Receiver<SseEvent>, cars: &[&str], version: u64) -> Vec<SseEvent> {
    let mut out = Vec::new();
    let mut latest = std::collections::HashMap::new();
    while !cars.iter().all(|c| latest.get(*c) == Some(&version)) {
        let ev = read_vehicles(rx, 1).await.remove(0);
        latest.insert(
            ev.data["vehicle_id"].as_str().unwrap().to_owned(),
            ev.data["version"].as_u64().unwrap(),
        );
        out.push(ev);
    }
    out
}

fn batch(vehicles: &[&str], second: u32) -> Value {
    json!(
        vehicles
            .iter()
            .map(|v| record(v, second, 50.0 + second as f64))
            .collect::<Vec<_>>()
    )
}

#[actix_rt::test]
async fn a_reconnecting_client_gets_exactly_what_it_missed() {
    let t = ready_node(test_config(None)).await;
    let cars = ["r-1", "r-2", "r-3"];
    let mut control = t.subscribe("").await;
    let mut first = t.subscribe("").await;
    eventually("subscribers registered", || async {
        t.actor_count("subscriber").await == 2
    })
    .await;
    assert_eq!(t.ingest(&batch(&cars, 1)).await.0, 200);
    let seen = read_until_version(&mut first, &cars, 1).await;
    let last = seen.last().unwrap().id.clone();
    drop(first);
    eventually("the first connection is gone", || async {
        t.actor_count("subscriber").await == 1
    })
    .await;

    // Missed while away (the consumer may apply both batches at once: one update per car).
    assert_eq!(t.ingest(&batch(&cars, 2)).await.0, 200);
    assert_eq!(t.ingest(&batch(&cars, 3)).await.0, 200);
    let truth = read_until_version(&mut control, &cars, 3).await;
    let missed: Vec<&SseEvent> = truth.iter().filter(|e| id_key(&e.id) > id_key(&last)).collect();
    assert!(missed.len() >= 3, "{missed:?}");

    let mut again = t.subscribe_after("", Some(&last)).await;
    let resumed = read_vehicles(&mut again, missed.len()).await;
    let pairs = |events: &[&SseEvent]| -> Vec<(String, Value)> {
        events
            .iter()
            .map(|e| (e.id.clone(), e.data["version"].clone()))
            .collect()
    };
    assert_eq!(
        pairs(&resumed.iter().collect::<Vec<_>>()),
        pairs(&missed),
        "exactly the missed updates, in order"
    );
    assert_eq!(t.ingest(&batch(&cars, 4)).await.0, 200);
    let live = read_vehicles(&mut again, 3).await;
    assert!(
        id_key(&live[0].id) > id_key(&resumed.last().unwrap().id),
        "then live, without repeats"
    );
    let (_, subs) = t.get(&format!("{}/admin/actors?kind=subscriber", t.admin)).await;
    let resumed_entry = subs["actors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["details"]["resumed_after"] == last.as_str())
        .unwrap_or_else(|| panic!("the resumed subscriber is listed: {subs}"));
    for key in [
        "tenant",
        "filter",
        "connected_at",
        "events_sent",
        "queue_depth",
        "dropped",
    ] {
        assert!(
            !resumed_entry["details"][key].is_null(),
            "{key} in {resumed_entry}"
        );
    }
    drop((again, control));
    t.shutdown(Duration::from_secs(10)).await;
}

#[actix_rt::test]
async fn ids_that_cannot_be_resumed_get_a_reset_or_a_400() {
    let mut config = test_config(None);
    config.embedded.replay_max_events = 5;
    let t = ready_node(config).await;
    let mut control = t.subscribe("").await;
    eventually("subscriber registered", || async {
        t.actor_count("subscriber").await == 1
    })
    .await;
    let cars: Vec<String> = (0..12).map(|i| format!("old-{i}")).collect();
    let names: Vec<&str> = cars.iter().map(String::as_str).collect();
    assert_eq!(t.ingest(&batch(&names, 1)).await.0, 200);
    let events = read_vehicles(&mut control, 12).await;

    for (last_event_id, reason) in [
        (events[0].id.as_str(), "too_old"),
        ("99999999999999-0", "unknown_id"),
        ("42", "invalid_id"),
    ] {
        let mut rx = t.subscribe_after("", Some(last_event_id)).await;
        let reset = next_event(&mut rx).await;
        assert_eq!(
            (reset.event.as_str(), &reset.data["reason"]),
            ("reset", &json!(reason)),
            "{last_event_id}"
        );
    }
    let (status, body) = t.get(&format!("{}/v1/stream?last_event_id=nope", t.api)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_last_event_id")),
        "{body}"
    );
    let (_, metrics) = t.get_text(&format!("{}/metrics", t.admin)).await;
    assert!(
        metrics.contains("fleetwire_sse_resumes_total{result=\"too_old\"}"),
        "{metrics}"
    );
    drop(control);
    t.shutdown(Duration::from_secs(10)).await;
}

#[actix_rt::test]
async fn signal_and_type_filters() {
    let t = ready_node(test_config(None)).await;
    let mut gear = t.subscribe("?signals=Gear,Soc&types=vehicle").await;
    let mut only_gear = t.subscribe("?signals=Gear").await;
    eventually("subscribers registered", || async {
        t.actor_count("subscriber").await == 2
    })
    .await;
    let soc_only =
        json!([{"timestamp": "2026-01-01T00:00:01Z", "vehicle_id": "f-1", "payload": {"Soc": 70.0}}]);
    let gear_too = json!([{"timestamp": "2026-01-01T00:00:02Z", "vehicle_id": "f-1",
        "payload": {"Gear": "D", "VehicleSpeed": 10.0}}]);
    assert_eq!(t.ingest(&soc_only).await.0, 200);
    let ev = next_event(&mut gear).await;
    assert_eq!(ev.data["changed"], json!(["Soc"]));
    assert_eq!(t.ingest(&gear_too).await.0, 200);
    let ev = next_event(&mut gear).await;
    assert_eq!(
        ev.data["changed"],
        json!(["Gear"]),
        "trimmed to the listed signals"
    );
    let names: Vec<&String> = ev.data["signals"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["Gear", "Soc"], "only the listed signals");
    let ev = next_event(&mut only_gear).await;
    assert_eq!(
        ev.data["changed"],
        json!(["Gear"]),
        "the Soc-only update did not reach a Gear-only stream"
    );

    for query in ["types=alert", "signals=a,,b", "vehicles=a b", "color=red"] {
        let (status, body) = t.get(&format!("{}/v1/stream?{query}", t.api)).await;
        assert_eq!(status, 400, "{query}: {body}");
        let code = body["error"]["code"].as_str().unwrap();
        assert!(["bad_filter", "bad_query"].contains(&code), "{query}: {body}");
    }
    drop((gear, only_gear));
    t.shutdown(Duration::from_secs(10)).await;
}

#[actix_rt::test]
async fn connection_limits_answer_429_and_503() {
    for (per_node, per_tenant, status, code) in [
        (10, 2, 429, "tenant_stream_limit"),
        (2, 10, 503, "node_stream_limit"),
    ] {
        let mut config = test_config(None);
        config.subscribers.max_connections_per_node = per_node;
        config.subscribers.max_connections_per_tenant = per_tenant;
        config.subscribers.limit_retry_after_secs = 7;
        let t = ready_node(config).await;
        let open = (t.subscribe("").await, t.subscribe("").await);
        let response = t.client.get(format!("{}/v1/stream", t.api)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(response.headers()["retry-after"], "7");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains('2'), "{body}");

        // A closed stream frees its place.
        drop(open.0);
        eventually("a place is free again", || async {
            let r = reqwest::Client::new()
                .get(format!("{}/v1/stream", t.api))
                .bearer_auth(common::auth::default_admin_token())
                .send()
                .await
                .unwrap();
            r.status() == 200
        })
        .await;
        let (_, metrics) = t.get_text(&format!("{}/metrics", t.admin)).await;
        let reason = if status == 429 {
            "tenant_limit"
        } else {
            "node_limit"
        };
        assert!(
            metrics.contains(&format!("fleetwire_sse_rejected_total{{reason=\"{reason}\"}}")),
            "{metrics}"
        );
        drop(open.1);
        tokio::time::timeout(WAIT, t.shutdown(Duration::from_secs(10)))
            .await
            .expect("shutdown in time");
    }
}

fn http2_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[actix_rt::test]
async fn with_h2c_streams_run_over_http2_next_to_http1() {
    let mut config = test_config(None);
    config.http.h2c = true;
    let t = ready_node(config).await;
    let h2 = http2_client();
    let plain = h2
        .get(format!("{}/v1/vehicles", t.api))
        .bearer_auth(common::auth::default_admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(plain.version(), reqwest::Version::HTTP_2);
    assert_eq!(plain.status(), 200);
    // Two streams on the client's one connection, each its own subscriber.
    let mut all = t.subscribe_with(&h2, "", None).await;
    let mut one = t.subscribe_with(&h2, "?vehicles=h2-1", None).await;
    eventually("both subscribers registered", || async {
        t.actor_count("subscriber").await == 2
    })
    .await;
    assert_eq!(t.ingest(&batch(&["h2-1", "h2-2"], 1)).await.0, 200);
    let seen = read_until_version(&mut all, &["h2-1", "h2-2"], 1).await;
    assert_eq!(seen.len(), 2);
    let mine = read_vehicles(&mut one, 1).await;
    assert_eq!(mine[0].data["vehicle_id"], "h2-1");
    // HTTP/1.1 on the same listener, as before.
    assert_eq!(t.get(&format!("{}/v1/vehicles", t.api)).await.0, 200);
}

#[actix_rt::test]
async fn without_h2c_the_listener_speaks_only_http1() {
    let t = ready_node(test_config(None)).await;
    let answer = http2_client()
        .get(format!("{}/v1/vehicles", t.api))
        .bearer_auth(common::auth::default_admin_token())
        .send()
        .await;
    assert!(
        answer.as_ref().is_err()
            || answer
                .as_ref()
                .is_ok_and(|r| r.version() != reqwest::Version::HTTP_2),
        "HTTP/2 prior knowledge was served: {answer:?}"
    );
    assert_eq!(t.get(&format!("{}/v1/vehicles", t.api)).await.0, 200);
}
