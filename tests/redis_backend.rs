//! The Redis backends against a real Redis: the shared fan-out conformance checks (live
//! delivery, replay, bounds), then what only a networked fan-out has to promise (several
//! nodes, isolation by key prefix, reconnects that recover the gap from the replay log or
//! reset when it cannot, no leaked subscriptions, overflow reported as `Lost`, publishes
//! that fail fast and leave a gap marker while Redis is down, a Redis restart).
//!
//! Needs a Redis at `FLEETWIRE_TEST_REDIS_URL` (default `redis://127.0.0.1:6379/`); start
//! one with `scripts/redis`. Without it these tests fail, they do not skip. Every test uses
//! its own random key prefix (`fwtest:<random>`), so they run in parallel and next to
//! anything else on that Redis; the reconnect tests kill only their own connections (a
//! temporary ACL user), and the restart test runs a private `redis-server`.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use common::private_redis::PrivateRedis;
use common::redis_keys::{TestPrefix, redis_url};
use fleetwire::backends::conformance::{self, update_of};
use fleetwire::backends::redis::{RedisConfig, RedisFanOut};
use fleetwire_actors::model::{TenantId, VehicleUpdate};
use fleetwire_actors::ports::{EventId, FanOut, FanOutError, FanOutMessage, LogEntry, Replay};

/// Longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(10);

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

/// A key prefix no other test (or test run) uses; its keys are deleted at the end.
fn unique_prefix() -> TestPrefix {
    TestPrefix::new()
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
    update_of(&TenantId::default(), vehicle, version)
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
    let (_, vehicle, version) = next_update_id(sub, what).await;
    (vehicle, version)
}

