//! Sections 3 and 4 of BENCHMARKS.md: cold start and memory, from `coldstart.json`, `size.json`
//! and `memory.json`.
//!
//! Pure: formats result files already read.

use serde_json::Value;

use super::{f1, machine_line, mmm, verdict};

/// The section of `coldstart.json`, with the sizes of `size.json` and the memory breakdown of
/// `memory.json` when they exist, and its targets.
pub(super) fn section(c: &Value, size: Option<&Value>, memory: Option<&Value>) -> String {
    let mut s = String::from("## 3. Cold start and 4. memory\n\n");
    s += &format!(
        "{}\n\nThe release binary (`{}`) is started with no arguments (Lambda mode) against a Lambda \
         Runtime API served by the harness, with the environment of examples/local-stack.rs \
         (Secrets Manager = moto behind the harness's counting proxy; the local API server). \
         *init* = process spawn → first `GET /runtime/invocation/next` (config, secrets, kubeconfig, \
         client, Warehouse list, index: the whole prefetch). *init CPU* = the child's own CPU time \
         at that moment, utime+stime from /proc/PID/stat (10 ms ticks) and the sum of its threads' \
         schedstat run time (ns). *network* = the same Secrets Manager calls and list, timed from \
         the harness over fresh connections. The first request then runs with {} ms injected per \
         call. Peak RSS = VmHWM from /proc/PID/status once the binary is idle after the first \
         request. The last row runs without the prefetch (`QUAYHOOK_PREFETCH=false`): its init \
         CPU is what the process costs before any network call (runtime, configuration, AWS \
         SDK), and its first request pays for secrets, kubeconfig, list and patches. \
         `median (min–max)` over the runs. Where the init CPU goes: `make bench-profile` (perf \
         over cold starts of the release build with symbols). Its first run showed AWS-LC's \
         one-time CPU Jitter Entropy collection (`jent_*`, the Keccak rounds under it, \
         `xoshiro128starstar`) at about half of the init CPU with 100 Warehouses; AWS-LC is now \
         built without it (`AWS_LC_SYS_NO_JITTER_ENTROPY`, .cargo/config.toml: the OS's \
         getrandom alone seeds it).\n\n",
        machine_line(&c["machine"]),
        c["binary"].as_str().unwrap_or("?"),
        f1(&c["first_request_latency_ms"]),
    );
    s += "| scenario | runs | init ms | network ms | init − network ms | init CPU ms (stat) | init CPU ms (schedstat) | first request round trips | first request ms | VmHWM at ready MiB | peak RSS (VmHWM) MiB |\n";
    s += "|---|---:|---|---|---|---|---|---|---|---|---|\n";
    let mut targets = Vec::new();
    for sc in c["scenarios"].as_array().cloned().unwrap_or_default() {
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            sc["name"].as_str().unwrap_or(""),
            sc["runs"],
            mmm(&sc["init_ms"]),
            mmm(&sc["network_ms"]),
            mmm(&sc["init_minus_network_ms"]),
            mmm(&sc["init_cpu_ms_stat"]),
            mmm(&sc["init_cpu_ms_schedstat"]),
            mmm(&sc["first_request_round_trips"]),
            mmm(&sc["first_request_ms"]),
            mmm(&sc["vm_hwm_ready_mib"]),
            mmm(&sc["vm_hwm_mib"]),
        );
        let w = sc["warehouses"].as_u64().unwrap_or(0);
        let cpu = sc["init_cpu_ms_stat"]["max"]
            .as_f64()
            .unwrap_or(f64::NAN)
            .max(
                sc["init_cpu_ms_schedstat"]["max"]
                    .as_f64()
                    .unwrap_or(f64::NAN),
            );
        let rt = sc["first_request_round_trips"]["max"]
            .as_f64()
            .unwrap_or(f64::NAN);
        if sc["prefetch"] == false {
            continue;
        }
        if w <= 100 {
            targets.push(format!(
                "- Init CPU with {w} Warehouses: {cpu:.1} ms at worst, all of the process's CPU including TLS and JSON of the network calls (target < 50 ms beyond the network: {}).",
                verdict(cpu < 50.0)
            ));
        } else {
            targets.push(format!(
                "- Init CPU with {w} Warehouses: {cpu:.1} ms at worst (listing and indexing 10,000 objects; the 50 ms target is stated for init in general: {}).",
                verdict(cpu < 50.0)
            ));
            let hwm = sc["vm_hwm_mib"]["max"].as_f64().unwrap_or(f64::NAN);
            targets.push(format!(
                "- Peak RSS with {w} Warehouses indexed: {hwm:.1} MiB at worst (target < 32 MB: {}).",
                verdict(hwm * 1.048_576 < 32.0)
            ));
        }
        targets.push(format!(
            "- First request after prefetch ({w} Warehouses): {rt} round trip(s) (target 1: {}).",
            verdict(rt <= 1.0)
        ));
    }
    if let Some(z) = size {
        let b = z["x86_64_bytes"].as_f64().unwrap_or(f64::NAN);
        let zb = z["x86_64_zip_bytes"].as_f64().unwrap_or(f64::NAN);
        s += &format!(
            "\nBinary size ({}): stripped x86_64 `target/release/quayhook` {:.2} MiB ({} bytes, stripped: {}); zipped as `bootstrap` (deflate -9) {:.2} MiB. arm64 zip: {}.\n",
            z["machine"]["date"].as_str().unwrap_or("?"),
            b / 1_048_576.0,
            z["x86_64_bytes"],
            z["x86_64_stripped"],
            zb / 1_048_576.0,
            match z["arm64"]["zip_bytes"].as_f64() {
                Some(a) => format!("{:.2} MiB", a / 1_048_576.0),
                None => format!(
                    "not measured — {}",
                    z["arm64"]["unavailable"].as_str().unwrap_or("unavailable")
                ),
            }
        );
        let zip = z["arm64"]["zip_bytes"].as_f64().unwrap_or(zb);
        targets.push(format!(
            "- Deployment zip: {:.2} MiB ({}; target < 8 MB: {}).",
            zip / 1_048_576.0,
            if z["arm64"]["zip_bytes"].is_null() {
                "x86_64 zip, standing in for the arm64 one"
            } else {
                "arm64"
            },
            verdict(zip < 8_000_000.0)
        ));
    }
    if let Some(m) = memory {
        s += &format!(
            "\nWhere the memory of {} indexed Warehouses goes (live heap bytes counted by the \
             harness's allocator around quayhook's own `KubeStore::list` and \
             `cluster::list_index`, `cargo xtask memory`, {}): the whole list, decoded and kept, \
             would be {:.1} MiB ({:.1} MiB as JSON text), peaking at {:.1} MiB while listing, \
             before any index is built on top of it. quayhook does not keep it: `list_index` \
             hands each page of {} to the index builder and drops it, so listing and indexing \
             together peak at {:.1} MiB, for an index of {:.1} MiB, \
             of which the {} compiled `ignoreTagsRegexes` account for {:.1} MiB (the same index \
             without them: {:.1} MiB; each distinct pattern is compiled once and shared). All on \
             top of the ~13 MiB baseline of the process.\n",
            m["warehouses"],
            m["machine"]["date"].as_str().unwrap_or("?"),
            m["listed_values_mib"].as_f64().unwrap_or(f64::NAN),
            m["raw_json_mib"].as_f64().unwrap_or(f64::NAN),
            m["peak_during_list_mib"].as_f64().unwrap_or(f64::NAN),
            m["page_size"],
            m["peak_during_paged_index_mib"]
                .as_f64()
                .unwrap_or(f64::NAN),
            m["index_mib"].as_f64().unwrap_or(f64::NAN),
            m["regex_subscriptions"],
            m["index_mib"].as_f64().unwrap_or(f64::NAN)
                - m["index_without_regexes_mib"].as_f64().unwrap_or(f64::NAN),
            m["index_without_regexes_mib"].as_f64().unwrap_or(f64::NAN),
        );
    }
    s += "\nTargets:\n\n";
    s += &targets.join("\n");
    s += "\n";
    s
}
