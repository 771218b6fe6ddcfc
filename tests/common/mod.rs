//! Helpers for black-box tests: a real node on 127.0.0.1:0, an HTTP client, an SSE reader.
#![allow(dead_code)] // each test binary uses a different subset

pub mod auth;
pub mod cloud;
pub mod consumer;
pub mod private_redis;
pub mod redis_keys;
pub mod tesla;

use std::path::PathBuf;
use std::time::Duration;

use eventsource_stream::Eventsource;
use fleetwire::config::Config;
use fleetwire::node::Node;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Longest any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(15);

/// A config for tests: loopback, random ports, fast consumer timings, tokens of the
/// test issuer (`auth`) accepted.
pub fn test_config(data_dir: Option<PathBuf>) -> Config {
    fleetwire::install_crypto_provider();
    let mut config = Config::default();
    auth::configure(&mut config);
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.http.workers = 2;
    config.embedded.data_dir = data_dir;
    config.consumer.idle_poll_ms = 20;
    config.consumer.checkpoint_interval_ms = 100;
    config.consumer.failover_time_ms = 1000;
    config.vehicles.arbiters = 2;
    // A closed client is noticed at the next write; keep-alives make that prompt.
    config.subscribers.keep_alive_ms = 200;
    // Open history buckets hold the shard checkpoint back until they are written; closing
    // them after a second of silence (not a minute) keeps checkpoints, drains and
    // resharding as prompt as the tests expect.
    config.history.idle_close_secs = 1;
    // Vehicles the tests invent belong to the default tenant (the tenant the API serves
    // until authentication picks one), as they did before the registry existed.
    config.tenancy =
        fleetwire_actors::tenancy::TenancyConfig::provisioning_to(fleetwire_actors::model::TenantId::DEFAULT);
    config
}

/// A running node and a client for it. The client acts as a tenant admin of the default
/// tenant (the tenant every record belongs to until vehicles are registered), and on the
/// admin listener as the platform admin.
pub struct TestNode {
    pub node: Node,
    pub api: String,
    pub admin: String,
    pub client: reqwest::Client,
}

/// A client that sends `Authorization: Bearer <token>` (and `X-Api-Key`, when given) with
/// every request (a request may still set its own).
pub fn client_with_token(token: &str, api_key: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    if let Some(key) = api_key {
        let mut value = reqwest::header::HeaderValue::from_str(key).unwrap();
        value.set_sensitive(true);
        headers.insert("x-api-key", value);
    }
    reqwest::Client::builder()
        .timeout(WAIT)
        .default_headers(headers)
        .build()
        .unwrap()
}

impl TestNode {
    pub async fn start(config: Config) -> Self {
        if std::env::var_os("RUST_LOG").is_some() {
            fleetwire::observability::init_logging(&config.log);
        }
        let node = Node::start(config).await.expect("node starts");
        let api = format!("http://{}", node.api_addr());
        let admin = format!("http://{}", node.admin_addr());
        // None when the test brings its own identity provider (the default token is then
        // unknown); such tests create their keys themselves.
        let key = try_create_api_key(&api, &auth::default_admin_token(), "tests").await;
        let client = client_with_token(&auth::default_admin_token(), key.as_deref());
        Self {
            node,
            api,
            admin,
            client,
        }
    }

    /// Closes the client's pooled connections (an idle keep-alive connection would hold
    /// up the server's graceful stop until it times out), then shuts the node down.
    pub async fn shutdown(self, limit: Duration) -> fleetwire::node::ShutdownReport {
        drop(self.client);
        self.node.shutdown(limit).await
    }

    /// The dead letters of `tenants` of today and yesterday (UTC), read from the node's
    /// store, newest first per tenant and day.
    pub async fn dead_letters(&self, tenants: &[&str]) -> Vec<fleetwire_actors::producer::StoredDeadLetter> {
        dead_letters_of(&*self.node.dead_letters(), tenants).await
    }

