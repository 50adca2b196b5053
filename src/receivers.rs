//! The receiver tokens, cached across warm invocations, and how they are kept fresh without
//! letting a flood of requests or an outage of the secret store become a flood of fetches.
//!
//! I/O through [`SecretSource`]. Three rules, whatever the cache's age or the store's health:
//! - **Single flight.** At most one fetch is in flight; every request that needs one waits on
//!   that same fetch. The fetch runs as its own task, so it completes (and fills the cache)
//!   even when no request waits for it.
//! - **Stamped attempts.** Every fetch is stamped when it starts, whatever its outcome: after
//!   one, no other starts for `min_interval` (`QUAYHOOK_SECRETS_MISS_INTERVAL`). A failing or
//!   hanging store therefore sees at most one attempt per interval, and during that interval
//!   requests get the last answer (the stale cache, or the last error when there is none).
//! - **Stale while revalidate.** Once the cache is older than its TTL, a token it knows is
//!   answered at once from it, and the refresh starts beside the request. Only a token the
//!   cache does not know waits for the refresh (a receiver added at run time), and then only
//!   when an attempt is allowed.
//!
//! The worker asks a fourth question, [`ReceiverCache::presence`]: does a queued message's
//! receiver still exist? A receiver the cache knows does; one it does not know is looked up
//! with a fetch when the rules above allow one, and is gone only when that fetch does not
//! list it. The worker is never told "gone" from a cache that may predate the receiver.
//!
//! In Lambda, a refresh still in flight when the invocation returns is frozen with the
//! environment and resumes (or times out and is stamped as failed) on the next invocation.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::time::Instant;

use kargo_match::token::{Match, ReceiverId, TokenSet};

use crate::cause::{Cause, Chain};
use crate::secrets::{Receivers, SecretSource, SecretsError};

/// Which Warehouses a receiver may refresh: one project's namespace, or all (cluster-level).
pub type Scope = Option<String>;

/// The receivers known at one point in time.
#[derive(Debug)]
pub struct Known {
    /// Digests of every accepted secret.
    pub tokens: TokenSet,
    /// The distinct scopes of the receivers, in the order first seen.
    pub scopes: Vec<Scope>,
    /// Every receiver's identity.
    pub receivers: HashSet<ReceiverId>,
    /// When the fetch that produced this finished.
    pub fetched: Instant,
}

/// Whether a receiver exists, as far as the cache's rules allow finding out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Presence {
    /// Its secret is among the receiver secrets.
    Present,
    /// A fetch that ran for this question does not list it: the receiver was removed.
    Gone,
    /// The cache does not know it and could not ask now (a fetch failed, or the last one
    /// started less than `QUAYHOOK_SECRETS_MISS_INTERVAL` ago): ask again later.
    Unconfirmed,
}

type Fetch = Shared<BoxFuture<'static, Result<Arc<Known>, SecretsError>>>;

#[derive(Default)]
struct Slot {
    /// The last successful fetch.
    known: Option<Arc<Known>>,
    /// When the last fetch started, whatever became of it.
    attempted: Option<Instant>,
    /// The last fetch's error, while no fetch has succeeded since.
    failed: Option<SecretsError>,
    /// The fetch in flight, shared by everyone who waits for it.
    in_flight: Option<Fetch>,
}

/// The receiver cache: see the module documentation for its rules.
pub struct ReceiverCache<S> {
    source: Arc<S>,
    ttl: Duration,
    min_interval: Duration,
    slot: Arc<Mutex<Slot>>,
}

