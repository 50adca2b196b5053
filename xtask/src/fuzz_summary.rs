//! The results of a `make fuzz` run: libFuzzer's final stats (executions, exec/s) from each
//! target's log and exit code, and the corpus, findings and regression inputs on disk.
//!
//! I/O: reads `fuzz-TARGET.log`/`.rc` and the fuzz/ directories, writes `fuzz.json`.

use std::path::Path;

use serde_json::json;

use crate::machine::{machine, write_json};

/// What a fuzz target exercises, as BENCHMARKS.md describes it.
fn what(target: &str) -> &'static str {
    match target {
        "payload" => "Quay payload decoder (`Push::parse`, tags)",
        "urls" => "URL normalization (image, chart, candidates, reference parsers)",
        "semver" => "semver versions and constraints (parse, check)",
        "warehouse" => "Warehouse model parser, index build with compiled selectors, plan",
        "handler" => {
            "whole handler on an arbitrary API Gateway event (in-memory secrets and cluster)"
        }
        "lambda_event" => {
            "Lambda edge on arbitrary invocation payload bytes (`lambda::invoke`, in-memory secrets and cluster)"
        }
        _ => "",
    }
}

/// Files (not directories) directly in `dir`; 0 when it does not exist.
fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().filter(|e| e.path().is_file()).count())
        .unwrap_or(0)
}

/// The last value of a libFuzzer `stat::…:` line in `log`.
fn stat(log: &str, key: &str) -> Option<u64> {
    log.lines()
        .rev()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
}

/// The executions of libFuzzer's last `Done N runs in …` line.
fn done(log: &str) -> Option<u64> {
    log.lines().rev().find_map(|l| {
        l.strip_prefix("Done ")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    })
}

/// Summarizes `targets` (space-separated) from the logs in `dir` into `out`; `seconds` and
/// `engine` are recorded as given.
///
/// # Errors
/// When the results cannot be written.
pub fn run(
    dir: &Path,
    targets: &str,
    seconds: Option<u64>,
    engine: &str,
    out: &Path,
) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for t in targets.split_whitespace() {
        let log = std::fs::read_to_string(dir.join(format!("fuzz-{t}.log"))).unwrap_or_default();
        let rc = std::fs::read_to_string(dir.join(format!("fuzz-{t}.rc")))
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok());
        let summary: Vec<&str> = log.lines().filter(|l| l.starts_with("SUMMARY:")).collect();
        rows.push(json!({
            "name": t,
            "what": what(t),
            "executions": stat(&log, "stat::number_of_executed_units:").or(done(&log)),
            "exec_per_second": stat(&log, "stat::average_exec_per_sec:"),
            "corpus": count_files(&Path::new("fuzz/corpus").join(t)),
            "findings": count_files(&Path::new("fuzz/artifacts").join(t)),
            "regressions": count_files(&Path::new("fuzz/regressions").join(t)),
            "exit_code": rc,
            "summary": summary,
        }));
    }
    write_json(
        out,
        &json!({
            "machine": machine(),
            "seconds": seconds,
            "engine": engine,
            "targets": rows,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_stats_win_over_earlier_lines_and_done_is_the_fallback() {
        let log = "stat::number_of_executed_units: 10\n\
                   Done 1234 runs in 61 second(s)\n\
                   stat::number_of_executed_units: 1234\n\
                   stat::average_exec_per_sec:     20\n";
        assert_eq!(stat(log, "stat::number_of_executed_units:"), Some(1234));
        assert_eq!(stat(log, "stat::average_exec_per_sec:"), Some(20));
        assert_eq!(done(log), Some(1234));
        assert_eq!(stat("", "stat::average_exec_per_sec:"), None);
    }
}
