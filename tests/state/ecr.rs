//! ECR push events on the fakes with paused time: the durable path (a cluster outage queues
//! the event itself, within the budget, and the worker finishes it; a queue that fails too
//! makes the invocation fail so Lambda retries), the worker's verdicts on an ECR record
//! (retry on a transient list failure, dead-letter on a permanent one), a project that cannot
//! be listed not holding the others back, and one metric record per event, source `ECR`.

use std::cell::RefCell;
use std::rc::Rc;

use quayhook::cluster::ClusterError;
use quayhook::ecr::ImageAction;
use quayhook::queue::QueueError;
use quayhook::state::State;
use quayhook::worker;
use quayhook_testkit::events::{
    ECR_REGISTRY, ecr_action, ecr_push, failed_ids, sqs_batch, sqs_record,
};
use quayhook_testkit::fakes::{self, FakeCluster, FakeQueue, FakeSecrets, Step};
use quayhook_testkit::fixtures::wh;
use quayhook_testkit::harness::invoke_ecr;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{NS, names, secs};

const REPO: &str = "kargo-demo/app";

fn unavailable() -> ClusterError {
    ClusterError::Status {
        code: 503,
        message: "etcd leader changed".into(),
    }
}

/// Warehouses `a` (any tag), `b` (`^2.0.0`) and `c` (any tag) on the ECR repository in
/// `kargo-demo`, `w` on it in `team-b`, and a state scoped by `vars` with a queue.
struct World {
    cluster: FakeCluster,
    queue: FakeQueue,
    state: State<FakeSecrets, FakeCluster>,
}

fn world(vars: &[(&str, &str)]) -> World {
    let image = format!("{ECR_REGISTRY}/{REPO}");
    let cluster = FakeCluster::new()
        .with(wh(NS, "a").image(&image, json!({})))
        .with(wh(NS, "b").image(&image, json!({"constraint": "^2.0.0"})))
        .with(wh(NS, "c").image(&image, json!({})))
        .with(wh("team-b", "w").image(&image, json!({})));
    let mut all = vec![
        (
            "QUAYHOOK_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/123456789012/quayhook",
        ),
        ("QUAYHOOK_ECR_PROJECTS", NS),
    ];
    all.extend_from_slice(vars);
    let queue = FakeQueue::new();
    let state = fakes::state(&all, &FakeSecrets::new(), &cluster).with_queue(queue.clone());
    World {
        cluster,
        queue,
        state,
    }
}

#[tokio::test(start_paused = true)]
async fn a_cluster_down_queues_the_event_itself_within_the_budget() {
    let w = world(&[("QUAYHOOK_REQUEST_TIMEOUT", "8s")]);
    w.cluster.on_list().always(Step::hang());
    let event = ecr_push(REPO, Some("v1.0.0"));
    let started = Instant::now();
    let body = invoke_ecr(&w.state, &event).await.unwrap();
    assert_eq!(body["result"], "queued", "{body}");
    assert_eq!(body["msg"], "queued the push for a retry");
    assert_eq!(body["cause"], "the API server did not answer in time");
    assert_eq!(
        started.elapsed(),
        secs(7),
        "the budget less the enqueue reserve"
    );
    assert!(w.queue.sent().is_empty(), "no quayhook message: the event");
    let bodies = w.queue.bodies();
    assert_eq!(bodies.len(), 1);
    let queued = ImageAction::from_body(&bodies[0]).expect("an ECR event");
    assert_eq!(
        queued,
        ImageAction::read(serde_json::from_str(&event).unwrap())
    );

    w.cluster.on_list().reset();
    let batch = sqs_batch(&[sqs_record("m1", &bodies[0], 1)]);
    let response = worker::run(&w.state, batch, None).await;
    assert!(failed_ids(&response).is_empty());
    assert_eq!(w.cluster.patched(), ["kargo-demo/a", "kargo-demo/c"]);
}

#[tokio::test(start_paused = true)]
async fn a_transient_patch_failure_queues_the_whole_event_for_the_worker_to_plan_again() {
    let w = world(&[("QUAYHOOK_MAX_ATTEMPTS", "1")]);
    w.cluster.on_patch().then(Step::fail(unavailable()));
    let body = invoke_ecr(&w.state, &ecr_push(REPO, Some("v1.0.0")))
        .await
        .unwrap();
    assert_eq!(body["result"], "queued", "{body}");
    assert_eq!(names(&body, "queued"), ["kargo-demo/a"]);
    assert_eq!(names(&body, "refreshed"), ["kargo-demo/c"]);

    w.cluster.reset_calls();
    let batch = sqs_batch(&[sqs_record("m1", &w.queue.drain()[0], 1)]);
    let response = worker::run(&w.state, batch, None).await;
    assert!(failed_ids(&response).is_empty());
    assert_eq!(
        w.cluster.patched(),
        ["kargo-demo/a", "kargo-demo/c"],
        "planned again: `c` is refreshed once more, which is harmless"
    );
}

