//! The Lambda edge: an invocation payload in, an API Gateway response out.
//!
//! Owns reading API Gateway's proxy events — HTTP API payload 2.0 (a Function URL sends the
//! same shape) and REST API payload 1.0 — into a [`Head`] and the body bytes, and writing the
//! handler's [`Response`] back in the shape the event expects. [`invoke`] is the one function
//! with I/O (it runs [`handler::answer`], which reaches the adapters through [`State`]);
//! everything else is pure conversion.
//!
//! Why not lambda_http's adapter (issue 9): lambda_http 1.3.2 builds a URL from the `Host`
//! header, `X-Forwarded-Proto` and the path, and decodes a base64 body, with `unwrap`/`expect`.
//! An event whose `Host` the URL parser rejects, whose `rawPath` lacks its leading `/`, or whose
//! `isBase64Encoded` body is not base64 panics before quayhook runs, and API Gateway answers
//! 502. Here the payload is read as JSON first (which cannot panic), then as the event its
//! fields say it is. Nothing is built from `Host` or `X-Forwarded-Proto`; `Host` is only
//! checked for syntax, since HTTP answers an invalid one with 400 (RFC 9112 §3.2). Every
//! problem is an [`EventError`], answered 400 `{"error":"invalid request"}`.
//!
//! Events of other services (SQS, EventBridge) would be further [`Event`] variants, told apart
//! in [`Event::from_value`] and answered by their own arm of [`invoke`]'s `match`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lambda_http::aws_lambda_events::apigw::{
    ApiGatewayProxyRequest, ApiGatewayProxyResponse, ApiGatewayV2httpRequest,
    ApiGatewayV2httpResponse,
};
use lambda_http::http::Method;
use lambda_http::http::header::CONTENT_LENGTH;
use lambda_http::lambda_runtime::LambdaEvent;
use lambda_http::{Body, Response};
use serde::Serialize;
use serde_json::Value;

use crate::cause::Chain;
use crate::cluster::Connector;
use crate::handler::{self, Head, Rejection, declared_length};
use crate::secrets::SecretSource;
use crate::state::State;

mod host;

/// The response shape an event expects, by the payload version of the API that sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `ApiGatewayV2httpResponse`: HTTP API payload 2.0 and Function URLs.
    HttpV2,
    /// `ApiGatewayProxyResponse`: REST APIs, and HTTP API payload 1.0.
    RestV1,
}

impl Shape {
    /// The shape a payload claims by its `version` field alone: `"2.0"` is [`Shape::HttpV2`],
    /// anything else (REST events have no `version`) [`Shape::RestV1`].
    ///
    /// Decides the reply to a payload that cannot be read as an event at all.
    pub fn claimed_by(payload: &Value) -> Shape {
        if payload.get("version").and_then(Value::as_str) == Some("2.0") {
            Shape::HttpV2
        } else {
            Shape::RestV1
        }
    }
}

/// An invocation payload read as one of the events this function serves.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// An HTTP API payload 2.0 request, or a Function URL request.
    HttpV2(Box<ApiGatewayV2httpRequest>),
    /// A REST API request, or an HTTP API payload 1.0 request.
    RestV1(Box<ApiGatewayProxyRequest>),
}

/// Why an invocation payload is not a request quayhook can answer; answered 400.
///
/// Carries no event content: serde's and base64's messages quote the offending input, so
/// neither is kept as a source.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct EventError {
    shape: Shape,
    kind: ErrorKind,
}

impl EventError {
    fn new(shape: Shape, kind: ErrorKind) -> Self {
        Self { shape, kind }
    }

    /// The response shape the payload expects (see [`Shape::claimed_by`]).
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// What is wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }
}

/// What is wrong with an event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Occurs when the payload is neither an HTTP API payload 2.0 event (`version` `"2.0"`,
    /// `rawPath`, `requestContext.http.method`) nor a REST payload 1.0 event (`httpMethod`,
    /// `path`, `requestContext.stage`).
    #[error("not an API Gateway proxy event")]
    Unrecognized,
    /// Occurs when the method is not an HTTP method token (an empty one included). Answered
    /// 400, not 405: there is no [`Method`] to route on, and API Gateway never sends one.
    #[error("method is not an HTTP method")]
    Method,
    /// Occurs when the event has its kind's marks but another field does not read as that
    /// event's type (a header name or value HTTP does not allow, a wrongly typed field).
    #[error("malformed event")]
    Malformed,
    /// Occurs when a `Host` header is not `uri-host [":" port]` (RFC 9110 §7.2).
    #[error("invalid host header")]
    Host,
    /// Occurs when `isBase64Encoded` is true and the body is not standard base64.
    #[error("body is not valid base64")]
    Base64,
}

/// One delivery read from an event: what [`handler::answer`] needs.
#[derive(Debug)]
pub struct Delivery {
    /// The request head: method, routing path, declared length, time left.
    pub head: Head,
    /// The body, base64-decoded when the event says it is encoded.
    pub body: Vec<u8>,
}

