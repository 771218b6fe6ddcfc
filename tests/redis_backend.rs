//! The Redis backends against a real Redis: the shared fan-out conformance check, then what
//! only a networked fan-out has to promise (several nodes, isolation by key prefix,
//! reconnects, no leaked subscriptions, gaps reported as `Lagged`).
//!
//! Needs a Redis at `FLEETWIRE_TEST_REDIS_URL` (default `redis://127.0.0.1:6379/`); start
//! one with `scripts/redis`. Without it these tests fail, they do not skip. Every test uses
//! its own random key prefix (`fwtest:<random>`), so they run in parallel and next to
//! anything else on that Redis; the reconnect test kills only its own connection.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use fleetwire::backends::conformance;
use fleetwire::backends::redis::{RedisConfig, RedisFanOut};
use fleetwire_actors::model::{VehicleId, VehicleUpdate};
use fleetwire_actors::ports::{FanOut, FanOutError, FanOutMessage};

/// Longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(10);

fn redis_url() -> String {
    std::env::var("FLEETWIRE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned())
}

/// A command connection to the test Redis; fails the test (never skips it) when Redis is
/// not there.
async fn admin() -> redis::aio::MultiplexedConnection {
    let url = redis_url();
    let connect = async {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok::<_, redis::RedisError>(conn)
    };
    match tokio::time::timeout(Duration::from_secs(3), connect).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!("Redis at {url} is not reachable ({e}); start one with `scripts/redis`"),
        Err(_) => panic!("Redis at {url} does not answer PING; start one with `scripts/redis`"),
    }
}

/// A key prefix no other test (or test run) uses.
fn unique_prefix() -> String {
    format!("fwtest:{:016x}", rand::random::<u64>())
}

/// Test settings: the given prefix, a small fast backoff.
fn config(prefix: &str) -> RedisConfig {
    RedisConfig {
        url: redis_url(),
        key_prefix: prefix.to_owned(),
        pool_size: 4,
        reconnect_backoff_initial_ms: 20,
        reconnect_backoff_max_ms: 200,
        ..RedisConfig::default()
    }
}

fn fanout(prefix: &str) -> RedisFanOut {
    RedisFanOut::new(&config(prefix)).expect("valid config")
}

fn update(vehicle: &str, version: u64) -> Arc<VehicleUpdate> {
    Arc::new(VehicleUpdate {
        vehicle_id: VehicleId(vehicle.to_owned()),
        version,
        last_seen: None,
        changed: vec!["Soc".into()],
        signals: BTreeMap::new(),
        ingest_received_at: chrono::Utc::now(),
    })
}

/// The next message of a subscription; panics if none comes within [`WAIT`].
async fn next(sub: &mut BoxStream<'static, FanOutMessage>, what: &str) -> FanOutMessage {
    match tokio::time::timeout(WAIT, sub.next()).await {
        Ok(Some(msg)) => msg,
        Ok(None) => panic!("{what}: the subscription ended"),
        Err(_) => panic!("{what}: nothing within {WAIT:?}"),
    }
}

/// The next message, which must be an update; returns (vehicle, version).
async fn next_update(sub: &mut BoxStream<'static, FanOutMessage>, what: &str) -> (String, u64) {
    match next(sub, what).await {
        FanOutMessage::Update(u) => (u.vehicle_id.0.clone(), u.version),
        other => panic!("{what}: expected an update, got {other:?}"),
    }
}

/// Waits for `cond` (polled every 20 ms) for at most [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_subscribed(fanout: &RedisFanOut) {
    assert!(
        fanout.wait_until_all_subscribed(WAIT).await,
        "the subscription on {} was not established within {WAIT:?}",
        fanout.channel()
    );
}

/// Subscribers of `channel` as Redis counts them.
async fn numsub(conn: &mut redis::aio::MultiplexedConnection, channel: &str) -> i64 {
    let (_, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(conn)
        .await
        .expect("PUBSUB NUMSUB failed");
    n
}

/// The conformance check publishes right after `subscribe()`. Pub/sub only delivers what is
/// published after the `SUBSCRIBE` took effect, which the in-process fan-out satisfies at
/// once but a network fan-out cannot; this adapter waits for the subscriptions before each
/// publish, which is what a node gets by checking readiness first.
struct SubscribedBeforePublish(RedisFanOut);

#[async_trait]
impl FanOut for SubscribedBeforePublish {
    async fn publish(&self, update: Arc<VehicleUpdate>) -> Result<(), FanOutError> {
        wait_subscribed(&self.0).await;
        self.0.publish(update).await
    }

    fn subscribe(&self) -> BoxStream<'static, FanOutMessage> {
        self.0.subscribe()
    }

    async fn ping(&self) -> Result<(), FanOutError> {
        self.0.ping().await
    }
}

