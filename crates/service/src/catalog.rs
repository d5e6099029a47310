//! The per-connection catalog cache.
//!
//! Rules name codes; the worker needs ids and per-queue assignments. The cache holds the last catalog fetched from
//! the platform (also persisted in the store, so a restart starts warm), refreshes it when it is older than its TTL,
//! and on demand when the platform rejects a code or a rule names a code the cached copy does not know. Refreshes
//! are single-flight (one fetch however many workers ask) and rate-limited by `min_refresh_interval`, so a bad rule
//! cannot turn every leg into a catalog fetch.

use crate::platform::SharedPlatform;
use jiff::{SignedDuration, Timestamp};
use std::sync::Arc;
use tokio::sync::Mutex;
use wrapup_connectors::error::PlatformError;
use wrapup_core::catalog::Catalog;
use wrapup_core::clock::SharedClock;
use wrapup_store::Store;

pub struct CatalogCache {
    platform: SharedPlatform,
    store: Arc<dyn Store>,
    clock: SharedClock,
    ttl: SignedDuration,
    min_refresh_interval: SignedDuration,
    state: Mutex<Option<(Arc<Catalog>, Timestamp)>>,
}

impl CatalogCache {
    pub fn new(platform: SharedPlatform, store: Arc<dyn Store>, clock: SharedClock, ttl: SignedDuration) -> Self {
        Self {
            platform,
            store,
            clock,
            ttl,
            min_refresh_interval: SignedDuration::from_secs(5),
            state: Mutex::new(None),
        }
    }

    /// The cached catalog, fetched if missing or older than the TTL. A failed refresh of a stale catalog keeps
    /// serving the stale copy (a platform outage must not stop coding with known ids).
    pub async fn get(&self) -> Result<Arc<Catalog>, PlatformError> {
        let mut state = self.state.lock().await;
        let now = self.clock.now();
        if state.is_none() {
            if let Ok(Some((catalog, at))) = self.store.get_catalog(self.platform.connection()).await {
                *state = Some((Arc::new(catalog), at));
            }
        }
        match &*state {
            Some((catalog, at)) if now.duration_since(*at) < self.ttl => Ok(catalog.clone()),
            Some((catalog, _)) => match self.fetch(now).await {
                Ok(fresh) => {
                    *state = Some((fresh.clone(), now));
                    Ok(fresh)
                }
                Err(e) => {
                    tracing::warn!(connection = self.platform.connection(), error = %e, "catalog refresh failed; serving the cached catalog");
                    Ok(catalog.clone())
                }
            },
            None => {
                let fresh = self.fetch(now).await?;
                *state = Some((fresh.clone(), now));
                Ok(fresh)
            }
        }
    }

    /// Refetches unless the cached copy is younger than the minimum refresh interval. Returns the catalog to use.
    pub async fn refresh(&self) -> Result<Arc<Catalog>, PlatformError> {
        let mut state = self.state.lock().await;
        let now = self.clock.now();
        if let Some((catalog, at)) = &*state {
            if now.duration_since(*at) < self.min_refresh_interval {
                return Ok(catalog.clone());
            }
        }
        let fresh = self.fetch(now).await?;
        *state = Some((fresh.clone(), now));
        Ok(fresh)
    }

    async fn fetch(&self, now: Timestamp) -> Result<Arc<Catalog>, PlatformError> {
        let catalog = self.platform.fetch_catalog().await?;
        if let Err(e) = self.store.put_catalog(self.platform.connection(), &catalog, now).await {
            tracing::warn!(connection = self.platform.connection(), error = %e, "could not persist the catalog cache");
        }
        tracing::info!(
            connection = self.platform.connection(),
            codes = catalog.codes.len(),
            queues = catalog.queues.len(),
            "Catalog loaded."
        );
        Ok(Arc::new(catalog))
    }
}
