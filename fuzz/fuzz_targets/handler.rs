//! The whole handler given an arbitrary event: an API Gateway event built from arbitrary
//! method, path, headers and body (often a well-formed push with a valid token, so the fuzzer
//! reaches selection and patches), answered by `handler::handle` over in-memory secrets and an
//! in-memory cluster whose calls fail as the input says. Time is paused (retries and budgets
//! run instantly).
//!
//! Checked on every answer: a status from the handler's table, a JSON body ending in a newline,
//! a 500 only when a Warehouse refresh failed, and no secret or token in the body.
#![no_main]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arbitrary::Arbitrary;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use quayhook::cluster::{ClusterError, Connector, WarehouseStore};
use quayhook::config::Config;
use quayhook::handler;
use quayhook::secrets::{ReceiverSecret, Receivers, SecretSource, SecretsError};
use quayhook::state::State;
use kargo_match::token::{SecretString, receiver_token};
use kargo_match::warehouse::WarehouseKey;
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

struct Secrets {
    fail: bool,
    kubeconfig_fails: bool,
}

impl SecretSource for Secrets {
    async fn receivers(&self) -> Result<Receivers, SecretsError> {
        if self.fail {
            return Err(SecretsError::Unavailable(quayhook::cause::Cause::new("injected")));
        }
        let receiver = |project: &str, secret: &str, previous: Option<&str>| ReceiverSecret {
            source: format!("fuzz/{project}"),
            project: project.into(),
            receiver: "quay".into(),
            secret: SecretString::new(secret),
            previous_secret: previous.map(SecretString::new),
        };
        Ok(Receivers {
            receivers: vec![
                receiver(NS, SECRET, Some(PREVIOUS)),
                receiver("", CLUSTER_SECRET, None),
            ],
            problems: Vec::new(),
        })
    }

    async fn kubeconfig(&self) -> Result<SecretString, SecretsError> {
        if self.kubeconfig_fails {
            Err(SecretsError::NotFound("fuzz/kubeconfig".into()))
        } else {
            Ok(SecretString::new("in-memory"))
        }
    }
}

struct Cluster {
    objects: Vec<Value>,
    list_failures: Mutex<u8>,
    outcomes: Vec<u8>,
}

struct Store(Arc<Cluster>, AtomicUsize);

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
        8 => Some(ClusterError::Transport("injected".into())),
        _ => Some(ClusterError::Timeout),
    }
}

impl WarehouseStore for Store {
    async fn list(
        &self,
        namespace: Option<&str>,
        _page_size: u32,
    ) -> Result<Vec<Value>, ClusterError> {
        {
            let mut left = self
                .0
                .list_failures
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if *left > 0 {
                *left -= 1;
                return Err(failure(*left).unwrap_or(ClusterError::Timeout));
            }
        }
        Ok(self
            .0
            .objects
            .iter()
            .filter(|o| {
                namespace.is_none_or(|ns| o.pointer("/metadata/namespace") == Some(&json!(ns)))
            })
            .cloned()
            .collect())
    }

