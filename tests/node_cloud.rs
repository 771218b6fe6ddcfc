//! Whole nodes on the cloud backends: Kinesis (kinesis-local) for the stream and Redis for
//! the fan-out. Needs `FLEETWIRE_TEST_KINESIS_ENDPOINT` and Redis on 127.0.0.1:6379
//! (`scripts/test` starts both).

mod common;

use std::time::Duration;

use common::{TestNode, WAIT, eventually, record, test_config};
use fleetwire::backends::kinesis::KinesisStream;
use fleetwire::backends::redis::RedisConfig;
use fleetwire::config::{Config, FanOutBackend, StreamBackend};
use serde_json::json;

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// A node config on a fresh Kinesis stream and a Redis key prefix.
fn cloud_config(stream: &str, redis_prefix: &str) -> Config {
    let endpoint = std::env::var("FLEETWIRE_TEST_KINESIS_ENDPOINT").unwrap_or_else(|_| {
        panic!("FLEETWIRE_TEST_KINESIS_ENDPOINT is not set: run scripts/test (it starts kinesis-local)")
    });
    let mut config = test_config(None);
    config.backends.stream = StreamBackend::Kinesis;
    config.kinesis.stream_name = stream.to_owned();
    config.kinesis.endpoint_url = Some(endpoint);
    config.kinesis.create_if_missing = Some(2);
    config.kinesis.static_credentials = true;
    config.backends.fanout = FanOutBackend::Redis;
    config.redis = redis_config(redis_prefix);
    config
}

fn redis_config(prefix: &str) -> RedisConfig {
    RedisConfig {
        url: std::env::var("FLEETWIRE_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned()),
        key_prefix: prefix.to_owned(),
        ..RedisConfig::default()
    }
}

async fn ready(t: &TestNode) {
    eventually("node ready (leases held, fan-out subscribed)", || async {
        t.get(&format!("{}/readyz", t.admin)).await.0 == 200
    })
    .await;
}

#[actix_rt::test]
async fn a_record_ingested_on_one_node_reaches_a_browser_on_another() {
    let stream = unique("fw-node");
    let prefix = unique("fwtest");
    // Node A consumes the Kinesis stream; node B only serves browsers, on the same Redis.
    let a = TestNode::start(cloud_config(&stream, &prefix)).await;
    let mut b_config = test_config(None);
    b_config.backends.fanout = FanOutBackend::Redis;
    b_config.redis = redis_config(&prefix);
    let b = TestNode::start(b_config).await;
    ready(&a).await;
    ready(&b).await;

    let mut on_b = b.subscribe("").await;
    let mut on_a = a.subscribe("?vehicles=k-2").await;
    eventually("subscribers registered", || async {
        a.actor_count("subscriber").await == 1 && b.actor_count("subscriber").await == 1
    })
    .await;

    let (status, reply) = a
        .ingest(&json!([record("k-1", 1, 90.0), record("k-2", 1, 80.0)]))
        .await;
    assert_eq!(status, 200, "{reply}");
    assert!(
        reply["results"][0]["shard_id"]
            .as_str()
            .unwrap()
            .starts_with("shardId-")
    );

    let mut seen = std::collections::HashSet::new();
    while seen.len() < 2 {
        let ev = tokio::time::timeout(WAIT, on_b.recv())
            .await
            .expect("update reached node B")
            .unwrap();
        seen.insert(ev.data["vehicle_id"].as_str().unwrap().to_owned());
    }
    let ev = tokio::time::timeout(WAIT, on_a.recv())
        .await
        .expect("update on node A")
        .unwrap();
    assert_eq!(ev.data["vehicle_id"], "k-2");
    assert_eq!(ev.data["signals"]["Soc"]["value"], 80.0);

    eventually("state persisted on node A", || async {
        a.get(&format!("{}/v1/vehicles/k-1", a.api)).await.0 == 200
    })
    .await;
    drop((on_a, on_b));
    assert!(
        a.shutdown(Duration::from_secs(20)).await.drained,
        "every acked Kinesis record was checkpointed"
    );
    b.shutdown(Duration::from_secs(10)).await;
    KinesisStream::connect(&cloud_config(&stream, &prefix).kinesis)
        .await
        .unwrap()
        .delete_stream()
        .await
        .unwrap();
}
