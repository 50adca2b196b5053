//! `quayhook serve`: the Lambda handler behind a plain HTTP/1.1 server, for running outside
//! AWS (a VM, a container, a laptop) with the same configuration and the same answers.
//!
//! I/O. Each request's body is read up to one byte past Kargo's 2 MiB limit and no further, so
//! a chunked upload without a length gets 413 (Kargo answers 500 there, reference §1.4) and
//! memory stays bounded.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::cluster::Connector;
use crate::handler;
use crate::secrets::SecretSource;
use crate::state::State;
use kargo_match::quay::MAX_BODY_BYTES;

/// Serves `state` on `listener` until `shutdown` completes; connections in flight finish.
///
/// # Errors
/// Only when accepting connections fails persistently.
pub async fn serve<S, C>(
    state: Arc<State<S, C>>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    S: SecretSource + 'static,
    C: Connector + 'static,
{
    let mut shutdown = std::pin::pin!(shutdown);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => break,
        };
        let state = state.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(&state, req, peer).await) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(cause = %e, "connection ended with an error");
            }
        });
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn answer<S: SecretSource, C: Connector>(
    state: &State<S, C>,
    req: hyper::Request<Incoming>,
    _peer: SocketAddr,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    if parts.uri.path() == "/healthz" {
        return hyper::Response::new(Full::new(Bytes::new()));
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
        let body = read_capped(body, MAX_BODY_BYTES + 1).await;
        if body.len() > MAX_BODY_BYTES {
            return Err(handler::Rejection::TooLarge);
        }
        Ok(body)
    })
    .await;
    let (parts, body) = response.into_parts();
    hyper::Response::from_parts(parts, Full::new(Bytes::from(body.as_ref().to_vec())))
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
