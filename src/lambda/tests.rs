//! Unit tests of the Lambda edge: every recorded event in `events/` replayed through the
//! conversion and through [`invoke`] with in-memory adapters (the test kit cannot be used from
//! `src/`: it would see a second copy of this crate).

use super::*;
use crate::cluster::{ClusterError, PageSink, WarehouseStore};
use crate::config::Config;
use crate::secrets::{ReceiverSecret, Receivers, SecretsError};
use kargo_match::token::SecretString;
use kargo_match::warehouse::WarehouseKey;
use lambda_http::lambda_runtime::Context;
use serde_json::json;

/// The token of `events/*.json` (kargo_match's worked example).
const TOKEN: &str = "3e6315f59f25bc201ec77ebb7818c057c4406a4b58d930f27d651b6af36395a9";
const UNKNOWN: &str = "5f2b1c0e9d7a4c3b8e6f1a2d3c4b5a69788766554433221100ffeeddccbbaa99";

/// Every file in `events/`: name, text.
const EVENTS: [(&str, &str); 16] = [
    ("push.json", include_str!("../../events/push.json")),
    (
        "push-base64.json",
        include_str!("../../events/push-base64.json"),
    ),
    (
        "push-chart.json",
        include_str!("../../events/push-chart.json"),
    ),
    (
        "push-rest-v1.json",
        include_str!("../../events/push-rest-v1.json"),
    ),
    (
        "test-notification.json",
        include_str!("../../events/test-notification.json"),
    ),
    (
        "malformed-body.json",
        include_str!("../../events/malformed-body.json"),
    ),
    (
        "unknown-token.json",
        include_str!("../../events/unknown-token.json"),
    ),
    (
        "bad-base64.json",
        include_str!("../../events/bad-base64.json"),
    ),
    ("bad-host.json", include_str!("../../events/bad-host.json")),
    // The worker's: a queued refresh of the demo Warehouse `guestbook`.
    (
        "sqs-refresh.json",
        include_str!("../../events/sqs-refresh.json"),
    ),
    // EventBridge's ECR events, and the worker's SQS-wrapped one.
    (
        "ecr-push-tagged.json",
        include_str!("../../events/ecr-push-tagged.json"),
    ),
    (
        "ecr-push-untagged.json",
        include_str!("../../events/ecr-push-untagged.json"),
    ),
    (
        "ecr-push-failed.json",
        include_str!("../../events/ecr-push-failed.json"),
    ),
    (
        "ecr-push-out-of-scope.json",
        include_str!("../../events/ecr-push-out-of-scope.json"),
    ),
    (
        "sqs-ecr-push.json",
        include_str!("../../events/sqs-ecr-push.json"),
    ),
    // SAM's `--env-vars` file, not an event: what a stray test invoke would send.
    ("env.json", include_str!("../../events/env.json")),
];

/// The receiver of `events/*.json`, and a kubeconfig the fake cluster accepts.
struct OneReceiver;

impl SecretSource for OneReceiver {
    async fn receivers(&self) -> Result<Receivers, SecretsError> {
        Ok(Receivers {
            receivers: vec![ReceiverSecret {
                source: "test".into(),
                project: "kargo-demo".into(),
                receiver: "q-wh-receiver".into(),
                secret: SecretString::new("mysecret"),
                previous_secret: None,
            }],
            problems: Vec::new(),
        })
    }

    async fn kubeconfig(&self) -> Result<SecretString, SecretsError> {
        Ok(SecretString::new("kubeconfig"))
    }
}

/// A cluster without Warehouses: a push is answered 200, `refreshed 0 warehouse(s)`.
struct EmptyCluster;

/// A cluster whose API server answers every list 503: a transient failure.
struct DownCluster;

impl Connector for DownCluster {
    type Store = DownCluster;

    async fn connect(&self, _: &SecretString) -> Result<DownCluster, ClusterError> {
        Ok(DownCluster)
    }
}

impl WarehouseStore for DownCluster {
    async fn list(&self, _: Option<&str>, _: u32, _: PageSink<'_>) -> Result<(), ClusterError> {
        Err(ClusterError::Status {
            code: 503,
            message: "etcd leader changed".into(),
        })
    }

