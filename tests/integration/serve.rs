//! `quayhook serve`: the same handler over real HTTP/1.1, including what only a socket can
//! show: a chunked upload with no length, slow and short requests, idle and half-open
//! connections, descriptor exhaustion and shutdown. In process (with the fakes and small
//! limits) where a socket is enough, the real binary where the process itself is the subject
//! (a descriptor limit, SIGTERM). Waits are bounded for liveness, never performance checks.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kargo_match::token::SecretString;
use quayhook::serve::Stopped;
use quayhook::state::State;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use quayhook_testkit::events::push;
use quayhook_testkit::fakes::{self, FakeCluster, FakeSecrets, Step};
use quayhook_testkit::fixtures::{QUAY_REPO, wh};
use quayhook_testkit::harness::{Harness, Setup};

async fn raw(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    // The server may stop reading once it has enough; a failed write is then expected.
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body.trim()).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_answers_like_the_lambda_and_caps_chunked_uploads() {
    let h = Harness::start(Setup {
        namespaces: vec!["kargo-demo"],
        warehouses: vec![wh("kargo-demo", "w").image(QUAY_REPO, json!({})).json()],
        ..Setup::default()
    })
    .await;
    let token = h.receiver("kargo-demo", "quay", "s3cret-serve", None).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(h.state);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(quayhook::serve::serve(state, listener, async {
        let _ = stopped.await;
    }));

    let body = push(QUAY_REPO, &["v1"]);
    let head = format!(
        "POST /quay/{token} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let (status, text) = raw(addr, &head, body.as_bytes()).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(json_of(&text)["msg"], "refreshed 1 warehouse(s)");

    // Chunked, no length, 3 MB: 413 (Kargo answers 500 here).
    let mut chunked = Vec::new();
    for _ in 0..3 {
        chunked.extend_from_slice(format!("{:x}\r\n", 1_000_000).as_bytes());
        chunked.extend(std::iter::repeat_n(b' ', 1_000_000));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "POST /quay/{token} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let (status, text) = raw(addr, &head, &chunked).await;
    assert_eq!(status, 413, "{text}");
    assert_eq!(
        json_of(&text),
        json!({"error": "content exceeds limit of 2097152 bytes"})
    );

    let (status, _) = raw(
        addr,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"",
    )
    .await;
    assert_eq!(status, 200);

    let _ = stop.send(());
    server.await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Limits, in process: fakes behind the real server, limits small enough for a test.

const NS: &str = "kargo-demo";
const HEADER: &str = "QUAYHOOK_SERVE_HEADER_TIMEOUT";
const READ: &str = "QUAYHOOK_SERVE_READ_TIMEOUT";
const IDLE: &str = "QUAYHOOK_SERVE_IDLE_TIMEOUT";
const GRACE: &str = "QUAYHOOK_SERVE_SHUTDOWN_GRACE";
const MAX_CONNECTIONS: &str = "QUAYHOOK_SERVE_MAX_CONNECTIONS";
/// A bound on waits that should end far sooner: a liveness check, not a performance one.
const LIVENESS: Duration = Duration::from_secs(10);
const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

/// `quayhook::serve::serve` over fakes: one receiver in `NS` and one subscribed Warehouse.
struct Server {
    addr: SocketAddr,
    token: String,
    cluster: FakeCluster,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Stopped>,
}

async fn start(vars: &[(&str, &str)]) -> Server {
    let secrets = FakeSecrets::new();
    let token = secrets.add(NS, "quay", "s3cret-limits", None);
    let cluster = FakeCluster::new().with(wh(NS, "w").image(QUAY_REPO, json!({})));
    let state = Arc::new(State::new(fakes::config(vars), secrets, cluster.clone()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(quayhook::serve::serve(state, listener, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        token,
        cluster,
        stop,
        task,
    }
}

impl Server {
    /// Starts the shutdown and waits for `serve` to return.
    async fn shut_down(self) -> Stopped {
        let _ = self.stop.send(());
        within(LIVENESS * 2, self.task).await.unwrap()
    }
}

async fn within<F: std::future::Future>(limit: Duration, f: F) -> F::Output {
    tokio::time::timeout(limit, f)
        .await
        .expect("still waiting after the liveness bound")
}

/// One response read off a kept-alive connection: status line and headers, then exactly
/// `Content-Length` bytes. `None` when the connection closes first. Interim responses
/// (`100 Continue`) are returned like any other.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

async fn response(s: &mut TcpStream) -> Option<Answer> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        match s.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).await.ok()?;
    Some(Answer {
        status,
        head,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Reads until the server closes the connection; what arrived meanwhile.
async fn until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    // A reset (unread data at close) ends the read as surely as a FIN.
    let _ = within(LIVENESS, s.read_to_end(&mut out)).await;
    out
}

/// What the server did while `bytes` were sent one at a time, 100 ms apart.
#[derive(Debug)]
struct Trickle {
    /// Bytes sent before the server answered or closed the connection.
    sent: usize,
    /// What the server sent back.
    received: Vec<u8>,
    /// Whether the server closed the connection.
    closed: bool,
}

async fn trickle(s: &mut TcpStream, bytes: &[u8]) -> Trickle {
    let mut t = Trickle {
        sent: 0,
        received: Vec::new(),
        closed: false,
    };
    for byte in bytes {
        if s.write_all(std::slice::from_ref(byte)).await.is_err() {
            t.closed = true;
            break;
        }
        t.sent += 1;
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(0) | Err(_)) => t.closed = true,
            Ok(Ok(n)) => t.received.extend_from_slice(&buf[..n]),
        }
        break;
    }
    t
}

fn post(token: &str, length: usize, extra: &str) -> String {
    format!(
        "POST /quay/{token} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n{extra}\r\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_head_is_cut_at_the_header_timeout_on_a_new_or_kept_alive_connection() {
    let server = start(&[(HEADER, "300ms")]).await;
    // The head of a fresh connection is timed from accept.
    let mut fresh = TcpStream::connect(server.addr).await.unwrap();
    let t = trickle(&mut fresh, HEALTHZ.as_bytes()).await;
    assert!(t.closed && t.received.is_empty(), "{t:?}");
    assert!(
        t.sent < HEALTHZ.len(),
        "cut before the head was complete: {t:?}"
    );

    // A kept-alive connection's next head is timed from its first byte.
    let mut kept = TcpStream::connect(server.addr).await.unwrap();
    kept.write_all(HEALTHZ.as_bytes()).await.unwrap();
    assert_eq!(
        within(LIVENESS, response(&mut kept)).await.unwrap().status,
        200
    );
    let t = trickle(&mut kept, HEALTHZ.as_bytes()).await;
    assert!(t.closed && t.received.is_empty(), "{t:?}");
    assert!(t.sent < HEALTHZ.len(), "{t:?}");
    assert_eq!(server.shut_down().await.cut, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_alive_connection_idles_past_the_header_timeout_and_closes_at_the_idle_timeout() {
    let server = start(&[(HEADER, "300ms"), (IDLE, "4s")]).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(HEALTHZ.as_bytes()).await.unwrap();
    assert_eq!(
        within(LIVENESS, response(&mut s)).await.unwrap().status,
        200
    );
    // Idle longer than the header timeout (hyper's own header timer would have closed it),
    // well within the idle timeout: the next request is served.
    tokio::time::sleep(Duration::from_millis(800)).await;
    s.write_all(HEALTHZ.as_bytes()).await.unwrap();
    let again = within(LIVENESS, response(&mut s)).await;
    assert_eq!(again.map(|a| a.status), Some(200));
    // Then nothing more: the server closes it.
    assert!(until_closed(&mut s).await.is_empty());
    assert_eq!(server.shut_down().await.cut, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_short_of_its_content_length_or_too_slow_gets_408_at_the_read_deadline() {
    let server = start(&[(READ, "500ms")]).await;
    // Declares 1000 bytes, sends 10.
    let mut short = TcpStream::connect(server.addr).await.unwrap();
    short
        .write_all(post(&server.token, 1000, "").as_bytes())
        .await
        .unwrap();
    short.write_all(b"{\"repos\":").await.unwrap();
    let answer = within(LIVENESS, response(&mut short))
        .await
        .expect("an answer");
    assert_eq!(answer.status, 408, "{}", answer.head);
    assert_eq!(json_of(&answer.body), json!({"error": "request timeout"}));
    assert!(answer.head.contains("connection: close"), "{}", answer.head);
    assert!(until_closed(&mut short).await.is_empty());

    // One byte per 100 ms: answered or closed long before the 50 declared bytes.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(post(&server.token, 50, "").as_bytes())
        .await
        .unwrap();
    let t = trickle(&mut slow, &[b' '; 50]).await;
    assert!(t.sent < 50, "{t:?}");
    let text = String::from_utf8_lossy(&t.received);
    assert!(
        t.closed || text.starts_with("HTTP/1.1 408"),
        "{t:?}: {text}"
    );
    assert_eq!(
        server.cluster.list_calls(),
        0,
        "nothing reached the cluster"
    );
    assert_eq!(server.shut_down().await.cut, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn route_and_token_are_checked_before_a_body_byte_is_read() {
    let server = start(&[]).await;
    let unknown = "0".repeat(64);
    // `Expect: 100-continue` to an unknown token: 404 straight away, no `100 Continue`.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(post(&unknown, 100, "Expect: 100-continue\r\n").as_bytes())
        .await
        .unwrap();
    let answer = within(LIVENESS, response(&mut s)).await.expect("an answer");
    assert_eq!(answer.status, 404, "no 100 Continue first: {}", answer.head);
    assert_eq!(json_of(&answer.body), json!({}));

    // The control: a known token is invited to send its body.
    let body = push(QUAY_REPO, &["v1"]);
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(post(&server.token, body.len(), "Expect: 100-continue\r\n").as_bytes())
        .await
        .unwrap();
    let interim = within(LIVENESS, response(&mut s)).await.expect("an answer");
    assert_eq!(interim.status, 100, "{}", interim.head);
    s.write_all(body.as_bytes()).await.unwrap();
    let answer = within(LIVENESS, response(&mut s)).await.expect("an answer");
    assert_eq!(answer.status, 200, "{}", answer.body);

    // 64 uploads of 2 MiB to an unknown token at once: each is answered while its client
    // has written none of its body, so the server cannot have buffered any of it.
    let uploads = (0..64).map(|_| {
        let head = post(&unknown, 2 * 1024 * 1024, "");
        let addr = server.addr;
        tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(head.as_bytes()).await.unwrap();
            response(&mut s).await.map(|a| a.status)
        })
    });
    let statuses = within(LIVENESS, futures::future::join_all(uploads)).await;
    let not_found = statuses
        .into_iter()
        .filter(|s| matches!(s, Ok(Some(404))))
        .count();
    assert_eq!(
        not_found, 64,
        "every upload answered 404 with 0 body bytes sent"
    );
    assert_eq!(server.shut_down().await.cut, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_connection_cap_queues_clients_in_the_backlog_until_a_slot_frees() {
    let server = start(&[(MAX_CONNECTIONS, "2"), (HEADER, "30s")]).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(HEALTHZ.as_bytes()).await.unwrap();
        assert_eq!(
            within(LIVENESS, response(&mut s)).await.unwrap().status,
            200
        );
        held.push(s);
    }
    // A third client connects (the kernel completes the handshake) but is not served...
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    third.write_all(HEALTHZ.as_bytes()).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(300), response(&mut third)).await;
    assert!(early.is_err(), "served over the cap");
    // ...until a slot frees.
    drop(held.pop());
    let answer = within(LIVENESS, response(&mut third)).await;
    assert_eq!(answer.map(|a| a.status), Some(200));
    server.shut_down().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_closes_idle_connections_at_once_and_lets_a_request_in_flight_finish() {
    let server = start(&[(GRACE, "20s")]).await;
    // The list answers after 1 s: the delivery is in flight when shutdown begins.
    server
        .cluster
        .on_list()
        .then(Step::delay(Duration::from_secs(1)));
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(HEALTHZ.as_bytes()).await.unwrap();
    assert_eq!(
        within(LIVENESS, response(&mut idle)).await.unwrap().status,
        200
    );
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"POST /qu").await.unwrap();
    let body = push(QUAY_REPO, &["v1"]);
    let mut busy = TcpStream::connect(server.addr).await.unwrap();
    busy.write_all(post(&server.token, body.len(), "").as_bytes())
        .await
        .unwrap();
    busy.write_all(body.as_bytes()).await.unwrap();
    within(LIVENESS, async {
        while server.cluster.list_calls() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    let _ = server.stop.send(());
    assert!(until_closed(&mut idle).await.is_empty(), "idle: closed");
    assert!(
        until_closed(&mut half).await.is_empty(),
        "half a head: closed"
    );
    let answer = within(LIVENESS, response(&mut busy))
        .await
        .expect("answered");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(until_closed(&mut busy).await.is_empty(), "then closed");
    let stopped = within(LIVENESS, server.task).await.unwrap();
    assert_eq!(stopped, Stopped { open: 3, cut: 0 });
}

// ---------------------------------------------------------------------------------------------
// The real binary: a descriptor limit and SIGTERM act on the process.

/// `quayhook serve` in file mode on a free port, its stderr collected; killed on drop.
struct Binary {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
    dir: PathBuf,
    token: String,
}

static BINARIES: AtomicU32 = AtomicU32::new(0);

/// Starts the binary, under `ulimit -n {fd_limit}` when given, with `env` on top of a file
/// mode configuration whose cluster is unreachable (the tests never get that far).
async fn binary(fd_limit: Option<u32>, env: &[(&str, &str)]) -> Binary {
    let n = BINARIES.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("quayhook-serve-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = "s3cret-binary";
    std::fs::write(
        dir.join("receivers.json"),
        json!([{"project": NS, "receiver": "quay", "secret": secret}]).to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("kubeconfig"),
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n",
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_quayhook");
    let mut cmd = match fd_limit {
        Some(limit) => {
            let mut cmd = Command::new("sh");
            cmd.arg("-c")
                .arg(format!(
                    "ulimit -n {limit} && exec \"$0\" serve --listen 127.0.0.1:0"
                ))
                .arg(bin);
            cmd
        }
        None => {
            let mut cmd = Command::new(bin);
            cmd.args(["serve", "--listen", "127.0.0.1:0"]);
            cmd
        }
    };
    cmd.env("QUAYHOOK_RECEIVERS_FILE", dir.join("receivers.json"))
        .env("QUAYHOOK_KUBECONFIG_FILE", dir.join("kubeconfig"))
        .env("QUAYHOOK_PREFETCH", "false")
        .env("RUST_LOG", "info")
        .env_remove("AWS_LAMBDA_LOG_LEVEL")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start quayhook serve");
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let addr = within(LIVENESS * 2, async {
        loop {
            let address = log.lock().unwrap().lines().find_map(|l| {
                let rest = l.split("address=").nth(1)?;
                rest.split_whitespace().next()?.parse::<SocketAddr>().ok()
            });
            if let Some(addr) = address {
                break addr;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "quayhook serve exited: {}",
                log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let token = kargo_match::token::receiver_token(NS, "quay", &SecretString::new(secret));
    Binary {
        child,
        addr,
        log,
        dir,
        token,
    }
}

impl Binary {
    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// `GET /healthz` on a new connection: its status, or `None` when none came.
    async fn healthz(&self) -> Option<u16> {
        let mut s = TcpStream::connect(self.addr).await.ok()?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        within(LIVENESS * 2, response(&mut s))
            .await
            .map(|a| a.status)
    }

    /// Waits (up to `limit`) for `text` to appear in the log.
    async fn logged(&mut self, text: &str, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline && self.running() {
            if self.log().contains(text) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.log().contains(text)
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        // Our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn idle_connections(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        // The kernel completes the handshake whether or not the server accepts; a refusal
        // means the server is gone, which the caller's checks report.
        match TcpStream::connect(addr).await {
            Ok(s) => out.push(s),
            Err(_) => break,
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn running_out_of_descriptors_is_logged_and_retried_not_fatal() {
    let mut server = binary(Some(64), &[(MAX_CONNECTIONS, "1000"), (HEADER, "60s")]).await;
    assert_eq!(server.healthz().await, Some(200));
    let clients = idle_connections(server.addr, 100).await;
    let failed = server.logged("accept failed", LIVENESS).await;
    assert!(server.running(), "serve exited: {}", server.log());
    assert!(failed, "accept never hit the limit: {}", server.log());
    drop(clients);
    assert_eq!(server.healthz().await, Some(200), "{}", server.log());
    assert!(server.running());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_connection_cap_is_reached_before_the_descriptor_limit() {
    let mut server = binary(Some(64), &[(MAX_CONNECTIONS, "16"), (HEADER, "60s")]).await;
    assert_eq!(server.healthz().await, Some(200));
    let clients = idle_connections(server.addr, 100).await;
    // Enough time for an uncapped server to exhaust its descriptors (see the test above).
    let failed = server.logged("accept failed", Duration::from_secs(1)).await;
    assert!(server.running(), "serve exited: {}", server.log());
    assert!(!failed, "{}", server.log());
    drop(clients);
    assert_eq!(server.healthz().await, Some(200), "{}", server.log());
    assert!(!server.log().contains("accept failed"), "{}", server.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_closes_idle_and_half_open_connections_and_cuts_uploads_at_the_grace() {
    let mut server = binary(
        None,
        &[(GRACE, "1s"), (HEADER, "60s"), (READ, "60s"), (IDLE, "60s")],
    )
    .await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(HEALTHZ.as_bytes()).await.unwrap();
    assert_eq!(
        within(LIVENESS, response(&mut idle)).await.unwrap().status,
        200
    );
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"POST /qu").await.unwrap();
    // `100 Continue` comes once the server reads the body: the upload is then in flight.
    let mut upload = TcpStream::connect(server.addr).await.unwrap();
    upload
        .write_all(post(&server.token, 1000, "Expect: 100-continue\r\n").as_bytes())
        .await
        .unwrap();
    let interim = within(LIVENESS, response(&mut upload))
        .await
        .expect("an answer");
    assert_eq!(interim.status, 100, "{}", interim.head);
    upload.write_all(b"{\"repos\":").await.unwrap();

    let pid = server.child.id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());
    assert!(until_closed(&mut idle).await.is_empty(), "idle: closed");
    assert!(
        until_closed(&mut half).await.is_empty(),
        "half a head: closed"
    );
    assert!(
        until_closed(&mut upload).await.is_empty(),
        "the upload: cut, unanswered"
    );
    // The grace is 1 s; the bound only says "exits".
    let exited = within(LIVENESS, async {
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(exited.success(), "{exited}: {}", server.log());
    let log = server.log();
    assert!(log.contains("cut=1"), "{log}");
    assert!(!log.contains(&server.token), "no token in the logs");
}
