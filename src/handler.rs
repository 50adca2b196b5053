//! One Quay delivery, from HTTP request to HTTP response.
//!
//! I/O through [`State`]. [`answer`] runs [`admit`] on the request head alone (route → method →
//! token → declared length), reads the body only then, and runs [`deliver`], a straight line
//! of steps (size → payload → index → plan → patches, the last two in [`crate::refresh`],
//! shared with the queue worker), each one pure call or one call on [`State`]; with a queue
//! configured, what the cluster could not take is queued for the worker (see [`deliver`]).
//! [`respond`] is the only place that picks a status and a body. The Lambda runtime
//! reaches [`answer`] through [`crate::lambda`]; [`handle`] answers a `lambda_http` request
//! (tests and fuzz targets replay events with it). Nothing logs the path, the token, the body or
//! a secret: the one `info` event per request carries the receiver, the repository, the tags and
//! the counts.

use std::time::{Duration, SystemTime};

use lambda_http::http::{Method, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use tracing::Instrument;

use crate::cause::Chain;
use crate::cluster::Connector;
use crate::message::Message;
use crate::metrics::{Delivery, Source};
use crate::outcome::{Completion, Outcome, ReceiverOut, WarehouseOut, clip};
use crate::queue::{AnyQueue, Queue, QueueError};
use crate::refresh;
use crate::retry::Budget;
use crate::secrets::{SecretSource, SecretsError};
use crate::state::{State, StateError};
use kargo_match::index::{Selected, candidate_urls};
use kargo_match::quay::{MAX_BODY_BYTES, PayloadError, Push};
use kargo_match::token::{Match, ReceiverId};
use kargo_match::warehouse::WarehouseKey;

/// Why a request is answered with an error before any Warehouse is touched.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// Returned for any method but POST.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Returned when the path is not `{base}/quay/{token}` or the token is unknown.
    #[error("unknown receiver")]
    NotFound,
    /// Returned when the body exceeds Kargo's 2 MiB limit.
    #[error("body too large")]
    TooLarge,
    /// Returned when the body does not arrive within the read deadline (`quayhook serve`).
    #[error("request timeout")]
    Timeout,
    /// Returned when the body is not a Quay push payload.
    #[error("invalid payload")]
    BadPayload(#[source] PayloadError),
    /// Returned when a Lambda invocation is not a readable API Gateway request (see
    /// [`crate::lambda::ErrorKind`]): nothing about the receiver is known yet.
    #[error("invalid request")]
    InvalidRequest(#[source] crate::lambda::EventError),
    /// Returned when receiver secrets cannot be read and none are cached.
    #[error("receiver secrets unavailable")]
    Secrets(#[source] SecretsError),
    /// Returned when the Warehouses cannot be listed (or the kubeconfig cannot be used), and
    /// the push could not be queued.
    #[error("cannot list warehouses")]
    Cluster(#[source] StateError),
    /// Returned when an API Gateway event reaches the queue worker (`_HANDLER=worker`): the
    /// function's event sources are miswired.
    #[error("this function is the queue worker")]
    NotWebhookFunction,
}

/// The token of a path that is exactly `{base}/quay/{token}`, after Go-style percent-decoding
/// (Kargo compares the decoded `r.URL.Path` with each receiver's path for equality, §1.2).
///
/// Nothing before the base path is accepted (`//quay/T`, `/x/quay/T`, `/./quay/T` and
/// `/x/../quay/T` are all unknown paths, as in Kargo, whose mux redirects them without
/// routing); a trailing `/` or anything after the token does not match either.
pub fn token_from_path(path: &str, base_path: &str) -> Option<String> {
    let decoded = percent_decode(path)?;
    // `base_path` is cleaned (`/a/b` or empty), so the prefix ends on a segment boundary.
    let token = decoded.strip_prefix(base_path)?.strip_prefix("/quay/")?;
    if token.is_empty() || token.contains('/') {
        return None;
    }
    Some(token.to_owned())
}

fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let text = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(text, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What the request head says: everything a delivery decides before reading a body byte.
#[derive(Clone, Debug)]
pub struct Head {
    /// The HTTP method.
    pub method: Method,
    /// The request path as received (query excluded), before percent-decoding.
    pub path: String,
    /// The declared `Content-Length`, when there is one that parses.
    pub content_length: Option<u64>,
    /// Time the Lambda invocation has left (absent outside Lambda).
    pub remaining: Option<Duration>,
}

impl Head {
    /// The head of a `lambda_http` request (replayed events; the Lambda runtime's own path is
    /// [`crate::lambda::Event::into_delivery`]).
    ///
    /// The path is the one API Gateway sent (`rawPath`, or `path` of a REST event, see
    /// [`crate::lambda::rest_path`]), not lambda_http's URI, which has a REST event's stage put
    /// in front.
    pub fn of(req: &Request) -> Head {
        let raw = req.raw_http_path();
        let path = match req.request_context_ref() {
            _ if raw.is_empty() => req.uri().path(),
            Some(RequestContext::ApiGatewayV1(context)) => {
                crate::lambda::rest_path(raw, context.stage.as_deref(), context.path.as_deref())
            }
            _ => raw,
        }
        .to_owned();
        Head {
            method: req.method().clone(),
            path,
            content_length: declared_length(req.headers()),
            remaining: lambda_remaining(req),
        }
    }
}

/// The `Content-Length` header as a number, if present and valid.
pub fn declared_length(headers: &header::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// A request whose head passed every check: a known receiver, an acceptable declared length.
#[derive(Debug)]
pub struct Admitted {
    matched: Match,
    remaining: Option<Duration>,
}

/// Answers one delivery from the Lambda runtime (the body is already in the event).
pub async fn handle<S: SecretSource, C: Connector>(
    state: &State<S, C>,
    req: Request,
) -> Response<Body> {
    let head = Head::of(&req);
    answer(state, &head, || async { Ok(req.body().as_ref()) }).await
}

/// Answers one delivery, reading the body (through `read_body`) only once the head is admitted.
///
/// Never fails: every problem becomes a status code and a JSON body. `read_body` may itself
/// refuse the body, e.g. [`Rejection::TooLarge`] for a chunked upload past the limit.
pub async fn answer<S, C, F, Fut, B>(
    state: &State<S, C>,
    head: &Head,
    read_body: F,
) -> Response<Body>
where
    S: SecretSource,
    C: Connector,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<B, Rejection>>,
    B: AsRef<[u8]>,
{
    let span = tracing::info_span!(
        "delivery",
        project = tracing::field::Empty,
        receiver = tracing::field::Empty
    );
    async {
        let started = std::time::Instant::now();
        let result = match admit(state, head).await {
            Ok(admitted) => match read_body().await {
                Ok(body) => deliver(state, admitted, body.as_ref()).await,
                Err(rejection) => Err(rejection),
            },
            Err(rejection) => Err(rejection),
        };
        let elapsed = started.elapsed().as_millis() as u64;
        let response = respond(&result);
        let status = response.status().as_u16();
        // The one metric record per delivery, beside the one outcome event below.
        let delivery =
            Delivery::answered(Source::Quay, status, started.elapsed(), result.as_ref().ok());
        crate::metrics::record(state.config.metrics, &delivery);
        match &result {
            Ok(o) => {
                let echo = o.echo();
                // One event per delivery with the same fields at either level.
                macro_rules! outcome {
                    ($level:expr, $message:literal) => {
                        tracing::event!(
                            $level,
                            status,
                            repository = ?echo.repositories,
                            tags = ?echo.tags,
                            tags_not_considered = o.tags_not_considered,
                            refreshed = o.refreshed.len(),
                            failed = o.failed.len(),
                            skipped = o.skipped.len(),
                            invalid = o.invalid.len(),
                            gone = o.gone.len(),
                            queued = o.queued.len(),
                            queued_push = o.queued_push,
                            cause = o.cause.as_deref().map(clip).as_deref(),
                            test = o.test_notification,
                            duration_ms = elapsed,
                            $message
                        )
                    };
                }
                match o.completion() {
                    Completion::Done => outcome!(tracing::Level::INFO, "push handled"),
                    Completion::Queued => outcome!(tracing::Level::WARN, "push queued for the worker"),
                    Completion::PartlyFailed => outcome!(tracing::Level::WARN, "push partly failed"),
                }
            }
            Err(e @ (Rejection::Secrets(_) | Rejection::Cluster(_) | Rejection::NotWebhookFunction)) => {
                tracing::error!(status, cause = %Chain(e), duration_ms = elapsed, "push not handled");
            }
            Err(e) => tracing::info!(status, cause = %Chain(e), duration_ms = elapsed, "push rejected"),
        }
        response
    }
    .instrument(span)
    .await
}

/// Time the Lambda has left, from the invocation context (absent outside Lambda).
fn lambda_remaining(req: &Request) -> Option<Duration> {
    crate::lambda::remaining(req.lambda_context_ref()?.deadline, SystemTime::now())
}

/// The checks on the request head, in Kargo's order where Kargo has them: the path must be
/// `{base}/quay/{token}` (404), the method POST (405), the token a receiver's (404), and the
/// declared length within the limit (413). No body byte is needed for any of them.
///
/// # Errors
/// A [`Rejection`] for the first check that fails.
pub async fn admit<S: SecretSource, C: Connector>(
    state: &State<S, C>,
    head: &Head,
) -> Result<Admitted, Rejection> {
    let token = token_from_path(&head.path, &state.config.base_path).ok_or(Rejection::NotFound)?;
    if head.method != Method::POST {
        return Err(Rejection::MethodNotAllowed);
    }
    let matched = state
        .authenticate(&token)
        .await
        .map_err(Rejection::Secrets)?
        .ok_or(Rejection::NotFound)?;
    let span = tracing::Span::current();
    span.record("project", matched.id.project.as_str());
    span.record("receiver", matched.id.receiver.as_str());
    if matched.previous {
        tracing::warn!("token matched the previous secret: update the URL in Quay");
    }
    if head
        .content_length
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(Rejection::TooLarge);
    }
    Ok(Admitted {
        matched,
        remaining: head.remaining,
    })
}

/// The steps after the head: size → payload → index → plan → patches, and with a queue
/// configured, queueing what the cluster could not take.
///
/// # The durable path
/// When the state has a queue ([`State::with_queue`]), the cluster gets the budget less
/// [`ENQUEUE_RESERVE`], and work that failed for a transient reason
/// ([`StateError::is_transient`]) is queued for the worker instead of failing the delivery:
/// the Warehouses whose patch failed (the outcome lists them under `queued`, the others stay
/// `refreshed`), or the push itself when the Warehouses could not be listed. Quay then sees a
/// 202, not a 5xx that counts toward disabling the notification. A permanent failure (403,
/// an unusable kubeconfig) is never queued, and when the queue fails too the answer is what it
/// would be without one (503 for the list, 500 for the patches).
///
/// # Errors
/// A [`Rejection`] for everything answered before the patches.
pub async fn deliver<S: SecretSource, C: Connector>(
    state: &State<S, C>,
    admitted: Admitted,
    body: &[u8],
) -> Result<Outcome, Rejection> {
    let received = SystemTime::now();
    if body.len() > MAX_BODY_BYTES {
        return Err(Rejection::TooLarge);
    }
    let push = Push::parse(body).map_err(Rejection::BadPayload)?;
    let urls = candidate_urls(&push.docker_url);
    // Quay sends one tag per notification; a push naming thousands must not buy thousands of
    // selector evaluations per subscriber. Tags are sorted, so the first ones are kept.
    let mut tags = push.tags();
    let tags_not_considered = tags.len().saturating_sub(state.config.max_tags);
    tags.truncate(state.config.max_tags);

    let matched = admitted.matched;
    let namespace = (!matched.id.project.is_empty()).then(|| matched.id.project.clone());
    let budget = Budget::within(state.config.request_timeout, admitted.remaining);
    let cluster_budget = match state.queue() {
        Some(_) => budget.ending_before(ENQUEUE_RESERVE),
        None => budget,
    };
    let mut outcome = Outcome {
        test_notification: push.is_test_notification(),
        receiver: ReceiverOut {
            project: matched.id.project.clone(),
            name: matched.id.receiver.clone(),
            previous_secret: matched.previous,
        },
        repositories: urls.iter().map(ToString::to_string).collect(),
        tags_not_considered,
        ..Outcome::default()
    };
    let queued = Queued {
        receiver: &matched.id,
        docker_url: &push.docker_url,
        received,
        budget: &budget,
    };
    let index = match state
        .index(namespace.as_deref(), &urls, &cluster_budget)
        .await
    {
        Ok(index) => index,
        Err(e) => {
            outcome.tags = tags;
            return match state.queue() {
                Some(queue) if e.is_transient() => {
                    queue_push(queue, &queued, &mut outcome, &e).await?;
                    Ok(outcome)
                }
                _ => Err(Rejection::Cluster(e)),
            };
        }
    };
    let (plan, _, tags) = refresh::plan(index, namespace, urls, tags).await;
    outcome.tags = tags;
    let keys: Vec<WarehouseKey> = plan.refresh.iter().map(|s| s.key.clone()).collect();
    let patched = refresh::patch_all(state, &keys, &cluster_budget).await;
    let retry = refresh::settle(&plan, patched, state.queue().is_some(), &mut outcome);
    if let Some(queue) = state.queue()
        && !retry.is_empty()
    {
        queue_warehouses(queue, &queued, &mut outcome, retry).await;
    }
    Ok(outcome)
}

/// Time kept back from the cluster's share of the budget, when a queue is configured, to
/// queue what the cluster could not take (an SQS `SendMessage` takes tens of milliseconds;
/// the SDK gives up after [`crate::secrets::sdk_timeouts`]). At most half the budget.
pub const ENQUEUE_RESERVE: Duration = Duration::from_secs(1);

/// What every message of one delivery repeats.
struct Queued<'a> {
    receiver: &'a ReceiverId,
    docker_url: &'a str,
    received: SystemTime,
    budget: &'a Budget,
}

impl Queued<'_> {
    fn message(&self, outcome: &Outcome, pending: Option<&[WarehouseKey]>, cause: &str) -> Message {
        Message::new(
            self.receiver,
            self.docker_url,
            outcome.repositories.clone(),
            outcome.tags.clone(),
            self.received,
            pending,
            clip(cause).into_owned(),
        )
    }

    /// Sends `message` (split when long) within the request's budget.
    async fn send(&self, queue: &AnyQueue, message: Message) -> Result<(), QueueError> {
        for part in message.split().map_err(QueueError::Message)? {
            self.budget
                .finish(queue.send(&part))
                .await
                .unwrap_or(Err(QueueError::Timeout))?;
        }
        Ok(())
    }
}

/// Queues the whole push for the worker to plan: no Warehouse could be listed.
///
/// # Errors
/// [`Rejection::Cluster`] with the list's error when the queue fails as well.
async fn queue_push(
    queue: &AnyQueue,
    queued: &Queued<'_>,
    outcome: &mut Outcome,
    error: &StateError,
) -> Result<(), Rejection> {
    let cause = Chain(error).to_string();
    match queued
        .send(queue, queued.message(outcome, None, &cause))
        .await
    {
        Ok(()) => {
            outcome.queued_push = true;
            outcome.cause = Some(cause);
            Ok(())
        }
        Err(q) => {
            tracing::error!(cause = %Chain(&q), "cannot queue the push; answering as without a queue");
            Err(Rejection::Cluster(error.clone()))
        }
    }
}

/// Queues the Warehouses whose patch failed transiently; those the queue does not take stay
/// `failed`.
async fn queue_warehouses(
    queue: &AnyQueue,
    queued: &Queued<'_>,
    outcome: &mut Outcome,
    retry: Vec<(&Selected, StateError)>,
) {
    let cause = Chain(&retry[0].1).to_string();
    let keys: Vec<WarehouseKey> = retry.iter().map(|(s, _)| s.key.clone()).collect();
    let message = queued.message(outcome, Some(&keys), &cause);
    match queued.send(queue, message).await {
        Ok(()) => {
            outcome.queued = retry
                .iter()
                .map(|(selected, _)| WarehouseOut::selected(selected))
                .collect();
            outcome.cause = Some(cause);
        }
        Err(q) => {
            // A long list may have been queued in part; the worker refreshing those again
            // is harmless, and this answer must not claim what it cannot show.
            tracing::error!(cause = %Chain(&q), warehouses = keys.len(), "cannot queue the failed refreshes; answering as without a queue");
            outcome.fail_all(&retry);
        }
    }
}

/// The one mapping from a result to a status and a JSON body (Kargo's shapes, plus detail).
pub fn respond(result: &Result<Outcome, Rejection>) -> Response<Body> {
    let (status, body) = match result {
        Ok(o) => {
            let status = match o.completion() {
                Completion::Done => StatusCode::OK,
                Completion::Queued => StatusCode::ACCEPTED,
                Completion::PartlyFailed => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (status, serde_json::to_value(o.echo()))
        }
        Err(r) => {
            let (status, message): (StatusCode, Option<String>) = match r {
                Rejection::MethodNotAllowed => (
                    StatusCode::METHOD_NOT_ALLOWED,
                    Some("method not allowed".into()),
                ),
                // Kargo answers an unknown path with `{}`: no hint whether a project or receiver exists.
                Rejection::NotFound => (StatusCode::NOT_FOUND, None),
                Rejection::TooLarge => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Some(format!("content exceeds limit of {MAX_BODY_BYTES} bytes")),
                ),
                Rejection::Timeout => (StatusCode::REQUEST_TIMEOUT, Some("request timeout".into())),
                Rejection::BadPayload(_) => {
                    (StatusCode::BAD_REQUEST, Some("invalid request body".into()))
                }
                Rejection::InvalidRequest(_) => {
                    (StatusCode::BAD_REQUEST, Some("invalid request".into()))
                }
                Rejection::Secrets(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some("receiver secrets unavailable".into()),
                ),
                Rejection::Cluster(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, Some(Chain(r).to_string()))
                }
                Rejection::NotWebhookFunction => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some("this function is the queue worker, not the webhook".into()),
                ),
            };
            let body = match message {
                Some(m) => serde_json::json!({ "error": m }),
                None => serde_json::json!({}),
            };
            (status, Ok(body))
        }
    };
    // Serializing these plain structs cannot fail; fall back to `{}` rather than panic.
    let mut text = body.map(|b| b.to_string()).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json");
    if status == StatusCode::METHOD_NOT_ALLOWED {
        builder = builder.header(header::ALLOW, "POST");
    }
    builder.body(Body::Text(text)).unwrap_or_else(|_| {
        let mut fallback = Response::new(Body::Text("{}\n".into()));
        *fallback.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        fallback
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cause::Cause;

    #[test]
    fn routing_accepts_exactly_base_quay_token() {
        let t = "3e6315f59f25bc201ec77ebb7818c057c4406a4b58d930f27d651b6af36395a9";
        let ok = |path: &str, base: &str| token_from_path(path, base);
        assert_eq!(ok(&format!("/quay/{t}"), ""), Some(t.to_owned()));
        assert_eq!(
            ok(&format!("/webhooks/quay/{t}"), "/webhooks"),
            Some(t.to_owned())
        );
        assert_eq!(
            ok("/quay/%61bc", ""),
            Some("abc".into()),
            "percent-decoded like Go's r.URL.Path"
        );
        // Kargo compares the whole path for equality (§1.2): nothing before `{base}/quay/`,
        // nothing after the token.
        for (path, base) in [
            (format!("/quay/{t}"), "/webhooks"),
            (format!("/xwebhooks/quay/{t}"), "/webhooks"),
            (format!("/x/webhooks/quay/{t}"), "/webhooks"),
            (format!("/webhooks/quay/{t}"), ""),
            (format!("/prod/quay/{t}"), ""),
            (format!("//quay/{t}"), ""),
            (format!("/./quay/{t}"), ""),
            (format!("/x/../quay/{t}"), ""),
            (format!("/x/%2e%2e/quay/{t}"), ""),
            (format!("/anything/quay/{t}"), ""),
            (format!("/github/x/quay/{t}"), ""),
            (format!("/quay/{t}/quay/{t}"), ""),
            (format!("/quay//{t}"), ""),
            (format!("/quay/{t}/"), ""),
            ("/quay/".to_owned(), ""),
            ("/github/abc".to_owned(), ""),
            ("/quay/%zz".to_owned(), ""),
        ] {
            assert_eq!(ok(&path, base), None, "{path} with base {base:?}");
        }
    }

    #[test]
    fn a_rest_event_routes_on_the_path_api_gateway_received_not_the_stage_prefixed_uri() {
        let event = include_str!("../events/push-rest-v1.json");
        let req = lambda_http::request::from_str(event).expect("a REST event");
        assert!(
            req.uri().path().starts_with("/prod/quay/"),
            "lambda_http adds the stage"
        );
        let head = Head::of(&req);
        assert!(head.path.starts_with("/quay/"), "{}", head.path);
        assert_eq!(head.method, Method::POST);
    }

    #[test]
    fn queued_work_is_202_and_a_failure_that_was_not_queued_is_500() {
        let status = |o: Outcome| respond(&Ok(o)).status().as_u16();
        assert_eq!(status(Outcome::default()), 200);
        let queued = || Outcome {
            queued_push: true,
            ..Outcome::default()
        };
        assert_eq!(status(queued()), 202);
        let mut partly = queued();
        partly.failed.push(WarehouseOut::failed(
            &Selected {
                key: WarehouseKey::new("ns", "w"),
                tag: None,
            },
            "forbidden (403)",
        ));
        assert_eq!(status(partly), 500);
        let misrouted = respond(&Err(Rejection::NotWebhookFunction));
        assert_eq!(misrouted.status().as_u16(), 503);
    }

    #[test]
    fn rejections_map_to_kargo_statuses_and_bodies() {
        let body = |r: Rejection| {
            let resp = respond(&Err(r));
            let Body::Text(t) = resp.body() else {
                panic!("text body")
            };
            (resp.status().as_u16(), t.clone())
        };
        assert_eq!(body(Rejection::NotFound), (404, "{}\n".into()));
        assert_eq!(
            body(Rejection::TooLarge),
            (
                413,
                "{\"error\":\"content exceeds limit of 2097152 bytes\"}\n".into()
            )
        );
        assert_eq!(
            body(Rejection::BadPayload(PayloadError::Empty)),
            (400, "{\"error\":\"invalid request body\"}\n".into())
        );
        let not_an_event =
            crate::lambda::Event::from_value(serde_json::json!({})).expect_err("not an event");
        assert_eq!(
            body(Rejection::InvalidRequest(not_an_event)),
            (400, "{\"error\":\"invalid request\"}\n".into())
        );
        assert_eq!(body(Rejection::MethodNotAllowed).0, 405);
        assert_eq!(
            body(Rejection::Timeout),
            (408, "{\"error\":\"request timeout\"}\n".into())
        );
        assert_eq!(
            body(Rejection::Secrets(SecretsError::Unavailable(Cause::new(
                "x"
            )))),
            (503, "{\"error\":\"receiver secrets unavailable\"}\n".into())
        );
    }
}
