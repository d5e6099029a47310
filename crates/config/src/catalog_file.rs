//! The catalog file: a connection's codes and their assignments, by name, as `wrapup catalog plan|apply` want the
//! platform to hold them, and as `wrapup catalog export` writes them.
//!
//! Ids never appear: the same file describes dev, test and prod, where every id differs. It is read like the config
//! (every problem at once, with `file:line:column`; unknown keys refused) and written back in one stable order, so
//! that two exports of the same org diff to nothing.
//!
//! ```toml
//! platform = "genesys"          # or "cxone"; the connection it is planned against must be of this kind
//! prune = false                 # true: codes of the org that are not in this file are deleted
//!
//! [[codes]]
//! name = "Billing - resolved"
//! description = "Billing question answered"    # Genesys
//! division = "Home"                            # Genesys, by name
//! renamed_from = "Billing ok"                  # optional: rename the code of that name (its id, and history, stay)
//!
//! [[codes]]
//! name = "Sale"
//! classification = 1                           # CXone classificationId
//! active = true                                # CXone
//! notes = "Closed with an order"               # CXone
//!
//! [[queues]]                                   # Genesys: the exact codes of each queue named here
//! name = "Support"
//! codes = ["Billing - resolved", "Sale"]
//!
//! [[skills]]                                   # CXone: the dispositions of each skill, in priority order
//! name = "Support Phone"
//! require_disposition = true
//! dispositions = ["Sale", "Billing - resolved"]
//! ```
//!
//! A field left out is not managed (the platform's value stays). Queues and skills that the file does not name are
//! left as they are; a queue it names gets exactly the codes listed.

use crate::error::{ConfigErrors, LineIndex, Location};
use crate::schema::{all_of, array, boolean, integer, items, named, non_empty_string, parse_tree, string, table, Cx};
use crate::schema::{Field, Table};
use crate::secrets::SystemSecrets;
use std::collections::BTreeMap;
use std::path::Path;
use wrapup_core::Platform;

/// The longest disposition name CXone accepts.
pub const CXONE_NAME_MAX: usize = 50;

/// A catalog as a file says it should be.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogFile {
    pub platform: Platform,
    /// Whether codes of the org that the file does not list are deleted.
    pub prune: bool,
    /// In file order.
    pub codes: Vec<CodeSpec>,
    /// Genesys queues or CXone skills, in file order.
    pub queues: Vec<QueueSpec>,
}

/// One code and the fields the file manages (`None`: not managed).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CodeSpec {
    pub name: String,
    pub renamed_from: Option<String>,
    pub fields: CodeFields,
    pub location: Option<Location>,
}

/// A code's fields, on both platforms (each platform uses its own).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct CodeFields {
    /// Genesys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Genesys, the division's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub division: Option<String>,
    /// CXone `classificationId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<i64>,
    /// CXone `isActive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// CXone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

impl CodeFields {
    /// Each field as `(name, value)` in a fixed order, for field-by-field diffs; values are shown as TOML would.
    pub fn pairs(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("description", self.description.as_ref().map(|v| format!("{v:?}"))),
            ("division", self.division.as_ref().map(|v| format!("{v:?}"))),
            ("classification", self.classification.map(|v| v.to_string())),
            ("active", self.active.map(|v| v.to_string())),
            ("notes", self.notes.as_ref().map(|v| format!("{v:?}"))),
        ]
    }
}

/// A queue (Genesys) or skill (CXone) and the codes it should have; on CXone their order is their priority.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueSpec {
    pub name: String,
    pub codes: Vec<String>,
    /// CXone `requireDisposition`; `None`: not managed.
    pub require_disposition: Option<bool>,
    pub location: Option<Location>,
}

const ROOT_KEYS: &[&str] = &["platform", "prune", "codes", "queues", "skills"];
const GENESYS_CODE_KEYS: &[&str] = &["name", "renamed_from", "description", "division"];
const CXONE_CODE_KEYS: &[&str] = &["name", "renamed_from", "classification", "active", "notes"];
const QUEUE_KEYS: &[&str] = &["name", "codes"];
const SKILL_KEYS: &[&str] = &["name", "dispositions", "require_disposition"];

