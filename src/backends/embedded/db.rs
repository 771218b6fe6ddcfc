//! Opening the one redb database shared by the lease store and the state store.

use std::path::Path;
use std::sync::Arc;

use redb::Database;
use redb::backends::InMemoryBackend;

use super::{EmbeddedError, redb_err};

/// File name of the database inside `data_dir`.
pub const DATABASE_FILE_NAME: &str = "fleetwire.redb";

/// Opens (or creates) the shared redb database.
///
/// `None` keeps it in memory (tests, throw-away runs); `Some(dir)` creates `dir` if needed
/// and uses `dir/fleetwire.redb`. One `Database` serves both stores because redb allows a
/// single writer per file anyway, and one file is one thing to back up.
///
/// Blocking: call it at startup, not from a busy async task.
pub fn open_database(data_dir: Option<&Path>) -> Result<Arc<Database>, EmbeddedError> {
    let db = match data_dir {
        None => Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .map_err(redb_err)?,
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| EmbeddedError::io(dir, e))?;
            Database::create(dir.join(DATABASE_FILE_NAME)).map_err(redb_err)?
        }
    };
    Ok(Arc::new(db))
}
