//! The durable path's worker: finishes, from an SQS batch, the deliveries the webhook function
//! queued ([`crate::message`]).
//!
//! I/O through [`State`] and its [`Queue`]. [`run`] takes Lambda's SQS event and answers its
//! partial batch response (the event source mapping needs `ReportBatchItemFailures`):
//!
//! 1. **Decode** each record's body: a [`Message`], or an EventBridge "ECR Image Action"
//!    event (told apart by its `source` and `detail-type`), which the durable path's rule
//!    sends to the queue as is and the webhook function queues on a transient failure
//!    ([`crate::ecr`]). An undecodable one (not JSON, another format version, a `pending`
//!    Warehouse outside the receiver's project, a malformed ECR event) is *dead*: it cannot
//!    succeed. An ECR event that is not a successful push in scope ([`ecr::triage`]: a delete,
//!    a failed push, a repository outside `QUAYHOOK_ECR_REPOSITORY_PREFIXES`, or
//!    `QUAYHOOK_ECR_PROJECTS` unset) is *done* at once: logged, never retried.
//! 2. **Check the receiver** of each message still exists ([`State::receiver_presence`]). One
//!    that is gone makes its messages dead; one that cannot be confirmed now makes them
//!    *retry*. ECR events have no receiver: their scope is configuration.
//! 3. **Collect the Warehouses**: a message's `pending` list as is; a message without one is
//!    planned again with the delivery's own code ([`State::index`], [`refresh::plan`]); an ECR
//!    event is planned over its scope's projects ([`ecr::plan`]), as the webhook function does.
//! 4. **Patch once per Warehouse** ([`refresh::patch_all`], shared with the webhook path),
//!    however many messages name it: the merge patch is idempotent and every refresh writes a
//!    new value, so a duplicate delivery of a message costs one more patch and nothing else.
//!    A Warehouse gone meanwhile (404) is dropped, not retried.
//! 5. **Answer** with the records that failed: those a Warehouse of which failed (retry when
//!    the failure is transient, dead otherwise), and the dead ones. Every other record is
//!    done, and Lambda deletes it. A message is retried whole: its Warehouses that did refresh
//!    are refreshed again next time, which is harmless.
//! 6. **Back off** each failed record with `ChangeMessageVisibility`: a retried one for
//!    [`backoff`]`(QUAYHOOK_WORKER_BACKOFF_BASE, QUAYHOOK_WORKER_BACKOFF_MAX,
//!    ApproximateReceiveCount)`, a dead one for zero seconds, so it is received again at once
//!    and reaches the dead-letter queue after the queue's `maxReceiveCount`.
//!
//! A record without a `messageId` (never sent by SQS) is reported with an empty identifier,
//! which makes Lambda retry the whole batch. Nothing here logs a body: records are named by
//! their `messageId`, receivers by project and name, ECR events by id and repository. Each ECR
//! event writes one metric record (source `ECR`, status 200 done, 503 retried, 500 dead,
//! 403 refused, 400 malformed).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use lambda_http::aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};

use kargo_match::index::candidate_urls;
use kargo_match::token::ReceiverId;
use kargo_match::warehouse::WarehouseKey;

use crate::cause::Chain;
use crate::cluster::Connector;
use crate::config::Config;
use crate::ecr::{self, ImageAction};
use crate::message::{Message, MessageError};
use crate::metrics::{Counts, Delivery, Source};
use crate::outcome::clip;
use crate::queue::Queue;
use crate::receivers::Presence;
use crate::refresh::{self, Patched};
use crate::retry::Budget;
use crate::secrets::SecretSource;
use crate::state::State;

/// Time kept back from the invocation's remaining time to change visibilities and answer.
pub const FINISH_RESERVE: Duration = Duration::from_secs(2);

/// The SQS attribute counting how often a message was received, this time included.
const RECEIVE_COUNT: &str = "ApproximateReceiveCount";

/// The visibility timeout of a message that failed for the `receives`-th time:
/// `base × 2^(receives − 1)`, at most `max` (a first receive waits `base`).
pub fn backoff(base: Duration, max: Duration, receives: u32) -> Duration {
    let doublings = receives.saturating_sub(1).min(31);
    base.checked_mul(1 << doublings).unwrap_or(max).min(max)
}

