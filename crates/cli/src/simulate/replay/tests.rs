use super::*;
use jiff::Timestamp;
use wrapup_core::catalog::{CodeEntry, QueueEntry};
use wrapup_core::lifecycle::{Decision, ExternalDecision, LegState, WriteIntent};
use wrapup_core::{LegKey, Platform, Timing};

const CONFIG: &str = r#"
[[connections]]
name = "prod"
kind = "genesys"
base_url = "http://127.0.0.1:1"
client_id = "id"
client_secret = "literal:secret"
"#;

const RULES: &str = r#"
[[rules]]
name = "support"
code = "Resolved"
[rules.when]
queue = "Support"

[[rules]]
name = "sales shadow"
code = "No sale"
mode = "shadow"
[rules.when]
queue = "Sales"
"#;

fn rules(text: &str) -> RuleSet {
    wrapup_config::Config::parse(&format!("{CONFIG}{text}"), "t.toml").unwrap().rules
}

fn connections() -> BTreeMap<String, ConnectionView> {
    let code = |id: &str, name: &str| CodeEntry { id: id.into(), name: name.into() };
    let queue = |id: &str, name: &str, codes: &[&str]| QueueEntry {
        id: id.into(),
        name: name.into(),
        code_ids: codes.iter().map(|c| c.to_string()).collect(),
        acw_timeout_ms: Some(60_000),
        acw_mode: None,
        acw: Some(AcwPolicy::Mandatory),
    };
    let catalog = Catalog {
        codes: vec![code("c-res", "Resolved"), code("c-esc", "Escalated"), code("c-no", "No sale")],
        queues: vec![queue("q-sup", "Support", &["c-res", "c-esc"]), queue("q-sal", "Sales", &["c-no", "c-res"])],
    };
    let view = ConnectionView { catalog: Some(catalog), system_codes: ["ININ-WRAP-UP-TIMEOUT".to_string()].into() };
    [("prod".to_string(), view)].into()
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

/// A finished leg of `queue` created at `at(n)`.
fn leg(n: i64, queue: &str, outcome: Outcome) -> LegRecord {
    let mut leg = LegRecord::new(LegKey::new("prod", format!("conv-{n}"), "p"), at(n));
    leg.facts.platform = Some(Platform::Genesys);
    leg.facts.queue_id = Some(if queue == "Support" { "q-sup" } else { "q-sal" }.into());
    leg.facts.queue_name = Some(queue.into());
    leg.ended_seen = true;
    leg.state = LegState::Done;
    leg.outcome = Some(outcome);
    leg
}

fn decided_by(leg: &mut LegRecord, rule: &str, index: usize, code: &str, mode: Mode, version: &str) {
    leg.decision = Some(Decision {
        source: DecisionSource::Rule { index, name: rule.into(), version: version.into() },
        code_name: code.into(),
        notes: None,
        timing: Timing::Immediate,
        mode,
        decided_at: leg.created_at,
        fallback: None,
    });
}

fn wrote(leg: &mut LegRecord, id: &str, name: &str) {
    leg.intent = Some(WriteIntent { code_id: id.into(), code_name: name.into(), at: leg.created_at });
}

/// The store's legs as the current rules left them: applied, agent won, agent changed, expired, shadow with an
/// agent's code, no rule, and a leg decided by a CRM.
fn store(rules: &RuleSet) -> Vec<LegRecord> {
    let v = rules.version();
    let mut applied = leg(0, "Support", Outcome::Applied);
    decided_by(&mut applied, "support", 0, "Resolved", Mode::Enforce, v);
    wrote(&mut applied, "c-res", "Resolved");
    applied.observed_code = Some("c-res".into());

    let mut won = leg(1, "Support", Outcome::AgentWon);
    decided_by(&mut won, "support", 0, "Resolved", Mode::Enforce, v);
    won.observed_code = Some("c-esc".into());

    let mut changed = leg(2, "Support", Outcome::AgentChanged);
    decided_by(&mut changed, "support", 0, "Resolved", Mode::Enforce, v);
    wrote(&mut changed, "c-res", "Resolved");
    changed.observed_code = Some("c-res".into());
    changed.observed_code = Some("c-esc".into());

    let mut expired = leg(3, "Support", Outcome::Expired);
    decided_by(&mut expired, "support", 0, "Resolved", Mode::Enforce, v);
    expired.observed_code = Some("ININ-WRAP-UP-TIMEOUT".into());

    let mut shadow = leg(4, "Sales", Outcome::Shadow);
    decided_by(&mut shadow, "sales shadow", 1, "No sale", Mode::Shadow, v);
    shadow.observed_code = Some("c-no".into());

    let mut nothing = leg(5, "Billing", Outcome::NoRule);
    nothing.facts.queue_id = Some("q-bil".into());

    let mut crm = leg(6, "Support", Outcome::Applied);
    crm.decision = Some(Decision {
        source: DecisionSource::External {
            source: "crm".into(),
            idempotency_key: Some("k".into()),
            arrived_at: at(6),
            rule: Some("support".into()),
        },
        code_name: "Escalated".into(),
        notes: None,
        timing: Timing::Immediate,
        mode: Mode::Enforce,
        decided_at: at(6),
        fallback: None,
    });
    crm.external = Some(ExternalDecision {
        code_name: "Escalated".into(),
        notes: None,
        source: "crm".into(),
        idempotency_key: Some("k".into()),
        arrived_at: at(6),
        expires_at: None,
    });
    wrote(&mut crm, "c-esc", "Escalated");

    let mut open = leg(7, "Support", Outcome::Applied);
    open.state = LegState::Scheduled;
    open.outcome = None;
    decided_by(&mut open, "support", 0, "Resolved", Mode::Enforce, v);

    // The agent coded before the leg was decided: the store has no decision to reproduce.
    let mut early = leg(8, "Support", Outcome::AgentWon);
    early.observed_code = Some("c-res".into());

    // Stored out of order: the report orders legs by creation time.
    vec![crm, applied, won, changed, expired, shadow, nothing, open, early]
}

fn run(rules: &RuleSet, legs: &[LegRecord]) -> Report {
    let views = connections();
    let mut sim = Simulation::new(rules, &views);
    for leg in legs {
        sim.add(leg);
    }
    sim.finish(None, Vec::new())
}

#[test]
fn the_rules_that_decided_the_legs_reproduce_every_decision() {
    let rules = rules(RULES);
    let report = run(&rules, &store(&rules));
    assert_eq!(report.vs_recorded, Reproduction { same: 8, different: 0, not_decided: 1 });
    let verdicts: Vec<(String, Verdict)> =
        report.leg_reports.iter().map(|l| (l.conversation.clone(), l.verdict)).collect();
    assert_eq!(
        verdicts,
        [
            ("conv-0", Verdict::SameAsApplied),
            ("conv-1", Verdict::DifferentFromAgent),
            ("conv-2", Verdict::DifferentFromAgent),
            ("conv-3", Verdict::WouldFillUncoded),
            ("conv-4", Verdict::SameAsAgent),
            ("conv-5", Verdict::NoRule),
            ("conv-6", Verdict::CrmDecided),
            ("conv-7", Verdict::Unfinished),
            ("conv-8", Verdict::SameAsAgent),
        ]
        .map(|(c, v)| (c.to_string(), v))
    );
    assert!(report.leg_reports[1].blocked_by_agent, "the agent coded before our write");
    assert!(!report.leg_reports[2].blocked_by_agent, "the agent changed our code after it");
    let support = &report.rules[0];
    assert_eq!((support.legs, support.blocked_by_agent), (7, 2));
    assert_eq!(support.agreement, Agreement { legs: 3, same: 1, rate: Some(0.3333) });
    assert_eq!(
        support.confusion,
        [
            Cell { decided: "Resolved".into(), agent: "Escalated".into(), legs: 2 },
            Cell { decided: "Resolved".into(), agent: "Resolved".into(), legs: 1 },
        ]
    );
    assert_eq!(support.verdicts.crm_decided, 1, "the CRM's leg is the rule's, but not held against it");
    let sales = &report.rules[1];
    assert_eq!(sales.agreement, Agreement { legs: 1, same: 1, rate: Some(1.0) });
}

#[test]
fn a_changed_code_shows_exactly_the_legs_it_changes() {
    let current = rules(RULES);
    let legs = store(&current);
    let candidate = rules(&RULES.replacen("code = \"Resolved\"", "code = \"escalated\"", 1));
    let report = run(&candidate, &legs);
    let different: Vec<&str> = report
        .leg_reports
        .iter()
        .filter(|l| l.vs_recorded == VsRecorded::Different)
        .map(|l| l.conversation.as_str())
        .collect();
    // The CRM's leg keeps its decision; the rule's decided legs change, the unfinished one included.
    assert_eq!(different, ["conv-0", "conv-1", "conv-2", "conv-3", "conv-7"]);
    assert_eq!(
        report.leg_reports[1].simulated,
        Decided::Rule { rule: "support".into(), code: "Escalated".into(), mode: Mode::Enforce, asks_crm: false },
        "the code is named as the catalog spells it"
    );
    assert_eq!(report.leg_reports[0].verdict, Verdict::ChangedFromApplied);
    assert_eq!(report.rules[0].agreement, Agreement { legs: 3, same: 2, rate: Some(0.6667) });
}

#[test]
fn a_code_the_queue_does_not_allow_is_counted_as_unusable() {
    let current = rules(RULES);
    let candidate = rules(&RULES.replacen("code = \"No sale\"", "code = \"Escalated\"", 1));
    let report = run(&candidate, &store(&current));
    assert_eq!(report.rules[1].unusable_code, 1);
    let shadow = &report.leg_reports[4];
    assert_eq!(
        shadow.unusable_code.as_deref(),
        Some("code \"Escalated\" exists but is not assigned to queue \"Sales\"")
    );
    assert_eq!(shadow.verdict, Verdict::DifferentFromAgent);
}

#[test]
fn a_rule_that_asks_a_crm_is_not_judged_on_its_fallback() {
    let current = rules(RULES);
    let asking = format!(
        "{CONFIG}\n[connections.decisions]\n{}",
        RULES.replacen("code = \"Resolved\"\n", "code = \"Resolved\"\ndecide = { crm = true, wait = \"10s\" }\n", 1)
    );
    let candidate = wrapup_config::Config::parse(&asking, "t.toml").unwrap().rules;
    let report = run(&candidate, &store(&current));
    assert_eq!(report.rules[0].verdicts.crm_decided, 6);
    assert_eq!(report.rules[0].agreement.legs, 0);
}

#[test]
fn the_same_legs_in_another_order_give_the_same_bytes() {
    let rules = rules(RULES);
    let legs = store(&rules);
    let mut reversed = legs.clone();
    reversed.reverse();
    let a = serde_json::to_string(&run(&rules, &legs)).unwrap();
    let b = serde_json::to_string(&run(&rules, &reversed)).unwrap();
    assert_eq!(a, b);
}

#[test]
fn a_leg_decided_before_its_window_was_found_never_opened_is_reproduced() {
    let rules = rules(RULES);
    let mut leg = leg(0, "Support", Outcome::NoAcw);
    leg.facts.acw = Some(AcwPolicy::AgentRequested);
    decided_by(&mut leg, "support", 0, "Resolved", Mode::Enforce, rules.version());
    let mut skill_without_acw = self::leg(1, "Support", Outcome::NoAcw);
    skill_without_acw.facts.acw = Some(AcwPolicy::None);
    let report = run(&rules, &[leg, skill_without_acw]);
    let got: Vec<_> = report.leg_reports.iter().map(|l| (l.vs_recorded, l.verdict)).collect();
    assert_eq!(got, [(VsRecorded::Same, Verdict::NoWindow), (VsRecorded::NotDecided, Verdict::NoWindow)]);
}

#[test]
fn a_leg_the_agent_coded_before_it_was_decided_is_completed_from_the_catalog() {
    let rules = rules(RULES);
    let mut early = leg(0, "Support", Outcome::AgentWon);
    early.facts.queue_name = None;
    early.observed_code = Some("c-res".into());
    let report = run(&rules, &[early]);
    let leg = &report.leg_reports[0];
    assert_eq!(leg.queue.as_deref(), Some("Support"));
    assert_eq!((leg.verdict, leg.vs_recorded), (Verdict::SameAsAgent, VsRecorded::NotDecided));
}
