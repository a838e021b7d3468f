//! What happens inside this process, as Prometheus metrics: HTTP requests,
//! OpenStack calls, scheduler lag and pool use. One recorder per process
//! ([`install`]); the families are named here, and callers record through the
//! small functions below so that labels stay bounded. What the database knows
//! (jobs, runs, snapshots, policies) is rendered at scrape time by `http::metrics`,
//! not recorded here.

use std::{sync::OnceLock, time::Duration};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// HTTP requests served, by method, route template and status.
pub const HTTP_REQUESTS: &str = "stacksnap_http_requests_total";
/// HTTP request latency (histogram), by the same labels.
pub const HTTP_DURATION: &str = "stacksnap_http_request_duration_seconds";
/// OpenStack requests sent, by service, operation and status class.
pub const OPENSTACK_REQUESTS: &str = "stacksnap_openstack_requests_total";
/// OpenStack request latency (histogram), by service and operation.
pub const OPENSTACK_DURATION: &str = "stacksnap_openstack_request_duration_seconds";
/// Fire instant − scheduled instant of each run the scheduler fired (histogram).
pub const SCHEDULER_LAG: &str = "stacksnap_scheduler_lag_seconds";
/// This replica's PostgreSQL connections, by state (`idle`, `active`).
pub const DB_POOL_CONNECTIONS: &str = "stacksnap_db_pool_connections";

/// The route label of a request no route matched: raw paths would be unbounded.
pub const UNMATCHED_ROUTE: &str = "unmatched";

const HTTP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const OPENSTACK_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
const LAG_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus recorder, installed as the global `metrics` recorder
/// on first use (every service started in one process, as in the tests, shares it).
/// Every histogram gets buckets: the exporter's default, a summary, cannot be
/// aggregated across replicas.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(HTTP_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(OPENSTACK_DURATION.into()),
                    OPENSTACK_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(SCHEDULER_LAG.into()), LAG_BUCKETS)
            })
            .expect("the bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if ::metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                "another metrics recorder is installed; /metrics shows no process metrics"
            );
        }
        describe();
        handle
    })
}

fn describe() {
    ::metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests served by this replica.");
    ::metrics::describe_histogram!(
        HTTP_DURATION,
        ::metrics::Unit::Seconds,
        "HTTP request latency in this replica."
    );
    ::metrics::describe_counter!(
        OPENSTACK_REQUESTS,
        "OpenStack API requests sent by this replica."
    );
    ::metrics::describe_histogram!(
        OPENSTACK_DURATION,
        ::metrics::Unit::Seconds,
        "OpenStack API request latency seen by this replica."
    );
    ::metrics::describe_histogram!(
        SCHEDULER_LAG,
        ::metrics::Unit::Seconds,
        "Fire instant minus scheduled instant of the runs this replica fired."
    );
    ::metrics::describe_gauge!(
        DB_POOL_CONNECTIONS,
        "This replica's PostgreSQL connections."
    );
}

/// Records one HTTP request. `route` is a route template or [`UNMATCHED_ROUTE`].
pub fn http_request(method: &str, route: &str, status: u16, latency: Duration) {
    let method = bounded_method(method);
    let labels = [
        ("method", method.to_owned()),
        ("route", route.to_owned()),
        ("status", status.to_string()),
    ];
    ::metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    ::metrics::histogram!(HTTP_DURATION, &labels).record(latency.as_secs_f64());
}

/// Records one OpenStack request: `status` is the HTTP status, `None` when no
/// answer came (connection refused, timeout).
pub fn openstack_request(
    service: &'static str,
    operation: &'static str,
    status: Option<u16>,
    latency: Duration,
) {
    ::metrics::counter!(OPENSTACK_REQUESTS, "service" => service, "operation" => operation,
        "status_class" => status_class(status))
    .increment(1);
    ::metrics::histogram!(OPENSTACK_DURATION, "service" => service, "operation" => operation)
        .record(latency.as_secs_f64());
}

/// Records how late the scheduler fired a run.
pub fn scheduler_lag(lag: chrono::TimeDelta) {
    let seconds = lag.as_seconds_f64().max(0.0);
    ::metrics::histogram!(SCHEDULER_LAG).record(seconds);
}

/// Sets this replica's pool gauges (summed over its pools).
pub fn db_pool_connections(idle: usize, active: usize) {
    ::metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(idle as f64);
    ::metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "active").set(active as f64);
}

/// `2xx`, `4xx`, ... for an answer, `error` for none.
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        _ => "error",
    }
}

/// The standard methods as they are, any other as `other` (a client can send any token).
fn bounded_method(method: &str) -> &str {
    match method {
        "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => method,
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_group_answers_and_name_missing_ones_error() {
        assert_eq!(status_class(Some(202)), "2xx");
        assert_eq!(status_class(Some(404)), "4xx");
        assert_eq!(status_class(Some(503)), "5xx");
        assert_eq!(status_class(Some(304)), "3xx");
        assert_eq!(status_class(None), "error");
        assert_eq!(status_class(Some(999)), "error");
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(bounded_method("PATCH"), "PATCH");
        assert_eq!(bounded_method("BREW"), "other");
    }
}
