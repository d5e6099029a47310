//! CXone response records, read leniently.
//!
//! CXone spells the same field several ways across API versions (`contactStart` / `contactStartDate`,
//! `mediaType` / `mediaTypeId`, PascalCase in agent events and v23 `contacts/states`) and sends numbers and booleans
//! either as JSON values or as strings (`"primaryDispositionId":"2896"`, `"isACW":"True"`). Records are therefore
//! read from `serde_json::Value` through the small [`fields`] helpers — a list of accepted names per field, numbers
//! from numbers or digit strings, booleans from `true`/`"True"`/`"1"` — instead of derived deserializers that would
//! reject a whole page over one odd field.

use serde_json::{Map, Value};

/// Lenient field access on a JSON object.
pub mod fields {
    use super::*;

    /// Longest id or text field we keep (ids are int64 or short opaque strings; this only bounds hostile input).
    pub const MAX_FIELD_CHARS: usize = 2048;

    /// The first present, non-null value among `names`, matched exactly and then case-insensitively.
    pub fn get<'a>(obj: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
        names.iter().find_map(|n| obj.get(*n).filter(|v| !v.is_null())).or_else(|| {
            obj.iter().find(|(k, v)| !v.is_null() && names.iter().any(|n| k.eq_ignore_ascii_case(n))).map(|(_, v)| v)
        })
    }

    /// A non-empty, bounded string (numbers are rendered as their decimal text).
    pub fn text(obj: &Map<String, Value>, names: &[&str]) -> Option<String> {
        match get(obj, names)? {
            Value::String(s) => {
                let s = s.trim();
                (!s.is_empty() && s.chars().count() <= MAX_FIELD_CHARS).then(|| s.to_string())
            }
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// An integer from a JSON integer or a string of digits.
    pub fn int(obj: &Map<String, Value>, names: &[&str]) -> Option<i64> {
        match get(obj, names)? {
            Value::Number(n) => {
                n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e15).map(|f| f as i64))
            }
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// A boolean from `true`/`false`, `"True"`/`"False"`, `"1"`/`"0"`, `1`/`0`.
    pub fn boolean(obj: &Map<String, Value>, names: &[&str]) -> Option<bool> {
        match get(obj, names)? {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => n.as_i64().map(|i| i != 0),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Some(true),
                "false" | "0" | "no" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    /// A timestamp (ISO 8601; a missing offset is read as UTC, as CXone's `…UTC` fields are).
    pub fn timestamp(obj: &Map<String, Value>, names: &[&str]) -> Option<jiff::Timestamp> {
        parse_timestamp(&text(obj, names)?)
    }

    /// Parses CXone's timestamp spellings: RFC 3339 with offset or `Z`, or a civil date-time taken as UTC.
    pub fn parse_timestamp(s: &str) -> Option<jiff::Timestamp> {
        if let Ok(ts) = s.parse::<jiff::Timestamp>() {
            return Some(ts);
        }
        let civil: jiff::civil::DateTime = s.trim_end_matches('Z').parse().ok()?;
        civil.to_zoned(jiff::tz::TimeZone::UTC).ok().map(|z| z.timestamp())
    }

    /// An array field's elements (empty when absent or not an array).
    pub fn array<'a>(obj: &'a Map<String, Value>, names: &[&str]) -> &'a [Value] {
        match get(obj, names) {
            Some(Value::Array(a)) => a,
            _ => &[],
        }
    }
}

use fields::{array, boolean, int, text};

/// A positive id (CXone ids are positive integers; `0` means "none", e.g. `secondaryDispositionId: 0`).
fn positive(v: Option<i64>) -> Option<i64> {
    v.filter(|i| *i > 0)
}

/// The object a listing's records live in: top level (newer versions) or under `resultSet` (v23).
pub fn result_set(body: &Value) -> Option<&Map<String, Value>> {
    let obj = body.as_object()?;
    match obj.get("resultSet") {
        Some(Value::Object(inner)) => Some(inner),
        _ => Some(obj),
    }
}

/// One disposition of the catalog (`GET dispositions`, `GET skills/{id}/dispositions`, `GET skills/{id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disposition {
    pub id: i64,
    pub name: String,
    /// `classificationId` (catalog) or `classification` (skill listing), verbatim.
    pub classification: Option<String>,
    /// `isActive` where the version sends it.
    pub is_active: Option<bool>,
    /// The catalog's `notes`.
    pub notes: Option<String>,
}

