//! Whole nodes on the cloud backends: Kinesis (kinesis-local) for the stream and Redis for
//! the fan-out. Needs `FLEETWIRE_TEST_KINESIS_ENDPOINT` and Redis on 127.0.0.1:6379
//! (`scripts/test` starts both).

mod common;

use std::time::Duration;

use common::cloud::{delete_resources, kinesis_redis_config, redis_config, shared_config, unique};
use common::{TestNode, WAIT, eventually, record, test_config};
use fleetwire::config::FanOutBackend;
use serde_json::json;

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
    let a = TestNode::start(kinesis_redis_config(&stream, &prefix)).await;
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
    // Every AWS call is counted by operation and outcome (the SDK interceptor).
    let (_, metrics) = a.get_text(&format!("{}/metrics", a.admin)).await;
    for operation in ["PutRecords", "GetRecords"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("fleetwire_aws_calls_total{")
                    && l.contains(&format!("operation=\"{operation}\""))
                    && l.contains("result=\"ok\"")),
            "no successful {operation} counted in:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("fleetwire_aws_call_seconds_bucket{"),
        "no call durations"
    );
    drop((on_a, on_b));
    assert!(
        a.shutdown(Duration::from_secs(20)).await.drained,
        "every acked Kinesis record was checkpointed"
    );
    b.shutdown(Duration::from_secs(10)).await;
    delete_resources(&kinesis_redis_config(&stream, &prefix)).await;
}

#[actix_rt::test]
async fn two_consumer_nodes_share_the_shards_and_hand_them_over_at_shutdown() {
    let (stream, table, prefix) = (unique("fw-pair"), unique("fw-leases"), unique("fwtest"));
    let a = TestNode::start(shared_config(&stream, &table, &prefix, "node-a")).await;
    let b = TestNode::start(shared_config(&stream, &table, &prefix, "node-b")).await;
    eventually("the two shards are balanced one per node", || async {
        a.actor_count("shard_consumer").await == 1 && b.actor_count("shard_consumer").await == 1
    })
    .await;
    ready(&a).await;
    let (_, leases) = a.get(&format!("{}/admin/leases", a.admin)).await;
    let mut owners: Vec<&str> = leases["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["lease_owner"].as_str().unwrap())
        .collect();
    owners.sort_unstable();
    assert_eq!(
        owners,
        ["node-a", "node-b"],
        "the shared lease table shows both owners: {leases}"
    );
    let mut sse = a.subscribe("").await;
    eventually("subscriber registered", || async {
        a.actor_count("subscriber").await == 1
    })
    .await;

    let vehicles: Vec<String> = (0..20).map(|i| format!("pair-{i}")).collect();
    let batch: Vec<_> = vehicles.iter().map(|v| record(v, 1, 50.0)).collect();
    let (status, reply) = a.ingest(&json!(batch)).await;
    assert_eq!((status, reply["accepted"].as_u64()), (200, Some(20)), "{reply}");
    let mut seen = std::collections::HashSet::new();
    while seen.len() < vehicles.len() {
        let ev = tokio::time::timeout(WAIT, sse.recv())
            .await
            .expect("every vehicle's update arrives")
            .unwrap();
        seen.insert(ev.data["vehicle_id"].as_str().unwrap().to_owned());
    }

    // B leaves politely: its lease is released and A takes it at once (well within failover).
    assert!(b.shutdown(Duration::from_secs(20)).await.drained);
    eventually("node A owns both shards", || async {
        a.actor_count("shard_consumer").await == 2
    })
    .await;
    let (status, _) = a
        .ingest(&json!(
            vehicles.iter().map(|v| record(v, 2, 49.0)).collect::<Vec<_>>()
        ))
        .await;
    assert_eq!(status, 200);
    let mut again = std::collections::HashSet::new();
    while again.len() < vehicles.len() {
        let ev = tokio::time::timeout(WAIT, sse.recv())
            .await
            .expect("updates after the handover")
            .unwrap();
        if ev.data["signals"]["Soc"]["value"] == 49.0 {
            again.insert(ev.data["vehicle_id"].as_str().unwrap().to_owned());
        }
    }
    drop(sse);
    assert!(a.shutdown(Duration::from_secs(20)).await.drained);
    delete_resources(&shared_config(&stream, &table, &prefix, "cleanup")).await;
}
