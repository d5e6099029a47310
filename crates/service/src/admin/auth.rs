//! Who may use the admin API: bearer tokens from the config, each with a role.

use crate::app::AppState;
use crate::edge::bearer_matches;
use crate::intake::error;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use wrapup_core::Secret;

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
///
/// The dashboard's login cookie counts as the bearer token ([`crate::dashboard::session`]); an action a browser says
/// came from another site's page is refused whatever it carries (a cross-site form post), tokens or none.
pub(crate) fn authorize(state: &AppState, headers: &HeaderMap, needed: Role) -> Result<(), Box<Response>> {
    if needed == Role::Operator && crate::dashboard::session::cross_site(headers) {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "cross_site",
            "actions are taken only from this service's own pages or with a bearer token",
        )));
    }
    if state.admin_token.is_none() && state.viewer_token.is_none() {
        return Ok(());
    }
    let holds = |t: &Option<Secret>| {
        t.as_ref().is_some_and(|t| bearer_matches(headers, t) || crate::dashboard::session::cookie_matches(headers, t))
    };
    let held = if holds(&state.admin_token) {
        Role::Operator
    } else if holds(&state.viewer_token) {
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
