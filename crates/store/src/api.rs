use crate::outbox::{Attempted, Delivery, DeliveryCounts, DeliveryFilter, OutboxMessage, Resend, Route, SinkState};
use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use wrapup_core::catalog::Catalog;
use wrapup_core::lifecycle::{ExternalDecision, LegRecord};
use wrapup_core::{Event, LegKey, Outcome};

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The leg changed since the caller loaded it (an event was applied) or the caller's lease expired / was taken.
    /// Reload the leg and decide again.
    #[error("leg {0} changed under this worker (or its lease expired); reload it")]
    Conflict(String),
    #[error("leg {0} not found")]
    NotFound(String),
    #[error("store backend error: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Result of recording one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ingested {
    /// New: stored and applied to its leg.
    New,
    /// Same `(connection, dedupe_key)` seen before: no effect.
    Duplicate,
}

/// A leg handed to a worker, with the version it must present when saving.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedLeg {
    pub leg: LegRecord,
    pub version: i64,
}

/// One line of a leg's explanation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LedgerEntry {
    pub at: Timestamp,
    /// `event`, `decision`, `attempt`, `outcome`, `note`.
    pub kind: String,
    /// Structured detail (never secrets).
    pub detail: serde_json::Value,
}

/// One credential of a connection, as a process reports it to share its limit with replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialUsage {
    /// The credential's whole limit per minute.
    pub limit: u32,
    /// This process's requests answered in the last minute and in flight.
    pub footprint: u32,
}

/// One line of the catalog audit trail (see `wrapup catalog apply`): `kind` is `begin` (the plan), `intent` (a
/// write about to be sent), `result` (its answer) or `end`; `body` is the line's JSON, never a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogAuditLine {
    pub connection: String,
    pub apply_id: String,
    pub seq: i64,
    pub at: Timestamp,
    pub actor: String,
    pub kind: String,
    pub body: serde_json::Value,
}

/// Filter for listing legs, newest (`created_at`) first. Every field narrows the list; none set lists every leg.
#[derive(Debug, Clone, Default)]
pub struct LegFilter {
    pub connection: Option<String>,
    pub outcome: Option<Outcome>,
    /// Only legs not finished.
    pub open_only: bool,
    pub conversation: Option<String>,
    /// The queue's (Genesys) or skill's (CXone) id or name.
    pub queue: Option<String>,
    /// A code's name or id: the one decided for the leg, or the one the agent (or the platform) set.
    pub code: Option<String>,
    /// The agent's user id.
    pub agent: Option<String>,
    /// Legs created at or after this.
    pub from: Option<Timestamp>,
    /// Legs created before this.
    pub to: Option<Timestamp>,
    /// Legs after this one in the list's order (the last leg of the previous page).
    pub after: Option<LegCursor>,
    pub limit: Option<u32>,
}

/// Where a page of [`Store::list_legs`] ended: the last leg's creation time and key. Stable while legs are added
/// (new legs sort before it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegCursor {
    pub created_at: Timestamp,
    pub key: LegKey,
}

impl LegCursor {
    pub fn of(leg: &LegRecord) -> Self {
        Self { created_at: leg.created_at, key: leg.key.clone() }
    }
}

/// Which legs of the review queue to list (see `wrapup_core::lifecycle::review::awaits_person`).
#[derive(Debug, Clone, Default)]
pub struct ReviewFilter {
    pub connection: Option<String>,
    /// `expired` legs too, not only `review`.
    pub include_expired: bool,
    /// Start after this leg (the last of the previous page).
    pub after: Option<ReviewCursor>,
    pub limit: u32,
}

/// Where a page of the review queue ends: the legs are in a stable order, by when wrapup first heard of the leg
/// (its `created_at`, normally its end, to the millisecond), then its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewCursor {
    pub created_at_ms: i64,
    pub key: LegKey,
}

impl ReviewCursor {
    /// The cursor that continues after `leg`.
    pub fn after(leg: &LegRecord) -> Self {
        ReviewCursor { created_at_ms: leg.created_at.as_millisecond(), key: leg.key.clone() }
    }

