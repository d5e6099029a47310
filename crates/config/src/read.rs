//! The schema walk: from the spanned tree to a [`Config`], recording every problem on the way.
//!
//! Each reader takes a node and its key path, records a problem and returns `None` when the node is unusable, and
//! otherwise returns the typed value. Callers keep going after a `None`, so one pass finds every problem; only when
//! none was recorded are the pieces assembled. Tables are read through [`Table`], which remembers which keys were
//! asked for and reports the rest as unknown.

use crate::error::{ConfigErrors, LineIndex};
use crate::schema::{
    all_of, array, boolean, child, index, integer, items, named, non_empty_string, parse_tree, string, string_list,
    table, Cx, Field, Table,
};
use crate::secrets::{self, Reference, SecretSource};
use crate::tree::{Node, Value};
use crate::{
    AcwDetection, AdminConfig, ClientCredentials, Config, ConnectionConfig, CxoneSettings, DecisionHookConfig,
    DecisionsConfig, Endpoint, HttpLimits, IntakeAuth, IntakeConfig, LookupConfig, SigningSecret, StoreConfig,
    WebsocketIntake, DEFAULT_ACW_ESTIMATE_SECS, DEFAULT_CATALOG_TTL_SECS, DEFAULT_CXONE_POLL_INTERVAL_MS,
    DEFAULT_DATA_DIR, DEFAULT_DECISION_HOOK_TIMEOUT_MS, DEFAULT_INTAKE_KEY_HEADER, DEFAULT_LISTEN,
    DEFAULT_MAX_BODY_BYTES, DEFAULT_RECONCILE_EVERY_SECS, DEFAULT_RECONCILE_WINDOW_SECS, DEFAULT_REQUESTS_PER_MINUTE,
    DEFAULT_REQUEST_TIMEOUT_MS,
};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use url::Url;
use wrapup_core::rules::{
    ChoiceMatcher, Conditions, DecideFrom, DecideSpec, Fallback, NotesTemplate, NumberMatcher, NumberOps, Pattern,
    Rule, RuleSet, StringMatcher,
};
use wrapup_core::{Channel, Direction, Mode, Platform, Secret, Timing};

pub(crate) fn read(
    text: &str,
    origin: &str,
    base_dir: &Path,
    secrets: &dyn SecretSource,
) -> Result<Config, ConfigErrors> {
    let lines = LineIndex::new(origin, text);
    let root = parse_tree(text, origin, &lines)?;
    let mut cx = Cx::new(secrets, base_dir);
    let config = read_root(&mut cx, &root, &lines);
    match config {
        Some(config) if cx.problems.is_empty() => Ok(config),
        _ => Err(cx.into_errors(&lines, origin)),
    }
}

