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
//! # Two functions, one binary
//! The same binary serves the webhook (`_HANDLER=http`) and the durable path's queue worker
//! (`_HANDLER=worker`, [`crate::worker`]); [`Event::from_value`] tells an SQS event
//! (`Records[]`, each with `eventSource` `aws:sqs`) and an EventBridge "ECR Image Action"
//! event (`source` `aws.ecr`, `detail-type` `ECR Image Action`, [`crate::ecr`]) from API
//! Gateway's, and [`invoke`] answers each kind by the function's handler:
//!
//! | event \ handler | `http` | `worker` |
//! |---|---|---|
//! | API Gateway | the delivery's answer | 503 `{"error":"this function is the queue worker, not the webhook"}` |
//! | SQS | a batch response failing every record | the worker's batch response |
//! | ECR (EventBridge) | the event's [`crate::ecr::Answer`] | the same (logged as a warning) |
//!
//! A mismatch means the function's event sources are miswired; it is logged as an error.
//! An ECR event is handled by either function: both have what it needs, and with the durable
//! path on, the template routes the rule to the queue rather than to any function.
//! An SQS batch reaching the webhook function is failed whole, not handled and not deleted:
//! its messages go back to the queue and, after `maxReceiveCount`, to the dead-letter queue,
//! from where they can be redriven once the wiring is fixed. (That takes
//! `ReportBatchItemFailures` on the mapping, as the worker's needs anyway; without it Lambda
//! deletes a batch whatever the answer says.)
//!
//! # Function errors
//! [`invoke`] never fails. The one answer meant to fail the invocation is an ECR event's
//! `retry` (a transient failure with no queue to take it): [`Reply::into_result`] turns it
//! into a [`FunctionError`], so that Lambda's asynchronous invocation retries the event.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lambda_http::aws_lambda_events::apigw::{
    ApiGatewayProxyRequest, ApiGatewayProxyResponse, ApiGatewayV2httpRequest,
    ApiGatewayV2httpResponse,
};
use lambda_http::aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_http::http::Method;
use lambda_http::http::header::CONTENT_LENGTH;
use lambda_http::lambda_runtime::LambdaEvent;
use lambda_http::{Body, Response};
use serde::Serialize;
use serde_json::Value;