/// The next message, which must be an update; returns (id, vehicle, version).
async fn next_update_id(sub: &mut BoxStream<'static, FanOutMessage>, what: &str) -> (EventId, String, u64) {
    match next(sub, what).await {
        FanOutMessage::Entry(LogEntry::Update { id, update }) => {
            (id, update.vehicle_id.0.clone(), update.version)
        }
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

/// Every entry of `tenant`'s replay log as `(id, [field, value])`, read straight from Redis.
async fn log_entries(
    admin: &mut redis::aio::MultiplexedConnection,
    fanout: &RedisFanOut,
    tenant: &TenantId,
) -> Vec<(String, Vec<String>)> {
    redis::cmd("XRANGE")
        .arg(fanout.log_key(tenant))
        .arg("-")
        .arg("+")
        .query_async(admin)
        .await
        .expect("XRANGE")
}

async fn wait_subscribed(fanout: &RedisFanOut) {
    assert!(
        fanout.wait_until_all_subscribed(WAIT).await,
        "the subscription to {} was not established within {WAIT:?}",
        fanout.pattern()
    );
}

/// Pub/sub connections of `user` as Redis lists them.
async fn pubsub_connections(conn: &mut redis::aio::MultiplexedConnection, user: &str) -> usize {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(conn)
        .await
        .expect("CLIENT LIST failed");
    list.lines()
        .filter(|line| line.split(' ').any(|field| field == format!("user={user}")))
        .count()
}

/// The conformance check publishes right after `subscribe()`. Pub/sub only delivers what is
/// published after the `SUBSCRIBE` took effect, which the in-process fan-out satisfies at
/// once but a network fan-out cannot; this adapter waits for the subscriptions before each
/// publish, which is what a node gets by checking readiness first.
struct SubscribedBeforePublish(RedisFanOut);

#[async_trait]
impl FanOut for SubscribedBeforePublish {
    async fn publish(&self, update: Arc<VehicleUpdate>) -> Result<EventId, FanOutError> {
        wait_subscribed(&self.0).await;
        self.0.publish(update).await
    }

    fn subscribe(&self) -> BoxStream<'static, FanOutMessage> {
        self.0.subscribe()
    }

    async fn replay(&self, tenant: &TenantId, after: EventId, limit: usize) -> Result<Replay, FanOutError> {
        self.0.replay(tenant, after, limit).await
    }

    async fn ping(&self) -> Result<(), FanOutError> {
        self.0.ping().await
    }
}

#[tokio::test]
async fn conformance_fanout_delivers_to_every_subscriber() {
    admin().await;
    let prefix_1 = unique_prefix();
    let fanout = fanout(&prefix_1);
    conformance::check_fanout_delivers_to_every_subscriber(&SubscribedBeforePublish(fanout.clone())).await;
    assert!(fanout.is_subscribed());
}

#[tokio::test]
async fn conformance_fanout_replay() {
    admin().await;
    let prefix_2 = unique_prefix();
    conformance::check_fanout_replay(&fanout(&prefix_2)).await;
    let prefix_3 = unique_prefix();
    let bounded = RedisFanOut::new(&RedisConfig {
        replay_max_events: 10,
        replay_max_age_secs: 1,
        ..config(&prefix_3)
    })
    .expect("valid config");
    conformance::check_fanout_replay_is_bounded(&bounded, 10).await;
}

#[tokio::test]
async fn the_log_holds_what_was_published_and_live_ids_are_log_ids() {
    let mut admin = admin().await;
    let prefix_4 = unique_prefix();
    let fanout = fanout(&prefix_4);
    let mut sub = fanout.subscribe();
    wait_subscribed(&fanout).await;
    let id = fanout.publish(update("car", 1)).await.expect("publish");
    assert_eq!(next_update_id(&mut sub, "live").await, (id, "car".to_owned(), 1));
    let tenant = TenantId::default();
    let entries = log_entries(&mut admin, &fanout, &tenant).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].0,
        id.to_string(),
        "the event id is the stream entry id"
    );
    assert_eq!(entries[0].1[0], "u");
    assert!(entries[0].1[1].contains(r#""vehicle_id":"car""#));
}

/// Appends are batched (`append.rs`): one script call takes whatever callers queued,
/// across tenants. Each caller's updates must still land once each, in its order, with
/// the id its publish returned, and live order must be log order per tenant.
#[tokio::test]
async fn concurrent_publishes_are_batched_without_reordering_or_loss() {
    const TENANTS: usize = 3;
    const VEHICLES: usize = 20;
    const VERSIONS: u64 = 10;
    let mut admin = admin().await;
    let prefix = unique_prefix();
    let fanout = fanout(&prefix);
    let mut sub = fanout.subscribe();
    wait_subscribed(&fanout).await;

    let tenants: Vec<TenantId> = (0..TENANTS)
        .map(|t| TenantId::parse(&format!("batch-{t}")).unwrap())
        .collect();
    let mut callers = tokio::task::JoinSet::new();
    // Tenants interleaved, so a batch holds several tenants' entries mixed (the script
    // appends them grouped by tenant and the ids must still reach the right callers).
    for v in 0..VEHICLES {
        for tenant in &tenants {
            let (fanout, tenant) = (fanout.clone(), tenant.clone());
            // Like a vehicle actor: one publish at a time, in version order.
            callers.spawn(async move {
                let mut ids = Vec::new();
                for version in 1..=VERSIONS {
                    let update = update_of(&tenant, &format!("car-{v}"), version);
                    ids.push((
                        (tenant.clone(), format!("car-{v}"), version),
                        fanout.publish(update).await.expect("publish"),
                    ));
                }
                ids
            });
        }
    }
    let mut published = std::collections::HashMap::new();
    while let Some(ids) = callers.join_next().await {
        published.extend(ids.expect("caller"));
    }
    let total = TENANTS * VEHICLES * VERSIONS as usize;
    assert_eq!(published.len(), total);

    let mut last_version = std::collections::HashMap::new();
    let mut last_id: std::collections::HashMap<TenantId, EventId> = std::collections::HashMap::new();
    for n in 0..total {
        let FanOutMessage::Entry(LogEntry::Update { id, update }) = next(&mut sub, "live").await else {
            panic!("update {n}: expected an update");
        };
        let key = (update.tenant.clone(), update.vehicle_id.0.clone(), update.version);
        assert_eq!(
            published.get(&key),
            Some(&id),
            "{key:?} arrives with the id its publish returned"
        );
        let before = last_version
            .insert((key.0.clone(), key.1.clone()), key.2)
            .unwrap_or(0);
        assert_eq!(
            key.2,
            before + 1,
            "{key:?}: each vehicle's updates once each, in order"
        );
        let previous = last_id.insert(key.0.clone(), id);
        assert!(
            previous.is_none_or(|p| p < id),
            "{key:?}: live order is log order per tenant"
        );
    }
    for tenant in &tenants {
        let ids = log_entries(&mut admin, &fanout, tenant).await;
        assert_eq!(
            ids.len(),
            VEHICLES * VERSIONS as usize,
            "{tenant}'s log holds each update once"
        );
    }
}

/// The append task runs on the runtime of the publish that started it. When that runtime
/// is gone (an actix arbiter stopped), publishing must not fail for ever: the next publish
/// starts a new task. Its connection died with that runtime too, so that publish may fail
/// (recorded as a gap, never retried: a retry could append twice); once the gap marker is
/// written, publishes go through again.
#[test]
fn publishes_go_on_after_the_runtime_that_started_the_append_task_is_gone() {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };
    let prefix = unique_prefix();
    let fanout = fanout(&prefix);
    let first = runtime();
    first.block_on(async {
        admin().await;
        fanout.publish(update("car", 1)).await.expect("first publish")
    });
    drop(first);
    let second = runtime();
    second.block_on(async {
        if fanout.publish(update("car", 2)).await.is_err() {
            eventually("the gap marker is written", || async { !fanout.is_down() }).await;
        }
        let id = fanout
            .publish(update("car", 3))
            .await
            .expect("publish after the first runtime ended");
        let mut admin = admin().await;
        let entries = log_entries(&mut admin, &fanout, &TenantId::default()).await;
        assert_eq!(entries.last().map(|(id, _)| id.clone()), Some(id.to_string()));
    });
}

