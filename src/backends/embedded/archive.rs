//! [`DirectoryArchive`]: the archive port on a local directory (embedded mode).
//!
//! A part is written under a hidden in-progress name (`.part-<uuid>.jsonl.tmp`), fsync'd,
//! renamed to its final name and the directory fsync'd: a reader (or a crash) never sees a
//! half-written `part-*.jsonl`. A `.tmp` file left by a crash holds records that were
//! never acknowledged (the shard checkpoint did not pass them, so they are archived again);
//! it may be deleted.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use fleetwire_actors::ports::{ArchiveError, ArchiveSink};

/// Archive parts as files under a root directory.
#[derive(Debug, Clone)]
pub struct DirectoryArchive {
    /// The directory holding `raw/…`.
    root: PathBuf,
}

impl DirectoryArchive {
    /// Parts go under `root` (created on the first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
}

/// Writes `body` to `path` durably: temporary name, fsync, rename, fsync of the directory.
fn write_durably(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("a part key has a directory"))?;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("a part key has a file name"))?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(body)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    // The rename is durable only once the directory entry is.
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl ArchiveSink for DirectoryArchive {
    async fn put_part(&self, key: &str, body: Bytes) -> Result<(), ArchiveError> {
        if key.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
            return Err(ArchiveError::Unavailable(format!("invalid part key {key:?}")));
        }
        let path = self.root.join(key);
        // File I/O and fsync block: off the actor's thread.
        tokio::task::spawn_blocking(move || write_durably(&path, &body))
            .await
            .map_err(|e| ArchiveError::Unavailable(e.to_string()))?
            .map_err(|e| ArchiveError::Unavailable(format!("{key}: {e}")))
    }

    fn describe(&self) -> String {
        format!("directory {}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_part_appears_whole_under_its_final_name_only() {
        let dir = tempfile::tempdir().unwrap();
        let archive = DirectoryArchive::new(dir.path());
        let key = "raw/year=2026/month=12/day=05/hour=02/part-x.jsonl";
        archive.put_part(key, Bytes::from_static(b"{}\n")).await.unwrap();
        let part_dir = dir.path().join("raw/year=2026/month=12/day=05/hour=02");
        let names: Vec<String> = std::fs::read_dir(&part_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["part-x.jsonl"], "no temporary file is left");
        assert_eq!(std::fs::read(part_dir.join("part-x.jsonl")).unwrap(), b"{}\n");
        // A rewrite of the same key (a retry) replaces it.
        archive.put_part(key, Bytes::from_static(b"{}\n")).await.unwrap();
        assert!(archive.put_part("raw/../x", Bytes::new()).await.is_err());
    }

    #[tokio::test]
    async fn an_unwritable_root_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let archive = DirectoryArchive::new(&file);
        let error = archive
            .put_part("raw/part-x.jsonl", Bytes::new())
            .await
            .unwrap_err();
        assert!(matches!(error, ArchiveError::Unavailable(_)));
    }
}
