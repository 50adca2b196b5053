//! The connections the server accepted: the protocol each negotiated, how many requests each
//! carried, whether it is still open, and the switches tests use to cut them. No I/O: the
//! accept loop in the parent module asks here and obeys.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::lock;

/// One accepted TLS connection, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The protocol ALPN settled on: `h2` or `http/1.1`; empty when the client offered none
    /// (it then speaks HTTP/1.1).
    pub protocol: String,
    /// Requests the connection carried (a request on a connection cut by
    /// [`super::ApiServer::drop_connections`] is not counted: it was never served).
    pub requests: usize,
    /// Whether the connection is still open.
    pub open: bool,
}

/// One connection's state, shared by its task and the handle.
pub(super) struct Conn {
    protocol: String,
    requests: AtomicUsize,
    open: AtomicBool,
    /// Cut silently: the next request on it closes it without an answer.
    doomed: AtomicBool,
    kill: Notify,
}

impl Conn {
    /// Counts a request about to be served; `false` when the connection was cut, in which
    /// case its task is told to close it and the request must not be answered.
    pub(super) fn admit(&self) -> bool {
        if self.doomed.load(Ordering::SeqCst) {
            self.kill.notify_one();
            return false;
        }
        self.requests.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// Completes when the connection must be closed now.
    pub(super) async fn killed(&self) {
        self.kill.notified().await;
    }
}

/// Marks its connection closed when the connection's task ends, however it ends.
pub(super) struct OpenGuard(pub(super) Arc<Conn>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.store(false, Ordering::SeqCst);
    }
}

/// Every connection accepted since the server started, in accept order.
#[derive(Default)]
pub(super) struct Connections {
    list: Mutex<Vec<Arc<Conn>>>,
}

impl Connections {
    /// Records a connection whose TLS handshake completed.
    pub(super) fn accepted(&self, protocol: Option<&[u8]>) -> Arc<Conn> {
        let conn = Arc::new(Conn {
            protocol: protocol
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_default(),
            requests: AtomicUsize::new(0),
            open: AtomicBool::new(true),
            doomed: AtomicBool::new(false),
            kill: Notify::new(),
        });
        lock(&self.list).push(Arc::clone(&conn));
        conn
    }

    /// How many connections were accepted.
    pub(super) fn count(&self) -> usize {
        lock(&self.list).len()
    }

    /// The connections in accept order.
    pub(super) fn snapshot(&self) -> Vec<ConnectionInfo> {
        lock(&self.list)
            .iter()
            .map(|c| ConnectionInfo {
                protocol: c.protocol.clone(),
                requests: c.requests.load(Ordering::SeqCst),
                open: c.open.load(Ordering::SeqCst),
            })
            .collect()
    }

    /// Cuts every open connection silently: each closes at its next request.
    pub(super) fn doom_open(&self) {
        for c in lock(&self.list).iter() {
            if c.open.load(Ordering::SeqCst) {
                c.doomed.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Closes every open connection now.
    pub(super) fn close_open(&self) {
        for c in lock(&self.list).iter() {
            if c.open.load(Ordering::SeqCst) {
                c.kill.notify_one();
            }
        }
    }
}