    async fn patch(&self, _: &WarehouseKey, _: &Value) -> Result<(), ClusterError> {
        Ok(())
    }
}

impl Connector for EmptyCluster {
    type Store = EmptyCluster;

    async fn connect(&self, _: &SecretString) -> Result<EmptyCluster, ClusterError> {
        Ok(EmptyCluster)
    }
}

impl WarehouseStore for EmptyCluster {
    async fn list(&self, _: Option<&str>, _: u32, _: PageSink<'_>) -> Result<(), ClusterError> {
        Ok(())
    }

    async fn patch(&self, _: &WarehouseKey, _: &Value) -> Result<(), ClusterError> {
        Ok(())
    }
}

fn state() -> State<OneReceiver, EmptyCluster> {
    state_for(None)
}

/// The function with `_HANDLER` `handler` (`None`: unset, the webhook), ECR events scoped
/// to `kargo-demo` and repositories under `kargo-demo/` (those of `events/ecr-*.json`).
fn state_for(handler: Option<&str>) -> State<OneReceiver, EmptyCluster> {
    State::new(config_for(handler, true), OneReceiver, EmptyCluster)
}

fn config_for(handler: Option<&str>, ecr: bool) -> Config {
    Config::from_lookup(|var| match var {
        "QUAYHOOK_RECEIVER_SECRET_IDS" => Some("test/receiver".into()),
        "QUAYHOOK_KUBECONFIG_SECRET_ID" => Some("test/kubeconfig".into()),
        "QUAYHOOK_QUEUE_URL" => Some("https://sqs.us-east-1.amazonaws.com/123456789012/q".into()),
        "QUAYHOOK_ECR_PROJECTS" if ecr => Some("kargo-demo".into()),
        "QUAYHOOK_ECR_REPOSITORY_PREFIXES" if ecr => Some("kargo-demo/".into()),
        "_HANDLER" => handler.map(str::to_owned),
        _ => None,
    })
    .expect("test configuration")
}

fn event(name: &str) -> Value {
    let (_, text) = EVENTS
        .iter()
        .find(|(n, _)| *n == name)
        .expect("a recorded event");
    serde_json::from_str(text).expect("JSON")
}

fn delivery(name: &str) -> Result<Delivery, EventError> {
    Event::from_value(event(name))?.into_delivery(None)
}

async fn reply(payload: Value) -> (Reply, Value) {
    let reply = invoke(&state(), LambdaEvent::new(payload, Context::default())).await;
    let wire = serde_json::to_value(&reply).expect("a reply serializes");
    (reply, wire)
}

#[test]
fn the_table_holds_every_recorded_event() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/events");
    for entry in std::fs::read_dir(dir).expect("events/") {
        let name = entry.expect("entry").file_name();
        let name = name.to_string_lossy();
        assert!(
            EVENTS.iter().any(|(n, _)| *n == name),
            "{name} is not replayed"
        );
    }
}

#[test]
fn recorded_events_convert_to_the_head_and_body_api_gateway_sent() {
    let quay = format!("/quay/{TOKEN}");
    for (name, shape, path, length) in [
        ("push.json", Shape::HttpV2, quay.as_str(), Some(253)),
        ("push-base64.json", Shape::HttpV2, &quay, Some(340)),
        ("push-chart.json", Shape::HttpV2, &quay, Some(272)),
        // `path`, not lambda_http's `/prod/quay/…`; no Content-Length header.
        ("push-rest-v1.json", Shape::RestV1, &quay, None),
        ("test-notification.json", Shape::HttpV2, &quay, Some(291)),
        ("malformed-body.json", Shape::HttpV2, &quay, Some(74)),
        (
            "unknown-token.json",
            Shape::HttpV2,
            &format!("/quay/{UNKNOWN}"),
            Some(253),
        ),
    ] {
        let read = Event::from_value(event(name)).expect(name);
        assert_eq!(read.shape(), Some(shape), "{name}");
        let Delivery { head, body } = read.into_delivery(None).expect(name);
        assert_eq!(head.method, Method::POST, "{name}");
        assert_eq!(head.path, path, "{name}");
        assert_eq!(head.content_length, length, "{name}");
        assert_eq!(head.remaining, None, "{name}");
        let sent = event(name)["body"].as_str().expect("a body").to_owned();
        if name == "push-base64.json" {
            assert_eq!(body, STANDARD.decode(&sent).expect("base64"), "{name}");
            assert!(body.starts_with(b"{"), "decoded to the push JSON");
        } else {
            assert_eq!(body, sent.into_bytes(), "{name}");
        }
    }
}

