//! The DynamoDB lease store against DynamoDB Local: the shared lease conformance check,
//! then what only a shared remote table shows (concurrent takes, the item layout KCL
//! tools read, paging, a missing table).
//!
//! Needs `FLEETWIRE_TEST_DYNAMODB_ENDPOINT` (e.g. `http://127.0.0.1:8000`): run
//! `scripts/emulators start dynamodb` and `eval "$(scripts/emulators env)"`. Without it
//! every test fails, so a missing emulator is never mistaken for a pass.
//!
//! Each test creates its own table and deletes it at the end, even when the test fails.

mod common;

use common::cloud::unique;
use std::future::Future;
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;

use fleetwire::backends::conformance;
use fleetwire::backends::dynamodb::{DynamoDbConfig, DynamoDbLeaseStore};
use fleetwire_actors::ports::{Checkpoint, Lease, LeaseError, LeaseStore, SequenceNumber};

const ENDPOINT_VAR: &str = "FLEETWIRE_TEST_DYNAMODB_ENDPOINT";

fn endpoint() -> String {
    std::env::var(ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!(
            "{ENDPOINT_VAR} is not set: these tests need DynamoDB Local. Run \
             `scripts/emulators start dynamodb` and `eval \"$(scripts/emulators env)\"`."
        )
    })
}

fn config(table: &str, create: bool) -> DynamoDbConfig {
    DynamoDbConfig {
        region: "us-east-1".into(),
        endpoint_url: Some(endpoint()),
        static_credentials: true,
        lease_table: table.to_owned(),
        create_tables_if_missing: create,
        ..DynamoDbConfig::default()
    }
}

/// Runs `test` on a store over a fresh table and deletes the table afterwards, also when
/// the test panics (the panic is then re-raised).
async fn with_store<F, Fut>(test: F)
where
    F: FnOnce(Arc<DynamoDbLeaseStore>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let name = unique("fw-test-leases");
    let store = Arc::new(
        DynamoDbLeaseStore::connect(&config(&name, true))
            .await
            .unwrap_or_else(|e| panic!("creating {name} on {} failed: {e}", endpoint())),
    );
    let outcome = tokio::spawn(test(Arc::clone(&store))).await;
    store.delete_table().await.expect("delete_table failed");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test]
async fn lease_fencing_conformance() {
    with_store(|store| async move { conformance::check_lease_fencing(store.as_ref()).await }).await;
}

#[tokio::test]
async fn concurrent_takes_have_exactly_one_winner() {
    with_store(|a| async move {
        // A second client, as a second node would have.
        let b = DynamoDbLeaseStore::connect(&config(a.table(), false))
            .await
            .expect("second store");
        for round in 0..10 {
            let key = format!("shardId-race-{round}");
            assert!(
                a.create_lease_if_absent(Lease::new(&key, vec![], Checkpoint::TrimHorizon))
                    .await
                    .unwrap()
            );
            let seen = Lease::new(&key, vec![], Checkpoint::TrimHorizon);
            let (ra, rb) = tokio::join!(a.take_lease(&seen, "worker-a"), b.take_lease(&seen, "worker-b"));
            let (winner, loser) = match (ra, rb) {
                (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
                other => panic!("round {round}: exactly one take must win, got {other:?}"),
            };
            assert!(
                matches!(loser, LeaseError::ConditionFailed(_)),
                "loser got {loser:?}"
            );
            assert_eq!(winner.lease_counter, 1);
            assert_eq!(winner.owner_switches_since_checkpoint, 1);
            let stored = a
                .list_leases()
                .await
                .unwrap()
                .into_iter()
                .find(|l| l.lease_key == key)
                .unwrap();
            assert_eq!(stored, winner, "the stored lease is the winner's");
        }
    })
    .await;
}

#[tokio::test]
async fn checkpoint_by_a_non_owner_fails_and_changes_nothing() {
    with_store(|store| async move {
        store
            .create_lease_if_absent(Lease::new("shardId-cp", vec![], Checkpoint::Latest))
            .await
            .unwrap();
        let free = store.list_leases().await.unwrap().pop().unwrap();
        let owned = store.take_lease(&free, "worker-a").await.unwrap();
        let result = store
            .update_checkpoint(
                "shardId-cp",
                "worker-b",
                Checkpoint::Sequence(SequenceNumber("42".into())),
            )
            .await;
        assert!(
            matches!(result, Err(LeaseError::ConditionFailed(_))),
            "got {result:?}"
        );
        assert_eq!(store.list_leases().await.unwrap(), vec![owned], "nothing changed");
    })
    .await;
}

#[tokio::test]
async fn items_use_the_kcl_layout() {
    with_store(|store| async move {
        let parents = vec!["shardId-p1".to_owned(), "shardId-p2".to_owned()];
        store
            .create_lease_if_absent(Lease::new("shardId-x", parents.clone(), Checkpoint::TrimHorizon))
            .await
            .unwrap();
        store
            .create_lease_if_absent(Lease::new("shardId-y", vec![], Checkpoint::TrimHorizon))
            .await
            .unwrap();
        let free = store
            .list_leases()
            .await
            .unwrap()
            .into_iter()
            .find(|l| l.lease_key == "shardId-x")
            .unwrap();
        let taken = store.take_lease(&free, "worker-a").await.unwrap();
        store
            .update_checkpoint(
                "shardId-x",
                "worker-a",
                Checkpoint::Sequence(SequenceNumber("4951".into())),
            )
            .await
            .unwrap();

        let get = |key: &'static str| {
            let store = Arc::clone(&store);
            async move {
                store
                    .client()
                    .get_item()
                    .table_name(store.table())
                    .key("leaseKey", AttributeValue::S(key.into()))
                    .consistent_read(true)
                    .send()
                    .await
                    .unwrap()
                    .item
                    .unwrap()
            }
        };
        let x = get("shardId-x").await;
        assert_eq!(x["leaseKey"], AttributeValue::S("shardId-x".into()));
        assert_eq!(x["leaseOwner"], AttributeValue::S("worker-a".into()));
        assert_eq!(
            x["leaseCounter"],
            AttributeValue::N(taken.lease_counter.to_string())
        );
        assert_eq!(x["checkpoint"], AttributeValue::S("4951".into()));
        assert_eq!(x["ownerSwitchesSinceCheckpoint"], AttributeValue::N("0".into()));
        let mut stored_parents = x["parentShardIds"]
            .as_ss()
            .expect("parents are a string set")
            .clone();
        stored_parents.sort();
        assert_eq!(stored_parents, parents);

        let y = get("shardId-y").await;
        assert!(
            !y.contains_key("leaseOwner"),
            "a free lease has no owner attribute"
        );
        assert!(!y.contains_key("parentShardIds"), "no parents, no (empty) set");
        assert_eq!(y["checkpoint"], AttributeValue::S("TRIM_HORIZON".into()));

        // Evicting removes the owner attribute again.
        store
            .evict_lease(
                &store
                    .list_leases()
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|l| l.lease_key == "shardId-x")
                    .unwrap(),
            )
            .await
            .unwrap();
        assert!(!get("shardId-x").await.contains_key("leaseOwner"));
    })
    .await;
}

