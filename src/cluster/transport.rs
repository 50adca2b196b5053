//! The HTTP client under `kube`: one HTTP/2 connection to the API server, its requests as
//! concurrent streams, and HTTP/1.1 when the server does not offer h2.
//!
//! kube-client 5 builds an HTTP/1.1-only hyper client (kube-rs/kube#1923), so every request in
//! flight beyond the first opens another TCP+TLS connection. quayhook builds its own client
//! and keeps kube's typed API through `kube::client::ClientBuilder`, with kube's own base-URI,
//! authorization and extra-header layers (built from the same `kube::Config`), and TLS from
//! kube's `rustls_client_config()` (the kubeconfig's CA, client identity and
//! `insecure-skip-tls-verify`), offering `h2` and `http/1.1` through ALPN.
//!
//! Two hyper pools share one connector:
//! - the HTTP/2 pool (`http2_only`), used while the server speaks h2. hyper takes a single
//!   "connecting" lock per host for h2, so however many requests find the pool empty (the
//!   first wave after a cold start, or a whole push whose connection just died), they wait for
//!   one connection and share it;
//! - the HTTP/1.1 pool, used for good once a connection comes back without h2 (a proxy in
//!   front of the API server, a plain `http://` URL). The connection that found this out is
//!   handed to the HTTP/1.1 pool, so the fallback costs no extra handshake.
//!
//! Idle connections are kept for the configured idle timeout (hyper's default of 90 s would
//! drop them between pushes) and PINGed while idle, so a connection a middlebox or a frozen
//! Lambda lost is found dead early. A real kube-apiserver closes an HTTP/2 connection that
//! carried no request for 90 s with a GOAWAY whatever the client does (its `http2.Server`
//! `IdleTimeout`; PINGs do not count as activity): the next push then opens one connection.
//!
//! I/O. Requests that fail because the connection under them broke are classified by
//! [`is_dead_connection`]; the store decides whether to send them again.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response, Uri};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use kube::client::{Body, ClientBuilder, ConfigExt as _};
use tokio::net::TcpStream;
use tower::{BoxError, Service, ServiceBuilder};

use super::ClusterError;
use crate::cause::Cause;

/// HTTP/2 PING interval while a connection is open, idle or not; client-go's default
/// (`HTTP2_READ_IDLE_TIMEOUT_SECONDS`, 30 s). It also keeps NAT and load-balancer mappings
/// (350 s idle on AWS NAT gateways and NLBs) from expiring under a warm connection.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// How long a PING may go unanswered before the connection is closed as dead; client-go's
/// default (`HTTP2_PING_TIMEOUT_SECONDS`, 15 s).
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(15);

/// TCP keep-alive on every socket, for HTTP/1.1 connections (no PINGs there).
const TCP_KEEP_ALIVE: Duration = Duration::from_secs(30);

/// How the client connects and keeps connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tuning {
    /// TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// Longest wait for one response's head.
    pub response_timeout: Duration,
    /// How long an idle connection stays in the pool.
    pub idle_timeout: Duration,
}

/// Builds a `kube::Client` that speaks HTTP/2 when the API server offers it.
///
/// # Errors
/// [`ClusterError::Kubeconfig`] for settings this client does not support (`proxy-url`, an
/// invalid `tls-server-name`), [`ClusterError::Client`] when kube cannot build its TLS
/// configuration or authorization layer from the accepted kubeconfig.
pub(crate) fn client(config: &kube::Config, tuning: Tuning) -> Result<kube::Client, ClusterError> {
    let unusable = |e: kube::Error| ClusterError::Client(Cause::new(e));
    if config.proxy_url.is_some() {
        // kube as built here (no `http-proxy`/`socks5` features) refuses it too.
        return Err(ClusterError::Kubeconfig(
            "proxy-url is not supported".to_owned(),
        ));
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_keepalive(Some(TCP_KEEP_ALIVE));
    let tls = config.rustls_client_config().map_err(unusable)?;
    let mut https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let name = name.clone().try_into().map_err(|_| {
            ClusterError::Kubeconfig("tls-server-name is not a valid server name".to_owned())
        })?;
        https = https.with_server_name_resolver(FixedServerNameResolver::new(name));
    }
    // ALPN offers h2, then http/1.1. quayhook never uses websockets or protocol upgrades
    // (exec, attach, port-forward), so upstream kube's HTTP/2 caveat (kube-rs/kube#1923:
    // upgrades fail over h2) does not apply.
    let https = https.enable_http1().enable_http2().wrap_connector(http);

    let shared = Arc::new(Shared::default());
    let connector = |h2_only| Connect {
        https: https.clone(),
        timeout: tuning.connect_timeout,
        shared: shared.clone(),
        h2_only,
    };
    let pool = || {
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(tuning.idle_timeout);
        builder
    };
    let h2 = pool()
        .http2_only(true)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .http2_keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .http2_keep_alive_while_idle(true)
        .build(connector(true));
    let http1 = pool().build(connector(false));
    let transport = Transport {
        h2,
        http1,
        shared,
        response_timeout: tuning.response_timeout,
    };

    // kube's own layers, in kube's order (`ClientBuilder::try_from`): base URI, then
    // authorization, then extra headers (impersonation). kube's retry layer is left out on
    // purpose (quayhook's retries honour the request budget), and so is its tracing layer.
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer().map_err(unusable)?)
        .layer(config.extra_headers_layer().map_err(unusable)?)
        .service(transport);
    Ok(ClientBuilder::new(service, config.default_namespace.clone()).build())
}