    /// POSTs a JSON body to the ingest endpoint.
    pub async fn ingest(&self, body: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}/v1/ingest", self.api))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// POSTs raw bytes to the ingest endpoint.
    pub async fn ingest_raw(&self, body: Vec<u8>) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}/v1/ingest", self.api))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A GET of `url` with the credential its listener wants (admin token on the admin
    /// listener, the client's token elsewhere).
    pub fn get_request(&self, url: &str) -> reqwest::RequestBuilder {
        let request = self.client.get(url);
        if url.starts_with(&self.admin) {
            request.bearer_auth(auth::ADMIN_TOKEN)
        } else {
            request
        }
    }

    /// GETs a URL and parses JSON (Null when the body is not JSON).
    pub async fn get(&self, url: &str) -> (u16, Value) {
        let r = self.get_request(url).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// GETs a URL as text.
    pub async fn get_text(&self, url: &str) -> (u16, String) {
        let r = self.get_request(url).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    /// Actor count of one kind from /admin/actors.
    pub async fn actor_count(&self, kind: &str) -> u64 {
        let (_, body) = self.get(&format!("{}/admin/actors", self.admin)).await;
        body["counts"][kind].as_u64().unwrap_or(0)
    }

    /// Waits until the node lists `n` subscribers (`what` names the moment for the failure).
    pub async fn wait_for_subscribers(&self, n: u64, what: &str) {
        eventually(what, || async { self.actor_count("subscriber").await == n }).await;
    }

    /// Opens an SSE stream; events arrive on the returned channel.
    pub async fn subscribe(&self, query: &str) -> mpsc::Receiver<SseEvent> {
        self.subscribe_after(query, None).await
    }

    /// Opens an SSE stream resuming after `last_event_id` (sent as the `Last-Event-ID`
    /// header, like a reconnecting browser); events arrive on the returned channel.
    pub async fn subscribe_after(
        &self,
        query: &str,
        last_event_id: Option<&str>,
    ) -> mpsc::Receiver<SseEvent> {
        self.subscribe_with(&reqwest::Client::new(), query, last_event_id)
            .await
    }

    /// Like [`subscribe_after`](Self::subscribe_after), over `client` (e.g. one that speaks
    /// HTTP/2 and carries several streams on one connection).
    pub async fn subscribe_with(
        &self,
        client: &reqwest::Client,
        query: &str,
        last_event_id: Option<&str>,
    ) -> mpsc::Receiver<SseEvent> {
        let url = format!("{}/v1/stream{query}", self.api);
        let mut request = client.get(url).bearer_auth(auth::default_admin_token());
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "SSE endpoint answers 200");
        let (tx, rx) = mpsc::channel(10_000);
        let mut events = response.bytes_stream().eventsource();
        // The connection closes (and the server's subscriber with it) as soon as the test
        // drops the receiver, even when no event is due.
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    ev = events.next() => ev,
                    _ = tx.closed() => break,
                };
                let Some(Ok(ev)) = ev else { break };
                let data = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
                if tx
                    .send(SseEvent {
                        event: ev.event,
                        id: ev.id,
                        data,
                    })
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        rx
    }
}

/// Like [`create_api_key`], but `None` when the API refuses `token`.
pub async fn try_create_api_key(api: &str, token: &str, name: &str) -> Option<String> {
    let response = reqwest::Client::new()
        .post(format!("{api}/v1/api-keys"))
        .bearer_auth(token)
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap();
    if response.status() == 401 {
        return None;
    }
    assert_eq!(response.status(), 201, "API key created");
    let body: Value = response.json().await.unwrap();
    Some(body["key"].as_str().unwrap().to_owned())
}

/// Creates an ingest API key through the API as the holder of `token`; returns the key.
pub async fn create_api_key(api: &str, token: &str, name: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{api}/v1/api-keys"))
        .bearer_auth(token)
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "API key created");
    let body: Value = response.json().await.unwrap();
    body["key"].as_str().unwrap().to_owned()
}

/// One received SSE event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub id: String,
    pub data: Value,
}

/// The next SSE event; panics when none comes within [`WAIT`] or the stream ends.
pub async fn next_event(rx: &mut mpsc::Receiver<SseEvent>) -> SseEvent {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an SSE event in time")
        .expect("the SSE stream stays open")
}

/// Sorts event ids (`<ms>-<seq>`) numerically.
pub fn id_key(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').expect("event ids are <ms>-<seq>");
    (ms.parse().unwrap(), seq.parse().unwrap())
}

/// A record in the seed data contract.
pub fn record(vehicle: &str, second: u32, soc: f64) -> Value {
    json!({
        "timestamp": format!("2026-01-01T00:{:02}:{:02}Z", second / 60, second % 60),
        "vehicle_id": vehicle,
        "payload": {"Soc": soc, "VehicleSpeed": second as f64, "Location": {"latitude": 52.5, "longitude": 13.4}}
    })
}

/// Polls `check` until it returns `Some` (which is returned) or [`WAIT`] passes.
pub async fn eventually_some<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls `check` until it returns true or [`WAIT`] passes.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Every dead letter of `tenants` of today and yesterday (UTC) in `store`.
pub async fn dead_letters_of(
    store: &dyn fleetwire_actors::producer::DeadLetterSink,
    tenants: &[&str],
) -> Vec<fleetwire_actors::producer::StoredDeadLetter> {
    use fleetwire_actors::producer::DeadLetterQuery;
    let today = chrono::Utc::now().date_naive();
    let mut out = Vec::new();
    for tenant in tenants {
        for day in [today, today.pred_opt().unwrap()] {
            let mut query = DeadLetterQuery {
                tenant: fleetwire_actors::model::TenantId::parse(tenant).unwrap(),
                day,
                reason: None,
                limit: 100,
                after: None,
            };
            loop {
                let page = store.list(&query).await.expect("dead letters list");
                out.extend(page.letters);
                match page.next {
                    Some(next) => query.after = Some(next),
                    None => break,
                }
            }
        }
    }
    out
}

/// Letters counted by reason.
pub fn by_reason(
    letters: &[fleetwire_actors::producer::StoredDeadLetter],
) -> std::collections::BTreeMap<String, u64> {
    let mut counts = std::collections::BTreeMap::new();
    for l in letters {
        *counts.entry(l.reason.clone()).or_default() += 1;
    }
    counts
}
