//! BENCHMARKS.md from the result files under target/bench and criterion's output: one
//! section per measurement between `<!-- begin:NAME -->` and `<!-- end:NAME -->` markers, a
//! summary of every target, and the hand-written notes kept as they are.
//!
//! I/O: reads the result files and the existing BENCHMARKS.md, rewrites it. The sections
//! themselves are formatted in the submodules.

mod coldstart;
mod criterion;
mod fuzz;
mod loadtest;
mod network;
mod roundtrips;

use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

use crate::machine::{machine, read_json};

/// A figure with 3 significant digits or so (0 decimals from 100, 1 from 10, else 2); `–`
/// when it is not a number.
fn f1(v: &Value) -> String {
    v.as_f64().map_or("–".into(), |x| {
        if x >= 100.0 {
            format!("{x:.0}")
        } else if x >= 10.0 {
            format!("{x:.1}")
        } else {
            format!("{x:.2}")
        }
    })
}

/// `median (min–max)` of a stats object.
fn mmm(v: &Value) -> String {
    if v.is_null() {
        return "–".into();
    }
    format!("{} ({}–{})", f1(&v["median"]), f1(&v["min"]), f1(&v["max"]))
}

/// The sentence naming the machine of a section.
fn machine_line(m: &Value) -> String {
    format!(
        "Measured {} on {}, {} cores, {} GiB, Linux {}, {}.",
        m["date"].as_str().unwrap_or("?"),
        m["cpu"].as_str().unwrap_or("?"),
        m["cores"],
        m["memory_gib"],
        m["kernel"].as_str().unwrap_or("?"),
        m["rustc"].as_str().unwrap_or("?"),
    )
}

/// How a target line reads; the summary collects lines holding either word.
fn verdict(met: bool) -> &'static str {
    if met { "**MET**" } else { "**MISSED**" }
}

/// How the sentence giving the duration of the last `make bench` begins.
const DURATION_LINE: &str = "The measurements of the last `make bench` took";

/// The duration sentence of the existing file, with its paragraph break.
fn old_duration(existing: &str) -> Option<String> {
    existing
        .lines()
        .find(|l| l.starts_with(DURATION_LINE))
        .map(|l| format!("{l}\n\n"))
}

/// Keeps a section of the existing file when there is no new measurement for it.
fn old_section(existing: &str, name: &str) -> Option<String> {
    let begin = format!("<!-- begin:{name} -->\n");
    let end = format!("<!-- end:{name} -->");
    let from = existing.find(&begin)? + begin.len();
    let to = existing[from..].find(&end)? + from;
    Some(existing[from..to].to_owned())
}

