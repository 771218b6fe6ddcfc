//! A consumer node killed without warning (SIGKILL, not a polite stop): another node takes
//! its shards after the failover time and processes every record that was acknowledged,
//! including those the dead node had read but not checkpointed. Needs kinesis-local,
//! DynamoDB Local and Redis (`scripts/test` starts them).

mod common;

use std::collections::HashSet;
use std::process::Child;
use std::time::Duration;

use common::cloud::{delete_resources, shared_config, spawn_node_process, unique};
use common::{TestNode, WAIT, eventually, record};
use fleetwire::config::Config;
use serde_json::json;

/// The victim: the real binary in its own process. A long checkpoint interval keeps its
/// last batch un-checkpointed when it dies.
fn spawn_victim(shared: &Config) -> Child {
    let slow_checkpoints = [("CONSUMER__CHECKPOINT_INTERVAL_MS", "60000".to_owned())];
    spawn_node_process(shared, "victim", &slow_checkpoints)
}

async fn lease_owners(t: &TestNode) -> Vec<String> {
    let (_, body) = t.get(&format!("{}/admin/leases", t.admin)).await;
    let mut owners: Vec<String> = body["leases"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|l| l["lease_owner"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    owners.sort();
    owners
}

#[actix_rt::test]
async fn a_killed_node_loses_its_shard_and_nothing_acknowledged_is_lost() {
    let config = shared_config(
        &unique("fw-kill"),
        &unique("fw-kill-leases"),
        &unique("fwtest"),
        "survivor",
    );
    let survivor = TestNode::start(config.clone()).await;
    eventually("survivor holds both leases", || async {
        lease_owners(&survivor).await == ["survivor", "survivor"]
    })
    .await;
    let mut victim = spawn_victim(&config);
    eventually("the victim steals one shard", || async {
        lease_owners(&survivor).await == ["survivor", "victim"]
    })
    .await;
    // The survivor's consumer of the stolen shard stops once its renewal fails.
    eventually("survivor consumes one shard", || async {
        survivor.actor_count("shard_consumer").await == 1
    })
    .await;
    let mut sse = survivor.subscribe("").await;
    eventually("subscriber registered", || async {
        survivor.actor_count("subscriber").await == 1
    })
    .await;
    let vehicles: Vec<String> = (0..20).map(|i| format!("kill-{i}")).collect();
    let batch = |second: u32, soc: f64| {
        json!(
            vehicles
                .iter()
                .map(|v| record(v, second, soc))
                .collect::<Vec<_>>()
        )
    };
    async fn updates_with(sse: &mut tokio::sync::mpsc::Receiver<common::SseEvent>, soc: f64, n: usize) {
        let mut seen = HashSet::new();
        while seen.len() < n {
            let ev = tokio::time::timeout(WAIT, sse.recv())
                .await
                .expect("updates arrive")
                .unwrap();
            if ev.data["signals"]["Soc"]["value"] == soc {
                seen.insert(ev.data["vehicle_id"].as_str().unwrap().to_owned());
            }
        }
    }

    // Warm-up: both nodes process and write their first checkpoint (the first write is
    // immediate; the next one would come only after the 60 s interval).
    assert_eq!(survivor.ingest(&batch(0, 61.0)).await.0, 200);
    updates_with(&mut sse, 61.0, vehicles.len()).await;
    eventually("both shards checkpointed", || async {
        let (_, body) = survivor.get(&format!("{}/admin/leases", survivor.admin)).await;
        body["leases"]
            .as_array()
            .is_some_and(|l| l.iter().all(|l| l["checkpoint"]["Sequence"].is_string()))
    })
    .await;

    // Acknowledged records the victim processes but never checkpoints.
    let (status, reply) = survivor.ingest(&batch(1, 60.0)).await;
    assert_eq!((status, reply["accepted"].as_u64()), (200, Some(20)), "{reply}");
    updates_with(&mut sse, 60.0, vehicles.len()).await;

    // SIGKILL: no final checkpoint, no lease release.
    victim.kill().unwrap();
    victim.wait().unwrap();
    eventually(
        "the survivor takes the dead node's shard after the failover time",
        || async { lease_owners(&survivor).await == ["survivor", "survivor"] },
    )
    .await;
    assert_eq!(survivor.ingest(&batch(2, 59.0)).await.0, 200);
    updates_with(&mut sse, 59.0, vehicles.len()).await;

    // Vehicles of the survivor's own shard have 3 records applied here. Those of the dead
    // node's shard have 2: the second batch, re-read from the victim's last checkpoint (not
    // lost with it), and the third. Without the replay they would have 1.
    eventually("every acknowledged record applied on the survivor", || async {
        let (_, page) = survivor
            .get(&format!("{}/v1/vehicles?limit=100", survivor.api))
            .await;
        page["vehicles"].as_array().is_some_and(|v| {
            v.len() == 20
                && v.iter()
                    .all(|v| v["version"].as_u64() >= Some(2) && v["signals"]["Soc"]["value"] == 59.0)
        })
    })
    .await;
    let (_, page) = survivor
        .get(&format!("{}/v1/vehicles?limit=100", survivor.api))
        .await;
    let replayed = page["vehicles"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["version"] == 2)
        .count();
    assert!(
        replayed > 0,
        "some vehicles belonged to the dead node's shard: {page}"
    );
    drop(sse);
    assert!(survivor.shutdown(Duration::from_secs(20)).await.drained);
    delete_resources(&config).await;
}
