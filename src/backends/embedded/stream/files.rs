//! Persistence (when `persist` and a data dir are set): the shard files' frame format,
//! the topology file, loading on open and compaction. The module docs of `stream` describe
//! the layout and the fsync policy.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use fleetwire_actors::ports::ShardId;

use super::shard::{Closed, Shard, ShardLog, Stored};
use super::topology::{Topology, initial_shards};
use super::{EmbeddedError, lock};

/// Sub-directory of `data_dir` that holds the stream's files.
pub(super) const STREAM_DIR: &str = "stream";
/// The shard topology inside [`STREAM_DIR`].
const TOPOLOGY_FILE: &str = "topology.json";
/// Version of [`TopologyFile`]; bumped on incompatible changes.
const TOPOLOGY_VERSION: u32 = 1;
/// Bytes of a frame besides key and data: length prefix, sequence, arrival, key length.
const FRAME_OVERHEAD: u64 = 4 + 8 + 8 + 2;
/// A shard file is compacted once it exceeds twice its live size plus this much, so small
/// shards are not rewritten over and over.
const COMPACTION_SLACK: u64 = 8 * 1024 * 1024;

pub(super) struct ShardFile {
    path: PathBuf,
    /// Shared so the fsync can run after the shard lock is released.
    pub(super) file: Arc<File>,
    /// Bytes in the file, to truncate a failed write and to decide on compaction.
    len: u64,
}

/// `topology.json`.
#[derive(Serialize, Deserialize)]
pub(super) struct TopologyFile {
    version: u32,
    pub(super) next_shard_number: u32,
    pub(super) shards: Vec<TopologyShard>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct TopologyShard {
    pub(super) shard_id: ShardId,
    pub(super) parent_shard_ids: Vec<ShardId>,
    pub(super) starting_hash_key: u128,
    pub(super) ending_hash_key: u128,
    pub(super) closed_at_ms: Option<i64>,
    pub(super) child_shard_ids: Vec<ShardId>,
}

impl ShardLog {
    /// Rewrites the shard file from memory once trimmed records make up most of it.
    pub(super) fn compact_if_bloated(&mut self) {
        let live = self.bytes + FRAME_OVERHEAD * self.records.len() as u64;
        let Some(file) = &self.file else { return };
        if file.len <= 2 * live + COMPACTION_SLACK {
            return;
        }
        let path = file.path.clone();
        match rewrite_shard_file(&path, self.records.iter()).and_then(|()| ShardFile::open(path.clone())) {
            Ok(compacted) => self.file = Some(compacted),
            // The old file still holds everything; compaction is retried on a later put.
            Err(e) => tracing::warn!(error = %e, path = %path.display(), "Stream file compaction failed."),
        }
    }
}

impl ShardFile {
    pub(super) fn open(path: PathBuf) -> Result<Self, EmbeddedError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| EmbeddedError::io(&path, e))?;
        let len = file.metadata().map_err(|e| EmbeddedError::io(&path, e))?.len();
        Ok(Self {
            path,
            file: Arc::new(file),
            len,
        })
    }

    /// Appends `buf` in one write; on failure cuts the file back so no torn frame stays in
    /// front of later appends.
    pub(super) fn append(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match (&*self.file).write_all(buf) {
            Ok(()) => {
                self.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                if let Err(trunc) = self.file.set_len(self.len) {
                    tracing::error!(error = %trunc, path = %self.path.display(), "Could not cut a failed stream write.");
                }
                Err(e)
            }
        }
    }
}

impl TopologyFile {
    pub(super) fn from_topology(topo: &Topology) -> Self {
        Self {
            version: TOPOLOGY_VERSION,
            next_shard_number: topo.next_shard_number,
            shards: topo
                .shards
                .values()
                .map(|s| TopologyShard::new(s, &lock(&s.log)))
                .collect(),
        }
    }
}

impl TopologyShard {
    pub(super) fn new(shard: &Shard, log: &ShardLog) -> Self {
        Self {
            shard_id: shard.id.clone(),
            parent_shard_ids: shard.parents.clone(),
            starting_hash_key: shard.starting_hash_key,
            ending_hash_key: shard.ending_hash_key,
            closed_at_ms: log.closed.as_ref().map(|c| c.at_ms),
            child_shard_ids: log
                .closed
                .as_ref()
                .map(|c| c.children.clone())
                .unwrap_or_default(),
        }
    }
}

