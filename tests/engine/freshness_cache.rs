//! The freshness cache (`policy_freshness_cache`) is exact: after each kind of
//! write the freshness query reads, and after the RPO is crossed, the API
//! shows what the query gives, never the value stored before; a computation
//! from an older snapshot does not replace a newer row; and the garbage
//! collection keeps the change rows a reader may still need.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;
use stacksnap::{
    clock::Clock as _,
    store::{Scope, freshness},
};
use uuid::Uuid;

use crate::helpers::{TestApp, get_json, harness, run_now, spawn_app_on};

/// The freshness fields of the policy as `GET /v1/policies/{id}` shows them.
async fn shown(app: &TestApp, id: &str) -> Value {
    let p = get_json(app, &format!("/v1/policies/{id}")).await;
    json!({
        "last_run_at": p["last_run_at"], "last_success_at": p["last_success_at"],
        "stale": p["stale_resources"], "orphaned": p["orphaned_resources"],
        "unverified": p["unverified_resources"],
    })
}

/// Runs `sql` (one statement) against the database.
async fn exec(pool: &PgPool, sql: &'static str) {
    sqlx::query(sql).execute(pool).await.unwrap();
}

#[sqlx::test]
async fn each_write_the_freshness_query_reads_and_the_rpo_invalidate_a_cached_value(pool: PgPool) {
    // Arrange: a daily policy (RPO 1d + 2h) over one tagged server, run once, read once (cached).
    let (h, app, id) = run_once(&pool).await;
    let id = id.as_str();
    let fresh = shown(&app, id).await;
    assert_eq!(
        (&fresh["stale"], &fresh["orphaned"]),
        (&json!(0), &json!(0))
    );
    assert_ne!(fresh["last_success_at"], Value::Null);
    let cached: i64 = sqlx::query_scalar("select count(*) from policy_freshness_cache")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(cached, 1, "the read stored its value");

    // Act + Assert: a snapshot leaving `available` (deleted), and back.
    exec(&pool, "update snapshot set state = 'deleted'").await;
    assert_eq!(shown(&app, id).await["stale"], 1);
    exec(&pool, "update snapshot set state = 'available'").await;
    assert_eq!(shown(&app, id).await, fresh);

    // A snapshot deleted, then inserted again.
    exec(
        &pool,
        "create table saved_snapshot as select * from snapshot",
    )
    .await;
    exec(&pool, "delete from snapshot").await;
    assert_eq!(shown(&app, id).await["stale"], 1);
    exec(&pool, "insert into snapshot select * from saved_snapshot").await;
    assert_eq!(shown(&app, id).await, fresh);

    // A snapshot's time moving (older than the RPO).
    exec(
        &pool,
        "update snapshot set taken_at = taken_at - interval '3 days'",
    )
    .await;
    assert_eq!(shown(&app, id).await["stale"], 1);
    exec(
        &pool,
        "update snapshot set taken_at = taken_at + interval '3 days'",
    )
    .await;
    assert_eq!(shown(&app, id).await, fresh);

    // The run ended later (finished_at), was unresolved (resolved_at), missed (status).
    exec(
        &pool,
        "update run set finished_at = finished_at + interval '1 minute'",
    )
    .await;
    assert_ne!(
        shown(&app, id).await["last_success_at"],
        fresh["last_success_at"]
    );
    exec(
        &pool,
        "update run set finished_at = finished_at - interval '1 minute'",
    )
    .await;
    exec(&pool, "update run set resolved_at = null").await;
    let unresolved = shown(&app, id).await;
    assert_eq!(
        (&unresolved["stale"], &unresolved["orphaned"]),
        (&json!(0), &json!(1))
    );
    exec(&pool, "update run set resolved_at = started_at").await;
    exec(&pool, "update run set status = 'missed'").await;
    assert_eq!(shown(&app, id).await["last_run_at"], Value::Null);
    exec(&pool, "update run set status = 'succeeded'").await;
    assert_eq!(shown(&app, id).await, fresh);

    // A run fired (inserted).
    exec(
        &pool,
        "insert into run select (jsonb_populate_record(null::run, to_jsonb(r) \
         || jsonb_build_object('run_id', 'ffffffff-ffff-7fff-bfff-ffffffffffff', 'status', 'running', \
                               'scheduled_for', r.scheduled_for + interval '1 day', 'finished_at', null, \
                               'resolved_at', null))).* from run r",
    )
    .await;
    assert_ne!(shown(&app, id).await["last_run_at"], fresh["last_run_at"]);
    exec(
        &pool,
        "delete from run where run_id = 'ffffffff-ffff-7fff-bfff-ffffffffffff'",
    )
    .await;
    assert_eq!(shown(&app, id).await, fresh);

    // A join: a `join` run after the resolved one, with a job for a new resource.
    exec(
        &pool,
        "insert into run select (jsonb_populate_record(null::run, to_jsonb(r) \
         || jsonb_build_object('run_id', 'ffffffff-ffff-7fff-bfff-fffffffffffe', 'trigger', 'join'))).* \
         from run r",
    )
    .await;
    assert_eq!(
        shown(&app, id).await,
        fresh,
        "a join run without jobs adds no target"
    );
    exec(
        &pool,
        "insert into job select (jsonb_populate_record(null::job, to_jsonb(j) \
         || jsonb_build_object('job_id', gen_random_uuid(), 'resource_id', 'joiner', \
                               'run_id', 'ffffffff-ffff-7fff-bfff-fffffffffffe'))).* \
         from job j where j.kind = 'snapshot'",
    )
    .await;
    assert_eq!(
        shown(&app, id).await["stale"],
        1,
        "the joiner has no snapshot"
    );
    exec(&pool, "delete from run where trigger = 'join'").await;
    assert_eq!(shown(&app, id).await, fresh);

    // The policy's targets, RPO and verify cadence (options) changed.
    exec(
        &pool,
        "update policy set targets = jsonb_set(targets, '{ids}', '[\"named\"]')",
    )
    .await;
    assert_eq!(
        shown(&app, id).await["stale"],
        1,
        "the named id has no snapshot"
    );
    exec(&pool, "update policy set targets = targets - 'ids'").await;
    assert_eq!(shown(&app, id).await, fresh);
    h.clock.advance(TimeDelta::hours(1));
    assert_eq!(shown(&app, id).await, fresh, "an hour on, still fresh");
    exec(&pool, "update policy set rpo_seconds = 60").await;
    assert_eq!(shown(&app, id).await["stale"], 1);
    exec(&pool, "update policy set rpo_seconds = 26 * 3600").await;
    assert_eq!(shown(&app, id).await, fresh);
    exec(
        &pool,
        "update policy set options = options || '{\"verify\": {\"every\": \"1d\"}}'",
    )
    .await;
    assert_eq!(shown(&app, id).await["unverified"], 1);

    // A restore test passing, then failing (verified_at, verify_error).
    let now = h.clock.now();
    sqlx::query("update snapshot set verified_at = $1")
        .bind(now)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(shown(&app, id).await["unverified"], 0);
    sqlx::query("update snapshot set verify_error = jsonb_build_object('at', $1::timestamptz)")
        .bind(now + TimeDelta::seconds(1))
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(shown(&app, id).await["unverified"], 1);
    exec(&pool, "update snapshot set verify_error = null").await;
    assert_eq!(shown(&app, id).await["unverified"], 0);

    // Disabled, then enabled (the status counts only enabled policies).
    assert_eq!(get_json(&app, "/v1/status").await["policies"]["stale"], 0);
    exec(&pool, "update policy set enabled = false, rpo_seconds = 60").await;
    assert_eq!(shown(&app, id).await["stale"], 1);
    assert_eq!(get_json(&app, "/v1/status").await["policies"]["stale"], 0);
    exec(&pool, "update policy set enabled = true").await;
    assert_eq!(get_json(&app, "/v1/status").await["policies"]["stale"], 1);
    exec(&pool, "update policy set rpo_seconds = 26 * 3600").await;

    // Act + Assert, time alone: the verify pass expires a day after it, the
    // RPO is crossed 26h after the snapshot, with no write in between. Each
    // value is read (and cached) half a minute before its instant, then read
    // half a minute after it, within the cache's one-hour horizon.
    let taken_at: DateTime<Utc> = sqlx::query_scalar("select taken_at from snapshot")
        .fetch_one(&pool)
        .await
        .unwrap();
    for (instant, field) in [
        (now + TimeDelta::days(1), "unverified"),
        (taken_at + TimeDelta::hours(26), "stale"),
    ] {
        h.clock
            .advance(instant - TimeDelta::seconds(30) - h.clock.now());
        assert_eq!(shown(&app, id).await[field], 0, "{field} before {instant}");
        h.clock.advance(TimeDelta::minutes(1));
        assert_eq!(shown(&app, id).await[field], 1, "{field} after {instant}");
    }
    let listed = get_json(&app, "/v1/policies").await;
    assert_eq!(listed["items"][0]["stale_resources"], 1, "{listed}");
}

