use super::*;

#[test]
fn in_order_stream_counts_nothing_but_events() {
    let mut a = StreamAccount::default();
    for n in 1..=5 {
        a.vehicle_event("v1", n, n);
        a.vehicle_event("v2", n, n);
    }
    let c = a.finish([("v1", 5), ("v2", 5)]);
    assert_eq!(
        c,
        Counts {
            events: 10,
            ..Counts::default()
        }
    );
    assert_eq!(c.lost(), 0);
}

#[test]
fn repeated_and_older_seqs_are_duplicates() {
    let mut a = StreamAccount::default();
    a.vehicle_event("v", 1, 1);
    a.vehicle_event("v", 2, 2);
    a.vehicle_event("v", 2, 2);
    a.vehicle_event("v", 1, 1);
    assert_eq!(a.counts.duplicates, 2);
    assert_eq!(a.last_seq("v"), 2);
}

#[test]
fn applied_but_skipped_records_are_superseded_not_lost() {
    let mut a = StreamAccount::default();
    a.vehicle_event("v", 1, 1);
    // Records 2..=4 applied (version 4), delivered as one newer state.
    a.vehicle_event("v", 4, 4);
    let c = a.finish([("v", 4)]);
    assert_eq!((c.superseded, c.lost()), (2, 0));
}

#[test]
fn a_record_never_applied_is_lost_once() {
    let mut a = StreamAccount::default();
    a.vehicle_event("v", 1, 1);
    // Record 2 vanished: 3 is the vehicle's 2nd applied record.
    a.vehicle_event("v", 3, 2);
    a.vehicle_event("v", 4, 3);
    a.vehicle_event("v", 6, 5);
    let c = a.finish([("v", 6)]);
    assert_eq!((c.lost_before_apply, c.superseded, c.lost_tail), (1, 1, 0));
}

#[test]
fn first_records_missing_from_the_start_are_lost() {
    let mut a = StreamAccount::default();
    a.vehicle_event("v", 3, 1);
    assert_eq!((a.counts.lost_before_apply, a.counts.superseded), (2, 0));
}

#[test]
fn accepted_records_never_seen_are_the_lost_tail() {
    let mut a = StreamAccount::default();
    a.vehicle_event("v", 1, 1);
    let c = a.finish([("v", 4), ("never", 2)]);
    assert_eq!((c.lost_tail, c.lost()), (5, 5));
}

#[test]
fn double_application_is_detected_from_the_version() {
    let mut a = StreamAccount::default();
    a.vehicle_event("v", 1, 1);
    a.vehicle_event("v", 2, 3);
    a.vehicle_event("v", 3, 4);
    assert_eq!(a.counts.double_applied, 1);
}

#[test]
fn a_reset_moves_the_next_gap_of_each_vehicle_to_its_own_counter() {
    let mut a = StreamAccount::default();
    a.vehicle_event("a", 1, 1);
    a.vehicle_event("b", 1, 1);
    a.reset();
    a.vehicle_event("a", 5, 5);
    a.vehicle_event("a", 7, 7);
    a.vehicle_event("b", 3, 3);
    let c = a.finish([("a", 7), ("b", 3)]);
    assert_eq!((c.resets, c.skipped_after_reset, c.superseded), (1, 4, 1));
}

#[test]
fn counts_add_up() {
    let mut total = Counts::default();
    let one = Counts {
        events: 2,
        duplicates: 1,
        lost_tail: 3,
        ..Counts::default()
    };
    total.add(&one);
    total.add(&one);
    assert_eq!((total.events, total.duplicates, total.lost()), (4, 2, 6));
}
