//! The HTTP surface: intake, the lookup and decision APIs, probes, metrics and the admin API. Every route is
//! declared here, once, with its OpenAPI description (`#[utoipa::path]` on its handler): the router and the
//! document served at `/api/v1/openapi.json` are built from the same list, so neither can have a route the other
//! lacks. The routes are grouped so that the admin API can listen on an address of its own (`admin_listen`); the
//! limits in front of all of them are in [`crate::edge`].

mod auth;
mod legs;
mod probes;

pub use auth::Role;
pub(crate) use auth::{authorize, authorized};
pub(crate) use legs::leg_key;
pub use probes::{metrics_handle, READY_STORE_TIMEOUT};

use crate::app::AppState;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Serialize;
use std::sync::{Arc, OnceLock};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::OpenApi;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Every error answer of every route: `{"error": {"code": "…", "message": "…"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable (`snake_case`); the responses of each route list theirs.
    pub code: String,
    /// For a person; may change between versions.
    pub message: String,
}

/// Everything on one address: intake, probes, metrics and the admin API.
pub fn router(state: Arc<AppState>) -> Router {
    let (intake, _) = intake_routes().split_for_parts();
    let (admin, _) = admin_routes().split_for_parts();
    intake.merge(admin).with_state(state)
}

/// What must be reachable from the platform's side: intake, the lookup for flows, CRM decisions, and the probes
/// (for a load balancer in front).
pub fn intake_router(state: Arc<AppState>) -> Router {
    intake_routes().split_for_parts().0.with_state(state)
}

/// What need not be: the admin API and `/metrics`, with the probes too (`admin_listen`).
pub fn admin_router(state: Arc<AppState>) -> Router {
    let (admin, _) = admin_routes().routes(routes!(probes::health)).routes(routes!(probes::ready)).split_for_parts();
    admin.with_state(state)
}

fn intake_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(crate::intake::post_events))
        .routes(routes!(crate::lookup::get_code))
        .routes(routes!(crate::lookup::post_decision))
        .routes(routes!(crate::decisions::put_conversation))
        .routes(routes!(crate::decisions::put_leg))
        .routes(routes!(probes::health))
        .routes(routes!(probes::ready))
}

fn admin_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(probes::metrics))
        .routes(routes!(openapi_json))
        .routes(routes!(legs::list_legs))
        .routes(routes!(legs::get_leg))
        .routes(routes!(legs::summary))
        .routes(routes!(crate::report::get_report))
        .routes(routes!(crate::outbox::admin::list))
        .routes(routes!(crate::outbox::admin::retry_dead))
        .routes(routes!(crate::outbox::admin::replay))
        .routes(routes!(crate::outbox::admin::retry_one))
        .routes(routes!(crate::outbox::admin::sinks))
        .routes(routes!(crate::outbox::admin::enable))
        .routes(routes!(crate::dashboard::events::stream))
        .routes(routes!(crate::dashboard::pages::overview))
        .routes(routes!(crate::dashboard::asset))
        .routes(routes!(crate::dashboard::session::login_form, crate::dashboard::session::login))
        .routes(routes!(crate::dashboard::session::logout))
        .routes(routes!(crate::dashboard::pages::review_queue))
        .routes(routes!(crate::dashboard::pages::leg_ledger))
        .routes(routes!(crate::review::list))
        .routes(routes!(crate::review::show))
        .routes(routes!(crate::review::resolve))
        .routes(routes!(crate::review::dismiss))
}

/// The OpenAPI 3.1 document of every route this service serves, built from the same route list as the router.
pub fn openapi() -> &'static OpenApi {
    static DOC: OnceLock<OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let (_, intake) = intake_routes().split_for_parts();
        let (_, admin) = admin_routes().split_for_parts();
        let mut doc = intake.merge_from(admin);
        doc.info.title = "wrapup".into();
        doc.info.version = env!("CARGO_PKG_VERSION").into();
        doc.info.description = Some(
            "wrapup applies wrap-up codes (Genesys Cloud) and dispositions (NICE CXone) inside the after-call-work \
             window. The admin API takes `Authorization: Bearer <token>`: `[admin] viewer_token` reads, `[admin] \
             token` (the operator's) reads and acts; with neither configured it is open. Intake, the lookup and \
             the decision API authenticate per connection (docs/DEPLOYING.md, docs/FLOWS.md, docs/CRM.md). Every \
             error is `{\"error\": {\"code\", \"message\"}}`."
                .into(),
        );
        doc.info.license = Some(utoipa::openapi::License::new("Apache-2.0"));
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        components.add_security_scheme("metrics_token", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        components.add_security_scheme(
            "dashboard_cookie",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Cookie(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    crate::dashboard::session::COOKIE,
                    "Set by POST /dashboard/login; taken wherever the bearer token is",
                ),
            )),
        );
        components.add_security_scheme(
            "connection_key",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "X-Api-Key",
                    "The connection's API key; the header's name is configurable per connection",
                ),
            )),
        );
        doc
    })
}

/// This document, generated from the code.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", responses(
    (status = 200, description = "The OpenAPI 3.1 document of this service", content_type = "application/json"),
))]
pub(crate) async fn openapi_json() -> Response {
    Json(openapi()).into_response()
}

#[cfg(test)]
mod tests;
