//! The metric records deliveries write, on the test kit's in-memory fakes, checked against the
//! CloudWatch embedded metric format (EMF) specification: each record parses as one JSON
//! object whose `_aws` metadata names only root members of the right types, within the
//! format's limits, and carries nothing a push or a secret brought in.
//!
//! Records are captured per test thread (`quayhook::metrics::capture`); `#[tokio::test]` runs
//! each test on a current-thread runtime, so a delivery's record lands in its own test.
//! No Python, no network.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use quayhook::cluster::ClusterError;
use quayhook::metrics::{self, Source, Unit};
use quayhook_testkit::events::push;
use quayhook_testkit::fakes::{FakeCluster, FakeQueue, FakeSecrets, Step, state, unavailable};
use quayhook_testkit::fixtures::{QUAY_REPO, wh};
use quayhook_testkit::harness::deliver;
use serde_json::{Map, Value, json};

const NS: &str = "kargo-demo";
const SECRET: &str = "s3cret-value";
const TAG: &str = "v1.2.3";
/// Inside Lambda (the runtime sets it), metrics are on.
const LAMBDA: [(&str, &str); 1] = [("AWS_LAMBDA_FUNCTION_NAME", "quayhook")];

/// Units the EMF specification allows.
const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// Every record this thread writes until the guard drops.
struct Records {
    lines: Rc<RefCell<Vec<String>>>,
    _guard: metrics::CaptureGuard,
}

impl Records {
    fn capture() -> Records {
        let lines = Rc::new(RefCell::new(Vec::new()));
        let sink = lines.clone();
        let guard = metrics::capture(move |line| sink.borrow_mut().push(line.to_owned()));
        Records {
            lines,
            _guard: guard,
        }
    }

    /// The records written since the last call, each checked against the EMF specification.
    fn take(&self) -> Vec<Value> {
        self.lines
            .borrow_mut()
            .drain(..)
            .map(|line| check_emf(&line))
            .collect()
    }
}

fn object<'v>(value: &'v Value, what: &str) -> &'v Map<String, Value> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("{what} is an object: {value}"))
}

fn array<'v>(value: &'v Value, what: &str) -> &'v Vec<Value> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{what} is an array: {value}"))
}

