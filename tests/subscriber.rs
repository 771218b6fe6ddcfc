//! Subscriber hub and subscriber actors on the real in-process fan-out: filtering,
//! coalescing for slow clients, slow-client disconnect, shutdown.

use std::sync::Arc;
use std::time::Duration;

use fleetwire::backends::embedded::InProcessFanOut;
use fleetwire_actors::model::{VehicleId, VehicleUpdate};
use fleetwire_actors::ports::FanOut;
use fleetwire_actors::registry::{ActorKind, ActorRegistry};
use fleetwire_actors::subscriber::{
    CloseAll, Subscriber, SubscriberConfig, SubscriberHub, SubscriptionFilter,
};
use serde_json::Value;
use tokio::sync::mpsc::Receiver;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn update(vehicle: &str, version: u64) -> Arc<VehicleUpdate> {
    Arc::new(VehicleUpdate {
        vehicle_id: VehicleId(vehicle.into()),
        version,
        last_seen: None,
        changed: vec!["Soc".into()],
        signals: Default::default(),
        ingest_received_at: chrono::Utc::now(),
    })
}

async fn wait_for_hub_subscribers(registry: &ActorRegistry, n: u64) {
    timeout(WAIT, async {
        loop {
            let hub = registry.get(ActorKind::SubscriberHub, "hub").unwrap();
            if hub.details.get("subscribers").and_then(Value::as_u64) == Some(n) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("hub sees the subscribers");
}

/// Reads until every vehicle in `want` was seen at version `last`; returns events read.
async fn read_until_latest(
    rx: &mut Receiver<fleetwire_actors::subscriber::SubscriberStream>,
    want: &[&str],
    last: u64,
) -> usize {
    let mut latest: std::collections::HashMap<String, u64> = Default::default();
    let mut read = 0;
    while !want.iter().all(|v| latest.get(*v) == Some(&last)) {
        let ev = timeout(WAIT, rx.recv())
            .await
            .expect("event in time")
            .expect("stream open");
        assert_eq!(ev.event, "vehicle");
        let data: Value = serde_json::from_str(&ev.data).unwrap();
        let version = data["version"].as_u64().unwrap();
        let previous = latest.insert(data["vehicle_id"].as_str().unwrap().to_owned(), version);
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
    let fanout = Arc::new(InProcessFanOut::new(4096));
    let registry = ActorRegistry::new();
    let hub = SubscriberHub::start(fanout.clone(), &registry);
    let config = SubscriberConfig {
        channel_capacity: 1,
        ..SubscriberConfig::default()
    };
    let mut rx = Subscriber::start(SubscriptionFilter::default(), config, hub.clone(), &registry);
    wait_for_hub_subscribers(&registry, 1).await;

    for version in 1..=200 {
        for vehicle in ["a", "b", "c"] {
            fanout.publish(update(vehicle, version)).await.unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let read = read_until_latest(&mut rx, &["a", "b", "c"], 200).await;
    assert!(read < 600, "waiting updates were coalesced (read {read} of 600)");
    let info = registry.list(Some(ActorKind::Subscriber), 1).pop().unwrap();
    assert!(
        info.details["coalesced"].as_u64().unwrap() > 0,
        "{:?}",
        info.details
    );
}

#[actix_rt::test]
async fn a_blocked_client_is_disconnected_and_others_keep_streaming() {
    let fanout = Arc::new(InProcessFanOut::new(4096));
    let registry = ActorRegistry::new();
    let hub = SubscriberHub::start(fanout.clone(), &registry);
    let config = SubscriberConfig {
        channel_capacity: 2,
        slow_client_timeout_ms: 300,
        ..SubscriberConfig::default()
    };
    let mut blocked = Subscriber::start(
        SubscriptionFilter::default(),
        config.clone(),
        hub.clone(),
        &registry,
    );
    let mut reader = Subscriber::start(SubscriptionFilter::default(), config, hub.clone(), &registry);
    wait_for_hub_subscribers(&registry, 2).await;

    // Publish for a second while only `reader` reads.
    let publisher = async {
        for version in 1..=100 {
            fanout.publish(update("v", version)).await.unwrap();
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
        registry.counts()[&ActorKind::Subscriber],
        1,
        "only the reading subscriber is left"
    );
    wait_for_hub_subscribers(&registry, 1).await;
}

#[actix_rt::test]
async fn filters_and_shutdown() {
    let fanout = Arc::new(InProcessFanOut::new(64));
    let registry = ActorRegistry::new();
    let hub = SubscriberHub::start(fanout.clone(), &registry);
    let only_b = SubscriptionFilter::from_query(Some("b")).unwrap();
    let mut rx = Subscriber::start(only_b, SubscriberConfig::default(), hub.clone(), &registry);
    wait_for_hub_subscribers(&registry, 1).await;
    fanout.publish(update("a", 1)).await.unwrap();
    fanout.publish(update("b", 1)).await.unwrap();
    let ev = timeout(WAIT, rx.recv()).await.unwrap().unwrap();
    assert!(ev.data.contains("\"vehicle_id\":\"b\""));
    assert_eq!(ev.id, Some(2), "event ids number every update the hub routed");

    assert_eq!(hub.send(CloseAll).await.unwrap(), 1);
    assert!(
        timeout(WAIT, rx.recv()).await.unwrap().is_none(),
        "stream ends at shutdown"
    );
    timeout(WAIT, async {
        while registry.counts()[&ActorKind::SubscriberHub] + registry.counts()[&ActorKind::Subscriber] > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("hub and subscriber stopped");
}
