//! What `State` keeps across warm invocations, on the test kit's in-memory fakes with paused
//! tokio time: the receiver cache (TTL, single-flight fetches, one attempt per interval
//! whatever the outcome, stale-while-revalidate during a secret store outage or hang, the
//! unknown-token re-fetch), one kubeconfig read for a cold start, the single reconnect after
//! concurrent 401s, and the Warehouse index (TTL, the re-list for a push nobody subscribes to,
//! dropping a Warehouse after its 404).
//!
//! `State` stamps its caches with `tokio::time::Instant`, so `tokio::time::advance` ages them
//! without waiting. No Python, no network. The durable path (queue and worker) on the same
//! fakes is in `durable.rs`, ECR push events (their durable path and metrics) in `ecr.rs`.

use std::time::Duration;

use kargo_match::index::candidate_urls;
use quayhook::cluster::{ClusterError, list_index};
use quayhook::retry::Budget;
use quayhook::secrets::SecretsError;
use quayhook::state::StateError;
use quayhook_testkit::events::push;
use quayhook_testkit::fakes::{self, FakeCluster, FakeSecrets, Step, state};
use quayhook_testkit::fixtures::{QUAY_REPO, wh};
use quayhook_testkit::harness::deliver;
use serde_json::{Value, json};
use tokio::time::advance;

mod durable;
mod ecr;

const NS: &str = "kargo-demo";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `namespace/name` of every Warehouse in one list of a handler answer, sorted.
fn names(body: &Value, list: &str) -> Vec<String> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut out: Vec<String> = body[list]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| format!("{}/{}", text(&w["namespace"]), text(&w["name"])))
        .collect();
    out.sort();
    out
}

fn budget() -> Budget {
    Budget::new(secs(8))
}

