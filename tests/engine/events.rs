//! Events: one per change of state, written by the transaction that makes the
//! change (a rolled-back change leaves none), read in an order that a late
//! commit never breaks.

use chrono::DurationRound as _;
use serde_json::{Value, json};
use sqlx::{Connection as _, PgPool};
use stacksnap::{
    clock::Clock as _,
    domain::{
        event::{EventKind, KindFilter},
        job::JobStatus,
        policy::{PolicyError, PolicySpec},
    },
    store::{
        events::{self, Event, EventFilter, Position},
        policies::{self, PolicyChange},
    },
};
use uuid::Uuid;

use crate::helpers::{harness, settled_events};

/// Every event of project `default`, in read order, once every committed one
/// is readable.
async fn all_events(pool: &PgPool) -> Vec<Event> {
    settled_events(pool).await;
    events::list_events(pool, "default", &EventFilter::default(), None, 1000)
        .await
        .unwrap()
}

fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

fn policy_spec(name: &str) -> Value {
    json!({
        "name": name, "resource_type": "server",
        "targets": {"ids": ["4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10"]},
        "schedules": [{"cron": "0 2 * * *", "timezone": "UTC"}],
        "retention": {"keep_last": 3}
    })
}

#[sqlx::test]
async fn a_one_off_snapshot_writes_one_event_per_transition_in_order(pool: PgPool) {
    // Arrange
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-1", &[], &[], false);

    // Act
    let job_id = h.adhoc("server", &server, json!({})).await;
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let events = all_events(&h.pool).await;
    assert_eq!(
        kinds(&events),
        [
            "run.fired",
            "job.started",
            "job.succeeded",
            "snapshot.created",
            "run.succeeded"
        ]
    );
    let snapshot_id: Uuid =
        sqlx::query_scalar("select snapshot_id from snapshot where job_id = $1")
            .bind(job_id)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    for event in &events {
        assert_eq!(event.project_id, "default");
        assert_eq!(event.run_id, Some(job.run_id), "{:?}", event.kind);
        assert_eq!(event.policy_id, None, "a one-off run has no policy");
    }
    assert_eq!(
        events[0].actor, "api",
        "asked for through the API, no user known"
    );
    assert_eq!(events[0].data["trigger"], "adhoc");
    for event in &events[1..] {
        assert_eq!(event.actor, "engine", "{:?}", event.kind);
    }
    for event in &events[1..4] {
        assert_eq!(event.job_id, Some(job_id), "{:?}", event.kind);
    }
    assert_eq!(events[3].snapshot_id, Some(snapshot_id));
    assert_eq!(events[3].data["image_id"], json!(job.image_id));
    assert_eq!(events[3].data["complete"], true);
    assert_eq!(events[2].data["resource_id"], server.as_str());
    // The end of the job, its snapshot and its run's end commit together
    // (`at` is the writing transaction's start).
    assert_eq!(events[2].at, events[4].at);
    assert!(events.windows(2).all(|w| w[0].position() < w[1].position()));
}

#[sqlx::test]
async fn a_failed_job_names_its_error_in_the_event(pool: PgPool) {
    // Arrange: a server that does not exist.
    let h = harness(pool).await;
    let missing = Uuid::new_v4().to_string();

    // Act
    let job_id = h.adhoc("server", &missing, json!({})).await;
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.expect("a failed job says why").0;
    let events = all_events(&h.pool).await;
    let failed: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == EventKind::JobFailed)
        .collect();
    assert_eq!(failed.len(), 1, "{:?}", kinds(&events));
    assert_eq!(failed[0].data["error"]["code"], error.code.as_str());
    assert_eq!(failed[0].data["error"]["message"], error.message.as_str());
    let run_end = events.last().unwrap();
    assert_eq!(run_end.kind, EventKind::RunFailed, "{:?}", kinds(&events));
}

