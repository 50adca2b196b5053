//! The fuzzing section of BENCHMARKS.md, from `fuzz.json`.
//!
//! Pure: formats a result file already read.

use serde_json::Value;

use super::machine_line;

/// The section of `fuzz.json`.
pub(super) fn section(f: &Value) -> String {
    let mut s = String::from("## Fuzzing\n\n");
    s += &format!(
        "{}\n\n`make fuzz` (FUZZ_SECONDS={} per target): {}. Findings are the files libFuzzer \
         left in fuzz/artifacts/TARGET/ (crash, leak, timeout, out-of-memory inputs) in this \
         run; every earlier finding is kept in fuzz/regressions/TARGET/ (replayed by every run) \
         with a regression test, and described under Notes.\n\n",
        machine_line(&f["machine"]),
        f["seconds"],
        f["engine"].as_str().unwrap_or("?"),
    );
    s += "| target | what | executions | exec/s | corpus | findings this run | regression inputs kept |\n|---|---|---:|---:|---:|---:|---:|\n";
    for t in f["targets"].as_array().cloned().unwrap_or_default() {
        s += &format!(
            "| `{}` | {} | {} | {} | {} | {} | {} |\n",
            t["name"].as_str().unwrap_or(""),
            t["what"].as_str().unwrap_or(""),
            t["executions"],
            t["exec_per_second"],
            t["corpus"],
            t["findings"],
            t["regressions"].as_u64().unwrap_or(0),
        );
    }
    if let Some(notes) = f["notes"].as_str() {
        s += &format!("\n{notes}\n");
    }
    s
}