/// Whether a failed request failed because the connection under it broke (closed, reset,
/// went away), rather than on a healthy connection.
///
/// Such a request either never reached the API server or may have been applied without its
/// answer coming back, so it is safe to send again only when repeating it is harmless. Walks
/// the error's sources:
/// - a hyper-util connect error is not one: a fresh connection that cannot be opened says
///   the server is unreachable, which the bounded retries handle;
/// - hyper: an incomplete message ("connection closed before message completed"), a
///   canceled request (its connection closed before it was sent), a closed channel;
/// - h2: a GOAWAY (the server is closing the connection; streams it did not take are refused),
///   `REFUSED_STREAM` (the server did not process the request), an I/O error of the
///   connection;
/// - I/O: reset, aborted, broken pipe, unexpected end of file, not connected.
///
/// A stream the server reset with another reason (`INTERNAL_ERROR`), a timeout, a TLS error
/// or any HTTP status is not a dead connection.
pub(crate) fn is_dead_connection(error: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(e) = e.downcast_ref::<hyper_util::client::legacy::Error>() {
            if e.is_connect() {
                return false;
            }
        } else if let Some(e) = e.downcast_ref::<hyper::Error>() {
            if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
                return true;
            }
        } else if let Some(e) = e.downcast_ref::<h2::Error>() {
            if e.is_go_away() || e.is_io() || e.reason() == Some(h2::Reason::REFUSED_STREAM) {
                return true;
            }
        } else if let Some(e) = e.downcast_ref::<io::Error>() {
            use io::ErrorKind::{
                BrokenPipe, ConnectionAborted, ConnectionReset, NotConnected, UnexpectedEof,
            };
            if matches!(
                e.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected
            ) {
                return true;
            }
        }
        next = e.source();
    }
    false
}

type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

/// What both pools' connectors share.
#[derive(Default)]
struct Shared {
    /// Set once a connection came back without h2: every request goes to the HTTP/1.1 pool.
    http1: AtomicBool,
    /// The connection that found the server does not speak h2, kept for the HTTP/1.1 pool.
    spare: Mutex<Option<Stream>>,
}

impl Shared {
    fn take_spare(&self) -> Option<Stream> {
        // Nothing panics while holding this lock; a poisoned one still holds a valid Option.
        self.spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Returned by the HTTP/2 pool's connector when the server chose another protocol.
#[derive(Debug)]
struct NotH2;

impl std::fmt::Display for NotH2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the API server did not negotiate HTTP/2")
    }
}

impl StdError for NotH2 {}

/// TCP and TLS under a connect timeout; the HTTP/2 pool's one also refuses connections that
/// did not negotiate h2.
#[derive(Clone)]
struct Connect {
    https: HttpsConnector<HttpConnector>,
    timeout: Duration,
    shared: Arc<Shared>,
    h2_only: bool,
}

impl Service<Uri> for Connect {
    type Response = Stream;
    type Error = BoxError;
    type Future = BoxFuture<Stream>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.https.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        if self.h2_only && self.shared.http1.load(Ordering::Acquire) {
            return Box::pin(std::future::ready(Err(NotH2.into())));
        }
        if !self.h2_only
            && let Some(stream) = self.shared.take_spare()
        {
            return Box::pin(std::future::ready(Ok(stream)));
        }
        let connecting = self.https.call(uri);
        let (timeout, shared, h2_only) = (self.timeout, self.shared.clone(), self.h2_only);
        Box::pin(async move {
            let stream = tokio::time::timeout(timeout, connecting)
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connecting to the API server timed out",
                    )
                })??;
            if h2_only && !stream.connected().is_negotiated_h2() {
                shared.http1.store(true, Ordering::Release);
                *shared.spare.lock().unwrap_or_else(PoisonError::into_inner) = Some(stream);
                tracing::info!("the API server does not offer HTTP/2; using HTTP/1.1");
                return Err(NotH2.into());
            }
            Ok(stream)
        })
    }
}

