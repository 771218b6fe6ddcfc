//! Unit tests of the [`Batcher`](super::Batcher): limits, linger, per-key order under
//! partial failures, the retry schedule, dead letters and capacity. Deterministic: every
//! step gets an explicit `now`, and the jitter is scripted.

use super::*;
use crate::ports::{SequenceNumber, ShardId};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

fn config() -> ProducerConfig {
    ProducerConfig {
        linger_ms: 5,
        max_in_flight: 2,
        max_pending: 100,
        backoff_base_ms: 100,
        backoff_max_ms: 1000,
        max_attempts: 4,
        max_retry_ms: 10_000,
        ..ProducerConfig::default()
    }
}

/// Jitter values handed out in order (then 0.5 forever); the test keeps a handle.
fn scripted(values: &[f64]) -> (Arc<Mutex<VecDeque<f64>>>, impl FnMut() -> f64 + Send + 'static) {
    let queue = Arc::new(Mutex::new(values.iter().copied().collect::<VecDeque<_>>()));
    let q = queue.clone();
    (queue, move || q.lock().unwrap().pop_front().unwrap_or(0.5))
}

fn batcher(config: &ProducerConfig) -> Batcher<u32> {
    Batcher::new(config).with_jitter(|| 0.5)
}

fn entry(key: &str, data: &str) -> PutEntry {
    PutEntry {
        partition_key: key.into(),
        data: Bytes::from(data.to_owned()),
    }
}

fn sized(key: &str, len: usize) -> PutEntry {
    PutEntry {
        partition_key: key.into(),
        data: Bytes::from(vec![b'x'; len]),
    }
}

fn stored(n: u64) -> PutOutcome {
    PutOutcome::Stored {
        shard_id: ShardId("shardId-000000000000".into()),
        sequence_number: SequenceNumber(n.to_string()),
    }
}

fn throttled() -> PutOutcome {
    PutOutcome::Failed {
        error: StreamError::Throttled("full".into()),
    }
}

fn all_stored(batch: &Batch) -> Vec<PutOutcome> {
    (0..batch.entries.len() as u64).map(stored).collect()
}

fn datas(batch: &Batch) -> Vec<String> {
    batch
        .entries
        .iter()
        .map(|e| String::from_utf8(e.data.to_vec()).unwrap())
        .collect()
}

fn tickets(b: &mut Batcher<u32>) -> Vec<(u32, ProduceOutcome)> {
    b.take_completions()
        .into_iter()
        .map(|c| (c.ticket, c.outcome))
        .collect()
}

const MS: Duration = Duration::from_millis(1);

#[test]
fn a_batch_waits_for_the_linger_unless_full() {
    let t0 = Instant::now();
    let mut b = batcher(&config());
    b.offer(vec![(1, entry("a", "1")), (2, entry("b", "2"))], t0)
        .unwrap();
    assert_eq!(b.next_batch(t0), None, "not full, not lingered");
    assert_eq!(b.next_wakeup(), Some(t0 + 5 * MS));
    assert_eq!(b.next_batch(t0 + 4 * MS), None);
    let batch = b.next_batch(t0 + 5 * MS).expect("linger elapsed");
    assert_eq!(datas(&batch), ["1", "2"]);
    assert_eq!(batch.linger, Some(5 * MS));
    assert_eq!(batch.bytes, 4);

    // 500 ready entries make a full batch at once.
    let mut b = batcher(&ProducerConfig {
        max_pending: 1000,
        ..config()
    });
    let items = (0..500).map(|i| (i, entry(&format!("k{i}"), "x"))).collect();
    b.offer(items, t0).unwrap();
    let batch = b.next_batch(t0).expect("a full batch goes at once");
    assert_eq!(batch.entries.len(), 500);
}