impl Disposition {
    pub fn from_value(v: &Value) -> Option<Self> {
        let o = v.as_object()?;
        Some(Self {
            id: positive(int(o, &["dispositionId", "id"]))?,
            name: text(o, &["dispositionName", "name"])?,
            classification: text(o, &["classificationId", "classification", "classificationName"]),
            is_active: boolean(o, &["isActive"]),
            notes: text(o, &["notes"]),
        })
    }
}

/// A skill with its ACW ("post-contact") settings (`GET skills/{id}`, `GET skills`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Skill {
    pub id: i64,
    pub name: String,
    pub media_type_id: Option<i64>,
    pub is_outbound: Option<bool>,
    pub is_active: Option<bool>,
    /// 1 None, 2 Disposition, 3 Automatic Wrap-up.
    pub acw_type_id: Option<i64>,
    pub require_disposition: Option<bool>,
    pub allow_secondary_disposition: Option<bool>,
    pub max_seconds_acw: Option<u64>,
    /// Dispositions listed on the skill itself (`GET skills/{id}` → `dispositions[]`), when present.
    pub disposition_ids: Vec<i64>,
}

impl Skill {
    pub fn from_value(v: &Value) -> Option<Self> {
        let o = v.as_object()?;
        // `GET skills/{id}` may wrap the skill: `{"skills":[{…}]}` or `{"skill":{…}}`.
        if let Some(inner) = o.get("skill").filter(|i| i.is_object()) {
            return Self::from_value(inner);
        }
        if let Some(first) = array(o, &["skills"]).first() {
            return Self::from_value(first);
        }
        Some(Self {
            id: positive(int(o, &["skillId", "id"]))?,
            name: text(o, &["skillName", "name"]).unwrap_or_default(),
            media_type_id: int(o, &["mediaTypeId", "mediaType"]),
            is_outbound: boolean(o, &["isOutbound"]),
            is_active: boolean(o, &["isActive"]),
            acw_type_id: int(o, &["acwTypeId"]),
            require_disposition: boolean(o, &["requireDisposition"]),
            allow_secondary_disposition: boolean(o, &["allowSecondaryDisposition", "allowSecondaryDispositions"]),
            max_seconds_acw: int(o, &["maxSecondsACW", "maxSecondsAcw"]).and_then(|s| u64::try_from(s).ok()),
            disposition_ids: array(o, &["dispositions"])
                .iter()
                .filter_map(|d| d.as_object().and_then(|d| positive(int(d, &["dispositionId", "id"]))))
                .collect(),
        })
    }

    /// How long the platform keeps the ACW window open by itself, if it does: only when a disposition is *not*
    /// required (a required disposition holds ACW until it is given — `AcwTimeout` is then 0/absent) and the skill
    /// uses ACW at all.
    pub fn acw_timeout_ms(&self) -> Option<u64> {
        if self.acw_type_id == Some(1) || self.require_disposition == Some(true) {
            return None;
        }
        self.max_seconds_acw.filter(|s| *s > 0).map(|s| s.saturating_mul(1000))
    }

    /// The skill's ACW in the terms the worker acts on: `acwTypeId` 1 has none; 3 (automatic wrap-up) is a fixed
    /// window with no early exit; 2 holds the window until a disposition when `requireDisposition`, and otherwise
    /// lets the agent go without one.
    pub fn acw_policy(&self) -> Option<wrapup_core::catalog::AcwPolicy> {
        use wrapup_core::catalog::AcwPolicy;
        match (self.acw_type_id?, self.require_disposition) {
            (1, _) => Some(AcwPolicy::None),
            (3, _) | (2, Some(true)) => Some(AcwPolicy::Mandatory),
            (2, _) => Some(AcwPolicy::Optional),
            _ => None,
        }
    }

