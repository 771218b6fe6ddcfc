//! Whole nodes sharing a Redis fan-out (stream, leases and state stay embedded: only the
//! fan-out is shared, so these tests need Redis and nothing else):
//!
//! - a browser on node B disconnects, updates go on, and it reconnects to node A with
//!   `Last-Event-ID`: it gets exactly what it missed, in order, then live updates;
//! - a private Redis is killed and restarted under a streaming browser: the stream stays
//!   open, `/readyz` reports the outage, the vehicle state is still persisted, the browser
//!   gets `reset` (the restarted Redis lost the log) and then updates again.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::private_redis::PrivateRedis;
use common::redis_keys::{TestPrefix, redis_url};
use common::{SseEvent, TestNode, eventually, id_key, next_event, record, test_config};
use fleetwire::backends::redis::RedisConfig;
use fleetwire::config::{Config, FanOutBackend};
use serde_json::{Value, json};
use tokio::sync::mpsc::Receiver;

fn node_config(url: &str, prefix: &str) -> Config {
    let mut config = test_config(None);
    config.backends.fanout = FanOutBackend::Redis;
    config.redis = RedisConfig {
        url: url.to_owned(),
        key_prefix: prefix.to_owned(),
        reconnect_backoff_initial_ms: 20,
        reconnect_backoff_max_ms: 200,
        ..RedisConfig::default()
    };
    config
}

async fn ready_node(config: Config) -> TestNode {
    let t = TestNode::start(config).await;
    eventually("node ready (leases held, fan-out subscribed)", || async {
        t.get(&format!("{}/readyz", t.admin)).await.0 == 200
    })
    .await;
    t
}

fn batch(cars: &[&str], second: u32) -> Value {
    json!(cars.iter().map(|c| record(c, second, 50.0)).collect::<Vec<_>>())
}

/// Reads vehicle events (ids increasing) until each of `cars` was seen at `version`.
async fn read_until_version(rx: &mut Receiver<SseEvent>, cars: &[&str], version: u64) -> Vec<SseEvent> {
    let mut out: Vec<SseEvent> = Vec::new();
    let mut latest = HashMap::new();
    while !cars.iter().all(|c| latest.get(*c) == Some(&version)) {
        let ev = next_event(rx).await;
        assert_eq!(ev.event, "vehicle", "unexpected {ev:?}");
        if let Some(previous) = out.last() {
            assert!(id_key(&previous.id) < id_key(&ev.id), "ids increase");
        }
        latest.insert(
            ev.data["vehicle_id"].as_str().unwrap().to_owned(),
            ev.data["version"].as_u64().unwrap(),
        );
        out.push(ev);
    }
    out
}

#[actix_rt::test]
async fn a_browser_that_moves_from_b_to_a_resumes_without_loss_or_duplicates() {
    let prefix = TestPrefix::new();
    // A ingests and processes; B only serves browsers. Both on one Redis fan-out.
    let a = ready_node(node_config(&redis_url(), &prefix)).await;
    let b = ready_node(node_config(&redis_url(), &prefix)).await;
    let cars = ["m-1", "m-2", "m-3", "m-4"];
    let mut control = b.subscribe("").await;
    let mut browser = b.subscribe("").await;
    eventually("subscribers registered on B", || async {
        b.actor_count("subscriber").await == 2
    })
    .await;

    assert_eq!(a.ingest(&batch(&cars, 1)).await.0, 200);
    let seen = read_until_version(&mut browser, &cars, 1).await;
    let last = seen.last().unwrap().id.clone();
    drop(browser);
    eventually("the browser left B", || async {
        b.actor_count("subscriber").await == 1
    })
    .await;

    for second in 2..=4 {
        assert_eq!(a.ingest(&batch(&cars, second)).await.0, 200);
    }
    let truth = read_until_version(&mut control, &cars, 4).await;
    let missed: Vec<(String, Value, Value)> = truth
        .iter()
        .filter(|e| id_key(&e.id) > id_key(&last))
        .map(|e| {
            (
                e.id.clone(),
                e.data["vehicle_id"].clone(),
                e.data["version"].clone(),
            )
        })
        .collect();

    // The browser reconnects to the other node, as a load balancer may send it.
    let mut moved = a.subscribe_after("", Some(&last)).await;
    let mut resumed = Vec::new();
    while resumed.len() < missed.len() {
        let ev = next_event(&mut moved).await;
        assert_eq!(ev.event, "vehicle", "no reset: the log covers the gap ({ev:?})");
        resumed.push((
            ev.id.clone(),
            ev.data["vehicle_id"].clone(),
            ev.data["version"].clone(),
        ));
    }
    assert_eq!(
        resumed, missed,
        "exactly the missed updates, in order, on the other node"
    );

    assert_eq!(a.ingest(&batch(&cars, 5)).await.0, 200);
    let live = read_until_version(&mut moved, &cars, 5).await;
    assert!(
        id_key(&live[0].id) > id_key(&resumed.last().unwrap().0),
        "live updates follow, none repeated"
    );
    drop((control, moved));
    a.shutdown(Duration::from_secs(10)).await;
    b.shutdown(Duration::from_secs(10)).await;
}