#[test]
fn batches_respect_entry_and_byte_limits() {
    let t0 = Instant::now();
    let c = ProducerConfig {
        max_in_flight: 10,
        max_pending: 2000,
        ..config()
    };
    let mut b = batcher(&c);
    let items = (0..1200).map(|i| (i, entry(&format!("k{i}"), "x"))).collect();
    b.offer(items, t0).unwrap();
    let sizes: Vec<usize> = std::iter::from_fn(|| b.next_batch(t0 + 5 * MS))
        .map(|b| b.entries.len())
        .collect();
    assert_eq!(sizes, [500, 500, 200]);

    // 900 kB records: a sixth would pass 5 MiB, so five per call.
    let mut b = batcher(&c);
    let items = (0..13).map(|i| (i, sized(&format!("k{i}"), 900_000))).collect();
    b.offer(items, t0).unwrap();
    let batches: Vec<Batch> = std::iter::from_fn(|| b.next_batch(t0 + 5 * MS)).collect();
    let sizes: Vec<usize> = batches.iter().map(|b| b.entries.len()).collect();
    assert_eq!(sizes, [5, 5, 3]);
    assert!(batches.iter().all(|b| b.bytes <= MAX_PUT_RECORDS_BYTES));
    assert!(batches.iter().all(|b| check_put_request_ok(&b.entries)));

    // A record larger than a small batch limit still goes, alone.
    let small = ProducerConfig {
        max_batch_bytes: 1024,
        ..c
    };
    let mut b = batcher(&small);
    b.offer(vec![(1, sized("a", 4000)), (2, sized("b", 10))], t0)
        .unwrap();
    let first = b.next_batch(t0).expect("over the byte limit: full");
    assert_eq!(first.entries.len(), 1);
    assert_eq!(first.entries[0].partition_key, "a");
}

fn check_put_request_ok(entries: &[PutEntry]) -> bool {
    crate::ports::stream::check_put_request(entries).is_ok()
}

#[test]
fn invalid_records_fail_at_once_and_take_no_room() {
    let t0 = Instant::now();
    let mut b = batcher(&config());
    let too_big = sized("a", crate::ports::stream::MAX_RECORD_BYTES);
    b.offer(vec![(1, entry("", "x")), (2, too_big), (3, entry("c", "ok"))], t0)
        .unwrap();
    let done = tickets(&mut b);
    assert_eq!(done.len(), 2);
    for (_, outcome) in &done {
        assert!(matches!(
            outcome,
            ProduceOutcome::Failed {
                error: StreamError::InvalidArgument(_),
                retryable: false
            }
        ));
    }
    assert_eq!(b.pending(), 1);
}

#[test]
fn one_entry_per_key_in_flight_and_the_next_goes_at_once() {
    let t0 = Instant::now();
    let mut b = batcher(&config());
    b.offer(
        vec![
            (1, entry("a", "a1")),
            (2, entry("a", "a2")),
            (3, entry("b", "b1")),
        ],
        t0,
    )
    .unwrap();
    let first = b.next_batch(t0 + 5 * MS).unwrap();
    assert_eq!(datas(&first), ["a1", "b1"], "a2 waits behind a1");
    assert_eq!(
        b.next_batch(t0 + 6 * MS),
        None,
        "a2 is held back while a1 is in flight"
    );
    let report = b.on_result(first.id, Ok(all_stored(&first)), t0 + 7 * MS);
    assert_eq!(report.stored, 2);
    assert_eq!(report.call, CallResult::Ok);
    // Released entries already waited: no second linger.
    let second = b.next_batch(t0 + 7 * MS).unwrap();
    assert_eq!(datas(&second), ["a2"]);
    assert_eq!(second.linger, Some(7 * MS));
}

#[test]
fn a_partial_failure_never_reorders_a_key() {
    let t0 = Instant::now();
    let (_, jitter) = scripted(&[0.5, 0.5]);
    let mut b = Batcher::new(&config()).with_jitter(jitter);
    b.offer(
        vec![
            (1, entry("a", "a1")),
            (2, entry("b", "b1")),
            (3, entry("a", "a2")),
            (4, entry("b", "b2")),
        ],
        t0,
    )
    .unwrap();
    let first = b.next_batch(t0 + 5 * MS).unwrap();
    assert_eq!(datas(&first), ["a1", "b1"]);
    // a1 throttled, b1 stored: b2 may go, a2 must wait for a1.
    let report = b.on_result(first.id, Ok(vec![throttled(), stored(1)]), t0 + 6 * MS);
    assert_eq!(
        (report.call, report.stored, report.retried, report.throttled),
        (CallResult::Partial, 1, 1, 1)
    );
    let second = b.next_batch(t0 + 6 * MS).unwrap();
    assert_eq!(datas(&second), ["b2"]);
    b.on_result(second.id, Ok(all_stored(&second)), t0 + 7 * MS);
    // a1's retry: jitter 0.5 of the first ceiling (100 ms) = 50 ms after the failure.
    assert_eq!(b.next_wakeup(), Some(t0 + 56 * MS));
    assert_eq!(b.next_batch(t0 + 55 * MS), None, "a1 not due, a2 still held");
    let retry = b.next_batch(t0 + 56 * MS).unwrap();
    assert_eq!(datas(&retry), ["a1"]);
    assert_eq!((retry.retries, retry.linger), (1, None));
    b.on_result(retry.id, Ok(all_stored(&retry)), t0 + 57 * MS);
    let last = b.next_batch(t0 + 57 * MS).unwrap();
    assert_eq!(datas(&last), ["a2"]);
    b.on_result(last.id, Ok(all_stored(&last)), t0 + 58 * MS);
    let order: Vec<u32> = tickets(&mut b).into_iter().map(|(t, _)| t).collect();
    assert_eq!(order, [2, 4, 1, 3]);
    assert!(b.is_idle());
}