    /// The skill's ACW mode, verbatim, for explanations.
    pub fn acw_mode(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(t) = self.acw_type_id {
            parts.push(format!("acwTypeId={t}"));
        }
        if let Some(r) = self.require_disposition {
            parts.push(format!("requireDisposition={r}"));
        }
        if let Some(s) = self.max_seconds_acw {
            parts.push(format!("maxSecondsACW={s}"));
        }
        (!parts.is_empty()).then(|| parts.join(" "))
    }
}

/// The disposition currently recorded on a contact (`GET contacts/{id}/disposition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactDisposition {
    pub disposition_id: i64,
    pub disposition_name: Option<String>,
    /// `dispositionByAgendId` ([GEN] spelling) or `dispositionedByAgendId` ([SDK] spelling).
    pub by_agent_id: Option<String>,
    pub notes: Option<String>,
    pub last_updated: Option<String>,
}

impl ContactDisposition {
    /// `None` when the body says "no disposition" (no id, `0`, empty).
    pub fn from_value(v: &Value) -> Option<Self> {
        let o = result_set(v)?;
        // Some versions wrap it in a one-element list.
        if let Some(first) = array(o, &["dispositions", "contactDispositions"]).first() {
            return Self::from_value(first);
        }
        Some(Self {
            disposition_id: positive(int(o, &["dispositionId", "primaryDispositionId"]))?,
            disposition_name: text(o, &["dispositionName"]),
            by_agent_id: text(o, &["dispositionByAgendId", "dispositionedByAgendId", "dispositionByAgentId"]),
            notes: text(o, &["notes", "dispositionNotes"]),
            last_updated: text(o, &["lastUpdated", "lastUpdateTime"]),
        })
    }
}

/// One contact record: an active contact (`contacts/active`), a completed one (`contacts/completed`) or either
/// (`contacts/{id}`). Fields absent from a listing are `None`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContactRecord {
    pub contact_id: i64,
    /// Equal to `contact_id` when the contact was never transferred; defaults to it when absent.
    pub master_contact_id: i64,
    pub agent_id: Option<i64>,
    pub skill_id: Option<i64>,
    pub skill_name: Option<String>,
    pub media_type_id: Option<i64>,
    pub is_outbound: Option<bool>,
    pub state_id: Option<i64>,
    pub state_name: Option<String>,
    pub contact_start: Option<String>,
    pub last_update_time: Option<String>,
    pub campaign_id: Option<i64>,
    pub from_address: Option<String>,
    pub to_address: Option<String>,
    pub primary_disposition_id: Option<i64>,
    pub secondary_disposition_id: Option<i64>,
    pub disposition_notes: Option<String>,
    pub acw_seconds: Option<i64>,
    pub end_reason: Option<String>,
}

impl ContactRecord {
    pub fn from_value(v: &Value) -> Option<Self> {
        let o = v.as_object()?;
        let contact_id = positive(int(o, &["contactId", "ContactID", "contactID"]))?;
        Some(Self {
            contact_id,
            master_contact_id: positive(int(o, &["masterContactId", "MasterID", "masterID"])).unwrap_or(contact_id),
            agent_id: positive(int(o, &["agentId"])),
            skill_id: positive(int(o, &["skillId"])),
            skill_name: text(o, &["skillName"]),
            // `mediaType` is the id in v23 (and a name in some renderings); `mediaTypeId` in newer versions.
            media_type_id: int(o, &["mediaTypeId", "mediaType"]),
            is_outbound: boolean(o, &["isOutbound"]),
            state_id: int(o, &["stateId", "contactStateId"]),
            state_name: text(o, &["stateName", "state", "contactStateName", "ContactStateCode"]),
            contact_start: text(o, &["contactStartDate", "contactStart"]),
            last_update_time: text(o, &["lastUpdateTime"]),
            campaign_id: positive(int(o, &["campaignId"])),
            from_address: text(o, &["fromAddress", "fromAddr", "fromAdd"]),
            to_address: text(o, &["toAddress", "toAddr"]),
            primary_disposition_id: positive(int(o, &["primaryDispositionId"])),
            secondary_disposition_id: positive(int(o, &["secondaryDispositionId"])),
            disposition_notes: text(o, &["dispositionNotes"]),
            acw_seconds: int(o, &["acwSeconds"]),
            end_reason: text(o, &["endReason"]),
        })
    }
}