#[test]
fn events_that_panic_lambda_http_are_event_errors() {
    for (name, kind) in [
        ("bad-base64.json", ErrorKind::Base64),
        ("bad-host.json", ErrorKind::Host),
        ("env.json", ErrorKind::Unrecognized),
    ] {
        let error = delivery(name).expect_err(name);
        assert_eq!(error.kind(), &kind, "{name}");
    }
}

#[tokio::test]
async fn every_recorded_event_gets_its_status_in_its_shape() {
    let invalid = "{\"error\":\"invalid request\"}\n";
    for (name, status, v2) in [
        ("push.json", 200, true),
        ("push-base64.json", 200, true),
        ("push-chart.json", 200, true),
        ("push-rest-v1.json", 200, false),
        ("test-notification.json", 200, true),
        ("malformed-body.json", 400, true),
        ("unknown-token.json", 404, true),
        ("bad-base64.json", 400, true),
        ("bad-host.json", 400, true),
        ("env.json", 400, false),
    ] {
        let (reply, wire) = reply(event(name)).await;
        assert_eq!(reply.status(), Some(status), "{name}");
        assert_eq!(
            wire["statusCode"], status,
            "{name}: sam invoke reads statusCode"
        );
        assert_eq!(wire["isBase64Encoded"], false, "{name}");
        assert_eq!(
            wire["headers"]["content-type"], "application/json",
            "{name}"
        );
        assert_eq!(wire.get("cookies").is_some(), v2, "{name}: the v2 shape");
        let body = reply.body().expect("a body");
        assert!(body.ends_with('\n'), "{name}");
        if name.starts_with("bad-") || name == "env.json" {
            assert_eq!(body, invalid, "{name}");
        }
        if status == 200 {
            assert!(body.contains("refreshed 0 warehouse(s)"), "{name}: {body}");
        }
    }
}

#[tokio::test]
async fn a_raw_path_without_its_leading_slash_is_404() {
    // `:quay/…` is fuzz/regressions/lambda_event/rawpath-without-slash.json: lambda_http
    // 1.3.2 panics on it (`https://{host}:quay/…` has an invalid port).
    for raw_path in [format!("quay/{TOKEN}"), format!(":quay/{TOKEN}")] {
        let mut payload = event("push.json");
        payload["rawPath"] = json!(raw_path);
        let (reply, _) = reply(payload).await;
        let answer = (reply.status(), reply.body());
        assert_eq!(answer, (Some(404), Some("{}\n")), "{raw_path}");
    }
}

#[tokio::test]
async fn payloads_that_are_no_api_gateway_event_are_400_in_the_shape_they_claim() {
    let mut invalid_method = event("push.json");
    invalid_method["requestContext"]["http"]["method"] = json!("PO ST");
    let mut empty_method = event("push-rest-v1.json");
    empty_method["httpMethod"] = json!("");
    let mut bad_header = event("push.json");
    bad_header["headers"]["x bad"] = json!("1");
    let mut v2_without_context = event("push.json");
    v2_without_context["requestContext"] = json!({});
    for (payload, shape, kind) in [
        (json!(null), Shape::RestV1, ErrorKind::Unrecognized),
        (json!([1, 2]), Shape::RestV1, ErrorKind::Unrecognized),
        (json!("text"), Shape::RestV1, ErrorKind::Unrecognized),
        (
            json!({ "Records": [] }),
            Shape::RestV1,
            ErrorKind::Unrecognized,
        ),
        (
            json!({ "version": "2.0" }),
            Shape::HttpV2,
            ErrorKind::Unrecognized,
        ),
        (v2_without_context, Shape::HttpV2, ErrorKind::Unrecognized),
        (invalid_method, Shape::HttpV2, ErrorKind::Method),
        (empty_method, Shape::RestV1, ErrorKind::Method),
        (bad_header, Shape::HttpV2, ErrorKind::Malformed),
    ] {
        let error = Event::from_value(payload.clone()).expect_err("not readable");
        assert_eq!((error.shape(), error.kind()), (shape, &kind), "{payload}");
        let (reply, wire) = reply(payload).await;
        assert_eq!(reply.status(), Some(400));
        assert_eq!(reply.body(), Some("{\"error\":\"invalid request\"}\n"));
        assert_eq!(wire.get("cookies").is_some(), shape == Shape::HttpV2);
    }
}

