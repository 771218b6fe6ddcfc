use super::*;

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

fn with_loopback_targets(mut s: Scenario) -> Scenario {
    s.targets.ingest = vec!["http://127.0.0.1:8080/v1/ingest".into()];
    s.targets.sse = vec!["http://127.0.0.1:8080/v1/stream".into()];
    s
}

fn shipped(name: &str) -> Scenario {
    with_loopback_targets(Scenario::load(&scenarios_dir().join(format!("{name}.toml"))).unwrap())
}

#[test]
fn every_shipped_scenario_parses_and_validates() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(scenarios_dir()).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with('#'),
            "{} must open with a comment",
            path.display()
        );
        let s = with_loopback_targets(Scenario::load(&path).unwrap());
        s.validate(false)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        names.push(s.name);
    }
    names.sort();
    let expected = [
        "burst",
        "failover",
        "peak",
        "reconnect-storm",
        "smoke",
        "soak",
        "sse-fanout",
        "steady",
    ];
    assert_eq!(names, expected);
}

#[test]
fn smoke_fits_in_a_minute() {
    let s = shipped("smoke");
    assert!(s.subscribers.connect_secs + s.load_secs() + s.drain_secs <= 60);
}

#[test]
fn unknown_keys_are_rejected_with_their_name() {
    let err = toml::from_str::<Scenario>(
        "name = \"x\"\n[fleet]\nvehicles = 1\nvehicels = 2\n[[stages]]\nsecs = 1\nhz = 1.0\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("vehicels"), "{err}");
}

#[test]
fn rates_follow_stages_and_ramps() {
    let s: Scenario = toml::from_str(
        "name = \"r\"\n[fleet]\nvehicles = 1\n[[stages]]\nsecs = 10\nhz = 1.0\n[[stages]]\nsecs = 10\nfrom_hz = 2.0\nhz = 4.0\n",
    )
    .unwrap();
    assert_eq!(s.hz_at(5.0), Some(1.0));
    assert_eq!(s.hz_at(10.0), Some(2.0));
    assert_eq!(s.hz_at(15.0), Some(3.0));
    assert_eq!(s.hz_at(20.0), None);
}

#[test]
fn overrides_scale_time_and_rate() {
    let mut s = shipped("burst");
    s.set_load_secs(18);
    assert_eq!(s.load_secs(), 18);
    s.scale_rate(2.0);
    assert_eq!(s.hz_at(7.0), Some(10.0));
}

#[test]
fn remote_targets_need_allow_remote() {
    let mut s = shipped("smoke");
    s.targets.ingest = vec!["http://192.0.2.1:8080/v1/ingest".into()];
    let err = s.validate(false).unwrap_err().to_string();
    assert!(err.contains("--allow-remote"), "{err}");
    s.validate(true).unwrap();
}

#[test]
fn out_of_bounds_values_are_named() {
    let mut s = shipped("smoke");
    s.fleet.vehicles = MAX_VEHICLES + 1;
    s.fleet.batch_size = 0;
    s.stages[0].hz = f64::NAN;
    s.drain_secs = 601;
    s.warmup_secs = s.load_secs();
    let err = s.validate(false).unwrap_err().to_string();
    for key in [
        "fleet.vehicles",
        "fleet.batch_size",
        "stages[0]",
        "drain_secs",
        "warmup_secs",
    ] {
        assert!(err.contains(key), "{key} missing in {err}");
    }
    let mut s = shipped("soak");
    s.stages[0].secs = MAX_RUN_SECS;
    assert!(s.validate(false).unwrap_err().to_string().contains("must last"));
}

#[test]
fn https_is_refused_clearly() {
    let mut s = shipped("smoke");
    s.targets.sse = vec!["https://127.0.0.1/v1/stream".into()];
    assert!(
        s.validate(false)
            .unwrap_err()
            .to_string()
            .contains("only http://")
    );
}

#[test]
fn credentials_never_reach_a_report_or_a_log_line() {
    let mut s = shipped("smoke");
    s.auth = Auth {
        bearer_token: Some("eyJ-secret-token".into()),
        api_key: Some("fwk_secret_key".into()),
        admin_token: None,
    };
    let json = serde_json::to_string(&s).unwrap();
    let debug = format!("{s:?}");
    for text in [&json, &debug] {
        assert!(!text.contains("secret"), "a credential leaked: {text}");
        assert!(text.contains("<redacted>"), "{text}");
    }
    assert!(json.contains(r#""admin_token":null"#), "{json}");
}
