//! From a catalog file and the live catalog to the changes that make the live catalog match, by name.
//!
//! Pure: the caller reads the live catalog (and, when something is to be removed, the usage figures) and passes
//! them in. Codes are matched by name (case-insensitively, as the platforms compare them); a code that says
//! `renamed_from` takes over the live code of that name, so its id — and the history attached to it — stays. A queue
//! the file names gets exactly the codes it lists; queues it does not name are left alone. Codes the file does not
//! list are deleted only when the file says `prune = true`, and never while a rule names them unless forced.
//!
//! A plan remembers the live state of every object it touches ([`Plan::fingerprint`]), so that a saved plan is
//! refused once the catalog changed under it.

use crate::live::{LiveCatalog, LiveQueue};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use wrapup_config::{CatalogFile, CodeFields, CodeSpec};
use wrapup_core::Platform;

/// The format of a saved plan; a plan of another version is refused.
pub const PLAN_VERSION: u32 = 1;

/// What a catalog file asks of one connection's live catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub version: u32,
    pub connection: String,
    pub platform: Platform,
    pub made_at: Timestamp,
    /// The catalog file the plan was made from, as TOML (apply re-plans from it if the platform answers 409).
    pub desired: String,
    pub force: bool,
    /// In the order apply carries them out: codes before assignments, removals last.
    pub changes: Vec<Change>,
    /// Deletes the file asks for that are withheld because a rule names the code.
    pub kept: Vec<Kept>,
    /// The objects the plan touches, whose live state the fingerprint covers.
    pub touched: Vec<Touched>,
    pub fingerprint: String,
}

/// One change, by name (ids are those of the live catalog the plan was made against).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Change {
    Create {
        code: String,
        fields: CodeFields,
    },
    /// A rename (`from` is the old name) and/or field updates.
    Update {
        code: String,
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        fields: Vec<FieldChange>,
        /// Every field as it will be after the update (the platforms replace the whole object).
        target: CodeFields,
    },
    Delete {
        code: String,
        id: String,
        impact: Impact,
    },
    /// Genesys: codes added to a queue.
    Assign {
        queue: String,
        queue_id: String,
        codes: Vec<String>,
    },
    /// Genesys: codes removed from a queue.
    Unassign {
        queue: String,
        queue_id: String,
        codes: Vec<String>,
        impact: Vec<CodeImpact>,
    },
    /// CXone: a skill's dispositions (replaced as a whole, in priority order) and `requireDisposition`.
    SetSkill {
        skill: String,
        skill_id: String,
        dispositions: Vec<String>,
        added: Vec<String>,
        removed: Vec<String>,
        reordered: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        require_disposition: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        require_disposition_was: Option<bool>,
        impact: Vec<CodeImpact>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    /// As TOML shows the value; `None`: not set.
    pub from: Option<String>,
    pub to: Option<String>,
}

/// What removing a code (from the org, or from a queue) would affect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Impact {
    /// Rules of the config that name the code.
    pub rules: Vec<String>,
    /// Legs coded with it in the usage window (on that queue, for an unassignment), when the platform told.
    pub uses: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeImpact {
    pub code: String,
    pub impact: Impact,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    pub code: String,
    pub rules: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Touched {
    Code {
        id: String,
    },
    /// A name no live code had (a code to create).
    NewName {
        name: String,
    },
    Queue {
        id: String,
    },
}

/// How often each code was used, from the platform's own records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub days: u32,
    /// Code id → legs.
    pub by_code: BTreeMap<String, u64>,
    /// (queue id, code id) → legs.
    pub by_queue_code: BTreeMap<(String, String), u64>,
}

