//! Resharding during traffic on Kinesis (kinesis-local) with DynamoDB leases: a split and
//! then a merge happen while a node ingests and consumes. Every record is applied exactly
//! once in effect, in order per vehicle, and the finished shards' leases are deleted once
//! their children have begun. Needs the emulators and Redis (`scripts/test` starts them).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::cloud::{delete_resources, shared_config, unique};
use common::{TestNode, eventually, record};
use fleetwire::backends::kinesis::KinesisStream;
use fleetwire_actors::ports::RecordStream;
use serde_json::json;

/// Rounds of one record per vehicle; the split happens after `SPLIT_AT`, the merge of
/// the split's children after `MERGE_AT`.
const ROUNDS: u32 = 30;
const SPLIT_AT: u32 = 10;
const MERGE_AT: u32 = 20;

#[actix_rt::test]
async fn a_split_and_a_merge_during_traffic_lose_and_repeat_nothing() {
    let (stream, table, prefix) = (unique("fw-reshard"), unique("fw-leases"), unique("fwtest"));
    let mut config = shared_config(&stream, &table, &prefix, "node-a");
    config.kinesis.create_if_missing = Some(1);
    let node = TestNode::start(config.clone()).await;
    eventually("node ready", || async {
        node.get(&format!("{}/readyz", node.admin)).await.0 == 200
    })
    .await;
    let kinesis = KinesisStream::connect(&config.kinesis).await.unwrap();
    let root = kinesis.list_shards().await.unwrap().remove(0);

    let vehicles: Vec<String> = (0..16).map(|i| format!("rs-{i}")).collect();
    for round in 1..=ROUNDS {
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
        if round == SPLIT_AT {
            let middle = root.starting_hash_key / 2 + root.ending_hash_key / 2;
            kinesis.split_shard(&root.shard_id, middle).await.unwrap();
        }
        if round == MERGE_AT {
            let mut open: Vec<_> = kinesis
                .list_shards()
                .await
                .unwrap()
                .into_iter()
                .filter(|s| !s.closed)
                .collect();
            open.sort_by_key(|s| s.starting_hash_key);
            assert_eq!(open.len(), 2, "the split's two children: {open:?}");
            kinesis
                .merge_shards(&open[0].shard_id, &open[1].shard_id)
                .await
                .unwrap();
        }
        // Paced so that the consumer reads in between and each reshard meets a backlog.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }

    // version = records applied; Soc = the last round's value: nothing lost, nothing
    // applied twice, the last record applied last.
    for v in &vehicles {
        eventually(&format!("{v} applied all {ROUNDS} records"), || async {
            let (status, body) = node.get(&format!("{}/v1/vehicles/{v}", node.api)).await;
            status == 200
                && body["version"] == json!(ROUNDS)
                && body["signals"]["Soc"]["value"] == json!(f64::from(ROUNDS))
        })
        .await;
    }

    // Root → two children → merged child: once the merged child has begun, the finished
    // ancestors' leases go, oldest first, and are not created again.
    let merged: BTreeSet<String> = kinesis
        .list_shards()
        .await
        .unwrap()
        .into_iter()
        .filter(|s| !s.closed)
        .map(|s| s.shard_id.0)
        .collect();
    eventually("only the merged shard's lease is left", || async {
        let (_, leases) = node.get(&format!("{}/admin/leases", node.admin)).await;
        let keys: BTreeSet<String> = leases["leases"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| l["lease_key"].as_str().unwrap().to_owned())
            .collect();
        keys == merged
    })
    .await;

    assert!(
        node.shutdown(Duration::from_secs(20)).await.drained,
        "every acked record was checkpointed"
    );
    delete_resources(&config).await;
}
