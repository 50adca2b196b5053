//! Load and robustness: the burst test below, and the regression tests of fuzz findings
//! (`fuzz_findings`).
//!
//! Burst load: 1,000 Quay pushes in bursts of 50 concurrent deliveries, across 3 projects and
//! 200 Warehouses, while the local API server fails 5% of requests with transient errors
//! (500, 503, 429 and dropped connections).
//!
//! Afterwards:
//! - every Warehouse that some push selected was refreshed (a PATCH the API server answered
//!   200) at least once after the last push that selected it was sent;
//! - every 5xx answer was one Quay needs to retry: a 500 names at least one Warehouse whose
//!   refresh failed, a 503 says what was unavailable; a 5xx push is re-sent, as Quay does;
//! - every answer's refreshed/failed lists are exactly the Warehouses the push selects;
//! - nothing panicked.
//!
//! It takes well under a minute, so `make test` runs it too; `make loadtest` runs it alone in a
//! release build and records requests/s and p99 in BENCHMARKS.md through
//! `QUAYHOOK_LOADTEST_OUT`. No timing is asserted.

mod fuzz_findings;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kargo_match::index::{Index, candidate_urls};
use kargo_match::quay::Push;
use kargo_match::token::{SecretString, receiver_token};
use kargo_match::warehouse::WarehouseKey;
use quayhook::cluster::KubeConnector;
use quayhook::config::Config;
use quayhook::handler;
use quayhook::secrets::SecretsManager;
use quayhook::state::State;
use serde_json::{Value, json};

use quayhook_testkit::apiserver::{ApiServer, Fault};
use quayhook_testkit::events::{delivery, push, request};
use quayhook_testkit::fixtures::wh;
use quayhook_testkit::harness::parts;
use quayhook_testkit::moto;

const PROJECTS: [&str; 3] = ["alpha", "beta", "gamma"];
const WAREHOUSES: usize = 200;
const PUSHES: usize = 1_000;
const BURST: usize = 50;
/// Subscribed repositories; pushes also go to two repositories nobody subscribes to.
const REPOS: usize = 10;
const PUSH_REPOS: usize = REPOS + 2;
/// One request in this many fails with a transient error.
const FAIL_EVERY: u64 = 20;
/// How often a 5xx push is re-sent (Quay retries failed notifications).
const QUAY_RETRIES: usize = 5;
const TAGS: [&str; 6] = [
    "v1.0.3",
    "v1.2.0",
    "v2.1.0",
    "v1.3.0-rc.1",
    "latest",
    "v3.0.0",
];

/// A small deterministic generator (xorshift64*), so every run sends the same pushes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn repo(i: usize) -> String {
    format!("quay.io/loadtest/app-{i}")
}

fn warehouses() -> Vec<Value> {
    (0..WAREHOUSES)
        .map(|i| {
            let filter = match i % 4 {
                0 => json!({}),
                1 => json!({ "constraint": "^1.0.0" }),
                2 => json!({ "imageSelectionStrategy": "Lexical", "ignoreTagsRegexes": ["-rc"] }),
                _ => json!({ "constraint": ">=2.0.0" }),
            };
            let mut w =
                wh(PROJECTS[i % 3], &format!("wh-{i:03}")).image(&repo((i * 7) % REPOS), filter);
            if i % 5 == 0 {
                w = w.image(&repo((i + 3) % REPOS), json!({ "constraint": "^2.0.0" }));
            }
            w.json()
        })
        .collect()
}

/// One planned delivery.
struct Delivery {
    project: &'static str,
    body: String,
    /// The Warehouses the push selects (the oracle: the pure planner over the same objects).
    selected: BTreeSet<WarehouseKey>,
}

/// What the API server saw: every request's completion time, and the injected failures.
#[derive(Default)]
struct Observed {
    /// Successful PATCHes: Warehouse → completion times.
    patched: Mutex<HashMap<WarehouseKey, Vec<Instant>>>,
    requests: AtomicU64,
    injected: AtomicU64,
}

#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
    sent: Instant,
    latency: Duration,
}