/// One agent's real-time state (`agents/states`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentStateRecord {
    pub agent_id: i64,
    pub agent_state_name: Option<String>,
    pub is_acw: bool,
    /// The contact the agent is on (in ACW: the contact being wrapped up).
    pub contact_id: Option<i64>,
    pub skill_id: Option<i64>,
    pub out_state_description: Option<String>,
    pub start_date: Option<String>,
    pub last_update_time: Option<String>,
}

impl AgentStateRecord {
    pub fn from_value(v: &Value) -> Option<Self> {
        let o = v.as_object()?;
        Some(Self {
            agent_id: positive(int(o, &["agentId"]))?,
            agent_state_name: text(o, &["agentStateName", "agentState"]),
            is_acw: boolean(o, &["isACW", "isAcw"]).unwrap_or(false),
            contact_id: positive(int(o, &["contactId"])),
            skill_id: positive(int(o, &["skillId"])),
            out_state_description: text(o, &["outStateDescription", "outStateName"]),
            start_date: text(o, &["startDate"]),
            last_update_time: text(o, &["lastUpdateTime"]),
        })
    }
}

/// One agent (`GET agents`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub agent_id: i64,
    pub user_name: Option<String>,
    pub is_active: Option<bool>,
}

impl Agent {
    pub fn from_value(v: &Value) -> Option<Self> {
        let o = v.as_object()?;
        Some(Self {
            agent_id: positive(int(o, &["agentId", "id"]))?,
            user_name: text(o, &["userName", "emailAddress"]),
            is_active: boolean(o, &["isActive"]),
        })
    }
}

/// `GET contacts/{id}/hierarchy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub master_contact_id: i64,
    /// `(contactId, startTime, endTime)` of each child contact.
    pub children: Vec<(i64, Option<String>, Option<String>)>,
}

impl Hierarchy {
    pub fn from_value(v: &Value) -> Option<Self> {
        let o = result_set(v)?;
        Some(Self {
            master_contact_id: positive(int(o, &["masterContactId"]))?,
            children: array(o, &["childContacts"])
                .iter()
                .filter_map(|c| {
                    let c = c.as_object()?;
                    Some((positive(int(c, &["contactId"]))?, text(c, &["startTime"]), text(c, &["endTime"])))
                })
                .collect(),
        })
    }
}

/// A page of a polled listing plus the `lastPollTime` to pass as `updatedSince` next time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polled<T> {
    pub records: Vec<T>,
    pub last_poll_time: Option<String>,
    /// Requests (pages) it took, for calls-per-applied-code accounting.
    pub requests: u32,
}

impl<T> Default for Polled<T> {
    fn default() -> Self {
        Self { records: Vec::new(), last_poll_time: None, requests: 0 }
    }
}

/// Reads a listing: records under any of `list_names` (top level or under `resultSet`), skipping unreadable ones.
pub fn listing<T>(body: &Value, list_names: &[&str], read: impl Fn(&Value) -> Option<T>) -> Polled<T> {
    let Some(o) = result_set(body) else {
        return Polled::default();
    };
    let top = body.as_object();
    let last_poll_time = text(o, &["lastPollTime"]).or_else(|| top.and_then(|t| text(t, &["lastPollTime"])));
    Polled { records: array(o, list_names).iter().filter_map(read).collect(), last_poll_time, requests: 0 }
}

/// `_links.next` of a newer-version listing, when it has one.
pub fn next_link(body: &Value) -> Option<String> {
    let links = body.get("_links")?.as_object()?;
    text(links, &["next"])
}