/// Parses one record and checks it against the EMF specification; returns it.
fn check_emf(line: &str) -> Value {
    assert!(!line.contains('\n'), "one line: {line:?}");
    let record: Value = serde_json::from_str(line).expect("a record is JSON");
    let root = object(&record, "the root");
    let aws = object(&root["_aws"], "_aws");
    for key in aws.keys() {
        assert!(
            ["Timestamp", "CloudWatchMetrics"].contains(&key.as_str()),
            "no other member in _aws: {key}"
        );
    }

    // Timestamp: an integer of milliseconds since the epoch, within the accepted window
    // (two weeks back, two hours ahead).
    let timestamp = aws["Timestamp"].as_u64().expect("Timestamp is an integer");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64;
    assert!(
        timestamp <= now && now - timestamp < 60_000,
        "Timestamp {timestamp} is now ({now}) in ms"
    );

    let directives = array(&aws["CloudWatchMetrics"], "CloudWatchMetrics");
    assert!(!directives.is_empty());
    for directive in directives {
        let directive = object(directive, "a MetricDirective");
        for key in directive.keys() {
            assert!(
                ["Namespace", "Dimensions", "Metrics"].contains(&key.as_str()),
                "no other member in a directive: {key}"
            );
        }
        let namespace = directive["Namespace"].as_str().expect("a Namespace");
        assert!(
            (1..=256).contains(&namespace.len())
                && namespace
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._#:/-".contains(&b)),
            "{namespace}"
        );

        let sets = array(&directive["Dimensions"], "Dimensions");
        assert!(!sets.is_empty());
        for set in sets {
            let set = array(set, "a DimensionSet");
            // 30 since 2023; 9 before: stay within both.
            assert!(set.len() <= 9 && set.len() <= metrics::MAX_DIMENSIONS);
            for key in set {
                let key = key.as_str().expect("a dimension key is a string");
                let value = root
                    .get(key)
                    .unwrap_or_else(|| panic!("dimension {key} is a root member"))
                    .as_str()
                    .unwrap_or_else(|| panic!("dimension {key} has a string value"));
                assert!(
                    (1..=1024).contains(&value.len())
                        && value.bytes().all(|b| b.is_ascii() && !b.is_ascii_control())
                        && !value.trim().is_empty(),
                    "{key}={value:?} is a valid dimension value"
                );
            }
        }

        let definitions = array(&directive["Metrics"], "Metrics");
        assert!(!definitions.is_empty() && definitions.len() <= metrics::MAX_METRICS);
        for definition in definitions {
            let definition = object(definition, "a MetricDefinition");
            for key in definition.keys() {
                assert!(
                    ["Name", "Unit", "StorageResolution"].contains(&key.as_str()),
                    "no other member in a MetricDefinition: {key}"
                );
            }
            let name = definition["Name"].as_str().expect("a metric Name");
            assert!((1..=1024).contains(&name.len()));
            match root.get(name) {
                Some(Value::Number(_)) => {}
                Some(Value::Array(values)) => {
                    assert!(values.len() <= 100 && values.iter().all(Value::is_number))
                }
                other => panic!("metric {name} has a number at the root, not {other:?}"),
            }
            if let Some(unit) = definition.get("Unit") {
                let unit = unit.as_str().expect("a Unit is a string");
                assert!(UNITS.contains(&unit), "{unit} is an EMF unit");
            }
            if let Some(resolution) = definition.get("StorageResolution") {
                assert!(resolution == 1 || resolution == 60, "{resolution}");
            }
        }
    }
    record
}

/// Asserts that no string a push or a secret brought in appears in `record`.
fn assert_clean(record: &Value, secrets: &[&str]) {
    let text = record.to_string();
    for secret in secrets {
        assert!(!text.contains(secret), "{secret:?} leaked into {text}");
    }
}

fn counts(record: &Value) -> Value {
    json!({
        "2xx": record["Deliveries2xx"], "4xx": record["Deliveries4xx"],
        "5xx": record["Deliveries5xx"], "refreshed": record["Refreshed"],
        "skipped": record["Skipped"], "invalid": record["Invalid"], "gone": record["Gone"],
        "failed": record["Failed"], "queued": record["Queued"],
    })
}

