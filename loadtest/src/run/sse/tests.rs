use super::*;

#[test]
fn reads_the_load_test_signals_of_a_full_update() {
    let data = r#"{"tenant":"default","vehicle_id":"ltab12-42","version":7,"last_seen":"2026-01-01T00:00:00Z",
        "changed":["lt_seq"],"signals":{"Soc":{"value":80.5,"timestamp":"2026-01-01T00:00:00Z"},
        "lt_seq":{"value":7,"timestamp":"2026-01-01T00:00:00Z"},
        "lt_sent_us":{"value":1767225600000000,"timestamp":"2026-01-01T00:00:00Z"}},
        "ingest_received_at":"2026-01-01T00:00:00Z"}"#;
    assert_eq!(
        parse_update(data, "ltab12-").unwrap(),
        Some((42, 7, 7, 1_767_225_600_000_000))
    );
    assert_eq!(parse_update(data, "other-").unwrap(), None);
    let foreign = r#"{"vehicle_id":"SIMVIN0001","version":1,"signals":{"Soc":{"value":1}}}"#;
    assert_eq!(parse_update(foreign, "ltab12-").unwrap(), None);
    assert!(parse_update("{", "ltab12-").is_err());
}
