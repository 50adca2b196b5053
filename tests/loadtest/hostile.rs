//! The hostile mix: `quayhook::serve::serve` in process on 127.0.0.1, with the real adapters,
//! answering 300 valid pushes in bursts of 30 over loopback HTTP/1.1, first alone, then beside:
//!
//! - 50 clients sending a head 1 byte per 200 ms (each cut at the header timeout, unanswered,
//!   then reconnecting), and 20 sending a body at that pace (each answered 408 at the read
//!   timeout, then reconnecting), started one header timeout ahead and staggered over their
//!   timeout, so that connections are cut and opened all through the valid pushes;
//! - 200 POSTs to random tokens declaring and sending a 2 MiB body, 20 as each burst starts:
//!   each answered 404 without the body being read;
//! - one push with 100,000 distinct tags: 200, `tagsNotConsidered` set, a small answer.
//!
//! The valid pushes get the crate's checks (`main.rs`) in both runs; the hostile traffic gets
//! the checks above. The header and read timeouts are shortened to keep the run short.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kargo_match::quay::MAX_BODY_BYTES;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::deliveries::{check_answer, deliver_all, resend};
use super::http::{self, Trickled, UPLOAD_SEND_BUFFER};
use super::rig::{Rig, Via};
use super::{Delivery, PROJECTS, Rng, exclusive, ms, panics_since, percentile, plan, record, repo};

const DELIVERIES: usize = 300;
const BURST: usize = 30;
const SLOW_HEADS: usize = 50;
const SLOW_BODIES: usize = 20;
const FLOODS: usize = 200;
const MANY_TAGS: usize = 100_000;
/// The burst beside which the many-tag push is sent.
const MANY_TAGS_AT: usize = 2;
/// The pace of slow clients: one byte per this.
const TRICKLE: Duration = Duration::from_millis(200);
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
const READ_TIMEOUT: Duration = Duration::from_secs(3);

#[test]
fn hostile_mix_leaves_valid_deliveries_answered() {
    exclusive(run);
}

