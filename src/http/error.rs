//! JSON errors for both listeners.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::json;

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
    /// No such resource.
    #[error("{0}")]
    NotFound(String),
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
    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::NotFound(_) => "not_found",
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
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable { .. } | ApiError::AtCapacity { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code())
            .json(json!({"error": {"code": self.code(), "message": self.to_string()}}));
        if let ApiError::Unavailable { retry_after_secs, .. }
        | ApiError::TooManyRequests { retry_after_secs, .. }
        | ApiError::AtCapacity { retry_after_secs, .. } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        response
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
