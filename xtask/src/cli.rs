//! The harness's command line (clap derive): one subcommand per measurement, plus `report`.
//!
//! No I/O: parsing only. tools/bench.mk passes every option it relies on; the defaults are the
//! paths it uses.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// quayhook's benchmark harness (`make bench`, `make fuzz`, `make loadtest`): measurements into
/// JSON files under target/bench, and BENCHMARKS.md from them.
#[derive(Debug, Parser)]
#[command(name = "xtask")]
pub struct Cli {
    /// What to measure or generate.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands; each measurement writes one JSON file that `report` reads.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Writes the machine facts (CPU, cores, memory, kernel, rustc, date) to a JSON file, or
    /// adds them to a results file another program wrote.
    Machine {
        /// Where to write the machine facts.
        #[arg(long, default_value = "target/bench/criterion-machine.json")]
        out: PathBuf,
        /// Adds a `machine` field to this existing JSON results file instead (the load test's).
        #[arg(long, value_name = "FILE")]
        merge: Option<PathBuf>,
    },
    /// Benchmark 1: round trips and latency of quayhook against Kargo's request model, with
    /// 20 ms injected per remote call.
    Roundtrips {
        /// Repetitions (min/median/max of the per-repetition p50 are over these).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Where to write the results.
        #[arg(long, default_value = "target/bench/roundtrips.json")]
        out: PathBuf,
    },
    /// Benchmarks 3 and 4: cold start, init CPU and peak RSS of the real binary under a local
    /// Lambda Runtime API. Child logs go next to `--out`.
    Coldstart {
        /// The Lambda binary to start.
        #[arg(long, default_value = "target/release/quayhook")]
        bin: PathBuf,
        /// Cold starts per scenario.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Where to write the results.
        #[arg(long, default_value = "target/bench/coldstart.json")]
        out: PathBuf,
    },
    /// "Real network": quayhook over HTTP/2 and HTTP/1.1 and Kargo's request model through a
    /// TCP proxy with 10 ms each way (warm, after a quiet period, cold), in round trips and
    /// connections opened; against a real cluster with `--kubeconfig`.
    Network {
        /// Deliveries per model, moment and N.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Seconds of quiet before an after-quiet delivery (the local API server closes its
        /// idle connections first, as kube-apiserver does after 90 s; against a real cluster
        /// the quiet is really waited: give it more than 90).
        #[arg(long, default_value_t = 1.0)]
        quiet: f64,
        /// A real cluster's kubeconfig (admin: the harness creates namespaces, Warehouses and
        /// a Secret); default `QUAYHOOK_E2E_KUBECONFIG` when set.
        #[arg(long, value_name = "PATH")]
        kubeconfig: Option<PathBuf>,
        /// Namespace prefix of the objects on a real cluster (`PREFIX-n1`, `-n10`, `-n100`).
        #[arg(long, default_value = "quayhook-bench")]
        namespace: String,
        /// Where to write the results.
        #[arg(long, default_value = "target/bench/network.json")]
        out: PathBuf,
    },
    /// Benchmark 4: where the memory of 10,000 indexed Warehouses goes (live heap bytes).
    Memory {
        /// Where to write the results.
        #[arg(long, default_value = "target/bench/memory.json")]
        out: PathBuf,
    },
    /// Benchmark 4: binary size, stripped or not, and its deployment zip.
    Size {
        /// The x86_64 binary to measure.
        #[arg(long, default_value = "target/release/quayhook")]
        bin: PathBuf,
        /// Where to write the results.
        #[arg(long, default_value = "target/bench/size.json")]
        out: PathBuf,
        /// The arm64 deployment zip of `cargo lambda build --arm64`, when it was built.
        #[arg(long, value_name = "FILE")]
        arm64_zip: Option<PathBuf>,
    },
    /// Regenerates BENCHMARKS.md from the latest results; a section without new results is
    /// kept as it was.
    Report {
        /// The directory of the JSON results.
        #[arg(long, default_value = "target/bench")]
        dir: PathBuf,
        /// criterion's output directory.
        #[arg(long, default_value = "target/criterion")]
        criterion: PathBuf,
        /// The Markdown file to (re)write.
        #[arg(long, default_value = "BENCHMARKS.md")]
        out: PathBuf,
    },
    /// Summarizes a `make fuzz` run: libFuzzer's final stats from each target's log, and the
    /// corpus, findings and regression inputs on disk.
    FuzzSummary {
        /// The directory holding `fuzz-TARGET.log` and `fuzz-TARGET.rc`.
        #[arg(long, default_value = "target/bench")]
        dir: PathBuf,
        /// The fuzz targets, separated by spaces.
        #[arg(long, default_value = "")]
        targets: String,
        /// Seconds each target ran.
        #[arg(long)]
        seconds: Option<u64>,
        /// The fuzzing engine, as it should read in BENCHMARKS.md.
        #[arg(long, default_value = "")]
        engine: String,
        /// Where to write the results.
        #[arg(long, default_value = "target/bench/fuzz.json")]
        out: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bench_mk_invocations_parse() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|c| c.command);
        assert!(matches!(
            parse(&["xtask", "machine", "--merge", "target/bench/loadtest.json"]),
            Ok(Command::Machine { merge: Some(_), .. })
        ));
        assert!(matches!(
            parse(&[
                "xtask",
                "network",
                "--runs",
                "3",
                "--quiet",
                "0.5",
                "--kubeconfig",
                "k"
            ]),
            Ok(Command::Network {
                runs: 3,
                kubeconfig: Some(_),
                ..
            })
        ));
        assert!(matches!(
            parse(&["xtask", "roundtrips", "--runs", "3", "--out", "x.json"]),
            Ok(Command::Roundtrips { runs: 3, .. })
        ));
        assert!(matches!(
            parse(&[
                "xtask",
                "fuzz-summary",
                "--dir",
                "d",
                "--seconds",
                "60",
                "--targets",
                "payload urls",
                "--engine",
                "cargo-fuzz",
                "--out",
                "f.json",
            ]),
            Ok(Command::FuzzSummary {
                seconds: Some(60),
                ..
            })
        ));
        assert!(matches!(
            parse(&[
                "xtask",
                "size",
                "--bin",
                "b",
                "--out",
                "s.json",
                "--arm64-zip",
                "z.zip"
            ]),
            Ok(Command::Size {
                arm64_zip: Some(_),
                ..
            })
        ));
    }
}
