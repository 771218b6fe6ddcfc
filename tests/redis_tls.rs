//! The Redis fan-out over TLS with a password (`rediss://:password@host:port/`), as
//! ElastiCache runs with in-transit encryption and AUTH: a private `redis-server` with
//! TLS only (plain port off) and a certificate from a development CA, which the client
//! trusts through `SSL_CERT_FILE` (read by the system root store loader). In its own test
//! binary because that variable is process-wide.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fleetwire::backends::conformance::update_of;
use fleetwire::backends::redis::{RedisConfig, RedisFanOut};
use fleetwire_actors::model::TenantId;
use fleetwire_actors::ports::{FanOut, FanOutMessage, LogEntry};
use fleetwire_loadtest::pki::DevPki;
use futures_util::StreamExt;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[actix_rt::test]
async fn the_fan_out_works_over_tls_with_auth_and_refuses_a_wrong_password() {
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::load_or_create(dir.path()).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let _server = KillOnDrop(
        Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args(["--tls-cert-file", &path(&pki.server_cert_file)])
            .args(["--tls-key-file", &path(&pki.server_key_file)])
            .args(["--tls-ca-cert-file", &path(&pki.ca_cert_file)])
            .args(["--tls-auth-clients", "no", "--requirepass", "s3cret"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (scripts/redis installs it)"),
    );
    // SAFETY: set before any TLS client exists, in a test binary of its own.
    unsafe { std::env::set_var("SSL_CERT_FILE", &pki.ca_cert_file) };
    let config = |password: &str| RedisConfig {
        url: format!("rediss://:{password}@127.0.0.1:{port}/"),
        key_prefix: format!("tls-test-{port}"),
        reconnect_backoff_initial_ms: 20,
        reconnect_backoff_max_ms: 200,
        ..RedisConfig::default()
    };
    let fanout = RedisFanOut::new(&config("s3cret")).unwrap();
    // The server needs a moment to listen; ping until it answers over TLS.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while fanout.ping().await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "TLS Redis never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut subscription = fanout.subscribe();
    common::eventually("subscribed over TLS", || async { fanout.is_subscribed() }).await;
    fanout
        .publish(update_of(&TenantId::default(), "car-tls", 7))
        .await
        .unwrap();
    let message = tokio::time::timeout(common::WAIT, subscription.next())
        .await
        .unwrap();
    match message {
        Some(FanOutMessage::Entry(LogEntry::Update { update, .. })) => {
            assert_eq!((update.vehicle_id.as_str(), update.version), ("car-tls", 7))
        }
        other => panic!("expected the update, got {other:?}"),
    }
    let wrong = RedisFanOut::new(&config("wrong")).unwrap();
    assert!(wrong.ping().await.is_err(), "a wrong password is refused");
}
