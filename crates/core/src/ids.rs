//! What a platform id may look like: the one rule, used by every path an id comes in by.
//!
//! Ids name legs in the store, appear in the ledger and the admin API, and are put into the platform's URL paths.
//! An id that merely *renders* like a real one (a UUID wrapped in U+202E and U+200B) would be a second leg for the
//! same participant; one like `../../sandbox/v1/traffic/start` would reach the platform as a path (percent-encoded,
//! but still sent). So ids are checked by **shape**, per platform, before anything is stored:
//!
//! | platform | ids                                                       | shape                                          |
//! |----------|-----------------------------------------------------------|------------------------------------------------|
//! | Genesys  | conversation, participant, communication (session), queue, user, campaign | a UUID, canonical form: 8-4-4-4-12 lowercase hex digits (what the platform writes) |
//! | Genesys  | wrap-up code                                              | a UUID, or a system code name such as `ININ-WRAP-UP-TIMEOUT` (ASCII letters, digits, `-`, `_`; at most 64) |
//! | CXone    | master contact, contact, skill, agent, campaign, disposition | a decimal integer without sign or leading zero, at most 19 digits (CXone ids are int64) |
//!
//! Every accepted shape is ASCII letters, digits and `-`/`_` only, so control, bidirectional, zero-width and
//! other lookalike characters, separators (`/`, `.`, `%`, `\`) and whitespace are all refused by construction.
//! (`platforms/genesys-cloud.md` and `platforms/nice-cxone.md` are the sources for these shapes; CXone agent
//! *session* ids are opaque strings, but they never name a leg and do not pass through here.)
//!
//! Refusals name the field in the platform's own spelling (`participantId`, `contactId`) and say which shape was
//! expected, never the value: a hostile value is not echoed into logs and error answers.

use crate::event::{Event, EventKind};
use crate::leg::{LegFacts, LegKey, Platform};

/// Longest Genesys system code name accepted (the platform's own are about 40 characters).
pub const MAX_CODE_NAME_CHARS: usize = 64;
/// Longest CXone id accepted: `i64::MAX` has 19 digits.
pub const MAX_NUMERIC_DIGITS: usize = 19;

/// Which kind of id a value is, which decides its shape on each platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// Genesys conversationId; CXone masterContactId.
    Conversation,
    /// Genesys participantId; CXone contactId.
    Participant,
    /// Genesys communication (detail events: `sessionId`); CXone has none.
    Communication,
    /// Genesys queueId; CXone skillId.
    Queue,
    /// Genesys userId; CXone agentId.
    User,
    /// Outbound campaign.
    Campaign,
    /// A wrap-up code (Genesys) or disposition (CXone).
    Code,
}

impl IdKind {
    /// The field's name on `platform`, as its payloads spell it.
    pub fn field(self, platform: Platform) -> &'static str {
        match (platform, self) {
            (Platform::Genesys, IdKind::Conversation) => "conversationId",
            (Platform::Genesys, IdKind::Participant) => "participantId",
            (Platform::Genesys, IdKind::Communication) => "sessionId",
            (Platform::Genesys, IdKind::Queue) => "queueId",
            (Platform::Genesys, IdKind::User) => "userId",
            (Platform::Genesys, IdKind::Campaign) => "outboundCampaignId",
            (Platform::Genesys, IdKind::Code) => "wrapupCode",
            (Platform::Cxone, IdKind::Conversation) => "masterContactId",
            (Platform::Cxone, IdKind::Participant) => "contactId",
            (Platform::Cxone, IdKind::Communication) => "communicationId",
            (Platform::Cxone, IdKind::Queue) => "skillId",
            (Platform::Cxone, IdKind::User) => "agentId",
            (Platform::Cxone, IdKind::Campaign) => "campaignId",
            (Platform::Cxone, IdKind::Code) => "dispositionId",
        }
    }
}

/// An id that does not have its platform's shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} is not a valid {platform} id: expected {expected}")]
pub struct IdError {
    /// The field, in the platform's spelling.
    pub field: &'static str,
    pub platform: &'static str,
    pub expected: &'static str,
}

const UUID: &str = "a UUID (8-4-4-4-12 lowercase hexadecimal digits)";
const UUID_OR_CODE_NAME: &str = "a UUID, or a system code name of ASCII letters, digits, '-' and '_'";
const NUMERIC: &str = "a decimal integer (digits only, no sign or leading zero)";
const NONE: &str = "no such id on this platform";

