//! Fleet intelligence through a whole node on 127.0.0.1:0: rules set over REST, a
//! generated drive-and-charge track ingested over HTTP, and the trip, charging session,
//! geofence crossings and low-SOC alert it yields, on SSE (`fleet_event`) and REST;
//! ingesting the track again adds nothing.

mod common;

use common::{TestNode, eventually, eventually_some, next_event, test_config};
use fleetwire_actors::fleet::track::drive_and_charge;
use fleetwire_actors::model::{Location, VehicleId};
use serde_json::{Value, json};

const ORIGIN: Location = Location {
    latitude: 52.52,
    longitude: 13.405,
};

/// POSTs JSON to the public API.
async fn post(t: &TestNode, path: &str, body: Value) -> (u16, Value) {
    let r = t
        .client
        .post(format!("{}{path}", t.api))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// DELETEs on the public API.
async fn delete(t: &TestNode, path: &str) -> u16 {
    t.client
        .delete(format!("{}{path}", t.api))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The track as ingest JSON, starting 40 minutes ago (the position filter refuses source
/// times more than a week old).
fn track(vehicle: &str) -> Vec<Value> {
    let start = chrono::Utc::now() - chrono::Duration::minutes(40);
    drive_and_charge(&VehicleId(vehicle.into()), ORIGIN, start)
        .into_iter()
        .map(|r| json!({"timestamp": r.timestamp, "vehicle_id": r.vehicle_id, "payload": r.payload}))
        .collect()
}

const EXPECTED: [&str; 8] = [
    "geofence_enter",
    "trip_started",
    "geofence_exit",
    "alert_raised",
    "trip_ended",
    "charging_started",
    "alert_cleared",
    "charging_ended",
];

#[actix_rt::test]
async fn a_drive_and_charge_shows_up_on_sse_and_rest_once() {
    let t = TestNode::start(test_config(None)).await;
    eventually("node ready", || async {
        t.get(&format!("{}/readyz", t.admin)).await.0 == 200
    })
    .await;

    // Rules over REST, with their errors.
    let depot = json!({"id": "depot", "name": "Depot", "shape":
        {"type": "circle", "center": {"latitude": 52.52, "longitude": 13.405}, "radius_m": 1000.0}});
    assert_eq!(post(&t, "/v1/geofences", depot.clone()).await.0, 201);
    assert_eq!(post(&t, "/v1/geofences", depot).await.0, 200, "replaced");
    let (status, body) = post(
        &t,
        "/v1/geofences",
        json!({"id": "x", "name": "X", "shape": {"type": "circle",
            "center": {"latitude": 1, "longitude": 2}, "radius_m": 0}}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid")),
        "{body}"
    );
    let (status, body) = post(
        &t,
        "/v1/alert-rules",
        json!({"id": "r", "condition": {"type": "low_soc"}}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_body")),
        "{body}"
    );
    let low_soc = json!({"id": "low-soc", "condition": {"type": "low_soc", "below_percent": 20.0}});
    assert_eq!(post(&t, "/v1/alert-rules", low_soc).await.0, 201);
    let (_, fences) = t.get(&format!("{}/v1/geofences", t.api)).await;
    assert_eq!(fences["geofences"][0]["id"], "depot");
    let (_, rules) = t.get(&format!("{}/v1/alert-rules", t.api)).await;
    assert_eq!(rules["alert_rules"][0]["condition"]["below_percent"], 20.0);

    let mut fleet_only = t.subscribe("?types=fleet_event").await;
    let mut everything = t.subscribe("").await;
    eventually("subscribers registered", || async {
        t.actor_count("subscriber").await == 2
    })
    .await;

    let records = track("fleet-1");
    let (status, body) = t.ingest(&json!(records)).await;
    assert_eq!(status, 200, "{body}");

    // SSE: every fleet event, in order, on both streams.
    let mut seen = Vec::new();
    while seen.len() < EXPECTED.len() {
        let ev = next_event(&mut fleet_only).await;
        assert_eq!(ev.event, "fleet_event", "{ev:?}");
        assert_eq!(ev.data["vehicle_id"], "fleet-1");
        seen.push(ev.data["type"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, EXPECTED);
    let mut mixed = Vec::new();
    while mixed.len() < EXPECTED.len() {
        let ev = next_event(&mut everything).await;
        if ev.event == "fleet_event" {
            mixed.push(ev.data["type"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(ev.event, "vehicle");
            assert!(
                ev.data.get("fleet_events").is_none(),
                "vehicle events carry no fleet events"
            );
        }
    }
    assert_eq!(mixed, EXPECTED);

    // REST: the persisted history.
    let base = format!("{}/v1/vehicles/fleet-1", t.api);
    let trips = eventually_some("the trip is persisted", || async {
        let (status, body) = t.get(&format!("{base}/trips")).await;
        (status == 200 && body["trips"].as_array().is_some_and(|a| a.len() == 1)).then_some(body)
    })
    .await;
    let distance = trips["trips"][0]["distance_m"].as_f64().unwrap();
    assert!((distance - 3000.0).abs() < 5.0, "{distance}");
    assert_eq!(trips["trips"][0]["duration_secs"], 300);
    let (_, sessions) = t.get(&format!("{base}/charging-sessions")).await;
    assert_eq!(sessions["charging_sessions"].as_array().unwrap().len(), 1);
    assert!(
        sessions["charging_sessions"][0]["energy_added_kwh"]
            .as_f64()
            .unwrap()
            > 30.0
    );
    let (_, events) = t.get(&format!("{base}/events")).await;
    let newest_first: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(newest_first, EXPECTED.iter().rev().copied().collect::<Vec<_>>());
    assert_eq!(
        t.get(&format!("{}/v1/vehicles/nobody/events", t.api)).await.0,
        404
    );

    // The same track again (a client retry) and one new record: nothing is derived twice.
    assert_eq!(t.ingest(&json!(records)).await.0, 200);
    let (_, before) = t.get(&base).await;
    let mut later = records.last().unwrap().clone();
    later["timestamp"] = json!(chrono::Utc::now() - chrono::Duration::minutes(5));
    later["payload"] = json!({"Soc": 61.0});
    assert_eq!(t.ingest(&json!([later])).await.0, 200);
    let version = before["version"].as_u64().unwrap();
    eventually("the new record is applied", || async {
        t.get(&base).await.1["version"].as_u64() == Some(version + 1)
    })
    .await;
    let (_, events) = t.get(&format!("{base}/events")).await;
    assert_eq!(events["events"].as_array().unwrap().len(), EXPECTED.len());
    let (_, trips) = t.get(&format!("{base}/trips")).await;
    assert_eq!(trips["trips"].as_array().unwrap().len(), 1);

    assert_eq!(delete(&t, "/v1/geofences/depot").await, 204);
    assert_eq!(delete(&t, "/v1/geofences/depot").await, 404);
    assert_eq!(t.get(&format!("{}/v1/geofences/depot", t.api)).await.0, 404);
    t.shutdown(std::time::Duration::from_secs(10)).await;
}
