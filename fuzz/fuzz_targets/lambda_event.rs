//! The Lambda edge given arbitrary bytes as the invocation payload: whatever the runtime
//! hands over as JSON goes through `quayhook::lambda::invoke` (the path the Lambda runtime
//! takes), over the test kit's in-memory secrets and cluster (`quayhook_testkit::fakes`) with
//! the receiver of `events/*.json`, so the seeds (copies of `events/`) reach the handler.
//!
//! The `handler` target cannot reach these inputs: it builds events the way API Gateway does
//! and replays them through lambda_http, which panics on a `Host` the URL parser rejects, a
//! `rawPath` without its leading `/` and a base64 body that is not base64 (issue 9,
//! fuzz/regressions/handler/). Here the event itself is the input.
//!
//! Checked on every answer: no panic, a status from the handler's table, a JSON body ending in
//! a newline, `isBase64Encoded: false`, and the reply shape the payload claims (`cookies` only
//! in the HTTP API payload 2.0 shape); an SQS event (the state is the webhook function's)
//! gets a batch response failing each of its records. An EventBridge ECR event (the state has
//! the ECR scope of `events/ecr-*.json`, and a Warehouse on their repository) gets an ECR
//! answer with a known `result`, never a function error (the fake cluster never fails).
#![no_main]

use libfuzzer_sys::fuzz_target;
use quayhook::lambda::{self, Shape};
use quayhook::state::State;
use quayhook_testkit::fakes::{self, FakeCluster, FakeSecrets};
use quayhook_testkit::fixtures::wh;
use serde_json::{Value, json};

use lambda_http::lambda_runtime::{Context, LambdaEvent};

const NS: &str = "kargo-demo";

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
}

fuzz_target!(|data: &[u8]| {
    // The runtime reads the payload as JSON before quayhook runs and reports a payload that is
    // not JSON itself (an invocation error, not a panic); only JSON reaches `invoke`.
    let Ok(payload) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let claimed = Shape::claimed_by(&payload);
    // The receiver whose token is in events/*.json (kargo_match's worked example).
    let secrets = FakeSecrets::new();
    secrets.add(NS, "q-wh-receiver", "mysecret", None);
    let cluster = FakeCluster::new()
        .with(wh(NS, "any").image("quay.io/mynamespace/repository", json!({})))
        .with(wh(NS, "chart").chart("oci://quay.io/mynamespace/guestbook-chart", "^0.3.0"))
        .with(wh(NS, "ecr").image(
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/kargo-demo/guestbook",
            json!({"constraint": "^1.0.0"}),
        ));
    let ecr_scope = [
        ("QUAYHOOK_ECR_PROJECTS", NS),
        ("QUAYHOOK_ECR_REPOSITORY_PREFIXES", "kargo-demo/"),
    ];
    let state = State::new(fakes::config(&ecr_scope), secrets, cluster);
    let event = LambdaEvent::new(payload, Context::default());
    let reply = RUNTIME.with(|rt| rt.block_on(lambda::invoke(&state, event)));

    // An SQS-shaped payload reaches the webhook function's batch answer: every record it
    // read is reported failed, none deleted.
    if let Some(batch) = reply.batch() {
        let records = payload_records(data);
        assert_eq!(
            batch.batch_item_failures.len(),
            records,
            "every record failed"
        );
        return;
    }
    if let Some(answer) = reply.ecr() {
        let wire = serde_json::to_value(answer).expect("the answer serializes");
        assert!(
            matches!(
                wire["result"].as_str(),
                Some("done" | "ignored" | "invalid")
            ),
            "unexpected result {wire}"
        );
        assert!(reply.into_result().is_ok(), "no function error");
        return;
    }
    let status = reply.status().expect("an HTTP reply");
    assert!(
        matches!(status, 200 | 400 | 404 | 405 | 413 | 500 | 503),
        "unexpected status {status}"
    );
    let body = reply.body().expect("a text body");
    assert!(body.ends_with('\n'), "body ends with a newline");
    serde_json::from_str::<Value>(body).expect("JSON body");
    let wire = serde_json::to_value(&reply).expect("the reply serializes");
    assert_eq!(wire["statusCode"], status);
    assert_eq!(wire["isBase64Encoded"], false);
    // Read or not, a payload is answered in the shape its `version` claims.
    assert_eq!(
        wire.get("cookies").is_some(),
        claimed == Shape::HttpV2,
        "the reply shape"
    );
});

/// The number of records of an SQS-shaped payload.
fn payload_records(data: &[u8]) -> usize {
    serde_json::from_slice::<Value>(data)
        .ok()
        .and_then(|v| v.get("Records").and_then(Value::as_array).map(Vec::len))
        .unwrap_or(0)
}