/// What the plan needs besides the file and the live catalog.
#[derive(Debug, Clone, Default)]
pub struct PlanContext {
    pub connection: String,
    /// Lower-cased code name → the names of the rules that name it.
    pub rules_naming: BTreeMap<String, Vec<String>>,
    pub usage: Option<Usage>,
    pub force: bool,
    pub now: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the catalog file is for {file:?}, the connection is {connection:?}")]
    WrongPlatform { file: Platform, connection: Platform },
    #[error(
        "{what} {name:?} does not exist on the connection (wrapup manages codes and their assignments, not queues)"
    )]
    UnknownQueue { what: &'static str, name: String },
    #[error("division {name:?} (code {code:?}) is not a division of the org")]
    UnknownDivision { code: String, name: String },
    #[error(
        "code {code:?} says renamed_from = {from:?}, but both exist on the connection: remove renamed_from, or delete one"
    )]
    AmbiguousRename { code: String, from: String },
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The changes that make `live` what `file` says.
pub fn plan(file: &CatalogFile, live: &LiveCatalog, cx: &PlanContext) -> Result<Plan, PlanError> {
    if file.platform != live.platform {
        return Err(PlanError::WrongPlatform { file: file.platform, connection: live.platform });
    }
    let mut changes = Vec::new();
    let mut touched = BTreeSet::new();
    // Lower-cased name of a desired code → the live id it takes over (if any).
    let mut taken: BTreeMap<String, String> = BTreeMap::new();

    for spec in &file.codes {
        match match_code(spec, live)? {
            Some(code) => {
                taken.insert(spec.name.to_lowercase(), code.id.clone());
                let from = (code.name != spec.name).then(|| code.name.clone());
                let target = overlay(&code.fields, &spec.fields);
                let fields = field_changes(&code.fields, &target);
                if from.is_some() || !fields.is_empty() {
                    check_division(spec, live)?;
                    touched.insert(Touched::Code { id: code.id.clone() });
                    changes.push(Change::Update { code: spec.name.clone(), id: code.id.clone(), from, fields, target });
                }
            }
            None => {
                check_division(spec, live)?;
                touched.insert(Touched::NewName { name: spec.name.to_lowercase() });
                changes.push(Change::Create { code: spec.name.clone(), fields: spec.fields.clone() });
            }
        }
    }

    // Assignments, by name; a code being created has no id yet, so names are compared.
    let id_name = |id: &str| live.code_by_id(id).map(|c| c.name.clone());
    let desired_name = |live_name: &str| -> String {
        // A live code taken over by a rename is known by its new name.
        live.code(live_name)
            .and_then(|c| taken.iter().find(|(_, id)| **id == c.id))
            .and_then(|(lower, _)| file.code(lower))
            .map_or_else(|| live_name.to_string(), |s| s.name.clone())
    };
    let mut removals = Vec::new();
    for spec in &file.queues {
        let what = if file.platform == Platform::Genesys { "queue" } else { "skill" };
        let queue = live.queue(&spec.name).ok_or_else(|| PlanError::UnknownQueue { what, name: spec.name.clone() })?;
        let want: Vec<String> = spec.codes.iter().map(|n| file.code(n).map_or(n.clone(), |c| c.name.clone())).collect();
        // Codes the queue has that the catalog does not list (system codes) are not the file's to manage.
        let have: Vec<String> = queue.code_ids.iter().filter_map(|id| id_name(id)).map(|n| desired_name(&n)).collect();
        let lower = |v: &[String]| v.iter().map(|s| s.to_lowercase()).collect::<Vec<_>>();
        let (want_l, have_l) = (lower(&want), lower(&have));
        let added: Vec<String> = want.iter().filter(|n| !have_l.contains(&n.to_lowercase())).cloned().collect();
        let removed: Vec<String> = have.iter().filter(|n| !want_l.contains(&n.to_lowercase())).cloned().collect();
        let impact = removed
            .iter()
            .map(|name| CodeImpact { code: name.clone(), impact: impact(cx, live, name, Some(queue)) })
            .collect::<Vec<_>>();
        match file.platform {
            Platform::Genesys => {
                if !added.is_empty() {
                    touched.insert(Touched::Queue { id: queue.id.clone() });
                    changes.push(Change::Assign {
                        queue: queue.name.clone(),
                        queue_id: queue.id.clone(),
                        codes: added,
                    });
                }
                if !removed.is_empty() {
                    touched.insert(Touched::Queue { id: queue.id.clone() });
                    removals.push(Change::Unassign {
                        queue: queue.name.clone(),
                        queue_id: queue.id.clone(),
                        codes: removed,
                        impact,
                    });
                }
            }
            Platform::Cxone => {
                let kept_order: Vec<&String> = have_l.iter().filter(|n| want_l.contains(n)).collect();
                let wanted_order: Vec<&String> = want_l.iter().filter(|n| have_l.contains(n)).collect();
                let reordered = kept_order != wanted_order;
                let require = spec.require_disposition.filter(|r| Some(*r) != queue.require_disposition);
                if !added.is_empty() || !removed.is_empty() || reordered || require.is_some() {
                    touched.insert(Touched::Queue { id: queue.id.clone() });
                    changes.push(Change::SetSkill {
                        skill: queue.name.clone(),
                        skill_id: queue.id.clone(),
                        dispositions: want,
                        added,
                        removed,
                        reordered,
                        require_disposition: require,
                        require_disposition_was: require.and(queue.require_disposition),
                        impact,
                    });
                }
            }
        }
    }
    changes.extend(removals);

    let mut kept = Vec::new();
    if file.prune {
        for code in &live.codes {
            if taken.values().any(|id| *id == code.id) {
                continue;
            }
            // CXone cannot delete a disposition, only deactivate it: an inactive one is already as gone as it gets.
            if live.platform == Platform::Cxone && code.fields.active == Some(false) {
                continue;
            }
            let impact = impact(cx, live, &code.name, None);
            if !impact.rules.is_empty() && !cx.force {
                kept.push(Kept { code: code.name.clone(), rules: impact.rules });
                continue;
            }
            touched.insert(Touched::Code { id: code.id.clone() });
            changes.push(Change::Delete { code: code.name.clone(), id: code.id.clone(), impact });
        }
    }

    let touched: Vec<Touched> = touched.into_iter().collect();
    let fingerprint = fingerprint(live, &touched);
    Ok(Plan {
        version: PLAN_VERSION,
        connection: cx.connection.clone(),
        platform: file.platform,
        made_at: cx.now,
        desired: file.to_toml(),
        force: cx.force,
        changes,
        kept,
        touched,
        fingerprint,
    })
}