pub(crate) fn secret(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<Secret> {
    let Value::String(text) = &f.node.value else {
        cx.wrong_type(f.node, &f.path, "a secret reference (`env:NAME` or `file:PATH`)");
        return None;
    };
    let Some(reference) = Reference::parse(text) else {
        cx.problem(&f.node.span, &f.path, secrets::NOT_A_REFERENCE);
        return None;
    };
    match secrets::resolve(&reference, cx.secrets, cx.base_dir) {
        Ok(v) => Some(Secret::new(v)),
        Err(message) => {
            cx.problem(&f.node.span, &f.path, message);
            None
        }
    }
}

/// A value that is not secret but may still come from the environment (a client id).
fn plain_or_reference(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<String> {
    let text = non_empty_string(cx, f)?;
    match Reference::parse(text) {
        None => Some(text.to_string()),
        Some(reference) => match secrets::resolve(&reference, cx.secrets, cx.base_dir) {
            Ok(v) => Some(v),
            Err(message) => {
                cx.problem(&f.node.span, &f.path, message);
                None
            }
        },
    }
}

// ---- the document ----

const ROOT_KEYS: &[&str] = &[
    "data_dir",
    "store",
    "listen",
    "admin_listen",
    "admin",
    "http",
    "connections",
    "decision_hooks",
    "rules",
    "sinks",
];
const STORE_KEYS: &[&str] = &["url", "password"];
const ADMIN_KEYS: &[&str] = &["token", "viewer_token", "metrics_token"];
const HTTP_KEYS: &[&str] = &[
    "header_read_timeout_ms",
    "body_read_timeout_ms",
    "idle_timeout_ms",
    "request_timeout_ms",
    "max_connections",
    "max_intake_requests",
    "max_admin_requests",
    "max_health_requests",
];
const CONNECTION_KEYS: &[&str] = &[
    "name",
    "kind",
    "region",
    "base_url",
    "client_id",
    "client_secret",
    "requests_per_minute",
    "extra_clients",
    "system_codes",
    "catalog_ttl_secs",
    "catalog",
    "request_timeout_ms",
    "reconcile_every_secs",
    "reconcile_window_secs",
    "intake",
    "lookup",
    "decisions",
    "access_key_id",
    "access_key_secret",
    "acw_detection",
    "poll_interval_ms",
    "agent_state_after_write",
    "acw_estimate_default_secs",
    "conversation_shows_provisional",
];
/// Keys that only a CXone connection may set.
const CXONE_ONLY_KEYS: &[&str] =
    &["access_key_id", "access_key_secret", "acw_detection", "poll_interval_ms", "agent_state_after_write"];
const CLIENT_KEYS: &[&str] = &["client_id", "client_secret"];
const INTAKE_KEYS: &[&str] = &["api_key_header", "api_key", "max_body_bytes", "websocket", "auth", "signing_secret"];
const LOOKUP_KEYS: &[&str] = &["fallback_code", "api_key", "api_key_header"];
const WEBSOCKET_KEYS: &[&str] = &["enabled", "queues"];
const RULE_KEYS: &[&str] = &["name", "code", "notes", "timing", "mode", "platform", "connection", "when", "decide"];
const DECIDE_KEYS: &[&str] = &["crm", "hook", "wait", "fallback"];
const DECISIONS_KEYS: &[&str] = &["api_key", "api_key_header"];
const HOOK_KEYS: &[&str] = &["name", "url", "secret", "timeout_ms"];
const TIMING_KEYS: &[&str] = &["before_timeout", "after"];
const WHEN_KEYS: &[&str] = &[
    "channel",
    "direction",
    "queue",
    "disconnect_type",
    "campaign",
    "talk_ms",
    "hold_ms",
    "acw_timeout_ms",
    "attributes",
];
const STRING_MATCHER_KEYS: &[&str] = &["equals", "one_of", "regex", "exists"];
const CHOICE_MATCHER_KEYS: &[&str] = &["equals", "one_of"];
const NUMBER_MATCHER_KEYS: &[&str] = &["lt", "lte", "gt", "gte", "eq"];

fn read_root(cx: &mut Cx<'_>, root: &Node, lines: &LineIndex) -> Option<Config> {
    let mut t = table(cx, root, "", ROOT_KEYS)?;

    let data_dir = match t.get("data_dir") {
        Some(f) => non_empty_string(cx, &f).map(|s| cx.base_dir.join(s)),
        None => Some(cx.base_dir.join(DEFAULT_DATA_DIR)),
    };

    let store = match t.get("store") {
        Some(f) => read_store(cx, &f),
        None => Some(StoreConfig::Sqlite),
    };

    let listen = match t.get("listen") {
        Some(f) => socket_address(cx, &f),
        None => DEFAULT_LISTEN.parse().ok(),
    };
    let admin_listen = match t.get("admin_listen") {
        Some(f) => socket_address(cx, &f).and_then(|a| {
            // Port 0 twice is two different ports; anything else twice is one socket bound twice.
            if Some(a) == listen && a.port() != 0 {
                cx.problem(&f.node.span, &f.path, "must differ from `listen` (leave it out to serve both on `listen`)");
                return None;
            }
            Some(Some(a))
        }),
        None => Some(None),
    };

    let admin = match t.get("admin") {
        Some(f) => read_admin(cx, &f),
        None => Some(AdminConfig::default()),
    };
    let http = match t.get("http") {
        Some(f) => read_http(cx, &f),
        None => Some(HttpLimits::default()),
    };

    let mut connections = Some(Vec::new());
    // Every name written, even of connections with problems, so a rule naming one is not reported as dangling.
    let mut declared_connections: Vec<&str> = Vec::new();
    if let Some(f) = t.get("connections") {
        connections = array(cx, &f, "an array of tables (`[[connections]]`)").and_then(|list| {
            declared_connections = check_unique_names(cx, lines, list, &f.path, "connection");
            all_of(items(list, &f.path).map(|item| read_connection(cx, &item)))
        });
    }

    let mut decision_hooks = Some(Vec::new());
    let mut declared_hooks: Vec<&str> = Vec::new();
    if let Some(f) = t.get("decision_hooks") {
        decision_hooks = array(cx, &f, "an array of tables (`[[decision_hooks]]`)").and_then(|list| {
            declared_hooks = check_unique_names(cx, lines, list, &f.path, "decision hook");
            all_of(items(list, &f.path).map(|item| read_decision_hook(cx, &item)))
        });
    }

    let mut rules = Some(Vec::new());
    let mut rule_locations = Vec::new();
    let mut rules_span = root.span.clone();
    if let Some(f) = t.get("rules") {
        rules_span = f.node.span.clone();
        rules = array(cx, &f, "an array of tables (`[[rules]]`)").and_then(|list| {
            check_unique_names(cx, lines, list, &f.path, "rule");
            rule_locations = list.iter().map(|item| lines.location(&item.span)).collect();
            let known = Known { connections: &declared_connections, hooks: &declared_hooks };
            all_of(items(list, &f.path).map(|item| read_rule(cx, &item, &known)))
        });
    }
    let mut sinks = Some(Vec::new());
    if let Some(f) = t.get("sinks") {
        sinks = array(cx, &f, "an array of tables (`[[sinks]]`)").and_then(|list| {
            check_unique_names(cx, lines, list, &f.path, "sink");
            all_of(items(list, &f.path).map(|item| crate::sinks::read_sink(cx, &item, &declared_connections)))
        });
    }
    t.finish(cx);

    if !cx.problems.is_empty() {
        return None;
    }
    let rules = match RuleSet::new(rules?) {
        Ok(set) => set,
        Err(e) => {
            // Duplicates and empty names were reported above; this is a backstop.
            cx.problem(&rules_span, "rules", e.to_string());
            return None;
        }
    };
    Some(Config {
        data_dir: data_dir?,
        store: store?,
        listen: listen?,
        admin_listen: admin_listen?,
        admin: admin?,
        http: http?,
        connections: connections?,
        decision_hooks: decision_hooks?,
        rules,
        rule_locations,
        sinks: sinks?,
    })
}

/// Reads the `[[rules]]` of a rules file (or of a whole config file, whose other keys are left unread) against the
/// connections and decision hooks of `config`: the candidate rule set of `wrapup simulate`.
pub(crate) fn read_rules(
    text: &str,
    origin: &str,
    config: &Config,
    secrets: &dyn SecretSource,
) -> Result<(RuleSet, Vec<crate::Location>), ConfigErrors> {
    let lines = LineIndex::new(origin, text);
    let root = parse_tree(text, origin, &lines)?;
    let mut cx = Cx::new(secrets, Path::new(""));
    let rules = (|| {
        let mut t = table(&mut cx, &root, "", ROOT_KEYS)?;
        for key in ROOT_KEYS.iter().filter(|k| **k != "rules") {
            let _ = t.get(key);
        }
        let f = t.require(&mut cx, "rules");
        t.finish(&mut cx);
        let f = f?;
        let list = array(&mut cx, &f, "an array of tables (`[[rules]]`)")?;
        check_unique_names(&mut cx, &lines, list, &f.path, "rule");
        let locations: Vec<_> = list.iter().map(|item| lines.location(&item.span)).collect();
        let connections: Vec<&str> = config.connections.iter().map(|c| c.name.as_str()).collect();
        let hooks: Vec<&str> = config.decision_hooks.iter().map(|h| h.name.as_str()).collect();
        let known = Known { connections: &connections, hooks: &hooks };
        let rules = all_of(items(list, &f.path).map(|item| read_rule(&mut cx, &item, &known)))?;
        if !cx.problems.is_empty() {
            return None;
        }
        match RuleSet::new(rules) {
            Ok(set) => Some((set, locations)),
            Err(e) => {
                cx.problem(&f.node.span, "rules", e.to_string());
                None
            }
        }
    })();
    match rules {
        Some(rules) if cx.problems.is_empty() => Ok(rules),
        _ => Err(cx.into_errors(&lines, origin)),
    }
}

/// Reports every table of `list` whose `name` repeats an earlier one, at the repetition, and returns the names.
/// Works on the raw tables so that a duplicate is found even when the table has other problems.
fn check_unique_names<'n>(
    cx: &mut Cx<'_>,
    lines: &LineIndex,
    list: &'n [Node],
    path: &str,
    what: &str,
) -> Vec<&'n str> {
    let mut seen: Vec<(&str, &Range<usize>)> = Vec::new();
    for (i, node) in list.iter().enumerate() {
        let Value::Table(entries) = &node.value else { continue };
        let Some((name, span)) = entries.iter().find(|(k, _)| k.name == "name").and_then(|(_, v)| match &v.value {
            Value::String(s) => Some((s.as_str(), &v.span)),
            _ => None,
        }) else {
            continue;
        };
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            let line = lines.location(first).line;
            cx.problem(
                span,
                &child(&index(path, i), "name"),
                format!("duplicate {what} name {name:?} (first at line {line})"),
            );
        } else {
            seen.push((name, span));
        }
    }
    seen.into_iter().map(|(n, _)| n).collect()
}

