//! The outage: pushes in bursts of 50 through the Lambda handler, with a real moto SQS queue
//! (`QUAYHOOK_QUEUE_URL`), while the API server drops every request for the whole push phase.
//! That phase stands for an outage longer than Quay's whole retry window (5 attempts about
//! 30 s apart, about 2.5 min): no delivery is answered non-2xx, so Quay never retries, and
//! compressing the outage changes nothing the receiver sees. Then recovery: the faults are
//! cleared and 2 concurrent workers (the template's `WorkerMaxConcurrency`) drain the queue as
//! the event source mapping does (receive up to 10, `worker::run`, delete what succeeded).
//!
//! Asserted: no push answered non-2xx, no refresh lost (every Warehouse some push selected ends
//! with a refresh annotation newer than the outage's start), nothing dead-lettered, nothing
//! panicked. Recorded, never asserted: the time from recovery to the last refresh and the most
//! LIST and PATCH requests per second the API server received during recovery.
//!
//! `QUAYHOOK_REQUEST_TIMEOUT` is 2 s, as in the durable integration tests: with 1 s, half of
//! it is kept to enqueue (`handler::ENQUEUE_RESERVE`, at most half the budget), and a moto
//! `SendMessage` among 50 concurrent ones with hundreds of messages queued sometimes took
//! longer, so those deliveries answered 500/503, as without a queue.
//!
//! `QUAYHOOK_LOADTEST_OUTAGE_PUSHES` sets the number of pushes: 1,000 in `make loadtest`,
//! [`DEFAULT_PUSHES`] otherwise (so the debug run of `make test` stays short).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use kargo_match::warehouse::{WarehouseKey, refresh_value};
use serde_json::json;

use quayhook::worker;
use quayhook_testkit::apiserver::Fault;
use quayhook_testkit::moto::sqs::{self, TestQueue};

use super::rig::{Receiver, Rig, Via};
use super::{PROJECTS, Rng, WAREHOUSES, exclusive, panics_since, plan, record};

const DEFAULT_PUSHES: usize = 200;
const BURST: usize = 50;
/// Concurrent worker invocations (the template's `WorkerMaxConcurrency` default).
const WORKERS: usize = 2;
/// The time a worker invocation has left, as Lambda reports it (the template's 60 s timeout).
const WORKER_REMAINING: Duration = Duration::from_secs(60);
/// Receives before a message moves to the dead-letter queue (the template's).
const MAX_RECEIVE_COUNT: u32 = 5;
/// A drain taking longer than this is a failure (the rest is lost).
const DRAIN_LIMIT: Duration = Duration::from_secs(120);

