use arbitrary::{Arbitrary, Unstructured};
use std::collections::BTreeMap;
use wrapup_core::catalog::AcwPolicy;
use wrapup_core::{Channel, Direction, LegFacts, Platform, RuleSet};

#[derive(serde::Deserialize)]
struct Doc {
    rules: RuleSet,
}

const CHANNELS: &[Channel] =
    &[Channel::Voice, Channel::Callback, Channel::Email, Channel::Message, Channel::Chat, Channel::Other];
const ACW: &[AcwPolicy] = &[AcwPolicy::Mandatory, AcwPolicy::Optional, AcwPolicy::AgentRequested, AcwPolicy::None];
const DIRECTIONS: &[Direction] = &[Direction::Inbound, Direction::Outbound, Direction::Unknown];

fn facts(u: &mut Unstructured<'_>) -> arbitrary::Result<LegFacts> {
    Ok(LegFacts {
        platform: if bool::arbitrary(u)? { Some(Platform::Genesys) } else { None },
        communication_id: Option::<String>::arbitrary(u)?,
        media: Option::<String>::arbitrary(u)?,
        channel: if bool::arbitrary(u)? { Some(*u.choose(CHANNELS)?) } else { None },
        direction: *u.choose(DIRECTIONS)?,
        queue_id: Option::<String>::arbitrary(u)?,
        queue_name: Option::<String>::arbitrary(u)?,
        user_id: Option::<String>::arbitrary(u)?,
        disconnect_type: Option::<String>::arbitrary(u)?,
        talk_ms: Option::<u64>::arbitrary(u)?,
        hold_ms: Option::<u64>::arbitrary(u)?,
        ended_at: None,
        acw_timeout_ms: Option::<u64>::arbitrary(u)?,
        acw: if bool::arbitrary(u)? { Some(*u.choose(ACW)?) } else { None },
        acw_estimate_ms: Option::<u64>::arbitrary(u)?,
        campaign_id: Option::<String>::arbitrary(u)?,
        attributes: BTreeMap::<String, String>::arbitrary(u)?,
    })
}

/// The rules: a `RuleSet` deserialized from TOML or JSON (the two forms a rule set is read in), then evaluated on
/// arbitrary leg facts. Neither step may panic; a rule set that deserializes must serialize back to the same set, and
/// a match must name a rule of the set with its code.
pub fn rules(data: &[u8]) {
    // The rules text is everything up to the first NUL; the facts are drawn from the rest.
    let (text, rest) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Some((&format, text)) = text.split_first() else { return };
    let Ok(text) = std::str::from_utf8(text) else { return };
    let set = if format.is_multiple_of(2) {
        toml::from_str::<Doc>(text).map(|d| d.rules).ok()
    } else {
        serde_json::from_str::<RuleSet>(text).ok()
    };
    let Some(set) = set else { return };
    let json = serde_json::to_string(&set).expect("a rule set serializes");
    let back: RuleSet = serde_json::from_str(&json).expect("and reads back");
    assert_eq!(back.version(), set.version());
    let mut u = Unstructured::new(rest);
    let Ok(facts) = facts(&mut u) else { return };
    for connection in ["fuzz", ""] {
        if let Some(m) = set.evaluate(connection, &facts) {
            let rule = &set.rules()[m.index];
            assert_eq!((&rule.name, &rule.code), (&m.rule_name, &m.code));
        }
    }
}
