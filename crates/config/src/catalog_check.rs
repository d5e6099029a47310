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
    let platform = config.connection(connection).map(|c| c.kind);
    let mut problems = Vec::new();
    for (index, rule) in config.rules.rules().iter().enumerate() {
        if !rule.applies_to(connection, platform) {
            continue;
        }
        let mut push = |kind| {
            problems.push(CatalogProblem {
                connection: connection.to_string(),
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
        let code = catalog.code_by_name(&rule.code);
        if code.is_none() {
            push(CatalogProblemKind::UnknownCode { code: rule.code.clone() });
        }
        let queues: Vec<_> = match &rule.when.queue {
            Some(matcher) => match matcher.literal_values() {
                Some(names) => names
                    .into_iter()
                    .filter_map(|name| {
                        let queue = catalog.queue_by_name(name);
                        if queue.is_none() {
                            push(CatalogProblemKind::UnknownQueue { queue: name.to_string() });
                        }
                        queue
                    })
                    .collect(),
                None => catalog.queues.iter().filter(|q| matcher.matches(Some(&q.name))).collect(),
            },
            None => catalog.queues.iter().collect(),
        };
        if let Some(code) = code {
            for queue in queues {
                if !queue.code_ids.contains(&code.id) {
                    push(CatalogProblemKind::NotAssigned { code: code.name.clone(), queue: queue.name.clone() });
                }
            }
        }
    }
    problems
}
