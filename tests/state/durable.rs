//! The durable path on the fakes with paused time: a delivery queues what the cluster cannot
//! take (202) or, when the queue fails too, answers as without one; the worker refreshes
//! queued Warehouses once each, plans a queued push again, drops a deleted Warehouse, backs
//! off what failed by receive count and sends what cannot succeed to the dead-letter queue.
//! Every message the fake queue accepts is checked for secrets.

use std::time::Duration;

use quayhook::cluster::ClusterError;
use quayhook::message::Message;
use quayhook::queue::QueueError;
use quayhook::state::State;
use quayhook::worker;
use quayhook_testkit::events::{failed_ids, push, sqs_batch, sqs_record};
use quayhook_testkit::fakes::{self, FakeCluster, FakeQueue, FakeSecrets, Step};
use quayhook_testkit::fixtures::{QUAY_REPO, wh};
use quayhook_testkit::harness::deliver;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{NS, names, secs};

const QUEUE: (&str, &str) = (
    "QUAYHOOK_QUEUE_URL",
    "https://sqs.us-east-1.amazonaws.com/123456789012/quayhook",
);

fn unavailable() -> ClusterError {
    ClusterError::Status {
        code: 503,
        message: "etcd leader changed".into(),
    }
}

/// A receiver, three Warehouses on the pushed repository (`b` only for v2) and one elsewhere,
/// and a state with `vars` and the queue.
struct World {
    secrets: FakeSecrets,
    cluster: FakeCluster,
    queue: FakeQueue,
    state: State<FakeSecrets, FakeCluster>,
    token: String,
    sensitive: Vec<String>,
}

fn world(vars: &[(&str, &str)]) -> World {
    let secrets = FakeSecrets::new();
    let token = secrets.add(NS, "quay", "s3cret-durable", None);
    let cluster = FakeCluster::new()
        .with(wh(NS, "a").image(QUAY_REPO, json!({})))
        .with(wh(NS, "b").image(QUAY_REPO, json!({"constraint": "^2.0.0"})))
        .with(wh(NS, "c").image(QUAY_REPO, json!({})))
        .with(wh(NS, "other").image("quay.io/mynamespace/other", json!({})));
    let mut all = vec![QUEUE];
    all.extend_from_slice(vars);
    let queue = FakeQueue::new();
    let state = fakes::state(&all, &secrets, &cluster).with_queue(queue.clone());
    World {
        sensitive: vec![token.clone(), "s3cret-durable".into()],
        secrets,
        cluster,
        queue,
        state,
        token,
    }
}

impl World {
    /// The queued bodies as one SQS batch, received for the `receives`-th time.
    fn batch(&self, receives: u32) -> lambda_http::aws_lambda_events::sqs::SqsEvent {
        self.queue.assert_clean(&self.sensitive);
        let records: Vec<Value> = self
            .queue
            .drain()
            .iter()
            .enumerate()
            .map(|(i, body)| sqs_record(&format!("m{i}"), body, receives))
            .collect();
        sqs_batch(&records)
    }
}

/// A message for the world's receiver naming `pending` (`None`: plan again).
fn message(pending: Option<&[&str]>, tags: &[&str]) -> String {
    let mut body = json!({
        "v": 1, "project": NS, "receiver": "quay",
        "repositories": [QUAY_REPO], "dockerUrl": QUAY_REPO, "tags": tags,
        "receivedAt": "2026-11-27T14:05:36.000000000Z", "cause": "test",
        "pending": null,
    });
    if let Some(names) = pending {
        body["pending"] = names
            .iter()
            .map(|n| json!({"namespace": NS, "name": n}))
            .collect();
    }
    body.to_string()
}

