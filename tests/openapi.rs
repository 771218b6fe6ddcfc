//! The OpenAPI document at `GET /openapi.json`, black-box: served without a credential,
//! lists exactly the routes `src/http/mod.rs` mounts (a route added without documentation
//! fails here), every reference resolves, and real answers of a node fed a drive-and-charge
//! track conform to the documented schemas (so a type whose schema is kept by hand, such as
//! the fleet types' twins in `actors/src/openapi.rs`, cannot drift from its JSON).

mod common;

use std::collections::BTreeSet;

use chrono::Utc;
use common::{TestNode, eventually, test_config};
use fleetwire_actors::fleet::track;
use fleetwire_actors::model::{Location, VehicleId};
use serde_json::{Value, json};

/// The source that mounts the public routes.
const ROUTES_SOURCE: &str = include_str!("../src/http/mod.rs");
/// Public routes mounted by their own modules (`api_routes` / `routes` there).
const MODULE_ROUTES: [&str; 2] = [
    include_str!("../src/http/dead_letters.rs"),
    include_str!("../src/http/vin.rs"),
];

/// `(METHOD, path)` of every route in `api_routes` (`web::resource("<path>")` followed by
/// its `.route(web::<method>()…)`s), paths in OpenAPI syntax (`{id}` is the same in both).
fn mounted_routes() -> BTreeSet<(String, String)> {
    let start = ROUTES_SOURCE
        .find("pub fn api_routes")
        .expect("api_routes in src/http/mod.rs");
    let end = ROUTES_SOURCE[start..]
        .find("pub fn admin_routes")
        .map_or(ROUTES_SOURCE.len(), |e| start + e);
    let body = &ROUTES_SOURCE[start..end];
    assert!(
        !body.contains(".route(\""),
        "api_routes mounts routes outside resources"
    );
    let mut routes = BTreeSet::new();
    for resource in body.split("web::resource(\"").skip(1) {
        let path = &resource[..resource.find('"').unwrap()];
        for method in resource.split(".route(web::").skip(1) {
            let method = &method[..method.find('(').unwrap()];
            routes.insert((method.to_uppercase(), path.to_owned()));
        }
    }
    assert!(
        routes.len() >= 20,
        "parsed too few routes from src/http/mod.rs: {routes:?}"
    );
    for source in MODULE_ROUTES {
        let start = source
            .find("pub fn api_routes")
            .or_else(|| source.find("pub fn routes"))
            .expect("a public routes function");
        let body = &source[start..];
        let body = &body[..body.find("\n}\n").unwrap_or(body.len())];
        assert!(!body.contains(".route(\""), "routes outside resources");
        for resource in body.split("web::resource(\"").skip(1) {
            let path = &resource[..resource.find('"').unwrap()];
            for method in resource.split(".route(web::").skip(1) {
                let method = &method[..method.find('(').unwrap()];
                routes.insert((method.to_uppercase(), path.to_owned()));
            }
        }
    }
    routes
}

fn documented_routes(doc: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "delete", "patch"] {
            if item.get(method).is_some() {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

async fn fetch_document(node: &TestNode) -> Value {
    // No credential: the document is public.
    let response = reqwest::get(format!("{}/openapi.json", node.api)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).expect("the document is JSON")
}

#[actix_rt::test]
async fn the_document_is_public_and_lists_exactly_the_mounted_routes() {
    let node = TestNode::start(test_config(None)).await;
    let doc = fetch_document(&node).await;
    assert_eq!(doc["openapi"], "3.1.0");

    let mounted = mounted_routes();
    let documented = documented_routes(&doc);
    let undocumented: Vec<_> = mounted.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&mounted).collect();
    assert!(
        undocumented.is_empty(),
        "routes without documentation: {undocumented:?}"
    );
    assert!(
        stale.is_empty(),
        "documented routes that are not mounted: {stale:?}"
    );

    // Every reference resolves.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in &refs {
        assert!(resolve(&doc, r).is_some(), "dangling $ref {r}");
    }

    let mut operation_ids = BTreeSet::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            let id = op["operationId"].as_str().expect("every operation has an id");
            assert!(operation_ids.insert(id), "operationId {id} is not unique");
        }
    }

    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let security = op["security"]
                .as_array()
                .expect("every operation states its security");
            let open = security
                .iter()
                .all(|s| s.as_object().is_some_and(|o| o.is_empty()));
            let statuses: BTreeSet<&str> = op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.as_str())
                .collect();
            if open {
                assert!(
                    ["/", "/page/{file}", "/openapi.json"].contains(&path.as_str()),
                    "{method} {path} is documented as open"
                );
                continue;
            }
            for requirement in security {
                for name in requirement.as_object().unwrap().keys() {
                    assert!(
                        schemes.contains_key(name),
                        "{method} {path}: unknown scheme {name}"
                    );
                }
            }
            // Every authenticated operation documents its refusal; the error answers carry
            // the common error body.
            assert!(statuses.contains("401"), "{method} {path} documents no 401");
            for (status, response) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') {
                    let response = resolve_value(&doc, response);
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    // The SSE event types are described and their data schemas are components.
    let stream = &doc["paths"]["/v1/stream"]["get"];
    let description = stream["responses"]["200"]["description"].as_str().unwrap();
    for event in ["event: vehicle", "event: fleet_event", "event: reset"] {
        assert!(description.contains(event), "the stream documents {event}");
    }
    // Another method on a known path is a 405 naming the allowed ones, not a 404.
    let r = node
        .client
        .delete(format!("{}/v1/geofences", node.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(
        r.headers()["allow"].to_str().unwrap().replace(' ', ""),
        "GET,POST"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    // Request enums refuse unknown fields, like serde does.
    for name in ["Shape", "AlertCondition"] {
        for variant in doc["components"]["schemas"][name]["oneOf"].as_array().unwrap() {
            assert_eq!(variant["additionalProperties"], false, "{name}: {variant}");
        }
    }
    for schema in ["VehicleUpdate", "FleetEvent", "StreamReset", "ErrorBody"] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "component {schema}"
        );
    }
    node.shutdown(common::WAIT).await;
}

