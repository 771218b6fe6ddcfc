use super::*;

fn sample(t: f64, offered: f64, accepted: f64, e2e_p99: f64) -> Sample {
    Sample {
        t,
        offered_rps: offered,
        accepted_rps: accepted,
        e2e: Percentiles {
            count: 10,
            p99: e2e_p99,
            ..Percentiles::default()
        },
        ..Sample::default()
    }
}

fn knee() -> Knee {
    Knee {
        e2e_p99_ms: Some(50.0),
        ack_p99_ms: None,
        max_error_ratio: 0.01,
        min_accepted_ratio: 0.9,
        windows: 3,
        stop_after_secs: 0,
    }
}

#[test]
fn the_knee_is_the_first_of_enough_bad_windows_in_a_row() {
    let mut s: Vec<Sample> = (0..20)
        .map(|t| sample(t as f64, 1000.0 * t as f64, 1000.0 * t as f64, 10.0))
        .collect();
    s[5].e2e.p99 = 80.0; // one bad window alone is noise
    for w in &mut s[10..] {
        w.e2e.p99 = 90.0;
    }
    let k = find_knee(&s, &knee(), 0.0).unwrap();
    assert_eq!(
        (k.at_secs, k.offered_rps, k.last_good_accepted_rps),
        (10.0, 10_000.0, 9000.0)
    );
    assert!(k.reason.contains("e2e p99"), "{}", k.reason);
}

#[test]
fn senders_falling_behind_are_a_knee_too() {
    let s: Vec<Sample> = (0..10)
        .map(|t| sample(t as f64, 1000.0, if t >= 6 { 500.0 } else { 1000.0 }, 1.0))
        .collect();
    let k = find_knee(&s, &knee(), 0.0).unwrap();
    assert_eq!(k.at_secs, 6.0);
    assert!(k.reason.contains("accepted"));
}

#[test]
fn windows_within_the_warm_up_are_no_knee() {
    let mut s: Vec<Sample> = (0..20).map(|t| sample(t as f64, 100.0, 100.0, 5.0)).collect();
    for w in &mut s[..8] {
        w.e2e.p99 = 200.0; // a cold start
    }
    assert_eq!(find_knee(&s, &knee(), 0.0).unwrap().at_secs, 3.0);
    assert!(find_knee(&s, &knee(), 8.0).is_none());
}

#[test]
fn no_knee_when_every_window_holds() {
    let s: Vec<Sample> = (0..10).map(|t| sample(t as f64, 100.0, 100.0, 5.0)).collect();
    assert!(find_knee(&s, &knee(), 0.0).is_none());
}

#[test]
fn thresholds_fail_on_loss_duplicates_and_unmeasured_latency() {
    let t = Thresholds {
        e2e_p99_ms: Some(100.0),
        min_throughput: Some(10.0),
        max_resets: Some(0),
        ..Thresholds::default()
    };
    let good = Outcome {
        e2e_p99_ms: Some(20.0),
        throughput: 50.0,
        ..Outcome::default()
    };
    assert!(check(&t, &good).iter().all(|c| c.pass));
    let bad = Outcome {
        lost: 1,
        duplicates: 2,
        resets: 1,
        e2e_p99_ms: None,
        throughput: 5.0,
        ..Outcome::default()
    };
    let failed: Vec<String> = check(&t, &bad)
        .into_iter()
        .filter(|c| !c.pass)
        .map(|c| c.name)
        .collect();
    assert_eq!(
        failed,
        ["loss", "duplicates", "resets", "e2e_p99_ms", "min_throughput"]
    );
}

#[test]
fn percentiles_come_from_microseconds() {
    let mut h = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).unwrap();
    for us in 1..=1000 {
        h.record(us * 1000).unwrap();
    }
    let p = Percentiles::from_us(&h);
    assert_eq!(p.count, 1000);
    assert!(
        (p.p50 - 500.0).abs() < 1.0 && (p.p99 - 990.0).abs() < 1.0,
        "{p:?}"
    );
    assert_eq!(
        Percentiles::from_us(&Histogram::new(3).unwrap()),
        Percentiles::default()
    );
}
