//! HTTP/2 to the cluster API (issue 10): one connection per warm Lambda, a push's PATCHes as
//! concurrent streams on it, HTTP/1.1 when the server offers nothing else, and a dead pooled
//! connection replaced without a failed attempt. Counts are asserted, never timings: the
//! latency below only holds requests open so that concurrency can be observed.

use std::time::Duration;

use serde_json::{Value, json};

use quayhook_testkit::apiserver::{Alpn, ConnectionInfo};
use quayhook_testkit::events::push;
use quayhook_testkit::fixtures::{QUAY_REPO, wh};
use quayhook_testkit::harness::{Harness, Setup};

const NS: &str = "kargo-demo";

/// `n` Warehouses subscribed to the pushed repository.
fn subscribers(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            wh(NS, &format!("w{i:02}"))
                .image(QUAY_REPO, json!({}))
                .json()
        })
        .collect()
}

/// `n` subscribers, and a failed call is never retried: a push that succeeds made no attempt
/// that failed.
fn setup(n: usize) -> Setup {
    Setup {
        namespaces: vec![NS],
        warehouses: subscribers(n),
        env: vec![("QUAYHOOK_MAX_ATTEMPTS", "1".into())],
        ..Setup::default()
    }
}

/// The answer's count of refreshed Warehouses (the lists in it stop at 20 entries).
fn refreshed(body: &Value) -> usize {
    body["msg"]
        .as_str()
        .and_then(|m| m.strip_prefix("refreshed "))
        .and_then(|m| m.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a refresh answer: {body}"))
}

fn protocols(log: &[ConnectionInfo]) -> Vec<&str> {
    log.iter().map(|c| c.protocol.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_push_lists_and_patches_on_one_connection() {
    let h = Harness::start(setup(50)).await;
    let token = h.receiver(NS, "quay", "s3cret-h2-first", None).await;
    assert_eq!(h.api.connections(), 0);

    let (status, body) = h.post(&token, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(refreshed(&body), 50);
    assert_eq!(h.api.count("list", "warehouses"), 1);
    assert_eq!(h.api.count("patch", "warehouses"), 50);
    let log = h.api.connection_log();
    assert_eq!(protocols(&log), ["h2"], "one connection, HTTP/2");
    assert_eq!(log[0].requests, 51, "the list and the 50 patches");
    assert!(log[0].open, "kept for the next push");
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warm_push_of_50_warehouses_is_50_concurrent_streams_on_the_open_connection() {
    let h = Harness::start(setup(50)).await;
    let token = h.receiver(NS, "quay", "s3cret-h2-warm", None).await;
    assert_eq!(h.post(&token, &push(QUAY_REPO, &["v1"])).await.0, 200);
    let before = h.api.connections();

    h.api.reset_requests();
    h.api.set_latency(Duration::from_millis(300));
    let (status, body) = h.post(&token, &push(QUAY_REPO, &["v2"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(refreshed(&body), 50);
    assert_eq!(h.api.count("list", "warehouses"), 0);
    assert_eq!(h.api.count("patch", "warehouses"), 50);
    assert_eq!(h.api.connections(), before, "no new connection");
    assert_eq!(h.api.max_concurrency(), 50, "one wave of 50 streams");
    let log = h.api.connection_log();
    assert_eq!(protocols(&log), ["h2"]);
    assert_eq!(
        log[0].requests,
        51 + 50,
        "both pushes on the one connection"
    );
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn against_an_http1_only_api_server_it_falls_back_without_an_extra_handshake() {
    let h = Harness::start(Setup {
        alpn: Alpn::Http1Only,
        ..setup(3)
    })
    .await;
    let token = h.receiver(NS, "quay", "s3cret-h1", None).await;
    // Held open so the three patches need three HTTP/1.1 connections at once.
    h.api.set_latency(Duration::from_millis(200));

    let (status, body) = h.post(&token, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(refreshed(&body), 3);
    let log = h.api.connection_log();
    assert_eq!(
        protocols(&log),
        ["http/1.1"; 3],
        "the connection that found out there is no h2 is the list's, reused by one patch; \
         two more for the other patches in flight"
    );
    assert_eq!(log[0].requests, 2);

    h.api.reset_requests();
    let (status, body) = h.post(&token, &push(QUAY_REPO, &["v2"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(refreshed(&body), 3);
    assert_eq!(
        h.api.connections(),
        3,
        "warm: the pooled connections serve it"
    );
    assert_eq!(h.api.max_concurrency(), 3);
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silently_dropped_connection_is_replaced_without_a_failed_attempt() {
    // At most one attempt per call (`setup`): had the dead connection cost an attempt, every
    // patch would have failed and the push would be a 500.
    let h = Harness::start(setup(20)).await;
    let token = h.receiver(NS, "quay", "s3cret-h2-dead", None).await;
    assert_eq!(h.post(&token, &push(QUAY_REPO, &["v1"])).await.0, 200);
    assert_eq!(h.api.connections(), 1);

    // A load balancer's idle cut while the Lambda was frozen: the client is not told.
    h.api.drop_connections();
    h.api.reset_requests();
    let (status, body) = h.post(&token, &push(QUAY_REPO, &["v2"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(refreshed(&body), 20);
    assert_eq!(body.get("failed"), None, "{body}");
    assert_eq!(h.api.count("patch", "warehouses"), 20);
    let log = h.api.connection_log();
    assert_eq!(protocols(&log), ["h2", "h2"], "exactly one new connection");
    assert!(!log[0].open, "the cut connection closed under the push");
    assert_eq!(
        log[1].requests, 20,
        "every patch was sent again on the new one"
    );
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_the_server_closed_while_idle_is_replaced_by_one() {
    let h = Harness::start(setup(20)).await;
    let token = h.receiver(NS, "quay", "s3cret-h2-closed", None).await;
    assert_eq!(h.post(&token, &push(QUAY_REPO, &["v1"])).await.0, 200);

    // An API server restart (or its idle GOAWAY): the client sees the close while idle, or,
    // if the push comes first, on sending; either way one connection replaces it.
    h.api.close_connections();
    let (status, body) = h.post(&token, &push(QUAY_REPO, &["v2"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(refreshed(&body), 20);
    let log = h.api.connection_log();
    assert_eq!(protocols(&log), ["h2", "h2"]);
    assert_eq!(log[1].requests, 20);
    h.assert_no_leaks();
}
