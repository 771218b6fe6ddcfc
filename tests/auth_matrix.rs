//! The authorization matrix, black-box over HTTP: every public endpoint × every role ×
//! own tenant / other tenant, and every kind of bad credential (none, expired, not yet
//! valid, wrong audience, wrong issuer, tampered signature or payload, `alg: none`, HMAC
//! confusion, unknown key, no tenant claim); the admin listener's credential; and the
//! proof that another tenant reads nothing of this one's data (REST and SSE).

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::auth::{self, ADMIN_TOKEN, claims, token};
use common::{TestNode, eventually, record, test_config};
use fleetwire::auth::Role;
use fleetwire_actors::model::TenantId;
use serde_json::{Value, json};

const OWN: &str = TenantId::DEFAULT;
const OTHER: &str = "other-fleet";

/// A public endpoint and the lowest role that may call it.
struct Endpoint {
    method: &'static str,
    path: &'static str,
    min_role: Role,
}

const fn endpoint(method: &'static str, path: &'static str, min_role: Role) -> Endpoint {
    Endpoint {
        method,
        path,
        min_role,
    }
}

/// Every endpoint that takes user tokens (ingest takes API keys: `tests/ingest_keys.rs`,
/// where user tokens on ingest are refused too).
const ENDPOINTS: [Endpoint; 7] = [
    endpoint("GET", "/v1/vehicles", Role::Viewer),
    endpoint("GET", "/v1/vehicles/car-1", Role::Viewer),
    endpoint("GET", "/v1/stream", Role::Viewer),
    endpoint("POST", "/v1/stream-tickets", Role::Viewer),
    endpoint("POST", "/v1/api-keys", Role::TenantAdmin),
    endpoint("GET", "/v1/api-keys", Role::TenantAdmin),
    endpoint("DELETE", "/v1/api-keys/0123456789ab", Role::TenantAdmin),
];

/// Sends `endpoint` with `credential` (no Authorization header when `None`); returns the
/// status, the `WWW-Authenticate` header and the JSON body (Null for SSE and non-JSON).
async fn call(t: &TestNode, endpoint: &Endpoint, credential: Option<&str>) -> (u16, Option<String>, Value) {
    let client = reqwest::Client::new();
    let url = format!("{}{}", t.api, endpoint.path);
    let mut request = match endpoint.method {
        "GET" => client.get(url),
        "DELETE" => client.delete(url),
        _ => client.post(url),
    };
    if endpoint.path == "/v1/api-keys" && endpoint.method == "POST" {
        request = request.json(&json!({"name": "matrix"}));
    }
    if let Some(c) = credential {
        request = request.bearer_auth(c);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let is_sse = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
    // An SSE body never ends: drop it unread.
    let body = if is_sse {
        Value::Null
    } else {
        response.json().await.unwrap_or(Value::Null)
    };
    (status, challenge, body)
}

fn sign_raw(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// Every credential that must be refused with 401, and why.
fn bad_credentials() -> Vec<(&'static str, String)> {
    let issuer = auth::issuer();
    let valid = token(OWN, Role::TenantAdmin);
    let kid = jsonwebtoken::decode_header(&valid).unwrap().kid.unwrap();
    let mut bad = Vec::new();

    let mut expired = claims(OWN, Role::TenantAdmin);
    expired["exp"] = json!(fleetwire::auth::now_secs() - 120); // beyond the 60 s leeway
    bad.push(("expired", issuer.sign(&expired)));

    let mut early = claims(OWN, Role::TenantAdmin);
    early["nbf"] = json!(fleetwire::auth::now_secs() + 600);
    bad.push(("not yet valid", issuer.sign(&early)));

    let mut audience = claims(OWN, Role::TenantAdmin);
    audience["client_id"] = json!("another-app");
    bad.push(("wrong audience", issuer.sign(&audience)));

    let mut id_token_audience = claims(OWN, Role::TenantAdmin);
    id_token_audience["aud"] = json!("another-app");
    bad.push(("wrong aud (ID token)", issuer.sign(&id_token_audience)));

    let mut iss = claims(OWN, Role::TenantAdmin);
    iss["iss"] = json!("https://evil.example");
    bad.push(("wrong issuer", issuer.sign(&iss)));

    let mut token_use = claims(OWN, Role::TenantAdmin);
    token_use["token_use"] = json!("refresh");
    bad.push(("wrong token_use", issuer.sign(&token_use)));

    // Flip one bit of the signature.
    let (head, sig) = valid.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    sig[10] ^= 1;
    bad.push((
        "tampered signature",
        format!("{head}.{}", URL_SAFE_NO_PAD.encode(sig)),
    ));

    // Another tenant's name in the payload, the original signature.
    let parts: Vec<&str> = valid.split('.').collect();
    let mut payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["custom:tenant_id"] = json!(OTHER);
    bad.push((
        "tampered payload",
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            parts[2]
        ),
    ));

    bad.push((
        "alg none",
        sign_raw(
            &json!({"alg": "none", "typ": "JWT", "kid": kid}),
            &claims(OWN, Role::TenantAdmin),
            b"",
        ),
    ));

    // HMAC confusion: HS256 keyed with the public key the server holds.
    let public_jwk = serde_json::to_vec(&issuer.jwks().keys[0]).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.clone());
    let hs = jsonwebtoken::encode(
        &header,
        &claims(OWN, Role::TenantAdmin),
        &jsonwebtoken::EncodingKey::from_secret(&public_jwk),
    )
    .unwrap();
    bad.push(("HS256 with the public key", hs));

    // A key the node has never seen (a different issuer's key, same claims).
    let stranger = fleetwire::auth::dev::DevIssuer::generate(auth::ISSUER, auth::AUDIENCE).unwrap();
    bad.push((
        "unknown signing key",
        stranger.sign(&claims(OWN, Role::TenantAdmin)),
    ));

    bad.push(("garbage", "not-a-jwt".to_owned()));
    bad
}

