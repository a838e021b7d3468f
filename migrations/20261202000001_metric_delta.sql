-- The metric triggers add to `metric_delta` instead of upserting `metric_counter`.
--
-- An upsert holds the counter row's lock until commit, outside the
-- policy → run → job lock order: two transactions that end a job and a run in
-- opposite orders (a worker's step and a policy's deletion) on the same shard
-- deadlocked (found in review). An insert of a new row takes no lock another
-- transaction waits for. The engine's `freshness` task folds the deltas into
-- `metric_counter` every minute (one replica at a time); a scrape sums both.
create table metric_delta (
    family text not null,
    labels jsonb not null,
    value  double precision not null
);

create or replace function metric_job_inserted() returns trigger as $$
begin
    insert into metric_delta (family, labels, value)
    select d.family, d.labels, sum(d.delta)
    from new_rows n
    cross join lateral (
        select 'stacksnap_jobs'::text, jsonb_build_object('status', n.status), 1::float8
        union all
        select * from metric_job_end_deltas(n.resource_type, n.status,
            metric_job_seconds(n.started_at, n.finished_at))
        where n.status not in ('pending', 'creating', 'tracking')
    ) as d (family, labels, delta)
    group by d.family, d.labels;
    return null;
end;
$$ language plpgsql;

create or replace function metric_job_updated() returns trigger as $$
begin
    insert into metric_delta (family, labels, value)
    select d.family, d.labels, sum(d.delta)
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
    group by d.family, d.labels;
    return null;
end;
$$ language plpgsql;

create or replace function metric_job_deleted() returns trigger as $$
begin
    insert into metric_delta (family, labels, value)
    select 'stacksnap_jobs', jsonb_build_object('status', o.status), -count(*)
    from old_rows o
    group by o.status;
    return null;
end;
$$ language plpgsql;

create or replace function metric_run_ended(p_ended jsonb) returns void as $$
    insert into metric_delta (family, labels, value)
    select 'stacksnap_runs_total', jsonb_build_object('status', e->>'status'), count(*)
    from jsonb_array_elements(p_ended) as e
    group by e->>'status';
    insert into policy_last_success (policy_id, succeeded_at)
    select (e->>'policy_id')::uuid, max((e->>'at')::timestamptz)
    from jsonb_array_elements(p_ended) as e
    where e->>'status' = 'succeeded' and e->>'policy_id' is not null
    group by 1
    on conflict (policy_id) do update
        set succeeded_at = greatest(policy_last_success.succeeded_at, excluded.succeeded_at);
$$ language sql;

create or replace function metric_snapshot_inserted() returns trigger as $$
begin
    insert into metric_delta (family, labels, value)
    select d.family, d.labels, sum(d.delta)
    from new_rows n
    cross join lateral (
        select 'stacksnap_snapshots'::text, jsonb_build_object('state', n.state), 1::float8
        union all
        select 'stacksnap_snapshot_deletions_total',
               jsonb_build_object('result', metric_deletion_result(n.state)), 1
        where metric_deletion_result(n.state) is not null
    ) as d (family, labels, delta)
    group by d.family, d.labels;
    return null;
end;
$$ language plpgsql;

create or replace function metric_snapshot_updated() returns trigger as $$
begin
    insert into metric_delta (family, labels, value)
    select d.family, d.labels, sum(d.delta)
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
    group by d.family, d.labels;
    return null;
end;
$$ language plpgsql;

create or replace function metric_snapshot_deleted() returns trigger as $$
begin
    insert into metric_delta (family, labels, value)
    select 'stacksnap_snapshots', jsonb_build_object('state', o.state), -count(*)
    from old_rows o
    group by o.state;
    return null;
end;
$$ language plpgsql;
