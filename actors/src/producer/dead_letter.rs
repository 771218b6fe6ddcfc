//! The dead-letter port: where the producer puts a record it gave up on, with the reason,
//! so an operator can see (and later replay) it. The caller of `Produce` learns of it too
//! (`ProduceOutcome::DeadLettered`); the sink is the durable, inspectable copy.
//!
//! Implementations: `src/backends/embedded/dead_letters.rs` `InMemoryDeadLetters` (the
//! last N letters and counts per reason, in process); a DynamoDB table comes later.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::DeadLetterReason;
use crate::ports::PutEntry;

/// One record the producer gave up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The record as it was offered (partition key and data).
    pub entry: PutEntry,
    /// Why it was given up.
    pub reason: DeadLetterReason,
    /// When.
    pub at: DateTime<Utc>,
}

/// A dead-letter sink could not keep letters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dead-letter sink failed: {0}")]
pub struct DeadLetterError(pub String);

/// Keeps dead letters. Called by the producer with every record it gives up on; an error
/// is logged (with the partition keys) and counted, never retried forever.
#[async_trait]
pub trait DeadLetterSink: Send + Sync + 'static {
    /// Stores `letters` (one call per batch of records given up together).
    async fn put(&self, letters: Vec<DeadLetter>) -> Result<(), DeadLetterError>;
}
