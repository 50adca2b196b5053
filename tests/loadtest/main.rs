//! Load and robustness: two runs of valid Quay deliveries against 200 Warehouses in 3 projects
//! while the local API server fails 5% of requests with transient errors (500, 503, 429 and
//! dropped connections), and the regression tests of fuzz findings (`fuzz_findings`).
//!
//! - `burst`: 1,000 pushes in bursts of 50 concurrent deliveries through the Lambda handler.
//! - `hostile`: 300 pushes in bursts of 30 over real sockets to `quayhook::serve::serve`, first
//!   alone, then beside a hostile mix: slow heads, slow bodies, floods of unknown tokens with
//!   2 MiB bodies, and one push with 100,000 distinct tags.
//! - `outage`: pushes in bursts of 50 through the handler with a queue while the API server
//!   drops every request, then 2 workers drain the queue: no non-2xx answer, no refresh lost
//!   (its own checks, see `outage.rs`; 1,000 pushes in `make loadtest`, 200 in `cargo test`).
//!
//! After each run of valid deliveries:
//! - every Warehouse that some push selected was refreshed (a PATCH the API server answered
//!   200) at least once after the last push that selected it was sent;
//! - every 5xx answer was one Quay needs to retry: a 500 names at least one Warehouse whose
//!   refresh failed, a 503 says what was unavailable; a 5xx push is re-sent, as Quay does;
//! - every answer's refreshed/failed lists are exactly the Warehouses the push selects;
//! - nothing panicked.
//!
//! All take well under a minute together, so `make test` runs them too; `make loadtest` runs
//! them in a release build and records requests/s and latency in BENCHMARKS.md through
//! `QUAYHOOK_LOADTEST_OUT`. No timing is asserted. The runs never overlap (they share the
//! machine's cores, and each one's latency is the measurement).

mod burst;
mod deliveries;
mod fuzz_findings;
mod hostile;
mod http;
mod outage;
mod rig;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock, PoisonError};
use std::time::Duration;

use kargo_match::index::{Index, candidate_urls};
use kargo_match::quay::Push;
use kargo_match::warehouse::WarehouseKey;
use serde_json::{Value, json};

use quayhook_testkit::events::push;
use quayhook_testkit::fixtures::wh;

use rig::{Rig, rand_suffix};

const PROJECTS: [&str; 3] = ["alpha", "beta", "gamma"];
const WAREHOUSES: usize = 200;
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

impl Delivery {
    /// A push of `tags` to `repository` by `project`'s receiver, with what it selects: the
    /// first `max_tags` distinct tags, as the handler considers them.
    fn new(
        index: &Index,
        max_tags: usize,
        project: &'static str,
        repository: &str,
        tags: &[&str],
    ) -> Self {
        let body = push(repository, tags);
        let parsed = Push::parse(body.as_bytes()).expect("valid push");
        let mut considered = parsed.tags();
        considered.truncate(max_tags);
        let selected = index
            .plan(
                Some(project),
                &candidate_urls(&parsed.docker_url),
                &considered,
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
    }
}

/// `n` random pushes of one or two of [`TAGS`] (or none) to one of [`PUSH_REPOS`].
fn plan(rng: &mut Rng, rig: &Rig, n: usize) -> Vec<Delivery> {
    (0..n)
        .map(|_| {
            let project = PROJECTS[rng.below(PROJECTS.len())];
            let repository = repo(rng.below(PUSH_REPOS));
            let mut tags: Vec<&str> = (0..1 + rng.below(2))
                .map(|_| TAGS[rng.below(TAGS.len())])
                .collect();
            if rng.below(50) == 0 {
                tags.clear(); // no tags: every subscriber is refreshed
            }
            Delivery::new(
                &rig.index,
                rig.state.config.max_tags,
                project,
                &repository,
                &tags,
            )
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Panics anywhere in the process since the first [`exclusive`] run (a panicking task does not
/// fail a test by itself).
static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Serializes the runs: each one's latency is a measurement, so none shares the cores.
static EXCLUSIVE: Mutex<()> = Mutex::new(());

/// Runs `run` on a fresh multi-threaded runtime while no other run is going, and asserts
/// that nothing panicked meanwhile. `run` gets the panic count at its start (for
/// [`panics_since`]).
fn exclusive<F: Future<Output = ()>>(run: impl FnOnce(usize) -> F) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default_hook(info);
        }));
    });
    let _turn = EXCLUSIVE.lock().unwrap_or_else(PoisonError::into_inner);
    let before = PANICS.load(Ordering::SeqCst);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(before));
    drop(runtime);
    assert_eq!(panics_since(before), 0, "something panicked");
}

/// Panics since `before` (see [`exclusive`]).
fn panics_since(before: usize) -> usize {
    PANICS.load(Ordering::SeqCst) - before
}

/// Writes the fields of `report` (an object) into the `QUAYHOOK_LOADTEST_OUT` file, when set,
/// beside what the other run of this process wrote there (a file an earlier process left is
/// replaced).
fn record(report: &Value) {
    static PROCESS: OnceLock<String> = OnceLock::new();
    let Ok(path) = std::env::var("QUAYHOOK_LOADTEST_OUT") else {
        return;
    };
    let process = PROCESS.get_or_init(|| format!("{}-{}", std::process::id(), rand_suffix()));
    let mut file = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .filter(|old| old["process"] == process.as_str())
        .unwrap_or_else(|| json!({ "process": process }));
    for (k, v) in report.as_object().into_iter().flatten() {
        file[k] = v.clone();
    }
    std::fs::write(&path, format!("{file:#}\n")).expect("write the loadtest report");
}