#[tokio::test]
async fn updates_cross_nodes_and_prefixes_isolate() {
    admin().await;
    let prefix = unique_prefix();
    let (node_a, node_b) = (fanout(&prefix), fanout(&prefix));
    let prefix_5 = unique_prefix();
    let other_tenant = fanout(&prefix_5);
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

/// A fan-out that connects as `user`, so a test can cut exactly its connections.
fn fanout_as(user: &TempUser, prefix: &str) -> RedisFanOut {
    RedisFanOut::new(&RedisConfig {
        url: user.url.clone(),
        ..config(prefix)
    })
    .expect("valid config")
}

/// Kills every connection of `user` and keeps it from reconnecting until [`allow`].
async fn cut_off(admin: &mut redis::aio::MultiplexedConnection, user: &TempUser) {
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user.name)
        .arg("off")
        .query_async::<()>(admin)
        .await
        .expect("ACL SETUSER off");
    let _killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("USER")
        .arg(&user.name)
        .query_async(admin)
        .await
        .expect("CLIENT KILL failed");
}

async fn allow(admin: &mut redis::aio::MultiplexedConnection, user: &TempUser) {
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user.name)
        .arg("on")
        .query_async::<()>(admin)
        .await
        .expect("ACL SETUSER on");
}

#[tokio::test]
async fn a_reconnected_subscription_recovers_the_gap_from_the_log() {
    let mut admin = admin().await;
    let user = TempUser::create(&mut admin).await;
    let prefix = unique_prefix();
    let subscriber = fanout_as(&user, &prefix);
    // Another node, still connected, keeps publishing while the subscriber is cut off.
    let publisher = fanout(&prefix);
    let mut sub = subscriber.subscribe();
    wait_subscribed(&subscriber).await;
    publisher.publish(update("car", 1)).await.expect("publish");
    assert_eq!(next_update(&mut sub, "before the cut").await.1, 1);

    cut_off(&mut admin, &user).await;
    eventually("the subscriber notices", || async { !subscriber.is_subscribed() }).await;
    let mut missed = Vec::new();
    for version in 2..=4 {
        missed.push(publisher.publish(update("car", version)).await.expect("publish"));
    }
    allow(&mut admin, &user).await;

    // Recovered from the log, in order, with their ids: no `Lost`, no reset.
    for (id, version) in missed.iter().zip(2..=4) {
        assert_eq!(
            next_update_id(&mut sub, "recovered").await,
            (*id, "car".to_owned(), version),
            "the missed update comes from the replay log"
        );
    }
    wait_subscribed(&subscriber).await;
    publisher.publish(update("car", 5)).await.expect("publish");
    assert_eq!(
        next_update(&mut sub, "live again").await.1,
        5,
        "live delivery goes on, without repeating what was recovered"
    );
}

