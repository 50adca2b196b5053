//! Valid deliveries in bursts, each answer checked against the oracle's selection, 5xx ones
//! re-sent as Quay does, and no refresh lost.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kargo_match::warehouse::WarehouseKey;
use serde_json::{Value, json};

use super::rig::{Answer, Rig, Via};
use super::{Delivery, QUAY_RETRIES, ms, percentile};

/// The Warehouses listed under `list` in an answer.
fn keys(body: &Value, list: &str) -> BTreeSet<WarehouseKey> {
    body[list]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|w| {
                    WarehouseKey::new(
                        w["namespace"].as_str().unwrap_or_default(),
                        w["name"].as_str().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Checks one answer against the push's selection; returns whether Quay must retry it.
pub(crate) fn check_answer(i: usize, d: &Delivery, a: &Answer) -> bool {
    match a.status {
        200 => {
            assert_eq!(
                keys(&a.body, "refreshed"),
                d.selected,
                "push {i}: a 200 refreshes exactly the selected Warehouses: {}",
                a.body
            );
            false
        }
        500 => {
            let failed = keys(&a.body, "failed");
            assert!(
                !failed.is_empty(),
                "push {i}: a 500 must name a failed Warehouse (else Quay retries for nothing): {}",
                a.body
            );
            let mut all = keys(&a.body, "refreshed");
            all.extend(failed);
            assert_eq!(all, d.selected, "push {i}: {}", a.body);
            true
        }
        503 => {
            assert!(
                a.body["error"].is_string(),
                "push {i}: a 503 says what was unavailable: {}",
                a.body
            );
            true
        }
        other => panic!("push {i}: unexpected status {other}: {}", a.body),
    }
}

/// Re-sends the 5xx pushes `retry` (indexes into `deliveries`) a few times, one after another,
/// as Quay does; returns how many were re-sent. Asserts that none is still failing.
pub(crate) async fn resend(
    rig: &Rig,
    via: Via,
    deliveries: &[Delivery],
    mut retry: Vec<usize>,
) -> usize {
    let mut resent = 0;
    for round in 0..QUAY_RETRIES {
        if retry.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200 * (round as u64 + 1))).await;
        let mut still = Vec::new();
        for i in retry {
            let d = &deliveries[i];
            let a = via.send(&rig.state, &rig.tokens[d.project], &d.body).await;
            resent += 1;
            if check_answer(i, d, &a) {
                still.push(i);
            }
        }
        retry = still;
    }
    assert!(
        retry.is_empty(),
        "{} pushes still failed after {QUAY_RETRIES} Quay retries",
        retry.len()
    );
    resent
}

/// The figures of one run of valid deliveries.
pub(crate) struct Run {
    /// Every first-pass latency, sorted.
    pub(crate) latencies: Vec<Duration>,
    /// Wall time of the bursts (re-sends excluded).
    pub(crate) elapsed: Duration,
    /// First-pass statuses.
    pub(crate) statuses: HashMap<u16, usize>,
    /// First-pass 5xx answers (each re-sent).
    pub(crate) first_pass_5xx: usize,
    /// Re-sends, as Quay makes them.
    pub(crate) resent: usize,
    /// Warehouses some push selected.
    pub(crate) selected: usize,
    /// Selected Warehouses not refreshed after their last push (asserted empty).
    pub(crate) lost: usize,
}

impl Run {
    /// The figures for `QUAYHOOK_LOADTEST_OUT`.
    pub(crate) fn json(&self) -> Value {
        let n = self.latencies.len();
        json!({
            "deliveries": n,
            "seconds": self.elapsed.as_secs_f64(),
            "requests_per_second": n as f64 / self.elapsed.as_secs_f64(),
            "p50_ms": ms(percentile(&self.latencies, 50.0)),
            "p90_ms": ms(percentile(&self.latencies, 90.0)),
            "p99_ms": ms(percentile(&self.latencies, 99.0)),
            "max_ms": ms(self.latencies.last().copied().unwrap_or_default()),
            "statuses": self.statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "first_pass_5xx": self.first_pass_5xx,
            "resent": self.resent,
            "warehouses_refreshed": self.selected,
            "lost": self.lost,
        })
    }
}

/// Sends `deliveries` in bursts of `burst` concurrent deliveries (`on_burst(k)` runs as burst
/// `k` starts), checks every answer, re-sends the 5xx ones as Quay does, and checks that no
/// refresh was lost.
pub(crate) async fn deliver_all(
    rig: &Rig,
    via: Via,
    deliveries: &[Delivery],
    burst: usize,
    mut on_burst: impl FnMut(usize),
) -> Run {
    let started = Instant::now();
    let mut sent = vec![started; deliveries.len()];
    let mut latencies = Vec::with_capacity(deliveries.len());
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    let mut retry: Vec<usize> = Vec::new();
    let indexes: Vec<usize> = (0..deliveries.len()).collect();
    for (k, chunk) in indexes.chunks(burst).enumerate() {
        on_burst(k);
        let handles: Vec<_> = chunk
            .iter()
            .map(|&i| {
                let d = &deliveries[i];
                let state = Arc::clone(&rig.state);
                let (token, body) = (rig.tokens[d.project].clone(), d.body.clone());
                tokio::spawn(async move { via.send(&state, &token, &body).await })
            })
            .collect();
        for (&i, handle) in chunk.iter().zip(handles) {
            let a = handle.await.expect("a delivery task panicked");
            latencies.push(a.latency);
            *statuses.entry(a.status).or_default() += 1;
            if check_answer(i, &deliveries[i], &a) {
                retry.push(i);
            }
            sent[i] = a.sent;
        }
    }
    let elapsed = started.elapsed();
    let first_pass_5xx = retry.len();
    let resent = resend(rig, via, deliveries, retry).await;

    let lost = rig.lost(deliveries.iter().zip(sent.iter().copied()));
    assert!(lost.is_empty(), "refreshes lost: {lost:?}");
    let selected: BTreeSet<&WarehouseKey> = deliveries.iter().flat_map(|d| &d.selected).collect();
    latencies.sort();
    Run {
        latencies,
        elapsed,
        statuses,
        first_pass_5xx,
        resent,
        selected: selected.len(),
        lost: lost.len(),
    }
}
