//! ECR push events: a push to an Amazon ECR repository refreshes the Kargo Warehouses
//! subscribed to it, with the same matching as a Quay push.
//!
//! I/O through [`State`]. ECR has no webhooks: EventBridge emits an "ECR Image Action" event
//! for every push (and delete) in the account, and a rule sends it to quayhook. The event is
//! read and sorted purely ([`ImageAction::read`], [`triage`], in the `event` submodule); the
//! repository URL `{account}.dkr.ecr.{region}.amazonaws.com/{repository-name}`
//! (`.amazonaws.com.cn` in China) then goes through the Quay path's own steps: [`candidate_urls`] (Kargo's
//! normalization), [`State::index`], [`refresh::plan`] with the pushed tag as the one
//! qualifier (none for a push by digest only, which refreshes every subscriber, as a Quay push
//! without tags does: reference §5.8), [`refresh::patch_all`] and [`refresh::settle`].
//!
//! # Best effort
//! AWS documents ECR's EventBridge events as emitted on a best-effort basis: one can be late
//! or never come. Kargo's Warehouses keep polling at their `interval`, which still picks up a
//! push whose event was lost; the event only makes the refresh immediate.
//!
//! # Scope
//! The event carries no token: IAM is its authentication (only the EventBridge rule may invoke
//! the function or send to its queue). What it may refresh is configuration
//! ([`crate::config::EcrConfig`]): `QUAYHOOK_ECR_PROJECTS`, a list of projects or `*` for
//! every namespace, and optionally `QUAYHOOK_ECR_REPOSITORY_PREFIXES`, outside which an event
//! is ignored. Unset, every ECR event is refused: logged, not processed.
//!
//! # Delivery paths
//! - **Direct** (no durable path): the rule invokes the webhook function (`_HANDLER=http`)
//!   asynchronously, and [`invoke`] answers with a small JSON [`Answer`]. Only a transient
//!   failure (the cluster unreachable, 429 or 5xx after the bounded retries) is answered
//!   `retry`, which the Lambda edge turns into a function error
//!   ([`crate::lambda::Reply::into_result`]): Lambda's asynchronous invocation then retries the
//!   event (by default twice, one and two minutes later) and at last hands it to the
//!   function's on-failure destination or dead-letter queue. Anything else succeeds, since
//!   trying again could not change it.
//! - **Durable path on**: the rule targets the SQS queue and the worker reads the envelope as a
//!   message body ([`crate::worker`]), with the same scope rules. An event that reaches the
//!   webhook function while a queue is configured queues itself on a transient failure (the
//!   whole event: the worker plans it again), as a Quay push does.
//!
//! # Answers
//! `result` says what became of the event; the metric record (source `ECR`) carries the
//! HTTP status it stands for:
//!
//! | `result` | when | status |
//! |---|---|---|
//! | `done` | every selected Warehouse refreshed (or gone) | 200 |
//! | `queued` | a transient failure, and the event is on the queue | 202 |
//! | `failed` | a failure trying again cannot fix (403, an unusable kubeconfig) | 500 |
//! | `retry` | a transient failure, not queued: a function error | 503 |
//! | `ignored` | a delete, a failed push, a repository outside the prefixes | 200 |
//! | `refused` | `QUAYHOOK_ECR_PROJECTS` is not set | 403 |
//! | `invalid` | the event cannot be read | 400 |
//!
//! With a plan, the answer also carries the Quay answer's fields (`msg`, `repositories`,
//! `tags`, `refreshed`, `skipped`, … without `receiver`), and `unlisted` names the projects
//! whose Warehouses could not be listed. Nothing about an event is secret; its content is
//! still only logged as fields (event id, repository, tag, digest).

use std::borrow::Cow;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use kargo_match::index::{Plan, candidate_urls};
use kargo_match::urls::RepoUrl;
use kargo_match::warehouse::WarehouseKey;

use crate::cause::Chain;
use crate::cluster::Connector;
use crate::config::{Config, EcrProjects};
use crate::handler::ENQUEUE_RESERVE;
use crate::metrics::{Counts, Delivery, Source};
use crate::outcome::{Outcome, WarehouseOut, clip};
use crate::queue::{Queue, QueueError};
use crate::refresh;
use crate::retry::Budget;
use crate::secrets::SecretSource;
use crate::state::{State, StateError};

mod event;

pub use event::{
    DETAIL_TYPE, Detail, ImageAction, Push, ReadError, SOURCE, Skip, is_image_action, triage,
};

/// What became of an ECR event: the answer's `result` (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Disposition {
    /// Every selected Warehouse was refreshed (or is gone).
    Done,
    /// A transient failure; the event is queued for the worker.
    Queued,
    /// A failure trying again cannot fix.
    Failed,
    /// A transient failure that was not queued: the invocation fails, so Lambda retries it.
    Retry,
    /// Not a successful push in scope: nothing to do.
    Ignored,
    /// ECR events are not configured.
    Refused,
    /// The event cannot be read.
    Invalid,
}

