//! Regression tests for what `make fuzz` found (fuzz/regressions/ keeps each input; `make fuzz`
//! replays them before fuzzing).

use serde_json::json;

use quayhook_testkit::events::{event_v2, push};
use quayhook_testkit::fixtures::QUAY_REPO;
use quayhook_testkit::harness::{Harness, Setup};

/// fuzz/regressions/handler/lambda-http-rawpath-without-slash: lambda_http 1.3.2 panics
/// (`Url::parse(..).unwrap()` in `build_request_uri`) on an event whose `rawPath` lacks the
/// leading `/`, before quayhook is called. API Gateway never sends such a path; every path it
/// can send (leading `/`, then anything) must reach the handler and get Kargo's bare 404.
#[tokio::test(flavor = "multi_thread")]
async fn odd_paths_api_gateway_can_deliver_are_answered_404_without_panicking() {
    let h = Harness::start(Setup {
        namespaces: vec!["kargo-demo"],
        ..Setup::default()
    })
    .await;
    let _token = h.receiver("kargo-demo", "quay", "s3cret-fuzz", None).await;
    for path in [
        "/\u{7f}",
        "/quay/\u{7f}",
        "/quay/ ",
        "/quay/%",
        "/quay/%zz",
        "/quay/%F0%9F",
        "/quay/\u{fc}",
        "//quay//",
        "/quay/a?b#c",
        "/quay/\0",
    ] {
        let event = event_v2(
            "POST",
            path,
            push(QUAY_REPO, &["v1"]).as_bytes(),
            false,
            &[],
        );
        let (status, body) = h.send(&event).await;
        assert_eq!((status, body), (404, json!({})), "{path:?}");
    }
    h.assert_no_leaks();
}
