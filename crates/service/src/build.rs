//! From a validated [`Config`] to a runnable [`ServiceSpec`]: one platform client per connection, the rule set,
//! intake settings, the store.

use crate::app::{ConnectionSpec, ServiceSpec};
use crate::cxone::{CxonePlatform, DetectionSpec};
use crate::decisions::hook::DecisionHook;
use crate::decisions::DecisionSettings;
use crate::genesys::GenesysPlatform;
use crate::intake::IntakeSettings;
use crate::intake_auth::{IntakeAuth, StandardWebhooks};
use crate::lookup::LookupSettings;
use crate::platform::SharedPlatform;
use crate::reconciler::{ReconcileSettings, ReconcileSpec};
use crate::scheduler::SchedulerSettings;
use crate::websocket::WebsocketSpec;
use crate::worker::RetryPolicy;
use anyhow::{bail, Context};
use jiff::SignedDuration;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use wrapup_config::{Config, ConnectionConfig, IntakeAuth as IntakeAuthConfig};
use wrapup_connectors::cxone::{AgentStateRequest, CxoneClient, CxoneConnection};
use wrapup_connectors::genesys::{GenesysClient, GenesysConnection};
use wrapup_core::clock::SharedClock;
use wrapup_core::Platform;
use wrapup_store::Store;

/// The system code the platform stamps when a time-boxed ACW runs out (Genesys "Default Wrap-up Code").
pub const GENESYS_SYSTEM_CODES: [&str; 2] = ["ININ-WRAP-UP-TIMEOUT", "7fb334b0-0e9e-11e4-9191-0800200c9a66"];

/// Builds the platform client of one connection.
pub fn platform_for(conn: &ConnectionConfig, clock: SharedClock) -> anyhow::Result<SharedPlatform> {
    Ok(connection_for(conn, clock)?.0)
}

/// The platform of one connection and, for Genesys, its client (the same one, so that the websocket intake shares
/// its budget, tokens and attempt counts).
pub fn connection_for(
    conn: &ConnectionConfig,
    clock: SharedClock,
) -> anyhow::Result<(SharedPlatform, Option<GenesysClient>)> {
    match conn.kind {
        Platform::Genesys => {
            let credentials =
                conn.clients.iter().map(|c| (c.client_id.clone(), c.client_secret.clone())).collect::<Vec<_>>();
            let genesys = GenesysConnection {
                name: conn.name.clone(),
                base_url: conn.endpoint.api_base.clone(),
                login_url: conn.endpoint.login_base.clone(),
                credentials,
                requests_per_minute: conn.requests_per_minute,
                request_timeout: conn.request_timeout,
            };
            let client = GenesysClient::new(genesys, clock, crate::attempts::sink())
                .with_context(|| format!("connection {:?}", conn.name))?;
            let platform = GenesysPlatform::new(client.clone(), &conn.system_codes)
                .with_conversation_showing_provisional(conn.conversation_shows_provisional);
            Ok((Arc::new(platform), Some(client)))
        }
        Platform::Cxone => Ok((cxone_platform(conn, clock)?, None)),
    }
}

/// The CXone platform of one connection (its client and agent-session cache).
pub fn cxone_platform(conn: &ConnectionConfig, clock: SharedClock) -> anyhow::Result<Arc<CxonePlatform>> {
    let settings = conn.cxone.as_ref().with_context(|| format!("connection {:?} has no CXone settings", conn.name))?;
    let app = conn.clients.first().with_context(|| format!("connection {:?} has no client", conn.name))?;
    let mut cx = CxoneConnection::new(
        conn.name.clone(),
        conn.endpoint.login_base.clone(),
        (settings.access_key_id.clone(), settings.access_key_secret.clone()),
        (app.client_id.clone(), app.client_secret.clone()),
    );
    cx.requests_per_minute = conn.requests_per_minute;
    cx.request_timeout = conn.request_timeout;
    let client =
        CxoneClient::new(cx, clock, crate::attempts::sink()).with_context(|| format!("connection {:?}", conn.name))?;
    let state_after = settings.agent_state_after_write.as_ref().map(|_| AgentStateRequest::Available);
    Ok(Arc::new(CxonePlatform::new(client, state_after)))
}

/// The connection's assumed optional-window length (platform time; 20 s if it cannot be represented).
fn acw_estimate_default(conn: &ConnectionConfig) -> SignedDuration {
    SignedDuration::try_from(conn.acw_estimate_default).unwrap_or(SignedDuration::from_secs(20))
}

/// The connection's catalog TTL on the service's clock (5 minutes if the configured value cannot be represented).
fn catalog_ttl(conn: &ConnectionConfig) -> SignedDuration {
    SignedDuration::try_from(conn.catalog_ttl).unwrap_or(SignedDuration::from_secs(300))
}

/// The reconciler's settings of one connection: the configured interval and window, defaults for the rest.
pub fn reconcile_settings(conn: &ConnectionConfig) -> ReconcileSettings {
    ReconcileSettings {
        every: conn.reconcile_every,
        window: SignedDuration::try_from(conn.reconcile_window).unwrap_or(SignedDuration::from_secs(3600)),
        ..ReconcileSettings::default()
    }
}

