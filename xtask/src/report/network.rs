//! The "Real network" section of BENCHMARKS.md, from `network.json`: quayhook over HTTP/2 and
//! HTTP/1.1 and Kargo's request model through a delaying TCP proxy, in round trips and
//! connections opened, with the ratio against the Kargo model.
//!
//! Pure: formats a result file already read.

use serde_json::Value;

use super::{f1, machine_line, mmm, verdict};

/// The median of a stats field of a row.
fn median(row: &Value, field: &str) -> f64 {
    row[field]["median"].as_f64().unwrap_or(f64::NAN)
}

/// One model's delivery at one moment and N: its figures with the delay, and the same
/// delivery's with no added delay (local runs only).
struct Measured<'a> {
    row: &'a Value,
    baseline: Option<&'a Value>,
    /// The RTT the delay adds, as measured through the proxy (with delay − without).
    rtt_ms: f64,
}

impl Measured<'_> {
    fn ms(&self) -> f64 {
        median(self.row, "ms")
    }

    /// Round trips on the critical path: (latency − latency with no delay) ÷ the RTT the delay
    /// adds; against a real cluster, where there is no baseline, latency ÷ RTT.
    fn network_rtts(&self) -> f64 {
        match self.baseline {
            Some(b) => (self.ms() - median(b, "ms")) / self.rtt_ms,
            None => self.ms() / self.rtt_ms,
        }
    }
}

