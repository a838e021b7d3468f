//! `stacksnap demo`: a sample policy and a welcome message for a first look.

use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{domain::policy::PolicySpec, store::policies as store};

const DEMO_POLICY: &str = "demo-every-minute";

/// Creates the sample policy unless a policy of that name exists.
///
/// # Errors
/// The database refuses the insert.
pub async fn seed(pool: &PgPool, now: DateTime<Utc>) -> anyhow::Result<()> {
    let spec: PolicySpec = serde_json::from_value(serde_json::json!({
        "name": DEMO_POLICY,
        "description": "Sample policy made by `stacksnap demo`: every server tagged `demo`, every minute.",
        "resource_type": "server",
        "targets": {"selector": {"tags": ["demo"]}},
        "schedules": [{"cron": "* * * * *", "timezone": "UTC"}],
        "retention": {"keep_last": 5, "keep_within": "1h"}
    }))?;
    let valid = spec
        .validate(now)
        .map_err(|errors| anyhow::anyhow!("the demo policy is invalid: {errors:?}"))?;
    let next_run_at = valid.next_run_after(now);
    match store::insert_policy(pool, "default", Uuid::now_v7(), valid.spec(), next_run_at).await {
        Ok(_) => tracing::info!(policy = DEMO_POLICY, "created the demo policy"),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Prints where to look and what to try.
pub fn print_welcome(addr: SocketAddr) {
    println!(
        "\nstacksnap demo is running.\n\
         \n  API docs:     http://{addr}/docs\
         \n  OpenAPI:      http://{addr}/openapi.json\
         \n  Policies:     http://{addr}/v1/policies\
         \n\nTry:\n  curl -s http://{addr}/v1/policies | python3 -m json.tool\
         \n  curl -s -X POST http://{addr}/v1/policies -H 'content-type: application/json' \\\
         \n       -d '{{\"name\":\"nightly\",\"resource_type\":\"server\",\"targets\":{{\"selector\":{{\"tags\":[\"backup\"]}}}},\"schedules\":[{{\"cron\":\"0 2 * * *\",\"timezone\":\"Europe/Berlin\"}}],\"retention\":{{\"keep_daily\":7}}}}'\
         \n\nPress Ctrl-C to stop.\n"
    );
}
