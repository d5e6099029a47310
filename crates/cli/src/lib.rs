//! The `wrapup` command line: one module per subcommand; `main.rs` only parses and dispatches. The demo and the
//! benchmarks live in their own crates (`wrapup-demo`, `wrapup-bench`).

pub mod catalog;
pub mod logging;
pub mod outbox;
pub mod reconcile;
pub mod report;
pub mod review;
pub mod serve;
pub mod simulate;
pub mod store_copy;
pub mod validate;