#[tokio::test(start_paused = true)]
async fn a_cluster_down_longer_than_the_budget_queues_the_push_with_202_in_time() {
    let w = world(&[("QUAYHOOK_REQUEST_TIMEOUT", "8s")]);
    w.cluster.on_list().always(Step::hang());
    let started = Instant::now();
    let (status, body) = deliver(&w.state, &w.token, &push(QUAY_REPO, &["v1.0.0"])).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["msg"], "queued the push for a retry");
    assert_eq!(body["queued"], json!([]));
    assert_eq!(body["tags"], json!(["v1.0.0"]));
    assert_eq!(body["repositories"], json!([QUAY_REPO]));
    assert_eq!(body["cause"], "the API server did not answer in time");
    assert_eq!(
        started.elapsed(),
        secs(7),
        "the cluster gets the budget less the enqueue reserve"
    );
    let sent = w.queue.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].pending, None, "no plan yet: the worker plans it");
    assert_eq!(sent[0].tags, ["v1.0.0"]);
    assert_eq!(w.cluster.patch_calls(), 0, "nothing refreshed yet");

    // The cluster is back: the worker plans the push and refreshes what it selects, once.
    w.cluster.on_list().reset();
    let response = worker::run(&w.state, w.batch(1), None).await;
    assert!(failed_ids(&response).is_empty());
    assert_eq!(w.cluster.patched(), ["kargo-demo/a", "kargo-demo/c"]);
    assert!(w.cluster.refreshed_at(NS, "b").is_none());
}

