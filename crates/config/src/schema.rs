//! The pieces of a schema walk over a spanned TOML tree, shared by every file wrapup reads (the config, the
//! catalog): a context that collects problems with their spans, tables that report keys nobody asked for, and typed
//! readers for scalars and lists. Each reader records a problem and returns `None` when a node is unusable, so that
//! one pass reports every problem of a file.

use crate::error::{ConfigError, ConfigErrors, LineIndex, Location};
use crate::secrets::SecretSource;
use crate::tree::{Key, Node, Value};
use serde::de::DeserializeOwned;
use std::ops::Range;
use std::path::Path;

pub(crate) struct Problem {
    pub(crate) span: Range<usize>,
    pub(crate) path: String,
    pub(crate) message: String,
}

pub(crate) struct Cx<'a> {
    pub(crate) problems: Vec<Problem>,
    pub(crate) secrets: &'a dyn SecretSource,
    pub(crate) base_dir: &'a Path,
}

impl Cx<'_> {
    pub(crate) fn problem(&mut self, span: &Range<usize>, path: &str, message: impl Into<String>) {
        self.problems.push(Problem { span: span.clone(), path: path.to_string(), message: message.into() });
    }

    pub(crate) fn wrong_type(&mut self, node: &Node, path: &str, expected: &str) {
        // Never the value itself: it may be a secret in the wrong place.
        self.problem(&node.span, path, format!("expected {expected}, found {}", node.value.describe()));
    }
}

// ---- paths ----

pub(crate) fn child(path: &str, key: &str) -> String {
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare { key.to_string() } else { format!("{key:?}") };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

// ---- tables ----

pub(crate) struct Table<'n> {
    pub(crate) path: String,
    pub(crate) span: Range<usize>,
    pub(crate) entries: &'n [(Key, Node)],
    allowed: &'static [&'static str],
    used: Vec<bool>,
}

pub(crate) fn table<'n>(
    cx: &mut Cx<'_>,
    node: &'n Node,
    path: &str,
    allowed: &'static [&'static str],
) -> Option<Table<'n>> {
    match &node.value {
        Value::Table(entries) => Some(Table {
            path: path.to_string(),
            span: node.span.clone(),
            entries,
            allowed,
            used: vec![false; entries.len()],
        }),
        _ => {
            cx.wrong_type(node, path, "a table");
            None
        }
    }
}

/// A value found in a table, with its path.
pub(crate) struct Field<'n> {
    pub(crate) node: &'n Node,
    pub(crate) path: String,
}

impl<'n> Table<'n> {
    pub(crate) fn get(&mut self, key: &str) -> Option<Field<'n>> {
        debug_assert!(self.allowed.contains(&key), "{key} is not in the schema of {}", self.path);
        let i = self.entries.iter().position(|(k, _)| k.name == key)?;
        self.used[i] = true;
        Some(Field { node: &self.entries[i].1, path: child(&self.path, key) })
    }

    pub(crate) fn require(&mut self, cx: &mut Cx<'_>, key: &str) -> Option<Field<'n>> {
        let found = self.get(key);
        if found.is_none() {
            cx.problem(&self.span, &self.path, format!("missing required key `{key}`"));
        }
        found
    }

    /// Reports every key that was not asked for.
    pub(crate) fn finish(self, cx: &mut Cx<'_>) {
        for ((key, _), used) in self.entries.iter().zip(&self.used) {
            if !used {
                cx.problem(
                    &key.span,
                    &child(&self.path, &key.name),
                    format!("unknown key `{}`; expected one of: {}", key.name, self.allowed.join(", ")),
                );
            }
        }
    }
}

// ---- scalars ----

pub(crate) fn string<'n>(cx: &mut Cx<'_>, f: &Field<'n>) -> Option<&'n str> {
    match &f.node.value {
        Value::String(s) => Some(s),
        _ => {
            cx.wrong_type(f.node, &f.path, "a string");
            None
        }
    }
}

