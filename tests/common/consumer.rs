//! The KCL-style consumer's test seams, shared by the embedded (`consumer.rs`) and
//! enhanced fan-out (`kinesis_fan_out.rs`) tests: a recording router (the consumer's own
//! output seam, not a backend), numbered records to put, and a bounded wait.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use fleetwire_actors::codec::encode_record;
use fleetwire_actors::consumer::{RecordRouter, RouteError};
use fleetwire_actors::model::{SignalValue, TelemetryRecord, VehicleId};
use fleetwire_actors::ports::{PutEntry, PutOutcome, RecordStream, SequenceNumber, ShardId};
use fleetwire_actors::producer::DeadLetter;

/// Records every routed record as (vehicle, n); fails while `fail_remaining > 0`.
#[derive(Default)]
pub struct RecordingRouter {
    pub routed: Mutex<Vec<(String, i64)>>,
    pub fail_remaining: AtomicUsize,
    pub failures: AtomicUsize,
    /// Time each call takes (a slow vehicle store).
    pub delay: Option<Duration>,
    /// Undecodable records handed over as dead letters.
    pub dead: Mutex<Vec<DeadLetter>>,
}

#[async_trait]
impl RecordRouter for RecordingRouter {
    async fn route(&self, vehicle_id: VehicleId, records: Vec<TelemetryRecord>) -> Result<(), RouteError> {
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        let failing = self
            .fail_remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() {
            self.failures.fetch_add(1, Ordering::SeqCst);
            return Err(RouteError::NotPersisted {
                vehicle: vehicle_id,
                reason: "store down".into(),
            });
        }
        let mut routed = self.routed.lock().unwrap();
        for record in records {
            assert_eq!(record.vehicle_id, vehicle_id, "a group holds one vehicle");
            let SignalValue::Int(n) = record.payload["n"] else {
                panic!("n is an integer")
            };
            routed.push((vehicle_id.0.clone(), n));
        }
        Ok(())
    }

    async fn dead_letter(&self, letters: Vec<DeadLetter>) -> Result<(), RouteError> {
        let failing = self
            .fail_remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() {
            self.failures.fetch_add(1, Ordering::SeqCst);
            return Err(RouteError::DeadLetterFailed {
                reason: "dead-letter store down".into(),
            });
        }
        self.dead.lock().unwrap().extend(letters);
        Ok(())
    }
}

impl RecordingRouter {
    /// Every (vehicle, n) routed so far, in routing order.
    pub fn routed(&self) -> Vec<(String, i64)> {
        self.routed.lock().unwrap().clone()
    }

    /// How many records were routed.
    pub fn count(&self) -> usize {
        self.routed.lock().unwrap().len()
    }
}

/// Puts `per_vehicle` records for each of `vehicles` vehicles, numbered `from..`, in
/// rounds (every vehicle's n, then the next n). Returns the highest sequence per shard.
pub async fn put_numbered(
    stream: &dyn RecordStream,
    vehicles: usize,
    from: i64,
    per_vehicle: i64,
) -> BTreeMap<ShardId, SequenceNumber> {
    let mut last = BTreeMap::new();
    for n in from..from + per_vehicle {
        let entries = (0..vehicles)
            .map(|v| {
                let record = TelemetryRecord {
                    timestamp: chrono::Utc::now(),
                    vehicle_id: VehicleId(format!("car-{v}")),
                    payload: [("n".to_string(), SignalValue::Int(n))].into(),
                    can_id: None,
                    ingest_received_at: chrono::Utc::now(),
                };
                PutEntry {
                    partition_key: record.vehicle_id.0.clone(),
                    data: encode_record(&record),
                }
            })
            .collect();
        for outcome in stream.put_records(entries).await.expect("put") {
            let PutOutcome::Stored {
                shard_id,
                sequence_number,
            } = outcome
            else {
                panic!("put failed: {outcome:?}")
            };
            let slot = last.entry(shard_id).or_insert_with(|| sequence_number.clone());
            *slot = sequence_number.max(slot.clone());
        }
    }
    last
}

/// Polls `check` every 20 ms until it holds; panics with `what` after `within`.
pub async fn wait_until<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let polled = tokio::time::timeout(within, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(polled.is_ok(), "timed out waiting until {what}");
}

/// Each vehicle's numbers were routed in increasing order.
pub fn assert_in_order(routed: &[(String, i64)]) {
    let mut per_vehicle: HashMap<&str, Vec<i64>> = HashMap::new();
    for (vehicle, n) in routed {
        per_vehicle.entry(vehicle).or_default().push(*n);
    }
    for (vehicle, ns) in per_vehicle {
        assert!(
            ns.windows(2).all(|w| w[0] < w[1]),
            "{vehicle} out of order: {ns:?}"
        );
    }
}
