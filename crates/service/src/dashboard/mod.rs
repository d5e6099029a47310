//! The web dashboard: live outcomes per connection, recent legs, the review queue, shadow agreement per rule, and
//! each leg's ledger as a timeline.
//!
//! Everything it needs is in the binary: the static assets (`assets/`, plain HTML, CSS and JavaScript, no framework
//! and no build step) are embedded with `include_str!` and served under `/dashboard/assets/`. The pages that must work
//! without JavaScript — a leg's ledger, the review queue with its forms, the login — are rendered here from the store
//! ([`pages`]); the overview page is a static shell that the script fills from the admin API and keeps current with
//! server-sent events ([`events`]).
//!
//! A browser cannot send `Authorization: Bearer` from a plain form or an `EventSource`, so [`session`] adds a login
//! that keeps the token in an `HttpOnly; SameSite=Strict` cookie, which [`crate::admin::authorize`] accepts like the
//! bearer token, and refuses actions sent from another site. Every page and asset carries a strict
//! Content-Security-Policy: scripts only from this origin, no inline script or style.

pub mod events;
pub(crate) mod pages;
pub mod session;

#[cfg(test)]
mod tests;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The policy every dashboard answer carries: nothing but this origin's own files, no inline script or style, no
/// framing, forms only to this origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// How long a browser may keep an asset without asking again. Asset links carry the build's version, so a new
/// build's assets are new URLs.
const ASSET_MAX_AGE_SECS: u32 = 3600;

/// The embedded assets: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    ("dashboard.css", "text/css; charset=utf-8", include_str!("assets/dashboard.css")),
    ("dashboard.js", "text/javascript; charset=utf-8", include_str!("assets/dashboard.js")),
    ("icon.svg", "image/svg+xml", include_str!("assets/icon.svg")),
];

/// The build's version, for the assets' URLs.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One of the dashboard's embedded files (stylesheet, script, icon), public: they hold no data.
#[utoipa::path(get, path = "/dashboard/assets/{name}", tag = "dashboard",
    params(("name" = String, Path, description = "`dashboard.css`, `dashboard.js` or `icon.svg`")), responses(
    (status = 200, description = "The file, with its content type and `Cache-Control: public, max-age=3600`", body = String),
    (status = 404, description = "`not_found`", body = crate::admin::ErrorBody),
))]
pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    let Some((_, content_type, body)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return crate::intake::error(StatusCode::NOT_FOUND, "not_found", "no such asset");
    };
    let mut response = (*body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={ASSET_MAX_AGE_SECS}")) {
        headers.insert(header::CACHE_CONTROL, v);
    }
    secure(response)
}

/// The headers every dashboard answer carries.
pub(crate) fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// An HTML page with the dashboard's headers; pages show live data, so none is cached.
pub(crate) fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure(response)
}

/// `text`, safe to put in HTML text and in quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One path segment, percent-encoded (ids are validated, but a link is built from whatever the store holds).
pub(crate) fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
