//! API Gateway events, Quay push bodies, EventBridge ECR events and SQS events for tests:
//! what the Lambda runtime hands the handler and the worker, built in code (the recorded ones
//! live in `events/`).
//!
//! Test support, no I/O: builds JSON text and parses it as the runtime would.

use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use lambda_http::Request;
use serde_json::json;

/// A Quay "Push to Repository" body for `repo` (the `docker_url`) and `tags`.
pub fn push(repo: &str, tags: &[&str]) -> String {
    json!({
        "repository": "mynamespace/repository",
        "namespace": "mynamespace",
        "name": "repository",
        "docker_url": repo,
        "homepage": "https://quay.io/repository/mynamespace/repository",
        "updated_tags": tags,
    })
    .to_string()
}

/// An API Gateway HTTP API (payload v2) event for `method path`.
///
/// Carries `content-type: application/json` and API Gateway's `host`, then `headers` (which
/// may override them). With `base64`, the body is sent base64-encoded with
/// `isBase64Encoded`, as API Gateway does for binary media types.
pub fn event_v2(
    method: &str,
    path: &str,
    body: &[u8],
    base64: bool,
    headers: &[(&str, String)],
) -> String {
    let mut hdrs = serde_json::Map::new();
    hdrs.insert("content-type".into(), json!("application/json"));
    hdrs.insert(
        "host".into(),
        json!("abc123.execute-api.us-east-1.amazonaws.com"),
    );
    for (k, v) in headers {
        hdrs.insert((*k).into(), json!(v));
    }
    let body_text = if base64 {
        base64::engine::general_purpose::STANDARD.encode(body)
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    json!({
        "version": "2.0",
        "routeKey": "POST /quay/{token}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": hdrs,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": { "method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "Quay" },
            "requestId": "req-1", "routeKey": "POST /quay/{token}", "stage": "$default",
            "time": "27/Nov/2026:12:00:00 +0000", "timeEpoch": 1795780800000u64
        },
        "body": body_text,
        "isBase64Encoded": base64
    })
    .to_string()
}

/// A Quay delivery to receiver `token` as API Gateway hands it over: [`event_v2`] for
/// `POST /quay/{token}` with `body` as text and Quay's `user-agent`.
pub fn delivery(token: &str, body: &str) -> String {
    let path = format!("/quay/{token}");
    event_v2(
        "POST",
        &path,
        body.as_bytes(),
        false,
        &[("user-agent", "Quay".into())],
    )
}

/// Parses an event as the Lambda runtime would.
///
/// # Panics
/// When `lambda_http` rejects the event (a test bug).
pub fn request(event: &str) -> Request {
    lambda_http::request::from_str(event).expect("event parses")
}

/// The registry of the ECR events built here and of `events/ecr-*.json`: account
/// `123456789012`, region `us-east-1`.
pub const ECR_REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

static ECR_EVENTS: AtomicU64 = AtomicU64::new(1);

/// An EventBridge "ECR Image Action" event, the Lambda payload itself, for the repository
/// named `repository` in [`ECR_REGISTRY`]: `action` (`PUSH`, `DELETE`), `result`
/// (`SUCCESS`, `FAILURE`) and `tag` (`None`: a push by digest only, without `image-tag`).
/// Each call has its own event id.
pub fn ecr_action(repository: &str, action: &str, result: &str, tag: Option<&str>) -> String {
    let n = ECR_EVENTS.fetch_add(1, Ordering::Relaxed);
    let mut detail = json!({
        "result": result,
        "repository-name": repository,
        "image-digest": format!("sha256:{n:064x}"),
        "action-type": action,
    });
    if let Some(tag) = tag {
        detail["image-tag"] = json!(tag);
    }
    json!({
        "version": "0",
        "id": format!("00000000-0000-4000-8000-{n:012}"),
        "detail-type": "ECR Image Action",
        "source": "aws.ecr",
        "account": "123456789012",
        "time": "2026-11-27T14:05:36Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail
    })
    .to_string()
}

/// A successful push to `repository` in [`ECR_REGISTRY`] ([`ecr_action`] `PUSH`,
/// `SUCCESS`), tagged `tag` or by digest only.
pub fn ecr_push(repository: &str, tag: Option<&str>) -> String {
    ecr_action(repository, "PUSH", "SUCCESS", tag)
}

/// The ARN of the queue the SQS records of [`sqs_record`] come from.
pub const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:quayhook-deliveries";

/// One SQS record as Lambda's event source mapping delivers it: `body`, `messageId` `id`,
/// receipt handle `rh-{id}` and `ApproximateReceiveCount` `receives`.
pub fn sqs_record(id: &str, body: &str, receives: u32) -> serde_json::Value {
    json!({
        "messageId": id,
        "receiptHandle": format!("rh-{id}"),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": receives.to_string(),
            "SentTimestamp": "1795788336000",
            "SenderId": "AROAEXAMPLE:quayhook",
            "ApproximateFirstReceiveTimestamp": "1795788336100"
        },
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": "us-east-1"
    })
}

/// An SQS event (`{"Records": [...]}`) of `records`, as JSON text.
pub fn sqs_event(records: &[serde_json::Value]) -> String {
    json!({ "Records": records }).to_string()
}

/// An SQS event of `records`, read as the worker takes it.
///
/// # Panics
/// When a record does not read as an SQS message (a test bug).
pub fn sqs_batch(records: &[serde_json::Value]) -> lambda_http::aws_lambda_events::sqs::SqsEvent {
    serde_json::from_str(&sqs_event(records)).expect("an SQS event")
}

/// The message ids a worker's batch response reports failed (`batchItemFailures`), in order.
pub fn failed_ids(response: &lambda_http::aws_lambda_events::sqs::SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}
