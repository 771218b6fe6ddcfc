//! Consuming a stream written by Tesla's own Fleet Telemetry server: its partition keys
//! and payload `vin`s are clear VINs (Tesla's dispatcher keys records by VIN), so the
//! vehicle id is replaced by its pseudonym between decoding and the vehicle actors —
//! before anything is stored, published or logged by them.

use async_trait::async_trait;

use super::{DurabilityHold, RecordRouter, RouteError};
use crate::model::{TelemetryRecord, VehicleId};
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
    }

    #[actix_rt::test]
    async fn vins_never_reach_the_inner_router() {
        let recorder: &'static Recorder = Box::leak(Box::default());
        let p = Pseudonymizer::development();
        let router = PseudonymizingRouter::new(recorder, p.clone());
        let vin = VehicleId("5YJ3E1EA7RF261422".into());
        let record = TelemetryRecord {
            timestamp: Utc::now(),
            vehicle_id: vin.clone(),
            payload: Default::default(),
            can_id: None,
            ingest_received_at: Utc::now(),
        };
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
}
