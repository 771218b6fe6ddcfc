//! Black-box tests of a whole node: HTTP in, SSE and REST out, admin, restart, shutdown.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{TestNode, WAIT, eventually, record, test_config};
use serde_json::{Value, json};

#[actix_rt::test]
async fn records_flow_from_ingest_to_sse_rest_and_admin() {
    let t = TestNode::start(test_config(None)).await;
    eventually("node ready", || async {
        t.get(&format!("{}/readyz", t.admin)).await.0 == 200
    })
    .await;
    let mut sse = t.subscribe("").await;
    eventually("subscriber registered", || async {
        t.actor_count("subscriber").await == 1
    })
    .await;

    let batch = json!([
        record("car-1", 1, 80.0),
        record("car-2", 1, 70.0),
        record("car-3", 1, 60.0)
    ]);
    let (status, reply) = t.ingest(&batch).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["accepted"], 3);
    assert_eq!(reply["results"][0]["status"], "accepted");
    assert!(reply["results"][0]["sequence_number"].is_string());

    let mut seen: HashMap<String, Value> = HashMap::new();
    while seen.len() < 3 {
        let ev = tokio::time::timeout(WAIT, sse.recv())
            .await
            .expect("SSE event in time")
            .expect("stream open");
        assert_eq!(ev.event, "vehicle");
        assert!(!ev.id.is_empty(), "events carry ids");
        seen.insert(ev.data["vehicle_id"].as_str().unwrap().to_owned(), ev.data);
    }
    assert_eq!(seen["car-2"]["signals"]["Soc"]["value"], 70.0);
    assert!(seen["car-2"]["ingest_received_at"].is_string());

    // Live updates are published before the state is persisted, so the store may lag a moment.
    eventually("all three vehicles persisted", || async {
        t.get(&format!("{}/v1/vehicles", t.api)).await.1["vehicles"]
            .as_array()
            .is_some_and(|v| v.len() == 3)
    })
    .await;
    let (status, list) = t.get(&format!("{}/v1/vehicles", t.api)).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["vehicles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["vehicle_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["car-1", "car-2", "car-3"]);
    let (status, one) = t.get(&format!("{}/v1/vehicles/car-3", t.api)).await;
    assert_eq!(
        (status, one["signals"]["Soc"]["value"].as_f64()),
        (200, Some(60.0))
    );
    assert_eq!(t.get(&format!("{}/v1/vehicles/nope", t.api)).await.0, 404);

    let (_, actors) = t.get(&format!("{}/admin/actors", t.admin)).await;
    assert_eq!(actors["counts"]["vehicle_state"], 3, "{actors}");
    assert_eq!(actors["counts"]["subscriber"], 1);
    assert_eq!(actors["counts"]["lease_coordinator"], 1);
    assert_eq!(actors["counts"]["shard_consumer"], 4);
    assert_eq!(actors["counts"]["producer"], 1);
    let (_, producer) = t
        .get(&format!("{}/admin/actors/producer/producer", t.admin))
        .await;
    assert!(producer["messages_handled"].as_u64().unwrap() >= 1, "{producer}");
    assert_eq!(producer["details"]["pending_records"], 0, "{producer}");
    let (_, only) = t
        .get(&format!("{}/admin/actors?kind=vehicle_state&limit=2", t.admin))
        .await;
    assert_eq!(only["actors"].as_array().unwrap().len(), 2);
    let (status, car) = t
        .get(&format!("{}/admin/actors/vehicle_state/car-1", t.admin))
        .await;
    assert_eq!(status, 200);
    assert!(car["messages_handled"].as_u64().unwrap() >= 1, "{car}");
    assert_eq!(
        t.get(&format!("{}/admin/actors?kind=bogus", t.admin)).await.0,
        400
    );

    let metrics = t
        .get_request(&format!("{}/metrics", t.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "fleetwire_ingest_records_total",
        "fleetwire_route_records_total",
        "fleetwire_persist_writes_total",
        "fleetwire_publish_updates_total",
        "fleetwire_sse_events_sent_total",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }

    drop(sse);
    eventually("subscriber gone after the client left", || async {
        t.actor_count("subscriber").await == 0
    })
    .await;
    let report = t.shutdown(Duration::from_secs(10)).await;
    assert!(report.drained);
}

