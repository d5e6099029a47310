//! Genesys Cloud request and response bodies, with the platform's exact camelCase JSON names
//! (`platforms/genesys-cloud.md` §1–§3). Only the fields wrapup uses are modelled; unknown fields are ignored so a
//! platform addition never breaks decoding. Every response field is optional or defaulted for the same reason.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `AssignedWrapupCode`: the wrap-up currently on a participant (`GET …/participants/{pid}/wrapup`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct AssignedWrapup {
    /// Wrap-up code id.
    pub code: Option<String>,
    pub notes: Option<String>,
    pub tags: Vec<String>,
    pub duration_seconds: Option<i64>,
    pub end_time: Option<Timestamp>,
}

/// `WrapupInput`: the body of `POST …/communications/{commId}/wrapup`. Every field is optional on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct WrapupInput {
    /// Wrap-up code id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisional: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_end_time_updates: Option<bool>,
}

/// A 202 from the platform: accepted, empty body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// `ININ-Correlation-Id` of the response.
    pub correlation_id: Option<String>,
}

/// `{id, name, selfUri}` reference (division and similar).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct EntityRef {
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_uri: Option<String>,
}

/// `WrapupCode` (catalog and participant's allowed codes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct WrapupCode {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub division: Option<EntityRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_modified: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_uri: Option<String>,
}

/// `WrapupCodeRequest` (create); only `name` is required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct WrapupCodeRequest {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub division: Option<EntityRef>,
}

/// Queue `acwSettings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct AcwSettings {
    /// `MANDATORY | OPTIONAL | MANDATORY_TIMEOUT | MANDATORY_FORCED_TIMEOUT | AGENT_REQUESTED`.
    pub wrapup_prompt: Option<String>,
    pub timeout_ms: Option<u64>,
}

/// `Queue` (the fields wrapup uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Queue {
    pub id: String,
    pub name: String,
    pub division: Option<EntityRef>,
    pub acw_settings: Option<AcwSettings>,
}

/// A paged listing (`entities, pageSize, pageNumber, total, pageCount, …`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityListing<T> {
    #[serde(default = "Vec::new")]
    pub entities: Vec<T>,
    #[serde(default)]
    pub page_size: Option<u32>,
    #[serde(default)]
    pub page_number: Option<u32>,
    #[serde(default)]
    pub total: Option<u64>,
    #[serde(default)]
    pub page_count: Option<u32>,
}

/// `Wrapup` on a participant or communication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Wrapup {
    pub code: Option<String>,
    pub name: Option<String>,
    pub notes: Option<String>,
    pub tags: Vec<String>,
    pub duration_seconds: Option<i64>,
    pub end_time: Option<Timestamp>,
    pub provisional: Option<bool>,
}

/// `afterCallWork` on a communication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct AfterCallWork {
    /// `unknown | notApplicable | skipped | pending | complete`.
    pub state: Option<String>,
    pub start_time: Option<Timestamp>,
    pub end_time: Option<Timestamp>,
}

/// A communication (`calls[]`, `callbacks[]`, `emails[]`, `messages[]` of a participant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Communication {
    /// communicationId (the `{commId}` of the write path).
    pub id: String,
    pub state: Option<String>,
    pub direction: Option<String>,
    pub disconnect_type: Option<String>,
    pub after_call_work: Option<AfterCallWork>,
    pub after_call_work_required: Option<bool>,
    pub wrapup: Option<Wrapup>,
}

/// `Participant` of the generic `Conversation` (flat `userId` / `queueId`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Participant {
    pub id: String,
    pub purpose: Option<String>,
    pub user_id: Option<String>,
    pub queue_id: Option<String>,
    pub queue_name: Option<String>,
    pub start_time: Option<Timestamp>,
    pub end_time: Option<Timestamp>,
    pub wrapup_required: Option<bool>,
    /// `mandatory | optional | agentRequested | timeout | forcedTimeout`.
    pub wrapup_prompt: Option<String>,
    pub wrapup_timeout_ms: Option<u64>,
    pub wrapup_skipped: Option<bool>,
    pub wrapup: Option<Wrapup>,
    pub start_acw_time: Option<Timestamp>,
    pub end_acw_time: Option<Timestamp>,
    pub attributes: BTreeMap<String, String>,
    pub calls: Vec<Communication>,
    pub callbacks: Vec<Communication>,
    pub emails: Vec<Communication>,
    pub messages: Vec<Communication>,
}

