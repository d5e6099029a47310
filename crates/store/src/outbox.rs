//! The outbox's rows, shared by both stores so that they write identical messages.
//!
//! **Messages.** Every [`OutcomeChange`] a transaction makes — a leg's first ending, or the one change of a finished
//! leg's outcome — becomes one row of `outbox` in that same transaction, built here by [`message_of`]: a stable
//! message id (`msg_` + a UUIDv7, the Standard Webhooks `webhook-id` of every delivery of it) and the versioned body
//! (`docs/schemas/outbox-message.v1.json`). A refused save commits none; a crash after the commit loses none.
//!
//! **Deliveries.** Sinks are configuration, not store: the delivery loop reads the messages not routed yet, decides
//! per sink whether it wants each one (its filter), renders the body that sink gets (its code mapping) and stores a
//! row per `(message, sink)` ([`Store::outbox_route`](crate::Store::outbox_route)), then claims due rows with a lease
//! and records each attempt's result. A row is `pending`, `delivered` or `dead` (the dead letters). A leg's later
//! message is not claimed for a sink while an earlier one of the same leg is pending there, or not routed yet, so an
//! `agent_changed` never overtakes the first code.

use crate::codec::ms;
use crate::OutcomeChange;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use wrapup_core::lifecycle::{DecisionSource, LegRecord, Resolution, ResolutionAction};
use wrapup_core::{LegKey, Outcome};

/// The version of the message body; a change that is not an addition of optional fields bumps it.
pub const MESSAGE_VERSION: u32 = 1;
/// `type` of a leg's first ending.
pub const KIND_FINISHED: &str = "leg.finished";
/// `type` of the one change of a finished leg's outcome.
pub const KIND_OUTCOME_CHANGED: &str = "leg.outcome_changed";
/// `type` of an operator's code recorded on a leg whose window was over (its outcome unchanged).
pub const KIND_RESOLVED: &str = "leg.resolved";

/// One message of the outbox, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    /// Order of insertion; per leg, the order of its outcome changes.
    pub seq: i64,
    /// `msg_…`: the `webhook-id` of every delivery of this message, retries and replays included.
    pub id: String,
    pub leg: LegKey,
    /// [`KIND_FINISHED`], [`KIND_OUTCOME_CHANGED`] or [`KIND_RESOLVED`].
    pub kind: String,
    pub outcome: Outcome,
    pub created_at: Timestamp,
    /// The versioned body ([`MessageBody`]).
    pub body: serde_json::Value,
}