#[tokio::test]
async fn list_leases_follows_scan_pages() {
    with_store(|store| async move {
        for i in 0..7 {
            store
                .create_lease_if_absent(Lease::new(format!("shardId-{i}"), vec![], Checkpoint::Latest))
                .await
                .unwrap();
        }
        let paged =
            DynamoDbLeaseStore::from_client(store.client().clone(), store.table()).with_scan_page_size(2);
        let mut keys: Vec<_> = paged
            .list_leases()
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.lease_key)
            .collect();
        keys.sort();
        assert_eq!(keys, (0..7).map(|i| format!("shardId-{i}")).collect::<Vec<_>>());
    })
    .await;
}

#[tokio::test]
async fn a_missing_table_is_unavailable_not_not_found() {
    let store = DynamoDbLeaseStore::connect(&config(&unique("fw-test-leases"), false))
        .await
        .unwrap();
    assert!(matches!(store.ping().await, Err(LeaseError::Unavailable(_))));
    let lease = Lease::new("shardId-0", vec![], Checkpoint::Latest);
    assert!(matches!(
        store.renew_lease(&lease).await,
        Err(LeaseError::Unavailable(_))
    ));
    assert!(matches!(
        store.list_leases().await,
        Err(LeaseError::Unavailable(_))
    ));
}

#[tokio::test]
async fn take_counts_switches_by_the_stored_owner_not_the_callers_copy() {
    with_store(|store| async move {
        store
            .create_lease_if_absent(Lease::new("shardId-t", vec![], Checkpoint::Latest))
            .await
            .unwrap();
        let free = store.list_leases().await.unwrap().pop().unwrap();
        let a = store.take_lease(&free, "worker-a").await.unwrap();
        assert_eq!(a.owner_switches_since_checkpoint, 1);

        // The copy claims the lease is free, but worker-a holds it: re-taking is no switch.
        let mut stale_owner = a.clone();
        stale_owner.lease_owner = None;
        let a2 = store.take_lease(&stale_owner, "worker-a").await.unwrap();
        assert_eq!((a2.lease_counter, a2.owner_switches_since_checkpoint), (2, 1));

        // The copy claims worker-b holds it, but worker-a does: taking it is a switch.
        let mut wrong_owner = a2.clone();
        wrong_owner.lease_owner = Some("worker-b".into());
        let b = store.take_lease(&wrong_owner, "worker-b").await.unwrap();
        assert_eq!((b.lease_counter, b.owner_switches_since_checkpoint), (3, 2));
        assert_eq!(b.lease_owner.as_deref(), Some("worker-b"));
    })
    .await;
}