/// Publishes share one multiplexed connection (pipelined on one socket); a connection
/// killed while idle is replaced and publishing resumes by itself; while Redis refuses
/// the user, publishes become gaps and the retry task writes the marker once it is
/// allowed back.
#[tokio::test]
async fn the_publish_connection_is_shared_and_reopened() {
    let mut admin = admin().await;
    let user = TempUser::create(&mut admin).await;
    let prefix = unique_prefix();
    let publisher = fanout_as(&user, &prefix);
    let publishes: Vec<_> = (1..=20)
        .map(|version| {
            let publisher = publisher.clone();
            tokio::spawn(async move { publisher.publish(update("car", version)).await })
        })
        .collect();
    for publish in publishes {
        publish.await.expect("task").expect("publish");
    }
    assert_eq!(
        user_connections(&mut admin, &user.name).await,
        1,
        "20 concurrent publishes used one connection"
    );

    // Killed while idle (as by a Redis failover): the next publish fails (the dead
    // connection is only noticed by using it) or reconnects; either way publishing
    // resumes by itself.
    let _killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("USER")
        .arg(&user.name)
        .query_async(&mut admin)
        .await
        .expect("CLIENT KILL");
    let _ = publisher.publish(update("car", 21)).await;
    eventually("publishing resumes after the kill", || async {
        !publisher.is_down() && publisher.publish(update("car", 22)).await.is_ok()
    })
    .await;

    cut_off(&mut admin, &user).await;
    match tokio::time::timeout(WAIT, publisher.publish(update("car", 23))).await {
        Ok(Err(FanOutError::Unavailable(_))) => {}
        other => panic!("a publish without a connection fails promptly, got {other:?}"),
    }
    assert!(publisher.is_down(), "and is recorded as a gap");
    allow(&mut admin, &user).await;
    eventually("the gap marker is written", || async { !publisher.is_down() }).await;
    let log: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
        .arg(publisher.log_key(&TenantId::default()))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut admin)
        .await
        .expect("XREVRANGE");
    assert_eq!(log[0].1[0].0, "gap", "the lost update left a gap marker");
    publisher
        .publish(update("car", 24))
        .await
        .expect("publish after the gap");
}

/// Number of connections `user` has open (any kind).
async fn user_connections(conn: &mut redis::aio::MultiplexedConnection, user: &str) -> usize {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(conn)
        .await
        .expect("CLIENT LIST");
    list.lines()
        .filter(|line| line.split(' ').any(|field| field == format!("user={user}")))
        .count()
}

