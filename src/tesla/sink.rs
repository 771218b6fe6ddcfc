//! The [`RecordSink`] of vehicle connections: one stream per Tesla topic, in Tesla's
//! dispatcher format (the protobuf payload is the record body, the vehicle is the
//! partition key).
//!
//! `V` records go to the node's main stream — the one its consumers read — through the
//! [`Ingestor`] and its batching producer, so the frames of many connections share
//! PutRecords calls, and accepted sequence numbers are recorded for shutdown's drain.
//! `alerts`, `errors` and `connectivity` (a small share of the traffic) go straight to
//! their own streams for downstream readers.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use fleetwire_actors::connection::{RecordSink, SinkError};
use fleetwire_actors::ports::{PutEntry, PutOutcome, RecordStream};
use fleetwire_actors::tesla::Topic;

use crate::ingest::Ingestor;

/// Puts vehicle records on the stream of their topic.
pub struct StreamSink {
    vehicle_data: Ingestor,
    others: HashMap<Topic, Arc<dyn RecordStream>>,
}

impl StreamSink {
    /// `V` through `vehicle_data`; other topics through `others` (a topic missing there
    /// has no stream, and its records are refused).
    pub fn new(vehicle_data: Ingestor, others: HashMap<Topic, Arc<dyn RecordStream>>) -> Self {
        Self { vehicle_data, others }
    }
}

#[async_trait]
impl RecordSink for StreamSink {
    async fn put(&self, topic: Topic, partition_key: String, data: Bytes) -> Result<(), SinkError> {
        let entry = PutEntry { partition_key, data };
        if topic == Topic::V {
            return self
                .vehicle_data
                .put_one(entry)
                .await
                .map(|_| ())
                .map_err(|e| SinkError::NotStored(e.to_string()));
        }
        let stream = self
            .others
            .get(&topic)
            .ok_or(SinkError::NoStream(topic.as_str()))?;
        match stream.put_records(vec![entry]).await {
            Ok(outcomes) => match outcomes.into_iter().next() {
                Some(PutOutcome::Stored { .. }) => Ok(()),
                Some(PutOutcome::Failed { error }) => Err(SinkError::NotStored(error.to_string())),
                None => Err(SinkError::NotStored("the stream returned no outcome".into())),
            },
            Err(error) => Err(SinkError::NotStored(error.to_string())),
        }
    }
}
