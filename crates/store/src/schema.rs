//! The schema's version: each store migrates its database when it opens it, unless told only to check it
//! (`wrapup serve --no-migrate`, for deployments that migrate as a step of their own with `wrapup migrate`).

use crate::{StoreError, StoreResult};
use sqlx::migrate::Migrator;

/// What a store does with the schema when it opens its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Migrations {
    /// Apply the migrations the database lacks (several processes starting together apply them once).
    #[default]
    Apply,
    /// Apply none; refuse a database that lacks some, or that a newer build migrated further.
    Check,
}

/// What a database's schema is, against this build's migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Versions applied successfully, ascending.
    pub applied: Vec<i64>,
    /// This build's versions the database lacks.
    pub pending: Vec<i64>,
    /// Applied versions this build does not know (a newer build migrated the database).
    pub unknown: Vec<i64>,
}

impl SchemaStatus {
    pub(crate) fn of(migrator: &Migrator, mut applied: Vec<i64>) -> Self {
        applied.sort_unstable();
        let known: Vec<i64> = migrator.iter().map(|m| m.version).collect();
        let pending = known.iter().copied().filter(|v| !applied.contains(v)).collect();
        let unknown = applied.iter().copied().filter(|v| !known.contains(v)).collect();
        SchemaStatus { applied, pending, unknown }
    }

    /// `Ok` when the schema is exactly this build's; else what to do about it.
    pub fn require_current(&self) -> StoreResult<()> {
        if !self.unknown.is_empty() {
            return Err(StoreError::Backend(format!(
                "the database was migrated by a newer build (versions {:?} are unknown here): run that build",
                self.unknown
            )));
        }
        if !self.pending.is_empty() {
            return Err(StoreError::Backend(format!(
                "the database lacks migrations {:?} of this build: run `wrapup migrate` (or start without \
                 --no-migrate)",
                self.pending
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

    #[test]
    fn a_schema_is_current_only_with_exactly_this_builds_migrations() {
        let all: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
        assert!(SchemaStatus::of(&MIGRATOR, all.clone()).require_current().is_ok());
        let behind = SchemaStatus::of(&MIGRATOR, all[..all.len() - 1].to_vec());
        assert_eq!(behind.pending, vec![*all.last().unwrap()]);
        assert!(behind.require_current().unwrap_err().to_string().contains("wrapup migrate"));
        let fresh = SchemaStatus::of(&MIGRATOR, Vec::new());
        assert_eq!(fresh.pending, all);
        let mut ahead = all.clone();
        ahead.push(99_999);
        let ahead = SchemaStatus::of(&MIGRATOR, ahead);
        assert_eq!(ahead.unknown, vec![99_999]);
        assert!(ahead.require_current().unwrap_err().to_string().contains("newer build"));
    }
}
