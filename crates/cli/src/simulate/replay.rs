//! The pure part of `wrapup simulate`: recorded legs and a candidate rule set in, a report out. No I/O, no clock.
//!
//! For each leg, three things are put side by side:
//!
//! - **recorded**: what the store decided (the leg's `decision`: a rule and its code, a CRM's decision; `no_rule`
//!   when no rule matched; `not_decided` when the leg ended before it was decided, or never had a window);
//! - **simulated**: what the candidate rules decide on the leg's stored facts, the way the worker decides (a leg
//!   without ACW is not decided; a shadow rule wins over a CRM's decision; a CRM's decision wins over any other
//!   rule; a rule with `decide` leaves the code to a CRM or hook);
//! - **what happened**: the agent's final code (`agent_won`, `agent_changed`, or a code an agent set on a leg we
//!   did not write), our code when it stood (`applied`), or a window that ended with no code (or the platform's
//!   timeout code).
//!
//! Each leg gets one verdict (see [`Verdict`]) and `vs_recorded`: whether the simulated decision is the recorded
//! one (`same`), another (`different`), or there was none to compare with (`not_decided`). Aggregates are counted
//! per candidate rule, with the agreement with agents and its confusion matrix. Everything is ordered (rule order,
//! sorted maps, legs by creation time then key), so the same legs and rules give the same report, byte for byte.

use serde::Serialize;
use std::collections::BTreeMap;
use wrapup_core::catalog::{AcwPolicy, Catalog};
use wrapup_core::lifecycle::{DecisionSource, LegRecord};
use wrapup_core::rules::Fallback;
use wrapup_core::{Mode, Outcome, RuleSet};

/// What the simulation knows of one connection (its cached catalog, its platform's own codes), and the agreement
/// cells: shared with `wrapup report`, so both count agreement the same way.
pub use wrapup_report::{Cell, ConnectionView};
use wrapup_report::{Confusion, Ending};

/// A decision, recorded or simulated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Decided {
    /// A rule decided `code`. `asks_crm`: the rule leaves the code to a CRM or hook, and `code` is its fallback.
    Rule {
        rule: String,
        code: String,
        mode: Mode,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        asks_crm: bool,
    },
    /// A CRM's decision (or a decision hook's answer) decided `code`.
    Crm { source: String, code: String },
    /// No rule matched.
    NoRule,
    /// Nothing was decided: the leg ended first, or it never had a window.
    NotDecided,
}

/// How a leg's simulated decision compares with what happened on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The agent's final code is the decided code.
    SameAsAgent,
    /// The agent's final code is another code.
    DifferentFromAgent,
    /// The window ended with no code (or the platform's timeout code): the rule would have filled it.
    WouldFillUncoded,
    /// Our code stood on the leg, and the rule decides the same.
    SameAsApplied,
    /// Our code stood on the leg, and the rule decides another.
    ChangedFromApplied,
    /// A CRM decided the leg, or the rule leaves the code to one: not the rule's to judge.
    CrmDecided,
    /// No candidate rule matches the leg.
    NoRule,
    /// The leg never had an ACW window: nothing could be written.
    NoWindow,
    /// The leg has not ended yet.
    Unfinished,
    /// What the leg ended with is not known (e.g. a `review` leg whose final code was never reported).
    Unknown,
}

/// Whether the simulated decision is the recorded one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VsRecorded {
    Same,
    Different,
    /// The store never decided the leg (it ended first, or had no window): nothing to compare with.
    NotDecided,
}

/// One leg of the report.
#[derive(Debug, Clone, Serialize)]
pub struct LegReport {
    pub connection: String,
    pub conversation: String,
    pub participant: String,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// The leg's recorded outcome (`null` while unfinished).
    pub outcome: Option<Outcome>,
    pub recorded: Decided,
    pub simulated: Decided,
    /// The code the agent ended the leg with, by name (the id when the cached catalog does not know it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_code: Option<String>,
    pub verdict: Verdict,
    pub vs_recorded: VsRecorded,
    /// The agent coded before any write of ours: an enforce rule would not have written.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub blocked_by_agent: bool,
    /// Why the decided code could not be written on this leg, by the cached catalog (the leg would be a `review`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unusable_code: Option<String>,
    #[serde(skip)]
    order: (jiff::Timestamp, wrapup_core::LegKey),
}