fn dimensions(record: &Value) -> &Value {
    &record["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
}

#[tokio::test]
async fn a_refresh_answered_200_writes_one_record_with_exact_counts() {
    let records = Records::capture();
    let secrets = FakeSecrets::new();
    let token = secrets.add(NS, "quay", SECRET, None);
    let cluster = FakeCluster::new()
        .with(wh(NS, "app").image(QUAY_REPO, json!({})))
        .with(wh(NS, "api").image(QUAY_REPO, json!({"constraint": "^1.0.0"})))
        .with(wh(NS, "old").image(QUAY_REPO, json!({"constraint": "^0.1.0"})));
    let state = state(&LAMBDA, &secrets, &cluster);

    let (status, answer) = deliver(&state, &token, &push(QUAY_REPO, &[TAG])).await;
    assert_eq!(status, 200, "{answer}");
    let written = records.take();
    assert_eq!(written.len(), 1, "one record per delivery");
    let record = &written[0];
    assert_eq!(
        counts(record),
        json!({"2xx": 1, "4xx": 0, "5xx": 0, "refreshed": 2, "skipped": 1, "invalid": 0,
               "gone": 0, "failed": 0, "queued": 0})
    );
    assert_eq!(record["Source"], "Quay");
    assert_eq!(record["Project"], NS);
    assert_eq!(record["Status"], 200);
    assert_eq!(
        dimensions(record),
        &json!([["Source"], ["Source", "Project"]])
    );
    assert_eq!(
        record["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        metrics::NAMESPACE
    );
    assert!(record["Duration"].as_f64().is_some_and(|ms| ms >= 0.0));
    assert_clean(
        record,
        &[&token, SECRET, TAG, "mynamespace", "repository", "\"quay\""],
    );
}

#[tokio::test]
async fn an_unknown_token_answered_404_counts_a_4xx_under_source_only() {
    let records = Records::capture();
    let secrets = FakeSecrets::new();
    secrets.add(NS, "quay", SECRET, None);
    let state = state(&LAMBDA, &secrets, &FakeCluster::new());
    let token = "f".repeat(64);

    let (status, _) = deliver(&state, &token, &push(QUAY_REPO, &[TAG])).await;
    assert_eq!(status, 404);
    let written = records.take();
    assert_eq!(written.len(), 1);
    let record = &written[0];
    assert_eq!(
        counts(record),
        json!({"2xx": 0, "4xx": 1, "5xx": 0, "refreshed": 0, "skipped": 0, "invalid": 0,
               "gone": 0, "failed": 0, "queued": 0})
    );
    assert_eq!(
        dimensions(record),
        &json!([["Source"]]),
        "no receiver, no project"
    );
    assert!(record.get("Project").is_none());
    assert_clean(record, &[&token, SECRET, TAG, "repository"]);
}

#[tokio::test]
async fn a_failed_patch_answered_500_counts_a_5xx_and_the_failure() {
    let records = Records::capture();
    let secrets = FakeSecrets::new();
    let token = secrets.add(NS, "quay", SECRET, None);
    let cluster = FakeCluster::new()
        .with(wh(NS, "app").image(QUAY_REPO, json!({})))
        .with(
            wh(NS, "bad")
                .subscription(json!({"image": {"repoURL": QUAY_REPO, "constraint": "not semver"}})),
        );
    cluster
        .on_patch()
        .always(Step::fail(ClusterError::Forbidden("no patch".into())));
    let state = state(&LAMBDA, &secrets, &cluster);

    let (status, answer) = deliver(&state, &token, &push(QUAY_REPO, &[TAG])).await;
    assert_eq!(status, 500, "{answer}");
    let written = records.take();
    assert_eq!(written.len(), 1);
    let record = &written[0];
    assert_eq!(record["Deliveries5xx"], 1);
    assert_eq!(record["Deliveries2xx"], 0);
    assert_eq!(record["Failed"], 1);
    assert_eq!(record["Refreshed"], 0);
    assert_eq!(record["Invalid"], 1, "{answer}");
    assert_eq!(record["Project"], NS);
    assert_clean(record, &[&token, SECRET, TAG, "no patch", "not semver"]);
}

#[tokio::test]
async fn a_secret_store_outage_answered_503_counts_a_5xx_under_source_only() {
    let records = Records::capture();
    let secrets = FakeSecrets::new();
    let token = secrets.add(NS, "quay", SECRET, None);
    secrets.on_receivers().always(Step::fail(unavailable()));
    let state = state(&LAMBDA, &secrets, &FakeCluster::new());

    let (status, _) = deliver(&state, &token, &push(QUAY_REPO, &[TAG])).await;
    assert_eq!(status, 503);
    let written = records.take();
    assert_eq!(written.len(), 1);
    assert_eq!(written[0]["Deliveries5xx"], 1);
    assert_eq!(dimensions(&written[0]), &json!([["Source"]]));
}

#[tokio::test]
async fn a_push_queued_for_the_worker_answered_202_counts_a_2xx_and_one_queued() {
    let records = Records::capture();
    let secrets = FakeSecrets::new();
    let token = secrets.add(NS, "quay", SECRET, None);
    let cluster = FakeCluster::new().with(wh(NS, "app").image(QUAY_REPO, json!({})));
    cluster.on_list().always(Step::fail(ClusterError::Status {
        code: 503,
        message: "apiserver down".into(),
    }));
    let queue = FakeQueue::new();
    let mut vars = LAMBDA.to_vec();
    vars.push(("QUAYHOOK_MAX_ATTEMPTS", "1"));
    let state = state(&vars, &secrets, &cluster).with_queue(queue.clone());

    let (status, answer) = deliver(&state, &token, &push(QUAY_REPO, &[TAG])).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(queue.sent().len(), 1);
    let written = records.take();
    assert_eq!(written.len(), 1);
    let record = &written[0];
    assert_eq!(
        counts(record),
        json!({"2xx": 1, "4xx": 0, "5xx": 0, "refreshed": 0, "skipped": 0, "invalid": 0,
               "gone": 0, "failed": 0, "queued": 1})
    );
    assert_eq!(record["Status"], 202);
    assert_eq!(record["Project"], NS);
    assert_clean(record, &[&token, SECRET, TAG, "apiserver down"]);
}

#[tokio::test]
async fn a_cluster_level_receiver_is_project_star() {
    let records = Records::capture();
    let secrets = FakeSecrets::new();
    let token = secrets.add("", "quay", SECRET, None);
    let cluster = FakeCluster::new().with(wh(NS, "app").image(QUAY_REPO, json!({})));
    let state = state(&LAMBDA, &secrets, &cluster);

    let (status, _) = deliver(&state, &token, &push(QUAY_REPO, &[TAG])).await;
    assert_eq!(status, 200);
    let written = records.take();
    assert_eq!(written.len(), 1);
    assert_eq!(written[0]["Project"], "*");
    assert_eq!(written[0]["Refreshed"], 1);
}

#[tokio::test]
async fn outside_lambda_no_record_is_written_unless_asked() {
    let records = Records::capture();
    let secrets = FakeSecrets::new();
    let token = secrets.add(NS, "quay", SECRET, None);
    let body = push(QUAY_REPO, &[TAG]);

    let serve = state(&[], &secrets, &FakeCluster::new());
    assert_eq!(deliver(&serve, &token, &body).await.0, 200);
    assert!(
        records.take().is_empty(),
        "quayhook serve writes no EMF by default"
    );

    let asked = state(
        &[("QUAYHOOK_METRICS", "true")],
        &secrets,
        &FakeCluster::new(),
    );
    assert_eq!(deliver(&asked, &token, &body).await.0, 200);
    assert_eq!(records.take().len(), 1);

    let off = state(
        &[
            ("AWS_LAMBDA_FUNCTION_NAME", "quayhook"),
            ("QUAYHOOK_METRICS", "false"),
        ],
        &secrets,
        &FakeCluster::new(),
    );
    assert_eq!(deliver(&off, &token, &body).await.0, 200);
    assert!(records.take().is_empty(), "switched off inside Lambda");
}

#[test]
fn a_gauge_record_follows_the_specification() {
    let records = Records::capture();
    let record = metrics::gauge(
        Source::Quay,
        "CredentialSecondsLeft",
        3_600.0,
        Unit::Seconds,
        SystemTime::now(),
    )
    .expect("a finite gauge");
    metrics::emit(true, &record);
    let written = records.take();
    assert_eq!(written.len(), 1);
    assert_eq!(written[0]["CredentialSecondsLeft"], 3_600.0);
    assert_eq!(dimensions(&written[0]), &json!([["Source"]]));
}

/// A kubeconfig whose token is a JWT expiring `seconds` from now (signature not checked).
fn kubeconfig_with_token_expiring_in(seconds: u64) -> String {
    use base64::Engine as _;
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let claims = format!(
        r#"{{"exp":{},"sub":"system:serviceaccount:quayhook:quayhook"}}"#,
        now + seconds
    );
    let token = format!("{}.{}.c2ln", b64(r#"{"alg":"RS256"}"#), b64(&claims));
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\nusers:\n- name: u\n  user:\n    token: {token}\n"
    )
}

#[tokio::test]
async fn every_kubeconfig_read_reports_the_tokens_remaining_lifetime() {
    let records = Records::capture();
    let secrets = FakeSecrets::new();
    let token = secrets.add(NS, "quay", SECRET, None);
    let kubeconfig = kubeconfig_with_token_expiring_in(3 * 3_600);
    secrets.set_kubeconfig(&kubeconfig);
    let cluster = FakeCluster::new().with(wh(NS, "app").image(QUAY_REPO, json!({})));
    let state = state(&LAMBDA, &secrets, &cluster);

    let (status, answer) = deliver(&state, &token, &push(QUAY_REPO, &[TAG])).await;
    assert_eq!(status, 200, "{answer}");
    let written = records.take();
    let gauges: Vec<&Value> = written
        .iter()
        .filter(|r| r.get("CredentialSecondsLeft").is_some())
        .collect();
    assert_eq!(
        gauges.len(),
        1,
        "one gauge at the cold start's kubeconfig read"
    );
    let left = gauges[0]["CredentialSecondsLeft"].as_f64().unwrap();
    assert!(
        (3.0 * 3_600.0 - 60.0..=3.0 * 3_600.0).contains(&left),
        "{left}"
    );
    assert_eq!(gauges[0]["Source"], "Quay");
    let jwt = kubeconfig
        .lines()
        .last()
        .unwrap()
        .trim()
        .trim_start_matches("token: ");
    for record in &written {
        assert!(!record.to_string().contains(jwt), "no token in a record");
    }
}

#[tokio::test]
async fn the_worker_writes_one_record_per_queued_delivery() {
    use quayhook_testkit::events::{sqs_batch, sqs_record};
    let records = Records::capture();
    let secrets = FakeSecrets::new();
    let token = secrets.add(NS, "quay", SECRET, None);
    let cluster = FakeCluster::new()
        .with(wh(NS, "a").image(QUAY_REPO, json!({})))
        .with(wh(NS, "b").image(QUAY_REPO, json!({})));
    let queue = FakeQueue::new();
    let vars = [
        LAMBDA[0],
        (
            "QUAYHOOK_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/1/q",
        ),
        ("QUAYHOOK_MAX_ATTEMPTS", "1"),
    ];
    let state = state(&vars, &secrets, &cluster).with_queue(queue.clone());
    // The cluster fails transiently: the delivery is queued (202).
    cluster.on_patch().then_all([
        Step::fail(ClusterError::Timeout),
        Step::fail(ClusterError::Timeout),
    ]);
    let (status, answer) = deliver(&state, &token, &push(QUAY_REPO, &[TAG])).await;
    assert_eq!(status, 202, "{answer}");
    records.take();

    let bodies = queue.drain();
    let batch: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| sqs_record(&format!("m{i}"), body, 1))
        .chain(std::iter::once(sqs_record("poison", "not json", 1)))
        .collect();
    let response = quayhook::worker::run(&state, sqs_batch(&batch), None).await;
    assert_eq!(
        response.batch_item_failures.len(),
        1,
        "only the poison record"
    );
    let written: Vec<Value> = records
        .take()
        .into_iter()
        .filter(|r| r["Source"] == "Worker")
        .collect();
    assert_eq!(written.len(), bodies.len() + 1, "one record per message");
    let done: Vec<&Value> = written.iter().filter(|r| r["Status"] == 200).collect();
    let refreshed: f64 = done.iter().map(|r| r["Refreshed"].as_f64().unwrap()).sum();
    assert_eq!(refreshed, 2.0, "both Warehouses refreshed by the worker");
    assert!(done.iter().all(|r| r["Project"] == NS));
    let dead: Vec<&Value> = written.iter().filter(|r| r["Status"] == 500).collect();
    assert_eq!(dead.len(), 1, "the poison message");
    assert_eq!(dead[0]["Deliveries5xx"], 1.0);
    assert!(dead[0].get("Project").is_none(), "no receiver known");
    for record in &written {
        assert_clean(record, &[&token, SECRET]);
    }
}
