//! Middleware of the public listener: CORS from `http.cors_allowed_origins` and security
//! headers on every answer.

use actix_cors::Cors;
use actix_web::dev::RequestHead;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::DefaultHeaders;

/// The page is static files of its own origin (ES modules and a stylesheet; no inline
/// script or style, no third-party content); everything else answers JSON or SSE.
/// Nothing may frame it, and it talks only to its own origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Security headers added to every answer that does not set them itself.
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::CONTENT_SECURITY_POLICY, CSP))
        // Effective only over HTTPS (the ALB terminates TLS); browsers ignore it on http.
        .add((
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        ))
        // API answers are per caller: no shared cache may keep them.
        .add((header::CACHE_CONTROL, "no-store"))
}

/// CORS: the page's own origin always (same host), plus the configured origins; other
/// origins get no CORS headers, so browsers refuse to hand them the answers.
pub fn cors(allowed: &[String]) -> Cors {
    let allowed: Vec<String> = allowed
        .iter()
        .map(|o| o.trim_end_matches('/').to_owned())
        .collect();
    Cors::default()
        .allowed_origin_fn(move |origin: &HeaderValue, req: &RequestHead| {
            let Ok(origin) = origin.to_str() else { return false };
            allowed.iter().any(|a| a == origin) || same_origin(origin, req)
        })
        .allowed_methods(["GET", "POST", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("x-api-key"),
            header::HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([header::RETRY_AFTER, header::WWW_AUTHENTICATE])
        .max_age(600)
}

/// Whether `origin` (`scheme://host[:port]`) names the host the request was sent to.
fn same_origin(origin: &str, req: &RequestHead) -> bool {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    matches!((host, origin_host), (Some(h), Some(o)) if h.eq_ignore_ascii_case(o))
}