/// Legs per verdict, in a fixed order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub same_as_agent: u64,
    pub different_from_agent: u64,
    pub would_fill_uncoded: u64,
    pub same_as_applied: u64,
    pub changed_from_applied: u64,
    pub crm_decided: u64,
    pub no_rule: u64,
    pub no_window: u64,
    pub unfinished: u64,
    pub unknown: u64,
}

impl Counts {
    fn add(&mut self, verdict: Verdict) {
        *match verdict {
            Verdict::SameAsAgent => &mut self.same_as_agent,
            Verdict::DifferentFromAgent => &mut self.different_from_agent,
            Verdict::WouldFillUncoded => &mut self.would_fill_uncoded,
            Verdict::SameAsApplied => &mut self.same_as_applied,
            Verdict::ChangedFromApplied => &mut self.changed_from_applied,
            Verdict::CrmDecided => &mut self.crm_decided,
            Verdict::NoRule => &mut self.no_rule,
            Verdict::NoWindow => &mut self.no_window,
            Verdict::Unfinished => &mut self.unfinished,
            Verdict::Unknown => &mut self.unknown,
        } += 1;
    }
}

/// Decisions compared with the recorded ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reproduction {
    pub same: u64,
    pub different: u64,
    pub not_decided: u64,
}

impl Reproduction {
    fn add(&mut self, vs: VsRecorded) {
        *match vs {
            VsRecorded::Same => &mut self.same,
            VsRecorded::Different => &mut self.different,
            VsRecorded::NotDecided => &mut self.not_decided,
        } += 1;
    }
}

/// Agreement with agents: of the legs the agent coded, how many got the decided code.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Agreement {
    /// Legs the agent coded (the figures below are behind this many legs).
    pub legs: u64,
    pub same: u64,
    /// `same / legs`, rounded to 4 decimals; `null` without legs.
    pub rate: Option<f64>,
}

/// One candidate rule's figures.
#[derive(Debug, Clone, Serialize)]
pub struct RuleReport {
    pub index: usize,
    pub name: String,
    pub code: String,
    pub mode: Mode,
    /// Legs the rule decides.
    pub legs: u64,
    pub verdicts: Counts,
    pub blocked_by_agent: u64,
    /// Legs whose decided code the cached catalog does not allow on the leg's queue.
    pub unusable_code: u64,
    pub agreement: Agreement,
    /// Decided code × agent's code, with the legs behind each cell.
    pub confusion: Vec<Cell>,
    pub vs_recorded: Reproduction,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub rules_version: String,
    /// `--since` as given (`null`: every recorded leg).
    pub since: Option<String>,
    pub legs: u64,
    pub verdicts: Counts,
    pub blocked_by_agent: u64,
    pub agreement: Agreement,
    pub vs_recorded: Reproduction,
    /// Legs a candidate rule would match on participant attributes that were never read for them (the rules that
    /// decided them did not need any): their simulated decision may be wrong.
    pub attributes_unread: u64,
    pub rules: Vec<RuleReport>,
    /// The candidate rules against the cached catalogs, as `wrapup validate` words them.
    pub catalog_problems: Vec<String>,
    /// Every leg, oldest first.
    pub leg_reports: Vec<LegReport>,
}

#[derive(Default)]
struct Tally {
    legs: u64,
    verdicts: Counts,
    blocked: u64,
    unusable: u64,
    confusion: Confusion,
    vs_recorded: Reproduction,
}

impl Tally {
    fn add(&mut self, leg: &LegReport) {
        self.legs += 1;
        self.verdicts.add(leg.verdict);
        self.blocked += u64::from(leg.blocked_by_agent);
        self.unusable += u64::from(leg.unusable_code.is_some());
        self.vs_recorded.add(leg.vs_recorded);
        if let (Decided::Rule { code, .. }, Some(agent)) = (&leg.simulated, &leg.agent_code) {
            if matches!(leg.verdict, Verdict::SameAsAgent | Verdict::DifferentFromAgent) {
                self.confusion.add(code, agent);
            }
        }
    }

    fn agreement(&self) -> Agreement {
        let legs = self.verdicts.same_as_agent + self.verdicts.different_from_agent;
        let same = self.verdicts.same_as_agent;
        Agreement { legs, same, rate: wrapup_report::agreement::rate(same, legs) }
    }

    fn confusion(&self) -> Vec<Cell> {
        self.confusion.cells()
    }
}

