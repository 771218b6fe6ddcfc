//! Subscriber hub and subscriber actors on the real in-process fan-out: filtering and
//! tenants, coalescing for slow clients, slow-client disconnect, `Last-Event-ID` resume
//! (exactly the missed updates, also while updates keep coming), resets, shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fleetwire::backends::conformance::update_of;
use fleetwire::backends::embedded::InProcessFanOut;
use fleetwire_actors::model::TenantId;
use fleetwire_actors::ports::{EventId, FanOut, ReplayRetention};
use fleetwire_actors::registry::{ActorKind, ActorRegistry};
use fleetwire_actors::subscriber::{
    CloseAll, FilterQuery, Resume, Subscriber, SubscriberConfig, SubscriberHub, SubscriberServices,
    SubscriberSpec, SubscriberStream, SubscriptionFilter,
};
use serde_json::Value;
use tokio::sync::mpsc::Receiver;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

/// A hub on an in-process fan-out, and what subscribers need.
struct Setup {
    fanout: Arc<InProcessFanOut>,
    registry: ActorRegistry,
    services: SubscriberServices,
}

impl Setup {
    fn new(config: SubscriberConfig, retention: ReplayRetention) -> Self {
        let fanout = Arc::new(InProcessFanOut::new(4096, retention));
        let registry = ActorRegistry::new();
        let hub = SubscriberHub::start(fanout.clone(), &registry);
        let services = SubscriberServices {
            hub,
            fanout: fanout.clone(),
            registry: registry.clone(),
            config,
        };
        Self {
            fanout,
            registry,
            services,
        }
    }

    fn with(config: SubscriberConfig) -> Self {
        Self::new(config, ReplayRetention::from_config(10_000, 0))
    }

    fn subscribe(&self, filter: SubscriptionFilter, resume: Resume) -> Receiver<SubscriberStream> {
        self.subscribe_as(TenantId::default(), filter, resume)
    }

    fn subscribe_as(
        &self,
        tenant: TenantId,
        filter: SubscriptionFilter,
        resume: Resume,
    ) -> Receiver<SubscriberStream> {
        Subscriber::start(
            SubscriberSpec {
                tenant,
                filter,
                resume,
            },
            &self.services,
        )
    }

    async fn publish(&self, vehicle: &str, version: u64) -> EventId {
        self.publish_as(&TenantId::default(), vehicle, version).await
    }

    async fn publish_as(&self, tenant: &TenantId, vehicle: &str, version: u64) -> EventId {
        self.fanout
            .publish(update_of(tenant, vehicle, version))
            .await
            .unwrap()
    }

