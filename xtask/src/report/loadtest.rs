//! The burst-load section of BENCHMARKS.md, from `loadtest.json` (tests/loadtest): the clean
//! burst, then, when the file has them, the hostile-mix figures beside it and the outage run.
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
    let hostile = &l["hostile"];
    if hostile.is_object() {
        s += &hostile_mix(l, hostile);
    }
    // One target line for both runs, worded as before (the summary collects it).
    let hostile_clean = !hostile.is_object()
        || (hostile["panics"] == 0
            && hostile["alone"]["lost"] == 0
            && hostile["beside"]["lost"] == 0);
    s += &format!(
        "\n- Nothing lost, no needless 5xx, no panic: {}.\n",
        verdict(l["lost"] == 0 && l["panics"] == 0 && hostile_clean)
    );
    if l["outage"].is_object() {
        s += &outage(&l["outage"]);
    }
    s
}

/// The outage run: pushes queued while the API server is down, then the queue drained.
fn outage(o: &Value) -> String {
    let mut s = format!(
        "\n### Outage\n\n{} pushes in bursts of {} through the Lambda handler with the durable \
         path on (a moto SQS queue, `QUAYHOOK_REQUEST_TIMEOUT=2s`), while the API server drops \
         every request for the whole push phase. That phase stands for an outage longer than \
         Quay's whole retry window (5 attempts about 30 s apart, about 2.5 min): no delivery is \
         answered non-2xx, so Quay never retries and the outage's length changes nothing the \
         receiver sees. Then the API server recovers and {} concurrent workers (the template's \
         `WorkerMaxConcurrency`) drain the queue as the SQS event source does: receive up to 10, \
         `worker::run`, delete what succeeded. A refresh is lost when a Warehouse some push \
         selected does not end with a refresh annotation newer than the outage's start. The \
         request rates are the API server's own counts per 1 s window during recovery. The \
         test asserts the two 0 targets, an empty dead-letter queue and no panic; never the \
         timing.\n\n",
        n(&o["pushes"]),
        n(&o["burst"]),
        n(&o["workers"]),
    );
    s += "| figure | value |\n|---|---:|\n";
    for (k, label) in [
        ("non_2xx", "answers Quay would retry (non-2xx)"),
        ("queued_messages", "messages queued (202)"),
        ("warehouses_selected", "Warehouses some push selected"),
        ("lost", "refreshes lost"),
        ("dead_lettered", "messages dead-lettered"),
        ("push_seconds", "wall time of the pushes (s)"),
        ("p50_ms", "p50 latency during the outage (ms)"),
        ("max_ms", "max latency during the outage (ms)"),
        ("worker_invocations", "worker invocations"),
        (
            "recovery_to_last_refresh_seconds",
            "recovery to the last refresh (s)",
        ),
        ("peak_list_per_second", "most LISTs in 1 s during recovery"),
        (
            "peak_patch_per_second",
            "most PATCHes in 1 s during recovery",
        ),
        ("recovery_lists", "LISTs during recovery"),
        ("recovery_patches", "PATCHes during recovery"),
    ] {
        s += &format!("| {label} | {} |\n", f1(&o[k]));
    }
    s += &format!("| statuses | `{}` |\n", o["statuses"]);
    s += &format!(
        "\n- Outage: no answer Quay would retry (target 0): {}.\n\
         - Outage: no refresh lost after recovery (target 0): {}.\n",
        verdict(o["non_2xx"] == 0),
        verdict(o["lost"] == 0),
    );
    s
}

/// A count as an integer, `–` when absent.
fn n(v: &Value) -> String {
    v.as_u64().map_or("–".into(), |x| x.to_string())
}

fn kib(v: &Value) -> String {
    v.as_f64()
        .map_or("–".into(), |b| format!("{:.0} KiB", b / 1024.0))
}

fn secs(ms: &Value) -> String {
    ms.as_f64()
        .map_or("–".into(), |ms| format!("{:.2} s", ms / 1e3))
}

