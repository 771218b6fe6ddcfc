//! What goes over the wire: the Lua scripts, how they are invoked, and the encoding of
//! log entries in stream fields and pub/sub messages.
//!
//! A log entry is stored as a stream entry with one field, and published as
//! `<id> <field> <value>`:
//!
//! | field | value | entry |
//! |---|---|---|
//! | `u` | the `VehicleUpdate` as JSON | [`LogEntry::Update`] |
//! | `gap` | `1` | [`LogEntry::Gap`]: updates of the tenant were lost before it |

use std::sync::OnceLock;

use deadpool_redis::redis::{self, FromRedisValue};
use fleetwire_actors::model::{TenantId, VehicleUpdate};
use fleetwire_actors::ports::{EventId, LogEntry};

/// Stream field of an update entry.
pub(crate) const FIELD_UPDATE: &str = "u";
/// Stream field of a gap marker.
pub(crate) const FIELD_GAP: &str = "gap";

/// Appends a batch of entries to their tenants' logs and publishes each, trims the logs
/// and records the tenants — in one script, so that no other publish can come between an
/// append and its `PUBLISH`: the order on a channel is the order of the log, and an entry
/// a subscriber sees live is already in the log for anyone who replays it. (Publishing a
/// tenant's entries as one message instead, built with `table.concat`, cost Redis more
/// per entry than a `PUBLISH` each: docs/performance.md.)
///
/// KEYS: the tenants set, then one log per tenant group. ARGV: max entries, max age in ms
/// (0: none), then per group: channel, tenant, entry count n, and n × (field, value).
/// Returns the new entries' ids, group by group.
pub(crate) const APPEND_SCRIPT: &str = r"
local maxlen, age = ARGV[1], tonumber(ARGV[2])
local ids, a = {}, 3
for g = 2, #KEYS do
  local log, channel, tenant, n = KEYS[g], ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  a = a + 3
  local id
  for _ = 1, n do
    local field, value = ARGV[a], ARGV[a + 1]
    a = a + 2
    id = redis.call('XADD', log, 'MAXLEN', '~', maxlen, '*', field, value)
    ids[#ids + 1] = id
    redis.call('PUBLISH', channel, id .. ' ' .. field .. ' ' .. value)
  end
  if age > 0 then
    local ms = tonumber(string.match(id, '^(%d+)-'))
    if ms > age then
      redis.call('XTRIM', log, 'MINID', '~', string.format('%d', ms - age))
    end
  end
  redis.call('SADD', KEYS[1], tenant)
end
return ids
";

/// The newest id of every tenant's log: a subscription's starting point, taken before it
/// subscribes (so it can recover what is published until the subscription is live).
///
/// KEYS: tenants set. ARGV: key prefix. Returns `[tenant, id, tenant, id, …]` for the
/// tenants whose log is not empty. The log keys are built here, which a Redis Cluster
/// would refuse; fleetwire needs a single Redis anyway (module docs).
pub(crate) const HEADS_SCRIPT: &str = r"
local out = {}
for _, tenant in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local last = redis.call('XREVRANGE', ARGV[1] .. ':t:' .. tenant .. ':log', '+', '-', 'COUNT', 1)
  if #last > 0 then
    out[#out + 1] = tenant
    out[#out + 1] = last[1][1]
  end
end
return out
";

/// A Lua script run with `EVALSHA`. The SHA is learnt from `SCRIPT LOAD` on first use and
/// again after `NOSCRIPT` (a restarted Redis forgets its script cache), so the script's
/// text crosses the network only then, not with every publish.
#[derive(Debug)]
pub(crate) struct Script {
    source: &'static str,
    sha: OnceLock<String>,
}

impl Script {
    pub(crate) const fn new(source: &'static str) -> Self {
        Self {
            source,
            sha: OnceLock::new(),
        }
    }

    async fn load<C: redis::aio::ConnectionLike>(&self, conn: &mut C) -> redis::RedisResult<String> {
        let sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(self.source)
            .query_async(conn)
            .await?;
        // The SHA of a fixed text never changes, so a second `set` would store the same.
        let _ = self.sha.set(sha.clone());
        Ok(sha)
    }

    /// Runs the script with `keys` and `args`.
    pub(crate) async fn invoke<C, T>(
        &self,
        conn: &mut C,
        keys: &[&str],
        args: &[&[u8]],
    ) -> redis::RedisResult<T>
    where
        C: redis::aio::ConnectionLike,
        T: FromRedisValue,
    {
        let sha = match self.sha.get() {
            Some(sha) => sha.clone(),
            None => self.load(conn).await?,
        };
        let evalsha = |sha: &str| {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(sha).arg(keys.len()).arg(keys).arg(args);
            cmd
        };
        match evalsha(&sha).query_async(conn).await {
            Err(e) if e.code() == Some("NOSCRIPT") => {
                let sha = self.load(conn).await?;
                evalsha(&sha).query_async(conn).await
            }
            result => result,
        }
    }
}

/// Why a stored or published entry could not be read.
pub(crate) type DecodeError = String;

/// Builds a log entry of `tenant` from its id text, field and value.
pub(crate) fn decode_entry(
    tenant: &TenantId,
    id: &str,
    field: &str,
    value: &[u8],
) -> Result<LogEntry, DecodeError> {
    let id: EventId = id.parse().map_err(|e| format!("{e}"))?;
    match field {
        FIELD_UPDATE => {
            let update: VehicleUpdate =
                serde_json::from_slice(value).map_err(|e| format!("update {id} does not decode: {e}"))?;
            if &update.tenant != tenant {
                return Err(format!(
                    "update {id} belongs to tenant {} but is in {tenant}'s log",
                    update.tenant
                ));
            }
            Ok(LogEntry::Update {
                id,
                update: update.into(),
            })
        }
        FIELD_GAP => Ok(LogEntry::Gap {
            tenant: tenant.clone(),
            id,
        }),
        other => Err(format!("entry {id} has the unknown field {other:?}")),
    }
}

/// Decodes a pub/sub message `<id> <field> <value>` of `tenant`'s channel.
pub(crate) fn decode_message(tenant: &TenantId, payload: &[u8]) -> Result<LogEntry, DecodeError> {
    let mut parts = payload.splitn(3, |b| *b == b' ');
    let (Some(id), Some(field), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("not `<id> <field> <value>`".to_owned());
    };
    let text = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| e.to_string())
    };
    decode_entry(tenant, &text(id)?, &text(field)?, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_decode() {
        let tenant = TenantId::default();
        let json = r#"{"tenant":"default","vehicle_id":"v","version":3,"last_seen":null,"changed":[],
            "signals":{},"ingest_received_at":"2026-01-01T00:00:00Z"}"#;
        let entry = decode_message(&tenant, format!("5-1 u {json}").as_bytes()).unwrap();
        assert!(
            matches!(&entry, LogEntry::Update { id, update } if *id == EventId::new(5, 1) && update.version == 3)
        );
        assert_eq!(
            decode_message(&tenant, b"7-0 gap 1").unwrap(),
            LogEntry::Gap {
                tenant: tenant.clone(),
                id: EventId::new(7, 0)
            }
        );
        for bad in [&b"junk"[..], b"", b"1-0 u {", b"x-0 gap 1", b"1-0 what 1"] {
            assert!(
                decode_message(&tenant, bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let other = TenantId::parse("other").unwrap();
        assert!(
            decode_message(&other, format!("5-1 u {json}").as_bytes())
                .unwrap_err()
                .contains("belongs to")
        );
    }
}