impl Event {
    /// Reads an invocation payload as the event its fields say it is.
    ///
    /// HTTP API payload 2.0 when `version` is `"2.0"` (then it must have a `rawPath` and a
    /// `requestContext.http.method`); otherwise REST payload 1.0, which must have `httpMethod`,
    /// `path` and `requestContext.stage`. The method must parse with [`Method::from_bytes`].
    ///
    /// # Errors
    /// An [`EventError`] ([`ErrorKind::Unrecognized`], [`ErrorKind::Method`] or
    /// [`ErrorKind::Malformed`]) in the shape the payload claims.
    pub fn from_value(payload: Value) -> Result<Event, EventError> {
        let shape = Shape::claimed_by(&payload);
        let text = |pointer: &str| payload.pointer(pointer).and_then(Value::as_str);
        let method = match shape {
            Shape::HttpV2 => text("/rawPath").and(text("/requestContext/http/method")),
            Shape::RestV1 => text("/path")
                .and(text("/requestContext/stage"))
                .and(text("/httpMethod")),
        };
        let error = |kind| EventError::new(shape, kind);
        let method = method.ok_or_else(|| error(ErrorKind::Unrecognized))?;
        Method::from_bytes(method.as_bytes()).map_err(|_| error(ErrorKind::Method))?;
        let event = match shape {
            Shape::HttpV2 => serde_json::from_value(payload).map(|e| Event::HttpV2(Box::new(e))),
            Shape::RestV1 => serde_json::from_value(payload).map(|e| Event::RestV1(Box::new(e))),
        };
        event.map_err(|_| error(ErrorKind::Malformed))
    }

    /// The response shape this event expects.
    pub fn shape(&self) -> Shape {
        match self {
            Event::HttpV2(_) => Shape::HttpV2,
            Event::RestV1(_) => Shape::RestV1,
        }
    }

    /// The delivery this event carries, with `remaining` time left in the invocation.
    ///
    /// The path is the one routing needs, `{base}/quay/{token}` as API Gateway received it:
    /// `rawPath` of an HTTP API event (as sent: one without its leading `/` can never match,
    /// so it is a 404), [`rest_path`] of a REST event. Only `Content-Length` is read from the
    /// headers (names are case-insensitive), and `Host` is checked.
    ///
    /// # Errors
    /// [`ErrorKind::Host`] for an invalid `Host`, [`ErrorKind::Base64`] for a body marked
    /// base64 that is not.
    pub fn into_delivery(self, remaining: Option<Duration>) -> Result<Delivery, EventError> {
        let shape = self.shape();
        let error = |kind| EventError::new(shape, kind);
        let (head, body, encoded) = match self {
            Event::HttpV2(event) => {
                let event = *event;
                host::check(&event.headers).map_err(error)?;
                let head = Head {
                    method: event.request_context.http.method,
                    path: event.raw_path.unwrap_or_default(),
                    content_length: declared_length(&event.headers),
                    remaining,
                };
                (head, event.body, event.is_base64_encoded)
            }
            Event::RestV1(event) => {
                let event = *event;
                host::check(&event.headers).map_err(error)?;
                host::check(&event.multi_value_headers).map_err(error)?;
                // As lambda_http merges them: a single-valued header replaces the multi-valued one.
                let headers = if event.headers.contains_key(CONTENT_LENGTH) {
                    &event.headers
                } else {
                    &event.multi_value_headers
                };
                let context = &event.request_context;
                let path = event.path.as_deref().unwrap_or_default();
                let head = Head {
                    method: event.http_method.clone(),
                    path: rest_path(path, context.stage.as_deref(), context.path.as_deref())
                        .to_owned(),
                    content_length: declared_length(headers),
                    remaining,
                };
                (head, event.body, event.is_base64_encoded)
            }
        };
        let body = match body {
            None => Vec::new(),
            Some(text) if encoded => STANDARD
                .decode(text)
                .map_err(|_| error(ErrorKind::Base64))?,
            Some(text) => text.into_bytes(),
        };
        Ok(Delivery { head, body })
    }
}

/// The path a REST (payload 1.0) event routes on: its `path`, less the stage only when the
/// stage is really in it.
///
/// API Gateway sends `path` without the stage: the URL's stage segment shows up only in
/// `requestContext.path` (`/prod/quay/T` for a `path` of `/quay/T`). lambda_http
/// (`apigw_path_with_stage`) puts the stage in front of `path` unless `path` already starts
/// with `/{stage}/`, so its URI is `/prod/quay/T`, which `{base}/quay/{token}` routing must not
/// see. Here `path` is taken as sent, except that a `path` starting with `/{stage}/` loses that
/// prefix when `requestContext.path` is the very same string: then the one stage segment the
/// client sent is the one in `path` (emulators copy the full path into both fields). When
/// `requestContext.path` is `/{stage}{path}` instead, a first segment named like the stage is
/// part of the resource and stays. No stage, `$default`, or no `requestContext.path`: `path`
/// as sent.
pub fn rest_path<'a>(path: &'a str, stage: Option<&str>, context_path: Option<&str>) -> &'a str {
    let Some(stage) = stage.filter(|s| !s.is_empty() && *s != "$default") else {
        return path;
    };
    if context_path != Some(path) {
        return path;
    }
    path.strip_prefix('/')
        .and_then(|p| p.strip_prefix(stage))
        .filter(|rest| rest.starts_with('/'))
        .unwrap_or(path)
}