    async fn patch(&self, _key: &WarehouseKey, _patch: &Value) -> Result<(), ClusterError> {
        let call = self.1.fetch_add(1, Ordering::SeqCst);
        match self.0.outcomes.get(call).copied().and_then(failure) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

struct Connect(Arc<Cluster>);

impl Connector for Connect {
    type Store = Store;

    async fn connect(&self, _kubeconfig: &SecretString) -> Result<Store, ClusterError> {
        Ok(Store(Arc::clone(&self.0), AtomicUsize::new(0)))
    }
}

fn warehouses(extra: &[&str]) -> Vec<Value> {
    let wh = |name: &str, ns: &str, sub: Value| {
        json!({
            "apiVersion": "kargo.akuity.io/v1alpha1", "kind": "Warehouse",
            "metadata": { "namespace": ns, "name": name },
            "spec": { "subscriptions": [sub] }
        })
    };
    let mut out = vec![
        wh("any", NS, json!({ "image": { "repoURL": REPOS[0] } })),
        wh(
            "v1",
            NS,
            json!({ "image": { "repoURL": REPOS[0], "constraint": "^1.0.0" } }),
        ),
        wh(
            "lexical",
            NS,
            json!({ "image": { "repoURL": REPOS[0], "imageSelectionStrategy": "Lexical", "ignoreTagsRegexes": ["-rc"] } }),
        ),
        wh(
            "digest",
            NS,
            json!({ "image": { "repoURL": REPOS[0], "imageSelectionStrategy": "Digest", "constraint": "latest" } }),
        ),
        wh(
            "chart",
            NS,
            json!({ "chart": { "repoURL": format!("oci://{}", REPOS[1]), "semverConstraint": "^0.3.0" } }),
        ),
        wh(
            "bad",
            NS,
            json!({ "image": { "repoURL": REPOS[0], "allowTags": "x" } }),
        ),
        wh("nginx", NS, json!({ "image": { "repoURL": REPOS[2] } })),
        wh(
            "elsewhere",
            "other",
            json!({ "image": { "repoURL": REPOS[0] } }),
        ),
    ];
    out.extend(extra.iter().filter_map(|t| serde_json::from_str(t).ok()));
    out
}

/// The event, and the body bytes in it (before any base64 encoding).
fn event(input: &Input<'_>) -> (Value, Vec<u8>) {
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
    let mut headers = serde_json::Map::new();
    headers.insert("content-type".into(), json!("application/json"));
    headers.insert(
        "host".into(),
        json!("abc123.execute-api.us-east-1.amazonaws.com"),
    );
    headers.insert("x-forwarded-proto".into(), json!("https"));
    // `host` and `x-forwarded-proto` are API Gateway's own (lambda_http builds the request URI
    // from them and panics on an invalid one), so the client controls every header but those.
    for (k, v) in &input.headers {
        let k = k.to_ascii_lowercase();
        if k != "host" && k != "x-forwarded-proto" {
            headers.insert(k, json!(v));
        }
    }
    if let Some(cl) = input.content_length {
        headers.insert("content-length".into(), json!(cl));
    }
    let body_text = if input.base64 {
        base64::engine::general_purpose::STANDARD.encode(&body)
    } else {
        String::from_utf8_lossy(&body).into_owned()
    };
    let event = json!({
        "version": "2.0",
        "routeKey": "POST /quay/{token}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": { "method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "Quay" },
            "requestId": "fuzz", "routeKey": "POST /quay/{token}", "stage": "$default",
            "time": "27/Nov/2026:12:00:00 +0000", "timeEpoch": 1_795_780_800_000u64
        },
        "body": body_text,
        "isBase64Encoded": input.base64
    });
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
    let (event, body) = event(&input);
    let text = event.to_string();
    let Ok(req) = lambda_http::request::from_str(&text) else {
        return;
    };
    let sent = format!(
        "{text}{}{}",
        String::from_utf8_lossy(&body),
        input.extra_warehouses.concat()
    );
    let attempts = (input.max_attempts % 4 + 1).to_string();
    let config = Config::from_lookup(|k| match k {
        "QUAYHOOK_RECEIVER_SECRET_IDS" => Some("fuzz/receiver".into()),
        "QUAYHOOK_KUBECONFIG_SECRET_ID" => Some("fuzz/kubeconfig".into()),
        "QUAYHOOK_MAX_ATTEMPTS" => Some(attempts.clone()),
        "QUAYHOOK_PATCH_CONCURRENCY" => Some("4".into()),
        _ => None,
    })
    .expect("config");
    let cluster = Arc::new(Cluster {
        objects: warehouses(&input.extra_warehouses),
        list_failures: Mutex::new(input.list_failures % 4),
        outcomes: input.patch_outcomes.clone(),
    });
    let state = State::new(
        config,
        Secrets {
            fail: input.secrets_fail,
            kubeconfig_fails: input.kubeconfig_fails,
        },
        Connect(cluster),
    );
    let response = RUNTIME.with(|rt| rt.block_on(handler::handle(&state, req)));
    check(response.status().as_u16(), response.body().as_ref(), &sent);
});