/// The valid deliveries' latency beside the hostile traffic, and what that traffic got.
fn hostile_mix(l: &Value, h: &Value) -> String {
    let mut s = format!(
        "\n### Beside a hostile mix\n\nThe same kind of pushes, {} in bursts of {}, sent over \
         loopback HTTP/1.1 to `quayhook serve` (in process: the same adapters, Warehouses and \
         injected failures; header timeout {}, read timeout {}), once alone and once beside \
         hostile traffic. Every valid push gets the checks above; its latency is the client's, \
         from connect to the answer's last byte. The slow clients start one header timeout ahead, \
         staggered over their timeout, so connections are cut and reopened all through the valid \
         pushes; the floods and the many-tag push start with the bursts. The hostile traffic's \
         answers are asserted too: late heads closed unanswered, late bodies 408, unknown tokens \
         404 `{{}}`, the many-tag push 200 with `tagsNotConsidered` and an answer under 64 KiB. \
         With 5% of API requests failing, p99 (the 3rd-slowest of 300) is set by the few pushes \
         whose cluster calls were retried after an injected failure (the client backs off \
         100 ms, then 200 ms), so it moves between runs by about that much; p90 shows the \
         queueing.\n\n",
        h["deliveries"],
        h["burst"],
        secs(&h["header_timeout_ms"]),
        secs(&h["read_timeout_ms"]),
    );
    s += "| valid deliveries | pushes | concurrent | per second | p50 (ms) | p90 (ms) | p99 (ms) \
          | max (ms) | 5xx (first pass) | refreshes lost |\n\
          |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for (label, run, pushes, burst) in [
        (
            "clean burst, Lambda handler (above)",
            l,
            &l["pushes"],
            &l["burst"],
        ),
        (
            "over HTTP, alone",
            &h["alone"],
            &h["deliveries"],
            &h["burst"],
        ),
        (
            "**over HTTP, beside the hostile mix**",
            &h["beside"],
            &h["deliveries"],
            &h["burst"],
        ),
    ] {
        s += &format!(
            "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            n(pushes),
            n(burst),
            f1(&run["requests_per_second"]),
            f1(&run["p50_ms"]),
            f1(&run["p90_ms"]),
            f1(&run["p99_ms"]),
            f1(&run["max_ms"]),
            n(&run["first_pass_5xx"]),
            n(&run["lost"]),
        );
    }
    let trickle = format!("1 byte per {} ms", n(&h["trickle_ms"]));
    let (heads, bodies, floods, many) = (
        &h["slow_heads"],
        &h["slow_bodies"],
        &h["floods"],
        &h["many_tags"],
    );
    s += "\n| hostile traffic | sent | what it got |\n|---|---|---|\n";
    s += &format!(
        "| slow heads, {trickle}, {} clients reconnecting | {} connections ended, {} open at the \
         end | {} closed unanswered (median {} open), at most {} of {} head bytes sent |\n",
        n(&heads["clients"]),
        n(&heads["connections"]),
        n(&heads["open_at_end"]),
        n(&heads["closed_unanswered"]),
        secs(&heads["median_open_ms"]),
        n(&heads["max_bytes_sent"]),
        n(&heads["head_bytes"]),
    );
    s += &format!(
        "| slow bodies, {trickle}, {} clients reconnecting | {} connections ended, {} open at \
         the end | {} answered 408 (median {} open) |\n",
        n(&bodies["clients"]),
        n(&bodies["connections"]),
        n(&bodies["open_at_end"]),
        n(&bodies["answered_408"]),
        secs(&bodies["median_open_ms"]),
    );
    let total_mib = floods["body_bytes_sent_total"].as_f64().unwrap_or(0.0) / (1 << 20) as f64;
    let offered_mib = floods["requests"].as_f64().unwrap_or(0.0)
        * floods["body_bytes"].as_f64().unwrap_or(0.0)
        / (1 << 20) as f64;
    s += &format!(
        "| unknown tokens, `Content-Length: {}` and the body | {} | statuses `{}`; at most {} of \
         a body got into the socket before the answer, what the kernel buffers hold with a {} \
         send buffer ({total_mib:.1} of {offered_mib:.0} MiB in all) |\n",
        n(&floods["body_bytes"]),
        n(&floods["requests"]),
        floods["statuses"],
        kib(&floods["body_bytes_sent_max"]),
        kib(&floods["send_buffer"]),
    );
    s += &format!(
        "| one push with {} distinct tags ({:.1} MB) | 1 | {}, `tagsNotConsidered` {}, a {}-byte \
         answer, in {} ms |\n",
        n(&many["tags"]),
        many["request_bytes"].as_f64().unwrap_or(0.0) / 1e6,
        n(&many["status"]),
        n(&many["tags_not_considered"]),
        n(&many["answer_bytes"]),
        f1(&many["latency_ms"]),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn clean() -> Value {
        json!({
            "pushes": 1000, "burst": 50, "projects": 3, "warehouses": 200, "fail_rate": 0.05,
            "requests_per_second": 185.0, "p50_ms": 39.5, "p99_ms": 346.0, "max_ms": 469.0,
            "first_pass_5xx": 0, "lost": 0, "panics": 0, "statuses": {"200": 1000},
        })
    }

    #[test]
    fn a_file_without_the_hostile_run_gives_the_clean_section_only() {
        let s = section(&clean());
        assert!(!s.contains("hostile"), "{s}");
        assert!(s.contains("| p99 latency (ms) | 346 |"), "{s}");
        assert!(s.ends_with("- Nothing lost, no needless 5xx, no panic: **MET**.\n"));
    }

    #[test]
    fn the_hostile_p99_sits_beside_the_clean_one_and_its_losses_count() {
        let mut l = clean();
        let run = |p99: f64, lost: u64| json!({"requests_per_second": 150.0, "p50_ms": 20.0, "p90_ms": 30.0, "p99_ms": p99, "max_ms": 90.0, "first_pass_5xx": 0, "lost": lost});
        l["hostile"] = json!({
            "deliveries": 300, "burst": 30, "header_timeout_ms": 2000, "read_timeout_ms": 4000,
            "trickle_ms": 200, "alone": run(50.0, 0), "beside": run(71.5, 0), "panics": 0,
            "slow_heads": {"clients": 50, "connections": 60, "open_at_end": 50, "closed_unanswered": 60, "max_bytes_sent": 11, "head_bytes": 190, "median_open_ms": 2004.0},
            "slow_bodies": {"clients": 20, "connections": 20, "open_at_end": 0, "answered_408": 20, "median_open_ms": 4001.0},
            "floods": {"requests": 200, "body_bytes": 2097152, "statuses": {"404": 200}, "send_buffer": 65536, "body_bytes_sent_max": 180224, "body_bytes_sent_total": 20971520},
            "many_tags": {"tags": 100000, "request_bytes": 1500000, "status": 200, "tags_not_considered": 99744, "answer_bytes": 1234, "latency_ms": 150.0},
        });
        let s = section(&l);
        assert!(
            s.contains(
                "| clean burst, Lambda handler (above) | 1000 | 50 | 185 | 39.5 | – | 346 |"
            ),
            "{s}"
        );
        assert!(
            s.contains(
                "| **over HTTP, beside the hostile mix** | 300 | 30 | 150 | 20.0 | 30.0 | 71.5 |"
            ),
            "{s}"
        );
        assert!(s.contains("| 60 connections ended, 50 open at the end | 60 closed unanswered (median 2.00 s open)"), "{s}");
        assert!(
            s.contains("statuses `{\"404\":200}`; at most 176 KiB"),
            "{s}"
        );
        assert!(s.contains("20.0 of 400 MiB"), "{s}");
        assert!(
            s.contains("`tagsNotConsidered` 99744, a 1234-byte answer"),
            "{s}"
        );
        assert!(s.contains("**MET**"));
        l["hostile"]["beside"]["lost"] = json!(1);
        assert!(section(&l).contains("**MISSED**"));
    }

    #[test]
    fn the_outage_table_follows_with_its_two_targets() {
        let mut l = clean();
        l["outage"] = json!({
            "pushes": 1000, "burst": 50, "workers": 2, "non_2xx": 0, "lost": 0,
            "queued_messages": 800, "recovery_to_last_refresh_seconds": 2.5,
            "peak_list_per_second": 3, "peak_patch_per_second": 400, "statuses": {"202": 1000},
        });
        let s = section(&l);
        assert!(
            s.contains("### Outage\n\n1000 pushes in bursts of 50"),
            "{s}"
        );
        assert!(
            s.contains("| most PATCHes in 1 s during recovery | 400 |"),
            "{s}"
        );
        assert!(
            s.contains("- Outage: no answer Quay would retry (target 0): **MET**."),
            "{s}"
        );
        l["outage"]["lost"] = json!(2);
        assert!(
            section(&l)
                .contains("- Outage: no refresh lost after recovery (target 0): **MISSED**."),
        );
    }
}
