//! The loopback proxy against a tiny echo server: latency as a lower bound per round trip,
//! order under latency, each fault mode, and the counts.
//!
//! Timings are asserted only as lower bounds (what the proxy adds); nothing here is a
//! performance claim.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use quayhook_testkit::proxy::{Mode, Options, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ONE_WAY: Duration = Duration::from_millis(20);
/// How long a client waits before concluding that nothing will come.
const QUIET: Duration = Duration::from_millis(150);

/// An echo server on loopback; it runs until the test's runtime ends.
async fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn proxy(one_way: Duration, mode: Mode) -> Proxy {
    Proxy::start(echo().await, Options { one_way, mode }).await
}

async fn round_trip(stream: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    stream.write_all(msg).await.unwrap();
    let mut back = vec![0; msg.len()];
    stream.read_exact(&mut back).await.unwrap();
    back
}

#[tokio::test]
async fn a_new_connection_costs_two_round_trips_and_a_reused_one_one() {
    let p = proxy(ONE_WAY, Mode::Pass).await;
    assert!(p.url().starts_with("http://127.0.0.1:"), "{}", p.url());

    let started = Instant::now();
    let mut stream = TcpStream::connect(p.addr()).await.unwrap();
    assert_eq!(round_trip(&mut stream, b"ping").await, b"ping");
    let first = started.elapsed();
    assert!(
        first >= 4 * ONE_WAY,
        "connect + first round trip took {first:?}, less than the modelled handshake + RTT"
    );

    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(round_trip(&mut stream, b"again").await, b"again");
        let rtt = started.elapsed();
        assert!(rtt >= 2 * ONE_WAY, "a reused round trip took {rtt:?}");
    }
}

#[tokio::test]
async fn bytes_keep_their_order_under_latency_even_when_it_changes() {
    let p = proxy(ONE_WAY, Mode::Pass).await;
    let stream = TcpStream::connect(p.addr()).await.unwrap();
    let (mut r, mut w) = stream.into_split();
    let sent: Vec<u8> = (0..=255u8).cycle().take(64 * 1024).collect();
    let chunks: Vec<Vec<u8>> = sent.chunks(997).map(<[u8]>::to_vec).collect();
    let writer = tokio::spawn(async move {
        for (i, chunk) in chunks.iter().enumerate() {
            w.write_all(chunk).await.unwrap();
            if i % 8 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        w.shutdown().await.unwrap();
    });
    // Later chunks get earlier deadlines than the ones queued before them: order must hold.
    tokio::time::sleep(Duration::from_millis(5)).await;
    p.set_one_way(Duration::ZERO);
    assert_eq!(p.one_way(), Duration::ZERO);
    let mut got = Vec::new();
    r.read_to_end(&mut got).await.unwrap();
    writer.await.unwrap();
    assert_eq!(got.len(), sent.len());
    assert!(got == sent, "bytes reordered or altered");
    assert_eq!(p.bytes_up(), sent.len() as u64);
    assert_eq!(p.bytes_down(), sent.len() as u64);
}

#[tokio::test]
async fn hang_accepts_and_reads_but_never_answers() {
    let p = proxy(Duration::ZERO, Mode::Hang).await;
    assert_eq!(p.mode(), Mode::Hang);
    let mut stream = TcpStream::connect(p.addr()).await.unwrap();
    stream.write_all(b"anyone there?").await.unwrap();
    let mut buf = [0; 16];
    let waited = tokio::time::timeout(QUIET, stream.read(&mut buf)).await;
    assert!(waited.is_err(), "a hanging endpoint answered: {waited:?}");
    assert_eq!(p.connections(), 1);
    assert_eq!(p.open(), 1, "the hanging connection stays open");
    assert_eq!(p.bytes_up(), 0, "nothing was forwarded");
    assert_eq!(p.bytes_down(), 0);
}

#[tokio::test]
async fn refuse_closes_a_new_connection_at_once() {
    let p = proxy(Duration::ZERO, Mode::Refuse).await;
    let mut stream = TcpStream::connect(p.addr()).await.unwrap();
    let mut buf = [0; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("closed, not hanging")
        .unwrap();
    assert_eq!(n, 0, "EOF");
    assert_eq!(p.connections(), 1);
    assert_eq!(p.bytes_up(), 0);
}

#[tokio::test]
async fn a_mode_switch_reaches_an_open_connection() {
    let p = proxy(Duration::ZERO, Mode::Pass).await;
    let mut stream = TcpStream::connect(p.addr()).await.unwrap();
    assert_eq!(round_trip(&mut stream, b"one").await, b"one");

    p.set_mode(Mode::Hang);
    stream.write_all(b"two").await.unwrap();
    let mut buf = [0; 16];
    let waited = tokio::time::timeout(QUIET, stream.read(&mut buf)).await;
    assert!(waited.is_err(), "answered while hanging: {waited:?}");

    p.set_mode(Mode::Refuse);
    stream.write_all(b"three").await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("closed, not hanging");
    assert!(
        matches!(end, Ok(0)) || end.is_err(),
        "EOF or reset, not data: {end:?}"
    );
    assert_eq!(p.bytes_up(), 3, "only the first message went through");
}

#[tokio::test]
async fn drop_after_cuts_the_connection_after_n_bytes_both_ways() {
    let p = proxy(Duration::ZERO, Mode::DropAfter(10)).await;
    let mut stream = TcpStream::connect(p.addr()).await.unwrap();
    // 8 bytes up leave 2 for the echo before the cut.
    stream.write_all(b"12345678").await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got))
        .await
        .expect("cut, not hanging");
    assert_eq!(got, b"12");
    assert_eq!((p.bytes_up(), p.bytes_down()), (8, 2));
}

#[tokio::test]
async fn counts_connections_and_bytes_until_reset() {
    let p = proxy(Duration::ZERO, Mode::Pass).await;
    for msg in [&b"hello"[..], b"world!"] {
        let mut stream = TcpStream::connect(p.addr()).await.unwrap();
        assert_eq!(round_trip(&mut stream, msg).await, msg);
    }
    assert_eq!(p.connections(), 2);
    assert_eq!((p.bytes_up(), p.bytes_down()), (11, 11));
    p.reset_counts();
    assert_eq!((p.connections(), p.bytes_up(), p.bytes_down()), (0, 0, 0));
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_connections_and_its_port() {
    let p = proxy(Duration::ZERO, Mode::Pass).await;
    let addr = p.addr();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    assert_eq!(round_trip(&mut stream, b"x").await, b"x");
    drop(p);
    let mut buf = [0; 4];
    let end = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("closed by the drop");
    assert!(matches!(end, Ok(0)) || end.is_err(), "{end:?}");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the port no longer accepts"
    );
}