/// The live code a desired code is: the one of its name, or the one it was renamed from.
fn match_code<'l>(spec: &CodeSpec, live: &'l LiveCatalog) -> Result<Option<&'l crate::live::LiveCode>, PlanError> {
    let by_name = live.code(&spec.name);
    let by_old = spec.renamed_from.as_deref().and_then(|from| live.code(from));
    match (by_name, by_old) {
        (Some(a), Some(b)) if a.id != b.id => Err(PlanError::AmbiguousRename {
            code: spec.name.clone(),
            from: spec.renamed_from.clone().unwrap_or_default(),
        }),
        (Some(a), _) => Ok(Some(a)),
        (None, b) => Ok(b),
    }
}

fn check_division(spec: &CodeSpec, live: &LiveCatalog) -> Result<(), PlanError> {
    match &spec.fields.division {
        Some(name) if live.platform == Platform::Genesys && live.division_id(name).is_none() => {
            Err(PlanError::UnknownDivision { code: spec.name.clone(), name: name.clone() })
        }
        _ => Ok(()),
    }
}

/// The live fields with the file's managed ones laid over them.
pub(crate) fn overlay(live: &CodeFields, want: &CodeFields) -> CodeFields {
    CodeFields {
        description: want.description.clone().or_else(|| live.description.clone()),
        division: match (&want.division, &live.division) {
            // Division names compare case-insensitively: a different case is not a move.
            (Some(w), Some(l)) if w.eq_ignore_ascii_case(l) => Some(l.clone()),
            (w, l) => w.clone().or_else(|| l.clone()),
        },
        classification: want.classification.or(live.classification),
        active: want.active.or(live.active),
        notes: want.notes.clone().or_else(|| live.notes.clone()),
    }
}

fn field_changes(from: &CodeFields, to: &CodeFields) -> Vec<FieldChange> {
    from.pairs()
        .into_iter()
        .zip(to.pairs())
        .filter(|((_, a), (_, b))| a != b)
        .map(|((field, a), (_, b))| FieldChange { field: field.to_string(), from: a, to: b })
        .collect()
}

fn impact(cx: &PlanContext, live: &LiveCatalog, name: &str, queue: Option<&LiveQueue>) -> Impact {
    let rules = cx.rules_naming.get(&name.to_lowercase()).cloned().unwrap_or_default();
    let id = live.code(name).map(|c| c.id.clone());
    let uses = cx.usage.as_ref().zip(id).map(|(u, id)| match queue {
        Some(q) => u.by_queue_code.get(&(q.id.clone(), id)).copied().unwrap_or(0),
        None => u.by_code.get(&id).copied().unwrap_or(0),
    });
    Impact { rules, uses }
}

