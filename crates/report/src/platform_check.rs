//! The usage figures checked against the platform's own: Genesys Cloud's conversation aggregates grouped by
//! wrap-up code (`POST /api/v2/analytics/conversations/aggregates/query`, handled legs per code over an interval),
//! compared code by code with the legs the store saw end with each code. The query itself is the caller's (the CLI
//! has the platform client); this module compares and explains.

use crate::{CodeRef, ConnectionReport, ConnectionView};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The comparison of one connection's usage with the platform's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlatformCheck {
    /// Whether the platform's figures were read.
    pub available: bool,
    /// What was compared, or why nothing was.
    pub note: String,
    /// The platform query's interval (`start/end`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Every code has the same number of legs on both sides.
    pub matches: bool,
    /// Every code either side counted, by name.
    pub codes: Vec<CodeCheck>,
}

/// One code's legs on both sides, and why they differ when they do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CodeCheck {
    pub code: CodeRef,
    /// Legs of the report that ended with the code (whoever set it).
    pub wrapup_legs: u64,
    /// Handled legs the platform counts with the code in the interval.
    pub platform_legs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

impl PlatformCheck {
    /// The check cannot be made: `why`.
    pub fn unavailable(why: impl Into<String>) -> Self {
        Self { available: false, note: why.into(), interval: None, matches: false, codes: Vec::new() }
    }

    /// Compares the report's usage with the platform's legs per code id over `interval`.
    pub fn compare(
        report: &ConnectionReport,
        platform: &BTreeMap<String, u64>,
        view: &ConnectionView,
        interval: String,
    ) -> Self {
        let mut ours: BTreeMap<&str, (String, u64)> = BTreeMap::new();
        for u in &report.usage {
            ours.entry(u.code.id.as_str()).or_insert_with(|| (u.code.name.clone(), 0)).1 += u.legs;
        }
        let ids: std::collections::BTreeSet<&str> =
            ours.keys().copied().chain(platform.keys().map(String::as_str)).collect();
        let mut codes: Vec<CodeCheck> = ids
            .into_iter()
            .map(|id| {
                let (name, wrapup_legs) = ours.get(id).cloned().unwrap_or_else(|| (view.code_name(id), 0));
                let platform_legs = platform.get(id).copied().unwrap_or(0);
                let why = explain(wrapup_legs, platform_legs);
                CodeCheck { code: CodeRef { id: id.to_string(), name }, wrapup_legs, platform_legs, why }
            })
            .collect();
        codes.sort_by(|a, b| a.code.cmp(&b.code));
        let matches = codes.iter().all(|c| c.why.is_none());
        let differ = codes.iter().filter(|c| c.why.is_some()).count();
        let note = if matches {
            format!("{} code(s): the platform's counts are the report's", codes.len())
        } else {
            format!("{differ} of {} code(s) differ from the platform's counts", codes.len())
        };
        Self { available: true, note, interval: Some(interval), matches, codes }
    }
}

fn explain(wrapup: u64, platform: u64) -> Option<String> {
    use std::cmp::Ordering;
    match wrapup.cmp(&platform) {
        Ordering::Equal => None,
        Ordering::Less => Some(format!(
            "the platform counts {} more: legs wrapup has not recorded in the range (they ended before it ran, or no \
             event about them reached it: `wrapup reconcile` finds them), or legs whose window closed after wrapup \
             last heard of them",
            platform - wrapup
        )),
        Ordering::Greater => Some(format!(
            "wrapup counts {} more: legs the platform counts outside the query's interval (their window closed \
             after its end), or whose code changed on the platform since wrapup heard of it",
            wrapup - platform
        )),
    }
}
