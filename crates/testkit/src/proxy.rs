//! A TCP proxy on loopback that adds real latency and injects faults in front of any server:
//! moto for protocol-level fault tests, any endpoint for network benchmarks.
//!
//! The machines have no `tc netem` (see `tooling.md`), so latency is made in userspace, the way
//! toxiproxy's latency toxic makes it: every chunk read in either direction is forwarded
//! `one_way` later, in order, from a per-direction queue of `(deadline, bytes)`. Reading goes on
//! while earlier chunks wait, so throughput is not bound by the round trip. A new connection
//! also holds its first byte towards the upstream for one round trip (2 × `one_way`), which
//! stands for the SYN exchange: with 10 ms each way a new TLS connection costs TCP + TLS +
//! request in round trips, a reused one a single round trip per request.
//!
//! Faults ([`Mode`]) and latency can be changed while connections are open. Counts
//! (connections, bytes each way) let a test assert how many attempts a client made instead of
//! how long it took.
//!
//! Test support, I/O: listens on `127.0.0.1`, connects to the upstream, spawns tokio tasks.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// What the proxy does with connections, switchable at run time with [`Proxy::set_mode`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways (after the configured latency).
    #[default]
    Pass,
    /// A hanging endpoint: accept and read, but never forward nor answer. A connection
    /// accepted in this mode hangs for its whole life; on an open connection, chunks read
    /// while this mode holds are discarded.
    Hang,
    /// Accept, then close at once: the client sees EOF (or a reset if it already wrote). On
    /// an open connection, the next chunk read in either direction closes it.
    Refuse,
    /// Forward at most this many bytes per connection (both directions together, counted
    /// from its start), then close it: a connection cut mid-request or mid-response.
    DropAfter(u64),
}

/// How a [`Proxy`] starts; both fields can be changed later.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Delay added to every chunk in each direction.
    pub one_way: Duration,
    /// Initial fault mode.
    pub mode: Mode,
}

