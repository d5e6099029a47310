//! `GET /api/v2/users/{userId}/routingstatus`: INTERACTING while the agent has a leg (alerting, talking, in ACW, or
//! held by a forced ACW timeout), IDLE otherwise; OFF_QUEUE for an unknown user, as the platform documents.

use super::json_ok;
use crate::SharedState;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

pub fn routes() -> Router<SharedState> {
    Router::new().route("/users/{id}/routingstatus", get(routing_status))
}

async fn routing_status(State(st): State<SharedState>, Path(id): Path<String>) -> Response {
    let now = st.clock.now();
    json_ok(st.org.lock().routing_status(&id, now))
}
