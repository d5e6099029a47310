//! The pages rendered here, from the store: the overview's shell, a leg's ledger as a timeline, the review queue with
//! its forms, and the frame they share. Everything that comes from the store or the request is escaped
//! ([`escape`]); links are built from percent-encoded segments ([`path_segment`]).

use super::{escape, html, path_segment, session::see_other, VERSION};
use crate::admin::Role;
use crate::app::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use std::fmt::Write;
use std::sync::Arc;
use wrapup_core::lifecycle::{DecisionSource, LegRecord};
use wrapup_core::{LegKey, Outcome};
use wrapup_store::ReviewFilter;

/// Review items shown on one page.
const REVIEW_PAGE: u32 = 200;

/// The frame every page shares: a skip link, the header with the navigation, and `main`.
/// `signed_in`: a token is configured, so there is a login to end (the *Sign out* button).
pub(super) fn layout(title: &str, current: &str, signed_in: bool, main: &str) -> String {
    let nav = [("/dashboard", "Overview"), ("/dashboard/review", "Review queue")]
        .iter()
        .map(|(href, label)| {
            let here = if *href == current { r#" aria-current="page""# } else { "" };
            format!(r#"<li><a href="{href}"{here}>{label}</a></li>"#)
        })
        .collect::<String>();
    format!(
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · wrapup</title>
<link rel="icon" href="/dashboard/assets/icon.svg?v={VERSION}" type="image/svg+xml">
<link rel="stylesheet" href="/dashboard/assets/dashboard.css?v={VERSION}">
<script src="/dashboard/assets/dashboard.js?v={VERSION}" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
<p class="brand"><a href="/dashboard">wrapup</a></p>
<nav aria-label="Dashboard"><ul>{nav}</ul></nav>
{sign_out}</header>
<main id="main" tabindex="-1">
{main}
</main>
</body>
</html>
"##,
        title = escape(title),
        sign_out = if signed_in {
            "<form method=\"post\" action=\"/dashboard/logout\" class=\"logout\"><button type=\"submit\" class=\"link\">Sign out</button></form>\n"
        } else {
            ""
        },
    )
}

/// The answer instead of a page the request may not see: to the login, for a browser without the cookie.
fn refused(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    crate::admin::authorize(state, headers, Role::Viewer).err().map(|_| see_other("/dashboard/login"))
}

fn signed_in(state: &AppState) -> bool {
    state.admin_token.is_some() || state.viewer_token.is_some()
}

/// A time as people read it, to the second (the `datetime` attribute keeps it whole).
fn when(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn message_page(state: &AppState, status: StatusCode, title: &str, text: &str) -> Response {
    let main = format!(
        "<h1>{}</h1>\n<p>{}</p>\n<p><a href=\"/dashboard\">Back to the overview</a></p>",
        escape(title),
        escape(text)
    );
    html(status, layout(title, "", signed_in(state), &main))
}

/// `GET /dashboard`: the overview. Its sections are filled by the script from the admin API; without JavaScript
/// they say so and point to the pages that work without it.
#[utoipa::path(get, path = "/dashboard", tag = "dashboard", security((), ("dashboard_cookie" = []), ("bearer" = [])), responses(
    (status = 200, description = "The overview page", body = String, content_type = "text/html"),
    (status = 303, description = "To `/dashboard/login`, when a token is configured and the request has none"),
))]
pub(crate) async fn overview(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(r) = refused(&state, &headers) {
        return r;
    }
    html(StatusCode::OK, layout("Dashboard", "/dashboard", signed_in(&state), include_str!("assets/overview.html")))
}

/// The link to a leg's ledger page.
pub(super) fn leg_href(key: &LegKey) -> String {
    format!(
        "/dashboard/legs/{}/{}/{}",
        path_segment(&key.connection),
        path_segment(&key.conversation),
        path_segment(&key.participant)
    )
}

