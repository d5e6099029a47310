//! [`Store::share_budget`](crate::Store::share_budget) on PostgreSQL: one transaction per report, serialized per
//! connection by an advisory lock, on the database's clock (the replicas' clocks need not agree).

use crate::budget_slices::{allot, reserved, Slice};
use crate::{CredentialUsage, StoreResult};
use sqlx::{PgPool, Row};
use std::time::Duration;

/// The first key of the advisory locks that serialize reports (the second is the connection's hash).
const LOCK_SPACE: i32 = 0x5752_4150; // "WRAP"

pub(super) async fn share_budget(
    pool: &PgPool,
    connection: &str,
    owner: &str,
    usage: &[CredentialUsage],
    lease: Duration,
) -> StoreResult<Vec<u32>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(LOCK_SPACE)
        .bind(connection)
        .execute(&mut *tx)
        .await?;
    let now: i64 =
        sqlx::query_scalar("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint").fetch_one(&mut *tx).await?;
    let rows = sqlx::query(
        "SELECT credential, owner, share, footprint, lease_until, reported_at FROM budget_slices \
         WHERE connection = $1",
    )
    .bind(connection)
    .fetch_all(&mut *tx)
    .await?;
    let mut by_credential: Vec<Vec<Slice>> = vec![Vec::new(); usage.len()];
    for r in &rows {
        let credential: i32 = r.try_get("credential")?;
        if let Some(slices) = usize::try_from(credential).ok().and_then(|c| by_credential.get_mut(c)) {
            slices.push(Slice {
                owner: r.try_get("owner")?,
                share: u32::try_from(r.try_get::<i32, _>("share")?).unwrap_or(0),
                footprint: u32::try_from(r.try_get::<i32, _>("footprint")?).unwrap_or(0),
                lease_until: r.try_get("lease_until")?,
                reported_at: r.try_get("reported_at")?,
            });
        }
    }
    let lease_until = now + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
    let mut shares = Vec::with_capacity(usage.len());
    for (credential, (u, slices)) in usage.iter().zip(&by_credential).enumerate() {
        let share = allot(u.limit, owner, slices, now);
        sqlx::query(
            "INSERT INTO budget_slices \
             (connection, credential, owner, share, footprint, lease_until, reported_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (connection, credential, owner) DO UPDATE SET share = excluded.share, \
             footprint = excluded.footprint, lease_until = excluded.lease_until, \
             reported_at = excluded.reported_at",
        )
        .bind(connection)
        .bind(credential as i32)
        .bind(owner)
        .bind(share as i32)
        .bind(u.footprint.min(i32::MAX as u32) as i32)
        .bind(lease_until)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // Rows of replicas that can have nothing left in the platform's count.
        for gone in slices.iter().filter(|s| s.owner != owner && reserved(s, now) == 0 && s.lease_until <= now) {
            sqlx::query("DELETE FROM budget_slices WHERE connection = $1 AND credential = $2 AND owner = $3")
                .bind(connection)
                .bind(credential as i32)
                .bind(&gone.owner)
                .execute(&mut *tx)
                .await?;
        }
        shares.push(share);
    }
    tx.commit().await?;
    Ok(shares)
}
