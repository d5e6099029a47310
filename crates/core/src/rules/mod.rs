//! The rule engine: an ordered list of rules, first match wins.
//!
//! A [`Rule`] names a code (by *name*; ids are resolved per connection from the catalog later), a notes template, a
//! [`Timing`] and a [`Mode`], and applies when its limits (`platform`, `connection`) allow the leg and all its
//! [`Conditions`] hold. [`RuleSet::evaluate`] walks the rules in order and returns the first that applies, with its
//! notes rendered — or `None`, which the service records as `no_rule`.
//!
//! Everything that can be wrong with a rule is found when the rule set is built (deserialized or
//! [`RuleSet::new`]): regexes compile, templates name known placeholders, numeric bounds are satisfiable, names are
//! unique. Evaluation is pure and total: no I/O, no clock, no panics, the same answer for the same input.
//!
//! The rule set has a [`RuleSet::version`]: a hash of its canonical JSON (the serialized rules, in order, with every
//! matcher in its long form). Reformatting the config file leaves it unchanged; changing anything a decision depends
//! on — order included — changes it. The ledger stores it next to each decision so "which rules decided this" has an
//! answer after the file has moved on.

mod matcher;
mod template;

pub use matcher::{
    ChoiceMatcher, Conditions, NumberMatcher, NumberMatcherError, NumberOps, Pattern, PatternError, StringMatcher,
};
pub use template::{NotesTemplate, RenderContext, TemplateError, NOTES_MAX_CHARS, PLACEHOLDERS};

use crate::leg::{LegFacts, Platform};
use crate::outcome::{Mode, Timing};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// One rule: when `when` holds for a leg the rule's limits allow, decide `code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique within the rule set; recorded in the ledger.
    pub name: String,
    #[serde(default)]
    pub when: Conditions,
    /// The code *name*.
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<NotesTemplate>,
    #[serde(default = "immediate")]
    pub timing: Timing,
    #[serde(default)]
    pub mode: Mode,
    /// Only legs of this platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Only legs of the connection with this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// Let a CRM decide the code: wait for its decision, or ask a decision hook, then fall back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decide: Option<DecideSpec>,
}

/// Where a rule's code comes from when another system knows it better (`decide = { … }` in the config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideSpec {
    pub from: DecideFrom,
    /// How long after the leg ends to wait for the decision (never past the room the window needs for the write).
    #[serde(with = "crate::outcome::duration_ms")]
    pub wait: jiff::SignedDuration,
    pub fallback: Fallback,
}

/// Who decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecideFrom {
    /// A CRM that sends its decision (`PUT /api/v1/decisions/…`).
    Crm,
    /// The decision hook of this name, which wrapup asks (signed POST of the leg's facts).
    Hook(String),
}

/// What decides when no external decision came in time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// The rule's own `code`.
    Rule,
    /// The code with this name.
    Code(String),
}

fn immediate() -> Timing {
    Timing::Immediate
}

impl Rule {
    /// True when the rule's limits allow legs of `connection` on `platform` (an unknown platform passes only rules
    /// without a platform limit).
    pub fn applies_to(&self, connection: &str, platform: Option<Platform>) -> bool {
        self.connection.as_deref().is_none_or(|c| c == connection) && self.platform.is_none_or(|p| platform == Some(p))
    }

    /// True when the rule decides this leg of `connection`.
    pub fn matches(&self, connection: &str, facts: &LegFacts) -> bool {
        self.applies_to(connection, facts.platform) && self.when.matches(facts)
    }
}

/// The decision of a rule set for one leg.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleMatch {
    /// Position of the matching rule in the rule set (0-based).
    pub index: usize,
    pub rule_name: String,
    /// The code *name*.
    pub code: String,
    /// Rendered notes, at most [`NOTES_MAX_CHARS`] characters.
    pub notes: Option<String>,
    pub timing: Timing,
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decide: Option<DecideSpec>,
}

/// Why a list of rules is not a rule set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleSetError {
    #[error("rule {index} has an empty name")]
    EmptyName { index: usize },
    #[error("rule {name:?} names no code")]
    EmptyCode { name: String },
    #[error("rule name {name:?} is used by rules {first} and {second}; names must be unique")]
    DuplicateName { name: String, first: usize, second: usize },
}

/// An ordered, validated list of rules. Serialized as the list of rules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    version: String,
}

impl RuleSet {
    pub fn new(rules: Vec<Rule>) -> Result<Self, RuleSetError> {
        for (index, rule) in rules.iter().enumerate() {
            if rule.name.trim().is_empty() {
                return Err(RuleSetError::EmptyName { index });
            }
            if rule.code.trim().is_empty() {
                return Err(RuleSetError::EmptyCode { name: rule.name.clone() });
            }
            if let Some(first) = rules[..index].iter().position(|r| r.name == rule.name) {
                return Err(RuleSetError::DuplicateName { name: rule.name.clone(), first, second: index });
            }
        }
        let version = version_of(&rules);
        Ok(Self { rules, version })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// 16 lowercase hex digits: the first 64 bits of the SHA-256 of the canonical JSON of the rules.
    /// Whether a rule that can apply to legs of `connection` on `platform` matches on participant attributes:
    /// then a leg's attributes must be read before it is decided.
    pub fn needs_attributes(&self, connection: &str, platform: Option<crate::leg::Platform>) -> bool {
        self.rules.iter().any(|r| !r.when.attributes.is_empty() && r.applies_to(connection, platform))
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// The canonical JSON the version is computed from.
    pub fn canonical_json(&self) -> String {
        canonical_json(&self.rules)
    }

    /// The first rule that decides this leg of `connection`, with its notes rendered.
    pub fn evaluate(&self, connection: &str, facts: &LegFacts) -> Option<RuleMatch> {
        let (index, rule) = self.rules.iter().enumerate().find(|(_, r)| r.matches(connection, facts))?;
        Some(RuleMatch {
            index,
            rule_name: rule.name.clone(),
            code: rule.code.clone(),
            notes: rule.notes.as_ref().map(|t| t.render(RenderContext { rule: &rule.name, code: &rule.code, facts })),
            timing: rule.timing,
            mode: rule.mode,
            decide: rule.decide.clone(),
        })
    }
}

fn canonical_json(rules: &[Rule]) -> String {
    // Infallible: every map in a rule has string keys, and no Serialize impl here returns an error.
    serde_json::to_string(rules).expect("rules serialize to JSON")
}

fn version_of(rules: &[Rule]) -> String {
    let digest = Sha256::digest(canonical_json(rules).as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl Serialize for RuleSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.rules.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RuleSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RuleSet::new(Vec::<Rule>::deserialize(d)?).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests;