fn outcome_badge(leg: &LegRecord) -> String {
    let (class, text) = match leg.outcome {
        Some(o) => (o.as_str(), o.as_str()),
        None => ("open", "open"),
    };
    format!(r#"<span class="badge badge-{class}">{}</span>"#, escape(text))
}

fn decided_by(leg: &LegRecord) -> Option<String> {
    let d = leg.decision.as_ref()?;
    let by = match &d.source {
        DecisionSource::Rule { name, .. } => format!("rule “{name}”"),
        DecisionSource::External { source, .. } => source.clone(),
    };
    let mode = match d.mode {
        wrapup_core::outcome::Mode::Enforce => "enforce",
        wrapup_core::outcome::Mode::Shadow => "shadow",
    };
    Some(format!("{} by {} ({mode})", d.code_name, by))
}

/// The review actions on one leg: plain forms, answered by the review API with a redirect back to the ledger.
fn review_forms(key: &LegKey) -> String {
    let base = format!(
        "/api/v1/review/{}/{}/{}",
        path_segment(&key.connection),
        path_segment(&key.conversation),
        path_segment(&key.participant)
    );
    format!(
        r#"<div class="actions">
<form method="post" action="{base}/resolve" class="card">
<h3>Resolve with a code</h3>
<label>Code <input name="code" required maxlength="200" autocomplete="off"></label>
<label>Note <input name="note" maxlength="1000" autocomplete="off"></label>
<label>Your name <input name="by" required maxlength="200" autocomplete="name"></label>
<button type="submit">Resolve</button>
</form>
<form method="post" action="{base}/dismiss" class="card">
<h3>Dismiss</h3>
<label>Note <input name="note" required maxlength="1000" autocomplete="off"></label>
<label>Your name <input name="by" required maxlength="200" autocomplete="name"></label>
<button type="submit">Dismiss</button>
</form>
</div>"#
    )
}

fn fact_rows(leg: &LegRecord) -> String {
    let f = &leg.facts;
    let mut rows: Vec<(&str, String)> = vec![("Outcome", outcome_badge(leg))];
    let mut text = |label: &'static str, value: Option<String>| {
        if let Some(v) = value {
            rows.push((label, escape(&v)));
        }
    };
    text("Why", leg.outcome_reason.clone());
    text("Decision", decided_by(leg));
    text("Code on the leg", leg.observed_code.clone());
    text("Queue", f.queue_name.clone().or_else(|| f.queue_id.clone()));
    text("Media", f.media.clone());
    text("Agent", f.user_id.clone());
    text("Ended", f.ended_at.map(when));
    text("Window closes", leg.deadline.map(when));
    text("Written", leg.written_at.map(when));
    let mut out = String::from("<dl class=\"facts\">");
    for (label, value) in rows {
        let _ = write!(out, "<div><dt>{label}</dt><dd>{value}</dd></div>");
    }
    out.push_str("</dl>");
    out
}

/// `GET /dashboard/legs/{connection}/{conversation}/{participant}`: the leg and its ledger, oldest line first. An
/// unknown connection or leg, a malformed id or a store failure is answered with a page too (404, 400, 503).
#[utoipa::path(get, path = "/dashboard/legs/{connection}/{conversation}/{participant}", tag = "dashboard",
    params(("connection" = String, Path), ("conversation" = String, Path), ("participant" = String, Path)),
    security((), ("dashboard_cookie" = []), ("bearer" = [])), responses(
    (status = 200, description = "The leg's page: facts, decision, outcome, and its ledger as a timeline", body = String, content_type = "text/html"),
    (status = 303, description = "To `/dashboard/login`, when a token is configured and the request has none"),
))]
pub(crate) async fn leg_ledger(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((connection, conversation, participant)): Path<(String, String, String)>,
) -> Response {
    if let Some(r) = refused(&state, &headers) {
        return r;
    }
    let Some(platform) = state.connections.get(&connection).map(|c| c.platform.platform()) else {
        return message_page(
            &state,
            StatusCode::NOT_FOUND,
            "No such connection",
            &format!("No connection is named {connection:?}."),
        );
    };
    let key = LegKey::new(connection, conversation, participant);
    if let Err(e) = wrapup_core::ids::check_leg(platform, &key) {
        return message_page(&state, StatusCode::BAD_REQUEST, "Not a leg", &e.to_string());
    }
    let leg = match state.store.get_leg(&key).await {
        Ok(Some(l)) => l.leg,
        Ok(None) => {
            return message_page(&state, StatusCode::NOT_FOUND, "No such leg", &format!("The store has no leg {key}."))
        }
        Err(e) => return message_page(&state, StatusCode::SERVICE_UNAVAILABLE, "Store unavailable", &e.to_string()),
    };
    let ledger = match state.store.ledger(&key).await {
        Ok(l) => l,
        Err(e) => return message_page(&state, StatusCode::SERVICE_UNAVAILABLE, "Store unavailable", &e.to_string()),
    };
    let mut main = format!(
        "<h1>Leg <span class=\"mono\">{}</span></h1>\n<p class=\"sub\">Connection {} · conversation <span class=\"mono\">{}</span></p>\n",
        escape(&key.participant),
        escape(&key.connection),
        escape(&key.conversation)
    );
    main.push_str(&fact_rows(&leg));
    if leg.outcome == Some(Outcome::Review) && leg.resolution.is_none() {
        main.push_str("<section aria-labelledby=\"act\"><h2 id=\"act\">Review</h2>");
        main.push_str(&review_forms(&key));
        main.push_str("</section>");
    }
    let _ = write!(main, "<section aria-labelledby=\"ledger\"><h2 id=\"ledger\">Ledger ({} lines)</h2>", ledger.len());
    if ledger.is_empty() {
        main.push_str("<p>No ledger lines yet.</p>");
    } else {
        main.push_str("<ol class=\"timeline\">");
        for line in &ledger {
            let _ = write!(
                main,
                "<li><p><time datetime=\"{at}\">{shown}</time> <strong>{kind}</strong></p>{detail}</li>",
                at = escape(&line.at.to_string()),
                shown = escape(&when(line.at)),
                kind = escape(&line.kind),
                detail = detail_list(&line.detail),
            );
        }
        main.push_str("</ol>");
    }
    main.push_str("</section>");
    html(StatusCode::OK, layout(&format!("Leg {}", key.participant), "", signed_in(&state), &main))
}