/// Whether `/readyz` fails the named check.
async fn check_fails(t: &TestNode, name: &str) -> bool {
    let (status, body) = t.get(&format!("{}/readyz", t.admin)).await;
    status == 503
        && body["checks"]
            .as_array()
            .is_some_and(|checks| checks.iter().any(|c| c["name"] == name && c["ok"] == false))
}

#[actix_rt::test]
async fn a_redis_restart_keeps_streams_open_and_ends_in_a_reset() {
    let mut redis = PrivateRedis::start();
    let prefix = TestPrefix::on(&redis.url());
    let a = ready_node(node_config(&redis.url(), &prefix)).await;
    let b = ready_node(node_config(&redis.url(), &prefix)).await;
    let cars = ["x-1", "x-2"];
    let mut browser = b.subscribe("").await;
    eventually("subscriber registered on B", || async {
        b.actor_count("subscriber").await == 1
    })
    .await;
    assert_eq!(a.ingest(&batch(&cars, 1)).await.0, 200);
    read_until_version(&mut browser, &cars, 1).await;

    redis.kill();
    eventually("B reports the lost subscription", || {
        check_fails(&b, "fanout_subscription")
    })
    .await;
    // Records are still accepted and applied; their live updates cannot be published.
    assert_eq!(a.ingest(&batch(&cars, 2)).await.0, 200);
    eventually("the state is persisted without Redis", || async {
        a.get(&format!("{}/v1/vehicles/x-2", a.api)).await.1["version"] == 2
    })
    .await;

    redis.restart();
    // The restarted Redis has no log, so the stream cannot be repaired from it: the browser
    // is told to reload, on the connection it already has.
    let reset = next_event(&mut browser).await;
    assert_eq!(
        reset.event, "reset",
        "the first event after the restart: {reset:?}"
    );
    assert!(
        ["lagged", "gap"].contains(&reset.data["reason"].as_str().unwrap()),
        "{reset:?}"
    );
    eventually("B is ready again", || async {
        b.get(&format!("{}/readyz", b.admin)).await.0 == 200
    })
    .await;

    // Updates flow again (the first ones may still hit the publisher's fail-fast window
    // until it has recorded its gap: keep sending until one arrives).
    let mut second = 3;
    let resumed = loop {
        assert_eq!(a.ingest(&batch(&cars, second)).await.0, 200);
        match tokio::time::timeout(Duration::from_millis(500), browser.recv()).await {
            Ok(Some(ev)) if ev.event == "vehicle" => break ev,
            Ok(Some(ev)) => assert_eq!(ev.event, "reset", "{ev:?}"),
            Ok(None) => panic!("the SSE stream closed"),
            Err(_) => {}
        }
        second += 1;
        assert!(second < 40, "no update after the restart");
    };
    assert!(resumed.data["version"].as_u64().unwrap() >= 3);

    let (_, metrics) = b.get_text(&format!("{}/metrics", b.admin)).await;
    assert!(
        metrics.contains("fleetwire_sse_resets_sent_total{reason="),
        "{metrics}"
    );
    drop(browser);
    a.shutdown(Duration::from_secs(10)).await;
    b.shutdown(Duration::from_secs(10)).await;
}
