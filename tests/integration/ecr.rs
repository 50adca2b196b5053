//! ECR push events from EventBridge against moto and the local API server: Kargo's tag
//! filters as for a Quay push, nothing for a failed push or a delete, the configured scope
//! (projects, repository prefixes, refusal when unset), and the durable path: the event
//! wrapped in SQS through the worker, and a cluster outage queued by the webhook function or,
//! without a queue, answered with a function error so Lambda retries it.

use std::time::Duration;

use serde_json::{Value, json};

use quayhook::worker;
use quayhook_testkit::apiserver::Fault;
use quayhook_testkit::events::{ECR_REGISTRY, ecr_action, ecr_push, sqs_batch, sqs_record};
use quayhook_testkit::fixtures::wh;
use quayhook_testkit::harness::{Harness, Setup, invoke_ecr};
use quayhook_testkit::moto::sqs;

const NS: &str = "kargo-demo";
const REPO: &str = "kargo-demo/guestbook";

fn image() -> String {
    format!("{ECR_REGISTRY}/{REPO}")
}

/// `namespace/name` of every Warehouse in one list of an answer.
fn names(body: &Value, list: &str) -> Vec<String> {
    body[list]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            format!(
                "{}/{}",
                w["namespace"].as_str().unwrap_or_default(),
                w["name"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

/// Warehouses on the ECR repository: `any` (every tag), `v1` (`^1.0.0`), `v2` (`^2.0.0`),
/// `cased` (the same repository written with an upper-case registry host: Kargo's
/// normalization makes it the same URL), `chart` (an OCI chart in the same registry) and
/// `other` (another repository).
fn warehouses(ns: &str) -> Vec<Value> {
    vec![
        wh(ns, "any").image(&image(), json!({})).json(),
        wh(ns, "v1")
            .image(&image(), json!({"constraint": "^1.0.0"}))
            .json(),
        wh(ns, "v2")
            .image(&image(), json!({"constraint": "^2.0.0"}))
            .json(),
        wh(ns, "cased")
            .image(
                &format!("123456789012.DKR.ECR.us-east-1.AMAZONAWS.com/{REPO}"),
                json!({"constraint": "^1.0.0"}),
            )
            .json(),
        wh(ns, "chart")
            .chart(&format!("oci://{ECR_REGISTRY}/charts/guestbook"), "^0.3.0")
            .json(),
        wh(ns, "other")
            .image(&format!("{ECR_REGISTRY}/kargo-demo/other"), json!({}))
            .json(),
    ]
}

/// A harness whose ECR scope is `projects` (and `prefixes`, when given), the service account
/// granted `namespaces`, with [`warehouses`] in each of them.
async fn start(
    namespaces: Vec<&'static str>,
    projects: &str,
    prefixes: Option<&str>,
    extra: &[(&'static str, String)],
) -> Harness {
    let mut env = vec![("QUAYHOOK_ECR_PROJECTS", projects.to_owned())];
    if let Some(prefixes) = prefixes {
        env.push(("QUAYHOOK_ECR_REPOSITORY_PREFIXES", prefixes.to_owned()));
    }
    env.extend_from_slice(extra);
    Harness::start(Setup {
        warehouses: namespaces.iter().flat_map(|ns| warehouses(ns)).collect(),
        namespaces,
        env,
        ..Setup::default()
    })
    .await
}

/// Warehouses the API server was asked to patch, `namespace/name`, sorted.
fn patched(h: &Harness) -> Vec<String> {
    let mut out: Vec<String> = h
        .api
        .requests()
        .iter()
        .filter(|r| r.verb == "patch" && r.resource == "warehouses")
        .map(|r| {
            format!(
                "{}/{}",
                r.namespace.as_deref().unwrap_or_default(),
                r.name.as_deref().unwrap_or_default()
            )
        })
        .collect();
    out.sort_unstable();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn kargos_tag_filters_apply_and_an_untagged_push_refreshes_every_subscriber() {
    let h = start(vec![NS], NS, None, &[]).await;

    let body = h.send_ecr(&ecr_push(REPO, Some("v1.4.0"))).await.unwrap();
    assert_eq!(body["result"], "done", "{body}");
    assert_eq!(body["msg"], "refreshed 3 warehouse(s)");
    assert_eq!(body["repositories"], json!([image()]));
    assert_eq!(body["tags"], json!(["v1.4.0"]));
    assert_eq!(
        names(&body, "refreshed"),
        ["kargo-demo/any", "kargo-demo/cased", "kargo-demo/v1"]
    );
    assert_eq!(names(&body, "skipped"), ["kargo-demo/v2"]);
    assert_eq!(
        body["skipped"][0]["reasons"][0],
        "tag v1.4.0 does not satisfy ^2.0.0"
    );
    assert!(body.get("receiver").is_none(), "{body}");
    assert!(h.refreshed_at(NS, "v1").is_some());
    assert!(h.refreshed_at(NS, "v2").is_none());
    assert!(h.refreshed_at(NS, "other").is_none());

    // A push by digest only: no qualifier, so every subscriber (reference §5.8).
    h.api.reset_requests();
    let body = h.send_ecr(&ecr_push(REPO, None)).await.unwrap();
    assert_eq!(body["result"], "done", "{body}");
    assert_eq!(body["tags"], json!([]));
    assert_eq!(
        names(&body, "refreshed"),
        [
            "kargo-demo/any",
            "kargo-demo/cased",
            "kargo-demo/v1",
            "kargo-demo/v2"
        ]
    );
    assert_eq!(h.api.count("list", "warehouses"), 0, "the cached index");

    // A chart pushed to the same registry, as Kargo normalizes chart URLs.
    let body = h
        .send_ecr(&ecr_push("charts/guestbook", Some("0.3.1")))
        .await
        .unwrap();
    assert_eq!(names(&body, "refreshed"), ["kargo-demo/chart"], "{body}");
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_push_or_a_delete_refreshes_nothing() {
    let h = start(vec![NS], NS, None, &[]).await;
    for (event, reason) in [
        (
            ecr_action(REPO, "PUSH", "FAILURE", Some("v1.4.0")),
            "the push did not succeed: result FAILURE",
        ),
        (
            ecr_action(REPO, "DELETE", "SUCCESS", Some("v1.4.0")),
            "not a push: action-type DELETE",
        ),
    ] {
        let body = h.send_ecr(&event).await.unwrap();
        assert_eq!(body["result"], "ignored", "{body}");
        assert_eq!(body["reason"], reason);
        assert!(body.get("refreshed").is_none(), "{body}");
    }
    assert!(patched(&h).is_empty());
    assert_eq!(h.api.count("list", "warehouses"), 0, "not even listed");
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_configured_projects_and_prefixes_are_ever_refreshed() {
    // The service account may patch both namespaces: what keeps team-b out is the scope.
    let h = start(vec![NS, "team-b"], NS, Some("kargo-demo/,charts/"), &[]).await;
    let body = h.send_ecr(&ecr_push(REPO, Some("v1.4.0"))).await.unwrap();
    assert_eq!(body["result"], "done", "{body}");
    assert_eq!(
        patched(&h),
        ["kargo-demo/any", "kargo-demo/cased", "kargo-demo/v1"]
    );
    assert!(h.refreshed_at("team-b", "any").is_none());
    assert_eq!(
        h.api
            .requests()
            .iter()
            .filter(|r| r.verb == "list")
            .map(|r| r.namespace.clone())
            .collect::<Vec<_>>(),
        [Some(NS.to_owned())],
        "only the project in scope is listed"
    );

    // A repository outside the prefixes is ignored before anything is listed.
    h.api.reset_requests();
    let body = h
        .send_ecr(&ecr_push("other-team/guestbook", Some("v1.4.0")))
        .await
        .unwrap();
    assert_eq!(body["result"], "ignored", "{body}");
    assert_eq!(
        body["reason"],
        "repository outside QUAYHOOK_ECR_REPOSITORY_PREFIXES"
    );
    assert!(h.api.requests().is_empty());

    // Without QUAYHOOK_ECR_PROJECTS, the same event is refused.
    let mut config = h.state.config.clone();
    config.ecr = None;
    let unscoped = h.state_with(config, h.state.secrets().clone());
    let body = invoke_ecr(&unscoped, &ecr_push(REPO, Some("v1.4.0")))
        .await
        .unwrap();
    assert_eq!(body["result"], "refused", "{body}");
    assert!(h.api.requests().is_empty(), "nothing listed or patched");
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_namespace_with_a_star_in_one_cluster_wide_list() {
    let h = Harness::start(Setup {
        cluster: true,
        warehouses: [NS, "team-b"]
            .iter()
            .flat_map(|ns| warehouses(ns))
            .collect(),
        env: vec![("QUAYHOOK_ECR_PROJECTS", "*".into())],
        ..Setup::default()
    })
    .await;
    let body = h.send_ecr(&ecr_push(REPO, Some("v2.0.1"))).await.unwrap();
    assert_eq!(body["result"], "done", "{body}");
    assert_eq!(
        names(&body, "refreshed"),
        ["kargo-demo/any", "kargo-demo/v2", "team-b/any", "team-b/v2"]
    );
    assert_eq!(h.api.count("list", "warehouses"), 1);
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sqs_wrapped_event_through_the_worker_refreshes_the_same_warehouses() {
    let queue = sqs::create_queue_with_dlq(&sqs::client(), "ecr", 5).await;
    let h = start(
        vec![NS],
        NS,
        Some("kargo-demo/"),
        &[("QUAYHOOK_QUEUE_URL", queue.url.clone())],
    )
    .await;
    let direct = h.send_ecr(&ecr_push(REPO, Some("v1.4.0"))).await.unwrap();
    let by_lambda = patched(&h);
    assert_eq!(by_lambda, names(&direct, "refreshed"));

    // As the durable path's rule delivers it: the envelope as the message body.
    h.api.reset_requests();
    let client = sqs::client();
    sqs::send_raw(&client, &queue.url, &ecr_push(REPO, Some("v1.4.0"))).await;
    let messages = sqs::receive(&client, &queue.url).await;
    assert_eq!(messages.len(), 1);
    let response = worker::run(&h.state, sqs::event(&messages, &queue.arn), None).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    sqs::settle(&client, &queue.url, &messages, &response).await;
    assert_eq!(patched(&h), by_lambda, "the same Warehouses");
    assert_eq!(sqs::depth(&client, &queue.url).await, (0, 0));

    // The same scope rules: out of the prefixes is done at once (deleted), not retried.
    h.api.reset_requests();
    let batch = sqs_batch(&[
        sqs_record("m-out", &ecr_push("other-team/guestbook", Some("v1")), 1),
        sqs_record("m-delete", &ecr_action(REPO, "DELETE", "SUCCESS", None), 1),
        sqs_record(
            "m-bad",
            r#"{"source":"aws.ecr","detail-type":"ECR Image Action"}"#,
            1,
        ),
    ]);
    let response = worker::run(&h.state, batch, None).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        ["m-bad"],
        "only the malformed one, to the dead-letter queue"
    );
    assert!(patched(&h).is_empty());
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_outage_is_queued_by_the_webhook_function_and_finished_by_the_worker() {
    let queue = sqs::create_queue_with_dlq(&sqs::client(), "ecr-outage", 5).await;
    let h = start(
        vec![NS],
        NS,
        None,
        &[
            ("QUAYHOOK_QUEUE_URL", queue.url.clone()),
            ("QUAYHOOK_REQUEST_TIMEOUT", "2s".into()),
        ],
    )
    .await;
    h.api.inject(Fault::hang());
    let started = std::time::Instant::now();
    let body = h.send_ecr(&ecr_push(REPO, Some("v1.4.0"))).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "within the budget"
    );
    assert_eq!(body["result"], "queued", "{body}");
    assert_eq!(body["msg"], "queued the push for a retry");
    assert!(body["cause"].is_string(), "{body}");

    h.api.clear_faults();
    h.api.reset_requests();
    let client = sqs::client();
    let messages = sqs::receive(&client, &queue.url).await;
    assert_eq!(messages.len(), 1);
    for m in &messages {
        h.assert_clean_message(m.body().unwrap_or_default());
    }
    let response = worker::run(&h.state, sqs::event(&messages, &queue.arn), None).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(
        patched(&h),
        ["kargo-demo/any", "kargo-demo/cased", "kargo-demo/v1"]
    );
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_queue_a_cluster_outage_fails_the_invocation_so_lambda_retries() {
    let h = start(vec![NS], NS, None, &[("QUAYHOOK_MAX_ATTEMPTS", "1".into())]).await;
    h.api.inject(Fault::status(503).on_method("GET"));
    let error = h
        .send_ecr(&ecr_push(REPO, Some("v1.4.0")))
        .await
        .expect_err("a function error");
    assert!(
        error.starts_with("ECR event not handled, retry later: "),
        "{error}"
    );
    assert!(error.contains("503"), "{error}");

    // A permanent failure is no reason to retry: answered `failed`, not a function error.
    h.api.clear_faults();
    h.api.inject(Fault::status(403).on_method("PATCH"));
    let body = h.send_ecr(&ecr_push(REPO, Some("v1.4.0"))).await.unwrap();
    assert_eq!(body["result"], "failed", "{body}");
    assert_eq!(body["error"], "failed to refresh 3 of 3 warehouses");

    // Once the API server is back, the retried event refreshes.
    h.api.clear_faults();
    let body = h.send_ecr(&ecr_push(REPO, Some("v1.4.0"))).await.unwrap();
    assert_eq!(body["result"], "done", "{body}");
    h.assert_no_leaks();
}
