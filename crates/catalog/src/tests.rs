//! The plan and drift against hand-made live catalogs.

use crate::drift::drift;
use crate::live::{LiveCatalog, LiveCode, LiveQueue};
use crate::plan::{fingerprint, plan, Change, PlanContext, PlanError, Touched, Usage};
use std::collections::BTreeMap;
use wrapup_config::{CatalogFile, CodeFields};
use wrapup_core::Platform;

fn genesys_code(id: &str, name: &str, description: &str) -> LiveCode {
    LiveCode {
        id: id.into(),
        name: name.into(),
        fields: CodeFields {
            description: Some(description.into()),
            division: Some("Home".into()),
            ..CodeFields::default()
        },
    }
}

fn genesys_live() -> LiveCatalog {
    LiveCatalog {
        platform: Platform::Genesys,
        codes: vec![
            genesys_code("c1", "Sale", "old"),
            genesys_code("c2", "Billing ok", ""),
            genesys_code("c3", "Legacy", ""),
            genesys_code("c4", "Named by a rule", ""),
        ],
        queues: vec![LiveQueue {
            id: "q1".into(),
            name: "Support".into(),
            code_ids: vec!["c1".into(), "c3".into()],
            require_disposition: None,
        }],
        divisions: vec![("Home".into(), "d1".into())],
    }
}

fn file(text: &str) -> CatalogFile {
    CatalogFile::parse(text, "c.toml").unwrap()
}

fn cx() -> PlanContext {
    PlanContext { connection: "prod".into(), ..PlanContext::default() }
}

const GENESYS_FILE: &str = r#"platform = "genesys"
[[codes]]
name = "Sale"
description = "new"
[[codes]]
name = "Billing - resolved"
renamed_from = "Billing ok"
[[codes]]
name = "Callback"
[[queues]]
name = "Support"
codes = ["Sale", "Billing - resolved", "Callback"]
"#;

#[test]
fn changes_come_by_name_codes_first_removals_last() {
    let p = plan(&file(GENESYS_FILE), &genesys_live(), &cx()).unwrap();
    let kinds: Vec<&str> = p
        .changes
        .iter()
        .map(|c| match c {
            Change::Create { .. } => "create",
            Change::Update { from: Some(_), .. } => "rename",
            Change::Update { .. } => "update",
            Change::Assign { .. } => "assign",
            Change::Unassign { .. } => "unassign",
            Change::Delete { .. } => "delete",
            Change::SetSkill { .. } => "skill",
        })
        .collect();
    assert_eq!(kinds, ["update", "rename", "create", "assign", "unassign"]);
    let Change::Update { fields, target, .. } = &p.changes[0] else { unreachable!() };
    assert_eq!(fields[0].field, "description");
    assert_eq!(target.division.as_deref(), Some("Home"), "a field the file leaves out keeps its value");
    let Change::Update { id, from, .. } = &p.changes[1] else { unreachable!() };
    assert_eq!((id.as_str(), from.as_deref()), ("c2", Some("Billing ok")), "a rename keeps the id");
    let Change::Assign { codes, .. } = &p.changes[3] else { unreachable!() };
    assert_eq!(codes, &["Billing - resolved", "Callback"], "the renamed code is assigned by its new name");
    let Change::Unassign { codes, .. } = &p.changes[4] else { unreachable!() };
    assert_eq!(codes, &["Legacy"]);
    assert!(p.kept.is_empty());
    assert!(p.render().contains("rename code \"Billing ok\" → \"Billing - resolved\""));
}

#[test]
fn prune_deletes_unlisted_codes_but_not_those_a_rule_names_unless_forced() {
    let text = GENESYS_FILE.replace("platform = \"genesys\"", "platform = \"genesys\"\nprune = true");
    let mut context = cx();
    context.rules_naming = BTreeMap::from([("named by a rule".to_string(), vec!["vip".to_string()])]);
    context.usage = Some(Usage {
        days: 30,
        by_code: BTreeMap::from([("c3".to_string(), 7)]),
        by_queue_code: BTreeMap::from([(("q1".to_string(), "c3".to_string()), 5)]),
    });
    let p = plan(&file(&text), &genesys_live(), &context).unwrap();
    let deleted: Vec<&str> = p
        .changes
        .iter()
        .filter_map(|c| if let Change::Delete { code, .. } = c { Some(code.as_str()) } else { None })
        .collect();
    assert_eq!(deleted, ["Legacy"]);
    assert_eq!(p.kept[0].code, "Named by a rule");
    let Some(Change::Delete { impact, .. }) = p.changes.last() else { unreachable!() };
    assert_eq!(impact.uses, Some(7));
    let unassign =
        p.changes.iter().find_map(|c| if let Change::Unassign { impact, .. } = c { Some(impact) } else { None });
    assert_eq!(unassign.unwrap()[0].impact.uses, Some(5), "an unassignment counts the queue's legs only");

    context.force = true;
    let forced = plan(&file(&text), &genesys_live(), &context).unwrap();
    assert!(forced.kept.is_empty());
    assert_eq!(forced.changes.iter().filter(|c| matches!(c, Change::Delete { .. })).count(), 2);
}

