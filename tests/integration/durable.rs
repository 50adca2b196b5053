//! The durable path against real protocols: the webhook queues on moto's SQS through the real
//! `aws-sdk-sqs` when the local API server is down, flapping or slow, and the worker, fed the
//! `SqsEvent` Lambda would build from messages received with the SDK, finishes the work. The
//! tests play the event source mapping: receive, invoke the worker, delete what succeeded.
//! Every SQS body received is checked for secrets, and the logs for leaks.

use std::time::Duration;

use serde_json::{Value, json};

use quayhook::message::Message;
use quayhook::queue::{Queue, SqsQueue};
use quayhook::worker;
use quayhook_testkit::apiserver::Fault;
use quayhook_testkit::events::{failed_ids, push};
use quayhook_testkit::fixtures::{QUAY_REPO, wh};
use quayhook_testkit::harness::{Harness, Setup, deliver};
use quayhook_testkit::moto::sqs::{self, TestQueue};

const NS: &str = "kargo-demo";

fn names(body: &Value, list: &str) -> Vec<String> {
    body[list]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| w["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A harness whose state queues on a fresh moto queue (with a dead-letter queue after
/// `max_receive_count` receives), plus `env`.
async fn start(max_receive_count: u32, env: &[(&'static str, &str)]) -> (Harness, TestQueue) {
    let queue = sqs::create_queue_with_dlq(&sqs::client(), "quayhook", max_receive_count).await;
    let mut vars: Vec<(&'static str, String)> = vec![
        ("QUAYHOOK_QUEUE_URL", queue.url.clone()),
        ("QUAYHOOK_REQUEST_TIMEOUT", "2s".into()),
        ("QUAYHOOK_WORKER_BACKOFF_BASE", "1s".into()),
    ];
    vars.extend(env.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let h = Harness::start(Setup {
        namespaces: vec![NS],
        env: vars,
        warehouses: vec![
            wh(NS, "a").image(QUAY_REPO, json!({})).json(),
            wh(NS, "b")
                .image(QUAY_REPO, json!({"constraint": "^2.0.0"}))
                .json(),
            wh(NS, "c").image(QUAY_REPO, json!({})).json(),
            wh(NS, "other")
                .image("quay.io/mynamespace/other", json!({}))
                .json(),
        ],
        ..Setup::default()
    })
    .await;
    (h, queue)
}

/// Patches the API server received for one Warehouse.
fn patches(h: &Harness, name: &str) -> usize {
    h.api
        .requests()
        .iter()
        .filter(|r| r.verb == "patch" && r.name.as_deref() == Some(name))
        .count()
}

/// What the event source mapping does once: receive a batch, invoke the worker, delete the
/// records it did not report. Returns the failed message ids and the ids received.
async fn poll(h: &Harness, queue: &TestQueue) -> (Vec<String>, Vec<String>) {
    let client = sqs::client();
    let messages = sqs::receive(&client, &queue.url).await;
    for m in &messages {
        h.assert_clean_message(m.body().unwrap_or_default());
    }
    let received = messages
        .iter()
        .map(|m| m.message_id().unwrap_or_default().to_owned())
        .collect();
    if messages.is_empty() {
        return (Vec::new(), received);
    }
    let response = worker::run(&h.state, sqs::event(&messages, &queue.arn), None).await;
    sqs::settle(&client, &queue.url, &messages, &response).await;
    (failed_ids(&response), received)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_server_down_past_the_budget_is_queued_then_refreshed_by_the_worker_once() {
    let (h, queue) = start(5, &[]).await;
    let token = h.receiver(NS, "quay", "s3cret-outage", None).await;
    h.api.inject(Fault::hang());
    let started = std::time::Instant::now();
    let (status, body) = h.post(&token, &push(QUAY_REPO, &["v1.2.0"])).await;
    assert_eq!(status, 202, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "within the budget"
    );
    assert_eq!(body["msg"], "queued the push for a retry");
    assert_eq!(body["queued"], json!([]));
    assert_eq!(body["tags"], json!(["v1.2.0"]));
    for w in ["a", "b", "c"] {
        assert!(h.refreshed_at(NS, w).is_none(), "nothing refreshed yet");
    }

    h.api.clear_faults();
    h.api.reset_requests();
    let (failed, received) = poll(&h, &queue).await;
    assert_eq!(received.len(), 1);
    assert!(failed.is_empty(), "{failed:?}");
    // Exactly the Warehouses the push selected, once each.
    assert_eq!(
        ["a", "b", "c", "other"].map(|w| patches(&h, w)),
        [1, 0, 1, 0]
    );
    assert!(h.refreshed_at(NS, "a").is_some() && h.refreshed_at(NS, "c").is_some());
    assert_eq!(sqs::depth(&sqs::client(), &queue.url).await, (0, 0));
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flapping_api_server_refreshes_what_it_can_and_queues_the_rest() {
    let (h, queue) = start(5, &[]).await;
    let token = h.receiver(NS, "quay", "s3cret-flap", None).await;
    h.api
        .inject(Fault::status(503).on("PATCH", "/warehouses/a"));
    let (status, body) = h.post(&token, &push(QUAY_REPO, &["v1.2.0"])).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["msg"], "queued refresh of 1 warehouse(s)");
    assert_eq!(names(&body, "queued"), ["a"]);
    assert_eq!(names(&body, "refreshed"), ["c"]);
    assert!(body["cause"].as_str().unwrap().contains("503"), "{body}");

    h.api.clear_faults();
    h.api.reset_requests();
    let (failed, received) = poll(&h, &queue).await;
    assert_eq!((received.len(), failed.len()), (1, 0));
    assert_eq!(
        ["a", "c"].map(|w| patches(&h, w)),
        [1, 0],
        "only what was left"
    );
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_message_reaches_the_dead_letter_queue_after_max_receive_count() {
    // Every message asks the secret store again: the orphan is found gone on each receive.
    let (h, queue) = start(3, &[("QUAYHOOK_SECRETS_MISS_INTERVAL", "0s")]).await;
    h.receiver(NS, "quay", "s3cret-poison", None).await;
    let client = sqs::client();
    sqs::send_raw(&client, &queue.url, "this is not a quayhook message").await;
    // A v1 message whose receiver was removed: dead as well.
    let orphan = json!({"v": 1, "project": NS, "receiver": "removed", "pending": [{"namespace": NS, "name": "a"}]});
    sqs::send_raw(&client, &queue.url, &orphan.to_string()).await;

    // The worker makes each visible again at once; moto moves them on the receive after the
    // third.
    let mut rounds = 0;
    loop {
        let (failed, received) = poll(&h, &queue).await;
        if received.is_empty() {
            break;
        }
        assert_eq!(failed.len(), received.len(), "every record fails");
        rounds += 1;
        assert!(rounds <= 3, "still on the queue after maxReceiveCount");
    }
    assert_eq!(rounds, 3);
    let dead = sqs::receive(&client, &queue.dlq_url).await;
    for m in &dead {
        h.assert_clean_message(m.body().unwrap_or_default());
    }
    let mut bodies: Vec<&str> = dead.iter().filter_map(|m| m.body()).collect();
    bodies.sort_unstable();
    let orphan = orphan.to_string();
    let mut want = [orphan.as_str(), "this is not a quayhook message"];
    want.sort_unstable();
    assert_eq!(bodies, want);
    assert_eq!(patches(&h, "a"), 0);
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_delivery_of_one_message_is_harmless() {
    let (h, queue) = start(5, &[]).await;
    h.receiver(NS, "quay", "s3cret-dup", None).await;
    let client = sqs::client();
    let sqs_queue = SqsQueue::new(client.clone(), queue.url.clone());
    let message = Message::decode(
        &json!({"v": 1, "project": NS, "receiver": "quay", "pending": [{"namespace": NS, "name": "a"}]})
            .to_string(),
    )
    .unwrap();
    sqs_queue.send(&message).await.unwrap();
    let messages = sqs::receive(&client, &queue.url).await;
    assert_eq!(messages.len(), 1);
    h.assert_clean_message(messages[0].body().unwrap_or_default());
    // The same message twice in one batch (SQS delivers at least once).
    let twice = [messages[0].clone(), messages[0].clone()];
    let event = sqs::event(&twice, &queue.arn);
    let response = worker::run(&h.state, event.clone(), None).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(patches(&h, "a"), 1, "one patch for both");
    let stamp = h.refreshed_at(NS, "a").unwrap();

    // Delivered again after a lost delete: one more refresh with a new value, no failure.
    let response = worker::run(&h.state, event, None).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(patches(&h, "a"), 2);
    assert_ne!(h.refreshed_at(NS, "a").unwrap(), stamp);
    sqs::settle(&client, &queue.url, &messages, &response).await;
    assert_eq!(sqs::depth(&client, &queue.url).await, (0, 0));
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partial_batch_failure_returns_only_the_failed_records_and_backs_them_off() {
    let (h, queue) = start(5, &[("QUAYHOOK_MAX_ATTEMPTS", "1")]).await;
    h.receiver(NS, "quay", "s3cret-partial", None).await;
    let client = sqs::client();
    for name in ["a", "c"] {
        let body = json!({"v": 1, "project": NS, "receiver": "quay", "pending": [{"namespace": NS, "name": name}]});
        sqs::send_raw(&client, &queue.url, &body.to_string()).await;
    }
    h.api
        .inject(Fault::status(503).on("PATCH", "/warehouses/c"));
    let messages = sqs::receive(&client, &queue.url).await;
    assert_eq!(messages.len(), 2);
    for m in &messages {
        h.assert_clean_message(m.body().unwrap_or_default());
    }
    let response = worker::run(&h.state, sqs::event(&messages, &queue.arn), None).await;
    let for_c = messages
        .iter()
        .find(|m| m.body().unwrap_or_default().contains(r#""name":"c""#))
        .and_then(|m| m.message_id())
        .unwrap()
        .to_owned();
    assert_eq!(failed_ids(&response), std::slice::from_ref(&for_c));
    sqs::settle(&client, &queue.url, &messages, &response).await;
    // Backed off for QUAYHOOK_WORKER_BACKOFF_BASE (1s): in flight, not visible yet.
    assert_eq!(sqs::depth(&client, &queue.url).await, (0, 1));
    assert!(sqs::receive(&client, &queue.url).await.is_empty());

    h.api.clear_faults();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (failed, received) = poll(&h, &queue).await;
    assert_eq!((received, failed), (vec![for_c], Vec::<String>::new()));
    assert_eq!(sqs::depth(&client, &queue.url).await, (0, 0));
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_queue_answers_as_without_one() {
    let (h, _queue) = start(5, &[("QUAYHOOK_MAX_ATTEMPTS", "1")]).await;
    let token = h.receiver(NS, "quay", "s3cret-noqueue", None).await;
    // The same configuration, with an SQS client whose endpoint is a closed port.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = h.state.config.queue.as_ref().unwrap().url.clone();
    let state = h
        .state_with(h.state.config.clone(), h.state.secrets().clone())
        .with_queue(SqsQueue::new(
            sqs::client_for(&format!("http://127.0.0.1:{closed}")),
            url,
        ));
    h.api.inject(Fault::drop());
    let (status, body) = deliver(&state, &token, &push(QUAY_REPO, &["v1.2.0"])).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("cannot list warehouses")
    );
    h.api.clear_faults();
    h.api
        .inject(Fault::status(503).on("PATCH", "/warehouses/a"));
    let (status, body) = deliver(&state, &token, &push(QUAY_REPO, &["v1.2.0"])).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(names(&body, "failed"), ["a"]);
    assert_eq!(names(&body, "refreshed"), ["c"]);
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warehouse_deleted_before_the_worker_runs_is_dropped_not_retried() {
    let (h, queue) = start(5, &[]).await;
    let token = h.receiver(NS, "quay", "s3cret-deleted", None).await;
    h.api.inject(Fault::status(503).on_method("PATCH"));
    let (status, body) = h.post(&token, &push(QUAY_REPO, &["v1.2.0"])).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(names(&body, "queued"), ["a", "c"]);
    h.api.clear_faults();
    h.api.delete("warehouses", Some(NS), "c");

    h.api.reset_requests();
    let (failed, received) = poll(&h, &queue).await;
    assert_eq!((received.len(), failed.len()), (1, 0), "a 404 is done");
    assert_eq!(["a", "c"].map(|w| patches(&h, w)), [1, 1]);
    assert_eq!(sqs::depth(&sqs::client(), &queue.url).await, (0, 0));
    h.assert_no_leaks();
}
