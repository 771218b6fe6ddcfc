//! JSON errors for both listeners.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde::Serialize;

/// The body of every error answer: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The `error` of an [`ErrorBody`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable name (docs/api.md lists them), e.g. `invalid_token`.
    #[schema(example = "bad_query")]
    pub code: String,
    /// For people: what is wrong and, where it helps, how to fix it.
    #[schema(example = "limit must be 1 to 1000")]
    pub message: String,
}

/// An error answer of the HTTP API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is wrong; `code` is a stable machine-readable name.
    #[error("{message}")]
    BadRequest {
        /// Stable error code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// No credential, or one that proves nothing (401 with `WWW-Authenticate`).
    #[error("{message}")]
    Unauthorized {
        /// `unauthenticated` (nothing presented) or `invalid_token`.
        code: &'static str,
        /// What is wrong with the credential.
        message: String,
    },
    /// Authenticated, but not allowed (403).
    #[error("{message}")]
    Forbidden {
        /// `forbidden` (role too low) or `no_tenant`.
        code: &'static str,
        /// Which role or claim is missing.
        message: String,
    },
    /// No such resource.
    #[error("{0}")]
    NotFound(String),
    /// The path exists, the method does not (405; the `Allow` header lists the methods).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The body is larger than allowed.
    #[error("the request body exceeds {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A backend cannot serve the request now; retry after the given seconds.
    #[error("{message}")]
    Unavailable {
        /// What is unavailable.
        message: String,
        /// Seconds for `Retry-After`.
        retry_after_secs: u64,
    },
    /// The caller is over one of its own limits (429); retry after the given seconds.
    #[error("{message}")]
    TooManyRequests {
        /// Stable error code.
        code: &'static str,
        /// Which limit, and how large it is.
        message: String,
        /// Seconds for `Retry-After`.
        retry_after_secs: u64,
    },
    /// This node is at capacity (503); another node, or this one later, may serve it.
    #[error("{message}")]
    AtCapacity {
        /// Stable error code.
        code: &'static str,
        /// Which capacity, and how large it is.
        message: String,
        /// Seconds for `Retry-After`.
        retry_after_secs: u64,
    },
}

impl ApiError {
    /// A 400 with the machine-readable `code`.
    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// A 503 for a failed call to `store` (e.g. `"history store"`); clients retry after a
    /// second, as the store usually recovers (throttling, a failover).
    pub(crate) fn store_unavailable(store: &str, e: impl std::fmt::Display) -> Self {
        ApiError::Unavailable {
            message: format!("{store}: {e}"),
            retry_after_secs: 1,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::Unauthorized { code, .. }
            | ApiError::Forbidden { code, .. } => code,
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::TooManyRequests { code, .. } | ApiError::AtCapacity { code, .. } => code,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable { .. } | ApiError::AtCapacity { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code()).json(ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
            },
        });
        if let ApiError::Unavailable { retry_after_secs, .. }
        | ApiError::TooManyRequests { retry_after_secs, .. }
        | ApiError::AtCapacity { retry_after_secs, .. } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        // RFC 6750 §3: a 401 names the scheme; a refused token says why.
        let challenge = match self {
            ApiError::Unauthorized {
                code: "unauthenticated",
                ..
            } => Some("Bearer realm=\"fleetwire\"".to_owned()),
            ApiError::Unauthorized { message, .. } => Some(format!(
                "Bearer realm=\"fleetwire\", error=\"invalid_token\", error_description=\"{}\"",
                quoted_string_safe(message)
            )),
            ApiError::Forbidden {
                code: "forbidden", ..
            } => Some("Bearer realm=\"fleetwire\", error=\"insufficient_scope\"".to_owned()),
            _ => None,
        };
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// `text` without the characters a quoted-string cannot carry as is.
fn quoted_string_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == '"' || c == '\\' || !(' '..='~').contains(&c) {
                '\''
            } else {
                c
            }
        })
        .collect()
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(e: crate::auth::AuthError) -> Self {
        use crate::auth::AuthError;
        match e {
            AuthError::Missing(message) => ApiError::Unauthorized {
                code: "unauthenticated",
                message,
            },
            AuthError::InvalidToken(message) => ApiError::Unauthorized {
                code: "invalid_token",
                message,
            },
            AuthError::NoTenant(message) => ApiError::Forbidden {
                code: "no_tenant",
                message,
            },
            AuthError::Forbidden(message) => ApiError::Forbidden {
                code: "forbidden",
                message,
            },
        }
    }
}

/// Query-string errors as JSON 400s.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        ApiError::BadRequest {
            code: "bad_query",
            message: err.to_string(),
        }
        .into()
    })
}

/// Path errors as JSON 400s.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, _req| {
        ApiError::BadRequest {
            code: "bad_path",
            message: err.to_string(),
        }
        .into()
    })
}

/// Fallback for unknown routes.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::NotFound(format!("no route for {} {}", req.method(), req.path())).error_response()
}

/// Turns actix's empty 405 (a known path, another method) into the JSON error, keeping the
/// `Allow` header the resource computed. Wrapped around the public app.
pub fn json_method_not_allowed<B>(
    res: actix_web::dev::ServiceResponse<B>,
) -> actix_web::Result<actix_web::middleware::ErrorHandlerResponse<B>> {
    let (req, res) = res.into_parts();
    let mut json = ApiError::MethodNotAllowed(format!("{} is not allowed on {}", req.method(), req.path()))
        .error_response();
    if let Some(allow) = res.headers().get(header::ALLOW) {
        json.headers_mut().insert(header::ALLOW, allow.clone());
    }
    Ok(actix_web::middleware::ErrorHandlerResponse::Response(
        actix_web::dev::ServiceResponse::new(req, json).map_into_right_body(),
    ))
}