impl Participant {
    /// The participant's communications with their media path segment (`calls`, `callbacks`, …).
    pub fn communications(&self) -> impl Iterator<Item = (&'static str, &Communication)> {
        self.calls
            .iter()
            .map(|c| ("calls", c))
            .chain(self.callbacks.iter().map(|c| ("callbacks", c)))
            .chain(self.emails.iter().map(|c| ("emails", c)))
            .chain(self.messages.iter().map(|c| ("messages", c)))
    }
}

/// A queue's `acwSettings.wrapupPrompt` (`MANDATORY_TIMEOUT`) or a participant's `wrapupPrompt` (`timeout`) in
/// the terms the worker acts on; `None` for a value the contract does not list.
pub fn acw_policy(prompt: &str) -> Option<wrapup_core::catalog::AcwPolicy> {
    use wrapup_core::catalog::AcwPolicy;
    let normalized: String = prompt.chars().filter(|c| *c != '_').collect::<String>().to_ascii_lowercase();
    match normalized.as_str() {
        "mandatory" | "mandatorytimeout" | "timeout" | "mandatoryforcedtimeout" | "forcedtimeout" => {
            Some(AcwPolicy::Mandatory)
        }
        "optional" => Some(AcwPolicy::Optional),
        "agentrequested" => Some(AcwPolicy::AgentRequested),
        _ => None,
    }
}

/// Where an agent participant's after-call-work window stands, as a conversation read shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcwWindow {
    /// The agent's communication has not ended yet: there is no window to write into (yet).
    NotEnded,
    /// Ended, and no window was required (an agent-requested ACW the agent did not ask for), or the platform says
    /// ACW does not apply.
    Never,
    /// In after-call work.
    Open,
    /// The window was open and is over: coded, skipped, or timed out.
    Closed,
}

impl Participant {
    /// The participant's ACW window, from the fields the platform documents for it (docs/platforms: a participant
    /// in ACW has ended communications, `wrapupRequired`, `startAcwTime` without `endAcwTime`, and its
    /// communication's `afterCallWork.state` is `pending`; a finished one has `endAcwTime`, a saved (not
    /// provisional) wrap-up, `wrapupSkipped`, or `afterCallWork.state` `complete`/`skipped`).
    pub fn acw_window(&self) -> AcwWindow {
        let comms: Vec<&Communication> = self.communications().map(|(_, c)| c).collect();
        let acw_states: Vec<&str> =
            comms.iter().filter_map(|c| c.after_call_work.as_ref().and_then(|a| a.state.as_deref())).collect();
        let any_state = |s: &str| acw_states.iter().any(|x| x.eq_ignore_ascii_case(s));
        let saved_code = self.wrapup.as_ref().is_some_and(|w| w.provisional != Some(true) && w.code.is_some());
        if self.end_acw_time.is_some()
            || self.wrapup_skipped == Some(true)
            || any_state("complete")
            || any_state("skipped")
            || saved_code
        {
            return AcwWindow::Closed;
        }
        if any_state("pending") || (self.start_acw_time.is_some() && self.wrapup_required != Some(false)) {
            return AcwWindow::Open;
        }
        let ended = self.end_time.is_some()
            || comms.iter().any(|c| {
                c.state
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case("disconnected") || s.eq_ignore_ascii_case("terminated"))
            });
        if !ended {
            return AcwWindow::NotEnded;
        }
        if self.wrapup_required == Some(false) || any_state("notApplicable") {
            return AcwWindow::Never;
        }
        // Ended, a wrap-up required, and nothing says the window started or ended: the platform is opening it.
        AcwWindow::Open
    }
}

/// The generic `Conversation` (`GET /api/v2/conversations/{conversationId}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Conversation {
    pub id: String,
    pub start_time: Option<Timestamp>,
    /// Set when the last participant left; `Conversation.state` is never populated on reads, so this is the signal.
    pub end_time: Option<Timestamp>,
    pub participants: Vec<Participant>,
}