#[tokio::test]
async fn a_get_is_405_with_allow_in_either_shape() {
    let mut v2 = event("push.json");
    v2["requestContext"]["http"]["method"] = json!("GET");
    let mut v1 = event("push-rest-v1.json");
    v1["httpMethod"] = json!("GET");
    for payload in [v2, v1] {
        let (reply, wire) = reply(payload).await;
        assert_eq!(reply.status(), Some(405));
        assert_eq!(wire["headers"]["allow"], "POST");
    }
}

#[test]
fn content_length_is_found_whatever_its_case_and_header_field() {
    let mut v1 = event("push-rest-v1.json");
    v1["headers"]["Content-Length"] = json!("253");
    assert_eq!(
        Event::from_value(v1.clone())
            .and_then(|e| e.into_delivery(None))
            .expect("v1")
            .head
            .content_length,
        Some(253)
    );
    v1["headers"] = json!({});
    v1["multiValueHeaders"]["CONTENT-LENGTH"] = json!(["12"]);
    assert_eq!(
        Event::from_value(v1)
            .and_then(|e| e.into_delivery(None))
            .expect("v1")
            .head
            .content_length,
        Some(12)
    );
}

#[test]
fn a_rest_path_loses_the_stage_only_when_the_stage_is_really_in_it() {
    let t = "/quay/T";
    for (path, stage, context, routed) in [
        (t, Some("prod"), Some("/prod/quay/T"), t),
        (t, None, None, t),
        (t, Some("$default"), Some(t), t),
        // The stage segment copied into `path` as well (emulators).
        ("/prod/quay/T", Some("prod"), Some("/prod/quay/T"), t),
        // A first segment named like the stage, under the stage: part of the resource.
        (
            "/prod/quay/T",
            Some("prod"),
            Some("/prod/prod/quay/T"),
            "/prod/quay/T",
        ),
        ("/prod/quay/T", Some("prod"), None, "/prod/quay/T"),
        (
            "/production/quay/T",
            Some("prod"),
            Some("/production/quay/T"),
            "/production/quay/T",
        ),
        ("/prod", Some("prod"), Some("/prod"), "/prod"),
        ("/quay/T", Some(""), Some("/quay/T"), t),
    ] {
        assert_eq!(
            rest_path(path, stage, context),
            routed,
            "{path} {stage:?} {context:?}"
        );
    }
}

#[test]
fn a_deadline_in_the_past_is_ignored_not_a_zero_budget() {
    let now_ms = 1_795_788_336_000;
    let now = UNIX_EPOCH + Duration::from_millis(now_ms);
    assert_eq!(remaining(now_ms + 3_000, now), Some(Duration::from_secs(3)));
    assert_eq!(
        remaining(600_000, now),
        None,
        "cargo lambda watch sends a duration"
    );
    assert_eq!(remaining(now_ms, now), None);
}

async fn invoke_as(handler: Option<&str>, payload: Value) -> Value {
    let state = state_for(handler);
    let reply = invoke(&state, LambdaEvent::new(payload, Context::default())).await;
    serde_json::to_value(&reply).expect("a reply serializes")
}