#[tokio::test(start_paused = true)]
async fn fresh_receivers_are_not_fetched_again_and_expired_ones_are() {
    let secrets = FakeSecrets::new();
    let token = secrets.add(NS, "quay", "s3cret", None);
    let state = state(
        &[("QUAYHOOK_SECRETS_TTL", "300s")],
        &secrets,
        &FakeCluster::new(),
    );

    assert!(state.authenticate(&token).await.unwrap().is_some());
    assert_eq!(secrets.receivers_calls(), 1);
    advance(secs(299)).await;
    assert!(state.authenticate(&token).await.unwrap().is_some());
    assert_eq!(
        secrets.receivers_calls(),
        1,
        "a fresh cache is not re-fetched"
    );

    // A rotation: once the cache expires, the new secret is fetched and the old one is gone.
    secrets.remove(NS, "quay");
    let rotated = secrets.add(NS, "quay", "n3w-s3cret", None);
    advance(secs(2)).await;
    assert!(state.authenticate(&rotated).await.unwrap().is_some());
    assert_eq!(
        secrets.receivers_calls(),
        2,
        "an expired cache is re-fetched"
    );
    assert_eq!(state.receivers_age(), Some(Duration::ZERO));
    assert!(state.authenticate(&token).await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn unknown_tokens_refetch_at_most_once_per_miss_interval() {
    let secrets = FakeSecrets::new();
    let token = secrets.add(NS, "quay", "s3cret", None);
    let state = state(
        &[
            ("QUAYHOOK_SECRETS_TTL", "1h"),
            ("QUAYHOOK_SECRETS_MISS_INTERVAL", "10s"),
        ],
        &secrets,
        &FakeCluster::new(),
    );
    assert!(state.authenticate(&token).await.unwrap().is_some());
    let unknown = "0".repeat(64);

    // Within the interval of the fetch, unknown tokens are answered from the cache.
    for _ in 0..100 {
        assert!(state.authenticate(&unknown).await.unwrap().is_none());
    }
    assert_eq!(secrets.receivers_calls(), 1);

    // After it, a flood of unknown tokens costs one re-fetch.
    advance(secs(10)).await;
    for _ in 0..100 {
        assert!(state.authenticate(&unknown).await.unwrap().is_none());
    }
    assert_eq!(secrets.receivers_calls(), 2);

    // A receiver created at run time works once the next interval allows a re-fetch.
    let added = secrets.add("team-b", "quay", "added-later", None);
    advance(secs(9)).await;
    assert!(state.authenticate(&added).await.unwrap().is_none());
    assert_eq!(secrets.receivers_calls(), 2);
    advance(secs(1)).await;
    let found = state.authenticate(&added).await.unwrap().expect("found");
    assert_eq!(found.id.project, "team-b");
    assert_eq!(secrets.receivers_calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn an_expired_receiver_cache_keeps_serving_while_the_secret_store_is_down() {
    let secrets = FakeSecrets::new();
    let token = secrets.add(NS, "quay", "s3cret", None);
    let state = state(
        &[
            ("QUAYHOOK_SECRETS_TTL", "60s"),
            ("QUAYHOOK_SECRETS_MISS_INTERVAL", "10s"),
        ],
        &secrets,
        &FakeCluster::new(),
    );
    assert!(state.authenticate(&token).await.unwrap().is_some());

    secrets
        .on_receivers()
        .always(Step::fail(fakes::unavailable()));
    advance(secs(61)).await;
    for _ in 0..50 {
        assert!(
            state.authenticate(&token).await.unwrap().is_some(),
            "the stale cache answers"
        );
    }
    settle().await;
    assert_eq!(
        secrets.receivers_calls(),
        2,
        "a failed refresh is stamped: no second attempt within the interval"
    );
    advance(secs(10)).await;
    assert!(state.authenticate(&token).await.unwrap().is_some());
    settle().await;
    assert_eq!(secrets.receivers_calls(), 3, "one attempt per interval");

    // Once the store is back, the next allowed refresh replaces the cache.
    secrets.on_receivers().reset();
    secrets.remove(NS, "quay");
    advance(secs(10)).await;
    assert!(
        state.authenticate(&token).await.unwrap().is_some(),
        "answered from the stale cache while the refresh runs beside it"
    );
    settle().await;
    assert_eq!(state.receivers_age(), Some(Duration::ZERO));
    assert!(state.authenticate(&token).await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_hanging_secret_store_does_not_delay_a_token_the_stale_cache_knows() {
    let secrets = FakeSecrets::new();
    let token = secrets.add(NS, "quay", "s3cret", None);
    let state = state(
        &[("QUAYHOOK_SECRETS_TTL", "60s")],
        &secrets,
        &FakeCluster::new(),
    );
    assert!(state.authenticate(&token).await.unwrap().is_some());

    secrets.on_receivers().always(Step::hang());
    advance(secs(61)).await;
    let started = tokio::time::Instant::now();
    assert!(state.authenticate(&token).await.unwrap().is_some());
    assert_eq!(started.elapsed(), Duration::ZERO, "answered at once");
    settle().await;
    assert_eq!(
        secrets.receivers_calls(),
        2,
        "the refresh started beside it"
    );
    assert!(state.authenticate(&token).await.unwrap().is_some());
    settle().await;
    assert_eq!(secrets.receivers_calls(), 2, "joined, not started again");
}

#[tokio::test(start_paused = true)]
async fn concurrent_unknown_tokens_share_one_fetch_when_the_cache_just_expired() {
    let secrets = FakeSecrets::new();
    let token = secrets.add(NS, "quay", "s3cret", None);
    let state = state(
        &[("QUAYHOOK_SECRETS_TTL", "60s")],
        &secrets,
        &FakeCluster::new(),
    );
    assert!(state.authenticate(&token).await.unwrap().is_some());
    secrets.on_receivers().always(Step::delay(secs(1)));
    advance(secs(61)).await;

    let unknown: Vec<String> = (0..100).map(|i| format!("{i:064x}")).collect();
    let answers = futures::future::join_all(unknown.iter().map(|t| state.authenticate(t))).await;
    assert!(answers.iter().all(|a| matches!(a, Ok(None))));
    assert_eq!(secrets.receivers_calls(), 2, "one fetch, shared by all 100");
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_sees_one_attempt_per_interval_however_many_tokens_arrive() {
    let secrets = FakeSecrets::new();
    let token = secrets.add(NS, "quay", "s3cret", None);
    let state = state(
        &[
            ("QUAYHOOK_SECRETS_TTL", "60s"),
            ("QUAYHOOK_SECRETS_MISS_INTERVAL", "10s"),
        ],
        &secrets,
        &FakeCluster::new(),
    );
    assert!(state.authenticate(&token).await.unwrap().is_some());
    secrets
        .on_receivers()
        .always(Step::fail(fakes::unavailable()).after(Duration::from_millis(5)));
    advance(secs(61)).await;

    // 200 unknown tokens over 2 s, ten every 100 ms.
    for round in 0..20 {
        let unknown: Vec<String> = (0..10).map(|i| format!("{round:032x}{i:032x}")).collect();
        let answers =
            futures::future::join_all(unknown.iter().map(|t| state.authenticate(t))).await;
        assert!(answers.iter().all(|a| matches!(a, Ok(None))));
        advance(Duration::from_millis(100)).await;
    }
    assert_eq!(
        secrets.receivers_calls(),
        2,
        "one attempt in the 2 s, whatever the outcome"
    );
    assert!(
        state.authenticate(&token).await.unwrap().is_some(),
        "known tokens still pass"
    );
}

#[tokio::test(start_paused = true)]
async fn without_any_cache_a_secret_store_outage_is_an_error_stamped_for_the_interval() {
    let secrets = FakeSecrets::new();
    let token = secrets.add(NS, "quay", "s3cret", None);
    secrets
        .on_receivers()
        .then(Step::fail(fakes::unavailable()).after(secs(1)));
    let state = state(
        &[("QUAYHOOK_SECRETS_MISS_INTERVAL", "10s")],
        &secrets,
        &FakeCluster::new(),
    );
    assert!(matches!(
        state.authenticate(&token).await,
        Err(SecretsError::Unavailable(_))
    ));
    assert!(
        matches!(
            state.authenticate(&token).await,
            Err(SecretsError::Unavailable(_))
        ),
        "the last error, without calling the store again"
    );
    assert_eq!(secrets.receivers_calls(), 1);
    advance(secs(10)).await;
    assert!(state.authenticate(&token).await.unwrap().is_some());
    assert_eq!(secrets.receivers_calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_cold_start_with_two_scopes_reads_the_kubeconfig_once() {
    let secrets = FakeSecrets::new();
    secrets.add(NS, "quay", "s3cret", None);
    secrets.add("other", "quay", "s3cret", None);
    secrets
        .on_kubeconfig()
        .always(Step::delay(Duration::from_millis(50)));
    let cluster = FakeCluster::new()
        .with(wh(NS, "a").image(QUAY_REPO, json!({})))
        .with(wh("other", "b").image(QUAY_REPO, json!({})));
    let state = state(&[], &secrets, &cluster);
    state.prefetch().await;
    assert_eq!(secrets.kubeconfig_calls(), 1, "one read for both scopes");
    assert_eq!(cluster.connect_calls(), 1);
    assert_eq!(cluster.list_calls(), 2, "one list per scope");
}

/// Lets spawned fetches run to completion (paused time advances only when all tasks idle).
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn concurrent_401s_reread_the_kubeconfig_and_reconnect_once() {
    let secrets = FakeSecrets::new();
    let token = secrets.add(NS, "quay", "s3cret", None);
    secrets.set_kubeconfig("token-1");
    let cluster = FakeCluster::new();
    for i in 0..5 {
        cluster.apply(wh(NS, &format!("w{i}")).image(QUAY_REPO, json!({})));
    }
    let state = state(&[], &secrets, &cluster);
    let (status, _) = deliver(&state, &token, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(status, 200);
    assert_eq!(
        (secrets.kubeconfig_calls(), cluster.connect_calls()),
        (1, 1)
    );

    // The operator rotates the token: the old one is rejected, the secret holds the new one.
    cluster.revoke("token-1");
    secrets.set_kubeconfig("token-2");
    cluster.reset_calls();
    // Every patch is in flight when the first 401 comes back, and the re-read takes a while,
    // so the other requests queue behind it.
    cluster
        .on_patch()
        .always(Step::delay(Duration::from_millis(100)));
    secrets
        .on_kubeconfig()
        .always(Step::delay(Duration::from_millis(50)));
    let (status, body) = deliver(&state, &token, &push(QUAY_REPO, &["v1"])).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body, "refreshed").len(), 5, "{body}");
    assert_eq!(cluster.patch_calls(), 10, "five 401s, then five patches");
    assert_eq!(secrets.kubeconfig_calls(), 2, "one re-read for five 401s");
    assert_eq!(cluster.connected_with(), ["token-2"]);
    assert!(cluster.refreshed_at(NS, "w4").is_some());
}

#[tokio::test(start_paused = true)]
async fn a_token_still_rejected_after_the_reconnect_fails_without_a_loop() {
    let secrets = FakeSecrets::new();
    let cluster = FakeCluster::new().with(wh(NS, "w").image(QUAY_REPO, json!({})));
    cluster.revoke(fakes::KUBECONFIG);
    let state = state(&[], &secrets, &cluster);
    let result = state
        .with_store(&budget(), |store| async move {
            list_index(&*store, Some(NS), 500).await
        })
        .await;
    assert_eq!(
        result.map(|index| index.len()),
        Err(StateError::Cluster(ClusterError::Unauthorized))
    );
    assert_eq!(
        (secrets.kubeconfig_calls(), cluster.connect_calls()),
        (2, 2)
    );
    assert_eq!(cluster.list_calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_fresh_index_is_not_listed_again_and_an_expired_one_is() {
    let cluster = FakeCluster::new().with(wh(NS, "w").image(QUAY_REPO, json!({})));
    let state = state(
        &[("QUAYHOOK_INDEX_TTL", "60s")],
        &FakeSecrets::new(),
        &cluster,
    );
    let urls = candidate_urls(QUAY_REPO);

    assert_eq!(
        state.index(Some(NS), &urls, &budget()).await.unwrap().len(),
        1
    );
    advance(secs(59)).await;
    state.index(Some(NS), &urls, &budget()).await.unwrap();
    assert_eq!(cluster.lists(), [Some(NS.to_owned())]);

    cluster.apply(wh(NS, "new").image(QUAY_REPO, json!({})));
    advance(secs(1)).await;
    assert_eq!(
        state.index(Some(NS), &urls, &budget()).await.unwrap().len(),
        2
    );
    assert_eq!(cluster.list_calls(), 2);

    // Each scope has its own index.
    state.index(None, &urls, &budget()).await.unwrap();
    assert_eq!(cluster.lists().last(), Some(&None));
}

#[tokio::test(start_paused = true)]
async fn a_push_nobody_subscribes_to_relists_at_most_once_per_miss_interval() {
    let cluster = FakeCluster::new().with(wh(NS, "w").image(QUAY_REPO, json!({})));
    let state = state(
        &[
            ("QUAYHOOK_INDEX_TTL", "60s"),
            ("QUAYHOOK_INDEX_MISS_INTERVAL", "1s"),
        ],
        &FakeSecrets::new(),
        &cluster,
    );
    let subscribed = candidate_urls(QUAY_REPO);
    let unknown = candidate_urls("quay.io/mynamespace/created-later");
    state.index(Some(NS), &subscribed, &budget()).await.unwrap();

    for _ in 0..50 {
        state.index(Some(NS), &unknown, &budget()).await.unwrap();
    }
    assert_eq!(
        cluster.list_calls(),
        1,
        "within the interval, the cache answers"
    );

    // A Warehouse created a moment ago is found by the next allowed re-list.
    cluster.apply(wh(NS, "created-later").image("quay.io/mynamespace/created-later", json!({})));
    advance(Duration::from_millis(999)).await;
    let index = state.index(Some(NS), &unknown, &budget()).await.unwrap();
    assert!(!index.has_subscribers(Some(NS), &unknown));
    advance(Duration::from_millis(1)).await;
    for _ in 0..50 {
        let index = state.index(Some(NS), &unknown, &budget()).await.unwrap();
        assert!(index.has_subscribers(Some(NS), &unknown));
    }
    assert_eq!(cluster.list_calls(), 2);

    // A push with subscribers never re-lists a fresh index, whatever its age.
    advance(secs(59)).await;
    state.index(Some(NS), &unknown, &budget()).await.unwrap();
    assert_eq!(cluster.list_calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_list_ends_with_the_request_budget() {
    let cluster = FakeCluster::new().with(wh(NS, "w").image(QUAY_REPO, json!({})));
    cluster.on_list().always(Step::hang());
    let state = state(&[], &FakeSecrets::new(), &cluster);
    let started = tokio::time::Instant::now();
    let result = state
        .index(Some(NS), &candidate_urls(QUAY_REPO), &budget())
        .await;
    assert!(matches!(
        result,
        Err(StateError::Cluster(ClusterError::Timeout))
    ));
    assert_eq!(started.elapsed(), secs(8));
    assert_eq!(cluster.list_calls(), 1, "a timeout is not retried");
}

#[tokio::test(start_paused = true)]
async fn a_list_failure_is_an_error_and_the_next_request_lists_again() {
    let cluster = FakeCluster::new().with(wh(NS, "w").image(QUAY_REPO, json!({})));
    cluster
        .on_list()
        .always(Step::fail(ClusterError::Forbidden("no list".into())));
    let state = state(&[], &FakeSecrets::new(), &cluster);
    let urls = candidate_urls(QUAY_REPO);
    assert!(matches!(
        state.index(Some(NS), &urls, &budget()).await,
        Err(StateError::Cluster(ClusterError::Forbidden(_)))
    ));
    cluster.on_list().reset();
    assert_eq!(
        state.index(Some(NS), &urls, &budget()).await.unwrap().len(),
        1
    );
    assert_eq!(cluster.list_calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_warehouse_whose_patch_answers_404_is_dropped_from_the_index() {
    let secrets = FakeSecrets::new();
    let token = secrets.add(NS, "quay", "s3cret", None);
    let cluster = FakeCluster::new()
        .with(wh(NS, "kept").image(QUAY_REPO, json!({})))
        .with(wh(NS, "deleted").image(QUAY_REPO, json!({})));
    let state = state(&[], &secrets, &cluster);
    let body = push(QUAY_REPO, &["v1"]);
    let (_, first) = deliver(&state, &token, &body).await;
    assert_eq!(
        names(&first, "refreshed"),
        ["kargo-demo/deleted", "kargo-demo/kept"]
    );

    cluster.delete(NS, "deleted");
    let (status, second) = deliver(&state, &token, &body).await;
    assert_eq!(
        status, 200,
        "a deleted Warehouse is not a failure: {second}"
    );
    assert_eq!(names(&second, "gone"), ["kargo-demo/deleted"]);
    assert_eq!(names(&second, "refreshed"), ["kargo-demo/kept"]);

    cluster.reset_calls();
    let (_, third) = deliver(&state, &token, &body).await;
    assert_eq!(names(&third, "refreshed"), ["kargo-demo/kept"]);
    assert!(names(&third, "gone").is_empty());
    let patched: Vec<String> = cluster
        .patches()
        .iter()
        .map(|(k, _)| k.to_string())
        .collect();
    assert_eq!(
        patched,
        ["kargo-demo/kept"],
        "the dropped entry is not patched again"
    );
    assert_eq!(
        cluster.list_calls(),
        0,
        "dropped from the cache, not re-listed"
    );
}