fn lock(slot: &Mutex<Slot>) -> std::sync::MutexGuard<'_, Slot> {
    // Every write to the slot is a few assignments that cannot panic halfway.
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<S: SecretSource> ReceiverCache<S> {
    /// An empty cache over `source`: entries are trusted for `ttl`, and fetches start at most
    /// once per `min_interval`.
    pub fn new(source: Arc<S>, ttl: Duration, min_interval: Duration) -> Self {
        Self {
            source,
            ttl,
            min_interval,
            slot: Arc::new(Mutex::new(Slot::default())),
        }
    }

    /// Finds the receiver a presented token belongs to.
    ///
    /// `Ok(None)` for a token no receiver has, as far as the rules above allow finding out.
    ///
    /// # Errors
    /// [`SecretsError`] when no fetch has ever succeeded and the last one failed.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Match>, SecretsError> {
        let (known, may_fetch) = {
            let slot = lock(&self.slot);
            (slot.known.clone(), self.may_fetch(&slot))
        };
        match known {
            Some(known) => {
                let fresh = known.fetched.elapsed() < self.ttl;
                if let Some(m) = known.tokens.verify(token) {
                    if !fresh && may_fetch {
                        // Revalidate beside the request; its answer does not wait.
                        drop(self.fetch());
                    }
                    return Ok(Some(m));
                }
                // A token the cache does not know: a receiver added since, or a stranger.
                if !may_fetch && self.in_flight().is_none() {
                    return Ok(None);
                }
                tracing::debug!("unknown token: re-reading receiver secrets");
                match self.fetch().await {
                    Ok(latest) => Ok(latest.tokens.verify(token)),
                    // The cache still answers for the receivers it knows.
                    Err(_) => Ok(None),
                }
            }
            None if may_fetch || self.in_flight().is_some() => {
                Ok(self.fetch().await?.tokens.verify(token))
            }
            None => Err(lock(&self.slot)
                .failed
                .clone()
                .unwrap_or_else(|| SecretsError::Unavailable(Cause::new("not fetched yet")))),
        }
    }

    /// Whether the receiver `id` exists (see the module documentation).
    ///
    /// A stale cache that knows it answers at once and revalidates beside the caller, as
    /// [`ReceiverCache::authenticate`] does.
    pub async fn presence(&self, id: &ReceiverId) -> Presence {
        let (known, may_fetch) = {
            let slot = lock(&self.slot);
            (slot.known.clone(), self.may_fetch(&slot))
        };
        if let Some(known) = known
            && known.receivers.contains(id)
        {
            if known.fetched.elapsed() >= self.ttl && may_fetch {
                drop(self.fetch());
            }
            return Presence::Present;
        }
        if !may_fetch && self.in_flight().is_none() {
            return Presence::Unconfirmed;
        }
        match self.fetch().await {
            Ok(latest) if latest.receivers.contains(id) => Presence::Present,
            Ok(_) => Presence::Gone,
            Err(_) => Presence::Unconfirmed,
        }
    }

    /// Fetches now (joining a fetch in flight) regardless of the interval; for the init
    /// prefetch and `quayhook check`.
    ///
    /// # Errors
    /// The fetch's [`SecretsError`].
    pub async fn refresh(&self) -> Result<Arc<Known>, SecretsError> {
        self.fetch().await
    }

    /// How long ago the cached receivers were fetched, if ever.
    pub fn age(&self) -> Option<Duration> {
        lock(&self.slot).known.as_ref().map(|k| k.fetched.elapsed())
    }

    /// Whether the rules allow a new fetch now: the cache is missing or expired, or the
    /// caller is after an unknown token, and no fetch started within `min_interval`.
    fn may_fetch(&self, slot: &Slot) -> bool {
        slot.attempted
            .is_none_or(|at| at.elapsed() >= self.min_interval)
    }

    fn in_flight(&self) -> Option<Fetch> {
        lock(&self.slot).in_flight.clone()
    }

    /// The fetch in flight, or a new one (stamped now) when there is none.
    fn fetch(&self) -> Fetch {
        let mut slot = lock(&self.slot);
        if let Some(fetch) = &slot.in_flight {
            return fetch.clone();
        }
        slot.attempted = Some(Instant::now());
        let source = self.source.clone();
        let shared_slot = self.slot.clone();
        let task = tokio::spawn(async move {
            let result = load(&*source).await;
            let mut slot = lock(&shared_slot);
            slot.in_flight = None;
            match &result {
                Ok(known) => {
                    slot.known = Some(known.clone());
                    slot.failed = None;
                }
                Err(e) => {
                    tracing::warn!(cause = %Chain(e), "receiver secrets unavailable");
                    slot.failed = Some(e.clone());
                }
            }
            result
        });
        let fetch = async move {
            task.await.unwrap_or_else(|e| {
                Err(SecretsError::Unavailable(Cause::new(format!(
                    "receiver fetch task ended: {e}"
                ))))
            })
        }
        .boxed()
        .shared();
        slot.in_flight = Some(fetch.clone());
        fetch
    }
}

/// One fetch: every receiver secret, turned into token digests and scopes.
async fn load<S: SecretSource>(source: &S) -> Result<Arc<Known>, SecretsError> {
    let Receivers {
        receivers,
        problems,
    } = source.receivers().await?;
    for problem in &problems {
        tracing::warn!(cause = %Chain(problem), "receiver secret skipped");
    }
    let mut tokens = TokenSet::new();
    let mut scopes: Vec<Scope> = Vec::new();
    let mut ids = HashSet::new();
    for r in &receivers {
        let id = ReceiverId {
            project: r.project.clone(),
            receiver: r.receiver.clone(),
        };
        tokens.insert(id.clone(), &r.secret, false);
        if let Some(previous) = &r.previous_secret {
            tokens.insert(id.clone(), previous, true);
        }
        ids.insert(id);
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
    Ok(Arc::new(Known {
        tokens,
        scopes,
        receivers: ids,
        fetched: Instant::now(),
    }))
}
