//! Reading the replay logs: one tenant's entries after an id (replays and a reconnected
//! subscription's recovery), and the newest id of every tenant.

use std::collections::HashMap;

use deadpool_redis::redis;
use fleetwire_actors::model::TenantId;
use fleetwire_actors::ports::{Coverage, EventId, LogEntry, Replay, ReplayRetention};
use tracing::warn;

use super::keys::Keys;
use super::wire::{self, HEADS_SCRIPT, Script};

/// `(id, [field, value, …])` as `XRANGE` returns each entry.
type RawEntry = (String, Vec<Vec<u8>>);

static HEADS: Script = Script::new(HEADS_SCRIPT);

/// Up to `limit` entries of `tenant`'s log after `after`, or why they cannot be replayed.
///
/// The log's oldest and newest entries, the page and the server time are read in one
/// `MULTI`, so the coverage decision and the page describe the same moment (a concurrent
/// trim cannot slip between them).
pub(crate) async fn read<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
    retention: &ReplayRetention,
    tenant: &TenantId,
    after: EventId,
    limit: usize,
) -> redis::RedisResult<Replay> {
    let log = keys.log(tenant);
    let (first, last, page, (secs, micros)): (Vec<RawEntry>, Vec<RawEntry>, Vec<RawEntry>, (u64, u64)) =
        redis::pipe()
            .atomic()
            .cmd("XRANGE")
            .arg(&log)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .cmd("XREVRANGE")
            .arg(&log)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .cmd("XRANGE")
            .arg(&log)
            .arg(format!("({after}"))
            .arg("+")
            .arg("COUNT")
            .arg(limit.max(1))
            .cmd("TIME")
            .query_async(conn)
            .await?;
    let id_of = |entries: &[RawEntry]| entries.first().and_then(|(id, _)| id.parse::<EventId>().ok());
    let (first, last) = (id_of(&first), id_of(&last));
    // Ids are stamped by the Redis clock, so the age limit is measured by it too.
    let now_ms = secs * 1000 + micros / 1000;
    let min_id = retention
        .max_age
        .map(|age| EventId::new(now_ms.saturating_sub(age.as_millis() as u64), 0));
    Ok(match Coverage::decide(first, last, after, min_id) {
        Coverage::TooOld => Replay::TooOld { head: last },
        Coverage::Ahead => Replay::Ahead {
            head: last.expect("a log with entries has a newest one"),
        },
        Coverage::Covered => Replay::Events(decode_page(tenant, page)),
    })
}

/// Decodes a page; an entry that does not decode is logged and skipped (it can never
/// decode, and stopping there would block every later entry).
fn decode_page(tenant: &TenantId, page: Vec<RawEntry>) -> Vec<LogEntry> {
    page.into_iter()
        .filter_map(|(id, fields)| {
            let decoded = match fields.as_slice() {
                [field, value, ..] => std::str::from_utf8(field)
                    .map_err(|e| e.to_string())
                    .and_then(|field| wire::decode_entry(tenant, &id, field, value)),
                _ => Err(format!("entry {id} has no field")),
            };
            decoded
                .inspect_err(|error| warn!(%tenant, %id, %error, "Skipping an undecodable replay log entry."))
                .ok()
        })
        .collect()
}

/// The newest id of every tenant's (non-empty) log.
pub(crate) async fn heads<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
    prefix: &str,
) -> redis::RedisResult<HashMap<TenantId, EventId>> {
    let flat: Vec<String> = HEADS
        .invoke(conn, &[&keys.tenants()], &[prefix.as_bytes()])
        .await?;
    Ok(flat
        .chunks_exact(2)
        .filter_map(|pair| Some((TenantId::parse(&pair[0]).ok()?, pair[1].parse().ok()?)))
        .collect())
}

/// Every tenant that ever published.
pub(crate) async fn tenants<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
) -> redis::RedisResult<Vec<TenantId>> {
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(keys.tenants())
        .query_async(conn)
        .await?;
    Ok(members.iter().filter_map(|t| TenantId::parse(t).ok()).collect())
}