/// The service under kube's layers: the HTTP/2 pool, or the HTTP/1.1 one once the server
/// turned out not to speak h2.
#[derive(Clone)]
struct Transport {
    h2: Client<Connect, Body>,
    http1: Client<Connect, Body>,
    shared: Arc<Shared>,
    response_timeout: Duration,
}

impl Service<Request<Body>> for Transport {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = BoxFuture<Response<Incoming>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // hyper's pools are always ready: they queue requests themselves.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let sending: BoxFuture<Response<Incoming>> = if self.shared.http1.load(Ordering::Acquire) {
            let response = self.http1.request(request);
            Box::pin(async move { Ok(response.await?) })
        } else {
            // Kept to send again through the HTTP/1.1 pool if the server turns out not to
            // speak h2: the request never left, as no h2 connection was made. Bodies quayhook
            // sends are buffered, so this is a reference count, not a copy.
            let again = try_clone(&request);
            let response = self.h2.request(request);
            let http1 = self.http1.clone();
            Box::pin(async move {
                match response.await {
                    Err(e) if caused_by::<NotH2>(&e) => match again {
                        Some(request) => Ok(http1.request(request).await?),
                        None => Err(e.into()),
                    },
                    other => Ok(other?),
                }
            })
        };
        let timeout = self.response_timeout;
        Box::pin(async move {
            tokio::time::timeout(timeout, sending).await.map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the API server did not answer within the read timeout",
                )
            })?
        })
    }
}

/// The request again, when its body is buffered (kube's bodies are, except watch streams).
fn try_clone(request: &Request<Body>) -> Option<Request<Body>> {
    let mut copy = Request::new(request.body().try_clone()?);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    *copy.extensions_mut() = request.extensions().clone();
    Some(copy)
}

fn caused_by<E: StdError + 'static>(error: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<E>() {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Empty;
    use hyper::body::Bytes;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    fn service_error(e: impl Into<BoxError>) -> kube::Error {
        kube::Error::Service(e.into())
    }

    /// What hyper-util's client answers when sending one GET to `addr`.
    async fn get(addr: std::net::SocketAddr) -> hyper_util::client::legacy::Error {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let uri: Uri = format!("http://{addr}/version").parse().unwrap();
        client.get(uri).await.expect_err("the request fails")
    }

    #[tokio::test]
    async fn a_connection_closed_before_the_answer_is_dead() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 1024];
            let _ = tcp.read(&mut head).await.unwrap();
            // Closed under the request, as a load balancer's idle cut looks.
            tcp.shutdown().await.unwrap();
        });
        let err = get(addr).await;
        server.await.unwrap();
        assert!(is_dead_connection(&service_error(err)));
    }

    #[tokio::test]
    async fn a_refused_connection_is_not_a_dead_one() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = get(addr).await;
        assert!(err.is_connect());
        assert!(!is_dead_connection(&service_error(err)));
    }

    #[test]
    fn resets_goaways_and_broken_pipes_are_dead_other_failures_are_not() {
        use io::ErrorKind::*;
        for kind in [
            ConnectionReset,
            ConnectionAborted,
            BrokenPipe,
            UnexpectedEof,
        ] {
            let e = service_error(io::Error::from(kind));
            assert!(is_dead_connection(&e), "{kind:?}");
        }
        for kind in [TimedOut, ConnectionRefused, InvalidData] {
            let e = service_error(io::Error::from(kind));
            assert!(!is_dead_connection(&e), "{kind:?}");
        }
        let refused = service_error(h2::Error::from(h2::Reason::REFUSED_STREAM));
        assert!(is_dead_connection(&refused));
        let internal = service_error(h2::Error::from(h2::Reason::INTERNAL_ERROR));
        assert!(
            !is_dead_connection(&internal),
            "a stream reset is an answer"
        );
        assert!(!is_dead_connection(&service_error("boom")));
        let status = kube::core::Status::failure("gone", "NotFound").with_code(404);
        assert!(!is_dead_connection(&kube::Error::Api(status.boxed())));
    }

    #[test]
    fn a_not_h2_refusal_is_found_under_its_wrappers() {
        let wrapped = service_error(NotH2);
        assert!(caused_by::<NotH2>(&wrapped));
        assert!(!caused_by::<NotH2>(&service_error("other")));
    }
}
