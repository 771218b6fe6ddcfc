//! Security headers on every public answer, and CORS: configured origins and the page's
//! own origin get CORS headers, others do not.

mod common;

use std::time::Duration;

use common::{TestNode, test_config};

#[actix_rt::test]
async fn security_headers_and_cors_from_config() {
    let mut config = test_config(None);
    config.http.cors_allowed_origins = vec!["https://fleet.example.com".to_owned()];
    let t = TestNode::start(config).await;

    for path in ["/", "/v1/vehicles", "/v1/nope"] {
        let response = t.client.get(format!("{}{path}", t.api)).send().await.unwrap();
        let h = response.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'"),
            "{path}"
        );
    }

    let preflight = |origin: &'static str| {
        let url = format!("{}/v1/vehicles", t.api);
        async move {
            reqwest::Client::new()
                .request(reqwest::Method::OPTIONS, url)
                .header("origin", origin)
                .header("access-control-request-method", "GET")
                .header("access-control-request-headers", "authorization")
                .send()
                .await
                .unwrap()
        }
    };
    let allowed = preflight("https://fleet.example.com").await;
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://fleet.example.com"
    );
    let refused = preflight("https://evil.example").await;
    assert!(!refused.headers().contains_key("access-control-allow-origin"));

    // The page's own origin (a same-origin POST carries an Origin header too).
    let own_origin = t.api.clone();
    let response = t
        .client
        .post(format!("{}/v1/stream-tickets", t.api))
        .header("origin", own_origin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    t.shutdown(Duration::from_secs(10)).await;
}

#[test]
fn wildcard_origins_are_refused() {
    let mut config = fleetwire::config::Config::default();
    config.http.cors_allowed_origins = vec!["*".to_owned()];
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("cors_allowed_origins"), "{error}");
}