/// The body of a message (version [`MESSAGE_VERSION`]), in the Standard Webhooks shape `{type, timestamp, data}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageBody {
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
    /// When the outcome was recorded.
    pub timestamp: Timestamp,
    pub data: MessageData,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageData {
    pub connection: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    pub conversation: String,
    pub participant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<Queue>,
    pub outcome: Outcome,
    /// The outcome this message replaces (only for `leg.outcome_changed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The code the leg ended with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    /// The value the sink's `mapping` gives the code's name (set per sink when the message is routed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<String>,
    /// What decided our code (a rule, or an external decision), when something did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<DecidedBy>,
    /// A person's resolution from the review queue, when the leg has one (see `wrapup_core::lifecycle::review`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    pub finished_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queue {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Code {
    pub id: String,
    /// The code's name: ours from the decision; another's from the catalog, when the message is routed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `ours` (written by wrapup), `agent` (anyone else), `system` (the platform's timeout code).
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DecidedBy {
    Rule {
        rule: String,
        rule_set_version: String,
        code: String,
        /// Why the rule's own code decided where the rule asked for an external decision (none came in time…).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fallback: Option<String>,
    },
    /// A CRM's decision (`source` as it said, e.g. `crm`) or a decision hook's answer (`hook:<name>`).
    External {
        source: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
        arrived_at: Timestamp,
        /// The rule that matched the leg, if one did (its timing applied).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
        code: String,
    },
}

/// The message for one outcome change: what both stores insert.
pub(crate) fn message_of(change: &OutcomeChange) -> Option<OutboxMessage> {
    let leg = &change.leg;
    let outcome = leg.outcome?;
    // A change that leaves the outcome as it was is an operator's recorded resolution (see `newly_recorded`).
    let resolved = change.from == Some(outcome);
    let kind = match change.from {
        _ if resolved => KIND_RESOLVED,
        Some(_) => KIND_OUTCOME_CHANGED,
        None => KIND_FINISHED,
    };
    let code = match &leg.resolution {
        Some(r) if resolved => {
            r.code.as_ref().map(|c| Code { id: c.id.clone(), name: Some(c.name.clone()), source: "operator".into() })
        }
        _ => code_of(leg, outcome),
    };
    let timestamp = match &leg.resolution {
        Some(r) if resolved => r.at,
        _ => leg.updated_at,
    };
    let body = MessageBody {
        kind: kind.to_string(),
        version: MESSAGE_VERSION,
        timestamp,
        data: MessageData {
            connection: leg.key.connection.clone(),
            platform: leg.facts.platform.map(|p| p.as_str().to_string()),
            conversation: leg.key.conversation.clone(),
            participant: leg.key.participant.clone(),
            queue: (leg.facts.queue_id.is_some() || leg.facts.queue_name.is_some())
                .then(|| Queue { id: leg.facts.queue_id.clone(), name: leg.facts.queue_name.clone() }),
            outcome,
            replaces: change.from.filter(|_| !resolved),
            reason: leg.outcome_reason.clone(),
            code,
            disposition: None,
            decided_by: leg.decision.as_ref().map(|d| match &d.source {
                DecisionSource::Rule { name, version, .. } => DecidedBy::Rule {
                    rule: name.clone(),
                    rule_set_version: version.clone(),
                    code: d.code_name.clone(),
                    fallback: d.fallback.clone(),
                },
                DecisionSource::External { source, idempotency_key, arrived_at, rule } => DecidedBy::External {
                    source: source.clone(),
                    idempotency_key: idempotency_key.clone(),
                    arrived_at: *arrived_at,
                    rule: rule.clone(),
                    code: d.code_name.clone(),
                },
            }),
            resolution: leg.resolution.clone(),
            ended_at: leg.facts.ended_at,
            finished_at: leg.updated_at,
        },
    };
    Some(OutboxMessage {
        seq: 0,
        id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
        leg: leg.key.clone(),
        kind: kind.to_string(),
        outcome,
        created_at: timestamp,
        body: serde_json::to_value(&body).ok()?,
    })
}

/// The id of the leg's resolution, if it has one (what [`newly_recorded`] compares with).
pub(crate) fn resolution_id(leg: Option<&LegRecord>) -> Option<String> {
    leg.and_then(|l| l.resolution.as_ref()).map(|r| r.id.clone())
}

/// Whether an event just recorded an operator's code on `leg` (a resolution other than `before`): announced like
/// an outcome change, in the same transaction, as an [`OutcomeChange`] whose `from` is the leg's outcome.
pub(crate) fn newly_recorded(before: Option<&str>, leg: &LegRecord) -> bool {
    leg.resolution.as_ref().is_some_and(|r| r.action == ResolutionAction::Recorded && Some(r.id.as_str()) != before)
}

/// The code a finished leg holds and whose it is (as `service/src/outcomes.rs` counts it).
fn code_of(leg: &LegRecord, outcome: Outcome) -> Option<Code> {
    let ours = |id: &str| leg.intent.as_ref().filter(|i| i.code_id == id && leg.written_at.is_some());
    match outcome {
        Outcome::Applied => leg.intent.as_ref().map(|i| Code {
            id: i.code_id.clone(),
            name: Some(i.code_name.clone()),
            source: "ours".into(),
        }),
        Outcome::AgentWon | Outcome::AgentChanged | Outcome::Review => {
            let id = leg.observed_code.as_deref()?;
            Some(match ours(id) {
                Some(i) => Code { id: id.to_string(), name: Some(i.code_name.clone()), source: "ours".into() },
                None => Code { id: id.to_string(), name: None, source: "agent".into() },
            })
        }
        // A window that closed with a code before we acted: the platform's timeout code.
        Outcome::Expired => {
            leg.observed_code.as_deref().map(|id| Code { id: id.to_string(), name: None, source: "system".into() })
        }
        Outcome::NoRule | Outcome::Shadow | Outcome::NoAcw => None,
    }
}

/// A pending delivery `d` that must wait for an earlier message of its leg: pending for the same sink, or not
/// routed yet.
pub(crate) const BLOCKED_BY_EARLIER: &str = "(EXISTS (SELECT 1 FROM outbox_deliveries e WHERE e.sink = d.sink \
    AND e.state = 'pending' AND e.connection = d.connection AND e.conversation = d.conversation \
    AND e.participant = d.participant AND e.seq < d.seq) \
    OR EXISTS (SELECT 1 FROM outbox o2 WHERE o2.routed_at IS NULL AND o2.connection = d.connection \
    AND o2.conversation = d.conversation AND o2.participant = d.participant AND o2.seq < d.seq))";

/// The state, next attempt and delivery time an attempt leaves its delivery with.
pub(crate) fn recorded(a: &Attempted) -> (DeliveryState, Option<i64>, Option<i64>) {
    match a.result {
        AttemptResult::Delivered => (DeliveryState::Delivered, None, Some(ms(a.at))),
        AttemptResult::Retry(at) => (DeliveryState::Pending, Some(ms(at)), None),
        AttemptResult::Dead => (DeliveryState::Dead, None, None),
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    /// Given up (its time ran out): a dead letter, until `wrapup outbox retry`.
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [DeliveryState::Pending, DeliveryState::Delivered, DeliveryState::Dead].into_iter().find(|x| x.as_str() == s)
    }
}

/// A row to create for one sink that wants a message.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub sink: String,
    /// The body this sink gets, exactly as it will be signed and sent.
    pub body: String,
    /// Given up when still undelivered after this.
    pub expires_at: Timestamp,
}

