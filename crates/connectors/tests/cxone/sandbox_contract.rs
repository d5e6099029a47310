//! The CXone client, session cache, event parser and both ACW detectors against the project's CXone emulator: the
//! two sides of the contract are built from the same platform notes by different hands, so this checks they meet.
//! Every test asserts on the sandbox's ground truth (writes it received, who coded each contact).

use std::collections::HashMap;
use std::time::Duration;
use url::Url;
use wrapup_clock::ScaledClock;
use wrapup_connectors::attempt::discard_attempts;
use wrapup_connectors::cxone::acw::{reconcile, AcwDetector, PollingDetector, SessionDetector, SessionDetectorConfig};
use wrapup_connectors::cxone::events::{acw_timeouts, AcwTimeouts};
use wrapup_connectors::cxone::{
    rejection, AgentSessions, AgentStateRequest, CompletedQuery, CxoneClient, CxoneConnection, NextEvent, Rejection,
};
use wrapup_connectors::{ErrorClass, Priority};
use wrapup_core::catalog::Catalog;
use wrapup_core::{Event, EventKind, LegFacts, Secret};
use wrapup_sandbox::cxone::{CxoneAgentBehaviour, DispositionEndsAcw, RetryAfter, SecondDisposition};
use wrapup_sandbox::{Sandbox, SandboxConfig, SandboxHandle};

struct Bu {
    sandbox: SandboxHandle,
    client: CxoneClient,
}

/// A sandbox whose CXone agents never disposition by themselves (so every code in the truth is ours) with
/// `preload` contacts already in ACW, and a client for it.
async fn start(preload: usize, configure: impl FnOnce(&mut SandboxConfig)) -> Bu {
    let mut cfg = SandboxConfig { traffic_autostart: false, seed: 7, ..Default::default() };
    cfg.cxone.preload = preload;
    cfg.cxone.center.agent =
        CxoneAgentBehaviour { at_disconnect: 0.0, late: 0.0, change_after_api: 0.0, ..Default::default() };
    configure(&mut cfg);
    let clock = ScaledClock::system().shared();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandbox = Sandbox::start(cfg, listener, clock.clone()).await.unwrap();
    let creds = sandbox.cxone_credentials();
    let mut conn = CxoneConnection::new(
        "sandbox-bu",
        Url::parse(&sandbox.base_url()).unwrap(),
        (creds.access_key_id.clone(), Secret::new(creds.access_key_secret.clone())),
        (creds.client_id.clone(), Secret::new(creds.client_secret.clone())),
    );
    conn.requests_per_minute = 6000;
    conn.request_timeout = Duration::from_secs(5);
    let client = CxoneClient::new(conn, clock, discard_attempts()).unwrap();
    Bu { sandbox, client }
}

fn live() -> Priority {
    Priority::live(None)
}

/// LegEnded events from one polling round.
async fn acw_legs(client: &CxoneClient, acw: AcwTimeouts) -> Vec<(Event, LegFacts)> {
    let mut d = PollingDetector::new(client.clone(), Duration::from_millis(10), acw);
    d.next_batch()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match &e.kind {
            EventKind::LegEnded { facts } => Some((e.clone(), (**facts).clone())),
            _ => None,
        })
        .collect()
}

/// A code the leg's skill allows, by id.
fn allowed_code(catalog: &Catalog, facts: &LegFacts) -> i64 {
    let q = catalog.queue_by_id(facts.queue_id.as_deref().unwrap()).unwrap();
    q.code_ids[0].parse().unwrap()
}

