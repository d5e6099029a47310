//! Conversation details (`POST /api/v2/analytics/conversations/details/query`) → what the reconciler needs.
//!
//! The reconciler asks the platform which agent legs are (or were) in after-call work, because events get lost:
//! an EventBridge delivery that never came, a websocket that was down. [`details_query`] builds the query (agent
//! participants with a `wrapup` segment, conversations started in the interval, one page); [`parse_details`] reads
//! one page of the answer into [`AnalyticsLeg`]s, one per agent participant that has a wrap-up segment:
//!
//! - the leg's [`LegFacts`], the same ones the `user.end` parser produces (media path and channel, session id as
//!   communication id, queue, user, direction, the disconnect type in the detail-event spelling, talk and hold
//!   milliseconds, `ended_at` = the start of the wrap-up segment, which is when the agent's part ended);
//! - where its ACW stands ([`AcwStatus`]): open (a wrap-up segment without `segmentEnd` and without a code),
//!   coded (a final `wrapUpCode`; the platform's own timeout code is flagged `system`), or closed without a code.
//!
//! [`AnalyticsLeg::events`] turns one into the normalized events intake would have produced. Their dedupe keys
//! (`reconcile:…`) differ from those of the platform's events on purpose: a real `user.end` arriving after the
//! reconciler's `LegEnded` is applied as a second `LegEnded`, which only fills facts that were missing (see
//! `wrapup_core::lifecycle::apply_event`), and repeated passes over the same leg collapse on these keys.
//!
//! Like the event parsers, this reads untrusted JSON with explicit field access and never panics; a malformed
//! participant is skipped (and counted), not fatal for the page.

use super::events::{check_id, WRAP_UP_TIMEOUT_CODE};
use jiff::Timestamp;
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use wrapup_core::{Channel, Direction, Event, EventKind, LegFacts, LegKey, Platform};

/// Conversations per page (the platform's maximum for details queries).
pub const PAGE_SIZE: usize = 100;

/// Where a leg's after-call work stands according to analytics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcwStatus {
    /// In ACW: the wrap-up segment has neither an end nor a final code.
    Open,
    /// A final code is recorded. `system` when it is the platform's own (ACW timeout) code.
    Coded { code_id: String, notes: Option<String>, system: bool },
    /// The wrap-up segment ended without a code (skipped, or closed with the conversation).
    ClosedWithoutCode { at: Timestamp },
}

/// One agent leg with a wrap-up segment, as analytics shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyticsLeg {
    pub leg: LegKey,
    pub facts: LegFacts,
    pub acw: AcwStatus,
    /// When the wrap-up segment ended, if it did.
    pub acw_ended_at: Option<Timestamp>,
}

/// One parsed page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DetailsPage {
    pub legs: Vec<AnalyticsLeg>,
    /// Conversations on this page.
    pub conversations: usize,
    /// `totalHits` of the query (all pages).
    pub total_hits: usize,
    /// Agent participants with a wrap-up segment that could not be read (missing ids or times).
    pub skipped: usize,
}

/// The query body for page `page_number` (1-based): agent participants with a wrap-up segment, in conversations
/// that started in `from..to`, oldest first (new conversations land on later pages, so paging is stable).
pub fn details_query(from: Timestamp, to: Timestamp, page_number: usize) -> Value {
    json!({
        "interval": format!("{}/{}", iso_ms(from), iso_ms(to)),
        "order": "asc",
        "orderBy": "conversationStart",
        "paging": { "pageSize": PAGE_SIZE, "pageNumber": page_number },
        "segmentFilters": [ { "type": "and", "predicates": [
            { "type": "dimension", "dimension": "purpose", "operator": "matches", "value": "agent" },
            { "type": "dimension", "dimension": "segmentType", "operator": "matches", "value": "wrapup" }
        ] } ]
    })
}

fn iso_ms(t: Timestamp) -> String {
    // Millisecond precision, `Z`: the format the platform documents for intervals.
    let ms = t.as_millisecond();
    Timestamp::from_millisecond(ms).map(|t| format!("{t:.3}")).unwrap_or_else(|_| t.to_string())
}

/// Why a page could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the analytics details response is not usable: {0}")]
pub struct DetailsError(pub String);