#[test]
fn an_sqs_event_is_told_from_api_gateway_events_record_by_record() {
    let Ok(Event::Sqs(batch)) = Event::from_value(event("sqs-refresh.json")) else {
        panic!("an SQS event")
    };
    assert_eq!(batch.records.len(), 1);
    let record = &batch.records[0];
    assert_eq!(record.attributes["ApproximateReceiveCount"], "1");
    let message = crate::message::Message::decode(record.body.as_deref().expect("a body"))
        .expect("the recorded message decodes");
    assert_eq!(
        (message.project.as_str(), message.receiver.as_str()),
        ("kargo-demo", "q-wh-receiver")
    );
    assert!(
        Event::from_value(event("sqs-refresh.json"))
            .expect("an event")
            .into_delivery(None)
            .is_err_and(|e| e.kind() == &ErrorKind::NotHttp)
    );

    // A record of the wrong shape keeps its id (the worker fails that one alone); a batch
    // with one record from another service is not SQS.
    let mut mixed = event("sqs-refresh.json");
    let mut bad = mixed["Records"][0].clone();
    bad["messageId"] = json!("m-bad");
    bad["attributes"] = json!("not a map");
    mixed["Records"].as_array_mut().expect("records").push(bad);
    let Ok(Event::Sqs(batch)) = Event::from_value(mixed.clone()) else {
        panic!("an SQS event")
    };
    assert_eq!(batch.records[1].message_id.as_deref(), Some("m-bad"));
    assert!(batch.records[1].body.is_none());
    mixed["Records"][1]["eventSource"] = json!("aws:sns");
    assert!(Event::from_value(mixed).is_err(), "not an SQS event");
}

#[tokio::test]
async fn the_worker_answers_the_recorded_sqs_event_with_no_failures() {
    let wire = invoke_as(Some("worker"), event("sqs-refresh.json")).await;
    assert_eq!(wire, json!({ "batchItemFailures": [] }));
}

#[tokio::test]
async fn an_sqs_batch_at_the_webhook_function_fails_every_record() {
    let wire = invoke_as(None, event("sqs-refresh.json")).await;
    assert_eq!(
        wire,
        json!({ "batchItemFailures": [{ "itemIdentifier": "5b4a2c3e-8f1d-4e6a-9c7b-2d3e4f5a6b7c" }] })
    );
}

#[tokio::test]
async fn an_api_gateway_event_at_the_worker_is_503_in_its_shape() {
    for (name, v2) in [("push.json", true), ("push-rest-v1.json", false)] {
        let wire = invoke_as(Some("worker"), event(name)).await;
        assert_eq!(wire["statusCode"], 503, "{name}");
        assert_eq!(
            wire["body"],
            "{\"error\":\"this function is the queue worker, not the webhook\"}\n"
        );
        assert_eq!(wire.get("cookies").is_some(), v2, "{name}");
    }
}

#[test]
fn an_ecr_event_is_told_apart_by_source_and_detail_type() {
    for name in [
        "ecr-push-tagged.json",
        "ecr-push-untagged.json",
        "ecr-push-failed.json",
        "ecr-push-out-of-scope.json",
    ] {
        let read = Event::from_value(event(name)).expect(name);
        assert!(matches!(read, Event::Ecr(_)), "{name}");
        assert_eq!(read.shape(), None, "{name}");
        assert!(
            read.into_delivery(None)
                .is_err_and(|e| e.kind() == &ErrorKind::NotHttp),
            "{name}"
        );
    }
    // Another service's event, or another ECR event type, is not an image action.
    let mut scan = event("ecr-push-tagged.json");
    scan["detail-type"] = json!("ECR Image Scan");
    assert!(Event::from_value(scan).is_err());
    let Ok(Event::Sqs(batch)) = Event::from_value(event("sqs-ecr-push.json")) else {
        panic!("an SQS event")
    };
    let body = batch.records[0].body.as_deref().expect("a body");
    let wrapped = crate::ecr::ImageAction::from_body(body).expect("an ECR event");
    let direct = crate::ecr::ImageAction::read(event("ecr-push-tagged.json"));
    assert_eq!(wrapped, direct, "the SQS body is the tagged event");
}

