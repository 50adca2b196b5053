//! What lives across warm invocations: the receiver tokens, the cluster client, the
//! per-scope Warehouse indexes, each with its fetch time, and the durable path's queue client.
//!
//! I/O, through the [`SecretSource`] and [`Connector`] traits. Caches sit behind std locks
//! holding an `Arc`: lock, clone the `Arc`, unlock, then await; a rebuild happens off-lock and
//! is swapped in (a std lock fits because nothing awaits while holding it). The one async
//! lock serializes kubeconfig re-reads after a 401.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use kargo_match::index::Index;
use kargo_match::token::{Match, ReceiverId, SecretString};
use kargo_match::urls::RepoUrl;
use kargo_match::warehouse::WarehouseKey;

use crate::cause::Chain;
use crate::cluster::{ClusterError, Connector, TokenExpiry, list_index, token_expiry};
use crate::config::{Config, LambdaHandler};
use crate::metrics::{Source, Unit, emit, gauge};
use crate::queue::{AnyQueue, Queue};
use crate::receivers::{Presence, ReceiverCache};
use crate::retry::{Budget, retrying};
use crate::secrets::{SecretSource, SecretsError};

pub use crate::receivers::Scope;

struct CachedIndex {
    index: Arc<Index>,
    fetched: Instant,
}