#[sqlx::test]
async fn a_value_computed_from_an_older_snapshot_does_not_replace_a_newer_row(pool: PgPool) {
    // Arrange: a policy naming one server, and a transaction in progress; the
    // policy's cache row, expired, is stored from a snapshot that saw that
    // transaction commit (as a reader after it would), so every snapshot taken
    // while it runs is older.
    let h = harness(pool.clone()).await;
    let policy = h
        .policy(json!({
            "name": "named", "resource_type": "server", "targets": {"ids": [Uuid::now_v7()]},
            "schedules": [{"cron": "@daily"}], "retention": {"keep_last": 1}
        }))
        .await;
    let now = h.clock.now();
    let mut in_progress = pool.begin().await.unwrap();
    let xid: i64 = sqlx::query_scalar("select pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *in_progress)
        .await
        .unwrap();
    let newer = format!("{0}:{0}:", xid + 1);
    sqlx::query(
        "insert into policy_freshness_cache (policy_id, stale_resources, orphaned_resources, \
             unverified_resources, computed_at, valid_until, as_of) \
         values ($1, 7, 7, 7, $2, $2, $3::text::pg_snapshot)",
    )
    .bind(policy.id)
    .bind(now)
    .bind(&newer)
    .execute(&pool)
    .await
    .unwrap();

    // Act
    let found = freshness::fetch_freshness(&pool, Scope::AllProjects, Some(&[policy.id]), now)
        .await
        .unwrap();

    // Assert: the computed value is returned, the row stays as it was.
    assert_eq!(found[&policy.id].stale_resources, 1);
    let kept: (i64, String) = sqlx::query_as(
        "select stale_resources, as_of::text from policy_freshness_cache where policy_id = $1",
    )
    .bind(policy.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(kept, (7, newer));
    in_progress.rollback().await.unwrap();
    let covers: Vec<bool> = sqlx::query_scalar(
        "select freshness_snapshot_covers(n::pg_snapshot, o::pg_snapshot) from (values \
             ('100:105:', '90:95:92'), ('90:95:92', '100:105:'), ('100:110:103', '100:104:'), \
             ('100:110:103', '100:104:103'), ('100:110:', '100:110:105')) v(n, o)",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(covers, [true, false, false, true, true]);
}

#[sqlx::test]
async fn garbage_collection_keeps_the_change_rows_a_reader_may_still_need(pool: PgPool) {
    // Arrange: a policy with no cache row yet, changed once.
    let h = harness(pool.clone()).await;
    let policy = h
        .policy(json!({
            "name": "named", "resource_type": "server", "targets": {"ids": [Uuid::now_v7()]},
            "schedules": [{"cron": "@daily"}], "retention": {"keep_last": 1}
        }))
        .await;
    let change = || async {
        sqlx::query("update policy set rpo_seconds = rpo_seconds + 1")
            .execute(&pool)
            .await
            .unwrap();
    };
    let changes = || async {
        let n: i64 = sqlx::query_scalar("select count(*) from freshness_change")
            .fetch_one(&pool)
            .await
            .unwrap();
        n
    };
    let collect = || async {
        let mut conn = pool.acquire().await.unwrap();
        freshness::collect_changes(&mut conn).await.unwrap()
    };
    change().await;

    // Act + Assert: without a cache row, a reader with an older snapshot could
    // still store the first one: the change row stays.
    assert_eq!((collect().await, changes().await), (0, 1));

    // Act + Assert: once a cache row has seen it, it goes; a later change stays.
    freshness::fetch_freshness(&pool, Scope::AllProjects, Some(&[policy.id]), h.clock.now())
        .await
        .unwrap();
    change().await;
    assert_eq!((collect().await, changes().await), (1, 1));

    // Act + Assert: a deleted policy's change rows go with it.
    sqlx::query("delete from policy where policy_id = $1")
        .bind(policy.id)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!((collect().await, changes().await), (1, 0));
}

/// `n` server ids (of resources with no snapshot: each one a stale target).
fn server_ids(n: usize) -> Value {
    (0..n).map(|_| json!(Uuid::now_v7())).collect()
}

/// A daily policy naming `n` servers.
fn named(name: &str, n: usize) -> Value {
    json!({
        "name": name, "resource_type": "server", "targets": {"ids": server_ids(n)},
        "schedules": [{"cron": "@daily"}], "retention": {"keep_last": 1}
    })
}

#[sqlx::test]
async fn a_read_does_not_wait_on_a_cache_row_another_transaction_holds(pool: PgPool) {
    // Arrange: a policy's cache row stored, then changed and recomputed by a
    // transaction left open (as a pass storing it would), then changed again.
    let h = harness(pool.clone()).await;
    let policy = h.policy(named("named", 1)).await;
    let now = h.clock.now();
    freshness::fetch_freshness(&pool, Scope::AllProjects, Some(&[policy.id]), now)
        .await
        .unwrap();
    let retarget = |n: usize| {
        let pool = pool.clone();
        async move {
            sqlx::query("update policy set targets = jsonb_set(targets, '{ids}', $1)")
                .bind(server_ids(n))
                .execute(&pool)
                .await
                .unwrap();
        }
    };
    retarget(2).await;
    let mut holder = pool.begin().await.unwrap();
    freshness::freshness_of(&mut holder, Scope::AllProjects, &[policy.id], now)
        .await
        .unwrap();
    let free: i64 = sqlx::query_scalar(
        "select count(*) from (select 1 from policy_freshness_cache for update skip locked) r",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(free, 0, "the holder has the cache row locked");
    retarget(3).await;

    // Act: read from the pool (the timeout only detects a hang).
    let ids = [policy.id];
    let read = freshness::fetch_freshness(&pool, Scope::AllProjects, Some(&ids), now);
    let found = tokio::time::timeout(std::time::Duration::from_secs(2), read)
        .await
        .expect("the read waited on the held cache row")
        .unwrap();

    // Assert: the live value, and the next read (row released) still exact.
    assert_eq!(found[&policy.id].stale_resources, 3);
    holder.rollback().await.unwrap();
    let again = freshness::fetch_freshness(&pool, Scope::AllProjects, Some(&[policy.id]), now)
        .await
        .unwrap();
    assert_eq!(again[&policy.id].stale_resources, 3);
}

#[sqlx::test]
async fn a_policy_deleted_during_the_pass_drops_only_itself(pool: PgPool) {
    // Arrange: two policies; the deletion of one is under way (not committed)
    // when the pass starts, so the pass sees it and its writes meet the deletion.
    let h = harness(pool.clone()).await;
    let doomed = h.policy(named("doomed", 1)).await;
    let kept = h.policy(named("kept", 2)).await;
    let now = h.clock.now();
    let mut deleter = pool.begin().await.unwrap();
    sqlx::query("delete from policy where policy_id = $1")
        .bind(doomed.id)
        .execute(&mut *deleter)
        .await
        .unwrap();
    let pass = tokio::spawn({
        let pool = pool.clone();
        async move { freshness::refresh_stale_counts(&pool, now, TimeDelta::zero()).await }
    });
    // The deletion commits once the pass waits on a lock (or is done).
    while !pass.is_finished() {
        let waiting: bool = sqlx::query_scalar(
            "select exists (select 1 from pg_stat_activity \
             where datname = current_database() and wait_event_type = 'Lock')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    deleter.commit().await.unwrap();

    // Act
    let counted = pass.await.unwrap();

    // Assert: the pass went on without the deleted policy.
    assert_eq!(counted.unwrap(), Some(1));
    let cached: Vec<(Uuid, i64)> =
        sqlx::query_as("select policy_id, stale_resources from policy_freshness_cache")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(cached, [(kept.id, 2)]);
    let metric: Vec<(Uuid, i64)> =
        sqlx::query_as("select policy_id, stale_resources from policy_freshness")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(metric, [(kept.id, 2)]);
}

#[sqlx::test]
async fn truncating_a_table_the_freshness_query_reads_invalidates_cached_values(pool: PgPool) {
    // Arrange: a policy run once (one available snapshot: nothing stale), its value cached.
    let (_h, app, id) = run_once(&pool).await;
    let id = id.as_str();
    assert_eq!(shown(&app, id).await["stale"], 0);

    // Act: TRUNCATE fires no row or insert/delete statement triggers.
    exec(&pool, "truncate snapshot").await;

    // Assert: the one target has no snapshot now.
    assert_eq!(shown(&app, id).await["stale"], 1);
}

#[sqlx::test]
async fn a_cache_row_restored_from_another_clusters_dump_is_not_served(pool: PgPool) {
    // Arrange: a policy naming one server it has no snapshot of (1 stale), and
    // a cache row valid for an hour whose snapshot is ahead of every one this
    // cluster has taken (as after a restore: transaction ids started again).
    let h = harness(pool.clone()).await;
    let app = spawn_app_on(pool.clone(), h.clock.clone()).await;
    let policy = h
        .policy(json!({
            "name": "named", "resource_type": "server", "targets": {"ids": [Uuid::now_v7()]},
            "schedules": [{"cron": "@daily"}], "retention": {"keep_last": 1}
        }))
        .await;
    let now = h.clock.now();
    sqlx::query(
        "insert into policy_freshness_cache (policy_id, stale_resources, orphaned_resources, \
             unverified_resources, computed_at, valid_until, as_of) \
         values ($1, 7, 7, 7, $2, $2 + interval '1 hour', '4000000000000:4000000000000:')",
    )
    .bind(policy.id)
    .bind(now)
    .execute(&pool)
    .await
    .unwrap();

    // Act + Assert: a change made since is kept by the garbage collection
    // (the row's snapshot cannot tell whether it saw it).
    exec(&pool, "update policy set rpo_seconds = rpo_seconds + 1").await;
    let collect = || async {
        let mut conn = pool.acquire().await.unwrap();
        freshness::collect_changes(&mut conn).await.unwrap()
    };
    assert_eq!(collect().await, 0);

    // Act + Assert: both read paths compute the value instead.
    let read = shown(&app, &policy.id.to_string()).await;
    assert_eq!((&read["stale"], &read["orphaned"]), (&json!(1), &json!(0)));
    let found = freshness::fetch_freshness(&pool, Scope::AllProjects, Some(&[policy.id]), now)
        .await
        .unwrap();
    assert_eq!(found[&policy.id].stale_resources, 1);

    // Assert: the computed value replaced the row, which is served from then on.
    let stored: i64 = sqlx::query_scalar("select stale_resources from policy_freshness_cache")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 1);
    assert_eq!(collect().await, 1);
}

#[sqlx::test]
async fn a_pass_that_fails_after_storing_cache_rows_still_collects_the_change_log(pool: PgPool) {
    // Arrange: a policy changed once (a change row), and a stale-count table
    // that refuses every write, so the pass fails after the cache rows are stored.
    let h = harness(pool.clone()).await;
    let policy = h.policy(named("changed", 1)).await;
    exec(&pool, "update policy set rpo_seconds = rpo_seconds + 1").await;
    exec(
        &pool,
        "create function refuse() returns trigger as $$ begin raise exception 'refused'; end $$ \
         language plpgsql",
    )
    .await;
    exec(
        &pool,
        "create trigger refuse before insert on policy_freshness for each row execute function refuse()",
    )
    .await;

    // Act
    let pass = freshness::refresh_stale_counts(&pool, h.clock.now(), TimeDelta::zero()).await;

    // Assert: the pass failed, its cache row stayed, and the change row it saw is gone.
    assert!(pass.is_err(), "{pass:?}");
    let cached: Vec<Uuid> = sqlx::query_scalar("select policy_id from policy_freshness_cache")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(cached, [policy.id]);
    let changes: i64 = sqlx::query_scalar("select count(*) from freshness_change")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(changes, 0);
}

#[sqlx::test]
async fn an_older_computation_in_a_transaction_with_an_earlier_id_does_not_replace_a_newer_row(
    pool: PgPool,
) {
    // Arrange: a policy naming one server (1 stale). A transaction takes its
    // id, then computes (1 stale). Meanwhile the policy names a second server,
    // a read stores that (2 stale, from a later snapshot) and the change row is
    // collected as seen.
    let h = harness(pool.clone()).await;
    let policy = h.policy(named("grown", 1)).await;
    let now = h.clock.now();
    let mut older = pool.begin().await.unwrap();
    sqlx::query("select pg_current_xact_id()")
        .execute(&mut *older)
        .await
        .unwrap();
    let computed = freshness::compute(&mut older, Scope::AllProjects, &[policy.id], now)
        .await
        .unwrap();
    exec(
        &pool,
        "update policy set targets = jsonb_set(targets, '{ids}', \
             (targets -> 'ids') || to_jsonb(gen_random_uuid()::text))",
    )
    .await;
    let newer = freshness::fetch_freshness(&pool, Scope::AllProjects, Some(&[policy.id]), now)
        .await
        .unwrap();
    assert_eq!(newer[&policy.id].stale_resources, 2);
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(freshness::collect_changes(&mut conn).await.unwrap(), 1);

    // Act: the older computation is stored.
    let stored = freshness::store(&mut older, &computed, now).await.unwrap();
    older.commit().await.unwrap();

    // Assert: it did not replace the newer row, which is what a read gives.
    assert_eq!(stored, 0);
    let read = freshness::fetch_freshness(&pool, Scope::AllProjects, Some(&[policy.id]), now)
        .await
        .unwrap();
    assert_eq!(read[&policy.id].stale_resources, 2);
}

/// A daily policy (RPO 1d + 2h) over one tagged image-backed server, run once
/// through the API: its harness, the API and the policy's id.
async fn run_once(pool: &PgPool) -> (crate::helpers::Harness, TestApp, String) {
    let h = harness(pool.clone()).await;
    let app = spawn_app_on(pool.clone(), h.clock.clone()).await;
    h.sim
        .create_image_backed_server("web", &["backup"], &[], false);
    let policy = app
        .create_policy(&json!({
            "name": "nightly", "resource_type": "server",
            "targets": {"selector": {"tags": ["backup"]}},
            "schedules": [{"cron": "0 2 * * *"}], "retention": {"keep_last": 5}
        }))
        .await;
    let id = policy["id"].as_str().unwrap().to_owned();
    run_now(&h, &app, &id).await;
    (h, app, id)
}