/// What becomes of one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Finished (or nothing was left to do): Lambda deletes it.
    Done,
    /// Failed for now: visible again after [`backoff`].
    Retry,
    /// Cannot succeed: visible again at once, so it reaches the dead-letter queue.
    Dead,
}

/// One record of the batch.
struct Record {
    id: String,
    receipt: Option<String>,
    receives: u32,
    /// What the record asks for; `None` once it is decided (dead, or nothing to do).
    work: Option<Work>,
    /// For an ECR event: what its plan found, for its metric record.
    ecr: Option<EcrTally>,
    /// Whether the body was meant as a queued Quay delivery (decoded or not): such records
    /// get a `Source::Worker` metric record; ECR events get theirs from [`ecr`].
    quay: bool,
    verdict: Verdict,
}

/// What a record asks the worker to do.
enum Work {
    /// A delivery the webhook function queued.
    Quay(Message),
    /// An ECR push in scope.
    Ecr(Box<EcrWork>),
}

/// An ECR push to plan.
struct EcrWork {
    event: ImageAction,
    push: ecr::Push,
}

/// What an ECR record's plan selected and left alone.
#[derive(Default)]
struct EcrTally {
    keys: Vec<WarehouseKey>,
    skipped: usize,
    invalid: usize,
}

impl Record {
    fn read(raw: SqsMessage, config: &Config) -> Record {
        let receives = raw
            .attributes
            .get(RECEIVE_COUNT)
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let mut record = Record {
            id: raw.message_id.unwrap_or_default(),
            receipt: raw.receipt_handle,
            receives,
            work: None,
            ecr: None,
            quay: false,
            verdict: Verdict::Done,
        };
        let body = raw.body.as_deref();
        if let Some(read) = body.and_then(ImageAction::from_body) {
            record.read_ecr(read, config);
            return record;
        }
        record.quay = true;
        let decoded = match body.map(Message::decode) {
            None => Err(Undecodable::NoBody),
            Some(Err(e)) => Err(Undecodable::Message(e)),
            Some(Ok(m)) if outside_project(&m) => Err(Undecodable::OutsideProject),
            Some(Ok(mut m)) => {
                m.tags.truncate(config.max_tags);
                Ok(m)
            }
        };
        match decoded {
            Ok(message) => record.work = Some(Work::Quay(message)),
            Err(e) => {
                tracing::warn!(message_id = %record.id, receives, cause = %e, "message undecodable; it goes to the dead-letter queue");
                record.verdict = Verdict::Dead;
            }
        }
        record
    }

    /// An ECR event's body: a push in scope is work; anything else is settled here, with its
    /// metric record (a malformed event is dead, one [`ecr::triage`] skips is done).
    fn read_ecr(&mut self, read: Result<ImageAction, ecr::ReadError>, config: &Config) {
        let started = std::time::Instant::now();
        let event = match read {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(message_id = %self.id, receives = self.receives, cause = %e, "ECR event undecodable; it goes to the dead-letter queue");
                self.verdict = Verdict::Dead;
                let status = ecr::Disposition::Invalid.status();
                ecr::record_metric(config, status, Counts::default(), started.elapsed());
                return;
            }
        };
        match ecr::triage(&event, config.ecr.as_ref()) {
            Ok(push) => {
                self.work = Some(Work::Ecr(Box::new(EcrWork { event, push })));
                self.ecr = Some(EcrTally::default());
            }
            Err(skip) => {
                let answer = ecr::Answer::skipped(&event, &skip);
                match answer.result {
                    ecr::Disposition::Refused => {
                        tracing::warn!(message_id = %self.id, event = %event.id, reason = %skip, "ECR event refused; deleted")
                    }
                    _ => {
                        tracing::info!(message_id = %self.id, event = %event.id, reason = %skip, "ECR event ignored")
                    }
                }
                let status = answer.result.status();
                ecr::record_metric(config, status, Counts::default(), started.elapsed());
            }
        }
    }

    /// Raises the verdict (done < retry < dead).
    fn fail(&mut self, verdict: Verdict) {
        self.verdict = self.verdict.max(verdict);
    }
}

