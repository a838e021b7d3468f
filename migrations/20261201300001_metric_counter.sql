-- Metrics derived from the database (`GET /metrics`): the same on every replica,
-- kept across restarts, and read at scrape time from a table of a few hundred rows.
-- Triggers keep them in the transaction that changes a job, run or snapshot, so
-- no code path can forget one, and the history purge (a delete) never lowers a total.

-- `family` is the Prometheus family (or sample) name, `labels` its bounded label
-- set. Totals only rise; the `stacksnap_jobs` and `stacksnap_snapshots` rows
-- (rows now in each state) rise and fall. Every statement adds to the row of
-- its own `shard` (from its backend), so concurrent job completions do not queue
-- on one hot row; a scrape sums the shards.
create table metric_counter (
    family text not null,
    labels jsonb not null,
    shard  smallint not null,
    value  double precision not null,
    constraint metric_counter_pkey primary key (family, labels, shard)
);

-- Upper bounds (seconds) of `stacksnap_job_duration_seconds`; the code renders the
-- same list (a test compares them).
create function metric_job_duration_buckets() returns double precision[] as $$
    select array[10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800]::double precision[];
$$ language sql immutable;

-- The samples one ended job adds to: its total and, when it started, every
-- bucket (0 or 1, so all buckets exist from the first job on), sum and count.
create function metric_job_end_deltas(p_type text, p_status text, p_seconds double precision)
returns table (family text, labels jsonb, delta double precision) as $$
    select 'stacksnap_jobs_total', jsonb_build_object('resource_type', p_type, 'status', p_status), 1::float8
    union all
    select 'stacksnap_job_duration_seconds_bucket',
           jsonb_build_object('resource_type', p_type, 'le', b::text),
           case when p_seconds <= b then 1 else 0 end
      from unnest(metric_job_duration_buckets()) as b where p_seconds is not null
    union all
    select 'stacksnap_job_duration_seconds_bucket',
           jsonb_build_object('resource_type', p_type, 'le', '+Inf'), 1 where p_seconds is not null
    union all
    select 'stacksnap_job_duration_seconds_sum', jsonb_build_object('resource_type', p_type), p_seconds
      where p_seconds is not null
    union all
    select 'stacksnap_job_duration_seconds_count', jsonb_build_object('resource_type', p_type), 1
      where p_seconds is not null;
$$ language sql immutable;

-- Only jobs that started have a duration (one that never left its start window has none).
create function metric_job_seconds(p_started timestamptz, p_finished timestamptz)
returns double precision as $$
    select case when p_started is not null
        then greatest(0, extract(epoch from coalesce(p_finished, now()) - p_started))::double precision end;
$$ language sql stable;

-- The triggers are per statement, over the statement's transition tables: one
-- upsert per sample a statement changes, however many rows it touches (a run
-- resolved into thousands of jobs, a purge batch). Updating one row once per
-- job inside a single transaction would lengthen its version chain quadratically.
create function metric_job_inserted() returns trigger as $$
begin
    insert into metric_counter (family, labels, shard, value)
    select d.family, d.labels, pg_backend_pid() % 8, sum(d.delta)
    from new_rows n
    cross join lateral (
        select 'stacksnap_jobs'::text, jsonb_build_object('status', n.status), 1::float8
        union all
        select * from metric_job_end_deltas(n.resource_type, n.status,
            metric_job_seconds(n.started_at, n.finished_at))
        where n.status not in ('pending', 'creating', 'tracking')
    ) as d (family, labels, delta)
    group by d.family, d.labels
    on conflict (family, labels, shard) do update set value = metric_counter.value + excluded.value;
    return null;
end;
$$ language plpgsql;

create function metric_job_updated() returns trigger as $$
begin
    insert into metric_counter (family, labels, shard, value)
    select d.family, d.labels, pg_backend_pid() % 8, sum(d.delta)
    from old_rows o
    join new_rows n using (job_id)
    cross join lateral (
        select 'stacksnap_jobs'::text, jsonb_build_object('status', o.status), -1::float8
        union all
        select 'stacksnap_jobs', jsonb_build_object('status', n.status), 1
        union all
        select * from metric_job_end_deltas(n.resource_type, n.status,
            metric_job_seconds(n.started_at, n.finished_at))
        where o.status in ('pending', 'creating', 'tracking')
          and n.status not in ('pending', 'creating', 'tracking')
    ) as d (family, labels, delta)
    where o.status is distinct from n.status
    group by d.family, d.labels
    on conflict (family, labels, shard) do update set value = metric_counter.value + excluded.value;
    return null;
end;
$$ language plpgsql;

create function metric_job_deleted() returns trigger as $$
begin
    insert into metric_counter (family, labels, shard, value)
    select 'stacksnap_jobs', jsonb_build_object('status', o.status), pg_backend_pid() % 8, -count(*)
    from old_rows o
    group by o.status
    on conflict (family, labels, shard) do update set value = metric_counter.value + excluded.value;
    return null;
end;
$$ language plpgsql;

create trigger job_metrics_insert after insert on job referencing new table as new_rows
    for each statement execute function metric_job_inserted();
create trigger job_metrics_update after update on job
    referencing old table as old_rows new table as new_rows
    for each statement execute function metric_job_updated();
create trigger job_metrics_delete after delete on job referencing old table as old_rows
    for each statement execute function metric_job_deleted();

-- When each policy last had a run succeed: one row per policy, kept when the
-- history purge deletes the run (and gone with the policy).
create table policy_last_success (
    policy_id    uuid primary key references policy (policy_id) on delete cascade,
    succeeded_at timestamptz not null
);

