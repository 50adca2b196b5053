//! Section 2 of BENCHMARKS.md: CPU of the pure path, from criterion's own result files
//! (`benches/pure.rs`).
//!
//! I/O: walks criterion's output directory.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{machine_line, verdict};
use crate::machine::read_json;
use crate::stats::stats;

/// Per-iteration time of every benchmark criterion saved under `dir` (its `new/` results),
/// as `(full id, stats)` sorted by id.
pub(super) fn results(dir: &Path) -> Vec<(String, Value)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "new") && p.join("sample.json").exists() {
                    out.push(p);
                } else {
                    walk(&p, out);
                }
            }
        }
    }
    let mut dirs = Vec::new();
    walk(dir, &mut dirs);
    let mut out = Vec::new();
    for d in dirs {
        let (Some(bench), Some(sample)) = (
            read_json(&d.join("benchmark.json")),
            read_json(&d.join("sample.json")),
        ) else {
            continue;
        };
        let iters = sample["iters"].as_array().cloned().unwrap_or_default();
        let times = sample["times"].as_array().cloned().unwrap_or_default();
        let per_iter: Vec<f64> = iters
            .iter()
            .zip(&times)
            .filter_map(|(i, t)| Some(t.as_f64()? / i.as_f64()?))
            .collect();
        let id = bench["full_id"].as_str().unwrap_or("?").to_owned();
        out.push((id, stats(&per_iter)));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Nanoseconds as ns, µs or ms.
fn human_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// The section of criterion's results, measured on `m`, with its target.
pub(super) fn section(results: &[(String, Value)], m: &Value) -> String {
    let mut s = String::from("## 2. CPU of the pure path (criterion)\n\n");
    s += &format!(
        "{}\n\n`cargo bench --bench pure` (benches/pure.rs), release profile (`opt-level = \"s\"`, \
         LTO). Time per call, `median (min–max)` over criterion's samples. Index fixtures: \
         Warehouses over 10 namespaces, ~10 per repository, a mix of semver, Lexical+ignore regex, \
         Digest and OCI chart subscriptions plus a Git subscription each. *lookup_select* = \
         candidate URLs of the pushed repository + `Index::plan` (lookup and tag selection) for \
         a push of two tags.\n\n",
        machine_line(m)
    );
    s += "| benchmark | median | min | max |\n|---|---:|---:|---:|\n";
    let mut target = None;
    let mut build = None;
    let mut with_decode = None;
    for (id, st) in results {
        s += &format!(
            "| `{id}` | {} | {} | {} |\n",
            human_ns(st["median"].as_f64().unwrap_or(f64::NAN)),
            human_ns(st["min"].as_f64().unwrap_or(f64::NAN)),
            human_ns(st["max"].as_f64().unwrap_or(f64::NAN)),
        );
        if id == "lookup_select/cluster_receiver/10000" {
            target = st["max"].as_f64();
        }
        if id == "index/build_from_parsed/10000" {
            build = st["median"].as_f64();
        }
        if id == "index/build_from_pages/10000" {
            with_decode = st["median"].as_f64();
        }
    }
    let mut targets = Vec::new();
    if let Some(b) = build {
        targets.push(format!(
            "- Index build at 10,000 Warehouses (`index/build_from_parsed/10000`): {} median \
             (target < 20 ms: {}); with decoding the list's 20 pages of 500 first \
             (`index/build_from_pages/10000`, what a list costs beyond the network): {}.",
            human_ns(b),
            verdict(b < 20e6),
            with_decode.map_or("not measured".into(), human_ns),
        ));
    }
    if let Some(t) = target {
        targets.push(format!(
            "- Lookup+selection at 10,000 Warehouses: {} at worst (target < 100 µs: {}).",
            human_ns(t),
            verdict(t < 100_000.0)
        ));
    }
    if !targets.is_empty() {
        s += &format!("\n{}\n", targets.join("\n"));
    }
    s
}
