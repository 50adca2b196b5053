//! One Quay delivery, from HTTP request to HTTP response.
//!
//! I/O through [`State`]. [`answer`] runs [`admit`] on the request head alone (route → method →
//! token → declared length), reads the body only then, and runs [`deliver`], a straight line
//! of steps (size → payload → index → plan → patches), each one pure call or one call on
//! [`State`]; [`respond`] is the only place that picks a status and a body. [`handle`] is the
//! Lambda entry, whose body is already in the event. Nothing logs the path, the token, the body
//! or a secret: the one `info` event per request carries the receiver, the repository, the tags
//! and the counts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use tracing::Instrument;

use crate::cause::Chain;
use crate::cluster::{ClusterError, Connector, WarehouseStore};
use crate::retry::Budget;
use crate::secrets::{SecretSource, SecretsError};
use crate::state::{State, StateError};
use kargo_match::index::{Plan, candidate_urls};
use kargo_match::quay::{MAX_BODY_BYTES, PayloadError, Push};
use kargo_match::token::Match;
use kargo_match::warehouse::{WarehouseKey, refresh_patch};

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
    /// Returned when the body is not a Quay push payload.
    #[error("invalid payload")]
    BadPayload(#[source] PayloadError),
    /// Returned when receiver secrets cannot be read and none are cached.
    #[error("receiver secrets unavailable")]
    Secrets(#[source] SecretsError),
    /// Returned when the Warehouses cannot be listed (or the kubeconfig cannot be used).
    #[error("cannot list warehouses")]
    Cluster(#[source] StateError),
}

/// The result of a delivery that reached the refresh step.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// Kargo's message, `refreshed N warehouse(s)` (kept verbatim for compatibility).
    #[serde(skip_serializing_if = "Option::is_none")]
    msg: Option<String>,
    /// Kargo's error on partial failure, `failed to refresh F of N warehouses`.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Set when the payload is Quay's "Test Notification".
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    test_notification: bool,
    /// The receiver that accepted the token (not secret).
    receiver: ReceiverOut,
    /// The normalized repository URLs looked up.
    repositories: Vec<String>,
    /// The tags considered (sorted, deduplicated).
    tags: Vec<String>,
    /// Warehouses refreshed.
    refreshed: Vec<WarehouseOut>,
    /// Warehouses whose refresh failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failed: Vec<WarehouseOut>,
    /// Warehouses that were deleted since the index was built.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    gone: Vec<WarehouseOut>,
    /// Subscribed Warehouses left alone, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    skipped: Vec<WarehouseOut>,
    /// Subscribed Warehouses whose subscription is misconfigured.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    invalid: Vec<WarehouseOut>,
}

#[derive(Debug, Default, Serialize)]
struct ReceiverOut {
    project: String,
    name: String,
    #[serde(rename = "previousSecret", skip_serializing_if = "std::ops::Not::not")]
    previous_secret: bool,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
struct WarehouseOut {
    namespace: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl WarehouseOut {
    fn new(key: &WarehouseKey) -> Self {
        Self {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            tag: None,
            reasons: Vec::new(),
            error: None,
        }
    }
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
    /// The head of a request from the Lambda runtime.
    ///
    /// The path is the one API Gateway sent (`rawPath`, or `path` of a REST event). lambda_http
    /// prefixes a REST event's URI with the stage it reports; routing on the path API Gateway
    /// actually received strips exactly that stage and nothing else.
    pub fn of(req: &Request) -> Head {
        let raw = req.raw_http_path();
        let path = if raw.is_empty() {
            req.uri().path()
        } else {
            raw
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
        match &result {
            Ok(o) => {
                // One event per delivery with the same fields at either level.
                macro_rules! outcome {
                    ($level:expr, $message:literal) => {
                        tracing::event!(
                            $level,
                            status,
                            repository = ?o.repositories,
                            tags = ?o.tags,
                            refreshed = o.refreshed.len(),
                            failed = o.failed.len(),
                            skipped = o.skipped.len(),
                            invalid = o.invalid.len(),
                            gone = o.gone.len(),
                            test = o.test_notification,
                            duration_ms = elapsed,
                            $message
                        )
                    };
                }
                if o.failed.is_empty() {
                    outcome!(tracing::Level::INFO, "push handled");
                } else {
                    outcome!(tracing::Level::WARN, "push partly failed");
                }
            }
            Err(e @ (Rejection::Secrets(_) | Rejection::Cluster(_))) => {
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
    let deadline_ms = req.lambda_context_ref()?.deadline;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    remaining_until(deadline_ms, now_ms)
}

/// Milliseconds from `now_ms` to the invocation deadline (both Unix epoch milliseconds).
///
/// A deadline at or before now is not a real Lambda deadline (the runtime would already have
/// stopped us): emulators such as `cargo lambda watch` send a duration (`600000`) instead of a
/// timestamp. Such a value is ignored, so the configured budget applies, rather than turning
/// every request into an immediate timeout.
fn remaining_until(deadline_ms: u64, now_ms: u64) -> Option<Duration> {
    (deadline_ms > now_ms).then(|| Duration::from_millis(deadline_ms - now_ms))
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

/// The steps after the head: size → payload → index → plan → patches.
///
/// # Errors
/// A [`Rejection`] for everything answered before the patches.
pub async fn deliver<S: SecretSource, C: Connector>(
    state: &State<S, C>,
    admitted: Admitted,
    body: &[u8],
) -> Result<Outcome, Rejection> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Rejection::TooLarge);
    }
    let push = Push::parse(body).map_err(Rejection::BadPayload)?;
    let urls = candidate_urls(&push.docker_url);
    let tags = push.tags();

    let matched = admitted.matched;
    let namespace = (!matched.id.project.is_empty()).then_some(matched.id.project.as_str());
    let budget = Budget::within(state.config.request_timeout, admitted.remaining);
    let index = state
        .index(namespace, &urls, &budget)
        .await
        .map_err(Rejection::Cluster)?;
    let plan = index.plan(namespace, &urls, &tags);
    let mut outcome = refresh(state, namespace, &plan, &budget).await;
    outcome.test_notification = push.is_test_notification();
    outcome.receiver = ReceiverOut {
        project: matched.id.project.clone(),
        name: matched.id.receiver.clone(),
        previous_secret: matched.previous,
    };
    outcome.repositories = urls.iter().map(ToString::to_string).collect();
    outcome.tags = tags;
    Ok(outcome)
}

/// Patches every selected Warehouse concurrently (bounded) and sorts the results.
async fn refresh<S: SecretSource, C: Connector>(
    state: &State<S, C>,
    namespace: Option<&str>,
    plan: &Plan,
    budget: &Budget,
) -> Outcome {
    let patch = refresh_patch(SystemTime::now());
    let patch = &patch;
    // Owned items: a stream closure taking `&Selected` trips the compiler's higher-ranked
    // lifetime check once the future must be `Send` (as `lambda_http::run` requires).
    let keys: Vec<(usize, WarehouseKey)> = plan
        .refresh
        .iter()
        .map(|s| s.key.clone())
        .enumerate()
        .collect();
    let mut results: Vec<(usize, Result<(), StateError>)> = futures::stream::iter(keys)
        .map(|(i, key)| async move {
            let result = state
                .with_store(budget, |store| {
                    let key = key.clone();
                    async move { store.patch(&key, patch).await }
                })
                .await;
            (i, result)
        })
        .buffer_unordered(state.config.patch_concurrency)
        .collect()
        .await;

    let mut outcome = Outcome::default();
    results.sort_by_key(|(i, _)| *i);
    for (i, result) in results {
        let selected = &plan.refresh[i];
        let mut out = WarehouseOut::new(&selected.key);
        out.tag = selected.tag.clone();
        match result {
            Ok(()) => {
                tracing::debug!(warehouse = %selected.key, tag = ?selected.tag, "refreshed");
                outcome.refreshed.push(out);
            }
            Err(StateError::Cluster(ClusterError::NotFound)) => {
                tracing::info!(warehouse = %selected.key, "warehouse gone; dropped from the index");
                state.forget(namespace, &selected.key);
                outcome.gone.push(out);
            }
            Err(e) => {
                tracing::warn!(warehouse = %selected.key, cause = %Chain(&e), "refresh failed");
                out.error = Some(Chain(&e).to_string());
                outcome.failed.push(out);
            }
        }
    }
    for skipped in &plan.skipped {
        tracing::debug!(warehouse = %skipped.key, reasons = ?skipped.reasons.iter().map(ToString::to_string).collect::<Vec<_>>(), "skipped");
        let mut out = WarehouseOut::new(&skipped.key);
        out.reasons = skipped.reasons.iter().map(ToString::to_string).collect();
        outcome.skipped.push(out);
    }
    for invalid in &plan.invalid {
        tracing::warn!(warehouse = %invalid.key, cause = %invalid.error, "subscription misconfigured");
        let mut out = WarehouseOut::new(&invalid.key);
        out.error = Some(invalid.error.to_string());
        outcome.invalid.push(out);
    }
    let attempted = outcome.refreshed.len() + outcome.failed.len();
    if outcome.failed.is_empty() {
        outcome.msg = Some(format!(
            "refreshed {} warehouse(s)",
            outcome.refreshed.len()
        ));
    } else {
        outcome.error = Some(format!(
            "failed to refresh {} of {attempted} warehouses",
            outcome.failed.len()
        ));
    }
    outcome
}

/// The one mapping from a result to a status and a JSON body (Kargo's shapes, plus detail).
pub fn respond(result: &Result<Outcome, Rejection>) -> Response<Body> {
    let (status, body) = match result {
        Ok(o) if o.failed.is_empty() => (StatusCode::OK, serde_json::to_value(o)),
        Ok(o) => (StatusCode::INTERNAL_SERVER_ERROR, serde_json::to_value(o)),
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
                Rejection::BadPayload(_) => {
                    (StatusCode::BAD_REQUEST, Some("invalid request body".into()))
                }
                Rejection::Secrets(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some("receiver secrets unavailable".into()),
                ),
                Rejection::Cluster(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, Some(Chain(r).to_string()))
                }
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
    fn a_deadline_in_the_past_is_ignored_not_a_zero_budget() {
        let now = 1_795_788_336_000;
        assert_eq!(
            remaining_until(now + 3_000, now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            remaining_until(600_000, now),
            None,
            "cargo lambda watch sends a duration"
        );
        assert_eq!(remaining_until(now, now), None);
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
        assert_eq!(body(Rejection::MethodNotAllowed).0, 405);
        assert_eq!(
            body(Rejection::Secrets(SecretsError::Unavailable(Cause::new(
                "x"
            )))),
            (503, "{\"error\":\"receiver secrets unavailable\"}\n".into())
        );
    }
}