/// Rewrites `out` from the results in `dir` and criterion's in `criterion`: every section
/// with new results is regenerated, the others (and the hand-written notes) are kept from the
/// existing file, and the summary collects every target line.
///
/// # Errors
/// When `out` cannot be written.
pub fn run(dir: &Path, criterion: &Path, out: &Path) -> anyhow::Result<()> {
    let existing = std::fs::read_to_string(out).unwrap_or_default();
    let size = read_json(&dir.join("size.json"));
    let memory = read_json(&dir.join("memory.json"));
    let crit = criterion::results(criterion);
    let crit_machine = read_json(&dir.join("criterion-machine.json")).unwrap_or_else(machine);
    let sections: Vec<(&str, Option<String>, &str)> = vec![
        (
            "roundtrips",
            read_json(&dir.join("roundtrips.json")).map(|r| roundtrips::section(&r)),
            "make bench",
        ),
        (
            "network",
            read_json(&dir.join("network.json")).map(|r| network::section(&r)),
            "make bench-network",
        ),
        (
            "criterion",
            (!crit.is_empty()).then(|| criterion::section(&crit, &crit_machine)),
            "make bench",
        ),
        (
            "coldstart",
            read_json(&dir.join("coldstart.json"))
                .map(|c| coldstart::section(&c, size.as_ref(), memory.as_ref())),
            "make bench",
        ),
        (
            "fuzz",
            read_json(&dir.join("fuzz.json")).map(|f| fuzz::section(&f)),
            "make fuzz",
        ),
        (
            "loadtest",
            read_json(&dir.join("loadtest.json")).map(|l| loadtest::section(&l)),
            "make loadtest",
        ),
    ];
    let mut body = String::new();
    let mut summary = Vec::new();
    for (name, fresh, how) in sections {
        let text = fresh
            .or_else(|| old_section(&existing, name))
            .unwrap_or_else(|| format!("## {name}\n\nNot measured yet: run `{how}`.\n"));
        summary.extend(
            text.lines()
                .filter(|l| {
                    l.starts_with("- ") && (l.contains("**MET**") || l.contains("**MISSED**"))
                })
                .map(str::to_owned),
        );
        body += &format!("<!-- begin:{name} -->\n{text}<!-- end:{name} -->\n\n");
    }
    let duration = std::fs::read_to_string(dir.join("bench.seconds"))
        .ok()
        .and_then(|t| t.trim().parse::<f64>().ok())
        .map(|secs| {
            format!(
                "{DURATION_LINE} {:.1} min on the machine named in its sections (after the \
                 builds: a first build of the release binary, the harness and the benches takes \
                 ~15 min more on 2 cores; the arm64 zip needs a cross build of its own).\n\n",
                secs / 60.0
            )
        })
        // Without a `make bench` in this target directory (`make loadtest` or `make fuzz` alone),
        // the last one's figure stays.
        .or_else(|| old_duration(&existing))
        .unwrap_or_default();
    let notes = old_section(&existing, "notes").unwrap_or_else(|| {
        "## Notes\n\n(Findings and analysis that are not regenerated.)\n".into()
    });
    let doc = format!(
        "# Benchmarks\n\n\
         Generated by `make bench` (sections 1–4), `make fuzz` and `make loadtest` from their \
         latest measurements (tools/bench.mk, xtask/, benches/pure.rs, fuzz/, \
         tests/loadtest); a section whose measurement was not re-run is kept as it was. Each \
         section names the machine it ran on. No timing is a pass/fail test.\n\n\
         Reproduce on a fresh machine (Rust stable, Python 3; everything else comes from crates.io \
         and PyPI):\n\n\
         ```sh\n\
         make bench      # sections 1-4 and Real network: round trips, criterion, cold start, memory, size\n\
         make fuzz       # every fuzz target for FUZZ_SECONDS (default 60) each; installs cargo-fuzz\n\
         make loadtest   # the burst test (release build)\n\
         ```\n\n{}\
         ## Summary\n\n{}\n\n{body}<!-- begin:notes -->\n{notes}<!-- end:notes -->\n",
        duration,
        summary.join("\n")
    );
    std::fs::write(out, doc).with_context(|| out.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn figures_keep_about_three_digits() {
        assert_eq!(f1(&json!(1234.5)), "1234");
        assert_eq!(f1(&json!(12.345)), "12.3");
        assert_eq!(f1(&json!(1.2345)), "1.23");
        assert_eq!(f1(&Value::Null), "–");
        assert_eq!(
            mmm(&json!({"min": 1.0, "median": 2.0, "max": 3.0})),
            "2.00 (1.00–3.00)"
        );
        assert_eq!(mmm(&Value::Null), "–");
    }

    #[test]
    fn an_old_section_is_the_text_between_its_markers() {
        let doc = "x\n<!-- begin:fuzz -->\n## Fuzzing\n\nkept\n<!-- end:fuzz -->\n\n";
        assert_eq!(
            old_section(doc, "fuzz").as_deref(),
            Some("## Fuzzing\n\nkept\n")
        );
        assert_eq!(old_section(doc, "loadtest"), None);
    }

    #[test]
    fn the_last_bench_duration_is_kept_when_there_is_no_new_one() {
        let doc = "# Benchmarks\n\nThe measurements of the last `make bench` took 6.5 min on x.\n\n## Summary\n";
        assert_eq!(
            old_duration(doc).as_deref(),
            Some("The measurements of the last `make bench` took 6.5 min on x.\n\n")
        );
        assert_eq!(old_duration("# Benchmarks\n"), None);
    }
}
