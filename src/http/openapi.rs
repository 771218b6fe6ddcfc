//! The OpenAPI 3.1 document of the public API, generated from the handlers' `#[utoipa::path]`
//! annotations and the types they answer with, served at `GET /openapi.json`.
//!
//! Every route [`api_routes`](super::api_routes) mounts is listed in [`ApiDoc`]'s `paths`
//! (tests/openapi.rs fails for a route without documentation). The shared parts live
//! here: the security schemes ([`SecuritySchemes`]) and the error answers ([`errors`]),
//! which all carry [`ErrorBody`](super::error::ErrorBody).

use std::sync::OnceLock;

use actix_web::HttpResponse;
use actix_web::http::header::ContentType;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{api_keys, dead_letters, error, fleet, history, ingest, sse, tickets, vehicles, vin};

/// Name of the user-token security scheme (`Authorization: Bearer <JWT>`).
pub const BEARER_JWT: &str = "bearer_jwt";
/// Name of the ingest API-key scheme (`X-Api-Key`).
pub const API_KEY: &str = "api_key";
/// Name of the ingest API key sent as a bearer token (`Authorization: Bearer fwk_…`).
pub const API_KEY_BEARER: &str = "api_key_bearer";
/// Name of the stream-ticket scheme (`GET /v1/stream?ticket=`).
pub const STREAM_TICKET: &str = "stream_ticket";

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "fleetwire public API",
        description = "Ingest, vehicles, fleet intelligence and the live stream of one tenant. \
            Every error answer is `{\"error\": {\"code\", \"message\"}}` (codes in docs/api.md). \
            The admin listener (`/admin/*`, `/metrics`, `/healthz`, `/readyz`) is not part of \
            this document: it is meant for a private network."
    ),
    paths(
        live_page,
        page_asset,
        openapi_json,
        ingest::ingest,
        vehicles::list,
        vehicles::get,
        fleet::trips,
        history::history,
        history::aggregates,
        fleet::charging_sessions,
        fleet::events,
        fleet::list_geofences,
        fleet::put_geofence,
        fleet::get_geofence,
        fleet::delete_geofence,
        fleet::list_alert_rules,
        fleet::put_alert_rule,
        fleet::delete_alert_rule,
        sse::stream,
        tickets::create,
        api_keys::create,
        api_keys::list,
        api_keys::revoke,
        dead_letters::tenant_list,
        dead_letters::tenant_get,
        dead_letters::tenant_replay,
        vin::resolve,
    ),
    components(
        schemas(
            error::ErrorBody,
            fleetwire_actors::model::VehicleUpdate,
            fleetwire_actors::fleet::FleetEvent,
            sse::StreamReset,
        ),
        responses(
            errors::BadRequest,
            errors::Unauthorized,
            errors::Forbidden,
            errors::NotFound,
            errors::PayloadTooLarge,
            errors::TooManyRequests,
            errors::Unavailable,
        )
    ),
    modifiers(&SecuritySchemes, &ClosedVariants),
    tags(
        (name = "ingest", description = "Telemetry in (API key)"),
        (name = "vehicles", description = "Latest state per vehicle"),
        (name = "fleet", description = "Trips, charging sessions, events, geofences, alert rules"),
        (name = "stream", description = "Live updates (Server-Sent Events)"),
        (name = "api-keys", description = "Ingest keys of the caller's tenant"),
        (name = "dead-letters", description = "Records the pipeline could not apply (tenant admin)"),
        (name = "meta", description = "The page and this document"),
    )
)]
pub struct ApiDoc;

/// Adds the security schemes the operations name.
pub struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER_JWT,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A user token of the configured issuer (Amazon Cognito or any OIDC provider; \
                         RS256/ES256). The tenant comes from `auth.tenant_claim`, the role \
                         (viewer < operator < tenant-admin) from `auth.groups_claim`.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            API_KEY,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Api-Key",
                "An ingest API key (`fwk_…`) from `POST /v1/api-keys`; ingest only.",
            ))),
        );
        components.add_security_scheme(
            API_KEY_BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("fwk_<key_id>_<secret>")
                    .description(Some(
                        "The ingest API key as a bearer token (when X-Api-Key is absent).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            STREAM_TICKET,
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "ticket",
                "A stream ticket from `POST /v1/stream-tickets` (60 s, stream only), for \
                 `EventSource`, which cannot send headers.",
            ))),
        );
    }
}

