//! wrapup's durable state behind one trait, [`Store`].
//!
//! - **inbox**: every accepted event, unique by `(connection, dedupe_key)`. Recording an event and applying it to its
//!   leg ([`wrapup_core::lifecycle::apply_event`]) happen in one transaction, so an acknowledged event is never lost
//!   and never applied twice.
//! - **legs**: one row per leg with its state, timers (`not_before`, `deadline`), decision, write intent, outcome and
//!   a lease (`lease_owner`, `lease_until`) so exactly one worker handles a leg at a time. Every change bumps
//!   `version`; a worker's save is refused when the leg changed under it (an event arrived) or its lease is gone.
//! - **ledger**: append-only explanation of each leg: events, decision, every API attempt, outcome.
//! - **catalog cache**: the last catalog fetched per connection, so a restart does not refetch before serving.
//! - **idempotency**: the first response per `(connection, key)` of the external decision API.
//! - **outbox**: a message per change of a leg's outcome, in the same commit, and its deliveries to each sink
//!   (`outbox.rs`).
//!
//! Implementations: [`SqliteStore`] (embedded, the default) and [`PostgresStore`] (shared by several replicas).
//! Every implementation must pass the conformance suite in `tests/store/conformance.rs`.

mod api;
mod budget_slices;
mod codec;
mod copy;
mod leg_query;
pub mod outbox;
mod postgres;
mod schema;
mod sqlite;

pub use api::*;
pub use copy::{copy_sqlite_to_postgres, CopyProgress, CopyReport, TableCopied};
pub use outbox::{
    AttemptResult, Attempted, Delivery, DeliveryCounts, DeliveryFilter, DeliveryState, MessageBody, NewDelivery,
    OutboxMessage, Resend, Route, SinkState,
};
pub use postgres::PostgresStore;
pub use schema::{Migrations, SchemaStatus};
pub use sqlite::{SqliteStore, WriteStats, DEFAULT_LIST_LIMIT};