#[actix_rt::test]
async fn every_endpoint_every_role_every_bad_credential() {
    let t = TestNode::start(test_config(None)).await;
    // Data of the own tenant, to be read (or not) below.
    let (status, _) = t.ingest(&json!([record("car-1", 1, 50.0)])).await;
    assert_eq!(status, 200);
    eventually("car-1 is stored", || async {
        t.get(&format!("{}/v1/vehicles/car-1", t.api)).await.0 == 200
    })
    .await;

    for endpoint in &ENDPOINTS {
        let what = format!("{} {}", endpoint.method, endpoint.path);

        // No credential: 401 with a bare Bearer challenge.
        let (status, challenge, body) = call(&t, endpoint, None).await;
        assert_eq!(status, 401, "{what} without a token: {body}");
        assert_eq!(challenge.as_deref(), Some("Bearer realm=\"fleetwire\""), "{what}");
        assert_eq!(body["error"]["code"], "unauthenticated", "{what}: {body}");

        for (why, credential) in bad_credentials() {
            let (status, challenge, body) = call(&t, endpoint, Some(&credential)).await;
            assert_eq!(status, 401, "{what} with {why}: {body}");
            let challenge = challenge.unwrap_or_default();
            assert!(
                challenge.contains("error=\"invalid_token\""),
                "{what} with {why}: {challenge}"
            );
            assert_eq!(
                body["error"]["code"], "invalid_token",
                "{what} with {why}: {body}"
            );
            assert!(!body["error"]["message"].as_str().unwrap().is_empty());
        }

        for role in Role::ALL {
            for tenant in [OWN, OTHER] {
                let (status, challenge, body) = call(&t, endpoint, Some(&token(tenant, role))).await;
                let case = format!("{what} as {role} of {tenant}");
                if role < endpoint.min_role {
                    assert_eq!(status, 403, "{case}: {body}");
                    assert_eq!(body["error"]["code"], "forbidden", "{case}: {body}");
                    assert!(challenge.unwrap().contains("insufficient_scope"), "{case}");
                    continue;
                }
                let expected = match (endpoint.method, endpoint.path, tenant) {
                    ("POST", _, _) => 201,
                    // Another tenant's vehicle does not exist for it.
                    (_, "/v1/vehicles/car-1", OTHER) => 404,
                    ("DELETE", _, _) => 404,
                    _ => 200,
                };
                assert_eq!(status, expected, "{case}: {body}");
                if endpoint.path == "/v1/vehicles" {
                    let n = body["vehicles"].as_array().unwrap().len();
                    assert_eq!(n > 0, tenant == OWN, "{case} sees {n} vehicles: {body}");
                }
                if endpoint.path == "/v1/api-keys" && endpoint.method == "GET" {
                    // Only keys its own tenant's admins created (the test node's own key
                    // and the matrix's POSTs belong to whoever made them).
                    let creators: Vec<&str> = body["keys"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|k| k["created_by"].as_str().unwrap())
                        .collect();
                    assert!(
                        creators.iter().all(|c| c.ends_with(&format!("@{tenant}"))),
                        "{case}: {body}"
                    );
                }
            }
        }
    }
    t.shutdown(Duration::from_secs(10)).await;
}

#[actix_rt::test]
async fn a_token_without_a_tenant_is_forbidden() {
    let t = TestNode::start(test_config(None)).await;
    let issuer = auth::issuer();
    let mut no_tenant = claims(OWN, Role::Viewer);
    no_tenant.as_object_mut().unwrap().remove("custom:tenant_id");
    let mut bad_tenant = claims(OWN, Role::Viewer);
    bad_tenant["custom:tenant_id"] = json!("a:b*");
    for credential in [issuer.sign(&no_tenant), issuer.sign(&bad_tenant)] {
        let (status, _, body) = call(&t, &ENDPOINTS[0], Some(&credential)).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"]["code"], "no_tenant", "{body}");
    }
    // A token with groups that are no role is authenticated but allowed nothing.
    let mut no_role = claims(OWN, Role::Viewer);
    no_role["cognito:groups"] = json!(["admins", "everyone"]);
    let (status, _, body) = call(&t, &ENDPOINTS[0], Some(&issuer.sign(&no_role))).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("no role"),
        "{body}"
    );
    t.shutdown(Duration::from_secs(10)).await;
}

