//! Fan-out conformance: live delivery in log order with the log's ids, per-tenant
//! replay logs with the shared coverage rule, and their bounds.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use fleetwire_actors::model::{TenantId, VehicleId, VehicleUpdate};
use fleetwire_actors::ports::{EventId, FanOut, FanOutMessage, LogEntry, Replay};

use super::nonce;

/// How long a fan-out check waits for a message before declaring it lost.
const FANOUT_TIMEOUT: Duration = Duration::from_secs(5);

/// An update of `vehicle` at `version` for `tenant` (for tests too).
pub fn update_of(tenant: &TenantId, vehicle: &str, version: u64) -> Arc<VehicleUpdate> {
    Arc::new(VehicleUpdate {
        tenant: tenant.clone(),
        vehicle_id: VehicleId(vehicle.to_owned()),
        version,
        last_seen: None,
        changed: vec!["Soc".into()],
        signals: Default::default(),
        ingest_received_at: chrono::Utc::now(),
        fleet_events: vec![],
    })
}

/// A tenant no other check (or run) uses.
fn fresh_tenant(check: &str) -> TenantId {
    TenantId::parse(&nonce(check)).expect("nonces are valid tenant ids")
}

async fn publish_all(
    fanout: &dyn FanOut,
    tenant: &TenantId,
    versions: std::ops::RangeInclusive<u64>,
) -> Vec<EventId> {
    let mut ids = Vec::new();
    for version in versions {
        ids.push(
            fanout
                .publish(update_of(tenant, "car", version))
                .await
                .expect("publish failed"),
        );
    }
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids of one tenant's log increase: {ids:?}"
    );
    ids
}

/// `(id, version)` of replayed updates; panics on anything but `Replay::Events`.
fn events(replay: Replay, what: &str) -> Vec<(EventId, u64)> {
    match replay {
        Replay::Events(entries) => entries
            .into_iter()
            .map(|e| match e {
                LogEntry::Update { id, update } => (id, update.version),
                other => panic!("{what}: unexpected {other:?}"),
            })
            .collect(),
        other => panic!("{what}: expected events, got {other:?}"),
    }
}

/// Every subscription sees every update published after it subscribed, per tenant in
/// publish order and with the ids `publish` returned; publishing without subscribers is
/// fine.
pub async fn check_fanout_delivers_to_every_subscriber(fanout: &dyn FanOut) {
    let (tenant, other) = (fresh_tenant("fan"), fresh_tenant("fan-other"));
    fanout
        .publish(update_of(&tenant, "car", 0))
        .await
        .expect("publishing without subscribers must succeed");
    let mut subs: Vec<BoxStream<'static, FanOutMessage>> = (0..3).map(|_| fanout.subscribe()).collect();
    let mut expected = Vec::new();
    for version in 1..=10 {
        let id = fanout
            .publish(update_of(&tenant, "car", version))
            .await
            .expect("publish failed");
        expected.push((id, version));
        if version % 2 == 0 {
            fanout
                .publish(update_of(&other, "car", version))
                .await
                .expect("publish failed");
        }
    }
    for (n, sub) in subs.iter_mut().enumerate() {
        let (mut mine, mut others) = (Vec::new(), Vec::new());
        while mine.len() < 10 || others.len() < 5 {
            match tokio::time::timeout(FANOUT_TIMEOUT, sub.next()).await {
                Ok(Some(FanOutMessage::Entry(LogEntry::Update { id, update }))) => {
                    if update.tenant == tenant {
                        mine.push((id, update.version));
                    } else if update.tenant == other {
                        others.push(id);
                    }
                }
                Ok(Some(msg)) => panic!("subscriber {n}: unexpected {msg:?}"),
                Ok(None) => panic!("subscription {n} ended"),
                Err(_) => panic!("subscriber {n} got {mine:?} and then nothing for {FANOUT_TIMEOUT:?}"),
            }
        }
        assert_eq!(
            mine, expected,
            "subscriber {n} sees every update in order, with the published ids"
        );
        assert!(
            others.windows(2).all(|w| w[0] < w[1]),
            "another tenant's entries come in its own log order"
        );
    }
    fanout.ping().await.expect("ping failed");
}