/// Why a record's body is not a message the worker can act on. Names no content.
#[derive(Debug, thiserror::Error)]
enum Undecodable {
    #[error("the record has no body")]
    NoBody,
    #[error(transparent)]
    Message(MessageError),
    #[error("a pending Warehouse lies outside the receiver's project")]
    OutsideProject,
}

/// A project receiver refreshes its own namespace only; a message saying otherwise was not
/// written by quayhook.
fn outside_project(message: &Message) -> bool {
    !message.project.is_empty()
        && message
            .pending
            .iter()
            .flatten()
            .any(|p| p.namespace != message.project)
}

/// Handles one SQS batch (see the module documentation) with `remaining` time left in the
/// invocation (the configured `QUAYHOOK_REQUEST_TIMEOUT` when unknown), and answers which
/// records failed.
pub async fn run<S: SecretSource, C: Connector>(
    state: &State<S, C>,
    event: SqsEvent,
    remaining: Option<Duration>,
) -> SqsBatchResponse {
    let started = std::time::Instant::now();
    let budget = match remaining {
        Some(left) => Budget::new(left.saturating_sub(FINISH_RESERVE)),
        None => Budget::new(state.config.request_timeout),
    };
    let mut records: Vec<Record> = event
        .records
        .into_iter()
        .map(|raw| Record::read(raw, &state.config))
        .collect();

    check_receivers(state, &mut records).await;
    let wanted = collect(state, &mut records, &budget).await;
    let keys: Vec<WarehouseKey> = wanted.keys().cloned().collect();
    let patched = refresh::patch_all(state, &keys, &budget).await;
    let (mut refreshed, mut gone, mut failed) = (0, 0, 0);
    for (key, result) in keys.iter().zip(&patched) {
        let verdict = match result {
            Patched::Refreshed => {
                refreshed += 1;
                continue;
            }
            Patched::Gone => {
                gone += 1;
                continue;
            }
            Patched::Failed(e) if e.is_transient() => Verdict::Retry,
            Patched::Failed(_) => Verdict::Dead,
        };
        failed += 1;
        for &i in &wanted[key] {
            records[i].fail(verdict);
        }
    }

    record_ecr_metrics(state, &records, &keys, &patched, started.elapsed());
    record_worker_metrics(state, &records, &wanted, &patched, started.elapsed());

    let mut response = SqsBatchResponse::default();
    let mut retried = 0;
    let mut dead = 0;
    for record in records.iter().filter(|r| r.verdict != Verdict::Done) {
        response.add_failure(record.id.clone());
        match record.verdict {
            Verdict::Dead => dead += 1,
            _ => retried += 1,
        }
    }
    back_off(state, &records).await;
    let count = records.len();
    // One event per batch with the same fields at either level.
    macro_rules! summary {
        ($level:expr, $message:literal) => {
            tracing::event!(
                $level,
                records = count,
                retried,
                dead,
                warehouses = keys.len(),
                refreshed,
                gone,
                failed,
                duration_ms = started.elapsed().as_millis() as u64,
                $message
            )
        };
    }
    if retried + dead == 0 {
        summary!(tracing::Level::INFO, "batch handled");
    } else {
        summary!(tracing::Level::WARN, "batch partly failed");
    }
    response
}

/// Step 2: the receiver of every decoded message must still exist (asked once per receiver).
async fn check_receivers<S: SecretSource, C: Connector>(
    state: &State<S, C>,
    records: &mut [Record],
) {
    let mut presence: HashMap<ReceiverId, Presence> = HashMap::new();
    for record in records.iter_mut() {
        let Some(Work::Quay(message)) = &record.work else {
            continue;
        };
        let id = message.receiver_id();
        let found = match presence.get(&id) {
            Some(found) => found.clone(),
            None => {
                let found = state.receiver_presence(&id).await;
                presence.insert(id.clone(), found.clone());
                found
            }
        };
        match found {
            Presence::Present => {}
            Presence::Gone => {
                tracing::error!(message_id = %record.id, project = %id.project, receiver = %id.receiver, "receiver gone; the message goes to the dead-letter queue");
                record.work = None;
                record.fail(Verdict::Dead);
            }
            Presence::Unconfirmed => {
                tracing::warn!(message_id = %record.id, project = %id.project, receiver = %id.receiver, "cannot confirm the receiver now; retrying later");
                record.work = None;
                record.fail(Verdict::Retry);
            }
        }
    }
}

