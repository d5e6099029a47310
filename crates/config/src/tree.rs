//! A TOML document as a tree of values that all carry their byte span.
//!
//! Serde stops at the first error, but the config must report every problem at once. So the document is first read
//! into this loosely typed tree (which accepts any valid TOML) and then walked by hand (`read`), collecting every
//! problem with its position.
//!
//! Spans come from the `toml` deserializer's `Spanned` protocol: a value asked for as the private `Spanned` struct
//! is presented as a map of `start`, `end` and `value`. The deserializer falls back to the plain value when it has
//! no span (implicit tables, the root), so the visitor accepts both shapes, and [`Node::from_raw`] gives such values
//! their parent's span. `toml` is pinned to 0.8 in the workspace; a test guards the protocol.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::ops::Range;

// The `serde_spanned` and `toml_datetime` protocol names (stable across toml 0.8.x).
const SPANNED_NAME: &str = "$__serde_spanned_private_Spanned";
const SPANNED_START: &str = "$__serde_spanned_private_start";
const SPANNED_END: &str = "$__serde_spanned_private_end";
const SPANNED_VALUE: &str = "$__serde_spanned_private_value";
const SPANNED_FIELDS: &[&str] = &[SPANNED_START, SPANNED_END, SPANNED_VALUE];
const DATETIME_FIELD: &str = "$__toml_private_datetime";

/// One value with its span in the source text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub span: Range<usize>,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    Datetime,
    Array(Vec<Node>),
    Table(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Key {
    pub name: String,
    pub span: Range<usize>,
}

impl Value {
    /// "a string", "an integer", … for type errors.
    pub fn describe(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a boolean",
            Value::Datetime => "a datetime",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

/// Parses `text` into a tree; on a syntax error returns the parser's message (never the source line, which may
/// hold a secret) and its span.
pub(crate) fn parse(text: &str) -> Result<Node, (String, Option<Range<usize>>)> {
    let raw: RawNode = toml::from_str(text).map_err(|e| (e.message().to_string(), e.span()))?;
    Ok(Node::from_raw(raw, 0..text.len()))
}

struct RawNode {
    span: Option<Range<usize>>,
    value: RawValue,
}

enum RawValue {
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    Datetime,
    Array(Vec<RawNode>),
    Table(Vec<(RawKey, RawNode)>),
}

struct RawKey {
    name: String,
    span: Option<Range<usize>>,
}

impl Node {
    fn from_raw(raw: RawNode, parent: Range<usize>) -> Node {
        let span = raw.span.unwrap_or(parent);
        let value = match raw.value {
            RawValue::String(s) => Value::String(s),
            RawValue::Integer(i) => Value::Integer(i),
            RawValue::Float(f) => Value::Float(f),
            RawValue::Bool(b) => Value::Bool(b),
            RawValue::Datetime => Value::Datetime,
            RawValue::Array(items) => {
                Value::Array(items.into_iter().map(|n| Node::from_raw(n, span.clone())).collect())
            }
            RawValue::Table(entries) => Value::Table(
                entries
                    .into_iter()
                    .map(|(k, v)| {
                        let node = Node::from_raw(v, span.clone());
                        let key = Key { name: k.name, span: k.span.unwrap_or_else(|| node.span.clone()) };
                        (key, node)
                    })
                    .collect(),
            ),
        };
        Node { span, value }
    }
}

impl<'de> de::Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, NodeVisitor)
    }
}

/// Deserializes the inner value of a spanned wrapper. It must not ask for `Spanned` again: the inner deserializer
/// still has the span and would wrap forever.
struct Unwrapped;

impl<'de> DeserializeSeed<'de> for Unwrapped {
    type Value = RawNode;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawNode, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

impl<'de> de::Deserialize<'de> for RawKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, KeyVisitor)
    }
}

struct NodeVisitor;

