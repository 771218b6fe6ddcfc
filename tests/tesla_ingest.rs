//! The vehicle listener end to end: real TLS WebSockets with client certificates from a
//! development PKI, every frame of `shared/fixtures/tesla`, the records on the stream,
//! the state through the API, and the connection rules (identity, replacement,
//! reliable acks, refusals).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::tesla::{TeslaNode, cases, frame, json_close, records_for, tesla_config};
use common::{WAIT, eventually, eventually_some};
use fleetwire_actors::tesla::{self, Topic};
use fleetwire_loadtest::pki::DevPki;
use fleetwire_loadtest::tesla::VehicleClient;
use serde_json::{Value, json};

/// What a reply envelope looks like in `cases.json`.
fn reply_json(e: &tesla::Envelope) -> Value {
    json!({
        "txid": String::from_utf8_lossy(&e.txid),
        "topic": String::from_utf8_lossy(&e.topic),
        "message_type": e.message_type,
        "message_id": String::from_utf8_lossy(&e.message_id),
    })
}

/// A short good frame, to prove a connection still works after a bad one.
fn probe_frame(client: &VehicleClient) -> (Vec<u8>, Vec<u8>) {
    let mut signals = std::collections::BTreeMap::new();
    signals.insert(
        "VehicleSpeed".to_owned(),
        fleetwire_actors::model::SignalValue::Float(12.5),
    );
    client.vehicle_data_frame(chrono::Utc::now(), &signals).unwrap()
}

fn stream_of(node: &TeslaNode, topic: Topic) -> Arc<dyn fleetwire_actors::ports::RecordStream> {
    let ports = node.node.node.ports();
    match topic {
        Topic::V => ports.stream.clone(),
        other => ports.topic_streams[&other].clone(),
    }
}

async fn start(dir: &tempfile::TempDir) -> TeslaNode {
    let pki = DevPki::load_or_create(dir.path()).unwrap();
    let config = tesla_config(&pki);
    TeslaNode::start(pki, config).await
}

#[actix_rt::test]
async fn every_fixture_case_is_answered_and_stored_like_teslas_server() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    for case in cases() {
        let file = case["file"].as_str().unwrap();
        let vin = case["device_vin"].as_str().unwrap();
        let vehicle_id = node.vehicle_id(vin);
        let mut client = node.vehicle(vin).await;
        // The same VIN appears in several cases: compare counts, not presence.
        let mut before = Vec::new();
        for topic in [Topic::V, Topic::Alerts, Topic::Errors] {
            before.push(records_for(&stream_of(&node, topic), &vehicle_id).await.len());
        }
        client.send(frame(file)).await.unwrap();
        if case["kind"] == "data" {
            let reply = tokio::time::timeout(WAIT, client.reply()).await.unwrap().unwrap();
            assert_eq!(reply_json(&reply), case["expect_ack"], "{file}: ack");
            let topic = Topic::from_wire(case["topic"].as_str().unwrap().as_bytes()).unwrap();
            let stream = stream_of(&node, topic);
            let records = records_for(&stream, &vehicle_id).await;
            // Connectivity frames sent by a vehicle come after the server's own
            // CONNECTED record of this connection: take the last record.
            let record = records
                .last()
                .unwrap_or_else(|| panic!("{file}: no record on the stream"));
            let mut expected = case["expect_record"].clone();
            expected["vin"] = json!(vehicle_id);
            let got = tesla::payload_to_json(topic, &record.data).unwrap();
            assert!(
                json_close(&got, &expected),
                "{file}: record\n got {got}\nwant {expected}"
            );
        } else {
            for (i, want) in case["expect_response"].as_array().unwrap().iter().enumerate() {
                // The reference server sends some acks twice; once is compatible.
                if i > 0 && want == &case["expect_response"][i - 1] {
                    continue;
                }
                let reply = tokio::time::timeout(WAIT, client.reply()).await.unwrap().unwrap();
                let mut got = reply_json(&reply);
                if reply.message_type == 4 {
                    let payload = reply
                        .stream
                        .as_ref()
                        .map(|s| s.payload.clone())
                        .unwrap_or_default();
                    got = json!({"txid": got["txid"], "topic": got["topic"], "message_type": 4,
                                 "payload": String::from_utf8_lossy(&payload)});
                }
                assert!(
                    want.as_object().unwrap().iter().all(|(k, v)| &got[k] == v),
                    "{file}: reply {i}\n got {got}\nwant {want}"
                );
            }
            for (topic, before) in [Topic::V, Topic::Alerts, Topic::Errors].into_iter().zip(before) {
                assert_eq!(
                    records_for(&stream_of(&node, topic), &vehicle_id).await.len(),
                    before,
                    "{file}: a bad frame reached the {} stream",
                    topic.as_str()
                );
            }
        }
        // The connection keeps working after any frame.
        let (txid, probe) = probe_frame(&client);
        client.send(probe).await.unwrap();
        let reply = tokio::time::timeout(WAIT, client.reply()).await.unwrap().unwrap();
        assert_eq!((reply.message_type, reply.txid), (5, txid), "{file}: probe acked");
        client.close().await;
    }
    node.node.shutdown(WAIT).await;
}

