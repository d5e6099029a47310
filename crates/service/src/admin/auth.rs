//! Who may use the admin API: bearer tokens from the config, each with a role.

use crate::app::AppState;
use crate::edge::bearer_matches;
use crate::intake::error;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

/// What a bearer token may do on the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads: legs, ledgers, summary, review queue, reports, the outbox.
    Viewer,
    /// Reads and actions: resolving review items, retrying and replaying the outbox, enabling a sink.
    Operator,
}

/// A read: any configured token will do (or none, when no token is configured).
pub(crate) fn authorized(state: &AppState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    authorize(state, headers, Role::Viewer)
}

/// Whether the request's bearer token holds `needed`. With no token configured the admin API is open (it then
/// belongs on a private `admin_listen` address); with any token configured, every admin route needs one, and an
/// action needs the operator's.
pub(crate) fn authorize(state: &AppState, headers: &HeaderMap, needed: Role) -> Result<(), Box<Response>> {
    if state.admin_token.is_none() && state.viewer_token.is_none() {
        return Ok(());
    }
    let held = if state.admin_token.as_ref().is_some_and(|t| bearer_matches(headers, t)) {
        Role::Operator
    } else if state.viewer_token.as_ref().is_some_and(|t| bearer_matches(headers, t)) {
        Role::Viewer
    } else {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "the admin API needs 'Authorization: Bearer <token>'",
        )));
    };
    if needed == Role::Operator && held == Role::Viewer {
        return Err(Box::new(error(StatusCode::FORBIDDEN, "forbidden", "this action needs the operator token")));
    }
    Ok(())
}