/// A digest of the live state of `touched`: a saved plan applies only while it is unchanged.
pub fn fingerprint(live: &LiveCatalog, touched: &[Touched]) -> String {
    let mut hasher = Sha256::new();
    for t in touched {
        let state = match t {
            Touched::Code { id } => serde_json::to_string(&live.code_by_id(id)),
            Touched::NewName { name } => serde_json::to_string(&live.code(name).map(|c| &c.id)),
            Touched::Queue { id } => serde_json::to_string(&live.queue_by_id(id).map(|q| {
                let mut ids = q.code_ids.clone();
                if live.platform == Platform::Genesys {
                    ids.sort();
                }
                (&q.name, ids, q.require_disposition)
            })),
        };
        hasher.update(serde_json::to_string(t).unwrap_or_default());
        hasher.update(state.unwrap_or_default());
        hasher.update([0]);
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Counts by kind, for summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub create: usize,
    pub update: usize,
    pub rename: usize,
    pub delete: usize,
    pub assign: usize,
    pub unassign: usize,
}

impl Plan {
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for change in &self.changes {
            match change {
                Change::Create { .. } => c.create += 1,
                Change::Update { from, fields, .. } => {
                    c.rename += usize::from(from.is_some());
                    c.update += usize::from(!fields.is_empty());
                }
                Change::Delete { .. } => c.delete += 1,
                Change::Assign { codes, .. } => c.assign += codes.len(),
                Change::Unassign { codes, .. } => c.unassign += codes.len(),
                Change::SetSkill { added, removed, reordered, require_disposition, .. } => {
                    c.assign += added.len();
                    c.unassign += removed.len();
                    c.update += usize::from(*reordered || require_disposition.is_some());
                }
            }
        }
        c
    }

    /// The plan for people: one line per change, with field changes and impacts under it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let c = self.counts();
        let platform = if self.platform == Platform::Genesys { "genesys" } else { "cxone" };
        let _ = writeln!(
            out,
            "Plan for connection {:?} ({platform}): {} to create, {} to update, {} to rename, {} to delete, {} to assign, {} to unassign.",
            self.connection, c.create, c.update, c.rename, c.delete, c.assign, c.unassign
        );
        if self.changes.is_empty() {
            let _ = writeln!(out, "\nNo changes: the live catalog matches the file.");
        }
        for change in &self.changes {
            out.push('\n');
            match change {
                Change::Create { code, fields } => {
                    let _ = writeln!(out, "  + create code {code:?}");
                    for (field, value) in fields.pairs() {
                        if let Some(v) = value {
                            let _ = writeln!(out, "        {field} = {v}");
                        }
                    }
                }
                Change::Update { code, from, fields, .. } => {
                    if let Some(from) = from {
                        let _ = writeln!(out, "  ~ rename code {from:?} → {code:?} (same id: its history stays)");
                    } else {
                        let _ = writeln!(out, "  ~ update code {code:?}");
                    }
                    for f in fields {
                        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".into());
                        let _ = writeln!(out, "        {}: {} → {}", f.field, show(&f.from), show(&f.to));
                    }
                }
                Change::Delete { code, impact, .. } => {
                    let verb = if self.platform == Platform::Cxone { "deactivate" } else { "delete" };
                    let _ = writeln!(out, "  - {verb} code {code:?}{}", describe(impact));
                }
                Change::Assign { queue, codes, .. } => {
                    let _ = writeln!(out, "  + assign to queue {queue:?}: {}", quoted(codes));
                }
                Change::Unassign { queue, impact, .. } => {
                    for i in impact {
                        let _ = writeln!(out, "  - unassign {:?} from queue {queue:?}{}", i.code, describe(&i.impact));
                    }
                }
                Change::SetSkill { skill, dispositions, added, reordered, require_disposition, impact, .. } => {
                    let _ = writeln!(out, "  ~ skill {skill:?}: dispositions {}", quoted(dispositions));
                    if !added.is_empty() {
                        let _ = writeln!(out, "        + assign {}", quoted(added));
                    }
                    for i in impact {
                        let _ = writeln!(out, "        - unassign {:?}{}", i.code, describe(&i.impact));
                    }
                    if *reordered {
                        let _ = writeln!(out, "        ~ priorities change");
                    }
                    if let Some(r) = require_disposition {
                        let _ = writeln!(out, "        ~ require_disposition → {r}");
                    }
                }
            }
        }
        for k in &self.kept {
            let _ = writeln!(
                out,
                "\n  ! keep code {:?}: rule(s) {} name it (prune would delete it; --force deletes it anyway)",
                k.code,
                quoted(&k.rules)
            );
        }
        out
    }
}

fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
}

fn describe(impact: &Impact) -> String {
    let mut parts = Vec::new();
    if !impact.rules.is_empty() {
        parts.push(format!("named by rule(s) {}", quoted(&impact.rules)));
    }
    if let Some(n) = impact.uses {
        parts.push(format!("used by {n} leg(s) in the usage window"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("   [{}]", parts.join("; "))
    }
}