fn pushes() -> usize {
    std::env::var("QUAYHOOK_LOADTEST_OUTAGE_PUSHES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_PUSHES)
}

#[test]
fn an_outage_longer_than_quays_retry_window_answers_2xx_and_loses_no_refresh() {
    exclusive(run);
}

/// One worker: what the event source mapping does with one concurrent invocation, until the
/// queue is empty (nothing visible, nothing in flight) or `DRAIN_LIMIT` passes.
async fn drain(
    state: Arc<Receiver>,
    queue: TestQueue,
    started: Instant,
    invocations: Arc<AtomicUsize>,
) {
    let client = sqs::client();
    while started.elapsed() < DRAIN_LIMIT {
        let messages = sqs::receive(&client, &queue.url).await;
        if messages.is_empty() {
            if sqs::depth(&client, &queue.url).await == (0, 0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        invocations.fetch_add(1, Ordering::SeqCst);
        let response = worker::run(
            &state,
            sqs::event(&messages, &queue.arn),
            Some(WORKER_REMAINING),
        )
        .await;
        sqs::settle(&client, &queue.url, &messages, &response).await;
    }
}

/// The most entries of `times` in one 1 s window from `start`.
fn peak_per_second(times: impl Iterator<Item = Instant>, start: Instant) -> usize {
    let mut windows: HashMap<u64, usize> = HashMap::new();
    for t in times {
        *windows
            .entry(t.saturating_duration_since(start).as_secs())
            .or_default() += 1;
    }
    windows.into_values().max().unwrap_or(0)
}

async fn run(panics_before: usize) {
    let pushes = pushes();
    let client = sqs::client();
    let queue = sqs::create_queue_with_dlq(&client, "loadtest-outage", MAX_RECEIVE_COUNT).await;
    let rig = Rig::start(&[
        ("QUAYHOOK_QUEUE_URL", &queue.url),
        ("QUAYHOOK_REQUEST_TIMEOUT", "2s"),
        ("QUAYHOOK_WORKER_BACKOFF_BASE", "1s"),
    ])
    .await;
    let deliveries = plan(&mut Rng(0x07a6_e5ee_d000_0001), &rig, pushes);

    // The outage: every request dropped, for the whole push phase.
    let outage_started = SystemTime::now();
    let outage_value = refresh_value(outage_started);
    rig.api.inject(Fault::drop());
    let pushed = Instant::now();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut latencies = Vec::with_capacity(pushes);
    let mut examples = Vec::new();
    for chunk in deliveries.chunks(BURST) {
        let handles: Vec<_> = chunk
            .iter()
            .map(|d| {
                let state = Arc::clone(&rig.state);
                let (token, body) = (rig.tokens[d.project].clone(), d.body.clone());
                tokio::spawn(async move { Via::Handler.send(&state, &token, &body).await })
            })
            .collect();
        for handle in handles {
            let a = handle.await.expect("a delivery task panicked");
            latencies.push(a.latency);
            *statuses.entry(a.status).or_default() += 1;
            if !(200..300).contains(&a.status) && examples.len() < 3 {
                examples.push(a.body);
            }
        }
    }
    let push_seconds = pushed.elapsed().as_secs_f64();
    let (queued, _) = sqs::depth(&client, &queue.url).await;

    // Recovery.
    rig.api.clear_faults();
    let recovered = Instant::now();
    let invocations = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            tokio::spawn(drain(
                Arc::clone(&rig.state),
                queue.clone(),
                recovered,
                Arc::clone(&invocations),
            ))
        })
        .collect();
    for w in workers {
        w.await.expect("a worker task panicked");
    }
    let drained = recovered.elapsed();

    let non_2xx: usize = statuses
        .iter()
        .filter(|(s, _)| !(200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let selected: BTreeSet<&WarehouseKey> = deliveries.iter().flat_map(|d| &d.selected).collect();
    let lost: Vec<String> = selected
        .iter()
        .filter(|key| {
            !rig.api
                .get("warehouses", Some(&key.namespace), &key.name)
                .and_then(|w| {
                    w.pointer("/metadata/annotations/kargo.akuity.io~1refresh")
                        .and_then(|v| v.as_str())
                        .map(|v| v > outage_value.as_str())
                })
                .unwrap_or(false)
        })
        .map(ToString::to_string)
        .collect();
    let dead = sqs::depth(&client, &queue.dlq_url).await;
    let left = sqs::depth(&client, &queue.url).await;

    let timeline: Vec<(Instant, bool)> = rig
        .observed
        .timeline
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|(t, _)| *t >= recovered)
        .collect();
    let last_refresh = rig
        .observed
        .patched
        .lock()
        .unwrap()
        .values()
        .flatten()
        .copied()
        .filter(|t| *t >= recovered)
        .max()
        .map(|t| t - recovered);
    let peak_list = peak_per_second(
        timeline.iter().filter(|(_, p)| !p).map(|(t, _)| *t),
        recovered,
    );
    let peak_patch = peak_per_second(
        timeline.iter().filter(|(_, p)| *p).map(|(t, _)| *t),
        recovered,
    );
    latencies.sort();

    let report = json!({
        "pushes": pushes,
        "burst": BURST,
        "projects": PROJECTS.len(),
        "warehouses": WAREHOUSES,
        "workers": WORKERS,
        "push_seconds": push_seconds,
        "p50_ms": super::ms(super::percentile(&latencies, 50.0)),
        "max_ms": super::ms(latencies.last().copied().unwrap_or_default()),
        "statuses": statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "non_2xx": non_2xx,
        "queued_messages": queued,
        "worker_invocations": invocations.load(Ordering::SeqCst),
        "warehouses_selected": selected.len(),
        "lost": lost.len(),
        "dead_lettered": dead.0 + dead.1,
        "drain_seconds": drained.as_secs_f64(),
        "recovery_to_last_refresh_seconds": last_refresh.map(|d| d.as_secs_f64()),
        "peak_list_per_second": peak_list,
        "peak_patch_per_second": peak_patch,
        "recovery_lists": timeline.iter().filter(|(_, p)| !p).count(),
        "recovery_patches": timeline.iter().filter(|(_, p)| *p).count(),
        "panics": panics_since(panics_before),
    });
    println!("loadtest outage: {report:#}");
    record(&json!({ "outage": report }));

    assert_eq!(
        non_2xx, 0,
        "answers Quay would retry: {statuses:?}, e.g. {examples:?}"
    );
    assert!(lost.is_empty(), "refreshes lost: {lost:?}");
    assert_eq!(dead, (0, 0), "messages dead-lettered");
    assert_eq!(
        left,
        (0, 0),
        "messages left on the queue after {DRAIN_LIMIT:?}"
    );
}