#[tokio::test]
async fn a_gap_the_log_no_longer_covers_becomes_a_gap_entry() {
    let mut admin = admin().await;
    let user = TempUser::create(&mut admin).await;
    let prefix = unique_prefix();
    let small = |url: String| RedisConfig {
        url,
        replay_max_events: 10,
        ..config(&prefix)
    };
    let subscriber = RedisFanOut::new(&small(user.url.clone())).expect("valid config");
    let publisher = RedisFanOut::new(&small(redis_url())).expect("valid config");
    let mut sub = subscriber.subscribe();
    wait_subscribed(&subscriber).await;
    publisher.publish(update("car", 1)).await.expect("publish");
    assert_eq!(next_update(&mut sub, "before the cut").await.1, 1);

    cut_off(&mut admin, &user).await;
    eventually("the subscriber notices", || async { !subscriber.is_subscribed() }).await;
    // Far more than the log keeps: the subscriber's position is trimmed away.
    let mut head = EventId::ZERO;
    for version in 2..=400 {
        head = publisher.publish(update("car", version)).await.expect("publish");
    }
    allow(&mut admin, &user).await;

    assert_eq!(
        next(&mut sub, "after the reconnect").await,
        FanOutMessage::Entry(LogEntry::Gap {
            tenant: TenantId::default(),
            id: head
        }),
        "the tenant's subscribers are told to reload; delivery goes on after the head"
    );
    wait_subscribed(&subscriber).await;
    publisher.publish(update("car", 401)).await.expect("publish");
    assert_eq!(next_update(&mut sub, "live again").await.1, 401);
}

