//! CPU of the pure path (issue 5, benchmark 2): token verification over 100 receivers, payload
//! decode, URL normalization, semver constraint check, index build, and lookup+selection at
//! 10, 1,000 and 10,000 Warehouses.
//!
//! `make bench` runs this and copies min/median/max per iteration (over criterion's samples)
//! into BENCHMARKS.md. Run alone: `cargo bench --bench pure`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use kargo_match::constraint::{Constraints, Version};
use kargo_match::index::{Index, IndexBuilder, candidate_urls};
use kargo_match::quay::Push;
use kargo_match::token::{ReceiverId, SecretString, TokenSet, receiver_token};
use kargo_match::urls::{normalize_chart, normalize_image};
use kargo_match::warehouse::{ListedWarehouse, Warehouse};
use quayhook_testkit::fixtures::wh;
use serde::Deserialize;
use serde_json::{Value, json};

/// Quay's documented "Push to Repository" payload.
const PAYLOAD: &str = r#"{
  "repository": "mynamespace/repository",
  "namespace": "mynamespace",
  "name": "repository",
  "docker_url": "quay.io/mynamespace/repository",
  "homepage": "https://quay.io/repository/mynamespace/repository",
  "updated_tags": ["v1.2.0", "latest"]
}"#;

/// Index sizes of the issue.
const SIZES: [usize; 3] = [10, 1_000, 10_000];

/// Warehouses spread over 10 namespaces, about 10 per repository, with the subscription
/// shapes seen in practice (semver constraint, Lexical with ignore regex, Digest, charts).
fn objects(n: usize) -> Vec<Value> {
    let repos = (n / 10).max(1);
    (0..n)
        .map(|i| {
            let repo = format!("quay.io/org/app-{}", i % repos);
            let sub = match i % 4 {
                0 => json!({ "image": { "repoURL": repo, "constraint": "^1.0.0" } }),
                1 => json!({ "image": { "repoURL": repo, "imageSelectionStrategy": "Lexical", "ignoreTagsRegexes": ["-rc"] } }),
                2 => json!({ "image": { "repoURL": repo, "imageSelectionStrategy": "Digest", "constraint": "latest" } }),
                _ => json!({ "chart": { "repoURL": format!("oci://{repo}"), "semverConstraint": ">=1.2.0 <2.0.0" } }),
            };
            wh(&format!("project-{}", i % 10), &format!("wh-{i:05}"))
                .subscription(sub)
                .subscription(json!({ "git": { "repoURL": "https://github.com/org/config.git" } }))
                .json()
        })
        .collect()
}

fn tokens(c: &mut Criterion) {
    let mut set = TokenSet::new();
    let mut last = String::new();
    for i in 0..100 {
        let id = ReceiverId {
            project: format!("project-{i}"),
            receiver: "quay".into(),
        };
        let secret = SecretString::new(format!("secret-{i:04}-0123456789abcdef0123456789"));
        last = receiver_token(&id.project, &id.receiver, &secret);
        set.insert(id, &secret, false);
    }
    let unknown = "0".repeat(64);
    let mut g = c.benchmark_group("token");
    g.bench_function("verify_100_receivers_match", |b| {
        b.iter(|| black_box(set.verify(black_box(&last))))
    });
    g.bench_function("verify_100_receivers_unknown", |b| {
        b.iter(|| black_box(set.verify(black_box(&unknown))))
    });
    g.finish();
}

fn payload(c: &mut Criterion) {
    let mut g = c.benchmark_group("payload");
    g.bench_function("decode", |b| {
        b.iter(|| black_box(Push::parse(black_box(PAYLOAD.as_bytes()))))
    });
    let push = Push::parse(PAYLOAD.as_bytes()).expect("payload");
    g.bench_function("tags", |b| b.iter(|| black_box(black_box(&push).tags())));
    g.finish();
}

fn normalization(c: &mut Criterion) {
    let mut g = c.benchmark_group("normalize");
    g.bench_function("candidate_urls", |b| {
        b.iter(|| black_box(candidate_urls(black_box("quay.io/mynamespace/repository"))))
    });
    g.bench_function("image_docker_hub_short", |b| {
        b.iter(|| black_box(normalize_image(black_box("nginx:1.27"))))
    });
    g.bench_function("chart_oci", |b| {
        b.iter(|| {
            black_box(normalize_chart(black_box(
                "oci://Quay.IO/mynamespace/guestbook-chart",
            )))
        })
    });
    g.finish();
}

fn semver(c: &mut Criterion) {
    let mut g = c.benchmark_group("semver");
    let text = "^1.2.0 || >=2.0.0 <3.0.0-0";
    g.bench_function("constraint_parse", |b| {
        b.iter(|| black_box(Constraints::parse(black_box(text))))
    });
    g.bench_function("version_parse", |b| {
        b.iter(|| black_box(Version::parse(black_box("v2.1.0-rc.1+build.7"))))
    });
    let constraints = Constraints::parse(text).expect("constraint");
    let version = Version::parse("v2.1.0").expect("version");
    g.bench_function("constraint_check", |b| {
        b.iter(|| black_box(black_box(&constraints).check(black_box(&version))))
    });
    g.finish();
}

fn index(c: &mut Criterion) {
    let mut g = c.benchmark_group("index");
    for n in SIZES {
        let objs = objects(n);
        // What a list does after the bytes arrive: decode each page of 500 (the default
        // `QUAYHOOK_LIST_PAGE_SIZE`) and hand it to the builder, as `cluster::list_index` does.
        let pages: Vec<String> = objs
            .chunks(500)
            .map(|c| Value::Array(c.to_vec()).to_string())
            .collect();
        g.bench_with_input(
            BenchmarkId::new("build_from_pages", n),
            &pages,
            |b, pages| {
                b.iter(|| {
                    let mut builder = IndexBuilder::new();
                    for p in pages {
                        let listed: Vec<ListedWarehouse> = serde_json::from_str(p).expect("page");
                        builder.extend(listed);
                    }
                    black_box(builder.finish())
                })
            },
        );
        let parsed: Vec<Warehouse> = objs
            .iter()
            .map(|o| Warehouse::deserialize(o).expect("warehouse"))
            .collect();
        g.bench_with_input(BenchmarkId::new("build_from_parsed", n), &parsed, |b, p| {
            // The clone of the input is set-up, outside the timing.
            b.iter_batched(
                || p.clone(),
                |p| black_box(Index::build(p, Vec::new())),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();

    // Lookup + selection: what one request does after the payload is decoded.
    let mut g = c.benchmark_group("lookup_select");
    for n in SIZES {
        let idx = Index::from_listed(
            objects(n)
                .iter()
                .map(|o| ListedWarehouse::deserialize(o).expect("listed")),
        );
        let push = Push::parse(
            json!({ "docker_url": "quay.io/org/app-0", "updated_tags": ["v1.2.0", "latest"] })
                .to_string()
                .as_bytes(),
        )
        .expect("push");
        let tags = push.tags();
        g.bench_with_input(BenchmarkId::new("cluster_receiver", n), &idx, |b, idx| {
            b.iter(|| {
                let urls = candidate_urls(black_box(&push.docker_url));
                black_box(idx.plan(None, &urls, black_box(&tags)))
            })
        });
        g.bench_with_input(BenchmarkId::new("project_receiver", n), &idx, |b, idx| {
            b.iter(|| {
                let urls = candidate_urls(black_box(&push.docker_url));
                black_box(idx.plan(Some("project-0"), &urls, black_box(&tags)))
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
}

criterion_group! {
    name = pure;
    config = config();
    targets = tokens, payload, normalization, semver, index
}
criterion_main!(pure);