#[actix_rt::test]
async fn the_admin_listener_needs_the_platform_admin_token() {
    let t = TestNode::start(test_config(None)).await;
    let client = reqwest::Client::new();
    for path in [
        "/admin/actors",
        "/admin/leases",
        "/admin/shards",
        "/metrics",
        "/admin/actors/vehicle_state/x",
    ] {
        let url = format!("{}{path}", t.admin);
        for (why, credential) in [
            ("no token", None),
            ("a tenant admin's JWT", Some(token(OWN, Role::TenantAdmin))),
            ("a wrong token", Some(format!("{ADMIN_TOKEN}x"))),
        ] {
            let mut request = client.get(&url);
            if let Some(c) = &credential {
                request = request.bearer_auth(c);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{path} with {why}");
            assert!(response.headers().contains_key("www-authenticate"), "{path}");
            let body: Value = response.json().await.unwrap();
            assert!(body["error"]["code"].is_string(), "{path}: {body}");
        }
        let status = client
            .get(&url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .status();
        assert!(
            status == 200 || status == 404,
            "{path} with the admin token: {status}"
        );
    }
    // Load balancer probes stay open.
    for path in ["/healthz", "/readyz"] {
        let status = client
            .get(format!("{}{path}", t.admin))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status == 200 || status == 503, "{path}: {status}");
    }
    t.shutdown(Duration::from_secs(10)).await;
}

#[actix_rt::test]
async fn a_node_without_an_admin_token_locks_the_admin_endpoints() {
    let mut config = test_config(None);
    config.admin.token = None;
    let t = TestNode::start(config).await;
    let response = reqwest::Client::new()
        .get(format!("{}/admin/actors", t.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("admin.token"),
        "{body}"
    );
    t.shutdown(Duration::from_secs(10)).await;
}

#[actix_rt::test]
async fn a_node_without_keys_does_not_start() {
    let mut config = test_config(None);
    config.auth.jwks_file = None;
    let error = match fleetwire::node::Node::start(config).await {
        Ok(_) => panic!("a node without a JWKS must not start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("auth.jwks_file or auth.jwks_url"), "{error}");
}

/// Opens `/v1/stream` with `query` and a bearer `token` (or none).
async fn open_stream(t: &TestNode, query: &str, bearer: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(format!("{}/v1/stream{query}", t.api));
    if let Some(b) = bearer {
        request = request.bearer_auth(b);
    }
    request.send().await.unwrap()
}

/// Reads SSE frames until an event of `kind` arrives or `limit` passes.
async fn next_event_of(response: &mut reqwest::Response, kind: &str, limit: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut text = String::new();
    loop {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .ok()?
            .ok()??;
        text.push_str(&String::from_utf8_lossy(&chunk));
        if let Some(pos) = text.find(&format!("event: {kind}\n")) {
            return Some(text[pos..].to_owned());
        }
    }
}

#[actix_rt::test]
async fn another_tenant_sees_nothing_live_and_tickets_are_bound_to_their_tenant() {
    let t = TestNode::start(test_config(None)).await;
    let mut own = open_stream(&t, "", Some(&token(OWN, Role::Viewer))).await;
    assert_eq!(own.status(), 200);

    // The other tenant's stream, opened with a ticket as a browser would.
    let ticket: Value = reqwest::Client::new()
        .post(format!("{}/v1/stream-tickets", t.api))
        .bearer_auth(token(OTHER, Role::Viewer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ticket = ticket["ticket"].as_str().unwrap().to_owned();
    let mut other = open_stream(&t, &format!("?ticket={ticket}"), None).await;
    assert_eq!(other.status(), 200);

    let (status, _) = t.ingest(&json!([record("car-live", 1, 42.0)])).await;
    assert_eq!(status, 200);
    let seen = next_event_of(&mut own, "vehicle", Duration::from_secs(15)).await;
    assert!(
        seen.is_some_and(|e| e.contains("car-live")),
        "the own tenant sees its update"
    );
    assert_eq!(
        next_event_of(&mut other, "vehicle", Duration::from_secs(2)).await,
        None,
        "another tenant sees nothing of it"
    );

    // A ticket whose claims were edited to name the own tenant is refused.
    let (claims_b64, tag) = ticket.split_once('.').unwrap();
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims_b64).unwrap()).unwrap();
    claims["t"] = json!(OWN);
    let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let response = open_stream(&t, &format!("?ticket={forged}"), None).await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("ticket"),
        "{body}"
    );

    // A ticket is for the stream only: it is no bearer token.
    let response = reqwest::Client::new()
        .get(format!("{}/v1/vehicles", t.api))
        .bearer_auth(&ticket)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    t.shutdown(Duration::from_secs(10)).await;
}
