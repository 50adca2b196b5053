//! `quayhook serve`: the Lambda handler behind a plain HTTP/1.1 server, for running outside
//! AWS (a VM, a container, a laptop) with the same configuration and the same answers.
//!
//! I/O. On a public address the server itself is the attack surface API Gateway is on Lambda,
//! so every stage of a connection is bounded, as Go's `http.Server` bounds Kargo's receiver
//! (limits from [`ServeConfig`], `QUAYHOOK_SERVE_*`):
//!
//! - **Connections** (`max_connections`, 512): a slot is taken *before* `accept`, so clients
//!   over the cap wait in the kernel's backlog, holding no descriptor of ours, and the cap is
//!   reached before the descriptor limit. Keep it under `ulimit -n` minus a few dozen.
//! - **Accept errors** (out of descriptors, out of memory, an aborted handshake) never end
//!   the server: each is logged (warn, no client data) and `accept` is retried after Go's
//!   back-off, 5 ms doubling to 1 s, reset by the next success.
//! - **Request head** (`header_timeout`, 10 s): the request line and headers must arrive
//!   within this, counted from accept for a connection's first request (as Go does) and from
//!   the first byte for later ones. A late head is not answered: the connection is closed.
//! - **Whole request** (`read_timeout`, 30 s): from the same start to the last body byte.
//!   Late (a slow body, or a `Content-Length` larger than what arrives) is answered `408`
//!   `{"error":"request timeout"}` with `Connection: close`.
//! - **Body size**: read up to one byte past Kargo's 2 MiB limit and no further, and only once
//!   the route, method, token and declared length are admitted ([`handler::answer`]): an
//!   unknown token is answered without reading a body byte and without `100 Continue` (hyper
//!   sends it only when the body is first polled). A chunked upload without a length gets 413
//!   past the limit (Kargo answers 500 there, reference §1.4).
//! - **Handling**: cluster calls run under `QUAYHOOK_REQUEST_TIMEOUT`, as on Lambda.
//! - **Keep-alive** (`idle_timeout`, 60 s): a connection with no request in flight and no
//!   byte of the next one for this long is closed. hyper has no HTTP/1 idle timeout, and its
//!   header timer also runs while a connection idles, so each connection keeps its own phase
//!   (head arriving, in flight, idle) and deadline: see `connection`.
//! - **Shutdown** (SIGTERM or Ctrl-C; `shutdown_grace`, 10 s): the listener closes, connections
//!   with nothing in flight (idle, or a head still arriving) close at once, requests in flight
//!   finish and their connections close after the answer; whatever is left when the grace
//!   ends is cut, and the count is logged.

mod accept;
mod connection;

use std::future::Future;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONNECTION, HeaderValue};
use hyper::{Response, StatusCode};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::cluster::Connector;
use crate::config::ServeConfig;
use crate::handler;
use crate::secrets::SecretSource;
use crate::state::State;
use kargo_match::quay::MAX_BODY_BYTES;

/// How a [`serve`] ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stopped {
    /// Connections open when shutdown began.
    pub open: usize,
    /// Connections still open when the grace period ended, closed mid-request.
    pub cut: usize,
}

/// Serves `state` on `listener` until `shutdown` completes, under the limits of
/// `state.config.serve` (see the module docs), then shuts down within its grace period.
///
/// Never fails: accept errors are logged and retried.
pub async fn serve<S, C>(
    state: Arc<State<S, C>>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Stopped
where
    S: SecretSource + 'static,
    C: Connector + 'static,
{
    let ServeConfig {
        max_connections,
        shutdown_grace,
        ..
    } = state.config.serve;
    let mut acceptor = accept::Acceptor::new(listener, max_connections);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, slot) = tokio::select! {
            accepted = acceptor.next() => accepted,
            () = &mut shutdown => break,
        };
        connections.spawn(connection::run(
            stream,
            state.clone(),
            stopping.clone(),
            slot,
        ));
    }
    // Closing the listener refuses new clients instead of leaving them in the backlog.
    drop(acceptor);
    while connections.try_join_next().is_some() {}
    let open = connections.len();
    tracing::info!(
        connections = open,
        grace_ms = shutdown_grace.as_millis() as u64,
        "shutting down"
    );
    // Every connection's driver sees this: idle ones close, busy ones finish their request.
    let _ = stop.send(true);
    let _ = tokio::time::timeout(shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    let cut = connections.len();
    connections.shutdown().await;
    if cut > 0 {
        tracing::warn!(cut, "shutdown grace ended; requests in flight were cut");
    } else {
        tracing::info!(cut, "all connections closed");
    }
    Stopped { open, cut }
}

/// Answers one request: `/healthz`, or a delivery whose body must arrive by `body_deadline`.
async fn answer<S: SecretSource, C: Connector>(
    state: &State<S, C>,
    req: hyper::Request<Incoming>,
    body_deadline: Instant,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    if parts.uri.path() == "/healthz" {
        return Response::new(Full::new(Bytes::new()));
    }
    let head = handler::Head {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        content_length: handler::declared_length(&parts.headers),
        remaining: None,
    };
    // The body is read only once the head is admitted: an unknown path or token, a wrong
    // method or a declared length over the limit is answered without reading a byte (and
    // without `100 Continue`, which hyper sends only when the body is first polled).
    let response = handler::answer(state, &head, || async {
        let read = read_capped(body, MAX_BODY_BYTES + 1);
        let body = tokio::time::timeout_at(body_deadline, read)
            .await
            .map_err(|_| handler::Rejection::Timeout)?;
        if body.len() > MAX_BODY_BYTES {
            return Err(handler::Rejection::TooLarge);
        }
        Ok(body)
    })
    .await;
    let (mut parts, body) = response.into_parts();
    if parts.status == StatusCode::REQUEST_TIMEOUT {
        // The rest of the body may still be on its way: this connection cannot carry another
        // request.
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Response::from_parts(parts, Full::new(Bytes::from(body.as_ref().to_vec())))
}

/// Reads at most `cap` bytes of the body; the rest is left unread (the connection closes).
async fn read_capped(mut body: Incoming, cap: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < cap {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let take = data.len().min(cap - out.len());
                    out.extend_from_slice(&data[..take]);
                }
            }
            // A broken upload is decoded as whatever arrived: the payload check rejects it.
            Some(Err(_)) | None => break,
        }
    }
    out
}
