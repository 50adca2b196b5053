//! Logging setup: JSON for Lambda (as CloudWatch and `AWS_LAMBDA_LOG_FORMAT` expect), readable
//! text on stderr for the CLI, whose stdout is reserved for output.
//!
//! I/O (installs the process-wide subscriber). Both honour `AWS_LAMBDA_LOG_LEVEL`, then
//! `RUST_LOG` (default `info`). Nothing in quayhook logs a token, a path, a body, a secret or
//! kubeconfig content; fields, not formatted strings. The Lambda runtime crate does log the raw
//! invocation event (the path with the token, and the body) at TRACE, so [`no_raw_events`]
//! removes its TRACE events at every configured level: even `AWS_LAMBDA_LOG_LEVEL=TRACE` or
//! `RUST_LOG=lambda_runtime=trace` cannot bring them back.

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt, FilterFn, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry};

/// Targets whose TRACE events carry request content: `lambda_runtime` logs "raw JSON event
/// received from Lambda" with the whole event (path, token, headers, body) at TRACE.
const RAW_EVENT_TARGETS: &[&str] = &["lambda_runtime", "lambda_runtime_api_client"];

fn is_raw_event(meta: &Metadata<'_>) -> bool {
    *meta.level() == Level::TRACE
        && RAW_EVENT_TARGETS.iter().any(|t| {
            meta.target() == *t
                || meta
                    .target()
                    .strip_prefix(t)
                    .is_some_and(|rest| rest.starts_with("::"))
        })
}

/// A filter that drops the Lambda runtime's TRACE events (which carry the raw invocation
/// event) and keeps everything else; composed with the level filter in every subscriber.
pub fn no_raw_events() -> FilterFn<fn(&Metadata<'_>) -> bool> {
    fn keep(meta: &Metadata<'_>) -> bool {
        !is_raw_event(meta)
    }
    filter_fn(keep as fn(&Metadata<'_>) -> bool)
}

/// The level filter: `AWS_LAMBDA_LOG_LEVEL` wins over `RUST_LOG` (as the Lambda runtime does),
/// default `info`.
fn level_filter() -> EnvFilter {
    std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .and_then(|level| EnvFilter::try_new(level.to_ascii_lowercase()).ok())
        .unwrap_or_else(|| {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
        })
}

/// The subscriber for the Lambda runtime: JSON lines without timestamps (CloudWatch adds
/// them) when `AWS_LAMBDA_LOG_FORMAT=JSON` (the SAM template sets it), text otherwise; the
/// level filter given (at init: `AWS_LAMBDA_LOG_LEVEL`, then `RUST_LOG`), and never the
/// runtime's raw events ([`no_raw_events`]). The runtime's per-invocation span tags every
/// event with the `requestId`.
pub fn lambda_subscriber<W>(writer: W, filter: EnvFilter, json: bool) -> impl tracing::Subscriber
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = filter.and(no_raw_events());
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time()
        .with_writer(writer);
    let layer = if json {
        fmt.json().with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    Registry::default().with(layer)
}

/// Logging for the Lambda runtime (see [`lambda_subscriber`]), on stdout.
pub fn init_lambda() {
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let subscriber = lambda_subscriber(std::io::stdout, level_filter(), json);
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Logging for CLI commands and `serve`: stderr, text or JSON (`json = true`), with the same
/// level rules and the same removal of raw events.
pub fn init_cli(json: bool) {
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let filter = level_filter().and(no_raw_events());
    let layer = if json {
        fmt.json().with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = tracing::subscriber::set_global_default(Registry::default().with(layer));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn logged_at(filter: &str, json: bool, emit: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let subscriber = lambda_subscriber(buffer.clone(), EnvFilter::new(filter), json);
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    const TOKEN: &str = "3e6315f59f25bc201ec77ebb7818c057c4406a4b58d930f27d651b6af36395a9";

    fn emit_like_the_runtime() {
        // What lambda_runtime 1.5 does in layers/api_response.rs, at the same target.
        let body = format!(r#"{{"rawPath":"/quay/{TOKEN}","body":"{{}}"}}"#);
        tracing::trace!(target: "lambda_runtime::layers::api_response", body = body.as_str(), "raw JSON event received from Lambda");
        tracing::trace!(target: "lambda_runtime", "New event arrived (run loop)");
        tracing::debug!(target: "lambda_runtime::runtime", "a debug line of the runtime");
        tracing::trace!(target: "quayhook::handler", "a trace line of ours");
        tracing::trace!(target: "lambda_runtimex", "another crate, not filtered");
    }

    #[test]
    fn the_raw_invocation_event_is_never_logged_even_at_trace() {
        for filter in [
            "trace",
            "lambda_runtime=trace,trace",
            "info,lambda_runtime=trace",
        ] {
            for json in [false, true] {
                let out = logged_at(filter, json, emit_like_the_runtime);
                assert!(!out.contains(TOKEN), "{filter} json={json}: {out}");
                assert!(!out.contains("raw JSON event"), "{filter}: {out}");
                assert!(!out.contains("New event arrived"), "{filter}: {out}");
            }
        }
        let out = logged_at("trace", true, emit_like_the_runtime);
        assert!(out.contains("a debug line of the runtime"), "{out}");
        assert!(out.contains("a trace line of ours"), "{out}");
        assert!(out.contains("another crate, not filtered"), "{out}");
    }

    #[test]
    fn levels_below_trace_are_unchanged() {
        let out = logged_at("info", false, || {
            tracing::info!(target: "lambda_runtime", "kept");
            tracing::debug!(target: "quayhook", "dropped by the level");
        });
        assert!(out.contains("kept"));
        assert!(!out.contains("dropped by the level"));
    }
}