/// Builds the service from `config`, on `store`.
pub fn spec_from_config(config: &Config, store: Arc<dyn Store>, clock: SharedClock) -> anyhow::Result<ServiceSpec> {
    let rules = Arc::new(config.rules.clone());
    let mut connections = Vec::new();
    for conn in &config.connections {
        if conn.kind == Platform::Cxone {
            let platform = cxone_platform(conn, clock.clone())?;
            let settings = conn.cxone.as_ref().context("a CXone connection without CXone settings")?;
            connections.push(ConnectionSpec {
                name: conn.name.clone(),
                platform: platform.clone(),
                rules: rules.clone(),
                intake: None,
                lookup: conn.lookup.api_key.clone().map(|(header, key)| LookupSettings {
                    auth: IntakeAuth::ApiKey { header, key },
                    fallback_code: conn.lookup.fallback_code.clone(),
                }),
                decisions: conn
                    .decisions
                    .as_ref()
                    .and_then(|d| d.api_key.clone())
                    .map(|(header, key)| DecisionSettings { auth: IntakeAuth::ApiKey { header, key } }),
                catalog_ttl: catalog_ttl(conn),
                acw_estimate_default: acw_estimate_default(conn),
                websocket: None,
                reconcile: None,
                cxone: Some(DetectionSpec {
                    platform,
                    acw_detection: settings.acw_detection,
                    poll_interval: settings.poll_interval,
                    reconcile_every: conn.reconcile_every,
                }),
            });
            continue;
        }
        let (platform, client) = connection_for(conn, clock.clone())?;
        let auth = match &conn.intake.auth {
            IntakeAuthConfig::StandardWebhooks { signing_secret } => {
                IntakeAuth::StandardWebhooks(Arc::new(StandardWebhooks::new(signing_secret.clone())))
            }
            IntakeAuthConfig::ApiKey => match conn.intake.api_key.clone() {
                Some(key) => IntakeAuth::ApiKey { header: conn.intake.api_key_header.to_ascii_lowercase(), key },
                None => bail!(
                    "connection {:?} has no intake api_key: every intake must be authenticated (set \
                     connections.intake.api_key, or auth = \"standard_webhooks\" with a signing_secret)",
                    conn.name
                ),
            },
        };
        let mut system_code_ids: HashSet<String> = GENESYS_SYSTEM_CODES.iter().map(|s| s.to_string()).collect();
        system_code_ids.extend(conn.system_codes.iter().cloned());
        let reconcile = client.as_ref().map(|client| ReconcileSpec {
            client: client.clone(),
            system_code_ids: system_code_ids.clone(),
            settings: reconcile_settings(conn),
        });
        let websocket = match (&conn.intake.websocket, client) {
            (ws, Some(client)) if ws.enabled => {
                Some(WebsocketSpec::new(client, ws.queues.clone(), system_code_ids.clone()))
            }
            (ws, None) if ws.enabled => {
                bail!("connection {:?}: the websocket intake exists only for Genesys connections", conn.name)
            }
            _ => None,
        };
        // A key of the lookup's own, else the intake's auth: a flow calls the lookup as the platform calls intake.
        let lookup_auth = match conn.lookup.api_key.clone() {
            Some((header, key)) => IntakeAuth::ApiKey { header, key },
            None => auth.clone(),
        };
        connections.push(ConnectionSpec {
            name: conn.name.clone(),
            platform,
            rules: rules.clone(),
            lookup: Some(LookupSettings { auth: lookup_auth, fallback_code: conn.lookup.fallback_code.clone() }),
            // Like the lookup: a key of their own, else the intake's auth.
            decisions: conn.decisions.as_ref().map(|d| DecisionSettings {
                auth: match d.api_key.clone() {
                    Some((header, key)) => IntakeAuth::ApiKey { header, key },
                    None => auth.clone(),
                },
            }),
            intake: Some(IntakeSettings { auth, max_body_bytes: conn.intake.max_body_bytes, system_code_ids }),
            catalog_ttl: catalog_ttl(conn),
            acw_estimate_default: acw_estimate_default(conn),
            websocket,
            reconcile,
            cxone: None,
        });
    }
    let decision_hooks =
        config.decision_hooks.iter().map(|h| (h.name.clone(), Arc::new(DecisionHook::new(h)))).collect();
    Ok(ServiceSpec {
        store,
        clock,
        decision_hooks,
        connections,
        admin_token: config.admin.token.clone(),
        viewer_token: config.admin.viewer_token.clone(),
        metrics_token: config.admin.metrics_token.clone(),
        http: config.http,
        scheduler: scheduler_settings(&config.store),
        retry: RetryPolicy::default(),
        deadline_guard: Duration::from_millis(500),
        gate_freshness: Duration::from_secs(1),
        // Genesys confirms a write with its `.acw` event within seconds; without one (or on CXone, whose sweep of
        // completed contacts runs every minute) the code is read back after this.
        confirm_within: Duration::from_secs(5),
        // An embedded SQLite file is used by this process alone; a PostgreSQL database may be shared by replicas,
        // whose leases are theirs until they expire.
        exclusive_store: config.store == wrapup_config::StoreConfig::Sqlite,
        sinks: config.sinks.clone(),
        outbox: crate::outbox::OutboxSettings::default(),
    })
}

/// On the embedded SQLite file a dead run's leases are cleared at the next start, so a long lease costs nothing. On
/// a store shared by replicas nothing clears them: a short lease, renewed while the leg is worked on, is how soon a
/// dead replica's legs are taken over.
fn scheduler_settings(store: &wrapup_config::StoreConfig) -> SchedulerSettings {
    match store {
        wrapup_config::StoreConfig::Sqlite => SchedulerSettings::default(),
        wrapup_config::StoreConfig::Postgres { .. } => {
            SchedulerSettings { lease: std::time::Duration::from_secs(15), ..SchedulerSettings::default() }
        }
    }
}
