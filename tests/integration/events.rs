//! Replays every recorded event in `events/` through the Lambda entry against moto and the
//! local API server seeded with the demo Warehouses, so an event that stops matching the code
//! fails CI. The same files feed `sam local invoke` (`make invoke EVENT=…`).

use std::path::PathBuf;

use serde_json::Value;

use quayhook_testkit::harness::{Harness, Setup};

/// What each recorded event must produce: status and the refreshed Warehouses.
const EXPECTED: &[(&str, u16, &[&str])] = &[
    ("bad-base64.json", 400, &[]),
    ("bad-host.json", 400, &[]),
    ("malformed-body.json", 400, &[]),
    ("push-base64.json", 200, &["guestbook"]),
    ("push-chart.json", 200, &["guestbook-chart"]),
    ("push-rest-v1.json", 200, &["guestbook"]),
    ("push.json", 200, &["guestbook"]),
    ("test-notification.json", 200, &["guestbook-latest"]),
    ("unknown-token.json", 404, &[]),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn demo_warehouses() -> Vec<Value> {
    let text = std::fs::read_to_string(root().join("tools/demo/warehouses.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_recorded_event_replays_with_its_expected_outcome() {
    let mut files: Vec<String> = std::fs::read_dir(root().join("events"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && n != "env.json")
        .collect();
    files.sort();
    let listed: Vec<&str> = EXPECTED.iter().map(|(f, _, _)| *f).collect();
    assert_eq!(
        files, listed,
        "every file in events/ needs an expectation here"
    );

    for (file, status, refreshed) in EXPECTED {
        // A fresh cluster per event, so each one's refreshes are its own.
        let h = Harness::start(Setup {
            namespaces: vec!["kargo-demo"],
            warehouses: demo_warehouses(),
            ..Setup::default()
        })
        .await;
        // The receiver of Kargo's documentation example (reference §1.1): the events' token.
        h.receiver("kargo-demo", "q-wh-receiver", "mysecret", None)
            .await;
        let event = std::fs::read_to_string(root().join("events").join(file)).unwrap();
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
        h.assert_no_leaks();
    }
}
