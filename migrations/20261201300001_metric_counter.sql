-- Metrics derived from the database (`GET /metrics`): the same on every replica,
-- kept across restarts, and read at scrape time from a table of a few hundred rows.
-- Triggers keep them in the transaction that changes a job, run or snapshot, so
-- no code path can forget one, and the history purge (a delete) never lowers a total.

-- `family` is the Prometheus family (or sample) name, `labels` its bounded label
-- set. Totals only rise; the `stacksnap_jobs` and `stacksnap_snapshots` rows
-- (rows now in each state) rise and fall. Every transaction adds to the row of
-- its own `shard` (from its backend), so concurrent job completions do not queue
-- on one hot row; a scrape sums the shards.
create table metric_counter (
    family text not null,
    labels jsonb not null,
    shard  smallint not null,
    value  double precision not null,
    constraint metric_counter_pkey primary key (family, labels, shard)
);

create function metric_add(p_family text, p_labels jsonb, p_delta double precision)
returns void as $$
    insert into metric_counter (family, labels, shard, value)
    values (p_family, p_labels, pg_backend_pid() % 8, p_delta)
    on conflict (family, labels, shard)
    do update set value = metric_counter.value + excluded.value;
$$ language sql;

-- Upper bounds (seconds) of `stacksnap_job_duration_seconds`; the code renders the
-- same list (a test compares them).
create function metric_job_duration_buckets() returns double precision[] as $$
    select array[10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800]::double precision[];
$$ language sql immutable;

-- One finished job into the histogram: every bucket row is written (0 or 1) so
-- that all buckets exist from the first job on.
create function metric_observe_job_duration(p_resource_type text, p_seconds double precision)
returns void as $$
declare
    bound double precision;
begin
    foreach bound in array metric_job_duration_buckets() loop
        perform metric_add('stacksnap_job_duration_seconds_bucket',
            jsonb_build_object('resource_type', p_resource_type, 'le', bound::text),
            case when p_seconds <= bound then 1 else 0 end);
    end loop;
    perform metric_add('stacksnap_job_duration_seconds_bucket',
        jsonb_build_object('resource_type', p_resource_type, 'le', '+Inf'), 1);
    perform metric_add('stacksnap_job_duration_seconds_sum',
        jsonb_build_object('resource_type', p_resource_type), p_seconds);
    perform metric_add('stacksnap_job_duration_seconds_count',
        jsonb_build_object('resource_type', p_resource_type), 1);
end;
$$ language plpgsql;

create function metric_job_changed() returns trigger as $$
declare
    was_open boolean := true;
begin
    if tg_op <> 'INSERT' then
        was_open := old.status in ('pending', 'creating', 'tracking');
    end if;
    if tg_op in ('UPDATE', 'DELETE') then
        perform metric_add('stacksnap_jobs', jsonb_build_object('status', old.status), -1);
    end if;
    if tg_op = 'DELETE' then
        return null;
    end if;
    perform metric_add('stacksnap_jobs', jsonb_build_object('status', new.status), 1);
    if was_open and new.status not in ('pending', 'creating', 'tracking') then
        perform metric_add('stacksnap_jobs_total',
            jsonb_build_object('resource_type', new.resource_type, 'status', new.status), 1);
        -- Only jobs that started have a duration (one that never left its start window has none).
        if new.started_at is not null then
            perform metric_observe_job_duration(new.resource_type,
                greatest(0, extract(epoch from coalesce(new.finished_at, now()) - new.started_at))::double precision);
        end if;
    end if;
    return null;
end;
$$ language plpgsql;

create trigger job_metrics after insert or delete on job
    for each row execute function metric_job_changed();
create trigger job_metrics_status after update of status on job
    for each row when (old.status is distinct from new.status)
    execute function metric_job_changed();

create function metric_run_changed() returns trigger as $$
begin
    if tg_op = 'UPDATE' and old.status <> 'running' then
        return null;
    end if;
    if new.status <> 'running' then
        perform metric_add('stacksnap_runs_total', jsonb_build_object('status', new.status), 1);
    end if;
    return null;
end;
$$ language plpgsql;

create trigger run_metrics after insert or update of status on run
    for each row execute function metric_run_changed();

-- When each policy last had a run succeed: one row per policy, kept when the
-- history purge deletes the run.
create table policy_last_success (
    policy_id    uuid primary key references policy (policy_id) on delete cascade,
    succeeded_at timestamptz not null
);

create function policy_last_success_changed() returns trigger as $$
begin
    if tg_op = 'UPDATE' and old.status = 'succeeded' then
        return null;
    end if;
    if new.status = 'succeeded' and new.policy_id is not null then
        insert into policy_last_success (policy_id, succeeded_at)
        values (new.policy_id, coalesce(new.finished_at, now()))
        on conflict (policy_id) do update
            set succeeded_at = greatest(policy_last_success.succeeded_at, excluded.succeeded_at);
    end if;
    return null;
end;
$$ language plpgsql;

-- Before the purge can delete the run, and only while its policy exists (the
-- foreign key of a run is set null when the policy goes).
create trigger run_last_success after insert or update of status on run
    for each row execute function policy_last_success_changed();

create function metric_snapshot_changed() returns trigger as $$
begin
    if tg_op in ('UPDATE', 'DELETE') then
        perform metric_add('stacksnap_snapshots', jsonb_build_object('state', old.state), -1);
    end if;
    if tg_op = 'DELETE' then
        return null;
    end if;
    perform metric_add('stacksnap_snapshots', jsonb_build_object('state', new.state), 1);
    if new.state in ('deleted', 'delete_failed', 'delete_blocked') then
        perform metric_add('stacksnap_snapshot_deletions_total',
            jsonb_build_object('result', case new.state
                when 'deleted' then 'deleted'
                when 'delete_failed' then 'failed'
                else 'blocked' end), 1);
    end if;
    return null;
end;
$$ language plpgsql;

create trigger snapshot_metrics after insert or delete on snapshot
    for each row execute function metric_snapshot_changed();
create trigger snapshot_metrics_state after update of state on snapshot
    for each row when (old.state is distinct from new.state)
    execute function metric_snapshot_changed();

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
