//! The whole handler given an arbitrary event: an API Gateway event built from arbitrary
//! method, path, headers and body (often a well-formed push with a valid token, so the fuzzer
//! reaches selection and patches), answered by `handler::handle` over the test kit's in-memory
//! secrets and cluster (`quayhook_testkit::fakes`), whose calls fail as the input says. Time
//! is paused (retries and budgets run instantly).
//!
//! Checked on every answer: a status from the handler's table, a JSON body ending in a newline,
//! a 500 only when a Warehouse refresh failed, and no secret or token in the body.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use kargo_match::token::{SecretString, receiver_token};
use libfuzzer_sys::fuzz_target;
use quayhook::cluster::ClusterError;
use quayhook::handler;
use quayhook::secrets::SecretsError;
use quayhook::state::State;
use quayhook_testkit::events::event_v2;
use quayhook_testkit::fakes::{self, FakeCluster, FakeSecrets, Step};
use quayhook_testkit::fixtures::wh;
use serde_json::{Value, json};

const SECRET: &str = "fuzz-secret-current";
const PREVIOUS: &str = "fuzz-secret-previous";
const CLUSTER_SECRET: &str = "fuzz-secret-cluster";
const NS: &str = "kargo-demo";
const REPOS: [&str; 4] = [
    "quay.io/mynamespace/repository",
    "quay.io/mynamespace/guestbook-chart",
    "docker.io/library/nginx",
    "nginx",
];

