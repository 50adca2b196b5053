//! CloudWatch metrics: one Embedded Metric Format (EMF) record per delivery, and one-off gauges.
//!
//! quayhook publishes no metric through an API call: it writes a JSON line in CloudWatch's
//! [embedded metric format][emf] to stdout, Lambda ships stdout to the function's log stream,
//! and CloudWatch Logs extracts the metrics from it. One record per delivery (whatever its
//! status) keeps the arithmetic exact: `SampleCount` of any delivery metric is the number of
//! deliveries, `Sum` of [`DELIVERIES_5XX`] the 5xx answers, its `Average` the 5xx rate.
//!
//! The record builders ([`delivery`], [`gauge`]) are pure: counts, a status and a clock in, a
//! `serde_json::Value` out. [`emit`] and [`record`] do the I/O: one line on stdout, or on the
//! closure a test installed with [`capture`]; nothing at all unless the configuration says so
//! ([`crate::config::Config::metrics`]: on inside Lambda, off for `quayhook serve`).
//!
//! Dimensions are of low cardinality only: `Source` (which front received the delivery) and
//! `Project` (the receiver's namespace, `*` for a cluster-level receiver). Each delivery is
//! published under two dimension sets, `[Source]` (an alarm sums across projects without
//! metric math) and `[Source, Project]`; a delivery rejected before its receiver is known
//! (unknown token, method, secret store down) has only `[Source]`. The repository, the tags,
//! the receiver's name and the token never appear in a record.
//!
//! [emf]: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html

use std::cell::RefCell;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::outcome::Outcome;

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "Quayhook";

/// The `Project` dimension's value for a cluster-level receiver (Kargo's project `""`).
pub const CLUSTER_PROJECT: &str = "*";

/// Deliveries answered 2xx (1 or 0 per record).
pub const DELIVERIES_2XX: &str = "Deliveries2xx";
/// Deliveries answered 4xx (1 or 0 per record).
pub const DELIVERIES_4XX: &str = "Deliveries4xx";
/// Deliveries answered 5xx (1 or 0 per record): alarm on its `Sum`.
pub const DELIVERIES_5XX: &str = "Deliveries5xx";
/// Warehouses refreshed.
pub const REFRESHED: &str = "Refreshed";
/// Subscribed Warehouses that no pushed tag interests.
pub const SKIPPED: &str = "Skipped";
/// Subscribed Warehouses whose subscription is misconfigured.
pub const INVALID: &str = "Invalid";
/// Selected Warehouses deleted since the index was built.
pub const GONE: &str = "Gone";
/// Selected Warehouses whose refresh failed.
pub const FAILED: &str = "Failed";
/// Deliveries that queued work for the worker (1 or 0 per record).
pub const QUEUED: &str = "Queued";
/// Time from the request head to the answer.
pub const DURATION: &str = "Duration";

/// The EMF limit on metrics in one directive.
pub const MAX_METRICS: usize = 100;
/// The EMF limit on dimension keys in one dimension set.
pub const MAX_DIMENSIONS: usize = 30;

const SOURCE_KEY: &str = "Source";
const PROJECT_KEY: &str = "Project";
/// A plain member next to the metrics, for CloudWatch Logs Insights (not a dimension).
const STATUS_KEY: &str = "Status";

/// Which front received a delivery: the `Source` dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// Quay's push notification over HTTP (API Gateway or `quayhook serve`).
    Quay,
    /// An ECR push event from EventBridge.
    Ecr,
    /// The durable path's SQS worker, retrying a queued delivery.
    Worker,
}

impl Source {
    /// The dimension value: `Quay`, `ECR` or `Worker`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Quay => "Quay",
            Source::Ecr => "ECR",
            Source::Worker => "Worker",
        }
    }
}

/// The CloudWatch units quayhook uses (a subset of the EMF list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A number of things.
    Count,
    /// A duration in milliseconds.
    Milliseconds,
    /// A duration in seconds.
    Seconds,
}

impl Unit {
    /// The unit as EMF spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Seconds => "Seconds",
        }
    }
}

/// Warehouses per fate in one delivery: exact counts, not the bounded echo.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Warehouses refreshed.
    pub refreshed: usize,
    /// Subscribed Warehouses left alone.
    pub skipped: usize,
    /// Subscribed Warehouses whose subscription is misconfigured.
    pub invalid: usize,
    /// Selected Warehouses deleted since the index was built.
    pub gone: usize,
    /// Selected Warehouses whose refresh failed.
    pub failed: usize,
    /// Whether the delivery queued work for the worker (0 or 1).
    pub queued: usize,
}