async fn run(panics_before: usize) {
    let header_timeout = format!("{}ms", HEADER_TIMEOUT.as_millis());
    let read_timeout = format!("{}ms", READ_TIMEOUT.as_millis());
    let rig = Rig::start(&[
        ("QUAYHOOK_SERVE_HEADER_TIMEOUT", header_timeout.as_str()),
        ("QUAYHOOK_SERVE_READ_TIMEOUT", read_timeout.as_str()),
        ("QUAYHOOK_SERVE_SHUTDOWN_GRACE", "1s"),
    ])
    .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("bound address");
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(quayhook::serve::serve(
        Arc::clone(&rig.state),
        listener,
        async {
            let _ = stopped.await;
        },
    ));
    let via = Via::Http(addr);
    let mut rng = Rng(0x0bad_c0de_5eed_0009);
    let deliveries = plan(&mut rng, &rig, DELIVERIES);
    let many_tags = many_tag_push(&rig);

    rig.failing.store(true, Ordering::SeqCst);
    let alone = deliver_all(&rig, via, &deliveries, BURST, |_| {}).await;

    // The slow clients, staggered over their timeout, going on until the valid pushes are
    // answered.
    let stop = Arc::new(AtomicBool::new(false));
    let token = &rig.tokens[PROJECTS[0]];
    let path = format!("/quay/{token}");
    let body = super::push(&repo(0), &["v1.0.3"]);
    let spawn_slow = |n: usize, over: Duration, prefix: Vec<u8>, slow: Vec<u8>| -> Vec<_> {
        (0..n)
            .map(|i| {
                let (prefix, slow, stop) = (prefix.clone(), slow.clone(), Arc::clone(&stop));
                let stagger = over * i as u32 / n as u32;
                tokio::spawn(async move {
                    tokio::time::sleep(stagger).await;
                    keep_trickling(addr, &prefix, &slow, &stop).await
                })
            })
            .collect()
    };
    let head = http::head(&path, body.len()).into_bytes();
    let slow_heads = spawn_slow(SLOW_HEADS, HEADER_TIMEOUT, Vec::new(), head.clone());
    let slow_bodies = spawn_slow(SLOW_BODIES, READ_TIMEOUT, head.clone(), body.into_bytes());
    tokio::time::sleep(HEADER_TIMEOUT).await;

    // Floods and the many-tag push, started as bursts start.
    let flood_body: Arc<[u8]> = vec![b'x'; MAX_BODY_BYTES].into();
    let per_burst = FLOODS / DELIVERIES.div_ceil(BURST);
    let mut floods = Vec::new();
    let mut many = None;
    let beside = deliver_all(&rig, via, &deliveries, BURST, |k| {
        for _ in 0..per_burst {
            let path = format!("/quay/{}", random_token(&mut rng));
            let body = Arc::clone(&flood_body);
            floods.push(tokio::spawn(async move {
                http::upload(addr, &path, &body).await
            }));
        }
        if k == MANY_TAGS_AT {
            let (state, token) = (
                Arc::clone(&rig.state),
                rig.tokens[many_tags.project].clone(),
            );
            let body = many_tags.body.clone();
            many = Some(tokio::spawn(async move {
                via.send(&state, &token, &body).await
            }));
        }
    })
    .await;
    stop.store(true, Ordering::SeqCst);

    // The many-tag push: answered like any push (re-sent on a 5xx, as Quay does).
    let a = many
        .expect("sent")
        .await
        .expect("the many-tag push panicked");
    let retry = if check_answer(DELIVERIES, &many_tags, &a) {
        vec![0]
    } else {
        Vec::new()
    };
    resend(&rig, via, std::slice::from_ref(&many_tags), retry).await;
    let lost = rig.lost([(&many_tags, a.sent)]);
    assert!(lost.is_empty(), "refreshes lost: {lost:?}");
    if a.status == 200 {
        assert_eq!(
            a.body["tagsNotConsidered"],
            MANY_TAGS - rig.state.config.max_tags,
            "{}",
            a.body
        );
    }
    let answer_bytes = a.body.to_string().len() + 1;
    assert!(answer_bytes < 64 * 1024, "answer of {answer_bytes} bytes");
    rig.failing.store(false, Ordering::SeqCst);

    let mut flood_statuses = std::collections::BTreeMap::<u16, usize>::new();
    let (mut flood_sent, mut flood_sent_max) = (0, 0);
    for flood in floods {
        let up = flood.await.expect("a flood panicked");
        *flood_statuses.entry(up.reply.status).or_default() += 1;
        assert_eq!(
            (up.reply.status, up.reply.json()),
            (404, json!({})),
            "an unknown token is answered 404 {{}}"
        );
        flood_sent += up.sent;
        flood_sent_max = flood_sent_max.max(up.sent);
    }

    let (heads, heads_open) = joined(slow_heads).await;
    for t in &heads {
        assert!(
            t.answer.is_none(),
            "a late head is not answered: {:?}",
            t.answer
        );
        assert!(t.sent < head.len(), "cut before the head was complete");
    }
    let (bodies, bodies_open) = joined(slow_bodies).await;
    for t in &bodies {
        let answer = t.answer.as_ref().expect("a late body is answered");
        assert_eq!(
            (answer.status, answer.json()),
            (408, json!({ "error": "request timeout" }))
        );
    }

    let _ = stop_server.send(());
    let stopped = server.await.expect("serve panicked");

    let report = json!({
        "hostile": {
            "deliveries": DELIVERIES,
            "burst": BURST,
            "header_timeout_ms": HEADER_TIMEOUT.as_millis() as u64,
            "read_timeout_ms": READ_TIMEOUT.as_millis() as u64,
            "trickle_ms": TRICKLE.as_millis() as u64,
            "alone": alone.json(),
            "beside": beside.json(),
            "slow_heads": {
                "clients": SLOW_HEADS,
                "connections": heads.len(),
                "open_at_end": heads_open,
                "closed_unanswered": heads.iter().filter(|t| t.answer.is_none()).count(),
                "max_bytes_sent": heads.iter().map(|t| t.sent).max(),
                "head_bytes": head.len(),
                "median_open_ms": median_open_ms(&heads),
            },
            "slow_bodies": {
                "clients": SLOW_BODIES,
                "connections": bodies.len(),
                "open_at_end": bodies_open,
                "answered_408": bodies.iter().filter(|t| t.answer.as_ref().is_some_and(|a| a.status == 408)).count(),
                "median_open_ms": median_open_ms(&bodies),
            },
            "floods": {
                "requests": FLOODS,
                "body_bytes": MAX_BODY_BYTES,
                "statuses": flood_statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "send_buffer": UPLOAD_SEND_BUFFER,
                "body_bytes_sent_max": flood_sent_max,
                "body_bytes_sent_total": flood_sent,
            },
            "many_tags": {
                "tags": MANY_TAGS,
                "request_bytes": many_tags.body.len(),
                "status": a.status,
                "tags_not_considered": a.body["tagsNotConsidered"],
                "answer_bytes": answer_bytes,
                "latency_ms": ms(a.latency),
            },
            "server": { "open_at_shutdown": stopped.open, "cut_at_shutdown": stopped.cut },
            "panics": panics_since(panics_before),
        }
    });
    println!("loadtest: {report:#}");
    record(&report);
}