#[tokio::test]
async fn conformance_fanout_delivers_to_every_subscriber() {
    admin().await;
    let fanout = fanout(&unique_prefix());
    conformance::check_fanout_delivers_to_every_subscriber(&SubscribedBeforePublish(fanout.clone())).await;
    assert!(fanout.is_subscribed());
}

#[tokio::test]
async fn updates_cross_nodes_and_prefixes_isolate() {
    admin().await;
    let prefix = unique_prefix();
    let (node_a, node_b) = (fanout(&prefix), fanout(&prefix));
    let other_tenant = fanout(&unique_prefix());
    let mut on_b = node_b.subscribe();
    let mut on_other = other_tenant.subscribe();
    wait_subscribed(&node_b).await;
    wait_subscribed(&other_tenant).await;

    for version in 1..=3 {
        node_a
            .publish(update("car-a", version))
            .await
            .expect("publish on A");
    }
    for version in 1..=3 {
        assert_eq!(
            next_update(&mut on_b, "node B").await,
            ("car-a".to_owned(), version),
            "node B sees node A's updates in order"
        );
    }

    // B received them, so Redis delivered them; the other prefix must not have. Its own
    // update must be the first thing it sees.
    other_tenant
        .publish(update("car-other", 1))
        .await
        .expect("publish on the other prefix");
    assert_eq!(
        next_update(&mut on_other, "other prefix").await,
        ("car-other".to_owned(), 1),
        "a different key prefix does not see node A's updates"
    );
    // Likewise B: the next thing it sees is A's next update, not the other prefix's.
    node_a.publish(update("car-a", 4)).await.expect("publish on A");
    assert_eq!(
        next_update(&mut on_b, "node B").await,
        ("car-a".to_owned(), 4),
        "node B does not see another prefix's updates"
    );
    node_a.ping().await.expect("ping");
}

/// A Redis user that exists only for one test, so the test can kill exactly its own
/// connections (`CLIENT KILL ... USER`) on a Redis that others use too. Deleted on drop.
struct TempUser {
    name: String,
    url: String,
}

impl TempUser {
    async fn create(conn: &mut redis::aio::MultiplexedConnection) -> Self {
        let name = format!("fwtest-{:016x}", rand::random::<u64>());
        let password = format!("{:032x}", rand::random::<u128>());
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&name)
            .arg("on")
            .arg(format!(">{password}"))
            .arg("~*")
            .arg("&*")
            .arg("+@all")
            .query_async::<()>(conn)
            .await
            .expect("ACL SETUSER failed (the reconnect test needs Redis 6.2+ with ACL rights)");
        // The test URL with this user's credentials instead of any in it.
        let base = redis_url();
        let (scheme, rest) = base.split_once("://").expect("a redis:// URL");
        let host_and_path = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
        let url = format!("{scheme}://{name}:{password}@{host_and_path}");
        Self { name, url }
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        // Blocking, but only for one round trip at the end of a test.
        if let Ok(mut conn) = redis::Client::open(redis_url()).and_then(|c| c.get_connection()) {
            let _ = redis::cmd("ACL")
                .arg("DELUSER")
                .arg(&self.name)
                .query::<i64>(&mut conn);
        }
    }
}

#[tokio::test]
async fn reconnects_after_the_connection_is_killed_and_reports_the_gap() {
    let mut admin = admin().await;
    let user = TempUser::create(&mut admin).await;
    let fanout = RedisFanOut::new(&RedisConfig {
        url: user.url.clone(),
        ..config(&unique_prefix())
    })
    .expect("valid config");
    let mut sub = fanout.subscribe();
    wait_subscribed(&fanout).await;
    fanout.publish(update("car", 1)).await.expect("publish");
    assert_eq!(next_update(&mut sub, "before the kill").await.1, 1);

    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .arg("USER")
        .arg(&user.name)
        .query_async(&mut admin)
        .await
        .expect("CLIENT KILL failed");
    assert_eq!(
        killed, 1,
        "exactly the fan-out's one pub/sub connection is killed"
    );

    // Lagged(0) comes only after the new SUBSCRIBE is confirmed: anything published from
    // here on is delivered.
    assert_eq!(
        next(&mut sub, "after the kill").await,
        FanOutMessage::Lagged(0),
        "a reconnect is reported as a gap of unknown size"
    );
    assert!(
        fanout.is_subscribed(),
        "subscribed again once the gap is reported"
    );
    assert_eq!(numsub(&mut admin, fanout.channel()).await, 1);
    for version in 2..=4 {
        fanout
            .publish(update("car", version))
            .await
            .expect("publish after reconnect");
    }
    for version in 2..=4 {
        assert_eq!(
            next_update(&mut sub, "after the reconnect").await.1,
            version,
            "delivery continues after the reconnect"
        );
    }
}

