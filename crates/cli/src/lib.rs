//! The `wrapup` command line: one module per subcommand; `main.rs` only parses and dispatches.

pub mod bench;
pub mod demo;
pub mod logging;
pub mod reconcile;
pub mod serve;
pub mod summary;
