//! The code catalog as code: a connection's codes and their assignments, by name, in a file (`wrapup_config::
//! CatalogFile`), exported from a live org, planned against another and applied to it.
//!
//! - [`live`]: the live catalog, the only place ids appear.
//! - [`plan`]: file + live catalog → the changes, by name (pure).
//! - [`api`]: what apply needs from a platform, implemented for Genesys Cloud and CXone over the connectors'
//!   clients (every call through the connection's request budget).
//! - [`drift`]: how a live catalog differs from its file, for `wrapup validate`.
//! - [`apply`]: carries a plan out: codes before assignments, removals last; 429s waited out, 409s re-read and
//!   re-planned for the one object, an unsure create looked up by name before anything is sent again; then reads
//!   back until the platform shows every change.

pub mod api;
pub mod apply;
pub mod drift;
pub mod live;
pub mod plan;

pub use live::{LiveCatalog, LiveCode, LiveQueue};
pub use plan::{plan, Change, Plan, PlanContext, PlanError, Usage};

#[cfg(test)]
mod tests;
