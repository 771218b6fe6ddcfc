//! The live fleet page, compiled into the binary so `demo` needs no files and no network
//! at run time: `GET /` is the HTML, `GET /page/{file}` its stylesheet and ES modules
//! (`src/http/page/`, plain files, no build step).

use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, web};

use super::ApiError;

const INDEX_HTML: &str = include_str!("page/index.html");

/// The page's assets: name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("page/style.css"),
    ),
    ("api.js", JS, include_str!("page/api.js")),
    ("model.js", JS, include_str!("page/model.js")),
    ("map.js", JS, include_str!("page/map.js")),
    ("detail.js", JS, include_str!("page/detail.js")),
    ("feed.js", JS, include_str!("page/feed.js")),
    ("app.js", JS, include_str!("page/app.js")),
];

/// Browsers load `<script type="module">` only with a JavaScript content type.
const JS: &str = "text/javascript; charset=utf-8";

/// `GET /`
pub async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::html())
        .insert_header(("Cache-Control", "no-cache"))
        .body(INDEX_HTML)
}

/// `GET /page/{file}`: one of [`ASSETS`], else 404.
pub async fn asset(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == file.as_str())
        .ok_or_else(|| ApiError::NotFound(format!("no page asset {file}")))?;
    // no-cache: revalidated on every load, so a new binary's page is never mixed with an
    // old binary's modules.
    Ok(HttpResponse::Ok()
        .insert_header(("Content-Type", *content_type))
        .insert_header(("Cache-Control", "no-cache"))
        .body(*body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file the page references is served, and every served file is referenced by
    /// the page or imported by a module (no dead or missing assets).
    #[test]
    fn assets_and_references_match() {
        let all: String = std::iter::once(INDEX_HTML)
            .chain(ASSETS.iter().map(|(_, _, body)| *body))
            .collect();
        for (name, _, _) in ASSETS {
            let referenced = all.contains(&format!("/page/{name}")) || all.contains(&format!("./{name}"));
            assert!(referenced, "{name} is served but never referenced");
        }
        let mut rest = all.as_str();
        while let Some(at) = rest.find("/page/") {
            let tail = &rest[at + 6..];
            let end = tail.find(['"', '\'', ')', ' ']).unwrap_or(tail.len());
            let name = &tail[..end];
            assert!(
                ASSETS.iter().any(|(n, _, _)| *n == name),
                "the page references /page/{name}, which is not served"
            );
            rest = &tail[end..];
        }
    }
}