/// Time left before the invocation's deadline, or `None` when the deadline is not in the future.
///
/// `deadline_ms` is Unix epoch milliseconds (the runtime API's `Lambda-Runtime-Deadline-Ms`,
/// `Context::deadline`). A deadline at or before `now` is not a real Lambda deadline (the
/// runtime would already have stopped us): emulators such as `cargo lambda watch` send a
/// duration (`600000`) instead of a timestamp. Such a value is ignored, so the configured
/// budget applies, rather than turning every request into an immediate timeout.
pub fn remaining(deadline_ms: u64, now: SystemTime) -> Option<Duration> {
    let now_ms = u64::try_from(now.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()?;
    (deadline_ms > now_ms).then(|| Duration::from_millis(deadline_ms - now_ms))
}

/// The answer to an API Gateway event, in the shape it expects; serializes as the bare
/// API Gateway response (`statusCode`, `headers`, `body`, `isBase64Encoded`, …).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Reply {
    /// For an HTTP API payload 2.0 or Function URL event.
    HttpV2(ApiGatewayV2httpResponse),
    /// For a REST API or payload 1.0 event.
    RestV1(ApiGatewayProxyResponse),
}

impl Reply {
    /// Writes the handler's response in `shape`: its status, its headers (`content-type`,
    /// `allow` on a 405) and its body, text as is with `isBase64Encoded: false` (the handler
    /// answers nothing else; a binary body would be base64 with `isBase64Encoded: true`).
    ///
    /// REST responses carry the headers in `headers` only: API Gateway merges `headers` and
    /// `multiValueHeaders`, so filling both would repeat each header.
    pub fn new(shape: Shape, response: Response<Body>) -> Reply {
        let (parts, body) = response.into_parts();
        let status_code = i64::from(parts.status.as_u16());
        let (body, is_base64_encoded) = match body {
            Body::Text(text) => (Some(Body::Text(text)), false),
            Body::Binary(bytes) => (Some(Body::Text(STANDARD.encode(bytes))), true),
            _ => (None, false),
        };
        match shape {
            Shape::HttpV2 => {
                let mut reply = ApiGatewayV2httpResponse::default();
                reply.status_code = status_code;
                reply.headers = parts.headers;
                reply.body = body;
                reply.is_base64_encoded = is_base64_encoded;
                Reply::HttpV2(reply)
            }
            Shape::RestV1 => {
                let mut reply = ApiGatewayProxyResponse::default();
                reply.status_code = status_code;
                reply.headers = parts.headers;
                reply.body = body;
                reply.is_base64_encoded = is_base64_encoded;
                Reply::RestV1(reply)
            }
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> i64 {
        match self {
            Reply::HttpV2(r) => r.status_code,
            Reply::RestV1(r) => r.status_code,
        }
    }

    /// The body text (every handler answer has one).
    pub fn body(&self) -> Option<&str> {
        let body = match self {
            Reply::HttpV2(r) => r.body.as_ref(),
            Reply::RestV1(r) => r.body.as_ref(),
        };
        match body {
            Some(Body::Text(text)) => Some(text),
            _ => None,
        }
    }
}

/// Answers one Lambda invocation: reads the event, runs [`handler::answer`] on its delivery,
/// and writes the handler's response in the event's shape.
///
/// Never fails and never panics on input: a payload that is not a readable API Gateway event
/// is answered 400 through [`handler::respond`] ([`Rejection::InvalidRequest`]) and logged as
/// a warning naming only what is wrong. The time left comes from the invocation's deadline
/// (see [`remaining`]).
pub async fn invoke<S: SecretSource, C: Connector>(
    state: &State<S, C>,
    event: LambdaEvent<Value>,
) -> Reply {
    let remaining = remaining(event.context.deadline, SystemTime::now());
    let event = match Event::from_value(event.payload) {
        Ok(event) => event,
        Err(error) => return reject(error),
    };
    match event {
        // Every kind served today is an HTTP request; an SQS or EventBridge kind gets its own
        // arm (and its own reply).
        http @ (Event::HttpV2(_) | Event::RestV1(_)) => {
            let shape = http.shape();
            let Delivery { head, body } = match http.into_delivery(remaining) {
                Ok(delivery) => delivery,
                Err(error) => return reject(error),
            };
            let read_body = move || async move { Ok::<_, Rejection>(body) };
            Reply::new(shape, handler::answer(state, &head, read_body).await)
        }
    }
}

/// The 400 for an event that cannot be read, logged without any of its content.
fn reject(error: EventError) -> Reply {
    let shape = error.shape();
    let rejection = Rejection::InvalidRequest(error);
    let cause = Chain(&rejection).to_string();
    let response = handler::respond(&Err(rejection));
    tracing::warn!(
        status = response.status().as_u16(),
        shape = ?shape,
        %cause,
        "event rejected"
    );
    Reply::new(shape, response)
}

#[cfg(test)]
mod tests;
