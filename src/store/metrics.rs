//! Reads the metrics the database keeps (`metric_counter` and `metric_delta`, `policy_last_success`,
//! maintained by triggers in the transactions that change jobs, runs and
//! snapshots; `policy_freshness`, kept by the engine's `freshness` task): small reads per scrape, whatever the size of the history.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, types::Json};
use uuid::Uuid;

/// One sample the database keeps: a family (or `_bucket`/`_sum`/`_count` name),
/// its labels and its value summed over the shards.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSample {
    pub family: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A `metric_counter` sample as read: family, labels, value over the shards.
type SampleRow = (String, Json<BTreeMap<String, String>>, f64);

/// Everything `/metrics` reads from the database.
#[derive(Debug, Clone, Default)]
pub struct DatabaseMetrics {
    pub samples: Vec<StoredSample>,
    /// Each policy (that exists) and when one of its runs last succeeded.
    pub policy_last_success: Vec<(Uuid, DateTime<Utc>)>,
    /// Each enabled policy's stale resources, as the `freshness` task last counted them.
    pub policy_stale_resources: Vec<(Uuid, i64)>,
    /// When those counts were made (`None` before the first pass).
    pub stale_counted_at: Option<DateTime<Utc>>,
}

/// Reads the database-derived metrics.
///
/// # Errors
/// The queries fail.
pub async fn fetch_database_metrics(db: &PgPool) -> Result<DatabaseMetrics, sqlx::Error> {
    let samples: Vec<SampleRow> = sqlx::query_as(
        "select family, labels, sum(value)::double precision from ( \
             select family, labels, value from metric_counter \
             union all select family, labels, value from metric_delta) m \
         group by family, labels order by family, labels",
    )
    .fetch_all(db)
    .await?;
    let policy_last_success = sqlx::query_as(
        "select policy_id, succeeded_at from policy_last_success order by policy_id",
    )
    .fetch_all(db)
    .await?;
    let policy_stale_resources = sqlx::query_as(
        "select policy_id, stale_resources from policy_freshness order by policy_id",
    )
    .fetch_all(db)
    .await?;
    let stale_counted_at = sqlx::query_scalar("select max(computed_at) from policy_freshness")
        .fetch_one(db)
        .await?;
    Ok(DatabaseMetrics {
        samples: samples
            .into_iter()
            .map(|(family, Json(labels), value)| StoredSample {
                family,
                labels,
                value,
            })
            .collect(),
        policy_last_success,
        policy_stale_resources,
        stale_counted_at,
    })
}

/// The upper bounds of the job duration histogram's buckets, as the database's
/// triggers fill them (compared with the rendered ones in a test).
///
/// # Errors
/// The query fails.
pub async fn job_duration_buckets(db: &PgPool) -> Result<Vec<f64>, sqlx::Error> {
    sqlx::query_scalar("select metric_job_duration_buckets()")
        .fetch_one(db)
        .await
}

/// Folds the deltas the triggers added (`metric_delta`) into the totals
/// (`metric_counter`), unless another replica is folding. Only this writes
/// `metric_counter`, so no transaction of the engine or the API waits on its
/// rows. Returns the deltas folded.
///
/// # Errors
/// The queries fail; nothing is folded.
pub async fn fold_deltas(db: &PgPool) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin().await?;
    let locked: bool =
        sqlx::query_scalar("select pg_try_advisory_xact_lock(hashtext('stacksnap.metric_fold'))")
            .fetch_one(&mut *tx)
            .await?;
    if !locked {
        tx.rollback().await?;
        return Ok(0);
    }
    // Deltas committed while this runs are not seen by the delete and stay for the next fold.
    let folded: i64 = sqlx::query_scalar(
        "with moved as (delete from metric_delta returning family, labels, value), \
         summed as (select family, labels, sum(value) as value, count(*) as n from moved \
             group by family, labels), \
         upserted as ( \
             insert into metric_counter (family, labels, shard, value) \
             select family, labels, 0, value from summed \
             on conflict (family, labels, shard) do update \
                 set value = metric_counter.value + excluded.value) \
         select coalesce(sum(n), 0)::bigint from summed",
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(folded.unsigned_abs())
}