impl CatalogFile {
    /// Reads and validates the catalog file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<CatalogFile, ConfigErrors> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = crate::error::read_text(path, "catalog file")?;
        Self::parse(&text, &origin)
    }

    /// Validates `text`, named `origin` in messages.
    pub fn parse(text: &str, origin: &str) -> Result<CatalogFile, ConfigErrors> {
        let lines = LineIndex::new(origin, text);
        let root = parse_tree(text, origin, &lines)?;
        // A catalog file holds no secret: nothing is resolved.
        let mut cx = Cx::new(&SystemSecrets, Path::new(""));
        let file = read_root(&mut cx, &root, &lines);
        match file {
            Some(file) if cx.problems.is_empty() => Ok(file),
            _ => Err(cx.into_errors(&lines, origin)),
        }
    }

    /// The file as TOML, in a stable order: codes by name, queues by name, a Genesys queue's codes by name (a
    /// CXone skill's keep their priority order).
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let platform = match self.platform {
            Platform::Genesys => "genesys",
            Platform::Cxone => "cxone",
        };
        out.push_str("# The code catalog of one connection, by name (wrapup catalog export).\n");
        out.push_str(&format!("platform = \"{platform}\"\nprune = {}\n", self.prune));
        let mut codes: Vec<&CodeSpec> = self.codes.iter().collect();
        codes.sort_by(|a, b| a.name.cmp(&b.name));
        for code in codes {
            out.push_str("\n[[codes]]\n");
            out.push_str(&format!("name = {}\n", toml_string(&code.name)));
            if let Some(from) = &code.renamed_from {
                out.push_str(&format!("renamed_from = {}\n", toml_string(from)));
            }
            let f = &code.fields;
            if let Some(v) = &f.description {
                out.push_str(&format!("description = {}\n", toml_string(v)));
            }
            if let Some(v) = &f.division {
                out.push_str(&format!("division = {}\n", toml_string(v)));
            }
            if let Some(v) = f.classification {
                out.push_str(&format!("classification = {v}\n"));
            }
            if let Some(v) = f.active {
                out.push_str(&format!("active = {v}\n"));
            }
            if let Some(v) = &f.notes {
                out.push_str(&format!("notes = {}\n", toml_string(v)));
            }
        }
        let mut queues: Vec<&QueueSpec> = self.queues.iter().collect();
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        for queue in queues {
            let (table, key) = match self.platform {
                Platform::Genesys => ("queues", "codes"),
                Platform::Cxone => ("skills", "dispositions"),
            };
            out.push_str(&format!("\n[[{table}]]\nname = {}\n", toml_string(&queue.name)));
            if let Some(v) = queue.require_disposition {
                out.push_str(&format!("require_disposition = {v}\n"));
            }
            let mut names: Vec<&String> = queue.codes.iter().collect();
            if self.platform == Platform::Genesys {
                names.sort();
            }
            if names.is_empty() {
                out.push_str(&format!("{key} = []\n"));
            } else {
                out.push_str(&format!("{key} = [\n"));
                for name in names {
                    out.push_str(&format!("    {},\n", toml_string(name)));
                }
                out.push_str("]\n");
            }
        }
        out
    }

    /// The code the file calls `name` (exact, then case-insensitive, like the platforms).
    pub fn code(&self, name: &str) -> Option<&CodeSpec> {
        self.codes
            .iter()
            .find(|c| c.name == name)
            .or_else(|| self.codes.iter().find(|c| c.name.eq_ignore_ascii_case(name)))
    }
}