use crate::cause::Chain;
use crate::cluster::Connector;
use crate::config::LambdaHandler;
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
    /// A batch of SQS messages, for the queue worker.
    Sqs(Box<SqsEvent>),
    /// An EventBridge "ECR Image Action" event, as sent (read by [`crate::ecr::invoke`]).
    Ecr(Box<Value>),
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
    /// Occurs when an SQS or EventBridge event is read as an HTTP request.
    #[error("not an HTTP request")]
    NotHttp,
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
    /// An SQS event when `Records` is a non-empty array whose every element has
    /// `eventSource` `aws:sqs`; a record that does not read as an SQS message keeps only its
    /// `messageId` and `receiptHandle` (the worker then fails it, and that record only).
    /// An ECR event when [`crate::ecr::is_image_action`] (its fields are read later, so a
    /// malformed one is answered in the ECR shape).
    /// Otherwise HTTP API payload 2.0 when `version` is `"2.0"` (then it must have a `rawPath` and a
    /// `requestContext.http.method`); otherwise REST payload 1.0, which must have `httpMethod`,
    /// `path` and `requestContext.stage`. The method must parse with [`Method::from_bytes`].
    ///
    /// # Errors
    /// An [`EventError`] ([`ErrorKind::Unrecognized`], [`ErrorKind::Method`] or
    /// [`ErrorKind::Malformed`]) in the shape the payload claims.
    pub fn from_value(mut payload: Value) -> Result<Event, EventError> {
        if let Some(records) = sqs_records(&mut payload) {
            return Ok(Event::Sqs(Box::new(sqs_event(records))));
        }
        if crate::ecr::is_image_action(&payload) {
            return Ok(Event::Ecr(Box::new(payload)));
        }
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

    /// The HTTP response shape this event expects; `None` for an SQS event, which is
    /// answered with a batch response, and for an ECR event, answered with its JSON result.
    pub fn shape(&self) -> Option<Shape> {
        match self {
            Event::HttpV2(_) => Some(Shape::HttpV2),
            Event::RestV1(_) => Some(Shape::RestV1),
            Event::Sqs(_) | Event::Ecr(_) => None,
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
    /// base64 that is not, [`ErrorKind::NotHttp`] for an SQS or ECR event.
    pub fn into_delivery(self, remaining: Option<Duration>) -> Result<Delivery, EventError> {
        let shape = self.shape().unwrap_or(Shape::RestV1);
        let error = |kind| EventError::new(shape, kind);
        let (head, body, encoded) = match self {
            Event::Sqs(_) | Event::Ecr(_) => return Err(error(ErrorKind::NotHttp)),
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

/// The `Records` of an SQS event, taken out of the payload; `None` (payload untouched) for
/// anything else.
fn sqs_records(payload: &mut Value) -> Option<Vec<Value>> {
    let records = payload.get("Records")?.as_array()?;
    let sqs = !records.is_empty()
        && records
            .iter()
            .all(|r| r.get("eventSource").and_then(Value::as_str) == Some("aws:sqs"));
    match payload.get_mut("Records").map(Value::take) {
        Some(Value::Array(records)) if sqs => Some(records),
        Some(taken) => {
            payload["Records"] = taken;
            None
        }
        None => None,
    }
}

/// The SQS event of `records`, each read on its own (see [`Event::from_value`]).
fn sqs_event(records: Vec<Value>) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = records
        .into_iter()
        .map(|raw| {
            let text = |field: &str| raw.get(field).and_then(Value::as_str).map(str::to_owned);
            let (message_id, receipt_handle) = (text("messageId"), text("receiptHandle"));
            serde_json::from_value(raw).unwrap_or_else(|_| {
                let mut unreadable = SqsMessage::default();
                unreadable.message_id = message_id;
                unreadable.receipt_handle = receipt_handle;
                unreadable
            })
        })
        .collect();
    event
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

/// The answer to an invocation, in the shape its event expects; serializes as the bare
/// API Gateway response (`statusCode`, `headers`, `body`, `isBase64Encoded`, …), the bare
/// SQS batch response (`batchItemFailures`) or an ECR event's answer (`result`, …).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Reply {
    /// For an HTTP API payload 2.0 or Function URL event.
    HttpV2(ApiGatewayV2httpResponse),
    /// For a REST API or payload 1.0 event.
    RestV1(ApiGatewayProxyResponse),
    /// For an SQS event: the records that failed.
    Batch(SqsBatchResponse),
    /// For an ECR event from EventBridge.
    Ecr(crate::ecr::Answer),
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

    /// The HTTP status; `None` for a batch response or an ECR answer.
    pub fn status(&self) -> Option<i64> {
        match self {
            Reply::HttpV2(r) => Some(r.status_code),
            Reply::RestV1(r) => Some(r.status_code),
            Reply::Batch(_) | Reply::Ecr(_) => None,
        }
    }

    /// The body text (every handler answer has one; a batch response or ECR answer has none).
    pub fn body(&self) -> Option<&str> {
        let body = match self {
            Reply::HttpV2(r) => r.body.as_ref(),
            Reply::RestV1(r) => r.body.as_ref(),
            Reply::Batch(_) | Reply::Ecr(_) => None,
        };
        match body {
            Some(Body::Text(text)) => Some(text),
            _ => None,
        }
    }

    /// The batch response, for an SQS event.
    pub fn batch(&self) -> Option<&SqsBatchResponse> {
        match self {
            Reply::Batch(r) => Some(r),
            _ => None,
        }
    }

    /// The answer, for an ECR event.
    pub fn ecr(&self) -> Option<&crate::ecr::Answer> {
        match self {
            Reply::Ecr(r) => Some(r),
            _ => None,
        }
    }

    /// What the Lambda runtime sends back: the reply, or a [`FunctionError`] for an ECR
    /// answer `retry` (a transient failure nothing queued), so that Lambda's asynchronous
    /// invocation retries the event and finally hands it to the function's on-failure
    /// destination. Every other reply is a success, whatever its status.
    ///
    /// # Errors
    /// [`FunctionError`] with the answer's reason, as above.
    pub fn into_result(self) -> Result<Reply, FunctionError> {
        match self {
            Reply::Ecr(answer) if answer.is_retry() => Err(FunctionError {
                cause: answer.reason.unwrap_or_default(),
            }),
            reply => Ok(reply),
        }
    }
}

/// A failed invocation, reported to Lambda as a function error so that the event is tried
/// again: an ECR event that failed for a reason that may pass (see [`Reply::into_result`]).
/// The message is one line naming the cause, never event content or a secret.
#[derive(Debug, thiserror::Error)]
#[error("ECR event not handled, retry later: {cause}")]
pub struct FunctionError {
    cause: String,
}

impl From<FunctionError> for lambda_http::lambda_runtime::Diagnostic {
    fn from(error: FunctionError) -> Self {
        lambda_http::lambda_runtime::Diagnostic {
            error_type: "Quayhook.RetryLater".into(),
            error_message: error.to_string(),
        }
    }
}

/// Answers one Lambda invocation: reads the event and answers it by the function's handler
/// (`config.lambda_handler`; see "Two functions, one binary" above). An API Gateway event
/// goes through [`handler::answer`], its response written in the event's shape; an SQS event
/// through [`crate::worker::run`]; an ECR event through [`crate::ecr::invoke`]. The runtime
/// sends back [`Reply::into_result`] of the reply.
///
/// Never fails and never panics on input: a payload that is not a readable event is answered
/// 400 through [`handler::respond`] ([`Rejection::InvalidRequest`]) and logged as a warning
/// naming only what is wrong. The time left comes from the invocation's deadline (see
/// [`remaining`]).
pub async fn invoke<S: SecretSource, C: Connector>(
    state: &State<S, C>,
    event: LambdaEvent<Value>,
) -> Reply {
    let remaining = remaining(event.context.deadline, SystemTime::now());
    let event = match Event::from_value(event.payload) {
        Ok(event) => event,
        Err(error) => return reject(error),
    };
    match (event, state.config.lambda_handler) {
        (Event::Ecr(payload), handler) => {
            if handler == LambdaHandler::Worker {
                tracing::warn!(
                    "an ECR event reached the queue worker (_HANDLER=worker) directly; handled, but the rule should target the queue or the webhook function"
                );
            }
            Reply::Ecr(crate::ecr::invoke(state, *payload, remaining).await)
        }
        (Event::Sqs(batch), LambdaHandler::Worker) => {
            Reply::Batch(crate::worker::run(state, *batch, remaining).await)
        }
        (Event::Sqs(batch), LambdaHandler::Http) => {
            let mut reply = SqsBatchResponse::default();
            for record in batch.records {
                reply.add_failure(record.message_id.unwrap_or_default());
            }
            tracing::error!(
                records = reply.batch_item_failures.len(),
                "an SQS batch reached the webhook function (_HANDLER=http): every record failed, none deleted; point the event source mapping at the worker"
            );
            Reply::Batch(reply)
        }
        (http, LambdaHandler::Worker) => {
            let shape = http.shape().unwrap_or(Shape::RestV1);
            let response = handler::respond(&Err(Rejection::NotWebhookFunction));
            tracing::error!(
                status = response.status().as_u16(),
                "an API Gateway event reached the queue worker (_HANDLER=worker); route the API to the webhook function"
            );
            Reply::new(shape, response)
        }
        (http, LambdaHandler::Http) => {
            let shape = http.shape().unwrap_or(Shape::RestV1);
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