/// Shared state of the receiver; built once per cold start and borrowed by every request.
pub struct State<S: SecretSource, C: Connector> {
    /// The parsed configuration.
    pub config: Config,
    secrets: Arc<S>,
    connector: C,
    receivers: ReceiverCache<S>,
    store: RwLock<Option<Arc<C::Store>>>,
    /// When the store's credential ages out ([`SecretSource::kubeconfig_max_age`] after the
    /// connect, e.g. an EKS token): it is rebuilt before use from then on. `None`: only a 401
    /// replaces it.
    store_renew_at: Mutex<Option<Instant>>,
    /// Serializes kubeconfig reads and connects (the first one, and after 401s), so
    /// concurrent requests share one.
    reconnecting: tokio::sync::Mutex<()>,
    indexes: Mutex<HashMap<Scope, CachedIndex>>,
    /// The durable path's queue, when one is configured ([`State::with_queue`]).
    queue: Option<AnyQueue>,
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
        let secrets = Arc::new(secrets);
        let receivers = ReceiverCache::new(
            secrets.clone(),
            config.secrets_ttl,
            config.secrets_miss_interval,
        );
        Self {
            config,
            secrets,
            connector,
            receivers,
            store: RwLock::new(None),
            store_renew_at: Mutex::new(None),
            reconnecting: tokio::sync::Mutex::new(()),
            indexes: Mutex::new(HashMap::new()),
            queue: None,
        }
    }

    /// The same state with a queue for the durable path: deliveries the cluster cannot take
    /// are queued there (see [`crate::handler`]), and the worker backs off its messages
    /// there. Without one, they are answered 5xx as Kargo does.
    pub fn with_queue(mut self, queue: impl Queue) -> Self {
        self.queue = Some(AnyQueue::new(queue));
        self
    }

    /// The durable path's queue, if any.
    pub fn queue(&self) -> Option<&AnyQueue> {
        self.queue.as_ref()
    }

    /// The secret source (for commands that inspect it).
    pub fn secrets(&self) -> &S {
        self.secrets.as_ref()
    }

    /// Fetches receivers, connects and lists the Warehouses of every receiver's scope, so the
    /// first request pays only for its patches. Failures are logged and left to the first
    /// request to retry.
    pub async fn prefetch(&self) {
        let started = std::time::Instant::now();
        let scopes = match self.receivers.refresh().await {
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

    /// Finds the receiver a presented token belongs to: see [`ReceiverCache::authenticate`]
    /// for how the cache stays fresh without letting a flood or an outage turn into fetches.
    ///
    /// # Errors
    /// [`SecretsError`] when there is no cache and the store cannot be read.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Match>, SecretsError> {
        self.receivers.authenticate(token).await
    }

    /// Whether a receiver still exists, for the worker: see [`ReceiverCache::presence`].
    pub async fn receiver_presence(&self, id: &ReceiverId) -> Presence {
        self.receivers.presence(id).await
    }

    /// The cluster store, connecting (reading the kubeconfig secret) on first use.
    ///
    /// # Errors
    /// [`StateError`] when the kubeconfig cannot be read or used.
    pub async fn store(&self) -> Result<Arc<C::Store>, StateError> {
        let aged = || lock(&self.store_renew_at).is_some_and(|at| Instant::now() >= at);
        if let Some(store) = read(&self.store).clone()
            && !aged()
        {
            return Ok(store);
        }
        // Held across the await on purpose: concurrent first requests (or the prefetch of
        // several scopes) share one kubeconfig read and one connect.
        let _guard = self.reconnecting.lock().await;
        let current = read(&self.store).clone();
        match current {
            Some(store) if !aged() => Ok(store),
            // Renewing ahead of time failed: the old credential may have a minute left.
            Some(store) => self.reconnect().await.or_else(|e| {
                tracing::warn!(cause = %Chain(&e), "cannot renew the aging cluster credential; using it once more");
                Ok(store)
            }),
            None => self.reconnect().await,
        }
    }

    /// Re-reads the kubeconfig secret and builds a new client (first use, or after a 401:
    /// rotated token). Callers hold `reconnecting`, so concurrent callers share one read.
    async fn reconnect(&self) -> Result<Arc<C::Store>, StateError> {
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
        let max_age = self.secrets.kubeconfig_max_age();
        *lock(&self.store_renew_at) = max_age.map(|age| Instant::now() + age);
        let token_left_s = self.report_token_lifetime(&kubeconfig);
        tracing::info!(
            renew_in_s = max_age.map(|age| age.as_secs()),
            token_expires_in_s = token_left_s,
            "cluster client built from the kubeconfig"
        );
        Ok(store)
    }

    /// How long the stored token has left, if it says; also written as the
    /// `CredentialSecondsLeft` metric at every kubeconfig read (each cold start and each 401
    /// re-read), so an alarm can warn before an expiring token breaks deliveries.
    fn report_token_lifetime(&self, kubeconfig: &SecretString) -> Option<i64> {
        let TokenExpiry::At(exp) = token_expiry(kubeconfig) else {
            return None;
        };
        let now = SystemTime::now();
        let now_s = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let left = exp.saturating_sub(now_s);
        let source = match self.config.lambda_handler {
            LambdaHandler::Http => Source::Quay,
            LambdaHandler::Worker => Source::Worker,
        };
        let value = left as f64;
        if let Some(record) = gauge(source, "CredentialSecondsLeft", value, Unit::Seconds, now) {
            emit(self.config.metrics, &record);
        }
        if left < 86_400 {
            tracing::warn!(
                token_expires_in_s = left,
                "the cluster token expires within a day: re-issue it (deploy/kubeconfig-secret.sh)"
            );
        }
        Some(left)
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
        let index = self
            .with_store(budget, |store| async move {
                list_index(&*store, namespace, page).await
            })
            .await?;
        let index = Arc::new(index);
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

    /// Drops a Warehouse the API server says no longer exists from the cached indexes that
    /// can hold it: its project's, and the cluster-wide one.
    pub fn forget(&self, key: &WarehouseKey) {
        let mut indexes = lock(&self.indexes);
        for scope in [Some(key.namespace.clone()), None] {
            if let Some(cached) = indexes.get_mut(&scope) {
                Arc::make_mut(&mut cached.index).remove(key);
            }
        }
    }

    /// How long ago the receivers were fetched, if ever (for `quayhook check` and tests).
    pub fn receivers_age(&self) -> Option<Duration> {
        self.receivers.age()
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

impl StateError {
    /// Whether trying again later may succeed, so the work is worth queueing: any failure to
    /// read the kubeconfig secret, and the cluster's transient errors
    /// ([`ClusterError::is_transient`]: 429, 5xx, transport errors, timeouts). A 401 after the
    /// kubeconfig re-read, a 403 or an unusable kubeconfig need an operator.
    pub fn is_transient(&self) -> bool {
        match self {
            StateError::Secrets(_) => true,
            StateError::Cluster(e) => e.is_transient(),
        }
    }
}
