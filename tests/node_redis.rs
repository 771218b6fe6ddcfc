//! Whole nodes sharing a Redis fan-out (stream, leases and state stay embedded: only the
//! fan-out is shared, so these tests need Redis and nothing else):
//!
//! - a browser on node B disconnects, updates go on, and it reconnects to node A with
//!   `Last-Event-ID`: it gets exactly what it missed, in order, then live updates;
//! - a private Redis is killed and restarted under a streaming browser: the stream stays
//!   open, `/readyz` reports the outage, the vehicle state is still persisted, the browser
//!   gets `reset` (the restarted Redis lost the log) and then updates again;
//! - a browser on node B stops reading: its updates are coalesced, then it is cut off at
//!   its byte budget, while a second browser on B gets every update without a reset.

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

/// Records of `cars` at `second` whose state carries a text signal of `note_len` bytes,
/// so that few updates fill a socket.
fn noted(cars: &[&str], second: u32, note_len: usize) -> Value {
    let note = "n".repeat(note_len);
    json!(
        cars.iter()
            .map(|c| {
                let mut r = record(c, second, 50.0);
                r["payload"]["Note"] = json!(note);
                r
            })
            .collect::<Vec<_>>()
    )
}

/// Node `t`'s subscribers as `/admin/actors` lists them (`id`, `details`, …).
async fn subscribers(t: &TestNode) -> Vec<Value> {
    let (_, body) = t.get(&format!("{}/admin/actors?kind=subscriber", t.admin)).await;
    body["actors"].as_array().cloned().unwrap_or_default()
}

#[actix_rt::test]
async fn a_slow_browser_is_coalesced_then_cut_off_while_a_fast_one_gets_everything() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let prefix = TestPrefix::new();
    let mut config_a = node_config(&redis_url(), &prefix);
    // The rounds below go out back to back, faster than an API key's default rate.
    config_a.auth.ingest_requests_per_sec = 10_000;
    config_a.auth.ingest_burst = 10_000;
    let a = ready_node(config_a).await;
    let mut config_b = node_config(&redis_url(), &prefix);
    config_b.subscribers.channel_capacity = 2;
    // Far above what a reading client lags by here, far below 2,000 waiting vehicles.
    config_b.subscribers.max_buffered_bytes = 1024 * 1024;
    // Only the byte budget may cut the client off here.
    config_b.subscribers.slow_client_timeout_ms = 600_000;
    let b = ready_node(config_b).await;

    let mut fast = b.subscribe("").await;
    b.wait_for_subscribers(1, "the fast browser registered on B")
        .await;
    let fast_id = subscribers(&b).await[0]["id"].clone();
    // The slow browser: a socket with a small receive buffer that never reads its stream.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr: std::net::SocketAddr = b.api.trim_start_matches("http://").parse().unwrap();
    let mut slow = socket.connect(addr).await.unwrap();
    let request = format!(
        "GET /v1/stream HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
         Authorization: Bearer {}\r\n\r\n",
        common::auth::default_admin_token()
    );
    slow.write_all(request.as_bytes()).await.unwrap();
    b.wait_for_subscribers(2, "the slow browser registered on B")
        .await;

    // Many updates of a few vehicles: the slow browser's socket buffers (the kernel's grow
    // to megabytes) and channel fill, and what waits behind them is coalesced to the latest
    // update per vehicle (under the budget). Rounds go on until all ten wait (bounded).
    let few: Vec<String> = (0..10).map(|i| format!("s-{i}")).collect();
    let few: Vec<&str> = few.iter().map(String::as_str).collect();
    let mut rounds = 0;
    let mut coalesced = false;
    while !coalesced {
        assert!(rounds < 1000, "no coalescing after {rounds} rounds");
        rounds += 1;
        assert_eq!(a.ingest(&noted(&few, rounds, 4096)).await.0, 200);
        if rounds % 10 == 0 {
            let subs = subscribers(&b).await;
            assert_eq!(subs.len(), 2, "both browsers still connected: {subs:?}");
            let slow = &subs.iter().find(|s| s["id"] != fast_id).unwrap()["details"];
            coalesced = slow["queue_depth"] == few.len() && slow["coalesced"].as_u64() > Some(0);
        }
    }
    let mut versions: HashMap<String, u64> = HashMap::new();
    for ev in read_until_version(&mut fast, &few, u64::from(rounds)).await {
        let vehicle = ev.data["vehicle_id"].as_str().unwrap().to_owned();
        let version = ev.data["version"].as_u64().unwrap();
        let before = versions.insert(vehicle, version).unwrap_or(0);
        assert!(version > before, "the fast browser's versions increase");
    }

    // Many vehicles: one waiting update each is more than the slow browser's byte budget.
    let many: Vec<String> = (0..2000).map(|i| format!("w-{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    for part in many.chunks(500) {
        assert_eq!(a.ingest(&noted(part, 1, 1024)).await.0, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.wait_for_subscribers(1, "the slow browser is cut off").await;
    // The fast one is not: it has every vehicle's update and never a reset.
    read_until_version(&mut fast, &many, 1).await;
    let subs = subscribers(&b).await;
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0]["id"], fast_id);
    // The server closed the slow browser's connection: what it had sent ends in EOF.
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "the connection ends (read {} bytes)", sink.len());
    drop(fast);
    a.shutdown(Duration::from_secs(10)).await;
    b.shutdown(Duration::from_secs(10)).await;
}
