//! What lives across warm invocations: the receiver tokens, the cluster client and the
//! per-scope Warehouse indexes, each with its fetch time.
//!
//! I/O, through the [`SecretSource`] and [`Connector`] traits. Caches sit behind std locks
//! holding an `Arc`: lock, clone the `Arc`, unlock, then await; a rebuild happens off-lock and
//! is swapped in (a std lock fits because nothing awaits while holding it). The one async
//! lock serializes kubeconfig re-reads after a 401.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::cause::Chain;
use crate::cluster::{ClusterError, Connector, WarehouseStore};
use crate::config::Config;
use kargo_match::index::Index;
use crate::retry::{Budget, retrying};
use crate::secrets::{Receivers, SecretSource, SecretsError};
use kargo_match::token::{Match, ReceiverId, TokenSet};
use kargo_match::urls::RepoUrl;
use kargo_match::warehouse::WarehouseKey;

/// Which Warehouses a receiver may refresh: one project's namespace, or all (cluster-level).
pub type Scope = Option<String>;

/// Receivers known at one point in time.
struct ReceiverCache {
    tokens: TokenSet,
    scopes: Vec<Scope>,
    fetched: Instant,
}

struct CachedIndex {
    index: Arc<Index>,
    fetched: Instant,
}

/// Shared state of the receiver; built once per cold start and borrowed by every request.
pub struct State<S: SecretSource, C: Connector> {
    /// The parsed configuration.
    pub config: Config,
    secrets: S,
    connector: C,
    receivers: RwLock<Option<Arc<ReceiverCache>>>,
    /// When an unknown token last caused a re-fetch.
    last_miss_fetch: Mutex<Option<Instant>>,
    store: RwLock<Option<Arc<C::Store>>>,
    /// Serializes reconnects, so concurrent 401s re-read the kubeconfig once.
    reconnecting: tokio::sync::Mutex<()>,
    indexes: Mutex<HashMap<Scope, CachedIndex>>,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data half-written (every
    // write is a single assignment), so a poisoned lock is safe to keep using.
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<S: SecretSource, C: Connector> State<S, C> {
    /// Builds empty state; nothing is fetched until [`State::prefetch`] or the first request.
    pub fn new(config: Config, secrets: S, connector: C) -> Self {
        Self {
            config,
            secrets,
            connector,
            receivers: RwLock::new(None),
            last_miss_fetch: Mutex::new(None),
            store: RwLock::new(None),
            reconnecting: tokio::sync::Mutex::new(()),
            indexes: Mutex::new(HashMap::new()),
        }
    }

    /// The secret source (for commands that inspect it).
    pub fn secrets(&self) -> &S {
        &self.secrets
    }

    /// Fetches receivers, connects and lists the Warehouses of every receiver's scope, so the
    /// first request pays only for its patches. Failures are logged and left to the first
    /// request to retry.
    pub async fn prefetch(&self) {
        let started = std::time::Instant::now();
        let scopes = match self.fetch_receivers().await {
            Ok(cache) => cache.scopes.clone(),
            Err(e) => {
                tracing::warn!(cause = %Chain(&e), "prefetch: receiver secrets unavailable");
                return;
            }
        };
        let budget = Budget::new(self.config.request_timeout);
        let lists = scopes
            .iter()
            .map(|scope| self.index(scope.as_deref(), &[], &budget));
        for (scope, result) in scopes.iter().zip(futures::future::join_all(lists).await) {
            if let Err(e) = result {
                tracing::warn!(scope = scope.as_deref().unwrap_or("*"), cause = %Chain(&e), "prefetch: cannot list warehouses");
            }
        }
        tracing::info!(
            scopes = scopes.len(),
            duration_ms = started.elapsed().as_millis() as u64,
            "prefetch done"
        );
    }

    async fn fetch_receivers(&self) -> Result<Arc<ReceiverCache>, SecretsError> {
        let Receivers {
            receivers,
            problems,
        } = self.secrets.receivers().await?;
        for problem in &problems {
            tracing::warn!(cause = %Chain(problem), "receiver secret skipped");
        }
        let mut tokens = TokenSet::new();
        let mut scopes: Vec<Scope> = Vec::new();
        for r in &receivers {
            let id = ReceiverId {
                project: r.project.clone(),
                receiver: r.receiver.clone(),
            };
            tokens.insert(id.clone(), &r.secret, false);
            if let Some(previous) = &r.previous_secret {
                tokens.insert(id, previous, true);
            }
            let scope = (!r.project.is_empty()).then(|| r.project.clone());
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        tracing::info!(
            receivers = receivers.len(),
            skipped = problems.len(),
            "receiver secrets loaded"
        );
        let cache = Arc::new(ReceiverCache {
            tokens,
            scopes,
            fetched: Instant::now(),
        });
        *write(&self.receivers) = Some(cache.clone());
        Ok(cache)
    }

    /// Finds the receiver a presented token belongs to.
    ///
    /// Uses the cached receivers while fresh. An expired cache is re-fetched; if that fails, the
    /// stale cache keeps serving (with a warning) rather than turning a Secrets Manager outage
    /// into an outage of every receiver. An unknown token re-fetches at most once per
    /// `secrets_miss_interval`, so a receiver added at run time works without a redeploy and a
    /// flood of bad tokens cannot hammer Secrets Manager.
    ///
    /// # Errors
    /// [`SecretsError`] when there is no cache and the store cannot be read.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Match>, SecretsError> {
        let cached = read(&self.receivers).clone();
        let cache = match cached {
            Some(c) if c.fetched.elapsed() < self.config.secrets_ttl => c,
            stale => match self.fetch_receivers().await {
                Ok(c) => c,
                Err(e) => match stale {
                    Some(c) => {
                        tracing::warn!(cause = %Chain(&e), "receiver secrets unavailable; using the expired cache");
                        c
                    }
                    None => return Err(e),
                },
            },
        };
        if let Some(m) = cache.tokens.verify(token) {
            return Ok(Some(m));
        }
        if cache.fetched.elapsed() < self.config.secrets_miss_interval || !self.claim_miss_fetch() {
            return Ok(None);
        }
        tracing::debug!("unknown token: re-reading receiver secrets");
        Ok(self.fetch_receivers().await?.tokens.verify(token))
    }

    /// Takes the one re-fetch an interval allows; false when one happened too recently.
    fn claim_miss_fetch(&self) -> bool {
        let mut last = lock(&self.last_miss_fetch);
        let now = Instant::now();
        match *last {
            Some(t) if now.duration_since(t) < self.config.secrets_miss_interval => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }

    /// The cluster store, connecting (reading the kubeconfig secret) on first use.
    ///
    /// # Errors
    /// [`StateError`] when the kubeconfig cannot be read or used.
    pub async fn store(&self) -> Result<Arc<C::Store>, StateError> {
        if let Some(store) = read(&self.store).clone() {
            return Ok(store);
        }
        self.reconnect().await
    }

    /// Re-reads the kubeconfig secret and builds a new client (after a 401: rotated token).
    ///
    /// # Errors
    /// [`StateError`] when the kubeconfig cannot be read or used.
    pub async fn reconnect(&self) -> Result<Arc<C::Store>, StateError> {
        let kubeconfig = self
            .secrets
            .kubeconfig()
            .await
            .map_err(StateError::Secrets)?;
        let store = Arc::new(
            self.connector
                .connect(&kubeconfig)
                .await
                .map_err(StateError::Cluster)?,
        );
        *write(&self.store) = Some(store.clone());
        tracing::info!("cluster client built from the kubeconfig secret");
        Ok(store)
    }

    /// Runs a cluster call with retries; on a 401, re-reads the kubeconfig once and tries again.
    ///
    /// Concurrent calls that all see the 401 share one re-read: the first rebuilds the client,
    /// the others find the new one when they get the reconnect lock.
    ///
    /// # Errors
    /// [`StateError`]: the call's last error or the reconnect's.
    pub async fn with_store<T, F, Fut>(&self, budget: &Budget, op: F) -> Result<T, StateError>
    where
        F: Fn(Arc<C::Store>) -> Fut,
        Fut: Future<Output = Result<T, ClusterError>>,
    {
        let store = self.store().await?;
        let attempts = self.config.max_attempts;
        match retrying(budget, attempts, || op(store.clone())).await {
            Err(ClusterError::Unauthorized) => {
                let store = {
                    // Held across the await on purpose: this is the single-flight of reconnects.
                    let _guard = self.reconnecting.lock().await;
                    let current = read(&self.store).clone();
                    match current {
                        Some(current) if !Arc::ptr_eq(&current, &store) => current,
                        _ => {
                            tracing::warn!(
                                "cluster rejected the token; re-reading the kubeconfig secret"
                            );
                            self.reconnect().await?
                        }
                    }
                };
                retrying(budget, attempts, || op(store.clone()))
                    .await
                    .map_err(StateError::Cluster)
            }
            other => other.map_err(StateError::Cluster),
        }
    }

    /// The Warehouse index of `namespace` (all namespaces when `None`).
    ///
    /// Served from cache while younger than `index_ttl`. When no cached Warehouse subscribes
    /// to any of `urls`, the scope is listed again if the cache is older than
    /// `index_miss_interval`, so a Warehouse created a moment ago is found, while a flood of
    /// pushes for unsubscribed repositories costs at most one list per interval.
    ///
    /// # Errors
    /// [`StateError`] when the list fails and there is no usable cache.
    pub async fn index(
        &self,
        namespace: Option<&str>,
        urls: &[RepoUrl],
        budget: &Budget,
    ) -> Result<Arc<Index>, StateError> {
        let scope: Scope = namespace.map(str::to_owned);
        let cached = lock(&self.indexes)
            .get(&scope)
            .map(|c| (c.index.clone(), c.fetched.elapsed()));
        if let Some((index, age)) = cached {
            let fresh = age < self.config.index_ttl;
            let answered = urls.is_empty() || index.has_subscribers(namespace, urls);
            if fresh && (answered || age < self.config.index_miss_interval) {
                return Ok(index);
            }
        }
        let page = self.config.list_page_size;
        let started = std::time::Instant::now();
        let listed = self
            .with_store(
                budget,
                |store| async move { store.list(namespace, page).await },
            )
            .await?;
        let index = Arc::new(Index::from_listed(listed));
        for u in index.unreadable() {
            tracing::warn!(warehouse = %u.name, cause = %u.error, "warehouse not indexed");
        }
        tracing::info!(
            scope = namespace.unwrap_or("*"),
            warehouses = index.len(),
            urls = index.url_count(),
            duration_ms = started.elapsed().as_millis() as u64,
            "warehouses listed"
        );
        lock(&self.indexes).insert(
            scope,
            CachedIndex {
                index: index.clone(),
                fetched: Instant::now(),
            },
        );
        Ok(index)
    }

    /// Drops a Warehouse the API server says no longer exists from the cached index.
    pub fn forget(&self, namespace: Option<&str>, key: &WarehouseKey) {
        let mut indexes = lock(&self.indexes);
        if let Some(cached) = indexes.get_mut(&namespace.map(str::to_owned)) {
            Arc::make_mut(&mut cached.index).remove(key);
        }
    }

    /// How long ago the receivers were fetched, if ever (for `quayhook check` and tests).
    pub fn receivers_age(&self) -> Option<Duration> {
        read(&self.receivers).as_ref().map(|c| c.fetched.elapsed())
    }
}

/// A failure of the shared state: secrets or cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Returned when a secret could not be read.
    #[error(transparent)]
    Secrets(SecretsError),
    /// Returned when the cluster could not be used.
    #[error(transparent)]
    Cluster(ClusterError),
}
