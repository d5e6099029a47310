//! Typed matchers over [`LegFacts`]: the `when` part of a rule.
//!
//! A [`Conditions`] value is a conjunction: every matcher that is present must hold, and an absent matcher does not
//! constrain anything (so an empty `when` matches every leg, which is how a catch-all rule is written). Each matcher
//! looks at one fact; when the fact is unknown (`None`, or an attribute the leg does not carry) the matcher fails,
//! with one exception: `exists = false` is exactly the test for an unknown fact.
//!
//! Matchers are validated when they are built (deserialized), never while matching: regexes are compiled once, empty
//! `one_of` lists and numeric ranges that can never hold are refused. Matching itself is total — it cannot fail or
//! panic on any input — which is what the property tests in `rules` check.
//!
//! Serialized form (also the canonical JSON hashed into the rule set version): every matcher is a one-key object,
//! `{"equals": …}`, `{"one_of": […]}`, `{"regex": "…"}`, `{"exists": bool}`; numeric matchers are an object of
//! `lt`/`lte`/`gt`/`gte`/`eq`. When reading, a bare string (or number) is shorthand for `equals` (or `eq`).

use crate::leg::{Channel, Direction, LegFacts};
use regex::{Regex, RegexBuilder};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// Compiled regexes are capped so that a pathological pattern fails at load time instead of eating memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// All conditions of one rule; every present matcher must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<ChoiceMatcher<Channel>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<ChoiceMatcher<Direction>>,
    /// Matches the queue (Genesys) or skill (CXone) *name*.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<StringMatcher>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect_type: Option<StringMatcher>,
    /// Matches the outbound campaign id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<StringMatcher>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub talk_ms: Option<NumberMatcher>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_ms: Option<NumberMatcher>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acw_timeout_ms: Option<NumberMatcher>,
    /// Participant / contact attributes by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, StringMatcher>,
}

impl Conditions {
    /// True when every present matcher holds for `facts`.
    pub fn matches(&self, facts: &LegFacts) -> bool {
        fn opt<M>(m: &Option<M>, f: impl FnOnce(&M) -> bool) -> bool {
            m.as_ref().is_none_or(f)
        }
        opt(&self.channel, |m| m.matches(facts.channel.as_ref()))
            && opt(&self.direction, |m| m.matches(Some(&facts.direction)))
            && opt(&self.queue, |m| m.matches(facts.queue_name.as_deref()))
            && opt(&self.disconnect_type, |m| m.matches(facts.disconnect_type.as_deref()))
            && opt(&self.campaign, |m| m.matches(facts.campaign_id.as_deref()))
            && opt(&self.talk_ms, |m| m.matches(facts.talk_ms))
            && opt(&self.hold_ms, |m| m.matches(facts.hold_ms))
            && opt(&self.acw_timeout_ms, |m| m.matches(facts.acw_timeout_ms))
            && self.attributes.iter().all(|(name, m)| m.matches(facts.attributes.get(name).map(String::as_str)))
    }

    /// True when no matcher is present (the conditions match every leg).
    pub fn is_empty(&self) -> bool {
        self == &Conditions::default()
    }
}

/// A matcher over a closed set of values (channel, direction): one value, or any of several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChoiceMatcher<T> {
    Equals(T),
    OneOf(Vec<T>),
}