/// Settings and counters shared by the proxy handle and its tasks.
#[derive(Default)]
struct Shared {
    mode: Mutex<Mode>,
    one_way: Mutex<Duration>,
    connections: AtomicUsize,
    open: AtomicUsize,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

fn lock<T: Copy>(m: &Mutex<T>) -> T {
    // The guarded values are plain `Copy` data written in one assignment.
    *m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running proxy from `127.0.0.1:<port>` to one upstream address.
///
/// Dropping it stops it: the listener closes and every proxied connection is closed.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Binds `127.0.0.1:0` and proxies every accepted connection to `upstream`.
    ///
    /// # Panics
    /// When no loopback port can be bound, or outside a tokio runtime.
    pub async fn start(upstream: SocketAddr, options: Options) -> Proxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind a loopback port for the proxy");
        let addr = listener.local_addr().expect("proxy local addr");
        let shared = Arc::new(Shared {
            mode: Mutex::new(options.mode),
            one_way: Mutex::new(options.one_way),
            ..Shared::default()
        });
        let accept = tokio::spawn(accept_loop(listener, upstream, shared.clone()));
        Proxy {
            addr,
            shared,
            accept,
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, for an SDK's endpoint URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches the fault mode; see [`Mode`] for what happens to open connections.
    pub fn set_mode(&self, mode: Mode) {
        *self
            .shared
            .mode
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = mode;
    }

    /// The current fault mode.
    pub fn mode(&self) -> Mode {
        lock(&self.shared.mode)
    }

    /// Sets the delay per direction for chunks read from now on (earlier ones keep theirs,
    /// and order is kept either way).
    pub fn set_one_way(&self, one_way: Duration) {
        *self
            .shared
            .one_way
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = one_way;
    }

    /// The current delay per direction.
    pub fn one_way(&self) -> Duration {
        lock(&self.shared.one_way)
    }

    /// Connections accepted since start or the last [`Proxy::reset_counts`], whatever their mode.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Connections open now (a gauge: not reset by [`Proxy::reset_counts`]).
    pub fn open(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Bytes written to the upstream (client → server) since the last reset.
    pub fn bytes_up(&self) -> u64 {
        self.shared.bytes_up.load(Ordering::SeqCst)
    }

    /// Bytes written to clients (server → client) since the last reset.
    pub fn bytes_down(&self) -> u64 {
        self.shared.bytes_down.load(Ordering::SeqCst)
    }

    /// Zeroes the connection and byte counts.
    pub fn reset_counts(&self) {
        self.shared.connections.store(0, Ordering::SeqCst);
        self.shared.bytes_up.store(0, Ordering::SeqCst);
        self.shared.bytes_down.store(0, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The accept task owns the connection tasks' JoinSet: dropping it aborts them all.
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of descriptors, most likely: wait rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let accepted = Instant::now();
        shared.connections.fetch_add(1, Ordering::SeqCst);
        while connections.try_join_next().is_some() {}
        let shared = shared.clone();
        connections.spawn(async move {
            shared.open.fetch_add(1, Ordering::SeqCst);
            let _open = OpenGuard(shared.clone());
            serve(client, upstream, &shared, accepted).await;
        });
    }
}

/// Decrements the open-connections gauge however the connection task ends (even aborted).
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, shared: &Shared, accepted: Instant) {
    match lock(&shared.mode) {
        Mode::Refuse => return,
        Mode::Hang => {
            let mut buf = vec![0; 16 * 1024];
            while matches!(client.read(&mut buf).await, Ok(n) if n > 0) {}
            return;
        }
        Mode::Pass | Mode::DropAfter(_) => {}
    }
    let _ = client.set_nodelay(true);
    let Ok(server) = TcpStream::connect(upstream).await else {
        return; // the client sees the upstream's refusal as a closed connection
    };
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let forwarded = AtomicU64::new(0);
    let up = Direction {
        shared,
        forwarded: &forwarded,
        counter: &shared.bytes_up,
        // The first byte towards the server waits for the modelled handshake.
        hold_until: Some(accepted + 2 * lock(&shared.one_way)),
    };
    let down = Direction {
        counter: &shared.bytes_down,
        hold_until: None,
        ..up
    };
    let (up_tx, up_rx) = mpsc::unbounded_channel();
    let (down_tx, down_rx) = mpsc::unbounded_channel();
    // The first direction to fail or to be cut ends the whole connection: both sockets drop.
    let _ = tokio::try_join!(
        up.read(client_read, up_tx),
        up.write(up_rx, server_write),
        down.read(server_read, down_tx),
        down.write(down_rx, client_write),
    );
}

/// One queued chunk, or the end of a direction.
enum Item {
    Data(Vec<u8>),
    /// The reader saw EOF: half-close the other side.
    Eof,
    /// A fault cut the connection here.
    Cut,
}

/// The connection is to be closed in both directions.
struct Closed;

#[derive(Clone, Copy)]
struct Direction<'a> {
    shared: &'a Shared,
    /// Bytes forwarded on this connection, both directions (for [`Mode::DropAfter`]).
    forwarded: &'a AtomicU64,
    counter: &'a AtomicU64,
    hold_until: Option<Instant>,
}

impl Direction<'_> {
    /// Reads chunks and queues each with its deadline, applying the current mode per chunk.
    async fn read(
        self,
        mut from: impl AsyncRead + Unpin,
        queue: mpsc::UnboundedSender<(Instant, Item)>,
    ) -> Result<(), Closed> {
        let mut buf = vec![0; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) => 0,
                Ok(n) => n,
                Err(_) => return Err(Closed),
            };
            let now = Instant::now();
            let start = self.hold_until.map_or(now, |hold| hold.max(now));
            let deadline = start + lock(&self.shared.one_way);
            let send = |item| queue.send((deadline, item)).map_err(|_| Closed);
            if n == 0 {
                return send(Item::Eof);
            }
            match lock(&self.shared.mode) {
                Mode::Pass => {
                    self.forwarded.fetch_add(n as u64, Ordering::SeqCst);
                    send(Item::Data(buf[..n].to_vec()))?;
                }
                Mode::Hang => {}
                Mode::Refuse => return Err(Closed),
                Mode::DropAfter(limit) => {
                    let before = self.forwarded.fetch_add(n as u64, Ordering::SeqCst);
                    let room = usize::try_from(limit.saturating_sub(before)).unwrap_or(usize::MAX);
                    if room >= n {
                        send(Item::Data(buf[..n].to_vec()))?;
                    } else {
                        if room > 0 {
                            send(Item::Data(buf[..room].to_vec()))?;
                        }
                        return send(Item::Cut);
                    }
                }
            }
        }
    }

    /// Writes queued chunks in order, each no earlier than its deadline.
    async fn write(
        self,
        mut queue: mpsc::UnboundedReceiver<(Instant, Item)>,
        mut to: impl AsyncWrite + Unpin,
    ) -> Result<(), Closed> {
        while let Some((deadline, item)) = queue.recv().await {
            if deadline > Instant::now() {
                tokio::time::sleep_until(deadline).await;
            }
            match item {
                Item::Data(bytes) => {
                    to.write_all(&bytes).await.map_err(|_| Closed)?;
                    self.counter.fetch_add(bytes.len() as u64, Ordering::SeqCst);
                }
                Item::Eof => {
                    let _ = to.shutdown().await;
                    return Ok(());
                }
                Item::Cut => return Err(Closed),
            }
        }
        Ok(())
    }
}
