//! The machine a figure was measured on (CPU, cores, memory, kernel, rustc, date), and the
//! JSON result files under target/bench that carry it.
//!
//! I/O: reads /proc, runs `rustc -V`, reads and writes result files.

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;
use serde_json::{Value, json};

/// The trimmed standard output of `program args`, when it runs and succeeds.
pub fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The machine facts every result file carries: `cpu`, `cores`, `memory_gib`, `kernel`,
/// `rustc` and `date` (UTC, to the minute). A fact that cannot be read is `unknown`, 0 or
/// empty.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory_gib": (mem_kb as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "rustc": command_output("rustc", &["-V"]).unwrap_or_default(),
        "date": jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC").to_string(),
    })
}

/// Writes `value` as pretty JSON with a final newline, creating the parent directory.
///
/// # Errors
/// When the directory or the file cannot be written.
pub fn write_json(path: &Path, value: &Value) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    }
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| path.display().to_string())
}

/// A result file, when it exists and holds JSON.
pub fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Adds the machine to a results file another program wrote (the load test).
///
/// # Errors
/// When `file` holds no JSON or cannot be rewritten.
pub fn merge(file: &Path) -> anyhow::Result<()> {
    let mut v = read_json(file).with_context(|| format!("{}: no JSON results", file.display()))?;
    v["machine"] = machine();
    write_json(file, &v)
}