impl Counts {
    /// The counts of an outcome; `queued` is 1 when anything went to the durable path's
    /// queue (the push, or Warehouses whose refresh failed transiently).
    pub fn of(outcome: &Outcome) -> Counts {
        Counts {
            refreshed: outcome.refreshed.len(),
            skipped: outcome.skipped.len(),
            invalid: outcome.invalid.len(),
            gone: outcome.gone.len(),
            failed: outcome.failed.len(),
            // A queued push names no Warehouse yet (none could be listed): counting
            // deliveries, not Warehouses, keeps it visible.
            queued: usize::from(outcome.queued_push || !outcome.queued.is_empty()),
        }
    }
}

/// What one delivery's record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery<'a> {
    /// Which front received it.
    pub source: Source,
    /// The receiver's project: `Some("")` for a cluster-level receiver (published as
    /// [`CLUSTER_PROJECT`]), `None` when the delivery was rejected before a receiver matched.
    pub project: Option<&'a str>,
    /// The HTTP status answered (or, for the worker, the status its attempt stands for).
    pub status: u16,
    /// Warehouses per fate; all zero for a rejected delivery.
    pub counts: Counts,
    /// Time from the request head to the answer.
    pub duration: Duration,
}

impl<'a> Delivery<'a> {
    /// A delivery answered with `status` after `duration`: counts and project from `outcome`
    /// when it reached the refresh step, zero counts and no project when it was rejected.
    pub fn answered(
        source: Source,
        status: u16,
        duration: Duration,
        outcome: Option<&'a Outcome>,
    ) -> Delivery<'a> {
        Delivery {
            source,
            project: outcome.map(|o| o.receiver.project.as_str()),
            status,
            counts: outcome.map(Counts::of).unwrap_or_default(),
            duration,
        }
    }
}

/// Milliseconds since the Unix epoch (0 for a clock set before it).
fn epoch_millis(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Whether CloudWatch accepts `value` as a dimension value: 1 to 1024 ASCII characters, no
/// control character, not all whitespace.
fn valid_dimension_value(value: &str) -> bool {
    (1..=1024).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii() && !b.is_ascii_control())
        && !value.trim().is_empty()
}

/// An EMF document: `_aws` metadata with one directive, then the target members.
fn document(
    now: SystemTime,
    dimension_sets: &[&[&str]],
    metrics: &[(&str, Unit, Value)],
    mut members: Map<String, Value>,
) -> Value {
    let definitions: Vec<Value> = metrics
        .iter()
        .map(|(name, unit, _)| json!({ "Name": name, "Unit": unit.as_str() }))
        .collect();
    for (name, _, value) in metrics {
        members.insert((*name).to_owned(), value.clone());
    }
    members.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": epoch_millis(now),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": dimension_sets,
                "Metrics": definitions,
            }],
        }),
    );
    Value::Object(members)
}