#[sqlx::test]
async fn a_policy_records_who_created_changed_broke_and_deleted_it(pool: PgPool) {
    // Arrange
    let h = harness(pool).await;
    let now = h.clock.now();
    let spec: PolicySpec = serde_json::from_value(policy_spec("nightly")).unwrap();
    let valid = spec.validate(now).unwrap();
    let id = Uuid::now_v7();

    // Act: created and changed by users, broken by the scheduler, deleted by a user.
    let created = policies::insert_policy(&h.pool, "default", id, &valid, None, Some("u-1"))
        .await
        .unwrap();
    let change = PolicyChange {
        expected_version: created.version,
        spec: &valid,
        next_run_at: None,
        updated_by: Some("u-2"),
        renewed_trust: None,
    };
    policies::update_policy(&h.pool, "default", id, &change, now)
        .await
        .unwrap()
        .expect("updated");
    // The scheduler moving the next run is no change of state.
    let mut conn = h.pool.acquire().await.unwrap();
    policies::set_next_run_at(&mut conn, id, Some(now))
        .await
        .unwrap();
    let broken = PolicyError::new("invalid_policy", "no longer passes");
    policies::mark_broken(&mut conn, id, &broken).await.unwrap();
    drop(conn);
    assert!(
        policies::delete_policy(&h.pool, "default", id, None, false, now, "u-3")
            .await
            .unwrap()
    );

    // Assert
    let events = all_events(&h.pool).await;
    assert_eq!(
        kinds(&events),
        [
            "policy.created",
            "policy.updated",
            "policy.broken",
            "policy.deleted"
        ]
    );
    let actors: Vec<&str> = events.iter().map(|e| e.actor.as_str()).collect();
    assert_eq!(actors, ["u-1", "u-2", "scheduler", "u-3"]);
    assert!(events.iter().all(|e| e.policy_id == Some(id)));
    assert_eq!(events[1].data["version"], 2);
    assert_eq!(events[2].data["error"]["code"], "invalid_policy");
    assert_eq!(events[3].data["name"], "nightly");
}

#[sqlx::test]
async fn a_rolled_back_change_leaves_no_event(pool: PgPool) {
    // Arrange
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-1", &[], &[], false);
    let job_id = h.adhoc("server", &server, json!({})).await;
    let before = all_events(&h.pool).await.len();

    // Act: a policy insert and a job's end, each seen inside its transaction, then rolled back.
    let mut tx = h.pool.begin().await.unwrap();
    sqlx::query(
        "insert into policy (policy_id, project_id, name, resource_type, targets, schedules, retention, options) \
         values ($1, 'default', 'doomed', 'server', '{}', '[]', '{}', '{}')",
    )
    .bind(Uuid::now_v7())
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("update job set status = 'failed', finished_at = now() where job_id = $1")
        .bind(job_id)
        .execute(&mut *tx)
        .await
        .unwrap();
    let inside: Vec<String> = sqlx::query_scalar("select kind from event order by seq")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    // Assert
    assert!(
        inside.ends_with(&["policy.created".to_owned(), "job.failed".to_owned()]),
        "the transaction wrote its events: {inside:?}"
    );
    let after = all_events(&h.pool).await;
    assert_eq!(after.len(), before, "{:?}", kinds(&after));
    let total: i64 = sqlx::query_scalar("select count(*) from event")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(total as usize, before);
}

#[sqlx::test]
async fn a_reader_paging_by_cursor_sees_an_event_that_commits_late(pool: PgPool) {
    // Arrange: one event read, and the reader's position after it.
    let h = harness(pool).await;
    insert_policy_row(&h.pool, "first").await;
    settled_events(&h.pool).await;
    let page = read_after(&h.pool, None).await;
    assert_eq!(names(&page), ["first"]);
    let cursor = page.last().unwrap().position();

    // Act: `early` writes first and commits last; `late` writes after it and
    // commits first. The reader pages between the two commits.
    let mut early = h.pool.begin().await.unwrap();
    insert_policy_in(&mut early, "early").await;
    let mut late = h.pool.begin().await.unwrap();
    insert_policy_in(&mut late, "late").await;
    late.commit().await.unwrap();
    let between = read_after(&h.pool, Some(cursor)).await;
    early.commit().await.unwrap();
    let next = read_after(&h.pool, Some(between.last().unwrap().position())).await;

    // Assert: `late` is served at once, and `early`, committed after the
    // reader paged past `late`, comes on the next page: nothing is skipped.
    let by_sequence: Vec<String> = sqlx::query_scalar(
        "select data ->> 'name' from event where seq > (select seq from event where data ->> 'name' = 'first') \
         order by seq",
    )
    .fetch_all(&h.pool)
    .await
    .unwrap();
    assert_eq!(by_sequence, ["early", "late"], "early wrote first");
    assert_eq!(names(&between), ["late"]);
    assert_eq!(names(&next), ["early"]);
    // From the old cursor, both, in commit order, one by one too.
    assert_eq!(
        names(&read_after(&h.pool, Some(cursor)).await),
        ["late", "early"]
    );
    let one = read_page(&h.pool, Some(cursor), 1).await;
    assert_eq!(names(&one), ["late"]);
    let two = read_page(&h.pool, Some(one[0].position()), 1).await;
    assert_eq!(names(&two), ["early"]);
    assert!(
        read_page(&h.pool, Some(two[0].position()), 1)
            .await
            .is_empty()
    );
}