#[tokio::test(start_paused = true)]
async fn transient_patch_failures_are_queued_and_the_rest_stay_refreshed() {
    let w = world(&[("QUAYHOOK_MAX_ATTEMPTS", "1")]);
    // Patches start in plan order: `a` fails, `c` passes.
    w.cluster.on_patch().then(Step::fail(unavailable()));
    let (status, body) = deliver(&w.state, &w.token, &push(QUAY_REPO, &["v1.0.0"])).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["msg"], "queued refresh of 1 warehouse(s)");
    assert_eq!(names(&body, "queued"), ["kargo-demo/a"]);
    assert_eq!(names(&body, "refreshed"), ["kargo-demo/c"]);
    assert!(
        body["cause"]
            .as_str()
            .unwrap()
            .contains("API server answered 503"),
        "{body}"
    );
    let sent = w.queue.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].pending_keys().unwrap(),
        [kargo_match::warehouse::WarehouseKey::new(NS, "a")]
    );

    w.cluster.reset_calls();
    let response = worker::run(&w.state, w.batch(1), None).await;
    assert!(failed_ids(&response).is_empty());
    assert_eq!(w.cluster.patched(), ["kargo-demo/a"], "only what was left");
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_is_not_queued_and_stays_500() {
    let w = world(&[("QUAYHOOK_MAX_ATTEMPTS", "1")]);
    w.cluster
        .on_patch()
        .then(Step::fail(ClusterError::Forbidden("no patch".into())))
        .then(Step::fail(unavailable()));
    let (status, body) = deliver(&w.state, &w.token, &push(QUAY_REPO, &["v1.0.0"])).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"], "failed to refresh 1 of 2 warehouses");
    assert_eq!(names(&body, "failed"), ["kargo-demo/a"]);
    assert_eq!(names(&body, "queued"), ["kargo-demo/c"]);
    assert_eq!(w.queue.sent().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn when_the_queue_fails_too_the_answer_is_as_without_a_queue() {
    let w = world(&[("QUAYHOOK_MAX_ATTEMPTS", "1")]);
    w.queue.on_send().always(Step::fail(QueueError::Timeout));
    w.cluster.on_list().then(Step::fail(unavailable()));
    let (status, body) = deliver(&w.state, &w.token, &push(QUAY_REPO, &["v1.0.0"])).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("cannot list warehouses")
    );

    w.cluster.on_patch().then(Step::fail(unavailable()));
    let (status, body) = deliver(&w.state, &w.token, &push(QUAY_REPO, &["v1.0.0"])).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(names(&body, "failed"), ["kargo-demo/a"]);
    assert!(body.get("queued").is_none());
    assert_eq!(w.queue.send_calls(), 2);
    assert!(w.queue.sent().is_empty());

    // A hanging queue costs no more than the request's budget.
    let fresh = world(&[("QUAYHOOK_REQUEST_TIMEOUT", "4s")]);
    fresh.queue.on_send().always(Step::hang());
    fresh.cluster.on_list().always(Step::hang());
    let started = Instant::now();
    let (status, _) = deliver(&fresh.state, &fresh.token, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(status, 503);
    assert_eq!(started.elapsed(), secs(4));
}

#[tokio::test(start_paused = true)]
async fn bad_payloads_and_unknown_tokens_are_never_queued() {
    let w = world(&[]);
    w.cluster.on_list().always(Step::fail(unavailable()));
    let (status, _) = deliver(&w.state, &"0".repeat(64), &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(status, 404);
    let (status, _) = deliver(&w.state, &w.token, "{not json").await;
    assert_eq!(status, 400);
    let cold = world(&[]);
    cold.secrets
        .on_receivers()
        .always(Step::fail(fakes::unavailable()));
    let (status, _) = deliver(&cold.state, &cold.token, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(
        status, 503,
        "receiver secrets unavailable: the token is not known"
    );
    assert_eq!(w.queue.send_calls() + cold.queue.send_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_worker_patches_each_warehouse_once_however_many_messages_name_it() {
    let w = world(&[]);
    let first = message(Some(&["a"]), &["v1"]);
    let second = message(Some(&["a", "c"]), &["v1"]);
    let batch = sqs_batch(&[
        sqs_record("m1", &first, 1),
        sqs_record("m2", &second, 1),
        // A duplicate delivery of m1 within the batch.
        sqs_record("m1", &first, 2),
    ]);
    let response = worker::run(&w.state, batch.clone(), None).await;
    assert!(failed_ids(&response).is_empty());
    assert_eq!(w.cluster.patched(), ["kargo-demo/a", "kargo-demo/c"]);
    let stamp = w.cluster.refreshed_at(NS, "a").unwrap();

    // Delivered again (a lost delete): one more patch each, a new refresh value, no failure.
    w.cluster.reset_calls();
    tokio::time::advance(Duration::from_millis(1)).await;
    let response = worker::run(&w.state, batch, None).await;
    assert!(failed_ids(&response).is_empty());
    assert_eq!(w.cluster.patched(), ["kargo-demo/a", "kargo-demo/c"]);
    assert_ne!(w.cluster.refreshed_at(NS, "a").unwrap(), stamp);
    assert!(w.queue.visibility_changes().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_worker_plans_a_queued_push_with_the_deliverys_selection() {
    let w = world(&[]);
    let batch = sqs_batch(&[sqs_record("m1", &message(None, &["v2.1.0"]), 1)]);
    let response = worker::run(&w.state, batch, None).await;
    assert!(failed_ids(&response).is_empty());
    // `b` wants ^2.0.0; `other` is another repository.
    assert_eq!(
        w.cluster.patched(),
        ["kargo-demo/a", "kargo-demo/b", "kargo-demo/c"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_deleted_warehouse_is_dropped_not_retried() {
    let w = world(&[]);
    w.cluster.delete(NS, "c");
    let batch = sqs_batch(&[sqs_record("m1", &message(Some(&["a", "c"]), &[]), 1)]);
    let response = worker::run(&w.state, batch, None).await;
    assert!(
        failed_ids(&response).is_empty(),
        "a 404 is done, not failed"
    );
    assert!(w.cluster.refreshed_at(NS, "a").is_some());
}

#[tokio::test(start_paused = true)]
async fn failed_messages_back_off_by_receive_count_and_only_they_are_reported() {
    let w = world(&[
        ("QUAYHOOK_MAX_ATTEMPTS", "1"),
        ("QUAYHOOK_WORKER_BACKOFF_BASE", "30s"),
        ("QUAYHOOK_WORKER_BACKOFF_MAX", "15m"),
    ]);
    w.cluster.on_patch().then(Step::fail(unavailable()));
    let batch = sqs_batch(&[
        sqs_record("m1", &message(Some(&["a"]), &[]), 3),
        sqs_record("m2", &message(Some(&["c"]), &[]), 1),
        sqs_record("m3", &message(Some(&["a", "c"]), &[]), 9),
    ]);
    let response = worker::run(&w.state, batch, None).await;
    // `a` failed (first patch); `c` passed.
    assert_eq!(failed_ids(&response), ["m1", "m3"]);
    assert_eq!(
        w.queue.visibility_changes(),
        [
            ("rh-m1".to_owned(), secs(120)),
            ("rh-m3".to_owned(), secs(900))
        ]
    );

    // A 403 will not heal by waiting: straight back, towards the dead-letter queue.
    w.cluster
        .on_patch()
        .then(Step::fail(ClusterError::Forbidden("no patch".into())));
    let batch = sqs_batch(&[sqs_record("m4", &message(Some(&["a"]), &[]), 1)]);
    let response = worker::run(&w.state, batch, None).await;
    assert_eq!(failed_ids(&response), ["m4"]);
    assert_eq!(
        w.queue.visibility_changes().last(),
        Some(&("rh-m4".to_owned(), Duration::ZERO))
    );
}

#[tokio::test(start_paused = true)]
async fn undecodable_and_orphaned_messages_go_to_the_dead_letter_queue_at_once() {
    let w = world(&[("QUAYHOOK_SECRETS_MISS_INTERVAL", "10s")]);
    let mut gone = serde_json::from_str::<Value>(&message(Some(&["a"]), &[])).unwrap();
    gone["receiver"] = json!("removed");
    let batch = sqs_batch(&[
        sqs_record("poison", "not a message s3cret-durable", 1),
        sqs_record(
            "v9",
            r#"{"v":9,"project":"kargo-demo","receiver":"quay"}"#,
            1,
        ),
        sqs_record("orphan", &gone.to_string(), 1),
        sqs_record("fine", &message(Some(&["a"]), &[]), 1),
    ]);
    let response = worker::run(&w.state, batch, None).await;
    assert_eq!(failed_ids(&response), ["poison", "v9", "orphan"]);
    let changes = w.queue.visibility_changes();
    assert_eq!(changes.len(), 3);
    assert!(changes.iter().all(|(_, d)| d.is_zero()), "{changes:?}");
    assert_eq!(w.cluster.patched(), ["kargo-demo/a"]);
}

#[tokio::test(start_paused = true)]
async fn a_receiver_newer_than_the_workers_cache_is_looked_up_not_declared_gone() {
    let w = world(&[
        ("QUAYHOOK_SECRETS_TTL", "1h"),
        ("QUAYHOOK_SECRETS_MISS_INTERVAL", "10s"),
    ]);
    // The worker's cache is filled before the receiver exists.
    assert!(w.state.authenticate(&w.token).await.unwrap().is_some());
    w.secrets.add(NS, "late", "s3cret-late", None);
    let mut late = serde_json::from_str::<Value>(&message(Some(&["a"]), &[])).unwrap();
    late["receiver"] = json!("late");
    let batch = sqs_batch(&[sqs_record("m1", &late.to_string(), 1)]);

    // Within the miss interval the secret store is not asked: retry later, not dead.
    let response = worker::run(&w.state, batch.clone(), None).await;
    assert_eq!(failed_ids(&response), ["m1"]);
    assert_eq!(w.queue.visibility_changes()[0].1, secs(30));
    assert_eq!(w.cluster.patch_calls(), 0);

    // Once a fetch is allowed, the new receiver is found.
    tokio::time::advance(secs(10)).await;
    let response = worker::run(&w.state, batch, None).await;
    assert!(failed_ids(&response).is_empty());
    assert_eq!(w.cluster.patched(), ["kargo-demo/a"]);
}

#[tokio::test(start_paused = true)]
async fn a_queued_message_never_holds_a_secret_a_path_or_the_kubeconfig() {
    let w = world(&[("QUAYHOOK_MAX_ATTEMPTS", "1")]);
    w.cluster.on_list().then(Step::fail(ClusterError::Transport(
        quayhook::cause::Cause::new("connection reset"),
    )));
    let (status, _) = deliver(&w.state, &w.token, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(status, 202);
    let cold = world(&[]);
    cold.secrets
        .on_kubeconfig()
        .always(Step::fail(fakes::unavailable()));
    let (status, body) = deliver(&cold.state, &cold.token, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(
        status, 202,
        "an unreadable kubeconfig secret is queued: {body}"
    );
    w.cluster.on_patch().then(Step::fail(unavailable()));
    let (status, _) = deliver(&w.state, &w.token, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(status, 202);
    let bodies: Vec<String> = w
        .queue
        .bodies()
        .into_iter()
        .chain(cold.queue.bodies())
        .collect();
    assert_eq!(bodies.len(), 3);
    for body in &bodies {
        quayhook_testkit::fakes::assert_clean_body(body, &w.sensitive);
        let message = Message::decode(body).unwrap();
        assert_eq!(
            (message.project.as_str(), message.receiver.as_str()),
            (NS, "quay")
        );
    }
}
