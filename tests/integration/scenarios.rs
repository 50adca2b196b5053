//! The delivery scenarios of the Lambda issue, each against moto and the local API server.

use std::time::Duration;

use serde_json::{Value, json};

use quayhook_testkit::apiserver::Fault;
use std::sync::atomic::Ordering::SeqCst;

use quayhook_testkit::events::{event_v2, push};
use quayhook_testkit::fixtures::{QUAY_REPO, wh};
use quayhook_testkit::harness::{Harness, Setup, deliver};
use quayhook_testkit::proxy::{Mode, Options, Proxy};

const NS: &str = "kargo-demo";

fn names(body: &Value, list: &str) -> Vec<String> {
    body[list]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|w| {
                    format!(
                        "{}/{}",
                        w["namespace"].as_str().unwrap(),
                        w["name"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn setup(warehouses: Vec<Value>) -> Setup {
    Setup {
        namespaces: vec![NS],
        warehouses,
        ..Setup::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn happy_path_refreshes_subscribers_with_one_round_trip_when_warm() {
    let h = Harness::start(setup(vec![
        wh(NS, "a").image(QUAY_REPO, json!({})).json(),
        wh(NS, "b")
            .image(QUAY_REPO, json!({"constraint": "^1.0.0"}))
            .json(),
        wh(NS, "other")
            .image("quay.io/mynamespace/other", json!({}))
            .json(),
    ]))
    .await;
    let token = h.receiver(NS, "quay", "s3cret-happy", None).await;

    let (status, body) = h.post(&token, &push(QUAY_REPO, &["v1.2.0"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["msg"], "refreshed 2 warehouse(s)");
    assert_eq!(names(&body, "refreshed"), ["kargo-demo/a", "kargo-demo/b"]);
    assert_eq!(body["receiver"], json!({"project": NS, "name": "quay"}));
    let stamp = h.refreshed_at(NS, "a").expect("annotation set");
    assert!(
        stamp.ends_with('Z') && stamp.len() == 30 && stamp.as_bytes()[19] == b'.',
        "RFC 3339 UTC with nanoseconds: {stamp}"
    );
    assert!(h.refreshed_at(NS, "other").is_none());

    // Warm: no list, one patch per Warehouse, all in flight together.
    h.api.reset_requests();
    h.api.set_latency(Duration::from_millis(50));
    let (status, _) = h.post(&token, &push(QUAY_REPO, &["v1.2.1"])).await;
    assert_eq!(status, 200);
    assert_eq!(h.api.count("list", "warehouses"), 0);
    assert_eq!(h.api.count("patch", "warehouses"), 2);
    assert_eq!(
        h.api.max_concurrency(),
        2,
        "patches run concurrently: one round trip"
    );
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn tag_filters_refresh_only_interested_warehouses_and_explain_the_rest() {
    let h = Harness::start(setup(vec![
        wh(NS, "v1")
            .image(QUAY_REPO, json!({"constraint": "^1.0.0"}))
            .json(),
        wh(NS, "v2")
            .image(QUAY_REPO, json!({"constraint": "^2.0.0"}))
            .json(),
        wh(NS, "no-rc")
            .image(
                QUAY_REPO,
                json!({"imageSelectionStrategy": "Lexical", "ignoreTagsRegexes": ["-rc"]}),
            )
            .json(),
        wh(NS, "latest")
            .image(
                QUAY_REPO,
                json!({"imageSelectionStrategy": "Digest", "constraint": "latest"}),
            )
            .json(),
    ]))
    .await;
    let token = h.receiver(NS, "quay", "s3cret-tags", None).await;
    let (status, body) = h.post(&token, &push(QUAY_REPO, &["v2.0.0-rc.1"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["msg"], "refreshed 0 warehouse(s)");
    let skipped: Vec<String> = body["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            format!(
                "{}: {}",
                w["name"].as_str().unwrap(),
                w["reasons"][0].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        skipped,
        [
            "latest: tag v2.0.0-rc.1 is not the tracked tag latest",
            "no-rc: tag v2.0.0-rc.1 ignored by regex -rc",
            "v1: tag v2.0.0-rc.1 does not satisfy ^1.0.0",
            "v2: tag v2.0.0-rc.1 does not satisfy ^2.0.0",
        ]
    );
    let (_, body) = h
        .post(&token, &push(QUAY_REPO, &["latest", "v2.1.0"]))
        .await;
    assert_eq!(
        names(&body, "refreshed"),
        ["kargo-demo/latest", "kargo-demo/no-rc", "kargo-demo/v2"]
    );
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oci_chart_subscription_is_refreshed_by_a_chart_push() {
    let h = Harness::start(setup(vec![
        wh(NS, "chart")
            .chart("oci://quay.io/mynamespace/guestbook-chart", "^0.3.0")
            .json(),
        wh(NS, "old-chart")
            .chart("oci://quay.io/mynamespace/guestbook-chart", "^0.2.0")
            .json(),
    ]))
    .await;
    let token = h.receiver(NS, "quay", "s3cret-chart", None).await;
    let (status, body) = h
        .post(
            &token,
            &push("quay.io/mynamespace/guestbook-chart", &["0.3.1"]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body, "refreshed"), ["kargo-demo/chart"]);
    assert_eq!(names(&body, "skipped"), ["kargo-demo/old-chart"]);
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_level_receiver_refreshes_every_namespace() {
    let h = Harness::start(Setup {
        cluster: true,
        warehouses: vec![
            wh("team-a", "w").image(QUAY_REPO, json!({})).json(),
            wh("team-b", "w").image(QUAY_REPO, json!({})).json(),
        ],
        ..Setup::default()
    })
    .await;
    let token = h.receiver("", "cluster-quay", "s3cret-cluster", None).await;
    let (status, body) = h.post(&token, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body, "refreshed"), ["team-a/w", "team-b/w"]);
    assert_eq!(
        h.api.count("list", "warehouses"),
        1,
        "one cluster-wide list"
    );
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn two_projects_with_separate_secrets_stay_separate() {
    let h = Harness::start(Setup {
        namespaces: vec!["team-a", "team-b"],
        warehouses: vec![
            wh("team-a", "w").image(QUAY_REPO, json!({})).json(),
            wh("team-b", "w").image(QUAY_REPO, json!({})).json(),
        ],
        ..Setup::default()
    })
    .await;
    let a = h.receiver("team-a", "quay", "s3cret-a", None).await;
    let b = h.receiver("team-b", "quay", "s3cret-b", None).await;
    let (_, body) = h.post(&a, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(names(&body, "refreshed"), ["team-a/w"]);
    assert!(h.refreshed_at("team-b", "w").is_none());
    let (_, body) = h.post(&b, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(names(&body, "refreshed"), ["team-b/w"]);
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_token_is_404_with_no_hint_and_refetches_at_most_once_per_interval() {
    let h = Harness::start(setup(vec![])).await;
    let _token = h.receiver(NS, "quay", "s3cret-unknown", None).await;
    let bogus = "0".repeat(64);
    for path in [
        format!("/quay/{bogus}"),
        "/quay/not-hex".into(),
        "/github/abc".into(),
        "/".into(),
    ] {
        let (status, body) = h
            .send(&event_v2(
                "POST",
                &path,
                push(QUAY_REPO, &[]).as_bytes(),
                false,
                &[],
            ))
            .await;
        assert_eq!((status, body), (404, json!({})), "{path}");
    }
    // One fetch at first use; unknown tokens inside the miss interval fetch nothing more.
    let first_age = h.state.receivers_age().expect("fetched once");
    assert!(first_age < Duration::from_secs(5));
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_accepts_the_previous_secret_until_it_is_removed() {
    let h = Harness::start(setup(vec![wh(NS, "w").image(QUAY_REPO, json!({})).json()])).await;
    let _new = h
        .receiver(NS, "quay", "s3cret-new", Some("s3cret-old"))
        .await;
    let old = kargo_match::token::receiver_token(
        NS,
        "quay",
        &kargo_match::token::SecretString::new("s3cret-old"),
    );
    let (status, body) = h.post(&old, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["receiver"]["previousSecret"], true);
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_added_at_run_time_works_without_a_restart() {
    let h = Harness::start(Setup {
        env: vec![("QUAYHOOK_SECRETS_MISS_INTERVAL", "0".into())],
        ..setup(vec![wh(NS, "w").image(QUAY_REPO, json!({})).json()])
    })
    .await;
    let first = h.receiver(NS, "quay", "s3cret-first", None).await;
    assert_eq!(h.post(&first, &push(QUAY_REPO, &["v1"])).await.0, 200);
    let second = h.receiver(NS, "quay-2", "s3cret-second", None).await;
    let (status, body) = h.post(&second, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["receiver"]["name"], "quay-2");
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_tokens_do_not_hammer_secrets_manager() {
    let h = Harness::start(Setup {
        env: vec![("QUAYHOOK_SECRETS_MISS_INTERVAL", "1h".into())],
        ..setup(vec![])
    })
    .await;
    let _ = h.receiver(NS, "quay", "s3cret-flood", None).await;
    assert_eq!(h.post(&"1".repeat(64), "{}").await.0, 404);
    let after_first = h.state.receivers_age().unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A receiver created now is not seen: the flood of unknown tokens does not re-fetch.
    let late = h.receiver(NS, "late", "s3cret-late", None).await;
    for _ in 0..20 {
        assert_eq!(h.post(&late, "{}").await.0, 404);
    }
    assert!(
        h.state.receivers_age().unwrap() >= after_first,
        "no re-fetch happened"
    );
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warehouse_created_after_the_index_was_built_is_found() {
    let h = Harness::start(Setup {
        env: vec![("QUAYHOOK_INDEX_MISS_INTERVAL", "0".into())],
        ..setup(vec![
            wh(NS, "first")
                .image("quay.io/mynamespace/first", json!({}))
                .json(),
        ])
    })
    .await;
    let token = h.receiver(NS, "quay", "s3cret-new-wh", None).await;
    let (_, body) = h.post(&token, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(body["msg"], "refreshed 0 warehouse(s)");
    h.api
        .apply(wh(NS, "late").image(QUAY_REPO, json!({})).json());
    let (_, body) = h.post(&token, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(names(&body, "refreshed"), ["kargo-demo/late"]);
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_for_unsubscribed_repositories_relist_at_most_once_per_interval() {
    let h = Harness::start(Setup {
        env: vec![("QUAYHOOK_INDEX_MISS_INTERVAL", "1h".into())],
        ..setup(vec![wh(NS, "w").image(QUAY_REPO, json!({})).json()])
    })
    .await;
    let token = h.receiver(NS, "quay", "s3cret-miss", None).await;
    for _ in 0..10 {
        assert_eq!(
            h.post(&token, &push("quay.io/nobody/subscribes", &["v1"]))
                .await
                .0,
            200
        );
    }
    assert_eq!(h.api.count("list", "warehouses"), 1);
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn oversize_bodies_are_413_with_or_without_a_length_header() {
    let h = Harness::start(setup(vec![])).await;
    let token = h.receiver(NS, "quay", "s3cret-big", None).await;
    let big = vec![b' '; 2_097_153];
    let path = format!("/quay/{token}");
    let want = json!({"error": "content exceeds limit of 2097152 bytes"});
    let with_len = event_v2(
        "POST",
        &path,
        &big,
        false,
        &[("content-length", big.len().to_string())],
    );
    assert_eq!(h.send(&with_len).await, (413, want.clone()));
    let without_len = event_v2("POST", &path, &big, false, &[]);
    assert_eq!(
        h.send(&without_len).await,
        (413, want.clone()),
        "Kargo answers 500 here; we answer 413"
    );
    let lying = event_v2(
        "POST",
        &path,
        b"{}",
        false,
        &[("content-length", "3000000".into())],
    );
    assert_eq!(h.send(&lying).await.0, 413);
    // Exactly at the limit is accepted (and here is valid JSON whitespace around `{}`).
    let mut exact = vec![b' '; 2_097_150];
    exact.extend_from_slice(b"{}");
    assert_eq!(
        h.send(&event_v2("POST", &path, &exact, false, &[])).await.0,
        200
    );
    // Routing comes first: an unknown token with a huge body is still 404, as in Kargo.
    assert_eq!(
        h.send(&event_v2(
            "POST",
            &format!("/quay/{}", "e".repeat(64)),
            &big,
            false,
            &[]
        ))
        .await
        .0,
        404
    );
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_base64_body_is_decoded() {
    let h = Harness::start(setup(vec![wh(NS, "w").image(QUAY_REPO, json!({})).json()])).await;
    let token = h.receiver(NS, "quay", "s3cret-b64", None).await;
    let event = event_v2(
        "POST",
        &format!("/quay/{token}"),
        push(QUAY_REPO, &["v1"]).as_bytes(),
        true,
        &[],
    );
    let (status, body) = h.send(&event).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body, "refreshed"), ["kargo-demo/w"]);
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_json_is_400_and_other_methods_are_405() {
    let h = Harness::start(setup(vec![])).await;
    let token = h.receiver(NS, "quay", "s3cret-bad", None).await;
    for body in [
        "",
        "[]",
        "{\"docker_url\": 1}",
        "{} x",
        "\u{feff}{}",
        "{\"updated_tags\": \"v1\"}",
    ] {
        assert_eq!(
            h.post(&token, body).await,
            (400, json!({"error": "invalid request body"})),
            "{body:?}"
        );
    }
    let (status, body) = h
        .send(&event_v2("GET", &format!("/quay/{token}"), b"", false, &[]))
        .await;
    assert_eq!(
        (status, body),
        (405, json!({"error": "method not allowed"}))
    );
    h.assert_no_leaks();
}

/// Deliberate difference from Kargo, whose whole-second value repeats within a second: every
/// refresh writes a new value, so Kargo's controller discovers both pushes.
#[tokio::test(flavor = "multi_thread")]
async fn two_pushes_within_one_second_both_change_the_refresh_annotation() {
    let h = Harness::start(setup(vec![wh(NS, "w").image(QUAY_REPO, json!({})).json()])).await;
    let token = h.receiver(NS, "quay", "s3cret-twice", None).await;
    // Two pushes a few milliseconds apart; tried again in the rare case they straddle a
    // second boundary, until one pair shares its second.
    let mut same_second = false;
    for attempt in 0..5 {
        assert_eq!(h.post(&token, &push(QUAY_REPO, &["v1"])).await.0, 200);
        let first = h.refreshed_at(NS, "w").expect("first refresh");
        assert_eq!(h.post(&token, &push(QUAY_REPO, &["v2"])).await.0, 200);
        let second = h.refreshed_at(NS, "w").expect("second refresh");
        assert_ne!(first, second, "attempt {attempt}: a new value");
        assert!(first < second, "attempt {attempt}: and a later one");
        if first[..19] == second[..19] {
            same_second = true;
            break;
        }
    }
    assert!(same_second, "two pushes within one second");
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_exact_receiver_path_routes_as_in_kargo() {
    let h = Harness::start(setup(vec![wh(NS, "w").image(QUAY_REPO, json!({})).json()])).await;
    let token = h.receiver(NS, "quay", "s3cret-route", None).await;
    let body = push(QUAY_REPO, &["v1"]);
    for path in [
        format!("//quay/{token}"),
        format!("/./quay/{token}"),
        format!("/x/../quay/{token}"),
        format!("/x/%2e%2e/quay/{token}"),
        format!("/anything/quay/{token}"),
        format!("/github/x/quay/{token}"),
        format!("/quay/{token}/quay/{token}"),
        format!("/quay/{token}/"),
    ] {
        let event = event_v2("POST", &path, body.as_bytes(), false, &[]);
        assert_eq!(h.send(&event).await, (404, json!({})), "{path}");
    }
    // An unknown path is 404 whatever the method: the route is decided first.
    let event = event_v2("GET", &format!("/x/quay/{token}"), b"", false, &[]);
    assert_eq!(h.send(&event).await, (404, json!({})));
    assert_eq!(h.refreshed_at(NS, "w"), None, "nothing refreshed");

    // With a base path, only `{base}/quay/{token}`.
    let mut config = h.state.config.clone();
    config.base_path = "/hooks".into();
    let based = h.state_with(config, Switchable::new(&h));
    for (path, status) in [
        (format!("/hooks/quay/{token}"), 200),
        (format!("/x/hooks/quay/{token}"), 404),
        (format!("/quay/{token}"), 404),
    ] {
        let event = event_v2("POST", &path, body.as_bytes(), false, &[]);
        let answer = quayhook_testkit::harness::parts(
            quayhook::handler::handle(&based, quayhook_testkit::events::request(&event)).await,
        );
        assert_eq!(answer.0, status, "{path}: {}", answer.1);
    }
    // And with an empty base, a path under another prefix is unknown.
    let event = event_v2(
        "POST",
        &format!("/hooks/quay/{token}"),
        body.as_bytes(),
        false,
        &[],
    );
    assert_eq!(h.send(&event).await, (404, json!({})));
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warehouse_deleted_since_the_list_is_reported_gone_and_dropped() {
    let h = Harness::start(setup(vec![
        wh(NS, "kept").image(QUAY_REPO, json!({})).json(),
        wh(NS, "deleted").image(QUAY_REPO, json!({})).json(),
    ]))
    .await;
    let token = h.receiver(NS, "quay", "s3cret-404", None).await;
    assert_eq!(h.post(&token, &push(QUAY_REPO, &["v1"])).await.0, 200);
    h.api.delete("warehouses", Some(NS), "deleted");
    let (status, body) = h.post(&token, &push(QUAY_REPO, &["v2"])).await;
    assert_eq!(status, 200, "a deleted Warehouse needs no refresh: {body}");
    assert_eq!(names(&body, "gone"), ["kargo-demo/deleted"]);
    h.api.reset_requests();
    let (_, body) = h.post(&token, &push(QUAY_REPO, &["v3"])).await;
    assert_eq!(names(&body, "refreshed"), ["kargo-demo/kept"]);
    assert_eq!(
        h.api.count("patch", "warehouses"),
        1,
        "the gone entry was dropped from the index"
    );
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn partial_failure_is_500_naming_the_failed_warehouses() {
    let h = Harness::start(Setup {
        env: vec![("QUAYHOOK_MAX_ATTEMPTS", "2".into())],
        ..setup(vec![
            wh(NS, "ok").image(QUAY_REPO, json!({})).json(),
            wh(NS, "broken").image(QUAY_REPO, json!({})).json(),
        ])
    })
    .await;
    let token = h.receiver(NS, "quay", "s3cret-partial", None).await;
    assert_eq!(h.post(&token, "{}").await.0, 200); // warm the index
    h.api.inject(
        Fault::status(500)
            .on_method("PATCH")
            .on_path("/warehouses/broken"),
    );
    let (status, body) = h.post(&token, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"], "failed to refresh 1 of 2 warehouses");
    assert_eq!(names(&body, "failed"), ["kargo-demo/broken"]);
    assert_eq!(names(&body, "refreshed"), ["kargo-demo/ok"]);
    assert!(h.refreshed_at(NS, "ok").is_some());
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_api_server_is_503_so_quay_retries() {
    let h = Harness::start(Setup {
        env: vec![("QUAYHOOK_REQUEST_TIMEOUT", "2s".into())],
        ..setup(vec![wh(NS, "w").image(QUAY_REPO, json!({})).json()])
    })
    .await;
    let token = h.receiver(NS, "quay", "s3cret-down", None).await;
    h.api.inject(Fault::drop());
    let started = std::time::Instant::now();
    let (status, body) = h.post(&token, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("cannot list warehouses")
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered within the budget"
    );
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_rereads_the_kubeconfig_secret_once_and_retries() {
    let h = Harness::start(setup(vec![wh(NS, "w").image(QUAY_REPO, json!({})).json()])).await;
    let token = h.receiver(NS, "quay", "s3cret-401", None).await;
    assert_eq!(h.post(&token, &push(QUAY_REPO, &["v1"])).await.0, 200);
    h.rotate_cluster_token().await;
    let (status, body) = h.post(&token, &push(QUAY_REPO, &["v2"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body, "refreshed"), ["kargo-demo/w"]);
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_403_outside_the_granted_namespace_is_reported_not_retried() {
    let h = Harness::start(Setup {
        namespaces: vec!["granted"],
        warehouses: vec![wh("other", "w").image(QUAY_REPO, json!({})).json()],
        ..Setup::default()
    })
    .await;
    let token = h.receiver("other", "quay", "s3cret-403", None).await;
    let (status, body) = h.post(&token, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("forbidden (403)"),
        "{body}"
    );
    assert_eq!(h.api.count("list", "warehouses"), 1, "403 is not retried");
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_is_retried_honouring_retry_after() {
    let h = Harness::start(setup(vec![wh(NS, "w").image(QUAY_REPO, json!({})).json()])).await;
    let token = h.receiver(NS, "quay", "s3cret-429", None).await;
    assert_eq!(h.post(&token, "{}").await.0, 200);
    h.api.inject(Fault::throttle(1).on_method("PATCH").times(1));
    let started = std::time::Instant::now();
    let (status, body) = h.post(&token, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );
    // The warm-up push names no repository, so it patches nothing.
    assert_eq!(
        h.api.count("patch", "warehouses"),
        2,
        "throttled, then retried"
    );
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_beyond_the_budget_answers_5xx_quickly() {
    let h = Harness::start(Setup {
        env: vec![("QUAYHOOK_REQUEST_TIMEOUT", "2s".into())],
        ..setup(vec![wh(NS, "w").image(QUAY_REPO, json!({})).json()])
    })
    .await;
    let token = h.receiver(NS, "quay", "s3cret-429b", None).await;
    assert_eq!(h.post(&token, "{}").await.0, 200);
    h.api.inject(Fault::throttle(30).on_method("PATCH"));
    let started = std::time::Instant::now();
    let (status, body) = h.post(&token, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "does not wait 30 s inside a 2 s budget"
    );
    h.assert_no_leaks();
}

/// Secrets Manager that can be switched off and counts kubeconfig reads: the real adapter
/// behind a switch.
struct Switchable {
    inner: quayhook::secrets::SecretsManager,
    down: std::sync::atomic::AtomicBool,
    kubeconfig_reads: std::sync::atomic::AtomicUsize,
}

impl Switchable {
    fn new(h: &Harness) -> Self {
        Switchable {
            inner: quayhook::secrets::SecretsManager::new(
                h.sm.clone(),
                Vec::new(),
                Some(format!("{}/receivers/", h.prefix)),
                format!("{}/kubeconfig", h.prefix),
            ),
            down: std::sync::atomic::AtomicBool::new(false),
            kubeconfig_reads: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl quayhook::secrets::SecretSource for Switchable {
    async fn receivers(
        &self,
    ) -> Result<quayhook::secrets::Receivers, quayhook::secrets::SecretsError> {
        if self.down.load(SeqCst) {
            return Err(quayhook::secrets::SecretsError::Unavailable(
                quayhook::cause::Cause::new("switched off"),
            ));
        }
        self.inner.receivers().await
    }

    async fn kubeconfig(
        &self,
    ) -> Result<kargo_match::token::SecretString, quayhook::secrets::SecretsError> {
        self.kubeconfig_reads.fetch_add(1, SeqCst);
        self.inner.kubeconfig().await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_manager_down_without_a_cache_is_503() {
    let h = Harness::start(setup(vec![wh(NS, "w").image(QUAY_REPO, json!({})).json()])).await;
    let token = h.receiver(NS, "quay", "s3cret-smdown", None).await;

    // A state whose Secrets Manager endpoint refuses connections.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dead = quayhook::secrets::SecretsManager::new(
        quayhook_testkit::moto::client_for(&format!("http://{closed}")),
        Vec::new(),
        Some(format!("{}/receivers/", h.prefix)),
        format!("{}/kubeconfig", h.prefix),
    );
    let down = h.state_with(h.state.config.clone(), dead);
    assert_eq!(
        deliver(&down, &token, &push(QUAY_REPO, &["v1"])).await,
        (503, json!({"error": "receiver secrets unavailable"}))
    );
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_receiver_cache_keeps_serving_while_secrets_manager_is_down() {
    let h = Harness::start(setup(vec![wh(NS, "w").image(QUAY_REPO, json!({})).json()])).await;
    let token = h.receiver(NS, "quay", "s3cret-stale", None).await;
    let mut config = h.state.config.clone();
    config.secrets_ttl = Duration::ZERO; // every request wants a re-fetch
    config.secrets_miss_interval = Duration::ZERO; // and may start one
    let state = h.state_with(config, Switchable::new(&h));
    let body = push(QUAY_REPO, &["v1"]);
    assert_eq!(deliver(&state, &token, &body).await.0, 200);
    state.secrets().down.store(true, SeqCst);
    let (status, body) = deliver(&state, &token, &body).await;
    assert_eq!(status, 200, "served from the expired cache: {body}");
    // The refresh ran beside the delivery and failed on its own.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !quayhook_testkit::logs::snapshot().contains("receiver secrets unavailable") {
        assert!(
            std::time::Instant::now() < deadline,
            "the failed refresh is logged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_401s_share_one_kubeconfig_reread() {
    let whs = (0..8)
        .map(|i| wh(NS, &format!("w{i}")).image(QUAY_REPO, json!({})).json())
        .collect();
    let h = Harness::start(setup(whs)).await;
    let token = h.receiver(NS, "quay", "s3cret-401x8", None).await;
    let state = h.state_with(h.state.config.clone(), Switchable::new(&h));
    assert_eq!(
        deliver(&state, &token, &push(QUAY_REPO, &["v1"])).await.0,
        200
    );
    let reads = || state.secrets().kubeconfig_reads.load(SeqCst);
    assert_eq!(reads(), 1);

    h.rotate_cluster_token().await;
    h.api.set_latency(Duration::from_millis(30)); // all eight patches meet the 401 together
    let (status, body) = deliver(&state, &token, &push(QUAY_REPO, &["v2"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["refreshed"].as_array().map(Vec::len), Some(8));
    assert_eq!(reads(), 2, "eight concurrent 401s, one re-read");
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn warehouses_are_listed_page_by_page_with_continue_tokens() {
    let whs = (0..5)
        .map(|i| wh(NS, &format!("w{i}")).image(QUAY_REPO, json!({})).json())
        .collect();
    let h = Harness::start(Setup {
        env: vec![("QUAYHOOK_LIST_PAGE_SIZE", "2".into())],
        ..setup(whs)
    })
    .await;
    let token = h.receiver(NS, "quay", "s3cret-pages", None).await;
    let (status, body) = h.post(&token, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["refreshed"].as_array().map(Vec::len), Some(5));
    let lists: Vec<String> = h
        .api
        .requests()
        .into_iter()
        .filter(|r| r.verb == "list")
        .map(|r| r.query)
        .collect();
    assert_eq!(lists.len(), 3, "5 Warehouses in pages of 2: {lists:?}");
    assert!(
        lists[1].contains("continue=") && lists[2].contains("continue="),
        "{lists:?}"
    );
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn file_mode_serves_without_aws() {
    let h = Harness::start(setup(vec![wh(NS, "w").image(QUAY_REPO, json!({})).json()])).await;
    let dir = std::env::temp_dir().join(format!("quayhook-files-{}", h.prefix));
    std::fs::create_dir_all(&dir).unwrap();
    let receivers = dir.join("receivers.json");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &receivers,
        json!([{"project": NS, "receiver": "quay", "secret": "s3cret-files"}]).to_string(),
    )
    .unwrap();
    std::fs::write(&kubeconfig, h.api.kubeconfig_yaml(&h.sa_token, None)).unwrap();
    let vars = [
        ("QUAYHOOK_RECEIVERS_FILE", receivers.display().to_string()),
        ("QUAYHOOK_KUBECONFIG_FILE", kubeconfig.display().to_string()),
    ];
    let config = quayhook::config::Config::from_lookup(|k| {
        vars.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.clone())
    })
    .unwrap();
    let secrets = quayhook::secrets::ConfiguredSecrets::from_config(&config.secrets).await;
    let state = h.state_with(config, secrets);
    let token = kargo_match::token::receiver_token(
        NS,
        "quay",
        &kargo_match::token::SecretString::new("s3cret-files"),
    );
    h.sensitive(token.clone());
    let (status, body) = deliver(&state, &token, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["refreshed"][0]["name"], "w");
    let _ = std::fs::remove_dir_all(&dir);
    h.assert_no_leaks();
}

/// moto behind a loopback proxy, and the real Secrets Manager adapter reading this test's
/// secrets through it with the production SDK timeouts. The client gets a retry quota of its
/// own: the SDK shares one token bucket per partition across clients, and other tests'
/// failures must not change how many attempts this one makes.
async fn behind_proxy(h: &Harness) -> (Proxy, quayhook::secrets::SecretsManager) {
    use std::net::ToSocketAddrs;
    let endpoint = quayhook_testkit::moto::endpoint();
    let moto = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_socket_addrs()
        .expect("moto's address")
        .next()
        .expect("moto's address resolves");
    let proxy = Proxy::start(moto, Options::default()).await;
    let config = quayhook_testkit::moto::client_for(&proxy.url())
        .config()
        .to_builder()
        .timeout_config(quayhook::secrets::sdk_timeouts())
        .retry_partition(aws_sdk_secretsmanager::config::retry::RetryPartition::new(
            format!("{}-proxied", h.prefix),
        ))
        .build();
    let secrets = quayhook::secrets::SecretsManager::new(
        aws_sdk_secretsmanager::Client::from_conf(config),
        Vec::new(),
        Some(format!("{}/receivers/", h.prefix)),
        format!("{}/kubeconfig", h.prefix),
    );
    (proxy, secrets)
}

/// Waits (up to a liveness bound, not a performance claim) until `done` holds.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_manager_hanging_does_not_delay_a_delivery_the_stale_cache_answers() {
    let h = Harness::start(setup(vec![wh(NS, "w").image(QUAY_REPO, json!({})).json()])).await;
    let token = h.receiver(NS, "quay", "s3cret-hang", None).await;
    let (proxy, secrets) = behind_proxy(&h).await;
    let mut config = h.state.config.clone();
    config.secrets_ttl = Duration::ZERO; // every request wants a re-fetch
    config.secrets_miss_interval = Duration::ZERO; // and may start one
    let state = h.state_with(config, secrets);
    let body = push(QUAY_REPO, &["v1"]);
    assert_eq!(deliver(&state, &token, &body).await.0, 200);
    assert!(
        proxy.connections() >= 1,
        "receivers and kubeconfig were read through the proxy (in one call)"
    );

    proxy.set_mode(Mode::Hang);
    proxy.reset_counts();
    for _ in 0..3 {
        // Below the SDK's 4 s operation timeout: an answer that waited for the store to give
        // up could not come in time. A liveness bound, not a performance claim.
        let (status, answer) =
            tokio::time::timeout(Duration::from_secs(3), deliver(&state, &token, &body))
                .await
                .expect("answered without waiting for the hanging store");
        assert_eq!(status, 200, "served from the expired cache: {answer}");
    }
    eventually("the revalidation reaches the store", || {
        proxy.connections() >= 1
    })
    .await;
    assert_eq!(
        (proxy.bytes_up(), proxy.bytes_down()),
        (0, 0),
        "the store never answered: every 200 came from the cache"
    );
    assert!(
        proxy.connections() <= 3,
        "one revalidation, shared by all three deliveries (at most the SDK's attempts): {}",
        proxy.connections()
    );
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_secrets_manager_sees_one_attempt_per_interval() {
    let h = Harness::start(setup(vec![wh(NS, "w").image(QUAY_REPO, json!({})).json()])).await;
    let token = h.receiver(NS, "quay", "s3cret-refused", None).await;
    let (proxy, secrets) = behind_proxy(&h).await;
    let probe = secrets.clone();
    let interval = Duration::from_secs(10);
    let mut config = h.state.config.clone();
    config.secrets_ttl = Duration::ZERO;
    config.secrets_miss_interval = interval;
    let state = h.state_with(config, secrets);
    let body = push(QUAY_REPO, &["v1"]);
    assert_eq!(deliver(&state, &token, &body).await.0, 200);

    // What one failed BatchGetSecretValue costs, the SDK's own retries included.
    proxy.set_mode(Mode::Refuse);
    proxy.reset_counts();
    assert!(
        quayhook::secrets::SecretSource::receivers(&probe)
            .await
            .is_err(),
        "a refusing store fails"
    );
    let one_attempt = proxy.connections();
    assert!(
        (1..=3).contains(&one_attempt),
        "one attempt is a handful of connections: {one_attempt}"
    );

    // Let the interval since the warm-up fetch pass: exactly one attempt is due now.
    let age = state.receivers_age().expect("warm");
    tokio::time::sleep(interval.saturating_sub(age) + Duration::from_millis(100)).await;
    proxy.reset_counts();
    for i in 0..200u32 {
        if i % 10 == 0 {
            let (status, answer) = deliver(&state, &token, &body).await;
            assert_eq!(status, 200, "served from the stale cache: {answer}");
        } else {
            let (status, _) = deliver(&state, &format!("{i:064x}"), "{}").await;
            assert_eq!(status, 404);
        }
    }
    assert_eq!(
        proxy.connections(),
        one_attempt,
        "200 deliveries, one failed attempt within the interval"
    );
    h.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_token_flood_with_the_cache_just_expired_costs_one_fetch() {
    let h = Harness::start(setup(vec![])).await;
    let token = h.receiver(NS, "quay", "s3cret-expired", None).await;
    let (proxy, secrets) = behind_proxy(&h).await;
    let probe = secrets.clone();
    let ttl = Duration::from_secs(1);
    let mut config = h.state.config.clone();
    config.secrets_ttl = ttl;
    config.secrets_miss_interval = ttl;
    let state = std::sync::Arc::new(h.state_with(config, secrets));
    assert_eq!(deliver(&state, &token, "{}").await.0, 200);

    // What one successful fetch costs.
    proxy.reset_counts();
    assert!(
        quayhook::secrets::SecretSource::receivers(&probe)
            .await
            .is_ok()
    );
    let one_fetch = proxy.connections();
    assert!(one_fetch >= 1);

    let age = state.receivers_age().expect("warm");
    tokio::time::sleep(ttl.saturating_sub(age) + Duration::from_millis(50)).await;
    // Real latency keeps the fetch in flight while the flood arrives.
    proxy.set_one_way(Duration::from_millis(20));
    proxy.reset_counts();
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..100u32 {
        let state = state.clone();
        flood.spawn(async move { deliver(&state, &format!("{:064x}", i + 1), "{}").await });
    }
    while let Some(answer) = flood.join_next().await {
        assert_eq!(answer.expect("delivery task").0, 404);
    }
    assert_eq!(
        proxy.connections(),
        one_fetch,
        "100 concurrent unknown tokens share one fetch"
    );
    h.assert_no_leaks();
}

/// The receiver secrets and the kubeconfig are independent, so a cold start reads both in one
/// `BatchGetSecretValue` (moto closes each connection after one request, so connections
/// through the proxy count calls): one call for the init prefetch and none for the first
/// request after it, or one for a cold request without prefetch; the kubeconfig's later
/// re-reads (after a 401) are `GetSecretValue`s of their own.
#[tokio::test(flavor = "multi_thread")]
async fn a_cold_start_reads_receivers_and_kubeconfig_in_one_secrets_manager_call() {
    let h = Harness::start(setup(vec![wh(NS, "w").image(QUAY_REPO, json!({})).json()])).await;
    let token = h.receiver(NS, "quay", "s3cret-one-call", None).await;
    let body = push(QUAY_REPO, &["v1"]);

    let (proxy, secrets) = behind_proxy(&h).await;
    let state = h.state_with(h.state.config.clone(), secrets);
    state.prefetch().await;
    assert_eq!(proxy.connections(), 1, "one BatchGetSecretValue at init");
    proxy.reset_counts();
    assert_eq!(deliver(&state, &token, &body).await.0, 200);
    assert_eq!(
        proxy.connections(),
        0,
        "the first request after prefetch reads nothing"
    );

    let (proxy, secrets) = behind_proxy(&h).await;
    let probe = secrets.clone();
    let state = h.state_with(h.state.config.clone(), secrets);
    assert_eq!(deliver(&state, &token, &body).await.0, 200);
    assert_eq!(proxy.connections(), 1, "a cold request: one call for both");
    proxy.reset_counts();
    assert!(
        quayhook::secrets::SecretSource::kubeconfig(&probe)
            .await
            .is_ok()
    );
    assert_eq!(
        proxy.connections(),
        1,
        "a re-read is a GetSecretValue of its own"
    );
    h.assert_no_leaks();
}