#[sqlx::test]
async fn a_write_transaction_open_in_another_database_delays_nothing(pool: PgPool) {
    // Arrange: another database on the same server, with a write transaction
    // left open in it (a bulk load, another application's migration).
    let h = harness(pool).await;
    let other = format!("seq_other_{}", Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("create database {other}")))
        .execute(&h.pool)
        .await
        .unwrap();
    let options = (*h.pool.connect_options()).clone().database(&other);
    let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
    sqlx::query("create table load (n int)")
        .execute(&mut conn)
        .await
        .unwrap();
    let mut long = conn.begin().await.unwrap();
    sqlx::query("insert into load values (1)")
        .execute(&mut *long)
        .await
        .unwrap();
    let long_xact: i64 = sqlx::query_scalar("select pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *long)
        .await
        .unwrap();

    // Act: a change in the service's database, read at once.
    insert_policy_row(&h.pool, "now").await;
    let started = std::time::Instant::now();
    let listed = read_after(&h.pool, None).await;
    let took = started.elapsed();
    let xmin: i64 =
        sqlx::query_scalar("select pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            .fetch_one(&h.pool)
            .await
            .unwrap();

    // Clean up before asserting, so a failure leaves no database behind.
    long.rollback().await.unwrap();
    conn.close().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("drop database {other}")))
        .execute(&h.pool)
        .await
        .unwrap();

    // Assert: served, although the other transaction holds the server's xmin back.
    assert!(xmin <= long_xact, "the open transaction holds xmin back");
    assert_eq!(names(&listed), ["now"]);
    assert!(took < std::time::Duration::from_secs(2), "{took:?}");
}

#[sqlx::test]
async fn a_pass_with_nothing_to_number_takes_no_lock(pool: PgPool) {
    // Arrange: every event numbered, and the sequencer's lock held elsewhere.
    let h = harness(pool).await;
    insert_policy_row(&h.pool, "p").await;
    settled_events(&h.pool).await;
    let mut holder = h.pool.begin().await.unwrap();
    sqlx::query("select pg_advisory_xact_lock($1)")
        .bind(events::SEQUENCER_LOCK)
        .execute(&mut *holder)
        .await
        .unwrap();

    // Act
    let pass = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        events::sequence_events(&h.pool),
    )
    .await;
    holder.rollback().await.unwrap();

    // Assert
    assert_eq!(pass.expect("not blocked on the lock").unwrap(), 0);
}

#[sqlx::test]
async fn racing_passes_give_unique_positions_a_reader_never_skips(pool: PgPool) {
    // Arrange: writers committing events while four sequencers and a reader run.
    let h = harness(pool).await;
    let pool = h.pool.clone();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    insert_policy_row(&pool, &format!("w{w}-{i}")).await;
                }
            })
        })
        .collect();
    let done = tokio_util::sync::CancellationToken::new();
    let sequencers: Vec<_> = (0..4)
        .map(|_| {
            let (pool, done) = (pool.clone(), done.clone());
            tokio::spawn(async move {
                while !done.is_cancelled() {
                    events::sequence_events(&pool).await.unwrap();
                }
            })
        })
        .collect();

    // Act: page by cursor, 7 at a time, until the writers are done and a
    // last read finds nothing more.
    let mut read: Vec<Event> = Vec::new();
    let mut cursor = None;
    let mut writers_done = false;
    loop {
        let page = read_page(&pool, cursor, 7).await;
        if let Some(last) = page.last() {
            cursor = Some(last.position());
        }
        let empty = page.is_empty();
        read.extend(page);
        if writers_done && empty {
            break;
        }
        writers_done = writers.iter().all(tokio::task::JoinHandle::is_finished);
    }
    done.cancel();
    for task in writers.into_iter().chain(sequencers) {
        task.await.unwrap();
    }

    // Assert: every event read once, by rising position.
    let all: Vec<Uuid> = sqlx::query_scalar("select event_id from event order by position")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(all.len(), 100);
    assert!(read.windows(2).all(|w| w[0].position < w[1].position));
    let ids: Vec<Uuid> = read.iter().map(|e| e.event_id).collect();
    assert_eq!(ids, all, "no event read twice or skipped");
}