/// `totalRecords`, when sent.
pub fn total_records(body: &Value) -> Option<i64> {
    result_set(body).and_then(|o| int(o, &["totalRecords"]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_and_booleans_are_read_from_strings_too() {
        let r = ContactRecord::from_value(&json!({
            "contactId": "712876049780", "masterContactId": 712876049700_i64, "primaryDispositionId": "2896",
            "secondaryDispositionId": 0, "isOutbound": "False", "mediaTypeId": "4", "skillId": 1507
        }))
        .unwrap();
        assert_eq!(r.contact_id, 712876049780);
        assert_eq!(r.master_contact_id, 712876049700);
        assert_eq!(r.primary_disposition_id, Some(2896));
        assert_eq!(r.secondary_disposition_id, None);
        assert_eq!(r.is_outbound, Some(false));
        assert_eq!(r.media_type_id, Some(4));
        assert_eq!(r.skill_id, Some(1507));
    }

    #[test]
    fn the_master_contact_defaults_to_the_contact() {
        let r = ContactRecord::from_value(&json!({"contactId": 5})).unwrap();
        assert_eq!(r.master_contact_id, 5);
        assert!(ContactRecord::from_value(&json!({"contactId": 0})).is_none());
        assert!(ContactRecord::from_value(&json!({"contactId": "abc"})).is_none());
    }

    #[test]
    fn contact_disposition_accepts_both_agent_field_spellings_and_no_disposition() {
        let a = ContactDisposition::from_value(&json!({"dispositionId": 7, "dispositionName": "Sale",
            "dispositionByAgendId": "42", "notes": "n", "lastUpdated": "2026-01-01T00:00:00Z"}))
        .unwrap();
        assert_eq!(a.by_agent_id.as_deref(), Some("42"));
        let b = ContactDisposition::from_value(&json!({"dispositionId": "7", "dispositionedByAgendId": 42})).unwrap();
        assert_eq!((b.disposition_id, b.by_agent_id.as_deref()), (7, Some("42")));
        assert_eq!(ContactDisposition::from_value(&json!({"dispositionId": 0})), None);
        assert_eq!(ContactDisposition::from_value(&json!({"dispositionId": null})), None);
        assert_eq!(ContactDisposition::from_value(&json!({})), None);
    }

    #[test]
    fn skills_expose_the_acw_timeout_only_when_the_platform_closes_the_window() {
        let s = Skill::from_value(&json!({"skillId": 1, "skillName": "Sales", "acwTypeId": 2,
            "requireDisposition": false, "maxSecondsACW": 120, "dispositions": [{"dispositionId": 9, "priority": 1}]}))
        .unwrap();
        assert_eq!(s.acw_timeout_ms(), Some(120_000));
        assert_eq!(s.disposition_ids, vec![9]);
        assert_eq!(s.acw_mode().as_deref(), Some("acwTypeId=2 requireDisposition=false maxSecondsACW=120"));
        let required = Skill { require_disposition: Some(true), ..s.clone() };
        assert_eq!(required.acw_timeout_ms(), None);
        let none = Skill { acw_type_id: Some(1), ..s };
        assert_eq!(none.acw_timeout_ms(), None);
        let wrapped = Skill::from_value(&json!({"skills": [{"skillId": 3, "skillName": "X"}]})).unwrap();
        assert_eq!(wrapped.id, 3);
    }

    #[test]
    fn listings_are_read_at_the_top_level_or_under_result_set() {
        let v23 = json!({"resultSet": {"lastPollTime": "2026-01-01T00:00:01Z", "activeContacts": [{"contactId": 1}, {"bad": 1}]}});
        let newer =
            json!({"totalRecords": 1, "lastPollTime": "2026-01-01T00:00:02Z", "activeContacts": [{"contactId": 2}]});
        let a = listing(&v23, &["activeContacts"], ContactRecord::from_value);
        assert_eq!((a.records.len(), a.last_poll_time.as_deref()), (1, Some("2026-01-01T00:00:01Z")));
        let b = listing(&newer, &["activeContacts"], ContactRecord::from_value);
        assert_eq!(b.records[0].contact_id, 2);
        assert_eq!(listing(&json!([1]), &["x"], ContactRecord::from_value), Polled::default());
    }

    #[test]
    fn timestamps_without_offset_are_utc() {
        assert_eq!(fields::parse_timestamp("2013-09-11T05:03:24.000Z").unwrap().to_string(), "2013-09-11T05:03:24Z");
        assert_eq!(fields::parse_timestamp("2013-09-11T05:03:24").unwrap().to_string(), "2013-09-11T05:03:24Z");
        assert_eq!(fields::parse_timestamp("yesterday"), None);
    }
}
