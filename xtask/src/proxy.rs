//! A counting, delaying HTTP/1.1 proxy in front of moto: every Secrets Manager call is timed
//! into the timeline and given the same injected latency as API server requests.
//!
//! I/O: listens on a loopback port and forwards each request to moto over a fresh connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::timeline::{SharedLatency, Span, Timeline, latency_of};

/// The running proxy; it serves until the runtime shuts down.
#[derive(Clone, Debug)]
pub struct Proxy {
    /// Its endpoint, `http://127.0.0.1:PORT`, for an SDK client or `AWS_ENDPOINT_URL`.
    pub url: String,
    /// Added before each request is forwarded; zero at start.
    pub latency: SharedLatency,
}

/// Starts a proxy to `upstream` (moto's `http://ip:port`) that records each call in `timeline`.
///
/// # Errors
/// When `upstream` is not `http://ip:port` or no loopback port can be bound.
pub async fn start(upstream: &str, timeline: &Timeline) -> anyhow::Result<Proxy> {
    let upstream: SocketAddr = upstream
        .trim_start_matches("http://")
        .parse()
        .with_context(|| format!("moto endpoint {upstream} is not http://ip:port"))?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("bind the moto proxy")?;
    let url = format!("http://{}", listener.local_addr()?);
    let latency = Arc::new(Mutex::new(Duration::ZERO));
    let proxy = Proxy {
        url,
        latency: Arc::clone(&latency),
    };
    let timeline = timeline.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let timeline = timeline.clone();
            let latency = Arc::clone(&latency);
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let timeline = timeline.clone();
                    let latency = Arc::clone(&latency);
                    async move { forward(upstream, req, &timeline, &latency).await }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Ok(proxy)
}

/// Forwards one request after the injected latency; 502 when moto cannot be reached.
async fn forward(
    upstream: SocketAddr,
    req: Request<Incoming>,
    timeline: &Timeline,
    latency: &Mutex<Duration>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let start = Instant::now();
    let (parts, body) = req.into_parts();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .trim_start_matches("secretsmanager.")
        .to_owned();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let delay = latency_of(latency);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let answer = async {
        let tcp = tokio::net::TcpStream::connect(upstream).await.ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .ok()?;
        tokio::spawn(conn);
        let res = sender
            .send_request(Request::from_parts(parts, Full::new(body)))
            .await
            .ok()?;
        let (rparts, rbody) = res.into_parts();
        let bytes = rbody.collect().await.ok()?.to_bytes();
        Some(Response::from_parts(rparts, Full::new(bytes)))
    }
    .await;
    timeline.push(Span {
        start,
        end: Instant::now(),
        what: format!("secretsmanager {target}"),
    });
    Ok(answer.unwrap_or_else(|| {
        let mut r = Response::new(Full::new(Bytes::from_static(b"proxy: moto unreachable")));
        *r.status_mut() = StatusCode::BAD_GATEWAY;
        r
    }))
}
