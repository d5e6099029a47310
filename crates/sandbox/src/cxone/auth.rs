//! CXone global authentication: `POST /auth/token` and the discovery documents.
//!
//! The password grant takes the API user's access key id/secret as `username`/`password` (URL-encoded form); the
//! registered application authenticates with HTTP Basic (`client_secret_basic`) or with `client_id`/`client_secret`
//! in the form (`client_secret_post`). Tokens are JWT-shaped (base64url header, payload, signature that does not
//! verify) carrying the claims integrations read (`tenantId`, `icBUId`, `icClusterId`, `icAgentId` in the
//! id_token), and expire after `expires_in` wall seconds. `grant_type=refresh_token` issues a new pair.

use super::model::{Bu, CxToken};
use crate::rate_limit::TokenWindow;
use crate::SharedState;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use bytes::Bytes;
use rand::Rng;
use serde_json::{json, Value};
use std::collections::HashMap;
use tokio::time::Instant;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/auth/token", post(token))
        .route("/auth/jwks", get(jwks))
        .route("/.well-known/openid-configuration", get(openid))
        .route("/.well-known/cxone-configuration", get(cxone_configuration))
}

fn json_resp(status: StatusCode, v: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_resp(status, json!({"error": error, "error_description": description}))
}

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

/// A JWT-shaped token with `claims` (the signature is random bytes: it does not verify).
fn jwt(bu: &mut Bu, claims: &Value) -> String {
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "wrapup-sandbox"});
    let sig: [u8; 32] = bu.fault_rng.gen();
    format!("{}.{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()), b64(&sig))
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let h = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let v = h.strip_prefix("Basic ").or_else(|| h.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD.decode(v.trim()).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (id, secret) = s.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

async fn token(State(st): State<SharedState>, headers: HeaderMap, body: Bytes) -> Response {
    let resp = issue(&st, &headers, &body);
    let mut bu = st.bu.lock();
    bu.api.total += 1;
    *bu.api.by_endpoint.entry("POST /auth/token".into()).or_default().entry(resp.status().as_u16()).or_default() += 1;
    resp
}

fn issue(st: &SharedState, headers: &HeaderMap, body: &Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let mut bu = st.bu.lock();
    let creds = bu.creds.clone();
    // Client authentication: Basic, else the form.
    let (cid, csecret) = match basic(headers) {
        Some((i, s)) => (Some(i), Some(s)),
        None => (form.get("client_id").cloned(), form.get("client_secret").cloned()),
    };
    let grant = form.get("grant_type").map(String::as_str);
    match (&cid, &csecret) {
        (Some(i), Some(s)) if *i == creds.client_id && *s == creds.client_secret => {}
        // Refresh may name the public client without its secret, as NICE's SDK does.
        (Some(i), None) if *i == creds.client_id && grant == Some("refresh_token") => {}
        (None, _) => return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Client authentication failed"),
        _ => return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Client authentication failed"),
    }
    match grant {
        Some("password") => {
            let ok = form.get("username") == Some(&creds.access_key_id)
                && form.get("password") == Some(&creds.access_key_secret);
            if !ok {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid access key id or secret");
            }
        }
        Some("refresh_token") => {
            let known = form.get("refresh_token").is_some_and(|r| bu.refresh_tokens.contains(r));
            if !known {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid refresh token");
            }
        }
        Some(_) => {
            return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "The grant type is not supported")
        }
        None => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "grant_type is required"),
    }
    let iat = st.clock.now().as_second();
    let lifetime = bu.token_lifetime;
    let exp = iat + lifetime.as_secs() as i64;
    let jti: [u8; 12] = bu.fault_rng.gen();
    let user_uuid = format!("11eb{}", &creds.tenant_id[4..]);
    let base = st.base_url().to_string();
    let access = json!({
        "role": {"legacyId": "Administrator", "id": "11eb0000-0000-0000-0000-000000000001", "lastUpdateTime": 0, "secondaryRoles": []},
        "sub": format!("user:{user_uuid}"), "iss": base, "aud": "inContact Evolve@inContact.com",
        "icBUId": creds.business_unit_id, "tenantId": creds.tenant_id, "icClusterId": creds.cluster,
        "name": "wrapup.api", "given_name": "Wrapup", "family_name": "Integration",
        "iat": iat, "exp": exp, "jti": b64(&jti),
    });
    let mut id_claims = access.clone();
    if let Some(o) = id_claims.as_object_mut() {
        o.remove("role");
        o.insert("icAgentId".into(), json!(creds.agent_id.to_string()));
        o.insert("userId".into(), json!(user_uuid));
        o.insert("icDomain".into(), json!("niceincontact.com"));
        o.insert("aud".into(), json!(creds.client_id));
    }
    let access_token = jwt(&mut bu, &access);
    let id_token = jwt(&mut bu, &id_claims);
    let refresh =
        jwt(&mut bu, &json!({"sub": format!("user:{user_uuid}"), "iat": iat, "jti": b64(&jti), "typ": "refresh"}));
    let now = Instant::now();
    let window = TokenWindow::new(bu.rate_limit_window, bu.rate_limit_per_minute, now);
    bu.tokens
        .insert(access_token.clone(), CxToken { expires: now + lifetime, revoked: false, window, retry_after: None });
    bu.refresh_tokens.insert(refresh.clone());
    json_resp(
        StatusCode::OK,
        json!({
            "access_token": access_token, "token_type": "Bearer", "expires_in": lifetime.as_secs(),
            "refresh_token": refresh, "id_token": id_token,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        }),
    )
}

async fn jwks() -> Response {
    // Signatures do not verify; an empty key set says so honestly.
    json_resp(StatusCode::OK, json!({"keys": []}))
}

async fn openid(State(st): State<SharedState>) -> Response {
    let b = st.base_url();
    json_resp(
        StatusCode::OK,
        json!({
            "issuer": b,
            "authorization_endpoint": format!("{b}/auth/authorize"),
            "token_endpoint": format!("{b}/auth/token"),
            "jwks_uri": format!("{b}/auth/jwks"),
            "userinfo_endpoint": format!("{b}/auth/userinfo"),
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "grant_types_supported": ["password", "refresh_token", "authorization_code",
                "urn:ietf:params:oauth:grant-type:token-exchange"],
            "response_types_supported": ["code"],
            "scopes_supported": ["openid"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "subject_types_supported": ["public"],
        }),
    )
}

async fn cxone_configuration(State(st): State<SharedState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let creds = st.bu.lock().creds.clone();
    if q.get("tenantId") != Some(&creds.tenant_id) {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            json!({"error": "Tenant not found"}).to_string(),
        )
            .into_response();
    }
    // The bare origin (no path, no trailing slash): clients append `/inContactAPI/services/vNN.0/...`.
    let b = st.base_url().trim_end_matches('/').to_string();
    json_resp(
        StatusCode::OK,
        json!({
            "private": false, "area": creds.area, "cluster": creds.cluster, "domain": "niceincontact.com",
            "acdDomain": "nice-incontact.com", "uhDomain": "nice-incontact.com",
            "ui_endpoint": b, "auth_endpoint": b, "api_endpoint": b, "tenantId": creds.tenant_id,
        }),
    )
}