#[tokio::test]
async fn recorded_ecr_events_get_their_results_from_either_function() {
    for handler in [None, Some("worker")] {
        for (name, result, tags) in [
            ("ecr-push-tagged.json", "done", json!(["v1.4.0"])),
            ("ecr-push-untagged.json", "done", json!([])),
            ("ecr-push-failed.json", "ignored", Value::Null),
            ("ecr-push-out-of-scope.json", "ignored", Value::Null),
        ] {
            let state = state_for(handler);
            let reply = invoke(&state, LambdaEvent::new(event(name), Context::default())).await;
            assert!(reply.ecr().is_some() && reply.status().is_none(), "{name}");
            let wire = serde_json::to_value(reply.into_result().expect("no function error"))
                .expect("serializes");
            assert_eq!(wire["result"], result, "{name}: {wire}");
            assert_eq!(wire["event"], event(name)["id"], "{name}");
            assert_eq!(wire["tags"], tags, "{name}: {wire}");
            assert!(wire.get("receiver").is_none(), "{name}: no receiver");
            if result == "done" {
                assert_eq!(wire["msg"], "refreshed 0 warehouse(s)", "{name}");
                assert_eq!(
                    wire["repositories"],
                    json!(["123456789012.dkr.ecr.us-east-1.amazonaws.com/kargo-demo/guestbook"]),
                    "{name}"
                );
            }
        }
    }
    let wire = invoke_as(Some("worker"), event("sqs-ecr-push.json")).await;
    assert_eq!(wire, json!({ "batchItemFailures": [] }));
    let wire = invoke_as(None, event("sqs-ecr-push.json")).await;
    assert_eq!(
        wire,
        json!({ "batchItemFailures": [{ "itemIdentifier": "8d2e6f1a-3b5c-4d7e-9f0a-1b2c3d4e5f60" }] })
    );
}

#[tokio::test]
async fn ecr_events_without_a_scope_are_refused_and_unreadable_ones_invalid() {
    let state = State::new(config_for(None, false), OneReceiver, EmptyCluster);
    let refused = invoke(
        &state,
        LambdaEvent::new(event("ecr-push-tagged.json"), Context::default()),
    )
    .await;
    let wire = serde_json::to_value(refused.into_result().expect("a success")).unwrap();
    assert_eq!(
        wire,
        json!({
            "result": "refused",
            "reason": "ECR events are refused: QUAYHOOK_ECR_PROJECTS is not set",
            "event": "13cde686-328b-6117-af20-0e5566167482"
        })
    );
    let mut malformed = event("ecr-push-tagged.json");
    malformed["account"] = json!("not-an-account");
    let (reply, wire) = reply(malformed).await;
    assert!(reply.ecr().is_some());
    assert_eq!(wire["result"], "invalid");
    assert_eq!(
        wire["reason"],
        "malformed ECR event: account is not a 12-digit AWS account id"
    );
}

#[tokio::test]
async fn a_transient_failure_with_no_queue_is_a_function_error_so_lambda_retries() {
    let state = State::new(config_for(None, true), OneReceiver, DownCluster);
    let reply = invoke(
        &state,
        LambdaEvent::new(event("ecr-push-tagged.json"), Context::default()),
    )
    .await;
    let wire = serde_json::to_value(&reply).unwrap();
    assert_eq!(wire["result"], "retry", "{wire}");
    assert_eq!(wire["unlisted"][0]["project"], "kargo-demo", "{wire}");
    let error = reply.into_result().expect_err("a function error");
    assert!(error.to_string().contains("503"), "{error}");
    let diagnostic = lambda_http::lambda_runtime::Diagnostic::from(error);
    assert_eq!(diagnostic.error_type, "Quayhook.RetryLater");
    assert!(
        diagnostic
            .error_message
            .starts_with("ECR event not handled, retry later: "),
        "{}",
        diagnostic.error_message
    );

    // The same cluster for a Quay push is a 503 answer, not a function error.
    let reply = invoke(
        &state,
        LambdaEvent::new(event("push.json"), Context::default()),
    )
    .await;
    let reply = reply
        .into_result()
        .expect("API Gateway answers are never errors");
    assert_eq!(reply.status(), Some(503));
}

#[test]
fn the_runtime_takes_into_result_as_its_service() {
    // What `cli::run_lambda` hands the runtime, so an ECR `retry` becomes a function error:
    // built (never run) to prove the runtime's bounds hold for `FunctionError`.
    let state = state();
    let state = &state;
    let service = lambda_http::lambda_runtime::service_fn(move |event| async move {
        invoke(state, event).await.into_result()
    });
    drop(lambda_http::lambda_runtime::run(service));
}
