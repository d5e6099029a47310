use super::*;
use crate::leg::{Channel, Direction};
use jiff::SignedDuration;
use proptest::prelude::*;
use std::collections::BTreeMap;

fn rule(name: &str, code: &str, when: serde_json::Value) -> Rule {
    serde_json::from_value(serde_json::json!({"name": name, "code": code, "when": when})).unwrap()
}

fn voice_leg(queue: &str, talk_ms: u64) -> LegFacts {
    LegFacts {
        platform: Some(Platform::Genesys),
        channel: Some(Channel::Voice),
        direction: Direction::Inbound,
        queue_name: Some(queue.into()),
        talk_ms: Some(talk_ms),
        ..LegFacts::default()
    }
}

#[test]
fn the_first_matching_rule_decides() {
    let set = RuleSet::new(vec![
        rule("short", "Abandoned", serde_json::json!({"talk_ms": {"lt": 5000}})),
        rule("support", "Resolved", serde_json::json!({"queue": "Support"})),
        rule("catch-all", "Other", serde_json::json!({})),
    ])
    .unwrap();
    let m = set.evaluate("prod", &voice_leg("Support", 1000)).unwrap();
    assert_eq!((m.index, m.rule_name.as_str(), m.code.as_str()), (0, "short", "Abandoned"));
    assert_eq!(set.evaluate("prod", &voice_leg("Support", 60_000)).unwrap().index, 1);
    assert_eq!(set.evaluate("prod", &voice_leg("Sales", 60_000)).unwrap().index, 2);
}

#[test]
fn no_rule_matches_when_no_condition_set_holds() {
    let set = RuleSet::new(vec![rule("support", "Resolved", serde_json::json!({"queue": "Support"}))]).unwrap();
    assert_eq!(set.evaluate("prod", &voice_leg("Sales", 1)), None);
    assert_eq!(set.evaluate("prod", &LegFacts::default()), None);
}

#[test]
fn platform_and_connection_limits_exclude_other_legs() {
    let mut cxone_only = rule("cxone", "A", serde_json::json!({}));
    cxone_only.platform = Some(Platform::Cxone);
    let mut dev_only = rule("dev", "B", serde_json::json!({}));
    dev_only.connection = Some("dev".into());
    let set = RuleSet::new(vec![cxone_only, dev_only]).unwrap();
    assert_eq!(set.evaluate("prod", &voice_leg("Support", 1)), None);
    assert_eq!(set.evaluate("dev", &voice_leg("Support", 1)).unwrap().rule_name, "dev");
    // A leg whose platform is unknown passes no platform-limited rule.
    let mut unknown = voice_leg("Support", 1);
    unknown.platform = None;
    assert_eq!(set.evaluate("dev", &unknown).unwrap().rule_name, "dev");
}

#[test]
fn a_match_carries_rendered_notes_timing_and_mode() {
    let r: Rule = serde_json::from_value(serde_json::json!({
        "name": "short",
        "code": "Abandoned",
        "notes": "auto: {{channel}} {{talk_seconds}}s ({{rule}})",
        "timing": {"kind": "before_timeout", "margin": 10000},
        "mode": "shadow",
        "when": {"channel": "voice"}
    }))
    .unwrap();
    let m = RuleSet::new(vec![r]).unwrap().evaluate("prod", &voice_leg("Support", 3_200)).unwrap();
    assert_eq!(m.notes.as_deref(), Some("auto: voice 3s (short)"));
    assert_eq!(m.timing, Timing::BeforeTimeout { margin: SignedDuration::from_secs(10) });
    assert_eq!(m.mode, Mode::Shadow);
}

#[test]
fn rule_names_must_be_unique_and_codes_named() {
    let dup = RuleSet::new(vec![rule("a", "X", serde_json::json!({})), rule("a", "Y", serde_json::json!({}))]);
    assert_eq!(dup, Err(RuleSetError::DuplicateName { name: "a".into(), first: 0, second: 1 }));
    assert!(matches!(RuleSet::new(vec![rule("a", " ", serde_json::json!({}))]), Err(RuleSetError::EmptyCode { .. })));
    assert!(matches!(RuleSet::new(vec![rule("", "X", serde_json::json!({}))]), Err(RuleSetError::EmptyName { .. })));
}