/// The section of `network.json`, with its targets.
pub(super) fn section(r: &Value) -> String {
    let rows = r["rows"].as_array().cloned().unwrap_or_default();
    let passes = r["passes"].as_array().cloned().unwrap_or_default();
    let one_way = |p: &Value| p["one_way_ms"].as_f64().unwrap_or(0.0);
    let Some(delayed) = passes
        .iter()
        .max_by(|a, b| one_way(a).total_cmp(&one_way(b)))
    else {
        return String::from("## Real network\n\nNo measurement.\n");
    };
    let baseline = passes
        .iter()
        .find(|p| one_way(p) == 0.0 && one_way(delayed) > 0.0);
    let rtt = |p: &Value| p["rtt_reused_ms"].as_f64().unwrap_or(f64::NAN);
    let rtt_ms = rtt(delayed) - baseline.map_or(0.0, rtt);
    let of_pass = |pass: &Value| -> Vec<&Value> {
        rows.iter()
            .filter(|x| x["one_way_ms"].as_f64() == pass["one_way_ms"].as_f64())
            .collect()
    };
    let base_rows = baseline.map(of_pass).unwrap_or_default();
    let measured: Vec<Measured> = of_pass(delayed)
        .into_iter()
        .map(|row| Measured {
            row,
            baseline: base_rows.iter().copied().find(|b| {
                b["model"] == row["model"] && b["moment"] == row["moment"] && b["n"] == row["n"]
            }),
            rtt_ms,
        })
        .collect();
    let find = |model: &str, moment: &str, n: &Value| {
        measured
            .iter()
            .find(|m| m.row["model"] == model && m.row["moment"] == moment && &m.row["n"] == n)
    };
    let mut s = String::from("## Real network\n\n");
    s += &format!(
        "{}\n\n`make bench-network` (`cargo xtask network`, xtask/src/network.rs) against {}. \
         Real sockets with real delay: the test kit's TCP proxy (crates/testkit/src/proxy.rs) \
         sits between the client and the API server and delays every chunk {} ms each way, and \
         holds a new connection's first byte for one round trip (the SYN exchange); Secrets \
         Manager (moto) sits behind a proxy of its own with the same delay. The proxy's measured \
         RTT in this run (request/answer to an echo server through it, median of 5): {} ms on \
         a reused connection, {} ms on a new one (expected: 1 and 2 RTT; tokio's timer wakes \
         up to a millisecond late each way).{}\n\n",
        machine_line(&r["machine"]),
        r["cluster"].as_str().unwrap_or("?"),
        f1(&delayed["one_way_ms"]),
        f1(&delayed["rtt_reused_ms"]),
        f1(&delayed["rtt_new_ms"]),
        match baseline {
            Some(b) => format!(
                " Every delivery also ran with no added delay through the same proxies ({} ms \
                 reused RTT): that latency is CPU and loopback, the same with or without a \
                 network, and the RTT unit below is what the delay adds, {} ms.",
                f1(&b["rtt_reused_ms"]),
                f1(&Value::from(rtt_ms)),
            ),
            None => String::new(),
        },
    );
    s += &format!(
        "*warm*: a client that delivered a moment ago. *after quiet*: the API server closed the \
         connections it held, then {} s of nothing. This models a quiet period longer than 90 s \
         without waiting for it: kube-apiserver closes a connection that carried no request for \
         90 s, and hyper's pool (before quayhook set its own idle timeout) dropped idle \
         connections after 90 s; either way the next push finds no connection, and what counts \
         is how many it opens. (The index is still fresh here; after a real quiet period longer \
         than `QUAYHOOK_INDEX_TTL` a list is added.) *cold*: a new `State` (quayhook) or client \
         (Kargo) per delivery: quayhook reads the receiver secrets and the kubeconfig from \
         Secrets Manager, connects, lists and patches. *quayhook HTTP/1.1* is today's behaviour \
         of an HTTP/1.1-only client, made by an API server that offers only `http/1.1` through \
         ALPN (`Alpn::Http1Only`). *Kargo model*: kube (HTTP/1.1), one uncached Secret GET, then \
         one merge PATCH per Warehouse, one after another over one reused connection, as \
         client-go does. Connections = TCP connections opened to the API server during the \
         delivery (counted by the proxy; Secrets Manager's are not counted). *ms* = latency \
         with the delay, `median (min–max)` over {} deliveries per row; *no delay* = the same \
         delivery's median with no added delay. *network round trips* = (ms − no delay) ÷ RTT: \
         the round trips one after another on the delivery's critical path. *in RTTs* = ms ÷ \
         RTT, CPU included. Ratios = Kargo model ÷ this row, medians of the same moment: of \
         latency, and of network round trips.\n\n",
        f1(&r["quiet_s"]),
        r["runs"],
    );
    s += "| N | moment | model | ms | no delay ms | network round trips | in RTTs | connections opened | ratio, latency | ratio, network |\n";
    s += "|---:|---|---|---|---:|---:|---:|---|---:|---:|\n";
    for m in &measured {
        let kargo = find(
            "Kargo model",
            m.row["moment"].as_str().unwrap_or(""),
            &m.row["n"],
        )
        .filter(|_| m.row["model"] != "Kargo model");
        let ratio = |f: fn(&Measured<'_>) -> f64| {
            kargo.map_or("–".into(), |k| format!("{:.1}", f(k) / f(m)))
        };
        s += &format!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {} | {} | {} |\n",
            m.row["n"],
            m.row["moment"].as_str().unwrap_or(""),
            m.row["model"].as_str().unwrap_or(""),
            mmm(&m.row["ms"]),
            m.baseline.map_or("–".into(), |b| f1(&b["ms"]["median"])),
            m.network_rtts(),
            m.ms() / rtt_ms,
            mmm(&m.row["connections"]),
            ratio(|m| m.ms()),
            ratio(|m| m.network_rtts()),
        );
    }
    let mut targets = Vec::new();
    let h2 = "quayhook HTTP/2";
    for m in measured.iter().filter(|m| m.row["model"] == h2) {
        let n = m.row["n"].as_f64().unwrap_or(0.0);
        let moment = m.row["moment"].as_str().unwrap_or("");
        let conns = m.row["connections"]["max"].as_f64().unwrap_or(f64::NAN);
        match moment {
            "warm" => {
                let rtts = m.network_rtts();
                targets.push(format!(
                    "- Real network, warm N={n} over HTTP/2: {rtts:.2} network round trips, {:.2} RTT of latency with CPU (target 1 round trip, met when the network round trips round to 1: {}), {conns} new connection(s) at most (target 0: {}).",
                    m.ms() / rtt_ms,
                    verdict(rtts < 1.5),
                    verdict(conns == 0.0)
                ));
                if n >= 10.0
                    && let Some(k) = find("Kargo model", "warm", &m.row["n"])
                {
                    let ratio = k.network_rtts() / rtts;
                    targets.push(format!(
                        "- Real network, warm N={n}: ratio vs the Kargo model {ratio:.1} in network round trips (target ≥ {n}: {}); {:.1} in latency, CPU included.",
                        verdict(ratio >= n),
                        k.ms() / m.ms(),
                    ));
                }
            }
            "after quiet" => targets.push(format!(
                "- Real network, N={n} after a quiet period over HTTP/2: {conns} connection(s) opened at most (target ≤ 1: {}).",
                verdict(conns <= 1.0)
            )),
            _ => {}
        }
    }
    let delayed_rows: Vec<&Value> = measured.iter().map(|m| m.row).collect();
    s += &cost(&delayed_rows);
    s += "\nTargets:\n\n";
    s += &targets.join("\n");
    s += "\n\nThe HTTP/1.1 rows show what the HTTP/2 client buys: after a quiet period (or cold) an \
          HTTP/1.1 client opens one TCP+TLS connection per concurrent PATCH (N of them, up to \
          `QUAYHOOK_PATCH_CONCURRENCY`), each paying the handshake round trips, where HTTP/2 \
          opens one and multiplexes every PATCH over it.\n\n\
          Latency against network round trips: on this machine the client, the API server and \
          the proxies share 2 cores, so N PATCHes sent at once cost their CPU one after another \
          (the *no delay* column), where a real API server spreads them over its own cores. \
          That CPU is the same with or without a network and is not a round trip; the ratio in \
          latency is lower than the ratio in round trips by that much.\n\n\
          Against a real cluster: `cargo xtask network --kubeconfig PATH` (or \
          `QUAYHOOK_E2E_KUBECONFIG=PATH make bench-network`) runs the same deliveries through the \
          proxy with no added delay (the network's own), the RTT being a warm `GET /version` \
          (there is no baseline without delay, so network round trips are latency ÷ RTT); the \
          kubeconfig must be allowed to create namespaces `quayhook-bench-n1`, `-n10`, `-n100`, \
          Warehouses and a Secret there; `--quiet 95` waits a real quiet period.\n";
    s
}