impl Disposition {
    /// The HTTP status the result stands for in the metric record.
    pub fn status(self) -> u16 {
        match self {
            Disposition::Done | Disposition::Ignored => 200,
            Disposition::Queued => 202,
            Disposition::Invalid => 400,
            Disposition::Refused => 403,
            Disposition::Failed => 500,
            Disposition::Retry => 503,
        }
    }
}

/// A project whose Warehouses could not be listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unlisted {
    /// The project; `*` for every namespace.
    pub project: String,
    /// Why (one line, clipped).
    pub error: String,
}

/// The answer to an ECR event: the function's JSON result.
#[derive(Debug)]
pub struct Answer {
    /// What became of the event.
    pub result: Disposition,
    /// Why it was ignored, refused, invalid, failed or is to be retried.
    pub reason: Option<String>,
    /// EventBridge's event id, when the event could be read.
    pub event: Option<String>,
    /// What the refresh did, when the push was planned.
    pub outcome: Option<Outcome>,
    /// Projects whose Warehouses could not be listed.
    pub unlisted: Vec<Unlisted>,
}

impl Answer {
    fn new(result: Disposition, event: Option<&ImageAction>) -> Answer {
        Answer {
            result,
            reason: None,
            event: event.map(|e| e.id.clone()),
            outcome: None,
            unlisted: Vec::new(),
        }
    }

    /// The answer to an event [`triage`] left alone: `refused` or `ignored`, with the reason.
    pub fn skipped(event: &ImageAction, skip: &Skip) -> Answer {
        let result = match skip {
            Skip::Refused => Disposition::Refused,
            _ => Disposition::Ignored,
        };
        let mut answer = Answer::new(result, Some(event));
        answer.reason = Some(skip.to_string());
        answer
    }

    /// Whether the invocation should fail so that Lambda retries the event.
    pub fn is_retry(&self) -> bool {
        self.result == Disposition::Retry
    }

    /// Warehouses per fate, for the metric record.
    pub fn counts(&self) -> Counts {
        self.outcome.as_ref().map(Counts::of).unwrap_or_default()
    }
}

impl Serialize for Answer {
    fn serialize<Ser: serde::Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            result: Disposition,
            #[serde(skip_serializing_if = "Option::is_none")]
            reason: Option<Cow<'a, str>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            event: Option<Cow<'a, str>>,
            #[serde(flatten)]
            echo: Option<crate::outcome::Echo<'a>>,
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            unlisted: &'a [Unlisted],
        }
        View {
            result: self.result,
            reason: self.reason.as_deref().map(clip),
            event: self.event.as_deref().map(clip),
            echo: self.outcome.as_ref().map(Outcome::echo),
            unlisted: &self.unlisted,
        }
        .serialize(serializer)
    }
}

/// A push planned over every project of the scope.
#[derive(Debug, Default)]
pub struct ScopePlan {
    /// The projects' plans joined, in key order.
    pub plan: Plan,
    /// The projects (`*`: every namespace) whose Warehouses could not be listed, with why.
    pub unlisted: Vec<(String, StateError)>,
}

/// Plans a push of `tags` to `urls` in every project of `projects` (one Warehouse list per
/// project, cached like a Quay receiver's, all at once), or in every namespace for `*`.
///
/// A project whose Warehouses cannot be listed does not hold the others back: it is returned
/// under `unlisted`, and the caller decides, by the error, between retrying and failing.
pub async fn plan<S: SecretSource, C: Connector>(
    state: &State<S, C>,
    projects: &EcrProjects,
    urls: &[RepoUrl],
    tags: &[String],
    budget: &Budget,
) -> ScopePlan {
    let namespaces: Vec<Option<String>> = match projects {
        EcrProjects::All => vec![None],
        EcrProjects::Only(names) => names.iter().cloned().map(Some).collect(),
    };
    let lists = namespaces
        .iter()
        .map(|ns| state.index(ns.as_deref(), urls, budget));
    let indexes = futures::future::join_all(lists).await;
    let mut joined = ScopePlan::default();
    // Projects are sorted and each plan is in key order (namespace first): appending keeps
    // the whole in key order.
    for (namespace, index) in namespaces.into_iter().zip(indexes) {
        match index {
            Ok(index) => {
                let (plan, _, _) =
                    refresh::plan(index, namespace, urls.to_vec(), tags.to_vec()).await;
                joined.plan.refresh.extend(plan.refresh);
                joined.plan.skipped.extend(plan.skipped);
                joined.plan.invalid.extend(plan.invalid);
            }
            Err(e) => {
                let project = namespace.unwrap_or_else(|| "*".to_owned());
                let cause = Chain(&e).to_string();
                tracing::warn!(project = %project, transient = e.is_transient(), cause = %clip(&cause), "cannot list warehouses");
                joined.unlisted.push((project, e));
            }
        }
    }
    joined
}