#[actix_rt::test]
async fn real_answers_conform_to_the_documented_schemas() {
    let node = TestNode::start(test_config(None)).await;
    let doc = fetch_document(&node).await;
    let api = &node.api;

    // One vehicle driven through a trip, geofences, an alert and a charging session.
    let origin = Location {
        latitude: 52.52,
        longitude: 13.405,
    };
    let fence = json!({"id": "depot", "name": "Depot",
        "shape": {"type": "circle", "center": {"latitude": 52.52, "longitude": 13.405}, "radius_m": 1000}});
    let rule = json!({"id": "low-soc", "condition": {"type": "low_soc", "below_percent": 20}});
    let polygon = json!({"id": "yard", "name": "Yard", "shape": {"type": "polygon", "points": [
        {"latitude": 52.0, "longitude": 13.0}, {"latitude": 52.0, "longitude": 13.1},
        {"latitude": 52.1, "longitude": 13.1}]}});
    let geofence_rule =
        json!({"id": "left-depot", "condition": {"type": "geofence", "geofence_id": "depot", "on": "exit"}});
    for (path, body) in [
        ("/v1/geofences", &fence),
        ("/v1/geofences", &polygon),
        ("/v1/alert-rules", &rule),
        ("/v1/alert-rules", &geofence_rule),
    ] {
        let r = node
            .client
            .post(format!("{api}{path}"))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        check(&doc, "post", path, status, &r.json().await.unwrap());
    }
    let vehicle = VehicleId("openapi-car".into());
    let start = Utc::now() - chrono::Duration::minutes(40);
    let records: Vec<Value> = track::drive_and_charge(&vehicle, origin, start)
        .into_iter()
        .map(|r| json!({"timestamp": r.timestamp, "vehicle_id": r.vehicle_id, "payload": r.payload}))
        .collect();
    for batch in records.chunks(100) {
        let (status, reply) = node.ingest(&json!(batch)).await;
        check(&doc, "post", "/v1/ingest", status, &reply);
        assert_eq!(status, 200, "{reply}");
    }
    let events_url = format!("{api}/v1/vehicles/openapi-car/events");
    eventually("the track's charging session ends", || async {
        let (_, body) = node.get(&events_url).await;
        body["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["type"] == "charging_ended"))
    })
    .await;

    let mut kinds = BTreeSet::new();
    for path in [
        "/v1/vehicles",
        "/v1/vehicles/{id}",
        "/v1/vehicles/{id}/trips",
        "/v1/vehicles/{id}/charging-sessions",
        "/v1/vehicles/{id}/events",
        "/v1/vehicles/{id}/nope-not-a-route",
        "/v1/geofences",
        "/v1/geofences/{id}",
        "/v1/alert-rules",
        "/v1/api-keys",
    ] {
        let url = path.replace(
            "{id}",
            if path.starts_with("/v1/geofences") {
                "depot"
            } else {
                "openapi-car"
            },
        );
        let (status, body) = node.get(&format!("{api}{url}")).await;
        if path.ends_with("nope-not-a-route") {
            assert_eq!(status, 404);
            continue;
        }
        assert_eq!(status, 200, "{path}: {body}");
        check(&doc, "get", path, status, &body);
        if let Some(events) = body["events"].as_array() {
            kinds.extend(events.iter().map(|e| e["type"].as_str().unwrap().to_owned()));
        }
        if path.ends_with("/trips") {
            assert!(
                !body["trips"].as_array().unwrap().is_empty(),
                "a finished trip to check"
            );
        }
        if path.ends_with("/charging-sessions") {
            assert!(
                !body["charging_sessions"].as_array().unwrap().is_empty(),
                "a finished session to check"
            );
        }
    }
    for kind in [
        "trip_started",
        "trip_ended",
        "charging_started",
        "charging_ended",
        "geofence_exit",
        "alert_raised",
    ] {
        assert!(
            kinds.contains(kind),
            "the track produced a {kind} event to check: {kinds:?}"
        );
    }

    // Keys, tickets, refusals.
    let r = node
        .client
        .post(format!("{api}/v1/api-keys"))
        .json(&json!({"name": "gateway"}))
        .send()
        .await
        .unwrap();
    check(
        &doc,
        "post",
        "/v1/api-keys",
        r.status().as_u16(),
        &r.json().await.unwrap(),
    );
    let r = node
        .client
        .post(format!("{api}/v1/stream-tickets"))
        .send()
        .await
        .unwrap();
    check(
        &doc,
        "post",
        "/v1/stream-tickets",
        r.status().as_u16(),
        &r.json().await.unwrap(),
    );
    let r = reqwest::get(format!("{api}/v1/vehicles?limit=0")).await.unwrap();
    check(
        &doc,
        "get",
        "/v1/vehicles",
        r.status().as_u16(),
        &r.json().await.unwrap(),
    );
    let (status, body) = node.get(&format!("{api}/v1/vehicles?limit=0")).await;
    check(&doc, "get", "/v1/vehicles", status, &body);
    node.shutdown(common::WAIT).await;
}

/// Asserts that `body`, answered with `status` by `method path`, conforms to the documented
/// response (strictly: an object may carry no property its schema does not name).
fn check(doc: &Value, method: &str, path: &str, status: u16, body: &Value) {
    let op = &doc["paths"][path][method];
    let response = op["responses"]
        .get(status.to_string())
        .unwrap_or_else(|| panic!("{method} {path} answered {status}, which is not documented: {body}"));
    let response = resolve_value(doc, response);
    let schema = &response["content"]["application/json"]["schema"];
    let mut errors = Vec::new();
    validate(doc, schema, body, "$", true, &mut errors);
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: {errors:#?}\n{body:#}"
    );
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

fn resolve_value<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(r) => resolve(doc, r).unwrap_or_else(|| panic!("dangling {r}")),
        None => value,
    }
}

