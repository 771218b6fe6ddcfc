//! What happens to updates that cannot be published (Redis unreachable or too slow).
//!
//! Such an update is lost for live subscribers (the vehicle's state is still persisted:
//! the vehicle actor publishes, then saves, whatever the publish did). So that no
//! subscriber is left with a silent gap, the tenant is marked as owing a *gap marker*,
//! a `gap` entry appended to its log (and published) as soon as Redis answers again;
//! subscribers that meet it, live or in a replay, get `reset` and reload the state.
//!
//! Meanwhile the fan-out is *down*: publishes fail at once instead of each waiting for
//! the command timeout, so vehicle actors are never held up by a dead Redis for longer
//! than one timeout. A background task retries the owed markers with backoff; once all
//! are written Redis is evidently back, and publishes go through again. Updates lost in
//! between are covered by the markers, which are appended before any later update.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Weak};

use fleetwire_actors::model::TenantId;
use fleetwire_actors::telemetry::REDIS_FANOUT_GAP_MARKERS_TOTAL;
use tracing::{info, warn};

use super::append::Appender;
use super::reader::Backoff;
use super::wire::FIELD_GAP;

/// Owed gap markers and the down switch; shared by the fan-out and its retry task.
#[derive(Debug, Default)]
pub(crate) struct Gaps {
    owed: Mutex<Owed>,
    /// Publishes fail at once while set.
    down: AtomicBool,
}

#[derive(Debug, Default)]
struct Owed {
    tenants: BTreeSet<TenantId>,
    /// Whether the retry task runs.
    retrying: bool,
}

impl Gaps {
    /// Whether publishes should fail at once.
    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Records that an update of `tenant` was lost and switches publishes off. Returns
    /// `true` when the caller must start the retry task ([`retry`]).
    pub(crate) fn lost(&self, tenant: &TenantId) -> bool {
        self.down.store(true, Ordering::Relaxed);
        let mut owed = self.lock();
        owed.tenants.insert(tenant.clone());
        !std::mem::replace(&mut owed.retrying, true)
    }

    /// Tenants owed a marker right now.
    pub(crate) fn owed(&self) -> Vec<TenantId> {
        self.lock().tenants.iter().cloned().collect()
    }

    /// Whether `tenant` is owed a marker.
    #[cfg(test)]
    fn is_owed(&self, tenant: &TenantId) -> bool {
        self.lock().tenants.contains(tenant)
    }

    fn paid(&self, tenant: &TenantId) {
        self.lock().tenants.remove(tenant);
    }

    /// Ends the retry task when nothing is owed any more (and switches publishes back
    /// on). Checked under the lock, so a loss recorded concurrently keeps the task going.
    fn try_finish(&self) -> bool {
        let mut owed = self.lock();
        if owed.tenants.is_empty() {
            owed.retrying = false;
            self.down.store(false, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Owed> {
        self.owed.lock().expect("gap lock never poisoned")
    }
}

/// Appends the owed markers, with backoff, until none is owed; ends early when the
/// fan-out is dropped (`gaps` no longer upgrades).
pub(crate) async fn retry(gaps: Weak<Gaps>, appender: Appender, backoff: Backoff) {
    let mut failures: u32 = 0;
    loop {
        tokio::time::sleep(backoff.delay(failures)).await;
        let Some(gaps) = gaps.upgrade() else { return };
        let mut all_written = true;
        for tenant in gaps.owed() {
            match appender.append(&tenant, FIELD_GAP, b"1".to_vec()).await {
                Ok(id) => {
                    metrics::counter!(REDIS_FANOUT_GAP_MARKERS_TOTAL, "result" => "ok").increment(1);
                    info!(%tenant, %id, "Redis answers again; recorded the tenant's lost updates as a gap.");
                    gaps.paid(&tenant);
                }
                Err(error) => {
                    metrics::counter!(REDIS_FANOUT_GAP_MARKERS_TOTAL, "result" => "error").increment(1);
                    if failures == 0 {
                        warn!(%tenant, %error, "Cannot record lost updates yet; publishes fail until Redis answers.");
                    }
                    all_written = false;
                    break;
                }
            }
        }
        if all_written {
            if gaps.try_finish() {
                return;
            }
            failures = 0;
        } else {
            failures = failures.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_follows_what_is_owed() {
        let gaps = Gaps::default();
        let t = TenantId::default();
        assert!(!gaps.is_down());
        assert!(gaps.lost(&t), "the first loss starts the retry task");
        assert!(!gaps.lost(&t), "only one task");
        assert!(gaps.is_down() && gaps.is_owed(&t));
        assert!(!gaps.try_finish());
        gaps.paid(&t);
        assert!(gaps.try_finish());
        assert!(!gaps.is_down());
        assert!(gaps.lost(&t), "a later loss starts a new task");
    }
}
