//! Access tokens, cached per credential, refreshed early and once.
//!
//! A [`TokenCache`] holds one credential's current token. [`TokenCache::get`] returns it while it is fresh and
//! otherwise runs the supplied fetch. The cache is an async mutex held across the fetch, so when many requests find
//! the token stale at once, exactly one of them fetches and the others wait and reuse the result (single flight).
//!
//! Tokens are refreshed *early*: at 90% of `expires_in`, or 60 s before expiry when that is sooner, so no request
//! goes out with a token about to lapse. A 401 from the API calls [`TokenCache::invalidate`] with the token that
//! failed; only if that token is still the cached one is it dropped, so N concurrent 401s cause one refresh.
//!
//! Times are `tokio::time::Instant` (real time; pausable in tests).

use crate::error::PlatformError;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;
use wrapup_core::Secret;

/// What a token endpoint granted.
#[derive(Debug, Clone)]
pub struct Grant {
    pub access_token: Secret,
    pub expires_in: Duration,
}

#[derive(Debug, Clone)]
struct Cached {
    token: Secret,
    refresh_at: Instant,
}

/// When to refresh a token that lives `expires_in`: the earlier of 90% of its life and 60 s before expiry.
pub fn refresh_after(expires_in: Duration) -> Duration {
    let ninety = expires_in.mul_f64(0.9);
    match expires_in.checked_sub(Duration::from_secs(60)) {
        Some(before) if before < ninety => before,
        _ => ninety,
    }
}

/// One credential's token. See the module docs.
#[derive(Debug, Default)]
pub struct TokenCache {
    slot: tokio::sync::Mutex<Option<Cached>>,
}

impl TokenCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current token, fetching a new one (once, for all concurrent callers) when there is none or it is due
    /// for refresh.
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<Secret, PlatformError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Grant, PlatformError>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some(c) = slot.as_ref() {
            if Instant::now() < c.refresh_at {
                return Ok(c.token.clone());
            }
        }
        let grant = fetch().await?;
        let cached = Cached { token: grant.access_token, refresh_at: Instant::now() + refresh_after(grant.expires_in) };
        let token = cached.token.clone();
        *slot = Some(cached);
        Ok(token)
    }

    /// Drops `failed` if it is still the cached token (the API refused it).
    pub async fn invalidate(&self, failed: &Secret) {
        let mut slot = self.slot.lock().await;
        if slot.as_ref().is_some_and(|c| &c.token == failed) {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn tokens_are_refreshed_early() {
        assert_eq!(refresh_after(Duration::from_secs(86_399)), Duration::from_secs(86_399).mul_f64(0.9));
        assert_eq!(refresh_after(Duration::from_secs(300)), Duration::from_secs(240));
        assert_eq!(refresh_after(Duration::from_secs(10)), Duration::from_secs(9));
    }

    async fn fetch(counter: &AtomicU32, life: u64) -> Result<Grant, PlatformError> {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(Grant { access_token: Secret::new(format!("t{n}")), expires_in: Duration::from_secs(life) })
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_fetch() {
        let cache = Arc::new(TokenCache::new());
        let count = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (cache, count) = (cache.clone(), count.clone());
            tasks.push(tokio::spawn(async move { cache.get(|| fetch(&count, 3600)).await.unwrap() }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().expose(), "t1");
        }
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_is_refreshed_before_it_expires() {
        let cache = TokenCache::new();
        let count = AtomicU32::new(0);
        assert_eq!(cache.get(|| fetch(&count, 300)).await.unwrap().expose(), "t1");
        tokio::time::advance(Duration::from_secs(239)).await;
        assert_eq!(cache.get(|| fetch(&count, 300)).await.unwrap().expose(), "t1");
        tokio::time::advance(Duration::from_secs(2)).await; // 60 s before expiry: refresh
        assert_eq!(cache.get(|| fetch(&count, 300)).await.unwrap().expose(), "t2");
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_failed_token_is_invalidated() {
        let cache = TokenCache::new();
        let count = AtomicU32::new(0);
        let t1 = cache.get(|| fetch(&count, 3600)).await.unwrap();
        cache.invalidate(&t1).await;
        let t2 = cache.get(|| fetch(&count, 3600)).await.unwrap();
        assert_eq!(t2.expose(), "t2");
        // A late 401 for t1 must not throw away t2.
        cache.invalidate(&t1).await;
        assert_eq!(cache.get(|| fetch(&count, 3600)).await.unwrap().expose(), "t2");
    }
}
