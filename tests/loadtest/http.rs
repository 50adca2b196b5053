//! Raw HTTP/1.1 clients over loopback, polite and hostile: a whole request at once, a request
//! trickled a byte at a time, and a large upload that stops once the server has answered.
//! Hand-written so that each can misbehave exactly as a hostile client would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// What came back on a connection before the server closed it.
#[derive(Debug, Default)]
pub(crate) struct Reply {
    /// The status, or 0 when nothing (or no status line) came back.
    pub status: u16,
    /// The body, after the head.
    pub body: Vec<u8>,
}

impl Reply {
    fn parse(raw: &[u8]) -> Reply {
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Reply::default();
        };
        let head = String::from_utf8_lossy(&raw[..end]);
        Reply {
            status: head
                .split(' ')
                .nth(1)
                .and_then(|code| code.parse().ok())
                .unwrap_or(0),
            body: raw[end + 4..].to_vec(),
        }
    }

    /// The body as JSON; `null` when it is not JSON ending in a newline, the shape of every
    /// quayhook answer.
    pub fn json(&self) -> Value {
        match std::str::from_utf8(&self.body) {
            Ok(text) if text.ends_with('\n') => serde_json::from_str(text).unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }
}

/// A delivery head for `path` declaring `length` body bytes; the connection closes after the
/// answer.
pub(crate) fn head(path: &str, length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: quayhook\r\nUser-Agent: Quay\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )
}

/// Reads until the server closes; a reset ends the read like a close (what arrived before it
/// is kept).
async fn until_closed(r: &mut (impl AsyncRead + Unpin), out: &mut Vec<u8>) {
    let mut buf = [0u8; 8192];
    while let Ok(n @ 1..) = r.read(&mut buf).await {
        out.extend_from_slice(&buf[..n]);
    }
}

/// POSTs `body` to `path`, all at once, and reads the answer to the end.
pub(crate) async fn post(addr: SocketAddr, path: &str, body: &[u8]) -> Reply {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return Reply::default();
    };
    let mut request = head(path, body.len()).into_bytes();
    request.extend_from_slice(body);
    let mut raw = Vec::new();
    if s.write_all(&request).await.is_ok() {
        until_closed(&mut s, &mut raw).await;
    }
    Reply::parse(&raw)
}

/// What the server did to a request trickled in.
#[derive(Debug)]
pub(crate) struct Trickled {
    /// Bytes of the trickled part sent before the server answered or closed.
    pub sent: usize,
    /// The answer; `None` when the server closed without one.
    pub answer: Option<Reply>,
    /// From connect to the answer or the close.
    pub open: Duration,
}

/// Sends `prefix` at once, then `slow` one byte every `every`, until the server answers or
/// closes the connection. `None` when `stop` turned true (or the connection failed) first.
pub(crate) async fn trickle(
    addr: SocketAddr,
    prefix: &[u8],
    slow: &[u8],
    every: Duration,
    stop: &AtomicBool,
) -> Option<Trickled> {
    let connected = Instant::now();
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(prefix).await.ok()?;
    let mut raw = Vec::new();
    let mut sent = 0;
    for byte in slow {
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        if s.write_all(std::slice::from_ref(byte)).await.is_err() {
            // Closed (perhaps reset right after an answer that is still to be read).
            until_closed(&mut s, &mut raw).await;
            break;
        }
        sent += 1;
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(every, s.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => {
                raw.extend_from_slice(&buf[..n]);
                until_closed(&mut s, &mut raw).await;
                break;
            }
        }
    }
    if sent == slow.len() {
        // All sent: whatever the server does now is an answer to a whole request.
        until_closed(&mut s, &mut raw).await;
    }
    Some(Trickled {
        sent,
        answer: (!raw.is_empty()).then(|| Reply::parse(&raw)),
        open: connected.elapsed(),
    })
}

/// The kernel send buffer of an upload: small, so that the body bytes a client gets into its
/// socket are bounded by what the server takes, not by loopback's multi-megabyte buffers.
pub(crate) const UPLOAD_SEND_BUFFER: u32 = 64 * 1024;

/// What an upload got.
#[derive(Debug)]
pub(crate) struct Uploaded {
    pub reply: Reply,
    /// Body bytes written into the socket before the answer came (or the server closed).
    pub sent: usize,
}

/// POSTs `body` to `path` as fast as the server takes it, reading at the same time, and stops
/// writing as soon as the server answers or closes (a client that writes its whole body
/// before reading would only measure the kernel's buffers).
pub(crate) async fn upload(addr: SocketAddr, path: &str, body: &[u8]) -> Uploaded {
    let failed = Uploaded {
        reply: Reply::default(),
        sent: 0,
    };
    let Ok(socket) = TcpSocket::new_v4() else {
        return failed;
    };
    if socket.set_send_buffer_size(UPLOAD_SEND_BUFFER).is_err() {
        return failed;
    }
    let Ok(mut s) = socket.connect(addr).await else {
        return failed;
    };
    let (mut r, mut w) = s.split();
    let mut raw = Vec::new();
    let mut sent = 0;
    if w.write_all(head(path, body.len()).as_bytes()).await.is_ok() {
        let write = async {
            for chunk in body.chunks(16 * 1024) {
                if w.write_all(chunk).await.is_err() {
                    break;
                }
                sent += chunk.len();
            }
            // All written: the answer is all that is left to wait for.
            std::future::pending::<()>().await;
        };
        let mut first = [0u8; 8192];
        tokio::select! {
            read = r.read(&mut first) => {
                if let Ok(n) = read {
                    raw.extend_from_slice(&first[..n]);
                }
            }
            () = write => {}
        }
        until_closed(&mut r, &mut raw).await;
    }
    Uploaded {
        reply: Reply::parse(&raw),
        sent,
    }
}