#[tokio::test]
async fn the_idle_health_check_keeps_a_good_connection() {
    admin().await;
    // Many PINGs on an idle subscription; a PING answer the client did not understand
    // would look like a dead connection and show up as a reconnect (Lagged(0)).
    let fanout = fanout(&unique_prefix()).with_health_check_interval(Duration::from_millis(20));
    let mut sub = fanout.subscribe();
    wait_subscribed(&fanout).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(fanout.is_subscribed());
    fanout.publish(update("car", 1)).await.expect("publish");
    assert_eq!(
        next_update(&mut sub, "after idling").await,
        ("car".to_owned(), 1),
        "no reconnect (Lagged) while idle: the health check's PING is understood"
    );
}

#[tokio::test]
async fn dropping_the_stream_ends_the_reader_task() {
    let mut admin = admin().await;
    let fanout = fanout(&unique_prefix());
    let sub = fanout.subscribe();
    wait_subscribed(&fanout).await;
    assert_eq!(numsub(&mut admin, fanout.channel()).await, 1);
    assert_eq!(fanout.subscription_count(), 1);

    drop(sub);
    eventually("the reader task ends", || async {
        fanout.subscription_count() == 0
    })
    .await;
    let channel = fanout.channel().to_owned();
    eventually("Redis drops the subscription", || {
        let mut admin = admin.clone();
        let channel = channel.clone();
        async move { numsub(&mut admin, &channel).await == 0 }
    })
    .await;
    assert!(!fanout.is_subscribed());
}

#[tokio::test]
async fn a_full_buffer_drops_and_reports_the_gap_before_later_updates() {
    admin().await;
    let fanout = RedisFanOut::new(&RedisConfig {
        subscription_buffer: 4,
        ..config(&unique_prefix())
    })
    .expect("valid config");
    let mut sub = fanout.subscribe();
    wait_subscribed(&fanout).await;
    // Nobody reads while these arrive, so all but 4 must be dropped and counted.
    const SENT: u64 = 50;
    for version in 1..=SENT {
        fanout.publish(update("car", version)).await.expect("publish");
    }

    let (mut delivered, mut skipped, mut lags) = (Vec::new(), 0, 0);
    while delivered.len() as u64 + skipped < SENT {
        match next(&mut sub, "draining").await {
            FanOutMessage::Update(u) => delivered.push(u.version),
            FanOutMessage::Lagged(n) => {
                assert!(n > 0, "a buffer overflow reports how many were dropped");
                skipped += n;
                lags += 1;
            }
        }
    }
    assert_eq!(
        delivered.len() as u64 + skipped,
        SENT,
        "every update is delivered or counted"
    );
    assert!(lags >= 1 && skipped > 0, "an overflow is reported as Lagged");
    assert_eq!(
        &delivered[..4],
        &[1, 2, 3, 4],
        "what fit in the buffer is delivered"
    );
    assert!(
        delivered.windows(2).all(|w| w[0] < w[1]),
        "order is kept: {delivered:?}"
    );

    fanout.publish(update("car", SENT + 1)).await.expect("publish");
    assert_eq!(
        next_update(&mut sub, "after draining").await.1,
        SENT + 1,
        "delivery goes on once there is room"
    );
}

#[tokio::test]
async fn undecodable_messages_are_skipped() {
    let mut admin = admin().await;
    let fanout = fanout(&unique_prefix());
    let mut sub = fanout.subscribe();
    wait_subscribed(&fanout).await;
    for junk in ["not json", r#"{"vehicle_id":1}"#, ""] {
        redis::cmd("PUBLISH")
            .arg(fanout.channel())
            .arg(junk)
            .query_async::<i64>(&mut admin)
            .await
            .expect("PUBLISH failed");
    }
    fanout.publish(update("car", 7)).await.expect("publish");
    assert_eq!(
        next_update(&mut sub, "after junk").await,
        ("car".to_owned(), 7),
        "junk is skipped; the subscription keeps going"
    );
}

#[tokio::test]
async fn an_unreachable_redis_fails_fast_and_the_subscription_keeps_trying() {
    // Nothing listens on port 1 of loopback, so every connection is refused.
    let fanout = RedisFanOut::new(&RedisConfig {
        url: "redis://127.0.0.1:1/".into(),
        ..config(&unique_prefix())
    })
    .expect("building does no I/O");
    for result in [
        tokio::time::timeout(WAIT, fanout.publish(update("car", 1))).await,
        tokio::time::timeout(WAIT, fanout.ping()).await,
    ] {
        match result {
            Ok(Err(FanOutError::Unavailable(_))) => {}
            other => panic!("expected a prompt Unavailable, got {other:?}"),
        }
    }

    let mut sub = fanout.subscribe();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sub.next())
            .await
            .is_err(),
        "a subscription without Redis neither ends nor yields; it retries"
    );
    assert_eq!(fanout.subscription_count(), 1);
    assert!(!fanout.is_subscribed());
    assert!(!fanout.wait_until_all_subscribed(Duration::from_millis(100)).await);
    drop(sub);
    eventually("the retrying reader task ends", || async {
        fanout.subscription_count() == 0
    })
    .await;
}