pub(super) fn shard_path(dir: &Path, id: &ShardId) -> PathBuf {
    dir.join(format!("{id}.log"))
}

pub(super) fn encode_frame(buf: &mut Vec<u8>, r: &Stored) {
    let key_len = u16::try_from(r.key.len()).expect("partition keys are at most 256 chars (1 KiB)");
    let body_len = 8 + 8 + 2 + r.key.len() + r.data.len();
    let body_len = u32::try_from(body_len).expect("records are at most 1 MiB");
    buf.extend_from_slice(&body_len.to_le_bytes());
    buf.extend_from_slice(&r.seq.to_le_bytes());
    buf.extend_from_slice(&r.arrival_ms.to_le_bytes());
    buf.extend_from_slice(&key_len.to_le_bytes());
    buf.extend_from_slice(r.key.as_bytes());
    buf.extend_from_slice(&r.data);
}

/// Reads a shard file. A missing file is an empty shard; a frame cut short at the end is
/// dropped (a crash during a write); anything else malformed is an error.
fn read_shard_file(path: &Path) -> Result<Vec<Stored>, EmbeddedError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(EmbeddedError::io(path, e)),
    };
    let corrupt = |reason: String| EmbeddedError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let mut records: Vec<Stored> = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let Some(len) = bytes.get(pos..pos + 4) else { break };
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        let Some(body) = bytes.get(pos + 4..pos + 4 + len) else {
            break;
        };
        if len < 18 {
            return Err(corrupt(format!("frame at byte {pos} is too short ({len} bytes)")));
        }
        let seq = u64::from_le_bytes(body[0..8].try_into().expect("8 bytes"));
        let arrival_ms = i64::from_le_bytes(body[8..16].try_into().expect("8 bytes"));
        let key_len = u16::from_le_bytes(body[16..18].try_into().expect("2 bytes")) as usize;
        let Some(key) = body.get(18..18 + key_len) else {
            return Err(corrupt(format!("frame at byte {pos}: key runs past the frame")));
        };
        let key = String::from_utf8(key.to_vec())
            .map_err(|_| corrupt(format!("frame at byte {pos}: partition key is not UTF-8")))?;
        if records.last().is_some_and(|last| seq <= last.seq) {
            return Err(corrupt(format!(
                "frame at byte {pos}: sequence number {seq} goes backwards"
            )));
        }
        records.push(Stored {
            seq,
            key,
            data: Bytes::copy_from_slice(&body[18 + key_len..]),
            arrival_ms,
        });
        pos += 4 + len;
    }
    if pos < bytes.len() {
        tracing::warn!(path = %path.display(), dropped_bytes = bytes.len() - pos, "Dropped a partly written record at the end of a stream file.");
    }
    Ok(records)
}

/// Replaces a shard file with exactly `records`, atomically (temp file, fsync, rename).
fn rewrite_shard_file<'a>(
    path: &Path,
    records: impl Iterator<Item = &'a Stored>,
) -> Result<(), EmbeddedError> {
    let mut buf = Vec::new();
    for record in records {
        encode_frame(&mut buf, record);
    }
    write_atomically(path, &buf)
}

fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), EmbeddedError> {
    let tmp = path.with_extension("tmp");
    let io = |e| EmbeddedError::io(&tmp, e);
    let mut file = File::create(&tmp).map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(|e| EmbeddedError::io(path, e))?;
    // The rename itself is durable only once the directory is synced.
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| EmbeddedError::io(dir, e))?;
    }
    Ok(())
}

pub(super) fn write_topology(dir: &Path, topo: &Topology) -> Result<(), EmbeddedError> {
    write_topology_file(dir, &TopologyFile::from_topology(topo))
}

pub(super) fn write_topology_file(dir: &Path, file: &TopologyFile) -> Result<(), EmbeddedError> {
    let json = serde_json::to_vec_pretty(file).expect("the topology always serializes");
    write_atomically(&dir.join(TOPOLOGY_FILE), &json)
}

