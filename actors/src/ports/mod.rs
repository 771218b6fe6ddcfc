//! Ports: the traits between the actors and the backends.
//!
//! Every backend (embedded, AWS, Redis) implements the same trait and is chosen by
//! config when the binary wires the pipeline (`src/wiring.rs`). Actors only ever hold
//! `Arc<dyn Port>`, so a test can run the whole pipeline on the embedded backends.

pub mod archive;
mod event_id;
pub mod fanout;
pub mod history;
pub mod lease;
pub mod state_store;
pub mod stream;
pub mod vehicle_registry;

pub use archive::{ArchiveError, ArchiveSink};
pub use fanout::{
    Coverage, EventId, FanOut, FanOutError, FanOutMessage, LogEntry, ParseEventIdError, Replay,
    ReplayRetention,
};
pub use history::{BucketPage, HistoryBucket, HistoryError, HistoryStore, HourAggregate, SignalStats};
pub use lease::{Checkpoint, Lease, LeaseError, LeaseStore};
pub use state_store::{SaveOutcome, StateStore, StoreError};
pub use stream::{
    GetRecordsOutput, PutEntry, PutOutcome, RecordStream, SequenceNumber, ShardDescription, ShardId,
    ShardIterator, StartPosition, StreamError, StreamRecord,
};
pub use vehicle_registry::{ProvisionOutcome, Registration, VehicleRegistry, VehicleStatus};
