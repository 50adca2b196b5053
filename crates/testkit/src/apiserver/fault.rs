//! Faults the tests inject into the local API server: which requests they match (method,
//! path fragment, how many times) and what they do (a status, a throttle, a dropped or hung
//! connection, latency). No I/O here: the request handler applies them.

use hyper::Method;
use std::time::Duration;

/// What an injected fault does to a matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultEffect {
    /// Adds this delay, then answers normally (latencies of several faults add up).
    Latency(Duration),
    /// Answers with a `Status` failure of this code (429 `TooManyRequests`, 500
    /// `InternalError`, 503 `ServiceUnavailable`, …), with a `Retry-After` header and
    /// `details.retryAfterSeconds` when `retry_after` is set.
    Status {
        /// The HTTP status code.
        code: u16,
        /// Seconds to ask the client to wait, if any.
        retry_after: Option<u64>,
    },
    /// Closes the connection without answering over HTTP/1.1. Over HTTP/2 the stream is reset
    /// (`INTERNAL_ERROR`, as hyper does when a service fails) and the connection and its other
    /// streams stay; [`ApiServer::drop_connections`] cuts whole connections.
    Drop,
    /// Never answers (until the client gives up or the server is dropped).
    Hang,
}

/// A fault to inject: which requests it matches, what it does, and how many times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Matches only this method; `None` matches any.
    pub method: Option<Method>,
    /// Matches only when the path-and-query contains this; `None` matches any.
    pub path_contains: Option<String>,
    /// What happens to a matching request.
    pub effect: FaultEffect,
    /// How many requests it applies to; `None` until [`ApiServer::clear_faults`].
    pub times: Option<u32>,
}

impl Fault {
    /// A fault with this effect on every request, until cleared.
    pub fn new(effect: FaultEffect) -> Fault {
        Fault {
            method: None,
            path_contains: None,
            effect,
            times: None,
        }
    }

    /// Answers with a `Status` failure of `code`.
    pub fn status(code: u16) -> Fault {
        Fault::new(FaultEffect::Status {
            code,
            retry_after: None,
        })
    }

    /// Answers 429 `TooManyRequests` with `Retry-After: retry_after_secs`.
    pub fn throttle(retry_after_secs: u64) -> Fault {
        Fault::new(FaultEffect::Status {
            code: 429,
            retry_after: Some(retry_after_secs),
        })
    }

    /// Closes the connection without an answer.
    pub fn drop() -> Fault {
        Fault::new(FaultEffect::Drop)
    }

    /// Never answers.
    pub fn hang() -> Fault {
        Fault::new(FaultEffect::Hang)
    }

    /// Delays the answer by `d`.
    pub fn latency(d: Duration) -> Fault {
        Fault::new(FaultEffect::Latency(d))
    }

    /// Restricts the fault to one HTTP method (`"PATCH"`).
    ///
    /// # Panics
    /// When `method` is not a valid HTTP method (a test bug).
    pub fn on_method(mut self, method: &str) -> Fault {
        let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .unwrap_or_else(|_| panic!("Fault::on_method: invalid HTTP method {method:?}"));
        self.method = Some(m);
        self
    }

    /// Restricts the fault to requests whose path-and-query contains `fragment`.
    pub fn on_path(mut self, fragment: &str) -> Fault {
        self.path_contains = Some(fragment.to_string());
        self
    }

    /// Both restrictions at once.
    pub fn on(self, method: &str, path_fragment: &str) -> Fault {
        self.on_method(method).on_path(path_fragment)
    }

    /// Applies to the next `n` matching requests only.
    pub fn times(mut self, n: u32) -> Fault {
        self.times = Some(n);
        self
    }

    pub(super) fn matches(&self, method: &Method, target: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| target.contains(p))
    }
}
