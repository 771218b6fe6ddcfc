//! The one redb database every embedded store shares: opening it, creating a store's tables
//! at startup ([`init`]), running a store's calls off the async workers ([`StoreDb`]), and
//! the tenant range scan of tables keyed by `(tenant, id)` ([`tenant_rows`]).

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use redb::backends::InMemoryBackend;
use redb::{Database, Key, ReadableTable, TableDefinition, Value, WriteTransaction};

use fleetwire_actors::ports::StoreError;

use super::{EmbeddedError, redb_err};

/// File name of the database inside `data_dir`.
pub const DATABASE_FILE_NAME: &str = "fleetwire.redb";

/// Opens (or creates) the shared redb database.
///
/// `None` keeps it in memory (tests, throw-away runs); `Some(dir)` creates `dir` if needed
/// and uses `dir/fleetwire.redb`. One `Database` serves every store because redb allows a
/// single writer per file anyway, and one file is one thing to back up.
///
/// Blocking: call it at startup, not from a busy async task. The page cache gets the
/// default ceiling of `embedded.cache_mib`; the node uses [`open_database_with_cache`].
pub fn open_database(data_dir: Option<&Path>) -> Result<Arc<Database>, EmbeddedError> {
    let mib = super::EmbeddedConfig::default().cache_mib;
    open_database_with_cache(data_dir, mib)
}

/// [`open_database`] with a page cache ceiling of `cache_mib` MiB (`embedded.cache_mib`).
pub fn open_database_with_cache(
    data_dir: Option<&Path>,
    cache_mib: u64,
) -> Result<Arc<Database>, EmbeddedError> {
    let mut builder = Database::builder();
    builder.set_cache_size(usize::try_from(cache_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX));
    let db = match data_dir {
        None => builder
            .create_with_backend(InMemoryBackend::new())
            .map_err(redb_err)?,
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| EmbeddedError::io(dir, e))?;
            builder.create(dir.join(DATABASE_FILE_NAME)).map_err(redb_err)?
        }
    };
    Ok(Arc::new(db))
}

/// Runs a store's startup work (creating its tables with [`create`], so reads never meet a
/// missing table; tidying them) in one write transaction and commits it. Blocking: call at
/// startup.
pub(crate) fn init<R>(
    db: &Database,
    work: impl FnOnce(&WriteTransaction) -> Result<R, EmbeddedError>,
) -> Result<R, EmbeddedError> {
    let txn = db.begin_write().map_err(redb_err)?;
    let out = work(&txn)?;
    txn.commit().map_err(redb_err)?;
    Ok(out)
}

/// Creates `table` unless it exists.
pub(crate) fn create<K: Key + 'static, V: Value + 'static>(
    txn: &WriteTransaction,
    table: TableDefinition<K, V>,
) -> Result<(), EmbeddedError> {
    txn.open_table(table).map(drop).map_err(redb_err)
}

/// A store's handle on the shared database. redb calls block and a write commit fsyncs, so
/// every call runs on tokio's blocking pool; a task that panicked or was cancelled becomes
/// the store's own error type `E`. Cheap to clone.
pub(crate) struct StoreDb<E> {
    /// The shared database (see [`open_database`]).
    db: Arc<Database>,
    /// The store's name in a failed task's message (`"registry"`, `"vault"`, …).
    name: &'static str,
    /// Builds the store's error from that message.
    error: fn(String) -> E,
}

// By hand: a derive would ask for `E: Clone`, which the fields do not need.
impl<E> Clone for StoreDb<E> {
    fn clone(&self) -> Self {
        Self {
            db: Arc::clone(&self.db),
            name: self.name,
            error: self.error,
        }
    }
}

impl<E: Send + 'static> StoreDb<E> {
    /// Wraps the shared database for the store `name` (no I/O).
    pub(crate) fn new(db: Arc<Database>, name: &'static str, error: fn(String) -> E) -> Self {
        Self { db, name, error }
    }

    /// Runs `f` with the database on the blocking pool.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, E> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        let (name, error) = (self.name, self.error);
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| error(format!("{name} task failed: {e}")))?
    }
}

/// Maps a redb failure onto the ports' [`StoreError`].
pub(crate) fn unavailable(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Unavailable(e.into().to_string())
}

/// Up to `limit` rows of `tenant` from a table keyed by `(tenant, id)`, in id order, from
/// the id after `after` on; `item` turns a row's id and value into what the caller lists.
/// The tenant leads the key, so the scan is one range and stops at the next tenant.
pub(crate) fn tenant_rows<V, T>(
    table: &impl ReadableTable<(&'static str, &'static str), V>,
    tenant: &str,
    after: Option<&str>,
    limit: usize,
    mut item: impl FnMut(&str, V::SelfType<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError>
where
    V: Value + 'static,
{
    let lower = match after {
        Some(after) => Bound::Excluded((tenant, after)),
        None => Bound::Included((tenant, "")),
    };
    let mut out = Vec::with_capacity(limit.min(1024));
    for row in table
        .range::<(&str, &str)>((lower, Bound::Unbounded))
        .map_err(unavailable)?
    {
        if out.len() >= limit {
            break;
        }
        let (key, value) = row.map_err(unavailable)?;
        let (row_tenant, id) = key.value();
        if row_tenant != tenant {
            break;
        }
        out.push(item(id, value.value())?);
    }
    Ok(out)
}