/// Reads one page of an `AnalyticsConversationQueryResponse` (see the module docs).
pub fn parse_details(
    connection: &str,
    body: &Value,
    system_code_ids: &HashSet<String>,
) -> Result<DetailsPage, DetailsError> {
    let obj = body.as_object().ok_or_else(|| DetailsError("not a JSON object".into()))?;
    let total_hits = obj.get("totalHits").and_then(Value::as_u64).unwrap_or(0) as usize;
    let conversations = match obj.get("conversations") {
        // As on the platform, `conversations` is absent when nothing matches.
        None | Some(Value::Null) => return Ok(DetailsPage { total_hits, ..Default::default() }),
        Some(Value::Array(c)) => c,
        Some(_) => return Err(DetailsError("conversations is not an array".into())),
    };
    let mut page = DetailsPage { conversations: conversations.len(), total_hits, ..Default::default() };
    for conv in conversations {
        let Some(conv) = conv.as_object() else {
            page.skipped += 1;
            continue;
        };
        let Some(cid) = id(conv, "conversationId") else {
            page.skipped += 1;
            continue;
        };
        let originating = conv.get("originatingDirection").and_then(Value::as_str);
        for p in conv.get("participants").and_then(Value::as_array).into_iter().flatten() {
            let Some(p) = p.as_object() else { continue };
            if p.get("purpose").and_then(Value::as_str) != Some("agent") {
                continue;
            }
            match agent_leg(connection, &cid, originating, p, system_code_ids) {
                Leg::One(leg) => page.legs.push(*leg),
                Leg::NoWrapup => {}
                Leg::Unreadable => page.skipped += 1,
            }
        }
    }
    Ok(page)
}

enum Leg {
    One(Box<AnalyticsLeg>),
    /// No wrap-up segment: no ACW, nothing to code.
    NoWrapup,
    Unreadable,
}

fn agent_leg(
    connection: &str,
    cid: &str,
    originating: Option<&str>,
    p: &Map<String, Value>,
    system_code_ids: &HashSet<String>,
) -> Leg {
    let Some(pid) = id(p, "participantId") else { return Leg::Unreadable };
    let sessions: Vec<&Map<String, Value>> =
        p.get("sessions").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_object).collect();
    // The session that went into ACW (the last one with a wrap-up segment, should there be several).
    let Some((session, wrapup)) = sessions.iter().rev().find_map(|s| last_segment(s, "wrapup").map(|w| (*s, w))) else {
        return Leg::NoWrapup;
    };
    let Some(acw_start) = time(wrapup, "segmentStart") else { return Leg::Unreadable };
    let acw_end = time(wrapup, "segmentEnd");
    let code = id(wrapup, "wrapUpCode");
    let acw = match (code, acw_end) {
        (Some(code_id), _) => {
            let system = code_id == WRAP_UP_TIMEOUT_CODE || system_code_ids.contains(&code_id);
            let notes = wrapup.get("wrapUpNote").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
            AcwStatus::Coded { code_id, notes, system }
        }
        (None, Some(at)) => AcwStatus::ClosedWithoutCode { at },
        (None, None) => AcwStatus::Open,
    };
    let (media, channel) = media_of_analytics(session.get("mediaType").and_then(Value::as_str).unwrap_or(""));
    let direction = match session.get("direction").and_then(Value::as_str).or(originating) {
        Some(d) if d.eq_ignore_ascii_case("inbound") => Direction::Inbound,
        Some(d) if d.eq_ignore_ascii_case("outbound") => Direction::Outbound,
        _ => Direction::Unknown,
    };
    let segments: Vec<&Map<String, Value>> =
        session.get("segments").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_object).collect();
    let interact = segments.iter().rev().find(|s| s.get("segmentType").and_then(Value::as_str) == Some("interact"));
    let queue_id = id(wrapup, "queueId").or_else(|| interact.and_then(|s| id(s, "queueId")));
    let disconnect_type = interact
        .and_then(|s| s.get("disconnectType"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 64)
        .map(disconnect_type_of_analytics);
    let talk_ms = metric(session, "tTalkComplete").or_else(|| segment_ms(&segments, "interact"));
    let hold_ms = metric(session, "tHeldComplete").or_else(|| segment_ms(&segments, "hold"));
    let facts = LegFacts {
        platform: Some(Platform::Genesys),
        communication_id: id(session, "sessionId"),
        media: media.map(str::to_string),
        channel: Some(channel),
        direction,
        queue_id,
        queue_name: None,
        user_id: id(p, "userId"),
        disconnect_type,
        talk_ms,
        hold_ms,
        ended_at: Some(acw_start),
        // The queue's timeout comes from the catalog, as for a `user.end` without one.
        acw_timeout_ms: None,
        acw: None,
        acw_estimate_ms: None,
        campaign_id: None,
        attributes: Default::default(),
    };
    Leg::One(Box::new(AnalyticsLeg { leg: LegKey::new(connection, cid, pid), facts, acw, acw_ended_at: acw_end }))
}

