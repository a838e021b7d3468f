//! What the database knows about Cinder snapshots the orphan finder looks at:
//! which job recorded each one (in the `job` and `snapshot` tables), and which
//! jobs named by a snapshot's `stacksnap_job_id` exist. Read only.

use sqlx::PgPool;
use uuid::Uuid;

/// A job that recorded a Cinder snapshot, or that a snapshot's metadata names.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Recorded {
    /// The Cinder snapshot's id; `None` for a job found by its id alone.
    pub snapshot_id: Option<String>,
    pub job_id: Uuid,
    /// A server job's pieces were made by Nova for its image; other kinds snapshot volumes.
    pub server: bool,
    /// The image the job made, if it recorded one.
    pub image_id: Option<String>,
    /// The job has not ended: its artefacts are still being made or tracked.
    pub in_flight: bool,
}

/// The records of the Cinder snapshots `snapshot_ids` (in jobs and managed
/// snapshots, ended or not) and of the jobs `job_ids`.
///
/// # Errors
/// The query fails.
pub async fn recorded(
    pool: &PgPool,
    snapshot_ids: &[String],
    job_ids: &[Uuid],
) -> Result<Vec<Recorded>, sqlx::Error> {
    sqlx::query_as(
        "select piece ->> 'snapshot_id' as snapshot_id, j.job_id, j.resource_type = 'server' as server, \
                j.image_id, j.status in ('pending', 'creating', 'tracking') as in_flight \
           from job j, jsonb_array_elements(j.volume_snapshots) as piece \
          where piece ->> 'snapshot_id' = any($1) \
         union all \
         select piece ->> 'snapshot_id', s.job_id, s.resource_type = 'server', s.image_id, false \
           from snapshot s, jsonb_array_elements(s.volume_snapshots) as piece \
          where piece ->> 'snapshot_id' = any($1) \
         union all \
         select null, j.job_id, j.resource_type = 'server', j.image_id, \
                j.status in ('pending', 'creating', 'tracking') \
           from job j where j.job_id = any($2) \
         union all \
         select null, s.job_id, s.resource_type = 'server', s.image_id, false \
           from snapshot s where s.job_id = any($2)",
    )
    .bind(snapshot_ids)
    .bind(job_ids)
    .fetch_all(pool)
    .await
}