/// A ledger line's detail: its fields as a list (nested values as compact JSON), empty ones left out.
fn detail_list(detail: &serde_json::Value) -> String {
    let serde_json::Value::Object(fields) = detail else {
        return format!("<pre>{}</pre>", escape(&detail.to_string()));
    };
    let mut out = String::from("<dl class=\"detail\">");
    for (name, value) in fields {
        let text = match value {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let _ = write!(out, "<div><dt>{}</dt><dd>{}</dd></div>", escape(name), escape(&text));
    }
    out.push_str("</dl>");
    out
}

/// `GET /dashboard/review`: the legs that wait for a person (`review`, not resolved or dismissed yet), oldest
/// first, each with its actions.
#[utoipa::path(get, path = "/dashboard/review", tag = "dashboard", security((), ("dashboard_cookie" = []), ("bearer" = [])), responses(
    (status = 200, description = "The review queue, with a resolve and a dismiss form per leg", body = String, content_type = "text/html"),
    (status = 303, description = "To `/dashboard/login`, when a token is configured and the request has none"),
))]
pub(crate) async fn review_queue(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(r) = refused(&state, &headers) {
        return r;
    }
    let filter = ReviewFilter { connection: None, include_expired: false, after: None, limit: REVIEW_PAGE };
    let legs = match state.store.review_legs(&filter).await {
        Ok(l) => l,
        Err(e) => return message_page(&state, StatusCode::SERVICE_UNAVAILABLE, "Store unavailable", &e.to_string()),
    };
    let mut main = String::from("<h1>Review queue</h1>\n");
    if legs.is_empty() {
        main.push_str("<p>No leg waits for a person.</p>");
    } else {
        let more = if legs.len() as u32 == REVIEW_PAGE { " (the oldest; there are more)" } else { "" };
        let _ = write!(main, "<p>{} legs wait for a person{more}.</p><ol class=\"review\">", legs.len());
        for leg in &legs {
            let _ = write!(
                main,
                "<li class=\"card\"><h2><a href=\"{href}\">{conn} · <span class=\"mono\">{part}</span></a></h2><p>{reason}</p>{forms}</li>",
                href = leg_href(&leg.key),
                conn = escape(&leg.key.connection),
                part = escape(&leg.key.participant),
                reason = escape(leg.outcome_reason.as_deref().unwrap_or("no reason recorded")),
                forms = review_forms(&leg.key),
            );
        }
        main.push_str("</ol>");
    }
    html(StatusCode::OK, layout("Review queue", "/dashboard/review", signed_in(&state), &main))
}
