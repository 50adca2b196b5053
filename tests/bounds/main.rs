//! Bounded work per push, on the test kit's in-memory fakes: one authenticated push cannot buy
//! quadratic CPU, a multi-megabyte answer, or a stall of the deliveries beside it.
//!
//! - thousands of distinct tags: at most `QUAYHOOK_MAX_TAGS` are considered, the rest counted;
//! - every list and string echoed in the answer is bounded (`omitted` counts what was cut);
//! - a large plan runs off the async workers, so a small delivery on the same runtime is
//!   answered first (an order, not a timing).
//!
//! No Python, no network.

use quayhook_testkit::events::push;
use quayhook_testkit::fakes::{FakeCluster, FakeSecrets, state};
use quayhook_testkit::fixtures::{QUAY_REPO, wh};
use quayhook_testkit::harness::deliver;
use serde_json::json;

const NS: &str = "kargo-demo";

/// `n` distinct tags that no `^v` regex allows.
fn tags(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("build-{i:06}")).collect()
}

#[tokio::test]
async fn a_push_with_100k_tags_considers_the_cap_and_answers_in_kilobytes() {
    let secrets = FakeSecrets::new();
    let token = secrets.add(NS, "quay", "s3cret", None);
    let cluster = FakeCluster::new()
        .with(wh(NS, "semver").image(QUAY_REPO, json!({"constraint": "^1.0.0"})))
        .with(wh(NS, "regex").image(QUAY_REPO, json!({"allowTagsRegexes": ["^v"]})));
    let state = state(&[("QUAYHOOK_MAX_TAGS", "256")], &secrets, &cluster);
    let tags = tags(100_000);
    let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    let body = push(QUAY_REPO, &refs);

    let (status, answer) = deliver(&state, &token, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["tagsNotConsidered"], 100_000 - 256);
    assert_eq!(answer["tags"].as_array().map(Vec::len), Some(20));
    assert_eq!(answer["omitted"]["tags"], 256 - 20);
    let skipped = answer["skipped"].as_array().expect("skipped");
    assert_eq!(skipped.len(), 2);
    for w in skipped {
        assert_eq!(w["reasons"].as_array().map(Vec::len), Some(20), "{w}");
        assert_eq!(
            w["reasonsOmitted"],
            256 - 20,
            "one reason per considered tag"
        );
    }
    let size = answer.to_string().len();
    assert!(size < 32 * 1024, "answer of {size} bytes");
}

#[tokio::test]
async fn a_two_megabyte_docker_url_is_echoed_cut_with_a_marker() {
    let secrets = FakeSecrets::new();
    let token = secrets.add(NS, "quay", "s3cret", None);
    let state = state(&[], &secrets, &FakeCluster::new());
    let url = format!("quay.io/{}", "a".repeat(2_000_000));
    let (status, answer) = deliver(&state, &token, &push(&url, &["v1"])).await;
    assert_eq!(status, 200, "nothing subscribes to it");
    let echoed = answer["repositories"][0].as_str().expect("a repository");
    assert!(echoed.len() < 300, "{} bytes", echoed.len());
    assert!(echoed.contains("…[+"), "{echoed}");
    assert!(answer.to_string().len() < 4 * 1024);
}

#[tokio::test]
async fn many_selected_warehouses_are_counted_exactly_and_listed_in_part() {
    let secrets = FakeSecrets::new();
    let token = secrets.add(NS, "quay", "s3cret", None);
    let mut cluster = FakeCluster::new();
    for i in 0..150 {
        cluster = cluster.with(wh(NS, &format!("w{i:03}")).image(QUAY_REPO, json!({})));
    }
    let state = state(&[], &secrets, &cluster);
    let (status, answer) = deliver(&state, &token, &push(QUAY_REPO, &["v1.0.0"])).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["msg"], "refreshed 150 warehouse(s)");
    assert_eq!(answer["refreshed"].as_array().map(Vec::len), Some(20));
    assert_eq!(answer["omitted"]["refreshed"], 130);
    assert_eq!(cluster.patch_calls(), 150, "every one is refreshed");
}

#[tokio::test(flavor = "current_thread")]
async fn a_large_plan_does_not_stall_a_small_delivery_on_the_same_runtime() {
    let secrets = FakeSecrets::new();
    let token = secrets.add(NS, "quay", "s3cret", None);
    let other_repo = "quay.io/mynamespace/other";
    let mut cluster = FakeCluster::new().with(wh(NS, "small").image(other_repo, json!({})));
    for i in 0..2_000 {
        cluster = cluster.with(
            wh(NS, &format!("big{i:04}"))
                .image(QUAY_REPO, json!({"allowTagsRegexes": ["^v[0-9]+$"]})),
        );
    }
    let state = state(&[("QUAYHOOK_MAX_TAGS", "256")], &secrets, &cluster);
    // Build the index first, so both deliveries below only plan and patch.
    assert_eq!(
        deliver(&state, &token, &push(other_repo, &["v1"])).await.0,
        200
    );

    let tags = tags(256);
    let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    let big_body = push(QUAY_REPO, &refs);
    let small_body = push(other_repo, &["v2"]);
    let order = std::sync::Mutex::new(Vec::new());
    let big = async {
        let answer = deliver(&state, &token, &big_body).await;
        order.lock().unwrap().push("big");
        answer
    };
    let small = async {
        tokio::task::yield_now().await; // the big push plans first
        let answer = deliver(&state, &token, &small_body).await;
        order.lock().unwrap().push("small");
        answer
    };
    let (big, small) = tokio::join!(big, small);
    assert_eq!(big.0, 200);
    assert_eq!(big.1["skipped"].as_array().map(Vec::len), Some(20));
    assert_eq!(big.1["omitted"]["skipped"], 2_000 - 20);
    assert_eq!(small.0, 200);
    assert_eq!(
        *order.lock().unwrap(),
        ["small", "big"],
        "the small delivery did not wait for the large plan"
    );
}