#[sqlx::test]
async fn kinds_filter_exactly_or_by_prefix(pool: PgPool) {
    // Arrange
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-1", &[], &[], false);
    insert_policy_row(&h.pool, "p").await;
    let job_id = h.adhoc("server", &server, json!({})).await;
    h.finish(job_id).await;
    settled_events(&h.pool).await;

    // Act
    let by = |kind: &str| {
        let filter = EventFilter {
            kind: Some(KindFilter::parse("kind", kind).unwrap()),
            ..EventFilter::default()
        };
        let pool = h.pool.clone();
        async move {
            kinds(
                &events::list_events(&pool, "default", &filter, None, 100)
                    .await
                    .unwrap(),
            )
        }
    };

    // Assert
    assert_eq!(by("job.").await, ["job.started", "job.succeeded"]);
    assert_eq!(by("run.").await, ["run.fired", "run.succeeded"]);
    assert_eq!(by("policy.").await, ["policy.created"]);
    assert_eq!(by("job.succeeded").await, ["job.succeeded"]);
    assert_eq!(by("snapshot.created").await, ["snapshot.created"]);
    assert!(by("snapshot.deleted").await.is_empty());
    let of_job = EventFilter {
        job_id: Some(job_id),
        ..EventFilter::default()
    };
    let listed = events::list_events(&h.pool, "default", &of_job, None, 100)
        .await
        .unwrap();
    assert_eq!(
        kinds(&listed),
        ["job.started", "job.succeeded", "snapshot.created"]
    );
}

async fn insert_policy_row(pool: &PgPool, name: &str) {
    let mut conn = pool.acquire().await.unwrap();
    insert_policy_in(&mut conn, name).await;
}

async fn insert_policy_in(conn: &mut sqlx::PgConnection, name: &str) {
    sqlx::query(
        "insert into policy (policy_id, project_id, name, resource_type, targets, schedules, retention, options) \
         values ($1, 'default', $2, 'server', '{}', '[]', '{}', '{}')",
    )
    .bind(Uuid::now_v7())
    .bind(name)
    .execute(conn)
    .await
    .unwrap();
}

async fn read_after(pool: &PgPool, after: Option<Position>) -> Vec<Event> {
    read_page(pool, after, 100).await
}

async fn read_page(pool: &PgPool, after: Option<Position>, limit: i64) -> Vec<Event> {
    events::list_events(pool, "default", &EventFilter::default(), after, limit)
        .await
        .unwrap()
}