fn plain(value: RawValue) -> RawNode {
    RawNode { span: None, value }
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = RawNode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawNode, E> {
        Ok(plain(RawValue::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawNode, E> {
        Ok(plain(RawValue::Integer(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawNode, E> {
        i64::try_from(v).map(|v| plain(RawValue::Integer(v))).map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawNode, E> {
        Ok(plain(RawValue::Float(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawNode, E> {
        Ok(plain(RawValue::String(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<RawNode, E> {
        Ok(plain(RawValue::String(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<RawNode>()? {
            items.push(item);
        }
        Ok(plain(RawValue::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawNode, A::Error> {
        let Some(first) = map.next_key::<RawKey>()? else {
            return Ok(plain(RawValue::Table(Vec::new())));
        };
        if first.name == SPANNED_START {
            let start: usize = map.next_value()?;
            expect_key(&mut map, SPANNED_END)?;
            let end: usize = map.next_value()?;
            expect_key(&mut map, SPANNED_VALUE)?;
            let mut node = map.next_value_seed(Unwrapped)?;
            node.span = Some(start..end);
            return Ok(node);
        }
        if first.name == DATETIME_FIELD {
            let _: de::IgnoredAny = map.next_value()?;
            return Ok(plain(RawValue::Datetime));
        }
        let mut entries = vec![(first, map.next_value::<RawNode>()?)];
        while let Some(key) = map.next_key::<RawKey>()? {
            let value = map.next_value::<RawNode>()?;
            entries.push((key, value));
        }
        Ok(plain(RawValue::Table(entries)))
    }
}

fn expect_key<'de, A: MapAccess<'de>>(map: &mut A, want: &str) -> Result<(), A::Error> {
    match map.next_key::<RawKey>()? {
        Some(k) if k.name == want => Ok(()),
        _ => Err(de::Error::custom("malformed spanned value")),
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = RawKey;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawKey, E> {
        Ok(RawKey { name: v.to_string(), span: None })
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<RawKey, E> {
        Ok(RawKey { name: v, span: None })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawKey, A::Error> {
        let mut start = None;
        let mut end = None;
        let mut name = None;
        while let Some(k) = map.next_key::<String>()? {
            match k.as_str() {
                SPANNED_START => start = Some(map.next_value::<usize>()?),
                SPANNED_END => end = Some(map.next_value::<usize>()?),
                SPANNED_VALUE => name = Some(map.next_value::<String>()?),
                _ => return Err(de::Error::custom("malformed spanned key")),
            }
        }
        let name = name.ok_or_else(|| de::Error::custom("malformed spanned key"))?;
        let span = start.zip(end).map(|(s, e)| s..e);
        Ok(RawKey { name, span })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice<'a>(text: &'a str, span: &Range<usize>) -> &'a str {
        &text[span.clone()]
    }

    #[test]
    fn values_and_keys_carry_their_spans() {
        let text = "a = 1\n[t]\nb = \"x\"\n[[r]]\nc = [true, 2.5]\n[r.w]\nd = { e = 1979-05-27 }\n";
        let root = parse(text).unwrap();
        let Value::Table(top) = &root.value else { panic!("root is a table") };
        assert_eq!(top[0].0.name, "a");
        assert_eq!(slice(text, &top[0].0.span), "a");
        assert_eq!(slice(text, &top[0].1.span), "1");
        let Value::Table(t) = &top[1].1.value else { panic!() };
        assert_eq!(slice(text, &t[0].1.span), "\"x\"");
        let Value::Array(r) = &top[2].1.value else { panic!() };
        let Value::Table(r0) = &r[0].value else { panic!() };
        assert_eq!(slice(text, &r0[0].1.span), "[true, 2.5]");
        let Value::Table(w) = &r0[1].1.value else { panic!() };
        let Value::Table(d) = &w[0].1.value else { panic!() };
        assert_eq!(d[0].1.value, Value::Datetime);
        assert_eq!(slice(text, &d[0].0.span), "e");
    }

    #[test]
    fn implicit_tables_take_a_span_from_their_parent() {
        let text = "[a.b.c]\nx = 1\ny.z = 2\n";
        let root = parse(text).unwrap();
        let Value::Table(top) = &root.value else { panic!() };
        assert!(top[0].1.span.end <= text.len());
    }

    #[test]
    fn syntax_errors_have_a_span_and_no_source_text() {
        let (msg, span) = parse("secret = \"hunter2\nx = 1").unwrap_err();
        assert!(span.is_some());
        assert!(!msg.contains("hunter2"), "{msg}");
    }
}