#[actix_rt::test]
async fn vehicle_data_reaches_the_api_under_the_pseudonym_only() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    let case = cases()
        .into_iter()
        .find(|c| c["file"] == "07_v_location_values.bin")
        .unwrap();
    let vin = case["device_vin"].as_str().unwrap();
    let mut client = node.vehicle(vin).await;
    client.send(frame("07_v_location_values.bin")).await.unwrap();
    client.reply().await.unwrap();
    let url = format!("{}/v1/vehicles/{}", node.node.api, node.vehicle_id(vin));
    let body = eventually_some("the vehicle's state", || async {
        let (status, body) = node.node.get(&url).await;
        (status == 200).then_some(body)
    })
    .await;
    let location = &body["signals"]["Location"]["value"];
    let want = &case["expect"]["data"][0]["value"]["locationValue"];
    assert!(json_close(location, want), "location {location} vs {want}");
    let (_, all) = node.node.get(&format!("{}/v1/vehicles", node.node.api)).await;
    assert!(
        !all.to_string().contains(vin),
        "the clear VIN never leaves the listener"
    );
    let (_, actors) = node
        .node
        .get(&format!(
            "{}/admin/actors?kind=vehicle_connection",
            node.node.admin
        ))
        .await;
    assert!(!actors.to_string().contains(vin));
    assert_eq!(actors["actors"][0]["id"], json!(node.vehicle_id(vin)));
    node.node.shutdown(WAIT).await;
}

