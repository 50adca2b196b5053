//! Section 1 of BENCHMARKS.md: round trips and latency against Kargo's request model, from
//! `roundtrips.json`.
//!
//! Pure: formats a result file already read.

use serde_json::Value;

use super::{f1, machine_line, mmm, verdict};

/// The section of `roundtrips.json`, with its targets.
pub(super) fn section(r: &Value) -> String {
    let mut s = String::from("## 1. Round trips and latency vs. Kargo's request model\n\n");
    s += &format!(
        "{}\n\nEvery API server request (and every Secrets Manager call, through a proxy in front of \
         moto) takes an injected {} ms. *Kargo* is Kargo's receiver model implemented with `kube`: \
         one uncached Secret GET, then one merge PATCH per selected Warehouse, one after another \
         (warm: a long-lived client; cold: a new client and connection per request). *quayhook* is \
         the real handler through `State` (warm: caches filled by a previous request; cold: a new \
         `State` per request, so Secrets Manager + kubeconfig + list + patches). Round trips = the \
         longest chain of remote calls that did not overlap (concurrent calls count once); TCP/TLS \
         connection setup is in the latency, not in the count. Figures are `median (min–max)` over \
         {} repetitions; p99 is over every request of all repetitions. Ratio = Kargo p50 ÷ quayhook \
         p50 within the same repetition.\n\n",
        machine_line(&r["machine"]),
        f1(&r["latency_ms"]),
        r["repetitions"],
    );
    s += "| N | mode | model | requests | sequential round trips | remote calls | p50 ms | p99 ms | ratio (Kargo ÷ quayhook) |\n";
    s += "|---:|---|---|---:|---|---|---|---:|---|\n";
    let rows = r["rows"].as_array().cloned().unwrap_or_default();
    let mut targets = Vec::new();
    for row in &rows {
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            row["n"],
            row["mode"].as_str().unwrap_or(""),
            row["model"].as_str().unwrap_or(""),
            row["requests"],
            mmm(&row["round_trips"]),
            mmm(&row["remote_calls"]),
            mmm(&row["p50_ms"]),
            f1(&row["p99_ms"]),
            if row["ratio"].is_null() {
                "–".into()
            } else {
                mmm(&row["ratio"])
            },
        );
        if row["model"] == "quayhook" && row["mode"] == "warm" {
            let n = row["n"].as_f64().unwrap_or(0.0);
            let rt = row["round_trips"]["max"].as_f64().unwrap_or(f64::NAN);
            let ratio = row["ratio"]["median"].as_f64().unwrap_or(f64::NAN);
            targets.push(format!(
                "- Warm N={n}, default configuration: {} sequential round trip(s) (target 1: {}); ratio {ratio:.1} (target ≥ {n}: {}).",
                rt,
                verdict(rt <= 1.0),
                verdict(ratio >= n)
            ));
        }
    }
    s += "\nTargets (one round trip warm for any N; ratio at least N):\n\n";
    s += &targets.join("\n");
    s += "\n\nThe default `QUAYHOOK_PATCH_CONCURRENCY` is 100, within kube-apiserver's default of \
          250 concurrent HTTP/2 streams per connection, so a push selecting up to 100 Warehouses \
          patches in one wave; beyond that, ⌈N/concurrency⌉ waves.\n";
    s
}