/// Closes the variants of the request enums: serde refuses unknown fields in them
/// (`deny_unknown_fields`), which the schema derive does not carry into an internally
/// tagged enum's variants.
pub struct ClosedVariants;

impl Modify for ClosedVariants {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{AdditionalProperties, Schema};
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for name in ["Shape", "AlertCondition"] {
            if let Some(RefOr::T(Schema::OneOf(one_of))) = components.schemas.get_mut(name) {
                for variant in &mut one_of.items {
                    if let RefOr::T(Schema::Object(object)) = variant {
                        object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
                    }
                }
            }
        }
    }
}

/// The document as JSON, built once.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .expect("the OpenAPI document serializes")
    })
}

// Documented here rather than on `page::index`: the page's module changes with the page.
/// The live fleet page (HTML; it asks for a token and then uses the API).
#[utoipa::path(
    get,
    path = "/",
    tag = "meta",
    security(()),
    responses((status = 200, description = "The page", content_type = "text/html", body = String))
)]
#[allow(dead_code)]
fn live_page() {}

/// A static asset of the live page (its ES modules and stylesheet).
#[utoipa::path(
    get,
    path = "/page/{file}",
    tag = "meta",
    security(()),
    params(("file" = String, Path, description = "An asset name, e.g. `app.js` or `style.css`")),
    responses(
        (status = 200, description = "The asset (JavaScript or CSS)", content_type = "text/javascript", body = String),
        (status = 404, response = errors::NotFound),
    )
)]
#[allow(dead_code)]
fn page_asset() {}

/// This document (OpenAPI 3.1). No credential needed: it describes, it reveals no data.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(document_json())
}

/// The error answers, as reusable response components. Every one has an
/// [`ErrorBody`](super::error::ErrorBody); the headers are the ones
/// [`ApiError`](super::ApiError) sets.
pub mod errors {
    use utoipa::ToResponse;
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, Response, ResponseBuilder};

    fn response(description: &str, headers: &[(&str, Type, &str)]) -> Response {
        let mut builder = ResponseBuilder::new().description(description).content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        );
        for (name, kind, what) in headers {
            builder = builder.header(
                *name,
                HeaderBuilder::new()
                    .schema(Some(
                        ObjectBuilder::new().schema_type(SchemaType::Type(kind.clone())),
                    ))
                    .description(Some(*what))
                    .build(),
            );
        }
        builder.build()
    }

    const RETRY_AFTER: (&str, Type, &str) = ("Retry-After", Type::Integer, "Seconds to wait before retrying");
    const CHALLENGE: (&str, Type, &str) = (
        "WWW-Authenticate",
        Type::String,
        "`Bearer realm=\"fleetwire\"`, with `error=\"invalid_token\"` or `error=\"insufficient_scope\"` and a description (RFC 6750)",
    );

    macro_rules! error_response {
        ($($(#[$doc:meta])* $name:ident => $description:expr, [$($header:expr),*];)*) => {$(
            $(#[$doc])*
            pub struct $name;
            impl<'r> ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<Response>) {
                    (stringify!($name), response($description, &[$($header),*]).into())
                }
            }
        )*};
    }

    error_response! {
        /// 400.
        BadRequest => "The request is malformed: `bad_query`, `bad_path`, `bad_body`, \
            `bad_vehicle_id`, `bad_filter`, `bad_last_event_id`, `malformed_batch`, `invalid`, \
            `too_many`; the message names the culprit", [];
        /// 401.
        Unauthorized => "No credential (`unauthenticated`), or one that is not valid \
            (`invalid_token`: expired, wrong issuer or audience, bad signature, unknown or revoked \
            API key, expired ticket)", [CHALLENGE];
        /// 403.
        Forbidden => "A valid credential whose role is too low for this endpoint (`forbidden`), \
            or without a usable tenant claim (`no_tenant`)", [CHALLENGE];
        /// 404.
        NotFound => "No such item in the caller's tenant (`not_found`); another tenant's item \
            is indistinguishable from a missing one", [];
        /// 413.
        PayloadTooLarge => "The body exceeds `http.max_body_bytes` (`payload_too_large`)", [];
        /// 429.
        TooManyRequests => "The caller is over one of its limits: the API key's rate \
            (`rate_limited`) or its tenant's open streams (`tenant_stream_limit`)", [RETRY_AFTER];
        /// 503.
        Unavailable => "A backend cannot serve the request now (`unavailable`), or the node \
            serves its maximum of streams (`node_stream_limit`)", [RETRY_AFTER];
    }
}
