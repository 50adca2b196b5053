//! In-memory stand-ins for quayhook's adapter traits: [`FakeSecrets`] implements
//! [`SecretSource`](quayhook::secrets::SecretSource), [`FakeCluster`] implements
//! [`Connector`](quayhook::cluster::Connector) and builds [`FakeStore`]s
//! ([`WarehouseStore`](quayhook::cluster::WarehouseStore)), and [`FakeQueue`] implements
//! [`Queue`](quayhook::queue::Queue) (with [`assert_clean_body`], the check that no queued
//! message carries a secret).
//!
//! Test support, no I/O. Each fake is a cheap handle (`Clone` shares its state), so a test
//! keeps one copy to steer and inspect while `State` owns another: receivers, the kubeconfig
//! and the Warehouses can change at run time, every call is counted (patches with their key
//! and body), and every call first takes the next [`Step`] of its [`Script`], which may delay
//! it with a tokio sleep (paused time makes that instant) or make it fail.
//!
//! ```
//! use quayhook_testkit::fakes::{FakeCluster, FakeSecrets, Step, config};
//! use quayhook_testkit::fixtures::{QUAY_REPO, wh};
//! use serde_json::json;
//!
//! let secrets = FakeSecrets::new();
//! let token = secrets.add("kargo-demo", "quay", "s3cret", None);
//! let cluster = FakeCluster::new().with(wh("kargo-demo", "app").image(QUAY_REPO, json!({})));
//! cluster.on_patch().then(Step::fail(quayhook::cluster::ClusterError::NotFound));
//! let state = quayhook::state::State::new(config(&[]), secrets.clone(), cluster.clone());
//! # let _ = (token, state);
//! ```

mod cluster;
mod queue;
mod secrets;

pub use cluster::{FakeCluster, FakeStore};
pub use queue::{FakeQueue, assert_clean_body};
pub use secrets::{FakeSecrets, KUBECONFIG};

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use quayhook::cause::Cause;
use quayhook::config::Config;
use quayhook::secrets::SecretsError;
use quayhook::state::State;

/// How long [`Step::hang`] waits: longer than any request budget.
pub const HANG: Duration = Duration::from_secs(24 * 3600);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding a lock leaves consistent data (single assignments).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A configuration for fakes: `QUAYHOOK_RECEIVER_SECRET_IDS` and
/// `QUAYHOOK_KUBECONFIG_SECRET_ID` set to placeholder ids (the fakes ignore them), then
/// `vars` on top (`[("QUAYHOOK_INDEX_TTL", "60s")]`).
///
/// # Panics
/// When `vars` do not parse (a test bug).
pub fn config(vars: &[(&str, &str)]) -> Config {
    let mut map = std::collections::HashMap::from([
        (
            "QUAYHOOK_RECEIVER_SECRET_IDS".to_owned(),
            "fake/receiver".to_owned(),
        ),
        (
            "QUAYHOOK_KUBECONFIG_SECRET_ID".to_owned(),
            "fake/kubeconfig".to_owned(),
        ),
    ]);
    map.extend(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    Config::from_lookup(|k| map.get(k).cloned()).expect("test configuration")
}

/// A `State` over the fakes (handles sharing their state with the caller's), configured by
/// [`config`]`(vars)`.
///
/// # Panics
/// When `vars` do not parse (a test bug).
pub fn state(
    vars: &[(&str, &str)],
    secrets: &FakeSecrets,
    cluster: &FakeCluster,
) -> State<FakeSecrets, FakeCluster> {
    State::new(config(vars), secrets.clone(), cluster.clone())
}

/// [`SecretsError::Unavailable`], as when Secrets Manager cannot be reached.
pub fn unavailable() -> SecretsError {
    SecretsError::Unavailable(Cause::new("injected: the secret store is down"))
}

/// What one call of a fake does before (or instead of) its normal answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step<E> {
    /// Slept (tokio time) before answering.
    pub delay: Duration,
    /// Answered instead of the normal result, when set.
    pub error: Option<E>,
}

impl<E> Step<E> {
    /// Answers normally, at once.
    pub fn pass() -> Self {
        Step {
            delay: Duration::ZERO,
            error: None,
        }
    }

    /// Fails with `error`, at once.
    pub fn fail(error: E) -> Self {
        Step {
            delay: Duration::ZERO,
            error: Some(error),
        }
    }

    /// Answers normally after `delay`.
    pub fn delay(delay: Duration) -> Self {
        Step { delay, error: None }
    }

    /// Answers normally after [`HANG`]: a caller with a time budget sees a hang, and a test
    /// without one still ends (paused time skips the wait) instead of deadlocking.
    pub fn hang() -> Self {
        Step::delay(HANG)
    }

    /// The same step, answered only after `delay`.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    async fn run(self) -> Result<(), E> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.error.map_or(Ok(()), Err)
    }
}

/// What the successive calls of one fake operation do: queued steps first, one per call, then
/// the standing step (initially [`Step::pass`]) for every call after.
#[derive(Debug)]
pub struct Script<E> {
    queue: Mutex<VecDeque<Step<E>>>,
    standing: Mutex<Step<E>>,
}

impl<E> Default for Script<E> {
    fn default() -> Self {
        Script {
            queue: Mutex::new(VecDeque::new()),
            standing: Mutex::new(Step::pass()),
        }
    }
}

impl<E: Clone> Script<E> {
    /// Queues `step` for one call, after those already queued; chains.
    pub fn then(&self, step: Step<E>) -> &Self {
        lock(&self.queue).push_back(step);
        self
    }

    /// Queues one step per call, in order.
    pub fn then_all(&self, steps: impl IntoIterator<Item = Step<E>>) -> &Self {
        lock(&self.queue).extend(steps);
        self
    }

    /// Sets what every call does once the queue is empty (until changed again).
    pub fn always(&self, step: Step<E>) {
        *lock(&self.standing) = step;
    }

    /// Empties the queue and makes every call pass again.
    pub fn reset(&self) {
        lock(&self.queue).clear();
        *lock(&self.standing) = Step::pass();
    }

    fn next(&self) -> Step<E> {
        let queued = lock(&self.queue).pop_front();
        queued.unwrap_or_else(|| lock(&self.standing).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quayhook::cluster::ClusterError;

    #[tokio::test(start_paused = true)]
    async fn scripts_run_queued_steps_then_the_standing_one() {
        let script = Script::<ClusterError>::default();
        script
            .then(Step::fail(ClusterError::NotFound))
            .then(Step::delay(Duration::from_secs(5)));
        script.always(Step::fail(ClusterError::Timeout));
        let start = tokio::time::Instant::now();
        assert_eq!(script.next().run().await, Err(ClusterError::NotFound));
        assert_eq!(script.next().run().await, Ok(()));
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert_eq!(script.next().run().await, Err(ClusterError::Timeout));
        assert_eq!(script.next().run().await, Err(ClusterError::Timeout));
    }
}