impl Conversation {
    pub fn participant(&self, participant_id: &str) -> Option<&Participant> {
        self.participants.iter().find(|p| p.id == participant_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_acw_conversation_decodes() {
        let json = r#"{
          "id": "c1", "startTime": "2024-05-01T10:00:00.000Z", "endTime": null,
          "participants": [
            {"id": "p-cust", "purpose": "customer", "queueId": "q-1", "wrapupRequired": false,
             "endTime": "2024-05-01T10:05:00.000Z",
             "calls": [{"id": "comm-cust", "state": "terminated", "disconnectType": "endpoint"}]},
            {"id": "p-agent", "purpose": "agent", "userId": "u-1", "queueId": "q-1", "queueName": "Support",
             "wrapupRequired": true, "wrapupPrompt": "mandatory", "wrapupTimeoutMs": 30000,
             "startAcwTime": "2024-05-01T10:05:00.100Z", "endTime": "2024-05-01T10:05:00.100Z",
             "calls": [{"id": "comm-agent", "state": "disconnected", "disconnectType": "peer",
                        "afterCallWork": {"state": "pending", "startTime": "2024-05-01T10:05:00.100Z"},
                        "afterCallWorkRequired": false}]}
          ],
          "selfUri": "/api/v2/conversations/c1"
        }"#;
        let c: Conversation = serde_json::from_str(json).unwrap();
        let agent = c.participant("p-agent").unwrap();
        assert_eq!(agent.wrapup_required, Some(true));
        assert_eq!(agent.wrapup_timeout_ms, Some(30_000));
        let (media, comm) = agent.communications().next().unwrap();
        assert_eq!((media, comm.id.as_str()), ("calls", "comm-agent"));
        assert_eq!(comm.after_call_work.as_ref().unwrap().state.as_deref(), Some("pending"));
    }

    fn agent(json: serde_json::Value) -> Participant {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_participant_shows_where_its_acw_window_stands() {
        use serde_json::json;
        let ended = |extra: serde_json::Value| {
            let mut p = json!({"id": "p", "purpose": "agent", "endTime": "2024-05-01T10:05:00Z",
                               "calls": [{"id": "c", "state": "disconnected"}]});
            for (k, v) in extra.as_object().unwrap() {
                p[k] = v.clone();
            }
            agent(p)
        };
        let talking = agent(json!({"id": "p", "purpose": "agent", "calls": [{"id": "c", "state": "connected"}]}));
        assert_eq!(talking.acw_window(), AcwWindow::NotEnded);
        assert_eq!(ended(json!({"wrapupRequired": false})).acw_window(), AcwWindow::Never);
        assert_eq!(
            ended(json!({"wrapupRequired": true, "startAcwTime": "2024-05-01T10:05:00Z"})).acw_window(),
            AcwWindow::Open
        );
        let provisional = json!({"code": "x", "provisional": true});
        assert_eq!(
            ended(json!({"wrapupRequired": true, "startAcwTime": "2024-05-01T10:05:00Z", "wrapup": provisional}))
                .acw_window(),
            AcwWindow::Open,
            "a provisional code does not end the window"
        );
        for closed in [
            json!({"wrapupRequired": true, "endAcwTime": "2024-05-01T10:06:00Z"}),
            json!({"wrapupRequired": true, "wrapupSkipped": true}),
            json!({"wrapupRequired": true, "wrapup": {"code": "x"}}),
            json!({"wrapupRequired": true, "calls": [{"id": "c", "state": "disconnected",
                                                      "afterCallWork": {"state": "skipped"}}]}),
        ] {
            assert_eq!(ended(closed.clone()).acw_window(), AcwWindow::Closed, "{closed}");
        }
        let na = json!({"calls": [{"id": "c", "state": "terminated", "afterCallWork": {"state": "notApplicable"}}]});
        assert_eq!(ended(na).acw_window(), AcwWindow::Never);
    }

    #[test]
    fn wrapup_input_sends_only_what_is_set() {
        let w = WrapupInput { code: Some("id-1".into()), notes: Some("n".into()), ..Default::default() };
        assert_eq!(serde_json::to_string(&w).unwrap(), r#"{"code":"id-1","notes":"n"}"#);
    }
}