#[test]
fn retry_delays_grow_with_full_jitter_within_their_bounds() {
    let base = Duration::from_millis(50);
    let max = Duration::from_millis(2000);
    for attempt in 1..=10u32 {
        let ceiling = (base * 2u32.pow(attempt - 1)).min(max);
        assert_eq!(backoff_delay(base, max, attempt, 0.0), Duration::ZERO);
        assert_eq!(backoff_delay(base, max, attempt, 0.5), ceiling / 2);
        let top = backoff_delay(base, max, attempt, 0.999_999);
        assert!(
            top < ceiling && top > ceiling.mul_f64(0.99),
            "attempt {attempt}: {top:?}"
        );
    }
    assert_eq!(backoff_delay(base, max, 1000, 1.0), max, "no overflow");

    // The batcher draws one jitter value per retry and schedules accordingly.
    let t0 = Instant::now();
    let (_, jitter) = scripted(&[0.0, 1.0, 0.25]);
    let mut b = Batcher::new(&config()).with_jitter(jitter);
    b.offer(vec![(1, entry("a", "a1"))], t0).unwrap();
    let mut now = t0 + 5 * MS;
    let mut waits = Vec::new();
    for _ in 0..3 {
        let batch = b.next_batch(now).unwrap();
        b.on_result(batch.id, Ok(vec![throttled()]), now);
        let due = b.next_wakeup().unwrap();
        waits.push(due - now);
        now = due;
    }
    // Ceilings 100, 200, 400 ms (base 100, doubling) times 0.0, 1.0, 0.25.
    assert_eq!(waits, [Duration::ZERO, 200 * MS, 100 * MS]);
}

#[test]
fn gives_up_after_max_attempts_and_releases_the_key() {
    let t0 = Instant::now();
    let mut b = batcher(&config());
    b.offer(vec![(1, entry("a", "a1")), (2, entry("a", "a2"))], t0)
        .unwrap();
    let mut now = t0 + 5 * MS;
    for attempt in 1..=4 {
        let batch = b.next_batch(now).expect("attempt due");
        assert_eq!(datas(&batch), ["a1"], "attempt {attempt}");
        let report = b.on_result(batch.id, Ok(vec![throttled()]), now);
        if attempt < 4 {
            assert_eq!(report.retried, 1);
            now = b.next_wakeup().unwrap();
        } else {
            assert_eq!(report.dead_lettered, 1);
        }
    }
    let done = b.take_completions();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].attempts, 4);
    assert_eq!(done[0].entry, entry("a", "a1"));
    match &done[0].outcome {
        ProduceOutcome::DeadLettered {
            reason:
                DeadLetterReason::AttemptsExhausted {
                    attempts: 4,
                    last_error: StreamError::Throttled(_),
                },
        } => {}
        other => panic!("{other:?}"),
    }
    let next = b.next_batch(now).expect("a2 goes once a1 is given up");
    assert_eq!(datas(&next), ["a2"]);
}

