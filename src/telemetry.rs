//! Logging setup: JSON for Lambda (as CloudWatch and `AWS_LAMBDA_LOG_FORMAT` expect), readable
//! text on stderr for the CLI, whose stdout is reserved for output.
//!
//! Both honour `AWS_LAMBDA_LOG_LEVEL`, then `RUST_LOG` (default `info`). Nothing in quayhook
//! logs a token, a path, a body, a secret or kubeconfig content; fields, not formatted strings.

use tracing_subscriber::EnvFilter;

/// Logging for the Lambda runtime: the runtime's own subscriber (JSON when
/// `AWS_LAMBDA_LOG_FORMAT=JSON`, as the SAM template sets), which also tags every event with
/// the invocation's `requestId`.
pub fn init_lambda() {
    lambda_http::tracing::init_default_subscriber();
}

/// Logging for CLI commands and `serve`: stderr, text or JSON (`json = true`).
pub fn init_cli(json: bool) {
    let filter = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .and_then(|level| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
