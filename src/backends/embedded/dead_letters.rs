//! [`RedbDeadLetters`]: the durable [`DeadLetterSink`] in the node's redb database, the
//! embedded twin of the DynamoDB `dead_letters` table.
//!
//! One table, `dead_letters`: key `(tenant, at_ms, hash)` (the [`DeadLetterId`]), so a
//! tenant's letters sort by time and a day is one key range read backwards for "newest
//! first". Value: a little-endian `u32` header length, the header as JSON (everything but
//! the payload), then the payload bytes as they are.
//!
//! Payloads are kept whole, never cut (unlike DynamoDB's 400 KB items, a redb value has no
//! size limit that matters here): the largest is bounded by what can be ingested at all,
//! ≤ 1 MiB (a Kinesis record, `http.max_body_bytes`, Tesla's 1,000,000-byte frames), so
//! every letter can be replayed. Rows written before payloads were kept whole may hold a
//! cut payload; they read back `truncated`.
//!
//! Expiry: reads skip letters past `expires_at`; expired rows are deleted when the store
//! opens (every node start). A healthy system writes none, so a node running for months
//! holds at most a month of letters more than it needs to.
//!
//! [`InMemoryDeadLetters`] keeps the last N letters in process only: for tests of the
//! producer alone.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, NaiveTime, Utc};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use fleetwire_actors::model::TenantId;
use fleetwire_actors::producer::{
    DeadLetter, DeadLetterError, DeadLetterId, DeadLetterPage, DeadLetterQuery, DeadLetterSink,
    DeadLetterSource, StoredDeadLetter,
};
use fleetwire_actors::telemetry::DEAD_LETTERS_STORED_TOTAL;

use super::db::{self, StoreDb};
use super::{EmbeddedError, redb_err};

/// `(tenant, at_ms, hash)` → header length, header JSON, payload.
const DEAD_LETTERS: TableDefinition<(&str, u64, u64), &[u8]> = TableDefinition::new("dead_letters");

/// The durable dead-letter store on the shared redb database. Cheap to clone.
#[derive(Clone)]
pub struct RedbDeadLetters {
    /// The shared database, run on the blocking pool.
    db: StoreDb<DeadLetterError>,
}

impl std::fmt::Debug for RedbDeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbDeadLetters").finish_non_exhaustive()
    }
}

/// Everything of a [`StoredDeadLetter`] but the payload.
#[derive(Serialize, Deserialize)]
struct Header {
    reason: String,
    detail: String,
    source: Option<DeadLetterSource>,
    partition_key: String,
    payload_bytes: u64,
    /// Absent in rows written before cuts were marked; see `decode`.
    #[serde(default)]
    truncated: bool,
    received_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

fn encode(letter: &StoredDeadLetter) -> Vec<u8> {
    let header = serde_json::to_vec(&Header {
        reason: letter.reason.clone(),
        detail: letter.detail.clone(),
        source: letter.source.clone(),
        partition_key: letter.partition_key.clone(),
        payload_bytes: letter.payload_bytes,
        truncated: letter.truncated,
        received_at: letter.received_at,
        expires_at: letter.expires_at,
    })
    .expect("a dead-letter header always serializes");
    let mut out = Vec::with_capacity(4 + header.len() + letter.payload.len());
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&letter.payload);
    out
}

fn decode(id: DeadLetterId, bytes: &[u8]) -> Result<StoredDeadLetter, DeadLetterError> {
    let corrupt = |why: &str| DeadLetterError(format!("dead letter {id}: corrupt row: {why}"));
    let len = bytes
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or_else(|| corrupt("short"))?;
    let header = bytes.get(4..4 + len).ok_or_else(|| corrupt("short header"))?;
    let header: Header = serde_json::from_slice(header).map_err(|e| corrupt(&e.to_string()))?;
    let payload = Bytes::copy_from_slice(&bytes[4 + len..]);
    Ok(StoredDeadLetter {
        id,
        reason: header.reason,
        detail: header.detail,
        source: header.source,
        partition_key: header.partition_key,
        // Older rows were cut without the flag: shorter than their size means cut.
        truncated: header.truncated || (payload.len() as u64) < header.payload_bytes,
        payload,
        payload_bytes: header.payload_bytes,
        received_at: header.received_at,
        expires_at: header.expires_at,
    })
}

fn failed(e: impl Into<redb::Error>) -> DeadLetterError {
    DeadLetterError(format!("redb: {}", e.into()))
}

/// The ms range `[start, end)` of a UTC day.
pub(crate) fn day_range_ms(day: chrono::NaiveDate) -> (u64, u64) {
    let start = day.and_time(NaiveTime::MIN).and_utc().timestamp_millis().max(0) as u64;
    (start, start + 86_400_000)
}