/// The routing of one message: a row per sink that wants it (none when no sink does).
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub seq: i64,
    pub deliveries: Vec<NewDelivery>,
}

/// One `(message, sink)` delivery.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub seq: i64,
    pub message_id: String,
    pub sink: String,
    pub leg: LegKey,
    pub kind: String,
    pub outcome: Outcome,
    pub created_at: Timestamp,
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_at: Timestamp,
    pub expires_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<Timestamp>,
    #[serde(skip)]
    #[schema(ignore)]
    pub body: String,
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptResult {
    Delivered,
    /// Try again at this time.
    Retry(Timestamp),
    /// Give up: a dead letter.
    Dead,
}

/// One finished attempt of a claimed delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempted {
    pub seq: i64,
    pub sink: String,
    pub at: Timestamp,
    /// The receiver's status, when it answered.
    pub status: Option<u16>,
    /// Why it failed (never a secret, never the body).
    pub error: Option<String>,
    pub result: AttemptResult,
}

/// Which deliveries to list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub sink: Option<String>,
    pub state: Option<DeliveryState>,
    /// Messages created at or after this.
    pub since: Option<Timestamp>,
    pub message_id: Option<String>,
    pub leg: Option<LegKey>,
    /// Without it a store returns at most [`DEFAULT_OUTBOX_LIMIT`].
    pub limit: Option<u32>,
}

/// `outbox_list` without a limit returns at most this many rows.
pub const DEFAULT_OUTBOX_LIMIT: u32 = 1000;

/// Which deliveries to send again.
#[derive(Debug, Clone, PartialEq)]
pub enum Resend {
    /// Dead letters (of one sink, or all) go back to pending.
    Dead { sink: Option<String> },
    /// One message's deliveries that are not pending (of one sink, or all).
    Message { id: String, sink: Option<String> },
    /// Deliveries delivered to a sink at or after `since`, sent again with the same `webhook-id` (a receiver that
    /// lost data asks for it again).
    Delivered { since: Timestamp, sink: Option<String> },
}

/// A sink's persisted state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SinkState {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
}

/// Deliveries per sink and state.
pub type DeliveryCounts = std::collections::BTreeMap<(String, DeliveryState), u64>;

