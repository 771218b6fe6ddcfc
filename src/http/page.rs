//! The live fleet page, compiled into the binary so `demo` needs no files at run time.

use actix_web::HttpResponse;
use actix_web::http::header::ContentType;

const INDEX_HTML: &str = include_str!("page/index.html");

/// `GET /`
pub async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::html())
        .insert_header(("Cache-Control", "no-cache"))
        .body(INDEX_HTML)
}
