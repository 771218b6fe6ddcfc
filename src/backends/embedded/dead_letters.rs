//! [`InMemoryDeadLetters`]: the in-process [`DeadLetterSink`]. Keeps the last `capacity`
//! dead letters with their reasons and counts every letter by reason, for the admin API
//! and tests. Nothing survives a restart; the DynamoDB dead-letter table is the durable
//! implementation (issue #5).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use fleetwire_actors::producer::{DeadLetter, DeadLetterError, DeadLetterSink};

/// How many dead letters a node keeps in memory by default.
pub const DEFAULT_DEAD_LETTER_CAPACITY: usize = 1000;

/// The last `capacity` dead letters and counts by reason.
#[derive(Debug)]
pub struct InMemoryDeadLetters {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    recent: VecDeque<DeadLetter>,
    total: u64,
    by_reason: BTreeMap<&'static str, u64>,
}

/// A copy of what an [`InMemoryDeadLetters`] holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeadLetterSummary {
    /// Letters received since start (also those no longer kept).
    pub total: u64,
    /// `total` by reason label (`attempts_exhausted`, `retry_time_exhausted`, `shutdown`).
    pub by_reason: BTreeMap<String, u64>,
    /// The most recent letters, oldest first.
    pub recent: Vec<DeadLetter>,
}

impl InMemoryDeadLetters {
    /// A sink keeping the last `capacity` letters (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
        }
    }

    /// What it holds now.
    pub fn summary(&self) -> DeadLetterSummary {
        let state = self.lock();
        DeadLetterSummary {
            total: state.total,
            by_reason: state
                .by_reason
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            recent: state.recent.iter().cloned().collect(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update completes before anything that could panic; the data stays usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for InMemoryDeadLetters {
    fn default() -> Self {
        Self::new(DEFAULT_DEAD_LETTER_CAPACITY)
    }
}

#[async_trait]
impl DeadLetterSink for InMemoryDeadLetters {
    async fn put(&self, letters: Vec<DeadLetter>) -> Result<(), DeadLetterError> {
        let mut state = self.lock();
        for letter in letters {
            state.total += 1;
            *state.by_reason.entry(letter.reason.label()).or_default() += 1;
            if state.recent.len() == self.capacity {
                state.recent.pop_front();
            }
            state.recent.push_back(letter);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use chrono::Utc;
    use fleetwire_actors::ports::{PutEntry, StreamError};
    use fleetwire_actors::producer::DeadLetterReason;

    fn letter(key: &str, reason: DeadLetterReason) -> DeadLetter {
        DeadLetter {
            entry: PutEntry {
                partition_key: key.into(),
                data: Bytes::from_static(b"{}"),
            },
            reason,
            at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn keeps_the_last_n_and_counts_all() {
        let sink = InMemoryDeadLetters::new(2);
        let exhausted = DeadLetterReason::AttemptsExhausted {
            attempts: 8,
            last_error: StreamError::Throttled("full".into()),
        };
        let shutdown = DeadLetterReason::Shutdown {
            attempts: 0,
            last_error: None,
        };
        sink.put(vec![letter("a", exhausted.clone()), letter("b", exhausted)])
            .await
            .unwrap();
        sink.put(vec![letter("c", shutdown)]).await.unwrap();
        let s = sink.summary();
        assert_eq!(s.total, 3);
        assert_eq!(s.by_reason["attempts_exhausted"], 2);
        assert_eq!(s.by_reason["shutdown"], 1);
        let keys: Vec<&str> = s.recent.iter().map(|l| l.entry.partition_key.as_str()).collect();
        assert_eq!(keys, ["b", "c"]);
    }
}