#[cfg(test)]
mod tests {
    use super::*;
    use wrapup_core::lifecycle::{Decision, WriteIntent};
    use wrapup_core::{LegFacts, Mode, Platform, Timing};

    const SCHEMA: &str = include_str!("../../../docs/schemas/outbox-message.v1.json");

    /// Every field a message can carry is in the documented schema, and every field the schema requires is there.
    fn assert_matches_schema(body: &serde_json::Value, schema: &serde_json::Value) {
        let object = body.as_object().expect("an object");
        let properties = schema["properties"].as_object().expect("properties");
        for key in object.keys() {
            assert!(properties.contains_key(key), "`{key}` is not in the schema");
        }
        for required in schema["required"].as_array().into_iter().flatten() {
            assert!(object.contains_key(required.as_str().unwrap()), "`{required}` is required");
        }
        for (key, value) in object {
            let sub = &properties[key];
            if value.is_object() && sub["properties"].is_object() {
                assert_matches_schema(value, sub);
            }
            if let Some(choices) = sub["enum"].as_array() {
                assert!(choices.contains(value), "`{key}` = {value} is not one of {choices:?}");
            }
        }
    }

    #[test]
    fn messages_match_their_documented_schema() {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        let at: Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
        let mut leg = LegRecord::new(LegKey::new("prod", "c1", "p1"), at);
        leg.facts = LegFacts {
            platform: Some(Platform::Genesys),
            queue_id: Some("q1".into()),
            queue_name: Some("Sales".into()),
            ended_at: Some(at),
            ..Default::default()
        };
        leg.decision = Some(Decision {
            source: DecisionSource::Rule { index: 0, name: "paid".into(), version: "v1".into() },
            code_name: "Sale".into(),
            notes: None,
            timing: Timing::Immediate,
            mode: Mode::Enforce,
            decided_at: at,
            fallback: Some("no CRM decision came in time".into()),
        });
        leg.intent = Some(WriteIntent { code_id: "sale-id".into(), code_name: "Sale".into(), at });
        leg.written_at = Some(at);
        leg.finish(Outcome::Applied, Some("written".to_string()), at);
        let first = message_of(&OutcomeChange { leg: leg.clone(), from: None }).unwrap();
        let mut body: MessageBody = serde_json::from_value(first.body.clone()).unwrap();
        body.data.disposition = Some("SOLD".into());
        assert_matches_schema(&serde_json::to_value(&body).unwrap(), &schema);
        assert_eq!(first.body["data"]["decided_by"]["kind"], "rule");
        leg.outcome = Some(Outcome::AgentChanged);
        leg.observed_code = Some("other".into());
        let changed = message_of(&OutcomeChange { leg, from: Some(Outcome::Applied) }).unwrap();
        assert_matches_schema(&changed.body, &schema);
        assert_eq!(changed.body["type"], KIND_OUTCOME_CHANGED);
        assert_eq!(changed.body["data"]["replaces"], "applied");
        assert_ne!(first.id, changed.id);
    }

    #[test]
    fn a_recorded_resolution_matches_the_schema_with_the_operators_code() {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        let at: Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
        let mut leg = LegRecord::new(LegKey::new("prod", "c1", "p1"), at);
        leg.finish(Outcome::Review, Some("the decided code cannot be used".to_string()), at);
        leg.resolution = Some(Resolution {
            id: "r1".into(),
            action: ResolutionAction::Recorded,
            code: Some(wrapup_core::lifecycle::review::ResolvedCode { id: "sale-id".into(), name: "Sale".into() }),
            by: "ana".into(),
            at,
            note: Some("called back".into()),
            outcome: Outcome::Review,
        });
        assert!(newly_recorded(None, &leg) && !newly_recorded(Some("r1"), &leg));
        let message = message_of(&OutcomeChange { leg, from: Some(Outcome::Review) }).unwrap();
        assert_matches_schema(&message.body, &schema);
        assert_eq!(message.body["type"], KIND_RESOLVED);
        assert_eq!(message.body["data"]["code"]["source"], "operator");
        assert!(message.body["data"].get("replaces").is_none());
    }
}
