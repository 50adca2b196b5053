//! Replays every recorded event in `events/` through the Lambda entry against moto and the
//! local API server seeded with the demo Warehouses, so an event that stops matching the code
//! fails CI: API Gateway events through the webhook function, SQS events through the queue
//! worker (`_HANDLER=worker`, its queue on moto), EventBridge ECR events through the webhook
//! function. The ECR events (and their SQS-wrapped twin) run with the ECR scope configured
//! (`QUAYHOOK_ECR_PROJECTS=kargo-demo`, `QUAYHOOK_ECR_REPOSITORY_PREFIXES=kargo-demo/`) and two
//! more Warehouses on the ECR repository. The same files feed `sam local invoke`
//! (`make invoke EVENT=…`).

use std::path::PathBuf;

use serde_json::{Value, json};

use quayhook_testkit::events::ECR_REGISTRY;
use quayhook_testkit::fixtures::wh;
use quayhook_testkit::harness::{Harness, Setup};
use quayhook_testkit::moto::sqs;

/// What a recorded event must produce.
enum Expect {
    /// An API Gateway event, to the webhook function: the status and the Warehouses the
    /// answer lists as refreshed.
    Http(u16, &'static [&'static str]),
    /// An SQS event, to the worker: the records reported failed and the Warehouses whose
    /// refresh annotation it wrote.
    Batch(&'static [&'static str], &'static [&'static str]),
    /// An EventBridge ECR event, to the webhook function: the answer's `result` and the
    /// Warehouses it lists as refreshed.
    Ecr(&'static str, &'static [&'static str]),
}

/// What each recorded event must produce.
const EXPECTED: &[(&str, Expect)] = &[
    ("bad-base64.json", Expect::Http(400, &[])),
    ("bad-host.json", Expect::Http(400, &[])),
    ("ecr-push-failed.json", Expect::Ecr("ignored", &[])),
    ("ecr-push-out-of-scope.json", Expect::Ecr("ignored", &[])),
    (
        "ecr-push-tagged.json",
        Expect::Ecr("done", &["guestbook-ecr"]),
    ),
    (
        "ecr-push-untagged.json",
        Expect::Ecr("done", &["guestbook-ecr", "guestbook-ecr-next"]),
    ),
    ("malformed-body.json", Expect::Http(400, &[])),
    ("push-base64.json", Expect::Http(200, &["guestbook"])),
    ("push-chart.json", Expect::Http(200, &["guestbook-chart"])),
    ("push-rest-v1.json", Expect::Http(200, &["guestbook"])),
    ("push.json", Expect::Http(200, &["guestbook"])),
    ("sqs-ecr-push.json", Expect::Batch(&[], &["guestbook-ecr"])),
    ("sqs-refresh.json", Expect::Batch(&[], &["guestbook"])),
    (
        "test-notification.json",
        Expect::Http(200, &["guestbook-latest"]),
    ),
    ("unknown-token.json", Expect::Http(404, &[])),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The demo Warehouses, and two on the ECR events' repository (`^1.0.0` and `^2.0.0`) plus
/// one on a repository outside the ECR prefixes: none of the Quay events selects them.
fn demo_warehouses() -> Vec<Value> {
    let text = std::fs::read_to_string(root().join("tools/demo/warehouses.json")).unwrap();
    let mut warehouses: Vec<Value> = serde_json::from_str(&text).unwrap();
    let ecr = |repo: &str| format!("{ECR_REGISTRY}/{repo}");
    warehouses.extend([
        wh("kargo-demo", "guestbook-ecr")
            .image(
                &ecr("kargo-demo/guestbook"),
                json!({"constraint": "^1.0.0"}),
            )
            .json(),
        wh("kargo-demo", "guestbook-ecr-next")
            .image(
                &ecr("kargo-demo/guestbook"),
                json!({"constraint": "^2.0.0"}),
            )
            .json(),
        wh("kargo-demo", "other-team-ecr")
            .image(&ecr("other-team/guestbook"), json!({}))
            .json(),
    ]);
    warehouses
}

/// ECR events need their scope: the demo project, repositories under `kargo-demo/`.
fn ecr_scope() -> Vec<(&'static str, String)> {
    vec![
        ("QUAYHOOK_ECR_PROJECTS", "kargo-demo".to_owned()),
        ("QUAYHOOK_ECR_REPOSITORY_PREFIXES", "kargo-demo/".to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_recorded_event_replays_with_its_expected_outcome() {
    let mut files: Vec<String> = std::fs::read_dir(root().join("events"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && n != "env.json")
        .collect();
    files.sort();
    let listed: Vec<&str> = EXPECTED.iter().map(|(f, _)| *f).collect();
    assert_eq!(
        files, listed,
        "every file in events/ needs an expectation here"
    );

    for (file, expect) in EXPECTED {
        // The worker's function: `_HANDLER=worker` and its queue.
        let mut env = match expect {
            Expect::Http(..) => Vec::new(),
            Expect::Ecr(..) => ecr_scope(),
            Expect::Batch(..) => {
                let queue = sqs::create_queue_with_dlq(&sqs::client(), "events", 5).await;
                vec![
                    ("_HANDLER", "worker".to_owned()),
                    ("QUAYHOOK_QUEUE_URL", queue.url),
                ]
            }
        };
        if file.starts_with("sqs-ecr") {
            env.extend(ecr_scope());
        }
        // A fresh cluster per event, so each one's refreshes are its own.
        let h = Harness::start(Setup {
            namespaces: vec!["kargo-demo"],
            warehouses: demo_warehouses(),
            env,
            ..Setup::default()
        })
        .await;
        // The receiver of Kargo's documentation example (reference §1.1): the events' token.
        h.receiver("kargo-demo", "q-wh-receiver", "mysecret", None)
            .await;
        let event = std::fs::read_to_string(root().join("events").join(file)).unwrap();
        match expect {
            Expect::Http(status, refreshed) => {
                let (got, body) = h.send(&event).await;
                assert_eq!(got, *status, "{file}: {body}");
                let names: Vec<&str> = body["refreshed"]
                    .as_array()
                    .map(|a| a.iter().map(|w| w["name"].as_str().unwrap()).collect())
                    .unwrap_or_default();
                assert_eq!(names, *refreshed, "{file}: {body}");
                if *file == "test-notification.json" {
                    assert_eq!(body["testNotification"], true, "{body}");
                }
            }
            Expect::Ecr(result, refreshed) => {
                let body = h.send_ecr(&event).await.expect("no function error");
                assert_eq!(body["result"], *result, "{file}: {body}");
                let names: Vec<&str> = body["refreshed"]
                    .as_array()
                    .map(|a| a.iter().map(|w| w["name"].as_str().unwrap()).collect())
                    .unwrap_or_default();
                assert_eq!(names, *refreshed, "{file}: {body}");
            }
            Expect::Batch(failed, refreshed) => {
                let reply = h.send_batch(&event).await;
                let ids: Vec<&str> = reply["batchItemFailures"]
                    .as_array()
                    .expect("batchItemFailures")
                    .iter()
                    .map(|f| f["itemIdentifier"].as_str().unwrap())
                    .collect();
                assert_eq!(ids, *failed, "{file}: {reply}");
                let warehouses = demo_warehouses();
                let mut annotated: Vec<&str> = warehouses
                    .iter()
                    .filter(|w| w["kind"] == "Warehouse")
                    .filter_map(|w| w["metadata"]["name"].as_str())
                    .filter(|name| h.refreshed_at("kargo-demo", name).is_some())
                    .collect();
                annotated.sort_unstable();
                assert_eq!(annotated, *refreshed, "{file}");
                let body: Value = serde_json::from_str(&event).unwrap();
                h.assert_clean_message(body["Records"][0]["body"].as_str().unwrap());
            }
        }
        h.assert_no_leaks();
    }
}