#[test]
fn a_plan_against_its_own_export_is_empty_and_the_file_round_trips() {
    let live = genesys_live();
    let exported = live.to_file();
    let again = CatalogFile::parse(&exported.to_toml(), "export.toml").unwrap();
    let p = plan(&again, &live, &cx()).unwrap();
    assert!(p.is_empty(), "{}", p.render());
    assert!(drift(&again, &live).unwrap().is_empty());
}

#[test]
fn plan_errors_name_the_problem() {
    let live = genesys_live();
    let unknown_queue =
        file("platform = \"genesys\"\n[[codes]]\nname = \"A\"\n[[queues]]\nname = \"Nope\"\ncodes = [\"A\"]\n");
    assert!(matches!(plan(&unknown_queue, &live, &cx()), Err(PlanError::UnknownQueue { .. })));
    let division = file("platform = \"genesys\"\n[[codes]]\nname = \"A\"\ndivision = \"Elsewhere\"\n");
    assert!(matches!(plan(&division, &live, &cx()), Err(PlanError::UnknownDivision { .. })));
    let ambiguous = file("platform = \"genesys\"\n[[codes]]\nname = \"Sale\"\nrenamed_from = \"Legacy\"\n");
    assert!(matches!(plan(&ambiguous, &live, &cx()), Err(PlanError::AmbiguousRename { .. })));
    let cxone = file("platform = \"cxone\"\n");
    assert!(matches!(plan(&cxone, &live, &cx()), Err(PlanError::WrongPlatform { .. })));
}

#[test]
fn the_fingerprint_changes_when_a_touched_object_does_and_only_then() {
    let live = genesys_live();
    let p = plan(&file(GENESYS_FILE), &live, &cx()).unwrap();
    assert!(p.touched.contains(&Touched::NewName { name: "callback".into() }));
    let mut untouched = live.clone();
    untouched.codes.push(genesys_code("c9", "Unrelated", ""));
    assert_eq!(fingerprint(&untouched, &p.touched), p.fingerprint);
    let mut edited = live.clone();
    edited.codes[0].fields.description = Some("edited by hand".into());
    assert_ne!(fingerprint(&edited, &p.touched), p.fingerprint);
    let mut created = live.clone();
    created.codes.push(genesys_code("c10", "Callback", ""));
    assert_ne!(fingerprint(&created, &p.touched), p.fingerprint, "a code created since under a name the plan creates");
    let mut reassigned = live;
    reassigned.queues[0].code_ids.push("c4".into());
    assert_ne!(fingerprint(&reassigned, &p.touched), p.fingerprint);
}

fn cxone_live() -> LiveCatalog {
    let code = |id: &str, name: &str, active| LiveCode {
        id: id.into(),
        name: name.into(),
        fields: CodeFields {
            classification: Some(1),
            active: Some(active),
            notes: Some(String::new()),
            ..CodeFields::default()
        },
    };
    LiveCatalog {
        platform: Platform::Cxone,
        codes: vec![
            code("1", "Sale", true),
            code("2", "Callback", true),
            code("3", "Old", false),
            code("4", "Stray", true),
        ],
        queues: vec![LiveQueue {
            id: "10".into(),
            name: "Phone".into(),
            code_ids: vec!["1".into(), "2".into()],
            require_disposition: Some(false),
        }],
        divisions: Vec::new(),
    }
}

#[test]
fn a_cxone_skill_is_set_whole_in_priority_order_and_prune_deactivates_active_codes_only() {
    let text = "platform = \"cxone\"\nprune = true\n[[codes]]\nname = \"Sale\"\n[[codes]]\nname = \"Callback\"\n\
                [[skills]]\nname = \"Phone\"\nrequire_disposition = true\ndispositions = [\"Callback\", \"Sale\"]\n";
    let p = plan(&file(text), &cxone_live(), &cx()).unwrap();
    let Change::SetSkill { dispositions, reordered, require_disposition, added, removed, .. } = &p.changes[0] else {
        panic!("{:?}", p.changes)
    };
    assert_eq!(dispositions, &["Callback", "Sale"]);
    assert!(*reordered && added.is_empty() && removed.is_empty());
    assert_eq!(*require_disposition, Some(true));
    let deleted: Vec<&str> = p
        .changes
        .iter()
        .filter_map(|c| if let Change::Delete { code, .. } = c { Some(code.as_str()) } else { None })
        .collect();
    assert_eq!(deleted, ["Stray"], "an inactive disposition is already as gone as CXone allows");
    assert!(p.render().contains("deactivate code \"Stray\""));
}

#[test]
fn drift_also_names_codes_made_by_hand_that_a_plan_without_prune_leaves_alone() {
    let text = "platform = \"cxone\"\n[[codes]]\nname = \"Sale\"\n[[codes]]\nname = \"Callback\"\nnotes = \"n\"\n\
                [[skills]]\nname = \"Phone\"\ndispositions = [\"Sale\", \"Callback\"]\n";
    let lines = drift(&file(text), &cxone_live()).unwrap();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("notes"), "{lines:?}");
    assert!(lines[1].contains("\"Stray\"") && lines[1].contains("made by hand"), "{lines:?}");
}
