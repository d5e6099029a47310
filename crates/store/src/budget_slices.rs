//! How replicas sharing one OAuth client split its per-minute limit: each holds a *slice* (requests per minute it
//! may spend), and the slices, with what a replica that gave up part of its slice or died may still have in the
//! platform's count, never add up to more than the limit. A store shared by replicas keeps one row per (connection,
//! credential, replica) and runs [`allot`] for one replica at a time (see [`crate::Store::share_budget`]).
//!
//! **Why a sum of slices is safe.** A replica spends only while its *footprint* — its requests answered in the last
//! minute, and those in flight — is below its slice (the budget's even pace and its cap of a minute's requests, see
//! `wrapup_connectors::budget`). Every way the platform may count its minute (fixed window, sliding window, token
//! bucket) forgets a request within a minute of counting it, and an answer comes after the count, so at any moment
//! the platform counts at most the sum of the replicas' footprints. A replica's footprint never exceeds the larger of
//! its slice and its last reported footprint, so the store *reserves* that for it: a slice given up stays reserved
//! as long as the replica's own requests still fill it, and is handed on only as they leave the minute — measured,
//! not assumed: a replica that shrinks while idle gives its slice on at its next report.
//!
//! **A replica that dies** reported its footprint at `reported_at` and stopped spending by `lease_until` (it holds
//! its slice only until then unless renewed, see `Budget::set_share`). Since its report it can have spent at most a
//! burst plus its pace over that time, so that much more than its footprint, never more than its slice, stays
//! reserved until a minute (and a margin for requests still on their way) after `lease_until`; then the row goes.
//!
//! **Fair split.** The live replicas split the limit evenly (the first ones in name order take the remainder). A
//! replica above its fair slice shrinks to it; one below grows towards it as far as the reservations leave room. The
//! split does not follow where requests wait: a slice handed from one busy replica to another stays reserved while
//! the requests sent under it fill the platform's minute, so slices moving with every change of load would leave
//! part of the limit unspent (measured: 0.87–0.92 of it, against 0.98 for an even split). The work moves instead:
//! a replica claims no more legs than its slice can begin soon (`wrapup_service::shared_budget::legs_worth_holding`),
//! so the rest wait in the store, in deadline order, for whichever replica has room.

/// A replica's row for one credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slice {
    pub owner: String,
    pub share: u32,
    pub footprint: u32,
    /// Epoch ms (the database's clock) until which the owner may spend its slice.
    pub lease_until: i64,
    /// Epoch ms of the owner's last report.
    pub reported_at: i64,
}

/// A dead replica's requests have all left the platform's minute this long after its lease ended: the minute, and
/// a margin for requests granted before the end and counted a little later (a connection being set up).
pub(crate) const DEAD_RESERVED_MS: i64 = 60_000 + 10_000;

/// What `s` may still have in the platform's count at `now` (see the module docs); 0 once it can have nothing.
pub(crate) fn reserved(s: &Slice, now: i64) -> u32 {
    let held = s.share.max(s.footprint);
    if now < s.lease_until {
        return held;
    }
    if now >= s.lease_until + DEAD_RESERVED_MS {
        return 0;
    }
    let burst = s.share.div_ceil(60).clamp(1, 10);
    let unreported_ms = (s.lease_until - s.reported_at).max(0) as u64;
    let paced = (u64::from(s.share) * unreported_ms).div_ceil(60_000);
    let since_report = u32::try_from(paced).unwrap_or(u32::MAX).saturating_add(burst);
    held.min(s.footprint.saturating_add(since_report))
}

