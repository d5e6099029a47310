//! The store's integration tests: the conformance suite every implementation passes, run against each one.

#[macro_use]
mod conformance;
mod postgres;
mod sqlite;