/// Replays legs through a candidate rule set, one at a time ([`Simulation::add`]), into a [`Report`].
pub struct Simulation<'a> {
    rules: &'a RuleSet,
    connections: &'a BTreeMap<String, ConnectionView>,
    per_rule: Vec<Tally>,
    total: Tally,
    attributes_unread: u64,
    legs: Vec<LegReport>,
}

impl<'a> Simulation<'a> {
    pub fn new(rules: &'a RuleSet, connections: &'a BTreeMap<String, ConnectionView>) -> Self {
        let per_rule = rules.rules().iter().map(|_| Tally::default()).collect();
        Self { rules, connections, per_rule, total: Tally::default(), attributes_unread: 0, legs: Vec::new() }
    }

    /// Replays one recorded leg.
    pub fn add(&mut self, leg: &LegRecord) {
        let empty = ConnectionView::default();
        let view = self.connections.get(&leg.key.connection).unwrap_or(&empty);
        let catalog = view.catalog.as_ref();
        // A leg that ended before it was decided never had its facts completed from the catalog (queue name, ACW
        // mode); the worker would have done it first.
        let completed;
        let leg = match catalog {
            Some(c) if leg.facts.queue_name.is_none() || leg.facts.acw.is_none() => {
                let mut copy = leg.clone();
                wrapup_core::lifecycle::enrich(&mut copy, c);
                completed = copy;
                &completed
            }
            _ => leg,
        };
        let (simulated, rule_index) = self.simulate(leg, catalog);
        let recorded = recorded(leg, catalog);
        let actual = wrapup_report::ending(leg, view);
        let verdict = verdict(&simulated, &actual);
        let vs_recorded = match &recorded {
            Decided::NotDecided => VsRecorded::NotDecided,
            r if *r == simulated => VsRecorded::Same,
            _ => VsRecorded::Different,
        };
        let blocked_by_agent = matches!(actual, Ending::Agent { first: true, .. })
            && matches!(simulated, Decided::Rule { mode: Mode::Enforce, .. })
            && matches!(verdict, Verdict::SameAsAgent | Verdict::DifferentFromAgent);
        let unusable_code = match (&simulated, catalog) {
            (Decided::Rule { code, asks_crm: false, .. }, Some(c)) if verdict != Verdict::NoWindow => {
                c.resolve(code, leg.facts.queue_id.as_deref()).err().map(|e| e.to_string())
            }
            _ => None,
        };
        if !leg.attributes_read
            && self.rules.needs_attributes(&leg.key.connection, leg.facts.platform)
            && leg.facts.attributes.is_empty()
        {
            self.attributes_unread += 1;
        }
        let agent_code = match &actual {
            Ending::Agent { name, .. } => Some(name.clone()),
            _ => None,
        };
        let report = LegReport {
            connection: leg.key.connection.clone(),
            conversation: leg.key.conversation.clone(),
            participant: leg.key.participant.clone(),
            created_at: leg.created_at.to_string(),
            queue: leg.facts.queue_name.clone().or_else(|| leg.facts.queue_id.clone()),
            outcome: leg.outcome,
            recorded,
            simulated,
            agent_code,
            verdict,
            vs_recorded,
            blocked_by_agent,
            unusable_code,
            order: (leg.created_at, leg.key.clone()),
        };
        self.total.add(&report);
        if let Some(tally) = rule_index.and_then(|i| self.per_rule.get_mut(i)) {
            tally.add(&report);
        }
        self.legs.push(report);
    }

    /// The report, with the catalog problems found for the candidate rules.
    pub fn finish(mut self, since: Option<String>, catalog_problems: Vec<String>) -> Report {
        self.legs.sort_by(|a, b| a.order.cmp(&b.order));
        let rules = self
            .rules
            .rules()
            .iter()
            .zip(&self.per_rule)
            .enumerate()
            .map(|(index, (rule, t))| RuleReport {
                index,
                name: rule.name.clone(),
                code: rule.code.clone(),
                mode: rule.mode,
                legs: t.legs,
                verdicts: t.verdicts.clone(),
                blocked_by_agent: t.blocked,
                unusable_code: t.unusable,
                agreement: t.agreement(),
                confusion: t.confusion(),
                vs_recorded: t.vs_recorded.clone(),
            })
            .collect();
        Report {
            rules_version: self.rules.version().to_string(),
            since,
            legs: self.total.legs,
            verdicts: self.total.verdicts.clone(),
            blocked_by_agent: self.total.blocked,
            agreement: self.total.agreement(),
            vs_recorded: self.total.vs_recorded.clone(),
            attributes_unread: self.attributes_unread,
            rules,
            catalog_problems,
            leg_reports: self.legs,
        }
    }

