//! Rules against a live catalog: does every code a rule names exist on this connection, and may it be used on every
//! queue the rule can match?
//!
//! Pure, so `wrapup validate` can fetch each connection's catalog and then call [`check_catalog`]. The queues a rule
//! can match are read from its `queue` matcher: the names of an `equals`/`one_of` (each must exist), the catalog
//! queues a `regex` accepts, every catalog queue when there is no queue matcher (or `exists = true`), and none for
//! `exists = false` (the rule is only for legs without a queue, so only the code's existence is checked).

use crate::{Config, Location};
use wrapup_core::catalog::Catalog;

/// One rule that will not work as written on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogProblem {
    pub connection: String,
    pub rule_index: usize,
    pub rule: String,
    /// Where the rule is written.
    pub location: Location,
    pub kind: CatalogProblemKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogProblemKind {
    #[error("code {code:?} does not exist")]
    UnknownCode { code: String },
    #[error("queue {queue:?} does not exist")]
    UnknownQueue { queue: String },
    #[error("code {code:?} is not assigned to queue {queue:?}")]
    NotAssigned { code: String, queue: String },
}

impl std::fmt::Display for CatalogProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: rules[{}] ({:?}): {} on connection {:?}",
            self.location, self.rule_index, self.rule, self.kind, self.connection
        )
    }
}

/// Every problem of the rules that can apply to `connection` against its `catalog`, in rule order.
pub fn check_catalog(config: &Config, connection: &str, catalog: &Catalog) -> Vec<CatalogProblem> {
    check_catalogs(config, &[(connection, catalog)])
}

/// Every problem of the rules against the live catalogs of several connections, in rule order. One rule may serve
/// several connections — a Genesys org and a CXone business unit, `queue = { one_of = ["Support", "Support
/// Phone"] }` — so a queue name is a problem only if no connection the rule can run on knows it, and the code is
/// checked on each connection where the rule can match a queue (a problem there is one for that connection).
pub fn check_catalogs(config: &Config, catalogs: &[(&str, &Catalog)]) -> Vec<CatalogProblem> {
    let mut problems = Vec::new();
    for (index, rule) in config.rules.rules().iter().enumerate() {
        let applicable: Vec<(&str, &Catalog)> = catalogs
            .iter()
            .copied()
            .filter(|(name, _)| rule.applies_to(name, config.connection(name).map(|c| c.kind)))
            .collect();
        if applicable.is_empty() {
            continue;
        }
        let mut push = |connection: String, kind| {
            problems.push(CatalogProblem {
                connection,
                rule_index: index,
                rule: rule.name.clone(),
                location: config.rule_location(index).cloned().unwrap_or_else(|| Location {
                    file: String::new(),
                    line: 0,
                    column: 0,
                }),
                kind,
            })
        };
        let literal = rule.when.queue.as_ref().and_then(|m| m.literal_values());
        if let Some(names) = &literal {
            for name in names {
                if !applicable.iter().any(|(_, c)| c.queue_by_name(name).is_some()) {
                    let on = applicable.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
                    push(on, CatalogProblemKind::UnknownQueue { queue: name.to_string() });
                }
            }
        }
        for (connection, catalog) in &applicable {
            let queues: Vec<_> = match (&rule.when.queue, &literal) {
                (_, Some(names)) => names.iter().filter_map(|n| catalog.queue_by_name(n)).collect(),
                (Some(matcher), None) => catalog.queues.iter().filter(|q| matcher.matches(Some(&q.name))).collect(),
                (None, _) => catalog.queues.iter().collect(),
            };
            // Named queues that all live on other connections: the rule cannot match a leg here.
            if literal.as_ref().is_some_and(|n| !n.is_empty()) && queues.is_empty() {
                continue;
            }
            // The rule's code, and the code its `decide` falls back to when it names one: either may be written.
            let fallback = match rule.decide.as_ref().map(|d| &d.fallback) {
                Some(wrapup_core::rules::Fallback::Code(name)) => Some(name),
                _ => None,
            };
            for name in std::iter::once(&rule.code).chain(fallback) {
                let Some(code) = catalog.code_by_name(name) else {
                    push(connection.to_string(), CatalogProblemKind::UnknownCode { code: name.clone() });
                    continue;
                };
                for queue in &queues {
                    if !queue.code_ids.contains(&code.id) {
                        push(
                            connection.to_string(),
                            CatalogProblemKind::NotAssigned { code: code.name.clone(), queue: queue.name.clone() },
                        );
                    }
                }
            }
        }
    }
    problems
}

/// The lookup fallback codes (`connections.lookup.fallback_code`) that do not exist in their connection's live
/// catalog, as messages naming the connection. A lookup answers with the fallback only as a code *id*, so a fallback
/// the catalog does not know would fail exactly when it is needed.
pub fn check_lookup_fallbacks(config: &Config, catalogs: &[(&str, &Catalog)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, catalog) in catalogs {
        let Some(code) = config.connection(name).and_then(|c| c.lookup.fallback_code.as_deref()) else { continue };
        if catalog.code_by_name(code).is_none() {
            problems.push(format!(
                "connections {name:?}: lookup.fallback_code {code:?} does not exist in the live catalog of the connection"
            ));
        }
    }
    problems
}