/// Answers one ECR event the Lambda runtime handed over (see the module documentation):
/// reads it, sorts it, and refreshes what a push in scope selects within `remaining` time
/// (the configured `QUAYHOOK_REQUEST_TIMEOUT` when unknown).
///
/// Never fails and never panics on input: an unreadable event is answered `invalid`. Writes
/// one metric record (source `ECR`) and one log event per event.
pub async fn invoke<S: SecretSource, C: Connector>(
    state: &State<S, C>,
    payload: Value,
    remaining: Option<Duration>,
) -> Answer {
    let started = Instant::now();
    let (answer, event) = match ImageAction::read(payload) {
        Err(e) => {
            let mut answer = Answer::new(Disposition::Invalid, None);
            answer.reason = Some(e.to_string());
            (answer, None)
        }
        Ok(event) => {
            let answer = match triage(&event, state.config.ecr.as_ref()) {
                Err(skip) => Answer::skipped(&event, &skip),
                Ok(push) => refresh_push(state, &event, push, remaining).await,
            };
            (answer, Some(event))
        }
    };
    let duration = started.elapsed();
    record_metric(
        &state.config,
        answer.result.status(),
        answer.counts(),
        duration,
    );
    log(&answer, event.as_ref(), duration);
    answer
}

/// The refresh of a push in scope: plan, patch, settle; on a transient failure, queue the
/// event (when a queue is configured) or answer `retry`.
async fn refresh_push<S: SecretSource, C: Connector>(
    state: &State<S, C>,
    event: &ImageAction,
    push: Push,
    remaining: Option<Duration>,
) -> Answer {
    let Some(scope) = &state.config.ecr else {
        return Answer::skipped(event, &Skip::Refused);
    };
    let budget = Budget::within(state.config.request_timeout, remaining);
    let cluster_budget = match state.queue() {
        Some(_) => budget.ending_before(ENQUEUE_RESERVE),
        None => budget,
    };
    let urls = candidate_urls(&push.repository);
    let planned = plan(state, &scope.projects, &urls, &push.tags, &cluster_budget).await;
    let mut outcome = Outcome {
        repositories: urls.iter().map(ToString::to_string).collect(),
        tags: push.tags,
        ..Outcome::default()
    };
    let keys: Vec<WarehouseKey> = planned.plan.refresh.iter().map(|s| s.key.clone()).collect();
    let patched = refresh::patch_all(state, &keys, &cluster_budget).await;
    // Transient failures are set aside whether or not there is a queue: without one they are
    // retried by failing the invocation.
    let retry = refresh::settle(&planned.plan, patched, true, &mut outcome);

    let mut answer = Answer::new(Disposition::Done, Some(event));
    answer.unlisted = planned
        .unlisted
        .iter()
        .map(|(project, e)| Unlisted {
            project: project.clone(),
            error: clip(&Chain(e).to_string()).into_owned(),
        })
        .collect();
    let transient = retry.first().map(|(_, e)| e).or_else(|| {
        planned
            .unlisted
            .iter()
            .map(|(_, e)| e)
            .find(|e| e.is_transient())
    });
    answer.result = match transient {
        Some(e) => {
            let cause = Chain(e).to_string();
            if queue_event(state, event, &budget).await {
                outcome.queued = retry
                    .iter()
                    .map(|(s, _)| WarehouseOut::selected(s))
                    .collect();
                outcome.queued_push = true;
                outcome.cause = Some(cause);
                Disposition::Queued
            } else {
                outcome.fail_all(&retry);
                answer.reason = Some(cause);
                Disposition::Retry
            }
        }
        None if outcome.failed.is_empty() && answer.unlisted.is_empty() => Disposition::Done,
        None => {
            answer.reason = answer
                .unlisted
                .first()
                .map(|u| format!("cannot list warehouses in {}: {}", u.project, u.error))
                .or_else(|| outcome.failed.first().and_then(|f| f.error.clone()));
            Disposition::Failed
        }
    };
    answer.outcome = Some(outcome);
    answer
}

/// Queues the whole event for the worker, within `budget`. `false` when there is no queue or
/// it fails (logged): the caller then answers as without one.
async fn queue_event<S: SecretSource, C: Connector>(
    state: &State<S, C>,
    event: &ImageAction,
    budget: &Budget,
) -> bool {
    let Some(queue) = state.queue() else {
        return false;
    };
    let sent = budget
        .finish(queue.send_body(&event.encode()))
        .await
        .unwrap_or(Err(QueueError::Timeout));
    match sent {
        Ok(()) => true,
        Err(q) => {
            tracing::error!(event = %event.id, cause = %Chain(&q), "cannot queue the ECR event; answering as without a queue");
            false
        }
    }
}