/// Loads (or creates) the persisted stream: topology, records newer than `horizon`, each
/// file compacted. Returns the topology and the highest sequence number seen.
pub(super) fn load(dir: &Path, shards: u32, horizon: i64) -> Result<(Topology, u64), EmbeddedError> {
    fs::create_dir_all(dir).map_err(|e| EmbeddedError::io(dir, e))?;
    let topology_path = dir.join(TOPOLOGY_FILE);
    let saved: Option<TopologyFile> = match fs::read(&topology_path) {
        Ok(json) => Some(serde_json::from_slice(&json).map_err(|e| EmbeddedError::Corrupt {
            path: topology_path.clone(),
            reason: e.to_string(),
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(EmbeddedError::io(&topology_path, e)),
    };
    let mut last_seq = 0u64;
    let mut load_log = |id: &ShardId, closed: Option<Closed>| -> Result<ShardLog, EmbeddedError> {
        let path = shard_path(dir, id);
        let records: VecDeque<Stored> = read_shard_file(&path)?.into();
        last_seq = last_seq.max(records.back().map_or(0, |r| r.seq));
        let mut log = ShardLog {
            bytes: records.iter().map(Stored::size).sum(),
            records,
            closed,
            file: None,
        };
        log.trim(horizon);
        if log.closed.is_some() && log.records.is_empty() {
            // Nothing left to read and it takes no writes: the file has no purpose.
            match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(EmbeddedError::io(&path, e));
                }
                _ => {}
            }
        } else {
            rewrite_shard_file(&path, log.records.iter())?;
        }
        if log.closed.is_none() {
            log.file = Some(ShardFile::open(path)?);
        }
        Ok(log)
    };

    let topology = match saved {
        None => Topology::new(initial_shards(shards, |id| load_log(id, None))?),
        Some(file) => {
            if file.version != TOPOLOGY_VERSION {
                return Err(EmbeddedError::Corrupt {
                    path: topology_path,
                    reason: format!("unsupported topology version {}", file.version),
                });
            }
            let mut list = Vec::with_capacity(file.shards.len());
            for s in file.shards {
                let closed = s.closed_at_ms.map(|at_ms| Closed {
                    at_ms,
                    children: s.child_shard_ids,
                });
                list.push(Shard {
                    log: Mutex::new(load_log(&s.shard_id, closed)?),
                    id: s.shard_id,
                    parents: s.parent_shard_ids,
                    starting_hash_key: s.starting_hash_key,
                    ending_hash_key: s.ending_hash_key,
                    added: tokio::sync::watch::Sender::new(0),
                });
            }
            let mut topo = Topology::new(list);
            topo.next_shard_number = file.next_shard_number;
            topo
        }
    };
    if topology.routes.is_empty() {
        return Err(EmbeddedError::Corrupt {
            path: topology_path,
            reason: "no open shard".into(),
        });
    }
    Ok((topology, last_seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_files_round_trip_and_drop_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let records = [
            Stored {
                seq: 5,
                key: "k".into(),
                data: Bytes::from_static(b"one"),
                arrival_ms: 10,
            },
            Stored {
                seq: 9,
                key: "ké".into(),
                data: Bytes::new(),
                arrival_ms: 11,
            },
        ];
        rewrite_shard_file(&path, records.iter()).unwrap();
        // Half of a third frame, as a crash mid-write leaves it.
        let mut torn = Vec::new();
        encode_frame(
            &mut torn,
            &Stored {
                seq: 10,
                key: "x".into(),
                data: Bytes::from_static(b"abc"),
                arrival_ms: 12,
            },
        );
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&torn[..torn.len() / 2]).unwrap();

        let back = read_shard_file(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(
            (
                back[0].seq,
                back[0].key.as_str(),
                &back[0].data[..],
                back[0].arrival_ms
            ),
            (5, "k", &b"one"[..], 10)
        );
        assert_eq!(
            (back[1].seq, back[1].key.as_str(), back[1].data.len()),
            (9, "ké", 0)
        );
    }

    #[test]
    fn shard_files_with_backwards_sequences_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let records = [
            Stored {
                seq: 9,
                key: "k".into(),
                data: Bytes::new(),
                arrival_ms: 1,
            },
            Stored {
                seq: 5,
                key: "k".into(),
                data: Bytes::new(),
                arrival_ms: 1,
            },
        ];
        rewrite_shard_file(&path, records.iter()).unwrap();
        assert!(matches!(
            read_shard_file(&path),
            Err(EmbeddedError::Corrupt { .. })
        ));
    }
}