impl AnalyticsLeg {
    /// The `LegEnded` intake would have made of the lost `user.end`.
    pub fn leg_ended(&self) -> Event {
        Event {
            leg: self.leg.clone(),
            dedupe_key: format!("reconcile:user.end:{}:{}", self.leg.conversation, self.leg.participant),
            occurred_at: self.facts.ended_at.unwrap_or(Timestamp::UNIX_EPOCH),
            correlation_id: None,
            kind: EventKind::LegEnded { facts: Box::new(self.facts.clone()) },
        }
    }

    /// The `CodeRecorded` of a lost `.acw` event: the final code, or the window closing without one. `None` while
    /// the ACW is open.
    pub fn code_recorded(&self) -> Option<Event> {
        let (suffix, kind) = match &self.acw {
            AcwStatus::Open => return None,
            AcwStatus::Coded { code_id, notes, system } => (
                code_id.as_str(),
                EventKind::CodeRecorded { code_id: Some(code_id.clone()), notes: notes.clone(), system: *system },
            ),
            AcwStatus::ClosedWithoutCode { .. } => {
                ("none", EventKind::CodeRecorded { code_id: None, notes: None, system: false })
            }
        };
        Some(Event {
            leg: self.leg.clone(),
            dedupe_key: format!("reconcile:acw:{}:{}:{suffix}", self.leg.conversation, self.leg.participant),
            occurred_at: self.acw_ended_at.or(self.facts.ended_at).unwrap_or(Timestamp::UNIX_EPOCH),
            correlation_id: None,
            kind,
        })
    }
}

/// Analytics session `mediaType` → (write-path media, channel), as the `user.end` parser maps its `mediaType`.
fn media_of_analytics(media: &str) -> (Option<&'static str>, Channel) {
    match media.to_ascii_lowercase().as_str() {
        "voice" => (Some("calls"), Channel::Voice),
        "callback" => (Some("callbacks"), Channel::Callback),
        "email" => (Some("emails"), Channel::Email),
        "message" => (Some("messages"), Channel::Message),
        "cobrowse" => (Some("cobrowsesessions"), Channel::Other),
        "screenshare" => (Some("screenshares"), Channel::Other),
        "video" => (Some("videos"), Channel::Other),
        "chat" => (None, Channel::Chat),
        _ => (None, Channel::Other),
    }
}

/// Analytics spells disconnect types in camelCase (`consultTransfer`); detail events in upper snake case
/// (`CONSULT_TRANSFER`), which the `user.end` parser lower-cases. Rules see the latter: `consult_transfer`.
pub fn disconnect_type_of_analytics(dt: &str) -> String {
    let mut out = String::with_capacity(dt.len() + 4);
    for (i, ch) in dt.chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

fn last_segment<'a>(session: &'a Map<String, Value>, kind: &str) -> Option<&'a Map<String, Value>> {
    session
        .get("segments")?
        .as_array()?
        .iter()
        .rev()
        .filter_map(Value::as_object)
        .find(|s| s.get("segmentType").and_then(Value::as_str) == Some(kind))
}

fn id(obj: &Map<String, Value>, key: &str) -> Option<String> {
    let s = obj.get(key)?.as_str()?;
    if s.is_empty() {
        return None;
    }
    check_id(s, "analytics id").ok().map(str::to_string)
}

fn time(obj: &Map<String, Value>, key: &str) -> Option<Timestamp> {
    obj.get(key)?.as_str()?.parse().ok()
}

