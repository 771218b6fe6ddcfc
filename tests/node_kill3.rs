//! Three consumer nodes share a Kinesis stream, the DynamoDB lease table and the vehicle
//! state in DynamoDB; one of them, a separate process, is killed with SIGKILL while
//! records keep arriving. Its shard is taken over within the failover time, and every
//! acknowledged record is applied exactly once: each vehicle's version (records applied)
//! equals the records sent, read from the shared state. Needs kinesis-local, DynamoDB
//! Local and Redis (`scripts/test` starts them).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cloud::{delete_resources, shared_config, shared_state_config, spawn_node_process, unique};
use common::{TestNode, eventually, record};
use serde_json::json;

const VEHICLES: usize = 30;
const ROUNDS: u32 = 40;
/// The victim dies after this round was acknowledged.
const KILL_AFTER: u32 = 12;

/// Shard → owner, from a node's `/admin/leases`.
async fn owners(t: &TestNode) -> BTreeMap<String, String> {
    let (_, body) = t.get(&format!("{}/admin/leases", t.admin)).await;
    body["leases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| {
            Some((
                l["lease_key"].as_str()?.to_owned(),
                l["lease_owner"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// One acknowledged record per vehicle, then a short pause so consumers read in between.
async fn send_round(node: &TestNode, vehicles: &[String], round: u32) {
    let batch: Vec<_> = vehicles
        .iter()
        .map(|v| record(v, round, f64::from(round)))
        .collect();
    let (status, reply) = node.ingest(&json!(batch)).await;
    assert_eq!(
        (status, reply["accepted"].as_u64()),
        (200, Some(vehicles.len() as u64)),
        "round {round}: {reply}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[actix_rt::test]
async fn a_node_killed_mid_traffic_loses_nothing_and_nothing_is_applied_twice() {
    let (stream, table, prefix) = (unique("fw-kill3"), unique("fw-kill3-leases"), unique("fwtest"));
    let mut config = shared_state_config(
        shared_config(&stream, &table, &prefix, "node-a"),
        &format!("{}-", unique("fw-kill3")),
    );
    config.kinesis.create_if_missing = Some(3);
    let failover = Duration::from_millis(config.consumer.failover_time_ms);
    let a = TestNode::start(config.clone()).await;
    let mut b_config = config.clone();
    b_config.consumer.worker_id = Some("node-b".into());
    let b = TestNode::start(b_config).await;
    let mut victim = spawn_node_process(&config, "victim", &[]);
    eventually("three nodes hold one shard each", || async {
        let held = owners(&a).await;
        let mut by: Vec<&str> = held.values().map(String::as_str).collect();
        by.sort_unstable();
        held.len() == 3 && by == ["node-a", "node-b", "victim"]
    })
    .await;

    let vehicles: Vec<String> = (0..VEHICLES).map(|i| format!("k3-{i}")).collect();
    for round in 1..=KILL_AFTER {
        send_round(&a, &vehicles, round).await;
    }
    // SIGKILL: no final checkpoint, no lease release, records in flight.
    victim.kill().unwrap();
    victim.wait().unwrap();
    let killed_at = Instant::now();
    for round in KILL_AFTER + 1..=ROUNDS {
        send_round(&a, &vehicles, round).await;
    }

    eventually("the survivors own every shard", || async {
        let held = owners(&a).await;
        held.len() == 3 && held.values().all(|o| o == "node-a" || o == "node-b")
    })
    .await;
    let takeover = killed_at.elapsed();
    // The figure for docs/performance.md (run with --nocapture).
    println!("taken over {takeover:?} after the kill (failover time {failover:?})");
    assert!(
        takeover < failover * 3 + Duration::from_secs(10),
        "taken over in {takeover:?} (failover time {failover:?})"
    );

    // The state is shared: either survivor answers for every vehicle.
    for v in &vehicles {
        eventually(
            &format!("{v} applied all {ROUNDS} records exactly once"),
            || async {
                let (status, body) = b.get(&format!("{}/v1/vehicles/{v}", b.api)).await;
                status == 200
                    && body["version"] == json!(ROUNDS)
                    && body["signals"]["Soc"]["value"] == json!(f64::from(ROUNDS))
            },
        )
        .await;
    }
    assert!(a.shutdown(Duration::from_secs(20)).await.drained);
    assert!(b.shutdown(Duration::from_secs(20)).await.drained);
    delete_resources(&config).await;
}