/// Lambda list price per GB-second (x86 and arm64 differ; this is x86's first tier).
const GB_SECOND_USD: f64 = 0.000_016_666_7;
/// Lambda price per million requests.
const LAMBDA_REQUESTS_USD: f64 = 0.20;
/// API Gateway HTTP API price per million requests (first 300 million).
const HTTP_API_USD: f64 = 1.00;
/// SQS standard queue price per million requests.
const SQS_USD: f64 = 0.40;
/// Memory of the function (template.yaml).
const MEMORY_GB: f64 = 128.0 / 1024.0;

/// The cost per million deliveries at the measured durations of quayhook over HTTP/2.
fn cost(rows: &[&Value]) -> String {
    let mut s = String::from(
        "\nCost per million deliveries at these durations, 128 MB, list prices (Lambda \
         $0.0000166667 per GB-s and $0.20 per million requests, HTTP API $1.00 per million; \
         Lambda bills duration per ms; a cold start's init is billed too (always, for a custom \
         runtime such as quayhook's) and is not in the cold rows' duration: see section 3):\n\n\
         | N | moment | duration ms | GB-s per million | Lambda compute $ | Lambda requests $ | HTTP API $ | total $ |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows.iter().filter(|x| x["model"] == "quayhook HTTP/2") {
        let duration = median(row, "ms");
        let gbs = 1e6 * duration / 1000.0 * MEMORY_GB;
        let compute = gbs * GB_SECOND_USD;
        s += &format!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            row["n"],
            row["moment"].as_str().unwrap_or(""),
            f1(&row["ms"]["median"]),
            gbs,
            compute,
            LAMBDA_REQUESTS_USD,
            HTTP_API_USD,
            compute + LAMBDA_REQUESTS_USD + HTTP_API_USD,
        );
    }
    s += &format!(
        "\nThe durable path (deliveries the cluster could not take are queued): 1 `SendMessage` per \
         queued delivery, then the worker's share: the event source mapping's `ReceiveMessage` \
         (one per batch, at most one per message), `DeleteMessage` on success, and one \
         `ChangeMessageVisibility` per back-off. At ${SQS_USD:.2} per million SQS requests, a \
         queued delivery refreshed on its first retry costs 3 requests (${:.2} per million \
         queued deliveries), each further back-off 2 more (receive + change visibility: ${:.2} \
         per million), plus the worker Lambda's own invocation at the durations above. The \
         mapping's long polling of an empty queue costs a few requests per minute per poller \
         whether anything is queued or not (about 0.65 million requests, $0.26, per 30 days for \
         5 pollers at one 20 s poll each).\n",
        3.0 * SQS_USD,
        2.0 * SQS_USD,
    );
    s
}