/// Step 3: every Warehouse the batch wants refreshed, with the records that want it.
async fn collect<S: SecretSource, C: Connector>(
    state: &State<S, C>,
    records: &mut [Record],
    budget: &Budget,
) -> BTreeMap<WarehouseKey, Vec<usize>> {
    let mut wanted: BTreeMap<WarehouseKey, Vec<usize>> = BTreeMap::new();
    for (i, record) in records.iter_mut().enumerate() {
        let message = match &record.work {
            None => continue,
            Some(Work::Ecr(work)) => {
                let (keys, tally, verdict) = collect_ecr(state, &record.id, work, budget).await;
                record.fail(verdict);
                record.ecr = Some(tally);
                for key in keys {
                    let users = wanted.entry(key).or_default();
                    if users.last() != Some(&i) {
                        users.push(i);
                    }
                }
                continue;
            }
            Some(Work::Quay(message)) => message,
        };
        let keys = match message.pending_keys() {
            Some(keys) => keys,
            None => {
                let namespace = (!message.project.is_empty()).then(|| message.project.clone());
                let urls = candidate_urls(&message.docker_url);
                match state.index(namespace.as_deref(), &urls, budget).await {
                    Ok(index) => {
                        let tags = message.tags.clone();
                        let (plan, _, _) = refresh::plan(index, namespace, urls, tags).await;
                        plan.refresh.into_iter().map(|s| s.key).collect()
                    }
                    Err(e) => {
                        let cause = Chain(&e).to_string();
                        tracing::warn!(message_id = %record.id, transient = e.is_transient(), cause = %clip(&cause), "cannot list warehouses");
                        record.fail(if e.is_transient() {
                            Verdict::Retry
                        } else {
                            Verdict::Dead
                        });
                        continue;
                    }
                }
            }
        };
        for key in keys {
            let users = wanted.entry(key).or_default();
            if users.last() != Some(&i) {
                users.push(i);
            }
        }
    }
    wanted
}

/// Step 3 for an ECR event: the Warehouses its scope selects, what the plan found, and the
/// verdict of any project that could not be listed (retry when transient, dead otherwise;
/// the listed projects' Warehouses are refreshed either way).
async fn collect_ecr<S: SecretSource, C: Connector>(
    state: &State<S, C>,
    message_id: &str,
    work: &EcrWork,
    budget: &Budget,
) -> (Vec<WarehouseKey>, EcrTally, Verdict) {
    let Some(scope) = &state.config.ecr else {
        // `Record::read` made work of it only within a scope.
        return (Vec::new(), EcrTally::default(), Verdict::Done);
    };
    let urls = candidate_urls(&work.push.repository);
    let planned = ecr::plan(state, &scope.projects, &urls, &work.push.tags, budget).await;
    let keys: Vec<WarehouseKey> = planned.plan.refresh.iter().map(|s| s.key.clone()).collect();
    let verdict = planned
        .unlisted
        .iter()
        .map(|(_, e)| {
            if e.is_transient() {
                Verdict::Retry
            } else {
                Verdict::Dead
            }
        })
        .max()
        .unwrap_or(Verdict::Done);
    tracing::info!(
        message_id,
        event = %work.event.id,
        repository = %work.push.repository,
        tag = work.event.tag(),
        selected = keys.len(),
        skipped = planned.plan.skipped.len(),
        invalid = planned.plan.invalid.len(),
        unlisted = planned.unlisted.len(),
        "ECR push planned"
    );
    let tally = EcrTally {
        keys: keys.clone(),
        skipped: planned.plan.skipped.len(),
        invalid: planned.plan.invalid.len(),
    };
    (keys, tally, verdict)
}