    /// An opaque text for an API or a command line (hex, so any id survives a query string).
    pub fn encode(&self) -> String {
        let k = &self.key;
        let text = format!("{}\n{}\n{}\n{}", self.created_at_ms, k.connection, k.conversation, k.participant);
        text.bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// The cursor [`ReviewCursor::encode`] made, or `None` for anything else.
    pub fn decode(text: &str) -> Option<Self> {
        if !text.len().is_multiple_of(2) || text.len() > 2_048 {
            return None;
        }
        let bytes: Option<Vec<u8>> =
            (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect();
        let text = String::from_utf8(bytes?).ok()?;
        let mut parts = text.split('\n');
        let created_at_ms = parts.next()?.parse().ok()?;
        let key = LegKey::new(parts.next()?, parts.next()?, parts.next()?);
        parts.next().is_none().then_some(ReviewCursor { created_at_ms, key })
    }
}

/// A leg whose outcome a commit changed: its first ending (`from` is `None`), or the one change of a finished leg's
/// outcome — or an operator's code recorded on a finished leg, which leaves its outcome as it was (`from` equals
/// it; see `wrapup_core::lifecycle::review`). Reported once per commit to the [`OutcomeHook`], after the commit, whichever write made it (an event at
/// intake, a worker's save, the expiry sweep), so that what counts outcomes counts each exactly once.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeChange {
    pub leg: LegRecord,
    pub from: Option<Outcome>,
}

/// Called after each commit for every [`OutcomeChange`] in it (see [`Store::watch_outcomes`]).
pub type OutcomeHook = std::sync::Arc<dyn Fn(&OutcomeChange) + Send + Sync>;

/// One save of a worker's move: the leg, the lines that explain the move, and what the save expects to replace.
#[derive(Debug, Clone, Copy)]
pub struct Save<'a> {
    pub leg: &'a LegRecord,
    /// The stored version the worker loaded or last saved; the save is refused if it changed.
    pub version: i64,
    pub owner: &'a str,
    /// Clear the lease (the worker is done with the leg for now).
    pub release: bool,
    /// Ledger lines committed with the leg, or not at all.
    pub lines: &'a [LedgerEntry],
    /// The outcome of the stored version, so that a change of outcome is reported to the hook.
    pub stored_outcome: Option<Outcome>,
}