#[test]
fn the_version_is_stable_and_changes_with_the_rules() {
    let a =
        RuleSet::new(vec![rule("a", "X", serde_json::json!({"queue": "Q"})), rule("b", "Y", serde_json::json!({}))])
            .unwrap();
    // The same rules written with the long-form matcher hash the same.
    let a2 = RuleSet::new(vec![
        rule("a", "X", serde_json::json!({"queue": {"equals": "Q"}})),
        rule("b", "Y", serde_json::json!({})),
    ])
    .unwrap();
    assert_eq!(a.version(), a2.version());
    assert_eq!(a.version().len(), 16);
    let reordered = RuleSet::new(a.rules().iter().rev().cloned().collect()).unwrap();
    assert_ne!(a.version(), reordered.version());
    let json = serde_json::to_string(&a).unwrap();
    let back: RuleSet = serde_json::from_str(&json).unwrap();
    assert_eq!(back.version(), a.version());
    assert_eq!(json, a.canonical_json());
}

#[test]
fn the_version_of_a_known_rule_set_does_not_drift() {
    // Pinned: changing the canonical form changes every recorded version, which must be a deliberate decision.
    let set = RuleSet::new(vec![rule("a", "X", serde_json::json!({"queue": "Q"}))]).unwrap();
    assert_eq!(
        set.canonical_json(),
        r#"[{"name":"a","when":{"queue":{"equals":"Q"}},"code":"X","timing":{"kind":"immediate"},"mode":"enforce"}]"#
    );
    assert_eq!(set.version(), "1303dc6f133ff6a5");
}

// ---- properties ----

const WORDS: &[&str] = &["Support", "Sales", "vip", "gold", "peer", "client", "", "é", "Sup"];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![proptest::sample::select(WORDS).prop_map(str::to_string), any::<String>()]
}

fn opt_u64() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![Just(None), (0u64..20_000).prop_map(Some), any::<u64>().prop_map(Some)]
}

fn channel() -> impl Strategy<Value = Channel> {
    proptest::sample::select(vec![
        Channel::Voice,
        Channel::Callback,
        Channel::Email,
        Channel::Message,
        Channel::Chat,
        Channel::WorkItem,
        Channel::Other,
    ])
}

fn direction() -> impl Strategy<Value = Direction> {
    proptest::sample::select(vec![Direction::Inbound, Direction::Outbound, Direction::Unknown])
}

fn platform() -> impl Strategy<Value = Platform> {
    prop_oneof![Just(Platform::Genesys), Just(Platform::Cxone)]
}

prop_compose! {
    fn facts()(
        platform in proptest::option::of(platform()),
        channel in proptest::option::of(channel()),
        direction in direction(),
        queue in proptest::option::of(word()),
        disconnect in proptest::option::of(word()),
        campaign in proptest::option::of(word()),
        user in proptest::option::of(word()),
        talk_ms in opt_u64(),
        hold_ms in opt_u64(),
        acw in opt_u64(),
        attributes in proptest::collection::btree_map(word(), word(), 0..4),
    ) -> LegFacts {
        LegFacts {
            platform, channel, direction, queue_name: queue, disconnect_type: disconnect, campaign_id: campaign,
            user_id: user, talk_ms, hold_ms, acw_timeout_ms: acw, attributes, ..LegFacts::default()
        }
    }
}

fn string_matcher() -> impl Strategy<Value = StringMatcher> {
    prop_oneof![
        word().prop_map(StringMatcher::Equals),
        proptest::collection::vec(word(), 1..3).prop_map(StringMatcher::OneOf),
        proptest::sample::select(vec!["Sup.*", ".*", "(?i)sales", "[a-z]+", "é|gold"])
            .prop_map(|p| StringMatcher::Regex(Pattern::new(p).unwrap())),
        any::<bool>().prop_map(StringMatcher::Exists),
    ]
}

fn number_matcher() -> impl Strategy<Value = Option<NumberMatcher>> {
    (opt_u64(), opt_u64(), opt_u64(), opt_u64(), opt_u64())
        .prop_map(|(lt, lte, gt, gte, eq)| NumberMatcher::new(NumberOps { lt, lte, gt, gte, eq }).ok())
}

prop_compose! {
    fn conditions()(
        channel in proptest::option::of(prop_oneof![
            channel().prop_map(ChoiceMatcher::Equals),
            proptest::collection::vec(channel(), 1..3).prop_map(ChoiceMatcher::OneOf),
        ]),
        direction in proptest::option::of(direction().prop_map(ChoiceMatcher::Equals)),
        queue in proptest::option::of(string_matcher()),
        disconnect_type in proptest::option::of(string_matcher()),
        campaign in proptest::option::of(string_matcher()),
        talk_ms in number_matcher(),
        hold_ms in number_matcher(),
        acw_timeout_ms in number_matcher(),
        attributes in proptest::collection::btree_map(word(), string_matcher(), 0..2),
    ) -> Conditions {
        Conditions { channel, direction, queue, disconnect_type, campaign, talk_ms, hold_ms, acw_timeout_ms, attributes }
    }
}

