//! quayhook's benchmark harness behind `make bench` (issue 5), as a workspace `xtask`: round
//! trips and latency against Kargo's request model, cold start of the real Lambda binary, peak
//! memory, binary size, fuzzing results, and the generator of BENCHMARKS.md.
//!
//! ```text
//! cargo xtask roundtrips --out target/bench/roundtrips.json
//! cargo xtask coldstart  --bin target/release/quayhook --out target/bench/coldstart.json
//! cargo xtask size       --bin target/release/quayhook --out target/bench/size.json
//! cargo xtask report     --dir target/bench --criterion target/criterion --out BENCHMARKS.md
//! ```
//!
//! Everything runs on loopback: moto_server (`make venv`) for Secrets Manager and the local
//! Kubernetes API server of the test kit (crates/testkit), with injected latency. Timings are
//! reported, never asserted.
//!
//! # Layout
//! - [`cli`]: the subcommands and their options (clap).
//! - [`stats`]: min/median/max and percentiles (pure).
//! - [`machine`]: the machine a figure was measured on; reading and writing result files.
//! - [`timeline`]: remote calls in flight, and the sequential depth of a request.
//! - [`proxy`]: the counting, delaying HTTP proxy in front of moto.
//! - [`stack`]: the seeded local stack the measurements share (API server, moto, receivers).
//! - [`roundtrips`]: benchmark 1, quayhook against Kargo's request model.
//! - [`network`]: the same over real sockets with real delay, HTTP/2 against HTTP/1.1.
//! - [`coldstart`]: benchmarks 3 and 4, the real binary under a local Lambda Runtime API.
//! - [`memory`]: the counting allocator and where the memory of an index goes.
//! - [`size`]: binary and zip sizes.
//! - [`fuzz_summary`]: libFuzzer's final stats per target.
//! - [`report`]: BENCHMARKS.md from the result files.

mod cli;
mod coldstart;
mod fuzz_summary;
mod machine;
mod memory;
mod network;
mod proxy;
mod report;
mod roundtrips;
mod size;
mod stack;
mod stats;
mod timeline;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;

use crate::cli::{Cli, Command};

// Every allocation of this binary is counted, so `memory` can read live heap bytes.
#[global_allocator]
static ALLOCATOR: memory::Counting = memory::Counting;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = match command {
        Command::Machine { out, merge } => match merge {
            Some(file) => machine::merge(&file),
            None => machine::write_json(&out, &machine::machine()),
        },
        Command::Roundtrips { runs, out } => runtime.block_on(roundtrips::run(&out, runs)),
        Command::Coldstart { bin, runs, out } => runtime.block_on(coldstart::run(&bin, &out, runs)),
        Command::Network {
            runs,
            quiet,
            kubeconfig,
            namespace,
            out,
        } => runtime.block_on(network::run(&network::Options {
            runs,
            quiet: Duration::from_secs_f64(quiet.max(0.0)),
            kubeconfig,
            namespace,
            out,
        })),
        Command::Memory { out } => runtime.block_on(memory::run(&out)),
        Command::Size {
            bin,
            out,
            arm64_zip,
        } => size::run(&bin, &out, arm64_zip.as_deref()),
        Command::Report {
            dir,
            criterion,
            out,
        } => report::run(&dir, &criterion, &out),
        Command::FuzzSummary {
            dir,
            targets,
            seconds,
            engine,
            out,
        } => fuzz_summary::run(&dir, &targets, seconds, &engine, &out),
    };
    // Background tasks (servers) end with the runtime.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}