/// Counts for reports: outcome → number of legs, plus legs not finished (`None`).
pub type OutcomeCounts = BTreeMap<Option<Outcome>, u64>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Durably records `events` (one transaction for the batch) and applies each new one to its leg with
    /// `wrapup_core::lifecycle::apply_event`, appending an `event` ledger entry. Returns one result per input, in
    /// order. A duplicate within the batch counts as a duplicate. After this returns `Ok`, the events survive a crash.
    async fn ingest(&self, events: &[Event], now: Timestamp) -> StoreResult<Vec<Ingested>>;

    /// Leases up to `limit` legs that need a worker, to `owner` for `lease`:
    /// legs in state `open`/`scheduled`/`closing` with `not_before <= now`, and legs in state `writing` (a crashed or slow
    /// worker), each only if not leased by someone else (`lease_until <= now` or no lease). Earliest `deadline`
    /// first (legs without a deadline after those with one), then `not_before`. Claiming sets the lease only: the
    /// version stays as it was (pass `ClaimedLeg::version` back to `save_leg`).
    async fn claim_due(
        &self,
        now: Timestamp,
        limit: u32,
        owner: &str,
        lease: SignedDuration,
    ) -> StoreResult<Vec<ClaimedLeg>>;

    /// Saves a claimed leg with the ledger lines of the move that changed it, in one transaction: both or neither.
    /// Refused with `Conflict` when its version changed or `owner` no longer holds the lease. On success returns the
    /// new version; `release` clears the lease (keep it while still working on the leg). "Holds the lease" means
    /// `lease_owner == owner`: a lease that ran out is lost only once another worker claims the leg, so owner names
    /// must be unique per worker.
    async fn save(&self, save: Save<'_>) -> StoreResult<i64>;

    /// [`Store::save`] without ledger lines (and without reporting an outcome change).
    async fn save_leg(&self, leg: &LegRecord, version: i64, owner: &str, release: bool) -> StoreResult<i64> {
        self.save(Save { leg, version, owner, release, lines: &[], stored_outcome: leg.outcome }).await
    }

    /// Calls `hook` after each commit for every leg whose outcome it changed ([`OutcomeChange`]). One hook per
    /// store; a later call replaces it.
    fn watch_outcomes(&self, hook: OutcomeHook);

    /// Clears every lease. Only for a process that is the store's sole user (embedded SQLite) at startup: the
    /// leases it finds were left by a previous run of itself that crashed, and waiting for them to expire would
    /// only delay those legs. Returns how many leases were cleared.
    async fn release_all_leases(&self) -> StoreResult<u64>;

    /// Extends to `until` the leases `owner` still holds on `keys` (the legs it is working on), so that a lease can
    /// be short — a dead process's legs are taken over soon — without running out under a worker that is alive.
    /// A lease another worker took meanwhile is left alone. Returns how many were extended. A store with one user
    /// (the embedded SQLite file) clears a dead run's leases at start instead and need not renew: it answers 0.
    async fn renew_leases(&self, owner: &str, keys: &[LegKey], until: Timestamp) -> StoreResult<u64> {
        let _ = (owner, keys, until);
        Ok(0)
    }

    /// Releases a lease without changing the leg (e.g. after a conflict). A no-op when `owner` does not hold it;
    /// `NotFound` when there is no such leg.
    async fn release(&self, key: &LegKey, owner: &str) -> StoreResult<()>;

    async fn get_leg(&self, key: &LegKey) -> StoreResult<Option<ClaimedLeg>>;

    /// Legs, newest (`created_at`) first. Without `filter.limit` an implementation caps the result (never the
    /// whole table); `SqliteStore` returns at most `DEFAULT_LIST_LIMIT`.
    async fn list_legs(&self, filter: &LegFilter) -> StoreResult<Vec<LegRecord>>;

    /// Up to `limit` legs created at or after `since`, oldest first (creation time to the millisecond, then
    /// connection, conversation, participant), starting after `after` (the last leg of the previous page). Paging
    /// with it walks every leg of a time range once, in an order that does not depend on the backend's row layout,
    /// without holding them all at once (`wrapup simulate`).
    async fn legs_since(
        &self,
        since: Option<Timestamp>,
        after: Option<&LegRecord>,
        limit: u32,
    ) -> StoreResult<Vec<LegRecord>>;

    /// The review queue: finished legs that wait for a person (`review`, and `expired` when asked; not resolved or
    /// dismissed), oldest first (`created_at`, then key), after `filter.after`, at most `filter.limit`.
    async fn review_legs(&self, filter: &ReviewFilter) -> StoreResult<Vec<LegRecord>>;

    /// How many legs of `connection` ended `review` and wait for a person (the queue [`Store::review_legs`] lists
    /// without `include_expired`).
    async fn review_count(&self, connection: &str) -> StoreResult<u64>;

    /// Finishes every unfinished leg whose `deadline` is before `now` with `Outcome::Expired`. Legs in `writing`, and
    /// legs with a write intent (a write may have been sent and landed), are left to their worker, which reads the
    /// platform before deciding. Returns the legs it finished.
    async fn expire_overdue(&self, now: Timestamp) -> StoreResult<Vec<LegKey>>;

    /// The earliest time at which `claim_due` would return a leg (for sleeping until then), if any: the earliest
    /// `not_before` of open/scheduled legs, or the end of another worker's lease when that is later (a `writing` leg
    /// is due when its lease ends). May be earlier than exact by the store's time resolution, never later.
    async fn next_due(&self) -> StoreResult<Option<Timestamp>>;

    async fn append_ledger(&self, key: &LegKey, entry: &LedgerEntry) -> StoreResult<()>;
    async fn ledger(&self, key: &LegKey) -> StoreResult<Vec<LedgerEntry>>;

    /// How many `attempt` lines (platform calls made for the leg) each of `legs` has in its ledger, in one query;
    /// a leg with none is left out.
    async fn attempt_counts(&self, legs: &[LegKey]) -> StoreResult<std::collections::HashMap<LegKey, u64>>;

    async fn outcome_counts(&self, connection: &str) -> StoreResult<OutcomeCounts>;

    /// How many ledger lines of `kind` the legs of `connection` have (e.g. `outcome`: one per finished leg).
    async fn count_ledger_lines(&self, connection: &str, kind: &str) -> StoreResult<u64>;

    async fn put_catalog(&self, connection: &str, catalog: &Catalog, fetched_at: Timestamp) -> StoreResult<()>;
    async fn get_catalog(&self, connection: &str) -> StoreResult<Option<(Catalog, Timestamp)>>;

    /// Whether `owner` runs the periodic job `job` now: takes the job's lease until `now + lease` when it is free,
    /// ran out, or is already `owner`'s (renewing it), and answers `false` while another owner's lease runs. Several
    /// processes sharing one store thus run each periodic job (a reconcile pass, a detection poll) once per period,
    /// and another takes over once the holder has died and its lease ran out. A store with one user (the embedded
    /// SQLite file) has no one to share with: it always answers `true`.
    async fn lead(&self, job: &str, owner: &str, now: Timestamp, lease: SignedDuration) -> StoreResult<bool> {
        let _ = (job, owner, now, lease);
        Ok(true)
    }

    /// Replicas sharing one connection's OAuth clients split each client's per-minute limit: reports this process's
    /// `usage` per credential — the whole limit as it knows it, and its footprint (requests answered in the last
    /// minute and in flight) — and answers the slice of each limit it may spend until `lease` from now, unless it
    /// reports again (see `budget_slices`). A store with one user (the embedded SQLite file) answers `None`: the
    /// process has the whole limit to itself.
    async fn share_budget(
        &self,
        connection: &str,
        owner: &str,
        usage: &[CredentialUsage],
        lease: std::time::Duration,
    ) -> StoreResult<Option<Vec<u32>>> {
        let _ = (connection, owner, usage, lease);
        Ok(None)
    }

    /// Appends one line to the catalog audit trail.
    async fn append_catalog_audit(&self, line: &CatalogAuditLine) -> StoreResult<()>;

    /// The audit lines of `connection` written at or after `since`, in the order they were written.
    async fn catalog_audit(&self, connection: &str, since: Timestamp) -> StoreResult<Vec<CatalogAuditLine>>;

    /// The legs of one conversation (each agent leg; on CXone, each contact of the master contact).
    async fn legs_of_conversation(&self, connection: &str, conversation: &str) -> StoreResult<Vec<LegRecord>>;

    /// Keeps a CRM decision that came before its leg was known: for the leg of `participant`, or for every leg of
    /// the conversation (`None`). A later one for the same target replaces it.
    async fn put_pending_decision(
        &self,
        connection: &str,
        conversation: &str,
        participant: Option<&str>,
        decision: &ExternalDecision,
    ) -> StoreResult<()>;

    /// The kept decision for the leg `key`: the one that names its participant, else its conversation's.
    async fn pending_decision(&self, key: &LegKey) -> StoreResult<Option<ExternalDecision>>;

    /// The answer stored for an idempotency key, if the key was used (see [`Store::idempotent`]).
    async fn idempotency_answer(&self, connection: &str, key: &str) -> StoreResult<Option<serde_json::Value>>;

    /// External decisions are idempotent: the first `(connection, key)` stores `response`; later calls get it back.
    /// Returns `(true, response)` when this call stored it, `(false, first response)` when the key was used before.
    async fn idempotent(
        &self,
        connection: &str,
        key: &str,
        response: &serde_json::Value,
    ) -> StoreResult<(bool, serde_json::Value)>;

    // ---- the outbox (see `outbox.rs`) ----

    /// Messages not routed to the sinks yet, oldest first, at most `limit`.
    async fn outbox_unrouted(&self, limit: u32) -> StoreResult<Vec<OutboxMessage>>;

    /// Stores each route's deliveries (a `(message, sink)` row that exists already is kept as it is) and marks its
    /// message routed, in one transaction.
    async fn outbox_route(&self, routes: &[Route], now: Timestamp) -> StoreResult<()>;

    /// Leases up to `limit` pending deliveries of `sink` that are due (`next_at <= now`, not leased by another
    /// owner), oldest message first, to `owner` until `now + lease`. A delivery whose leg has an earlier message
    /// still pending for this sink, or not routed yet, is not due: a leg's messages reach a sink in order.
    async fn outbox_claim(
        &self,
        sink: &str,
        now: Timestamp,
        limit: u32,
        owner: &str,
        lease: SignedDuration,
    ) -> StoreResult<Vec<Delivery>>;

    /// Records attempts of deliveries `owner` claimed (one transaction): delivered, pending again at a later time,
    /// or dead. An attempt whose lease `owner` no longer holds is ignored. Returns how many were recorded.
    async fn outbox_record(&self, owner: &str, attempts: &[Attempted]) -> StoreResult<u64>;

    /// The earliest time a pending delivery of `sink` becomes due (its `next_at`, or the end of its lease).
    async fn outbox_next_due(&self, sink: &str) -> StoreResult<Option<Timestamp>>;

    /// Deliveries, newest message first.
    async fn outbox_list(&self, filter: &DeliveryFilter) -> StoreResult<Vec<Delivery>>;

    /// The messages of one leg, in order (`None`: every leg's, newest first, at most `limit`).
    async fn outbox_messages(&self, leg: Option<&LegKey>, limit: u32) -> StoreResult<Vec<OutboxMessage>>;

    /// Puts the deliveries `what` selects back to pending, due at `now`, given up after `until`. Returns how many.
    async fn outbox_resend(&self, what: &Resend, now: Timestamp, until: Timestamp) -> StoreResult<u64>;

    /// Deliveries per sink and state.
    async fn outbox_counts(&self) -> StoreResult<DeliveryCounts>;

    /// The sinks with a persisted state (a sink never disabled may have none).
    async fn outbox_sinks(&self) -> StoreResult<Vec<SinkState>>;

    /// Disables a sink (`disabled_at` set) or enables it again (`None`s), persisted for every replica.
    async fn outbox_set_sink(&self, state: &SinkState) -> StoreResult<()>;
}
