//! The `quayhook` binary (`bootstrap` on Lambda): parse the command line, set up logging,
//! hand over to the library.

use clap::Parser;
use quayhook::cli::{self, Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        None => quayhook::telemetry::init_lambda(),
        Some(Command::Serve { json_logs, .. }) => quayhook::telemetry::init_cli(*json_logs),
        Some(_) => quayhook::telemetry::init_cli(false),
    }
    match cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "quayhook failed");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
