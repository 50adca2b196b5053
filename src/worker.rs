//! The durable path's worker: finishes, from an SQS batch, the deliveries the webhook function
//! queued ([`crate::message`]).
//!
//! I/O through [`State`] and its [`Queue`]. [`run`] takes Lambda's SQS event and answers its
//! partial batch response (the event source mapping needs `ReportBatchItemFailures`):
//!
//! 1. **Decode** each record's body. An undecodable one (not JSON, another format version, a
//!    `pending` Warehouse outside the receiver's project) is *dead*: it cannot succeed.
//! 2. **Check the receiver** still exists ([`State::receiver_presence`]). One that is gone
//!    makes its messages dead; one that cannot be confirmed now makes them *retry*.
//! 3. **Collect the Warehouses**: a message's `pending` list as is; a message without one is
//!    planned again with the delivery's own code ([`State::index`], [`refresh::plan`]).
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
//! their `messageId`, receivers by project and name.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use lambda_http::aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};

use kargo_match::index::candidate_urls;
use kargo_match::token::ReceiverId;
use kargo_match::warehouse::WarehouseKey;

use crate::cause::Chain;
use crate::cluster::Connector;
use crate::message::{Message, MessageError};
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
    message: Option<Message>,
    verdict: Verdict,
}

impl Record {
    fn read(raw: SqsMessage, max_tags: usize) -> Record {
        let receives = raw
            .attributes
            .get(RECEIVE_COUNT)
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let mut record = Record {
            id: raw.message_id.unwrap_or_default(),
            receipt: raw.receipt_handle,
            receives,
            message: None,
            verdict: Verdict::Done,
        };
        let decoded = match raw.body.as_deref().map(Message::decode) {
            None => Err(Undecodable::NoBody),
            Some(Err(e)) => Err(Undecodable::Message(e)),
            Some(Ok(m)) if outside_project(&m) => Err(Undecodable::OutsideProject),
            Some(Ok(mut m)) => {
                m.tags.truncate(max_tags);
                Ok(m)
            }
        };
        match decoded {
            Ok(message) => record.message = Some(message),
            Err(e) => {
                tracing::warn!(message_id = %record.id, receives, cause = %e, "message undecodable; it goes to the dead-letter queue");
                record.verdict = Verdict::Dead;
            }
        }
        record
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
        .map(|raw| Record::read(raw, state.config.max_tags))
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
        let Some(message) = &record.message else {
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
                record.message = None;
                record.fail(Verdict::Dead);
            }
            Presence::Unconfirmed => {
                tracing::warn!(message_id = %record.id, project = %id.project, receiver = %id.receiver, "cannot confirm the receiver now; retrying later");
                record.message = None;
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
        let Some(message) = &record.message else {
            continue;
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
    fn records_are_decoded_or_dead_without_content() {
        let record = |body: Option<&str>| {
            let mut raw = SqsMessage::default();
            raw.message_id = Some("m-1".into());
            raw.body = body.map(str::to_owned);
            raw.attributes.insert(RECEIVE_COUNT.into(), "3".into());
            Record::read(raw, 2)
        };
        let good = record(Some(
            r#"{"v":1,"project":"p","receiver":"r","tags":["a","b","c"],"pending":[{"namespace":"p","name":"w"}]}"#,
        ));
        assert_eq!(good.verdict, Verdict::Done);
        assert_eq!(good.receives, 3);
        assert_eq!(good.message.unwrap().tags, ["a", "b"], "tags capped");
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
            assert!(bad.message.is_none());
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