#[actix_rt::test]
async fn bad_input_gets_a_clear_error_and_loses_nothing_else() {
    let mut config = test_config(None);
    config.http.max_body_bytes = 4096;
    config.http.max_batch_records = 5;
    let t = TestNode::start(config).await;

    let (status, body) = t.ingest_raw(b"{not json".to_vec()).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "malformed_batch");
    assert_eq!(t.ingest(&json!([])).await.0, 400);
    let (status, body) = t
        .ingest(&json!((0..6).map(|i| record("v", i, 1.0)).collect::<Vec<_>>()))
        .await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("at most 5"));
    let (status, body) = t.ingest_raw(vec![b' '; 5000]).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "payload_too_large");

    // One bad record does not take the good ones down with it.
    let mixed =
        json!([record("good-1", 1, 50.0), {"vehicle_id": "bad", "payload": {}}, record("good-2", 1, 40.0)]);
    let (status, reply) = t.ingest(&mixed).await;
    assert_eq!(status, 200);
    assert_eq!(
        (reply["accepted"].as_u64(), reply["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(reply["results"][1]["status"], "rejected");
    assert!(
        reply["results"][1]["error"]
            .as_str()
            .unwrap()
            .contains("record 1")
    );
    eventually("good records processed", || async {
        t.get(&format!("{}/v1/vehicles/good-2", t.api)).await.0 == 200
    })
    .await;

    let (status, body) = t.get(&format!("{}/v1/stream?vehicles=a,,b", t.api)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_filter"))
    );
    let (status, body) = t.get(&format!("{}/nowhere", t.api)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    assert_eq!(t.get(&format!("{}/v1/vehicles?limit=0", t.api)).await.0, 400);
    t.shutdown(Duration::from_secs(10)).await;
}

#[actix_rt::test]
async fn sse_filter_only_sends_the_chosen_vehicles() {
    let t = TestNode::start(test_config(None)).await;
    let mut sse = t.subscribe("?vehicles=pick-me").await;
    eventually("subscriber registered", || async {
        t.actor_count("subscriber").await == 1
    })
    .await;
    let (status, _) = t
        .ingest(&json!([
            record("skip-me", 1, 1.0),
            record("pick-me", 1, 2.0),
            record("skip-me", 2, 3.0)
        ]))
        .await;
    assert_eq!(status, 200);
    let ev = tokio::time::timeout(WAIT, sse.recv()).await.unwrap().unwrap();
    assert_eq!(ev.data["vehicle_id"], "pick-me");
    // Give the other updates time to (not) arrive.
    eventually("skip-me processed", || async {
        t.get(&format!("{}/v1/vehicles/skip-me", t.api)).await.1["version"] == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        sse.try_recv().is_err(),
        "no event for a vehicle outside the filter"
    );
    t.shutdown(Duration::from_secs(10)).await;
}

#[actix_rt::test]
async fn state_survives_a_restart_and_replays_do_not_double_apply() {
    let dir = tempfile::tempdir().unwrap();
    let batch: Vec<Value> = (0..20)
        .flat_map(|s| (0..10).map(move |v| record(&format!("veh-{v}"), s, 100.0 - s as f64)))
        .collect();

    let first = TestNode::start(test_config(Some(dir.path().to_owned()))).await;
    let (status, reply) = first.ingest(&json!(batch[..100])).await;
    assert_eq!((status, reply["accepted"].as_u64()), (200, Some(100)));
    let (status, reply) = first.ingest(&json!(batch[100..])).await;
    assert_eq!((status, reply["accepted"].as_u64()), (200, Some(100)));
    // Shut down right away: the drain must process everything acknowledged.
    let report = first.shutdown(Duration::from_secs(20)).await;
    assert!(
        report.drained,
        "every acknowledged record was processed before exit"
    );

    let second = TestNode::start(test_config(Some(dir.path().to_owned()))).await;
    let (_, list) = second.get(&format!("{}/v1/vehicles?limit=100", second.api)).await;
    let vehicles = list["vehicles"].as_array().unwrap();
    assert_eq!(vehicles.len(), 10);
    for v in vehicles {
        assert_eq!(
            v["version"], 20,
            "each of the 20 records applied exactly once: {v}"
        );
        assert_eq!(v["signals"]["Soc"]["value"], 81.0);
    }
    // The same records again (a client retry): acknowledged, but no double-apply.
    let (status, _) = second.ingest(&json!(batch[..50])).await;
    assert_eq!(status, 200);
    assert!(second.shutdown(Duration::from_secs(20)).await.drained);

    let third = TestNode::start(test_config(Some(dir.path().to_owned()))).await;
    let (_, v0) = third.get(&format!("{}/v1/vehicles/veh-0", third.api)).await;
    assert_eq!(
        v0["version"], 20,
        "replayed records were recognised as duplicates: {v0}"
    );
    third.shutdown(Duration::from_secs(10)).await;
}

#[actix_rt::test]
async fn a_full_stream_answers_503_with_retry_after_and_loses_nothing_accepted() {
    let mut config = test_config(None);
    config.embedded.stream.shards = 1;
    config.embedded.stream.max_bytes_per_shard = 4096;
    // Memory is only freed by retention (an hour), so the shard stays full for the test.
    let t = TestNode::start(config).await;
    let batch: Vec<Value> = (0..60).map(|i| record(&format!("v{i}"), 1, 50.0)).collect();
    let r = t
        .client
        .post(format!("{}/v1/ingest", t.api))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let reply: Value = r.json().await.unwrap();
    let (accepted, failed) = (
        reply["accepted"].as_u64().unwrap(),
        reply["failed"].as_u64().unwrap(),
    );
    assert!(accepted > 0 && failed > 0, "{reply}");
    assert_eq!(accepted + failed, 60);
    let failed_result = reply["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == "failed")
        .unwrap();
    assert_eq!(failed_result["retryable"], true);
    // Every accepted record is processed.
    let accepted_ids: Vec<String> = reply["results"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&batch)
        .filter(|(r, _)| r["status"] == "accepted")
        .map(|(_, rec)| rec["vehicle_id"].as_str().unwrap().to_owned())
        .collect();
    for id in &accepted_ids {
        eventually("accepted record processed", || async {
            t.get(&format!("{}/v1/vehicles/{id}", t.api)).await.0 == 200
        })
        .await;
    }
    assert!(t.shutdown(Duration::from_secs(10)).await.drained);
}

#[actix_rt::test]
async fn a_port_in_use_is_a_clean_start_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = common::test_config(None);
    config.http.listen = taken.local_addr().unwrap();
    let error = match fleetwire::node::Node::start(config).await {
        Ok(_) => panic!("a node cannot start on a port in use"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("binding the public listener"), "{error}");
}