/// A code that exists but is not assigned to the leg's skill.
fn foreign_code(catalog: &Catalog, facts: &LegFacts) -> i64 {
    let q = catalog.queue_by_id(facts.queue_id.as_deref().unwrap()).unwrap();
    catalog.codes.iter().find(|c| !q.code_ids.contains(&c.id)).unwrap().id.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_discovery_and_catalog_come_from_the_sandbox() {
    let bu = start(0, |_| {}).await;
    let base = bu.client.api_base().await.unwrap();
    assert_eq!(base.as_str().trim_end_matches('/'), bu.sandbox.base_url().trim_end_matches('/'));
    assert_eq!(bu.client.tenant_id(), Some(bu.sandbox.cxone_credentials().tenant_id));
    let catalog = bu.client.catalog(Priority::reconcile()).await.unwrap();
    assert!(catalog.codes.iter().any(|c| c.name == "Sale completed"));
    let sales = catalog.queue_by_name("Sales Phone").unwrap();
    assert_eq!(sales.code_ids.len(), 4);
    // Disposition required: ACW is held until one is given, so the platform sets no timeout.
    assert_eq!(sales.acw_timeout_ms, None);
    assert_eq!(catalog.queue_by_name("Support Phone").unwrap().acw_timeout_ms, Some(90_000));
    assert!(catalog.queue_by_name("Direct Line").unwrap().code_ids.is_empty(), "204 → no dispositions");
    let stats = bu.client.stats();
    assert_eq!(stats.token_requests_total, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disposition_through_a_joined_session_lands_in_the_ground_truth() {
    let bu = start(4, |_| {}).await;
    let catalog = bu.client.catalog(Priority::reconcile()).await.unwrap();
    let legs = acw_legs(&bu.client, acw_timeouts(&catalog)).await;
    assert!(!legs.is_empty(), "the preloaded contacts are in ACW");
    let sessions = AgentSessions::new(bu.client.clone());
    let (event, facts) = &legs[0];
    let contact: i64 = event.leg.participant.parse().unwrap();
    let agent: i64 = facts.user_id.as_deref().unwrap().parse().unwrap();
    let code = allowed_code(&catalog, facts);

    // Gate read: nothing recorded yet.
    assert_eq!(bu.client.get_contact_disposition(contact, live()).await.unwrap(), None);
    let client = bu.client.clone();
    sessions
        .with_session(agent, live(), |sid| {
            let client = client.clone();
            async move { client.post_disposition_if(&sid, contact, code, Some("by wrapup"), live(), None).await }
        })
        .await
        .unwrap();
    let writes = bu.sandbox.cxone_writes();
    assert_eq!(writes.len(), 1);
    assert_eq!((writes[0].contact_id, writes[0].status, writes[0].in_window), (contact, 200, true));
    assert!(writes[0].violations.is_empty(), "{:?}", writes[0].violations);
    let truth = bu.sandbox.cxone_legs().into_iter().find(|l| l.contact_id == contact).unwrap();
    assert_eq!(truth.final_disposition_id, Some(code));
    assert_eq!(truth.api_writes, 1);
    // The gate read now sees it.
    let recorded = bu.client.get_contact_disposition(contact, live()).await.unwrap().unwrap();
    assert_eq!(recorded.disposition_id, code);
}

/// Posts through the agent's session (joining as needed).
async fn post(
    sessions: &AgentSessions,
    agent: i64,
    contact: i64,
    code: i64,
) -> Result<(), wrapup_connectors::PlatformError> {
    sessions.post_disposition(agent, contact, code, None, live(), None, None).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejection_is_classified_as_the_service_needs_it() {
    // The strict readings: a second disposition is refused, and a disposition does not end ACW by itself.
    let bu = start(6, |c| {
        c.cxone.behaviours.second_disposition = SecondDisposition::Reject409;
        c.cxone.behaviours.disposition_ends_acw = DispositionEndsAcw::KeepsAcw;
    })
    .await;
    let catalog = bu.client.catalog(Priority::reconcile()).await.unwrap();
    let legs = acw_legs(&bu.client, acw_timeouts(&catalog)).await;
    assert!(legs.len() >= 2, "{} legs", legs.len());
    let sessions = AgentSessions::new(bu.client.clone());
    let (e0, f0) = &legs[0];
    let contact: i64 = e0.leg.participant.parse().unwrap();
    let agent: i64 = f0.user_id.as_deref().unwrap().parse().unwrap();
    let code = allowed_code(&catalog, f0);

    // Code not on the skill: "code not allowed", permanent.
    let e = post(&sessions, agent, contact, foreign_code(&catalog, f0)).await.unwrap_err();
    assert_eq!((rejection(&e), e.class.clone()), (Some(Rejection::InvalidDisposition), ErrorClass::Permanent), "{e}");
    // Unknown session id: "session gone".
    let e = bu.client.post_disposition_if("no-such-session", contact, code, None, live(), None).await.unwrap_err();
    assert_eq!(rejection(&e), Some(Rejection::SessionGone), "{e}");
    // Applied, then a second write: "already coded".
    post(&sessions, agent, contact, code).await.unwrap();
    let e = post(&sessions, agent, contact, code).await.unwrap_err();
    assert_eq!((rejection(&e), e.class.clone()), (Some(Rejection::AlreadyDispositioned), ErrorClass::Conflict), "{e}");
    // The gate read sees the first one, which is what keeps the service from trying twice.
    assert_eq!(bu.client.get_contact_disposition(contact, live()).await.unwrap().unwrap().disposition_id, code);
    // A contact that does not exist (or is closed): "window closed".
    let e = post(&sessions, agent, 999_999_999, code).await.unwrap_err();
    assert_eq!(rejection(&e), Some(Rejection::ContactGone), "{e}");
    // Joining an agent without a session.
    let creds = bu.sandbox.cxone_credentials();
    let e = bu.client.join_session(creds.agent_id, live()).await.unwrap_err();
    assert_eq!(rejection(&e), Some(Rejection::AgentNotLoggedIn), "{e}");
    let report = bu.sandbox.cxone_report();
    assert_eq!(report.violations.overwrites, 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_contact_and_a_contact_still_talking_are_refused_distinctly() {
    // Traffic, so that some contact is still connected; the default readings (a disposition ends ACW).
    let bu = start(2, |c| {
        c.traffic_autostart = true;
        c.cxone.center.arrival_rate_per_sec = 20.0;
        c.cxone.center.alert_time = wrapup_sandbox::Dist::new(0.1, 0.2, 0.5);
    })
    .await;
    let catalog = bu.client.catalog(Priority::reconcile()).await.unwrap();
    let sessions = AgentSessions::new(bu.client.clone());

    // Window closed: after our disposition ended ACW, a second write finds the contact gone.
    let (e, f) = acw_legs(&bu.client, acw_timeouts(&catalog)).await.remove(0);
    let (contact, agent): (i64, i64) =
        (e.leg.participant.parse().unwrap(), f.user_id.as_deref().unwrap().parse().unwrap());
    post(&sessions, agent, contact, allowed_code(&catalog, &f)).await.unwrap();
    let e = post(&sessions, agent, contact, allowed_code(&catalog, &f)).await.unwrap_err();
    assert_eq!(rejection(&e), Some(Rejection::ContactGone), "{e}");

    // Window not open yet: a contact still connected to its agent.
    let mut talking = None;
    for _ in 0..50 {
        let active = bu.client.contacts_active(None, live()).await.unwrap();
        talking = active.records.into_iter().find(|r| {
            r.state_name.as_deref() == Some("Active")
                && r.agent_id.is_some()
                && r.skill_id.is_some()
                && bu.sandbox.cxone_legs().iter().any(|l| l.contact_id == r.contact_id && l.state == "active")
        });
        if talking.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = talking.expect("a contact connected to an agent");
    let code: i64 = catalog.queue_by_id(&r.skill_id.unwrap().to_string()).unwrap().code_ids[0].parse().unwrap();
    let e = post(&sessions, r.agent_id.unwrap(), r.contact_id, code).await.unwrap_err();
    assert_eq!((rejection(&e), e.class.clone()), (Some(Rejection::NotDisconnected), ErrorClass::Conflict), "{e}");
    assert_eq!(bu.sandbox.cxone_report().violations.overwrites, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_rotate_and_an_ended_session_is_joined_again() {
    let bu = start(2, |_| {}).await;
    let legs = acw_legs(&bu.client, AcwTimeouts::new()).await;
    let agent: i64 = legs[0].1.user_id.as_deref().unwrap().parse().unwrap();
    let sessions = AgentSessions::new(bu.client.clone());
    let first = sessions.session(agent, live()).await.unwrap();
    // The join's first answer is the refresh collection, carrying the contact in ACW.
    let body = sessions.next_event(agent, Duration::from_secs(1), live()).await.unwrap().unwrap();
    let rotated = sessions.current(agent).unwrap();
    assert_ne!(rotated, first, "get-next-event rotates the session id");
    let batch = wrapup_connectors::cxone::events::parse_next_event(
        "sandbox-bu",
        Some(agent),
        &body,
        &AcwTimeouts::new(),
        jiff::Timestamp::now(),
    )
    .unwrap();
    assert!(batch.events.iter().any(|e| matches!(e.kind, EventKind::LegEnded { .. })), "{batch:?}");
    // End the session behind the cache's back: the next poll sees Session Ended, joins again, and polls on.
    bu.client.end_session(&rotated, live()).await.unwrap();
    assert_eq!(
        bu.client.get_next_event(&rotated, Duration::from_secs(1), live()).await.unwrap(),
        NextEvent::SessionEnded
    );
    let joins = sessions.joins();
    sessions.next_event(agent, Duration::from_secs(1), live()).await.unwrap();
    assert_eq!(sessions.joins(), joins + 1);
    assert_ne!(sessions.current(agent).as_deref(), Some(rotated.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_acw_strategies_find_the_contacts_in_acw_and_count_their_calls() {
    let bu = start(6, |_| {}).await;
    let polled: Vec<String> =
        acw_legs(&bu.client, AcwTimeouts::new()).await.into_iter().map(|(e, _)| e.leg.participant).collect();
    let truth: Vec<String> =
        bu.sandbox.cxone_legs().into_iter().filter(|l| l.state == "acw").map(|l| l.contact_id.to_string()).collect();
    assert!(!truth.is_empty());
    for c in &truth {
        assert!(polled.contains(c), "polling missed contact {c}: {polled:?}");
    }

    let sessions = AgentSessions::new(bu.client.clone());
    let config = SessionDetectorConfig { long_poll: Duration::from_secs(2), ..Default::default() };
    let mut d = SessionDetector::start(sessions, AcwTimeouts::new(), config).await.unwrap();
    let mut found: HashMap<String, Event> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while truth.iter().any(|c| !found.contains_key(c)) && tokio::time::Instant::now() < deadline {
        if let Ok(Ok(batch)) = tokio::time::timeout(Duration::from_secs(3), d.next_batch()).await {
            for e in batch {
                if matches!(e.kind, EventKind::LegEnded { .. }) {
                    found.insert(e.leg.participant.clone(), e);
                }
            }
        }
    }
    for c in &truth {
        assert!(found.contains_key(c), "the session detector missed contact {c}");
    }
    assert!(d.calls() as usize >= d.agents(), "every agent was joined or polled: {} calls", d.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_written_contact_is_reconciled_with_its_code_after_acw() {
    let bu = start(2, |_| {}).await;
    let catalog = bu.client.catalog(Priority::reconcile()).await.unwrap();
    let since = jiff::Timestamp::now().checked_sub(jiff::SignedDuration::from_secs(3600)).unwrap().to_string();
    let (e, f) = acw_legs(&bu.client, acw_timeouts(&catalog)).await.remove(0);
    let contact: i64 = e.leg.participant.parse().unwrap();
    let agent: i64 = f.user_id.as_deref().unwrap().parse().unwrap();
    let code = allowed_code(&catalog, &f);
    let sessions = AgentSessions::new(bu.client.clone());
    let client = bu.client.clone();
    sessions
        .with_session(agent, live(), |sid| {
            let client = client.clone();
            async move {
                client.post_disposition_if(&sid, contact, code, None, live(), None).await?;
                // Data first, availability second: ends ACW under the `keepsAcw` reading too.
                client.set_agent_state(&sid, &AgentStateRequest::Available, live()).await
            }
        })
        .await
        .unwrap();
    let mut events = Vec::new();
    for _ in 0..50 {
        let (batch, _, _) =
            reconcile(&bu.client, &CompletedQuery::UpdatedSince(since.clone()), Priority::reconcile()).await.unwrap();
        events = batch.into_iter().filter(|e| e.leg.participant == contact.to_string()).collect();
        if !events.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        events.iter().map(|e| e.kind.clone()).collect::<Vec<_>>(),
        [EventKind::CodeRecorded { code_id: Some(code.to_string()), notes: None, system: false }, EventKind::LegClosed],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_is_followed_with_and_without_retry_after() {
    for reading in [RetryAfter::Sent, RetryAfter::Absent] {
        let bu = start(0, |c| {
            c.cxone.rate_limit_per_minute = 3;
            c.cxone.behaviours.retry_after = reading;
        })
        .await;
        let mut limited = None;
        for _ in 0..6 {
            if let Err(e) = bu.client.list_dispositions(live()).await {
                if matches!(e.class, ErrorClass::RateLimited { .. }) {
                    limited = Some(e);
                    break;
                }
            }
        }
        let e = limited.expect("the sandbox's limit of 3 per minute was hit");
        match reading {
            RetryAfter::Sent => assert!(matches!(e.class, ErrorClass::RateLimited { retry_after: Some(_) }), "{e}"),
            RetryAfter::Absent => assert_eq!(e.class, ErrorClass::RateLimited { retry_after: None }),
        }
        // The budget pauses instead of hammering the platform.
        assert!(bu.client.budget().status()[0].paused_for.is_some());
        assert_eq!(bu.client.stats().rate_limited_total, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_or_revoked_token_is_replaced_once() {
    let bu = start(0, |c| c.cxone.token_lifetime_secs = 2).await;
    bu.client.list_dispositions(live()).await.unwrap();
    // Refreshed early (before the 2 s lifetime ends) with the refresh grant.
    tokio::time::sleep(Duration::from_millis(1900)).await;
    bu.client.list_dispositions(live()).await.unwrap();
    assert_eq!(bu.client.stats().token_requests_total, 2);
    // Revoked under us: one 401, one new token, the call succeeds.
    bu.sandbox.with_bu(|b| b.tokens.values_mut().for_each(|t| t.revoked = true));
    bu.client.list_dispositions(live()).await.unwrap();
    assert_eq!(bu.client.stats().token_requests_total, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_succeed_while_the_detector_rotates_sessions_even_if_stale_ids_are_refused() {
    let bu = start(6, |c| c.cxone.behaviours.stale_session_id = wrapup_sandbox::cxone::StaleSessionId::Rejected).await;
    let catalog = bu.client.catalog(Priority::reconcile()).await.unwrap();
    let sessions = AgentSessions::new(bu.client.clone());
    // The detector and the writes share one cache: each answer of a long poll rotates the id the writes use.
    let config = SessionDetectorConfig { long_poll: Duration::from_secs(1), ..Default::default() };
    let mut d = SessionDetector::start(sessions.clone(), acw_timeouts(&catalog), config).await.unwrap();
    let mut written = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while written.len() < 3 && tokio::time::Instant::now() < deadline {
        let Ok(Ok(batch)) = tokio::time::timeout(Duration::from_secs(2), d.next_batch()).await else { continue };
        for e in batch {
            let EventKind::LegEnded { facts } = &e.kind else { continue };
            let contact: i64 = e.leg.participant.parse().unwrap();
            if written.contains(&contact) || facts.queue_id.is_none() {
                continue;
            }
            let agent: i64 = facts.user_id.as_deref().unwrap().parse().unwrap();
            post(&sessions, agent, contact, allowed_code(&catalog, facts)).await.unwrap();
            written.insert(contact);
        }
    }
    assert!(written.len() >= 3, "only {} contacts written", written.len());
    let writes = bu.sandbox.cxone_writes();
    let applied: Vec<_> = writes.iter().filter(|w| w.status == 200).collect();
    assert_eq!(applied.len(), written.len(), "one applied write per contact: {writes:?}");
    assert!(applied.iter().all(|w| w.in_window && w.violations.is_empty()), "{writes:?}");
}
