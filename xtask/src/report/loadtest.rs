//! The burst-load section of BENCHMARKS.md, from `loadtest.json` (tests/loadtest).
//!
//! Pure: formats a result file already read.

use serde_json::Value;

use super::{f1, machine_line, verdict};

/// The section of `loadtest.json`, with its target.
pub(super) fn section(l: &Value) -> String {
    let mut s = String::from("## Burst load\n\n");
    s += &format!(
        "{}\n\n`make loadtest` (tests/loadtest, release build): {} Quay pushes in bursts of {} \
         concurrent deliveries through the Lambda handler, {} projects, {} Warehouses, the API \
         server failing {:.0}% of requests (500, 503, 429, dropped connection, in turn). 5xx \
         answers are re-sent, as Quay does. The test asserts that every Warehouse a push selected \
         was refreshed after its last selecting push, that every 5xx named a real failure, that \
         each answer lists exactly the selected Warehouses, and that nothing panicked.\n\n",
        machine_line(&l["machine"]),
        l["pushes"],
        l["burst"],
        l["projects"],
        l["warehouses"],
        l["fail_rate"].as_f64().unwrap_or(0.0) * 100.0,
    );
    s += "| figure | value |\n|---|---:|\n";
    for (k, label) in [
        ("requests_per_second", "deliveries per second"),
        ("p50_ms", "p50 latency (ms)"),
        ("p99_ms", "p99 latency (ms)"),
        ("max_ms", "max latency (ms)"),
        ("seconds", "wall time of the bursts (s)"),
        ("api_requests", "API server requests"),
        ("injected_failures", "injected failures"),
        ("successful_patches", "successful PATCHes"),
        ("first_pass_5xx", "5xx answers (first pass)"),
        ("resent", "pushes re-sent"),
        (
            "warehouses_refreshed",
            "Warehouses that had to be refreshed",
        ),
        ("lost", "refreshes lost"),
        ("panics", "panics"),
    ] {
        s += &format!("| {label} | {} |\n", f1(&l[k]));
    }
    s += &format!("| statuses (first pass) | `{}` |\n", l["statuses"]);
    s += &format!(
        "\n- Nothing lost, no needless 5xx, no panic: {}.\n",
        verdict(l["lost"] == 0 && l["panics"] == 0)
    );
    s
}