const TEMPLATES: &[&str] = &[
    "",
    "{{channel}} {{talk_seconds}}s",
    "{{attributes.vip}}{{attributes.gold}}{{queue}}",
    "{{rule}}:{{code}} {{user_id}}",
];

fn rules() -> impl Strategy<Value = Vec<Rule>> {
    proptest::collection::vec(
        (
            conditions(),
            proptest::option::of(proptest::sample::select(TEMPLATES)),
            proptest::option::of(platform()),
            proptest::option::of(proptest::sample::select(vec!["prod", "dev"])),
            any::<bool>(),
        ),
        0..6,
    )
    .prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (when, notes, platform, connection, shadow))| Rule {
                name: format!("rule {i}"),
                when,
                code: format!("code {i}"),
                notes: notes.map(|t| NotesTemplate::parse(t).unwrap()),
                timing: Timing::Immediate,
                mode: if shadow { Mode::Shadow } else { Mode::Enforce },
                platform,
                connection: connection.map(str::to_string),
                decide: None,
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn evaluation_is_deterministic_and_first_match_wins(
        rules in rules(),
        facts in facts(),
        connection in prop_oneof![Just("prod".to_string()), Just("dev".to_string()), any::<String>()],
    ) {
        let set = RuleSet::new(rules).unwrap();
        let a = set.evaluate(&connection, &facts);
        let b = set.evaluate(&connection, &facts);
        prop_assert_eq!(&a, &b);
        let first = set.rules().iter().position(|r| r.matches(&connection, &facts));
        prop_assert_eq!(a.as_ref().map(|m| m.index), first);
        if let Some(m) = a {
            let r = &set.rules()[m.index];
            prop_assert_eq!(&m.rule_name, &r.name);
            prop_assert_eq!(&m.code, &r.code);
            prop_assert!(m.notes.as_ref().is_none_or(|n| n.chars().count() <= NOTES_MAX_CHARS));
        }
    }

    #[test]
    fn a_rule_limited_to_another_platform_or_connection_never_matches(
        rules in rules(),
        facts in facts(),
        other_platform in any::<bool>(),
    ) {
        let mut rules = rules;
        // A catch-all rule limited elsewhere, placed first: it must never be the answer.
        let mut limited = Rule {
            name: "elsewhere".into(),
            when: Conditions::default(),
            code: "X".into(),
            notes: None,
            timing: Timing::Immediate,
            mode: Mode::Enforce,
            platform: None,
            connection: None,
            decide: None,
        };
        if other_platform {
            limited.platform = Some(match facts.platform {
                Some(Platform::Genesys) => Platform::Cxone,
                _ => Platform::Genesys,
            });
            if facts.platform.is_none() {
                // With an unknown platform, any platform limit excludes the leg.
                limited.platform = Some(Platform::Cxone);
            }
        } else {
            limited.connection = Some("another connection".into());
        }
        rules.insert(0, limited);
        let set = RuleSet::new(rules).unwrap();
        for connection in ["prod", "dev"] {
            prop_assert_ne!(set.evaluate(connection, &facts).map(|m| m.index), Some(0));
        }
    }

    #[test]
    fn the_version_survives_a_serde_round_trip(rules in rules()) {
        let set = RuleSet::new(rules).unwrap();
        let back: RuleSet = serde_json::from_str(&serde_json::to_string(&set).unwrap()).unwrap();
        prop_assert_eq!(back.version(), set.version());
        prop_assert_eq!(back, set);
    }

    #[test]
    fn template_parsing_never_panics(source in any::<String>(), facts in facts()) {
        if let Ok(t) = NotesTemplate::parse(&source) {
            let out = t.render(RenderContext { rule: "r", code: "c", facts: &facts });
            prop_assert!(out.chars().count() <= NOTES_MAX_CHARS);
        }
    }

    #[test]
    fn rules_deserialized_from_arbitrary_json_never_panic(json in any::<String>()) {
        let _ = serde_json::from_str::<RuleSet>(&json);
    }
}

#[test]
fn attribute_matchers_follow_the_exists_rule() {
    let set = RuleSet::new(vec![rule("not vip", "X", serde_json::json!({"attributes": {"vip": {"exists": false}}}))])
        .unwrap();
    let mut leg = voice_leg("Support", 1);
    assert!(set.evaluate("prod", &leg).is_some());
    leg.attributes = BTreeMap::from([("vip".to_string(), "no".to_string())]);
    assert!(set.evaluate("prod", &leg).is_none());
}
