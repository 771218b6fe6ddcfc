//! The raw archive on a whole node (local directory backend): every record acknowledged by
//! ingest is found in the part files at least once, by (shard, sequence number), and a
//! shard checkpoint never passes a record whose part was not yet written.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{TestNode, eventually, record, test_config};
use fleetwire_actors::archive::{ArchiveLine, HourPartition};
use fleetwire_actors::ports::{Checkpoint, SequenceNumber};
use serde_json::{Value, json};

fn config(dir: &Path, max_age_secs: u64) -> fleetwire::config::Config {
    let mut config = test_config(Some(dir.to_path_buf()));
    config.archive.enabled = true;
    config.archive.max_age_secs = max_age_secs;
    // Only the archive holds checkpoints back here (history buckets would too).
    config.history.enabled = false;
    config
}

/// Every file under `root` (none when it does not exist).
fn files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// Every `*.jsonl` under `root`, with its path relative to `root`.
fn part_files(root: &Path) -> Vec<(String, PathBuf)> {
    files(root)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .map(|p| (p.strip_prefix(root).unwrap().to_string_lossy().into_owned(), p))
        .collect()
}

/// Every archived line, checked against the part's partition (hour of arrival).
fn archived(root: &Path) -> Vec<ArchiveLine> {
    let mut lines = Vec::new();
    for (relative, path) in part_files(root) {
        let (dir, file) = relative.rsplit_once('/').unwrap();
        assert!(
            file.starts_with("part-") && uuid::Uuid::parse_str(&file[5..file.len() - 6]).is_ok(),
            "{relative}"
        );
        for text in std::fs::read_to_string(&path).unwrap().lines() {
            let line: ArchiveLine =
                serde_json::from_str(text).unwrap_or_else(|e| panic!("{relative}: {e}: {text}"));
            assert_eq!(HourPartition::of(line.arrival).path(), dir, "{relative}");
            lines.push(line);
        }
    }
    lines
}

/// The (shard, sequence) of every record the ingest reply acknowledged.
fn acknowledged(reply: &Value) -> Vec<(String, String)> {
    reply["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["status"], "accepted", "{r}");
            (
                r["shard_id"].as_str().unwrap().to_owned(),
                r["sequence_number"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn checkpoints(t: &TestNode) -> HashMap<String, Checkpoint> {
    t.node
        .ports()
        .leases
        .list_leases()
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.lease_key, l.checkpoint))
        .collect()
}

fn passed(checkpoint: Option<&Checkpoint>, sequence: &str) -> bool {
    match checkpoint {
        Some(Checkpoint::Sequence(c)) => *c >= SequenceNumber(sequence.to_owned()),
        Some(Checkpoint::ShardEnd) => true,
        _ => false,
    }
}

#[actix_rt::test]
async fn every_record_is_archived_and_checkpoints_wait_for_their_parts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    // Parts rotate by age only (6 s): long enough to see checkpoints held back.
    let t = TestNode::start(config(dir.path(), 6)).await;
    assert_eq!(t.actor_count("archiver").await, 1, "listed in /admin/actors");
    let mut acked = Vec::new();
    for round in 0..4u32 {
        let batch: Vec<Value> = (0..50)
            .map(|i| record(&format!("car-a{}", i % 10), round * 50 + i, 50.0))
            .collect();
        let (status, reply) = t.ingest(&json!(batch)).await;
        assert_eq!(status, 200, "{reply}");
        acked.extend(acknowledged(&reply));
    }

    // The records are applied (and the vehicles' state saved) long before the first part
    // ages: meanwhile the checkpoints must stay behind.
    eventually("vehicles applied", || async {
        t.get(&format!("{}/v1/vehicles", t.api)).await.1["vehicles"]
            .as_array()
            .is_some_and(|v| v.len() == 10)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = checkpoints(&t).await;
    assert!(part_files(&root).is_empty(), "no part is 6 s old yet");
    assert!(
        acked.iter().all(|(s, q)| !passed(held.get(s), q)),
        "a checkpoint passed records before any part was written: {held:?}"
    );

    // Checkpoints read before the files: whatever they passed must already be archived.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let before = checkpoints(&t).await;
        let archived_now: BTreeSet<(String, String)> = archived(&root)
            .into_iter()
            .map(|l| (l.shard, l.sequence))
            .collect();
        for (shard, sequence) in &acked {
            if passed(before.get(shard), sequence) {
                assert!(
                    archived_now.contains(&(shard.clone(), sequence.clone())),
                    "checkpoint {:?} of {shard} passed {sequence}, which is not archived yet",
                    before.get(shard)
                );
            }
        }
        if acked.iter().all(|(s, q)| passed(before.get(s), q)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "checkpoints never reached every record"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let lines = archived(&root);
    let by_source: BTreeMap<(String, String), &ArchiveLine> = lines
        .iter()
        .map(|l| ((l.shard.clone(), l.sequence.clone()), l))
        .collect();
    for key in &acked {
        let line = by_source
            .get(key)
            .unwrap_or_else(|| panic!("{key:?} not archived"));
        assert_eq!(line.stream, "embedded");
        assert_eq!(line.tenant.as_ref().map(|t| t.as_str()), Some("default"));
        assert_eq!(line.vehicle_id, line.record.vehicle_id);
        assert_eq!(line.timestamp, line.record.timestamp);
        assert!(line.vehicle_id.as_str().starts_with("car-a"));
    }
    assert_eq!(
        by_source.len(),
        acked.len(),
        "only acknowledged records are archived"
    );
    t.shutdown(Duration::from_secs(10)).await;
}

#[actix_rt::test]
async fn shutdown_writes_open_parts_before_the_final_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    // Parts would age only after an hour: only the drain and shutdown write them.
    let t = TestNode::start(config(dir.path(), 3600)).await;
    let batch: Vec<Value> = (0..30)
        .map(|i| record(&format!("car-s{}", i % 3), i, 60.0))
        .collect();
    let (status, reply) = t.ingest(&json!(batch)).await;
    assert_eq!(status, 200, "{reply}");
    let acked = acknowledged(&reply);
    // Routed (visible over REST) but not archived: checkpoints stay behind.
    eventually("vehicles applied", || async {
        t.get(&format!("{}/v1/vehicles", t.api)).await.1["vehicles"]
            .as_array()
            .is_some_and(|v| v.len() == 3)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(part_files(&root).is_empty());
    let held = checkpoints(&t).await;
    assert!(
        acked.iter().all(|(s, q)| !passed(held.get(s), q)),
        "a checkpoint passed unarchived records: {held:?}"
    );

    let report = t.shutdown(Duration::from_secs(10)).await;
    assert!(
        report.drained,
        "the drain flushes the archive so checkpoints reach every record"
    );
    let archived_now: BTreeSet<(String, String)> = archived(&root)
        .into_iter()
        .map(|l| (l.shard, l.sequence))
        .collect();
    for key in &acked {
        assert!(archived_now.contains(key), "{key:?} not archived at shutdown");
    }
    let leftovers: Vec<_> = files(&root)
        .into_iter()
        .filter(|p| p.extension().is_none_or(|e| e != "jsonl"))
        .collect();
    assert!(leftovers.is_empty(), "no in-progress file is left: {leftovers:?}");
}