fn keys(body: &Value, list: &str) -> BTreeSet<WarehouseKey> {
    body[list]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|w| {
                    WarehouseKey::new(
                        w["namespace"].as_str().unwrap_or_default(),
                        w["name"].as_str().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

type Receiver = State<SecretsManager, KubeConnector>;

/// quayhook's real adapters against moto and the local API server, without log capture (a
/// Lambda logs at `info`; capturing debug logs of every dependency would measure the capture).
async fn start() -> (Arc<ApiServer>, Arc<Receiver>, HashMap<&'static str, String>) {
    let api = Arc::new(ApiServer::start().await);
    for w in warehouses() {
        api.apply(w);
    }
    let sa_token = api.grant_quayhook(Some(&PROJECTS));
    let sm = moto::client();
    let prefix = format!("loadtest-{}-{}", std::process::id(), rand_suffix());
    let kubeconfig_id = format!("{prefix}/kubeconfig");
    moto::put_secret(&sm, &kubeconfig_id, &api.kubeconfig_yaml(&sa_token, None)).await;
    let mut tokens = HashMap::new();
    for project in PROJECTS {
        let secret = format!("loadtest-secret-{project}");
        let body = json!({ "project": project, "receiver": "quay", "secret": secret });
        moto::put_secret(
            &sm,
            &format!("{prefix}/receivers/{project}"),
            &body.to_string(),
        )
        .await;
        tokens.insert(
            project,
            receiver_token(project, "quay", &SecretString::new(secret)),
        );
    }
    let vars: HashMap<&str, String> = HashMap::from([
        (
            "QUAYHOOK_RECEIVER_SECRET_PREFIX",
            format!("{prefix}/receivers/"),
        ),
        ("QUAYHOOK_KUBECONFIG_SECRET_ID", kubeconfig_id.clone()),
    ]);
    let config = Config::from_lookup(|k| vars.get(k).cloned()).expect("config");
    let secrets = SecretsManager::new(
        sm,
        Vec::new(),
        Some(format!("{prefix}/receivers/")),
        kubeconfig_id,
    );
    let connector = KubeConnector::from_config(&config);
    (
        api,
        Arc::new(State::new(config, secrets, connector)),
        tokens,
    )
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn plan(rng: &mut Rng, index: &Index) -> Vec<Delivery> {
    (0..PUSHES)
        .map(|_| {
            let project = PROJECTS[rng.below(PROJECTS.len())];
            let repository = repo(rng.below(PUSH_REPOS));
            let mut tags: Vec<&str> = (0..1 + rng.below(2))
                .map(|_| TAGS[rng.below(TAGS.len())])
                .collect();
            if rng.below(50) == 0 {
                tags.clear(); // no tags: every subscriber is refreshed
            }
            let body = push(&repository, &tags);
            let parsed = Push::parse(body.as_bytes()).expect("valid push");
            let selected = index
                .plan(
                    Some(project),
                    &candidate_urls(&parsed.docker_url),
                    &parsed.tags(),
                )
                .refresh
                .into_iter()
                .map(|s| s.key)
                .collect();
            Delivery {
                project,
                body,
                selected,
            }
        })
        .collect()
}

async fn deliver(state: Arc<Receiver>, token: String, body: String) -> Answer {
    let event = delivery(&token, &body);
    let sent = Instant::now();
    let (status, body) = parts(handler::handle(&state, request(&event)).await);
    Answer {
        status,
        body,
        sent,
        latency: sent.elapsed(),
    }
}

/// Checks one answer against the push's selection; returns whether Quay must retry it.
fn check_answer(i: usize, d: &Delivery, a: &Answer) -> bool {
    match a.status {
        200 => {
            assert_eq!(
                keys(&a.body, "refreshed"),
                d.selected,
                "push {i}: a 200 refreshes exactly the selected Warehouses: {}",
                a.body
            );
            false
        }
        500 => {
            let failed = keys(&a.body, "failed");
            assert!(
                !failed.is_empty(),
                "push {i}: a 500 must name a failed Warehouse (else Quay retries for nothing): {}",
                a.body
            );
            let mut all = keys(&a.body, "refreshed");
            all.extend(failed);
            assert_eq!(all, d.selected, "push {i}: {}", a.body);
            true
        }
        503 => {
            assert!(
                a.body["error"].is_string(),
                "push {i}: a 503 says what was unavailable: {}",
                a.body
            );
            true
        }
        other => panic!("push {i}: unexpected status {other}: {}", a.body),
    }
}

#[test]
fn a_burst_of_1000_pushes_with_5_percent_transient_failures_loses_no_refresh() {
    let panics = Arc::new(AtomicUsize::new(0));
    let hook_panics = Arc::clone(&panics);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        hook_panics.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(Arc::clone(&panics)));
    assert_eq!(panics.load(Ordering::SeqCst), 0, "something panicked");
}

async fn run(panics: Arc<AtomicUsize>) {
    let (api, state, tokens) = start().await;
    let index = Index::from_listed(
        warehouses()
            .into_iter()
            .map(|w| serde_json::from_value(w).expect("a JSON value always decodes")),
    );
    let deliveries = Arc::new(plan(&mut Rng(0x5eed_1234_abcd_ef01), &index));

    let observed = Arc::new(Observed::default());
    let failing = Arc::new(AtomicBool::new(false));
    {
        let observed = Arc::clone(&observed);
        let failing = Arc::clone(&failing);
        let weak = Arc::downgrade(&api);
        let kinds = [
            Fault::status(503),
            Fault::status(500),
            Fault::status(429),
            Fault::drop(),
        ];
        api.on_request(move |r| {
            let n = observed.requests.fetch_add(1, Ordering::SeqCst) + 1;
            if r.verb == "patch"
                && r.status == 200
                && let (Some(ns), Some(name)) = (&r.namespace, &r.name)
            {
                observed
                    .patched
                    .lock()
                    .unwrap()
                    .entry(WarehouseKey::new(ns, name))
                    .or_default()
                    .push(Instant::now());
            }
            // Every FAIL_EVERY-th request arms a one-shot fault for the next request.
            if failing.load(Ordering::SeqCst)
                && n % FAIL_EVERY == 0
                && let Some(api) = weak.upgrade()
            {
                let kind = kinds[(n / FAIL_EVERY) as usize % kinds.len()].clone();
                api.inject(kind.times(1));
                observed.injected.fetch_add(1, Ordering::SeqCst);
            }
        });
    }

    // Warm-up delivery per project (fills the caches as a live Lambda's would be), no faults.
    for project in PROJECTS {
        let a = deliver(
            Arc::clone(&state),
            tokens[project].clone(),
            push(&repo(0), &["warmup-no-match"]),
        )
        .await;
        assert_eq!(a.status, 200, "warm-up: {}", a.body);
    }
    let patched_before: usize = observed
        .patched
        .lock()
        .unwrap()
        .values()
        .map(Vec::len)
        .sum();
    failing.store(true, Ordering::SeqCst);

    let started = Instant::now();
    let mut answers: Vec<Option<Answer>> = (0..PUSHES).map(|_| None).collect();
    let mut latencies = Vec::with_capacity(PUSHES);
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    let mut retry: Vec<usize> = Vec::new();
    for burst in (0..PUSHES).collect::<Vec<_>>().chunks(BURST) {
        let handles: Vec<_> = burst
            .iter()
            .map(|&i| {
                let d = &deliveries[i];
                tokio::spawn(deliver(
                    Arc::clone(&state),
                    tokens[d.project].clone(),
                    d.body.clone(),
                ))
            })
            .collect();
        for (&i, handle) in burst.iter().zip(handles) {
            let a = handle.await.expect("a delivery task panicked");
            latencies.push(a.latency);
            *statuses.entry(a.status).or_default() += 1;
            if check_answer(i, &deliveries[i], &a) {
                retry.push(i);
            }
            answers[i] = Some(a);
        }
    }
    let elapsed = started.elapsed();

    // Quay re-sends failed notifications; so do we, a few times, one after another.
    let first_pass_5xx = retry.len();
    let mut resent = 0;
    for round in 0..QUAY_RETRIES {
        if retry.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200 * (round as u64 + 1))).await;
        let mut still = Vec::new();
        for i in std::mem::take(&mut retry) {
            let d = &deliveries[i];
            let a = deliver(
                Arc::clone(&state),
                tokens[d.project].clone(),
                d.body.clone(),
            )
            .await;
            resent += 1;
            if check_answer(i, d, &a) {
                still.push(i);
            }
        }
        retry = still;
    }
    failing.store(false, Ordering::SeqCst);
    assert!(
        retry.is_empty(),
        "{} pushes still failed after {QUAY_RETRIES} Quay retries",
        retry.len()
    );

    // Every selected Warehouse was refreshed after its last matching push was sent.
    let patched = observed.patched.lock().unwrap();
    let mut last_push: HashMap<&WarehouseKey, Instant> = HashMap::new();
    for (i, d) in deliveries.iter().enumerate() {
        let sent = answers[i].as_ref().expect("answered").sent;
        for key in &d.selected {
            let at = last_push.entry(key).or_insert(sent);
            *at = (*at).max(sent);
        }
    }
    let mut lost = Vec::new();
    for (key, sent) in &last_push {
        let ok = patched
            .get(*key)
            .is_some_and(|times| times.iter().any(|t| t > sent));
        if !ok {
            lost.push(key.to_string());
        }
    }
    lost.sort();
    assert!(lost.is_empty(), "refreshes lost: {lost:?}");
    assert_eq!(panics.load(Ordering::SeqCst), 0, "something panicked");

    latencies.sort();
    let patches: usize = patched.values().map(Vec::len).sum::<usize>() - patched_before;
    let report = json!({
        "pushes": PUSHES,
        "burst": BURST,
        "projects": PROJECTS.len(),
        "warehouses": WAREHOUSES,
        "fail_rate": 1.0 / FAIL_EVERY as f64,
        "seconds": elapsed.as_secs_f64(),
        "requests_per_second": PUSHES as f64 / elapsed.as_secs_f64(),
        "p50_ms": percentile(&latencies, 50.0).as_secs_f64() * 1e3,
        "p99_ms": percentile(&latencies, 99.0).as_secs_f64() * 1e3,
        "max_ms": latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        "statuses": statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "first_pass_5xx": first_pass_5xx,
        "resent": resent,
        "warehouses_refreshed": last_push.len(),
        "successful_patches": patches,
        "api_requests": observed.requests.load(Ordering::SeqCst),
        "injected_failures": observed.injected.load(Ordering::SeqCst),
        "lost": lost.len(),
        "panics": panics.load(Ordering::SeqCst),
    });
    println!("loadtest: {report:#}");
    if let Ok(path) = std::env::var("QUAYHOOK_LOADTEST_OUT") {
        std::fs::write(&path, format!("{report:#}\n")).expect("write the loadtest report");
    }
}