impl RedbDeadLetters {
    /// Creates the table if needed and deletes expired letters. Blocking: call at startup.
    pub fn new(db: Arc<Database>) -> Result<Self, EmbeddedError> {
        let now = Utc::now();
        db::init(&db, |txn| {
            let mut table = txn.open_table(DEAD_LETTERS).map_err(redb_err)?;
            let mut expired = 0usize;
            table
                .retain(|(tenant, at_ms, hash), value| {
                    let id = id_of(tenant, at_ms, hash);
                    let keep = decode(id, value).is_ok_and(|l| l.expires_at > now);
                    expired += usize::from(!keep);
                    keep
                })
                .map_err(redb_err)?;
            if expired > 0 {
                tracing::info!(expired, "Deleted expired dead letters.");
            }
            Ok(())
        })?;
        Ok(Self {
            db: StoreDb::new(db, "dead-letter", DeadLetterError),
        })
    }
}

fn id_of(tenant: &str, at_ms: u64, hash: u64) -> DeadLetterId {
    DeadLetterId {
        // Keys are only ever written from valid ids.
        tenant: TenantId::parse(tenant).unwrap_or_default(),
        at_ms,
        hash,
    }
}

#[async_trait]
impl DeadLetterSink for RedbDeadLetters {
    async fn put(&self, letters: Vec<DeadLetter>) -> Result<(), DeadLetterError> {
        let now = Utc::now();
        let stored: Vec<StoredDeadLetter> = letters.into_iter().map(|l| l.into_stored(now)).collect();
        let counts = count_by_reason(&stored);
        StoreDb::run(&self.db, move |db| {
            let txn = db.begin_write().map_err(failed)?;
            {
                let mut table = txn.open_table(DEAD_LETTERS).map_err(failed)?;
                for letter in &stored {
                    let id = &letter.id;
                    table
                        .insert((id.tenant.as_str(), id.at_ms, id.hash), encode(letter).as_slice())
                        .map_err(failed)?;
                }
            }
            txn.commit().map_err(failed)
        })
        .await?;
        record_stored(counts);
        Ok(())
    }

    async fn list(&self, query: &DeadLetterQuery) -> Result<DeadLetterPage, DeadLetterError> {
        let query = query.clone();
        StoreDb::run(&self.db, move |db| {
            let now = Utc::now();
            let txn = db.begin_read().map_err(failed)?;
            let table = txn.open_table(DEAD_LETTERS).map_err(failed)?;
            let tenant = query.tenant.as_str();
            let (start, end) = day_range_ms(query.day);
            let upper = match query.after {
                Some(c) if (c.at_ms, c.hash) < (end, 0) => (c.at_ms, c.hash),
                _ => (end, 0),
            };
            let mut letters = Vec::new();
            let mut more = false;
            if upper <= (start, 0) {
                return Ok(DeadLetterPage::default());
            }
            for row in table
                .range((tenant, start, 0)..(tenant, upper.0, upper.1))
                .map_err(failed)?
                .rev()
            {
                let (key, value) = row.map_err(failed)?;
                let (_, at_ms, hash) = key.value();
                let letter = decode(id_of(tenant, at_ms, hash), value.value())?;
                if letter.expires_at <= now || query.reason.as_ref().is_some_and(|r| *r != letter.reason) {
                    continue;
                }
                if letters.len() == query.limit.max(1) {
                    more = true;
                    break;
                }
                letters.push(letter);
            }
            let next = more
                .then(|| letters.last().map(|l: &StoredDeadLetter| l.id.cursor()))
                .flatten();
            Ok(DeadLetterPage { letters, next })
        })
        .await
    }

    async fn get(&self, id: &DeadLetterId) -> Result<Option<StoredDeadLetter>, DeadLetterError> {
        let id = id.clone();
        StoreDb::run(&self.db, move |db| {
            let txn = db.begin_read().map_err(failed)?;
            let table = txn.open_table(DEAD_LETTERS).map_err(failed)?;
            let Some(row) = table
                .get((id.tenant.as_str(), id.at_ms, id.hash))
                .map_err(failed)?
            else {
                return Ok(None);
            };
            let letter = decode(id, row.value())?;
            Ok((letter.expires_at > Utc::now()).then_some(letter))
        })
        .await
    }

    async fn delete(&self, id: &DeadLetterId) -> Result<bool, DeadLetterError> {
        let id = id.clone();
        StoreDb::run(&self.db, move |db| {
            let txn = db.begin_write().map_err(failed)?;
            let removed = {
                let mut table = txn.open_table(DEAD_LETTERS).map_err(failed)?;
                table
                    .remove((id.tenant.as_str(), id.at_ms, id.hash))
                    .map_err(failed)?
                    .is_some()
            };
            txn.commit().map_err(failed)?;
            Ok(removed)
        })
        .await
    }

    async fn delete_unchanged(&self, letter: &StoredDeadLetter) -> Result<bool, DeadLetterError> {
        let (id, received_at) = (letter.id.clone(), letter.received_at);
        StoreDb::run(&self.db, move |db| {
            let txn = db.begin_write().map_err(failed)?;
            let removed = {
                let mut table = txn.open_table(DEAD_LETTERS).map_err(failed)?;
                let key = (id.tenant.as_str(), id.at_ms, id.hash);
                let current = match table.get(key).map_err(failed)? {
                    Some(row) => Some(decode(id.clone(), row.value())?.received_at),
                    None => None,
                };
                if current == Some(received_at) {
                    table.remove(key).map_err(failed)?;
                    true
                } else {
                    false
                }
            };
            txn.commit().map_err(failed)?;
            Ok(removed)
        })
        .await
    }
}