/// The EMF record of one delivery, stamped `now`.
///
/// # Format
/// One directive in namespace [`NAMESPACE`] with dimension sets `[Source]` and, when the
/// project is known and a valid dimension value, `[Source, Project]`; metrics
/// [`DELIVERIES_2XX`], [`DELIVERIES_4XX`], [`DELIVERIES_5XX`] (exactly one of them 1 for a
/// 2xx/4xx/5xx status), [`REFRESHED`], [`SKIPPED`], [`INVALID`], [`GONE`], [`FAILED`],
/// [`QUEUED`] (`Count`) and [`DURATION`] (`Milliseconds`); plus `Status`, the status code.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use quayhook::metrics::{Counts, Delivery, Source, delivery};
///
/// let record = delivery(
///     &Delivery {
///         source: Source::Quay,
///         project: Some("kargo-demo"),
///         status: 200,
///         counts: Counts { refreshed: 2, ..Counts::default() },
///         duration: Duration::from_millis(42),
///     },
///     UNIX_EPOCH + Duration::from_secs(1_700_000_000),
/// );
/// assert_eq!(record["_aws"]["Timestamp"], 1_700_000_000_000u64);
/// assert_eq!(record["Project"], "kargo-demo");
/// assert_eq!((record["Deliveries2xx"].as_u64(), record["Refreshed"].as_u64()), (Some(1), Some(2)));
/// ```
pub fn delivery(d: &Delivery<'_>, now: SystemTime) -> Value {
    let class = |hundreds: u16| u64::from(d.status / 100 == hundreds);
    let count = |n: usize| json!(n as u64);
    let metrics = [
        (DELIVERIES_2XX, Unit::Count, json!(class(2))),
        (DELIVERIES_4XX, Unit::Count, json!(class(4))),
        (DELIVERIES_5XX, Unit::Count, json!(class(5))),
        (REFRESHED, Unit::Count, count(d.counts.refreshed)),
        (SKIPPED, Unit::Count, count(d.counts.skipped)),
        (INVALID, Unit::Count, count(d.counts.invalid)),
        (GONE, Unit::Count, count(d.counts.gone)),
        (FAILED, Unit::Count, count(d.counts.failed)),
        (QUEUED, Unit::Count, count(d.counts.queued)),
        // Microsecond precision: a warm delivery on cached state takes well under 1 ms.
        (
            DURATION,
            Unit::Milliseconds,
            json!(d.duration.as_micros() as f64 / 1000.0),
        ),
    ];
    let mut members = Map::new();
    members.insert(SOURCE_KEY.to_owned(), json!(d.source.as_str()));
    members.insert(STATUS_KEY.to_owned(), json!(d.status));
    let project = d
        .project
        .map(|p| if p.is_empty() { CLUSTER_PROJECT } else { p })
        // A receiver secret names its project; one CloudWatch would refuse as a dimension
        // value is published under `[Source]` only rather than lose the whole record.
        .filter(|p| valid_dimension_value(p));
    let sets: &[&[&str]] = match project {
        Some(project) => {
            members.insert(PROJECT_KEY.to_owned(), json!(project));
            &[&[SOURCE_KEY], &[SOURCE_KEY, PROJECT_KEY]]
        }
        None => &[&[SOURCE_KEY]],
    };
    document(now, sets, &metrics, members)
}

/// A one-off gauge record (`name` = `value` in `unit`, dimension set `[Source]`), such as the
/// seconds a credential has left, written once at cold start.
///
/// Returns `None` when `value` is not finite (JSON has no NaN) or `name` is empty or one of
/// the record's own members (`_aws`, `Source`).
pub fn gauge(source: Source, name: &str, value: f64, unit: Unit, now: SystemTime) -> Option<Value> {
    if !value.is_finite() || name.is_empty() || name == "_aws" || name == SOURCE_KEY {
        return None;
    }
    let mut members = Map::new();
    members.insert(SOURCE_KEY.to_owned(), json!(source.as_str()));
    Some(document(
        now,
        &[&[SOURCE_KEY]],
        &[(name, unit, json!(value))],
        members,
    ))
}

/// Writes `record` to `out` as one line of compact JSON (JSON escapes every newline inside
/// a string, so a record never spans two log events).
///
/// # Errors
/// Whatever `out` returns.
pub fn write_line(out: &mut impl Write, record: &Value) -> std::io::Result<()> {
    let mut line = record.to_string();
    line.push('\n');
    // One write of the whole line: log lines written beside it stay whole.
    out.write_all(line.as_bytes())
}

type Capture = Box<dyn FnMut(&str)>;

thread_local! {
    static CAPTURE: RefCell<Option<Capture>> = const { RefCell::new(None) };
}

/// Sends this thread's records to a closure instead of stdout until the guard is dropped;
/// like `tracing::subscriber::set_default`, for tests on a current-thread runtime.
pub fn capture(sink: impl FnMut(&str) + 'static) -> CaptureGuard {
    let previous = CAPTURE.with(|c| c.borrow_mut().replace(Box::new(sink)));
    CaptureGuard { previous }
}

/// Restores the previous destination of this thread's records when dropped.
#[must_use = "records go back to stdout when the guard is dropped"]
pub struct CaptureGuard {
    previous: Option<Capture>,
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CAPTURE.with(|c| *c.borrow_mut() = previous);
    }
}

/// Writes `record` when `enabled` ([`crate::config::Config::metrics`]): to this thread's
/// [`capture`] closure if one is set, else as one line on stdout.
///
/// Never fails: a metric that cannot be written (stdout closed) is dropped, because metrics
/// must not change a delivery's answer.
pub fn emit(enabled: bool, record: &Value) {
    if !enabled {
        return;
    }
    let captured = CAPTURE.with(|c| match c.borrow_mut().as_mut() {
        Some(sink) => {
            sink(&record.to_string());
            true
        }
        None => false,
    });
    if !captured {
        let _ = write_line(&mut std::io::stdout().lock(), record);
    }
}