/// One push to `alpha`'s subscribed `app-0` with [`MANY_TAGS`] distinct tags.
fn many_tag_push(rig: &Rig) -> Delivery {
    let tags: Vec<String> = (0..MANY_TAGS).map(|i| format!("build-{i:06}")).collect();
    let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    let d = Delivery::new(
        &rig.index,
        rig.state.config.max_tags,
        PROJECTS[0],
        &repo(0),
        &refs,
    );
    assert!(d.body.len() <= MAX_BODY_BYTES, "{} bytes", d.body.len());
    d
}

fn random_token(rng: &mut Rng) -> String {
    (0..4).map(|_| format!("{:016x}", rng.next())).collect()
}

/// Never set: the first connection of each slow client is seen through to its end.
static NEVER: AtomicBool = AtomicBool::new(false);

/// A slow client: trickles `prefix` + `slow` on one connection after another until `stop`.
/// Returns what happened to each connection that ended (at least one), and whether one was
/// still open at `stop` (then abandoned).
async fn keep_trickling(
    addr: std::net::SocketAddr,
    prefix: &[u8],
    slow: &[u8],
    stop: &AtomicBool,
) -> (Vec<Trickled>, bool) {
    let mut ended = Vec::new();
    loop {
        let abandon = if ended.is_empty() { &NEVER } else { stop };
        match http::trickle(addr, prefix, slow, TRICKLE, abandon).await {
            Some(t) => ended.push(t),
            None if stop.load(Ordering::SeqCst) => return (ended, true),
            // The connection failed: try again at the client's pace.
            None => tokio::time::sleep(TRICKLE).await,
        }
        if stop.load(Ordering::SeqCst) {
            return (ended, false);
        }
    }
}

/// Every ended connection of `clients`, and how many were open at the end.
async fn joined(clients: Vec<JoinHandle<(Vec<Trickled>, bool)>>) -> (Vec<Trickled>, usize) {
    let (mut ended, mut open) = (Vec::new(), 0);
    for client in clients {
        let (done, was_open) = client.await.expect("a slow client panicked");
        ended.extend(done);
        open += usize::from(was_open);
    }
    (ended, open)
}

fn median_open_ms(ended: &[Trickled]) -> Value {
    let mut open: Vec<Duration> = ended.iter().map(|t| t.open).collect();
    open.sort();
    json!(ms(percentile(&open, 50.0)))
}