/// Checks one id of `kind` on `platform`.
pub fn check(platform: Platform, kind: IdKind, value: &str) -> Result<(), IdError> {
    let (ok, expected) = match (platform, kind) {
        (Platform::Genesys, IdKind::Code) => (is_uuid(value) || is_code_name(value), UUID_OR_CODE_NAME),
        (Platform::Genesys, _) => (is_uuid(value), UUID),
        (Platform::Cxone, IdKind::Communication) => (false, NONE),
        (Platform::Cxone, _) => (is_numeric(value), NUMERIC),
    };
    if ok {
        Ok(())
    } else {
        Err(IdError { field: kind.field(platform), platform: platform.as_str(), expected })
    }
}

/// Checks the two ids of a leg (the connection name is the service's own, not the platform's).
pub fn check_leg(platform: Platform, leg: &LegKey) -> Result<(), IdError> {
    check(platform, IdKind::Conversation, &leg.conversation)?;
    check(platform, IdKind::Participant, &leg.participant)
}

/// Checks every platform id an event carries: its leg, the ids among its facts, its code.
pub fn check_event(platform: Platform, event: &Event) -> Result<(), IdError> {
    check_leg(platform, &event.leg)?;
    match &event.kind {
        EventKind::LegEnded { facts } => check_facts(platform, facts),
        EventKind::CodeRecorded { code_id: Some(code), .. } => check(platform, IdKind::Code, code),
        EventKind::CodeRecorded { code_id: None, .. }
        | EventKind::LegClosed
        | EventKind::LegClosedUnread
        | EventKind::DecisionArrived { .. }
        | EventKind::OperatorResolved { .. } => Ok(()),
    }
}

