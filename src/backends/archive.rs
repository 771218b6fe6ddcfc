//! Builds the raw archive from `[archive]`: its sink (a local directory or S3) and the
//! `Archiver` actor in front of it (`fleetwire_actors::archive`).

use std::sync::Arc;

use anyhow::Context as _;
use fleetwire_actors::archive::{ArchiveBackend, ArchiveHandle, Archiver};
use fleetwire_actors::ports::ArchiveSink;
use fleetwire_actors::registry::ActorRegistry;
use tracing::info;

use crate::backends::embedded::DirectoryArchive;
use crate::backends::s3::S3Archive;
use crate::config::Config;

/// The archiver, or `None` when `archive.enabled` is false.
pub async fn start_archive(
    config: &Config,
    registry: &ActorRegistry,
) -> anyhow::Result<Option<ArchiveHandle>> {
    let c = &config.archive;
    if !c.enabled {
        return Ok(None);
    }
    let sink: Arc<dyn ArchiveSink> = match c.backend {
        ArchiveBackend::Directory => {
            let root = c
                .directory
                .clone()
                .or_else(|| config.embedded.data_dir.as_ref().map(|d| d.join("archive")))
                .context("archive.directory (or embedded.data_dir) must be set")?;
            Arc::new(DirectoryArchive::new(root))
        }
        ArchiveBackend::S3 => Arc::new(
            S3Archive::connect(c)
                .await
                .map_err(anyhow::Error::msg)
                .context("configuring the S3 archive")?,
        ),
    };
    info!(sink = %sink.describe(), max_bytes = c.max_bytes, max_age_secs = c.max_age_secs, "Raw archive enabled.");
    Ok(Some(Archiver::start(c, sink, registry.clone())))
}