/// Property names `schema` allows, through references and compositions (an `allOf` of a
/// struct and a tagged enum, as serde's `flatten` produces, allows both).
fn known_properties(doc: &Value, schema: &Value, out: &mut BTreeSet<String>) {
    let schema = resolve_value(doc, schema);
    if let Some(props) = schema["properties"].as_object() {
        out.extend(props.keys().cloned());
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        for sub in schema[key].as_array().into_iter().flatten() {
            known_properties(doc, sub, out);
        }
    }
}

/// A small JSON Schema check of the keywords utoipa emits: `$ref`, `type` (one or a
/// list), `properties`, `required`, `additionalProperties`, `items`, `enum`, `allOf`,
/// `oneOf`, `anyOf`. With `closed`, an object may have no property its schema does not
/// name (the parts of an `allOf` are checked open, then the whole closed).
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str, closed: bool, errors: &mut Vec<String>) {
    let schema = resolve_value(doc, schema);
    if let Some(all) = schema["allOf"].as_array() {
        for sub in all {
            validate(doc, sub, value, at, false, errors);
        }
        if closed && let Value::Object(map) = value {
            let mut allowed = BTreeSet::new();
            known_properties(doc, schema, &mut allowed);
            for k in map.keys().filter(|k| !allowed.contains(*k)) {
                errors.push(format!("{at}: property {k} is not documented"));
            }
        }
        return;
    }
    for (key, exactly_one) in [("oneOf", true), ("anyOf", false)] {
        if let Some(options) = schema[key].as_array() {
            let matching = options
                .iter()
                .filter(|s| {
                    let mut e = Vec::new();
                    validate(doc, s, value, at, closed, &mut e);
                    e.is_empty()
                })
                .count();
            if matching == 0 || (exactly_one && matching > 1) {
                errors.push(format!("{at}: {value} matches {matching} of the {key} options"));
            }
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        if !types
            .iter()
            .any(|t| *t == actual || (*t == "number" && actual == "integer"))
        {
            errors.push(format!("{at}: {value} is a {actual}, not {types:?}"));
            return;
        }
    }
    match value {
        Value::Object(map) => {
            for name in schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(name) {
                    errors.push(format!("{at}: missing required {name}"));
                }
            }
            let props = schema["properties"].as_object();
            for (k, v) in map {
                match (props.and_then(|p| p.get(k)), schema.get("additionalProperties")) {
                    (Some(s), _) => validate(doc, s, v, &format!("{at}.{k}"), true, errors),
                    (None, Some(Value::Bool(false))) => {
                        errors.push(format!("{at}: property {k} is not allowed"));
                    }
                    (None, None) if closed => errors.push(format!("{at}: property {k} is not documented")),
                    (None, None) | (None, Some(Value::Bool(true))) => {}
                    (None, Some(s)) => validate(doc, s, v, &format!("{at}.{k}"), true, errors),
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(doc, s, item, &format!("{at}[{i}]"), true, errors);
                }
            }
        }
        _ => {}
    }
}