/// The slice of `limit` that `me` (whose current row, if any, is among `rows`) may hold from `now`. `rows` are every
/// replica's rows for this credential.
pub(crate) fn allot(limit: u32, me: &str, rows: &[Slice], now: i64) -> u32 {
    let mut live: Vec<&str> = rows.iter().filter(|s| s.lease_until > now && s.owner != me).map(|s| &*s.owner).collect();
    live.push(me);
    live.sort_unstable();
    live.dedup();
    let n = live.len() as u32;
    let rank = live.iter().position(|o| *o == me).unwrap_or(0) as u32;
    let fair = limit / n + u32::from(rank < limit % n);
    let current = rows.iter().find(|s| s.owner == me).map_or(0, |s| s.share).min(limit);
    if current >= fair {
        return fair;
    }
    let others: u32 = rows.iter().filter(|s| s.owner != me).map(|s| reserved(s, now)).sum();
    // Growing is bounded by what the others' reservations leave. (My own footprint, were it above the new slice,
    // was reserved for me when the others took theirs.)
    fair.min(limit.saturating_sub(others)).max(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(owner: &str, share: u32, footprint: u32, lease_until: i64) -> Slice {
        Slice { owner: owner.into(), share, footprint, lease_until, reported_at: lease_until - 5_000 }
    }

    #[test]
    fn live_replicas_split_the_limit_evenly_and_the_remainder_goes_to_the_first() {
        let mut rows = vec![row("a", 151, 0, 10_000), row("b", 150, 0, 10_000)];
        assert_eq!(allot(301, "a", &rows, 1_000), 151);
        assert_eq!(allot(301, "c", &rows, 1_000), 0, "a and b hold the whole limit");
        rows.push(row("c", 0, 0, 10_000));
        assert_eq!(allot(301, "a", &rows, 1_000), 101);
        assert_eq!(allot(301, "b", &rows, 1_000), 100);
        rows[0].share = 101;
        rows[1].share = 100;
        assert_eq!(allot(301, "c", &rows, 1_000), 100);
    }

    #[test]
    fn a_newcomer_grows_as_the_others_shrink_and_their_requests_leave_the_minute() {
        // Alone, "a" took the whole limit and filled 250 of it.
        let mut rows = vec![row("a", 300, 250, 10_000)];
        assert_eq!(allot(300, "b", &rows, 1_000), 0);
        rows.push(row("b", 0, 0, 10_000));
        // "a" shrinks to its half at once...
        assert_eq!(allot(300, "a", &rows, 1_000), 150);
        rows[0].share = 150;
        // ...but what it sent is still in the platform's minute: "b" may take only what is left beside it.
        assert_eq!(allot(300, "b", &rows, 1_000), 50);
        rows[1].share = 50;
        // As "a"'s requests leave the minute (its next report), "b" reaches its half.
        rows[0].footprint = 120;
        assert_eq!(allot(300, "b", &rows, 2_000), 150);
    }

    #[test]
    fn a_dead_replicas_slice_is_reserved_for_what_it_may_have_sent_and_then_let_go() {
        let dead = Slice { owner: "a".into(), share: 120, footprint: 10, lease_until: 10_000, reported_at: 9_000 };
        // Alive: its whole slice.
        assert_eq!(reserved(&dead, 9_500), 120);
        // Dead: its footprint, a burst (2) and its pace over the second it did not report (2).
        assert_eq!(reserved(&dead, 10_000), 14);
        assert_eq!(reserved(&dead, 10_000 + DEAD_RESERVED_MS - 1), 14);
        assert_eq!(reserved(&dead, 10_000 + DEAD_RESERVED_MS), 0);
        // Never more than the slice, however long it was silent.
        let silent = Slice { reported_at: -1_000_000, ..dead.clone() };
        assert_eq!(reserved(&silent, 10_000), 120);
        let rows = vec![dead, row("b", 100, 0, 20_000)];
        // "b" is the only live replica: its fair slice is the whole limit, less what "a" may still have counted.
        assert_eq!(allot(300, "b", &rows, 10_500), 286);
        assert_eq!(allot(300, "b", &rows, 10_000 + DEAD_RESERVED_MS), 300);
    }

    #[test]
    fn slices_and_reservations_never_add_up_to_more_than_the_limit() {
        // Replicas report in every order, with every footprint up to their slice; the sum of reservations stays
        // within the limit at every step.
        let limit = 300;
        let owners = ["a", "b", "c"];
        let mut rows: Vec<Slice> = Vec::new();
        let mut seed = 7_u64;
        let mut next = |m: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % m
        };
        for step in 0..10_000_i64 {
            let now = step * 100;
            let me = owners[next(3) as usize];
            // A footprint only grows while below the slice, and a replica whose lease ran out spent no more.
            let held = rows.iter().find(|s| s.owner == me).map_or(0, |s| reserved(s, now));
            let footprint = next(u64::from(held) + 1) as u32;
            if next(20) == 0 {
                // This replica dies: its row stays until it is let go.
                continue;
            }
            let share = allot(limit, me, &rows, now);
            rows.retain(|s| s.owner != me && reserved(s, now) > 0);
            rows.push(Slice { owner: me.into(), share, footprint, lease_until: now + 5_000, reported_at: now });
            let total: u32 = rows.iter().map(|s| reserved(s, now)).sum();
            assert!(total <= limit, "step {step}: {total} reserved of {limit}: {rows:?}");
        }
    }
}
