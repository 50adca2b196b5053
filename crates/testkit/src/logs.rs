//! Captures every log event of the test process (JSON, quayhook and the Lambda runtime down to
//! TRACE, other dependencies at DEBUG, through the same raw-event filter as production), so
//! suites can assert that nothing sensitive is ever logged, at TRACE too.
//!
//! Test support, no I/O: installs the process-wide `tracing` subscriber, writing to memory.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

static BUFFER: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static INSTALLED: OnceLock<()> = OnceLock::new();

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        BUFFER
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        Capture
    }
}

/// Installs the capturing subscriber once per process.
pub fn install() {
    INSTALLED.get_or_init(|| {
        let filter = EnvFilter::new("debug,quayhook=trace,lambda_runtime=trace");
        let subscriber = quayhook::telemetry::lambda_subscriber(Capture, filter, true);
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// Everything logged so far.
pub fn snapshot() -> String {
    String::from_utf8_lossy(&BUFFER.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}