    async fn wait_for_hub_subscribers(&self, n: u64) {
        timeout(WAIT, async {
            loop {
                let hub = self.registry.get(ActorKind::SubscriberHub, "hub").unwrap();
                if hub.details.get("subscribers").and_then(Value::as_u64) == Some(n) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("hub sees the subscribers");
    }
}

async fn next(rx: &mut Receiver<SubscriberStream>) -> SubscriberStream {
    timeout(WAIT, rx.recv())
        .await
        .expect("event in time")
        .expect("stream open")
}

/// (vehicle, version) of a vehicle event.
fn vehicle_of(ev: &SubscriberStream) -> (String, u64) {
    assert_eq!(ev.event, "vehicle", "{ev:?}");
    let data: Value = serde_json::from_str(&ev.data).unwrap();
    (
        data["vehicle_id"].as_str().unwrap().to_owned(),
        data["version"].as_u64().unwrap(),
    )
}

/// Reads until every vehicle in `want` was seen at version `last`; returns events read.
async fn read_until_latest(rx: &mut Receiver<SubscriberStream>, want: &[&str], last: u64) -> usize {
    let mut latest: HashMap<String, u64> = HashMap::new();
    let mut previous_id = None;
    let mut read = 0;
    while !want.iter().all(|v| latest.get(*v) == Some(&last)) {
        let ev = next(rx).await;
        assert!(ev.id > previous_id, "ids on the wire keep increasing");
        previous_id = ev.id;
        let (vehicle, version) = vehicle_of(&ev);
        let previous = latest.insert(vehicle, version);
        assert!(
            previous.is_none_or(|p| p < version),
            "versions only move forward per vehicle"
        );
        read += 1;
    }
    read
}

#[actix_rt::test]
async fn a_client_that_does_not_read_gets_the_latest_state_per_vehicle() {
    let setup = Setup::with(SubscriberConfig {
        channel_capacity: 1,
        ..SubscriberConfig::default()
    });
    let mut rx = setup.subscribe(SubscriptionFilter::default(), Resume::Fresh);
    setup.wait_for_hub_subscribers(1).await;

    for version in 1..=200 {
        for vehicle in ["a", "b", "c"] {
            setup.publish(vehicle, version).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let read = read_until_latest(&mut rx, &["a", "b", "c"], 200).await;
    assert!(read < 600, "waiting updates were coalesced (read {read} of 600)");
    let info = setup.registry.list(Some(ActorKind::Subscriber), 1).pop().unwrap();
    assert!(
        info.details["coalesced"].as_u64().unwrap() > 0,
        "{:?}",
        info.details
    );
    assert_eq!(info.details["tenant"], "default");
    assert!(info.details["connected_at"].is_string());
}

#[actix_rt::test]
async fn a_blocked_client_is_disconnected_and_others_keep_streaming() {
    let setup = Setup::with(SubscriberConfig {
        channel_capacity: 2,
        slow_client_timeout_ms: 300,
        ..SubscriberConfig::default()
    });
    let mut blocked = setup.subscribe(SubscriptionFilter::default(), Resume::Fresh);
    let mut reader = setup.subscribe(SubscriptionFilter::default(), Resume::Fresh);
    setup.wait_for_hub_subscribers(2).await;

    // Publish for a second while only `reader` reads.
    let publisher = async {
        for version in 1..=100 {
            setup.publish("v", version).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let (_, read) = tokio::join!(publisher, read_until_latest(&mut reader, &["v"], 100));
    assert!(read >= 1);

    // The blocked client got what fit in its channel, then its stream ended.
    let mut buffered = 0;
    while let Some(_ev) = timeout(WAIT, blocked.recv())
        .await
        .expect("blocked stream ends in time")
    {
        buffered += 1;
    }
    assert!(
        buffered <= 2,
        "only the channel's capacity was delivered, got {buffered}"
    );
    assert_eq!(
        setup.registry.counts()[&ActorKind::Subscriber],
        1,
        "only the reading subscriber is left"
    );
    setup.wait_for_hub_subscribers(1).await;
}

/// A client that does not read while many vehicles change (nothing to coalesce) is cut
/// off by the byte budget — the time and event budgets are far out of reach — while a
/// reading client keeps streaming; resuming with its last id, it gets every vehicle it
/// had not seen, from the replay log.
#[actix_rt::test]
async fn a_client_over_the_byte_budget_is_disconnected_and_resumes() {
    let setup = Setup::with(SubscriberConfig {
        channel_capacity: 2,
        slow_client_timeout_ms: 600_000,
        max_pending: 1_000_000,
        max_buffered_bytes: 16 * 1024,
        ..SubscriberConfig::default()
    });
    let mut slow = setup.subscribe(SubscriptionFilter::default(), Resume::Fresh);
    let mut fast = setup.subscribe(SubscriptionFilter::default(), Resume::Fresh);
    setup.wait_for_hub_subscribers(2).await;

    // 200 vehicles of ~200 serialized bytes each: about 40 KiB for the slow client.
    let vehicles: Vec<String> = (0..200).map(|i| format!("car-{i:03}")).collect();
    let names: Vec<&str> = vehicles.iter().map(String::as_str).collect();
    // The fast client takes each update before the next is published (the hub runs on a
    // thread of its own, so merely yielding would let it outpace this reader).
    let mut read = 0;
    for vehicle in &names {
        setup.publish(vehicle, 1).await;
        read += read_until_latest(&mut fast, &[vehicle], 1).await;
    }
    assert_eq!(read, 200, "the fast client got every update");

    let mut last_id = None;
    let mut got = 0;
    while let Some(ev) = timeout(WAIT, slow.recv())
        .await
        .expect("the slow client's stream ends in time")
    {
        last_id = ev.id;
        got += 1;
    }
    assert!(got <= 2, "only the channel's capacity was delivered, got {got}");
    assert_eq!(
        setup.registry.counts()[&ActorKind::Subscriber],
        1,
        "only the fast subscriber is left"
    );
    setup.publish("car-000", 2).await;
    assert_eq!(vehicle_of(&next(&mut fast).await), ("car-000".to_owned(), 2));

    let mut resumed = setup.subscribe(
        SubscriptionFilter::default(),
        last_id.map_or(Resume::Fresh, Resume::After),
    );
    let started = std::time::Instant::now();
    let read = read_until_latest(&mut resumed, &names[got..], 1).await;
    assert_eq!(
        read,
        200 - got,
        "the resume replays exactly what the client missed"
    );
    // Paced by the 100 ms flush tick (2 events per tick through this channel), the
    // backlog would take about 10 s; the subscriber refills as soon as there is room.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "catching up took {:?}",
        started.elapsed()
    );
}

#[actix_rt::test]
async fn filters_tenants_and_shutdown() {
    let setup = Setup::with(SubscriberConfig::default());
    let only_b = SubscriptionFilter::from_query(Some("b")).unwrap();
    let mut rx = setup.subscribe(only_b, Resume::Fresh);
    let acme = TenantId::parse("acme").unwrap();
    let mut acme_rx = setup.subscribe_as(acme.clone(), SubscriptionFilter::default(), Resume::Fresh);
    let soc_only = SubscriptionFilter::parse(FilterQuery {
        signals: Some("Gear"),
        ..FilterQuery::default()
    })
    .unwrap();
    let mut gear_rx = setup.subscribe(soc_only, Resume::Fresh);
    setup.wait_for_hub_subscribers(3).await;
    setup.publish("a", 1).await;
    let b_id = setup.publish("b", 1).await;
    let acme_id = setup.publish_as(&acme, "b", 7).await;

    let ev = next(&mut rx).await;
    assert_eq!(vehicle_of(&ev), ("b".to_owned(), 1));
    assert_eq!(ev.id, Some(b_id), "the event id is the log id");
    let ev = next(&mut acme_rx).await;
    assert_eq!(
        (vehicle_of(&ev), ev.id),
        (("b".to_owned(), 7), Some(acme_id)),
        "a tenant sees only its own updates"
    );

    assert_eq!(setup.services.hub.send(CloseAll).await.unwrap(), 3);
    for rx in [&mut rx, &mut acme_rx, &mut gear_rx] {
        assert!(
            timeout(WAIT, rx.recv()).await.unwrap().is_none(),
            "stream ends at shutdown (the Gear-only one got nothing: no update changed Gear)"
        );
    }
    timeout(WAIT, async {
        let counts = || setup.registry.counts();
        while counts()[&ActorKind::SubscriberHub] + counts()[&ActorKind::Subscriber] > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("hub and subscriber stopped");
}

#[actix_rt::test]
async fn a_resume_gets_exactly_what_was_missed_while_updates_keep_coming() {
    let setup = Setup::with(SubscriberConfig::default());
    let mut ids = Vec::new();
    for version in 1..=20 {
        ids.push(setup.publish(&format!("car-{}", version % 3), version).await);
    }
    // The client saw up to version 7, then reconnects while publishing goes on.
    let mut rx = setup.subscribe(SubscriptionFilter::default(), Resume::After(ids[6]));
    for version in 21..=60 {
        ids.push(setup.publish(&format!("car-{}", version % 3), version).await);
        if version % 10 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let mut got = Vec::new();
    while got.len() < 53 {
        let ev = next(&mut rx).await;
        got.push((ev.id.unwrap(), vehicle_of(&ev).1));
    }
    let expected: Vec<(EventId, u64)> = ids[7..].iter().copied().zip(8..=60).collect();
    assert_eq!(
        got, expected,
        "exactly the missed updates, in order, then live, no duplicates"
    );
    setup.publish("car-0", 61).await;
    assert_eq!(vehicle_of(&next(&mut rx).await).1, 61);
    let info = setup.registry.list(Some(ActorKind::Subscriber), 1).pop().unwrap();
    assert_eq!(info.details["resumed_after"], ids[6].to_string());
}

#[actix_rt::test]
async fn a_resume_replays_through_the_filter() {
    let setup = Setup::with(SubscriberConfig::default());
    let first = setup.publish("a", 1).await;
    setup.publish("b", 1).await;
    setup.publish("a", 2).await;
    let only_a = SubscriptionFilter::from_query(Some("a")).unwrap();
    let mut rx = setup.subscribe(only_a, Resume::After(first));
    assert_eq!(vehicle_of(&next(&mut rx).await), ("a".to_owned(), 2));
    setup.publish("b", 2).await;
    setup.publish("a", 3).await;
    assert_eq!(vehicle_of(&next(&mut rx).await), ("a".to_owned(), 3));
}

#[actix_rt::test]
async fn ids_the_log_cannot_cover_get_a_reset_then_live_updates() {
    let setup = Setup::new(SubscriberConfig::default(), ReplayRetention::from_config(5, 0));
    let mut ids = Vec::new();
    for version in 1..=10 {
        ids.push(setup.publish("car", version).await);
    }
    let mut head = *ids.last().unwrap();
    let future = EventId::new(head.ms + 60_000, 0);
    for (resume, reason) in [
        (Resume::After(ids[0]), "too_old"),
        (Resume::After(future), "unknown_id"),
        (Resume::Invalid, "invalid_id"),
    ] {
        let mut rx = setup.subscribe(SubscriptionFilter::default(), resume);
        let reset = next(&mut rx).await;
        assert_eq!(reset.event, "reset", "{resume:?}");
        let data: Value = serde_json::from_str(&reset.data).unwrap();
        assert_eq!(data["reason"], reason);
        if reason != "invalid_id" {
            assert_eq!(reset.id, Some(head), "delivery continues after the log's head");
        }
        setup.wait_for_hub_subscribers(1).await;
        let live = setup.publish("car", 100).await;
        head = live;
        let ev = next(&mut rx).await;
        assert_eq!(
            (ev.id, vehicle_of(&ev).1),
            (Some(live), 100),
            "{resume:?}: live after the reset"
        );
        drop(rx);
        setup.wait_for_hub_subscribers(0).await;
    }
    let too_long = Setup::with(SubscriberConfig {
        max_replay_events: 600,
        ..SubscriberConfig::default()
    });
    let first = too_long.publish("car", 0).await;
    for version in 1..=1200 {
        too_long.publish("car", version).await;
    }
    let mut rx = too_long.subscribe(SubscriptionFilter::default(), Resume::After(first));
    let mut replayed = 0;
    loop {
        let ev = next(&mut rx).await;
        if ev.event == "reset" {
            assert!(ev.data.contains("replay_too_long"), "{ev:?}");
            break;
        }
        replayed += 1;
    }
    assert!(
        replayed <= 1000,
        "the replay stopped at its budget (two pages), sent {replayed}"
    );
}

#[actix_rt::test]
async fn updates_the_hub_must_drop_end_in_a_reset_not_a_silent_gap() {
    let setup = Setup::with(SubscriberConfig {
        mailbox_capacity: 1,
        ..SubscriberConfig::default()
    });
    let mut rx = setup.subscribe(SubscriptionFilter::default(), Resume::Fresh);
    setup.wait_for_hub_subscribers(1).await;
    // The hub runs on a thread of its own; this thread runs the subscriber. Blocking it
    // while the hub routes 200 updates (in chunks of at most `HUB_CHUNK`) means the
    // subscriber drains nothing meanwhile, so its one-slot mailbox overflows.
    for version in 1..=200 {
        setup.publish(&format!("car-{}", version % 7), version).await;
    }
    std::thread::sleep(Duration::from_millis(300));
    // Updates dropped after the reset are covered by the reload it asks for, so the
    // client need not see version 200 itself; it must see the reset.
    let reset = loop {
        let ev = next(&mut rx).await;
        if ev.event == "reset" {
            break ev;
        }
    };
    assert!(reset.data.contains("dropped"), "{reset:?}");
    assert!(
        reset.id.is_some(),
        "delivery continues after the dropped update's id"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let live = setup.publish("car-0", 201).await;
    loop {
        let ev = next(&mut rx).await;
        if ev.event == "vehicle" && vehicle_of(&ev).1 == 201 {
            assert_eq!(ev.id, Some(live));
            break;
        }
    }
    let info = setup.registry.list(Some(ActorKind::Subscriber), 1).pop().unwrap();
    assert!(
        info.details["dropped"].as_u64().unwrap() > 0,
        "{:?}",
        info.details
    );
}