/// Writes the metric record of one ECR event (source `ECR`). The `Project` dimension is the
/// scope's project when there is exactly one, `*` for every namespace, and absent otherwise.
pub fn record_metric(config: &Config, status: u16, counts: Counts, duration: Duration) {
    let project = match config.ecr.as_ref().map(|c| &c.projects) {
        Some(EcrProjects::All) => Some(""),
        Some(EcrProjects::Only(names)) if names.len() == 1 => Some(names[0].as_str()),
        _ => None,
    };
    let delivery = Delivery {
        source: Source::Ecr,
        project,
        status,
        counts,
        duration,
    };
    crate::metrics::record(config.metrics, &delivery);
}

/// The one log event of an ECR event, at info when it is done or left alone, warn when queued,
/// failed, refused or unreadable, and error when it is to be retried.
fn log(answer: &Answer, event: Option<&ImageAction>, duration: Duration) {
    let counts = answer.counts();
    let repository = event.map(ImageAction::repository_url);
    let tag = event.and_then(ImageAction::tag);
    let digest = event.and_then(|e| e.detail.image_digest.as_deref());
    let reason = answer.reason.as_deref().map(clip);
    let unlisted = answer.unlisted.len();
    let result = answer.result;
    macro_rules! outcome {
        ($level:expr, $message:literal) => {
            tracing::event!(
                $level,
                event = answer.event.as_deref(),
                repository = repository.as_deref(),
                tag,
                digest,
                result = ?result,
                reason = reason.as_deref(),
                refreshed = counts.refreshed,
                skipped = counts.skipped,
                invalid = counts.invalid,
                gone = counts.gone,
                failed = counts.failed,
                queued = counts.queued,
                unlisted,
                duration_ms = duration.as_millis() as u64,
                $message
            )
        };
    }
    match result {
        Disposition::Done => outcome!(tracing::Level::INFO, "ecr push handled"),
        Disposition::Ignored => outcome!(tracing::Level::INFO, "ecr event ignored"),
        Disposition::Queued => outcome!(tracing::Level::WARN, "ecr push queued for the worker"),
        Disposition::Failed => outcome!(tracing::Level::WARN, "ecr push partly failed"),
        Disposition::Refused => outcome!(tracing::Level::WARN, "ecr event refused"),
        Disposition::Invalid => outcome!(tracing::Level::WARN, "ecr event rejected"),
        Disposition::Retry => outcome!(
            tracing::Level::ERROR,
            "ecr push not handled; the invocation fails so Lambda retries it"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kargo_match::index::Selected;

    #[test]
    fn every_result_stands_for_a_status() {
        let statuses = [
            Disposition::Done,
            Disposition::Queued,
            Disposition::Failed,
            Disposition::Retry,
            Disposition::Ignored,
            Disposition::Refused,
            Disposition::Invalid,
        ]
        .map(Disposition::status);
        assert_eq!(statuses, [200, 202, 500, 503, 200, 403, 400]);
    }

    #[test]
    fn an_answer_is_small_json_without_a_receiver() {
        let mut answer = Answer::new(Disposition::Done, None);
        answer.event = Some("e-1".into());
        let mut outcome = Outcome {
            repositories: vec!["123456789012.dkr.ecr.eu-west-1.amazonaws.com/app".into()],
            tags: vec!["v1.2.3".into()],
            ..Outcome::default()
        };
        outcome.refreshed.push(WarehouseOut::selected(&Selected {
            key: WarehouseKey::new("kargo-demo", "app"),
            tag: Some("v1.2.3".into()),
        }));
        answer.outcome = Some(outcome);
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            serde_json::json!({
                "result": "done",
                "event": "e-1",
                "msg": "refreshed 1 warehouse(s)",
                "repositories": ["123456789012.dkr.ecr.eu-west-1.amazonaws.com/app"],
                "tags": ["v1.2.3"],
                "refreshed": [{"namespace": "kargo-demo", "name": "app", "tag": "v1.2.3"}]
            })
        );
        let mut refused = Answer::new(Disposition::Refused, None);
        refused.reason = Some(Skip::Refused.to_string());
        assert_eq!(
            serde_json::to_string(&refused).unwrap(),
            r#"{"result":"refused","reason":"ECR events are refused: QUAYHOOK_ECR_PROJECTS is not set"}"#
        );
        assert!(!refused.is_retry());
        assert_eq!(refused.counts(), Counts::default());
    }
}
