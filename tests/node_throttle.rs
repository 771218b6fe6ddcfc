//! Throttling on Kinesis, injected (kinesis-local never throttles): every third
//! PutRecords entry and every second GetRecords call are refused the way Kinesis refuses
//! them over its limits. The producer retries only the refused entries, the shard
//! consumers back off and read again, and every acknowledged record is applied exactly
//! once, in order. Needs kinesis-local and Redis (`scripts/test` starts them).

mod common;

use std::time::Duration;

use common::cloud::{delete_resources, kinesis_redis_config, unique};
use common::{TestNode, eventually, record};
use fleetwire::backends::faults::FaultConfig;
use serde_json::json;

const ROUNDS: u32 = 10;

/// The value of a Prometheus counter line `name{labels} value` summed over its labels.
fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[actix_rt::test]
async fn throttled_puts_and_reads_are_retried_and_nothing_is_lost_or_repeated() {
    let (stream, prefix) = (unique("fw-throttle"), unique("fwtest"));
    let mut config = kinesis_redis_config(&stream, &prefix);
    config.faults = FaultConfig {
        put_throttle_every: 3,
        get_throttle_every: 2,
    };
    let node = TestNode::start(config.clone()).await;
    eventually("node ready", || async {
        node.get(&format!("{}/readyz", node.admin)).await.0 == 200
    })
    .await;

    let vehicles: Vec<String> = (0..20).map(|i| format!("thr-{i}")).collect();
    for round in 1..=ROUNDS {
        let batch: Vec<_> = vehicles
            .iter()
            .map(|v| record(v, round, f64::from(round)))
            .collect();
        let (status, reply) = node.ingest(&json!(batch)).await;
        assert_eq!(
            (status, reply["accepted"].as_u64()),
            (200, Some(vehicles.len() as u64)),
            "round {round}: throttled entries are retried, not refused: {reply}"
        );
    }
    for v in &vehicles {
        eventually(&format!("{v} applied all {ROUNDS} records once"), || async {
            let (status, body) = node.get(&format!("{}/v1/vehicles/{v}", node.api)).await;
            status == 200
                && body["version"] == json!(ROUNDS)
                && body["signals"]["Soc"]["value"] == json!(f64::from(ROUNDS))
        })
        .await;
    }

    let (_, metrics) = node.get_text(&format!("{}/metrics", node.admin)).await;
    let entries = f64::from(ROUNDS) * vehicles.len() as f64;
    let throttled = counter(&metrics, "fleetwire_producer_throttled_entries_total");
    assert!(
        throttled >= entries / 3.0 - 1.0,
        "about a third of the first attempts were refused, and each was counted: {throttled}"
    );
    assert!(
        counter(&metrics, "fleetwire_stream_read_errors_total") > 0.0,
        "throttled reads are counted"
    );
    assert_eq!(
        counter(&metrics, "fleetwire_producer_dead_letters_total"),
        0.0,
        "no record ran out of retries"
    );
    assert!(node.shutdown(Duration::from_secs(20)).await.drained);
    delete_resources(&config).await;
}