/// A TOML basic string (the `toml` crate's own escaping).
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn read_root(cx: &mut Cx<'_>, root: &crate::tree::Node, lines: &LineIndex) -> Option<CatalogFile> {
    let mut t = table(cx, root, "", ROOT_KEYS)?;
    let platform: Option<Platform> = t.require(cx, "platform").and_then(|f| named(cx, &f));
    let prune = match t.get("prune") {
        Some(f) => boolean(cx, &f),
        None => Some(false),
    };
    let (queue_table, wrong_table) = match platform {
        Some(Platform::Cxone) => ("skills", Some("queues")),
        Some(Platform::Genesys) => ("queues", Some("skills")),
        None => ("queues", None),
    };
    let codes = match t.get("codes") {
        Some(f) => array(cx, &f, "an array of tables ([[codes]])")
            .map(|list| items(list, &f.path).map(|item| read_code(cx, &item, platform)).collect::<Vec<_>>()),
        None => Some(Vec::new()),
    };
    let queues = match t.get(queue_table) {
        Some(f) => array(cx, &f, "an array of tables").map(|list| {
            let kind = platform.unwrap_or(Platform::Genesys);
            items(list, &f.path).map(|item| read_queue(cx, &item, kind)).collect::<Vec<_>>()
        }),
        None => Some(Vec::new()),
    };
    if let Some(wrong) = wrong_table {
        if let Some(f) = t.get(wrong) {
            let p = platform.map_or("", |p| if p == Platform::Genesys { "genesys" } else { "cxone" });
            cx.problem(&f.node.span, &f.path, format!("`{wrong}` is not for a {p} catalog; use `{queue_table}`"));
        }
    }
    t.finish(cx);
    let (platform, codes, queues) = (platform?, codes?, queues?);
    // Every readable item is checked against the others, so that one bad code does not hide a dangling reference.
    let readable_codes: Vec<_> = codes.iter().flatten().cloned().collect();
    let readable_queues: Vec<_> = queues.iter().flatten().cloned().collect();
    check_references(cx, &readable_codes, &readable_queues, platform);
    let (prune, codes, queues) = (prune?, all_of(codes.into_iter())?, all_of(queues.into_iter())?);
    let located = |span: &std::ops::Range<usize>| Some(lines.location(span));
    let codes = codes.into_iter().map(|(c, span)| CodeSpec { location: located(&span), ..c }).collect();
    let queues = queues.into_iter().map(|(q, span)| QueueSpec { location: located(&span), ..q }).collect();
    Some(CatalogFile { platform, prune, codes, queues })
}

type Spanned<T> = (T, std::ops::Range<usize>);

fn read_code(cx: &mut Cx<'_>, f: &Field<'_>, platform: Option<Platform>) -> Option<Spanned<CodeSpec>> {
    let keys = match platform {
        Some(Platform::Cxone) => CXONE_CODE_KEYS,
        _ => GENESYS_CODE_KEYS,
    };
    let mut t = table(cx, f.node, &f.path, keys)?;
    let name = t.require(cx, "name").and_then(|f| code_name(cx, &f, platform));
    let renamed_from = optional(&mut t, "renamed_from", |f| code_name(cx, f, platform));
    let mut fields = CodeFields::default();
    let mut ok = renamed_from.is_some();
    match platform {
        Some(Platform::Cxone) => {
            let classification = optional(&mut t, "classification", |f| integer(cx, f, 0, i32::MAX as u64));
            let active = optional(&mut t, "active", |f| boolean(cx, f));
            let notes = optional(&mut t, "notes", |f| string(cx, f).map(str::to_string));
            ok &= classification.is_some() && active.is_some() && notes.is_some();
            fields.classification = classification.flatten().map(|v| v as i64);
            fields.active = active.flatten();
            fields.notes = notes.flatten();
        }
        _ => {
            let description = optional(&mut t, "description", |f| string(cx, f).map(str::to_string));
            let division = optional(&mut t, "division", |f| non_empty_string(cx, f).map(str::to_string));
            ok &= description.is_some() && division.is_some();
            fields.description = description.flatten();
            fields.division = division.flatten();
        }
    }
    t.finish(cx);
    let name = name?;
    if !ok {
        return None;
    }
    let renamed_from = renamed_from.flatten();
    if renamed_from.as_deref().is_some_and(|from| from.eq_ignore_ascii_case(&name)) {
        cx.problem(&f.node.span, &f.path, "`renamed_from` names the code itself");
        return None;
    }
    Some((CodeSpec { name, renamed_from, fields, location: None }, f.node.span.clone()))
}

