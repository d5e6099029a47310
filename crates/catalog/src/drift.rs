//! Drift: how a live catalog differs from its catalog file, in sentences, for `wrapup validate`. Everything a plan
//! would change, and also what it would leave alone: codes the platform has that the file does not list (made by
//! hand, most often), which only `prune = true` would delete.

use crate::live::LiveCatalog;
use crate::plan::{plan, Change, PlanContext, PlanError};
use wrapup_config::CatalogFile;
use wrapup_core::Platform;

/// One difference between the live catalog and the file.
pub fn drift(file: &CatalogFile, live: &LiveCatalog) -> Result<Vec<String>, PlanError> {
    let planned = plan(file, live, &PlanContext::default())?;
    let queue = if file.platform == Platform::Genesys { "queue" } else { "skill" };
    let list = |names: &[String]| names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ");
    let mut lines = Vec::new();
    for change in &planned.changes {
        match change {
            Change::Create { code, .. } => lines.push(format!("code {code:?} is in the file but not on the platform")),
            Change::Update { code, from, fields, .. } => {
                if let Some(from) = from {
                    lines.push(format!("code {from:?} on the platform is called {code:?} in the file"));
                }
                for f in fields {
                    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "unset".into());
                    lines.push(format!(
                        "code {code:?}: {} is {} on the platform, {} in the file",
                        f.field,
                        show(&f.from),
                        show(&f.to)
                    ));
                }
            }
            Change::Delete { code, .. } => {
                lines.push(format!("code {code:?} is on the platform but not in the file (prune would delete it)"))
            }
            Change::Assign { queue: q, codes, .. } => {
                lines.push(format!("{queue} {q:?} lacks {} that the file assigns to it", list(codes)))
            }
            Change::Unassign { queue: q, codes, .. } => {
                lines.push(format!("{queue} {q:?} has {} that the file does not assign to it", list(codes)))
            }
            Change::SetSkill { skill, added, removed, reordered, require_disposition, .. } => {
                if !added.is_empty() {
                    lines.push(format!("skill {skill:?} lacks {} that the file assigns to it", list(added)));
                }
                if !removed.is_empty() {
                    lines.push(format!("skill {skill:?} has {} that the file does not assign to it", list(removed)));
                }
                if *reordered {
                    lines.push(format!("skill {skill:?}: the dispositions' priorities differ from the file's order"));
                }
                if let Some(r) = require_disposition {
                    lines.push(format!(
                        "skill {skill:?}: requireDisposition is {} on the platform, {r} in the file",
                        !r
                    ));
                }
            }
        }
    }
    if !file.prune {
        let listed = |name: &str| {
            file.codes.iter().any(|c| {
                c.name.eq_ignore_ascii_case(name)
                    || c.renamed_from.as_deref().is_some_and(|f| f.eq_ignore_ascii_case(name))
            })
        };
        for code in &live.codes {
            let inactive = live.platform == Platform::Cxone && code.fields.active == Some(false);
            if !listed(&code.name) && !inactive {
                lines.push(format!("code {:?} is on the platform but not in the file (made by hand?)", code.name));
            }
        }
    }
    Ok(lines)
}
