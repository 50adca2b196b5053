//! The timeline of remote calls a request made (when each was in flight, and what it was), and
//! its sequential depth: the round trips of benchmark 1 and of the cold start's first request.
//!
//! I/O only through what it wraps: quayhook's real cluster adapter, timed call by call, and the
//! local API server's request observer.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kargo_match::token::SecretString;
use kargo_match::warehouse::WarehouseKey;
use quayhook::cluster::{ClusterError, Connector, PageSink, WarehouseStore};
use quayhook_testkit::apiserver::ApiServer;
use serde_json::Value;

/// One remote call: when it was in flight, and what it was.
#[derive(Clone, Debug)]
pub struct Span {
    /// When the call started (or, seen from the server, the latest it can have started).
    pub start: Instant,
    /// When its answer arrived.
    pub end: Instant,
    /// `verb resource` (`patch warehouses`, `secretsmanager GetSecretValue`).
    pub what: String,
}

/// Remote calls recorded from several tasks; cloning shares the list.
#[derive(Clone, Debug, Default)]
pub struct Timeline(Arc<Mutex<Vec<Span>>>);

impl Timeline {
    /// Records one call.
    pub fn push(&self, span: Span) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(span);
    }

    /// The calls recorded so far, leaving the timeline empty.
    pub fn take(&self) -> Vec<Span> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Sequential round trips: the most calls that ran one after another without overlapping
/// (greedy by earliest end, which finds the longest chain of disjoint intervals). Concurrent
/// calls of one wave overlap and count once; a chain of dependent calls counts each.
pub fn depth(spans: &[Span]) -> usize {
    let mut sorted: Vec<&Span> = spans.iter().collect();
    sorted.sort_by_key(|s| s.end);
    let mut count = 0;
    let mut last_end: Option<Instant> = None;
    for s in sorted {
        if last_end.is_none_or(|e| s.start >= e) {
            count += 1;
            last_end = Some(s.end);
        }
    }
    count
}

/// A latency shared between the stack, which sets it, and the observers that read it.
pub type SharedLatency = Arc<Mutex<Duration>>;

/// Reads a shared latency, whatever a panicking writer left.
pub fn latency_of(latency: &Mutex<Duration>) -> Duration {
    *latency.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sets a shared latency.
pub fn set_latency_of(latency: &Mutex<Duration>, d: Duration) {
    *latency.lock().unwrap_or_else(PoisonError::into_inner) = d;
}

/// Records every API server request into `timeline`. The server applies `latency` before
/// answering, so a request was in flight at least from `end - latency` to `end`.
pub fn observe(api: &ApiServer, timeline: &Timeline, latency: SharedLatency) {
    let timeline = timeline.clone();
    api.on_request(move |r| {
        let end = Instant::now();
        let l = latency_of(&latency);
        timeline.push(Span {
            start: end.checked_sub(l).unwrap_or(end),
            end,
            what: format!("{} {}", r.verb, r.resource),
        });
    });
}

/// Runs `fut` and records it in `timeline` as one remote call.
pub async fn timed<T>(timeline: &Timeline, what: &str, fut: impl Future<Output = T>) -> T {
    let start = Instant::now();
    let out = fut.await;
    timeline.push(Span {
        start,
        end: Instant::now(),
        what: what.into(),
    });
    out
}

/// quayhook's real [`Connector`], wrapped so every list and patch of the stores it connects
/// (each retry attempt too) lands in the timeline with its true start.
pub struct Timed<C> {
    /// The connector of quayhook's `State`.
    pub inner: C,
    /// Where the calls go.
    pub timeline: Timeline,
}

/// A store connected by [`Timed`]: each call is timed client-side.
pub struct TimedStore<S> {
    inner: S,
    timeline: Timeline,
}

impl<C: Connector> Connector for Timed<C> {
    type Store = TimedStore<C::Store>;

    async fn connect(&self, kubeconfig: &SecretString) -> Result<Self::Store, ClusterError> {
        Ok(TimedStore {
            inner: self.inner.connect(kubeconfig).await?,
            timeline: self.timeline.clone(),
        })
    }
}

impl<S: WarehouseStore> WarehouseStore for TimedStore<S> {
    async fn list(
        &self,
        namespace: Option<&str>,
        page_size: u32,
        sink: PageSink<'_>,
    ) -> Result<(), ClusterError> {
        let list = self.inner.list(namespace, page_size, sink);
        timed(&self.timeline, "list warehouses", list).await
    }

    async fn patch(&self, key: &WarehouseKey, patch: &Value) -> Result<(), ClusterError> {
        timed(
            &self.timeline,
            "patch warehouses",
            self.inner.patch(key, patch),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(t0: Instant, from_ms: u64, to_ms: u64) -> Span {
        Span {
            start: t0 + Duration::from_millis(from_ms),
            end: t0 + Duration::from_millis(to_ms),
            what: String::new(),
        }
    }

    #[test]
    fn overlapping_calls_count_once_and_a_chain_counts_each() {
        let t0 = Instant::now();
        assert_eq!(depth(&[]), 0);
        // One wave of three concurrent patches.
        assert_eq!(
            depth(&[span(t0, 0, 20), span(t0, 1, 21), span(t0, 2, 22)]),
            1
        );
        // Secret read, then list, then a wave of two patches.
        let chain = [
            span(t0, 0, 20),
            span(t0, 20, 40),
            span(t0, 41, 61),
            span(t0, 42, 62),
        ];
        assert_eq!(depth(&chain), 3);
    }
}
