//! One accepted connection: hyper's HTTP/1.1 state machine, driven under the header, idle and
//! shutdown rules of [`super`].
//!
//! I/O. hyper has no idle timeout for HTTP/1, and its header timer starts when it begins
//! waiting for a head, keep-alive idle time included, so it cannot tell an idle connection
//! from a slow head. The driver here keeps its own [`Phase`] per connection instead: reads
//! through [`Watched`] mark the first byte of a request, the service marks a request in
//! flight, and the driver closes the connection when the phase's deadline passes.

use std::convert::Infallible;
use std::io;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, watch};
use tokio::time::Instant;

use crate::cluster::Connector;
use crate::config::ServeConfig;
use crate::secrets::SecretSource;
use crate::state::State;

/// Where a connection is between accept and close; every phase but `Busy` has a deadline.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// A request head may be arriving; it began at `since` (accept, for a fresh connection,
    /// as Go counts it; the first byte, for the next request on a kept-alive one).
    Head { since: Instant },
    /// Between requests since `since`, no byte of the next one read yet.
    Idle { since: Instant },
    /// The service has the request (its body may still be arriving).
    Busy,
}

/// Why the driver closed a connection itself.
#[derive(Clone, Copy, Debug)]
enum Expired {
    Head,
    Idle,
}

/// The [`Phase`] of one connection, shared by its I/O wrapper, its service and its driver
/// (all polled by the connection's one task, so the lock is never contended).
struct Activity {
    phase: Mutex<Phase>,
    /// Woken on every phase change, so the driver re-arms its timer.
    changed: Notify,
    limits: ServeConfig,
}

impl Activity {
    fn new(limits: ServeConfig) -> Arc<Self> {
        Arc::new(Activity {
            phase: Mutex::new(Phase::Head {
                since: Instant::now(),
            }),
            changed: Notify::new(),
            limits,
        })
    }

    fn phase(&self) -> Phase {
        // Each critical section is a single assignment: a poisoned value is still consistent.
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner) = phase;
        self.changed.notify_one();
    }

    /// Bytes arrived. Between requests they start the next head and its header timeout.
    /// (Body bytes hyper drains after an early answer count too: such a connection then gets
    /// the header timeout rather than the idle one before its next request; shorter, never
    /// unbounded.)
    fn on_bytes(&self) {
        if let Phase::Idle { .. } = self.phase() {
            self.set(Phase::Head {
                since: Instant::now(),
            });
        }
    }

    /// The service took a request: returns when its head began arriving, the start of its
    /// read deadline, and marks it in flight until the returned guard drops.
    fn begin(self: &Arc<Self>) -> (Instant, InFlight) {
        let started = match self.phase() {
            Phase::Head { since } => since,
            // A pipelined head, read while the previous request was in flight.
            Phase::Idle { .. } | Phase::Busy => Instant::now(),
        };
        self.set(Phase::Busy);
        (started, InFlight(self.clone()))
    }

    fn deadline(&self) -> Option<(Instant, Expired)> {
        match self.phase() {
            Phase::Head { since } => Some((since + self.limits.header_timeout, Expired::Head)),
            Phase::Idle { since } => Some((since + self.limits.idle_timeout, Expired::Idle)),
            Phase::Busy => None,
        }
    }
}

/// A request in flight; dropping it (the service future ended) makes the connection idle.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.set(Phase::Idle {
            since: Instant::now(),
        });
    }
}

/// Serves one connection until the client or hyper closes it, a deadline passes, or the
/// server stops (`stop` turns true). `permit`, the connection's slot under
/// `max_connections`, is released when this returns.
pub(super) async fn run<S, C>(
    stream: TcpStream,
    state: Arc<State<S, C>>,
    mut stop: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
) where
    S: SecretSource + 'static,
    C: Connector + 'static,
{
    let _permit = permit;
    let limits = state.config.serve.clone();
    let activity = Activity::new(limits.clone());
    let service = {
        let activity = activity.clone();
        service_fn(move |req| {
            let state = state.clone();
            // Called once the head is parsed, before the body is read.
            let (started, in_flight) = activity.begin();
            let body_deadline = started + limits.read_timeout;
            async move {
                let _in_flight = in_flight;
                Ok::<_, Infallible>(super::answer(&state, req, body_deadline).await)
            }
        })
    };
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let mut builder = http1::Builder::new();
    // A backstop only: hyper's header timer also runs while a kept-alive connection idles,
    // so at `header_timeout` it would close every connection idle for longer than that and
    // make `idle_timeout` dead configuration. At idle + header it can never fire before the
    // phase deadlines below.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout + limits.header_timeout);
    let mut conn = pin!(builder.serve_connection(io, service));
    let mut stopping = false;
    loop {
        let deadline = activity.deadline();
        let timer = async {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(cause = %e, "connection ended with an error");
                }
                return;
            }
            // An error means the server is gone: stop as well.
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                let Phase::Busy = activity.phase() else {
                    // Nothing in flight: an idle connection, or a head still arriving.
                    return;
                };
                // Finish the request in flight, then close; the server's grace bounds it.
                conn.as_mut().graceful_shutdown();
            }
            () = activity.changed.notified() => {}
            () = timer => {
                // The phase may have changed since the timer was armed; re-check.
                if let Some((at, expired)) = activity.deadline()
                    && at <= Instant::now()
                {
                    match expired {
                        Expired::Head => tracing::debug!("request head timed out; connection closed"),
                        Expired::Idle => tracing::debug!("idle connection closed"),
                    }
                    return;
                }
            }
        }
    }
}

/// The connection's stream, telling [`Activity`] when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll
            && buf.filled().len() > before
        {
            self.activity.on_bytes();
        }
        poll
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