/// Builds the record of `delivery` stamped now and [`emit`]s it: the one call per delivery.
pub fn record(enabled: bool, delivery: &Delivery<'_>) {
    if enabled {
        emit(enabled, &self::delivery(delivery, SystemTime::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{ReceiverOut, WarehouseOut};
    use kargo_match::index::Selected;
    use kargo_match::warehouse::WarehouseKey;

    const NOW: u64 = 1_700_000_000_123;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(NOW)
    }

    fn quay(project: Option<&str>, status: u16, counts: Counts) -> Value {
        delivery(
            &Delivery {
                source: Source::Quay,
                project,
                status,
                counts,
                duration: Duration::from_micros(12_345),
            },
            now(),
        )
    }

    fn directive(record: &Value) -> &Value {
        &record["_aws"]["CloudWatchMetrics"][0]
    }

    fn names(record: &Value) -> Vec<&str> {
        directive(record)["Metrics"]
            .as_array()
            .expect("metrics")
            .iter()
            .map(|m| m["Name"].as_str().expect("a name"))
            .collect()
    }

    #[test]
    fn a_delivery_record_has_every_metric_with_its_value_at_the_root() {
        let counts = Counts {
            refreshed: 3,
            skipped: 4,
            invalid: 1,
            gone: 2,
            failed: 0,
            queued: 0,
        };
        let r = quay(Some("kargo-demo"), 200, counts);
        assert_eq!(r["_aws"]["Timestamp"], NOW);
        assert_eq!(directive(&r)["Namespace"], "Quayhook");
        assert_eq!(
            names(&r),
            [
                "Deliveries2xx",
                "Deliveries4xx",
                "Deliveries5xx",
                "Refreshed",
                "Skipped",
                "Invalid",
                "Gone",
                "Failed",
                "Queued",
                "Duration"
            ]
        );
        for (name, value) in [
            ("Deliveries2xx", 1),
            ("Deliveries4xx", 0),
            ("Deliveries5xx", 0),
            ("Refreshed", 3),
            ("Skipped", 4),
            ("Invalid", 1),
            ("Gone", 2),
            ("Failed", 0),
            ("Queued", 0),
        ] {
            assert_eq!(r[name], value, "{name}");
        }
        assert_eq!(r["Duration"], 12.345);
        assert_eq!(r["Source"], "Quay");
        assert_eq!(r["Project"], "kargo-demo");
        assert_eq!(r["Status"], 200);
        let units: Vec<&str> = directive(&r)["Metrics"]
            .as_array()
            .expect("metrics")
            .iter()
            .map(|m| m["Unit"].as_str().expect("a unit"))
            .collect();
        assert_eq!(units[..9], ["Count"; 9]);
        assert_eq!(units[9], "Milliseconds");
    }

    #[test]
    fn exactly_one_status_class_counts_the_delivery() {
        for (status, class) in [
            (200, "Deliveries2xx"),
            (202, "Deliveries2xx"),
            (400, "Deliveries4xx"),
            (404, "Deliveries4xx"),
            (413, "Deliveries4xx"),
            (500, "Deliveries5xx"),
            (503, "Deliveries5xx"),
        ] {
            let r = quay(None, status, Counts::default());
            for name in ["Deliveries2xx", "Deliveries4xx", "Deliveries5xx"] {
                assert_eq!(r[name], u64::from(name == class), "{status} {name}");
            }
        }
    }

    #[test]
    fn a_known_project_adds_a_second_dimension_set_and_an_unknown_one_does_not() {
        let known = quay(Some("kargo-demo"), 200, Counts::default());
        assert_eq!(
            directive(&known)["Dimensions"],
            json!([["Source"], ["Source", "Project"]])
        );
        let rejected = quay(None, 404, Counts::default());
        assert_eq!(directive(&rejected)["Dimensions"], json!([["Source"]]));
        assert!(rejected.get("Project").is_none());
    }

    #[test]
    fn a_cluster_level_receiver_is_project_star() {
        let r = quay(Some(""), 200, Counts::default());
        assert_eq!(r["Project"], "*");
    }

    #[test]
    fn a_project_cloudwatch_would_refuse_falls_back_to_source_only() {
        for bad in [" ", "é", "a\nb", &"p".repeat(1025)] {
            let r = quay(Some(bad), 200, Counts::default());
            assert_eq!(directive(&r)["Dimensions"], json!([["Source"]]), "{bad:?}");
            assert!(r.get("Project").is_none());
        }
    }

    #[test]
    fn sources_are_dimension_values() {
        for (source, value) in [
            (Source::Quay, "Quay"),
            (Source::Ecr, "ECR"),
            (Source::Worker, "Worker"),
        ] {
            let mut d = Delivery::answered(source, 200, Duration::ZERO, None);
            d.project = Some("p");
            assert_eq!(delivery(&d, now())["Source"], value);
        }
    }

    #[test]
    fn counts_come_from_the_whole_outcome_not_the_echo() {
        let selected = |i: usize| Selected {
            key: WarehouseKey::new("ns", format!("w{i}")),
            tag: None,
        };
        let outcome = Outcome {
            receiver: ReceiverOut {
                project: "ns".into(),
                name: "quay".into(),
                previous_secret: false,
            },
            refreshed: (0..250)
                .map(|i| WarehouseOut::selected(&selected(i)))
                .collect(),
            failed: vec![WarehouseOut::failed(&selected(999), "boom")],
            ..Outcome::default()
        };
        let d = Delivery::answered(Source::Quay, 500, Duration::from_millis(7), Some(&outcome));
        assert_eq!(d.project, Some("ns"));
        assert_eq!(
            d.counts,
            Counts {
                refreshed: 250,
                failed: 1,
                ..Counts::default()
            }
        );
        let r = delivery(&d, now());
        assert_eq!(
            (r["Refreshed"].as_u64(), r["Failed"].as_u64()),
            (Some(250), Some(1))
        );
        assert_eq!(r["Deliveries5xx"], 1);
        let text = r.to_string();
        assert!(!text.contains("w0") && !text.contains("boom") && !text.contains("quay\""));
    }

    #[test]
    fn a_delivery_that_queued_anything_counts_one_queued() {
        let key = WarehouseKey::new("ns", "w");
        let push_queued = Outcome {
            queued_push: true,
            ..Outcome::default()
        };
        let warehouses_queued = Outcome {
            queued: vec![WarehouseOut::selected(&Selected { key, tag: None }); 3],
            ..Outcome::default()
        };
        assert_eq!(Counts::of(&push_queued).queued, 1);
        assert_eq!(Counts::of(&warehouses_queued).queued, 1);
        assert_eq!(Counts::of(&Outcome::default()).queued, 0);
    }

    #[test]
    fn a_gauge_is_one_metric_under_source() {
        let g = gauge(
            Source::Worker,
            "CredentialSecondsLeft",
            86_400.0,
            Unit::Seconds,
            now(),
        )
        .expect("a record");
        assert_eq!(g["CredentialSecondsLeft"], 86_400.0);
        assert_eq!(g["Source"], "Worker");
        assert_eq!(
            directive(&g)["Metrics"],
            json!([{"Name": "CredentialSecondsLeft", "Unit": "Seconds"}])
        );
        assert_eq!(directive(&g)["Dimensions"], json!([["Source"]]));
        for (name, value) in [
            ("X", f64::NAN),
            ("X", f64::INFINITY),
            ("", 1.0),
            ("_aws", 1.0),
            ("Source", 1.0),
        ] {
            assert!(
                gauge(Source::Quay, name, value, Unit::Count, now()).is_none(),
                "{name} {value}"
            );
        }
    }

    #[test]
    fn a_record_is_one_line() {
        let mut out = Vec::new();
        write_line(&mut out, &quay(Some("a\nb"), 200, Counts::default())).expect("written");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.ends_with('\n'));
        let parsed: Value = serde_json::from_str(&text).expect("JSON");
        assert!(parsed["_aws"].is_object());
    }

    #[test]
    fn emit_writes_only_when_enabled_and_the_guard_restores_the_destination() {
        use std::rc::Rc;
        let lines = Rc::new(RefCell::new(Vec::<String>::new()));
        {
            let sink = lines.clone();
            let _guard = capture(move |line| sink.borrow_mut().push(line.to_owned()));
            let d = Delivery::answered(Source::Quay, 404, Duration::ZERO, None);
            record(false, &d);
            assert!(lines.borrow().is_empty(), "off: nothing written");
            record(true, &d);
            emit(
                true,
                &gauge(Source::Quay, "G", 1.0, Unit::Count, now()).expect("a gauge"),
            );
        }
        assert_eq!(lines.borrow().len(), 2);
        let first: Value = serde_json::from_str(&lines.borrow()[0]).expect("JSON");
        assert_eq!(first["Deliveries4xx"], 1);
        assert!(CAPTURE.with(|c| c.borrow().is_none()), "guard dropped");
    }
}
