//! Key rotation at the identity provider, with the JWKS fetched from a URL (a small HTTP
//! server on loopback stands in for Cognito's `.well-known/jwks.json`): a token signed
//! with a new key is accepted once the node refetches (on the unknown kid, rate-limited),
//! a removed key stops working after the refresh interval, and junk kids cannot make the
//! node hammer the provider.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use common::auth::{self, claims};
use common::{TestNode, test_config};
use fleetwire::auth::Role;
use fleetwire::auth::dev::DevIssuer;
use jsonwebtoken::Algorithm;

/// The fake provider: serves whatever JWKS is current and counts fetches.
#[derive(Clone, Default)]
struct Provider {
    jwks: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

impl Provider {
    fn publish(&self, issuer: &DevIssuer) {
        *self.jwks.lock().unwrap() = serde_json::to_string(&issuer.jwks()).unwrap();
    }
    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

async fn serve(provider: Provider) -> String {
    let server = HttpServer::new(move || {
        let p = provider.clone();
        App::new().route(
            "/.well-known/jwks.json",
            web::get().to(move || {
                let p = p.clone();
                async move {
                    p.fetches.fetch_add(1, Ordering::SeqCst);
                    let body = p.jwks.lock().unwrap().clone();
                    HttpResponse::Ok().content_type("application/json").body(body)
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let url = format!("http://{}/.well-known/jwks.json", server.addrs()[0]);
    actix_rt::spawn(server.run());
    url
}

async fn status(t: &TestNode, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/v1/vehicles", t.api))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[actix_rt::test]
async fn rotated_keys_are_picked_up_and_refetches_are_rate_limited() {
    let mut issuer = DevIssuer::generate(auth::ISSUER, auth::AUDIENCE).unwrap();
    let first_kid = jsonwebtoken::decode_header(issuer.sign(&claims("default", Role::Viewer)))
        .unwrap()
        .kid
        .unwrap();
    let provider = Provider::default();
    provider.publish(&issuer);
    let url = serve(provider.clone()).await;

    let mut config = test_config(None);
    config.auth.jwks_file = None;
    config.auth.jwks_url = Some(url);
    config.auth.jwks_min_refetch_secs = 1;
    config.auth.jwks_refresh_secs = 3;
    let t = TestNode::start(config).await;
    assert_eq!(provider.fetches(), 1, "loaded once at start");
    let old_token = issuer.sign(&claims("default", Role::Viewer));
    assert_eq!(status(&t, &old_token).await, 200);

    // The provider rotates in an RSA key; new tokens use it.
    let new_kid = issuer.add_key(Algorithm::RS256).unwrap();
    provider.publish(&issuer);
    let new_token = issuer.sign_with(&new_kid, &claims("default", Role::Viewer));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        status(&t, &new_token).await,
        200,
        "the unknown kid triggers a refetch"
    );
    assert_eq!(provider.fetches(), 2);

    // A burst of tokens with kids nobody knows: at most one more fetch per second.
    let stranger = DevIssuer::generate(auth::ISSUER, auth::AUDIENCE).unwrap();
    let junk = stranger.sign(&claims("default", Role::Viewer));
    let before = provider.fetches();
    for _ in 0..30 {
        assert_eq!(status(&t, &junk).await, 401);
    }
    assert!(
        provider.fetches() - before <= 1,
        "{} fetches for 30 junk tokens",
        provider.fetches() - before
    );

    // The provider retires the first key: once the cache is older than the refresh
    // interval, the node refetches and tokens of the retired key are refused.
    issuer.remove_key(&first_kid);
    provider.publish(&issuer);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(status(&t, &old_token).await, 401, "retired key");
    assert_eq!(status(&t, &new_token).await, 200, "current key");
    t.shutdown(Duration::from_secs(10)).await;
}

#[actix_rt::test]
async fn a_jwks_url_must_be_https_off_loopback() {
    let mut config = test_config(None);
    config.auth.jwks_file = None;
    config.auth.jwks_url = Some("http://idp.example.com/jwks.json".to_owned());
    let error = match fleetwire::node::Node::start(config).await {
        Ok(_) => panic!("plain http to a remote JWKS must be refused"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("https"), "{error}");
}