/// Client ids of `user`'s pub/sub connections.
async fn pubsub_ids(conn: &mut redis::aio::MultiplexedConnection, user: &str) -> Vec<String> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(conn)
        .await
        .expect("CLIENT LIST failed");
    list.lines()
        .filter(|line| line.split(' ').any(|field| field == format!("user={user}")))
        .filter_map(|line| {
            line.split(' ')
                .find_map(|f| f.strip_prefix("id="))
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn the_idle_health_check_keeps_a_good_connection() {
    let mut admin = admin().await;
    let user = TempUser::create(&mut admin).await;
    // Many PINGs on an idle subscription; a PING answer the client did not understand
    // would look like a dead connection and show up as a new connection.
    let prefix_6 = unique_prefix();
    let fanout = RedisFanOut::new(&RedisConfig {
        url: user.url.clone(),
        ..config(&prefix_6)
    })
    .expect("valid config")
    .with_health_check_interval(Duration::from_millis(20));
    let mut sub = fanout.subscribe();
    wait_subscribed(&fanout).await;
    let before = pubsub_ids(&mut admin, &user.name).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(fanout.is_subscribed());
    assert_eq!(
        pubsub_ids(&mut admin, &user.name).await,
        before,
        "no reconnect while idle: the health check's PING is understood"
    );
    fanout.publish(update("car", 1)).await.expect("publish");
    assert_eq!(next_update(&mut sub, "after idling").await, ("car".to_owned(), 1));
}

#[tokio::test]
async fn dropping_the_stream_ends_the_reader_task() {
    let mut admin = admin().await;
    let user = TempUser::create(&mut admin).await;
    let prefix_7 = unique_prefix();
    let fanout = RedisFanOut::new(&RedisConfig {
        url: user.url.clone(),
        ..config(&prefix_7)
    })
    .expect("valid config");
    let sub = fanout.subscribe();
    wait_subscribed(&fanout).await;
    assert_eq!(
        pubsub_connections(&mut admin, &user.name).await,
        1,
        "one pub/sub connection per node"
    );
    assert_eq!(fanout.subscription_count(), 1);

    drop(sub);
    eventually("the reader task ends", || async {
        fanout.subscription_count() == 0
    })
    .await;
    let name = user.name.clone();
    eventually("Redis drops the subscription", || {
        let mut admin = admin.clone();
        let name = name.clone();
        async move { pubsub_connections(&mut admin, &name).await == 0 }
    })
    .await;
    assert!(!fanout.is_subscribed());
}

#[tokio::test]
async fn a_full_buffer_drops_and_reports_the_gap_before_later_updates() {
    admin().await;
    let prefix_8 = unique_prefix();
    let fanout = RedisFanOut::new(&RedisConfig {
        subscription_buffer: 4,
        ..config(&prefix_8)
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
            FanOutMessage::Entry(LogEntry::Update { update, .. }) => delivered.push(update.version),
            FanOutMessage::Lost {
                tenant: None,
                skipped: n,
            } => {
                assert!(n > 0, "a buffer overflow reports how many were dropped");
                skipped += n;
                lags += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        delivered.len() as u64 + skipped,
        SENT,
        "every update is delivered or counted"
    );
    assert!(lags >= 1 && skipped > 0, "an overflow is reported as Lost");
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
    let prefix_9 = unique_prefix();
    let fanout = fanout(&prefix_9);
    let mut sub = fanout.subscribe();
    wait_subscribed(&fanout).await;
    let channel = fanout.channel(&TenantId::default());
    let other_tenant = fanout.channel(&TenantId::parse("other").unwrap());
    for (channel, junk) in [
        (&channel, "not json"),
        (&channel, r#"1-0 u {"vehicle_id":1}"#),
        (&channel, "1-0 gap"),
        (&channel, ""),
        // Well-formed, but its tenant is not the channel's.
        (
            &other_tenant,
            &format!("1-0 u {}", serde_json::to_string(&*update("x", 1)).unwrap()),
        ),
    ] {
        redis::cmd("PUBLISH")
            .arg(channel)
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
    let prefix_10 = unique_prefix();
    let fanout = RedisFanOut::new(&RedisConfig {
        url: "redis://127.0.0.1:1/".into(),
        ..config(&prefix_10)
    })
    .expect("building does no I/O");
    match tokio::time::timeout(WAIT, fanout.publish(update("car", 1))).await {
        Ok(Err(FanOutError::Unavailable(_))) => {}
        other => panic!("expected a prompt Unavailable, got {other:?}"),
    }
    assert!(fanout.is_down(), "a failed publish switches publishes off");
    let started = std::time::Instant::now();
    assert!(fanout.publish(update("car", 2)).await.is_err());
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "while down, publishes fail at once"
    );
    match tokio::time::timeout(WAIT, fanout.ping()).await {
        Ok(Err(FanOutError::Unavailable(_))) => {}
        other => panic!("expected a prompt Unavailable, got {other:?}"),
    }
    match tokio::time::timeout(WAIT, fanout.replay(&TenantId::default(), EventId::ZERO, 10)).await {
        Ok(Err(FanOutError::Unavailable(_))) => {}
        other => panic!("expected a prompt Unavailable, got {other:?}"),
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

#[tokio::test]
async fn a_redis_restart_resets_subscribers_and_delivery_resumes() {
    let mut redis = PrivateRedis::start();
    let prefix = unique_prefix();
    let private = |prefix: &str| RedisConfig {
        url: redis.url(),
        ..config(prefix)
    };
    let subscriber = RedisFanOut::new(&private(&prefix)).expect("valid config");
    let publisher = RedisFanOut::new(&private(&prefix)).expect("valid config");
    let mut sub = subscriber.subscribe();
    wait_subscribed(&subscriber).await;
    publisher.publish(update("car", 1)).await.expect("publish");
    assert_eq!(next_update(&mut sub, "before the restart").await.1, 1);

    redis.kill();
    match tokio::time::timeout(WAIT, publisher.publish(update("car", 2))).await {
        Ok(Err(FanOutError::Unavailable(_))) => {}
        other => panic!("a publish while Redis is down fails promptly, got {other:?}"),
    }
    assert!(publisher.is_down());
    eventually("the subscriber notices", || async { !subscriber.is_subscribed() }).await;
    redis.restart();

    // The restarted Redis lost the log, so update 2 cannot be recovered (and the
    // subscriber cannot even tell): its subscribers must reload. Which message says so
    // depends on whether the publisher's gap marker or the subscriber's recovery comes
    // first, but one of them comes before any later update.
    match next(&mut sub, "after the restart").await {
        FanOutMessage::Lost {
            tenant: Some(tenant),
            skipped: 0,
        } => assert_eq!(tenant, TenantId::default()),
        FanOutMessage::Entry(LogEntry::Gap { tenant, .. }) => assert_eq!(tenant, TenantId::default()),
        other => panic!("expected the tenant to be reset, got {other:?}"),
    }
    eventually("the publisher wrote its gap marker", || async {
        !publisher.is_down()
    })
    .await;
    wait_subscribed(&subscriber).await;
    let id = publisher
        .publish(update("car", 3))
        .await
        .expect("publish after the restart");
    loop {
        match next(&mut sub, "after the restart").await {
            // The publisher's gap marker, if the recovery came first.
            FanOutMessage::Entry(LogEntry::Gap { .. }) => continue,
            FanOutMessage::Entry(LogEntry::Update { id: got, update }) => {
                assert_eq!((got, update.version), (id, 3), "delivery resumes");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Publish latency of the append script (XADD + trim + SADD + PUBLISH in one EVALSHA, on
/// the fan-out's multiplexed connection), sequential and concurrent, against a bare
/// PUBLISH of the same payload (`cargo test --test redis_backend -- --ignored --nocapture
/// publish_latency`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run on demand"]
async fn publish_latency() {
    let mut admin = admin().await;
    let prefix = unique_prefix();
    let fanout = fanout(&prefix);
    const N: usize = 5000;
    /// Concurrent publishers in the pipelined run (like vehicle actors on several arbiters).
    const CONCURRENT: usize = 16;
    let payload = serde_json::to_string(&*update("car", 1)).unwrap();
    let percentiles = |mut samples: Vec<Duration>| {
        samples.sort_unstable();
        let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
        format!(
            "p50 {:?} p99 {:?} max {:?}",
            at(0.50),
            at(0.99),
            samples[samples.len() - 1]
        )
    };
    fanout.publish(update("car", 0)).await.expect("warm-up");
    let mut script = Vec::with_capacity(N);
    for version in 1..=N as u64 {
        let started = std::time::Instant::now();
        fanout.publish(update("car", version)).await.expect("publish");
        script.push(started.elapsed());
    }
    // The same total from CONCURRENT tasks at once: what pipelining on one connection buys.
    let started_all = std::time::Instant::now();
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|task| {
            let fanout = fanout.clone();
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(N / CONCURRENT);
                for i in 0..(N / CONCURRENT) as u64 {
                    let started = std::time::Instant::now();
                    let vehicle = format!("car-{task}");
                    fanout.publish(update(&vehicle, i + 1)).await.expect("publish");
                    samples.push(started.elapsed());
                }
                samples
            })
        })
        .collect();
    let mut concurrent = Vec::with_capacity(N);
    for task in tasks {
        concurrent.extend(task.await.expect("publisher task"));
    }
    let concurrent_rate = concurrent.len() as f64 / started_all.elapsed().as_secs_f64();
    let channel = format!("{}:bare", &*prefix);
    // What publishing was before the replay log: a bare PUBLISH through a deadpool pool
    // (whose recycle check adds a PING round trip per checkout).
    let pool = deadpool_redis::Config::from_url(redis_url())
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .expect("pool");
    let mut pooled = Vec::with_capacity(N);
    for _ in 0..N {
        let started = std::time::Instant::now();
        let mut conn = pool.get().await.expect("pooled connection");
        redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(&payload)
            .query_async::<i64>(&mut conn)
            .await
            .expect("PUBLISH");
        pooled.push(started.elapsed());
    }
    let mut bare = Vec::with_capacity(N);
    for _ in 0..N {
        let started = std::time::Instant::now();
        redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(&payload)
            .query_async::<i64>(&mut admin)
            .await
            .expect("PUBLISH");
        bare.push(started.elapsed());
    }
    println!("payload {} bytes, {N} publishes", payload.len());
    println!(
        "append script (EVALSHA, multiplexed), sequential: {}",
        percentiles(script)
    );
    println!(
        "append script (EVALSHA, multiplexed), {CONCURRENT} concurrent: {} ({concurrent_rate:.0}/s)",
        percentiles(concurrent)
    );
    println!("bare PUBLISH (pooled):      {}", percentiles(pooled));
    println!("bare PUBLISH (multiplexed): {}", percentiles(bare));
}