fn socket_address(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<SocketAddr> {
    let s = string(cx, f)?;
    match s.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            cx.problem(&f.node.span, &f.path, format!("invalid address {s:?}: write ip:port, e.g. {DEFAULT_LISTEN:?}"));
            None
        }
    }
}

fn read_admin(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<AdminConfig> {
    let mut t = table(cx, f.node, &f.path, ADMIN_KEYS)?;
    let token = t.get("token").map(|f| secret(cx, &f));
    let viewer_token = t.get("viewer_token").map(|f| secret(cx, &f));
    let metrics_token = t.get("metrics_token").map(|f| secret(cx, &f));
    t.finish(cx);
    Some(AdminConfig {
        token: match token {
            None => None,
            Some(resolved) => Some(resolved?),
        },
        viewer_token: match viewer_token {
            None => None,
            Some(resolved) => Some(resolved?),
        },
        metrics_token: match metrics_token {
            None => None,
            Some(resolved) => Some(resolved?),
        },
    })
}

fn read_store(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<StoreConfig> {
    let mut t = table(cx, f.node, &f.path, STORE_KEYS)?;
    let url = t.get("url");
    let password = t.get("password").map(|p| (secret(cx, &p), p));
    t.finish(cx);
    let Some(url) = url else {
        cx.problem(&f.node.span, &f.path, "missing key `url` (`\"sqlite\"` or a `postgres://` URL)");
        return None;
    };
    let text = non_empty_string(cx, &url)?;
    if text == "sqlite" {
        if let Some((_, p)) = password {
            cx.problem(&p.node.span, &p.path, "only a PostgreSQL store takes a password");
            return None;
        }
        return Some(StoreConfig::Sqlite);
    }
    let parsed = match Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => u,
        Ok(_) | Err(_) => {
            cx.problem(&url.node.span, &url.path, "expected `\"sqlite\"` or a `postgres://user@host/database` URL");
            return None;
        }
    };
    if parsed.host_str().is_none_or(str::is_empty) {
        cx.problem(&url.node.span, &url.path, "a PostgreSQL URL needs a host");
        return None;
    }
    if parsed.password().is_some() {
        // Said without quoting the URL: it holds the password.
        cx.problem(
            &url.node.span,
            &url.path,
            "must not hold a password; give it by reference: `password = \"env:NAME\"` (or `file:PATH`)",
        );
        return None;
    }
    let password = match password {
        None => None,
        Some((resolved, _)) => Some(resolved?),
    };
    Some(StoreConfig::Postgres { url: parsed, password })
}

fn read_http(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<HttpLimits> {
    let mut t = table(cx, f.node, &f.path, HTTP_KEYS)?;
    let d = HttpLimits::default();
    let mut millis = |cx: &mut Cx<'_>, key: &str, min: u64, max: u64, default: std::time::Duration| match t.get(key) {
        Some(f) => integer(cx, &f, min, max).map(std::time::Duration::from_millis),
        None => Some(default),
    };
    let header_read_timeout = millis(cx, "header_read_timeout_ms", 100, 60_000, d.header_read_timeout);
    let body_read_timeout = millis(cx, "body_read_timeout_ms", 100, 300_000, d.body_read_timeout);
    let idle_timeout = millis(cx, "idle_timeout_ms", 100, 3_600_000, d.idle_timeout);
    let request_timeout = millis(cx, "request_timeout_ms", 1_000, 600_000, d.request_timeout);
    let max_connections_field = t.get("max_connections");
    let mut count = |cx: &mut Cx<'_>, key: &str, min: u64, max: u64, default: usize| match t.get(key) {
        Some(f) => integer(cx, &f, min, max).map(|v| v as usize),
        None => Some(default),
    };
    let max_intake_requests = count(cx, "max_intake_requests", 1, 65_536, d.max_intake_requests);
    let max_admin_requests = count(cx, "max_admin_requests", 1, 65_536, d.max_admin_requests);
    let max_health_requests = count(cx, "max_health_requests", 1, 65_536, d.max_health_requests);
    let max_connections = match &max_connections_field {
        Some(f) => integer(cx, f, 16, 1_000_000).map(|v| v as usize),
        None => Some(d.max_connections),
    };
    t.finish(cx);
    let limits = HttpLimits {
        header_read_timeout: header_read_timeout?,
        body_read_timeout: body_read_timeout?,
        idle_timeout: idle_timeout?,
        request_timeout: request_timeout?,
        max_connections: max_connections?,
        max_intake_requests: max_intake_requests?,
        max_admin_requests: max_admin_requests?,
        max_health_requests: max_health_requests?,
    };
    // With fewer connections than requests in progress, every connection could be busy and a health probe would
    // find no idle one to take the place of.
    if limits.max_connections <= limits.max_requests() {
        let span = max_connections_field.as_ref().map_or(&f.node.span, |m| &m.node.span);
        let path = max_connections_field.as_ref().map_or(f.path.clone(), |m| m.path.clone());
        cx.problem(
            span,
            &path,
            format!(
                "must be more than max_intake_requests + max_admin_requests + max_health_requests ({}), so that a \
                 new connection always finds an idle one to take the place of",
                limits.max_requests()
            ),
        );
        return None;
    }
    if limits.body_read_timeout > limits.request_timeout {
        cx.problem(&f.node.span, &f.path, "body_read_timeout_ms must not be longer than request_timeout_ms");
        return None;
    }
    Some(limits)
}

