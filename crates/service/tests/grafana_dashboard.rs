//! The Grafana dashboard in docs/grafana/ is JSON Grafana can import, and every metric its queries name is one the
//! code emits (a renamed metric would leave a panel silently empty).

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                sources(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// The `wrapup_…` names in `text`, without the suffixes Prometheus adds to a histogram's series.
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("wrapup_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_count", "_sum"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        names.push(base.to_string());
        rest = &tail[end..];
    }
    names.sort();
    names.dedup();
    names
}

#[test]
fn every_metric_the_dashboard_queries_is_emitted_by_the_code() {
    let text = std::fs::read_to_string(repo().join("docs/grafana/wrapup.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    let mut exprs = String::new();
    for panel in panels {
        assert!(panel["gridPos"]["w"].is_u64() && panel["title"].is_string(), "{panel}");
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push_str(target["expr"].as_str().expect("a query"));
            exprs.push('\n');
        }
    }
    let mut code = String::new();
    sources(&repo().join("crates"), &mut code);
    let names = metric_names(&exprs);
    assert!(names.len() >= 15, "{names:?}");
    let missing: Vec<&String> = names.iter().filter(|n| !code.contains(&format!("\"{n}\""))).collect();
    assert!(missing.is_empty(), "the dashboard queries metrics no code emits: {missing:?}");
}
