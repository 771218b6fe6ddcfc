//! A consumer node killed without warning (SIGKILL, not a polite stop): another node takes
//! its shards after the failover time and processes every record that was acknowledged,
//! including those the dead node had read but not checkpointed. Needs kinesis-local,
//! DynamoDB Local and Redis (`scripts/test` starts them).

mod common;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{TestNode, WAIT, eventually, record, test_config};
use fleetwire::config::{Config, FanOutBackend, LeasesBackend, StreamBackend};
use serde_json::json;

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run scripts/test (it starts the emulators)"))
}

/// The settings both nodes share, as `FLEETWIRE_*` overrides (how a deployment sets them).
fn shared_env(stream: &str, table: &str, prefix: &str) -> Vec<(String, String)> {
    [
        ("BACKENDS__STREAM", "kinesis"),
        ("BACKENDS__LEASES", "dynamodb"),
        ("BACKENDS__FANOUT", "redis"),
        ("KINESIS__STREAM_NAME", stream),
        ("KINESIS__ENDPOINT_URL", &env("FLEETWIRE_TEST_KINESIS_ENDPOINT")),
        ("KINESIS__CREATE_IF_MISSING", "2"),
        ("KINESIS__STATIC_CREDENTIALS", "true"),
        ("DYNAMODB__ENDPOINT_URL", &env("FLEETWIRE_TEST_DYNAMODB_ENDPOINT")),
        ("DYNAMODB__STATIC_CREDENTIALS", "true"),
        ("DYNAMODB__LEASE_TABLE", table),
        ("DYNAMODB__CREATE_TABLES_IF_MISSING", "true"),
        ("REDIS__KEY_PREFIX", prefix),
        ("CONSUMER__FAILOVER_TIME_MS", "1000"),
        ("CONSUMER__IDLE_POLL_MS", "20"),
        // A long interval keeps the victim's last records un-checkpointed when it dies.
        ("CONSUMER__CHECKPOINT_INTERVAL_MS", "60000"),
    ]
    .into_iter()
    .map(|(k, v)| (format!("FLEETWIRE_{k}"), v.to_owned()))
    .collect()
}

/// Node A: the real binary in its own process.
fn spawn_victim(vars: &[(String, String)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fleetwire"))
        .args(["serve"])
        .envs(vars.iter().cloned())
        .env("FLEETWIRE_HTTP__LISTEN", "127.0.0.1:0")
        .env("FLEETWIRE_ADMIN__LISTEN", "127.0.0.1:0")
        .env("FLEETWIRE_CONSUMER__WORKER_ID", "victim")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the fleetwire binary starts")
}

/// Node B: in this process, configured through the same variables.
fn survivor_config(vars: &[(String, String)]) -> Config {
    let mut config = test_config(None);
    let get = |k: &str| {
        vars.iter()
            .find(|(n, _)| n == &format!("FLEETWIRE_{k}"))
            .unwrap()
            .1
            .clone()
    };
    config.backends.stream = StreamBackend::Kinesis;
    config.backends.leases = LeasesBackend::Dynamodb;
    config.backends.fanout = FanOutBackend::Redis;
    config.kinesis.stream_name = get("KINESIS__STREAM_NAME");
    config.kinesis.endpoint_url = Some(get("KINESIS__ENDPOINT_URL"));
    config.kinesis.create_if_missing = Some(2);
    config.kinesis.static_credentials = true;
    config.dynamodb.endpoint_url = Some(get("DYNAMODB__ENDPOINT_URL"));
    config.dynamodb.static_credentials = true;
    config.dynamodb.lease_table = get("DYNAMODB__LEASE_TABLE");
    config.dynamodb.create_tables_if_missing = true;
    config.redis.key_prefix = get("REDIS__KEY_PREFIX");
    config.consumer.worker_id = Some("survivor".into());
    config
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
    let vars = shared_env(&unique("fw-kill"), &unique("fw-kill-leases"), &unique("fwtest"));
    let survivor = TestNode::start(survivor_config(&vars)).await;
    eventually("survivor holds both leases", || async {
        lease_owners(&survivor).await == ["survivor", "survivor"]
    })
    .await;
    let mut victim = spawn_victim(&vars);
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
    let config = survivor_config(&vars);
    fleetwire::backends::kinesis::KinesisStream::connect(&config.kinesis)
        .await
        .unwrap()
        .delete_stream()
        .await
        .unwrap();
    fleetwire::backends::dynamodb::DynamoDbLeaseStore::connect(&config.dynamodb)
        .await
        .unwrap()
        .delete_table()
        .await
        .unwrap();
}
