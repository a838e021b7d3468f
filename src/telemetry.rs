//! The tracing subscriber, set up once per process, and the JSON line format.
//!
//! A JSON line carries, at its top level, the fields of every span it was
//! logged in (the request's `request_id`, `route`, `project_id`; a job step's
//! `job_id`, `run_id`, `policy_id`; a deletion's `snapshot_id`) beside its own,
//! so that a log pipeline filters on `job_id` or `request_id` directly, however
//! deeply the line was logged.
//!
//! The process metrics are in [`metrics`].

pub mod metrics;

use std::fmt;

use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value};
use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{
    EnvFilter, Layer,
    fmt::{
        self as tracing_fmt, FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter,
        format::JsonFields,
    },
    prelude::*,
    registry::LookupSpan,
};

use crate::config::LogFormat;

/// Installs the global subscriber. The filter comes from `RUST_LOG` (default `info`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry.with(json_layer(std::io::stdout)).init(),
        LogFormat::Pretty => registry
            .with(tracing_fmt::layer().with_target(false))
            .init(),
    }
}

/// The layer that writes one JSON object per line to `writer`, span fields flattened.
pub fn json_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_fmt::layer()
        .fmt_fields(JsonFields::new())
        .event_format(FlatJson)
        .with_writer(writer)
}

/// `{"timestamp", "level", "target", <span fields, outermost first>, <event
/// fields>, "span": <innermost span's name>}`; an event's own field wins over a
/// span's of the same name.
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: tracing_fmt::format::Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        line.insert("timestamp".into(), now.into());
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        let mut innermost = None;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                innermost = Some(span.name());
                let extensions = span.extensions();
                // Spans without fields have an empty text here, which is no JSON: skipped.
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(fields)) = serde_json::from_str(fields.as_str())
                {
                    line.extend(fields);
                }
            }
        }
        event.record(&mut Fields(&mut line));
        if let Some(name) = innermost {
            line.insert("span".into(), name.into());
        }
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writer.write_str(&text)?;
        writer.write_char('\n')
    }
}

/// Collects an event's fields as JSON values.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::{Arc, Mutex},
    };

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn lines(buffer: &Buffer) -> Vec<Value> {
        String::from_utf8(buffer.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_line_carries_the_fields_of_every_span_it_is_in_at_its_top_level() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(json_layer(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!(
                "request",
                request_id = "r-1",
                status = tracing::field::Empty
            );
            let _request = request.enter();
            request.record("status", 200);
            let job = tracing::info_span!("job", job_id = %"j-1", run_id = "r-9");
            let _job = job.enter();
            tracing::info!(
                status = "creating",
                attempt = 2,
                ok = true,
                "job state changed"
            );
            let quiet = tracing::info_span!("quiet");
            let _quiet = quiet.enter();
            tracing::warn!(run_id = "own", "inner");
        });
        let lines = lines(&buffer);
        assert_eq!(lines.len(), 2);
        let first = &lines[0];
        assert_eq!(first["request_id"], "r-1");
        assert_eq!(first["status"], "creating", "the event's field wins");
        assert_eq!(first["job_id"], "j-1");
        assert_eq!(first["run_id"], "r-9");
        assert_eq!(first["attempt"], 2);
        assert_eq!(first["ok"], true);
        assert_eq!(first["message"], "job state changed");
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["span"], "job");
        assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));
        let second = &lines[1];
        assert_eq!(second["request_id"], "r-1");
        assert_eq!(second["job_id"], "j-1");
        assert_eq!(second["run_id"], "own");
        assert_eq!(second["span"], "quiet");
    }

    #[test]
    fn a_line_outside_any_span_has_only_its_own_fields() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(json_layer(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || tracing::info!(n = 1, "alone"));
        let lines = lines(&buffer);
        assert_eq!(lines[0]["n"], 1);
        assert_eq!(lines[0]["message"], "alone");
        assert!(lines[0].get("span").is_none());
    }
}