#[actix_rt::test]
async fn a_new_connection_replaces_the_old_one_and_both_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    let vin = "5YJ3E1EA7RF000001";
    let mut first = node.vehicle(vin).await;
    eventually("one connection", || async {
        node.node.actor_count("vehicle_connection").await == 1
    })
    .await;
    let _second = node.vehicle(vin).await;
    let closed = tokio::time::timeout(WAIT, first.reply()).await.unwrap();
    assert!(
        closed.unwrap_err().to_string().contains("closed"),
        "the old connection is closed"
    );
    assert_eq!(node.node.actor_count("vehicle_connection").await, 1);
    let connectivity = stream_of(&node, Topic::Connectivity);
    // (status, connection id) of each record; the two puts of the replaced and the new
    // connection race, so compare as sets.
    let mut records = eventually_some("three connectivity records", || async {
        let records = records_for(&connectivity, &node.vehicle_id(vin)).await;
        let parsed: Vec<(String, String)> = records
            .iter()
            .map(|r| {
                let json = tesla::payload_to_json(Topic::Connectivity, &r.data).unwrap();
                (
                    json["status"].as_str().unwrap().to_owned(),
                    json["connectionId"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        (parsed.len() >= 3).then_some(parsed)
    })
    .await;
    records.sort();
    let [(c1, id1), (c2, id2), (d, closed_id)] = <[_; 3]>::try_from(records).unwrap();
    assert_eq!(
        (c1.as_str(), c2.as_str(), d.as_str()),
        ("CONNECTED", "CONNECTED", "DISCONNECTED")
    );
    assert_ne!(id1, id2, "two connections");
    assert!(
        closed_id == id1 || closed_id == id2,
        "the disconnect belongs to one of them"
    );
    drop(connectivity); // the node closes its backends only when it holds the last handle
    node.node.shutdown(WAIT).await;
}

#[actix_rt::test]
async fn certificates_from_an_unknown_ca_or_none_are_refused_at_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    // Our CA and Tesla's compiled-in bundle together: ours still works, strangers do not.
    let pki = DevPki::load_or_create(dir.path()).unwrap();
    let mut config = tesla_config(&pki);
    config.tesla.trust_tesla_vehicle_ca = true;
    let node = TeslaNode::start(pki, config).await;
    drop(node.vehicle("5YJ3E1EA7RF000001").await);
    // Clients that trust our server certificate, so only the server's check is exercised.
    let client_config = |identity: Option<fleetwire_loadtest::pki::VehicleIdentity>| {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(node.pki.ca_cert().clone()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        Arc::new(match identity {
            Some(id) => builder.with_client_auth_cert(id.chain, id.key).unwrap(),
            None => builder.with_no_client_auth(),
        })
    };
    let stranger = DevPki::load_or_create(&dir.path().join("other-ca")).unwrap();
    let foreign = client_config(Some(stranger.vehicle_identity("5YJ3E1EA7RF000002").unwrap()));
    assert!(
        VehicleClient::connect(&node.target, foreign, "x").await.is_err(),
        "unknown CA refused"
    );
    let anonymous = client_config(None);
    assert!(
        VehicleClient::connect(&node.target, anonymous, "x")
            .await
            .is_err(),
        "no certificate refused"
    );
    let metrics = node
        .node
        .get_request(&format!("{}/metrics", node.node.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for result in ["bad_certificate", "no_client_certificate"] {
        let line = format!(r#"fleetwire_tesla_handshakes_total{{result="{result}"}}"#);
        assert!(metrics.contains(&line), "{line} missing in\n{metrics}");
    }
    assert_eq!(node.node.actor_count("vehicle_connection").await, 0);
    node.node.shutdown(WAIT).await;
}

#[actix_rt::test]
async fn with_only_teslas_bundle_a_vehicle_of_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::load_or_create(dir.path()).unwrap();
    let mut config = tesla_config(&pki);
    config.tesla.client_ca_files.clear();
    config.tesla.trust_tesla_vehicle_ca = true;
    let node = TeslaNode::start(pki, config).await;
    let tls = node.pki.vehicle_client_config("5YJ3E1EA7RF000001").unwrap();
    assert!(
        VehicleClient::connect(&node.target, tls, "x").await.is_err(),
        "a development-CA vehicle is not trusted by Tesla's bundle"
    );
    node.node.shutdown(WAIT).await;
}

#[actix_rt::test]
async fn reliable_topics_are_acked_only_once_stored_others_after_the_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::load_or_create(dir.path()).unwrap();
    let mut config = tesla_config(&pki);
    // A stream that refuses everything (over its memory budget from the first byte).
    config.embedded.stream.max_bytes_per_shard = 1;
    config.tesla.connection.topics = vec![Topic::V, Topic::Alerts];
    config.tesla.connection.reliable_ack_topics = vec![Topic::V];
    let node = TeslaNode::start(pki, config).await;
    let mut client = node.vehicle("5YJ3E1EA7RF000003").await;
    client.send(frame("26_alerts_active.bin")).await.unwrap();
    let reply = tokio::time::timeout(WAIT, client.reply()).await.unwrap().unwrap();
    assert_eq!(
        (reply.message_type, reply.topic.as_slice()),
        (5, b"alerts".as_slice()),
        "alerts: acked anyway"
    );
    let (txid, probe) = probe_frame(&client);
    client.send(probe).await.unwrap();
    let no_ack = tokio::time::timeout(Duration::from_millis(1500), client.reply()).await;
    assert!(
        no_ack.is_err(),
        "a V frame the stream refused is never acked (txid {txid:?})"
    );
    node.node.shutdown(WAIT).await;
}

#[actix_rt::test]
async fn shutdown_closes_vehicle_connections_and_drains_their_records() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    let mut client = node.vehicle("5YJ3E1EA7RF000004").await;
    let (txid, probe) = probe_frame(&client);
    client.send(probe).await.unwrap();
    assert_eq!(client.reply().await.unwrap().txid, txid);
    let report = node.node.shutdown(WAIT).await;
    assert!(
        report.drained,
        "the acked frame was processed before the node stopped"
    );
    let closed = tokio::time::timeout(WAIT, client.reply()).await.unwrap();
    assert!(closed.is_err(), "the vehicle was disconnected");
}

#[test]
fn the_decode_tool_prints_frames_and_refuses_bad_ones() {
    let bin = env!("CARGO_BIN_EXE_fleetwire");
    let dir = common::tesla::fixtures_dir();
    let good = std::process::Command::new(bin)
        .args(["tesla", "decode"])
        .arg(dir.join("04_v_float_values.bin"))
        .output()
        .unwrap();
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
    let printed: Value = serde_json::from_slice(&good.stdout).unwrap();
    let case = cases()
        .into_iter()
        .find(|c| c["file"] == "04_v_float_values.bin")
        .unwrap();
    assert!(
        json_close(&printed["frame"]["payload"], &case["expect"]),
        "{printed}"
    );
    assert_eq!(printed["frame"]["txid"], case["txid"]);
    let bad = std::process::Command::new(bin)
        .args(["tesla", "decode"])
        .arg(dir.join("32_bad_random_bytes.bin"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("32_bad_random_bytes.bin: is not a valid frame"));
}

#[actix_rt::test]
async fn a_stream_written_by_teslas_own_server_is_pseudonymized_on_read() {
    let mut config = common::test_config(None);
    config.consumer.partition_keys = fleetwire_actors::consumer::PartitionKeys::Vins;
    let node = common::TestNode::start(config).await;
    let vin = "5YJ3E1EA7RF000005";
    let mut signals = std::collections::BTreeMap::new();
    signals.insert(
        "Soc".to_owned(),
        fleetwire_actors::model::SignalValue::Float(77.5),
    );
    // Tesla's dispatcher format: the payload protobuf, keyed by the clear VIN.
    let payload = tesla::encode_vehicle_data(vin, chrono::Utc::now(), &signals).unwrap();
    let entry = fleetwire_actors::ports::PutEntry {
        partition_key: vin.to_owned(),
        data: payload.into(),
    };
    node.node.ports().stream.put_records(vec![entry]).await.unwrap();
    let pseudonym = fleetwire_actors::pseudonym::Pseudonymizer::development().vehicle_id(vin);
    let url = format!("{}/v1/vehicles/{pseudonym}", node.api);
    let body = eventually_some("the pseudonymized vehicle", || async {
        let (status, body) = node.get(&url).await;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(body["signals"]["Soc"]["value"], json!(77.5));
    let (_, all) = node.get(&format!("{}/v1/vehicles", node.api)).await;
    assert!(!all.to_string().contains(vin), "the VIN is never stored: {all}");
    let (status, _) = node.get(&format!("{}/v1/vehicles/{vin}", node.api)).await;
    assert_eq!(status, 404);
    node.shutdown(WAIT).await;
}

#[actix_rt::test]
async fn a_silent_vehicle_is_disconnected_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::load_or_create(dir.path()).unwrap();
    let mut config = tesla_config(&pki);
    config.tesla.connection.ping_interval_ms = 100;
    config.tesla.connection.idle_timeout_ms = 300;
    let node = TeslaNode::start(pki, config).await;
    // This client never reads, so it never answers the server's pings.
    let _silent = node.vehicle("5YJ3E1EA7RF000006").await;
    eventually("the connection registered", || async {
        node.node.actor_count("vehicle_connection").await == 1
    })
    .await;
    eventually("the idle connection closed", || async {
        node.node.actor_count("vehicle_connection").await == 0
    })
    .await;
    node.node.shutdown(WAIT).await;
}
