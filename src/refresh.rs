//! The refresh step, shared by a Quay delivery ([`crate::handler`]), an ECR push event
//! ([`crate::ecr`]) and the queue worker ([`crate::worker`]): the plan for a push, one merge
//! patch per selected Warehouse, and what became of each in the answer ([`settle`]).
//!
//! I/O through [`State`]. [`plan`] runs [`Index::plan`] (on the blocking pool when a push
//! would cost many selector evaluations); [`patch_all`] patches concurrently, bounded by
//! `QUAYHOOK_PATCH_CONCURRENCY`, with one refresh value for the whole call (a new value for
//! every call, so a retried or duplicated refresh still changes the annotation). A Warehouse
//! the API server no longer has is dropped from the cached indexes. Per-Warehouse results
//! are logged at debug (refreshed), info (gone) and warn (failed).

use std::sync::Arc;
use std::time::SystemTime;

use futures::StreamExt;

use kargo_match::index::{Index, Plan, Selected};
use kargo_match::urls::RepoUrl;
use kargo_match::warehouse::{WarehouseKey, refresh_patch};

use crate::cause::Chain;
use crate::cluster::{ClusterError, Connector, WarehouseStore};
use crate::outcome::{Outcome, WarehouseOut, clip};
use crate::retry::Budget;
use crate::secrets::SecretSource;
use crate::state::{State, StateError};

/// Selections evaluated inline; a plan with more (tags × subscribers) runs on the blocking
/// pool, so a push with many tags never stalls the deliveries sharing the async workers.
const INLINE_EVALUATIONS: usize = 4096;

/// The index's plan for a push of `urls` and `tags` in `namespace` (all namespaces when
/// `None`), off the async workers when it is large. The inputs come back with the plan.
pub async fn plan(
    index: Arc<Index>,
    namespace: Option<String>,
    urls: Vec<RepoUrl>,
    tags: Vec<String>,
) -> (Plan, Vec<RepoUrl>, Vec<String>) {
    let evaluations = tags
        .len()
        .max(1)
        .saturating_mul(index.subscriber_count(namespace.as_deref(), &urls));
    if evaluations <= INLINE_EVALUATIONS {
        let plan = index.plan(namespace.as_deref(), &urls, &tags);
        return (plan, urls, tags);
    }
    let work = tokio::task::spawn_blocking(move || {
        let plan = index.plan(namespace.as_deref(), &urls, &tags);
        (plan, urls, tags)
    });
    match work.await {
        Ok(done) => done,
        // The plan is pure and does not panic on any input (fuzzed); a panic there is a bug
        // and must reach the runtime as one.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// What became of one Warehouse's refresh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Patched {
    /// The annotation was written.
    Refreshed,
    /// The API server answered 404: the Warehouse was deleted; it is dropped from the index.
    Gone,
    /// The patch failed after the bounded retries.
    Failed(StateError),
}

/// Writes the refresh annotation on every Warehouse of `keys`, concurrently (at most
/// `QUAYHOOK_PATCH_CONCURRENCY` in flight) within `budget`.
///
/// # Returns
/// One result per key, in the order of `keys`.
pub async fn patch_all<S: SecretSource, C: Connector>(
    state: &State<S, C>,
    keys: &[WarehouseKey],
    budget: &Budget,
) -> Vec<Patched> {
    let patch = refresh_patch(SystemTime::now());
    let patch = &patch;
    // Owned items: a stream closure taking `&WarehouseKey` trips the compiler's higher-ranked
    // lifetime check once the future must be `Send` (as `lambda_http::run` requires).
    let owned: Vec<(usize, WarehouseKey)> = keys.iter().cloned().enumerate().collect();
    let mut results: Vec<(usize, Result<(), StateError>)> = futures::stream::iter(owned)
        .map(|(i, key)| async move {
            let result = state
                .with_store(budget, |store| {
                    let key = key.clone();
                    async move { store.patch(&key, patch).await }
                })
                .await;
            (i, result)
        })
        .buffer_unordered(state.config.patch_concurrency)
        .collect()
        .await;
    results.sort_by_key(|(i, _)| *i);
    results
        .into_iter()
        .map(|(i, result)| {
            let key = &keys[i];
            match result {
                Ok(()) => {
                    tracing::debug!(warehouse = %key, "refreshed");
                    Patched::Refreshed
                }
                Err(StateError::Cluster(ClusterError::NotFound)) => {
                    tracing::info!(warehouse = %key, "warehouse gone; dropped from the index");
                    state.forget(key);
                    Patched::Gone
                }
                Err(e) => {
                    let cause = Chain(&e).to_string();
                    tracing::warn!(warehouse = %key, transient = e.is_transient(), cause = %clip(&cause), "refresh failed");
                    Patched::Failed(e)
                }
            }
        })
        .collect()
}

/// Sorts what became of `plan` into `outcome`: each selected Warehouse, with its result in
/// `patched` (one per `plan.refresh` entry, as [`patch_all`] returns them), under
/// `refreshed`, `gone` or `failed`; then the skipped Warehouses (logged at debug, with their
/// reasons) and the invalid ones (logged at warn).
///
/// # Returns
/// With `queueing` (a queue is configured), the Warehouses whose refresh failed for a
/// transient reason, with the error, for the caller to queue instead of listing them as
/// `failed`; without it, nothing.
pub fn settle<'p>(
    plan: &'p Plan,
    patched: Vec<Patched>,
    queueing: bool,
    outcome: &mut Outcome,
) -> Vec<(&'p Selected, StateError)> {
    let mut retry = Vec::new();
    for (selected, result) in plan.refresh.iter().zip(patched) {
        match result {
            Patched::Refreshed => outcome.refreshed.push(WarehouseOut::selected(selected)),
            Patched::Gone => outcome.gone.push(WarehouseOut::selected(selected)),
            Patched::Failed(e) if e.is_transient() && queueing => retry.push((selected, e)),
            Patched::Failed(e) => {
                let cause = Chain(&e).to_string();
                outcome.failed.push(WarehouseOut::failed(selected, &cause));
            }
        }
    }
    for skipped in &plan.skipped {
        let out = WarehouseOut::skipped(skipped);
        tracing::debug!(warehouse = %skipped.key, reasons = ?out.reasons, omitted = out.reasons_omitted, "skipped");
        outcome.skipped.push(out);
    }
    for invalid in &plan.invalid {
        let out = WarehouseOut::invalid(invalid);
        tracing::warn!(warehouse = %invalid.key, cause = ?out.error, "subscription misconfigured");
        outcome.invalid.push(out);
    }
    retry
}
