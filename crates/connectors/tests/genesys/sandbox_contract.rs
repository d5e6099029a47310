//! The client and the event parser against the project's Genesys sandbox: the two sides of the contract are built
//! from the same platform notes by different hands, so this checks they meet.

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use url::Url;
use wrapup_clock::ScaledClock;
use wrapup_connectors::attempt::discard_attempts;
use wrapup_connectors::genesys::events::{parse_eventbridge, Parsed};
use wrapup_connectors::genesys::{GenesysClient, GenesysConnection, WrapupInput};
use wrapup_connectors::ErrorClass;
use wrapup_connectors::Priority;
use wrapup_core::{EventKind, Secret};
use wrapup_sandbox::{Behaviours, ClientCredentialsWrites, EventTarget, GetWrapupUnset, Sandbox, SandboxConfig};

type Bodies = Arc<Mutex<Vec<Vec<u8>>>>;

async fn collect(State(bodies): State<Bodies>, body: Bytes) -> &'static str {
    bodies.lock().push(body.to_vec());
    "ok"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_and_parser_speak_the_sandboxs_genesys() {
    let bodies: Bodies = Arc::default();
    let intake = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let intake_url = format!("http://{}/events", intake.local_addr().unwrap());
    let app = Router::new().route("/events", post(collect)).with_state(bodies.clone());
    tokio::spawn(async move { axum::serve(intake, app).await.unwrap() });

    let cfg = SandboxConfig {
        preload: 8,
        traffic_autostart: false,
        clients: 2,
        event_targets: vec![EventTarget { url: intake_url, api_key_header: None, api_key: None }],
        ..Default::default()
    };
    let clock = ScaledClock::system().shared();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandbox = Sandbox::start(cfg, listener, clock.clone()).await.unwrap();
    let creds = sandbox.credentials().into_iter().map(|(id, s)| (id, Secret::new(s))).collect();
    let conn = GenesysConnection::for_base_url("sandbox", Url::parse(&sandbox.base_url()).unwrap(), creds);
    let client = GenesysClient::new(conn, clock, discard_attempts()).unwrap();

    // Catalog.
    let codes = client.list_wrapupcodes(Priority::reconcile()).await.unwrap();
    assert!(!codes.is_empty());
    let queues = client.list_queues(Priority::reconcile()).await.unwrap();
    assert!(!queues.is_empty());
    let system: HashSet<String> = codes.iter().filter(|c| c.name.starts_with("ININ-")).map(|c| c.id.clone()).collect();

    // Events for the preloaded legs.
    let mut ended = Vec::new();
    for _ in 0..100 {
        let batch: Vec<Vec<u8>> = std::mem::take(&mut *bodies.lock());
        for body in batch {
            for parsed in parse_eventbridge("sandbox", &body, &system).unwrap() {
                if let Parsed::Event(e) = parsed {
                    if let EventKind::LegEnded { facts } = &e.kind {
                        ended.push((e.leg.clone(), facts.clone()));
                    }
                }
            }
        }
        if ended.len() >= 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ended.len() >= 8, "only {} user.end events arrived", ended.len());

    // Gate read, allowed codes, write — the service's path for each leg.
    let mut written = 0;
    for (i, (leg, facts)) in ended.iter().enumerate() {
        // Both readings of "unset" the platform notes leave open: 200 `{}` and 404 `not.found`.
        let unset = if i % 2 == 0 { GetWrapupUnset::Empty200 } else { GetWrapupUnset::NotFound };
        sandbox.set_behaviours(Behaviours { get_wrapup_unset: unset, ..Default::default() });
        let media = facts.media.as_deref().expect("media");
        let comm = facts.communication_id.as_deref().expect("communication id");
        let live = Priority::live(None);
        let conv = client.get_conversation(&leg.conversation, live).await.unwrap();
        assert!(conv.participant(&leg.participant).is_some());
        let current =
            client.get_participant_wrapup(&leg.conversation, &leg.participant, Some(media), true, live).await.unwrap();
        if current.is_some() {
            continue;
        }
        let allowed = client.get_participant_wrapupcodes(&leg.conversation, &leg.participant, live).await.unwrap();
        let code = allowed.first().expect("allowed codes");
        let input =
            WrapupInput { code: Some(code.id.clone()), notes: Some("by contract test".into()), ..Default::default() };
        client.post_wrapup(media, &leg.conversation, &leg.participant, comm, &input, live).await.unwrap();
        written += 1;
        let after =
            client.get_participant_wrapup(&leg.conversation, &leg.participant, Some(media), true, live).await.unwrap();
        assert_eq!(after.and_then(|a| a.code), Some(code.id.clone()));
    }
    assert!(written > 0);

    // An org where client credentials may not write agents' wrap-ups: a clean Forbidden, not a retry loop.
    sandbox.set_behaviours(Behaviours {
        client_credentials_writes: ClientCredentialsWrites::Forbidden,
        ..Default::default()
    });
    let (leg, facts) = &ended[0];
    let input = WrapupInput { code: codes.first().map(|c| c.id.clone()), ..Default::default() };
    let err = client
        .post_wrapup(
            facts.media.as_deref().unwrap(),
            &leg.conversation,
            &leg.participant,
            facts.communication_id.as_deref().unwrap(),
            &input,
            Priority::live(None),
        )
        .await
        .unwrap_err();
    assert!(matches!(err.class, ErrorClass::Forbidden { .. }), "{err}");
    let report = sandbox.report();
    assert_eq!(report.violations.overwrites + report.violations.outside_window + report.violations.duplicate_writes, 0);
    sandbox.shutdown().await;
}