impl<T: PartialEq> ChoiceMatcher<T> {
    pub fn matches(&self, value: Option<&T>) -> bool {
        match (self, value) {
            (_, None) => false,
            (ChoiceMatcher::Equals(want), Some(v)) => want == v,
            (ChoiceMatcher::OneOf(want), Some(v)) => want.contains(v),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawChoice<T> {
    Plain(T),
    Tagged(TaggedChoice<T>),
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum TaggedChoice<T> {
    Equals(T),
    OneOf(Vec<T>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ChoiceMatcher<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match RawChoice::<T>::deserialize(d)? {
            RawChoice::Plain(v) | RawChoice::Tagged(TaggedChoice::Equals(v)) => Ok(ChoiceMatcher::Equals(v)),
            RawChoice::Tagged(TaggedChoice::OneOf(v)) if v.is_empty() => {
                Err(D::Error::custom("one_of needs at least one value"))
            }
            RawChoice::Tagged(TaggedChoice::OneOf(v)) => Ok(ChoiceMatcher::OneOf(v)),
        }
    }
}

/// A matcher over a free-text fact (queue name, disconnect type, campaign, attribute value).
///
/// Comparisons are exact and case-sensitive; use a regex with `(?i)` for case-insensitive matching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StringMatcher {
    Equals(String),
    OneOf(Vec<String>),
    /// Must match the *whole* value (the pattern is anchored at both ends).
    Regex(Pattern),
    /// `true`: the fact is known (any value, even empty); `false`: the fact is unknown.
    Exists(bool),
}

impl StringMatcher {
    pub fn matches(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (StringMatcher::Exists(want), v) => v.is_some() == *want,
            (_, None) => false,
            (StringMatcher::Equals(want), Some(v)) => want == v,
            (StringMatcher::OneOf(want), Some(v)) => want.iter().any(|w| w == v),
            (StringMatcher::Regex(p), Some(v)) => p.is_match(v),
        }
    }

    /// The exact values this matcher can accept, when it is a closed list (`equals`, `one_of`).
    pub fn literal_values(&self) -> Option<Vec<&str>> {
        match self {
            StringMatcher::Equals(v) => Some(vec![v.as_str()]),
            StringMatcher::OneOf(v) => Some(v.iter().map(String::as_str).collect()),
            StringMatcher::Regex(_) | StringMatcher::Exists(_) => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawString {
    Plain(String),
    Tagged(TaggedString),
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum TaggedString {
    Equals(String),
    OneOf(Vec<String>),
    Regex(String),
    Exists(bool),
}

impl<'de> Deserialize<'de> for StringMatcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match RawString::deserialize(d)? {
            RawString::Plain(v) | RawString::Tagged(TaggedString::Equals(v)) => StringMatcher::Equals(v),
            RawString::Tagged(TaggedString::OneOf(v)) if v.is_empty() => {
                return Err(D::Error::custom("one_of needs at least one value"))
            }
            RawString::Tagged(TaggedString::OneOf(v)) => StringMatcher::OneOf(v),
            RawString::Tagged(TaggedString::Regex(p)) => {
                StringMatcher::Regex(Pattern::new(&p).map_err(D::Error::custom)?)
            }
            RawString::Tagged(TaggedString::Exists(b)) => StringMatcher::Exists(b),
        })
    }
}

/// A regex compiled once, with whole-value semantics: `Sup.*` matches `Support` but not `Tier 1 Support`; write
/// `.*Support.*` to match anywhere. Serialized as the source pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: Regex,
}

/// A pattern that does not compile (or is too large).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid regex: {0}")]
pub struct PatternError(String);

impl Pattern {
    pub fn new(source: &str) -> Result<Self, PatternError> {
        // Check the pattern on its own first so the error message points into what the user wrote.
        RegexBuilder::new(source).size_limit(REGEX_SIZE_LIMIT).build().map_err(|e| PatternError(e.to_string()))?;
        let regex = RegexBuilder::new(&format!("^(?:{source})$"))
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| PatternError(e.to_string()))?;
        Ok(Self { source: source.to_string(), regex })
    }

    /// The pattern as written (without the implicit anchors).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn is_match(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Pattern::new(&String::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// A matcher over a duration in milliseconds: every present bound must hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberOps {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eq: Option<u64>,
}

/// Why a numeric matcher was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberMatcherError {
    #[error("a numeric matcher needs at least one of lt, lte, gt, gte, eq")]
    Empty,
    #[error("these bounds can never all hold")]
    Unsatisfiable,
}

/// A validated [`NumberOps`]: at least one bound, and some value satisfies all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct NumberMatcher(NumberOps);

impl NumberMatcher {
    pub fn new(ops: NumberOps) -> Result<Self, NumberMatcherError> {
        if ops == NumberOps::default() {
            return Err(NumberMatcherError::Empty);
        }
        // The set of accepted values is the interval [low, high]; it must not be empty.
        let mut low = 0u64;
        let mut high = u64::MAX;
        if let Some(lt) = ops.lt {
            high = high.min(lt.checked_sub(1).ok_or(NumberMatcherError::Unsatisfiable)?);
        }
        if let Some(lte) = ops.lte {
            high = high.min(lte);
        }
        if let Some(gt) = ops.gt {
            low = low.max(gt.checked_add(1).ok_or(NumberMatcherError::Unsatisfiable)?);
        }
        if let Some(gte) = ops.gte {
            low = low.max(gte);
        }
        if let Some(eq) = ops.eq {
            low = low.max(eq);
            high = high.min(eq);
        }
        if low > high {
            return Err(NumberMatcherError::Unsatisfiable);
        }
        Ok(Self(ops))
    }

    pub fn ops(&self) -> &NumberOps {
        &self.0
    }

