-- Issue 12: restore jobs. A job has a kind; a restore job keeps the request it
-- was made with (`restore`), what it made (`restored`), and, once it failed or
-- was cancelled, when its clean-up is next due (`cleanup_due_at`; null when
-- there is nothing, or nothing more, to clean up).
alter table job
    add column kind text not null default 'snapshot',
    add column restore jsonb,
    add column restored jsonb,
    add column cleanup_due_at timestamptz,
    -- The flavor of the server a snapshot job snapshotted, as Nova showed it.
    add column source_flavor jsonb,
    add constraint job_kind_check check (kind in ('snapshot', 'restore', 'verify')),
    add constraint job_restore_check check ((kind = 'snapshot') = (restore is null));

-- Clean-ups due, claimed by workers like jobs.
create index job_cleanup_due_idx on job (cleanup_due_at) where cleanup_due_at is not null;

alter table run drop constraint run_trigger_check;
alter table run add constraint run_trigger_check
    check (trigger in ('schedule', 'manual', 'adhoc', 'join', 'restore', 'verify'));

-- A restore does not block a snapshot of its source (nor another restore).
drop index job_one_in_flight_per_resource_idx;
create unique index job_one_in_flight_per_resource_idx on job (resource_type, resource_id)
    where status in ('creating', 'tracking') and kind = 'snapshot';

-- What a server snapshot was taken of: Nova shows the flavor's id below
-- compute microversion 2.47 and only its name (with vcpus, ram, disk,
-- extra_specs) from 2.47; a restore defaults to it.
alter table snapshot add column source_flavor jsonb;

create or replace function job_event() returns trigger as $$
begin
    if old.started_at is null and new.started_at is not null then
        insert into event (kind, project_id, policy_id, run_id, job_id, actor, data)
        values ('job.started', new.project_id, new.policy_id, new.run_id, new.job_id, event_actor('engine'),
                event_data(jsonb_build_object('kind', new.kind,
                                              'resource_type', new.resource_type,
                                              'resource_id', new.resource_id,
                                              'resource_name', new.resource_name,
                                              'attempt', new.attempt,
                                              'snapshot_id', new.restore -> 'snapshot_id')));
    end if;
    if old.status in ('pending', 'creating', 'tracking')
       and new.status in ('succeeded', 'failed', 'timed_out', 'cancelled') then
        insert into event (kind, project_id, policy_id, run_id, job_id, actor, data)
        values ('job.' || new.status, new.project_id, new.policy_id, new.run_id, new.job_id,
                event_actor('engine'),
                event_data(jsonb_build_object('kind', new.kind,
                                              'resource_type', new.resource_type,
                                              'resource_id', new.resource_id,
                                              'resource_name', new.resource_name,
                                              'image_id', new.image_id,
                                              'consistency', new.consistency,
                                              'snapshot_id', new.restore -> 'snapshot_id',
                                              'restored', new.restored,
                                              'error', new.error)));
    end if;
    return null;
end;
$$ language plpgsql;

-- Only snapshot jobs feed `stacksnap_jobs_total` and the duration histogram:
-- the snapshot-failure alert reads them, and a restore refused for a user's
-- flavor or quota is no failed backup. Restores and restore tests ending count
-- in `stacksnap_restores_total` {kind, resource_type, status}. The
-- `stacksnap_jobs` gauge (jobs by state) counts every job: all take capacity.
create or replace function metric_job_end_of(p_kind text, p_type text, p_status text,
                                             p_seconds double precision)
returns table (family text, labels jsonb, delta double precision) as $$
    select * from metric_job_end_deltas(p_type, p_status, p_seconds) where p_kind = 'snapshot'
    union all
    select 'stacksnap_restores_total',
           jsonb_build_object('kind', p_kind, 'resource_type', p_type, 'status', p_status), 1::float8
    where p_kind <> 'snapshot';
$$ language sql immutable;

create or replace function metric_job_inserted() returns trigger as $$
begin
    insert into metric_delta (family, labels, value)
    select d.family, d.labels, sum(d.delta)
    from new_rows n
    cross join lateral (
        select 'stacksnap_jobs'::text, jsonb_build_object('status', n.status), 1::float8
        union all
        select * from metric_job_end_of(n.kind, n.resource_type, n.status,
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
        select * from metric_job_end_of(n.kind, n.resource_type, n.status,
            metric_job_seconds(n.started_at, n.finished_at))
        where o.status in ('pending', 'creating', 'tracking')
          and n.status not in ('pending', 'creating', 'tracking')
    ) as d (family, labels, delta)
    where o.status is distinct from n.status
    group by d.family, d.labels;
    return null;
end;
$$ language plpgsql;