fn check_facts(platform: Platform, facts: &LegFacts) -> Result<(), IdError> {
    for (kind, value) in [
        (IdKind::Communication, &facts.communication_id),
        (IdKind::Queue, &facts.queue_id),
        (IdKind::User, &facts.user_id),
        (IdKind::Campaign, &facts.campaign_id),
    ] {
        if let Some(v) = value {
            check(platform, kind, v)?;
        }
    }
    Ok(())
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lowercase hex. Any version: Genesys ids are v4, its system code is v1.
pub fn is_uuid(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

/// A platform system code name: `ININ-WRAP-UP-TIMEOUT`, `ININ-OUTBOUND-PREVIEW-SKIPPED`.
fn is_code_name(value: &str) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_CODE_NAME_CHARS
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}

/// `0`, or 1–19 digits not starting with `0`: one spelling per number, so one leg per contact.
pub fn is_numeric(value: &str) -> bool {
    let b = value.as_bytes();
    match b {
        [] => false,
        [b'0'] => true,
        [b'0', ..] => false,
        _ => b.len() <= MAX_NUMERIC_DIGITS && b.iter().all(u8::is_ascii_digit) && value.parse::<i64>().is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD_UUID: &str = "5d0e1c4a-1b2c-4d3e-8f40-000000000001";

    #[test]
    fn genesys_ids_are_canonical_uuids() {
        assert!(check(Platform::Genesys, IdKind::Participant, GOOD_UUID).is_ok());
        // The platform's own timeout code is a version-1 UUID.
        assert!(check(Platform::Genesys, IdKind::Code, "7fb334b0-0e9e-11e4-9191-0800200c9a66").is_ok());
        for bad in [
            "",
            "p-1",
            "5D0E1C4A-1B2C-4D3E-8F40-000000000001",
            "5d0e1c4a1b2c4d3e8f40000000000001",
            "{5d0e1c4a-1b2c-4d3e-8f40-000000000001}",
            "5d0e1c4a-1b2c-4d3e-8f40-00000000000",
            "5d0e1c4a-1b2c-4d3e-8f40-0000000000012",
            "5d0e1c4a-1b2c-4d3e-8f40_000000000001",
            "5d0e1c4g-1b2c-4d3e-8f40-000000000001",
            " 5d0e1c4a-1b2c-4d3e-8f40-000000000001",
            "../../../../sandbox/v1/traffic/start",
        ] {
            let e = check(Platform::Genesys, IdKind::Participant, bad).unwrap_err();
            assert_eq!(e.field, "participantId", "{bad:?}");
        }
    }

    #[test]
    fn lookalike_characters_around_a_real_id_are_refused() {
        for wrap in ['\u{202e}', '\u{200b}', '\u{feff}', '\u{2066}', '\u{00a0}', '\u{0000}', '\u{001b}'] {
            for id in
                [format!("{wrap}{GOOD_UUID}"), format!("{GOOD_UUID}{wrap}"), format!("{}{wrap}", &GOOD_UUID[..35])]
            {
                assert!(check(Platform::Genesys, IdKind::Conversation, &id).is_err(), "{id:?}");
            }
        }
        // A Cyrillic 'а' (U+0430) where a Latin 'a' belongs.
        let cyrillic = GOOD_UUID.replacen('a', "\u{0430}", 1);
        assert!(check(Platform::Genesys, IdKind::Conversation, &cyrillic).is_err());
        assert!(check(Platform::Cxone, IdKind::Participant, "1569815\u{200b}").is_err());
        assert!(check(Platform::Cxone, IdKind::Participant, "١٥٦٩٨١٥").is_err(), "Arabic-Indic digits");
    }

    #[test]
    fn genesys_codes_are_uuids_or_system_code_names() {
        for ok in ["ININ-WRAP-UP-TIMEOUT", "ININ-OUTBOUND-PREVIEW-SKIPPED", GOOD_UUID] {
            assert!(check(Platform::Genesys, IdKind::Code, ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "a b", "a/b", "..", "ININ.WRAP", &"A".repeat(MAX_CODE_NAME_CHARS + 1)] {
            let e = check(Platform::Genesys, IdKind::Code, bad).unwrap_err();
            assert_eq!(e.field, "wrapupCode");
        }
    }

    #[test]
    fn cxone_ids_are_plain_decimal_integers() {
        for ok in ["0", "7", "1569815", "712876049780", "9223372036854775807"] {
            assert!(check(Platform::Cxone, IdKind::Participant, ok).is_ok(), "{ok}");
        }
        for bad in ["", "-5", "+5", "007", " 7", "7 ", "1e3", "0x10", "9223372036854775808", "12345678901234567890"] {
            let e = check(Platform::Cxone, IdKind::Participant, bad).unwrap_err();
            assert_eq!((e.field, e.platform), ("contactId", "cxone"), "{bad:?}");
        }
        assert_eq!(check(Platform::Cxone, IdKind::Queue, "x").unwrap_err().field, "skillId");
        assert!(check(Platform::Cxone, IdKind::Communication, "1").is_err());
    }

    #[test]
    fn an_event_is_checked_in_every_id_it_carries() {
        use crate::event::{Event, EventKind};
        let leg = LegKey::new("g", GOOD_UUID, GOOD_UUID);
        let ended = |facts: LegFacts| Event {
            leg: leg.clone(),
            dedupe_key: "k".into(),
            occurred_at: jiff::Timestamp::UNIX_EPOCH,
            correlation_id: None,
            kind: EventKind::LegEnded { facts: Box::new(facts) },
        };
        let good = LegFacts {
            communication_id: Some(GOOD_UUID.into()),
            queue_id: Some(GOOD_UUID.into()),
            user_id: Some(GOOD_UUID.into()),
            ..LegFacts::default()
        };
        assert!(check_event(Platform::Genesys, &ended(good.clone())).is_ok());
        let bad_queue = LegFacts { queue_id: Some("q-1".into()), ..good.clone() };
        assert_eq!(check_event(Platform::Genesys, &ended(bad_queue)).unwrap_err().field, "queueId");
        let bad_campaign = LegFacts { campaign_id: Some("../x".into()), ..good };
        assert_eq!(check_event(Platform::Genesys, &ended(bad_campaign)).unwrap_err().field, "outboundCampaignId");
        let mut code = ended(LegFacts::default());
        code.kind = EventKind::CodeRecorded { code_id: Some("a/b".into()), notes: None, system: false };
        assert_eq!(check_event(Platform::Genesys, &code).unwrap_err().field, "wrapupCode");
        code.leg.participant = "p-1".into();
        assert_eq!(check_event(Platform::Genesys, &code).unwrap_err().field, "participantId");
        // The message names the field and the shape, never the value.
        let message = check_event(Platform::Genesys, &code).unwrap_err().to_string();
        assert!(message.contains("participantId") && !message.contains("p-1"), "{message}");
    }

    proptest! {
        #[test]
        fn whatever_is_accepted_is_plain_ascii_without_separators(s in "\\PC{0,40}", platform in prop_oneof![Just(Platform::Genesys), Just(Platform::Cxone)]) {
            for kind in [IdKind::Conversation, IdKind::Participant, IdKind::Queue, IdKind::Code] {
                if check(platform, kind, &s).is_ok() {
                    prop_assert!(!s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
                }
            }
        }

        #[test]
        fn every_uuid_is_a_genesys_id_and_every_u63_a_cxone_id(bytes in any::<[u8; 16]>(), n in 0..=i64::MAX) {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let uuid = format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]);
            prop_assert!(check(Platform::Genesys, IdKind::Participant, &uuid).is_ok());
            prop_assert!(check(Platform::Cxone, IdKind::Participant, &n.to_string()).is_ok());
        }
    }
}
