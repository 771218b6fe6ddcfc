use super::*;

#[test]
fn in_order_stream_counts_nothing_but_events() {
    let mut a = StreamAccount::new(3);
    for n in 1..=5 {
        a.vehicle_event(0, n, n);
        a.vehicle_event(1, n, n);
    }
    let c = a.finish(&[5, 5, 0]);
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
    let mut a = StreamAccount::new(3);
    a.vehicle_event(0, 1, 1);
    a.vehicle_event(0, 2, 2);
    a.vehicle_event(0, 2, 2);
    a.vehicle_event(0, 1, 1);
    assert_eq!(a.counts.duplicates, 2);
    assert_eq!(a.last_seq(0), 2);
}

#[test]
fn applied_but_skipped_records_are_superseded_not_lost() {
    let mut a = StreamAccount::new(3);
    a.vehicle_event(0, 1, 1);
    // Records 2..=4 applied (version 4), delivered as one newer state.
    a.vehicle_event(0, 4, 4);
    let c = a.finish(&[4]);
    assert_eq!((c.superseded, c.lost()), (2, 0));
}

#[test]
fn a_record_never_applied_is_lost_once() {
    let mut a = StreamAccount::new(3);
    a.vehicle_event(0, 1, 1);
    // Record 2 vanished: 3 is the vehicle's 2nd applied record.
    a.vehicle_event(0, 3, 2);
    a.vehicle_event(0, 4, 3);
    a.vehicle_event(0, 6, 5);
    let c = a.finish(&[6]);
    assert_eq!((c.lost_before_apply, c.superseded, c.lost_tail), (1, 1, 0));
}

#[test]
fn first_records_missing_from_the_start_are_lost() {
    let mut a = StreamAccount::new(3);
    a.vehicle_event(0, 3, 1);
    assert_eq!((a.counts.lost_before_apply, a.counts.superseded), (2, 0));
}

#[test]
fn accepted_records_never_seen_are_the_lost_tail() {
    let mut a = StreamAccount::new(3);
    a.vehicle_event(0, 1, 1);
    let c = a.finish(&[4, 2]);
    assert_eq!((c.lost_tail, c.lost()), (5, 5));
}

#[test]
fn double_application_is_detected_from_the_version() {
    let mut a = StreamAccount::new(3);
    a.vehicle_event(0, 1, 1);
    a.vehicle_event(0, 2, 3);
    a.vehicle_event(0, 3, 4);
    assert_eq!(a.counts.double_applied, 1);
}

#[test]
fn a_reset_moves_the_next_gap_of_each_vehicle_to_its_own_counter() {
    let mut a = StreamAccount::new(3);
    a.vehicle_event(0, 1, 1);
    a.vehicle_event(1, 1, 1);
    a.reset();
    a.vehicle_event(0, 5, 5);
    a.vehicle_event(0, 7, 7);
    a.vehicle_event(1, 3, 3);
    let c = a.finish(&[7, 3]);
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

#[test]
fn indices_outside_the_fleet_are_foreign() {
    let mut a = StreamAccount::new(1);
    assert_eq!(a.vehicle_event(5, 1, 1), 0);
    assert_eq!(a.vehicle_event(0, 2, 2), 2);
    assert_eq!((a.counts.foreign, a.counts.events), (1, 1));
}

#[test]
fn a_tail_after_a_reset_is_announced_not_lost() {
    let mut a = StreamAccount::new(2);
    a.vehicle_event(0, 1, 1);
    a.vehicle_event(1, 1, 1);
    a.reset();
    a.vehicle_event(1, 2, 2);
    let c = a.finish(&[3, 4]);
    assert_eq!((c.skipped_after_reset, c.lost_tail), (2, 2));
}

#[test]
fn a_filtered_stream_only_loses_the_vehicles_it_follows() {
    let mut a = StreamAccount::new(3);
    a.follow_only(&[1]);
    a.vehicle_event(1, 1, 1);
    a.vehicle_event(1, 2, 2);
    let counts = a.finish(&[5, 3, 7]);
    assert_eq!(
        counts.lost(),
        1,
        "vehicle 1's third record; 0 and 2 are not followed"
    );
}
