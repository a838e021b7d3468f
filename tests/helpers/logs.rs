//! Capturing what the service logs, at debug level for every target and `log`
//! records included, so that a test can search it for secrets.

use std::{
    io,
    sync::{Arc, Mutex, Once},
};

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Everything the subscriber wrote, in both formats the service logs in.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends the `log` records of reqwest and sqlx to the current tracing subscriber,
/// as `telemetry::init` does in the service.
fn bridge_log_records() {
    static BRIDGE: Once = Once::new();
    BRIDGE.call_once(|| {
        tracing_log::LogTracer::init().expect("no other `log` logger in the test binary");
    });
}

/// A subscriber for this thread at debug level for every target, writing JSON
/// (as in production) and the human format (span fields inline) to `captured`.
/// The test runtime has one thread, so the service's and the simulator's tasks
/// log here too.
pub fn capture_logs(captured: &Captured) -> tracing::subscriber::DefaultGuard {
    bridge_log_records();
    let json = captured.clone();
    let pretty = captured.clone();
    let subscriber = tracing_subscriber::registry()
        .with(EnvFilter::new("debug"))
        .with(
            fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(true)
                .with_writer(move || json.clone()),
        )
        .with(
            fmt::layer()
                .with_ansi(false)
                .with_writer(move || pretty.clone()),
        );
    tracing::subscriber::set_default(subscriber)
}

/// A subscriber for this thread at info level writing what `--log-format json`
/// writes (the service's own layer) to `captured`.
pub fn capture_json_logs(captured: &Captured) -> tracing::subscriber::DefaultGuard {
    let writer = captured.clone();
    let subscriber = tracing_subscriber::registry()
        .with(EnvFilter::new("info"))
        .with(stacksnap::telemetry::json_layer(move || writer.clone()));
    tracing::subscriber::set_default(subscriber)
}

impl Captured {
    /// Every JSON line captured, parsed; lines that are not JSON are skipped.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}