pub(crate) fn non_empty_string<'n>(cx: &mut Cx<'_>, f: &Field<'n>) -> Option<&'n str> {
    let s = string(cx, f)?;
    if s.trim().is_empty() {
        cx.problem(&f.node.span, &f.path, "must not be empty");
        return None;
    }
    Some(s)
}

pub(crate) fn integer(cx: &mut Cx<'_>, f: &Field<'_>, min: u64, max: u64) -> Option<u64> {
    match f.node.value {
        Value::Integer(i) => match u64::try_from(i) {
            Ok(v) if (min..=max).contains(&v) => Some(v),
            _ => {
                cx.problem(&f.node.span, &f.path, format!("must be between {min} and {max}, found {i}"));
                None
            }
        },
        _ => {
            cx.wrong_type(f.node, &f.path, "an integer");
            None
        }
    }
}

pub(crate) fn boolean(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<bool> {
    match f.node.value {
        Value::Bool(b) => Some(b),
        _ => {
            cx.wrong_type(f.node, &f.path, "a boolean");
            None
        }
    }
}

pub(crate) fn array<'n>(cx: &mut Cx<'_>, f: &Field<'n>, expected: &str) -> Option<&'n [Node]> {
    match &f.node.value {
        Value::Array(items) => Some(items),
        _ => {
            cx.wrong_type(f.node, &f.path, expected);
            None
        }
    }
}

pub(crate) fn items<'n>(items: &'n [Node], path: &str) -> impl Iterator<Item = Field<'n>> + 'n {
    let path = path.to_string();
    items.iter().enumerate().map(move |(i, node)| Field { node, path: index(&path, i) })
}

/// Reads every item — so every problem is reported — and keeps the results only when all of them are good.
pub(crate) fn all_of<T>(results: impl Iterator<Item = Option<T>>) -> Option<Vec<T>> {
    let results: Vec<Option<T>> = results.collect();
    results.into_iter().collect()
}

pub(crate) fn string_list(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<Vec<String>> {
    let list = array(cx, f, "an array of strings")?;
    all_of(items(list, &f.path).map(|item| non_empty_string(cx, &item).map(str::to_string)))
}

/// A closed set of names (platform, mode, channel…), parsed with the core type's own serde names so that the two
/// never drift; the error lists the accepted names.
pub(crate) fn parse_name<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    T::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(text)).map_err(|e| e.to_string())
}

pub(crate) fn named<T: DeserializeOwned>(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<T> {
    let s = string(cx, f)?;
    parse_name(s).map_err(|e| cx.problem(&f.node.span, &f.path, e)).ok()
}

impl<'a> Cx<'a> {
    pub(crate) fn new(secrets: &'a dyn SecretSource, base_dir: &'a Path) -> Self {
        Cx { problems: Vec::new(), secrets, base_dir }
    }

    /// The problems found, in file order, as errors with their line and column.
    pub(crate) fn into_errors(self, lines: &LineIndex, origin: &str) -> ConfigErrors {
        let mut problems = self.problems;
        // Stable: problems at the same place keep the order they were found in.
        problems.sort_by_key(|p| p.span.start);
        let mut errors = problems
            .into_iter()
            .map(|p| ConfigError { location: lines.location(&p.span), path: p.path, message: p.message })
            .collect::<Vec<_>>();
        if errors.is_empty() {
            errors.push(ConfigError {
                location: Location { file: origin.to_string(), line: 0, column: 0 },
                path: String::new(),
                message: "internal error: the file was not read and no problem was recorded".into(),
            });
        }
        ConfigErrors { errors }
    }
}

/// Parses `text` into a spanned tree, or the one syntax error with its position.
pub(crate) fn parse_tree(text: &str, origin: &str, lines: &LineIndex) -> Result<Node, ConfigErrors> {
    crate::tree::parse(text).map_err(|(message, span)| {
        let location = span.map_or(Location { file: origin.to_string(), line: 1, column: 1 }, |s| lines.location(&s));
        ConfigErrors {
            errors: vec![ConfigError { location, path: String::new(), message: format!("invalid TOML: {message}") }],
        }
    })
}
