//! A whole node keeps history and hourly aggregates: ingest a track over HTTP, read both
//! back over HTTP, restart on the same data directory, read them again, and re-ingest
//! the same records (a replay): nothing counts twice.

mod common;

use std::time::Duration;

use common::{TestNode, eventually, eventually_some, record, test_config};
use serde_json::{Value, json};

const FROM: &str = "2026-01-01T00:00:00Z";
const TO: &str = "2026-01-01T02:00:00Z";

fn config(dir: &std::path::Path) -> fleetwire::config::Config {
    let mut config = test_config(Some(dir.to_path_buf()));
    // The test track is dated 2026-01-01; keep it well inside the TTL filter.
    config.history.retention_days = 3650;
    config.history.idle_close_secs = 1;
    config
}

async fn history(t: &TestNode, query: &str) -> Value {
    t.get(&format!(
        "{}/v1/vehicles/car-h/history?from={FROM}&to={TO}{query}",
        t.api
    ))
    .await
    .1
}

async fn aggregates(t: &TestNode) -> Value {
    t.get(&format!(
        "{}/v1/vehicles/car-h/aggregates?from={FROM}&to={TO}",
        t.api
    ))
    .await
    .1
}

#[actix_rt::test]
async fn history_and_aggregates_survive_a_restart_and_replays() {
    let dir = tempfile::tempdir().unwrap();
    // 150 records at 1 Hz: three 60 s buckets (60 + 60 + 30).
    let track: Vec<Value> = (0..150)
        .map(|s| record("car-h", s, 100.0 - f64::from(s) / 10.0))
        .collect();
    let t = TestNode::start(config(dir.path())).await;
    let (status, reply) = t.ingest(&json!(track)).await;
    assert_eq!(status, 200, "{reply}");
    eventually("all buckets written", || async {
        history(&t, "&limit=10000").await["records"]
            .as_array()
            .is_some_and(|r| r.len() == 150)
    })
    .await;

    // Pagination: pages of at most 70 records end on bucket boundaries.
    let mut cursor = String::new();
    let mut pages = Vec::new();
    loop {
        let page = history(&t, &format!("&limit=70&fields=Soc{cursor}")).await;
        let records = page["records"].as_array().unwrap().clone();
        assert!(records.len() <= 70);
        assert!(
            records
                .iter()
                .all(|r| r["signals"].as_object().unwrap().keys().eq(["Soc"]))
        );
        pages.push(records.len());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages, [60, 60, 30]);

    // The hour aggregate is written when the actors stop (shutdown).
    t.shutdown(Duration::from_secs(10)).await;
    let t = TestNode::start(config(dir.path())).await;
    let hours = eventually_some("aggregates after restart", || async {
        let a = aggregates(&t).await;
        a["hours"].as_array().filter(|h| !h.is_empty()).cloned()
    })
    .await;
    assert_eq!(hours.len(), 1);
    assert_eq!(hours[0]["count"], 150);
    assert_eq!(hours[0]["signals"]["Soc"]["max"], 100.0);
    assert_eq!(hours[0]["signals"]["VehicleSpeed"]["count"], 150);
    assert_eq!(
        history(&t, "&limit=10000").await["records"]
            .as_array()
            .unwrap()
            .len(),
        150
    );

    // The same track again (a client retry or a replay) plus 10 new records.
    let more: Vec<Value> = (0..160)
        .map(|s| record("car-h", s, 100.0 - f64::from(s) / 10.0))
        .collect();
    let (status, _) = t.ingest(&json!(more)).await;
    assert_eq!(status, 200);
    eventually("the new records are in history", || async {
        history(&t, "&limit=10000").await["records"]
            .as_array()
            .is_some_and(|r| r.len() >= 160)
    })
    .await;
    t.shutdown(Duration::from_secs(10)).await;
    let t = TestNode::start(config(dir.path())).await;
    assert_eq!(
        history(&t, "&limit=10000").await["records"]
            .as_array()
            .unwrap()
            .len(),
        160
    );
    let a = aggregates(&t).await;
    assert_eq!(a["hours"][0]["count"], 160, "{a}");
    t.shutdown(Duration::from_secs(10)).await;
}