/// `Some(None)` when absent, `Some(Some(v))` when good, `None` when present but bad.
fn optional<T>(t: &mut Table<'_>, key: &str, read: impl FnOnce(&Field<'_>) -> Option<T>) -> Option<Option<T>> {
    match t.get(key) {
        None => Some(None),
        Some(f) => read(&f).map(Some),
    }
}

fn code_name(cx: &mut Cx<'_>, f: &Field<'_>, platform: Option<Platform>) -> Option<String> {
    let name = non_empty_string(cx, f)?;
    if name.trim() != name {
        cx.problem(&f.node.span, &f.path, "must not start or end with spaces");
        return None;
    }
    if platform == Some(Platform::Cxone) && name.chars().count() > CXONE_NAME_MAX {
        cx.problem(&f.node.span, &f.path, format!("a CXone disposition name has at most {CXONE_NAME_MAX} characters"));
        return None;
    }
    Some(name.to_string())
}

fn read_queue(cx: &mut Cx<'_>, f: &Field<'_>, platform: Platform) -> Option<Spanned<QueueSpec>> {
    let (keys, list_key) = match platform {
        Platform::Genesys => (QUEUE_KEYS, "codes"),
        Platform::Cxone => (SKILL_KEYS, "dispositions"),
    };
    let mut t = table(cx, f.node, &f.path, keys)?;
    let name = t.require(cx, "name").and_then(|f| non_empty_string(cx, &f).map(str::to_string));
    let codes = t.require(cx, list_key).and_then(|f| {
        let list = array(cx, &f, "an array of code names")?;
        let names = all_of(items(list, &f.path).map(|item| non_empty_string(cx, &item).map(str::to_string)))?;
        let mut seen = BTreeMap::new();
        for (i, n) in names.iter().enumerate() {
            if seen.insert(n.to_lowercase(), i).is_some() {
                cx.problem(&list[i].span, &format!("{}[{i}]", f.path), format!("code {n:?} is listed twice"));
            }
        }
        Some(names)
    });
    let require_disposition = if platform == Platform::Cxone {
        optional(&mut t, "require_disposition", |f| boolean(cx, f))
    } else {
        Some(None)
    };
    t.finish(cx);
    Some((
        QueueSpec { name: name?, codes: codes?, require_disposition: require_disposition?, location: None },
        f.node.span.clone(),
    ))
}

