//! Consuming a stream written by Tesla's own Fleet Telemetry server: its partition keys
//! and payload `vin`s are clear VINs (Tesla's dispatcher keys records by VIN), so the
//! vehicle id is replaced by its pseudonym between decoding and the vehicle actors —
//! before anything is stored, published or logged by them.

use async_trait::async_trait;

use super::{DurabilityHold, RecordRouter, RouteError};
use crate::archive::ArchiveRecord;
use crate::model::{TelemetryRecord, VehicleId};
use crate::producer::DeadLetter;
use crate::pseudonym::Pseudonymizer;

/// A [`RecordRouter`] that pseudonymizes VIN-keyed records, then hands them on.
pub struct PseudonymizingRouter<R> {
    inner: R,
    pseudonymizer: Pseudonymizer,
}

impl<R: RecordRouter> PseudonymizingRouter<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, pseudonymizer: Pseudonymizer) -> Self {
        Self { inner, pseudonymizer }
    }
}

#[async_trait]
impl<R: RecordRouter> RecordRouter for PseudonymizingRouter<R> {
    async fn route(&self, vin: VehicleId, records: Vec<TelemetryRecord>) -> Result<(), RouteError> {
        self.route_held(vin, records, DurabilityHold::detached_released())
            .await
    }

    async fn route_held(
        &self,
        vin: VehicleId,
        mut records: Vec<TelemetryRecord>,
        hold: DurabilityHold,
    ) -> Result<(), RouteError> {
        let vehicle_id = self.pseudonymizer.vehicle_id(vin.as_str());
        for record in &mut records {
            record.vehicle_id = vehicle_id.clone();
        }
        self.inner.route_held(vehicle_id, records, hold).await
    }

    async fn release(&self, vins: Vec<VehicleId>) {
        let ids = vins
            .iter()
            .map(|vin| self.pseudonymizer.vehicle_id(vin.as_str()))
            .collect();
        self.inner.release(ids).await
    }

    async fn flush_deferred(&self, vins: Vec<VehicleId>) {
        let ids = vins
            .iter()
            .map(|vin| self.pseudonymizer.vehicle_id(vin.as_str()))
            .collect();
        self.inner.flush_deferred(ids).await
    }

    fn archives(&self) -> bool {
        self.inner.archives()
    }

    /// The archive sees only pseudonyms, like everything after this router.
    async fn archive(&self, mut records: Vec<ArchiveRecord>, hold: DurabilityHold) -> Result<(), RouteError> {
        for archived in &mut records {
            archived.record.vehicle_id = self.pseudonymizer.vehicle_id(archived.record.vehicle_id.as_str());
        }
        self.inner.archive(records, hold).await
    }

    /// The partition key (a VIN) becomes the pseudonym. The body is kept as read: it could
    /// not be decoded, so its `vin` field cannot be rewritten (docs/operations.md, dead
    /// letters on a VIN-keyed stream).
    async fn dead_letter(&self, mut letters: Vec<DeadLetter>) -> Result<(), RouteError> {
        for letter in &mut letters {
            letter.entry.partition_key = self.pseudonymizer.vehicle_id(&letter.entry.partition_key).0;
        }
        self.inner.dead_letter(letters).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::Utc;

    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(VehicleId, Vec<VehicleId>)>>);

    #[async_trait]
    impl RecordRouter for &'static Recorder {
        async fn route(&self, id: VehicleId, records: Vec<TelemetryRecord>) -> Result<(), RouteError> {
            let ids = records.into_iter().map(|r| r.vehicle_id).collect();
            self.0.lock().unwrap().push((id, ids));
            Ok(())
        }

        async fn dead_letter(&self, letters: Vec<DeadLetter>) -> Result<(), RouteError> {
            let keys = letters
                .into_iter()
                .map(|l| VehicleId(l.entry.partition_key))
                .collect();
            self.0.lock().unwrap().push((VehicleId("dead".into()), keys));
            Ok(())
        }

        fn archives(&self) -> bool {
            true
        }

        async fn archive(&self, records: Vec<ArchiveRecord>, hold: DurabilityHold) -> Result<(), RouteError> {
            let ids = records.into_iter().map(|r| r.record.vehicle_id).collect();
            self.0.lock().unwrap().push((VehicleId("archive".into()), ids));
            hold.release();
            Ok(())
        }
    }

    /// An empty record of `vehicle` (the VIN, as Tesla's own server keys its streams).
    fn record_of(vehicle: &VehicleId) -> TelemetryRecord {
        TelemetryRecord {
            timestamp: Utc::now(),
            vehicle_id: vehicle.clone(),
            payload: Default::default(),
            can_id: None,
            ingest_received_at: Utc::now(),
        }
    }

    #[actix_rt::test]
    async fn vins_never_reach_the_inner_router() {
        let recorder: &'static Recorder = Box::leak(Box::default());
        let p = Pseudonymizer::development();
        let router = PseudonymizingRouter::new(recorder, p.clone());
        let vin = VehicleId("5YJ3E1EA7RF261422".into());
        let record = record_of(&vin);
        router
            .route(vin.clone(), vec![record.clone(), record])
            .await
            .unwrap();
        let seen = recorder.0.lock().unwrap();
        let pseudonym = p.vehicle_id(vin.as_str());
        assert_eq!(
            seen.as_slice(),
            &[(pseudonym.clone(), vec![pseudonym.clone(), pseudonym])]
        );
    }

    #[actix_rt::test]
    async fn the_archive_sees_the_pseudonym_not_the_vin() {
        let recorder: &'static Recorder = Box::leak(Box::default());
        let p = Pseudonymizer::development();
        let router = PseudonymizingRouter::new(recorder, p.clone());
        assert!(router.archives());
        let vin = VehicleId("5YJ3E1EA7RF261422".into());
        let archived = ArchiveRecord {
            shard: crate::ports::ShardId("shard-0".into()),
            sequence: crate::ports::SequenceNumber("1".into()),
            arrival: Utc::now(),
            record: record_of(&vin),
        };
        router
            .archive(vec![archived], DurabilityHold::detached_released())
            .await
            .unwrap();
        let seen = recorder.0.lock().unwrap();
        assert_eq!(
            seen.as_slice(),
            &[(VehicleId("archive".into()), vec![p.vehicle_id(vin.as_str())])]
        );
    }

    #[actix_rt::test]
    async fn dead_letters_carry_the_pseudonym_not_the_vin() {
        let recorder: &'static Recorder = Box::leak(Box::default());
        let p = Pseudonymizer::development();
        let router = PseudonymizingRouter::new(recorder, p.clone());
        let vin = "5YJ3E1EA7RF261422";
        let letter = DeadLetter {
            entry: crate::ports::PutEntry {
                partition_key: vin.into(),
                data: bytes::Bytes::from_static(b"\x01garbage"),
            },
            reason: crate::producer::DeadLetterReason::Undecodable { error: "bad".into() },
            at: Utc::now(),
            tenant: None,
            source: None,
        };
        router.dead_letter(vec![letter]).await.unwrap();
        let seen = recorder.0.lock().unwrap();
        assert_eq!(
            seen.as_slice(),
            &[(VehicleId("dead".into()), vec![p.vehicle_id(vin)])]
        );
    }
}
