//! `POST /oauth/token`: the client-credentials grant (Basic auth + form `grant_type=client_credentials`).
//!
//! Answers `{access_token, token_type:"bearer", expires_in}` or a 400 OAuth error body
//! (`{error, description, error_description}`) as the login host does. Tokens are opaque random strings that expire
//! after `token_lifetime_secs` of wall time; each token has its own rate-limit window.

use crate::genesys::model::Token;
use crate::rate_limit::TokenWindow;
use crate::SharedState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use bytes::Bytes;
use rand::Rng;
use serde_json::json;
use tokio::time::Instant;

pub fn routes() -> Router<SharedState> {
    Router::new().route("/oauth/token", post(token))
}

fn oauth_error(error: &str, description: &str) -> Response {
    let body = json!({"error": error, "description": description, "error_description": description});
    (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let h = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = h.strip_prefix("Basic ").or_else(|| h.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (id, secret) = s.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

async fn token(State(st): State<SharedState>, headers: HeaderMap, body: Bytes) -> Response {
    let corr = uuid::Uuid::new_v4().to_string();
    let mut resp = issue(&st, &headers, &body);
    if let Ok(v) = header::HeaderValue::from_str(&corr) {
        resp.headers_mut().insert("ININ-Correlation-Id", v);
    }
    // Token requests count as API traffic (they are part of the calls per applied code).
    let status = resp.status().as_u16();
    let mut org = st.org.lock();
    org.api.total += 1;
    *org.api.by_endpoint.entry("POST /oauth/token".to_string()).or_default().entry(status).or_default() += 1;
    resp
}

fn issue(st: &SharedState, headers: &HeaderMap, body: &Bytes) -> Response {
    let grant = url::form_urlencoded::parse(body).find(|(k, _)| k == "grant_type").map(|(_, v)| v.into_owned());
    let Some((id, secret)) = basic_credentials(headers) else {
        return oauth_error("invalid_client", "client authentication is required (HTTP Basic)");
    };
    let mut org = st.org.lock();
    let Some(client) = org.clients.iter().position(|c| c.id == id && c.secret == secret) else {
        return oauth_error("invalid_client", "client not found or bad client secret");
    };
    match grant.as_deref() {
        Some("client_credentials") => {}
        Some(other) => {
            return oauth_error(
                "unauthorized_client",
                &format!("client is not authorized to use the {other} grant type"),
            )
        }
        None => return oauth_error("invalid_request", "grant_type is required"),
    }
    let bytes: [u8; 32] = org.fault_rng.gen();
    let access_token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let now = Instant::now();
    let lifetime = org.token_lifetime;
    let window = TokenWindow::new(org.rate_limit_window, org.rate_limit_per_minute, now);
    org.tokens.insert(
        access_token.clone(),
        Token { client, expires: now + lifetime, revoked: false, window, retry_after: None },
    );
    let body = json!({"access_token": access_token, "token_type": "bearer", "expires_in": lifetime.as_secs()});
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}
