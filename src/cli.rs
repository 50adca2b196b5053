//! The `quayhook` command line. With no subcommand it runs as a Lambda function (Lambda starts
//! `bootstrap` without arguments); the subcommands serve the same handler over plain HTTP and
//! help operators.
//!
//! I/O. Output goes to stdout, logs to stderr; errors are `anyhow` chains with context naming
//! what failed (which secret, which permission), never secret values.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::cluster::KubeConnector;
use crate::config::Config;
use crate::handler;
use crate::secrets::{ConfiguredSecrets, SecretSource};
use crate::state::State;
use crate::token::{receiver_token, receiver_url};

/// Kargo's Quay webhook receiver as an AWS Lambda.
#[derive(Debug, Parser)]
#[command(name = "quayhook", version, about)]
pub struct Cli {
    /// What to do; none runs the Lambda runtime.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the receiver over plain HTTP (same handler and configuration as the Lambda).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Log JSON lines instead of text.
        #[arg(long)]
        json_logs: bool,
    },
    /// Print each configured receiver's webhook URL, exactly as Kargo computes it.
    Url {
        /// The receiver base URL (the API's invoke URL, or Kargo's external webhook base URL).
        #[arg(long)]
        base_url: String,
    },
}

/// Builds the shared state from the environment's configuration.
///
/// # Errors
/// When the configuration is invalid.
pub async fn build_state() -> anyhow::Result<State<ConfiguredSecrets, KubeConnector>> {
    let config = Config::from_env().context("invalid configuration")?;
    let secrets = ConfiguredSecrets::from_config(&config.secrets).await;
    let connector = KubeConnector {
        connect_timeout: config.connect_timeout,
        read_timeout: config.request_timeout,
    };
    Ok(State::new(config, secrets, connector))
}

/// Runs the parsed command line.
///
/// # Errors
/// What failed, with context.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => run_lambda().await,
        Some(Command::Serve { listen, .. }) => run_serve(listen).await,
        Some(Command::Url { base_url }) => run_url(&base_url).await,
    }
}

async fn run_lambda() -> anyhow::Result<()> {
    let state = build_state().await?;
    if state.config.prefetch {
        state.prefetch().await;
    }
    let state = &state;
    lambda_http::run(lambda_http::service_fn(move |req| async move {
        Ok::<_, Infallible>(handler::handle(state, req).await)
    }))
    .await
    .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))
}

async fn run_serve(listen: SocketAddr) -> anyhow::Result<()> {
    let state = Arc::new(build_state().await?);
    if state.config.prefetch {
        state.prefetch().await;
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, base_path = %state.config.base_path, "serving");
    crate::serve::serve(state, listener, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn run_url(base_url: &str) -> anyhow::Result<()> {
    let state = build_state().await?;
    let fetched = state
        .secrets()
        .receivers()
        .await
        .context("cannot read receiver secrets")?;
    for problem in &fetched.problems {
        eprintln!("skipped: {problem}");
    }
    if fetched.receivers.is_empty() {
        anyhow::bail!("no usable receiver secret found");
    }
    for r in &fetched.receivers {
        let token = receiver_token(&r.project, &r.receiver, &r.secret);
        let url = receiver_url(base_url, &token).context("invalid --base-url")?;
        let scope = if r.project.is_empty() {
            "(cluster)"
        } else {
            r.project.as_str()
        };
        println!("{scope}\t{}\t{url}", r.receiver);
    }
    Ok(())
}