/// Names must be unique (case-insensitive, as the platforms compare them), a rename must not collide, and every
/// assignment must name a code of the file.
fn check_references(cx: &mut Cx<'_>, codes: &[Spanned<CodeSpec>], queues: &[Spanned<QueueSpec>], platform: Platform) {
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (i, (code, span)) in codes.iter().enumerate() {
        if let Some(first) = names.insert(code.name.to_lowercase(), i) {
            cx.problem(
                span,
                &format!("codes[{i}]"),
                format!("code {:?} is defined twice (first at codes[{first}])", code.name),
            );
        }
    }
    for (i, (code, span)) in codes.iter().enumerate() {
        if let Some(from) = &code.renamed_from {
            if names.contains_key(&from.to_lowercase()) {
                cx.problem(
                    span,
                    &format!("codes[{i}]"),
                    format!("`renamed_from = {from:?}` names a code the file still defines"),
                );
            }
        }
    }
    let mut queue_names: BTreeMap<String, usize> = BTreeMap::new();
    let table = if platform == Platform::Genesys { "queues" } else { "skills" };
    for (i, (queue, span)) in queues.iter().enumerate() {
        if let Some(first) = queue_names.insert(queue.name.clone(), i) {
            cx.problem(
                span,
                &format!("{table}[{i}]"),
                format!("{:?} is listed twice (first at {table}[{first}])", queue.name),
            );
        }
        for name in &queue.codes {
            if !names.contains_key(&name.to_lowercase()) {
                cx.problem(span, &format!("{table}[{i}]"), format!("code {name:?} is not defined in [[codes]]"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GENESYS: &str = r#"platform = "genesys"

[[codes]]
name = "Sale"
description = "Closed with an order"
division = "Home"

[[codes]]
name = "Billing - resolved"
renamed_from = "Billing ok"

[[queues]]
name = "Support"
codes = ["Sale", "Billing - resolved"]
"#;

    fn errors(text: &str) -> Vec<String> {
        CatalogFile::parse(text, "c.toml").unwrap_err().iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn a_genesys_file_reads_and_writes_back_to_the_same_catalog() {
        let file = CatalogFile::parse(GENESYS, "c.toml").unwrap();
        assert_eq!(file.platform, Platform::Genesys);
        assert!(!file.prune);
        assert_eq!(file.codes[1].renamed_from.as_deref(), Some("Billing ok"));
        assert_eq!(file.codes[0].fields.division.as_deref(), Some("Home"));
        assert_eq!(file.codes[0].location.as_ref().unwrap().line, 3);
        let written = file.to_toml();
        let again = CatalogFile::parse(&written, "again.toml").unwrap();
        assert_eq!(again.to_toml(), written, "export is stable");
        let names = |f: &CatalogFile| f.codes.iter().map(|c| c.name.clone()).collect::<std::collections::BTreeSet<_>>();
        assert_eq!(names(&again), names(&file));
        assert_eq!(again.queues[0].codes, vec!["Billing - resolved", "Sale"], "a Genesys queue's codes are sorted");
    }

    #[test]
    fn a_cxone_skill_keeps_its_priority_order_and_its_require_flag() {
        let text = r#"platform = "cxone"
[[codes]]
name = "Sale"
classification = 1
active = true
notes = "n"
[[codes]]
name = "Callback"
[[skills]]
name = "Phone"
require_disposition = true
dispositions = ["Sale", "Callback"]
"#;
        let file = CatalogFile::parse(text, "c.toml").unwrap();
        assert_eq!(file.codes[0].fields.classification, Some(1));
        assert_eq!(file.queues[0].require_disposition, Some(true));
        let again = CatalogFile::parse(&file.to_toml(), "again.toml").unwrap();
        assert_eq!(again.queues[0].codes, vec!["Sale", "Callback"]);
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let text = r#"platform = "genesys"
prune = "yes"
[[codes]]
name = "Sale"
classification = 1
[[codes]]
name = "sale"
[[queues]]
name = "Support"
codes = ["Sale", "Nope"]
colour = "blue"
"#;
        let errs = errors(text);
        assert!(errs.iter().any(|e| e.contains("c.toml:2:") && e.contains("expected a boolean")), "{errs:?}");
        assert!(
            errs.iter().any(|e| e.contains("c.toml:5:1") && e.contains("unknown key `classification`")),
            "{errs:?}"
        );
        assert!(errs.iter().any(|e| e.contains("defined twice")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("\"Nope\" is not defined")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("c.toml:11:1") && e.contains("unknown key `colour`")), "{errs:?}");
    }

    #[test]
    fn platform_specific_tables_and_limits_are_checked() {
        let errs = errors("platform = \"cxone\"\n[[queues]]\nname = \"Q\"\ncodes = []\n");
        assert!(errs.iter().any(|e| e.contains("use `skills`")), "{errs:?}");
        let long = "x".repeat(51);
        let errs = errors(&format!("platform = \"cxone\"\n[[codes]]\nname = \"{long}\"\n"));
        assert!(errs.iter().any(|e| e.contains("at most 50")), "{errs:?}");
        let errs = errors("platform = \"teams\"\n");
        assert!(errs.iter().any(|e| e.contains("c.toml:1:12")), "{errs:?}");
        let errs = errors("[[codes]]\nname = \"A\"\nrenamed_from = \"a\"\nplatform = \"genesys\"\n");
        assert!(!errs.is_empty());
    }

    #[test]
    fn a_rename_may_not_name_a_code_the_file_still_defines() {
        let text = "platform = \"genesys\"\n[[codes]]\nname = \"A\"\n[[codes]]\nname = \"B\"\nrenamed_from = \"A\"\n";
        assert!(errors(text).iter().any(|e| e.contains("still defines")));
    }
}