    /// What the candidate rules decide on the leg, the way the worker's `decide` does, and the rule that matched.
    fn simulate(&self, leg: &LegRecord, catalog: Option<&Catalog>) -> (Decided, Option<usize>) {
        // Only a queue without ACW stops the decision; a window found never opened (`no_acw` from the gate read, on
        // an agent-requested queue) comes after it.
        if leg.facts.acw == Some(AcwPolicy::None) {
            return (Decided::NotDecided, None);
        }
        let matched = self.rules.evaluate(&leg.key.connection, &leg.facts);
        let index = matched.as_ref().map(|m| m.index);
        let code_name = |name: &str| canonical(catalog, name);
        if let Some(m) = matched.as_ref().filter(|m| m.mode == Mode::Shadow) {
            let decided =
                Decided::Rule { rule: m.rule_name.clone(), code: code_name(&m.code), mode: m.mode, asks_crm: false };
            return (decided, index);
        }
        // A hook answers only when a rule asks it: its answer on record counts only if the candidate rule asks one.
        let asks_hook = matched
            .as_ref()
            .and_then(|m| m.decide.as_ref())
            .is_some_and(|d| matches!(d.from, wrapup_core::rules::DecideFrom::Hook(_)));
        if let Some((source, code)) = external(leg).filter(|(source, _)| !source.starts_with("hook:") || asks_hook) {
            return (Decided::Crm { source, code: code_name(&code) }, index);
        }
        let Some(m) = matched else { return (Decided::NoRule, None) };
        let code = match m.decide.as_ref().map(|d| &d.fallback) {
            Some(Fallback::Code(name)) => name.clone(),
            _ => m.code.clone(),
        };
        let decided =
            Decided::Rule { rule: m.rule_name, code: code_name(&code), mode: m.mode, asks_crm: m.decide.is_some() };
        (decided, index)
    }
}

/// A code name as the catalog spells it (rules may differ in case), or as written when the catalog lacks it.
fn canonical(catalog: Option<&Catalog>, name: &str) -> String {
    catalog.and_then(|c| c.code_by_name(name)).map_or_else(|| name.to_string(), |c| c.name.clone())
}

/// The external decision on record for the leg: `(source, code name)`.
fn external(leg: &LegRecord) -> Option<(String, String)> {
    match &leg.decision {
        Some(d) => match &d.source {
            DecisionSource::External { source, .. } => Some((source.clone(), d.code_name.clone())),
            DecisionSource::Rule { .. } => None,
        },
        None => leg.external.as_ref().map(|e| (e.source.clone(), e.code_name.clone())),
    }
}

/// What the store decided for the leg.
fn recorded(leg: &LegRecord, catalog: Option<&Catalog>) -> Decided {
    match &leg.decision {
        Some(d) => {
            let code = canonical(catalog, &d.code_name);
            match &d.source {
                DecisionSource::Rule { name, .. } => {
                    Decided::Rule { rule: name.clone(), code, mode: d.mode, asks_crm: d.fallback.is_some() }
                }
                DecisionSource::External { source, .. } => Decided::Crm { source: source.clone(), code },
            }
        }
        None if leg.outcome == Some(Outcome::NoRule) => Decided::NoRule,
        None => Decided::NotDecided,
    }
}

fn verdict(simulated: &Decided, actual: &Ending) -> Verdict {
    match (simulated, actual) {
        (_, Ending::Unfinished) => Verdict::Unfinished,
        (_, Ending::NoWindow) | (Decided::NotDecided, _) => Verdict::NoWindow,
        (Decided::Crm { .. } | Decided::Rule { asks_crm: true, .. }, _) => Verdict::CrmDecided,
        (Decided::NoRule, _) => Verdict::NoRule,
        (Decided::Rule { code, .. }, actual) => match actual {
            Ending::Agent { name: agent, .. } if agent == code => Verdict::SameAsAgent,
            Ending::Agent { .. } => Verdict::DifferentFromAgent,
            Ending::Applied { name: ours, .. } if ours == code => Verdict::SameAsApplied,
            Ending::Applied { .. } => Verdict::ChangedFromApplied,
            Ending::Uncoded { .. } => Verdict::WouldFillUncoded,
            Ending::Unknown | Ending::Unfinished | Ending::NoWindow => Verdict::Unknown,
        },
    }
}

#[cfg(test)]
mod tests;