fn metric(session: &Map<String, Value>, name: &str) -> Option<u64> {
    session
        .get("metrics")?
        .as_array()?
        .iter()
        .filter_map(Value::as_object)
        .find(|m| m.get("name").and_then(Value::as_str) == Some(name))?
        .get("value")?
        .as_u64()
}

/// Total milliseconds of the ended segments of `kind`.
fn segment_ms(segments: &[&Map<String, Value>], kind: &str) -> Option<u64> {
    let mut total = None;
    for s in segments.iter().filter(|s| s.get("segmentType").and_then(Value::as_str) == Some(kind)) {
        if let (Some(a), Some(b)) = (time(s, "segmentStart"), time(s, "segmentEnd")) {
            let ms = (b.as_millisecond() - a.as_millisecond()).max(0) as u64;
            total = Some(total.unwrap_or(0) + ms);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesys::events::{parse_eventbridge, Parsed};
    use proptest::prelude::*;
    use wrapup_core::lifecycle::{apply_event, LegState};
    use wrapup_core::Outcome;

    fn systems() -> HashSet<String> {
        ["7fb334b0-0e9e-11e4-9191-0800200c9a66".to_string()].into_iter().collect()
    }

    /// A page in the platform's documented shape: one conversation, a customer, and an agent in ACW.
    fn page(wrapup: Value) -> Value {
        json!({
            "conversations": [{
                "conversationId": "c-1",
                "conversationStart": "2026-01-01T10:00:00.000Z",
                "originatingDirection": "inbound",
                "participants": [
                    { "participantId": "cust", "purpose": "customer", "sessions": [ { "mediaType": "voice",
                      "sessionId": "s-c", "segments": [ { "segmentStart": "2026-01-01T10:00:00.000Z",
                      "segmentType": "interact" } ] } ] },
                    { "participantId": "p-1", "userId": "u-1", "purpose": "agent", "sessions": [ {
                        "mediaType": "voice", "sessionId": "s-1", "direction": "inbound",
                        "metrics": [ { "name": "tTalkComplete", "value": 125000 } ],
                        "segments": [
                            { "segmentStart": "2026-01-01T10:00:05.000Z", "segmentEnd": "2026-01-01T10:00:08.000Z",
                              "segmentType": "alert", "queueId": "q-1" },
                            { "segmentStart": "2026-01-01T10:00:08.000Z", "segmentEnd": "2026-01-01T10:02:13.000Z",
                              "segmentType": "interact", "queueId": "q-1", "disconnectType": "consultTransfer" },
                            { "segmentStart": "2026-01-01T10:01:00.000Z", "segmentEnd": "2026-01-01T10:01:05.000Z",
                              "segmentType": "hold", "queueId": "q-1" },
                            wrapup
                        ] } ] }
                ]
            }],
            "totalHits": 1
        })
    }

    fn one(wrapup: Value) -> AnalyticsLeg {
        let p = parse_details("prod", &page(wrapup), &systems()).unwrap();
        assert_eq!((p.conversations, p.total_hits, p.skipped), (1, 1, 0));
        assert_eq!(p.legs.len(), 1, "only the agent participant is a leg");
        p.legs.into_iter().next().unwrap()
    }

    fn open_wrapup() -> Value {
        json!({ "segmentStart": "2026-01-01T10:02:13.000Z", "segmentType": "wrapup", "queueId": "q-1" })
    }

    #[test]
    fn an_open_wrapup_segment_is_a_leg_in_acw_with_the_user_end_facts() {
        let leg = one(open_wrapup());
        assert_eq!(leg.leg, LegKey::new("prod", "c-1", "p-1"));
        assert_eq!(leg.acw, AcwStatus::Open);
        let f = &leg.facts;
        assert_eq!(f.platform, Some(Platform::Genesys));
        assert_eq!((f.media.as_deref(), f.channel), (Some("calls"), Some(Channel::Voice)));
        assert_eq!(f.communication_id.as_deref(), Some("s-1"));
        assert_eq!(f.queue_id.as_deref(), Some("q-1"));
        assert_eq!(f.user_id.as_deref(), Some("u-1"));
        assert_eq!(f.direction, Direction::Inbound);
        assert_eq!(f.disconnect_type.as_deref(), Some("consult_transfer"));
        assert_eq!((f.talk_ms, f.hold_ms), (Some(125_000), Some(5_000)));
        assert_eq!(f.ended_at, Some("2026-01-01T10:02:13Z".parse().unwrap()));
        assert_eq!(f.acw_timeout_ms, None, "the timeout comes from the catalog");
        assert!(leg.code_recorded().is_none(), "an open window has no code event");
    }

    #[test]
    fn the_facts_match_what_the_user_end_parser_makes_of_the_same_leg() {
        let from_analytics = one(open_wrapup()).facts;
        let user_end = json!({
            "topicName": "v2.detail.events.conversation.c-1.user.end", "version": "2",
            "eventBody": { "eventTime": "2026-01-01T10:02:13.000Z", "conversationId": "c-1", "participantId": "p-1",
              "sessionId": "s-1", "disconnectType": "CONSULT_TRANSFER", "mediaType": "VOICE", "direction": "INBOUND",
              "userId": "u-1", "queueId": "q-1", "interactingDurationMs": 125000, "heldDurationMs": 5000 }
        });
        let parsed = parse_eventbridge("prod", user_end.to_string().as_bytes(), &systems()).unwrap();
        let Some(Parsed::Event(Event { kind: EventKind::LegEnded { facts }, .. })) = parsed.into_iter().next() else {
            panic!("user.end parses into LegEnded");
        };
        assert_eq!(*facts, from_analytics);
    }

    #[test]
    fn a_final_code_and_the_system_timeout_code_are_told_apart() {
        let mut w = open_wrapup();
        w["segmentEnd"] = json!("2026-01-01T10:02:43.000Z");
        w["wrapUpCode"] = json!("code-a");
        w["wrapUpNote"] = json!("by hand");
        let leg = one(w.clone());
        assert_eq!(
            leg.acw,
            AcwStatus::Coded { code_id: "code-a".into(), notes: Some("by hand".into()), system: false }
        );
        let e = leg.code_recorded().unwrap();
        assert_eq!(e.dedupe_key, "reconcile:acw:c-1:p-1:code-a");
        assert_eq!(e.occurred_at, "2026-01-01T10:02:43Z".parse().unwrap());
        w["wrapUpCode"] = json!("7fb334b0-0e9e-11e4-9191-0800200c9a66");
        assert!(matches!(one(w.clone()).acw, AcwStatus::Coded { system: true, .. }));
        w["wrapUpCode"] = json!(WRAP_UP_TIMEOUT_CODE);
        assert!(matches!(one(w).acw, AcwStatus::Coded { system: true, .. }));
    }

    #[test]
    fn an_ended_wrapup_segment_without_a_code_is_a_closed_window() {
        let mut w = open_wrapup();
        w["segmentEnd"] = json!("2026-01-01T10:03:00.000Z");
        let leg = one(w);
        assert!(matches!(leg.acw, AcwStatus::ClosedWithoutCode { .. }));
        let Some(Event { kind: EventKind::CodeRecorded { code_id, system, .. }, .. }) = leg.code_recorded() else {
            panic!("a closed window is a code event without a code");
        };
        assert_eq!((code_id, system), (None, false));
    }

    #[test]
    fn agents_without_a_wrapup_segment_customers_and_an_empty_answer_are_no_legs() {
        let mut p = page(open_wrapup());
        let segs = p["conversations"][0]["participants"][1]["sessions"][0]["segments"].as_array_mut().unwrap();
        segs.pop();
        assert!(parse_details("prod", &p, &systems()).unwrap().legs.is_empty());
        let empty = parse_details("prod", &json!({"totalHits": 0}), &systems()).unwrap();
        assert_eq!(empty, DetailsPage::default());
        assert!(parse_details("prod", &json!([]), &systems()).is_err());
    }

    #[test]
    fn a_participant_without_ids_or_times_is_skipped_not_fatal() {
        let mut p = page(json!({ "segmentType": "wrapup" }));
        p["conversations"].as_array_mut().unwrap().push(json!({"participants": []}));
        let parsed = parse_details("prod", &p, &systems()).unwrap();
        assert!(parsed.legs.is_empty());
        assert_eq!(parsed.skipped, 2);
    }

    #[test]
    fn a_reconciled_leg_ended_and_a_late_real_user_end_make_one_leg_with_one_deadline() {
        let found = one(open_wrapup());
        let mut facts = found.facts.clone();
        facts.acw_timeout_ms = Some(30_000);
        let mut ended = found.leg_ended();
        ended.kind = EventKind::LegEnded { facts: Box::new(facts) };
        let now: Timestamp = "2026-01-01T10:02:20Z".parse().unwrap();
        let (leg, _) = apply_event(None, &ended, now);
        assert_eq!(leg.state, LegState::Open);
        let deadline = leg.deadline;
        assert_eq!(deadline, Some("2026-01-01T10:02:43Z".parse().unwrap()));
        // The real event, late: a different dedupe key, so the store applies it; it only fills missing facts.
        let mut real = found.leg_ended();
        real.dedupe_key = "genesys:user.end:c-1:p-1:1767261733000".into();
        let (leg2, effect) = apply_event(Some(leg.clone()), &real, now);
        assert!(!effect.changed);
        assert_eq!((leg2.deadline, leg2.not_before, leg2.state), (deadline, leg.not_before, LegState::Open));
    }

    #[test]
    fn a_reconciled_agent_code_finishes_an_open_leg_as_agent_won() {
        let mut w = open_wrapup();
        w["wrapUpCode"] = json!("code-a");
        let found = one(w);
        let t: Timestamp = "2026-01-01T10:03:00Z".parse().unwrap();
        let (leg, _) = apply_event(None, &found.leg_ended(), t);
        let (leg, _) = apply_event(Some(leg), &found.code_recorded().unwrap(), t);
        assert_eq!(leg.outcome, Some(Outcome::AgentWon));
        assert!(leg.ended_seen, "a leg the reconciler found counts as ended");
    }

    #[test]
    fn disconnect_types_are_spelt_as_the_detail_events_spell_them() {
        for (a, e) in [
            ("peer", "peer"),
            ("client", "client"),
            ("consultTransfer", "consult_transfer"),
            ("dndEndpoint", "dnd_endpoint"),
            ("noAnswerTransfer", "no_answer_transfer"),
        ] {
            assert_eq!(disconnect_type_of_analytics(a), e);
        }
    }

    #[test]
    fn the_query_filters_agent_wrapup_segments_and_pages() {
        let from: Timestamp = "2026-01-01T10:00:00Z".parse().unwrap();
        let to: Timestamp = "2026-01-01T11:00:00.123456Z".parse().unwrap();
        let q = details_query(from, to, 3);
        assert_eq!(q["interval"], "2026-01-01T10:00:00.000Z/2026-01-01T11:00:00.123Z");
        assert_eq!(q["paging"], json!({"pageSize": 100, "pageNumber": 3}));
        let preds = q["segmentFilters"][0]["predicates"].as_array().unwrap();
        assert_eq!(preds.len(), 2);
    }

    proptest! {
        #[test]
        fn parsing_random_json_never_panics(s in "\\PC{0,400}") {
            if let Ok(v) = serde_json::from_str::<Value>(&s) {
                let _ = parse_details("prod", &v, &systems());
            }
        }

        #[test]
        fn damaged_pages_never_panic(path in prop::collection::vec(0usize..8, 1..6), junk in prop_oneof![
            Just(json!(null)), Just(json!(1)), Just(json!("x")), Just(json!([])), Just(json!({}))]) {
            let mut v = page(open_wrapup());
            // Walk to a random node (read-only), then replace it through its JSON pointer.
            let mut pointer = String::new();
            let mut node = &v;
            for i in path {
                let (key, next) = match node {
                    Value::Object(m) if !m.is_empty() => {
                        let (k, n) = m.iter().nth(i % m.len()).unwrap();
                        (k.clone(), n)
                    }
                    Value::Array(a) if !a.is_empty() => ((i % a.len()).to_string(), &a[i % a.len()]),
                    _ => break,
                };
                pointer.push('/');
                pointer.push_str(&key);
                node = next;
            }
            if let Some(n) = v.pointer_mut(&pointer) {
                *n = junk;
            }
            let _ = parse_details("prod", &v, &systems());
        }
    }
}