/// One metric record per ECR event the batch planned, with what became of its Warehouses
/// (those it shares with other records counted for each) and the status its verdict stands
/// for.
fn record_ecr_metrics<S: SecretSource, C: Connector>(
    state: &State<S, C>,
    records: &[Record],
    keys: &[WarehouseKey],
    patched: &[Patched],
    duration: Duration,
) {
    let results: HashMap<&WarehouseKey, &Patched> = keys.iter().zip(patched).collect();
    for (record, tally) in records
        .iter()
        .filter_map(|r| r.ecr.as_ref().map(|t| (r, t)))
    {
        let mut counts = Counts {
            skipped: tally.skipped,
            invalid: tally.invalid,
            ..Counts::default()
        };
        for key in &tally.keys {
            match results.get(key) {
                Some(Patched::Refreshed) => counts.refreshed += 1,
                Some(Patched::Gone) => counts.gone += 1,
                Some(Patched::Failed(_)) | None => counts.failed += 1,
            }
        }
        let status = match record.verdict {
            Verdict::Done => ecr::Disposition::Done,
            Verdict::Retry => ecr::Disposition::Retry,
            Verdict::Dead => ecr::Disposition::Failed,
        }
        .status();
        ecr::record_metric(&state.config, status, counts, duration);
    }
}

/// One metric record (`Source::Worker`) per queued Quay delivery in the batch, with what
/// became of its Warehouses (those it shares with other records counted for each) and the
/// status its verdict stands for: 200 done, 503 retried later, 500 dead (to the DLQ).
fn record_worker_metrics<S: SecretSource, C: Connector>(
    state: &State<S, C>,
    records: &[Record],
    wanted: &BTreeMap<WarehouseKey, Vec<usize>>,
    patched: &[Patched],
    duration: Duration,
) {
    let mut counts: HashMap<usize, Counts> = HashMap::new();
    for ((_, users), result) in wanted.iter().zip(patched) {
        for &i in users {
            let c = counts.entry(i).or_default();
            match result {
                Patched::Refreshed => c.refreshed += 1,
                Patched::Gone => c.gone += 1,
                Patched::Failed(_) => c.failed += 1,
            }
        }
    }
    for (i, record) in records.iter().enumerate().filter(|(_, r)| r.quay) {
        let project = match &record.work {
            Some(Work::Quay(message)) => Some(message.project.as_str()),
            _ => None,
        };
        let status = match record.verdict {
            Verdict::Done => 200,
            Verdict::Retry => 503,
            Verdict::Dead => 500,
        };
        let delivery = Delivery {
            source: Source::Worker,
            project,
            status,
            counts: counts.remove(&i).unwrap_or_default(),
            duration,
        };
        crate::metrics::record(state.config.metrics, &delivery);
    }
}