    pub fn matches(&self, value: Option<u64>) -> bool {
        let Some(v) = value else { return false };
        let o = &self.0;
        o.lt.is_none_or(|b| v < b)
            && o.lte.is_none_or(|b| v <= b)
            && o.gt.is_none_or(|b| v > b)
            && o.gte.is_none_or(|b| v >= b)
            && o.eq.is_none_or(|b| v == b)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawNumber {
    Plain(u64),
    Ops(NumberOps),
}

impl<'de> Deserialize<'de> for NumberMatcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let ops = match RawNumber::deserialize(d)? {
            RawNumber::Plain(v) => NumberOps { eq: Some(v), ..NumberOps::default() },
            RawNumber::Ops(ops) => ops,
        };
        NumberMatcher::new(ops).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(ops: NumberOps) -> NumberMatcher {
        NumberMatcher::new(ops).unwrap()
    }

    #[test]
    fn numeric_bounds_combine() {
        let m = num(NumberOps { gte: Some(1000), lt: Some(5000), ..Default::default() });
        assert!(!m.matches(Some(999)));
        assert!(m.matches(Some(1000)));
        assert!(m.matches(Some(4999)));
        assert!(!m.matches(Some(5000)));
        assert!(!m.matches(None));
    }

    #[test]
    fn numeric_matchers_that_can_never_hold_are_refused() {
        let bad = |ops| NumberMatcher::new(ops).unwrap_err();
        assert_eq!(bad(NumberOps::default()), NumberMatcherError::Empty);
        assert_eq!(bad(NumberOps { lt: Some(0), ..Default::default() }), NumberMatcherError::Unsatisfiable);
        assert_eq!(bad(NumberOps { gt: Some(u64::MAX), ..Default::default() }), NumberMatcherError::Unsatisfiable);
        assert_eq!(
            bad(NumberOps { gt: Some(5), lt: Some(6), ..Default::default() }),
            NumberMatcherError::Unsatisfiable
        );
        assert_eq!(
            bad(NumberOps { eq: Some(5), gte: Some(6), ..Default::default() }),
            NumberMatcherError::Unsatisfiable
        );
        assert!(NumberMatcher::new(NumberOps { gt: Some(5), lt: Some(7), ..Default::default() }).is_ok());
    }

    #[test]
    fn regexes_match_the_whole_value() {
        let p = Pattern::new("Sup.*").unwrap();
        assert!(p.is_match("Support"));
        assert!(!p.is_match("Tier 1 Support"));
        assert!(Pattern::new(".*Support.*").unwrap().is_match("Tier 1 Support"));
        assert!(Pattern::new("a|b").unwrap().is_match("b"));
        assert!(!Pattern::new("a|b").unwrap().is_match("ab"));
        assert!(Pattern::new("(").is_err());
        // An unbalanced close paren must not escape the implicit group.
        assert!(Pattern::new("a)|(b").is_err());
    }

    #[test]
    fn exists_false_is_the_only_matcher_an_unknown_fact_satisfies() {
        assert!(StringMatcher::Exists(false).matches(None));
        assert!(!StringMatcher::Exists(false).matches(Some("")));
        assert!(StringMatcher::Exists(true).matches(Some("")));
        assert!(!StringMatcher::Equals(String::new()).matches(None));
        assert!(!StringMatcher::Regex(Pattern::new(".*").unwrap()).matches(None));
    }

    #[test]
    fn matchers_read_their_shorthand_and_serialize_canonically() {
        let c: Conditions = serde_json::from_value(serde_json::json!({
            "channel": "voice",
            "direction": {"one_of": ["inbound", "unknown"]},
            "queue": {"regex": "Sup.*"},
            "talk_ms": 5000,
            "hold_ms": {"gt": 1},
            "attributes": {"vip": {"exists": false}, "tier": "gold"}
        }))
        .unwrap();
        assert_eq!(c.channel, Some(ChoiceMatcher::Equals(Channel::Voice)));
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            serde_json::json!({
                "channel": {"equals": "voice"},
                "direction": {"one_of": ["inbound", "unknown"]},
                "queue": {"regex": "Sup.*"},
                "talk_ms": {"eq": 5000},
                "hold_ms": {"gt": 1},
                "attributes": {"tier": {"equals": "gold"}, "vip": {"exists": false}}
            })
        );
        let back: Conditions = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn malformed_matchers_are_refused() {
        for bad in [
            serde_json::json!({"queue": {"one_of": []}}),
            serde_json::json!({"queue": {"regex": "("}}),
            serde_json::json!({"queue": {"equals": "a", "regex": "b"}}),
            serde_json::json!({"channel": "carrier pigeon"}),
            serde_json::json!({"talk_ms": {}}),
            serde_json::json!({"talk_ms": {"lt": 0}}),
            serde_json::json!({"talk_ms": -1}),
            serde_json::json!({"colour": "blue"}),
        ] {
            assert!(serde_json::from_value::<Conditions>(bad.clone()).is_err(), "{bad} was accepted");
        }
    }
}