fn read_connection(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<ConnectionConfig> {
    let mut t = table(cx, f.node, &f.path, CONNECTION_KEYS)?;
    let name = t.require(cx, "name").and_then(|f| non_empty_string(cx, &f)).map(str::to_string);

    let kind = t.require(cx, "kind").and_then(|f| {
        let s = string(cx, &f)?;
        match s {
            "genesys" => Some(Platform::Genesys),
            "cxone" => Some(Platform::Cxone),
            _ => {
                cx.problem(&f.node.span, &f.path, format!("unknown kind {s:?}; expected \"genesys\" or \"cxone\""));
                None
            }
        }
    });

    let region = t.get("region");
    let base_url = t.get("base_url");
    let endpoint = match (region, base_url) {
        (Some(_), Some(b)) => {
            cx.problem(&b.node.span, &b.path, "set either `region` or `base_url`, not both");
            None
        }
        // CXone has one global auth host; the API host is discovered from the token's tenant.
        (None, None) if kind == Some(Platform::Cxone) => {
            let url = Url::parse(crate::CXONE_AUTH_URL).ok()?;
            Some(Endpoint { region: None, api_base: url.clone(), login_base: url })
        }
        (None, None) => {
            cx.problem(
                &t.span,
                &t.path,
                "missing `region` (e.g. \"eu_west_1\") or `base_url` (e.g. the sandbox's URL)",
            );
            None
        }
        (Some(r), None) if kind == Some(Platform::Cxone) => {
            cx.problem(
                &r.node.span,
                &r.path,
                "`region` is for Genesys; a CXone connection discovers its API host (set `base_url` only to use \
                 another auth host, e.g. FedRAMP or a sandbox)",
            );
            None
        }
        (Some(r), None) => read_region(cx, &r),
        (None, Some(b)) => read_base_url(cx, &b),
    };

    let client_id = t.require(cx, "client_id").and_then(|f| plain_or_reference(cx, &f));
    let client_secret = t.require(cx, "client_secret").and_then(|f| secret(cx, &f));
    let primary =
        client_id.zip(client_secret).map(|(client_id, client_secret)| ClientCredentials { client_id, client_secret });

    let requests_per_minute = match t.get("requests_per_minute") {
        Some(f) => integer(cx, &f, 1, 100_000).map(|v| v as u32),
        None => Some(DEFAULT_REQUESTS_PER_MINUTE),
    };

    let extra = match t.get("extra_clients") {
        Some(f) => array(cx, &f, "an array of { client_id, client_secret } tables")
            .and_then(|list| all_of(items(list, &f.path).map(|item| read_client(cx, &item)))),
        None => Some(Vec::new()),
    };

    let system_codes = match t.get("system_codes") {
        Some(f) => string_list(cx, &f),
        None => Some(Vec::new()),
    };

    let catalog_ttl = match t.get("catalog_ttl_secs") {
        Some(f) => integer(cx, &f, 1, 86_400),
        None => Some(DEFAULT_CATALOG_TTL_SECS),
    }
    .map(std::time::Duration::from_secs);

    let catalog = match t.get("catalog") {
        Some(f) => non_empty_string(cx, &f).map(|p| Some(cx.base_dir.join(p))),
        None => Some(None),
    };

    let request_timeout = match t.get("request_timeout_ms") {
        Some(f) => integer(cx, &f, 100, 120_000),
        None => Some(DEFAULT_REQUEST_TIMEOUT_MS),
    }
    .map(std::time::Duration::from_millis);

    // 0 turns the periodic pass off (on-demand passes still run).
    let reconcile_every = match t.get("reconcile_every_secs") {
        Some(f) => integer(cx, &f, 0, 86_400),
        None => Some(DEFAULT_RECONCILE_EVERY_SECS),
    }
    .map(std::time::Duration::from_secs);
    let reconcile_window = match t.get("reconcile_window_secs") {
        Some(f) => integer(cx, &f, 60, 31 * 86_400),
        None => Some(DEFAULT_RECONCILE_WINDOW_SECS),
    }
    .map(std::time::Duration::from_secs);

    let acw_estimate_default = match t.get("acw_estimate_default_secs") {
        Some(f) => integer(cx, &f, 1, 3600),
        None => Some(DEFAULT_ACW_ESTIMATE_SECS),
    }
    .map(std::time::Duration::from_secs);
    let conversation_shows_provisional = match t.get("conversation_shows_provisional") {
        Some(f) if kind == Some(Platform::Cxone) => {
            cx.problem(&f.node.span, &f.path, "`conversation_shows_provisional` applies only to Genesys connections");
            None
        }
        Some(f) => boolean(cx, &f),
        None => Some(false),
    };

    let cxone = if kind == Some(Platform::Cxone) {
        read_cxone(cx, &mut t)
    } else {
        for key in CXONE_ONLY_KEYS {
            if let Some(f) = t.get(key) {
                cx.problem(&f.node.span, &f.path, format!("`{key}` applies only to connections with kind = \"cxone\""));
            }
        }
        Some(None)
    };
    if kind == Some(Platform::Cxone) {
        for key in ["extra_clients", "intake"] {
            if let Some(f) = t.get(key) {
                let why = if key == "intake" {
                    "CXone pushes no events: a CXone connection finds ACW itself (see `acw_detection`)"
                } else {
                    "a CXone connection uses one access key"
                };
                cx.problem(&f.node.span, &f.path, format!("`{key}` is not available here: {why}"));
            }
        }
    }

    let intake = match t.get("intake") {
        Some(f) => read_intake(cx, &f),
        None => Some(IntakeConfig {
            api_key_header: DEFAULT_INTAKE_KEY_HEADER.into(),
            api_key: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            websocket: WebsocketIntake::default(),
            auth: IntakeAuth::ApiKey,
        }),
    };
    let lookup = match t.get("lookup") {
        Some(f) => {
            let lookup = read_lookup(cx, &f);
            if kind == Some(Platform::Cxone) && lookup.as_ref().is_some_and(|l| l.api_key.is_none()) {
                cx.problem(
                    &f.node.span,
                    &f.path,
                    "a CXone connection's lookup needs `api_key` (a CXone connection has no intake whose key it could \
                     share)",
                );
            }
            lookup
        }
        None => Some(LookupConfig::default()),
    };
    let decisions = match t.get("decisions") {
        Some(f) => {
            let decisions = read_decisions(cx, &f);
            if kind == Some(Platform::Cxone) && decisions.as_ref().is_some_and(|d| d.api_key.is_none()) {
                cx.problem(
                    &f.node.span,
                    &f.path,
                    "a CXone connection's decisions need `api_key` (a CXone connection has no intake whose key they \
                     could share)",
                );
            }
            decisions.map(Some)
        }
        None => Some(None),
    };
    t.finish(cx);

    let mut clients = vec![primary?];
    clients.extend(extra?);
    Some(ConnectionConfig {
        name: name?,
        kind: kind?,
        endpoint: endpoint?,
        clients,
        requests_per_minute: requests_per_minute?,
        system_codes: system_codes?,
        catalog_ttl: catalog_ttl?,
        catalog: catalog?,
        request_timeout: request_timeout?,
        reconcile_every: reconcile_every?,
        reconcile_window: reconcile_window?,
        intake: intake?,
        lookup: lookup?,
        decisions: decisions?,
        conversation_shows_provisional: conversation_shows_provisional?,
        acw_estimate_default: acw_estimate_default?,
        cxone: cxone?,
    })
}

fn read_cxone(cx: &mut Cx<'_>, t: &mut Table<'_>) -> Option<Option<CxoneSettings>> {
    let access_key_id = t.require(cx, "access_key_id").and_then(|f| plain_or_reference(cx, &f));
    let access_key_secret = t.require(cx, "access_key_secret").and_then(|f| secret(cx, &f));
    let acw_detection = match t.get("acw_detection") {
        Some(f) => match string(cx, &f)? {
            "polling" => Some(AcwDetection::Polling),
            "sessions" => Some(AcwDetection::Sessions),
            other => {
                cx.problem(
                    &f.node.span,
                    &f.path,
                    format!("unknown acw_detection {other:?}; expected \"polling\" or \"sessions\""),
                );
                None
            }
        },
        None => Some(AcwDetection::default()),
    };
    let poll_interval = match t.get("poll_interval_ms") {
        Some(f) => integer(cx, &f, 100, 60_000),
        None => Some(DEFAULT_CXONE_POLL_INTERVAL_MS),
    }
    .map(std::time::Duration::from_millis);
    let agent_state_after_write = match t.get("agent_state_after_write") {
        Some(f) => match string(cx, &f)? {
            "Available" => Some(Some("Available".to_string())),
            other => {
                cx.problem(
                    &f.node.span,
                    &f.path,
                    format!("unsupported agent_state_after_write {other:?}; the one supported state is \"Available\""),
                );
                None
            }
        },
        None => Some(None),
    };
    Some(Some(CxoneSettings {
        access_key_id: access_key_id?,
        access_key_secret: access_key_secret?,
        acw_detection: acw_detection?,
        poll_interval: poll_interval?,
        agent_state_after_write: agent_state_after_write?,
    }))
}

fn read_region(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<Endpoint> {
    let region = string(cx, f)?;
    let Some(domain) = crate::region::genesys_domain(region) else {
        let known = crate::region::GENESYS_REGIONS.iter().map(|(r, _)| *r).collect::<Vec<_>>().join(", ");
        cx.problem(&f.node.span, &f.path, format!("unknown region {region:?}; known: {known}"));
        return None;
    };
    let api_base = Url::parse(&format!("https://api.{domain}/")).ok()?;
    let login_base = Url::parse(&format!("https://login.{domain}/")).ok()?;
    Some(Endpoint { region: Some(region.to_string()), api_base, login_base })
}

fn read_base_url(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<Endpoint> {
    let text = string(cx, f)?;
    let problem = match Url::parse(text) {
        Err(e) => Err(format!("invalid URL: {e}")),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => Err("the URL must start with http:// or https://".into()),
        Ok(u) if u.host_str().is_none_or(str::is_empty) => Err("the URL has no host".into()),
        // Credentials belong in client_id / client_secret, by reference.
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            Err("the URL must not contain credentials".into())
        }
        Ok(u) if u.query().is_some() || u.fragment().is_some() => {
            Err("the URL must not have a query or fragment".into())
        }
        Ok(u) => Ok(u),
    };
    match problem {
        Ok(url) => Some(Endpoint { region: None, api_base: url.clone(), login_base: url }),
        Err(message) => {
            cx.problem(&f.node.span, &f.path, message);
            None
        }
    }
}

fn read_client(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<ClientCredentials> {
    let mut t = table(cx, f.node, &f.path, CLIENT_KEYS)?;
    let client_id = t.require(cx, "client_id").and_then(|f| plain_or_reference(cx, &f));
    let client_secret = t.require(cx, "client_secret").and_then(|f| secret(cx, &f));
    t.finish(cx);
    Some(ClientCredentials { client_id: client_id?, client_secret: client_secret? })
}

fn read_intake(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<IntakeConfig> {
    let mut t = table(cx, f.node, &f.path, INTAKE_KEYS)?;
    let api_key_header = match t.get("api_key_header") {
        Some(f) => header_name(cx, &f),
        None => Some(DEFAULT_INTAKE_KEY_HEADER.to_string()),
    };
    let api_key = match t.get("api_key") {
        Some(f) => secret(cx, &f).map(Some),
        None => Some(None),
    };
    let max_body_bytes = match t.get("max_body_bytes") {
        Some(f) => integer(cx, &f, 1024, 64 << 20).map(|v| v as usize),
        None => Some(DEFAULT_MAX_BODY_BYTES),
    };
    let websocket = match t.get("websocket") {
        Some(f) => read_websocket(cx, &f),
        None => Some(WebsocketIntake::default()),
    };
    let auth = read_intake_auth(cx, &mut t);
    t.finish(cx);
    Some(IntakeConfig {
        api_key_header: api_key_header?,
        api_key: api_key?,
        max_body_bytes: max_body_bytes?,
        websocket: websocket?,
        auth: auth?,
    })
}

/// An HTTP header name, lower-cased.
fn header_name(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<String> {
    let h = string(cx, f)?;
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !h.is_empty() && h.chars().all(token) {
        Some(h.to_ascii_lowercase())
    } else {
        cx.problem(&f.node.span, &f.path, format!("{h:?} is not a valid HTTP header name"));
        None
    }
}

fn read_lookup(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<LookupConfig> {
    let mut t = table(cx, f.node, &f.path, LOOKUP_KEYS)?;
    let fallback_code = match t.get("fallback_code") {
        Some(f) => non_empty_string(cx, &f).map(|s| Some(s.to_string())),
        None => Some(None),
    };
    let api_key = own_api_key(cx, &mut t);
    t.finish(cx);
    Some(LookupConfig { fallback_code: fallback_code?, api_key: api_key? })
}

/// The decision API's own key, like the lookup's.
fn read_decisions(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<DecisionsConfig> {
    let mut t = table(cx, f.node, &f.path, DECISIONS_KEYS)?;
    let api_key = own_api_key(cx, &mut t);
    t.finish(cx);
    Some(DecisionsConfig { api_key: api_key? })
}

/// `api_key` and `api_key_header` of a route that may have a key of its own: `(header, key)`.
fn own_api_key(cx: &mut Cx<'_>, t: &mut Table<'_>) -> Option<Option<(String, Secret)>> {
    let header = match t.get("api_key_header") {
        Some(f) => header_name(cx, &f).map(Some),
        None => Some(None),
    };
    let key = match t.get("api_key") {
        Some(f) => secret(cx, &f).map(Some),
        None => Some(None),
    };
    if let (Some(Some(_)), Some(None)) = (&header, &key) {
        cx.problem(&t.span, &t.path, "`api_key_header` names the header of `api_key`, which is not set");
    }
    let (header, key) = (header?, key?);
    Some(key.map(|k| (header.unwrap_or_else(|| DEFAULT_INTAKE_KEY_HEADER.to_string()), k)))
}

fn read_decision_hook(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<DecisionHookConfig> {
    let mut t = table(cx, f.node, &f.path, HOOK_KEYS)?;
    let name = t.require(cx, "name").and_then(|f| non_empty_string(cx, &f)).map(str::to_string);
    let url = t.require(cx, "url").and_then(|f| {
        let s = string(cx, &f)?;
        match Url::parse(s) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            Ok(_) => {
                cx.problem(&f.node.span, &f.path, format!("{s:?} is not an http(s) URL with a host"));
                None
            }
            Err(e) => {
                cx.problem(&f.node.span, &f.path, format!("{s:?} is not a URL: {e}"));
                None
            }
        }
    });
    let secret = t.require(cx, "secret").and_then(|f| {
        let value = secret(cx, &f)?;
        SigningSecret::parse(value.expose()).map_err(|message| cx.problem(&f.node.span, &f.path, message)).ok()
    });
    let timeout = match t.get("timeout_ms") {
        Some(f) => integer(cx, &f, 100, 60_000).map(std::time::Duration::from_millis),
        None => Some(std::time::Duration::from_millis(DEFAULT_DECISION_HOOK_TIMEOUT_MS)),
    };
    t.finish(cx);
    Some(DecisionHookConfig { name: name?, url: url?, secret: secret?, timeout: timeout? })
}

/// `auth` and `signing_secret`, and the keys that contradict them. Reads `api_key` / `api_key_header` only to
/// locate a contradiction (they have been read already).
fn read_intake_auth(cx: &mut Cx<'_>, t: &mut Table<'_>) -> Option<IntakeAuth> {
    let webhooks = match t.get("auth") {
        Some(f) => match string(cx, &f)? {
            "api_key" => false,
            "standard_webhooks" => true,
            other => {
                cx.problem(
                    &f.node.span,
                    &f.path,
                    format!("unknown intake auth {other:?}; expected \"api_key\" or \"standard_webhooks\""),
                );
                return None;
            }
        },
        None => false,
    };
    let signing_secret = t.get("signing_secret");
    if !webhooks {
        if let Some(f) = signing_secret {
            cx.problem(&f.node.span, &f.path, "`signing_secret` is used only with auth = \"standard_webhooks\"");
            return None;
        }
        return Some(IntakeAuth::ApiKey);
    }
    let mut ok = true;
    for key in ["api_key", "api_key_header"] {
        if let Some(f) = t.get(key) {
            cx.problem(
                &f.node.span,
                &f.path,
                format!("`{key}` is not used with auth = \"standard_webhooks\" (requests are signed); remove it"),
            );
            ok = false;
        }
    }
    let Some(f) = signing_secret else {
        cx.problem(
            &t.span,
            &t.path,
            "auth = \"standard_webhooks\" needs `signing_secret`, a `whsec_…` secret by reference (`env:NAME`)",
        );
        return None;
    };
    let secret = secret(cx, &f)?;
    match SigningSecret::parse(secret.expose()) {
        Ok(signing_secret) if ok => Some(IntakeAuth::StandardWebhooks { signing_secret }),
        Ok(_) => None,
        Err(message) => {
            cx.problem(&f.node.span, &f.path, message);
            None
        }
    }
}

fn read_websocket(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<WebsocketIntake> {
    let mut t = table(cx, f.node, &f.path, WEBSOCKET_KEYS)?;
    let enabled = t.get("enabled").map_or(Some(false), |f| boolean(cx, &f));
    let queues = t.get("queues").map_or(Some(Vec::new()), |f| string_list(cx, &f));
    if enabled == Some(true) && queues.as_ref().is_some_and(Vec::is_empty) {
        cx.problem(&t.span, &t.path, "an enabled websocket intake needs at least one queue in `queues`");
    }
    t.finish(cx);
    Some(WebsocketIntake { enabled: enabled?, queues: queues? })
}

// ---- rules ----

/// Names rules may refer to.
struct Known<'a> {
    connections: &'a [&'a str],
    hooks: &'a [&'a str],
}

fn read_rule(cx: &mut Cx<'_>, f: &Field<'_>, known: &Known<'_>) -> Option<Rule> {
    let connections = known.connections;
    let mut t = table(cx, f.node, &f.path, RULE_KEYS)?;
    let name = t.require(cx, "name").and_then(|f| non_empty_string(cx, &f)).map(str::to_string);
    let code = t.require(cx, "code").and_then(|f| non_empty_string(cx, &f)).map(str::to_string);
    let notes = match t.get("notes") {
        Some(f) => string(cx, &f).and_then(|s| match NotesTemplate::parse(s) {
            Ok(tpl) => Some(Some(tpl)),
            Err(e) => {
                cx.problem(&f.node.span, &f.path, e.to_string());
                None
            }
        }),
        None => Some(None),
    };
    let timing = match t.get("timing") {
        Some(f) => read_timing(cx, &f),
        None => Some(Timing::Immediate),
    };
    let mode = match t.get("mode") {
        Some(f) => named::<Mode>(cx, &f),
        None => Some(Mode::Enforce),
    };
    let platform = match t.get("platform") {
        Some(f) => named::<Platform>(cx, &f).map(Some),
        None => Some(None),
    };
    let connection = match &t.get("connection") {
        Some(f) => non_empty_string(cx, f).and_then(|name| {
            if !connections.contains(&name) {
                let known = if connections.is_empty() { "none".to_string() } else { connections.join(", ") };
                cx.problem(
                    &f.node.span,
                    &f.path,
                    format!("rule names connection {name:?}, which is not configured (known: {known})"),
                );
                return None;
            }
            Some(Some(name.to_string()))
        }),
        None => Some(None),
    };
    let when = match t.get("when") {
        Some(f) => read_when(cx, &f),
        None => Some(Conditions::default()),
    };
    let decide = match t.get("decide") {
        Some(f) => read_decide(cx, &f, known.hooks).map(Some),
        None => Some(None),
    };
    t.finish(cx);
    Some(Rule {
        name: name?,
        when: when?,
        code: code?,
        notes: notes?,
        timing: timing?,
        mode: mode?,
        platform: platform?,
        connection: connection?,
        decide: decide?,
    })
}

/// `decide = { crm = true | hook = "<name>", wait = "20s", fallback = "rule" | "<code name>" }`.
fn read_decide(cx: &mut Cx<'_>, f: &Field<'_>, hooks: &[&str]) -> Option<DecideSpec> {
    const HELP: &str = "write { crm = true, wait = \"20s\" } or { hook = \"<name>\", wait = \"5s\" }";
    let mut t = table(cx, f.node, &f.path, DECIDE_KEYS)?;
    let crm = t.get("crm").map_or(Some(false), |f| boolean(cx, &f));
    let hook = match t.get("hook") {
        Some(f) => non_empty_string(cx, &f).and_then(|name| {
            if hooks.contains(&name) {
                return Some(Some(name.to_string()));
            }
            let known = if hooks.is_empty() { "none".to_string() } else { hooks.join(", ") };
            cx.problem(
                &f.node.span,
                &f.path,
                format!(
                    "rule asks decision hook {name:?}, which is not configured in [[decision_hooks]] (known: {known})"
                ),
            );
            None
        }),
        None => Some(None),
    };
    let wait = t.require(cx, "wait").and_then(|f| {
        let d = duration(cx, &f)?;
        if d <= jiff::SignedDuration::ZERO || d > jiff::SignedDuration::from_hours(1) {
            cx.problem(&f.node.span, &f.path, "`wait` must be more than 0 s and at most 1 h");
            return None;
        }
        Some(d)
    });
    let fallback = match t.get("fallback") {
        Some(f) => {
            non_empty_string(cx, &f).map(|s| if s == "rule" { Fallback::Rule } else { Fallback::Code(s.to_string()) })
        }
        None => Some(Fallback::Rule),
    };
    t.finish(cx);
    let from = match (crm?, hook?) {
        (true, None) => DecideFrom::Crm,
        (false, Some(hook)) => DecideFrom::Hook(hook),
        (true, Some(_)) => {
            cx.problem(&f.node.span, &f.path, format!("a rule waits for the CRM or asks a hook, not both; {HELP}"));
            return None;
        }
        (false, None) => {
            cx.problem(&f.node.span, &f.path, format!("say who decides; {HELP}"));
            return None;
        }
    };
    Some(DecideSpec { from, wait: wait?, fallback: fallback? })
}

fn read_timing(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<Timing> {
    const HELP: &str = "write \"immediate\", { before_timeout = \"10s\" } or { after = \"30s\" }";
    match &f.node.value {
        Value::String(s) if s == "immediate" => Some(Timing::Immediate),
        Value::String(s) => {
            cx.problem(&f.node.span, &f.path, format!("unknown timing {s:?}; {HELP}"));
            None
        }
        Value::Table(_) => {
            let mut t = table(cx, f.node, &f.path, TIMING_KEYS)?;
            let before = t.get("before_timeout");
            let after = t.get("after");
            t.finish(cx);
            match (before, after) {
                (Some(b), None) => duration(cx, &b).map(|margin| Timing::BeforeTimeout { margin }),
                (None, Some(a)) => duration(cx, &a).map(|delay| Timing::After { delay }),
                (Some(_), Some(a)) => {
                    cx.problem(&a.node.span, &f.path, format!("a timing is one of its kinds, not both; {HELP}"));
                    None
                }
                (None, None) => {
                    // Unknown keys were reported by finish(); only an empty table is new here.
                    if matches!(&f.node.value, Value::Table(e) if e.is_empty()) {
                        cx.problem(&f.node.span, &f.path, format!("empty timing; {HELP}"));
                    }
                    None
                }
            }
        }
        _ => {
            cx.wrong_type(f.node, &f.path, "a string or a table");
            None
        }
    }
}

/// A duration up to `max_ms` (`longest` says it in words).
pub(crate) fn duration_within(
    cx: &mut Cx<'_>,
    f: &Field<'_>,
    max_ms: i64,
    longest: &str,
) -> Option<jiff::SignedDuration> {
    let s = string(cx, f)?;
    crate::duration::parse_within(s, max_ms, longest).map_err(|e| cx.problem(&f.node.span, &f.path, e)).ok()
}

fn duration(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<jiff::SignedDuration> {
    let s = string(cx, f)?;
    crate::duration::parse(s).map_err(|e| cx.problem(&f.node.span, &f.path, e)).ok()
}

fn read_when(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<Conditions> {
    let mut t = table(cx, f.node, &f.path, WHEN_KEYS)?;
    fn opt<T>(field: Option<Field<'_>>, read: impl FnOnce(&Field<'_>) -> Option<T>) -> Option<Option<T>> {
        match field {
            Some(f) => read(&f).map(Some),
            None => Some(None),
        }
    }
    let channel = opt(t.get("channel"), |f| choice_matcher::<Channel>(cx, f));
    let direction = opt(t.get("direction"), |f| choice_matcher::<Direction>(cx, f));
    let queue = opt(t.get("queue"), |f| string_matcher(cx, f));
    let disconnect_type = opt(t.get("disconnect_type"), |f| string_matcher(cx, f));
    let campaign = opt(t.get("campaign"), |f| string_matcher(cx, f));
    let talk_ms = opt(t.get("talk_ms"), |f| number_matcher(cx, f));
    let hold_ms = opt(t.get("hold_ms"), |f| number_matcher(cx, f));
    let acw_timeout_ms = opt(t.get("acw_timeout_ms"), |f| number_matcher(cx, f));
    let attributes = match t.get("attributes") {
        Some(f) => read_attributes(cx, &f),
        None => Some(BTreeMap::new()),
    };
    t.finish(cx);
    Some(Conditions {
        channel: channel?,
        direction: direction?,
        queue: queue?,
        disconnect_type: disconnect_type?,
        campaign: campaign?,
        talk_ms: talk_ms?,
        hold_ms: hold_ms?,
        acw_timeout_ms: acw_timeout_ms?,
        attributes: attributes?,
    })
}

fn read_attributes(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<BTreeMap<String, StringMatcher>> {
    let Value::Table(entries) = &f.node.value else {
        cx.wrong_type(f.node, &f.path, "a table of attribute name = matcher");
        return None;
    };
    let read = all_of(entries.iter().map(|(key, node)| {
        let field = Field { node, path: child(&f.path, &key.name) };
        string_matcher(cx, &field).map(|m| (key.name.clone(), m))
    }));
    read.map(|pairs| pairs.into_iter().collect())
}

/// Reads the single operator of a `{ op = value }` matcher table.
fn single_operator<'n>(
    cx: &mut Cx<'_>,
    f: &Field<'n>,
    keys: &'static [&'static str],
) -> Option<(&'static str, Field<'n>)> {
    let mut t = table(cx, f.node, &f.path, keys)?;
    let present: Vec<_> = keys.iter().filter_map(|k| t.get(k).map(|field| (*k, field))).collect();
    t.finish(cx);
    let mut present = present.into_iter();
    match (present.next(), present.next()) {
        (Some(op), None) => Some(op),
        (None, _) => {
            if t_is_empty(f.node) {
                cx.problem(&f.node.span, &f.path, format!("write exactly one of: {}", keys.join(", ")));
            }
            None
        }
        (Some(_), Some((_, second))) => {
            cx.problem(&second.node.span, &f.path, format!("write exactly one of: {} (not several)", keys.join(", ")));
            None
        }
    }
}

fn t_is_empty(node: &Node) -> bool {
    matches!(&node.value, Value::Table(e) if e.is_empty())
}

fn string_matcher(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<StringMatcher> {
    match &f.node.value {
        Value::String(s) => Some(StringMatcher::Equals(s.clone())),
        Value::Table(_) => {
            let (op, value) = single_operator(cx, f, STRING_MATCHER_KEYS)?;
            match op {
                "equals" => string(cx, &value).map(|s| StringMatcher::Equals(s.to_string())),
                "one_of" => non_empty_list(cx, &value).map(StringMatcher::OneOf),
                "regex" => {
                    let source = string(cx, &value)?;
                    match Pattern::new(source) {
                        Ok(p) => Some(StringMatcher::Regex(p)),
                        Err(e) => {
                            cx.problem(&value.node.span, &value.path, regex_message(&e.to_string()));
                            None
                        }
                    }
                }
                _ => boolean(cx, &value).map(StringMatcher::Exists),
            }
        }
        _ => {
            cx.wrong_type(f.node, &f.path, "a string or a table with one of equals, one_of, regex, exists");
            None
        }
    }
}

/// The regex crate's messages span several lines (pattern, caret, error); keep the error line.
fn regex_message(message: &str) -> String {
    let last = message.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(message).trim();
    let last = last.strip_prefix("error: ").unwrap_or(last);
    format!("invalid regex: {last}")
}

fn non_empty_list(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<Vec<String>> {
    let list = array(cx, f, "an array of strings")?;
    if list.is_empty() {
        cx.problem(&f.node.span, &f.path, "one_of needs at least one value");
        return None;
    }
    all_of(items(list, &f.path).map(|item| string(cx, &item).map(str::to_string)))
}

fn choice_matcher<T: DeserializeOwned>(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<ChoiceMatcher<T>> {
    match &f.node.value {
        Value::String(_) => named(cx, f).map(ChoiceMatcher::Equals),
        Value::Table(_) => {
            let (op, value) = single_operator(cx, f, CHOICE_MATCHER_KEYS)?;
            if op == "equals" {
                return named(cx, &value).map(ChoiceMatcher::Equals);
            }
            let list = array(cx, &value, "an array of strings")?;
            if list.is_empty() {
                cx.problem(&value.node.span, &value.path, "one_of needs at least one value");
                return None;
            }
            all_of(items(list, &value.path).map(|item| named::<T>(cx, &item))).map(ChoiceMatcher::OneOf)
        }
        _ => {
            cx.wrong_type(f.node, &f.path, "a string or a table with equals or one_of");
            None
        }
    }
}

fn number_matcher(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<NumberMatcher> {
    let ops = match &f.node.value {
        Value::Integer(_) => NumberOps { eq: Some(integer(cx, f, 0, i64::MAX as u64)?), ..NumberOps::default() },
        Value::Table(_) => {
            let mut t = table(cx, f.node, &f.path, NUMBER_MATCHER_KEYS)?;
            let mut bound = |key: &str| match t.get(key) {
                Some(field) => integer(cx, &field, 0, i64::MAX as u64).map(Some),
                None => Some(None),
            };
            let (lt, lte, gt, gte, eq) = (bound("lt"), bound("lte"), bound("gt"), bound("gte"), bound("eq"));
            t.finish(cx);
            NumberOps { lt: lt?, lte: lte?, gt: gt?, gte: gte?, eq: eq? }
        }
        _ => {
            cx.wrong_type(f.node, &f.path, "an integer or a table of lt, lte, gt, gte, eq");
            return None;
        }
    };
    NumberMatcher::new(ops).map_err(|e| cx.problem(&f.node.span, &f.path, e.to_string())).ok()
}