/// Letters per reason label, for [`DEAD_LETTERS_STORED_TOTAL`].
pub(crate) fn count_by_reason(letters: &[StoredDeadLetter]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for l in letters {
        *counts.entry(l.reason.clone()).or_default() += 1;
    }
    counts
}

/// Counts letters a sink has stored, in the metric and in one log line per reason (the
/// log line feeds the CloudWatch metric filter of `terraform/modules/cloudwatch`, which
/// matches its message text and reads `letters`).
pub(crate) fn record_stored(counts: BTreeMap<String, u64>) {
    for (reason, n) in counts {
        tracing::info!(reason = %reason, letters = n, "Dead letters stored.");
        metrics::counter!(DEAD_LETTERS_STORED_TOTAL, "reason" => reason).increment(n);
    }
}

/// How many dead letters [`InMemoryDeadLetters`] keeps by default.
pub const DEFAULT_DEAD_LETTER_CAPACITY: usize = 1000;

/// The last `capacity` dead letters, in process only (nothing survives a restart): a sink
/// for tests of the producer on its own. Nodes use [`RedbDeadLetters`] or DynamoDB.
/// Payloads are kept whole, so it holds at most `capacity` × 1 MiB.
#[derive(Debug)]
pub struct InMemoryDeadLetters {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    recent: VecDeque<StoredDeadLetter>,
    total: u64,
    by_reason: BTreeMap<String, u64>,
}

/// A copy of what an [`InMemoryDeadLetters`] holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeadLetterSummary {
    /// Letters received since start (also those no longer kept).
    pub total: u64,
    /// `total` by reason label.
    pub by_reason: BTreeMap<String, u64>,
    /// The most recent letters, oldest first.
    pub recent: Vec<StoredDeadLetter>,
}

impl InMemoryDeadLetters {
    /// A sink keeping the last `capacity` letters (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
        }
    }

    /// What it holds now.
    pub fn summary(&self) -> DeadLetterSummary {
        let state = self.lock();
        DeadLetterSummary {
            total: state.total,
            by_reason: state.by_reason.clone(),
            recent: state.recent.iter().cloned().collect(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update completes before anything that could panic; the data stays usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for InMemoryDeadLetters {
    fn default() -> Self {
        Self::new(DEFAULT_DEAD_LETTER_CAPACITY)
    }
}

#[async_trait]
impl DeadLetterSink for InMemoryDeadLetters {
    async fn put(&self, letters: Vec<DeadLetter>) -> Result<(), DeadLetterError> {
        let now = Utc::now();
        let mut state = self.lock();
        for letter in letters {
            let letter = letter.into_stored(now);
            state.total += 1;
            *state.by_reason.entry(letter.reason.clone()).or_default() += 1;
            // A rewrite of a kept letter replaces it, as in the durable stores.
            state.recent.retain(|l| l.id != letter.id);
            if state.recent.len() == self.capacity {
                state.recent.pop_front();
            }
            state.recent.push_back(letter);
        }
        Ok(())
    }

    async fn list(&self, query: &DeadLetterQuery) -> Result<DeadLetterPage, DeadLetterError> {
        let state = self.lock();
        let (start, end) = day_range_ms(query.day);
        let mut matching: Vec<&StoredDeadLetter> = state
            .recent
            .iter()
            .filter(|l| {
                l.id.tenant == query.tenant
                    && (start..end).contains(&l.id.at_ms)
                    && query.after.is_none_or(|c| l.id.cursor() < c)
                    && query.reason.as_ref().is_none_or(|r| *r == l.reason)
            })
            .collect();
        matching.sort_by_key(|l| std::cmp::Reverse(l.id.cursor()));
        let limit = query.limit.max(1);
        let more = matching.len() > limit;
        let letters: Vec<StoredDeadLetter> = matching.into_iter().take(limit).cloned().collect();
        let next = more.then(|| letters.last().map(|l| l.id.cursor())).flatten();
        Ok(DeadLetterPage { letters, next })
    }

    async fn get(&self, id: &DeadLetterId) -> Result<Option<StoredDeadLetter>, DeadLetterError> {
        Ok(self.lock().recent.iter().find(|l| l.id == *id).cloned())
    }

    async fn delete(&self, id: &DeadLetterId) -> Result<bool, DeadLetterError> {
        let mut state = self.lock();
        let before = state.recent.len();
        state.recent.retain(|l| l.id != *id);
        Ok(state.recent.len() < before)
    }

    async fn delete_unchanged(&self, letter: &StoredDeadLetter) -> Result<bool, DeadLetterError> {
        let mut state = self.lock();
        let before = state.recent.len();
        state
            .recent
            .retain(|l| !(l.id == letter.id && l.received_at == letter.received_at));
        Ok(state.recent.len() < before)
    }
}
