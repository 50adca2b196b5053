//! One Quay delivery, from HTTP request to HTTP response.
//!
//! [`handle`] runs [`process`], a straight line of steps (route → token → size → payload →
//! index → plan → patches), each one pure call or one call on [`State`]; [`respond`] is the
//! only place that picks a status and a body. Nothing logs the path, the token, the body or a
//! secret: the one `info` event per request carries the receiver, the repository, the tags and
//! the counts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use tracing::Instrument;

use crate::cause::Chain;
use crate::cluster::{ClusterError, Connector, WarehouseStore};
use kargo_match::index::{Plan, candidate_urls};
use kargo_match::quay::{MAX_BODY_BYTES, PayloadError, Push};
use crate::retry::Budget;
use crate::secrets::{SecretSource, SecretsError};
use crate::state::{State, StateError};
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

/// Extracts the token from `{anything}{base}/quay/{token}`: the last segment, after Go-style
/// percent-decoding of the path (Kargo compares the decoded path). A stage prefix (`/prod`)
/// before the base path is allowed; a trailing `/` is not, as in Kargo.
pub fn token_from_path(path: &str, base_path: &str) -> Option<String> {
    let decoded = percent_decode(path)?;
    let (prefix, token) = decoded.rsplit_once("/quay/")?;
    // `base_path` is cleaned (`/a/b` or empty), so `ends_with` also checks the segment boundary.
    if token.is_empty() || token.contains('/') || !prefix.ends_with(base_path) {
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

/// Answers one delivery. Never fails: every problem becomes a status code and a JSON body.
pub async fn handle<S: SecretSource, C: Connector>(
    state: &State<S, C>,
    req: Request,
) -> Response<Body> {
    let span = tracing::info_span!(
        "delivery",
        project = tracing::field::Empty,
        receiver = tracing::field::Empty
    );
    async {
        let started = std::time::Instant::now();
        let result = process(state, &req).await;
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

/// The steps of one delivery.
///
/// # Errors
/// A [`Rejection`] for everything answered before the patches.
pub async fn process<S: SecretSource, C: Connector>(
    state: &State<S, C>,
    req: &Request,
) -> Result<Outcome, Rejection> {
    if req.method() != Method::POST {
        return Err(Rejection::MethodNotAllowed);
    }
    let token =
        token_from_path(req.uri().path(), &state.config.base_path).ok_or(Rejection::NotFound)?;
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

    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body: &[u8] = req.body().as_ref();
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) || body.len() > MAX_BODY_BYTES {
        return Err(Rejection::TooLarge);
    }
    let push = Push::parse(body).map_err(Rejection::BadPayload)?;
    let urls = candidate_urls(&push.docker_url);
    let tags = push.tags();

    let namespace = (!matched.id.project.is_empty()).then_some(matched.id.project.as_str());
    let budget = Budget::within(state.config.request_timeout, lambda_remaining(req));
    let index = state
        .index(namespace, &urls, &budget)
        .await
        .map_err(Rejection::Cluster)?;
    let plan = index.plan(namespace, &urls, &tags);
    let mut outcome = refresh(state, namespace, &plan, &budget).await;
    outcome.test_notification = push.is_test_notification();
    outcome.receiver = ReceiverOut {
        project: matched.id.project,
        name: matched.id.receiver,
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
                Rejection::Cluster(_) => (StatusCode::SERVICE_UNAVAILABLE, Some(Chain(r).to_string())),
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
    fn token_is_the_last_segment_after_base_and_quay() {
        let t = "3e6315f59f25bc201ec77ebb7818c057c4406a4b58d930f27d651b6af36395a9";
        let ok = |path: &str, base: &str| token_from_path(path, base);
        assert_eq!(ok(&format!("/quay/{t}"), ""), Some(t.to_owned()));
        assert_eq!(
            ok(&format!("/prod/quay/{t}"), ""),
            Some(t.to_owned()),
            "stage prefix"
        );
        assert_eq!(
            ok(&format!("/webhooks/quay/{t}"), "/webhooks"),
            Some(t.to_owned())
        );
        assert_eq!(
            ok(&format!("/prod/webhooks/quay/{t}"), "/webhooks"),
            Some(t.to_owned())
        );
        assert_eq!(
            ok(&format!("/quay/{t}"), "/webhooks"),
            None,
            "base path required"
        );
        assert_eq!(ok(&format!("/xwebhooks/quay/{t}"), "/webhooks"), None);
        assert_eq!(
            ok(&format!("/quay/{t}/"), ""),
            None,
            "trailing slash does not match, as in Kargo"
        );
        assert_eq!(ok("/quay/", ""), None);
        assert_eq!(ok("/github/abc", ""), None);
        assert_eq!(
            ok("/quay/%61bc", ""),
            Some("abc".into()),
            "percent-decoded like Go"
        );
        assert_eq!(ok("/quay/%zz", ""), None);
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
            body(Rejection::Secrets(SecretsError::Unavailable(Cause::new("x")))),
            (503, "{\"error\":\"receiver secrets unavailable\"}\n".into())
        );
    }
}
