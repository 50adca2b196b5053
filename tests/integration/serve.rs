//! `quayhook serve`: the same handler over real HTTP/1.1, including what only a socket can
//! show (a chunked upload with no length).

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use quayhook_testkit::events::push;
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
    server.await.unwrap().unwrap();
}
