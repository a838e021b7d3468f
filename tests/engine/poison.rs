//! One job's data never stops a worker: a job whose step would panic ends
//! `failed` with a readable error, and the same worker goes on with the others.

use serde_json::json;
use sqlx::PgPool;
use stacksnap::domain::job::JobStatus;

use crate::helpers::harness;

#[sqlx::test]
async fn jobs_whose_data_would_panic_a_worker_fail_with_a_reason_and_the_worker_goes_on(
    pool: PgPool,
) {
    // Arrange: three one-off jobs. The first one's name template holds a chrono
    // item that parses but cannot be formatted (`%#z`); the second one's timeout
    // is beyond what chrono can add to an instant. Both are written straight
    // into the database, as an older build or a hand edit would have.
    let h = harness(pool).await;
    let template_volume = h.sim.create_volume("template", 1, &[]);
    let timeout_volume = h.sim.create_volume("timeout", 1, &[]);
    let fine_volume = h.sim.create_volume("fine", 1, &[]);
    let template_job = h.adhoc("volume", &template_volume, json!({})).await;
    let timeout_job = h.adhoc("volume", &timeout_volume, json!({})).await;
    let fine_job = h.adhoc("volume", &fine_volume, json!({})).await;
    sqlx::query(
        "update job set options = jsonb_set(options, '{name_template}', '\"{scheduled_at:%#z}\"') \
         where job_id = $1",
    )
    .bind(template_job)
    .execute(&h.pool)
    .await
    .unwrap();
    sqlx::query(
        "update job set options = jsonb_set(options, '{timeout_secs}', '10000000000000000') \
         where job_id = $1",
    )
    .bind(timeout_job)
    .execute(&h.pool)
    .await
    .unwrap();

    // Act: the same engine works every job to its end (a panic here fails the test).
    let fine = h.finish(fine_job).await;
    h.work().await;

    // Assert: the good job succeeded; each bad one failed with a reason, and made nothing.
    assert_eq!(fine.status, JobStatus::Succeeded, "{:?}", fine.error);
    for (job_id, expected) in [(template_job, "%#z"), (timeout_job, "panicked")] {
        // Read as text: a job this build refuses to decode is still a row.
        let (status, message): (String, Option<String>) =
            sqlx::query_as("select status, error ->> 'message' from job where job_id = $1")
                .bind(job_id)
                .fetch_one(&h.pool)
                .await
                .unwrap();
        assert_eq!(status, "failed", "{message:?}");
        let message = message.expect("a failed job says why");
        assert!(message.contains(expected), "{message}");
    }
    assert_eq!(
        h.sim.count("cinder.create_snapshot"),
        1,
        "only the good job sent a create"
    );
}