/// Replays return a tenant's entries after an id, in order and paged, and say when an id
/// is not covered: older than the log (`TooOld`, with the head), newer (`Ahead`), or of an
/// empty log (`TooOld` without a head). Tenants do not see each other's entries.
pub async fn check_fanout_replay(fanout: &dyn FanOut) {
    let (tenant, other) = (fresh_tenant("replay"), fresh_tenant("replay-other"));
    let ids = publish_all(fanout, &tenant, 1..=5).await;
    let other_ids = publish_all(fanout, &other, 1..=2).await;
    let replay = |t: &TenantId, after: EventId, limit: usize| {
        let t = t.clone();
        async move { fanout.replay(&t, after, limit).await.expect("replay failed") }
    };

    assert_eq!(
        events(replay(&tenant, ids[0], 100).await, "after the first"),
        ids[1..].iter().copied().zip(2..=5).collect::<Vec<_>>(),
        "everything after the given id, in order"
    );
    assert_eq!(
        events(replay(&tenant, ids[1], 2).await, "a page"),
        vec![(ids[2], 3), (ids[3], 4)],
        "at most `limit` entries"
    );
    assert_eq!(
        events(replay(&tenant, ids[4], 100).await, "after the last"),
        vec![],
        "nothing after the newest entry"
    );
    assert_eq!(
        events(replay(&other, other_ids[0], 100).await, "the other tenant"),
        vec![(other_ids[1], 2)],
        "a tenant's log holds only its own entries"
    );
    let future = EventId::new(ids[4].ms + 86_400_000, 0);
    assert_eq!(
        replay(&tenant, future, 100).await,
        Replay::Ahead { head: ids[4] },
        "an id newer than the log is not from it"
    );
    assert_eq!(
        replay(&tenant, EventId::ZERO, 100).await,
        Replay::TooOld { head: Some(ids[4]) },
        "an id before the oldest entry cannot be proven covered"
    );
    assert_eq!(
        replay(&fresh_tenant("replay-none"), ids[0], 100).await,
        Replay::TooOld { head: None },
        "a tenant without a log covers nothing"
    );
}

/// A log configured for `max_events` entries and a 1 s age limit keeps at least the
/// newest `max_events` entries (a client whose last id is one of them can resume),
/// answers `TooOld` for an id that was trimmed, and stops replaying from ids older than
/// the age limit.
pub async fn check_fanout_replay_is_bounded(fanout: &dyn FanOut, max_events: usize) {
    let tenant = fresh_tenant("bounded");
    // Redis trims whole nodes of ~100 entries (`MAXLEN ~`), so overfill by more than that.
    let total = max_events as u64 + 250;
    let ids = publish_all(fanout, &tenant, 1..=total).await;
    let head = *ids.last().unwrap();
    assert_eq!(
        fanout.replay(&tenant, ids[0], 10).await.expect("replay failed"),
        Replay::TooOld { head: Some(head) },
        "the oldest entries were trimmed"
    );
    let keep_from = ids.len() - max_events;
    let kept = events(
        fanout
            .replay(&tenant, ids[keep_from], ids.len())
            .await
            .expect("replay failed"),
        "the newest entries",
    );
    assert_eq!(
        kept.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        ids[keep_from + 1..],
        "a client at the oldest of the newest max_events entries resumes"
    );

    tokio::time::sleep(Duration::from_millis(1200)).await;
    // The head may or may not still be reported: an idle log is trimmed by age lazily.
    let aged = fanout
        .replay(&tenant, ids[ids.len() - 2], 10)
        .await
        .expect("replay failed");
    assert!(
        matches!(aged, Replay::TooOld { .. }),
        "an id older than the age limit is not replayed from: {aged:?}"
    );
    assert_eq!(
        events(
            fanout.replay(&tenant, head, 10).await.expect("replay failed"),
            "idle head"
        ),
        vec![],
        "a client at the head of an idle log has missed nothing, however old its id"
    );
    let newer = fanout
        .publish(update_of(&tenant, "car", total + 1))
        .await
        .expect("publish failed");
    assert_eq!(
        events(
            fanout.replay(&tenant, newer, 10).await.expect("replay failed"),
            "fresh"
        ),
        vec![]
    );
}
