//! The raw archive on S3, against moto's S3 server on loopback: the sink stores whole
//! parts under the prefix, and a node archives every acknowledged record; while the bucket
//! is missing (every PutObject fails) the checkpoints stay behind and nothing is dropped,
//! and once it exists the retried parts land.
//!
//! Needs `FLEETWIRE_TEST_S3_ENDPOINT` (`scripts/emulators start s3` and
//! `eval "$(scripts/emulators env)"`); without it every test fails. Each test uses its own
//! bucket.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bytes::Bytes;

use common::{TestNode, eventually, record, test_config};
use fleetwire::backends::s3::S3Archive;
use fleetwire_actors::archive::{ArchiveConfig, ArchiveLine, HourPartition};
use fleetwire_actors::ports::{ArchiveSink, Checkpoint, SequenceNumber};
use serde_json::{Value, json};

/// Settings for a fresh bucket.
fn archive_config(prefix: &str) -> ArchiveConfig {
    ArchiveConfig {
        enabled: true,
        retry_backoff_initial_ms: 50,
        retry_backoff_max_ms: 200,
        ..common::cloud::s3_settings(prefix)
    }
}

async fn create_bucket(archive: &S3Archive, bucket: &str) {
    common::cloud::create_bucket(archive.client(), bucket).await;
}

/// Every object under `prefix`: key → body.
async fn objects(archive: &S3Archive, bucket: &str, prefix: &str) -> HashMap<String, String> {
    let mut found = HashMap::new();
    let Ok(listed) = archive
        .client()
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
    else {
        return found;
    };
    for object in listed.contents() {
        let key = object.key().unwrap().to_owned();
        let body = archive
            .client()
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        found.insert(key, String::from_utf8(body.to_vec()).unwrap());
    }
    found
}

#[tokio::test]
async fn the_sink_stores_whole_parts_under_the_prefix() {
    let config = archive_config("tenant-x/");
    let archive = S3Archive::connect(&config).await.unwrap();
    let error = archive
        .put_part("raw/part-a.jsonl", Bytes::from_static(b"{}\n"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("NoSuchBucket"), "{error}");
    create_bucket(&archive, &config.bucket).await;
    let key = "raw/year=2026/month=12/day=05/hour=02/part-a.jsonl";
    archive
        .put_part(key, Bytes::from_static(b"{\"a\":1}\n"))
        .await
        .unwrap();
    let stored = objects(&archive, &config.bucket, "").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[&format!("tenant-x/{key}")], "{\"a\":1}\n");
    assert_eq!(archive.describe(), format!("s3://{}/tenant-x/", config.bucket));
}

#[actix_rt::test]
async fn a_node_archives_to_s3_and_waits_out_a_failing_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(Some(dir.path().to_path_buf()));
    config.archive = ArchiveConfig {
        max_age_secs: 1,
        ..archive_config("fleet/")
    };
    config.history.enabled = false;
    let bucket = config.archive.bucket.clone();
    let reader = S3Archive::connect(&config.archive).await.unwrap();
    // The bucket does not exist yet: every part write fails and is retried.
    let t = TestNode::start(config).await;
    let batch: Vec<Value> = (0..40)
        .map(|i| record(&format!("car-3{}", i % 4), i, 70.0))
        .collect();
    let (status, reply) = t.ingest(&json!(batch)).await;
    assert_eq!(status, 200, "{reply}");
    let acked: Vec<(String, String)> = reply["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["shard_id"].as_str().unwrap().to_owned(),
                r["sequence_number"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let passed = |leases: &[fleetwire_actors::ports::Lease], (shard, seq): &(String, String)| {
        leases.iter().any(|l| {
            l.lease_key == *shard
                && matches!(&l.checkpoint, Checkpoint::Sequence(c) if *c >= SequenceNumber(seq.clone()))
        })
    };
    // Parts are 1 s old after a second; give the failing writes three seconds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let leases = t.node.ports().leases.list_leases().await.unwrap();
    assert!(
        acked.iter().all(|a| !passed(&leases, a)),
        "a checkpoint passed records whose part could not be written"
    );

    create_bucket(&reader, &bucket).await;
    eventually("every record checkpointed", || async {
        let leases = t.node.ports().leases.list_leases().await.unwrap();
        acked.iter().all(|a| passed(&leases, a))
    })
    .await;
    let stored = objects(&reader, &bucket, "fleet/raw/").await;
    let mut archived = BTreeSet::new();
    for (key, body) in &stored {
        let (dir, file) = key.rsplit_once('/').unwrap();
        assert!(file.starts_with("part-") && file.ends_with(".jsonl"), "{key}");
        for text in body.lines() {
            let line: ArchiveLine = serde_json::from_str(text).unwrap();
            assert_eq!(format!("fleet/{}", HourPartition::of(line.arrival).path()), dir);
            assert_eq!(line.tenant.as_ref().map(|t| t.as_str()), Some("default"));
            archived.insert((line.shard, line.sequence));
        }
    }
    for key in &acked {
        assert!(archived.contains(key), "{key:?} not archived");
    }
    t.shutdown(Duration::from_secs(10)).await;
}

#[actix_rt::test]
async fn shutdown_gives_up_on_a_dead_bucket_within_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(Some(dir.path().to_path_buf()));
    // The bucket is never created. Small parts and a one-batch queue: the archiver is stuck
    // retrying its first part, its queue is full and the shard consumers wait on it.
    config.archive = ArchiveConfig {
        max_bytes: 1024,
        queue_capacity: 1,
        ..archive_config("dead/")
    };
    config.history.enabled = false;
    config.consumer.max_records_per_get = 10;
    let t = TestNode::start(config).await;
    for round in 0..5u32 {
        let batch: Vec<Value> = (0..40)
            .map(|i| record(&format!("car-d{}", i % 8), round * 40 + i, 70.0))
            .collect();
        let (status, reply) = t.ingest(&json!(batch)).await;
        assert_eq!(status, 200, "{reply}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = tokio::time::timeout(Duration::from_secs(30), t.shutdown(Duration::from_secs(2)))
        .await
        .expect("shutdown ends although the archive cannot write");
    assert!(
        !report.drained,
        "nothing could be archived, so nothing was checkpointed"
    );
}