/// Step 6: failed records become visible again after their backoff (dead ones at once).
async fn back_off<S: SecretSource, C: Connector>(state: &State<S, C>, records: &[Record]) {
    let failed = records.iter().filter(|r| r.verdict != Verdict::Done);
    let (Some(queue), Some(config)) = (state.queue(), &state.config.queue) else {
        if failed.count() > 0 {
            tracing::warn!(
                "no queue configured: failed messages keep the queue's visibility timeout"
            );
        }
        return;
    };
    let changes = failed.filter_map(|record| {
        let receipt = record.receipt.as_deref()?;
        let after = match record.verdict {
            Verdict::Dead => Duration::ZERO,
            _ => backoff(config.backoff_base, config.backoff_max, record.receives),
        };
        Some(async move {
            if let Err(e) = queue.change_visibility(receipt, after).await {
                tracing::warn!(message_id = %record.id, cause = %Chain(&e), "cannot change the message's visibility");
            } else {
                tracing::debug!(message_id = %record.id, visible_in_s = after.as_secs(), "message backed off");
            }
        })
    });
    futures::future::join_all(changes).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_receive_up_to_the_maximum() {
        let base = Duration::from_secs(30);
        let max = Duration::from_secs(900);
        let waits: Vec<u64> = (0..=7).map(|n| backoff(base, max, n).as_secs()).collect();
        assert_eq!(waits, [30, 30, 60, 120, 240, 480, 900, 900]);
        assert_eq!(backoff(base, max, u32::MAX), max, "no overflow");
    }

    #[test]
    fn ecr_event_bodies_are_work_in_scope_done_outside_it_and_dead_when_malformed() {
        let config = |projects: Option<&str>| {
            Config::from_lookup(|var| match var {
                "QUAYHOOK_RECEIVER_SECRET_IDS" => Some("r".into()),
                "QUAYHOOK_KUBECONFIG_SECRET_ID" => Some("k".into()),
                "QUAYHOOK_ECR_PROJECTS" => projects.map(str::to_owned),
                "QUAYHOOK_ECR_REPOSITORY_PREFIXES" => {
                    Some("team-a/".into()).filter(|_| projects.is_some())
                }
                _ => None,
            })
            .unwrap()
        };
        let event = |name: &str, action: &str| {
            serde_json::json!({
                "version": "0", "id": "e-1", "detail-type": "ECR Image Action", "source": "aws.ecr",
                "account": "123456789012", "time": "2026-11-27T14:05:36Z", "region": "eu-west-1",
                "resources": [],
                "detail": {"result": "SUCCESS", "repository-name": name, "action-type": action, "image-tag": "v1"}
            })
            .to_string()
        };
        let record = |body: &str, config: &Config| {
            let mut raw = SqsMessage::default();
            raw.message_id = Some("m-1".into());
            raw.body = Some(body.to_owned());
            Record::read(raw, config)
        };
        let scoped = config(Some("kargo-demo"));
        let push = record(&event("team-a/api", "PUSH"), &scoped);
        assert_eq!(push.verdict, Verdict::Done);
        let Some(Work::Ecr(work)) = push.work else {
            panic!("ECR work")
        };
        assert_eq!(work.push.tags, ["v1"]);
        assert!(push.ecr.is_some());
        for (body, config) in [
            (event("team-b/api", "PUSH"), &scoped),
            (event("team-a/api", "DELETE"), &scoped),
            (event("team-a/api", "PUSH"), &config(None)),
        ] {
            let done = record(&body, config);
            assert_eq!(done.verdict, Verdict::Done, "{body}");
            assert!(done.work.is_none() && done.ecr.is_none(), "nothing to do");
        }
        let malformed = record(
            r#"{"source":"aws.ecr","detail-type":"ECR Image Action","id":"e-2"}"#,
            &scoped,
        );
        assert_eq!(malformed.verdict, Verdict::Dead);
        assert!(malformed.work.is_none());
    }

    #[test]
    fn records_are_decoded_or_dead_without_content() {
        let config = Config::from_lookup(|var| match var {
            "QUAYHOOK_RECEIVER_SECRET_IDS" => Some("r".into()),
            "QUAYHOOK_KUBECONFIG_SECRET_ID" => Some("k".into()),
            "QUAYHOOK_MAX_TAGS" => Some("2".into()),
            _ => None,
        })
        .unwrap();
        let record = |body: Option<&str>| {
            let mut raw = SqsMessage::default();
            raw.message_id = Some("m-1".into());
            raw.body = body.map(str::to_owned);
            raw.attributes.insert(RECEIVE_COUNT.into(), "3".into());
            Record::read(raw, &config)
        };
        let good = record(Some(
            r#"{"v":1,"project":"p","receiver":"r","tags":["a","b","c"],"pending":[{"namespace":"p","name":"w"}]}"#,
        ));
        assert_eq!(good.verdict, Verdict::Done);
        assert_eq!(good.receives, 3);
        let Some(Work::Quay(message)) = good.work else {
            panic!("a message")
        };
        assert_eq!(message.tags, ["a", "b"], "tags capped");
        for body in [
            None,
            Some("{"),
            Some(r#"{"v":9}"#),
            Some(
                r#"{"v":1,"project":"p","receiver":"r","pending":[{"namespace":"other","name":"w"}]}"#,
            ),
        ] {
            let bad = record(body);
            assert_eq!(bad.verdict, Verdict::Dead, "{body:?}");
            assert!(bad.work.is_none());
        }
        let cluster = record(Some(
            r#"{"v":1,"project":"","receiver":"r","pending":[{"namespace":"any","name":"w"}]}"#,
        ));
        assert_eq!(
            cluster.verdict,
            Verdict::Done,
            "cluster-level receivers span namespaces"
        );
    }
}