fn names(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.data["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[sqlx::test]
async fn events_older_than_the_history_retention_are_purged(pool: PgPool) {
    // Arrange: two events, one of them written four days ago.
    let h = harness(pool).await;
    insert_policy_row(&h.pool, "old").await;
    insert_policy_row(&h.pool, "new").await;
    sqlx::query("update event set at = at - interval '4 days' where data ->> 'name' = 'old'")
        .execute(&h.pool)
        .await
        .unwrap();
    let purger = stacksnap::engine::Engine::new(
        h.pool.clone(),
        h.cloud.clone(),
        std::sync::Arc::new(h.clock.clone()),
        stacksnap::engine::EngineConfig {
            history_retention: chrono::TimeDelta::days(3),
            history_batch: 1,
            ..crate::helpers::engine_config()
        },
    );

    // Act
    let purged = purger.purge_history().await.unwrap();

    // Assert
    assert_eq!(purged.events, 1);
    assert_eq!(names(&all_events(&h.pool).await), ["new"]);
}

/// Every event of `default`, as (kind, actor).
async fn kinds_and_actors(pool: &PgPool) -> Vec<(String, String)> {
    all_events(pool)
        .await
        .into_iter()
        .map(|e| (e.kind.as_str().to_owned(), e.actor))
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(k, a)| ((*k).to_owned(), (*a).to_owned()))
        .collect()
}

#[sqlx::test]
async fn runs_missed_during_downtime_and_the_catch_up_run_are_the_schedulers(pool: PgPool) {
    // Arrange: a minutely policy, and a service down for three fire times.
    let h = harness(pool).await;
    let minute = h
        .clock
        .now()
        .duration_trunc(chrono::TimeDelta::minutes(1))
        .unwrap();
    h.clock.set(minute + chrono::TimeDelta::seconds(30));
    let server = h.sim.create_image_backed_server("s", &[], &[], false);
    h.policy(json!({
        "name": "p", "resource_type": "server", "targets": {"ids": [server]},
        "schedules": [{"cron": "* * * * *", "timezone": "UTC"}], "retention": {"keep_last": 3},
        "options": {"missed_run": "run_once", "start_window": "10m"}
    }))
    .await;
    h.clock.set(minute + chrono::TimeDelta::seconds(210));

    // Act
    h.engine.fire_due().await.unwrap();

    // Assert
    assert_eq!(
        kinds_and_actors(&h.pool).await,
        pairs(&[
            ("policy.created", "api"),
            ("run.missed", "scheduler"),
            ("run.missed", "scheduler"),
            ("run.fired", "scheduler"),
        ])
    );
}

#[sqlx::test]
async fn a_cancelled_job_and_a_deleted_snapshot_are_events(pool: PgPool) {
    // Arrange: one job done, one waiting.
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-1", &[], &[], false);
    let done = h.finish(h.adhoc("server", &server, json!({})).await).await;
    let snapshot_id: Uuid =
        sqlx::query_scalar("select snapshot_id from snapshot where job_id = $1")
            .bind(done.job_id)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    let waiting = h
        .adhoc("volume", &Uuid::new_v4().to_string(), json!({}))
        .await;
    let before = all_events(&h.pool).await.len();

    // Act: a user cancels the waiting job and deletes the snapshot.
    stacksnap::store::lifecycle::cancel_job(&h.pool, "default", waiting, h.clock.now(), "u-9")
        .await
        .unwrap();
    stacksnap::store::snapshots::request_delete(&h.pool, "default", snapshot_id, h.clock.now())
        .await
        .unwrap();
    let rows = h.settle_deletions(done.job_id).await;

    // Assert: the cancel (and the run it ended) is the user's; the deletion the engine's.
    assert_eq!(rows, [(snapshot_id, "deleted".to_owned())]);
    let events = all_events(&h.pool).await;
    let new: Vec<(String, String)> = events[before..]
        .iter()
        .map(|e| (e.kind.as_str().to_owned(), e.actor.clone()))
        .collect();
    assert_eq!(
        new,
        pairs(&[
            ("job.cancelled", "u-9"),
            ("run.failed", "u-9"),
            ("snapshot.deleted", "engine"),
        ])
    );
    assert_eq!(events[before].job_id, Some(waiting));
    assert_eq!(events[before].data["error"]["code"], "cancelled");
    assert_eq!(events[before + 2].snapshot_id, Some(snapshot_id));
}

#[sqlx::test]
async fn a_blocked_deletion_is_an_event_naming_what_blocks_it(pool: PgPool) {
    // Arrange: a volume snapshot a volume was made from, on a backend that
    // cannot delete a snapshot with clones.
    let h = harness(pool).await;
    let volume = h.sim.create_volume("data", 1, &[]);
    let job = h.finish(h.adhoc("volume", &volume, json!({})).await).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let piece = job.volume_snapshots.0[0].snapshot_id.clone();
    let clone = h.sim.create_volume_from_snapshot("clone", &piece).unwrap();
    h.sim.inject(stacksnap_sim::FaultRule::new(
        "cinder.delete_snapshot",
        stacksnap_sim::Fault::SnapshotDeleteBusy {
            dependants_only: true,
        },
    ));
    let snapshot_id: Uuid =
        sqlx::query_scalar("select snapshot_id from snapshot where job_id = $1")
            .bind(job.job_id)
            .fetch_one(&h.pool)
            .await
            .unwrap();

    // Act
    stacksnap::store::snapshots::request_delete(&h.pool, "default", snapshot_id, h.clock.now())
        .await
        .unwrap();
    for _ in 0..40 {
        h.work().await;
        if h.snapshot_rows(job.job_id).await[0].1 != "deleting" {
            break;
        }
        h.clock.advance(chrono::TimeDelta::seconds(5));
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }

    // Assert
    let blocked: Vec<Event> = all_events(&h.pool)
        .await
        .into_iter()
        .filter(|e| e.kind.as_str().starts_with("snapshot.delete"))
        .collect();
    assert_eq!(blocked.len(), 1, "{:?}", kinds(&blocked));
    assert_eq!(blocked[0].kind, EventKind::SnapshotDeleteBlocked);
    assert_eq!(blocked[0].snapshot_id, Some(snapshot_id));
    assert_eq!(
        blocked[0].data["blocked_by"][0]["volume_id"],
        clone.as_str()
    );
    assert!(
        blocked[0].data["error"]["code"].is_string(),
        "{}",
        blocked[0].data.0
    );
}

#[sqlx::test]
async fn a_reader_starting_at_the_horizon_gets_only_what_comes_after(pool: PgPool) {
    // Arrange
    let h = harness(pool).await;
    insert_policy_row(&h.pool, "before").await;
    settled_events(&h.pool).await;

    // Act
    let start = events::horizon(&h.pool).await.unwrap();
    insert_policy_row(&h.pool, "after").await;
    settled_events(&h.pool).await;

    // Assert
    assert_eq!(names(&read_after(&h.pool, Some(start)).await), ["after"]);
    assert_eq!(names(&read_after(&h.pool, None).await), ["before", "after"]);
}