#[derive(Arbitrary, Debug)]
enum Method<'a> {
    Post,
    Get,
    Other(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Path<'a> {
    Current { stage: Option<&'a str> },
    Previous,
    Cluster,
    Raw(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Body<'a> {
    Push {
        repo: u8,
        other_repo: Option<&'a str>,
        tags: Vec<Option<&'a str>>,
        test_notification: bool,
    },
    Raw(&'a [u8]),
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    method: Method<'a>,
    path: Path<'a>,
    body: Body<'a>,
    base64: bool,
    content_length: Option<&'a str>,
    headers: Vec<(&'a str, &'a str)>,
    /// Extra Warehouse objects, as JSON text.
    extra_warehouses: Vec<&'a str>,
    secrets_fail: bool,
    kubeconfig_fails: bool,
    list_failures: u8,
    /// One byte per PATCH call, in call order: how it ends.
    patch_outcomes: Vec<u8>,
    max_attempts: u8,
}

fn failure(code: u8) -> Option<ClusterError> {
    match code % 10 {
        0..=2 => None,
        3 => Some(ClusterError::NotFound),
        4 => Some(ClusterError::Unauthorized),
        5 => Some(ClusterError::Status {
            code: 500,
            message: "injected".into(),
        }),
        6 => Some(ClusterError::Throttled {
            retry_after: Some(Duration::from_secs(1)),
        }),
        7 => Some(ClusterError::Forbidden("injected".into())),
        8 => Some(ClusterError::Transport(quayhook::cause::Cause::new(
            "injected",
        ))),
        _ => Some(ClusterError::Timeout),
    }
}

/// The receivers: one project receiver with a previous secret, one cluster-level receiver.
fn secrets(input: &Input<'_>) -> FakeSecrets {
    let secrets = FakeSecrets::new();
    secrets.add(NS, "quay", SECRET, Some(PREVIOUS));
    secrets.add("", "quay", CLUSTER_SECRET, None);
    if input.secrets_fail {
        secrets
            .on_receivers()
            .always(Step::fail(fakes::unavailable()));
    }
    if input.kubeconfig_fails {
        let missing = SecretsError::NotFound("fuzz/kubeconfig".into());
        secrets.on_kubeconfig().always(Step::fail(missing));
    }
    secrets
}

/// The Warehouses (one per subscription shape, plus the input's own objects), and the list and
/// patch failures the input asks for.
fn cluster(input: &Input<'_>) -> FakeCluster {
    let cluster = FakeCluster::new()
        .with(wh(NS, "any").image(REPOS[0], json!({})))
        .with(wh(NS, "v1").image(REPOS[0], json!({ "constraint": "^1.0.0" })))
        .with(wh(NS, "lexical").image(
            REPOS[0],
            json!({ "imageSelectionStrategy": "Lexical", "ignoreTagsRegexes": ["-rc"] }),
        ))
        .with(wh(NS, "digest").image(
            REPOS[0],
            json!({ "imageSelectionStrategy": "Digest", "constraint": "latest" }),
        ))
        .with(wh(NS, "chart").chart(&format!("oci://{}", REPOS[1]), "^0.3.0"))
        .with(wh(NS, "bad").image(REPOS[0], json!({ "allowTags": "x" })))
        .with(wh(NS, "nginx").image(REPOS[2], json!({})))
        .with(wh("other", "elsewhere").image(REPOS[0], json!({})));
    for text in &input.extra_warehouses {
        if let Ok(object) = serde_json::from_str::<Value>(text) {
            cluster.apply(object);
        }
    }
    for _ in 0..input.list_failures % 4 {
        cluster.on_list().then(Step::fail(ClusterError::Timeout));
    }
    cluster.on_patch().then_all(
        input
            .patch_outcomes
            .iter()
            .map(|code| failure(*code).map_or_else(Step::pass, Step::fail)),
    );
    cluster
}

/// The event, and the body bytes in it (before any base64 encoding).
fn event(input: &Input<'_>) -> (String, Vec<u8>) {
    let token =
        |project: &str, secret: &str| receiver_token(project, "quay", &SecretString::new(secret));
    let path = match &input.path {
        Path::Current { stage } => format!(
            "{}/quay/{}",
            stage.map(|s| format!("/{s}")).unwrap_or_default(),
            token(NS, SECRET)
        ),
        Path::Previous => format!("/quay/{}", token(NS, PREVIOUS)),
        Path::Cluster => format!("/quay/{}", token("", CLUSTER_SECRET)),
        // API Gateway's rawPath always starts with `/`; lambda_http 1.3 panics on one that
        // does not (its first finding here, see BENCHMARKS.md), so build paths as API Gateway does.
        Path::Raw(p) => format!("/{}", p.trim_start_matches('/')),
    };
    let body: Vec<u8> = match &input.body {
        Body::Push {
            repo,
            other_repo,
            tags,
            test_notification,
        } => {
            let url = other_repo.unwrap_or(REPOS[usize::from(*repo) % REPOS.len()]);
            let mut b = json!({ "docker_url": url, "updated_tags": tags });
            if *test_notification {
                b["pruned_image_count"] = json!(3);
            }
            b.to_string().into_bytes()
        }
        Body::Raw(b) => b.to_vec(),
    };
    let method = match input.method {
        Method::Post => "POST",
        Method::Get => "GET",
        Method::Other(m) => m,
    };
    // `host` and `x-forwarded-proto` are API Gateway's own (lambda_http builds the request URI
    // from them and panics on an invalid one), so the client controls every header but those.
    let mut headers: Vec<(String, String)> = vec![("x-forwarded-proto".into(), "https".into())];
    for (k, v) in &input.headers {
        let k = k.to_ascii_lowercase();
        if k != "host" && k != "x-forwarded-proto" {
            headers.push((k, (*v).to_owned()));
        }
    }
    if let Some(cl) = input.content_length {
        headers.push(("content-length".into(), cl.to_owned()));
    }
    let headers: Vec<(&str, String)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let event = event_v2(method, &path, &body, input.base64, &headers);
    (event, body)
}

/// `sent` is the event as sent: a secret the client put in its own push may be echoed back.
fn check(status: u16, body: &[u8], sent: &str) {
    assert!(
        matches!(status, 200 | 400 | 404 | 405 | 413 | 500 | 503),
        "unexpected status {status}"
    );
    let text = std::str::from_utf8(body).expect("UTF-8 body");
    assert!(text.ends_with('\n'), "body ends with a newline");
    let value: Value = serde_json::from_str(text).expect("JSON body");
    if status == 500 {
        assert!(
            value["failed"].as_array().is_some_and(|f| !f.is_empty()),
            "a 500 names a failed Warehouse: {text}"
        );
    }
    // The echo of the client's own push (repositories and tags, normalized, so a secret the
    // client typed may reappear transformed) is not a leak; everything else must hold none.
    let mut rest = value;
    if let Some(o) = rest.as_object_mut() {
        o.remove("repositories");
        o.remove("tags");
        for list in ["refreshed", "failed", "gone", "skipped", "invalid"] {
            for w in o
                .get_mut(list)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(w) = w.as_object_mut() {
                    w.remove("tag");
                    w.remove("reasons");
                }
            }
        }
    }
    let rest = rest.to_string();
    for secret in [SECRET, PREVIOUS, CLUSTER_SECRET] {
        assert!(
            sent.contains(secret) || !rest.contains(secret),
            "a secret leaked into the body: {text}"
        );
    }
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
}

fuzz_target!(|input: Input| {
    let (text, body) = event(&input);
    let Ok(req) = lambda_http::request::from_str(&text) else {
        return;
    };
    let sent = format!(
        "{text}{}{}",
        String::from_utf8_lossy(&body),
        input.extra_warehouses.concat()
    );
    let attempts = (input.max_attempts % 4 + 1).to_string();
    let config = fakes::config(&[
        ("QUAYHOOK_MAX_ATTEMPTS", &attempts),
        ("QUAYHOOK_PATCH_CONCURRENCY", "4"),
    ]);
    let state = State::new(config, secrets(&input), cluster(&input));
    let response = RUNTIME.with(|rt| rt.block_on(handler::handle(&state, req)));
    check(response.status().as_u16(), response.body().as_ref(), &sent);
});