#[tokio::test(start_paused = true)]
async fn when_the_queue_fails_too_the_invocation_fails_so_lambda_retries() {
    let w = world(&[("QUAYHOOK_MAX_ATTEMPTS", "1")]);
    w.queue.on_send().always(Step::fail(QueueError::Timeout));
    w.cluster.on_list().then(Step::fail(unavailable()));
    let error = invoke_ecr(&w.state, &ecr_push(REPO, Some("v1.0.0")))
        .await
        .expect_err("a function error");
    assert!(error.contains("503"), "{error}");
    assert_eq!(w.queue.send_calls(), 1);
    assert_eq!(w.cluster.patch_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_worker_retries_an_ecr_record_on_a_transient_failure_and_dead_letters_a_permanent_one()
{
    let w = world(&[
        ("QUAYHOOK_MAX_ATTEMPTS", "1"),
        ("QUAYHOOK_WORKER_BACKOFF_BASE", "30s"),
    ]);
    w.cluster.on_list().then(Step::fail(unavailable()));
    let batch = sqs_batch(&[sqs_record("m1", &ecr_push(REPO, Some("v1")), 2)]);
    let response = worker::run(&w.state, batch, None).await;
    assert_eq!(failed_ids(&response), ["m1"]);
    assert_eq!(
        w.queue.visibility_changes(),
        [("rh-m1".to_owned(), secs(60))]
    );

    w.cluster
        .on_list()
        .then(Step::fail(ClusterError::Forbidden("no list".into())));
    let batch = sqs_batch(&[
        sqs_record("m2", &ecr_push(REPO, Some("v1")), 1),
        sqs_record("m3", &ecr_action(REPO, "DELETE", "SUCCESS", None), 1),
    ]);
    let response = worker::run(&w.state, batch, None).await;
    assert_eq!(failed_ids(&response), ["m2"], "the delete is done at once");
    assert_eq!(
        w.queue.visibility_changes().last(),
        Some(&("rh-m2".to_owned(), secs(0)))
    );
    assert_eq!(w.cluster.patch_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_project_that_cannot_be_listed_does_not_hold_the_others_back() {
    let w = world(&[
        ("QUAYHOOK_ECR_PROJECTS", "kargo-demo,team-b"),
        ("QUAYHOOK_MAX_ATTEMPTS", "1"),
    ]);
    // Both indexes are cached; then team-b's is listed again and refused.
    let body = invoke_ecr(&w.state, &ecr_push(REPO, None)).await.unwrap();
    assert_eq!(
        names(&body, "refreshed"),
        ["kargo-demo/a", "kargo-demo/b", "kargo-demo/c", "team-b/w"]
    );
    tokio::time::advance(secs(61)).await;
    w.cluster
        .on_list()
        .then(Step::pass())
        .then(Step::fail(ClusterError::Forbidden(
            "cannot list warehouses in team-b".into(),
        )));
    w.cluster.reset_calls();
    let body = invoke_ecr(&w.state, &ecr_push(REPO, Some("v1.0.0")))
        .await
        .unwrap();
    assert_eq!(body["result"], "failed", "{body}");
    assert_eq!(body["unlisted"][0]["project"], "team-b", "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .starts_with("cannot list warehouses in team-b: "),
        "{body}"
    );
    assert_eq!(w.cluster.patched(), ["kargo-demo/a", "kargo-demo/c"]);
    assert!(w.queue.bodies().is_empty(), "a 403 is not queued");
}

#[tokio::test(start_paused = true)]
async fn every_ecr_event_writes_one_metric_record_with_source_ecr() {
    let w = world(&[("QUAYHOOK_METRICS", "true")]);
    let records: Rc<RefCell<Vec<Value>>> = Rc::default();
    let sink = records.clone();
    let _guard = quayhook::metrics::capture(move |line| {
        sink.borrow_mut()
            .push(serde_json::from_str(line).expect("a JSON record"));
    });
    invoke_ecr(&w.state, &ecr_push(REPO, Some("v1.0.0")))
        .await
        .unwrap();
    invoke_ecr(&w.state, &ecr_action(REPO, "DELETE", "SUCCESS", None))
        .await
        .unwrap();
    let batch = sqs_batch(&[
        sqs_record("m1", &ecr_push(REPO, Some("v2.0.0")), 1),
        sqs_record("m2", &ecr_push("other/app", Some("v1")), 1),
    ]);
    worker::run(&w.state, batch, None).await;

    let got: Vec<(String, u64, Option<String>, u64, u64)> = records
        .borrow()
        .iter()
        .map(|r| {
            (
                r["Source"].as_str().unwrap().to_owned(),
                r["Status"].as_u64().unwrap(),
                r["Project"].as_str().map(str::to_owned),
                r["Refreshed"].as_u64().unwrap(),
                r["Skipped"].as_u64().unwrap(),
            )
        })
        .collect();
    let ecr = |status, refreshed, skipped| {
        (
            "ECR".to_owned(),
            status,
            Some(NS.to_owned()),
            refreshed,
            skipped,
        )
    };
    assert_eq!(
        got,
        [
            ecr(200, 2, 1),
            ecr(200, 0, 0),
            // The worker: the push selecting all three, then the other repository (no
            // subscriber: done, nothing refreshed).
            ecr(200, 3, 0),
            ecr(200, 0, 0),
        ]
    );
}
