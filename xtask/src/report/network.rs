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

/// The section of `network.json`, with its targets.
pub(super) fn section(r: &Value) -> String {
    let rows = r["rows"].as_array().cloned().unwrap_or_default();
    let find = |model: &str, moment: &str, n: &Value| {
        rows.iter()
            .find(|x| x["model"] == model && x["moment"] == moment && &x["n"] == n)
    };
    let mut s = String::from("## Real network\n\n");
    s += &format!(
        "{}\n\n`make bench-network` (`cargo xtask network`, xtask/src/network.rs) against {}. \
         Real sockets with real delay: the test kit's TCP proxy (crates/testkit/src/proxy.rs) \
         sits between the client and the API server and delays every chunk {} ms each way, and \
         holds a new connection's first byte for one round trip (the SYN exchange); Secrets \
         Manager (moto) sits behind a proxy of its own with the same delay. RTT = {} ms; the \
         proxy's measured RTT in this run (request/answer to an echo server through it, median of \
         5): {} ms on a reused connection, {} ms on a new one (expected: 1 and 2 RTT).\n\n",
        machine_line(&r["machine"]),
        r["cluster"].as_str().unwrap_or("?"),
        f1(&r["one_way_ms"]),
        f1(&r["rtt_ms"]),
        f1(&r["measured_rtt_reused_ms"]),
        f1(&r["measured_rtt_new_ms"]),
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
         delivery (counted by the proxy; Secrets Manager's are not counted). Round trips = \
         latency ÷ RTT (so CPU and TLS work show as fractions). `median (min–max)` over {} \
         deliveries per row. Ratio = Kargo model ÷ quayhook HTTP/2, medians of the same moment.\n\n",
        f1(&r["quiet_s"]),
        r["runs"],
    );
    s += "| N | moment | model | latency in RTTs | ms | connections opened | ratio (Kargo ÷ this) |\n";
    s += "|---:|---|---|---|---|---|---:|\n";
    for row in &rows {
        let kargo = find(
            "Kargo model",
            row["moment"].as_str().unwrap_or(""),
            &row["n"],
        );
        let ratio = match kargo {
            Some(k) if row["model"] != "Kargo model" => {
                format!("{:.1}", median(k, "ms") / median(row, "ms"))
            }
            _ => "–".into(),
        };
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            row["n"],
            row["moment"].as_str().unwrap_or(""),
            row["model"].as_str().unwrap_or(""),
            mmm(&row["rtts"]),
            mmm(&row["ms"]),
            mmm(&row["connections"]),
            ratio,
        );
    }
    let mut targets = Vec::new();
    let h2 = "quayhook HTTP/2";
    for row in rows.iter().filter(|x| x["model"] == h2) {
        let n = row["n"].as_f64().unwrap_or(0.0);
        let moment = row["moment"].as_str().unwrap_or("");
        let conns = row["connections"]["max"].as_f64().unwrap_or(f64::NAN);
        match moment {
            "warm" => {
                let rtts = median(row, "rtts");
                targets.push(format!(
                    "- Real network, warm N={n} over HTTP/2: {rtts:.2} RTT (target 1 round trip, met when the median rounds to 1: {}), {conns} new connection(s) at most (target 0: {}).",
                    verdict(rtts < 1.5),
                    verdict(conns == 0.0)
                ));
                if n >= 10.0
                    && let Some(k) = find("Kargo model", "warm", &row["n"])
                {
                    let ratio = median(k, "ms") / median(row, "ms");
                    targets.push(format!(
                        "- Real network, warm N={n}: ratio vs the Kargo model {ratio:.1} (target ≥ {n}: {}).",
                        verdict(ratio >= n)
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
    s += &cost(&rows);
    s += "\nTargets:\n\n";
    s += &targets.join("\n");
    s += "\n\nThe HTTP/1.1 rows show what the HTTP/2 client buys: after a quiet period (or cold) an \
          HTTP/1.1 client opens one TCP+TLS connection per concurrent PATCH (N of them, up to \
          `QUAYHOOK_PATCH_CONCURRENCY`), each paying the handshake round trips, where HTTP/2 \
          opens one and multiplexes every PATCH over it.\n\n\
          Against a real cluster: `cargo xtask network --kubeconfig PATH` (or \
          `QUAYHOOK_E2E_KUBECONFIG=PATH make bench-network`) runs the same deliveries through the \
          proxy with no added delay (the network's own), the RTT being a warm `GET /version`; the \
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
fn cost(rows: &[Value]) -> String {
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