#[test]
fn gives_up_when_the_next_retry_would_pass_max_retry() {
    let t0 = Instant::now();
    let c = ProducerConfig {
        max_attempts: 100,
        max_retry_ms: 250,
        ..config()
    };
    let mut b = Batcher::new(&c).with_jitter(|| 0.99);
    b.offer(vec![(1, entry("a", "a1"))], t0).unwrap();
    // Ceilings 100, 200: retries at +5+99 and +104+198 = 302 > 250 → given up at the 2nd failure.
    let first = b.next_batch(t0 + 5 * MS).unwrap();
    assert_eq!(
        b.on_result(
            first.id,
            Err(StreamError::Unavailable("down".into())),
            t0 + 5 * MS
        )
        .call,
        CallResult::Error
    );
    let now = b.next_wakeup().unwrap();
    let second = b.next_batch(now).unwrap();
    let report = b.on_result(second.id, Err(StreamError::Unavailable("down".into())), now);
    assert_eq!(report.dead_lettered, 1);
    match &tickets(&mut b)[0].1 {
        ProduceOutcome::DeadLettered {
            reason:
                DeadLetterReason::RetryTimeExhausted {
                    attempts: 2,
                    waited_ms,
                    last_error: StreamError::Unavailable(_),
                },
        } => assert_eq!(*waited_ms, (now - t0).as_millis() as u64),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_held_back_record_whose_time_is_up_gets_one_attempt() {
    let t0 = Instant::now();
    let c = ProducerConfig {
        max_attempts: 100,
        max_retry_ms: 150,
        ..config()
    };
    let mut b = Batcher::new(&c).with_jitter(|| 0.99);
    b.offer(
        vec![
            (1, entry("a", "a1")),
            (2, entry("a", "a2")),
            (3, entry("a", "a3")),
        ],
        t0,
    )
    .unwrap();
    let mut now = t0 + 5 * MS;
    let mut attempts = Vec::new();
    while let Some(batch) = b.next_batch(now) {
        attempts.push(datas(&batch).concat());
        b.on_result(batch.id, Ok(vec![throttled()]), now);
        match b.next_wakeup() {
            Some(t) => now = t,
            None => now += MS,
        }
    }
    // a1 retried until its budget ran out; a2 and a3, whose budgets ran out while they
    // waited, are tried once each.
    assert_eq!(attempts, ["a1", "a1", "a2", "a3"]);
    let done = b.take_completions();
    assert!(done.iter().all(|c| matches!(
        c.outcome,
        ProduceOutcome::DeadLettered {
            reason: DeadLetterReason::RetryTimeExhausted { .. }
        }
    )));
    assert!(b.is_idle());
}

#[test]
fn not_retryable_errors_fail_at_once() {
    let t0 = Instant::now();
    let mut b = batcher(&config());
    b.offer(vec![(1, entry("a", "a1")), (2, entry("b", "b1"))], t0)
        .unwrap();
    let batch = b.next_batch(t0 + 5 * MS).unwrap();
    let report = b.on_result(batch.id, Err(StreamError::NotFound("stream".into())), t0 + 6 * MS);
    assert_eq!(
        (report.call, report.failed, report.retried),
        (CallResult::Error, 2, 0)
    );
    assert!(tickets(&mut b).iter().all(|(_, o)| matches!(
        o,
        ProduceOutcome::Failed {
            error: StreamError::NotFound(_),
            retryable: false
        }
    )));
    assert!(b.is_idle());
}

#[test]
fn a_short_answer_is_retried_as_unavailable() {
    let t0 = Instant::now();
    let mut b = batcher(&config());
    b.offer(vec![(1, entry("a", "a1")), (2, entry("b", "b1"))], t0)
        .unwrap();
    let batch = b.next_batch(t0 + 5 * MS).unwrap();
    let report = b.on_result(batch.id, Ok(vec![stored(1)]), t0 + 6 * MS);
    assert_eq!((report.call, report.retried), (CallResult::Error, 2));
}

#[test]
fn full_refuses_the_whole_request_at_once() {
    let t0 = Instant::now();
    let c = ProducerConfig {
        max_pending: 3,
        ..config()
    };
    let mut b = batcher(&c);
    b.offer(vec![(1, entry("a", "1")), (2, entry("b", "2"))], t0)
        .unwrap();
    let full = b
        .offer(vec![(3, entry("c", "3")), (4, entry("d", "4"))], t0)
        .unwrap_err();
    assert_eq!(
        full,
        ProducerFull {
            pending: 2,
            max_pending: 3
        }
    );
    assert_eq!(b.pending(), 2, "nothing of the refused request was taken");
    b.offer(vec![(3, entry("c", "3"))], t0).unwrap();
    // Completing frees room.
    let batch = b.next_batch(t0 + 5 * MS).unwrap();
    b.on_result(batch.id, Ok(all_stored(&batch)), t0 + 6 * MS);
    b.offer(vec![(4, entry("d", "4")), (5, entry("e", "5"))], t0)
        .unwrap();

    // Bytes bound too; but one request alone is always taken.
    let c = ProducerConfig {
        max_pending_bytes: 100,
        ..config()
    };
    let mut b = batcher(&c);
    b.offer(vec![(1, sized("a", 500))], t0).unwrap();
    assert!(b.offer(vec![(2, sized("b", 1))], t0).is_err());
    assert_eq!(b.pending_bytes(), 501);
}

#[test]
fn in_flight_calls_are_bounded() {
    let t0 = Instant::now();
    let c = ProducerConfig {
        max_batch_entries: 1,
        max_in_flight: 2,
        ..config()
    };
    let mut b = batcher(&c);
    let items = (0..5).map(|i| (i, entry(&format!("k{i}"), "x"))).collect();
    b.offer(items, t0).unwrap();
    let first = b.next_batch(t0).unwrap();
    let second = b.next_batch(t0).unwrap();
    assert_eq!(b.next_batch(t0), None);
    assert_eq!(b.in_flight(), 2);
    assert_eq!(b.next_wakeup(), None, "nothing to do until a call returns");
    // Even a retry that falls due waits for a free slot (no busy wake-ups).
    b.on_result(second.id, Ok(vec![throttled()]), t0);
    let _third = b.next_batch(t0).unwrap();
    assert!(b.retries.peek().is_some());
    assert_eq!(b.next_wakeup(), None);
    b.on_result(first.id, Ok(all_stored(&first)), t0);
    assert!(b.next_batch(t0).is_some());
}

#[test]
fn closing_flushes_without_linger_and_dead_letter_all_gives_up_the_rest() {
    let t0 = Instant::now();
    let mut b = batcher(&config());
    b.offer(
        vec![
            (1, entry("a", "a1")),
            (2, entry("a", "a2")),
            (3, entry("b", "b1")),
        ],
        t0,
    )
    .unwrap();
    b.close();
    let batch = b.next_batch(t0).expect("closing: no linger");
    assert_eq!(datas(&batch), ["a1", "b1"]);
    b.on_result(batch.id, Ok(vec![throttled(), stored(1)]), t0);
    assert_eq!(tickets(&mut b).len(), 1);
    assert_eq!(b.dead_letter_all(), 2);
    let done = tickets(&mut b);
    assert_eq!(done.iter().map(|(t, _)| *t).collect::<Vec<_>>(), [1, 2]);
    assert!(matches!(
        &done[0].1,
        ProduceOutcome::DeadLettered {
            reason: DeadLetterReason::Shutdown {
                attempts: 1,
                last_error: Some(StreamError::Throttled(_))
            }
        }
    ));
    assert!(matches!(
        &done[1].1,
        ProduceOutcome::DeadLettered {
            reason: DeadLetterReason::Shutdown {
                attempts: 0,
                last_error: None
            }
        }
    ));
    assert!(b.is_idle());
    assert_eq!(b.next_wakeup(), None);
    // A late answer for an abandoned call is ignored.
    assert_eq!(b.on_result(batch.id, Ok(vec![]), t0).call, CallResult::Ignored);
}

/// Many keys, random partial failures: every entry completes exactly once, and per key
/// the stored entries were stored in offer order.
#[test]
fn random_partial_failures_keep_every_key_in_order() {
    let t0 = Instant::now();
    let c = ProducerConfig {
        max_batch_entries: 7,
        max_in_flight: 3,
        max_pending: 10_000,
        max_attempts: 1000,
        max_retry_ms: u64::MAX / 4,
        ..config()
    };
    let mut b = Batcher::new(&c).with_jitter(|| 0.3);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let keys = ["a", "b", "c", "d", "e"];
    let items: Vec<(u32, PutEntry)> = (0..200u32)
        .map(|i| (i, entry(keys[i as usize % keys.len()], &i.to_string())))
        .collect();
    b.offer(items, t0).unwrap();
    let mut now = t0;
    let mut seq = 0u64;
    let mut stored_order: HashMap<String, Vec<u32>> = HashMap::new();
    let mut in_flight: Vec<Batch> = Vec::new();
    let mut completed = 0;
    for _ in 0..100_000 {
        while let Some(batch) = b.next_batch(now) {
            let mut seen = std::collections::HashSet::new();
            for e in &batch.entries {
                assert!(
                    seen.insert(e.partition_key.clone()),
                    "two entries of one key in a call"
                );
            }
            for other in &in_flight {
                for e in &other.entries {
                    assert!(!seen.contains(&e.partition_key), "a key in two calls at once");
                }
            }
            in_flight.push(batch);
        }
        if in_flight.is_empty() {
            match b.next_wakeup() {
                Some(t) => now = now.max(t),
                None => break,
            }
            continue;
        }
        // Answer a random in-flight call with random per-entry failures.
        let batch = in_flight.remove((next() % in_flight.len() as u64) as usize);
        let outcomes = batch
            .entries
            .iter()
            .map(|e| {
                if next() % 3 == 0 {
                    throttled()
                } else {
                    seq += 1;
                    stored_order
                        .entry(e.partition_key.clone())
                        .or_default()
                        .push(String::from_utf8(e.data.to_vec()).unwrap().parse().unwrap());
                    stored(seq)
                }
            })
            .collect();
        b.on_result(batch.id, Ok(outcomes), now);
        completed += b.take_completions().len();
        now += MS;
    }
    assert_eq!(completed, 200);
    assert!(b.is_idle());
    for (key, order) in stored_order {
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(order, sorted, "key {key} stored out of order");
        assert_eq!(order.len(), 40, "key {key}: each entry stored once");
    }
}