-- Runs ended (`missed` ones are inserted ended), and each policy's last success.
create function metric_run_ended(p_ended jsonb) returns void as $$
    insert into metric_counter (family, labels, shard, value)
    select 'stacksnap_runs_total', jsonb_build_object('status', e->>'status'), pg_backend_pid() % 8, count(*)
    from jsonb_array_elements(p_ended) as e
    group by e->>'status'
    on conflict (family, labels, shard) do update set value = metric_counter.value + excluded.value;
    insert into policy_last_success (policy_id, succeeded_at)
    select (e->>'policy_id')::uuid, max((e->>'at')::timestamptz)
    from jsonb_array_elements(p_ended) as e
    where e->>'status' = 'succeeded' and e->>'policy_id' is not null
    group by 1
    on conflict (policy_id) do update
        set succeeded_at = greatest(policy_last_success.succeeded_at, excluded.succeeded_at);
$$ language sql;

create function metric_run_inserted() returns trigger as $$
begin
    perform metric_run_ended(coalesce((
        select jsonb_agg(jsonb_build_object('status', n.status, 'policy_id', n.policy_id,
                                            'at', coalesce(n.finished_at, now())))
        from new_rows n where n.status <> 'running'), '[]'));
    return null;
end;
$$ language plpgsql;

create function metric_run_updated() returns trigger as $$
begin
    perform metric_run_ended(coalesce((
        select jsonb_agg(jsonb_build_object('status', n.status, 'policy_id', n.policy_id,
                                            'at', coalesce(n.finished_at, now())))
        from old_rows o join new_rows n using (run_id)
        where o.status = 'running' and n.status <> 'running'), '[]'));
    return null;
end;
$$ language plpgsql;

create trigger run_metrics_insert after insert on run referencing new table as new_rows
    for each statement execute function metric_run_inserted();
create trigger run_metrics_update after update on run
    referencing old table as old_rows new table as new_rows
    for each statement execute function metric_run_updated();

create function metric_deletion_result(p_state text) returns text as $$
    select case p_state when 'deleted' then 'deleted' when 'delete_failed' then 'failed'
        when 'delete_blocked' then 'blocked' end;
$$ language sql immutable;

create function metric_snapshot_inserted() returns trigger as $$
begin
    insert into metric_counter (family, labels, shard, value)
    select d.family, d.labels, pg_backend_pid() % 8, sum(d.delta)
    from new_rows n
    cross join lateral (
        select 'stacksnap_snapshots'::text, jsonb_build_object('state', n.state), 1::float8
        union all
        select 'stacksnap_snapshot_deletions_total',
               jsonb_build_object('result', metric_deletion_result(n.state)), 1
        where metric_deletion_result(n.state) is not null
    ) as d (family, labels, delta)
    group by d.family, d.labels
    on conflict (family, labels, shard) do update set value = metric_counter.value + excluded.value;
    return null;
end;
$$ language plpgsql;

create function metric_snapshot_updated() returns trigger as $$
begin
    insert into metric_counter (family, labels, shard, value)
    select d.family, d.labels, pg_backend_pid() % 8, sum(d.delta)
    from old_rows o
    join new_rows n using (snapshot_id)
    cross join lateral (
        select 'stacksnap_snapshots'::text, jsonb_build_object('state', o.state), -1::float8
        union all
        select 'stacksnap_snapshots', jsonb_build_object('state', n.state), 1
        union all
        select 'stacksnap_snapshot_deletions_total',
               jsonb_build_object('result', metric_deletion_result(n.state)), 1
        where metric_deletion_result(n.state) is not null
    ) as d (family, labels, delta)
    where o.state is distinct from n.state
    group by d.family, d.labels
    on conflict (family, labels, shard) do update set value = metric_counter.value + excluded.value;
    return null;
end;
$$ language plpgsql;

create function metric_snapshot_deleted() returns trigger as $$
begin
    insert into metric_counter (family, labels, shard, value)
    select 'stacksnap_snapshots', jsonb_build_object('state', o.state), pg_backend_pid() % 8, -count(*)
    from old_rows o
    group by o.state
    on conflict (family, labels, shard) do update set value = metric_counter.value + excluded.value;
    return null;
end;
$$ language plpgsql;

create trigger snapshot_metrics_insert after insert on snapshot referencing new table as new_rows
    for each statement execute function metric_snapshot_inserted();
create trigger snapshot_metrics_update after update on snapshot
    referencing old table as old_rows new table as new_rows
    for each statement execute function metric_snapshot_updated();
create trigger snapshot_metrics_delete after delete on snapshot referencing old table as old_rows
    for each statement execute function metric_snapshot_deleted();

-- What already happened before this migration, counted once (shard 0).
insert into metric_counter (family, labels, shard, value)
select 'stacksnap_jobs', jsonb_build_object('status', status), 0, count(*) from job group by status
union all
select 'stacksnap_jobs_total', jsonb_build_object('resource_type', resource_type, 'status', status), 0, count(*)
    from job where status not in ('pending', 'creating', 'tracking') group by resource_type, status
union all
select 'stacksnap_runs_total', jsonb_build_object('status', status), 0, count(*)
    from run where status <> 'running' group by status
union all
select 'stacksnap_snapshots', jsonb_build_object('state', state), 0, count(*) from snapshot group by state
union all
select 'stacksnap_snapshot_deletions_total', jsonb_build_object('result', case state
        when 'deleted' then 'deleted' when 'delete_failed' then 'failed' else 'blocked' end), 0, count(*)
    from snapshot where state in ('deleted', 'delete_failed', 'delete_blocked') group by state;

insert into policy_last_success (policy_id, succeeded_at)
select policy_id, max(coalesce(finished_at, updated_at)) from run
where status = 'succeeded' and policy_id is not null
group by policy_id;
