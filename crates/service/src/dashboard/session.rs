//! The dashboard's login: the admin token in a cookie, for what a browser cannot send a bearer token from (plain
//! forms, `EventSource`), and the same-origin check that keeps another site from using that cookie.
//!
//! The cookie holds the token itself (base64url, so any token is a valid cookie value) and is `HttpOnly` (no script
//! reads it), `SameSite=Strict` (no other site's page sends it) and `Path=/` (the admin API's routes share it).
//! It is not marked `Secure`: the service speaks plain HTTP, and TLS is a proxy's job in front of it; behind one,
//! the proxy should add `Secure` (docs/OPERATING.md). It is checked like the bearer token, in constant time.
//!
//! Actions (the operator's role) refuse requests that a browser says came from another site (`Sec-Fetch-Site`), or
//! whose `Origin` is not this host: a cross-site form post. Clients that are not browsers send neither header and
//! authenticate with a bearer token, which no other site can add to a request.

use super::{escape, html};
use crate::app::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use base64::Engine;
use serde::Deserialize;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use wrapup_core::Secret;

/// The cookie's name.
pub const COOKIE: &str = "wrapup_dashboard";
/// How long the login lasts in the browser.
const COOKIE_MAX_AGE_SECS: u32 = 12 * 3600;
/// Longest token accepted from the login form.
const MAX_TOKEN_LEN: usize = 1024;

/// The token the request's dashboard cookie carries, decoded.
fn cookie_token(headers: &HeaderMap) -> Option<Vec<u8>> {
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            if let Some((name, v)) = pair.trim().split_once('=') {
                if name == COOKIE {
                    return base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(v.trim()).ok();
                }
            }
        }
    }
    None
}

/// Whether the request's dashboard cookie carries `expected` (compared in constant time).
pub fn cookie_matches(headers: &HeaderMap, expected: &Secret) -> bool {
    cookie_token(headers).is_some_and(|t| bool::from(t.as_slice().ct_eq(expected.expose().as_bytes())))
}

/// Whether a browser could have sent this request from a page of another site. `Sec-Fetch-Site` decides when
/// present (`same-origin`, or `none` for what the user typed); otherwise `Origin` must name this host.
pub fn cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = headers.get(header::ORIGIN) else { return false };
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return true };
    let Ok(origin) = origin.to_str() else { return true };
    let authority = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
    authority != Some(host)
}

fn no_token_configured(state: &AppState) -> bool {
    state.admin_token.is_none() && state.viewer_token.is_none()
}

fn login_page(status: StatusCode, message: Option<&str>) -> Response {
    let message = message.map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m))).unwrap_or_default();
    let body = format!(
        r#"<form method="post" action="/dashboard/login" class="card login">
<h1>Sign in</h1>
{message}<p>Paste the admin API's viewer or operator token. It is kept in a cookie that scripts cannot read.</p>
<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required maxlength="{MAX_TOKEN_LEN}">
<button type="submit">Sign in</button>
</form>"#
    );
    html(status, super::pages::layout("Sign in", "", false, &body))
}

/// The login form (with no token configured, there is nothing to sign in to: to the overview).
#[utoipa::path(get, path = "/dashboard/login", tag = "dashboard", responses(
    (status = 200, description = "The login form", body = String, content_type = "text/html"),
    (status = 303, description = "To `/dashboard`, when no token is configured"),
))]
pub(crate) async fn login_form(State(state): State<Arc<AppState>>) -> Response {
    if no_token_configured(&state) {
        return see_other("/dashboard");
    }
    login_page(StatusCode::OK, None)
}

/// The login form's one field.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct LoginForm {
    /// The viewer's or the operator's admin token.
    token: String,
}

/// Signs in: a known token is set as the `HttpOnly; SameSite=Strict` cookie. A token this server does not accept
/// gets the form again (401, `text/html`), a post from another site is refused (403, `text/html`).
#[utoipa::path(post, path = "/dashboard/login", tag = "dashboard",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"), responses(
    (status = 303, description = "Signed in: to `/dashboard`, with `Set-Cookie`"),
))]
pub(crate) async fn login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if cross_site(&headers) {
        return login_page(StatusCode::FORBIDDEN, Some("Sign in from the dashboard's own page."));
    }
    if no_token_configured(&state) {
        return see_other("/dashboard");
    }
    let token = form.token.trim();
    let known =
        |t: &Option<Secret>| t.as_ref().is_some_and(|t| bool::from(token.as_bytes().ct_eq(t.expose().as_bytes())));
    if token.is_empty() || token.len() > MAX_TOKEN_LEN || !(known(&state.admin_token) || known(&state.viewer_token)) {
        return login_page(StatusCode::UNAUTHORIZED, Some("That token is not one this server accepts."));
    }
    let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.as_bytes());
    let cookie = format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={COOKIE_MAX_AGE_SECS}");
    with_cookie(see_other("/dashboard"), &cookie)
}

/// Signs out: the cookie is cleared. A post from another site is refused (403, `text/html`).
#[utoipa::path(post, path = "/dashboard/logout", tag = "dashboard", responses(
    (status = 303, description = "To `/dashboard/login`, with the cookie cleared"),
))]
pub(crate) async fn logout(headers: HeaderMap) -> Response {
    if cross_site(&headers) {
        return login_page(StatusCode::FORBIDDEN, Some("Sign out from the dashboard's own page."));
    }
    with_cookie(see_other("/dashboard/login"), &format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"))
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// A `303 See Other` to `to`, with the dashboard's headers.
pub(crate) fn see_other(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    super::secure(response)
}
