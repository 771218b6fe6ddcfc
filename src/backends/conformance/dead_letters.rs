//! Conformance checks of the dead-letter port ([`DeadLetterSink`]): idempotent writes,
//! listing order and paging per tenant and day, the reason filter, inspect and delete,
//! payload bytes kept exactly, large payloads (over the 64 KiB a DynamoDB item keeps
//! inline, up to the 1 MiB a record can have) kept whole and replayable.

use bytes::Bytes;
use chrono::{DateTime, Duration, TimeZone, Utc};
use fleetwire_actors::model::TenantId;
use fleetwire_actors::ports::{PutEntry, StreamError};
use fleetwire_actors::producer::dead_letter::MAX_INLINE_PAYLOAD;
use fleetwire_actors::producer::{
    DeadLetter, DeadLetterQuery, DeadLetterReason, DeadLetterSink, DeadLetterSource, StoredDeadLetter,
};

use super::unique_tenant;

/// A letter of `tenant` at `at` with a body naming `n`.
pub fn dead_letter(tenant: &TenantId, at: DateTime<Utc>, n: u32, reason: DeadLetterReason) -> DeadLetter {
    DeadLetter {
        entry: PutEntry {
            partition_key: format!("car-{}", n % 3),
            data: Bytes::from(format!(r#"{{"n":{n}}}"#)),
        },
        reason,
        at,
        tenant: Some(tenant.clone()),
        source: None,
    }
}

async fn all_of(sink: &dyn DeadLetterSink, mut query: DeadLetterQuery) -> Vec<StoredDeadLetter> {
    let mut out = Vec::new();
    for _ in 0..1000 {
        let page = sink.list(&query).await.expect("list");
        assert!(
            page.letters.len() <= query.limit,
            "a page holds at most `limit` letters"
        );
        out.extend(page.letters);
        match page.next {
            Some(next) => query.after = Some(next),
            None => return out,
        }
    }
    panic!("listing never ended")
}

/// Put, rewrite, get, list (order, paging, day and tenant boundaries, reason filter),
/// delete; bytes and source kept exactly.
pub async fn check_dead_letters_basics(sink: &dyn DeadLetterSink) {
    let tenant = unique_tenant("dl");
    let other = unique_tenant("dl-other");
    let day = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
    // 37 letters over the day (more than two pages of 16, to cross every write shard),
    // one just before and one just after it, and one of another tenant.
    let exhausted = DeadLetterReason::AttemptsExhausted {
        attempts: 8,
        last_error: StreamError::Throttled("slow down".into()),
    };
    let mut letters: Vec<DeadLetter> = (0..37)
        .map(|n| {
            let reason = if n % 4 == 0 {
                exhausted.clone()
            } else {
                DeadLetterReason::Unprovisioned
            };
            dead_letter(
                &tenant,
                day + Duration::minutes(30 * i64::from(n)) + Duration::milliseconds(7),
                n,
                reason,
            )
        })
        .collect();
    letters[5].source = Some(DeadLetterSource {
        stream: "s".into(),
        shard: "shardId-000000000001".into(),
        sequence: Some("4960".into()),
    });
    letters[6].entry.data = Bytes::from_static(b"\x00\xff\x80 not utf-8");
    let ids: Vec<_> = letters.iter().map(DeadLetter::id).collect();
    sink.put(letters.clone()).await.expect("put");
    // A retried batch (and a batch holding one letter twice) stores nothing new.
    sink.put(vec![letters[3].clone(), letters[3].clone(), letters[4].clone()])
        .await
        .expect("rewrite");
    sink.put(vec![
        dead_letter(
            &tenant,
            day - Duration::milliseconds(1),
            100,
            DeadLetterReason::Unprovisioned,
        ),
        dead_letter(
            &tenant,
            day + Duration::days(1),
            101,
            DeadLetterReason::Unprovisioned,
        ),
        dead_letter(
            &other,
            day + Duration::hours(1),
            102,
            DeadLetterReason::Unprovisioned,
        ),
    ])
    .await
    .expect("put neighbours");

    let five = sink.get(&ids[5]).await.expect("get").expect("letter 5 exists");
    assert_eq!(five.id, ids[5]);
    assert_eq!(five.reason, "unprovisioned");
    assert_eq!(five.partition_key, "car-2");
    assert_eq!(five.payload, Bytes::from_static(br#"{"n":5}"#));
    assert_eq!(five.payload_bytes, 7);
    assert_eq!(five.source, letters[5].source, "the source is kept");
    assert!(five.expires_at - five.received_at >= Duration::days(30) - Duration::seconds(1));
    let six = sink.get(&ids[6]).await.unwrap().unwrap();
    assert_eq!(six.payload, letters[6].entry.data, "bytes are kept exactly");
    assert_eq!(
        sink.get(&ids[0]).await.unwrap().unwrap().detail,
        exhausted.to_string()
    );

    let query = DeadLetterQuery {
        tenant: tenant.clone(),
        day: day.date_naive(),
        reason: None,
        limit: 16,
        after: None,
    };
    let listed = all_of(sink, query.clone()).await;
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(
        listed.iter().map(|l| l.id.clone()).collect::<Vec<_>>(),
        expected,
        "the day's letters, each once, newest first, nothing of other days or tenants"
    );
    let first = sink.list(&query).await.unwrap();
    assert_eq!(first.letters.len(), 16);
    assert!(first.next.is_some());
    let one = sink
        .list(&DeadLetterQuery {
            limit: 37,
            ..query.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        (one.letters.len(), one.next),
        (37, None),
        "an exact last page says no more"
    );

    let filtered = all_of(
        sink,
        DeadLetterQuery {
            reason: Some("attempts_exhausted".into()),
            limit: 3,
            ..query.clone()
        },
    )
    .await;
    let want: Vec<_> = expected
        .iter()
        .filter(|id| ids.iter().position(|i| i == *id).unwrap() % 4 == 0)
        .cloned()
        .collect();
    assert_eq!(
        filtered.iter().map(|l| l.id.clone()).collect::<Vec<_>>(),
        want,
        "reason filter"
    );

    let others = all_of(
        sink,
        DeadLetterQuery {
            tenant: other.clone(),
            ..query.clone()
        },
    )
    .await;
    assert_eq!(others.len(), 1, "tenants are apart");

    // A replay deletes the letter it read, not one rewritten since.
    let read = sink.get(&ids[7]).await.unwrap().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    sink.put(vec![letters[7].clone()]).await.unwrap();
    assert!(
        !sink.delete_unchanged(&read).await.unwrap(),
        "rewritten since it was read: kept"
    );
    let reread = sink.get(&ids[7]).await.unwrap().expect("still there");
    assert!(reread.received_at > read.received_at);
    assert!(
        sink.delete_unchanged(&reread).await.unwrap(),
        "unchanged: deleted"
    );
    assert_eq!(sink.get(&ids[7]).await.unwrap(), None);
    sink.put(vec![letters[7].clone()]).await.unwrap();

    assert!(sink.delete(&ids[5]).await.unwrap(), "deleted");
    assert!(!sink.delete(&ids[5]).await.unwrap(), "already gone");
    assert_eq!(sink.get(&ids[5]).await.unwrap(), None);
    assert_eq!(all_of(sink, query).await.len(), 36);
}

/// Payloads over [`MAX_INLINE_PAYLOAD`] (just over it, and ~900 KB, near the 1 MiB a
/// record may have) come back whole and replayable; listings give their size and never
/// call them cut; a rewrite, a replay-style delete and a delete work on them as on small
/// ones.
pub async fn check_dead_letters_large_payloads(sink: &dyn DeadLetterSink) {
    let tenant = unique_tenant("dl-big");
    let at = Utc::now();
    let sized = |n: u32, len: usize| {
        let mut letter = dead_letter(&tenant, at, n, DeadLetterReason::Unprovisioned);
        // Not one repeated byte, so a shifted or partly lost body would not compare equal.
        letter.entry.data = Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        letter
    };
    let letters = [
        sized(1, MAX_INLINE_PAYLOAD + 1000),
        sized(2, MAX_INLINE_PAYLOAD),
        sized(3, 900_000),
    ];
    let ids: Vec<_> = letters.iter().map(DeadLetter::id).collect();
    sink.put(letters.to_vec()).await.expect("put");
    // A retried batch rewrites them.
    sink.put(letters.to_vec()).await.expect("rewrite");
    for (letter, id) in letters.iter().zip(&ids) {
        let stored = sink.get(id).await.unwrap().expect("kept");
        let len = letter.entry.data.len();
        assert_eq!(stored.payload_bytes, len as u64);
        assert!(!stored.truncated, "{len} bytes: not cut");
        assert!(
            stored.payload == letter.entry.data,
            "{len} bytes: every byte kept"
        );
        assert!(
            stored.replay_entry().expect("replayable") == letter.entry,
            "{len} bytes: the replay puts the record back as it was"
        );
    }
    let page = sink
        .list(&DeadLetterQuery {
            tenant: tenant.clone(),
            day: at.date_naive(),
            reason: None,
            limit: 10,
            after: None,
        })
        .await
        .unwrap();
    let mut sizes: Vec<_> = page
        .letters
        .iter()
        .map(|l| (l.payload_bytes, l.truncated))
        .collect();
    sizes.sort();
    assert_eq!(
        sizes,
        vec![
            (MAX_INLINE_PAYLOAD as u64, false),
            ((MAX_INLINE_PAYLOAD + 1000) as u64, false),
            (900_000, false)
        ],
        "the listing gives full sizes, nothing cut"
    );
    // Deleted as a replay deletes, and plainly: gone, and a rewrite after a delete is whole.
    let read = sink.get(&ids[2]).await.unwrap().unwrap();
    assert!(sink.delete_unchanged(&read).await.unwrap());
    assert_eq!(sink.get(&ids[2]).await.unwrap(), None);
    assert!(sink.delete(&ids[0]).await.unwrap());
    assert_eq!(sink.get(&ids[0]).await.unwrap(), None);
    sink.put(vec![letters[0].clone()]).await.unwrap();
    let again = sink.get(&ids[0]).await.unwrap().expect("written again");
    assert!(again.payload == letters[0].entry.data);
}
